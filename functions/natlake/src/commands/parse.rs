//! `natlake parse`: lines on stdin to normalized events on stdout, for onboarding a device.

use std::io::{BufRead, Write};

use natlake_core::parsers::{self, Format, ParseCtx};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// The parser to use; `auto` detects it per line.
    #[arg(long, default_value = "auto",
          value_parser = clap::builder::PossibleValuesParser::new(Format::ALL.map(Format::as_str)))]
    format: String,
    /// The device's time zone for timestamps without an offset: an IANA name
    /// ("Europe/Berlin", daylight saving applied at each stamp's date) or "+05:30".
    #[arg(long, default_value = "UTC")]
    tz: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let format = Format::parse(&args.format)
        .ok_or_else(|| anyhow::anyhow!("unknown format {:?}", args.format))?;
    let zone = natlake_core::time::Zone::parse(&args.tz)?;
    let stdin = std::io::stdin().lock();
    let mut out = std::io::stdout().lock();
    let mut events = Vec::new();
    let (mut ok, mut bad) = (0u64, 0u64);
    for (n, line) in stdin.split(b'\n').enumerate() {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let ctx = ParseCtx {
            recv_time: natlake_core::time::now_micros(),
            zone,
        };
        events.clear();
        match parsers::parse_message(&line, format, &ctx, &mut events) {
            Ok(p) => {
                ok += 1;
                for e in &events {
                    let mut v = serde_json::to_value(e)?;
                    v["line"] = json!(n + 1);
                    v["format"] = json!(p.format);
                    v["host"] = json!(p.host);
                    v["time"] = json!(natlake_core::time::format_time(e.time()));
                    writeln!(out, "{v}")?;
                }
            }
            Err(e) => {
                bad += 1;
                writeln!(
                    out,
                    "{}",
                    json!({"line": n + 1, "error": e.reason, "format": e.format})
                )?;
            }
        }
    }
    eprintln!("natlake parse: {ok} lines parsed, {bad} rejected");
    Ok(())
}
