//! `kindlingd stack-bootstrap`: the one-shot, idempotent, resumable bootstrap
//! of Consul, Vault and Nomad, run by kindling-init after those services are
//! up. Prints one line per step and `stack: ready` when done (init prefixes
//! service output on the console); the status file is
//! `/run/kindling/status/stack.json`.
//!
//! usage: kindlingd stack-bootstrap [--site FILE] [--timeout SECS]
//! Owns argument parsing only; the work is `kindling_stack::bootstrap`.

use anyhow::Context;
use kindling_stack::bootstrap::{self, BootstrapOptions};
use std::time::Duration;

const USAGE: &str = "usage: kindlingd stack-bootstrap [--site FILE] [--timeout SECS]";

pub fn run(args: &[String]) -> anyhow::Result<()> {
    let mut site_path = crate::site::effective_path();
    let mut timeout = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"));
        match flag.as_str() {
            "--site" => site_path = value?.into(),
            "--timeout" => {
                let v = value?;
                timeout = Some(Duration::from_secs(v.parse().with_context(|| {
                    format!("--timeout: {v:?} is not a number of seconds")
                })?));
            }
            other => anyhow::bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let bytes =
        std::fs::read(&site_path).with_context(|| format!("reading {}", site_path.display()))?;
    let site: kindling_site::SiteConfig = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a valid site config", site_path.display()))?;
    let mut options = BootstrapOptions::appliance(site);
    // The same overrides as `kindlingd api`, so both agree where things are.
    if let Some(run_dir) = std::env::var_os("KINDLING_RUN_DIR").map(std::path::PathBuf::from) {
        options.layout.config_dir = run_dir.join("stack");
        options.layout.status_file = run_dir.join("status").join("stack.json");
        options.control_socket = Some(run_dir.join("init.sock"));
    }
    if let Some(state_dir) = std::env::var_os("KINDLING_STATE_DIR") {
        options.layout.data_dir = state_dir.into();
    }
    if let Some(t) = timeout {
        options.service_timeout = t;
    }
    kindling_stack::api::block_on(bootstrap::run(options)).map_err(anyhow::Error::msg)??;
    Ok(())
}
