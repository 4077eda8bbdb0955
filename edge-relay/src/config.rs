//! Configuration: a TOML file in the spirit of Vector's, overridable by flags and environment.
//!
//! ```toml
//! relay_id = "edge-par1"            # default: the host name
//! shutdown_timeout = "30s"
//!
//! [labels]
//! site = "par1"
//!
//! [[sources]]
//! type = "syslog_udp"
//! address = "0.0.0.0:514"
//! receive_buffer = "8MiB"           # SO_RCVBUF (SO_RCVBUFFORCE when permitted)
//! workers = 2                       # >1: that many SO_REUSEPORT sockets, one thread each
//! max_message = "16KiB"             # larger datagrams are dropped as "oversized" (default 65535)
//! receive = "auto"                  # io_uring multishot receive, else recvmmsg ("io_uring", "recvmmsg")
//!
//! [[sources]]
//! type = "syslog_tcp"
//! address = "0.0.0.0:601"
//! max_frame = "64KiB"
//! idle_timeout = "5m"
//! max_connections = 1024
//!
//! [[sources]]
//! type = "syslog_tcp"               # RFC 5425: syslog over TLS, same framing
//! address = "0.0.0.0:6514"
//! [sources.tls]
//! cert = "/etc/edge-relay/tls/relay.crt"
//! key = "/etc/edge-relay/tls/relay.key"
//! client_ca = "/etc/edge-relay/tls/senders-ca.crt"   # optional: mutual TLS
//!
//! [[sources]]
//! type = "ipfix_udp"                # or netflow_udp (one port takes both versions)
//! address = "0.0.0.0:4739"
//!
//! [[sources]]
//! type = "conntrack"                # netlink NEW/DESTROY events (CAP_NET_ADMIN)
//!
//! [[sources]]
//! type = "json_file"                # also json_tcp (address = ...) and json_stdin
//! path = "/var/log/goflow2/flows.json"
//!
//! [sink]
//! store = "s3://bucket/prefix"      # or file:///var/lib/natlake
//! upload_concurrency = 2
//! heartbeat_interval = "30s"        # _state/relays/<relay>.json: what is stored, up to when
//! [sink.s3]                         # optional; AWS_* variables otherwise
//! endpoint = "http://127.0.0.1:8333"
//!
//! [spool]
//! dir = "/var/spool/edge-relay"
//! max_bytes = "1GiB"
//!
//! [batch]
//! max_bytes = "8MiB"                # uncompressed
//! max_age = "60s"
//! zstd_level = 1
//!
//! [metrics]
//! address = "127.0.0.1:9598"
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use natlake_raw::InputKind;
use serde::{Deserialize, Deserializer};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("parsing {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// A size in bytes; parses `8MiB`, `64KiB`, `1GiB`, `1.5GB`, `512k`, `100` (bytes).
/// Decimal units (kB, MB, GB) are powers of 1000, binary ones (KiB, MiB, GiB) of 1024; a bare
/// `K`, `M`, `G` is binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const KIB: u64 = 1024;
    pub const MIB: u64 = 1024 * 1024;
    pub const GIB: u64 = 1024 * 1024 * 1024;

    pub const fn kib(n: u64) -> Self {
        Self(n * Self::KIB)
    }
    pub const fn mib(n: u64) -> Self {
        Self(n * Self::MIB)
    }
    pub const fn gib(n: u64) -> Self {
        Self(n * Self::GIB)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        if num.is_empty() {
            return Err(format!("size {s:?}: expected a number, e.g. 8MiB"));
        }
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "kb" => 1_000,
            "m" | "mib" => 1 << 20,
            "mb" => 1_000_000,
            "g" | "gib" => 1 << 30,
            "gb" => 1_000_000_000,
            "t" | "tib" => 1 << 40,
            "tb" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "size {s:?}: unknown unit {other:?} (use B, KiB, MiB, GiB, KB, MB, GB)"
                ));
            }
        };
        let bytes = if num.contains('.') {
            let f: f64 = num.parse().map_err(|_| format!("size {s:?}: bad number"))?;
            let v = f * mult as f64;
            if !v.is_finite() || v >= u64::MAX as f64 {
                return Err(format!("size {s:?} is too large"));
            }
            v.round() as u64
        } else {
            let n: u64 = num.parse().map_err(|_| format!("size {s:?}: bad number"))?;
            n.checked_mul(mult)
                .ok_or_else(|| format!("size {s:?} is too large"))?
        };
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        for (unit, m) in [("GiB", Self::GIB), ("MiB", Self::MIB), ("KiB", Self::KIB)] {
            if b >= m && b.is_multiple_of(m) {
                return write!(f, "{}{unit}", b / m);
            }
        }
        write!(f, "{b}B")
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Durations in configuration files: `"60s"`, `"5m"`, `"250ms"` (humantime), or an integer of seconds.
mod duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(Duration::from_secs(n)),
            Raw::Str(s) => humantime::parse_duration(&s)
                .map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}"))),
        }
    }
}

/// The whole relay configuration (what [`crate::Relay::start`] takes).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// Names this relay in object keys and batch headers. Default: the host name.
    #[serde(default)]
    pub relay_id: Option<String>,
    /// Free-form labels copied into every batch header.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub sink: SinkConfig,
    #[serde(default)]
    pub spool: SpoolConfig,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// How long a graceful shutdown may spend uploading before leaving the rest in the spool.
    #[serde(default = "d_shutdown_timeout", with = "duration")]
    pub shutdown_timeout: Duration,
}

