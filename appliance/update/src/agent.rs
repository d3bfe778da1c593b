//! The update agent's boot-time duty: find which slot this boot came from,
//! notice updates the firmware gave up on (rolled back), wait for the
//! health gate (every phase done, every required service ready), then
//! bless the running slot and raise the version floor. When the gate fails
//! on an image on trial with a good image to fall back to, it says the
//! appliance must reboot: systemd-boot then tries the image again or,
//! with its tries used up, boots the good one. What it found is
//! written as the `update` status file, so `/v1/status`, `/metrics` and the
//! CLI show slot, version, floor and the last update result.
//!
//! The floor and the refused versions live on the ESP itself
//! (`kindling-update.json`), the one place the agent may write that
//! survives a reboot and goes with the slots.

use crate::report::{load_state, publish, save_state};
pub use crate::report::{
    AgentPaths, ArmedUpload, GateFailure, Mode, UpdateState, UpdateStatus, STATE_FILE,
};
use crate::slots::{selected_entry, EntryName, Slots};
use std::time::{Duration, Instant};

/// The health gate's answer.
pub enum Gate {
    Ready,
    NotYet(String),
}

/// How often the gate is asked.
const GATE_POLL: Duration = Duration::from_secs(2);

/// What the boot-time duty ended with.
pub struct Boot {
    /// The last status written.
    pub status: UpdateStatus,
    /// Why the appliance must reboot now (a failed try of an image on
    /// trial); `None`: stay up.
    pub reboot: Option<String>,
}

/// Runs the boot-time duty once.
pub fn run_boot(paths: &AgentPaths, gate_timeout: Duration, gate: impl FnMut() -> Gate) -> Boot {
    let mut reboot = None;
    let status = check_boot(paths, gate_timeout, gate, &mut reboot);
    Boot { status, reboot }
}

fn check_boot(
    paths: &AgentPaths,
    gate_timeout: Duration,
    mut gate: impl FnMut() -> Gate,
    reboot: &mut Option<String>,
) -> UpdateStatus {
    let mut status = UpdateStatus {
        mode: Mode::NotFromDisk,
        detail: String::new(),
        entry: None,
        version: None,
        state: UpdateState::default(),
        push: None,
        poll: None,
    };
    let entry = std::fs::read(&paths.loader_entry)
        .ok()
        .and_then(|var| selected_entry(&var));
    let Some(entry) = entry else {
        status.detail = "systemd-boot did not start this boot (ISO, PXE or a direct kernel): no slots to update".into();
        return publish(paths, status);
    };
    status.entry = Some(entry.clone());
    let Some(name) = EntryName::parse(&entry) else {
        status.mode = Mode::Unavailable;
        status.detail = format!("the booted entry {entry} is not a kindling slot");
        return publish(paths, status);
    };
    status.version = Some(name.version.clone());
    let slots = Slots::new(paths.esp.join("EFI/Linux"));
    if !slots.dir().is_dir() {
        status.mode = Mode::Unavailable;
        status.detail = format!("no ESP mounted at {}", paths.esp.display());
        return publish(paths, status);
    }
    // systemd-boot may report the name from before it counted this try.
    let entry = match slots.on_disk(&entry) {
        Ok(Some(on_disk)) => on_disk.file_name(),
        _ => entry,
    };
    status.entry = Some(entry.clone());
    let state_path = paths.esp.join(STATE_FILE);
    status.state = load_state(&state_path);
    match slots.failed_updates(&name.version) {
        Ok(failed) => {
            // The failed image's agent recorded why before it rebooted.
            let recorded = status.state.gate_failure.take();
            for version in failed {
                if !status.state.refused.contains(&version) {
                    let why = recorded
                        .as_ref()
                        .filter(|f| f.version == version)
                        .map(|f| format!(" ({})", f.why))
                        .unwrap_or_default();
                    status.state.last_result = Some(format!(
                        "update {version} failed its health gate{why}; the firmware went back to {}",
                        name.version
                    ));
                    status.state.refused.push(version);
                }
            }
        }
        Err(e) => status.detail = format!("reading the slots: {e}"),
    }

    status.mode = Mode::Gating;
    status.detail = "waiting for every phase and required service".into();
    status = publish(paths, status);
    let deadline = Instant::now() + gate_timeout;
    loop {
        match gate() {
            Gate::Ready => break,
            Gate::NotYet(why) if Instant::now() >= deadline => {
                status.mode = Mode::GateFailed;
                status.detail = format!("not healthy within {} s: {why}", gate_timeout.as_secs());
                match retry_or_fall_back(&slots, &entry) {
                    Ok(next) => {
                        status.state.last_result = Some(format!(
                            "{} failed its health gate ({why}); {next}",
                            name.version
                        ));
                        status.state.gate_failure = Some(GateFailure {
                            version: name.version.clone(),
                            why,
                        });
                        *reboot = Some(next);
                    }
                    Err(stay) => status.detail = format!("{}; {stay}", status.detail),
                }
                save_state(&state_path, &status.state);
                return publish(paths, status);
            }
            Gate::NotYet(_) => std::thread::sleep(GATE_POLL),
        }
    }
    match slots.bless(&entry) {
        Ok(blessed) => {
            if blessed != entry {
                status.state.last_result = Some(format!("{} passed its health gate", name.version));
            }
            status.mode = Mode::Blessed;
            status.detail = format!("healthy; boots {blessed}");
            status.state.gate_failure = None;
            status.entry = Some(blessed);
            let floor = status.state.floor.take();
            status.state.floor =
                Some(floor.map_or(name.version.clone(), |f| f.max(name.version.clone())));
        }
        Err(e) => {
            status.mode = Mode::Unavailable;
            status.detail = format!("healthy, but blessing {entry} failed: {e}");
        }
    }
    save_state(&state_path, &status.state);
    publish(paths, status)
}

