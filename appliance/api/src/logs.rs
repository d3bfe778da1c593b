//! `GET /v1/logs` and `GET /v1/logs/SERVICE`: the output every supervised
//! child wrote, as init keeps it (`NAME.log` rotated to `NAME.log.1` …).
//!
//! A line is carried as stored: `<RFC 3339 UTC time> [<seconds since boot>]
//! <text>`. With `follow=1` the answer is not JSON but `text/plain` lines in
//! that same layout, streamed as they are written.

use serde::{Deserialize, Serialize};

/// Where the logs are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogStorage {
    /// On the data partition: kept across reboots.
    Data,
    /// In RAM: lost at reboot (no data partition, or writing to it failed).
    Ram,
}

/// `GET /v1/logs`: every service's kept output and where it lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogList {
    pub storage: LogStorage,
    /// Why the logs are in RAM, when they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Largest size of one file.
    pub file_bytes: u64,
    /// Files kept per service, the current one included.
    pub files_per_service: u32,
    /// One entry per service of the service table, by name.
    pub services: Vec<ServiceLog>,
}

/// One service's kept output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ServiceLog {
    pub service: String,
    /// Total size of its files.
    pub bytes: u64,
    /// Number of its files (0: it has written nothing yet).
    pub files: u32,
}

/// `GET /v1/logs/SERVICE?since=&lines=`: the newest lines, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LogLines {
    pub service: String,
    /// Lines as stored, oldest first, at most `lines` of them.
    pub lines: Vec<String>,
    /// More lines matched than were returned.
    pub truncated: bool,
}
