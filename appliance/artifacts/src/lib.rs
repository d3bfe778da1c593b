//! Operator-uploaded artifacts on the data partition, content-addressed by
//! sha256 (`kindling artifact push FILE`, `POST /v1/artifacts`): ISOs,
//! kernels, images an operator wants nodes to fetch from the appliance.
//!
//! Layout under the data partition (`/var/lib/kindling/artifacts`):
//!
//! ```text
//! sha256/HEX          the bytes, named by their sha256   kl-api:kl-pxe 0640, dir 2750
//! sha256/.upload-*    an upload being written (hidden)   kl-api 0600
//! .meta/HEX.json      name, size, when, by whom         kl-api 0600, dir 0700
//! ```
//!
//! The API (kl-api) writes and deletes; the PXE HTTP service (kl-pxe, the
//! directory's group) only reads `sha256/HEX` and serves it at
//! `/by-hash/sha256/HEX`. Who uploaded what stays with the API: the LAN
//! never sees a record.
//!
//! Owns the layout, the writing of an upload (hashed while it streams, a
//! temporary name in the same directory, fsync, rename, directory fsync,
//! nothing partial left on any failure) and the records. Never decides who
//! may push: that is the API's gate.

mod digest;
mod error;
mod receive;
mod store;

pub use digest::Sha256Hex;
pub use error::StoreError;
pub use receive::{Receiver, Stored, UploadRequest};
pub use store::{Artifact, ArtifactStore, Limits};

/// The store's directory name on the data partition.
pub const ARTIFACTS_DIR: &str = "artifacts";
/// Largest artifact taken by default (an installer DVD image fits).
pub const MAX_ARTIFACT: u64 = 16 * 1024 * 1024 * 1024;
/// Free space an upload must leave on the data partition by default: it
/// also holds Consul's and Vault's data, which must never starve for an ISO.
pub const KEEP_FREE: u64 = 1024 * 1024 * 1024;
