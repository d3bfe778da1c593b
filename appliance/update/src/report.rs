//! What the update agent reports and keeps: the status file
//! (`status/update.json`, read by `/v1/status`, `/metrics` and the CLI) with
//! its boot, push and poll parts, and the state kept on the ESP across
//! boots. The boot duty (`crate::agent`), a push (`crate::push`) and the
//! channel poll (`crate::poll`) all write through here, so none of them
//! needs another's module.

use crate::version::Version;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Where the agent looks and writes.
pub struct AgentPaths {
    /// The mounted ESP (its `EFI/Linux` holds the slots).
    pub esp: PathBuf,
    /// systemd-boot's `LoaderEntrySelected` variable in efivarfs.
    pub loader_entry: PathBuf,
    /// The status file (`/run/kindling/status/update.json`).
    pub status: PathBuf,
}

/// Kept on the ESP across boots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateState {
    /// The lowest version this appliance may run again.
    #[serde(default)]
    pub floor: Option<Version>,
    /// Versions that failed their health gate here.
    #[serde(default)]
    pub refused: Vec<Version>,
    #[serde(default)]
    pub last_result: Option<String>,
    /// The last failed try of the image on trial, recorded by that image's
    /// agent before it reboots: the image the firmware falls back to
    /// reports the version with the gate's reason, then drops it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate_failure: Option<GateFailure>,
    /// The highest index sequence accepted per channel: a lower one is a
    /// replayed or rolled-back mirror, refused across reboots too.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channel_seen: BTreeMap<String, u64>,
    /// The pushed upload being armed, recorded (durably) before its entry
    /// is: a power cut can come before the agent removes the upload from
    /// the spool, and the image it armed must then know the leftover for
    /// its own bundle (`push::drop_armed_leftover`), not a new push.
    /// Dropped at the next start of the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub armed_upload: Option<ArmedUpload>,
}

/// `armed_upload` in [`UpdateState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArmedUpload {
    /// The spool upload's id (the first 16 hex digits of its sha256).
    pub upload: String,
    /// The version it is armed as.
    pub version: Version,
}

/// `gate_failure` in [`UpdateState`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GateFailure {
    pub version: Version,
    /// What the gate was still waiting for when it gave up.
    pub why: String,
}

pub const STATE_FILE: &str = "kindling-update.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Not started by systemd-boot from a slot (ISO, PXE, direct kernel).
    NotFromDisk,
    /// Booted from a slot but the slots cannot be used (see detail).
    Unavailable,
    /// Waiting for the health gate.
    Gating,
    /// The gate passed; the running slot is the good one.
    Blessed,
    /// The gate did not pass in time: the slot stays on trial, and the
    /// firmware falls back once its tries run out.
    GateFailed,
}

/// `status/update.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdateStatus {
    pub mode: Mode,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    #[serde(flatten)]
    pub state: UpdateState,
    /// The last bundle pushed this boot (`crate::push`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<PushStatus>,
    /// The channel poll (`crate::poll`), when the site names a channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll: Option<PollStatus>,
}

/// Where a pushed bundle stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PushState {
    /// Being verified and written to the slots.
    Staging,
    /// In the slots with three tries; the reboot is asked for.
    Armed,
    /// Not taken; `detail` says what is wrong. The slots are unchanged.
    Refused,
}

/// `push` in `status/update.json`: the last pushed bundle this boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushStatus {
    /// The upload's id (the first 16 hex digits of its sha256), as the
    /// API's answer to the push named it.
    pub upload: String,
    pub state: PushState,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Version>,
    /// The entry it was armed as (`kindling-V+3.efi`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub armed: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PollState {
    /// Fetching and verifying the index.
    Checking,
    /// The index offers nothing this appliance would take.
    UpToDate,
    /// A release is offered; it is applied when the window opens.
    Waiting,
    /// The bundle is coming (`downloaded` of `total` bytes).
    Downloading,
    /// The bundle is whole and matches the index; being verified and
    /// written to the slots.
    Staging,
    /// In the slots with three tries; the reboot is asked for.
    Armed,
    /// The index or the bundle was not taken; `detail` says which check
    /// failed. The slots are unchanged.
    Refused,
    /// The check could not run (the mirror did not answer, the running
    /// slot is not blessed, a push is waiting); tried again next time.
    Failed,
}

