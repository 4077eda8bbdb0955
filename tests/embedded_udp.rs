//! End to end on the embedded stack: `natlake up` as a real process, events over a real UDP
//! socket, Parquet on the local store, answers over HTTP — and the Parquet read back by
//! independent readers (pyarrow, the stock DuckDB CLI).

use std::net::UdpSocket;
use std::process::Command;
use std::time::Duration;

use natlake_e2e::{Up, files_with_suffix, repo_dir, run, wait_for};
use serde_json::{Value, json};

const NATLAKE: &str = env!("CARGO_BIN_EXE_natlake");

fn get(url: &str) -> anyhow::Result<(u16, Value)> {
    let resp = reqwest::blocking::get(url)?;
    let status = resp.status().as_u16();
    let body: Value = resp.json()?;
    Ok((status, body))
}

fn ts(t: f64) -> String {
    natlake_core::time::format_time((t * 1e6) as i64)
}

/// A conntrack event line as `conntrack -E -o timestamp,extended` prints it, in RFC 5424.
fn conntrack(
    t: f64,
    event: &str,
    proto: (&str, u8),
    inside: (&str, u16),
    public: (&str, u16),
    dst: (&str, u16),
) -> String {
    let tag = format!("[{event}]");
    format!(
        "<134>1 {} cgn-e2e conntrack - - - [{t:.6}]\t{tag:>9} ipv4     2 {} {:<6} 120 src={} dst={} sport={} dport={} src={} dst={} sport={} dport={}",
        ts(t),
        proto.0,
        proto.1,
        inside.0,
        dst.0,
        inside.1,
        dst.1,
        dst.0,
        public.0,
        dst.1,
        public.1
    )
}

