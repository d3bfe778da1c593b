//! One backup from start to end: gather the parts, pack and encrypt them
//! into the store under a new id, prune to the retention bound.
//!
//! Owns the order of a backup. Must never leave a partial backup behind
//! (the store removes its temporary file on any failure) nor prune before
//! the new backup is whole.

use crate::archive::{pack, PackError};
use crate::collect::{collect, CollectError, Sources};
use crate::id::BackupId;
use crate::manifest::{Appliance, Manifest, FORMAT};
use crate::store::{BackupStore, Retention, StoreError, StoredBackup};
use std::io::{BufWriter, Write};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Collect(#[from] CollectError),
    #[error(transparent)]
    Pack(#[from] PackError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a backup needs besides its sources.
#[derive(Debug, Clone)]
pub struct Job {
    pub recipients: Vec<age::x25519::Recipient>,
    pub appliance: Appliance,
    pub retention: Retention,
}

/// A backup made.
#[derive(Debug, Clone)]
pub struct Made {
    pub stored: StoredBackup,
    pub manifest: Manifest,
    /// Backups the retention bound removed afterwards.
    pub pruned: Vec<BackupId>,
}

/// Makes one backup of `sources` into `store` with id `id`.
pub async fn make(
    sources: &Sources,
    job: &Job,
    store: &BackupStore,
    id: &BackupId,
    now_unix: u64,
) -> Result<Made, JobError> {
    let (parts, notes) = collect(sources).await?;
    let header = Manifest {
        format: FORMAT,
        id: id.to_string(),
        created: kindling_clock::rfc3339(now_unix),
        created_unix: now_unix,
        appliance: job.appliance.clone(),
        vault_storage: sources.vault_storage.clone(),
        notes,
        entries: Vec::new(),
    };
    let (stored, manifest) = store.write::<Manifest, JobError>(id, |file| {
        let (mut out, manifest) = pack(BufWriter::new(file), &job.recipients, header, &parts)?;
        out.flush().map_err(PackError::Write)?;
        let file = out
            .into_inner()
            .map_err(|e| PackError::Write(e.into_error()))?;
        Ok((file, manifest))
    })?;
    let pruned = store.prune(job.retention)?;
    Ok(Made {
        stored,
        manifest,
        pruned,
    })
}
