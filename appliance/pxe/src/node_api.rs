//! The node part of the appliance API (`GET /v1/nodes`,
//! `PUT /v1/nodes/MAC/profile`) as plain functions returning
//! `(HTTP status, JSON body)`, so kindlingd's router only forwards.
//!
//! Reads the inventory the PXE service persists and writes runtime
//! assignments through `AssignmentStore` (locked, atomic), then lets the
//! assignment sync push them to Consul KV when one is given; the PXE service
//! picks an assignment up on its next request. It never moves or repairs
//! files: a corrupt inventory is reported as an error.

use crate::assignment_sync::AssignmentSync;
use crate::assignments::{AssignmentsState, KvStatus};
use crate::inventory::{read_nodes, AssignmentStore, NodeRecord, ProfileChoice};
use crate::mac::MacAddr;
use crate::settings::{PxePaths, PxeSettings};
use kindling_site::SiteConfig;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn error(status: u16, message: impl std::fmt::Display) -> (u16, Value) {
    (status, json!({ "error": message.to_string() }))
}

fn settings(site: &SiteConfig, state_dir: &Path) -> Result<PxeSettings, (u16, Value)> {
    let paths = PxePaths {
        state_dir: state_dir.to_path_buf(),
        ..PxePaths::default()
    };
    PxeSettings::from_site(site, paths).map_err(|e| error(500, format!("site config: {e}")))
}

/// The profile a MAC gets, by the same precedence the PXE service uses.
pub fn resolve(
    settings: &PxeSettings,
    assignments: &BTreeMap<MacAddr, String>,
    mac: &MacAddr,
) -> ProfileChoice {
    if let Some(p) = assignments
        .get(mac)
        .filter(|p| settings.profiles.contains_key(*p))
    {
        return ProfileChoice::Assigned(p.clone());
    }
    if let Some(r) = settings.reservations.get(mac) {
        return ProfileChoice::Site(r.profile.clone());
    }
    match (settings.unknown, &settings.default_profile) {
        (kindling_site::UnknownMacPolicy::DefaultProfile, Some(p)) => {
            ProfileChoice::Default(p.clone())
        }
        (kindling_site::UnknownMacPolicy::Menu, _) => ProfileChoice::Menu,
        _ => ProfileChoice::NotServed,
    }
}

/// The API's `assignment` object: the choice, plus for a runtime
/// assignment where it is stored: `kv` (in Consul KV and the local file) or
/// `local` (only in the local file: Consul is off or not reachable yet).
fn assignment_json(
    settings: &PxeSettings,
    state: &AssignmentsState,
    assignments: &BTreeMap<MacAddr, String>,
    mac: &MacAddr,
) -> Value {
    let choice = resolve(settings, assignments, mac);
    let mut out = json!(choice);
    if let ProfileChoice::Assigned(_) = choice {
        let in_kv = state.records.get(mac).is_some_and(|r| !r.pending);
        out["stored"] = json!(if in_kv { "kv" } else { "local" });
    }
    out
}

/// `GET /v1/nodes`: every node seen, plus nodes the site or an assignment
/// names that have not booted yet (`state: null`).
pub fn list(site: &SiteConfig, state_dir: &Path) -> (u16, Value) {
    let settings = match settings(site, state_dir) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let store = AssignmentStore::new(settings.paths.assignments_file());
    let state = match store.load_state() {
        Ok(s) => s,
        Err(e) => return error(500, e),
    };
    let assignments = state.effective();
    let seen: Vec<NodeRecord> = match read_nodes(&settings.paths.nodes_file()) {
        Ok(n) => n,
        Err(e) => return error(500, e),
    };
    let mut rows: BTreeMap<MacAddr, Value> = BTreeMap::new();
    for node in seen {
        let mut row = serde_json::to_value(&node).unwrap_or(Value::Null);
        row["assignment"] = assignment_json(&settings, &state, &assignments, &node.mac);
        rows.insert(node.mac, row);
    }
    let expected = settings
        .reservations
        .keys()
        .chain(assignments.keys())
        .copied()
        .collect::<Vec<_>>();
    for mac in expected {
        rows.entry(mac).or_insert_with(|| {
            json!({ "mac": mac, "state": null, "assignment": assignment_json(&settings, &state, &assignments, &mac) })
        });
    }
    (
        200,
        json!({ "nodes": rows.into_values().collect::<Vec<_>>(), "kv": state.kv_status }),
    )
}

