//! The bootstrap's status file (`/run/kindling/status/stack.json`): each
//! step's state, duration and error, rewritten atomically on every change so
//! the status API and `kindling stack status` always read a whole file.
//!
//! Owns the file's shape. Must never put a secret in it: details are written
//! by the bootstrap from fixed phrases and error messages that carry no
//! token or key.

use kindling_atomic_write::write_atomic_with_mode;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The file's shape is the `GET /v1/stack` body of the API contract, so the
/// file and the API answer cannot drift apart.
pub use kindling_api::stack::{OverallState, StackStatus, StepState, StepStatus};

#[derive(Debug, thiserror::Error)]
#[error("writing the stack status file {path}: {source}")]
pub struct StatusWriteError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Tracks the steps of one bootstrap run and mirrors them to the file.
/// Steps may run at the same time: each keeps its own start.
pub struct StatusBoard {
    path: PathBuf,
    status: StackStatus,
    started: Instant,
    step_started: HashMap<String, Instant>,
}

impl StatusBoard {
    pub fn new(path: &Path, step_names: &[&str]) -> Self {
        let steps = step_names
            .iter()
            .map(|n| StepStatus {
                name: (*n).to_string(),
                state: StepState::Pending,
                duration_ms: 0,
                detail: String::new(),
                error: None,
            })
            .collect();
        Self {
            path: path.to_path_buf(),
            status: StackStatus {
                state: OverallState::Running,
                steps,
                elapsed_ms: 0,
                updated_unix: kindling_clock::unix_now(),
                init_secrets: None,
            },
            started: Instant::now(),
            step_started: HashMap::new(),
        }
    }

    pub fn status(&self) -> &StackStatus {
        &self.status
    }

    fn step_mut(&mut self, name: &str) -> Option<&mut StepStatus> {
        self.status.steps.iter_mut().find(|s| s.name == name)
    }

    /// Writes the file; a failure to write status must not stop the bootstrap
    /// (it is reported on stderr by the caller), hence the separate result.
    pub fn flush(&mut self) -> Result<(), StatusWriteError> {
        self.status.elapsed_ms = self.started.elapsed().as_millis() as u64;
        self.status.updated_unix = kindling_clock::unix_now();
        let body = serde_json::to_vec_pretty(&self.status).unwrap_or_default();
        write_atomic_with_mode(&self.path, &body, 0o644).map_err(|source| StatusWriteError {
            path: self.path.clone(),
            source,
        })
    }

    pub fn begin(&mut self, name: &str) {
        self.step_started.insert(name.to_string(), Instant::now());
        if let Some(s) = self.step_mut(name) {
            s.state = StepState::Running;
            s.error = None;
        }
    }

    pub fn finish(
        &mut self,
        name: &str,
        state: StepState,
        detail: impl Into<String>,
        error: Option<String>,
    ) {
        let ms = self
            .step_started
            .remove(name)
            .map(|t| t.elapsed().as_millis() as u64)
            .unwrap_or(0);
        if let Some(s) = self.step_mut(name) {
            s.state = state;
            s.duration_ms = ms;
            s.detail = detail.into();
            s.error = error;
        }
    }

    /// The step's state now (`None` for a name not on the board).
    pub fn state_of(&self, name: &str) -> Option<StepState> {
        self.status
            .steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.state)
    }

    /// The step's duration as recorded when it finished (0 before).
    pub fn duration_ms(&self, name: &str) -> u64 {
        self.status
            .steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.duration_ms)
            .unwrap_or(0)
    }

    /// Updates the detail of a step still running or waiting (e.g. unseal progress).
    pub fn note(&mut self, name: &str, state: StepState, detail: impl Into<String>) {
        if let Some(s) = self.step_mut(name) {
            s.state = state;
            s.detail = detail.into();
        }
    }

    pub fn set_overall(&mut self, state: OverallState) {
        self.status.state = state;
    }

    pub fn set_init_secrets(&mut self, where_: &str) {
        self.status.init_secrets = Some(where_.to_string());
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StatusReadError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a stack status file: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl StatusReadError {
    /// The file does not exist: the bootstrap has not written it yet.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads a status file written by [`StatusBoard`].
pub fn read(path: &Path) -> Result<StackStatus, StatusReadError> {
    let bytes = std::fs::read(path).map_err(|source| StatusReadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| StatusReadError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Steps that overlap each time their own run, not the latest start's.
    #[test]
    fn overlapping_steps_keep_their_own_durations() {
        let pause = || std::thread::sleep(Duration::from_millis(30));
        let mut board = StatusBoard::new(Path::new("/nonexistent/stack.json"), &["a", "b"]);
        board.begin("a");
        pause();
        board.begin("b");
        pause();
        board.finish("a", StepState::Done, "", None);
        assert_eq!(board.state_of("b"), Some(StepState::Running));
        pause();
        board.finish("b", StepState::AlreadyDone, "", None);
        assert!(board.duration_ms("a") >= 60, "{}", board.duration_ms("a"));
        assert!(board.duration_ms("b") >= 60, "{}", board.duration_ms("b"));
        assert_eq!(board.state_of("a"), Some(StepState::Done));
    }
}
