//! Applying a pushed bundle (an [`Upload`] from the spool): verify it in
//! full without writing anything, only then make room in the slots, stage
//! its image and arm it with systemd-boot's try counter. The agent then
//! asks init to reboot; after the reboot `agent::run_boot` gates and
//! blesses it.
//!
//! Owns the order of those steps and the `push` part of the status file.
//! A refused bundle (signature, key, expiry, version, floor, hash, a
//! version that failed here before) leaves the slots exactly as they
//! were. Never reboots itself and never removes the running entry.

use crate::bundle::{self, StageError, StageRequest};
use crate::report::{publish, save_state, AgentPaths, Mode, UpdateStatus, STATE_FILE};
pub use crate::report::{PushState, PushStatus};
use crate::slots::{SlotError, Slots, INCOMING};
use crate::spool::Upload;
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
    let outcome = stage_and_arm(paths, &status, upload, trusted, trust_dir, now);
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

pub(crate) fn stage_and_arm(
    paths: &AgentPaths,
    status: &UpdateStatus,
    upload: &Upload,
    trusted: &[PublicKey],
    trust_dir: &Path,
    now: u64,
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
    let armed = slots.arm(&staged.manifest.version, running_entry)?;
    Ok((manifest.version, armed))
}
