//! PID 1's outer frame: signal mask, panic hook, phases early → state, then the
//! run loop, with every iteration guarded so a panic is logged and survived.
//!
//! Owns the process-wide setup that must happen before any thread exists. As
//! PID 1 it never returns; run as an ordinary process (tests, benchmarks) it
//! becomes a child subreaper and exits after shutdown.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::boot_config::BootConfig;
use crate::console;
use crate::early::{self, EarlyReport};
use crate::phases::PhaseBook;
use crate::run::{handled_signals, RunLoop};
use crate::say;
use crate::shutdown::is_pid1;
use crate::state::{self, StateOutcome};
use crate::supervisor::service_logs::Placement;
use kindling_init_protocol::control::{LogStorage, PhaseState};
use kindling_init_protocol::phase::BootPhase;

/// Entry point of the `kindling-init` binary.
pub fn main() {
    let started = console::boottime();
    // Before any thread: handled signals go to the signalfd only.
    let _ = handled_signals().thread_block();
    // Also before any thread: fd 3 becomes the children's readiness fd slot.
    let notify_fd_error = crate::supervisor::spawn::reserve_notify_fd().err();
    std::panic::set_hook(Box::new(|info| {
        console::say("panic", format_args!("{info}"));
    }));
    let (config, config_error, config_path) = match BootConfig::load_from_env() {
        Ok((c, path)) => (c, None, path),
        Err(e) => (BootConfig::default(), Some(e), None),
    };
    let mut phases = PhaseBook::default();

    // early
    let now = Instant::now();
    phases.begin(BootPhase::Early, now);
    let mut report = EarlyReport::default();
    if config.early_mounts {
        // The console device exists only after devtmpfs is mounted.
        early::mount_kernel_filesystems(&mut report);
    }
    let console_error = console::open(config.console.as_deref());
    say!(
        BootPhase::Early,
        "kindling-init {} starting as pid {}",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    if let Some(e) = notify_fd_error {
        say!(
            BootPhase::Early,
            "cannot reserve fd 3 for readiness pipes ({e}); children get another number"
        );
    }
    if let Some(e) = console_error {
        say!(
            BootPhase::Early,
            "console device unavailable ({e}); writing to stdout"
        );
    }
    match (&config_error, &config_path) {
        (Some(e), _) => say!(
            BootPhase::Early,
            "init config unusable ({e}); using defaults"
        ),
        (None, Some(p)) => say!(BootPhase::Early, "init config {}", p.display()),
        (None, None) => {}
    }
    if !is_pid1() {
        // Orphans of our children come back to us, as they would to PID 1.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            say!(BootPhase::Early, "cannot become a child subreaper: {e}");
        }
    }
    let mounted_before = report.mounted;
    guarded(BootPhase::Early, || {
        if config.early_mounts {
            // ctrl-alt-del then sends SIGINT to init instead of rebooting at once.
            let _ = nix::sys::reboot::set_cad_enabled(false);
        }
        early::load_modules(&config, &mut report);
        if let Some(reference) = &config.clock_floor_from {
            match early::clock::apply(reference) {
                Ok(early::clock::ClockFloor::Kept { .. }) => {}
                Ok(early::clock::ClockFloor::Raised { from, to }) => say!(
                    BootPhase::Early,
                    "clock was {from} (unix s), behind the image's build time: set to {to} until NTP sets it"
                ),
                Err(e) => report.problems.push(format!("clock floor: {e}")),
            }
        }
    });
    let detail = format!(
        "{} filesystems mounted, {} modules loaded{}",
        mounted_before,
        report.modules_loaded,
        if report.problems.is_empty() {
            String::new()
        } else {
            format!("; {}", report.problems.join("; "))
        }
    );
    let state = if report.problems.is_empty() {
        PhaseState::Done
    } else {
        PhaseState::Degraded
    };
    phases.finish(BootPhase::Early, state, detail, Instant::now());

    // state
    phases.begin(BootPhase::State, Instant::now());
    let mut outcome = StateOutcome::RamOnly("state phase did not run".into());
    guarded(BootPhase::State, || {
        outcome = state::run(
            config.data_label.as_deref(),
            &config.data_mount,
            Duration::from_millis(config.data_wait_ms),
            config.early_mounts,
        );
    });
    match &outcome {
        StateOutcome::Persistent(dev) => {
            // The A/B slots live beside the data partition; a boot that has
            // none (no ESP there) just cannot update itself.
            let slots = if config.early_mounts {
                match crate::esp::mount_slots(
                    Path::new("/sys"),
                    Path::new("/run/kindling/dev"),
                    dev,
                    Path::new(kindling_init_protocol::control::ESP_MOUNT),
                    kindling_init_protocol::accounts::UPDATE,
                ) {
                    Ok(esp) => format!(
                        "; boot slots {} on {}",
                        esp.display(),
                        kindling_init_protocol::control::ESP_MOUNT
                    ),
                    Err(why) => format!("; no boot slots: {why}"),
                }
            } else {
                String::new()
            };
            phases.finish(
                BootPhase::State,
                PhaseState::Done,
                format!(
                    "data partition {} mounted on {}{slots}",
                    dev.display(),
                    config.data_mount.display()
                ),
                Instant::now(),
            )
        }
        // RAM-only is a supported mode, logged, not a degradation.
        StateOutcome::RamOnly(why) => phases.finish(
            BootPhase::State,
            PhaseState::Done,
            format!("RAM only (tmpfs on {}): {why}", config.data_mount.display()),
            Instant::now(),
        ),
        // A data partition that is there but unusable is: the state the
        // operator expects (Vault, leases, inventory) is not what runs.
        StateOutcome::Unmountable { device, reason } => phases.finish(
            BootPhase::State,
            PhaseState::Degraded,
            format!(
                "data partition {} not mounted, nothing persists (tmpfs on {}): {reason}",
                device.display(),
                config.data_mount.display()
            ),
            Instant::now(),
        ),
    }

    let logs = log_placement(&config, &outcome);
    let mut run = loop {
        match RunLoop::new(
            config.clone(),
            std::mem::take(&mut phases),
            started,
            logs.clone(),
        ) {
            Ok(run) => break run,
            Err(e) => {
                // Without a signalfd there is no supervision; retry rather than die.
                say!(
                    BootPhase::Run,
                    "cannot set up the run loop: {e}; retrying in 1 s"
                );
                std::thread::sleep(Duration::from_secs(1));
                phases = PhaseBook::default();
            }
        }
    };
    guarded(BootPhase::Config, || run.begin());
    loop {
        let mut keep_going = true;
        guarded(BootPhase::Run, || keep_going = run.iterate());
        if !keep_going {
            break;
        }
    }
    // Only reached when not PID 1: shutdown::finish returned instead of rebooting.
}

