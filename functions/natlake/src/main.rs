//! `natlake`: the all-in-one binary. `natlake up` runs the relay, normalize and lookup in one
//! process on a local directory; the other subcommands are the operator's tools.

mod commands;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "natlake",
    version,
    about = "NAT, conntrack, flow and firewall logs in a Parquet lake; attribution lookups"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the embedded stack on a local directory: syslog listener, normalizer, lookup API.
    Up(commands::up::Args),
    /// Start the embedded stack in a temporary directory, send sample events, print a lookup.
    Demo(commands::demo::Args),
    /// Look up who held a public IP:port at a time (prints the API's JSON).
    Lookup(commands::lookup::Args),
    /// Run SQL over the lake with the views from queries/views.sql.
    Sql(commands::sql::Args),
    /// Parse lines from stdin and print normalized events as NDJSON.
    Parse(commands::parse::Args),
    /// Normalize raw objects already in a store (backfill, re-run after an upgrade).
    Normalize(commands::normalize::Args),
    /// Carry open NAT mappings into the next hour and merge finished hours' small objects.
    Compact(commands::compact::Args),
    /// Raw batch objects.
    #[command(subcommand)]
    Raw(commands::raw::Cmd),
    /// Raw objects normalize gave up on; accepting their loss after checking them.
    #[command(subcommand)]
    DeadLetters(commands::dead_letters::Cmd),
    /// Relays' heartbeats (up to when each input is stored), what they dropped; retiring a relay
    /// gone for good, accepting the loss of drops.
    #[command(subcommand)]
    Relays(commands::relays::Cmd),
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    natlake_core::runtime::init_tracing(true);
    let result = match cli.cmd {
        Cmd::Up(a) => commands::up::run(a).await,
        Cmd::Demo(a) => commands::demo::run(a).await,
        Cmd::Lookup(a) => commands::lookup::run(a).await,
        Cmd::Sql(a) => commands::sql::run(a).await,
        Cmd::Parse(a) => commands::parse::run(a),
        Cmd::Normalize(a) => commands::normalize::run(a).await,
        Cmd::Compact(a) => commands::compact::run(a).await,
        Cmd::Raw(c) => commands::raw::run(c).await,
        Cmd::DeadLetters(c) => commands::dead_letters::run(c).await,
        Cmd::Relays(c) => commands::relays::run(c).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natlake: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
