//! Syslog over TLS (RFC 5425) against real rustls clients, with a CA and certificates generated
//! at test time (rcgen): messages arrive byte for byte in the raw objects, failed handshakes
//! (untrusted server, plaintext, silence, missing or foreign client certificates) are counted and
//! never stop the listener, and `--check-config` / the flags validate the files.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_relay::{
    ByteSize, InputKind, Relay, RelayConfig, RelayHandle, SourceConfig, TcpSourceConfig, TlsConfig,
    TlsFailure,
};
use natlake_raw::{BatchReader, Record};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

const DEADLINE: Duration = Duration::from_secs(60);
const BIN: &str = env!("CARGO_BIN_EXE_edge-relay");

/// A CA that signs server and client certificates.
struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Self {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    fn pem(&self) -> String {
        self.issuer.pem()
    }

    fn leaf(&self, cn: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut p =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![usage];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    fn server(&self) -> Leaf {
        self.leaf(
            "relay.test",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client(&self, cn: &str) -> Leaf {
        self.leaf(cn, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A client trusting `ca`, optionally presenting `cert`, optionally limited to TLS 1.2.
fn connector(ca: &Ca, cert: Option<&Leaf>, tls12_only: bool) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).unwrap();
    let b = rustls::ClientConfig::builder_with_provider(provider());
    let b = if tls12_only {
        b.with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
    } else {
        b.with_safe_default_protocol_versions().unwrap()
    };
    let b = b.with_root_certificates(roots);
    let cfg = match cert {
        None => b.with_no_client_auth(),
        Some(l) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(l.cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(l.key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    TlsConnector::from(Arc::new(cfg))
}

fn base_config(store: &Path, spool: &Path, tls: TlsConfig) -> RelayConfig {
    let mut cfg = RelayConfig::new(natlake_store::dir_url(store).unwrap(), spool);
    cfg.relay_id = Some("tls-relay".into());
    cfg.batch.max_age = Duration::from_secs(3600);
    let mut t = TcpSourceConfig::new("127.0.0.1:0".parse().unwrap());
    t.max_frame = ByteSize::kib(4);
    t.tls = Some(tls);
    cfg.sources.push(SourceConfig::SyslogTcp(t));
    cfg
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn lines(tag: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            format!(
                "<134>1 2024-05-01T12:00:00Z cgnat-1 nat - - - {tag} SNAT 100.64.{}.{} -> 203.0.113.9:{} seq={i}",
                i / 256 % 256,
                i % 256,
                1024 + i
            )
            .into_bytes()
        })
        .collect()
}

fn octet_counted(msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        out.extend_from_slice(format!("{} ", m.len()).as_bytes());
        out.extend_from_slice(m);
    }
    out
}

fn lf_framed(msgs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in msgs {
        out.extend_from_slice(m);
        out.push(b'\n');
    }
    out
}

/// Connects, handshakes, writes `data` in pieces of `piece` bytes, closes with close_notify.
/// Returns the client's address (the peer the relay records).
async fn send_tls(
    to: SocketAddr,
    conn: &TlsConnector,
    data: &[u8],
    piece: usize,
) -> std::io::Result<SocketAddr> {
    let tcp = TcpStream::connect(to).await?;
    let local = tcp.local_addr()?;
    let mut s = conn
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    for p in data.chunks(piece) {
        s.write_all(p).await?;
        s.flush().await?;
    }
    s.shutdown().await?;
    Ok(local)
}

/// Every record of every raw object in a file store.
fn records(store: &Path) -> Vec<(String, Record)> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else {
            return;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.to_string_lossy().ends_with(natlake_raw::SUFFIX) {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&store.join("raw"), &mut files);
    let mut out = Vec::new();
    for p in files {
        let key = p
            .strip_prefix(store)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let bytes = std::fs::read(&p).unwrap();
        let rd = BatchReader::from_compressed(&bytes).unwrap();
        for r in rd {
            out.push((key.clone(), r.unwrap().1));
        }
    }
    out
}

/// Asserts that the store holds exactly `want` (payload → peer), each once.
fn assert_exactly(store: &Path, want: &HashMap<Vec<u8>, SocketAddr>) {
    let recs = records(store);
    let mut seen: HashMap<&[u8], usize> = HashMap::new();
    for (key, r) in &recs {
        assert!(key.starts_with("raw/syslog_tcp/"), "{key}");
        assert_eq!(r.kind, InputKind::SyslogTcp);
        let Some(peer) = want.get(&r.payload) else {
            panic!(
                "unexpected record {:?}",
                String::from_utf8_lossy(&r.payload)
            );
        };
        assert_eq!(
            r.peer,
            Some(*peer),
            "{}",
            String::from_utf8_lossy(&r.payload)
        );
        *seen.entry(&r.payload).or_default() += 1;
    }
    let missing = want.len() - seen.len();
    assert_eq!(missing, 0, "{missing} of {} messages missing", want.len());
    assert!(seen.values().all(|n| *n == 1), "duplicates in the store");
    assert_eq!(recs.len(), want.len());
}

async fn flush(relay: &RelayHandle) {
    relay.flush_now().await.unwrap();
    relay.wait_uploaded(DEADLINE).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_syslog_arrives_and_failed_handshakes_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let ca = Ca::new("natlake test CA");
    let server = ca.server();
    let mut tls = TlsConfig::new(
        write(dir.path(), "relay.crt", &server.cert),
        write(dir.path(), "relay.key", &server.key),
    );
    tls.handshake_timeout = Duration::from_millis(500);
    let cfg = base_config(store.path(), spool.path(), tls);
    assert_eq!(cfg.sources[0].name(), "syslog_tls@127.0.0.1:0");
    let relay = Relay::start(cfg).await.unwrap();
    let to = relay.local_addr(InputKind::SyslogTcp).unwrap();
    let good = connector(&ca, None, false);

    let mut want = HashMap::new();
    // RFC 5425 octet counting, frames cut across TLS records; a frame holding LFs.
    let mut octet = lines("octet", 300);
    octet.push(b"<13>multi\nline\nmessage".to_vec());
    let peer = send_tls(to, &good, &octet_counted(&octet), 777)
        .await
        .unwrap();
    want.extend(octet.into_iter().map(|m| (m, peer)));
    // LF framing over TLS 1.2, with a last line that has no LF.
    let lf = lines("lf", 300);
    let mut data = lf_framed(&lf);
    data.extend_from_slice(b"<13>unterminated last line");
    let peer = send_tls(to, &connector(&ca, None, true), &data, 1000)
        .await
        .unwrap();
    want.extend(lf.into_iter().map(|m| (m, peer)));
    want.insert(b"<13>unterminated last line".to_vec(), peer);
    wait_for("the TLS messages", || {
        relay.stats().received_messages == want.len() as u64
    })
    .await;

    // A client that does not trust the relay's certificate aborts the handshake.
    let stranger = Ca::new("another CA");
    let err = send_tls(
        to,
        &connector(&stranger, None, false),
        &lf_framed(&lines("untrusted", 5)),
        1000,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("certificate"),
        "client error: {err}"
    );
    wait_for("the untrusted handshake to be counted", || {
        relay.stats().tls_failures(TlsFailure::Error) == 1
    })
    .await;

    // Plaintext syslog on the TLS port: counted, closed, nothing stored.
    let mut plain = TcpStream::connect(to).await.unwrap();
    plain
        .write_all(&lf_framed(&lines("plaintext", 5)))
        .await
        .unwrap();
    wait_for("the plaintext connection to be counted", || {
        relay.stats().tls_failures(TlsFailure::Plaintext) == 1
    })
    .await;
    drop(plain);

    // Silence, and a ClientHello that never completes: both time out.
    let silent = TcpStream::connect(to).await.unwrap();
    let mut stalled = TcpStream::connect(to).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01, 0x02]).await.unwrap();
    wait_for("the two slow handshakes to time out", || {
        relay.stats().tls_failures(TlsFailure::Timeout) == 2
    })
    .await;
    drop((silent, stalled));

    // The listener still serves after all of that.
    let after = lines("after", 10);
    let peer = send_tls(to, &good, &octet_counted(&after), 4096)
        .await
        .unwrap();
    want.extend(after.into_iter().map(|m| (m, peer)));
    wait_for("the messages after the failures", || {
        relay.stats().received_messages == want.len() as u64
    })
    .await;

    flush(&relay).await;
    assert_exactly(store.path(), &want);
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.tls_failures(TlsFailure::Error), 1, "{stats:?}");
    assert_eq!(stats.tls_failures(TlsFailure::Plaintext), 1, "{stats:?}");
    assert_eq!(stats.tls_failures(TlsFailure::Timeout), 2, "{stats:?}");
    assert_eq!(stats.tcp_connections_accepted, 7, "{stats:?}");
    assert_eq!(stats.dropped_total(), 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_only_clients_with_a_certificate_from_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let spool = tempfile::tempdir().unwrap();
    let ca = Ca::new("natlake test CA");
    let clients_ca = Ca::new("natlake senders CA");
    let server = ca.server();
    let mut tls = TlsConfig::new(
        write(dir.path(), "relay.crt", &server.cert),
        write(dir.path(), "relay.key", &server.key),
    );
    tls.client_ca = Some(write(dir.path(), "clients.crt", &clients_ca.pem()));
    let relay = Relay::start(base_config(store.path(), spool.path(), tls))
        .await
        .unwrap();
    let to = relay.local_addr(InputKind::SyslogTcp).unwrap();

    // No client certificate. With TLS 1.3 the client may finish its side (and write) before
    // the relay refuses it, so the write may or may not fail: what counts is the relay's side.
    let _ = send_tls(
        to,
        &connector(&ca, None, false),
        &octet_counted(&lines("nocert", 5)),
        1000,
    )
    .await;
    wait_for("the handshake without a client certificate to fail", || {
        relay.stats().tls_failures(TlsFailure::Error) == 1
    })
    .await;
    // A client certificate from a CA the relay does not trust.
    let foreign = ca.client("cgnat-foreign");
    let _ = send_tls(
        to,
        &connector(&ca, Some(&foreign), false),
        &octet_counted(&lines("foreign", 5)),
        1000,
    )
    .await;
    wait_for("the foreign client certificate to fail", || {
        relay.stats().tls_failures(TlsFailure::Error) == 2
    })
    .await;
    // A sender with a certificate from the senders' CA, over TLS 1.3 and 1.2.
    let sender = clients_ca.client("cgnat-1");
    let mut want = HashMap::new();
    for (tag, tls12) in [("mtls13", false), ("mtls12", true)] {
        let msgs = lines(tag, 100);
        let peer = send_tls(
            to,
            &connector(&ca, Some(&sender), tls12),
            &octet_counted(&msgs),
            1500,
        )
        .await
        .unwrap();
        want.extend(msgs.into_iter().map(|m| (m, peer)));
    }
    wait_for("the mutual-TLS messages", || {
        relay.stats().received_messages == want.len() as u64
    })
    .await;
    flush(&relay).await;
    assert_exactly(store.path(), &want);
    let stats = relay.shutdown().await.unwrap();
    assert_eq!(stats.tls_failures(TlsFailure::Error), 2, "{stats:?}");
    assert_eq!(stats.received_messages, 200, "{stats:?}");
}

#[test]
fn check_config_and_flags_validate_the_tls_files() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("natlake test CA");
    let a = ca.server();
    let b = ca.server();
    let cert = write(dir.path(), "relay.crt", &a.cert);
    let key = write(dir.path(), "relay.key", &a.key);
    let other_key = write(dir.path(), "other.key", &b.key);
    let ca_file = write(dir.path(), "ca.crt", &ca.pem());
    let not_pem = write(dir.path(), "empty.pem", "nothing here\n");
    let file = |cert: &Path, key: &Path, client_ca: Option<&Path>| {
        let p = dir.path().join("relay.toml");
        let mut text = format!(
            "[[sources]]\ntype = \"syslog_tcp\"\naddress = \"127.0.0.1:6514\"\n[sources.tls]\ncert = {:?}\nkey = {:?}\nhandshake_timeout = \"5s\"\n",
            cert.display().to_string(),
            key.display().to_string()
        );
        if let Some(c) = client_ca {
            text.push_str(&format!("client_ca = {:?}\n", c.display().to_string()));
        }
        text.push_str("[sink]\nstore = \"file:///tmp/x\"\n[spool]\ndir = \"/tmp/s\"\n");
        std::fs::write(&p, text).unwrap();
        p
    };
    let check = |p: &Path, extra: &[&str]| {
        let out = Command::new(BIN)
            .arg("--check-config")
            .arg(p)
            .args(extra)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };

    let (ok, out) = check(&file(&cert, &key, Some(&ca_file)), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("syslog_tls@127.0.0.1:6514"), "{out}");

    let (ok, out) = check(&file(&cert, &other_key, None), &[]);
    assert!(!ok, "a key of another certificate passed: {out}");
    assert!(out.contains("other.key"), "{out}");

    let (ok, out) = check(&file(&cert, &dir.path().join("missing.key"), None), &[]);
    assert!(!ok && out.contains("missing.key"), "{out}");

    let (ok, out) = check(&file(&not_pem, &key, None), &[]);
    assert!(!ok && out.contains("empty.pem"), "{out}");

    let (ok, out) = check(&file(&cert, &key, Some(&not_pem)), &[]);
    assert!(!ok && out.contains("empty.pem"), "{out}");

    // Flags: --syslog-tls with its files; without them it is refused.
    let base = file(&cert, &key, None);
    let (ok, out) = check(
        &base,
        &[
            "--syslog-tls",
            "127.0.0.1:16514",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--tls-client-ca",
            ca_file.to_str().unwrap(),
        ],
    );
    assert!(ok && out.contains("syslog_tls@127.0.0.1:16514"), "{out}");
    let (ok, out) = check(&base, &["--syslog-tls", "127.0.0.1:16514"]);
    assert!(!ok && out.contains("--tls-cert"), "{out}");
    let (ok, out) = check(&base, &["--tls-key", key.to_str().unwrap()]);
    assert!(!ok && out.contains("--syslog-tls"), "{out}");
    let (ok, out) = check(
        &base,
        &[
            "--syslog-tls",
            "127.0.0.1:16514",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            other_key.to_str().unwrap(),
        ],
    );
    assert!(!ok && out.contains("other.key"), "{out}");
}