/// `PUT /v1/nodes/MAC/profile` with `{"profile": "NAME"}` (or
/// `{"profile": null}` to drop the runtime assignment). The change is in
/// the local file (in force) before `sync` is asked to push it; the reply's
/// `assignment.stored` says whether it reached Consul KV, and `kv` why not.
pub fn assign(
    site: &SiteConfig,
    state_dir: &Path,
    mac: &str,
    body: &[u8],
    sync: Option<&AssignmentSync>,
) -> (u16, Value) {
    let mac: MacAddr = match mac.parse() {
        Ok(m) => m,
        Err(e) => return error(400, e),
    };
    let settings = match settings(site, state_dir) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error(400, format!("body is not JSON: {e}")),
    };
    let profile = match body.get("profile") {
        Some(Value::String(p)) => Some(p.as_str()),
        Some(Value::Null) => None,
        _ => {
            return error(
                400,
                "body must be {\"profile\": \"NAME\"} or {\"profile\": null}",
            )
        }
    };
    if let Some(p) = profile {
        if !settings.profiles.contains_key(p) {
            let known: Vec<&str> = settings.profiles.keys().map(String::as_str).collect();
            return error(
                400,
                format!(
                    "profile {p:?} is not defined; known profiles: {}",
                    known.join(", ")
                ),
            );
        }
    }
    let store = AssignmentStore::new(settings.paths.assignments_file());
    let previous = store.load().ok().and_then(|a| a.get(&mac).cloned());
    if let Err(e) = store.assign(mac, profile) {
        return error(500, e);
    }
    if let Some(sync) = sync {
        let names: BTreeSet<String> = settings.profiles.keys().cloned().collect();
        // A failure is recorded in the file's kv status and shown below: the
        // assignment itself is made (locally) either way.
        let _ = sync.sync_once(&names);
    }
    let state = store.load_state().unwrap_or_default();
    let assignments = state.effective();
    let kv = match &state.kv_status {
        Some(KvStatus::InUse) | None => Value::Null,
        Some(KvStatus::LocalOnly(why)) => json!(format!("kept locally only: {why}")),
        Some(KvStatus::Waiting(why)) => {
            json!(format!(
                "kept locally, pushed to Consul KV when it can be: {why}"
            ))
        }
    };
    (
        200,
        json!({ "mac": mac, "previous": previous, "assignment": assignment_json(&settings, &state, &assignments, &mac), "kv": kv }),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::settings::tests::lab_site;

    #[test]
    fn assign_then_list() {
        let dir = tempfile::tempdir().unwrap();
        let site = lab_site();
        let (status, body) = list(&site, dir.path());
        assert_eq!(status, 200);
        assert_eq!(
            body["nodes"].as_array().unwrap().len(),
            2,
            "the two lab reservations: {body}"
        );

        let (status, body) = assign(
            &site,
            dir.path(),
            "52-54-00-6B-00-99",
            br#"{"profile":"prod"}"#,
            None,
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["assignment"],
            json!({"source": "assigned", "profile": "prod", "stored": "local"})
        );
        let (_, body) = list(&site, dir.path());
        let row = body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["mac"] == "52:54:00:6b:00:99")
            .cloned()
            .unwrap();
        assert_eq!(row["assignment"]["profile"], "prod");

        let (status, body) = assign(
            &site,
            dir.path(),
            "52:54:00:6b:00:99",
            br#"{"profile":null}"#,
            None,
        );
        assert_eq!(status, 200);
        assert_eq!(body["previous"], "prod");
        assert_eq!(body["assignment"]["source"], "default");
    }

    #[test]
    fn bad_input_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let site = lab_site();
        let (s, b) = assign(&site, dir.path(), "nope", br#"{"profile":"dev"}"#, None);
        assert_eq!(s, 400);
        assert!(b["error"].as_str().unwrap().contains("invalid MAC"), "{b}");
        let (s, b) = assign(
            &site,
            dir.path(),
            "52:54:00:6b:00:99",
            br#"{"profile":"gpu"}"#,
            None,
        );
        assert_eq!(s, 400);
        assert!(
            b["error"]
                .as_str()
                .unwrap()
                .contains("known profiles: dev, prod"),
            "{b}"
        );
        let (s, _) = assign(&site, dir.path(), "52:54:00:6b:00:99", b"{", None);
        assert_eq!(s, 400);
        let (s, _) = assign(
            &site,
            dir.path(),
            "52:54:00:6b:00:99",
            br#"{"profile":3}"#,
            None,
        );
        assert_eq!(s, 400);
    }
}
