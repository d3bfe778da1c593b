//! `POST /v1/backups`, `GET /v1/backups` and `GET /v1/backups/ID`: asking
//! for a backup now, listing the kept ones, downloading one (the age-encrypted
//! file as is, `application/octet-stream`). docs/backups.md has the format.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/backups` (HTTP 202): the request is queued for the backup
/// service, which makes the backup under this id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BackupRequested {
    /// The backup's id once it is made (`YYYYMMDDTHHMMSSZ-xxxx`).
    pub id: String,
}

/// One kept backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BackupInfo {
    pub id: String,
    /// Size of the encrypted file.
    pub bytes: u64,
    /// When it was made, RFC 3339 (from its id).
    pub created: String,
}

/// `GET /v1/backups`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BackupList {
    /// Oldest first.
    pub backups: Vec<BackupInfo>,
    /// Requested and not made yet.
    #[serde(default)]
    pub pending: Vec<String>,
    /// The backup service's status file (`status/backup.json`): `state`,
    /// `last` (id, ok, error, bytes, finished_unix), `next_unix`; absent
    /// when the service has not written one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<Value>,
}
