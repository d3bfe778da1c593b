//! Reporting steps to the appliance: `POST <appliance>nodes/<mac>/events`
//! with `{"event": "enroll-step", "step", "ok", "detail" | "error"}`; a
//! failed unwrap is `grant-unwrap-failed`, which makes the appliance look
//! the grant up at once.
//!
//! Best effort: a report that does not arrive is printed and never fails a
//! step (the appliance also sees the node in its Consul catalog). Must never
//! put a secret in an event.

use serde_json::{json, Value};

/// The event a step's outcome is reported as.
pub const STEP_EVENT: &str = "enroll-step";
/// The event of a grant that could not be unwrapped (the appliance's name).
pub const GRANT_UNWRAP_FAILED: &str = "grant-unwrap-failed";

#[derive(Debug, Clone)]
pub struct EventSink {
    url: Option<String>,
    http: reqwest::Client,
}

impl EventSink {
    /// `appliance`: the PXE HTTP base URL; `None` reports nowhere.
    pub fn new(appliance: Option<&str>, mac: &str, http: reqwest::Client) -> Self {
        let url = appliance.map(|a| format!("{}/nodes/{mac}/events", a.trim_end_matches('/')));
        Self { url, http }
    }

    /// The body of one step's report.
    /// The body of one step's report; `unwrap_failed` for a grant Vault
    /// would not unwrap.
    pub fn body(step: &str, result: &Result<String, String>, unwrap_failed: bool) -> Value {
        match result {
            Ok(detail) => json!({"event": STEP_EVENT, "step": step, "ok": true, "detail": detail}),
            Err(error) => {
                let event = if unwrap_failed {
                    GRANT_UNWRAP_FAILED
                } else {
                    STEP_EVENT
                };
                json!({"event": event, "step": step, "ok": false, "error": error})
            }
        }
    }

    pub async fn report(&self, step: &str, result: &Result<String, String>, unwrap_failed: bool) {
        let Some(url) = &self.url else { return };
        let body = Self::body(step, result, unwrap_failed);
        match self.http.post(url).json(&body).send().await {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => eprintln!(
                "kindling-node: reporting {step} to {url}: HTTP {}",
                r.status().as_u16()
            ),
            Err(e) => eprintln!(
                "kindling-node: reporting {step} to {url}: {}",
                crate::vault::chain(&e)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_reads_as_one_event_and_a_refused_grant_as_the_appliance_knows_it() {
        let ok = EventSink::body("tls", &Ok("issued".into()), false);
        assert_eq!(
            ok,
            json!({"event": "enroll-step", "step": "tls", "ok": true, "detail": "issued"})
        );
        let failed = EventSink::body("binaries", &Err("sha256 differs".into()), false);
        assert_eq!(failed["event"], STEP_EVENT);
        assert_eq!(failed["error"], "sha256 differs");
        let used = EventSink::body("grant", &Err("grant: already used".into()), true);
        assert_eq!(used["event"], GRANT_UNWRAP_FAILED);
        assert_eq!(used["ok"], false);
    }
}
