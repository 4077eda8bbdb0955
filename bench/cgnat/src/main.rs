//! The attribution benchmark's tools (bench/attribution.sh):
//! - `gen`: a generated CGNAT day as the edge relay would have stored it (conntrack events read
//!   from netlink, in raw objects closed every 60 s), the ground truth to ask about, and the same
//!   events as a CSV for PostgreSQL;
//! - `ask`: random attribution questions against a lookup service, checked against the truth,
//!   with latency percentiles;
//! - `psql-stats`: the same percentiles from psql's `\timing` output;
//! - `copy`: a store's objects into another store (the lake onto SeaweedFS);
//! - `mix`: a mixed-vendor day for the conversion benchmark (bench/normalize.sh; see mix.rs).

mod mix;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt::Write as _;
use std::io::{BufRead, BufWriter, Write};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::TryStreamExt;
use natlake_raw::{BatchHeader, BatchWriter, InputKind, Record};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use rand::rngs::SmallRng;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};

#[derive(Parser)]
#[command(about = "natlake attribution benchmark tools")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    Gen(GenArgs),
    /// A mixed-vendor day for the conversion benchmark (bench/normalize.sh).
    Mix(mix::MixArgs),
    Ask(AskArgs),
    PsqlStats {
        /// psql output with `\timing on`.
        file: PathBuf,
    },
    Copy {
        from: String,
        to: String,
        /// Only keys under this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Reads every raw object under a prefix as `normalize run` reads them (list, get,
    /// decompress, check each record's CRC) and does nothing else: the CPU time of reading,
    /// which bench/normalize.sh subtracts from normalize's to give parse + enrich + write alone.
    Read {
        store: String,
        #[arg(long, default_value = "raw/")]
        prefix: String,
    },
}

/// The generated day's shape (shared by `gen` and `mix`).
#[derive(clap::Args)]
pub(crate) struct DayArgs {
    #[arg(long, default_value_t = 20_000)]
    pub subscribers: u32,
    /// Public addresses in the pool (paired pooling: a subscriber always gets the same one).
    #[arg(long, default_value_t = 64)]
    pub public_ips: u32,
    /// New sessions per subscriber per hour.
    #[arg(long, default_value_t = 10.0)]
    pub sessions_per_hour: f64,
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// First hour, Unix seconds (default 2026-11-01T00:00:00Z).
    #[arg(long, default_value_t = 1_793_491_200)]
    pub start: i64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(clap::Args)]
struct GenArgs {
    /// Store URL the raw objects go to (file:///… or s3://…).
    #[arg(long)]
    store: String,
    /// Ground truth: one sampled session per line (CSV).
    #[arg(long)]
    truth: PathBuf,
    /// Every event as CSV for PostgreSQL's COPY (optional).
    #[arg(long)]
    csv: Option<PathBuf>,
    #[command(flatten)]
    day: DayArgs,
    /// Sessions sampled into the ground truth.
    #[arg(long, default_value_t = 5_000)]
    questions: usize,
}

#[derive(clap::Args)]
struct AskArgs {
    /// Lookup service base URL.
    #[arg(long)]
    url: String,
    #[arg(long)]
    truth: PathBuf,
    /// Questions to ask (taken in a seeded random order from the truth file).
    #[arg(long, default_value_t = 1000)]
    n: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// `Authorization: Bearer` key, when the service wants one.
    #[arg(long)]
    api_key: Option<String>,
    /// Also write the questions as SQL for PostgreSQL (same order).
    #[arg(long)]
    sql_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::Gen(a) => generate(a).await,
        Cmd::Mix(a) => mix::mix(a).await,
        Cmd::Ask(a) => ask(a).await,
        Cmd::PsqlStats { file } => psql_stats(file),
        Cmd::Copy { from, to, prefix } => copy(&from, &to, &prefix).await,
        Cmd::Read { store, prefix } => read(&store, &prefix).await,
    }
}

// ---------------------------------------------------------------- the generated day

const SEC: i64 = 1_000_000;
const INSIDE_BASE: u32 = u32::from_be_bytes([100, 64, 0, 1]);
const PUBLIC_BASE: u32 = u32::from_be_bytes([198, 51, 100, 1]);

#[derive(Clone, Copy)]
struct Session {
    start: i64,
    end: i64,
    proto: u8,
    inside: Ipv4Addr,
    sport: u16,
    public: Ipv4Addr,
    xport: u16,
    dst: Ipv4Addr,
    dport: u16,
}

