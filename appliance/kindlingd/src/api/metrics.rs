//! `GET /metrics`: the appliance's status in the Prometheus/OpenMetrics text
//! format, for a scraper holding a read-only token.
//!
//! Owns the translation from [`Status`] (what `/v1/status` answers) to
//! metric families; reads nothing itself, so both endpoints always agree.
//! Names follow Prometheus conventions: `kindling_` prefix, the unit in the
//! name, counters end in `_total` (the encoder adds it). A status file's
//! `counters` become counters named after the file and the key
//! (`status/pxe.json` `dhcp_received` → `kindling_pxe_dhcp_received_total`).

use kindling_api::status::Status;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::{Registry, Unit};
use serde_json::Value;
use std::sync::atomic::AtomicU64;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

/// `status` as OpenMetrics text.
pub fn render(status: &Status) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("kindling");
    init_metrics(&mut registry, &status.init);
    for (name, file) in &status.services {
        status_file_metrics(&mut registry, &metric_name(name), file);
    }
    for (key, value) in &status.api.counters {
        // `connections_open` is a level, every other API counter only grows.
        if key == "connections_open" {
            registry.register(
                format!("api_{}", metric_name(key)),
                "API connections open now",
                ConstGauge::new(saturating_i64(*value)),
            );
        } else {
            registry.register(
                format!("api_{}", metric_name(key)),
                format!("API counter {key} since the API started"),
                ConstCounter::new(*value),
            );
        }
    }
    let mut out = String::new();
    encode(&mut out, &registry)?;
    Ok(out)
}

/// From init's `list` answer: readiness, phase durations, per-service
/// readiness and restarts. Nothing when init could not be asked.
fn init_metrics(registry: &mut Registry, init: &Value) {
    let Some(ready) = init.get("ready").and_then(Value::as_bool) else {
        return;
    };
    registry.register(
        "ready",
        "1 when every boot phase ran and every required service is ready",
        ConstGauge::new(i64::from(ready)),
    );
    let phases = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    for phase in array(init, "phases") {
        if let (Some(name), Some(ms)) = (str_of(phase, "name"), phase["ms"].as_u64()) {
            let seconds = ms as f64 / 1000.0;
            phases.get_or_create(&label("phase", name)).set(seconds);
        }
    }
    registry.register_with_unit(
        "boot_phase_duration",
        "How long each boot phase took (or has taken so far)",
        Unit::Seconds,
        phases,
    );
    let service_ready = Family::<Labels, Gauge>::default();
    let restarts = Family::<Labels, Gauge>::default();
    for service in array(init, "services") {
        let Some(name) = str_of(service, "name") else {
            continue;
        };
        let labels = label("service", name);
        service_ready
            .get_or_create(&labels)
            .set(i64::from(service["ready"].as_bool().unwrap_or(false)));
        restarts
            .get_or_create(&labels)
            .set(saturating_i64(service["restarts"].as_u64().unwrap_or(0)));
    }
    registry.register(
        "service_ready",
        "1 when the service is running and ready",
        service_ready,
    );
    // A gauge, not a counter: init's count starts again at every boot and
    // the value is read, not accumulated here.
    registry.register(
        "service_restarts",
        "Times init started the service again since boot",
        restarts,
    );
}

