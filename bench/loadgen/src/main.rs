//! Load generator and loss counter for the edge-relay benchmark (`bench/relay.sh`).
//!
//! ```text
//! natlake-bench-loadgen send  --to 127.0.0.1:5514 [--rate 200000] [--duration 60] [--batch 32]
//! natlake-bench-loadgen count --expect N (--raw DIR | --lines FILE|-)
//! natlake-bench-loadgen run   --pid-file F --report F -- CMD ARGS...
//! natlake-bench-loadgen sink  --listen 127.0.0.1:5514 --report F [--rcvbuf BYTES] [--batch 64]
//! ```
//!
//! `send` sends realistic CGNAT syslog lines (~160 bytes: RFC 5424 Juniper `RT_NAT` session
//! lines, RFC 3164 conntrack and Junos `RT_SRC_NAT_PORT_ALLOC` lines; fresh random addresses and
//! ports on every line, from the shared 100.64.0.0/10 and documentation ranges only; wall-clock
//! timestamps) over UDP with `sendmmsg`, in bursts of `--batch` paced to `--rate` lines/s for
//! `--duration` seconds. Every line carries its sequence number (`[meta sequenceId="N"]` in
//! RFC 5424 lines, a trailing `seq=N` in RFC 3164 lines), 0..N-1, so `count` can tell exactly
//! which lines arrived: it reads the raw objects (`*.nlraw.zst`, decoded with `natlake-raw`)
//! under a directory, or plain text lines (rsyslog's output, gunzipped), and prints how many
//! distinct lines of 0..N-1 it saw, duplicates and loss.
//!
//! `sink` is the floor under any receiver: it receives datagrams the way the relay's `recvmmsg`
//! path does (a blocking `recvmmsg(MSG_WAITFORONE)` of `--batch` slots, a 0.5 ms pause after a
//! call that did not fill them) and throws them away; on SIGTERM it writes how many it received to
//! `--report`. Its CPU time per datagram is what the kernel charges a receiver on this host before
//! the receiver does any work of its own.
//!
//! `run` starts a command, writes its pid to a file, waits for it and writes its CPU time and
//! peak RSS from `wait4`'s rusage (so what the process spent while stopping is counted too).
//!
//! Output is `key=value` lines on stdout, for the script.

