//! The end of shutdown, after every service stopped: kill stragglers, sync,
//! unmount, reboot(2) or power off.
//!
//! Owns the irreversible steps. Anything that would reach outside init's own
//! world is guarded by "am I PID 1": run as an ordinary process (tests,
//! benchmarks) it only syncs and returns, so it can never kill or reboot the
//! host. In a PID namespace, reboot(2) ends the namespace instead of the machine.

use std::time::{Duration, Instant};

use nix::sys::reboot::RebootMode;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::boot_config::{BootConfig, ShutdownAction};
use crate::say;

/// Whether this process is PID 1 (of the machine or of a PID namespace).
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Final steps. Returns only when not PID 1 (the caller then exits).
pub fn finish(action: ShutdownAction, config: &BootConfig) {
    if is_pid1() {
        kill_stragglers();
    }
    nix::unistd::sync();
    if config.early_mounts {
        unmount_all();
    } else if is_pid1() {
        // Only the data partition is ours to unmount in a test namespace.
        let _ = nix::mount::umount2(&config.data_mount, nix::mount::MntFlags::MNT_DETACH);
    }
    nix::unistd::sync();
    if !is_pid1() {
        say!("shutdown", "not PID 1: exiting instead of {action:?}");
        return;
    }
    let mode = match action {
        ShutdownAction::Reboot => RebootMode::RB_AUTOBOOT,
        ShutdownAction::Poweroff => RebootMode::RB_POWER_OFF,
    };
    say!(
        "shutdown",
        "{}",
        match action {
            ShutdownAction::Reboot => "rebooting",
            ShutdownAction::Poweroff => "powering off",
        }
    );
    let Err(e) = nix::sys::reboot::reboot(mode);
    say!("shutdown", "reboot(2) failed: {e}; halting here");
    // PID 1 must not exit (the kernel would panic): wait for the power to go.
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Processes that are no service's (or that outlived theirs): SIGTERM, a short
/// wait while reaping, then SIGKILL.
fn kill_stragglers() {
    let everyone = Pid::from_raw(-1);
    if kill(everyone, Signal::SIGTERM).is_err() {
        return; // ESRCH: nothing left.
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match waitpid(everyone, Some(WaitPidFlag::WNOHANG)) {
            Err(_) => return, // ECHILD: all gone.
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            Ok(_) => {}
        }
    }
    let _ = kill(everyone, Signal::SIGKILL);
    while let Ok(status) = waitpid(everyone, None) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

/// Unmounts everything but the root, innermost first; what stays busy is
/// remounted read-only so the data partition is clean.
fn unmount_all() {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|t| t.replace("\\040", " "))
        .filter(|t| t != "/")
        .collect();
    for target in targets.iter().rev() {
        if nix::mount::umount2(target.as_str(), nix::mount::MntFlags::empty()).is_err() {
            let _ = nix::mount::mount(
                None::<&str>,
                target.as_str(),
                None::<&str>,
                nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY,
                None::<&str>,
            );
        }
    }
}