#[test]
fn udp_events_become_parquet_and_answer_lookups() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let up = Up::start(std::path::Path::new(NATLAKE), dir.path(), "1s")?;
    let now = natlake_core::time::now_micros() as f64 / 1e6;
    let t0 = now - 120.0;
    let pub_ip = "198.51.100.50";
    let dst = ("203.0.113.10", 443);
    let mut msgs = vec![
        // subscriber A holds 198.51.100.50:61000 from t0 to t0+30
        conntrack(
            t0,
            "NEW",
            ("tcp", 6),
            ("100.64.1.1", 40000),
            (pub_ip, 61000),
            dst,
        ),
        conntrack(
            t0 + 30.0,
            "DESTROY",
            ("tcp", 6),
            ("100.64.1.1", 40000),
            (pub_ip, 61000),
            dst,
        ),
        // subscriber B gets the same public port 60 s later (no delete yet: still open)
        conntrack(
            t0 + 60.0,
            "NEW",
            ("tcp", 6),
            ("100.64.1.2", 41000),
            (pub_ip, 61000),
            dst,
        ),
        // subscriber C on another port, bare line without a syslog envelope
        format!(
            "[{:.6}]\t    [NEW] ipv4     2 udp      17 30 src=100.64.1.3 dst=203.0.113.53 sport=5353 dport=53 [UNREPLIED] src=203.0.113.53 dst={pub_ip} sport=53 dport=62000",
            t0 + 10.0
        ),
        // goflow2 flow with post-NAT fields: subscriber D observed on :63000 for 20 s
        format!(
            r#"{{"type":"IPFIX","time_received_ns":{},"sampler_address":"192.0.2.1","time_flow_start_ns":{},"time_flow_end_ns":{},"bytes":1500,"packets":3,"src_addr":"100.64.1.4","dst_addr":"203.0.113.7","proto":"TCP","src_port":50000,"dst_port":80,"post_nat_src_ipv4_address":"{pub_ip}","post_nat_src_transport_port":63000}}"#,
            ((t0 + 41.0) * 1e9) as i64,
            ((t0 + 20.0) * 1e9) as i64,
            ((t0 + 40.0) * 1e9) as i64
        ),
    ];
    // conntrack-event-collector JSON inside RFC 5424 (its Timestamp is 0: the envelope's time
    // is the event time): subscriber E on :64000
    msgs.push(format!(
        r#"<134>1 {} cgn-e2e ct-collector - - - {{"Timestamp":0,"Type":"NEW","Id":1,"Original":{{"Layer3":{{"Protonum":2,"Protoname":"ipv4","Src":"100.64.1.5","Dst":"203.0.113.20"}},"Layer4":{{"Protonum":0,"Protoname":"udp","Sport":7000,"Dport":123}},"Counter":{{"Packets":0,"Bytes":0}}}},"Reply":{{"Layer3":{{"Protonum":2,"Protoname":"ipv4","Src":"203.0.113.20","Dst":"{pub_ip}"}},"Layer4":{{"Protonum":0,"Protoname":"udp","Sport":123,"Dport":64000}},"Counter":{{"Packets":0,"Bytes":0}}}},"UNREPLIED":true,"ASSURED":false}}"#,
        ts(t0 + 50.0)
    ));
    // An nfware port-block allocation (RFC 5424): subscriber F holds ports 5120-5631.
    msgs.push(format!(
        "<134>1 {} cgn-e2e nfware - - - A VRF 0 INT 100.64.1.6 EXT {pub_ip}:5120-5631",
        ts(t0 + 5.0)
    ));
    // An iptables LOG line (Cloud Foundry style deny prefix) for the firewall table.
    msgs.push(format!(
        "<4>1 {} fw-e2e kernel - - - [4475569.016000] DENY_c0ffee IN=eth0 OUT= SRC=100.64.1.9 DST=203.0.113.99 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=5555 DPT=22 WINDOW=1 RES=0x00 SYN URGP=0",
        ts(t0 + 5.0)
    ));
    // One line each for the log-aggregation tables (http_access, mail, auth), so every view of
    // queries/views.sql has objects to bind to in the stock DuckDB CLI below.
    let clf = chrono::DateTime::from_timestamp(t0 as i64 + 5, 0)
        .map(|d| d.format("%d/%b/%Y:%H:%M:%S +0000").to_string())
        .unwrap_or_default();
    msgs.push(format!(
        "<190>1 {} web-e2e nginx - - - 203.0.113.79 - - [{clf}] \"GET /index.html HTTP/1.1\" 200 612 \"-\" \"curl/8.5.0\"",
        ts(t0 + 5.0)
    ));
    msgs.push(format!(
        "<38>1 {} host-e2e sshd 4242 - - Accepted publickey for alice from 203.0.113.77 port 50022 ssh2",
        ts(t0 + 5.0)
    ));
    msgs.push(format!(
        "<22>1 {} mx-e2e postfix/smtpd 77 - - connect from mail.example.net[203.0.113.78]",
        ts(t0 + 5.0)
    ));
    let junk = "<13>1 2024-01-01T00:00:00Z host app - - - this is not a NAT event at all";
    msgs.push(junk.to_string());
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    for m in &msgs {
        sock.send_to(m.as_bytes(), up.syslog_udp)?;
    }
    // Batches close after 1 s; the normalizer polls every 0.5 s.
    let lake = dir.path().join("lake");
    wait_for(
        Duration::from_secs(60),
        "nat_events Parquet and a rejects object",
        || {
            let nat = files_with_suffix(&lake.join("nat_events"), ".parquet");
            let rej = files_with_suffix(&lake.join("rejects"), ".parquet");
            // And its done marker, written last: until then answers list the object as pending.
            let done = files_with_suffix(&dir.path().join("_state/normalized"), ".json");
            Ok((!nat.is_empty() && !rej.is_empty() && !done.is_empty()).then_some(()))
        },
    )?;
    let nat_files = files_with_suffix(&lake.join("nat_events"), ".parquet");
    assert!(
        nat_files
            .iter()
            .all(|p| p.to_string_lossy().contains("/x_net=198.51.100.0_24/")),
        "partitioned by public /24: {nat_files:?}"
    );

    let attribution = |port: u16, at: f64, extra: &str| -> anyhow::Result<(u16, Value)> {
        get(&up.url(&format!(
            "/v1/attribution?ip={pub_ip}&port={port}&at={}{extra}",
            ts(at)
        )))
    };

    // Inside A's interval: A, with evidence pointing at raw records.
    let (st, a) = attribution(61000, t0 + 15.0, "&proto=tcp")?;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["ambiguous"], false, "{a}");
    let m = a["matches"].as_array().expect("matches");
    assert_eq!(m.len(), 1, "{a}");
    assert_eq!(m[0]["src_ip"], "100.64.1.1");
    assert_eq!(m[0]["src_port"], 40000);
    assert_eq!(m[0]["x_port"], 61000);
    assert_eq!(m[0]["protocol"], 6);
    assert_eq!(m[0]["end"], ts(t0 + 30.0));
    let ev = m[0]["evidence"].as_array().expect("evidence");
    assert_eq!(ev.len(), 2, "create and delete: {a}");
    assert!(
        ev[0]["key"]
            .as_str()
            .unwrap_or("")
            .starts_with("raw/syslog_udp/"),
        "{a}"
    );

    // After B took the port: B, still open.
    let (_, b) = attribution(61000, t0 + 90.0, "")?;
    assert_eq!(b["matches"][0]["src_ip"], "100.64.1.2", "{b}");
    assert_eq!(b["matches"][0]["end"], Value::Null, "{b}");
    assert_eq!(b["ambiguous"], false);

    // Between A's delete and B's create nobody held it.
    let (_, gap) = attribution(61000, t0 + 45.0, "")?;
    assert_eq!(gap["matches"].as_array().map(Vec::len), Some(0), "{gap}");

    // A window that spans both: flagged ambiguous, never guessed.
    let (_, amb) = attribution(61000, t0 + 45.0, "&window=20")?;
    assert_eq!(amb["ambiguous"], true, "{amb}");
    assert_eq!(amb["matches"].as_array().map(Vec::len), Some(2), "{amb}");

    // UDP subscriber C, from a bare line.
    let (_, c) = attribution(62000, t0 + 12.0, "&proto=udp")?;
    assert_eq!(c["matches"][0]["src_ip"], "100.64.1.3", "{c}");
    assert_eq!(c["matches"][0]["src_port"], 5353, "{c}");

    // Flow-observed subscriber D.
    let (_, d) = attribution(63000, t0 + 30.0, "")?;
    assert_eq!(d["matches"][0]["src_ip"], "100.64.1.4", "{d}");
    assert_eq!(d["matches"][0]["src_port"], 50000, "{d}");

    // conntrack-event-collector subscriber E.
    let (_, e) = attribution(64000, t0 + 55.0, "&proto=udp")?;
    assert_eq!(e["matches"][0]["src_ip"], "100.64.1.5", "{e}");
    assert_eq!(e["matches"][0]["src_port"], 7000, "{e}");
    assert_eq!(e["matches"][0]["start"], ts(t0 + 50.0), "{e}");

    // Unknown port: no match.
    let (_, none) = attribution(1234, t0 + 15.0, "")?;
    assert_eq!(none["matches"].as_array().map(Vec::len), Some(0), "{none}");

    // A port inside F's block answers F, with the block.
    let (_, f) = attribution(5200, t0 + 20.0, "&proto=tcp")?;
    assert_eq!(f["matches"][0]["src_ip"], "100.64.1.6", "{f}");
    assert_eq!(f["matches"][0]["x_port"], 5120, "{f}");
    assert_eq!(f["matches"][0]["x_port_end"], 5631, "{f}");
    assert_eq!(f["ambiguous"], false, "{f}");
    let range = format!(
        "x_ip={pub_ip}&timestamp_gt={}&timestamp_lt={}",
        ts(t0 - 1.0),
        ts(now + 1.0)
    );
    let (st, pb) = get(&up.url(&format!("/v1/port_blocks?{range}")))?;
    assert_eq!(st, 200, "{pb}");
    let rows = pb["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 1, "{pb}");
    assert_eq!(rows[0]["event_type"], "port_block_alloc", "{pb}");
    assert_eq!(rows[0]["x_port_end"], 5631, "{pb}");
    let (st, am) = get(&up.url(&format!("/v1/address_mappings?{range}")))?;
    assert_eq!(st, 200, "{am}");
    assert_eq!(am["rows"].as_array().map(Vec::len), Some(0), "{am}");

    // Bad parameters: 400 with a reason.
    let (st, bad) = get(&up.url("/v1/attribution?ip=not-an-ip&port=1&at=1700000000"))?;
    assert_eq!(st, 400);
    assert!(bad["error"].as_str().unwrap_or("").contains("ip"), "{bad}");
    let (st, _) = get(&up.url(&format!(
        "/v1/attribution?ip={pub_ip}&port=99999&at=1700000000"
    )))?;
    assert_eq!(st, 400);

    // A batch, as abuse desks send them: each item answered or refused on its own.
    let client = reqwest::blocking::Client::new();
    let resp = client
        .post(up.url("/v1/attribution/batch"))
        .body(
            json!({"queries": [
                {"ip": pub_ip, "port": 61000, "at": ts(t0 + 15.0), "proto": "tcp"},
                {"ip": pub_ip, "port": "99999", "at": ts(t0 + 15.0)},
            ]})
            .to_string(),
        )
        .send()?;
    assert_eq!(resp.status().as_u16(), 200);
    let b: Value = resp.json()?;
    assert_eq!(b["answers"][0]["matches"][0]["src_ip"], "100.64.1.1", "{b}");
    assert_eq!(b["answers"][0]["matches"][0]["src_port"], 40000, "{b}");
    assert!(
        b["answers"][1]["error"]
            .as_str()
            .unwrap_or("")
            .contains("port"),
        "{b}"
    );
    let resp = client
        .post(up.url("/v1/attribution/batch"))
        .body("{\"queries\": 7}")
        .send()?;
    assert_eq!(resp.status().as_u16(), 400);

    // Sessions in the cgn-ec shape.
    let (st, s) = get(&up.url(&format!(
        "/v1/sessions?x_ip={pub_ip}&x_port=61000&timestamp_gt={}&timestamp_lt={}",
        ts(t0 - 1.0),
        ts(now + 1.0)
    )))?;
    assert_eq!(st, 200, "{s}");
    let rows = s["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 3, "{s}");
    let events: Vec<&str> = rows
        .iter()
        .map(|r| r["event"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(events, ["A", "D", "A"]);
    for field in [
        "timestamp",
        "event",
        "protocol",
        "src_ip",
        "src_port",
        "x_ip",
        "x_port",
        "dst_ip",
        "dst_port",
        "vrf_id",
        "direction",
    ] {
        assert!(
            rows[0].get(field).is_some(),
            "missing {field} in {}",
            rows[0]
        );
    }
    assert_eq!(rows[0]["timestamp"], ts(t0));
    assert_eq!(rows[0]["dst_ip"], dst.0);
    assert_eq!(s["next_offset"], Value::Null);
    // Pagination never silently caps.
    let (_, p1) = get(&up.url(&format!(
        "/v1/sessions?x_ip={pub_ip}&timestamp_gt={}&timestamp_lt={}&limit=2",
        ts(t0 - 1.0),
        ts(now + 1.0)
    )))?;
    assert_eq!(p1["rows"].as_array().map(Vec::len), Some(2));
    assert_eq!(p1["next_offset"], 2, "{p1}");

    // The junk line is kept in rejects with its reason and bytes, via natlake sql.
    let out = run(Command::new(NATLAKE)
        .args(["sql", "--output", "json", "--data-dir"])
        .arg(dir.path())
        .arg("SELECT reason, decode(payload) AS payload, raw_key, input_kind FROM rejects"))?;
    let rejects: Vec<Value> = out
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(rejects.len(), 1, "{out}");
    assert_eq!(rejects[0]["payload"], junk);
    assert_eq!(rejects[0]["input_kind"], "syslog_udp");
    assert!(!rejects[0]["reason"].as_str().unwrap_or("").is_empty());

    // Independent readers: pyarrow reads the Hive-partitioned dataset with the documented schema.
    let py = format!(
        "import pyarrow.dataset as ds, json\n\
         d = ds.dataset({:?}, format='parquet', partitioning='hive')\n\
         t = d.to_table()\n\
         print(json.dumps({{'rows': t.num_rows, 'cols': t.schema.names, 'x_ip': sorted(set(t.column('x_ip').to_pylist())), 'time_type': str(t.schema.field('time').type)}}))",
        lake.join("nat_events").display().to_string()
    );
    let out = run(Command::new("python3").args(["-c", &py]))?;
    let v: Value = serde_json::from_str(out.trim())?;
    assert_eq!(
        v["rows"], 7,
        "3 sessions on :61000 + C + D + E + F's block: {v}"
    );
    assert_eq!(v["x_ip"], serde_json::json!([pub_ip]));
    assert_eq!(v["time_type"], "timestamp[us, tz=UTC]");
    let cols: Vec<&str> = v["cols"]
        .as_array()
        .expect("cols")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for c in [
        "time",
        "event",
        "src_ip",
        "src_port",
        "x_ip",
        "x_port",
        "raw_key",
        "raw_record",
        "recv_delay_us",
        "hour",
        "x_net",
    ] {
        assert!(cols.contains(&c), "column {c} missing from {cols:?}");
    }

    // The stock DuckDB CLI runs queries/views.sql against the same lake.
    let views = repo_dir().join("queries/views.sql");
    let audit_sql = views.with_file_name("audit.sql");
    let script = format!(
        "SET VARIABLE natlake_lake = '{}';\n.read {}\n.read {}\nSELECT (SELECT count(*) FROM nat_events WHERE x_port = 61000) AS n, (SELECT count(DISTINCT src_ip) FROM nat_events WHERE x_port = 61000) AS subs, (SELECT any_value(action) FROM firewall) AS fw, (SELECT count(*) FROM audit WHERE endpoint = 'attribution' AND who = 'anonymous') AS audited, (SELECT any_value(status) FROM http_access) AS http_status, (SELECT any_value(\"user\") FROM auth) AS ssh_user, (SELECT count(*) FROM mail) AS mail_rows, (SELECT count(*) FILTER (WHERE recv_time IS NULL OR epoch_us(recv_time) < epoch_us(time) OR epoch_us(recv_time) - epoch_us(time) > 600000000) FROM nat_events) AS bad_recv;",
        dir.path().display(),
        views.display(),
        audit_sql.display()
    );
    let script_path = dir.path().join("check.sql");
    std::fs::write(&script_path, script)?;
    let out = run(Command::new("duckdb")
        .arg("-json")
        .arg("-f")
        .arg(&script_path))?;
    let v: Value = serde_json::from_str(out.trim())?;
    assert_eq!(v[0]["n"], 3, "{out}");
    assert_eq!(v[0]["subs"], 2, "{out}");
    assert_eq!(v[0]["http_status"], 200, "{out}");
    assert_eq!(v[0]["ssh_user"], "alice", "{out}");
    assert_eq!(v[0]["mail_rows"], 1, "{out}");
    // Every row's receive time, shown from the stored delay, within a day of its time.
    assert_eq!(v[0]["bad_recv"], 0, "{out}");
    assert_eq!(v[0]["fw"], "deny", "{out}");
    // Every attribution answered over HTTP above left an audit record (at least the eight asked).
    assert!(v[0]["audited"].as_u64().unwrap_or(0) >= 8, "{out}");
    let audit = files_with_suffix(&dir.path().join("audit"), ".json");
    let batch = audit
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str::<Value>(&t).ok())
        .find(|r| r["endpoint"] == "attribution_batch")
        .expect("the batch request is audited");
    assert_eq!(
        batch["answered"][0]["matches"][0]["src_ip"], "100.64.1.1",
        "{batch}"
    );
    // natlake sql has the same audit table, built without DuckDB's JSON reader: the same count
    // as the stock CLI, and the batch's named inside address.
    let out = run(Command::new(NATLAKE)
        .args(["sql", "--output", "json", "--data-dir"])
        .arg(dir.path())
        .arg(
            "SELECT (SELECT count(*) FROM audit WHERE endpoint = 'attribution' AND who = 'anonymous') AS audited, \
             (SELECT count(*) FROM audit WHERE endpoint = 'attribution_batch' AND list_contains(named_inside, '100.64.1.1')) AS batch_named, \
             (SELECT count(*) FROM audit WHERE asked_ip IS NOT NULL AND asked_port IS NOT NULL) AS single",
        ))?;
    let mine: Value = serde_json::from_str(out.trim())?;
    assert_eq!(mine["audited"], v[0]["audited"], "{out}");
    assert!(mine["batch_named"].as_u64().unwrap_or(0) >= 1, "{out}");
    assert!(mine["single"].as_u64().unwrap_or(0) >= 8, "{out}");

    let status = up.stop()?;
    assert!(status.success(), "natlake up exits 0 on SIGTERM: {status}");
    Ok(())
}
