//! `kindlingd update`: the update agent (account kl-update, no capability).
//! At boot it runs the health gate and blesses the slot it came from
//! (`kindling_update::agent`); the gate is init's own verdict (`list`:
//! every phase ran, every required service ready), asked over the control
//! socket, where this account may list and reboot. An image on trial that
//! fails the gate within the site's `gate_timeout` is rebooted, so the
//! firmware tries it again or falls back to the last good image.
//!
//! Before the gate it removes from the spool the bundle this image was
//! armed from, should a power cut have left it there
//! (`kindling_update::push::drop_armed_leftover`). Then it stays and
//! watches the update spool on the data partition
//! (`kindling_update::spool`): a bundle the API received there is
//! verified, staged and armed (`kindling_update::push`), removed from the
//! spool, and init is asked to reboot into it (this account may list and
//! reboot on init's socket, nothing else).
//!
//! When the site names a channel (`[update]`), it also polls it
//! (`kindling_update::poll`) every `check_every`, or at once when the API
//! left an operator's request in the spool, and applies what the signed
//! index offers inside the maintenance window (at once on `apply-now`),
//! through the same staging and reboot as a push.
//!
//! Owns argument parsing and the wiring of the gate, the spool, the poll
//! schedule and the reboot request.

use kindling_api::stack::OverallState;
use kindling_init_protocol::control::{Client, DEFAULT_SOCKET, ESP_MOUNT};
use kindling_site::SiteConfig;
use kindling_update::agent::{self, AgentPaths, Gate, UpdateStatus};
use kindling_update::fetch::HttpSource;
use kindling_update::poll::{self, PollConfig, PollState, Poller};
use kindling_update::push::{self, PushState};
use kindling_update::slots::LOADER_ENTRY_SELECTED;
use kindling_update::spool::{self, PollRequest};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How often the spool is looked at.
const SPOOL_POLL: Duration = Duration::from_secs(1);
/// The image's trusted keys (updates are signed like overlays).
const TRUST_DIR: &str = "/etc/kindling/trust";

#[derive(clap::Args)]
pub struct Args {
    /// Seconds the appliance has to become healthy before an image on
    /// trial is rebooted; default: the site's `[update] gate_timeout`.
    #[arg(long)]
    gate_timeout: Option<u64>,
}

/// The gate's timeout: the argument, else the site's, else its default.
fn gate_timeout(args: &Args, site: Option<&SiteConfig>) -> Duration {
    let secs = args.gate_timeout.unwrap_or_else(|| {
        site.and_then(|s| kindling_site::update::parse_gate_timeout(&s.update.gate_timeout).ok())
            .unwrap_or(DEFAULT_GATE_TIMEOUT_SECS)
    });
    Duration::from_secs(secs)
}

/// The health gate: init's verdict (every phase ran, every required
/// service ready) and, where the site runs the stack, the stack's own
/// report (`stack: ready`: Consul, Vault and Nomad bootstrapped).
fn health(init: &Client, stack_status: Option<&Path>) -> Gate {
    match init.list() {
        Ok(list) if list.ready => {}
        Ok(list) if list.degraded.is_empty() => {
            return Gate::NotYet("not every service is ready yet".into())
        }
        Ok(list) => return Gate::NotYet(list.degraded.join("; ")),
        Err(e) => return Gate::NotYet(format!("asking init: {e}")),
    }
    let Some(path) = stack_status else {
        return Gate::Ready;
    };
    match kindling_stack::status::read(path) {
        Ok(stack) if stack.state == OverallState::Ready => Gate::Ready,
        Ok(stack) => Gate::NotYet(format!("stack: {:?}", stack.state).to_lowercase()),
        Err(e) => Gate::NotYet(format!("stack: no report yet ({e})")),
    }
}

/// When the site cannot be read: `[update] gate_timeout`'s default.
const DEFAULT_GATE_TIMEOUT_SECS: u64 = 600;

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
    let site_json = kindling_site::effective::in_run_dir(&run_dir);
    let site = kindling_site::effective::load(&site_json).ok();
    let stack_status = run_dir.join("status").join("stack.json");
    let stack_enabled = site.as_ref().is_some_and(|s| s.stack.any_enabled());
    let spool_dir = state_dir.join(spool::SPOOL_DIR);
    // Before the gate, which may take minutes: until then a bundle this
    // image was armed from, left in the spool by a power cut, would make
    // the API answer every new push 409.
    push::drop_armed_leftover(&paths, &spool_dir);
    let boot = agent::run_boot(&paths, gate_timeout(&args, site.as_ref()), || {
        health(&init, stack_enabled.then_some(stack_status.as_path()))
    });
    let mut status = boot.status;
    if let Some(why) = boot.reboot {
        eprintln!("update: {why}");
        if let Err(e) = init.reboot(&format!("update agent: {why}")) {
            eprintln!("update: init did not reboot: {e}");
        }
    }
    let trust_dir = Path::new(TRUST_DIR);
    loop {
        std::thread::sleep(SPOOL_POLL);
        if let Some(upload) = spool::pending(&spool_dir) {
            let trusted = push::trusted_keys(trust_dir);
            let now = kindling_clock::unix_now();
            status = push::apply(&paths, status, &upload, &trusted, trust_dir, now);
            if let Err(e) = spool::discard(&upload) {
                eprintln!("update: removing the upload: {e}");
            }
            let armed = status
                .push
                .as_ref()
                .filter(|p| p.state == PushState::Armed)
                .and_then(|p| p.armed.clone());
            reboot_into(&init, armed);
            continue;
        }
        status = poll_channel(&paths, status, &site_json, &spool_dir, trust_dir, &init);
    }
}

/// One turn of the channel poll: checks when it is due (or asked) and
/// reboots into what it armed. The site is read each turn: an overlay
/// pushed at run time may change the channel or the window.
fn poll_channel(
    paths: &AgentPaths,
    status: UpdateStatus,
    site_json: &Path,
    spool_dir: &Path,
    trust_dir: &Path,
    init: &Client,
) -> UpdateStatus {
    let request = spool::take_poll_request(spool_dir);
    let config = kindling_site::effective::load(site_json)
        .ok()
        .and_then(|site| PollConfig::from_site(&site.update));
    let Some(config) = config else {
        if request.is_some() {
            eprintln!("update: a poll was asked for, but the site names no [update] channel");
        }
        return status;
    };
    let now = kindling_clock::unix_now();
    let last = status
        .poll
        .as_ref()
        .filter(|p| p.channel == config.policy.channel && p.url == config.url);
    if !poll::due(&config, last, request.is_some(), now) {
        return status;
    }
    let source = HttpSource::new(&config.url);
    let trusted = push::trusted_keys(trust_dir);
    let status = Poller {
        paths,
        config: &config,
        source: &source,
        trusted: &trusted,
        trust_dir,
        spool: spool_dir,
    }
    .check(status, now, request == Some(PollRequest::ApplyNow));
    let armed = status
        .poll
        .as_ref()
        .filter(|p| p.state == PollState::Armed)
        .and_then(|p| p.armed.clone());
    reboot_into(init, armed);
    status
}

/// Asks init to reboot into `armed`, when something was.
fn reboot_into(init: &Client, armed: Option<String>) {
    let Some(armed) = armed else {
        return;
    };
    if let Err(e) = init.reboot(&format!("update agent: {armed} armed")) {
        eprintln!(
            "update: {armed} is armed, but init did not reboot: {e}; it boots at the next reboot"
        );
    }
}
