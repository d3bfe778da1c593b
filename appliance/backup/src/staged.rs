//! A restore handed to the appliance itself (`kindling backup restore FILE
//! --identity KEY`, `POST /v1/backups/restore`). The operator's machine
//! decrypts the backup (the appliance never holds an operator identity)
//! and sends the checked archive over the API's TLS; the API checks it
//! again ([`stage`]) and leaves it in `backups/restore/`, then init
//! reboots. At the next boot the config phase (root, before any service
//! starts) applies it ([`apply`]):
//!
//! 1. Consul's and Vault's data directories (and Nomad's, whose ACL token
//!    the restored Vault does not know) are moved aside, whole, into
//!    `backups/restore/replaced-UNIX/`: nothing of the fresh cluster is
//!    deleted.
//! 2. The data partition's files (leases, inventory, overlays and their
//!    floors, `vault-init.age`, the bootstrap's Vault token) are written
//!    from the backup.
//! 3. The two snapshots go to the bootstrap's restore directory
//!    (`stack/restore/`), where the stack bootstrap takes them: it
//!    initialises the empty Vault with a throwaway key, installs the
//!    backed-up Vault over it (which then wants the ORIGINAL shares), and
//!    restores Consul's snapshot into the empty Consul once Vault (its
//!    Connect CA) is unsealed.
//!
//! The staged archive holds what the data partition holds anyway once
//! restored (Consul's data is not encrypted at rest; Vault's snapshot is
//! sealed by its barrier key): it is on disk, 0600 and root's to read,
//! from the API's write to the next boot, then deleted.
//!
//! Owns the staging directory and the order of the apply. Must never apply
//! an archive that does not check against its manifest, nor delete a data
//! directory.

use crate::archive::{open_plain, OpenError, Opened};
use crate::manifest::{self, Manifest, CONSUL_SNAPSHOT, VAULT_SNAPSHOT};
use crate::store::BACKUPS_DIR;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The staging directory, below the backups directory.
pub const RESTORE_DIR: &str = "restore";
/// The checked archive waiting for the next boot.
pub const STAGED_FILE: &str = "staged.tar.zst";
/// Who staged it, when, and which backup it is.
pub const STAGED_RECORD: &str = "staged.json";
/// What the last apply did (or why it refused).
pub const LAST_RECORD: &str = "last.json";
/// The largest archive the API takes for a restore (its body limit).
pub const MAX_STAGED: u64 = 64 * 1024 * 1024;

/// Where an apply moves the fresh cluster's data directories (root, 0700).
pub const REPLACED_DIR: &str = "restore-replaced";

/// The staging directory of the data partition `data_dir`.
pub fn restore_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(BACKUPS_DIR).join(RESTORE_DIR)
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("the backup is of site {backup:?}; this appliance runs site {running:?}: restore it onto an appliance of its own site")]
    OtherSite { backup: String, running: String },
    #[error("the backup's Vault kept its data in Consul (vault_storage = {0:?}): restore it with `kindling backup restore --consul … --vault …` against the services directly")]
    VaultStorage(String),
    #[error("a restore of backup {0} is already staged for the next boot")]
    AlreadyStaged(String),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The record next to a staged archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedRecord {
    pub backup_id: String,
    pub backup_created: String,
    pub operator: String,
    pub staged_unix: u64,
}

