//! Attribution on real Linux NAT. Network namespaces for two subscribers, a CGN box (iptables
//! SNAT to a pool of public addresses with a port range) and a server. `natlake up --conntrack`
//! runs in the CGN namespace and reads the kernel's conntrack events; subscribers make
//! connections; for each one, the public address:port and time *the server saw* is looked up and
//! must name the true subscriber's inside address:port. An unknown port gets no match; a public
//! port reused by another subscriber inside the window is flagged ambiguous, never guessed. The
//! same answers must come back after the compact function has run (through the carry). A port
//! forward (DNAT of a public address:port to subscriber A's server) is looked up by its public
//! address and port and must name A's server.
//!
//! Needs root (namespaces, iptables, netlink); skips with a message only where namespaces cannot
//! be made. CI runs it as root.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use natlake_e2e::{Up, run, wait_for};
use serde_json::Value;

const NATLAKE: &str = env!("CARGO_BIN_EXE_natlake");
const SRV_IP: &str = "192.0.2.10";
const POOL: &str = "198.51.100.20-198.51.100.21";
const REUSE_IP: &str = "198.51.100.30";
/// Public address and port forwarded to subscriber A's server, 100.64.1.2:80.
const FORWARD_IP: &str = "198.51.100.40";
const FORWARD_PORT: u16 = 8443;

/// Namespaces and processes of one test, removed on drop (also when an assertion fails).
struct Lab {
    prefix: String,
    children: Vec<Child>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    fn exec(&self, role: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.arg("netns").arg("exec").arg(self.ns(role)).args(args);
        c
    }

