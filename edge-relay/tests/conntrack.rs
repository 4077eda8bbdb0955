//! Conntrack events from the kernel, for real: three network namespaces (subscriber — CGN —
//! server) joined by veth pairs, an iptables SNAT rule in the CGN namespace, and the relay binary
//! running *inside* the CGN namespace with `--conntrack`. A TCP connection from the subscriber
//! to the server must show up as a NEW and a DESTROY line whose reply tuple carries the SNAT
//! address and port. Where the `conntrack` tool is installed, its `-E -o timestamp,extended`
//! output for the same events must be identical to the relay's lines (timestamps aside).
//!
//! Needs root (network namespaces, iptables, ctnetlink); skips with a message otherwise.

mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_edge-relay");
const SNAT_IP: &str = "198.51.100.1";
const SUB_IP: &str = "10.231.1.2";
const SRV_IP: &str = "192.0.2.2";
const SRV_PORT: u16 = 8080;

/// Namespaces and processes of one test; everything is removed on drop, also on failure.
struct Lab {
    prefix: String,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// `ip netns exec <ns> <args…>` as a command.
    fn exec(&self, role: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.arg("netns").arg("exec").arg(self.ns(role)).args(args);
        c
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for role in ["sub", "cgn", "srv"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &str) {
    run(Command::new("ip").args(args.split_whitespace()));
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `None` (with the reason printed) where namespaces cannot be made: not root, or no netns.
fn lab() -> Option<Lab> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the conntrack test needs root (network namespaces, iptables, netlink)");
        return None;
    }
    if !have("ip") {
        eprintln!("SKIPPED: the `ip` tool (iproute2) is missing; .ci/run installs it");
        return None;
    }
    let lab = Lab {
        prefix: format!("nlct{}", std::process::id()),
        children: Vec::new(),
    };
    let ok = Command::new("ip")
        .args(["netns", "add", &lab.ns("sub")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        eprintln!("SKIPPED: cannot create network namespaces here");
        return None;
    }
    assert!(
        have("iptables"),
        "iptables is missing: run .ci/run (it installs iptables and conntrack)"
    );
    Some(lab)
}

fn wait_line(child: &mut Child, want: &str) {
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let want = want.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.contains(&want) {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(DEADLINE)
        .expect("the helper never became ready");
}

fn conntrack_lines(store: &Path) -> Vec<String> {
    read_store(store)
        .into_iter()
        .flat_map(|(key, h, recs)| {
            assert!(key.starts_with("raw/conntrack_netlink/"), "{key}");
            assert_eq!(h.kind, edge_relay::InputKind::ConntrackNetlink);
            recs
        })
        .map(|r| String::from_utf8(r.payload).expect("conntrack lines are text"))
        .collect()
}

/// The part after `[seconds.micros]\t`.
fn body(line: &str) -> &str {
    line.split_once('\t').map(|(_, b)| b).unwrap_or(line)
}

fn field<'a>(part: &'a str, name: &str) -> Option<&'a str> {
    part.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
}

/// Is this a line of our test connection with the SNAT'd reply tuple? Returns the NAT port.
fn snat_port(line: &str) -> Option<u16> {
    let b = body(line);
    // The reply tuple starts at the second "src=".
    let second = b.match_indices("src=").nth(1)?.0;
    let (orig, reply) = b.split_at(second);
    (field(orig, "src")? == SUB_IP
        && field(orig, "dst")? == SRV_IP
        && field(orig, "dport")? == SRV_PORT.to_string()
        && field(reply, "src")? == SRV_IP
        && field(reply, "dst")? == SNAT_IP
        && field(reply, "sport")? == SRV_PORT.to_string())
    .then(|| field(reply, "dport")?.parse().ok())
    .flatten()
}

#[test]
fn kernel_conntrack_events_with_snat_are_relayed_as_conntrack_lines() {
    let Some(mut lab) = lab() else {
        return;
    };
    let (sub, cgn, srv) = (lab.ns("sub"), lab.ns("cgn"), lab.ns("srv"));
    ip(&format!("netns add {cgn}"));
    ip(&format!("netns add {srv}"));
    ip(&format!(
        "-n {sub} link add s0 type veth peer name c0 netns {cgn}"
    ));
    ip(&format!(
        "-n {cgn} link add c1 type veth peer name v0 netns {srv}"
    ));
    for (ns, dev, addr) in [
        (&sub, "s0", "10.231.1.2/24"),
        (&cgn, "c0", "10.231.1.1/24"),
        (&cgn, "c1", "192.0.2.1/24"),
        (&srv, "v0", "192.0.2.2/24"),
    ] {
        ip(&format!("-n {ns} addr add {addr} dev {dev}"));
        ip(&format!("-n {ns} link set {dev} up"));
        ip(&format!("-n {ns} link set lo up"));
    }
    ip(&format!("-n {sub} route add default via 10.231.1.1"));
    ip(&format!("-n {srv} route add 198.51.100.0/24 via 192.0.2.1"));
    run(&mut lab.exec(
        "cgn",
        &[
            "iptables",
            "-t",
            "nat",
            "-A",
            "POSTROUTING",
            "-o",
            "c1",
            "-p",
            "tcp",
            "-j",
            "SNAT",
            "--to-source",
            "198.51.100.1:20000-20100",
        ],
    ));
    // After the NAT rule (which loads conntrack for the namespace): forwarding, kernel
    // timestamps and counters, and short TCP close timeouts so that DESTROY comes soon.
    run(&mut lab.exec(
        "cgn",
        &[
            "sysctl",
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.netfilter.nf_conntrack_timestamp=1",
            "net.netfilter.nf_conntrack_acct=1",
            "net.netfilter.nf_conntrack_tcp_timeout_time_wait=1",
            "net.netfilter.nf_conntrack_tcp_timeout_close=1",
            "net.netfilter.nf_conntrack_tcp_timeout_fin_wait=1",
            "net.netfilter.nf_conntrack_tcp_timeout_last_ack=1",
            "net.netfilter.nf_conntrack_tcp_timeout_close_wait=1",
        ],
    ));

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let log = dir.path().join("relay.log");
    let relay = lab
        .exec("cgn", &[BIN])
        .arg("--store")
        .arg(natlake_store::dir_url(&store).unwrap())
        .arg("--spool")
        .arg(dir.path().join("spool"))
        .args(["--conntrack", "--batch-age", "1s", "--relay-id", "ct-test"])
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let relay_pid = relay.id();
    lab.children.push(relay);
    wait_until("the relay to start in the CGN namespace", || {
        let l = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!l.contains("ERROR"), "relay failed: {l}");
        l.contains("edge-relay started")
    });

