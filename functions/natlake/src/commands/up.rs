//! `natlake up`: relay + normalize + lookup in one process on a local directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use edge_relay::{Relay, RelayHandle};
use natlake_normalize::enrich::EnrichConfig;
use natlake_normalize::events::StoreScope;
use natlake_normalize::handler::NormalizeConfig;
use natlake_normalize::service::Normalizer;
use natlake_raw::InputKind;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Where raw objects, the lake and the relay's spool live.
    #[arg(long, env = "NATLAKE_DATA_DIR", default_value = "./natlake-data")]
    pub data_dir: PathBuf,
    /// UDP syslog listener.
    #[arg(long, default_value = "127.0.0.1:5514")]
    pub syslog_udp: SocketAddr,
    /// HTTP API (lookup, sessions, normalize webhook, metrics).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Close relay batches after this long (smaller = fresher lake, more objects).
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub batch_age: Duration,
    /// Parser for every record (auto detects per record).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// Also read this host's conntrack NEW / DESTROY events from netlink (needs CAP_NET_ADMIN;
    /// run natlake in the NAT box's network namespace).
    #[arg(long)]
    pub conntrack: bool,
    /// How often the compact function runs (it works only on finished hours).
    #[arg(long, default_value = "5m", value_parser = super::parse_duration)]
    pub compact_every: Duration,
    /// Deterministic NAT configuration (TOML or JSON), published to the data dir's
    /// config/deterministic_nat.toml after checking that past periods are unchanged.
    #[arg(long, env = "NATLAKE_DETERMINISTIC")]
    pub deterministic: Option<PathBuf>,
    /// Enrichment sources (TOML; README "Enrichment"): loaded at start, reloaded on change.
    #[arg(long, env = "NATLAKE_ENRICH_CONFIG")]
    pub enrich_config: Option<PathBuf>,
    #[command(flatten)]
    pub time_zones: natlake_normalize::time_zones::TimeZoneArgs,
}

/// The embedded stack, running.
pub struct Stack {
    pub relay: RelayHandle,
    pub normalizer: Normalizer,
    pub http: SocketAddr,
    pub syslog_udp: SocketAddr,
    server: tokio::task::JoinHandle<()>,
    shutdown: tokio::sync::oneshot::Sender<()>,
}

fn relay_config(
    data_dir: &Path,
    url: &str,
    udp: SocketAddr,
    batch_age: Duration,
    conntrack: bool,
) -> anyhow::Result<edge_relay::config::RelayConfig> {
    // Built through the relay's own TOML schema, so `natlake up` accepts exactly what a
    // stand-alone relay would.
    let toml = format!(
        "relay_id = \"natlake-up\"\n\
         [[sources]]\ntype = \"syslog_udp\"\naddress = \"{udp}\"\n\
         {ct}\
         [sink]\nstore = \"{url}\"\n\
         [spool]\ndir = {spool:?}\n\
         [batch]\nmax_age = \"{age}\"\n",
        spool = data_dir.join("spool").display().to_string(),
        age = humantime::format_duration(batch_age),
        ct = if conntrack {
            "[[sources]]\ntype = \"conntrack\"\n"
        } else {
            ""
        },
    );
    toml::from_str(&toml).context("building the relay configuration")
}

impl Stack {
    pub async fn start(args: &Args) -> anyhow::Result<Stack> {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating {}", args.data_dir.display()))?;
        let data_dir = std::path::absolute(&args.data_dir)?;
        let url = natlake_store::dir_url(&data_dir)?;
        let store = natlake_store::open(&url, &Default::default())?;
        if let Some(path) = &args.deterministic {
            let cfg = natlake_query::deterministic::read_file(path)?;
            natlake_query::deterministic::publish(&store, &cfg)
                .await
                .context("publishing the deterministic NAT configuration")?;
        }
        // One Prometheus recorder for the whole process, installed before anything counts.
        let prom = edge_relay::metrics::prometheus_handle();
        let relay = Relay::start_with_store(
            relay_config(
                &data_dir,
                &url,
                args.syslog_udp,
                args.batch_age,
                args.conntrack,
            )?,
            store.clone(),
        )
        .await
        .context("starting the relay")?;
        let syslog_udp = relay
            .local_addr(InputKind::SyslogUdp)
            .context("relay has no UDP listener")?;

        let cfg = NormalizeConfig {
            format: args.format.clone(),
            enrich: EnrichConfig::read(args.enrich_config.as_deref(), &store).await?,
            time_zones: args.time_zones.load()?,
            inline_io: natlake_store::completes_inline(&url),
            ..NormalizeConfig::default()
        };
        cfg.parsed_format()?;
        let cfg = cfg.load_enrichment(&store).await?;
        // Lookups read the same identity sources at each question's time.
        let identity = cfg.enricher.clone();
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let normalizer = Normalizer::start(store.clone(), StoreScope::from_url(&url), cfg, workers);
        tokio::spawn(normalizer.clone().poll_forever(
            Duration::from_millis(500),
            natlake_normalize::service::RESCAN,
        ));

        let compactor = natlake_compact::service::Compactor::new(
            store.clone(),
            natlake_compact::CompactConfig::default(),
        );
        tokio::spawn(compactor.clone().every(args.compact_every));

        let lake = Arc::new(
            natlake_query::Lake::with_store(store, Some(data_dir.clone()), &data_dir.join("tmp"))
                .with_identity(identity),
        );
        let app = natlake_lookup::api::router(lake)
            .merge(natlake_normalize::service::router(normalizer.clone()))
            .merge(natlake_compact::service::router(compactor))
            .route(
                "/metrics",
                axum::routing::get(move || {
                    std::future::ready(prom.as_ref().map(|h| h.render()).unwrap_or_default())
                }),
            );
        let listener = tokio::net::TcpListener::bind(args.http)
            .await
            .with_context(|| format!("binding {}", args.http))?;
        let http = listener.local_addr()?;
        let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Stack {
            relay,
            normalizer,
            http,
            syslog_udp,
            server,
            shutdown,
        })
    }

    /// Flushes the relay (spool and store), then stops serving.
    pub async fn stop(self) -> anyhow::Result<()> {
        let stats = self.relay.shutdown().await?;
        tracing::info!(?stats, "relay stopped");
        let _ = self.shutdown.send(());
        let _ = self.server.await;
        Ok(())
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let stack = Stack::start(&args).await?;
    eprintln!("natlake up: data in {}", args.data_dir.display());
    eprintln!("  syslog (UDP): {}", stack.syslog_udp);
    eprintln!(
        "  lookup API:   http://{}/v1/attribution?ip=&port=&at=",
        stack.http
    );
    eprintln!(
        "  sessions:     http://{}/v1/sessions?x_ip=&timestamp_gt=&timestamp_lt=",
        stack.http
    );
    eprintln!(
        "  batches close every {}; Ctrl-C flushes and stops",
        humantime::format_duration(args.batch_age)
    );
    natlake_core::runtime::shutdown_signal().await;
    eprintln!("natlake up: flushing…");
    stack.stop().await
}
