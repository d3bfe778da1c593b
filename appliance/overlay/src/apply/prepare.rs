//! Stage `prepare`: what the pipeline trusts before it looks at any overlay:
//! the recorded state (floors, pinned site, rotated keys) and the trusted
//! public keys. Problems become notes; an unreadable state file is kept aside
//! for inspection, never overwritten.

use super::ApplyPaths;
use crate::minisign::{KeyError, PublicKey};
use crate::state::{StateError, StateFile};
use std::path::PathBuf;

/// What `prepare` hands on: the state as loaded (compared at commit to skip
/// an unchanged write) and the keys trusted so far.
pub struct Prepared {
    pub state: StateFile,
    pub trusted: Vec<PublicKey>,
}

/// Why a trust source was ignored (a note, never fatal).
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("{source}; starting without recorded floors (old file {kept})")]
    UnreadableState { source: StateError, kept: String },
    #[error("ignored trust key {}: {source}", path.display())]
    ReadTrustKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ignored trust key {}: {source}", path.display())]
    ParseTrustKey { path: PathBuf, source: KeyError },
    #[error("ignored rotated key in state.json: {0}")]
    RotatedKey(KeyError),
    #[error("no trusted keys in {}: every overlay will be refused", dir.display())]
    NoTrustedKeys { dir: PathBuf },
}

pub fn prepare(paths: &ApplyPaths, now: u64, notes: &mut Vec<String>) -> Prepared {
    let state = load_state(paths, now).unwrap_or_else(|e| {
        notes.push(e.to_string());
        StateFile::default()
    });
    let trusted = load_trust(paths, &state, notes);
    Prepared { state, trusted }
}

fn load_state(paths: &ApplyPaths, now: u64) -> Result<StateFile, PrepareError> {
    StateFile::load(&paths.state_file()).map_err(|source| {
        // Keep the unreadable file for inspection instead of overwriting it.
        let aside = paths.data_dir.join(format!("state.json.unreadable-{now}"));
        let kept = std::fs::rename(paths.state_file(), &aside)
            .map(|()| aside.display().to_string())
            .unwrap_or_else(|r| format!("could not be moved aside: {r}"));
        PrepareError::UnreadableState { source, kept }
    })
}

fn load_trust(paths: &ApplyPaths, state: &StateFile, notes: &mut Vec<String>) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&paths.trust_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for path in files {
        match read_key(path) {
            Ok(k) => keys.push(k),
            Err(e) => notes.push(e.to_string()),
        }
    }
    for b64 in &state.overlays.trusted_keys {
        match PublicKey::from_base64(b64) {
            Ok(k) if !keys.contains(&k) => keys.push(k),
            Ok(_) => {}
            Err(e) => notes.push(PrepareError::RotatedKey(e).to_string()),
        }
    }
    if keys.is_empty() {
        let e = PrepareError::NoTrustedKeys {
            dir: paths.trust_dir.clone(),
        };
        notes.push(e.to_string());
    }
    keys
}

fn read_key(path: PathBuf) -> Result<PublicKey, PrepareError> {
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(source) => return Err(PrepareError::ReadTrustKey { path, source }),
    };
    PublicKey::from_file_text(&text).map_err(|source| PrepareError::ParseTrustKey { path, source })
}
