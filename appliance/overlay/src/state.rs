//! The overlay part of `/var/lib/kindling/state.json`: version floors, the
//! accepted overlays, the pinned site id and keys added by rotation. Other
//! top-level keys (slot status written by the update agent) are preserved
//! untouched. Writes are atomic (temp file, fsync, rename, fsync dir) so a power
//! cut leaves the old or the new state, never a mix.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The overlay section's types are the ones `GET /v1/overlays` reports.
pub use kindling_api::overlays::{AcceptedOverlay, OverlayState};

/// The whole state file: our section plus whatever else is there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    #[serde(default)]
    pub overlays: OverlayState,
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid state JSON: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl StateFile {
    /// Loads the state; a missing file is an empty state.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
                path: path.display().to_string(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(StateError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| StateError::Write {
            path: path.display().to_string(),
            source: std::io::Error::other(e),
        })?;
        bytes.push(b'\n');
        kindling_atomic_write::write_atomic(path, &bytes, true).map_err(|source| {
            StateError::Write {
                path: path.display().to_string(),
                source,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn preserves_other_keys() {
        let tmp = tempfile::Builder::new().prefix("ko-").tempdir().unwrap();
        let path = tmp.path().join("state.json");
        std::fs::write(
            &path,
            r#"{"slots":{"active":"a"},"overlays":{"floors":{"lab":3}}}"#,
        )
        .unwrap();
        let mut s = StateFile::load(&path).unwrap();
        assert_eq!(s.overlays.floors["lab"], 3);
        s.overlays.floors.insert("lab".into(), 4);
        s.save(&path).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["slots"]["active"], "a");
        assert_eq!(v["overlays"]["floors"]["lab"], 4);
    }
}
