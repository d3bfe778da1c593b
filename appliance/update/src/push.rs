//! Applying a pushed bundle (an [`Upload`] from the spool): verify it in
//! full without writing anything, only then make room in the slots, stage
//! its image and arm it with systemd-boot's try counter. The agent then
//! asks init to reboot; after the reboot `agent::run_boot` gates and
//! blesses it.
//!
//! Owns the order of those steps and the `push` part of the status file,
//! and, at the agent's start, the removal of an upload this very image was
//! armed from ([`drop_armed_leftover`]): a power cut right after arming can
//! come before the agent removed it from the spool.
//! A refused bundle (signature, key, expiry, version, floor, hash, a
//! version that failed here before) leaves the slots exactly as they
//! were. Never reboots itself and never removes the running entry.

use crate::bundle::{self, StageError, StageRequest};
use crate::report::{
    load_state, publish, save_state, AgentPaths, ArmedUpload, Mode, UpdateStatus, STATE_FILE,
};
pub use crate::report::{PushState, PushStatus};
use crate::slots::{selected_entry, EntryName, SlotError, Slots, INCOMING};
use crate::spool::{self, Upload};
use crate::version::Version;
use kindling_overlay::minisign::PublicKey;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("this boot cannot take an update: the running slot is {mode:?} ({detail})")]
    NotBlessed { mode: Mode, detail: String },
    #[error("no trusted update key in {0}")]
    NoTrustedKeys(PathBuf),
    #[error("{path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Bundle(#[from] StageError),
    #[error("the slots: {0}")]
    Slots(#[from] SlotError),
}

/// The keys an update must be signed with: the image's `*.pub` in
/// `trust_dir` (`/etc/kindling/trust`), the same as its overlays'.
pub fn trusted_keys(trust_dir: &Path) -> Vec<PublicKey> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(trust_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|text| PublicKey::from_file_text(&text).ok())
        .collect()
}

/// Takes the upload: checks, stages, arms. Writes the status before and
/// after; returns the status (its `push.state` says whether to reboot).
/// The spool file is the caller's to remove.
pub fn apply(
    paths: &AgentPaths,
    mut status: UpdateStatus,
    upload: &Upload,
    trusted: &[PublicKey],
    trust_dir: &Path,
    now: u64,
) -> UpdateStatus {
    status.push = Some(PushStatus {
        upload: upload.id.clone(),
        state: PushState::Staging,
        detail: format!("verifying {} bytes", upload.bytes),
        version: None,
        armed: None,
    });
    status = publish(paths, status);
    let outcome = stage_and_arm(
        paths,
        &status,
        upload,
        trusted,
        trust_dir,
        now,
        Some(&upload.id),
    );
    let push = status.push.get_or_insert_with(|| PushStatus {
        upload: upload.id.clone(),
        state: PushState::Staging,
        detail: String::new(),
        version: None,
        armed: None,
    });
    match outcome {
        Ok((version, armed)) => {
            push.state = PushState::Armed;
            push.detail = format!("{version} armed as {armed}; rebooting into it");
            status.state.last_result = Some(format!(
                "update {version} pushed and armed as {armed} (upload {})",
                upload.id
            ));
            // What stage_and_arm recorded before arming: kept, as this
            // save replaces the state file.
            status.state.armed_upload = Some(ArmedUpload {
                upload: upload.id.clone(),
                version: version.clone(),
            });
            push.version = Some(version);
            push.armed = Some(armed);
        }
        Err(e) => {
            push.state = PushState::Refused;
            push.detail = e.to_string();
            status.state.last_result = Some(format!("pushed bundle {} refused: {e}", upload.id));
        }
    }
    save_state(&paths.esp.join(STATE_FILE), &status.state);
    publish(paths, status)
}

