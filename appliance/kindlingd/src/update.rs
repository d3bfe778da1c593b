//! `kindlingd update`: the update agent (account kl-update, no capability).
//! At boot it runs the health gate and blesses the slot it came from
//! (`kindling_update::agent`); the gate is init's own verdict (`list`:
//! every phase ran, every required service ready), asked over the control
//! socket, where this account may only list.
//!
//! Then it stays and watches the update spool on the data partition
//! (`kindling_update::spool`): a bundle the API received there is
//! verified, staged and armed (`kindling_update::push`), removed from the
//! spool, and init is asked to reboot into it (this account may list and
//! reboot on init's socket, nothing else).
//!
//! Owns argument parsing and the wiring of the gate, the spool and the
//! reboot request.

use kindling_init_protocol::control::{Client, DEFAULT_SOCKET, ESP_MOUNT};
use kindling_update::agent::{self, AgentPaths, Gate};
use kindling_update::push::{self, PushState};
use kindling_update::slots::LOADER_ENTRY_SELECTED;
use kindling_update::spool;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the spool is looked at.
const SPOOL_POLL: Duration = Duration::from_secs(1);
/// The image's trusted keys (updates are signed like overlays).
const TRUST_DIR: &str = "/etc/kindling/trust";

#[derive(clap::Args)]
pub struct Args {
    /// Seconds the appliance has to become healthy before a slot on trial
    /// is left to the firmware's fallback.
    #[arg(long, default_value_t = 600)]
    gate_timeout: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let run_dir = std::env::var_os("KINDLING_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/kindling"));
    let paths = AgentPaths {
        esp: PathBuf::from(ESP_MOUNT),
        loader_entry: PathBuf::from(LOADER_ENTRY_SELECTED),
        status: run_dir.join("status").join("update.json"),
    };
    let state_dir = std::env::var_os("KINDLING_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/kindling"));
    let init = Client::new(DEFAULT_SOCKET).with_timeout(Duration::from_secs(5));
    let mut status = agent::run_boot(
        &paths,
        Duration::from_secs(args.gate_timeout),
        || match init.list() {
            Ok(list) if list.ready => Gate::Ready,
            Ok(list) if list.degraded.is_empty() => {
                Gate::NotYet("not every service is ready yet".into())
            }
            Ok(list) => Gate::NotYet(list.degraded.join("; ")),
            Err(e) => Gate::NotYet(format!("asking init: {e}")),
        },
    );
    let spool_dir = state_dir.join(spool::SPOOL_DIR);
    let trust_dir = Path::new(TRUST_DIR);
    loop {
        std::thread::sleep(SPOOL_POLL);
        let Some(upload) = spool::pending(&spool_dir) else {
            continue;
        };
        let trusted = push::trusted_keys(trust_dir);
        let now = kindling_clock::unix_now();
        status = push::apply(&paths, status, &upload, &trusted, trust_dir, now);
        if let Err(e) = std::fs::remove_file(&upload.path) {
            eprintln!("update: removing {}: {e}", upload.path.display());
        }
        let Some(armed) = status
            .push
            .as_ref()
            .filter(|p| p.state == PushState::Armed)
            .and_then(|p| p.armed.clone())
        else {
            continue;
        };
        if let Err(e) = init.reboot(&format!("update agent: {armed} armed")) {
            eprintln!("update: {armed} is armed, but init did not reboot: {e}; it boots at the next reboot");
        }
    }
}
