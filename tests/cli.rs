//! The operator commands of the `natlake` binary, run as real processes: `demo` (the README's
//! first command), `lookup`, `raw cat` and `parse`. Each answer is checked against the bytes it
//! claims to come from, not against itself.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use anyhow::Context;
use natlake_e2e::{corpus, run};
use serde_json::Value;

const NATLAKE: &str = env!("CARGO_BIN_EXE_natlake");

fn json_lines(text: &str) -> anyhow::Result<Vec<Value>> {
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("not JSON: {l}")))
        .collect()
}

/// Every subcommand's arguments build (clap checks a command's definition only when that
/// command is parsed, so a clash in one would pass every test that runs another).
#[test]
fn every_subcommand_has_help() -> anyhow::Result<()> {
    let top = run(Command::new(NATLAKE).arg("--help"))?;
    let subcommands: Vec<&str> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    for want in [
        "up",
        "demo",
        "lookup",
        "raw",
        "parse",
        "normalize",
        "compact",
        "sql",
        "dead-letters",
        "relays",
    ] {
        assert!(
            subcommands.contains(&want),
            "{want} missing from {subcommands:?}"
        );
    }
    for sub in subcommands {
        let help = run(Command::new(NATLAKE).args([sub, "--help"]))?;
        assert!(help.contains("Usage:"), "{sub}: {help}");
    }
    Ok(())
}

