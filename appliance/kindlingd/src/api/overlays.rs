//! Handlers for `GET /v1/overlays`, `POST /v1/overlays` and
//! `GET /v1/config/effective`. The overlay library verifies, merges and
//! records (`kindling_overlay::api`); this module decides what an accepted
//! push means for the running appliance: which changed config sections apply
//! at once (rewrite services.json, ask init over the control socket to reload
//! and restart `pxe`) and which wait for the next boot.

use super::Reply;
use kindling_api::overlays::PushReply;
use kindling_overlay::api::{PushAccepted, PushError};
use kindling_overlay::{ApplyOptions, ApplyPaths};
use std::path::Path;
use std::time::Duration;

/// Parts of the config a running appliance can switch without a reboot (the
/// PXE service is restarted); everything else applies at next boot.
const LIVE_SECTIONS: &[&str] = &["pxe", "nodes", "profiles"];

/// Overlay paths for the API's run and state directories (trust and boot
/// media paths from the environment, as in `kindlingd config apply`).
pub fn apply_paths(run_dir: &Path, state_dir: &Path) -> ApplyPaths {
    ApplyPaths {
        run_dir: run_dir.to_path_buf(),
        data_dir: state_dir.to_path_buf(),
        ..crate::config::paths_from_env()
    }
}

/// The running image is an update not blessed yet (`kindling_update::trial`).
fn on_trial(run_dir: &Path) -> bool {
    kindling_update::trial::image_on_trial(&kindling_update::trial::TrialPaths::in_run_dir(run_dir))
}

/// How often the blessing of an image on trial is looked for.
const BLESS_POLL: Duration = Duration::from_secs(2);

/// On a boot that began on trial: waits (on a thread of its own) for the
/// update agent to bless the slot, then records the image's own overlays
/// (floors, copies on the data partition), which the config phase used
/// without recording. Ends when the trial fails (the appliance reboots).
/// An API restarted after the blessing records them at once (a no-op on
/// the data partition when they are recorded already).
pub fn record_at_blessing(run_dir: &Path, state_dir: &Path) {
    let trial = kindling_update::trial::TrialPaths::in_run_dir(run_dir);
    if !kindling_update::trial::booted_on_trial(&trial) {
        return;
    }
    let (run_dir, state_dir) = (run_dir.to_path_buf(), state_dir.to_path_buf());
    let status = run_dir.join("status/update.json");
    let started = std::thread::Builder::new()
        .name("overlay-bless".into())
        .spawn(move || loop {
            let mode = std::fs::read(&status)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["mode"].as_str().map(str::to_owned));
            match mode.as_deref() {
                Some("blessed") => {
                    let paths = apply_paths(&run_dir, &state_dir);
                    let outcome = kindling_overlay::api::record_after_blessing(
                        &paths,
                        &ApplyOptions::default(),
                    );
                    let recorded: Vec<String> = outcome
                        .report
                        .accepted
                        .iter()
                        .map(|a| format!("{} v{}", a.name, a.version))
                        .collect();
                    tracing::info!(
                        "the update was blessed: overlays recorded ({})",
                        recorded.join(", ")
                    );
                    for refused in &outcome.report.refused {
                        tracing::warn!("overlays: {}", refused.line());
                    }
                    return;
                }
                Some("gate_failed" | "unavailable" | "not_from_disk") => return,
                _ => std::thread::sleep(BLESS_POLL),
            }
        });
    if let Err(e) = started {
        tracing::warn!("overlays of this image on trial are not recorded at blessing: {e}");
    }
}

/// `GET /v1/overlays`.
pub fn list(run_dir: &Path, state_dir: &Path) -> Reply {
    Reply::body(&kindling_overlay::api::list(&apply_paths(
        run_dir, state_dir,
    )))
}

/// `GET /v1/config/effective`.
pub fn effective(run_dir: &Path, state_dir: &Path) -> Reply {
    match kindling_overlay::api::effective(&apply_paths(run_dir, state_dir)) {
        Ok(effective) => Reply::body(&effective),
        Err(e) => Reply::failure(&e),
    }
}

/// `POST /v1/overlays` with body `{"kovl": base64, "minisig": text}`.
pub fn push(run_dir: &Path, state_dir: &Path, control_socket: &Path, body: &[u8]) -> Reply {
    let paths = apply_paths(run_dir, state_dir);
    let opts = ApplyOptions {
        image_on_trial: on_trial(run_dir),
        ..ApplyOptions::default()
    };
    match kindling_overlay::api::push(&paths, body, &opts) {
        Ok(accepted) => Reply::body(&apply_accepted(
            accepted,
            run_dir,
            state_dir,
            control_socket,
        )),
        Err(e) => refused(&e),
    }
}

/// The error reply, with the pipeline's report when there is one.
fn refused(e: &PushError) -> Reply {
    let mut reply = Reply::failure(e);
    if let Some(report) = e.report() {
        if let (Some(body), Ok(report)) = (reply.body.as_object_mut(), serde_json::to_value(report))
        {
            body.insert("report".into(), report);
        }
    }
    reply
}

/// Which changed sections apply now and which at the next boot.
fn split_live(changed: &[String]) -> (Vec<String>, Vec<String>) {
    changed
        .iter()
        .cloned()
        .partition(|s| LIVE_SECTIONS.contains(&s.as_str()))
}

/// Applies the live sections of an accepted push and says what was done.
fn apply_accepted(
    accepted: PushAccepted,
    run_dir: &Path,
    state_dir: &Path,
    control_socket: &Path,
) -> PushReply {
    let (applied_now, applies_at_next_boot) = split_live(&accepted.changed_sections);
    let actions = match &accepted.site {
        Some(site) if !applied_now.is_empty() => {
            Some(reload_live(site, run_dir, state_dir, control_socket))
        }
        _ => None,
    };
    PushReply {
        accepted: accepted.accepted,
        applied_now,
        applies_at_next_boot,
        report: accepted.report,
        actions,
    }
}

/// Rewrites services.json for `site` and has init reload it and restart pxe.
fn reload_live(
    site: &kindling_site::SiteConfig,
    run_dir: &Path,
    state_dir: &Path,
    control_socket: &Path,
) -> Vec<String> {
    let mut actions = Vec::new();
    match crate::config::write_service_table(run_dir, state_dir, site) {
        Ok(_) => actions.push("services.json rewritten".to_string()),
        Err(e) => actions.push(format!("services.json not rewritten: {e:#}")),
    }
    let client = kindling_init_protocol::control::Client::new(control_socket);
    match client.reload().and_then(|()| client.restart("pxe")) {
        Ok(()) => actions.push("init reloaded the service table and restarted pxe".into()),
        Err(e) => actions.push(format!(
            "could not reach init to restart pxe ({e}): applies at next boot"
        )),
    }
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pxe_changes_apply_now_and_network_changes_at_next_boot() {
        assert_eq!(split_live(&strings(&["pxe"])), (strings(&["pxe"]), vec![]));
        assert_eq!(
            split_live(&strings(&["network"])),
            (vec![], strings(&["network"]))
        );
        assert_eq!(
            split_live(&strings(&["api", "nodes", "profiles", "site"])),
            (strings(&["nodes", "profiles"]), strings(&["api", "site"]))
        );
    }
}
