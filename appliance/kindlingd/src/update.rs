//! `kindlingd update`: the update agent (account kl-update, no capability).
//! At boot it runs the health gate and blesses the slot it came from
//! (`kindling_update::agent`); the gate is init's own verdict (`list`:
//! every phase ran, every required service ready), asked over the control
//! socket, where this account may only list.
//!
//! Owns argument parsing and the gate's wiring; then it stays, so init
//! does not restart it (fetching and applying bundles come here next).

use kindling_init_protocol::control::{Client, DEFAULT_SOCKET, ESP_MOUNT};
use kindling_update::agent::{self, AgentPaths, Gate};
use kindling_update::slots::LOADER_ENTRY_SELECTED;
use std::path::PathBuf;
use std::time::Duration;

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
    let init = Client::new(DEFAULT_SOCKET).with_timeout(Duration::from_secs(5));
    agent::run_boot(
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
    loop {
        std::thread::park();
    }
}