/// After a failed gate: `Ok(what the reboot leads to)` when the running
/// image is on trial and a blessed image of another version is there to
/// fall back to, else `Err(why the appliance stays up as it is)`. A
/// blessed image is never rebooted over a failed gate (it would only
/// start again), nor is the last image there is.
fn retry_or_fall_back(slots: &Slots, running: &str) -> Result<String, String> {
    let running = EntryName::parse(running)
        .ok_or_else(|| format!("{running} is not a kindling slot; staying up"))?;
    let Some((left, done)) = running.tries else {
        return Err(format!(
            "{} is blessed, a reboot would start it again; staying up degraded",
            running.version
        ));
    };
    let fallback = slots
        .entries()
        .map_err(|e| format!("reading the slots ({e}); staying up"))?
        .into_iter()
        .find(|e| e.tries.is_none() && e.version != running.version)
        .ok_or_else(|| {
            format!(
                "no blessed image to fall back to; staying up on {} degraded",
                running.version
            )
        })?;
    let of = left + done;
    Ok(if left > 0 {
        format!("try {done} of {of} failed; rebooting, systemd-boot tries it again ({left} left)")
    } else {
        format!(
            "try {done} of {of} failed, none left; rebooting into {}",
            fallback.version
        )
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::version::Version;

    fn esp(entries: &[&str], booted: Option<&str>) -> (tempfile::TempDir, AgentPaths) {
        let dir = tempfile::tempdir().unwrap();
        let linux = dir.path().join("esp/EFI/Linux");
        std::fs::create_dir_all(&linux).unwrap();
        for e in entries {
            std::fs::write(linux.join(e), e).unwrap();
        }
        let var = dir.path().join("LoaderEntrySelected");
        if let Some(b) = booted {
            let mut bytes = vec![6, 0, 0, 0];
            for u in b.encode_utf16().chain([0]) {
                bytes.extend(u.to_le_bytes());
            }
            std::fs::write(&var, bytes).unwrap();
        }
        let paths = AgentPaths {
            esp: dir.path().join("esp"),
            loader_entry: var,
            status: dir.path().join("update.json"),
        };
        (dir, paths)
    }

    #[test]
    fn a_healthy_boot_on_trial_is_blessed_and_raises_the_floor() {
        let (_dir, paths) = esp(
            &["kindling-1.efi", "kindling-2+2-1.efi"],
            Some("kindling-2+2-1.efi"),
        );
        let mut asked = 0;
        let boot = run_boot(&paths, Duration::from_secs(60), || {
            asked += 1;
            if asked < 2 {
                Gate::NotYet("stack not ready".into())
            } else {
                Gate::Ready
            }
        });
        assert!(boot.reboot.is_none());
        let status = boot.status;
        assert_eq!(status.mode, Mode::Blessed);
        assert_eq!(status.entry.as_deref(), Some("kindling-2.efi"));
        assert!(paths.esp.join("EFI/Linux/kindling-2.efi").is_file());
        assert_eq!(status.state.floor, Some("2".parse().unwrap()));
        assert_eq!(
            status.state.last_result.as_deref(),
            Some("2 passed its health gate")
        );
        let written: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&paths.status).unwrap()).unwrap();
        assert_eq!(written["mode"], "blessed");
        assert_eq!(written["floor"], "2");
        assert_eq!(load_state(&paths.esp.join(STATE_FILE)), status.state);
    }

    /// OVMF's systemd-boot reports `+3-0` after renaming the file to `+2-1`.
    #[test]
    fn the_selected_name_from_before_the_try_was_counted_is_found() {
        let (_dir, paths) = esp(&["kindling-1+2-1.efi"], Some("kindling-1+3-0.efi"));
        let status = run_boot(&paths, Duration::ZERO, || Gate::Ready).status;
        assert_eq!(status.mode, Mode::Blessed, "{}", status.detail);
        assert_eq!(status.entry.as_deref(), Some("kindling-1.efi"));
        assert!(paths.esp.join("EFI/Linux/kindling-1.efi").is_file());
    }

    #[test]
    fn an_unhealthy_boot_stays_on_trial_and_a_rollback_is_recorded() {
        let (_dir, paths) = esp(
            &["kindling-2.efi", "kindling-3+0-3.efi"],
            Some("kindling-2.efi"),
        );
        let boot = run_boot(&paths, Duration::ZERO, || {
            Gate::NotYet("pxe: not ready".into())
        });
        assert!(boot.reboot.is_none(), "a blessed image is not rebooted");
        let status = boot.status;
        assert_eq!(status.mode, Mode::GateFailed);
        assert!(
            status.detail.contains("pxe: not ready"),
            "{}",
            status.detail
        );
        assert_eq!(status.state.refused, ["3".parse::<Version>().unwrap()]);
        assert!(status
            .state
            .last_result
            .unwrap()
            .contains("update 3 failed its health gate"));
        assert!(paths.esp.join("EFI/Linux/kindling-2.efi").is_file());
    }

    #[test]
    fn boots_without_slots_say_why() {
        let (_dir, paths) = esp(&[], None);
        let status = run_boot(&paths, Duration::ZERO, || Gate::Ready).status;
        assert_eq!(status.mode, Mode::NotFromDisk);
        let (_dir, paths) = esp(&[], Some("debian.conf"));
        assert_eq!(
            run_boot(&paths, Duration::ZERO, || Gate::Ready).status.mode,
            Mode::Unavailable
        );
    }

    fn fail(paths: &AgentPaths) -> Boot {
        run_boot(paths, Duration::ZERO, || {
            Gate::NotYet("vault: not ready".into())
        })
    }

    #[test]
    fn a_failed_try_with_tries_left_reboots_to_try_again() {
        let (_dir, paths) = esp(
            &["kindling-2.efi", "kindling-3+2-1.efi"],
            Some("kindling-3+3-0.efi"),
        );
        let boot = fail(&paths);
        assert_eq!(boot.status.mode, Mode::GateFailed);
        let why = boot.reboot.expect("reboots");
        assert!(why.contains("try 1 of 3 failed"), "{why}");
        assert!(why.contains("2 left"), "{why}");
        let result = boot.status.state.last_result.unwrap();
        assert!(
            result.contains("3 failed its health gate (vault: not ready)"),
            "{result}"
        );
        assert!(
            paths.esp.join("EFI/Linux/kindling-3+2-1.efi").is_file(),
            "the counter is systemd-boot's to change, not the agent's"
        );
        assert!(
            boot.status.state.floor.is_none(),
            "a failed try raises no floor"
        );
    }

    #[test]
    fn the_last_failed_try_reboots_into_the_blessed_image() {
        let (_dir, paths) = esp(
            &["kindling-2.efi", "kindling-3+0-3.efi"],
            Some("kindling-3+1-2.efi"),
        );
        let why = fail(&paths).reboot.expect("reboots");
        assert!(why.contains("try 3 of 3 failed, none left"), "{why}");
        assert!(why.contains("rebooting into 2"), "{why}");
    }

    /// The reason the bad image's gate gave is what the good image reports
    /// once the firmware went back to it, not only that it failed.
    #[test]
    fn the_image_fallen_back_to_reports_why_the_update_failed() {
        let (_dir, paths) = esp(
            &["kindling-2.efi", "kindling-3+0-3.efi"],
            Some("kindling-3+1-2.efi"),
        );
        assert!(fail(&paths).reboot.is_some());
        let mut selected = vec![6, 0, 0, 0];
        for u in "kindling-2.efi".encode_utf16().chain([0]) {
            selected.extend(u.to_le_bytes());
        }
        std::fs::write(&paths.loader_entry, selected).unwrap();
        let boot = run_boot(&paths, Duration::ZERO, || Gate::Ready);
        assert!(boot.reboot.is_none());
        let state = boot.status.state;
        assert_eq!(boot.status.mode, Mode::Blessed);
        assert_eq!(state.refused, ["3".parse::<Version>().unwrap()]);
        assert_eq!(
            state.last_result.as_deref(),
            Some("update 3 failed its health gate (vault: not ready); the firmware went back to 2")
        );
        assert_eq!(state.gate_failure, None, "reported once, then dropped");
        assert_eq!(load_state(&paths.esp.join(STATE_FILE)), state);
    }

    #[test]
    fn with_nothing_to_fall_back_to_it_stays_up_and_says_so() {
        let (_dir, paths) = esp(&["kindling-3+1-2.efi"], Some("kindling-3+2-1.efi"));
        let boot = fail(&paths);
        assert!(boot.reboot.is_none());
        assert!(
            boot.status
                .detail
                .contains("no blessed image to fall back to"),
            "{}",
            boot.status.detail
        );
        // Another image that is itself on trial is no fallback either.
        let (_dir, paths) = esp(
            &["kindling-2+0-3.efi", "kindling-3+1-2.efi"],
            Some("kindling-3+2-1.efi"),
        );
        assert!(fail(&paths).reboot.is_none());
    }
}