/// `natlake demo` prints an attribution answer for the events it sent; `natlake lookup` on the
/// same directory gives the same answer, and `natlake raw cat` shows that the evidence points at
/// the datagram that made the mapping.
#[test]
fn demo_answer_matches_lookup_and_its_evidence() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = Command::new(NATLAKE)
        .args(["demo", "--data-dir"])
        .arg(dir.path())
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let answer: Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("demo printed no JSON answer; stderr: {stderr}"))?;

    // The demo's subscriber 100.64.0.10:40001 held 198.51.100.20:61001 over TCP; the same
    // public port went to 100.64.0.11 over UDP afterwards, which a TCP question must not name.
    let m = answer["matches"].as_array().context("matches")?;
    assert_eq!(m.len(), 1, "{answer}");
    assert_eq!(answer["ambiguous"], false, "{answer}");
    assert_eq!(m[0]["src_ip"], "100.64.0.10", "{answer}");
    assert_eq!(m[0]["src_port"], 40001, "{answer}");
    assert_eq!(m[0]["x_ip"], "198.51.100.20", "{answer}");
    assert_eq!(m[0]["x_port"], 61001, "{answer}");
    assert_eq!(m[0]["protocol"], 6, "{answer}");
    assert!(m[0]["end"].is_string(), "the DESTROY closes it: {answer}");

    // The same question through `natlake lookup` on the directory the demo left behind.
    let at = stderr
        .lines()
        .find_map(|l| l.strip_prefix("demo: GET "))
        .and_then(|url| url.split(['?', '&']).find_map(|kv| kv.strip_prefix("at=")))
        .context("demo did not print its question")?;
    let lookup = |extra: &[&std::ffi::OsStr]| -> anyhow::Result<Value> {
        Ok(serde_json::from_str(&run(Command::new(NATLAKE)
            .args(["lookup", "--data-dir"])
            .arg(dir.path())
            .args(extra)
            .args([
                "--ip",
                "198.51.100.20",
                "--port",
                "61001",
                "--proto",
                "tcp",
                "--at",
                at,
            ]))?)?)
    };
    let looked_up = lookup(&[])?;
    assert_eq!(looked_up["matches"], answer["matches"]);
    assert_eq!(looked_up["ambiguous"], answer["ambiguous"]);

    // With identity sources, `natlake lookup` reads who held the inside address at `at`: the
    // demo normalized without any, so the holder now named is the subscriber, plainly.
    let ids = dir.path().join("identity.csv");
    std::fs::write(
        &ids,
        "ip,subscriber,start,end\n100.64.0.10,sub-demo,2000-01-01T00:00:00Z,\n",
    )?;
    let cfg = dir.path().join("enrich.toml");
    std::fs::write(
        &cfg,
        format!(
            "identity = [{{ path = \"file:{}\", format = \"csv\" }}]\n",
            ids.display()
        ),
    )?;
    let with_ids = lookup(&["--enrich-config".as_ref(), cfg.as_os_str()])?;
    assert_eq!(with_ids["ambiguous"], false, "{with_ids}");
    assert_eq!(
        with_ids["matches"][0]["subscriber"], "sub-demo",
        "{with_ids}"
    );
    assert_eq!(
        with_ids["matches"][0]["subscriber_at_time"], "sub-demo",
        "{with_ids}"
    );

    // The embedded relay left its last heartbeat: stopped, with everything it received stored
    // (so the answers above were complete), and the relay named in the evidence keys.
    let relays = |args: &[&str]| -> anyhow::Result<Vec<Value>> {
        json_lines(&run(Command::new(NATLAKE)
            .arg("relays")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path()))?)
    };
    let listed = relays(&["list"])?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let relay = listed[0]["relay"].as_str().context("relay id")?.to_owned();
    assert_eq!(listed[0]["stopped"], true, "{listed:?}");
    let through = listed[0]["stored_through"]["syslog_udp"]
        .as_str()
        .context("stored_through")?;
    assert!(through > at, "stored through {through}, asked about {at}");
    let first_key = m[0]["evidence"][0]["key"]
        .as_str()
        .context("evidence key")?;
    assert!(
        first_key.contains(&format!("/{relay}_")),
        "{relay} vs {first_key}"
    );
    let retired = relays(&["retire", "--reason", "demo over", &relay])?;
    assert_eq!(retired[0]["reason"], "demo over", "{retired:?}");
    assert_eq!(relays(&["list"])?[0]["retired"]["reason"], "demo over");
    let unknown = Command::new(NATLAKE)
        .args([
            "relays",
            "retire",
            "--reason",
            "x",
            "no-such-relay",
            "--data-dir",
        ])
        .arg(dir.path())
        .output()?;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no heartbeat"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // What the relay dropped: nothing in the demo. A span as a relay records it (a burst its
    // queue could not take, at the question's time) is listed, makes the answer ambiguous, and
    // once an operator accepts it, is listed as an accepted loss instead.
    let drops = |extra: &[&str]| {
        let mut args = vec!["drops", "--since", at, "--until", at];
        args.extend(extra);
        relays(&args)
    };
    assert!(drops(&[])?.is_empty());
    let at_us = natlake_core::time::parse_time(at)?;
    let key = natlake_raw::heartbeat::drops_key(&relay, "syslog_udp", at_us);
    let span = natlake_raw::heartbeat::DropSpan {
        relay: relay.clone(),
        kind: "syslog_udp".into(),
        first_us: at_us,
        last_us: at_us + 1_000_000,
        messages: 12,
        reasons: [("queue_full".to_string(), 12)].into(),
    };
    let path = dir.path().join(&key);
    std::fs::create_dir_all(path.parent().context("span dir")?)?;
    std::fs::write(&path, serde_json::to_vec(&span)?)?;
    let listed = drops(&[])?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["key"], key.as_str(), "{listed:?}");
    assert_eq!(listed[0]["messages"], 12, "{listed:?}");
    assert!(listed[0].get("accepted").is_none(), "{listed:?}");
    let dropped = lookup(&[])?;
    assert_eq!(dropped["ambiguous"], true, "{dropped}");
    assert_eq!(dropped["unread"][0]["key"], key.as_str(), "{dropped}");
    assert_eq!(dropped["unread"][0]["state"], "dropped", "{dropped}");
    let accepted = relays(&["accept-drops", "--reason", "demo burst, checked", &key])?;
    assert_eq!(accepted[0]["reason"], "demo burst, checked", "{accepted:?}");
    assert_eq!(drops(&[])?[0]["accepted"]["covers_span"], true);
    let after = lookup(&[])?;
    assert_eq!(after["ambiguous"], false, "{after}");
    assert_eq!(after["matches"], answer["matches"], "{after}");
    let losses = after["accepted_losses"]
        .as_array()
        .context("accepted_losses")?;
    assert!(
        losses.iter().any(|g| g["state"] == "accepted"
            && g["reason"]
                .as_str()
                .is_some_and(|r| r.contains("demo burst, checked"))),
        "{after}"
    );

    // Every piece of evidence names a raw object and a record index; the record is the
    // conntrack line of this mapping (create or destroy).
    let evidence = m[0]["evidence"].as_array().context("evidence")?;
    assert_eq!(evidence.len(), 2, "create and destroy: {answer}");
    for ev in evidence {
        let key = ev["key"].as_str().context("evidence key")?;
        let index = ev["record"].as_u64().context("evidence record")?;
        let from_file = run(Command::new(NATLAKE)
            .args(["raw", "cat"])
            .arg(dir.path().join(key)))?;
        let url = format!("file://{}", dir.path().display());
        let from_store = run(Command::new(NATLAKE).args(["raw", "cat", "--store", &url, key]))?;
        assert_eq!(from_file, from_store, "{key}");
        let lines = json_lines(&from_file)?;
        assert_eq!(lines[0]["header"], true, "{key}");
        assert_eq!(lines[0]["kind"], "syslog_udp", "{key}");
        let rec = lines[1..]
            .iter()
            .find(|r| r["index"] == index)
            .with_context(|| format!("{key} has no record {index}"))?;
        let payload = rec["payload"].as_str().context("payload is text")?;
        assert!(
            payload.contains("src=100.64.0.10")
                && payload.contains("sport=40001")
                && payload.contains("dport=61001"),
            "{key}#{index}: {payload}"
        );
        assert_eq!(rec["kind"], "syslog_udp");
        assert!(
            rec["peer"]
                .as_str()
                .is_some_and(|p| p.starts_with("127.0.0.1:")),
            "{rec}"
        );
    }
    Ok(())
}

