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
    if is_pid1() {
        unmount_own(config);
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

/// Unmounts what init itself mounted, innermost first: the data partition
/// (remounted read-only if busy, so its journal is clean), then the early
/// kernel filesystems. Nothing else: a mount init did not make is not its to
/// touch (in a test namespace those are the host's filesystems).
fn unmount_own(config: &BootConfig) {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    let data = config.data_mount.as_path();
    if umount2(data, MntFlags::empty()).is_err() && is_mount_point(data) {
        let _ = mount(
            None::<&str>,
            data,
            None::<&str>,
            MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        );
    }
    if config.early_mounts {
        for m in crate::early::mount_table().iter().rev() {
            let _ = umount2(m.target, MntFlags::MNT_DETACH);
        }
    }
}

/// Whether `path` is a mount point of its own (device differs from its parent's).
fn is_mount_point(path: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let parent = path.parent().unwrap_or(std::path::Path::new("/"));
    match (std::fs::metadata(path), std::fs::metadata(parent)) {
        (Ok(a), Ok(b)) => a.dev() != b.dev(),
        _ => false,
    }
}
