//! `kindling logs [SERVICE] [-f] [--since 10m|RFC3339] [-n N]`: what the
//! appliance keeps of its services' output (`GET /v1/logs`,
//! `GET /v1/logs/SERVICE`). Without SERVICE, one line per service with the
//! size of its files and where they are kept; with it, the newest lines,
//! and with `-f` every new line as it is written until interrupted.
//!
//! Owns the client side only: lines are printed as the appliance stores
//! them (`<UTC time> [<seconds since boot>] <text>`).

use super::client::{query_value, Session, Target};
use anyhow::bail;
use kindling_api::logs::{LogLines, LogList, LogStorage};
use std::io::Write;

#[derive(clap::Args)]
#[command(
    after_help = "Examples:\n  kindling logs\n  kindling logs stack -f\n  kindling logs pxe --since 10m\n  kindling logs api -n 50 --since 2026-12-05T16:00:00Z"
)]
pub struct Args {
    /// The service (as `kindling logs` lists them); none: list them all.
    pub service: Option<String>,
    /// Keep printing new lines as the service writes them.
    #[arg(short, long)]
    pub follow: bool,
    /// Only lines from this long ago (10m, 2h) or since this RFC 3339 time.
    #[arg(long, value_name = "10m|RFC3339")]
    pub since: Option<String>,
    /// At most this many of the newest lines (default 200, or all since --since).
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,
    /// Print the API's JSON instead of text (not with --follow).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub target: Target,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Some(service) = &args.service else {
        let list: LogList = Session::open(&args.target)?.get_as("/v1/logs")?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&list)?);
        } else {
            print!("{}", table(&list));
        }
        return Ok(());
    };
    let path = path_for(service, &args);
    if !args.follow {
        let body: LogLines = Session::open(&args.target)?.get_as(&path)?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&body)?);
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        for line in &body.lines {
            writeln!(out, "{line}")?;
        }
        return Ok(());
    }
    if args.json {
        bail!("--json and --follow do not go together: a followed log is plain lines");
    }
    follow(&args.target, &path)
}

/// `/v1/logs/SERVICE?...`, every value %-encoded.
fn path_for(service: &str, args: &Args) -> String {
    let mut query = Vec::new();
    if let Some(since) = &args.since {
        query.push(format!("since={}", query_value(since)));
    }
    if let Some(n) = args.lines {
        query.push(format!("lines={n}"));
    }
    if args.follow {
        query.push("follow=1".to_string());
    }
    let mut path = format!("/v1/logs/{}", query_value(service));
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    path
}

/// Streams the followed log to stdout until the appliance ends it.
fn follow(target: &Target, path: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    Session::open(target)?.stream(path, |chunk| {
        // A closed stdout (`| head`) ends the follow.
        out.write_all(chunk).and_then(|()| out.flush()).is_ok()
    })
}

fn table(list: &LogList) -> String {
    let mut out = format!("{:<16} {:>5} {:>12}\n", "SERVICE", "FILES", "BYTES");
    for s in &list.services {
        out.push_str(&format!(
            "{:<16} {:>5} {:>12}\n",
            s.service, s.files, s.bytes
        ));
    }
    let kept = match list.storage {
        LogStorage::Data => "on the data partition (kept across reboots)".to_string(),
        LogStorage::Ram => "in RAM (lost at reboot)".to_string(),
    };
    out.push_str(&format!(
        "logs: {kept}, {} files of {} KiB per service",
        list.files_per_service,
        list.file_bytes / 1024
    ));
    if let Some(reason) = &list.reason {
        out.push_str(&format!(": {reason}"));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    #[test]
    fn flags_become_a_query() {
        let cli = Cli::parse_from([
            "logs",
            "stack",
            "-f",
            "--since",
            "2026-12-05T17:00:00+01:00",
            "-n",
            "5",
        ]);
        assert_eq!(
            path_for("stack", &cli.args),
            "/v1/logs/stack?since=2026-12-05T17%3A00%3A00%2B01%3A00&lines=5&follow=1"
        );
        let cli = Cli::parse_from(["logs", "pxe"]);
        assert_eq!(path_for("pxe", &cli.args), "/v1/logs/pxe");
        assert_eq!(query_value("../x y"), "..%2Fx%20y");
    }

    #[test]
    fn the_table_says_where_logs_are_kept() {
        let list: LogList = serde_json::from_value(serde_json::json!({
            "storage": "ram", "reason": "no data partition: kindling.data=none",
            "file_bytes": 1048576, "files_per_service": 4,
            "services": [{"service": "stack", "bytes": 2048, "files": 1}]
        }))
        .unwrap();
        let t = table(&list);
        assert!(t.contains("stack                1         2048"), "{t}");
        assert!(
            t.ends_with("logs: in RAM (lost at reboot), 4 files of 1024 KiB per service: no data partition: kindling.data=none\n"),
            "{t}"
        );
    }
}