/// Verifies, stages and arms `upload`. `spooled`: the id of the spool
/// upload it is, recorded on the ESP (durably) before the entry is armed,
/// so the armed image knows its own bundle if a power cut leaves it in the
/// spool (a channel's download is never taken from the spool: `None`).
pub(crate) fn stage_and_arm(
    paths: &AgentPaths,
    status: &UpdateStatus,
    upload: &Upload,
    trusted: &[PublicKey],
    trust_dir: &Path,
    now: u64,
    spooled: Option<&str>,
) -> Result<(Version, String), PushError> {
    let (Mode::Blessed, Some(running_entry), Some(running)) =
        (status.mode, &status.entry, &status.version)
    else {
        return Err(PushError::NotBlessed {
            mode: status.mode,
            detail: status.detail.clone(),
        });
    };
    if trusted.is_empty() {
        return Err(PushError::NoTrustedKeys(trust_dir.to_path_buf()));
    }
    let slots = Slots::new(paths.esp.join("EFI/Linux"));
    let floor = status
        .state
        .floor
        .clone()
        .unwrap_or_else(|| running.clone());
    let request = StageRequest {
        trusted,
        running,
        floor: &floor,
        refused: &status.state.refused,
        now,
        slot_dir: slots.dir(),
        file_name: INCOMING,
    };
    // The spool directory is kl-api's to write into: a link planted there
    // would only be read, and the signature still decides. A link is not
    // followed anyway (`spool::pending` lists regular files only).
    let open = || {
        std::fs::File::open(&upload.path)
            .map(std::io::BufReader::new)
            .map_err(|source| PushError::Open {
                path: upload.path.clone(),
                source,
            })
    };
    // First the whole check with nothing written, so a refusal leaves the
    // slots as they were; then room is made and the image written (and
    // checked again as it streams: the spool is not the agent's alone).
    // Each step says so on the console: what a power cut at that moment
    // leaves on the ESP is then known from the log (docs/updates.md).
    let manifest = bundle::verify(open()?, &request)?;
    slots.prepare(running_entry)?;
    println!(
        "update: {} verified; writing its image to {}",
        manifest.version,
        slots.dir().join(INCOMING).display()
    );
    let staged = bundle::stage(open()?, &request)?;
    println!(
        "update: {} image written and synced ({} bytes); arming it",
        staged.manifest.version, staged.manifest.image_size
    );
    if let Some(id) = spooled {
        // Before the entry exists: recorded after it, a cut in between
        // would leave the armed image without the record. Recorded with
        // no entry armed (a cut here, or arming fails), it names a version
        // that is not running at the next start, so the upload is taken
        // again as today; a failed arm's own state save drops it.
        let mut state = status.state.clone();
        state.armed_upload = Some(ArmedUpload {
            upload: id.to_string(),
            version: staged.manifest.version.clone(),
        });
        save_state(&paths.esp.join(STATE_FILE), &state);
    }
    let armed = slots.arm(&staged.manifest.version, running_entry)?;
    Ok((manifest.version, armed))
}

/// At the agent's start, before the boot gate and before the spool is
/// looked at: the upload this running image was armed from, if a power cut
/// after `Armed` came before it was removed from the spool. Removed (and
/// the removal synced), with one line on the console, instead of being
/// verified again and refused as not newer than itself, while the API
/// answered every new push 409. Anything else in the spool (another
/// upload, or this one when the running image is not the version it was
/// armed as: a cut before arming, or a fallback) stays for the agent as
/// before. The record is dropped either way: it serves this start only.
/// Returns the upload removed.
pub fn drop_armed_leftover(paths: &AgentPaths, spool_dir: &Path) -> Option<Upload> {
    let state_path = paths.esp.join(STATE_FILE);
    let mut state = load_state(&state_path);
    let armed = state.armed_upload.take()?;
    let running = std::fs::read(&paths.loader_entry)
        .ok()
        .and_then(|var| selected_entry(&var))
        .and_then(|entry| EntryName::parse(&entry))
        .map(|entry| entry.version);
    let leftover = spool::pending(spool_dir)
        .filter(|u| u.id == armed.upload && running.as_ref() == Some(&armed.version));
    if let Some(upload) = &leftover {
        if let Err(e) = spool::discard(upload) {
            // Kept, record and all: the agent takes it as before.
            eprintln!(
                "update: removing upload {} left in the spool: {e}",
                upload.id
            );
            return None;
        }
        println!(
            "update: upload {} left in the spool is the bundle {} was armed from before the reboot; removed, not taken again",
            upload.id, armed.version
        );
    }
    save_state(&state_path, &state);
    leftover
}
