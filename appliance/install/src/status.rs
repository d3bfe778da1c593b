//! `/run/kindling/status/install.json`: what the install was asked, how far
//! it got and how it ended, for the console's reader and `GET /v1/status`.
//!
//! Owns the shape only; `kindlingd install` writes it after every step.

use serde::Serialize;

/// Where the install stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallState {
    /// Checking the disk and the boot medium.
    Checking,
    /// Writing the disk.
    Writing,
    /// Written and read back; init was asked to reboot into it.
    Installed,
    /// This boot already runs with its state on that disk: nothing to do.
    AlreadyInstalled,
    /// The disk was not written (see `error`).
    Refused,
    /// Writing failed part-way (see `error`): the disk is not bootable.
    Failed,
}

/// The status file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InstallStatus {
    pub state: InstallState,
    /// The disk as asked (`/dev/disk/by-id/…`).
    pub disk: String,
    /// `command_line` or `site`.
    pub source: crate::target::Source,
    pub wipe: bool,
    /// The kernel's name of the disk, once resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The image version written as slot A.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The last step begun, one line.
    pub step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl InstallStatus {
    pub fn new(request: &crate::target::Request) -> InstallStatus {
        InstallStatus {
            state: InstallState::Checking,
            disk: request.disk.clone(),
            source: request.source,
            wipe: request.wipe,
            device: None,
            version: None,
            step: "checking the disk".to_string(),
            error: None,
        }
    }
}