    fn sh(&self, role: &str, script: &str) {
        run(&mut self.exec(role, &["sh", "-ec", script])).unwrap();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        for role in ["suba", "subb", "cgn", "srv"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(role)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn ip(args: &str) {
    run(Command::new("ip").args(args.split_whitespace())).unwrap();
}

/// The lab, or None (with the reason printed) where namespaces cannot be made.
fn lab() -> Option<Lab> {
    // Namespaces need root; `id -u` avoids a libc dependency for one call.
    let uid = run(Command::new("id").arg("-u")).unwrap_or_default();
    if uid.trim() != "0" {
        eprintln!("SKIPPED: the real-NAT test needs root (network namespaces, iptables, netlink)");
        return None;
    }
    let lab = Lab {
        prefix: format!("nlnat{}", std::process::id()),
        children: Vec::new(),
    };
    if !Command::new("ip")
        .args(["netns", "add", &lab.ns("cgn")])
        .status()
        .is_ok_and(|s| s.success())
    {
        eprintln!("SKIPPED: cannot create network namespaces here");
        return None;
    }
    Some(lab)
}

/// subscriber A 100.64.1.2 and B 100.64.2.2 — CGN — server 192.0.2.10. TCP/UDP to the server
/// is SNATed to a two-address pool with ports 20000–20999; UDP to port 7777 is SNATed to a
/// single public address and port, so that a second subscriber must reuse it. TCP from outside
/// to 198.51.100.40:8443 is forwarded (DNAT) to subscriber A's 100.64.1.2:80.
fn build(lab: &Lab) {
    let (cgn, srv, a, b) = (lab.ns("cgn"), lab.ns("srv"), lab.ns("suba"), lab.ns("subb"));
    for n in [&srv, &a, &b] {
        ip(&format!("netns add {n}"));
    }
    ip(&format!(
        "-n {a} link add s0 type veth peer name ca netns {cgn}"
    ));
    ip(&format!(
        "-n {b} link add s0 type veth peer name cb netns {cgn}"
    ));
    ip(&format!(
        "-n {cgn} link add cs type veth peer name v0 netns {srv}"
    ));
    for (ns, dev, addr) in [
        (&a, "s0", "100.64.1.2/24"),
        (&b, "s0", "100.64.2.2/24"),
        (&cgn, "ca", "100.64.1.1/24"),
        (&cgn, "cb", "100.64.2.1/24"),
        (&cgn, "cs", "192.0.2.1/24"),
        (&srv, "v0", "192.0.2.10/24"),
    ] {
        ip(&format!("-n {ns} addr add {addr} dev {dev}"));
        ip(&format!("-n {ns} link set {dev} up"));
        ip(&format!("-n {ns} link set lo up"));
    }
    ip(&format!("-n {a} route add default via 100.64.1.1"));
    ip(&format!("-n {b} route add default via 100.64.2.1"));
    ip(&format!("-n {srv} route add 198.51.100.0/24 via 192.0.2.1"));
    lab.sh(
        "cgn",
        &format!(
            "iptables -t nat -A PREROUTING -i cs -d {FORWARD_IP} -p tcp --dport {FORWARD_PORT} -j DNAT --to-destination 100.64.1.2:80
             iptables -t nat -A POSTROUTING -o cs -p udp --dport 7777 -j SNAT --to-source {REUSE_IP}:40000
             iptables -t nat -A POSTROUTING -o cs -p tcp -j SNAT --to-source {POOL}:20000-20999
             iptables -t nat -A POSTROUTING -o cs -p udp -j SNAT --to-source {POOL}:20000-20999
             sysctl -q -w net.ipv4.ip_forward=1 net.netfilter.nf_conntrack_timestamp=1 net.netfilter.nf_conntrack_acct=1"
        ),
    );
}

/// The server: prints `inside_ip inside_port public_ip public_port epoch` for every TCP
/// connection (the client sends its own inside address first) and every UDP datagram on 7777.
const SERVER: &str = r#"
import socket, sys, threading, time
def tcp():
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", 8080)); s.listen(128)
    while True:
        c, peer = s.accept(); t = time.time()
        inside = c.recv(200).decode().strip()
        print(inside, peer[0], peer[1], "%.6f" % t, flush=True); c.close()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 7777))
    while True:
        d, peer = u.recvfrom(200); t = time.time()
        print(d.decode().strip(), peer[0], peer[1], "%.6f" % t, flush=True)
threading.Thread(target=udp, daemon=True).start()
print("ready", flush=True)
tcp()
"#;

/// A client: `n` TCP connections to the server, each announcing its inside address:port.
const CLIENT: &str = r#"
import random, socket, sys, time
me, srv, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    s = socket.create_connection((srv, 8080), timeout=5)
    s.sendall(("%s %d\n" % (me, s.getsockname()[1])).encode())
    s.recv(1); s.close()
    time.sleep(random.uniform(0.02, 0.15))
"#;

const UDP_CLIENT: &str = r#"
import socket, sys
me, srv, sport = sys.argv[1], sys.argv[2], int(sys.argv[3])
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind((me, sport))
u.sendto(("%s %d\n" % (me, sport)).encode(), (srv, 7777))
"#;

/// Subscriber A's server behind the port forward: accepts one connection and prints the
/// remote's address and port and the time.
const FORWARDED_SERVER: &str = r#"
import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("100.64.1.2", 80)); s.listen(8)
print("ready", flush=True)
c, peer = s.accept(); t = time.time()
c.recv(200); c.sendall(b"k"); c.close()
print(peer[0], peer[1], "%.6f" % t, flush=True)
"#;

/// A remote connecting to an address and port.
const REMOTE_CLIENT: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
s.sendall(b"hello"); s.recv(1); s.close()
"#;

/// One line the server printed.
#[derive(Debug, Clone)]
struct Seen {
    inside_ip: String,
    inside_port: u16,
    public_ip: String,
    public_port: u16,
    at: String,
}

fn seen_lines(out: &str) -> Vec<Seen> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 5 {
                return None;
            }
            Some(Seen {
                inside_ip: f[0].into(),
                inside_port: f[1].parse().ok()?,
                public_ip: f[2].into(),
                public_port: f[3].parse().ok()?,
                at: f[4].into(),
            })
        })
        .collect()
}

/// The answer, once the lake has caught up: `natlake up` keeps receiving while the test asks, so
/// an answer may list a raw object still being normalized (`pending`) or a batch the relay has
/// not stored yet (`not_received`) — asked again until none is left (20 s at most).
fn lookup(data_dir: &std::path::Path, ip: &str, port: u16, at: &str, extra: &[&str]) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let out = run(Command::new(NATLAKE)
            .args(["lookup", "--data-dir"])
            .arg(data_dir)
            .args(["--ip", ip, "--port", &port.to_string(), "--at", at])
            .args(extra))
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        let in_flight = v["unread"].as_array().is_some_and(|gaps| {
            !gaps.is_empty()
                && gaps
                    .iter()
                    .all(|g| g["state"] == "pending" || g["state"] == "not_received")
        });
        if !in_flight || std::time::Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The (src_ip, src_port) of every match.