use std::io::{self, BufRead, Read, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("send") => send(&args[1..]),
        Some("count") => count(&args[1..]),
        Some("run") => run(&args[1..]),
        Some("sink") => sink(&args[1..]),
        _ => Err(usage()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natlake-bench-loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage() -> String {
    "usage:\n  natlake-bench-loadgen send --to ADDR [--rate LINES_PER_S] [--duration SECONDS] [--batch N] [--seed N]\n  natlake-bench-loadgen count --expect N (--raw DIR | --lines FILE|-)\n  natlake-bench-loadgen run --pid-file FILE --report FILE -- CMD [ARGS...]\n  natlake-bench-loadgen sink --listen ADDR --report FILE [--rcvbuf BYTES] [--batch N]".into()
}

/// `--name value` options; returns the value of `name`.
fn opt<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn num<T: std::str::FromStr>(args: &[String], name: &str, default: T) -> Result<T, String> {
    match opt(args, name) {
        None => Ok(default),
        Some(v) => v
            .replace('_', "")
            .parse()
            .map_err(|_| format!("{name}: not a number: {v}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Line generation

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];
const HOSTS: [&str; 8] = [
    "cgn-par1", "cgn-par2", "cgn-lyo1", "cgn-lyo2", "cgn-mrs1", "cgn-ams1", "cgn-ams2", "cgn-fra1",
];
const DPORTS: [u16; 10] = [443, 443, 443, 80, 53, 123, 993, 5222, 3478, 8443];

/// Builds one line per call with fresh random fields (so the stream compresses like real logs,
/// not like a short loop of the same lines) and the wall-clock time.
struct Gen {
    r: Rng,
    /// Unix seconds the cached time strings are for.
    sec: i64,
    rfc5424_time: Vec<u8>,
    rfc3164_time: Vec<u8>,
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

fn push_ip(out: &mut Vec<u8>, ip: [u8; 4]) {
    for (k, o) in ip.iter().enumerate() {
        if k > 0 {
            out.push(b'.');
        }
        push_u64(out, *o as u64);
    }
}

impl Gen {
    fn new(seed: u64) -> Self {
        Self {
            r: Rng(seed | 1),
            sec: i64::MIN,
            rfc5424_time: Vec::new(),
            rfc3164_time: Vec::new(),
        }
    }

    fn set_time(&mut self, unix_ns: i64) {
        let sec = unix_ns.div_euclid(1_000_000_000);
        if sec != self.sec {
            self.sec = sec;
            let (y, mo, d) = natlake_raw::key::civil_from_days(sec.div_euclid(86_400));
            let t = sec.rem_euclid(86_400);
            let (h, m, s) = (t / 3600, t / 60 % 60, t % 60);
            self.rfc5424_time = format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}").into_bytes();
            self.rfc3164_time =
                format!("{} {d:>2} {h:02}:{m:02}:{s:02}", MONTHS[mo as usize - 1]).into_bytes();
        }
    }

    /// A subscriber address in the shared address space 100.64.0.0/10 (RFC 6598).
    fn subscriber(&mut self) -> [u8; 4] {
        let v = self.r.below(1 << 22) as u32;
        [100, 64 + (v >> 16) as u8, (v >> 8) as u8, (v as u8).max(1)]
    }

    /// A public NAT pool address (TEST-NET-2 / TEST-NET-3).
    fn pool(&mut self) -> [u8; 4] {
        let last = 1 + self.r.below(254) as u8;
        if self.r.below(2) == 0 {
            [198, 51, 100, last]
        } else {
            [203, 0, 113, last]
        }
    }

    /// A destination (TEST-NET-1 or TEST-NET-3).
    fn server(&mut self) -> [u8; 4] {
        let last = 1 + self.r.below(254) as u8;
        if self.r.below(3) == 0 {
            [203, 0, 113, last]
        } else {
            [192, 0, 2, last]
        }
    }

    fn port(&mut self) -> u64 {
        1024 + self.r.below(64_511)
    }

    /// Writes line `seq` into `out` (cleared first). `unix_ns` is the send time.
    fn line(&mut self, seq: u64, unix_ns: i64, out: &mut Vec<u8>) {
        self.set_time(unix_ns);
        out.clear();
        let host = HOSTS[self.r.below(HOSTS.len() as u64) as usize].as_bytes();
        let (src, sport) = (self.subscriber(), self.port());
        let (nat, nport) = (self.pool(), self.port());
        let dst = self.server();
        let dport = DPORTS[self.r.below(DPORTS.len() as u64) as usize] as u64;
        let tcp = self.r.below(4) != 0;
        let (proto, pnum): (&[u8], u64) = if tcp { (b"tcp", 6) } else { (b"udp", 17) };
        match seq % 4 {
            // RFC 5424, Juniper RT_NAT session create / close (sequence in `meta`, RFC 5424 7.3.1).
            0 | 1 => {
                out.extend_from_slice(b"<14>1 ");
                out.extend_from_slice(&self.rfc5424_time);
                out.push(b'.');
                let ms = (unix_ns.rem_euclid(1_000_000_000) / 1_000_000) as u64;
                out.extend_from_slice(&[
                    b'0' + (ms / 100) as u8,
                    b'0' + (ms / 10 % 10) as u8,
                    b'0' + (ms % 10) as u8,
                ]);
                out.extend_from_slice(b"Z ");
                out.extend_from_slice(host);
                out.extend_from_slice(if seq.is_multiple_of(4) {
                    b" RT_NAT - RT_NAT_SESSION_CREATE [meta sequenceId=\""
                } else {
                    b" RT_NAT - RT_NAT_SESSION_CLOSE [meta sequenceId=\""
                });
                push_u64(out, seq);
                out.extend_from_slice(b"\"] ");
                push_ip(out, src);
                out.push(b'/');
                push_u64(out, sport);
                out.extend_from_slice(b"->");
                push_ip(out, dst);
                out.push(b'/');
                push_u64(out, dport);
                out.extend_from_slice(b" 0x0 ");
                out.extend_from_slice(proto);
                out.push(b' ');
                push_ip(out, nat);
                out.push(b'/');
                push_u64(out, nport);
            }
            // RFC 3164, conntrack -E style (NEW / DESTROY).
            2 => {
                out.extend_from_slice(b"<134>");
                out.extend_from_slice(&self.rfc3164_time);
                out.push(b' ');
                out.extend_from_slice(host);
                out.extend_from_slice(b" conntrack: ");
                match (self.r.below(2) == 0, tcp) {
                    (true, true) => out.extend_from_slice(b"[NEW] tcp 6 120 SYN_SENT"),
                    (true, false) => out.extend_from_slice(b"[NEW] udp 17 30"),
                    (false, true) => out.extend_from_slice(b"[DESTROY] tcp 6"),
                    (false, false) => out.extend_from_slice(b"[DESTROY] udp 17"),
                }
                out.extend_from_slice(b" src=");
                push_ip(out, src);
                out.extend_from_slice(b" dst=");
                push_ip(out, dst);
                out.extend_from_slice(b" sport=");
                push_u64(out, sport);
                out.extend_from_slice(b" dport=");
                push_u64(out, dport);
                out.extend_from_slice(b" src=");
                push_ip(out, dst);
                out.extend_from_slice(b" dst=");
                push_ip(out, nat);
                out.extend_from_slice(b" sport=");
                push_u64(out, dport);
                out.extend_from_slice(b" dport=");
                push_u64(out, nport);
                out.extend_from_slice(b" seq=");
                push_u64(out, seq);
            }
            // RFC 3164, Junos source NAT port allocation.
            _ => {
                out.extend_from_slice(b"<30>");
                out.extend_from_slice(&self.rfc3164_time);
                out.push(b' ');
                out.extend_from_slice(host);
                out.extend_from_slice(b" RT_NAT: RT_SRC_NAT_PORT_ALLOC: ");
                push_ip(out, src);
                out.push(b':');
                push_u64(out, sport);
                out.extend_from_slice(b" -> ");
                push_ip(out, nat);
                out.push(b':');
                push_u64(out, nport);
                out.push(b' ');
                push_ip(out, dst);
                out.push(b':');
                push_u64(out, dport);
                out.extend_from_slice(b" proto ");
                push_u64(out, pnum);
                out.extend_from_slice(b" seq=");
                push_u64(out, seq);
            }
        }
    }
}

fn unix_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The sequence number a line carries, if any.
fn sequence_of(line: &[u8]) -> Option<u64> {
    let start = find(line, b"sequenceId=\"")
        .map(|i| i + 12)
        .or_else(|| rfind(line, b" seq=").map(|i| i + 5))?;
    let digits = line[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 19 {
        return None;
    }
    std::str::from_utf8(&line[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

fn rfind(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).rposition(|w| w == n)
}

// ---------------------------------------------------------------------------------------------
// send

fn send(args: &[String]) -> Result<(), String> {
    let to: SocketAddr = opt(args, "--to")
        .ok_or("--to ADDR is required")?
        .parse()
        .map_err(|e| format!("--to: {e}"))?;
    let rate: u64 = num(args, "--rate", 200_000)?;
    let duration: f64 = num(args, "--duration", 60.0)?;
    let batch: usize = num(args, "--batch", 32)?;
    let seed: u64 = num(args, "--seed", 0x5eed_cafe)?;
    if rate == 0 || duration.is_nan() || duration <= 0.0 || !(1..=1024).contains(&batch) {
        return Err("--rate > 0, --duration > 0, --batch 1..=1024".into());
    }
    let total = (rate as f64 * duration).round() as u64;
    let mut lines = Gen::new(seed);

    let bind: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let sock = UdpSocket::bind(bind).map_err(|e| format!("bind: {e}"))?;
    sock.connect(to).map_err(|e| format!("connect {to}: {e}"))?;
    set_sndbuf(&sock, 4 << 20);
    let fd = sock.as_raw_fd();

    let mut bufs: Vec<Vec<u8>> = (0..batch).map(|_| Vec::with_capacity(512)).collect();
    let mut iov: Vec<libc::iovec> = vec![
        libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0
        };
        batch
    ];
    // SAFETY: all-zero is a valid mmsghdr.
    let mut hdrs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();

    let (mut sent, mut bytes, mut errors, mut calls) = (0u64, 0u64, 0u64, 0u64);
    let (mut min_len, mut max_len) = (usize::MAX, 0usize);
    let ns_per_line = 1e9 / rate as f64;
    let start = Instant::now();
    while sent < total {
        // Lines due by now, in batches of at most `batch`; sleep when ahead of the schedule.
        // A batch goes out when its last line is due (bursts of `batch` datagrams, like a busy
        // exporter); behind the schedule, batches go out back to back until it is caught up.
        let n = ((total - sent) as usize).min(batch);
        let last_due = Duration::from_nanos(((sent + n as u64 - 1) as f64 * ns_per_line) as u64);
        let ahead = last_due.saturating_sub(start.elapsed());
        if !ahead.is_zero() {
            std::thread::sleep(ahead);
            continue;
        }
        let now = unix_ns();
        for (k, buf) in bufs.iter_mut().take(n).enumerate() {
            let seq = sent + k as u64;
            lines.line(seq, now, buf);
            min_len = min_len.min(buf.len());
            max_len = max_len.max(buf.len());
            bytes += buf.len() as u64;
            iov[k] = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            hdrs[k].msg_hdr.msg_iov = &mut iov[k];
            hdrs[k].msg_hdr.msg_iovlen = 1;
        }
        // Send all n, retrying the rest after a partial send; a failed datagram is counted and
        // skipped (its number is then simply never received: it counts as lost at the receiver
        // side too, so the script subtracts `errors`).
        let mut off = 0usize;
        while off < n {
            // SAFETY: every header points at a live buffer of the length it states.
            let r = unsafe {
                libc::sendmmsg(fd, hdrs[off..].as_mut_ptr(), (n - off) as libc::c_uint, 0)
            };
            calls += 1;
            if r < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS | libc::EAGAIN | libc::ECONNREFUSED) => {
                        errors += 1;
                        off += 1;
                    }
                    _ => return Err(format!("sendmmsg: {e}")),
                }
            } else {
                off += r as usize;
            }
        }
        sent += n as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("sent={sent}");
    println!("send_errors={errors}");
    println!("bytes={bytes}");
    println!("avg_line_bytes={:.1}", bytes as f64 / sent.max(1) as f64);
    println!("min_line_bytes={min_len}");
    println!("max_line_bytes={max_len}");
    println!("sendmmsg_calls={calls}");
    println!("seconds={secs:.3}");
    println!("rate={:.0}", sent as f64 / secs);
    Ok(())
}

fn set_sndbuf(sock: &UdpSocket, bytes: libc::c_int) {
    set_buffer(sock, [libc::SO_SNDBUFFORCE, libc::SO_SNDBUF], bytes);
}

/// Sets a socket buffer size with the first option that works (the FORCE variant needs
/// CAP_NET_ADMIN; the plain one is capped by net.core.[rw]mem_max).
fn set_buffer(sock: &UdpSocket, opts: [libc::c_int; 2], bytes: libc::c_int) {
    for opt in opts {
        // SAFETY: setsockopt on a valid fd with an int of the right size.
        let ok = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        } == 0;
        if ok {
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// sink

static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, std::sync::atomic::Ordering::SeqCst);
}

fn sink(args: &[String]) -> Result<(), String> {
    let listen: SocketAddr = opt(args, "--listen")
        .ok_or("--listen ADDR is required")?
        .parse()
        .map_err(|e| format!("--listen: {e}"))?;
    let report = PathBuf::from(opt(args, "--report").ok_or("--report FILE is required")?);
    let rcvbuf: libc::c_int = num(args, "--rcvbuf", 8 << 20)?;
    let batch: usize = num(args, "--batch", 64)?;
    if !(1..=1024).contains(&batch) {
        return Err("--batch 1..=1024".into());
    }
    // SAFETY: installs an async-signal-safe handler (one atomic store).
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
    }
    let sock = UdpSocket::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
    set_buffer(&sock, [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF], rcvbuf);
    // Wakes up to look at the stop flag.
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| format!("timeout: {e}"))?;
    const SLOT: usize = 9000;
    let mut buf = vec![0u8; SLOT * batch];
    let mut iov: Vec<libc::iovec> = buf
        .chunks_mut(SLOT)
        .map(|c| libc::iovec {
            iov_base: c.as_mut_ptr().cast(),
            iov_len: SLOT,
        })
        .collect();
    // SAFETY: all-zero is a valid mmsghdr.
    let mut hdrs: Vec<libc::mmsghdr> = (0..batch).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, v) in hdrs.iter_mut().zip(iov.iter_mut()) {
        h.msg_hdr.msg_iov = v;
        h.msg_hdr.msg_iovlen = 1;
    }
    let (mut received, mut bytes, mut calls) = (0u64, 0u64, 0u64);
    while !STOP.load(std::sync::atomic::Ordering::SeqCst) {
        // SAFETY: every header points at a live buffer of SLOT bytes.
        let r = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                hdrs.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        calls += 1;
        if r < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => continue,
                _ => return Err(format!("recvmmsg: {e}")),
            }
        }
        let n = r as usize;
        received += n as u64;
        bytes += hdrs[..n].iter().map(|h| h.msg_len as u64).sum::<u64>();
        if n < batch {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    std::fs::write(
        &report,
        format!("received={received}\nbytes={bytes}\nrecvmmsg_calls={calls}\n"),
    )
    .map_err(|e| format!("{}: {e}", report.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// count

struct Seen {
    bits: Vec<u64>,
    expect: u64,
    records: u64,
    unique: u64,
    duplicates: u64,
    out_of_range: u64,
    unnumbered: u64,
}

impl Seen {
    fn new(expect: u64) -> Self {
        Self {
            bits: vec![0; expect.div_ceil(64) as usize],
            expect,
            records: 0,
            unique: 0,
            duplicates: 0,
            out_of_range: 0,
            unnumbered: 0,
        }
    }

    fn line(&mut self, line: &[u8]) {
        self.records += 1;
        match sequence_of(line) {
            None => self.unnumbered += 1,
            Some(s) if s >= self.expect => self.out_of_range += 1,
            Some(s) => {
                let (w, b) = ((s / 64) as usize, 1u64 << (s % 64));
                if self.bits[w] & b != 0 {
                    self.duplicates += 1;
                } else {
                    self.bits[w] |= b;
                    self.unique += 1;
                }
            }
        }
    }
}

fn count(args: &[String]) -> Result<(), String> {
    let expect: u64 = num(args, "--expect", 0)?;
    if expect == 0 {
        return Err("--expect N (lines sent) is required".into());
    }
    let mut seen = Seen::new(expect);
    let mut objects = 0u64;
    let mut compressed = 0u64;
    if let Some(dir) = opt(args, "--raw") {
        let mut files = Vec::new();
        walk(Path::new(dir), &mut files).map_err(|e| format!("{dir}: {e}"))?;
        for f in files {
            let bytes = std::fs::read(&f).map_err(|e| format!("{}: {e}", f.display()))?;
            compressed += bytes.len() as u64;
            let reader = natlake_raw::BatchReader::from_compressed(&bytes)
                .map_err(|e| format!("{}: {e}", f.display()))?;
            objects += 1;
            for rec in reader {
                let (_, rec) = rec.map_err(|e| format!("{}: {e}", f.display()))?;
                if !rec.is_context() {
                    seen.line(&rec.payload);
                }
            }
        }
    } else if let Some(path) = opt(args, "--lines") {
        let input: Box<dyn Read> = if path == "-" {
            Box::new(io::stdin().lock())
        } else {
            Box::new(std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?)
        };
        let mut r = io::BufReader::with_capacity(1 << 20, input);
        let mut line = Vec::with_capacity(1024);
        loop {
            line.clear();
            let n = r
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("{path}: {e}"))?;
            if n == 0 {
                break;
            }
            seen.line(&line);
        }
    } else {
        return Err("count: --raw DIR or --lines FILE|- is required".into());
    }
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "objects={objects}");
    let _ = writeln!(out, "compressed_bytes={compressed}");
    let _ = writeln!(out, "records={}", seen.records);
    let _ = writeln!(out, "received={}", seen.unique);
    let _ = writeln!(out, "duplicates={}", seen.duplicates);
    let _ = writeln!(out, "unnumbered={}", seen.unnumbered);
    let _ = writeln!(out, "out_of_range={}", seen.out_of_range);
    let _ = writeln!(out, "lost={}", expect - seen.unique);
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        if e.file_type()?.is_dir() {
            walk(&p, out)?;
        } else if p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(natlake_raw::SUFFIX))
        {
            out.push(p);
        }
    }
    out.sort();
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// run

fn run(args: &[String]) -> Result<(), String> {
    let pid_file = opt(args, "--pid-file").ok_or("--pid-file FILE is required")?;
    let report = opt(args, "--report").ok_or("--report FILE is required")?;
    let dash = args
        .iter()
        .position(|a| a == "--")
        .ok_or("run: -- CMD is required")?;
    let cmd = args.get(dash + 1).ok_or("run: -- CMD is required")?;
    let child = std::process::Command::new(cmd)
        .args(&args[dash + 2..])
        .spawn()
        .map_err(|e| format!("{cmd}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    std::fs::write(pid_file, format!("{pid}\n")).map_err(|e| format!("{pid_file}: {e}"))?;
    let mut status = 0;
    // SAFETY: wait4 on our own child into a zeroed rusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(format!("wait4: {e}"));
        }
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    let text = format!(
        "user_us={}\nsys_us={}\nmaxrss_kib={}\nexit={code}\n",
        us(ru.ru_utime),
        us(ru.ru_stime),
        ru.ru_maxrss
    );
    std::fs::write(report, text).map_err(|e| format!("{report}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_their_number_and_look_right() {
        let mut g = Gen::new(7);
        let mut buf = Vec::new();
        let (mut total, mut n) = (0usize, 0usize);
        for seq in (0u64..400).chain([123_456_789, u64::MAX / 2]) {
            g.line(
                seq,
                1_714_564_800_123_000_000 + (seq % 1_000_000) as i64 * 5_000,
                &mut buf,
            );
            assert_eq!(
                sequence_of(&buf),
                Some(seq),
                "{}",
                String::from_utf8_lossy(&buf)
            );
            assert!(buf.starts_with(b"<"));
            assert!(!buf.contains(&b'\n'));
            total += buf.len();
            n += 1;
        }
        let avg = total / n;
        assert!((120..=180).contains(&avg), "average line length {avg}");
        g.line(0, 1_714_564_800_123_000_000, &mut buf);
        assert!(
            buf.starts_with(b"<14>1 2024-05-01T12:00:00.123Z cgn-"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
        g.line(2, 1_714_564_800_123_000_000, &mut buf);
        assert!(
            buf.starts_with(b"<134>May  1 12:00:00 cgn-"),
            "{}",
            String::from_utf8_lossy(&buf)
        );
    }
}
