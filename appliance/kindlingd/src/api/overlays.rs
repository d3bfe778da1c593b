//! Handlers for `GET /v1/overlays`, `POST /v1/overlays` and
//! `GET /v1/config/effective`, each returning `(HTTP status, JSON body)`.
//! The logic lives in `kindling_overlay::api`; this file adds what only
//! kindlingd can do after an accepted push: rewrite services.json and ask
//! init (control socket) to reload and restart `pxe`.

use kindling_overlay::{ApplyOptions, ApplyPaths};
use serde_json::{json, Value};
use std::path::Path;

/// Overlay paths for the API's run and state directories (trust and boot
/// media paths from the environment, as in `kindlingd config apply`).
pub fn apply_paths(run_dir: &Path, state_dir: &Path) -> ApplyPaths {
    ApplyPaths {
        run_dir: run_dir.to_path_buf(),
        data_dir: state_dir.to_path_buf(),
        ..crate::config::paths_from_env()
    }
}

/// `GET /v1/overlays`.
pub fn list(run_dir: &Path, state_dir: &Path) -> (u16, Value) {
    kindling_overlay::api::list(&apply_paths(run_dir, state_dir))
}

/// `GET /v1/config/effective`.
pub fn effective(run_dir: &Path, state_dir: &Path) -> (u16, Value) {
    kindling_overlay::api::effective(&apply_paths(run_dir, state_dir))
}

/// `POST /v1/overlays` with body `{"kovl": base64, "minisig": text}`.
pub fn push(run_dir: &Path, state_dir: &Path, control_socket: &Path, body: &[u8]) -> (u16, Value) {
    let paths = apply_paths(run_dir, state_dir);
    let mut result = kindling_overlay::api::push(&paths, body, &ApplyOptions::default());
    let Some(site) = result.site.take() else {
        return (result.status, result.body);
    };
    if result.applied_now.is_empty() {
        return (result.status, result.body);
    }
    let mut actions = Vec::new();
    match crate::config::write_service_table(run_dir, state_dir, &site) {
        Ok(()) => actions.push("services.json rewritten".to_string()),
        Err(e) => actions.push(format!("services.json not rewritten: {e:#}")),
    }
    let client = kindling_init::control::Client::new(control_socket);
    match client.reload().and_then(|()| client.restart("pxe")) {
        Ok(()) => actions.push("init reloaded the service table and restarted pxe".into()),
        Err(e) => actions.push(format!(
            "could not reach init to restart pxe ({e}): applies at next boot"
        )),
    }
    result.body["actions"] = json!(actions);
    (result.status, result.body)
}
