//! Whether the running image is an update on trial: booted by systemd-boot
//! from an entry that still counts tries (`kindling-V+N[-M].efi`) and not
//! blessed since. The config phase and the API ask this before recording
//! the overlays that came with the image: a trial that fails must not
//! raise the overlay floor under the image the firmware falls back to.
//!
//! Reads only (the `LoaderEntrySelected` EFI variable, the ESP's entry
//! names, the update agent's status file); any doubt about a counted
//! entry answers "on trial", the safe side: the overlays are then
//! recorded a boot later, never too early.

use crate::slots::{selected_entry, EntryName, Slots};
use std::path::{Path, PathBuf};

/// Where the answer comes from; the defaults are the appliance's paths.
#[derive(Debug, Clone)]
pub struct TrialPaths {
    /// efivarfs' `LoaderEntrySelected` ([`crate::slots::LOADER_ENTRY_SELECTED`]).
    pub loader_entry: PathBuf,
    /// The mounted ESP (its `EFI/Linux` holds the slots).
    pub esp: PathBuf,
    /// The agent's `status/update.json` of this boot.
    pub update_status: PathBuf,
}

impl TrialPaths {
    /// The appliance's paths under `run_dir` (`/run/kindling`).
    pub fn in_run_dir(run_dir: &Path) -> Self {
        Self {
            loader_entry: crate::slots::LOADER_ENTRY_SELECTED.into(),
            esp: run_dir.join("esp"),
            update_status: run_dir.join("status/update.json"),
        }
    }
}

/// True while the booted entry counts tries and neither the agent's
/// status (`mode: blessed`) nor the ESP (the entry renamed without its
/// counter) says it was blessed. Not started from a slot: false.
/// The entry is the EFI variable's, else (efivarfs not readable by this
/// account) the one the agent reported.
pub fn image_on_trial(paths: &TrialPaths) -> bool {
    let agent = agent_status(&paths.update_status);
    let Some(entry) = counted_entry(paths, &agent) else {
        return false;
    };
    if agent["mode"] == "blessed" {
        return false;
    }
    // Unreadable for this account (the ESP is the agent's): on trial.
    !matches!(
        Slots::new(paths.esp.join("EFI/Linux")).on_disk(&entry),
        Ok(Some(EntryName { tries: None, .. }))
    )
}

/// This boot came from an entry that counted tries, blessed since or not:
/// the boots whose config phase may have left the image's overlays
/// unrecorded until blessing.
pub fn booted_on_trial(paths: &TrialPaths) -> bool {
    counted_entry(paths, &agent_status(&paths.update_status)).is_some()
}

/// The booted entry's name when it counts tries (`kindling-V+N[-M].efi`).
fn counted_entry(paths: &TrialPaths, agent: &serde_json::Value) -> Option<String> {
    let entry = std::fs::read(&paths.loader_entry)
        .ok()
        .and_then(|var| selected_entry(&var))
        .or_else(|| agent["entry"].as_str().map(str::to_owned))?;
    EntryName::parse(&entry)?.tries.is_some().then_some(entry)
}

/// The agent's status of this boot; `Null` when there is none.
fn agent_status(status: &Path) -> serde_json::Value {
    std::fs::read(status)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// efivarfs' bytes for `name`: 4 attribute bytes, UTF-16LE, NUL.
    fn efivar(name: &str) -> Vec<u8> {
        let mut out = vec![7, 0, 0, 0];
        for u in name.encode_utf16().chain([0]) {
            out.extend_from_slice(&u.to_le_bytes());
        }
        out
    }

    fn setup(
        selected: Option<&str>,
        on_esp: &[&str],
        mode: Option<&str>,
    ) -> (tempfile::TempDir, TrialPaths) {
        let dir = tempfile::tempdir().unwrap();
        let paths = TrialPaths {
            loader_entry: dir.path().join("LoaderEntrySelected"),
            esp: dir.path().join("esp"),
            update_status: dir.path().join("update.json"),
        };
        if let Some(s) = selected {
            std::fs::write(&paths.loader_entry, efivar(s)).unwrap();
        }
        let linux = paths.esp.join("EFI/Linux");
        std::fs::create_dir_all(&linux).unwrap();
        for f in on_esp {
            std::fs::write(linux.join(f), b"uki").unwrap();
        }
        if let Some(m) = mode {
            std::fs::write(&paths.update_status, format!(r#"{{"mode":"{m}"}}"#)).unwrap();
        }
        (dir, paths)
    }

    #[test]
    fn a_counted_entry_is_on_trial_until_blessed() {
        let esp = ["kindling-0.1.0.efi", "kindling-0.1.1+2-1.efi"];
        let (_d, p) = setup(Some("kindling-0.1.1+3.efi"), &esp, None);
        assert!(image_on_trial(&p));
        let (_d, p) = setup(Some("kindling-0.1.1+3.efi"), &esp, Some("gating"));
        assert!(image_on_trial(&p));
        let (_d, p) = setup(Some("kindling-0.1.1+3.efi"), &esp, Some("gate_failed"));
        assert!(image_on_trial(&p));
        assert!(booted_on_trial(&p));
        // The agent blessed it this boot.
        let (_d, p) = setup(Some("kindling-0.1.1+3.efi"), &esp, Some("blessed"));
        assert!(!image_on_trial(&p));
        assert!(booted_on_trial(&p), "still a boot that began on trial");
        // Blessed on the ESP already (an earlier boot of it was blessed).
        let blessed = ["kindling-0.1.0.efi", "kindling-0.1.1.efi"];
        let (_d, p) = setup(Some("kindling-0.1.1+1-2.efi"), &blessed, None);
        assert!(!image_on_trial(&p));
    }

    #[test]
    fn a_blessed_entry_or_no_slot_boot_is_not_on_trial() {
        let esp = ["kindling-0.1.0.efi", "kindling-0.1.1+0-3.efi"];
        // The fallback boot of the good image.
        let (_d, p) = setup(Some("kindling-0.1.0.efi"), &esp, None);
        assert!(!image_on_trial(&p));
        assert!(!booted_on_trial(&p));
        // ISO, PXE, direct kernel: no variable.
        let (_d, p) = setup(None, &esp, None);
        assert!(!image_on_trial(&p));
        // Not a kindling slot.
        let (_d, p) = setup(Some("auto-windows"), &esp, None);
        assert!(!image_on_trial(&p));
    }

    #[test]
    fn an_unreadable_esp_counts_as_on_trial() {
        let (d, mut p) = setup(Some("kindling-0.1.1+3.efi"), &[], None);
        p.esp = d.path().join("not-mounted");
        assert!(image_on_trial(&p));
        // Garbage in the variable or the status: no panic, the safe answer.
        std::fs::write(&p.loader_entry, b"\xff").unwrap();
        assert!(!image_on_trial(&p));
        // No readable variable (the API's account): the agent's entry.
        std::fs::remove_file(&p.loader_entry).unwrap();
        std::fs::write(
            &p.update_status,
            r#"{"mode":"gating","entry":"kindling-0.1.1+2-1.efi"}"#,
        )
        .unwrap();
        assert!(image_on_trial(&p));
        std::fs::write(
            &p.update_status,
            r#"{"mode":"blessed","entry":"kindling-0.1.1.efi"}"#,
        )
        .unwrap();
        assert!(!image_on_trial(&p));
        std::fs::write(&p.loader_entry, efivar("kindling-0.1.1+3.efi")).unwrap();
        std::fs::write(&p.update_status, b"{not json").unwrap();
        assert!(image_on_trial(&p));
    }
}