fn matched(v: &Value) -> Vec<(String, u64)> {
    v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["src_ip"].as_str().unwrap_or_default().to_owned(),
                m["src_port"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn lookups_name_the_true_subscriber_behind_real_snat() {
    let Some(mut lab) = lab() else { return };
    build(&lab);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let ns = lab.ns("cgn");
    let up = Up::start_in(
        &["ip", "netns", "exec", &ns],
        std::path::Path::new(NATLAKE),
        &data,
        "1s",
        &["--conntrack"],
    )
    .unwrap();

    // The server, its output collected in a file.
    let server_out = dir.path().join("server.txt");
    let server = lab
        .exec("srv", &["python3", "-c", SERVER])
        .stdout(std::fs::File::create(&server_out).unwrap())
        .spawn()
        .unwrap();
    lab.children.push(server);
    wait_for(Duration::from_secs(20), "the server", || {
        Ok(std::fs::read_to_string(&server_out)?
            .contains("ready")
            .then_some(()))
    })
    .unwrap();

    // Both subscribers at once, interleaving their connections.
    let clients: Vec<Child> = [("suba", "100.64.1.2"), ("subb", "100.64.2.2")]
        .iter()
        .map(|(role, me)| {
            lab.exec(role, &["python3", "-c", CLIENT, me, SRV_IP, "12"])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in clients {
        assert!(c.wait().unwrap().success(), "client failed");
    }
    // Port reuse: A and then B on the single public port of the 7777 rule; A's mapping is
    // deleted in between (as a timeout would), B gets the same public address and port.
    run(&mut lab.exec(
        "suba",
        &["python3", "-c", UDP_CLIENT, "100.64.1.2", SRV_IP, "5555"],
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    run(&mut lab.exec(
        "cgn",
        &["conntrack", "-D", "-p", "udp", "--orig-port-dst", "7777"],
    ))
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    run(&mut lab.exec(
        "subb",
        &["python3", "-c", UDP_CLIENT, "100.64.2.2", SRV_IP, "6666"],
    ))
    .unwrap();

    let seen = wait_for(
        Duration::from_secs(20),
        "the server to see every connection",
        || {
            let s = seen_lines(&std::fs::read_to_string(&server_out)?);
            Ok((s.len() == 26).then_some(s))
        },
    )
    .unwrap();
    let (tcp, reuse): (Vec<Seen>, Vec<Seen>) =
        seen.into_iter().partition(|s| s.public_ip != REUSE_IP);
    assert_eq!(tcp.len(), 24);
    assert!(
        tcp.iter().all(|s| s.public_ip.starts_with("198.51.100.2")),
        "{tcp:?}"
    );
    assert_eq!(reuse.len(), 2);
    assert_eq!(
        reuse[0].public_port, reuse[1].public_port,
        "the rule forces one public port"
    );
    assert_ne!(reuse[0].inside_ip, reuse[1].inside_ip);

    // The port forward: the server (a remote) connects to the forwarded public port.
    let fwd_out = dir.path().join("forwarded.txt");
    let fwd = lab
        .exec("suba", &["python3", "-c", FORWARDED_SERVER])
        .stdout(std::fs::File::create(&fwd_out).unwrap())
        .spawn()
        .unwrap();
    lab.children.push(fwd);
    wait_for(Duration::from_secs(20), "the forwarded server", || {
        Ok(std::fs::read_to_string(&fwd_out)?
            .contains("ready")
            .then_some(()))
    })
    .unwrap();
    run(&mut lab.exec(
        "srv",
        &[
            "python3",
            "-c",
            REMOTE_CLIENT,
            FORWARD_IP,
            &FORWARD_PORT.to_string(),
        ],
    ))
    .unwrap();
    let forwarded_at = wait_for(
        Duration::from_secs(20),
        "the forwarded server to see the remote",
        || {
            let out = std::fs::read_to_string(&fwd_out)?;
            Ok(out.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() == 3 && f[0] == SRV_IP).then(|| f[2].to_owned())
            }))
        },
    )
    .unwrap();

    // Every connection the server saw resolves to the subscriber who made it, once the lake
    // has the events (relay batches close every second; normalize polls).
    let first = &tcp[0];
    wait_for(
        Duration::from_secs(60),
        "the first connection in the lake",
        || {
            let v = lookup(&data, &first.public_ip, first.public_port, &first.at, &[]);
            Ok((!matched(&v).is_empty()).then_some(()))
        },
    )
    .unwrap();
    let last = tcp.iter().max_by(|a, b| a.at.cmp(&b.at)).unwrap().clone();
    wait_for(
        Duration::from_secs(60),
        "the last connection in the lake",
        || {
            let v = lookup(&data, &last.public_ip, last.public_port, &last.at, &[]);
            Ok((!matched(&v).is_empty()).then_some(()))
        },
    )
    .unwrap();
    let check_all = |phase: &str| {
        for s in &tcp {
            let v = lookup(
                &data,
                &s.public_ip,
                s.public_port,
                &s.at,
                &["--proto", "tcp"],
            );
            assert_eq!(
                matched(&v),
                [(s.inside_ip.clone(), u64::from(s.inside_port))],
                "{phase}: {s:?} answered {v}"
            );
            assert_eq!(v["ambiguous"], false, "{phase}: {v}");
            assert!(!v["matches"][0]["evidence"].as_array().unwrap().is_empty());
        }
        // The forwarded public port names A's server, not the remote that connected.
        let v = lookup(
            &data,
            FORWARD_IP,
            FORWARD_PORT,
            &forwarded_at,
            &["--proto", "tcp"],
        );
        assert_eq!(
            matched(&v),
            [("100.64.1.2".to_owned(), 80)],
            "{phase}: port forward answered {v}"
        );
        assert_eq!(v["ambiguous"], false, "{phase}: {v}");
        // Its far end is the remote that connected.
        assert_eq!(
            v["matches"][0]["destinations"][0]["dst_ip"], SRV_IP,
            "{phase}: {v}"
        );

        // A port of the pool nobody used: no match, not a guess.
        let unused = (20000..21000)
            .find(|p| !tcp.iter().any(|s| s.public_port == *p))
            .unwrap();
        let v = lookup(&data, &tcp[0].public_ip, unused, &tcp[0].at, &[]);
        assert!(matched(&v).is_empty(), "{phase}: unused port answered {v}");

        // The reused port: with a window covering both, ambiguous with both subscribers; at
        // B's instant with a window shorter than the gap, only B (A's mapping was deleted 300 ms
        // before; the window absorbs the relay stamping NEW events on receipt).
        let (ra, rb) = (&reuse[0], &reuse[1]);
        let v = lookup(&data, REUSE_IP, rb.public_port, &rb.at, &["--window", "30"]);
        let mut got = matched(&v);
        got.sort();
        assert_eq!(
            got,
            [
                (ra.inside_ip.clone(), u64::from(ra.inside_port)),
                (rb.inside_ip.clone(), u64::from(rb.inside_port))
            ],
            "{phase}: {v}"
        );
        assert_eq!(v["ambiguous"], true, "{phase}: {v}");
        let v = lookup(
            &data,
            REUSE_IP,
            rb.public_port,
            &rb.at,
            &["--window", "0.15"],
        );
        assert_eq!(
            matched(&v),
            [(rb.inside_ip.clone(), u64::from(rb.inside_port))],
            "{phase}: {v}"
        );
    };
    wait_for(
        Duration::from_secs(60),
        "the reuse events in the lake",
        || {
            let v = lookup(
                &data,
                REUSE_IP,
                reuse[1].public_port,
                &reuse[1].at,
                &["--window", "30"],
            );
            Ok((matched(&v).len() == 2).then_some(()))
        },
    )
    .unwrap();
    check_all("fresh lake");

    // The compact function, as if two hours had passed: merged objects and a carry; the same
    // answers, now read through the carry.
    let later =
        natlake_core::time::format_time(natlake_core::time::now_micros() + 2 * 3_600_000_000);
    let report: Value = serde_json::from_str(
        &run(Command::new(NATLAKE)
            .args(["compact", "--data-dir"])
            .arg(&data)
            .args(["--now", &later]))
        .unwrap(),
    )
    .unwrap();
    assert!(
        report["hours"][0]["objects_merged"].as_u64().unwrap() > 0,
        "{report}"
    );
    let v = lookup(&data, &first.public_ip, first.public_port, &first.at, &[]);
    assert!(
        v["carry_hour"].is_string(),
        "lookup did not use the carry: {v}"
    );
    check_all("after compaction");
    assert!(up.stop().unwrap().success());
}
