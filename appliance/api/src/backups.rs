//! `POST /v1/backups`, `GET /v1/backups` and `GET /v1/backups/ID`: asking
//! for a backup now, listing the kept ones, downloading one (the age-encrypted
//! file as is, `application/octet-stream`); `POST /v1/backups/restore`:
//! handing the appliance a backup to restore (the archive the operator's
//! machine decrypted, `application/octet-stream`). docs/backups.md has the
//! format and the restore.

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
    /// A restore staged for the next boot (`backup_id`, `operator`,
    /// `staged_unix`), if one waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_pending: Option<Value>,
    /// What the last restore's apply did (`ok`, `backup_id`, `operator`,
    /// `applied_unix`, `files`, `replaced`, `error`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_last: Option<Value>,
}

/// `POST /v1/backups/restore` (HTTP 202): the backup was checked and
/// staged; the appliance applies it at its next boot, which it starts now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RestoreStaged {
    /// The backup's id.
    pub id: String,
    /// When the backup was made, RFC 3339.
    pub created: String,
    /// Whether init took the reboot request; when false the restore waits
    /// for the next boot, whenever that is.
    pub rebooting: bool,
    /// What happens next, for the operator.
    pub next: String,
}