    // The stock tool on the same events, for a line-by-line comparison.
    let tool_out = dir.path().join("conntrack-E.txt");
    let with_tool = have("conntrack");
    let mut tool_pid = 0;
    if with_tool {
        let c = lab
            .exec(
                "cgn",
                &[
                    "conntrack",
                    "-E",
                    "-o",
                    "timestamp,extended",
                    "-e",
                    "NEW,DESTROY",
                ],
            )
            .stdout(std::fs::File::create(&tool_out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        lab.children.push(c);
        // It has subscribed once it is blocked in recv; give it a moment we can verify: a
        // probe connection inside the CGN namespace is not possible without traffic, so wait
        // for its netlink socket to appear in /proc.
        let pid = lab.children.last().unwrap().id();
        tool_pid = pid;
        wait_until("conntrack -E to open its netlink socket", || {
            std::fs::read_dir(format!("/proc/{pid}/fd"))
                .map(|d| {
                    d.flatten().any(|e| {
                        std::fs::read_link(e.path())
                            .is_ok_and(|l| l.to_string_lossy().starts_with("socket:"))
                    })
                })
                .unwrap_or(false)
        });
        std::thread::sleep(Duration::from_millis(300)); // membership follows the socket at once
    } else {
        eprintln!(
            "note: `conntrack` tool not installed; skipping the comparison with conntrack -E"
        );
    }

    // Server in its namespace; one connection from the subscriber.
    let mut server = lab
        .exec(
            "srv",
            &[
                "python3",
                "-c",
                "import socket,sys\n\
             s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
             s.bind(('192.0.2.2', 8080)); s.listen(4); print('ready', flush=True)\n\
             c,_=s.accept(); c.recv(100); c.sendall(b'pong'); c.recv(100); c.close()\n",
            ],
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_line(&mut server, "ready");
    lab.children.push(server);
    let out = lab
        .exec(
            "sub",
            &[
                "python3",
                "-c",
                "import socket\n\
             s=socket.create_connection(('192.0.2.2', 8080), timeout=20)\n\
             s.sendall(b'ping'); print(s.recv(100).decode()); s.close()\n",
            ],
        )
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pong"),
        "the connection through the CGN failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // NEW at once; DESTROY once the short close timeouts expire and the kernel reaps the entry.
    let start = Instant::now();
    let (new, destroy) = loop {
        let lines = conntrack_lines(&store);
        let pick = |ev: &str| {
            lines
                .iter()
                .find(|l| body(l).trim_start().starts_with(ev) && snat_port(l).is_some())
                .cloned()
        };
        if let (Some(n), Some(d)) = (pick("[NEW]"), pick("[DESTROY]")) {
            break (n, d);
        }
        assert!(
            start.elapsed() < Duration::from_secs(150),
            "no NEW + DESTROY pair for the SNAT'd connection after {:?}; lines: {lines:#?}\nrelay log: {}",
            start.elapsed(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        // The kernel reaps expired entries lazily (its GC may take a minute with an idle
        // table); a table dump evicts the expired ones at once, which emits their DESTROY.
        if with_tool && start.elapsed() > Duration::from_secs(2) {
            let _ = lab
                .exec("cgn", &["conntrack", "-L"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    eprintln!("relay NEW:     {new}\nrelay DESTROY: {destroy}");

    for l in [&new, &destroy] {
        let port = snat_port(l).unwrap();
        assert!((20000..=20100).contains(&port), "SNAT port {port}: {l}");
        // `[seconds.micros]\t` then the event, right-aligned in 9 columns.
        let (ts, rest) = l.split_once('\t').unwrap();
        assert!(
            ts.starts_with('[') && ts.ends_with(']') && ts.contains('.'),
            "{l}"
        );
        let secs: i64 = ts[1..ts.find('.').unwrap()].parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((now - secs).abs() < 600, "{l}");
        assert!(
            rest.starts_with("    [NEW] ipv4     2 tcp      6 ")
                || rest.starts_with("[DESTROY] ipv4     2 tcp      6 "),
            "{l}"
        );
    }
    assert!(
        new.contains(" SYN_SENT ") && new.contains("[UNREPLIED]"),
        "{new}"
    );
    // Counters (nf_conntrack_acct) and kernel timestamps (delta-time) on DESTROY.
    assert!(
        destroy.contains(" packets=") && destroy.contains(" bytes="),
        "{destroy}"
    );
    assert!(destroy.contains(" delta-time="), "{destroy}");

    // SIGTERM: flush and exit 0.
    // SAFETY: kill on the pid of a child we spawned and still hold.
    assert_eq!(unsafe { libc::kill(relay_pid as i32, libc::SIGTERM) }, 0);
    let relay_child = lab
        .children
        .iter_mut()
        .find(|c| c.id() == relay_pid)
        .unwrap();
    let deadline = Instant::now() + DEADLINE;
    let status = loop {
        if let Some(st) = relay_child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "relay did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "relay exit: {status}");
    let relay_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!relay_log.contains("netlink_overrun"), "{relay_log}");

    if with_tool {
        // Stop the tool (SIGINT flushes its output) and compare.
        let tool = lab
            .children
            .iter_mut()
            .find(|c| c.id() == tool_pid)
            .unwrap();
        // SAFETY: as above.
        unsafe { libc::kill(tool.id() as i32, libc::SIGINT) };
        let _ = tool.wait();
        let tool_text = std::fs::read_to_string(&tool_out).unwrap();
        let tool_lines: Vec<&str> = tool_text
            .lines()
            .filter(|l| snat_port(l).is_some())
            .collect();
        eprintln!("conntrack -E:\n{}", tool_lines.join("\n"));
        for ours in [&new, &destroy] {
            assert!(
                tool_lines.iter().any(|t| body(t) == body(ours)),
                "the relay's line differs from conntrack -E's:\n ours: {ours}\n tool: {tool_lines:#?}"
            );
        }
    }
}
