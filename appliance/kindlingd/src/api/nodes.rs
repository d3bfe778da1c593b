//! Handlers for `GET /v1/nodes` and `PUT /v1/nodes/MAC/profile`, each
//! returning `(HTTP status, JSON body)`. The logic lives in
//! `kindling_pxe::node_api`; this file only finds the effective site config
//! (`run_dir/site.json`) and the data partition (`state_dir`).
//!
//! An assignment is written to `state_dir/inventory/assignments.json` (the
//! running PXE service applies it to the node's next request, no restart),
//! then pushed to Consul KV by the API's assignment sync when the stack's
//! Consul is in use.

use kindling_site::SiteConfig;
use serde_json::{json, Value};
use std::path::Path;

fn site(run_dir: &Path) -> Result<SiteConfig, (u16, Value)> {
    let path = run_dir.join("site.json");
    let bytes = std::fs::read(&path)
        .map_err(|e| (503, json!({ "error": format!("reading {}: {e} (config not applied yet?)", path.display()) })))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        (
            500,
            json!({ "error": format!("{} is not a valid site config: {e}", path.display()) }),
        )
    })
}

/// `GET /v1/nodes`.
pub fn list(run_dir: &Path, state_dir: &Path) -> (u16, Value) {
    match site(run_dir) {
        Ok(site) => kindling_pxe::node_api::list(&site, state_dir),
        Err(reply) => reply,
    }
}

/// `PUT /v1/nodes/MAC/profile` with body `{"profile": "NAME"}` or `{"profile": null}`.
pub fn assign(
    run_dir: &Path,
    state_dir: &Path,
    mac: &str,
    body: &[u8],
    sync: Option<&kindling_pxe::AssignmentSync>,
) -> (u16, Value) {
    match site(run_dir) {
        Ok(site) => kindling_pxe::node_api::assign(&site, state_dir, mac, body, sync),
        Err(reply) => reply,
    }
}
