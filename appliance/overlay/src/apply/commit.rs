//! Stage `commit`: records what was chosen and publishes the result. On the
//! data partition: floors, accepted overlays, the pinned site and rotated
//! keys in state.json (only when changed) and a copy of each accepted overlay
//! that came from elsewhere. In /run: site.json, config-effective.json and the
//! report. A failed write is a note in the report, never a refusal: the
//! overlays are valid whether or not the disk took the record.
//!
//! On an image on trial (an update not blessed yet) the overlays that came
//! with the image itself (boot media) are used but not recorded: recording
//! them would raise the floor, and the older image the firmware falls back
//! to after a failed trial would refuse its own overlay as a rollback. They
//! are recorded by the first run after blessing.

use super::verify::VerifiedCandidate;
use super::{AcceptedEntry, ApplyOutcome, ApplyPaths, Chosen, Refused, Report, Source};
use crate::manifest::LayerKind;
use crate::state::{AcceptedOverlay, StateError, StateFile};
use kindling_atomic_write::write_atomic;
use kindling_clock::rfc3339;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("could not persist {name} v{version} on the data partition: {source}")]
    PersistCopy {
        name: String,
        version: u64,
        source: std::io::Error,
    },
    #[error(transparent)]
    SaveState(#[from] StateError),
    #[error("could not write {}: {source}", path.display())]
    WriteRuntime {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// When the commit runs: the time, and whether the image is on trial.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: u64,
    pub image_on_trial: bool,
}

pub fn commit(
    paths: &ApplyPaths,
    mut state: StateFile,
    site_id: Option<String>,
    chosen: Chosen,
    refused: Vec<Refused>,
    clock: Clock,
    mut report: Report,
) -> ApplyOutcome {
    let state_before = state.clone();
    let mut recorded = 0;
    for vc in &chosen.accepted {
        report.accepted.push(accepted_entry(vc));
        if clock.image_on_trial && vc.candidate.source == Source::BootMedia {
            let m = &vc.verified.manifest;
            report.notes.push(format!(
                "{} v{} from {} used for this boot only: the image is on trial; recorded once it is blessed",
                m.name, m.version, vc.candidate.file
            ));
            continue;
        }
        recorded += 1;
        if let Err(e) = record(paths, &mut state, vc, clock.now) {
            report.notes.push(e.to_string());
        }
    }
    if recorded > 0 {
        state.overlays.site_id.clone_from(&site_id);
    }
    if state != state_before {
        if let Err(e) = state.save(&paths.state_file()) {
            report.notes.push(CommitError::from(e).to_string());
        }
    }
    report.site_id = site_id;
    report.ok = chosen.effective.is_some();
    report
        .refused
        .extend(refused.iter().map(|r| r.entry.clone()));
    let pushed = match report.accepted.iter().find(|a| a.source == Source::Pushed) {
        Some(a) => Some(Ok(a.clone())),
        None => refused
            .into_iter()
            .find(|r| r.entry.source == Source::Pushed)
            .map(Err),
    };
    if let Some(eff) = &chosen.effective {
        let runtime = [
            write_json(&paths.site_json(), &eff.config),
            write_json(&paths.effective_json(), eff),
        ];
        report.notes.extend(
            runtime
                .into_iter()
                .filter_map(Result::err)
                .map(|e| e.to_string()),
        );
    }
    if let Err(e) = write_json(&paths.report_json(), &report) {
        report.notes.push(e.to_string());
    }
    ApplyOutcome {
        effective: chosen.effective,
        report,
        pushed,
    }
}

fn accepted_entry(vc: &VerifiedCandidate) -> AcceptedEntry {
    let m = &vc.verified.manifest;
    AcceptedEntry {
        name: m.name.clone(),
        version: m.version,
        layer: m.layer,
        site_id: m.site_id.clone(),
        source: vc.candidate.source,
        file: vc.candidate.file.clone(),
        key_id: vc.verified.key_id.to_string(),
        expires: rfc3339(m.expires),
    }
}

/// Floor, accepted record, site order and rotated keys in `state`; a copy on
/// the data partition unless it came from there. The state is updated even
/// when the copy fails (the error says so).
fn record(
    paths: &ApplyPaths,
    state: &mut StateFile,
    vc: &VerifiedCandidate,
    now: u64,
) -> Result<(), CommitError> {
    let (c, v) = (&vc.candidate, &vc.verified);
    let m = &v.manifest;
    let copied = if c.source == Source::DataPartition {
        Ok(())
    } else {
        persist_copy(
            paths,
            &m.name,
            &c.kovl,
            c.minisig.as_deref().unwrap_or_default(),
        )
        .map_err(|source| CommitError::PersistCopy {
            name: m.name.clone(),
            version: m.version,
            source,
        })
    };
    let floor = state.overlays.floors.entry(m.name.clone()).or_insert(0);
    *floor = (*floor).max(m.version);
    let accepted_at = state
        .overlays
        .accepted
        .get(&m.name)
        .filter(|p| p.version == m.version)
        .map(|p| p.accepted_at)
        .unwrap_or(now);
    state.overlays.accepted.insert(
        m.name.clone(),
        AcceptedOverlay {
            version: m.version,
            layer: m.layer,
            payload_sha256: m.payload_sha256.clone(),
            key_id: v.key_id.to_string(),
            expires: m.expires,
            accepted_at,
        },
    );
    if m.layer == LayerKind::Site && !state.overlays.order.contains(&m.name) {
        state.overlays.order.push(m.name.clone());
    }
    for k in &m.trusted_keys {
        if !state.overlays.trusted_keys.contains(k) {
            state.overlays.trusted_keys.push(k.clone());
        }
    }
    copied
}

fn persist_copy(paths: &ApplyPaths, name: &str, kovl: &[u8], minisig: &str) -> std::io::Result<()> {
    let dir = paths.persisted_dir();
    std::fs::create_dir_all(&dir)?;
    let target = dir.join(format!("{name}.kovl"));
    let sig = dir.join(format!("{name}.kovl.minisig"));
    if std::fs::read(&target).is_ok_and(|old| old == kovl)
        && std::fs::read_to_string(&sig).is_ok_and(|s| s == minisig)
    {
        return Ok(());
    }
    write_atomic(&target, kovl, true)?;
    write_atomic(&sig, minisig.as_bytes(), true)
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), CommitError> {
    let failed = |source| CommitError::WriteRuntime {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|e| failed(std::io::Error::other(e)))?;
    bytes.push(b'\n');
    // /run is a tmpfs: no fsync needed, only atomic replacement.
    write_atomic(path, &bytes, false).map_err(failed)
}