/// One input.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceConfig {
    SyslogUdp(UdpSourceConfig),
    SyslogTcp(TcpSourceConfig),
    /// IPFIX over UDP (NetFlow v9 on the same port is recognised and filed as `netflow`).
    IpfixUdp(FlowSourceConfig),
    /// NetFlow v9 over UDP (IPFIX on the same port is recognised and filed as `ipfix`).
    NetflowUdp(FlowSourceConfig),
    /// Linux conntrack NEW / DESTROY events from netlink (CAP_NET_ADMIN).
    Conntrack(ConntrackSourceConfig),
    /// JSON lines (LF framed) over TCP.
    JsonTcp(TcpSourceConfig),
    /// JSON lines tailed from a file that may be rotated.
    JsonFile(JsonFileSourceConfig),
    /// JSON lines from standard input.
    JsonStdin(JsonStdinSourceConfig),
}

impl SourceConfig {
    pub fn kind(&self) -> InputKind {
        match self {
            Self::SyslogUdp(_) => InputKind::SyslogUdp,
            Self::SyslogTcp(_) => InputKind::SyslogTcp,
            Self::IpfixUdp(_) => InputKind::Ipfix,
            Self::NetflowUdp(_) => InputKind::Netflow,
            Self::Conntrack(_) => InputKind::ConntrackNetlink,
            Self::JsonTcp(_) | Self::JsonFile(_) | Self::JsonStdin(_) => InputKind::JsonLines,
        }
    }

    /// The configured socket address, for sources that listen on one.
    pub fn address(&self) -> Option<SocketAddr> {
        match self {
            Self::SyslogUdp(c) => Some(c.address),
            Self::SyslogTcp(c) | Self::JsonTcp(c) => Some(c.address),
            Self::IpfixUdp(c) | Self::NetflowUdp(c) => Some(c.address),
            Self::Conntrack(_) | Self::JsonFile(_) | Self::JsonStdin(_) => None,
        }
    }

    /// Where the source reads from: its address, `netlink`, the file path or `stdin`.
    pub fn endpoint(&self) -> String {
        match self {
            Self::Conntrack(_) => "netlink".into(),
            Self::JsonFile(f) => f.path.display().to_string(),
            Self::JsonStdin(_) => "stdin".into(),
            other => other.address().map(|a| a.to_string()).unwrap_or_default(),
        }
    }

    /// The source type as written in the configuration file.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::SyslogUdp(_) => "syslog_udp",
            Self::SyslogTcp(_) => "syslog_tcp",
            Self::IpfixUdp(_) => "ipfix_udp",
            Self::NetflowUdp(_) => "netflow_udp",
            Self::Conntrack(_) => "conntrack",
            Self::JsonTcp(_) => "json_tcp",
            Self::JsonFile(_) => "json_file",
            Self::JsonStdin(_) => "json_stdin",
        }
    }

    /// The name used in metrics and logs: the configured one or `<type>@<endpoint>`.
    pub fn name(&self) -> String {
        let explicit = match self {
            Self::SyslogUdp(c) => c.name.clone(),
            Self::SyslogTcp(c) | Self::JsonTcp(c) => c.name.clone(),
            Self::IpfixUdp(c) | Self::NetflowUdp(c) => c.name.clone(),
            Self::Conntrack(c) => c.name.clone(),
            Self::JsonFile(c) => c.name.clone(),
            Self::JsonStdin(c) => c.name.clone(),
        };
        explicit.unwrap_or_else(|| match self {
            Self::SyslogTcp(t) if t.tls.is_some() => format!("syslog_tls@{}", self.endpoint()),
            Self::SyslogUdp(_) | Self::SyslogTcp(_) => {
                format!("{}@{}", self.kind(), self.endpoint())
            }
            _ => format!("{}@{}", self.type_name(), self.endpoint()),
        })
    }
}

/// `ipfix_udp` / `netflow_udp`: flow exports kept raw, templates replayed into every batch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSourceConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub address: SocketAddr,
    /// Kernel receive buffer (SO_RCVBUFFORCE when permitted).
    #[serde(default = "d_receive_buffer")]
    pub receive_buffer: ByteSize,
    /// Template records remembered per kind (`ipfix`, `netflow`), all exporters together; the
    /// oldest are evicted and counted beyond this. With several flow sources the largest
    /// value applies.
    #[serde(default = "d_max_templates")]
    pub max_templates: usize,
}

impl FlowSourceConfig {
    pub fn new(address: SocketAddr) -> Self {
        Self {
            name: None,
            address,
            receive_buffer: d_receive_buffer(),
            max_templates: d_max_templates(),
        }
    }
}

/// `conntrack`: NEW and DESTROY events from the kernel's conntrack table over netlink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConntrackSourceConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// Netlink receive buffer (SO_RCVBUFFORCE when permitted). Too small: ENOBUFS overruns,
    /// counted as `netlink_overrun`.
    #[serde(default = "d_netlink_buffer")]
    pub receive_buffer: ByteSize,
}

impl Default for ConntrackSourceConfig {
    fn default() -> Self {
        Self {
            name: None,
            receive_buffer: d_netlink_buffer(),
        }
    }
}

/// `json_file`: JSON lines tailed from a file; survives rename/create and truncate rotation.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonFileSourceConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub path: PathBuf,
    /// Longer lines are skipped and counted as `frame_too_large`.
    #[serde(default = "d_max_line")]
    pub max_line: ByteSize,
    /// How often the file is checked for new data and rotation.
    #[serde(default = "d_poll_interval", with = "duration")]
    pub poll_interval: Duration,
    /// After a rotation, how long the old file is still read (writers reopen on SIGHUP).
    #[serde(default = "d_rotate_wait", with = "duration")]
    pub rotate_wait: Duration,
}

impl JsonFileSourceConfig {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            name: None,
            path: path.into(),
            max_line: d_max_line(),
            poll_interval: d_poll_interval(),
            rotate_wait: d_rotate_wait(),
        }
    }
}

/// `json_stdin`: JSON lines from standard input.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonStdinSourceConfig {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "d_max_line")]
    pub max_line: ByteSize,
}