/// `raw cat` shows binary payloads as base64, and on a truncated object prints the records
/// before the damage and then fails with a reason instead of pretending the object ended.
#[test]
fn raw_cat_binary_and_truncated_objects() -> anyhow::Result<()> {
    use natlake_raw::{BatchHeader, BatchWriter, InputKind, Record};
    let header = BatchHeader {
        format_version: natlake_raw::VERSION,
        relay_id: "cli-test".into(),
        batch_id: "b".into(),
        kind: InputKind::Ipfix,
        created_ns: 1_700_000_000_000_000_000,
        labels: Default::default(),
    };
    let binary: Vec<u8> = vec![0, 10, 0, 0x2c, 0xff, 0xfe, b'\n', 0];
    let mut w = BatchWriter::new(&header, 3)?;
    w.push(&Record {
        recv_ns: 1_700_000_000_000_000_001,
        kind: InputKind::Ipfix,
        flags: 0,
        peer: Some("192.0.2.7:4739".parse()?),
        payload: binary.clone(),
    })?;
    // Enough incompressible records (several zstd blocks of 128 KiB) that cutting the
    // object's tail loses some of them and keeps others.
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..2000 {
        let payload: Vec<u8> = (0..200)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        w.push(&Record {
            recv_ns: 1_700_000_000_000_000_002 + i,
            kind: InputKind::Ipfix,
            flags: 0,
            peer: None,
            payload,
        })?;
    }
    let bytes = w.finish()?;
    let dir = tempfile::tempdir()?;
    let whole = dir.path().join("whole.zst");
    std::fs::write(&whole, &bytes)?;

    let lines = json_lines(&run(Command::new(NATLAKE)
        .args(["raw", "cat"])
        .arg(&whole))?)?;
    assert_eq!(lines.len(), 1 + 2001);
    assert_eq!(lines[0]["relay_id"], "cli-test");
    assert_eq!(lines[1]["index"], 0);
    assert_eq!(lines[1]["peer"], "192.0.2.7:4739");
    assert!(lines[1]["payload"].is_null(), "{}", lines[1]);
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD.decode(
        lines[1]["payload_base64"]
            .as_str()
            .context("payload_base64")?,
    )?;
    assert_eq!(decoded, binary);

    let cut = dir.path().join("cut.zst");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3])?;
    let out = Command::new(NATLAKE)
        .args(["raw", "cat"])
        .arg(&cut)
        .output()?;
    assert!(!out.status.success(), "a truncated object must fail");
    let printed = json_lines(&String::from_utf8(out.stdout)?)?;
    assert!(
        printed.len() > 1 && printed.len() < 1 + 2001,
        "{} lines",
        printed.len()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.zst"), "{err}");

    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not a raw object")?;
    let out = Command::new(NATLAKE)
        .args(["raw", "cat"])
        .arg(&junk)
        .output()?;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a readable raw object"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn parse_lines(format: &str, input: &str) -> anyhow::Result<(Vec<Value>, String)> {
    let mut child = Command::new(NATLAKE)
        .args(["parse", "--format", format])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let Output {
        status,
        stdout,
        stderr,
    } = child.wait_with_output()?;
    let stderr = String::from_utf8(stderr)?;
    anyhow::ensure!(status.success(), "parse failed: {stderr}");
    Ok((json_lines(&String::from_utf8(stdout)?)?, stderr))
}

/// The corpus samples this test reads: the first line of `file` for which `pick` returns the
/// bare message (without any syslog header the sample came with).
fn corpus_message(file: &str, pick: impl Fn(&str) -> Option<String>) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(corpus(file)).with_context(|| format!("reading corpus {file}"))?;
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .find_map(pick)
        .with_context(|| format!("no usable sample in {file}"))
}