/// Checks `plain` (a decrypted backup archive) as [`crate::open`] checks a
/// backup, refuses one of another site or one this path cannot restore,
/// and writes it for the next boot. Returns its manifest.
pub fn stage(
    data_dir: &Path,
    plain: &[u8],
    running_site: &str,
    operator: &str,
    now_unix: u64,
) -> Result<Manifest, StageError> {
    let opened = open_plain(plain)?;
    let m = &opened.manifest;
    if m.appliance.site_id != running_site {
        return Err(StageError::OtherSite {
            backup: m.appliance.site_id.clone(),
            running: running_site.to_string(),
        });
    }
    if m.vault_storage == "consul" {
        return Err(StageError::VaultStorage(m.vault_storage.clone()));
    }
    let dir = restore_dir(data_dir);
    if let Some(staged) = read_record::<StagedRecord>(&dir.join(STAGED_RECORD)) {
        if dir.join(STAGED_FILE).exists() {
            return Err(StageError::AlreadyStaged(staged.backup_id));
        }
    }
    let io = |action, path: &Path| {
        let path = path.to_path_buf();
        move |source| StageError::Io {
            action,
            path,
            source,
        }
    };
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let file = dir.join(STAGED_FILE);
    kindling_atomic_write::write_atomic_with_mode(&file, plain, 0o600)
        .map_err(io("writing", &file))?;
    let record = StagedRecord {
        backup_id: m.id.clone(),
        backup_created: m.created.clone(),
        operator: operator.to_string(),
        staged_unix: now_unix,
    };
    let path = dir.join(STAGED_RECORD);
    let body = serde_json::to_vec_pretty(&record).unwrap_or_default();
    kindling_atomic_write::write_atomic_with_mode(&path, &body, 0o600)
        .map_err(io("writing", &path))?;
    Ok(opened.manifest)
}

/// Where the apply puts things, beside the data partition's own files.
#[derive(Debug, Clone)]
pub struct ApplyPaths {
    pub data_dir: PathBuf,
    /// Consul's, Vault's and Nomad's data directories: moved aside.
    pub service_data: Vec<PathBuf>,
    /// Where the bootstrap looks for Vault's and Consul's snapshots
    /// (`stack/restore/`).
    pub vault_snapshot: PathBuf,
    pub consul_snapshot: PathBuf,
    /// Keys of the fresh Vault that must not outlive it (the lab's local
    /// unseal keys): removed, since they do not open the restored one.
    pub stale_files: Vec<PathBuf>,
}

impl ApplyPaths {
    /// The appliance's paths for `layout`.
    pub fn for_stack(layout: &kindling_stack::StackLayout) -> Self {
        Self {
            data_dir: layout.data_dir.clone(),
            service_data: vec![
                layout.consul_data(),
                layout.vault_data(),
                layout.nomad_data(),
            ],
            vault_snapshot: layout.restore_vault_snapshot(),
            consul_snapshot: layout.restore_consul_snapshot(),
            stale_files: vec![
                kindling_stack::secrets::SecretStore::new(&layout.state_dir()).local_unseal_file(),
            ],
        }
    }
}

