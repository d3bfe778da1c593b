//! The overlay endpoints of the appliance API as plain functions returning
//! `(HTTP status, JSON body)`: `GET /v1/overlays`, `GET /v1/config/effective`,
//! `POST /v1/overlays`. The HTTP server and the router live in kindlingd; this
//! module never listens or talks to init.
//!
//! Push body (JSON): `{"kovl": "<base64 of NAME.kovl>", "minisig": "<text of
//! NAME.kovl.minisig>"}`. It is authenticated by the signature alone, verified
//! exactly like at boot.

use crate::apply::{apply, ApplyOptions, ApplyPaths, PushedOverlay};
use crate::state::StateFile;
use base64::Engine;
use serde_json::{json, Value};
use std::sync::Mutex;

/// Pushes are applied one at a time: each rewrites state.json and site.json.
static PUSH_LOCK: Mutex<()> = Mutex::new(());

/// Parts of the config a running appliance can switch without a reboot (the
/// PXE service is restarted); everything else applies at next boot.
const LIVE_SECTIONS: &[&str] = &["pxe", "nodes", "profiles"];

fn read_json(path: &std::path::Path) -> Option<Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

/// `GET /v1/overlays`: the last config report and the recorded floors.
pub fn list(paths: &ApplyPaths) -> (u16, Value) {
    let state = match StateFile::load(&paths.state_file()) {
        Ok(s) => serde_json::to_value(&s.overlays).unwrap_or(Value::Null),
        Err(e) => json!({ "error": e.to_string() }),
    };
    let report = read_json(&paths.report_json()).unwrap_or(Value::Null);
    (200, json!({ "report": report, "state": state }))
}

/// `GET /v1/config/effective`: the merged config and where each value came from.
pub fn effective(paths: &ApplyPaths) -> (u16, Value) {
    match read_json(&paths.effective_json()) {
        Some(v) => (200, v),
        None => (
            503,
            json!({ "error": format!("no effective configuration: {} is missing (see /v1/overlays for refusals)", paths.effective_json().display()) }),
        ),
    }
}

/// Outcome of a push, for the caller to act on (restart services).
#[derive(Debug, Clone)]
pub struct PushResult {
    pub status: u16,
    pub body: Value,
    /// Top-level config sections that changed and apply now.
    pub applied_now: Vec<String>,
    /// Sections that changed but apply at next boot.
    pub next_boot: Vec<String>,
    /// The new effective config, when the push was accepted.
    pub site: Option<kindling_site::SiteConfig>,
}

impl PushResult {
    fn error(status: u16, message: String) -> Self {
        Self {
            status,
            body: json!({ "error": message }),
            applied_now: vec![],
            next_boot: vec![],
            site: None,
        }
    }
}

/// `POST /v1/overlays`.
pub fn push(paths: &ApplyPaths, body: &[u8], opts: &ApplyOptions) -> PushResult {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return PushResult::error(
                400,
                format!("body is not JSON {{\"kovl\": base64, \"minisig\": text}}: {e}"),
            )
        }
    };
    let Some(kovl_b64) = parsed.get("kovl").and_then(Value::as_str) else {
        return PushResult::error(400, "body lacks \"kovl\" (base64 of the .kovl file)".into());
    };
    let Some(minisig) = parsed.get("minisig").and_then(Value::as_str) else {
        return PushResult::error(
            400,
            "body lacks \"minisig\" (text of the .kovl.minisig file)".into(),
        );
    };
    let kovl = match base64::engine::general_purpose::STANDARD.decode(kovl_b64.trim()) {
        Ok(k) => k,
        Err(e) => return PushResult::error(400, format!("\"kovl\" is not base64: {e}")),
    };
    let _guard = PUSH_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = read_json(&paths.site_json());
    let outcome = apply(
        paths,
        opts,
        Some(PushedOverlay {
            kovl,
            minisig: minisig.to_string(),
        }),
    );
    let report = serde_json::to_value(&outcome.report).unwrap_or(Value::Null);
    match outcome.pushed {
        Some(Ok(accepted)) => {
            let after = outcome
                .effective
                .as_ref()
                .and_then(|e| serde_json::to_value(&e.config).ok());
            let (applied_now, next_boot) = changed_sections(before.as_ref(), after.as_ref());
            let body = json!({
                "accepted": accepted,
                "applied_now": applied_now,
                "applies_at_next_boot": next_boot,
                "report": report,
            });
            PushResult {
                status: 200,
                body,
                applied_now,
                next_boot,
                site: outcome.effective.map(|e| e.config),
            }
        }
        Some(Err(refused)) => {
            let mut r = PushResult::error(422, refused.line());
            r.body["report"] = report;
            r
        }
        // The pushed file was superseded by an equal or newer accepted version.
        None => {
            let mut r = PushResult::error(
                409,
                "not applied: an equal or newer version of this overlay is already accepted".into(),
            );
            r.body["report"] = report;
            r
        }
    }
}

/// Which top-level sections differ, split into live and next-boot ones.
fn changed_sections(before: Option<&Value>, after: Option<&Value>) -> (Vec<String>, Vec<String>) {
    let empty = serde_json::Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let (mut now, mut later) = (Vec::new(), Vec::new());
    for k in keys {
        if b.get(k) != a.get(k) {
            if LIVE_SECTIONS.contains(&k.as_str()) {
                now.push(k.clone());
            } else {
                later.push(k.clone());
            }
        }
    }
    (now, later)
}