/// A conntrack event line as the relay renders ctnetlink messages.
fn line(s: &Session, new: bool, out: &mut String) {
    let t = if new { s.start } else { s.end };
    let name = if s.proto == 6 { "tcp" } else { "udp" };
    let _ = write!(
        out,
        "[{}.{:06}]\t{:>9} ipv4     2 {name:<8} {} ",
        t.div_euclid(SEC),
        t.rem_euclid(SEC),
        if new { "[NEW]" } else { "[DESTROY]" },
        s.proto
    );
    if new {
        let _ = write!(out, "{} ", if s.proto == 6 { 120 } else { 30 });
        if s.proto == 6 {
            out.push_str("SYN_SENT ");
        }
    }
    let _ = write!(
        out,
        "src={} dst={} sport={} dport={} ",
        s.inside, s.dst, s.sport, s.dport
    );
    if new {
        out.push_str("[UNREPLIED] ");
    } else {
        let pk = (s.end - s.start) / SEC + 2;
        let _ = write!(out, "packets={pk} bytes={} ", pk * 120);
    }
    let _ = write!(
        out,
        "src={} dst={} sport={} dport={}",
        s.dst, s.public, s.dport, s.xport
    );
    if !new {
        let pk = (s.end - s.start) / SEC + 1;
        let _ = write!(out, " packets={pk} bytes={} [ASSURED]", pk * 900);
    }
}

/// `YYYY-MM-DD HH:MM:SS.ffffff+00` for PostgreSQL.
fn pg_time(t: i64) -> String {
    let secs = t.div_euclid(SEC);
    let (y, m, d) = natlake_raw::key::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}+00",
        s / 3600,
        s / 60 % 60,
        s % 60,
        t.rem_euclid(SEC)
    )
}

fn duration(rng: &mut SmallRng) -> i64 {
    let r: f64 = rng.random();
    let secs = if r < 0.5 {
        rng.random_range(0.05..10.0) // DNS, short HTTP
    } else if r < 0.9 {
        rng.random_range(10.0..300.0)
    } else {
        rng.random_range(300.0..10_800.0) // long-lived: these cross hours and need the carry
    };
    (secs * 1e6) as i64
}

/// Raw objects of one input kind, closed every 60 s of event time like the relay's default.
struct RawSink {
    store: natlake_store::DynStore,
    writer: Option<(i64, BatchWriter)>,
    seq: u64,
    objects: u64,
    bytes: u64,
}