/// One `status/NAME.json`: its `counters`, its whole-number fields as
/// gauges, and maps of whole numbers (e.g. PXE's inventory by state) as a
/// gauge family labelled `key`, a `mode` or `state` word as a labelled
/// series of value 1. `updated` (a timestamp) is left out.
fn status_file_metrics(registry: &mut Registry, service: &str, file: &Value) {
    let Some(fields) = file.as_object() else {
        return;
    };
    for (field, value) in fields {
        let name = format!("{service}_{}", metric_name(field));
        match value {
            Value::Object(counters) if field == "counters" => {
                for (key, n) in counters {
                    if let Some(n) = n.as_u64() {
                        registry.register(
                            format!("{service}_{}", metric_name(key)),
                            format!("{service} counter {key} (status/{service}.json)"),
                            ConstCounter::new(n),
                        );
                    }
                }
            }
            Value::Number(n) if field != "updated" => {
                if let Some(n) = n.as_u64() {
                    registry.register(
                        name,
                        format!("{service} {field} (status/{service}.json)"),
                        ConstGauge::new(saturating_i64(n)),
                    );
                }
            }
            Value::Object(map) if !map.is_empty() && map.values().all(Value::is_u64) => {
                let family = Family::<Labels, Gauge>::default();
                for (key, n) in map {
                    let n = n.as_u64().unwrap_or(0);
                    family
                        .get_or_create(&label("key", key))
                        .set(saturating_i64(n));
                }
                registry.register(
                    name,
                    format!("{service} {field} by key (status/{service}.json)"),
                    family,
                );
            }
            // A state word (the update agent's `mode`): one series whose
            // label is the word, so a scraper can alert on a value.
            Value::String(word) if matches!(field.as_str(), "mode" | "state") => {
                let family = Family::<Labels, Gauge>::default();
                family.get_or_create(&label(field, word)).set(1);
                registry.register(
                    name,
                    format!("{service} {field} now, as a label (status/{service}.json)"),
                    family,
                );
            }
            Value::Array(items) if matches!(field.as_str(), "problems" | "alerts") => {
                registry.register(
                    name,
                    format!("{service} {field} listed now (status/{service}.json)"),
                    ConstGauge::new(saturating_i64(items.len() as u64)),
                );
            }
            _ => {}
        }
    }
}

/// `raw` with every character outside `[a-zA-Z0-9_]` as `_`.
fn metric_name(raw: &str) -> String {
    raw.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

fn label(name: &str, value: &str) -> Labels {
    vec![(name.to_owned(), value.to_owned())]
}

fn array<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn str_of<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kindling_api::status::ApiEndpoint;
    use serde_json::json;

    fn status() -> Status {
        Status {
            version: "0.1.0".into(),
            init: json!({
                "ready": true,
                "degraded": [],
                "phases": [{"name": "early", "state": "done", "ms": 1250, "detail": ""}],
                "services": [{"name": "pxe", "state": "running", "ready": true, "restarts": 2}],
            }),
            config: Value::Null,
            services: [(
                "pxe".to_owned(),
                json!({
                    "ready": true,
                    "updated": 1_796_475_104_000_u64,
                    "counters": {"dhcp_received": 7, "dhcp_acks": 3},
                    "leases_in_use": 3,
                    "inventory": {"discovered": 2, "booting": 1},
                    "alerts": ["52:54:00:6b:00:10 grant-reused: ..."],
                    "mode": "authoritative",
                }),
            )]
            .into(),
            api: ApiEndpoint {
                ca_fingerprint: "sha256:00".into(),
                listening: vec![],
                counters: [
                    ("requests_unauthenticated".to_owned(), 4),
                    ("connections_open".to_owned(), 1),
                ]
                .into(),
            },
        }
    }

    #[test]
    fn status_becomes_named_families_with_types_and_units() {
        let text = render(&status()).unwrap();
        for line in [
            "# TYPE kindling_ready gauge",
            "kindling_ready 1",
            "# TYPE kindling_boot_phase_duration_seconds gauge",
            "# UNIT kindling_boot_phase_duration_seconds seconds",
            "kindling_boot_phase_duration_seconds{phase=\"early\"} 1.25",
            "kindling_service_ready{service=\"pxe\"} 1",
            "kindling_service_restarts{service=\"pxe\"} 2",
            "# TYPE kindling_pxe_dhcp_received counter",
            "kindling_pxe_dhcp_received_total 7",
            "kindling_pxe_dhcp_acks_total 3",
            "kindling_pxe_leases_in_use 3",
            "kindling_pxe_inventory{key=\"booting\"} 1",
            "kindling_pxe_alerts 1",
            "kindling_api_requests_unauthenticated_total 4",
            "kindling_api_connections_open 1",
            "kindling_pxe_mode{mode=\"authoritative\"} 1",
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
        assert!(!text.contains("updated"), "{text}");
    }

    #[test]
    fn without_init_there_are_no_init_metrics() {
        let mut s = status();
        s.init = json!({"error": "init's socket: connection refused"});
        let text = render(&s).unwrap();
        assert!(!text.contains("kindling_ready"), "{text}");
        assert!(
            text.contains("kindling_pxe_dhcp_received_total 7"),
            "{text}"
        );
    }
}
