//! The lab's error type. Every variant names the action that failed and
//! carries what an operator needs to fix it (the command, the path, the cause).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "the lab needs root (network namespaces, bridges, taps): re-run as root, e.g. `sudo {0}`"
    )]
    NotRoot(String),

    #[error("required tool `{tool}` not found: {fix}")]
    ToolMissing { tool: String, fix: String },

    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        command: String,
        status: String,
        stderr: String,
    },

    #[error("could not start `{command}`: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("boot artifact {what} not found at {path}: {fix}")]
    ArtifactMissing {
        what: &'static str,
        path: PathBuf,
        fix: String,
    },

    #[error("could not take the QEMU lock {path}: {source}")]
    QemuLock {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },

    #[error("the lab already exists (namespace {0} is present): run `kindling-lab down` first")]
    AlreadyUp(String),

    #[error("the lab is not up (namespace {0} is missing): run `kindling-lab up` first")]
    NotUp(String),

    #[error("invalid lab option {option}: {reason}")]
    InvalidOption {
        option: &'static str,
        reason: String,
    },

    #[error("building the node payload failed: {0}")]
    Payload(String),

    #[error("the appliance's API: {0}")]
    Api(String),
}

impl LabError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LabError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = LabError> = std::result::Result<T, E>;