/// What the last apply did: `backups/restore/last.json`, shown by
/// `GET /v1/backups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRestore {
    pub ok: bool,
    pub backup_id: String,
    pub operator: String,
    pub applied_unix: u64,
    /// Where the fresh cluster's data directories were moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<String>,
    #[serde(default)]
    pub files: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What was left as this appliance had it, and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the staged restore no longer checks ({0}); it was set aside as {STAGED_FILE}.refused, nothing was changed")]
    Open(OpenError),
    #[error("moving {from} aside to {to}: {source}")]
    MoveAside {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Files(#[from] crate::restore::RestoreError),
    #[error(transparent)]
    BadName(#[from] manifest::BadName),
}

/// Applies the staged restore, if one waits: `None` when none does. The
/// result is also written to `backups/restore/last.json`. A refused
/// archive changes nothing; a failure after the data directories were
/// moved leaves them where the record says.
pub fn apply(paths: &ApplyPaths, now_unix: u64) -> Option<Result<LastRestore, ApplyError>> {
    let dir = restore_dir(&paths.data_dir);
    let file = dir.join(STAGED_FILE);
    let bytes = match std::fs::read(&file) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(source) => {
            return Some(Err(ApplyError::Io {
                action: "reading",
                path: file,
                source,
            }))
        }
    };
    let staged = read_record::<StagedRecord>(&dir.join(STAGED_RECORD));
    let mut last = LastRestore {
        ok: false,
        backup_id: staged
            .as_ref()
            .map(|s| s.backup_id.clone())
            .unwrap_or_default(),
        operator: staged.map(|s| s.operator).unwrap_or_default(),
        applied_unix: now_unix,
        replaced: None,
        files: 0,
        error: None,
        notes: Vec::new(),
    };
    let result = match open_plain(&bytes[..]) {
        Err(e) => {
            let _ = std::fs::rename(&file, dir.join(format!("{STAGED_FILE}.refused")));
            Err(ApplyError::Open(e))
        }
        Ok(opened) => {
            last.backup_id = opened.manifest.id.clone();
            apply_opened(paths, &opened, now_unix, &mut last)
        }
    };
    match &result {
        Ok(()) => {
            last.ok = true;
            let _ = std::fs::remove_file(&file);
            let _ = std::fs::remove_file(dir.join(STAGED_RECORD));
        }
        Err(e) => last.error = Some(e.to_string()),
    }
    let body = serde_json::to_vec_pretty(&last).unwrap_or_default();
    let _ = kindling_atomic_write::write_atomic_with_mode(&dir.join(LAST_RECORD), &body, 0o640);
    Some(result.map(|()| last))
}

fn apply_opened(
    paths: &ApplyPaths,
    opened: &Opened,
    now_unix: u64,
    last: &mut LastRestore,
) -> Result<(), ApplyError> {
    // Names first: a bad one must change nothing.
    for part in &opened.parts {
        manifest::data_path(&part.name)?;
    }
    let replaced = paths.data_dir.join(REPLACED_DIR);
    let aside = replaced.join(now_unix.to_string());
    for from in &paths.service_data {
        if !from.exists() {
            continue;
        }
        let name = from.file_name().map(PathBuf::from).unwrap_or_default();
        let to = aside.join(name);
        create_private_dir(&replaced)?;
        create_private_dir(&aside)?;
        std::fs::rename(from, &to).map_err(|source| ApplyError::MoveAside {
            from: from.clone(),
            to: to.clone(),
            source,
        })?;
        last.replaced = Some(aside.display().to_string());
    }
    for stale in &paths.stale_files {
        match std::fs::remove_file(stale) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ApplyError::Io {
                    action: "removing",
                    path: stale.clone(),
                    source,
                })
            }
        }
    }
    for dir in crate::ca_keys::unpaired(opened) {
        last.notes.push(format!(
            "the backup holds {dir}'s CA certificate but not its key: this appliance's own CA in {dir} is kept (nodes and CLIs that pinned the backed-up CA must trust this one)"
        ));
    }
    last.files = crate::restore::files(opened, &paths.data_dir)?.len();
    for (name, path) in [
        (VAULT_SNAPSHOT, &paths.vault_snapshot),
        (CONSUL_SNAPSHOT, &paths.consul_snapshot),
    ] {
        if let Some(part) = opened.part(name) {
            kindling_stack::files::write(path, &part.bytes, 0o600).map_err(|e| ApplyError::Io {
                action: "writing",
                path: path.to_path_buf(),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
    }
    Ok(())
}

/// A directory only root may enter: it will hold Consul's data, tokens
/// and all.
fn create_private_dir(path: &Path) -> Result<(), ApplyError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |action, source| ApplyError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| io("restricting", e))
        }
        Err(e) => Err(io("creating", e)),
    }
}

/// The last restore's record, if any.
pub fn last(data_dir: &Path) -> Option<LastRestore> {
    read_record(&restore_dir(data_dir).join(LAST_RECORD))
}

/// The restore waiting for the next boot, if any.
pub fn pending(data_dir: &Path) -> Option<StagedRecord> {
    let dir = restore_dir(data_dir);
    dir.join(STAGED_FILE)
        .exists()
        .then(|| read_record(&dir.join(STAGED_RECORD)))
        .flatten()
}

fn read_record<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}
