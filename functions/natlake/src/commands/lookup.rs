//! `natlake lookup`: the attribution answer as JSON, from a data dir or a store.

use std::collections::HashMap;

use super::LakeArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    lake: LakeArgs,
    /// Public IP address.
    #[arg(long)]
    ip: String,
    /// Public port.
    #[arg(long)]
    port: String,
    /// Time: RFC 3339 or Unix epoch seconds.
    #[arg(long)]
    at: String,
    /// Protocol name or number.
    #[arg(long)]
    proto: Option<String>,
    /// Tolerance in seconds (default 2).
    #[arg(long)]
    window: Option<String>,
    /// Deterministic NAT configuration file to answer from (instead of the store's
    /// config/deterministic_nat.toml); read only, nothing is published.
    #[arg(long, env = "NATLAKE_DETERMINISTIC")]
    deterministic: Option<std::path::PathBuf>,
    /// Enrichment configuration (TOML, as normalize's): its identity sources (RADIUS, DHCP)
    /// are read at the question's time, beside the subscriber the events recorded.
    #[arg(long, env = "NATLAKE_ENRICH_CONFIG")]
    enrich_config: Option<std::path::PathBuf>,
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut p: HashMap<String, String> = HashMap::new();
    p.insert("ip".into(), args.ip);
    p.insert("port".into(), args.port);
    p.insert("at".into(), args.at);
    if let Some(v) = args.proto {
        p.insert("proto".into(), v);
    }
    if let Some(v) = args.window {
        p.insert("window".into(), v);
    }
    let q = natlake_lookup::params::question(&p).map_err(|m| anyhow::anyhow!(m))?;
    let mut lake = args.lake.lake()?;
    if let Some(path) = &args.deterministic {
        let cfg = natlake_query::deterministic::read_file(path)?;
        lake = lake.with_deterministic(natlake_query::deterministic::DetSource::fixed(
            cfg,
            format!("file:{}", path.display()),
        ));
    }
    if let Some(path) = &args.enrich_config {
        let cfg =
            natlake_core::enrich::sources::EnrichConfig::read(Some(path), &lake.store).await?;
        let identity =
            natlake_core::enrich::sources::EnrichHandle::load(&lake.store, &cfg.identity_only())
                .await?;
        lake = lake.with_identity(identity);
    }
    let answer = natlake_query::attribution::attribute(&lake, &q).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&natlake_lookup::api::answer_json(&q, &answer))?
    );
    Ok(())
}
