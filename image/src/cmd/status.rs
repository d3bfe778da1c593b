//! `kindling status` and `kindling services`: what an operator looks at
//! first, from `GET /v1/status` and `GET /v1/services`, as a short summary
//! and a services table (or the API's JSON with `--json`).
//!
//! Owns the client side only. init's answer is decoded as its wire type
//! (`kindling_init_protocol::control::ListResponse`); when the appliance
//! says init could not be asked, that is shown instead of failing.

use super::client::{Session, Target};
use super::table::{cell, duration_ms, wire_name, Table};
use kindling_api::status::Status;
use kindling_init_protocol::control::ListResponse;
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub target: Target,
    /// Print the API's JSON instead of the human summary.
    #[arg(long)]
    pub json: bool,
}

/// `kindling status`.
pub fn status(args: Args) -> anyhow::Result<()> {
    let body: Value = Session::open(&args.target)?.get("/v1/status")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let status: Status = serde_json::from_value(body)
        .map_err(|e| anyhow::anyhow!("GET /v1/status: unexpected reply: {e}"))?;
    print!("{}", summary(&status));
    Ok(())
}

/// `kindling services`.
pub fn services(args: Args) -> anyhow::Result<()> {
    let body: Value = Session::open(&args.target)?.get("/v1/services")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let list: ListResponse = serde_json::from_value(body)
        .map_err(|e| anyhow::anyhow!("GET /v1/services: unexpected reply: {e}"))?;
    print!("{}", services_table(&list));
    Ok(())
}

/// One service per line: state, readiness, restarts, uptime, pid, uid, why.
pub fn services_table(list: &ListResponse) -> String {
    let mut table = Table::new(&[
        "SERVICE", "STATE", "READY", "RESTARTS", "UPTIME", "PID", "UID", "REASON",
    ]);
    for s in &list.services {
        table.row(vec![
            s.name.clone(),
            cell(wire_name(&s.state)),
            if s.ready { "yes" } else { "no" }.into(),
            s.restarts.to_string(),
            cell(s.uptime_ms.map(duration_ms)),
            cell(s.pid),
            s.user.to_string(),
            cell(s.reason.as_deref()),
        ]);
    }
    table.render()
}

/// The node counts of the PXE service's status file, `discovered 2, booting 1`.
fn node_counts(status: &Status) -> Option<String> {
    let inventory = status.services.get("pxe")?.get("inventory")?.as_object()?;
    let parts: Vec<String> = inventory
        .iter()
        .filter_map(|(state, n)| n.as_u64().map(|n| format!("{state} {n}")))
        .collect();
    Some(if parts.is_empty() {
        "none seen yet".into()
    } else {
        parts.join(", ")
    })
}

/// The summary `kindling status` prints.
pub fn summary(status: &Status) -> String {
    let mut out = Table::new(&["", ""]);
    let mut line = |k: &str, v: String| {
        out.row(vec![k.into(), v]);
    };
    line(
        "version",
        if status.version.is_empty() {
            "unknown".into()
        } else {
            status.version.clone()
        },
    );
    let init = serde_json::from_value::<ListResponse>(status.init.clone());
    match &init {
        Ok(list) if list.ready => line("state", "ready".into()),
        Ok(list) if list.degraded.is_empty() => line("state", "starting".into()),
        Ok(list) => line("state", format!("degraded: {}", list.degraded.join("; "))),
        Err(_) => line(
            "state",
            format!(
                "unknown: {}",
                status
                    .init
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("init's answer is not readable")
            ),
        ),
    }
    line("api CA", status.api.ca_fingerprint.clone());
    line("listening", status.api.listening.join(", "));
    if let Ok(list) = &init {
        let phases: Vec<String> = list
            .phases
            .iter()
            .map(|p| {
                format!(
                    "{} {} {}",
                    p.name,
                    cell(wire_name(&p.state)),
                    duration_ms(p.ms)
                )
            })
            .collect();
        line("phases", phases.join(", "));
        let ready = list.services.iter().filter(|s| s.ready).count();
        let restarts: u64 = list.services.iter().map(|s| u64::from(s.restarts)).sum();
        line(
            "services",
            format!(
                "{ready}/{} ready, {restarts} restarts (kindling services)",
                list.services.len()
            ),
        );
    }
    if let Some(nodes) = node_counts(status) {
        line("nodes", nodes);
    }
    let alerts: Vec<&str> = status
        .services
        .get("pxe")
        .and_then(|p| p.get("alerts"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    for alert in alerts {
        line("alert", alert.into());
    }
    // The header row is empty: drop it.
    out.render()
        .lines()
        .skip(1)
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn sample() -> Status {
        serde_json::from_value(json!({
            "version": "1.2.3",
            "init": {
                "phases": [{"name": "network", "state": "done", "ms": 1250, "detail": ""}],
                "services": [
                    {"name": "pxe", "state": "running", "pid": 42, "restarts": 2,
                     "uptime_ms": 65000, "ready": true, "reason": null, "user": 402},
                    {"name": "ntp", "state": "backoff", "pid": null, "restarts": 5,
                     "uptime_ms": null, "ready": false, "reason": "exit 1", "user": 404}
                ],
                "ready": false,
                "degraded": ["ntp: exit 1"]
            },
            "config": null,
            "services": {"pxe": {"inventory": {"booting": 1, "discovered": 2},
                                  "alerts": ["52:54:00:6b:00:20 grant_reused: twice"]}},
            "api": {"ca_fingerprint": "sha256:ab", "listening": ["192.168.100.1:9000"],
                    "counters": {}}
        }))
        .unwrap()
    }

    #[test]
    fn the_summary_names_state_nodes_and_alerts() {
        let text = summary(&sample());
        let expected = "\
version    1.2.3
state      degraded: ntp: exit 1
api CA     sha256:ab
listening  192.168.100.1:9000
phases     network done 1.2s
services   1/2 ready, 7 restarts (kindling services)
nodes      booting 1, discovered 2
alert      52:54:00:6b:00:20 grant_reused: twice
";
        assert_eq!(text, expected);
    }

    #[test]
    fn init_unreachable_is_said_not_hidden() {
        let mut status = sample();
        status.init = json!({"error": "listing init's services: connect /run/kindling/init.sock"});
        let text = summary(&status);
        assert!(
            text.contains("state      unknown: listing init's services"),
            "{text}"
        );
        assert!(!text.contains("phases"), "{text}");
    }

    #[test]
    fn the_services_table_has_one_row_per_service() {
        let list: ListResponse = serde_json::from_value(sample().init).unwrap();
        let text = services_table(&list);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].starts_with("SERVICE  STATE    READY  RESTARTS  UPTIME"),
            "{text}"
        );
        assert!(
            lines[1].contains("pxe") && lines[1].contains("1m05s"),
            "{text}"
        );
        assert!(
            lines[2].contains("backoff") && lines[2].ends_with("exit 1"),
            "{text}"
        );
    }
}