impl Default for JsonStdinSourceConfig {
    fn default() -> Self {
        Self {
            name: None,
            max_line: d_max_line(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UdpSourceConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub address: SocketAddr,
    /// Kernel receive buffer per socket.
    #[serde(default = "d_receive_buffer")]
    pub receive_buffer: ByteSize,
    /// Receiving threads; more than one binds that many sockets with SO_REUSEPORT.
    #[serde(default = "d_one")]
    pub workers: usize,
    /// Set SO_REUSEPORT even with one worker (to run beside another process on the same port).
    #[serde(default)]
    pub reuse_port: bool,
    /// Largest datagram kept; larger ones are dropped and counted as "oversized". The default
    /// keeps every datagram UDP can carry.
    #[serde(default = "d_max_datagram")]
    pub max_message: ByteSize,
    /// Datagrams per recvmmsg call.
    #[serde(default = "d_recv_batch")]
    pub recv_batch: usize,
    /// After a receive that did not fill its batch (recvmmsg) or took what was queued
    /// (io_uring), pause this long so that datagrams accumulate: far fewer wake-ups per line under load, at the price of this much latency
    /// (nothing next to a batch age). The receive buffer must hold this long of traffic.
    /// 0 disables.
    #[serde(default = "d_recv_pause", with = "duration")]
    pub recv_pause: Duration,
    /// How datagrams are received: io_uring multishot `recvmsg` into a ring of provided buffers
    /// (no system call per datagram), `recvmmsg`, or `auto` (io_uring when the kernel and any
    /// seccomp policy allow it, else recvmmsg: logged once and counted).
    #[serde(default)]
    pub receive: ReceiveMode,
    /// io_uring: receive buffers in the provided-buffer ring (a power of two). Each holds one
    /// datagram of up to `max_message` bytes; when all are in use the kernel keeps further
    /// datagrams in the socket buffer until buffers are returned.
    #[serde(default = "d_uring_buffers")]
    pub uring_buffers: usize,
}

/// The UDP receive path (`receive = "auto" | "io_uring" | "recvmmsg"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ReceiveMode {
    /// io_uring where available, else recvmmsg.
    #[default]
    Auto,
    /// io_uring only: the source fails to start without it.
    #[value(name = "io_uring")]
    IoUring,
    /// recvmmsg only.
    Recvmmsg,
}

impl ReceiveMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::IoUring => "io_uring",
            Self::Recvmmsg => "recvmmsg",
        }
    }
}

