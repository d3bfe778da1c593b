//! The dashboard's screen: a [`Snapshot`] and the last events rendered as
//! exactly `height` lines of at most `width` characters, plain text (the
//! caller adds the ANSI cursor moves). Pure, so a test can pin it down.
//!
//! Layout, top to bottom: who and what (host, site, version, clock),
//! health, the API's CA fingerprint, LAN and uplink addresses, node counts,
//! the services table, then as many last events as fit.

use super::events::{alerts, node_counts, EventLog};
use super::snapshot::Snapshot;
use kindling_init_protocol::control::ListResponse;
use serde_json::Value;

fn name_of(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        _ => "?".into(),
    }
}

fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `HH:MM:SS` (UTC) of a Unix time.
fn clock(unix: u64) -> String {
    let t = kindling_clock::rfc3339(unix);
    t.get(11..19).unwrap_or(&t).to_string()
}

/// One NIC role of `net.json`: `eth1 192.168.100.1/24 up`.
fn role_line(net: &Value, role: &str) -> String {
    let Some(r) = net.get(role).filter(|r| !r.is_null()) else {
        return if net.is_null() {
            "network service not reporting yet".into()
        } else {
            "not configured".into()
        };
    };
    let device = r.get("device").and_then(Value::as_str).unwrap_or("?");
    let addresses: Vec<&str> = r
        .get("addresses")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let carrier = if r.get("carrier").and_then(Value::as_bool) == Some(true) {
        "up"
    } else {
        "NO CARRIER"
    };
    let addresses = if addresses.is_empty() {
        "no address".to_string()
    } else {
        addresses.join(" ")
    };
    format!("{device} {addresses} {carrier}")
}

fn health(init: &Result<ListResponse, String>) -> String {
    match init {
        Ok(l) => {
            let ready = l.services.iter().filter(|s| s.ready).count();
            let word = if l.ready {
                "READY".to_string()
            } else if l.degraded.is_empty() {
                "STARTING".to_string()
            } else {
                format!("DEGRADED: {}", l.degraded.join("; "))
            };
            format!("{word} ({ready}/{} services ready)", l.services.len())
        }
        Err(e) => format!("UNKNOWN: init not answering: {e}"),
    }
}

/// The whole screen: exactly `height` lines, none wider than `width`.
pub fn render(s: &Snapshot, events: &EventLog, width: usize, height: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let title = format!(
        "kindling {} site {} v{}",
        s.host.as_deref().unwrap_or("(no site yet)"),
        s.site_id.as_deref().unwrap_or("-"),
        if s.version.is_empty() {
            "?"
        } else {
            &s.version
        }
    );
    let time = format!("{} UTC", clock(s.now));
    let gap = width.saturating_sub(title.chars().count() + time.chars().count());
    lines.push(format!("{title}{}{time}", " ".repeat(gap.max(1))));
    lines.push(format!("Health  {}", health(&s.init)));
    lines.push(format!(
        "API CA  {}",
        match &s.ca_fingerprint {
            Ok(f) => f.clone(),
            Err(e) => format!("unknown ({e})"),
        }
    ));
    lines.push(format!("LAN     {}", role_line(&s.net, "lan")));
    let mut uplink = role_line(&s.net, "uplink");
    if let Some(gw) = s
        .net
        .get("lease")
        .and_then(|l| l.get("routers"))
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .and_then(Value::as_str)
    {
        uplink.push_str(&format!(" via {gw} (DHCP)"));
    }
    lines.push(format!("Uplink  {uplink}"));
    let counts = node_counts(&s.pxe);
    let nodes = if s.pxe.is_null() {
        "PXE service not reporting".to_string()
    } else if counts.is_empty() {
        "none seen yet".to_string()
    } else {
        counts
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join("  ")
    };
    let alert_count = alerts(&s.pxe).len();
    let alerts = if alert_count > 0 {
        format!("  ALERTS {alert_count}")
    } else {
        String::new()
    };
    lines.push(format!("Nodes   {nodes}{alerts}"));
    lines.push(rule("Services", width));
    lines.push(format!(
        "{:<16} {:<13} {:<5} {:>8} {:>8}  {}",
        "SERVICE", "STATE", "READY", "RESTARTS", "UPTIME", "WHY"
    ));
    if let Ok(list) = &s.init {
        for svc in &list.services {
            lines.push(format!(
                "{:<16} {:<13} {:<5} {:>8} {:>8}  {}",
                svc.name,
                name_of(&svc.state),
                if svc.ready { "yes" } else { "no" },
                svc.restarts,
                svc.uptime_ms.map_or("-".into(), duration),
                svc.reason.as_deref().unwrap_or("")
            ));
        }
    }
    lines.push(rule("Last events", width));
    let room = height.saturating_sub(lines.len() + 1);
    for e in events.latest().take(room) {
        lines.push(format!("{} {}", clock(e.at), e.text));
    }
    // The last line says where more is: the API and its CLI.
    lines.truncate(height.saturating_sub(1));
    while lines.len() < height.saturating_sub(1) {
        lines.push(String::new());
    }
    lines.push("kindling status / kindling node list from a workstation (kindling login)".into());
    lines
        .into_iter()
        .map(|l| {
            let fitted: String = l.chars().take(width).collect();
            fitted.trim_end().to_string()
        })
        .collect()
}