impl RawSink {
    async fn push(&mut self, t: i64, payload: &[u8]) -> anyhow::Result<()> {
        let window = t.div_euclid(60 * SEC);
        if matches!(&self.writer, Some((w, _)) if *w != window) {
            self.flush().await?;
        }
        if self.writer.is_none() {
            self.seq += 1;
            let header = BatchHeader {
                format_version: natlake_raw::VERSION,
                relay_id: "bench-cgn-1".into(),
                batch_id: format!("00000000-0000-7000-8000-{:012x}", self.seq),
                kind: InputKind::ConntrackNetlink,
                created_ns: window * 60 * SEC * 1000,
                labels: Default::default(),
            };
            self.writer = Some((window, BatchWriter::new(&header, 1)?));
        }
        if let Some((_, w)) = &mut self.writer {
            w.push(&Record {
                recv_ns: (t + 20_000) * 1000, // the relay receives it 20 ms later
                kind: InputKind::ConntrackNetlink,
                flags: 0,
                peer: None,
                payload: payload.to_vec(),
            })?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        let Some((window, w)) = self.writer.take() else {
            return Ok(());
        };
        let key = natlake_raw::key::raw_key(
            InputKind::ConntrackNetlink,
            window * 60 * SEC * 1000,
            "bench-cgn-1",
            &format!("00000000-0000-7000-8000-{:012x}", self.seq),
        );
        let bytes = w.finish()?;
        self.bytes += bytes.len() as u64;
        self.objects += 1;
        self.store
            .put(&Path::from(key.as_str()), PutPayload::from(bytes))
            .await
            .with_context(|| format!("writing {key}"))?;
        Ok(())
    }
}

async fn generate(a: GenArgs) -> anyhow::Result<()> {
    if a.day.public_ips == 0 || a.day.public_ips > 1000 || a.day.subscribers == 0 {
        bail!("--public-ips must be 1..=1000 and --subscribers positive");
    }
    let store = natlake_store::open(&a.store, &Default::default())?;
    let mut sink = RawSink {
        store,
        writer: None,
        seq: 0,
        objects: 0,
        bytes: 0,
    };
    let mut rng = SmallRng::seed_from_u64(a.day.seed);
    let mut csv = match &a.csv {
        Some(p) => Some(BufWriter::new(std::fs::File::create(p)?)),
        None => None,
    };
    let day_start = a.day.start * SEC;
    let day_end = day_start + i64::from(a.day.hours) * 3600 * SEC;
    let per_hour = (f64::from(a.day.subscribers) * a.day.sessions_per_hour).round() as usize;
    // Reservoir sample of sessions for the truth file.
    let mut truth: Vec<Session> = Vec::with_capacity(a.questions);
    let mut seen = 0usize;
    // (public ip, proto, port) → end of the session holding it.
    let mut ports: HashMap<(u32, u8, u16), i64> = HashMap::new();
    let mut destroys: BinaryHeap<Reverse<(i64, usize)>> = BinaryHeap::new();
    let mut open: HashMap<usize, Session> = HashMap::new();
    let mut next_id = 0usize;
    let (mut events, mut exhausted) = (0u64, 0u64);
    let mut buf = String::with_capacity(256);
    for h in 0..i64::from(a.day.hours) {
        let hour = day_start + h * 3600 * SEC;
        let mut starts: Vec<i64> = (0..per_hour)
            .map(|_| hour + rng.random_range(0..3600 * SEC))
            .collect();
        starts.sort_unstable();
        for start in starts {
            // Close what ended before this start, in time order.
            while let Some(Reverse((end, id))) = destroys.peek().copied() {
                if end > start {
                    break;
                }
                destroys.pop();
                if let Some(s) = open.remove(&id) {
                    emit(&mut sink, &mut csv, &s, false, &mut buf).await?;
                    events += 1;
                }
            }
            let sub = rng.random_range(0..a.day.subscribers);
            let public = PUBLIC_BASE + sub % a.day.public_ips;
            let proto = if rng.random_bool(0.7) { 6 } else { 17 };
            let end = start + duration(&mut rng);
            let mut xport = None;
            for _ in 0..64 {
                let p: u16 = rng.random_range(1024..=65535);
                let slot = ports.entry((public, proto, p)).or_insert(i64::MIN);
                if *slot <= start {
                    *slot = end;
                    xport = Some(p);
                    break;
                }
            }
            let Some(xport) = xport else {
                exhausted += 1;
                continue;
            };
            let s = Session {
                start,
                end,
                proto,
                inside: Ipv4Addr::from(INSIDE_BASE + sub),
                sport: rng.random_range(1024..=65535),
                public: Ipv4Addr::from(public),
                xport,
                dst: Ipv4Addr::from(
                    u32::from_be_bytes([203, 0, 113, 0]) + rng.random_range(1..255),
                ),
                dport: *[443u16, 80, 53, 123, 8080].choose(&mut rng).unwrap_or(&443),
            };
            emit(&mut sink, &mut csv, &s, true, &mut buf).await?;
            events += 1;
            seen += 1;
            if truth.len() < a.questions {
                truth.push(s);
            } else {
                let j = rng.random_range(0..seen);
                if j < a.questions {
                    truth[j] = s;
                }
            }
            if s.end < day_end {
                destroys.push(Reverse((s.end, next_id)));
            }
            open.insert(next_id, s);
            next_id += 1;
        }
    }
    while let Some(Reverse((end, id))) = destroys.pop() {
        if end >= day_end {
            break;
        }
        if let Some(s) = open.remove(&id) {
            emit(&mut sink, &mut csv, &s, false, &mut buf).await?;
            events += 1;
        }
    }
    sink.flush().await?;
    if let Some(c) = &mut csv {
        c.flush()?;
    }
    let mut t = BufWriter::new(std::fs::File::create(&a.truth)?);
    writeln!(t, "x_ip,x_port,proto,at_us,src_ip,src_port,start_us,end_us")?;
    for s in &truth {
        // A time inside the session, at least 1 s from both ends where it lasts long enough.
        let (lo, hi) = if s.end - s.start > 2 * SEC {
            (s.start + SEC, s.end.min(day_end) - SEC)
        } else {
            (s.start, s.end.min(day_end))
        };
        let at = if hi > lo {
            rng.random_range(lo..hi)
        } else {
            lo
        };
        writeln!(
            t,
            "{},{},{},{at},{},{},{},{}",
            s.public, s.xport, s.proto, s.inside, s.sport, s.start, s.end
        )?;
    }
    t.flush()?;
    println!(
        "{}",
        serde_json::json!({
            "subscribers": a.day.subscribers, "public_ips": a.day.public_ips, "hours": a.day.hours,
            "sessions": next_id, "events": events, "left_open": open.len(),
            "port_exhausted": exhausted, "raw_objects": sink.objects, "raw_bytes": sink.bytes,
            "truth": truth.len(),
        })
    );
    Ok(())
}

async fn emit(
    sink: &mut RawSink,
    csv: &mut Option<BufWriter<std::fs::File>>,
    s: &Session,
    new: bool,
    buf: &mut String,
) -> anyhow::Result<()> {
    buf.clear();
    line(s, new, buf);
    let t = if new { s.start } else { s.end };
    sink.push(t, buf.as_bytes()).await?;
    if let Some(c) = csv {
        writeln!(
            c,
            "{},{},{},{},{},{},{},{},{}",
            pg_time(t),
            if new { 'A' } else { 'D' },
            s.proto,
            s.inside,
            s.sport,
            s.public,
            s.xport,
            s.dst,
            s.dport
        )?;
    }
    Ok(())
}

// ---------------------------------------------------------------- asking

struct Question {
    x_ip: String,
    x_port: u16,
    proto: u8,
    at: i64,
    src_ip: String,
    src_port: u16,
}

fn read_truth(path: &PathBuf) -> anyhow::Result<Vec<Question>> {
    let f = std::io::BufReader::new(
        std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    let mut out = Vec::new();
    for (i, l) in f.lines().enumerate().skip(1) {
        let l = l?;
        let v: Vec<&str> = l.split(',').collect();
        if v.len() < 6 {
            bail!("{}:{}: expected 8 fields", path.display(), i + 1);
        }
        out.push(Question {
            x_ip: v[0].into(),
            x_port: v[1].parse()?,
            proto: v[2].parse()?,
            at: v[3].parse()?,
            src_ip: v[4].into(),
            src_port: v[5].parse()?,
        });
    }
    Ok(out)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn summary(mut lat: Vec<Duration>) -> serde_json::Value {
    lat.sort();
    serde_json::json!({
        "n": lat.len(),
        "p50_ms": percentile(&lat, 0.50),
        "p90_ms": percentile(&lat, 0.90),
        "p99_ms": percentile(&lat, 0.99),
        "max_ms": percentile(&lat, 1.0),
    })
}

async fn ask(a: AskArgs) -> anyhow::Result<()> {
    let mut qs = read_truth(&a.truth)?;
    qs.shuffle(&mut SmallRng::seed_from_u64(a.seed));
    qs.truncate(a.n);
    if let Some(p) = &a.sql_out {
        let mut w = BufWriter::new(std::fs::File::create(p)?);
        for q in &qs {
            // The cgn-ec-style question: the allocation at or before T (+2 s) whose deallocation,
            // if any, is not before T (−2 s), within the 24 h lookback the lake also uses.
            writeln!(
                w,
                "SELECT a.src_ip, a.src_port, a.time, d.time AS end_time FROM nat_events a \
                 LEFT JOIN LATERAL (SELECT time FROM nat_events d WHERE d.x_ip = a.x_ip AND d.x_port = a.x_port \
                 AND d.protocol = a.protocol AND d.event = 'D' AND d.src_ip = a.src_ip AND d.src_port = a.src_port \
                 AND d.time >= a.time ORDER BY d.time LIMIT 1) d ON true \
                 WHERE a.x_ip = '{ip}' AND a.x_port = {port} AND a.protocol = {proto} AND a.event = 'A' \
                 AND a.time <= to_timestamp({at}::float8 / 1e6 + 2) AND a.time >= to_timestamp({at}::float8 / 1e6 - 86400) \
                 AND (d.time IS NULL OR d.time >= to_timestamp({at}::float8 / 1e6 - 2));",
                ip = q.x_ip,
                port = q.x_port,
                proto = q.proto,
                at = q.at
            )?;
        }
        w.flush()?;
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    let base = a.url.trim_end_matches('/');
    let (mut right, mut ambiguous, mut wrong, mut none, mut errors, mut incomplete) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut lat = Vec::with_capacity(qs.len());
    for q in &qs {
        let url = format!(
            "{base}/v1/attribution?ip={}&port={}&proto={}&at={}.{:06}",
            q.x_ip,
            q.x_port,
            q.proto,
            q.at.div_euclid(SEC),
            q.at.rem_euclid(SEC)
        );
        let mut req = client.get(&url);
        if let Some(k) = &a.api_key {
            req = req.bearer_auth(k);
        }
        let t0 = Instant::now();
        let resp = req.send().await;
        let body = match resp {
            Ok(r) if r.status().is_success() => r.bytes().await,
            Ok(r) => {
                errors += 1;
                eprintln!("{url}: HTTP {}", r.status());
                continue;
            }
            Err(e) => {
                errors += 1;
                eprintln!("{url}: {e}");
                continue;
            }
        };
        lat.push(t0.elapsed());
        let v: serde_json::Value = serde_json::from_slice(&body?)?;
        if v["errors"].as_array().is_some_and(|e| !e.is_empty()) {
            incomplete += 1;
        }
        let matches = v["matches"].as_array().cloned().unwrap_or_default();
        let truth_found = matches.iter().any(|m| {
            m["src_ip"].as_str() == Some(q.src_ip.as_str())
                && m["src_port"].as_u64() == Some(u64::from(q.src_port))
        });
        match (matches.is_empty(), truth_found, v["ambiguous"].as_bool()) {
            (true, _, _) => none += 1,
            (false, true, Some(true)) => ambiguous += 1,
            (false, true, _) => right += 1,
            (false, false, _) => wrong += 1,
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "latency": summary(lat),
            "right": right, "ambiguous_with_truth": ambiguous, "wrong": wrong,
            "no_match": none, "http_errors": errors, "incomplete_answers": incomplete,
        })
    );
    if wrong + none + errors > 0 {
        bail!("{wrong} wrong, {none} unanswered, {errors} failed answers");
    }
    Ok(())
}

fn psql_stats(file: PathBuf) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&file)?;
    let lat: Vec<Duration> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Time: "))
        .filter_map(|l| l.split_whitespace().next()?.parse::<f64>().ok())
        .map(|ms| Duration::from_secs_f64(ms / 1e3))
        .collect();
    println!("{}", serde_json::json!({ "latency": summary(lat) }));
    Ok(())
}

// ---------------------------------------------------------------- copying a store

async fn copy(from: &str, to: &str, prefix: &str) -> anyhow::Result<()> {
    let src = natlake_store::open(from, &Default::default())?;
    let dst = natlake_store::open(to, &Default::default())?;
    let p = (!prefix.is_empty()).then(|| Path::from(prefix));
    let metas: Vec<_> = src.list(p.as_ref()).try_collect().await?;
    let (mut n, mut bytes) = (0u64, 0u64);
    for m in metas {
        let data = src.get(&m.location).await?.bytes().await?;
        bytes += data.len() as u64;
        dst.put(&m.location, PutPayload::from(data)).await?;
        n += 1;
    }
    println!("{}", serde_json::json!({"objects": n, "bytes": bytes}));
    Ok(())
}

async fn read(url: &str, prefix: &str) -> anyhow::Result<()> {
    let store = natlake_store::open(url, &Default::default())?;
    let metas: Vec<_> = store.list(Some(&Path::from(prefix))).try_collect().await?;
    let (mut objects, mut records, mut payload, mut damaged) = (0u64, 0u64, 0u64, 0u64);
    for m in metas {
        if !m.location.as_ref().ends_with(natlake_raw::SUFFIX) {
            continue;
        }
        let data = store.get(&m.location).await?.bytes().await?;
        let mut reader = natlake_raw::BatchReader::from_compressed(&data)?;
        while let Some(item) = reader.next_ref() {
            match item {
                Ok((_, rec)) => {
                    records += 1;
                    payload += rec.payload.len() as u64;
                }
                Err(_) => {
                    damaged += 1;
                    break;
                }
            }
        }
        objects += 1;
    }
    println!(
        "{}",
        serde_json::json!({"objects": objects, "records": records, "payload_bytes": payload, "damaged": damaged})
    );
    Ok(())
}
