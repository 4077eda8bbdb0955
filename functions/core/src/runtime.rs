//! Process plumbing the function binaries share: arguments on Lambda, logging setup, durations
//! and shutdown signals.

use std::ffi::OsString;
use std::time::Duration;

/// The process's arguments — or `[name, "lambda"]` when the Lambda runtime started the binary as
/// its bootstrap (no arguments, `AWS_LAMBDA_RUNTIME_API` set). The bool says "on Lambda".
pub fn args_or_lambda(name: &str) -> (bool, Vec<OsString>) {
    let on_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    let args: Vec<OsString> = std::env::args_os().collect();
    if on_lambda && args.len() == 1 {
        (true, vec![name.into(), "lambda".into()])
    } else {
        (on_lambda, args)
    }
}

/// A duration flag: `10s`, `5m`, `7days` (humantime), or `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if s.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    s.parse::<humantime::Duration>()
        .map(Into::into)
        .map_err(|e| e.to_string())
}

/// Logs to stderr, filtered by `RUST_LOG` (default info). `ansi` off on Lambda (CloudWatch).
pub fn init_tracing(ansi: bool) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
        }
        Err(_) => {
            let _ = ctrl_c.await;
        }
    }
}
