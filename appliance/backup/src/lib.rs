//! Backups of the appliance: Consul's snapshot, Vault's raft snapshot, the
//! DHCP leases, the node inventory and the accepted overlays, packed in one
//! archive (tar + zstd) with a manifest of sha256 sums and encrypted to the
//! site's age recipients, the same way (and with the same code,
//! `kindling_stack::secrets::encrypting_writer`) as Vault's unseal keys.
//!
//! Owns the backup file format ([`manifest`], [`archive`]), gathering the
//! parts ([`collect`]), the backups directory on the data partition with
//! its retention bound ([`store`]) and putting a backup back ([`restore`]).
//!
//! Must never write an unencrypted byte of a backup to disk: the archive is
//! streamed from memory through the encryptor into the file; opening one
//! decrypts into memory only. Never puts a token in an error or a log.

pub mod archive;
pub mod ca_keys;
pub mod collect;
use kindling_stack::snapshot_http as http;
pub mod id;
pub mod job;
pub mod manifest;
pub mod requests;
pub mod restore;
pub mod staged;
pub mod store;

pub use archive::Part;
pub use archive::{open, open_plain, pack, pack_plain, OpenError, Opened, PackError};
pub use collect::{collect, CollectError, Endpoint, Sources};
pub use id::BackupId;
pub use job::{make, Job, JobError, Made};
pub use manifest::{Entry, EntryKind, Manifest};
pub use store::{BackupStore, Retention, StoreError, StoredBackup};

/// Lower-case hex of `bytes` (sha256 sums in the manifest).
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The sha256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}
