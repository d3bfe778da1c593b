//! `kindlingd stack-bootstrap`: the one-shot, idempotent, resumable bootstrap
//! of Consul, Vault and Nomad, run by kindling-init after those services are
//! up. Prints one line per step and `stack: ready` when done (init prefixes
//! service output on the console); the status file is
//! `/run/kindling/status/stack.json`.
//!
//! Owns argument parsing ([`Args`]) only; the work is `kindling_stack::bootstrap`.

use kindling_stack::bootstrap::{self, BootstrapOptions};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    /// Effective config (default $KINDLING_SITE_JSON or /run/kindling/site.json).
    #[arg(long, value_name = "FILE")]
    site: Option<PathBuf>,
    /// How long to wait for each service, in seconds.
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let site_path = args.site.unwrap_or_else(crate::site::effective_path);
    let timeout = args.timeout.map(Duration::from_secs);
    let site = kindling_site::effective::load(&site_path)?;
    let mut options = BootstrapOptions::appliance(site);
    // The same overrides as `kindlingd api`, so both agree where things are.
    if let Some(run_dir) = std::env::var_os("KINDLING_RUN_DIR").map(std::path::PathBuf::from) {
        options.layout.config_dir = run_dir.join("stack");
        options.layout.status_file = run_dir.join("status").join("stack.json");
        options.control_socket = Some(run_dir.join("init.sock"));
    }
    options.layout.data_dir = appliance_layout().data_dir;
    if let Some(t) = timeout {
        options.service_timeout = t;
    }
    kindling_stack::api::block_on(bootstrap::run(options))??;
    Ok(())
}

/// The stack's layout on the appliance, with the data partition
/// `KINDLING_STATE_DIR` names (tests and the lab), as every role that talks
/// to the stack sees it.
pub fn appliance_layout() -> kindling_stack::StackLayout {
    let mut layout = kindling_stack::StackLayout::appliance();
    if let Some(dir) = std::env::var_os("KINDLING_STATE_DIR") {
        layout.data_dir = dir.into();
    }
    layout
}
