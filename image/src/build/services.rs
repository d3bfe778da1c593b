//! The fallback service table baked into the image
//! (`/etc/kindling/services.json`): init runs it when the config phase
//! fails, so a box with a bad or missing overlay still answers its status API.
//!
//! It mirrors the `services.json` schema of docs/contracts.md for the one
//! entry it writes; it never decides what a configured appliance runs (that
//! is `kindlingd config apply`'s job).

use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct ServiceTable {
    pub hostname: String,
    pub services: Vec<ServiceEntry>,
}

#[derive(Debug, Serialize)]
pub struct ServiceEntry {
    pub name: String,
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub user: u32,
    pub group: u32,
    pub capabilities: Vec<String>,
    pub depends_on: Vec<String>,
    pub readiness: Readiness,
    pub restart: String,
    pub oneshot: bool,
    pub required: bool,
    pub stop_grace_ms: u64,
    pub phase: String,
}

#[derive(Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Readiness {
    Notify,
}

/// Only the status API: no network roles, no PXE, no stack, because without
/// a verified site configuration the appliance must not hand out leases or
/// touch the uplink.
pub fn fallback_table() -> ServiceTable {
    ServiceTable {
        hostname: "kindling".to_string(),
        services: vec![ServiceEntry {
            name: "api".to_string(),
            argv: vec!["/bin/kindlingd".to_string(), "api".to_string()],
            env: BTreeMap::from([("RUST_LOG".to_string(), "info".to_string())]),
            user: 0,
            group: 0,
            capabilities: vec!["CAP_NET_BIND_SERVICE".to_string()],
            depends_on: Vec::new(),
            // kindlingd api signals readiness on KINDLING_NOTIFY_FD.
            readiness: Readiness::Notify,
            restart: "always".to_string(),
            oneshot: false,
            required: true,
            stop_grace_ms: 5000,
            phase: "services".to_string(),
        }],
    }
}

pub fn fallback_json() -> Vec<u8> {
    // Serializing plain strings, numbers and maps with string keys cannot fail.
    let mut json = serde_json::to_vec_pretty(&fallback_table()).unwrap_or_default();
    json.push(b'\n');
    json
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn fallback_table_has_the_contract_shape() {
        let value: serde_json::Value = serde_json::from_slice(&fallback_json()).unwrap();
        let api = &value["services"][0];
        assert_eq!(value["services"].as_array().unwrap().len(), 1);
        assert_eq!(api["name"], "api");
        assert_eq!(api["argv"], serde_json::json!(["/bin/kindlingd", "api"]));
        assert_eq!(api["readiness"], serde_json::json!({"kind": "notify"}));
        assert_eq!(api["restart"], "always");
        for key in [
            "env",
            "user",
            "group",
            "capabilities",
            "depends_on",
            "oneshot",
            "required",
            "stop_grace_ms",
            "phase",
        ] {
            assert!(api.get(key).is_some(), "missing {key}");
        }
    }
}