/// `poll` in `status/update.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PollStatus {
    pub channel: String,
    pub url: String,
    /// The maintenance window as the site wrote it (UTC).
    pub window: String,
    pub state: PollState,
    pub detail: String,
    /// Whether this check was asked to apply at once, window or not.
    pub apply_now: bool,
    /// Unix seconds of the last check and of the next scheduled one.
    pub checked_at: u64,
    pub next_check: u64,
    /// The index sequence last accepted on this channel.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// The release the index offers this appliance.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offered: Option<Version>,
    /// When waiting: the unix second the window opens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_opens: Option<u64>,
    /// Download progress in bytes, and the bundle's size per the index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub downloaded: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// The entry it was armed as (`kindling-V+3.efi`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub armed: Option<String>,
}

pub(crate) fn load_state(path: &Path) -> UpdateState {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Durably: the ESP is FAT, with no journal, and the agent reboots (or
/// loses power) right after it blesses or arms. Unsynced, a power cut
/// within the kernel's writeback delay loses the raised floor, the refused
/// versions and the channel sequences (seen in the lab: docs/updates.md).
pub(crate) fn save_state(path: &Path, state: &UpdateState) {
    if let Ok(bytes) = serde_json::to_vec_pretty(state) {
        if let Err(e) = kindling_atomic_write::write_atomic(path, &bytes, true) {
            eprintln!("update: saving {}: {e}", path.display());
        }
    }
}

/// Writes the status file (and says it on the console); returns `status`.
pub(crate) fn publish(paths: &AgentPaths, status: UpdateStatus) -> UpdateStatus {
    match &status.push {
        Some(push) => println!(
            "update: push {}: {:?}: {}",
            push.upload, push.state, push.detail
        ),
        None => println!("update: {:?}: {}", status.mode, status.detail),
    }
    write_status(paths, &status);
    status
}

/// Writes the status file only (progress, which is no console event).
pub(crate) fn write_status(paths: &AgentPaths, status: &UpdateStatus) {
    match serde_json::to_vec_pretty(status) {
        Ok(bytes) => {
            if let Err(e) = kindling_atomic_write::write_atomic(&paths.status, &bytes, false) {
                eprintln!("update: writing {}: {e}", paths.status.display());
            }
        }
        Err(e) => eprintln!("update: status: {e}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// What a power cut may not take once `save_state` returned: the
    /// whole new state under its own name, no temporary file beside it
    /// (the fsyncs themselves are seen in the lab's power-loss scenario,
    /// which reads the ESP of the killed VM).
    #[test]
    fn the_state_is_replaced_whole_and_leaves_nothing_beside_it() {
        let esp = tempfile::tempdir().unwrap();
        let path = esp.path().join(STATE_FILE);
        let mut state = UpdateState {
            floor: Some("1".parse().unwrap()),
            ..UpdateState::default()
        };
        save_state(&path, &state);
        state.floor = Some("2".parse().unwrap());
        state.refused.push("3".parse().unwrap());
        state.channel_seen.insert("prod".into(), 7);
        save_state(&path, &state);
        assert_eq!(load_state(&path), state);
        let names: Vec<String> = std::fs::read_dir(esp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, [STATE_FILE]);
    }

    /// A state file written before `armed_upload` existed still reads,
    /// whole; one with it reads it back.
    #[test]
    fn an_older_state_file_without_the_armed_upload_still_parses() {
        let esp = tempfile::tempdir().unwrap();
        let path = esp.path().join(STATE_FILE);
        std::fs::write(
            &path,
            r#"{"floor":"1","refused":["3"],"last_result":"ok","channel_seen":{"prod":7}}"#,
        )
        .unwrap();
        let state = load_state(&path);
        assert_eq!(state.floor, Some("1".parse().unwrap()));
        assert_eq!(state.channel_seen.get("prod"), Some(&7));
        assert_eq!(state.armed_upload, None);

        let with = UpdateState {
            armed_upload: Some(ArmedUpload {
                upload: "0123456789abcdef".into(),
                version: "2".parse().unwrap(),
            }),
            ..state
        };
        save_state(&path, &with);
        assert_eq!(load_state(&path), with);
    }
}