/// Where the services' output goes: on the data partition when the state
/// phase mounted it (no service ran before, so nothing is left in RAM to
/// move), else in RAM, saying why.
fn log_placement(config: &BootConfig, outcome: &StateOutcome) -> Placement {
    let ram = |reason: String| Placement {
        dir: config.log_dir.clone(),
        storage: LogStorage::Ram,
        reason: Some(reason),
    };
    match (outcome, &config.data_log_dir) {
        (StateOutcome::Persistent(_), Some(dir)) => Placement {
            dir: dir.clone(),
            storage: LogStorage::Data,
            reason: None,
        },
        (StateOutcome::Persistent(_), None) => ram("init.json sets no data_log_dir".to_string()),
        (StateOutcome::RamOnly(why), _) => ram(format!("no data partition: {why}")),
        (StateOutcome::Unmountable { reason, .. }, _) => {
            ram(format!("data partition not mounted: {reason}"))
        }
    }
}

/// Runs `f`, logging a panic instead of unwinding out of PID 1.
fn guarded(what: impl AsRef<str>, f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        say!(
            what.as_ref(),
            "recovered from a panic (see the line above); continuing"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]
    use super::*;

    #[test]
    fn a_panic_inside_guarded_is_survived() {
        let mut after = false;
        guarded("test", || panic!("deliberate test panic"));
        guarded("test", || after = true);
        assert!(after, "the code after a panicking step still runs");
    }
}
