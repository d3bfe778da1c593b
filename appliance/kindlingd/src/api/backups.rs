//! Handlers for `POST /v1/backups` (queue a backup), `GET /v1/backups`
//! (the kept ones, the queued ones, the service's status) and
//! `GET /v1/backups/ID` (the encrypted file, streamed) and
//! `POST /v1/backups/restore` (a decrypted backup staged for the next boot).
//!
//! The API never holds a token that could take a backup: it queues a
//! request for the backup service (kl-stack) and reads the finished,
//! encrypted files (their directory's group). A malformed id is refused
//! before any path is made from it.

use super::{ApiPaths, Reply};
use hyper::body::Bytes;
use kindling_api::backups::{BackupInfo, BackupList, BackupRequested, RestoreStaged};
use kindling_api::ErrorKind;
use kindling_backup::requests::{RequestError, RequestQueue};
use kindling_backup::staged::{self, StageError};
use kindling_backup::{BackupId, BackupStore, StoreError};
use serde_json::Value;
use std::io::Read;

/// How long a staged restore's answer has to reach the operator before
/// init is asked to reboot.
const REBOOT_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

fn store(paths: &ApiPaths) -> BackupStore {
    BackupStore::in_data_dir(&paths.state_dir)
}

fn service_status(paths: &ApiPaths) -> Option<Value> {
    let bytes = std::fs::read(paths.run_dir.join("status/backup.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `20261206T021500Z-…` → `2026-12-06T02:15:00Z`.
fn created_of(id: &BackupId) -> String {
    let s = id.as_str();
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    )
}

fn store_failure(e: &StoreError) -> Reply {
    let kind = match e {
        StoreError::NotFound(_) => ErrorKind::NotFound,
        StoreError::Io { .. } => ErrorKind::Internal,
    };
    Reply::failed(kind, e)
}

/// `GET /v1/backups`.
pub fn list(paths: &ApiPaths) -> Reply {
    let store = store(paths);
    match store.list() {
        Ok(kept) => Reply::body(&BackupList {
            backups: kept
                .iter()
                .map(|b| BackupInfo {
                    id: b.id.to_string(),
                    bytes: b.bytes,
                    created: created_of(&b.id),
                })
                .collect(),
            pending: RequestQueue::new(store.dir())
                .pending()
                .iter()
                .map(ToString::to_string)
                .collect(),
            service: service_status(paths),
            restore_pending: staged::pending(&paths.state_dir)
                .and_then(|p| serde_json::to_value(p).ok()),
            restore_last: staged::last(&paths.state_dir).and_then(|l| serde_json::to_value(l).ok()),
        }),
        Err(e) => store_failure(&e),
    }
}

/// `POST /v1/backups`: 202 with the id the backup will have.
pub fn create(paths: &ApiPaths, operator: &str) -> Reply {
    if service_status(paths).is_none() {
        return Reply::failed(
            ErrorKind::Unavailable,
            "no backup service runs on this appliance (it runs when the site enables Vault, whose recipients backups are encrypted to)",
        );
    }
    let queue = RequestQueue::new(store(paths).dir());
    match queue.submit(kindling_clock::unix_now(), operator) {
        Ok(id) => {
            tracing::info!("backup {id} requested by {operator}");
            Reply::body(&BackupRequested { id: id.to_string() }).with_status(202)
        }
        Err(e @ RequestError::Busy) => Reply::failed(ErrorKind::Conflict, e),
        Err(e @ RequestError::Io { .. }) => Reply::failed(ErrorKind::Internal, e),
    }
}

/// `POST /v1/backups/restore`: checks the decrypted backup in `body` (every
/// part against its manifest, the site), stages it for the next boot and
/// asks init to reboot into it. The API never holds a token that could
/// restore anything itself: the config phase and the stack bootstrap do.
pub fn restore(paths: &ApiPaths, body: &[u8], operator: &str) -> Reply {
    let site = match super::nodes::site(&paths.run_dir) {
        Ok(site) => site,
        Err(reply) => return reply,
    };
    let now = kindling_clock::unix_now();
    let manifest = match staged::stage(&paths.state_dir, body, &site.site.id, operator, now) {
        Ok(m) => m,
        Err(e) => {
            let kind = match &e {
                StageError::Open(_) => ErrorKind::BadRequest,
                StageError::OtherSite { .. } | StageError::VaultStorage(_) => ErrorKind::Refused,
                StageError::AlreadyStaged(_) => ErrorKind::Conflict,
                StageError::Io { .. } => ErrorKind::Internal,
            };
            tracing::warn!("restore refused (by {operator}): {e}");
            return Reply::failed(kind, e);
        }
    };
    tracing::info!("restore of backup {} staged by {operator}", manifest.id);
    // The answer goes out before the reboot: init stops the API on its way
    // down. Without init (a test, a broken socket) the restore waits for
    // whatever boot comes next.
    let rebooting = paths.control_socket().exists();
    if rebooting {
        let (paths, reason) = (
            paths.clone(),
            format!("restore of backup {} requested by {operator}", manifest.id),
        );
        std::thread::spawn(move || {
            std::thread::sleep(REBOOT_DELAY);
            if let Err(e) = super::status::reboot(&paths, &reason) {
                tracing::error!("restore staged, but init did not take the reboot: {e}; it is applied at the next boot");
            }
        });
    }
    let next = if rebooting {
        "the appliance reboots now and restores the backup; then unseal Vault with the backup's ORIGINAL key shares (kindling vault unseal)"
    } else {
        "staged; init is not reachable to reboot: the restore is applied at the next boot; then unseal Vault with the backup's ORIGINAL key shares"
    };
    Reply::body(&RestoreStaged {
        id: manifest.id,
        created: manifest.created,
        rebooting,
        next: next.to_string(),
    })
    .with_status(202)
}

/// `GET /v1/backups/ID`: the encrypted file as is, in 64 KiB chunks.
pub fn download(paths: &ApiPaths, id: &str, operator: &str) -> Reply {
    let id: BackupId = match id.parse() {
        Ok(id) => id,
        Err(e) => return Reply::failed(ErrorKind::NotFound, e),
    };
    let (mut file, len) = match store(paths).open(&id) {
        Ok(f) => f,
        Err(e) => return store_failure(&e),
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return Reply::failed(ErrorKind::Internal, "no runtime to stream the backup on");
    };
    tracing::info!("backup {id} downloaded by {operator}");
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let name = id.to_string();
    runtime.spawn_blocking(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(Bytes::copy_from_slice(&buf[..n])).is_err() {
                        break; // the client went away
                    }
                }
                Err(e) => {
                    // The length was promised: a short body tells the client.
                    tracing::warn!("reading backup {name}: {e}");
                    break;
                }
            }
        }
    });
    Reply::stream("application/octet-stream", rx)
        .with_header("content-length", len.to_string())
        .with_header(
            "content-disposition",
            format!("attachment; filename=\"{id}.kbak\""),
        )
}