/// `natlake parse` reads the spine's formats from real third-party lines, bare and inside RFC
/// 3164 and RFC 5424 envelopes, and names the same mapping in all three; a line it cannot read
/// is printed as an error with a reason and counted, and the command goes on.
#[test]
fn parse_reads_corpus_lines_in_every_envelope() -> anyhow::Result<()> {
    let conntrack = corpus_message("conntrack.txt", |l| {
        (l.trim_start().starts_with("[NEW] tcp") && l.contains("[UNREPLIED]"))
            .then(|| l.to_string())
    })?;
    let iptables = corpus_message("iptables.txt", |l| {
        l.split_once(" kernel: ")
            .filter(|(_, m)| m.contains("SRC=") && m.contains("PROTO=TCP"))
            .map(|(_, m)| m.to_string())
    })?;
    let goflow2 = corpus_message("goflow2.jsonl", |l| {
        serde_json::from_str::<Value>(l)
            .ok()
            .filter(|v| v["src_addr"].is_string() && v["src_port"].is_number())
            .map(|_| l.to_string())
    })?;
    // The corpus has no conntrack-event-collector line; this one is in the collector's shape.
    let cec = r#"{"Type":"NEW","Original":{"Layer3":{"Src":"100.64.7.1","Dst":"203.0.113.80"},"Layer4":{"Protocol":6,"SrcPort":41000,"DstPort":443}},"Reply":{"Layer3":{"Src":"203.0.113.80","Dst":"198.51.100.77"},"Layer4":{"Protocol":6,"SrcPort":443,"DstPort":60123}}}"#;

    for (format, msg) in [
        ("conntrack", conntrack.as_str()),
        ("iptables", iptables.as_str()),
        ("goflow2", goflow2.as_str()),
        ("conntrack_json", cec),
    ] {
        let wrapped = [
            msg.to_string(),
            format!("<134>Nov 23 10:00:00 edge-1 natlake-test: {msg}"),
            format!("<134>1 2026-11-23T10:00:00Z edge-1 natlake-test - - - {msg}"),
        ];
        let mut seen: Vec<Value> = Vec::new();
        for (i, line) in wrapped.iter().enumerate() {
            for requested in ["auto", format] {
                let (events, stderr) = parse_lines(requested, &format!("{line}\n"))?;
                assert_eq!(
                    events.len(),
                    1,
                    "{format} via {requested}, form {i}: {events:?}"
                );
                let e = &events[0];
                assert!(e["error"].is_null(), "{format} form {i}: {e}");
                assert_eq!(e["format"], format, "{format} form {i}: {e}");
                assert!(stderr.contains("1 lines parsed, 0 rejected"), "{stderr}");
                if i > 0 {
                    assert_eq!(e["host"], "edge-1", "{format} form {i}: {e}");
                }
                // What the line says about who talked to whom is the same in every envelope.
                let who: Value = ["src_ip", "src_port", "x_ip", "x_port", "dst_ip", "dst_port"]
                    .iter()
                    .map(|k| (k.to_string(), e[*k].clone()))
                    .collect::<serde_json::Map<_, _>>()
                    .into();
                assert!(!e["src_ip"].is_null(), "{format}: {e}");
                seen.push(who);
            }
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{format}: {seen:?}");
        match format {
            "conntrack" => {
                // The public side comes from the reply tuple's destination.
                let reply_dst = msg
                    .split_whitespace()
                    .filter_map(|t| t.strip_prefix("dst="))
                    .nth(1)
                    .context("reply dst")?;
                assert_eq!(seen[0]["x_ip"], reply_dst, "{msg}");
            }
            "conntrack_json" => {
                assert_eq!(seen[0]["x_ip"], "198.51.100.77");
                assert_eq!(seen[0]["x_port"], 60123);
                assert_eq!(seen[0]["src_ip"], "100.64.7.1");
            }
            "iptables" => {
                let src = msg
                    .split_whitespace()
                    .find_map(|t| t.strip_prefix("SRC="))
                    .context("SRC=")?;
                assert_eq!(seen[0]["src_ip"], src, "{msg}");
            }
            _ => {
                let v: Value = serde_json::from_str(msg)?;
                assert_eq!(seen[0]["src_ip"], v["src_addr"], "{msg}");
                assert_eq!(seen[0]["src_port"], v["src_port"], "{msg}");
            }
        }
    }

    // A line nothing reads: reported with a reason, counted, and the next line still parsed.
    let (out, stderr) = parse_lines("auto", &format!("this is not a NAT log\n{cec}\n"))?;
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0]["line"], 1);
    assert!(
        out[0]["error"].as_str().is_some_and(|r| !r.is_empty()),
        "{}",
        out[0]
    );
    assert_eq!(out[1]["line"], 2);
    assert_eq!(out[1]["x_port"], 60123);
    assert!(stderr.contains("1 lines parsed, 1 rejected"), "{stderr}");

    // An unknown parser name is refused up front with the names that exist.
    let out = Command::new(NATLAKE)
        .args(["parse", "--format", "no-such-vendor"])
        .stdin(Stdio::null())
        .output()?;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("conntrack_json") && err.contains("juniper"),
        "{err}"
    );
    Ok(())
}