fn rule(title: &str, width: usize) -> String {
    let head = format!("── {title} ");
    let rest = width.saturating_sub(head.chars().count());
    format!("{head}{}", "─".repeat(rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn snapshot(now: u64, restarts: u32, booting: u64) -> Snapshot {
        let init: ListResponse = serde_json::from_value(json!({
            "phases": [],
            "services": [
                {"name": "net", "state": "running", "pid": 10, "restarts": 0,
                 "uptime_ms": 302000, "ready": true, "reason": null, "user": 401},
                {"name": "pxe", "state": "running", "pid": 11, "restarts": restarts,
                 "uptime_ms": 61000, "ready": true, "reason": null, "user": 402},
                {"name": "ntp", "state": "backoff", "pid": null, "restarts": 3,
                 "uptime_ms": null, "ready": false, "reason": "exited 1", "user": 404}
            ],
            "ready": false,
            "degraded": ["ntp: exited 1"]
        }))
        .unwrap();
        Snapshot {
            now,
            version: "0.1.0".into(),
            host: Some("kindling-lab.lab.kindling.internal".into()),
            site_id: Some("lab".into()),
            init: Ok(init),
            net: json!({
                "lan": {"device": "eth1", "addresses": ["192.168.100.1/24"], "carrier": true},
                "uplink": {"device": "eth0", "addresses": ["10.0.2.15/24"], "carrier": true},
                "lease": {"routers": ["10.0.2.2"]}
            }),
            pxe: json!({"inventory": {"booting": booting, "discovered": 1},
                        "alerts": ["52:54:00:6b:00:20 grant_reused: twice"]}),
            ca_fingerprint: Ok(format!("sha256:{}", "ab".repeat(32))),
        }
    }

    #[test]
    fn the_screen_is_80_by_25_and_shows_what_an_operator_needs() {
        let first = snapshot(1_700_000_000, 0, 0);
        let second = snapshot(1_700_000_002, 1, 1);
        let mut log = EventLog::default();
        log.observe(None, &first);
        log.observe(Some(&first), &second);
        let screen = render(&second, &log, 80, 25);
        assert_eq!(screen.len(), 25);
        assert!(
            screen.iter().all(|l| l.chars().count() <= 80),
            "{screen:#?}"
        );
        let text = screen.join("\n");
        let expected_top = "\
kindling kindling-lab.lab.kindling.internal site lab v0.1.0         22:13:22 UTC
Health  DEGRADED: ntp: exited 1 (2/3 services ready)
API CA  sha256:abababababababababababababababababababababababababababababababab
LAN     eth1 192.168.100.1/24 up
Uplink  eth0 10.0.2.15/24 up via 10.0.2.2 (DHCP)
Nodes   booting 1  discovered 1  ALERTS 1";
        assert!(text.starts_with(expected_top), "{text}");
        for row in [
            "pxe              running       yes          1    1m01s",
            "ntp              backoff       no           3        -  exited 1",
            "22:13:22 pxe restarted (#1)",
            "22:13:22 nodes booting: 0 -> 1",
            "22:13:20 dashboard started",
        ] {
            assert!(
                screen.iter().any(|l| l == row),
                "no line {row:?} in:\n{text}"
            );
        }
    }

    #[test]
    fn nothing_readable_still_fills_the_screen_and_says_why() {
        let mut s = snapshot(0, 0, 0);
        s.init = Err("connecting to /run/kindling/init.sock: refused".into());
        s.net = Value::Null;
        s.pxe = Value::Null;
        s.ca_fingerprint = Err("/run/kindling/api-ca.pem: not found".into());
        let screen = render(&s, &EventLog::default(), 80, 25);
        assert_eq!(screen.len(), 25);
        let text = screen.join("\n");
        assert!(
            text.contains("Health  UNKNOWN: init not answering"),
            "{text}"
        );
        assert!(
            text.contains("API CA  unknown (/run/kindling/api-ca.pem"),
            "{text}"
        );
        assert!(text.contains("network service not reporting yet"), "{text}");
        assert!(text.contains("PXE service not reporting"), "{text}");
        // A tiny terminal still gets exactly its size.
        assert_eq!(render(&s, &EventLog::default(), 20, 5).len(), 5);
    }
}