impl UdpSourceConfig {
    pub fn new(address: SocketAddr) -> Self {
        Self {
            name: None,
            address,
            receive_buffer: d_receive_buffer(),
            workers: 1,
            reuse_port: false,
            max_message: d_max_datagram(),
            recv_batch: d_recv_batch(),
            recv_pause: d_recv_pause(),
            receive: ReceiveMode::Auto,
            uring_buffers: d_uring_buffers(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpSourceConfig {
    #[serde(default)]
    pub name: Option<String>,
    pub address: SocketAddr,
    /// Largest frame kept (octet-counted or LF-terminated); larger ones are skipped and counted.
    #[serde(default = "d_max_message")]
    pub max_frame: ByteSize,
    /// A connection silent for this long is closed (a partial frame is counted as incomplete).
    #[serde(default = "d_idle_timeout", with = "duration")]
    pub idle_timeout: Duration,
    /// Connections above this are closed at once and counted as refused.
    #[serde(default = "d_max_connections")]
    pub max_connections: usize,
    /// How long a connection may wait for room in a full queue before its messages are dropped.
    #[serde(default = "d_queue_wait", with = "duration")]
    pub queue_wait: Duration,
    /// `[sources.tls]`: accept TLS only (RFC 5425), with the same framing as plain TCP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl TcpSourceConfig {
    pub fn new(address: SocketAddr) -> Self {
        Self {
            name: None,
            address,
            max_frame: d_max_message(),
            idle_timeout: d_idle_timeout(),
            max_connections: d_max_connections(),
            queue_wait: d_queue_wait(),
            tls: None,
        }
    }
}

/// TLS of a TCP listener (`[sources.tls]`): the server's certificate and key, and for mutual TLS
/// the CAs that client certificates must chain to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificate(s): when set, every client must present a certificate chaining to one
    /// of them (mutual TLS); connections without one fail the handshake.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// A connection that has not completed its handshake by then is closed (counted `timeout`).
    #[serde(default = "d_handshake_timeout", with = "duration")]
    pub handshake_timeout: Duration,
}

impl TlsConfig {
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
            handshake_timeout: d_handshake_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// `file:///path`, `s3://bucket/prefix` or `memory://`.
    #[serde(default)]
    pub store: String,
    #[serde(default)]
    pub s3: natlake_store::S3Options,
    /// Input kinds uploading at once. One kind's batches are put one at a time, in spool order,
    /// so a newer batch never lands while an older one of its kind is still retried.
    #[serde(default = "d_upload_concurrency")]
    pub upload_concurrency: usize,
    /// First retry delay after a failed put; doubles up to `retry_max` (with jitter).
    #[serde(default = "d_retry_initial", with = "duration")]
    pub retry_initial: Duration,
    #[serde(default = "d_retry_max", with = "duration")]
    pub retry_max: Duration,
    /// How often the relay rewrites its heartbeat (`_state/relays/<relay>.json`): the time up
    /// to which everything it received of each kind is stored. Lookups use it to tell a relay
    /// that is behind or gone from one that has delivered.
    #[serde(default = "d_heartbeat_interval", with = "duration")]
    pub heartbeat_interval: Duration,
}

impl Default for SinkConfig {
    fn default() -> Self {
        Self {
            store: String::new(),
            s3: Default::default(),
            upload_concurrency: d_upload_concurrency(),
            retry_initial: d_retry_initial(),
            retry_max: d_retry_max(),
            heartbeat_interval: d_heartbeat_interval(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    #[serde(default)]
    pub dir: PathBuf,
    /// Total bytes of spooled (compressed) batches; a batch that does not fit is dropped and counted.
    #[serde(default = "d_spool_max")]
    pub max_bytes: ByteSize,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::new(),
            max_bytes: d_spool_max(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// A batch closes when its uncompressed records reach this size...
    #[serde(default = "d_batch_bytes")]
    pub max_bytes: ByteSize,
    /// ...or when it is this old.
    #[serde(default = "d_batch_age", with = "duration")]
    pub max_age: Duration,
    #[serde(default = "d_zstd_level")]
    pub zstd_level: i32,
    /// Bound of the queue between the sources and the batcher, in payload bytes...
    #[serde(default = "d_queue_bytes")]
    pub queue_bytes: ByteSize,
    /// ...and in chunks (one chunk is one recvmmsg call or one TCP read).
    #[serde(default = "d_queue_chunks")]
    pub queue_chunks: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_bytes: d_batch_bytes(),
            max_age: d_batch_age(),
            zstd_level: d_zstd_level(),
            queue_bytes: d_queue_bytes(),
            queue_chunks: d_queue_chunks(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve Prometheus `/metrics` here (port 0 picks one; see `RelayHandle::metrics_addr`).
    #[serde(default)]
    pub address: Option<SocketAddr>,
}

fn d_max_templates() -> usize {
    4096
}
fn d_netlink_buffer() -> ByteSize {
    ByteSize::mib(8)
}
fn d_max_line() -> ByteSize {
    ByteSize::mib(1)
}
fn d_poll_interval() -> Duration {
    Duration::from_millis(200)
}
fn d_rotate_wait() -> Duration {
    Duration::from_secs(1)
}
fn d_shutdown_timeout() -> Duration {
    Duration::from_secs(30)
}
fn d_receive_buffer() -> ByteSize {
    ByteSize::mib(8)
}
fn d_one() -> usize {
    1
}
fn d_max_message() -> ByteSize {
    ByteSize::kib(64)
}
fn d_max_datagram() -> ByteSize {
    ByteSize(65_535)
}
fn d_recv_batch() -> usize {
    64
}
fn d_recv_pause() -> Duration {
    Duration::from_micros(500)
}
fn d_uring_buffers() -> usize {
    256
}
fn d_idle_timeout() -> Duration {
    Duration::from_secs(300)
}
fn d_max_connections() -> usize {
    1024
}
fn d_handshake_timeout() -> Duration {
    Duration::from_secs(10)
}
fn d_queue_wait() -> Duration {
    Duration::from_secs(1)
}
fn d_upload_concurrency() -> usize {
    2
}
fn d_retry_initial() -> Duration {
    Duration::from_millis(200)
}
fn d_retry_max() -> Duration {
    Duration::from_secs(30)
}
fn d_heartbeat_interval() -> Duration {
    Duration::from_secs(30)
}
fn d_spool_max() -> ByteSize {
    ByteSize::gib(1)
}
fn d_batch_bytes() -> ByteSize {
    ByteSize::mib(8)
}
fn d_batch_age() -> Duration {
    Duration::from_secs(60)
}
fn d_zstd_level() -> i32 {
    1
}
fn d_queue_bytes() -> ByteSize {
    ByteSize::mib(16)
}
fn d_queue_chunks() -> usize {
    8192
}

/// Largest payload a record may carry (the raw format's limit minus the record's fixed part).
pub const MAX_PAYLOAD: u64 = (natlake_raw::MAX_RECORD - 34) as u64;

impl RelayConfig {
    /// A configuration with defaults, a store and a spool, and no sources.
    pub fn new(store: impl Into<String>, spool_dir: impl Into<PathBuf>) -> Self {
        Self {
            relay_id: None,
            labels: BTreeMap::new(),
            sources: Vec::new(),
            sink: SinkConfig {
                store: store.into(),
                ..Default::default()
            },
            spool: SpoolConfig {
                dir: spool_dir.into(),
                ..Default::default()
            },
            batch: BatchConfig::default(),
            metrics: MetricsConfig::default(),
            shutdown_timeout: d_shutdown_timeout(),
        }
    }

    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// The relay id in effect: the configured one, else the host name, else "relay".
    pub fn relay_id(&self) -> String {
        match &self.relay_id {
            Some(id) if !id.is_empty() => id.clone(),
            _ => hostname().unwrap_or_else(|| "relay".to_string()),
        }
    }

    /// Checks everything that can be checked without binding or connecting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.sink.store.is_empty() {
            return bad(
                "no store: set [sink] store or --store (file:///path, s3://bucket/prefix)".into(),
            );
        }
        match url::Url::parse(&self.sink.store) {
            Ok(u) if matches!(u.scheme(), "file" | "s3" | "s3a" | "memory") => {}
            Ok(u) => {
                return bad(format!(
                    "store {:?}: unsupported scheme {:?}",
                    self.sink.store,
                    u.scheme()
                ));
            }
            Err(e) => return bad(format!("store {:?}: {e}", self.sink.store)),
        }
        if self.spool.dir.as_os_str().is_empty() {
            return bad("no spool directory: set [spool] dir or --spool".into());
        }
        if self.sources.is_empty() {
            return bad("no sources: add [[sources]] or --syslog-udp / --syslog-tcp / --ipfix-udp / --conntrack / --json-*".into());
        }
        for t in ["conntrack", "json_stdin"] {
            if self.sources.iter().filter(|s| s.type_name() == t).count() > 1 {
                return bad(format!("at most one {t} source"));
            }
        }
        if let Some(id) = &self.relay_id
            && id.len() > 64
        {
            return bad(format!("relay_id {id:?} is longer than 64 characters"));
        }
        if self.relay_id.is_none() && self.relay_id().len() > 64 {
            return bad("the host name is longer than 64 characters: set relay_id".into());
        }
        let mut names = HashSet::new();
        for s in &self.sources {
            let name = s.name();
            if !names.insert(name.clone()) {
                return bad(format!("two sources are named {name:?}"));
            }
            match s {
                SourceConfig::SyslogUdp(u) => {
                    if !(1..=64).contains(&u.workers) {
                        return bad(format!("source {name}: workers must be 1..=64"));
                    }
                    if !(1..=1024).contains(&u.recv_batch) {
                        return bad(format!("source {name}: recv_batch must be 1..=1024"));
                    }
                    if !(64..=65_535).contains(&u.max_message.0) {
                        return bad(format!("source {name}: max_message must be 64B..=65535B"));
                    }
                    if u.recv_pause > Duration::from_millis(100) {
                        return bad(format!("source {name}: recv_pause must be at most 100ms"));
                    }
                    if !(1..=32_768).contains(&u.uring_buffers)
                        || !u.uring_buffers.is_power_of_two()
                    {
                        return bad(format!(
                            "source {name}: uring_buffers must be a power of two in 1..=32768"
                        ));
                    }
                    if u.workers > 1 && u.address.port() == 0 {
                        return bad(format!("source {name}: several workers need a fixed port"));
                    }
                }
                SourceConfig::IpfixUdp(f) | SourceConfig::NetflowUdp(f) => {
                    if !(1..=1_000_000).contains(&f.max_templates) {
                        return bad(format!("source {name}: max_templates must be 1..=1000000"));
                    }
                }
                SourceConfig::Conntrack(c) => {
                    if c.receive_buffer.0 < ByteSize::kib(64).0 {
                        return bad(format!(
                            "source {name}: receive_buffer must be at least 64KiB"
                        ));
                    }
                }
                SourceConfig::JsonFile(f) => {
                    if f.path.as_os_str().is_empty() {
                        return bad(format!("source {name}: path is empty"));
                    }
                    if f.max_line.0 < 64 || f.max_line.0 > MAX_PAYLOAD {
                        return bad(format!(
                            "source {name}: max_line must be 64B..={MAX_PAYLOAD}B"
                        ));
                    }
                    if f.poll_interval.is_zero() {
                        return bad(format!("source {name}: poll_interval must be positive"));
                    }
                }
                SourceConfig::JsonStdin(f) => {
                    if f.max_line.0 < 64 || f.max_line.0 > MAX_PAYLOAD {
                        return bad(format!(
                            "source {name}: max_line must be 64B..={MAX_PAYLOAD}B"
                        ));
                    }
                }
                SourceConfig::SyslogTcp(t) | SourceConfig::JsonTcp(t) => {
                    if t.max_frame.0 < 64 || t.max_frame.0 > MAX_PAYLOAD {
                        return bad(format!(
                            "source {name}: max_frame must be 64B..={MAX_PAYLOAD}B"
                        ));
                    }
                    if t.max_connections == 0 {
                        return bad(format!("source {name}: max_connections must be at least 1"));
                    }
                    if t.idle_timeout.is_zero() {
                        return bad(format!("source {name}: idle_timeout must be positive"));
                    }
                    if let Some(tls) = &t.tls {
                        if tls.handshake_timeout.is_zero() {
                            return bad(format!(
                                "source {name}: tls.handshake_timeout must be positive"
                            ));
                        }
                        // Reads and checks the files: --check-config reports a bad key here.
                        if let Err(e) = crate::tls::server_config(tls) {
                            return bad(format!("source {name}: tls: {e}"));
                        }
                    }
                }
            }
        }
        let b = &self.batch;
        if b.max_bytes.0 < 1024 || b.max_bytes.0 > ByteSize::gib(1).0 {
            return bad("batch.max_bytes must be 1KiB..=1GiB".into());
        }
        if b.max_age.is_zero() {
            return bad("batch.max_age must be positive".into());
        }
        // Negative levels are zstd's fast levels (same format); 0 would mean zstd's default (3).
        if !(-7..=19).contains(&b.zstd_level) || b.zstd_level == 0 {
            return bad("batch.zstd_level must be -7..=-1 (zstd's fast levels) or 1..=19".into());
        }
        if b.queue_chunks == 0 || b.queue_bytes.0 < ByteSize::kib(64).0 {
            return bad(
                "batch.queue_chunks must be positive and batch.queue_bytes at least 64KiB".into(),
            );
        }
        if !(1..=64).contains(&self.sink.upload_concurrency) {
            return bad("sink.upload_concurrency must be 1..=64".into());
        }
        if self.sink.heartbeat_interval < Duration::from_millis(10) {
            return bad("sink.heartbeat_interval must be at least 10ms".into());
        }
        if self.sink.retry_initial.is_zero() || self.sink.retry_max < self.sink.retry_initial {
            return bad("sink.retry_initial must be positive and at most sink.retry_max".into());
        }
        if self.spool.max_bytes.0 < ByteSize::mib(1).0 {
            return bad("spool.max_bytes must be at least 1MiB".into());
        }
        if self.spool.max_bytes < self.batch.max_bytes {
            // An incompressible batch could never be spooled.
            return bad(format!(
                "spool.max_bytes ({}) must be at least batch.max_bytes ({})",
                self.spool.max_bytes, self.batch.max_bytes
            ));
        }
        Ok(())
    }
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let s = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("label {s:?}: expected KEY=VALUE"))
}

/// Command line of the `edge-relay` binary. Flags override the file; each has an `EDGE_RELAY_*`
/// environment variable.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "edge-relay",
    version,
    about = "Lossless relay of network logs into raw batches in object storage"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, short = 'c', env = "EDGE_RELAY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Validate this configuration file (with any flags applied) and exit.
    #[arg(long, value_name = "FILE")]
    pub check_config: Option<PathBuf>,
    /// Object store URL: file:///path, s3://bucket/prefix.
    #[arg(long, env = "EDGE_RELAY_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// Spool directory (batches wait here until the store confirms them).
    #[arg(long, env = "EDGE_RELAY_SPOOL", value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Spool size bound (default 1GiB).
    #[arg(long, env = "EDGE_RELAY_SPOOL_MAX_BYTES", value_name = "SIZE")]
    pub spool_max_bytes: Option<ByteSize>,
    /// UDP syslog listener (repeatable or comma separated).
    #[arg(
        long,
        env = "EDGE_RELAY_SYSLOG_UDP",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub syslog_udp: Vec<SocketAddr>,
    /// TCP syslog listener, RFC 6587 framing (repeatable or comma separated).
    #[arg(
        long,
        env = "EDGE_RELAY_SYSLOG_TCP",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub syslog_tcp: Vec<SocketAddr>,
    /// TCP syslog over TLS listener, RFC 5425 (octet counting; LF framing accepted too);
    /// needs --tls-cert and --tls-key (repeatable or comma separated).
    #[arg(
        long,
        env = "EDGE_RELAY_SYSLOG_TLS",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub syslog_tls: Vec<SocketAddr>,
    /// PEM certificate chain (leaf first) of the --syslog-tls listeners.
    #[arg(long, env = "EDGE_RELAY_TLS_CERT", value_name = "PEM")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the --syslog-tls listeners.
    #[arg(long, env = "EDGE_RELAY_TLS_KEY", value_name = "PEM")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificate(s) for mutual TLS: --syslog-tls clients must present a certificate
    /// signed by one of them.
    #[arg(long, env = "EDGE_RELAY_TLS_CLIENT_CA", value_name = "PEM")]
    pub tls_client_ca: Option<PathBuf>,
    /// IPFIX / NetFlow v9 listener over UDP (repeatable or comma separated); both versions are
    /// recognised on one port.
    #[arg(
        long,
        env = "EDGE_RELAY_IPFIX_UDP",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub ipfix_udp: Vec<SocketAddr>,
    /// Same as --ipfix-udp, named for NetFlow v9 exporters.
    #[arg(
        long,
        env = "EDGE_RELAY_NETFLOW_UDP",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub netflow_udp: Vec<SocketAddr>,
    /// Read conntrack NEW/DESTROY events from netlink (needs CAP_NET_ADMIN).
    #[arg(long, env = "EDGE_RELAY_CONNTRACK")]
    pub conntrack: bool,
    /// Netlink receive buffer of --conntrack (default 8MiB).
    #[arg(long, env = "EDGE_RELAY_CONNTRACK_RECEIVE_BUFFER", value_name = "SIZE")]
    pub conntrack_receive_buffer: Option<ByteSize>,
    /// JSON lines over TCP, LF framed (repeatable or comma separated).
    #[arg(
        long,
        env = "EDGE_RELAY_JSON_TCP",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub json_tcp: Vec<SocketAddr>,
    /// JSON lines tailed from this file, across rotations (repeatable).
    #[arg(long, env = "EDGE_RELAY_JSON_FILE", value_name = "PATH")]
    pub json_file: Vec<PathBuf>,
    /// JSON lines from standard input.
    #[arg(long, env = "EDGE_RELAY_JSON_STDIN")]
    pub json_stdin: bool,
    /// Receive buffer of the UDP listeners given by flag (default 8MiB).
    #[arg(long, env = "EDGE_RELAY_UDP_RECEIVE_BUFFER", value_name = "SIZE")]
    pub udp_receive_buffer: Option<ByteSize>,
    /// Receive path of the UDP syslog listeners given by flag: auto (default), io_uring, recvmmsg.
    #[arg(long, env = "EDGE_RELAY_UDP_RECEIVE", value_name = "MODE")]
    pub udp_receive: Option<ReceiveMode>,
    /// SO_REUSEPORT receive threads per UDP listener given by flag.
    #[arg(long, env = "EDGE_RELAY_UDP_WORKERS", value_name = "N")]
    pub udp_workers: Option<usize>,
    /// Close a batch at this age (default 60s).
    #[arg(long, env = "EDGE_RELAY_BATCH_AGE", value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub batch_age: Option<Duration>,
    /// Close a batch at this uncompressed size (default 8MiB).
    #[arg(long, env = "EDGE_RELAY_BATCH_BYTES", value_name = "SIZE")]
    pub batch_bytes: Option<ByteSize>,
    /// Serve Prometheus /metrics on this address.
    #[arg(long, env = "EDGE_RELAY_METRICS", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Relay id in object keys (default: host name).
    #[arg(long, env = "EDGE_RELAY_ID", value_name = "ID")]
    pub relay_id: Option<String>,
    /// Label copied into every batch header (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
}

impl Cli {
    /// The configuration in effect: the file (`--check-config` or `--config`) if any, then the flags.
    pub fn to_config(&self) -> Result<RelayConfig, ConfigError> {
        let file = self.check_config.as_ref().or(self.config.as_ref());
        let mut cfg = match file {
            Some(p) => RelayConfig::from_file(p)?,
            None => RelayConfig::new(String::new(), PathBuf::new()),
        };
        if let Some(s) = &self.store {
            cfg.sink.store = s.clone();
        }
        if let Some(d) = &self.spool {
            cfg.spool.dir = d.clone();
        }
        if let Some(m) = self.spool_max_bytes {
            cfg.spool.max_bytes = m;
        }
        for addr in &self.syslog_udp {
            let mut u = UdpSourceConfig::new(*addr);
            if let Some(b) = self.udp_receive_buffer {
                u.receive_buffer = b;
            }
            if let Some(w) = self.udp_workers {
                u.workers = w;
            }
            if let Some(m) = self.udp_receive {
                u.receive = m;
            }
            cfg.sources.push(SourceConfig::SyslogUdp(u));
        }
        for addr in &self.syslog_tcp {
            cfg.sources
                .push(SourceConfig::SyslogTcp(TcpSourceConfig::new(*addr)));
        }
        if self.syslog_tls.is_empty() {
            if self.tls_cert.is_some() || self.tls_key.is_some() || self.tls_client_ca.is_some() {
                return Err(ConfigError::Invalid(
                    "--tls-cert, --tls-key and --tls-client-ca apply to --syslog-tls listeners; none is given".into(),
                ));
            }
        } else {
            let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
                return Err(ConfigError::Invalid(
                    "--syslog-tls needs --tls-cert and --tls-key".into(),
                ));
            };
            for addr in &self.syslog_tls {
                let mut tls = TlsConfig::new(cert, key);
                tls.client_ca = self.tls_client_ca.clone();
                let mut t = TcpSourceConfig::new(*addr);
                t.tls = Some(tls);
                cfg.sources.push(SourceConfig::SyslogTcp(t));
            }
        }
        for addr in &self.ipfix_udp {
            let mut f = FlowSourceConfig::new(*addr);
            if let Some(b) = self.udp_receive_buffer {
                f.receive_buffer = b;
            }
            cfg.sources.push(SourceConfig::IpfixUdp(f));
        }
        for addr in &self.netflow_udp {
            let mut f = FlowSourceConfig::new(*addr);
            if let Some(b) = self.udp_receive_buffer {
                f.receive_buffer = b;
            }
            cfg.sources.push(SourceConfig::NetflowUdp(f));
        }
        if self.conntrack {
            let mut c = ConntrackSourceConfig::default();
            if let Some(b) = self.conntrack_receive_buffer {
                c.receive_buffer = b;
            }
            cfg.sources.push(SourceConfig::Conntrack(c));
        }
        for addr in &self.json_tcp {
            cfg.sources
                .push(SourceConfig::JsonTcp(TcpSourceConfig::new(*addr)));
        }
        for path in &self.json_file {
            cfg.sources
                .push(SourceConfig::JsonFile(JsonFileSourceConfig::new(path)));
        }
        if self.json_stdin {
            cfg.sources
                .push(SourceConfig::JsonStdin(JsonStdinSourceConfig::default()));
        }
        if let Some(a) = self.batch_age {
            cfg.batch.max_age = a;
        }
        if let Some(b) = self.batch_bytes {
            cfg.batch.max_bytes = b;
        }
        if let Some(m) = self.metrics {
            cfg.metrics.address = Some(m);
        }
        if let Some(id) = &self.relay_id {
            cfg.relay_id = Some(id.clone());
        }
        for (k, v) in &self.labels {
            cfg.labels.insert(k.clone(), v.clone());
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn sizes_parse_binary_and_decimal_units() {
        assert_eq!("8MiB".parse::<ByteSize>().unwrap(), ByteSize(8 << 20));
        assert_eq!("8 MiB".parse::<ByteSize>().unwrap(), ByteSize(8 << 20));
        assert_eq!("64k".parse::<ByteSize>().unwrap(), ByteSize(65_536));
        assert_eq!("1GB".parse::<ByteSize>().unwrap(), ByteSize(1_000_000_000));
        assert_eq!("1.5KiB".parse::<ByteSize>().unwrap(), ByteSize(1536));
        assert_eq!("100".parse::<ByteSize>().unwrap(), ByteSize(100));
        assert!("".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("8 parsecs".parse::<ByteSize>().is_err());
        assert!("99999999999999999999GiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize::mib(8).to_string(), "8MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    const FULL: &str = r#"
        relay_id = "edge-par1"
        shutdown_timeout = "10s"
        [labels]
        site = "par1"

        [[sources]]
        type = "syslog_udp"
        address = "0.0.0.0:514"
        receive_buffer = "32MiB"
        workers = 2

        [[sources]]
        type = "syslog_tcp"
        name = "tcp"
        address = "[::]:601"
        idle_timeout = "2m"
        max_connections = 10

        [sink]
        store = "s3://bucket/prefix"
        [sink.s3]
        endpoint = "http://127.0.0.1:8333"

        [spool]
        dir = "/var/spool/edge-relay"
        max_bytes = "2GiB"

        [batch]
        max_bytes = "4MiB"
        max_age = "30s"

        [metrics]
        address = "127.0.0.1:9598"
    "#;

    #[test]
    fn full_file_parses_and_validates() {
        let cfg = RelayConfig::from_toml_str(FULL, "test").unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.relay_id(), "edge-par1");
        assert_eq!(cfg.labels["site"], "par1");
        assert_eq!(cfg.sources.len(), 2);
        match &cfg.sources[0] {
            SourceConfig::SyslogUdp(u) => {
                assert_eq!(u.receive_buffer, ByteSize::mib(32));
                assert_eq!(u.workers, 2);
                assert_eq!(u.max_message, ByteSize(65_535));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(cfg.sources[0].name(), "syslog_udp@0.0.0.0:514");
        assert_eq!(cfg.sources[1].name(), "tcp");
        match &cfg.sources[1] {
            SourceConfig::SyslogTcp(t) => {
                assert_eq!(t.idle_timeout, Duration::from_secs(120));
                assert_eq!(t.max_connections, 10);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            cfg.sink.s3.endpoint.as_deref(),
            Some("http://127.0.0.1:8333")
        );
        assert_eq!(cfg.spool.max_bytes, ByteSize::gib(2));
        assert_eq!(cfg.batch.max_bytes, ByteSize::mib(4));
        assert_eq!(cfg.batch.max_age, Duration::from_secs(30));
        assert_eq!(cfg.shutdown_timeout, Duration::from_secs(10));
        assert_eq!(cfg.metrics.address, Some("127.0.0.1:9598".parse().unwrap()));
    }

    #[test]
    fn unknown_fields_and_types_are_rejected() {
        let e = RelayConfig::from_toml_str("[sink]\nstore = \"file:///x\"\nstroe = 1\n", "t")
            .unwrap_err();
        assert!(e.to_string().contains("stroe"), "{e}");
        let e = RelayConfig::from_toml_str(
            "[[sources]]\ntype = \"carrier_pigeon\"\naddress = \"1.2.3.4:5\"\n",
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("carrier_pigeon"), "{e}");
        let e = RelayConfig::from_toml_str(
            "[[sources]]\ntype = \"syslog_udp\"\naddress = \"0.0.0.0:514\"\nrecieve_buffer = \"1MiB\"\n",
            "t",
        )
        .unwrap_err();
        assert!(e.to_string().contains("recieve_buffer"), "{e}");
        let e = RelayConfig::from_toml_str("[batch]\nmax_age = \"soon\"\n", "t").unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
    }

    #[test]
    fn validation_names_the_problem() {
        let mut cfg = RelayConfig::new("file:///tmp/x", "/tmp/spool");
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("no sources")
        );
        cfg.sources
            .push(SourceConfig::SyslogUdp(UdpSourceConfig::new(
                "127.0.0.1:0".parse().unwrap(),
            )));
        cfg.validate().unwrap();
        cfg.sink.store = "ftp://x".into();
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("unsupported scheme")
        );
        cfg.sink.store = "file:///tmp/x".into();
        cfg.batch.zstd_level = -3;
        cfg.validate().unwrap();
        cfg.batch.zstd_level = 0;
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("zstd_level")
        );
        cfg.batch.zstd_level = 1;
        let toml = "[[sources]]\ntype = \"syslog_udp\"\naddress = \"0.0.0.0:514\"\nreceive = \"io_uring\"\nuring_buffers = 64\n";
        let c = RelayConfig::from_toml_str(toml, "t").unwrap();
        match &c.sources[0] {
            SourceConfig::SyslogUdp(u) => {
                assert_eq!((u.receive, u.uring_buffers), (ReceiveMode::IoUring, 64))
            }
            other => panic!("{other:?}"),
        }
        let bad_mode = toml.replace("io_uring", "epoll");
        assert!(RelayConfig::from_toml_str(&bad_mode, "t").is_err());
        cfg.sources.push(SourceConfig::SyslogUdp(UdpSourceConfig {
            name: Some("odd".into()),
            uring_buffers: 100,
            ..UdpSourceConfig::new("127.0.0.1:0".parse().unwrap())
        }));
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("uring_buffers")
        );
        cfg.sources.pop();
        cfg.batch.max_age = Duration::ZERO;
        assert!(cfg.validate().unwrap_err().to_string().contains("max_age"));
        cfg.batch.max_age = Duration::from_secs(1);
        cfg.sources.push(cfg.sources[0].clone());
        assert!(
            cfg.validate()
                .unwrap_err()
                .to_string()
                .contains("two sources")
        );
    }

    #[test]
    fn flow_conntrack_and_json_sources_parse_from_file_and_flags() {
        let cfg = RelayConfig::from_toml_str(
            r#"
            [[sources]]
            type = "ipfix_udp"
            address = "0.0.0.0:4739"
            max_templates = 100
            [[sources]]
            type = "netflow_udp"
            address = "0.0.0.0:2055"
            [[sources]]
            type = "conntrack"
            receive_buffer = "16MiB"
            [[sources]]
            type = "json_tcp"
            address = "127.0.0.1:6000"
            [[sources]]
            type = "json_file"
            path = "/var/log/goflow2.log"
            rotate_wait = "2s"
            [[sources]]
            type = "json_stdin"
            [sink]
            store = "file:///tmp/lake"
            [spool]
            dir = "/tmp/spool"
            "#,
            "t",
        )
        .unwrap();
        cfg.validate().unwrap();
        let kinds: Vec<_> = cfg.sources.iter().map(|s| s.kind()).collect();
        assert_eq!(
            kinds,
            [
                InputKind::Ipfix,
                InputKind::Netflow,
                InputKind::ConntrackNetlink,
                InputKind::JsonLines,
                InputKind::JsonLines,
                InputKind::JsonLines
            ]
        );
        assert_eq!(cfg.sources[2].name(), "conntrack@netlink");
        assert_eq!(cfg.sources[4].name(), "json_file@/var/log/goflow2.log");
        assert_eq!(cfg.sources[4].address(), None);
        match &cfg.sources[4] {
            SourceConfig::JsonFile(f) => assert_eq!(f.rotate_wait, Duration::from_secs(2)),
            other => panic!("{other:?}"),
        }
        let mut two = cfg.clone();
        two.sources
            .push(SourceConfig::Conntrack(Default::default()));
        assert!(
            two.validate()
                .unwrap_err()
                .to_string()
                .contains("conntrack")
        );

        let cli = Cli::try_parse_from([
            "edge-relay",
            "--store",
            "file:///tmp/lake",
            "--spool",
            "/tmp/spool",
            "--ipfix-udp",
            "0.0.0.0:4739",
            "--conntrack",
            "--conntrack-receive-buffer",
            "32MiB",
            "--json-tcp",
            "127.0.0.1:6000",
            "--json-file",
            "/var/log/a.json",
            "--json-stdin",
        ])
        .unwrap();
        let cfg = cli.to_config().unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.sources.len(), 5);
        match &cfg.sources[1] {
            SourceConfig::Conntrack(c) => assert_eq!(c.receive_buffer, ByteSize::mib(32)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_make_a_config_without_a_file() {
        let cli = Cli::try_parse_from([
            "edge-relay",
            "--store",
            "file:///tmp/lake",
            "--spool",
            "/tmp/spool",
            "--syslog-udp",
            "0.0.0.0:514,127.0.0.1:1514",
            "--syslog-tcp",
            "0.0.0.0:601",
            "--batch-age",
            "5s",
            "--batch-bytes",
            "1MiB",
            "--relay-id",
            "r1",
            "--label",
            "site=par1",
        ])
        .unwrap();
        let cfg = cli.to_config().unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.sources.len(), 3);
        assert_eq!(cfg.batch.max_age, Duration::from_secs(5));
        assert_eq!(cfg.batch.max_bytes, ByteSize::mib(1));
        assert_eq!(cfg.spool.max_bytes, ByteSize::gib(1));
        assert_eq!(cfg.relay_id(), "r1");
        assert_eq!(cfg.labels["site"], "par1");
    }
}
