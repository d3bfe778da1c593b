//! Keeps runtime assignments in a shared KV store (Consul KV on the
//! appliance, reached through the [`SharedAssignments`] trait that kindlingd
//! implements with the stack's client) and in the local file in step. The
//! PXE service only ever reads the local file, so DHCP and HTTP never wait on
//! the network.
//!
//! The merge rule, per MAC (docs/contracts.md "Runtime MAC → profile assignments"):
//! last write wins by wall-clock time. A change made through the API is
//! dated when the API accepted it, and that stamp travels into KV as the
//! entry's Flags; a KV entry without a stamp (an operator's
//! `consul kv put`) is dated when the sync first sees it. Consul's
//! ModifyIndex only tells whether a key changed since the record last
//! agreed with it, and check-and-set makes a push fail rather than overwrite
//! a write it has not seen. A KV whose epoch marker is missing or different
//! was rebuilt: it is re-seeded from the local file.
//!
//! This module holds the vocabulary shared by its two parts: `merge` (pure:
//! a local record, a KV entry and the time in, a decision out) and `engine`
//! (lists and watches KV, applies decisions to the file, makes the writes).
//! Must never let a refused KV entry (bad key, unknown profile) replace an
//! assignment, never panic on what KV holds, and never drop a local change
//! unless a later write superseded it.

pub mod engine;
pub mod merge;

pub use engine::{AssignmentSync, SyncError, SyncReport, WATCH_WAIT};
pub use merge::{merge, MergePlan};

use kindling_site::MacAddr;
use std::time::Duration;

/// One KV entry under the assignments prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The full key, for messages (`kindling/assignments/52:54:00:6b:00:10`).
    pub key: String,
    /// The part after the prefix: the MAC, if well-formed.
    pub name: String,
    pub value: Vec<u8>,
    pub modify_index: u64,
    /// The writer's change time in Unix ms; 0 when the writer set none.
    pub flags: u64,
}

/// Everything under the prefix, at one index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvListing {
    /// The index to wait on for the next change.
    pub index: u64,
    /// The store's epoch marker, if set.
    pub epoch: Option<String>,
    pub entries: Vec<KvEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The site keeps no shared copy: assignments stay local, not a problem.
    #[error("{0}")]
    NotInUse(String),
    /// Meant to be used, not usable yet (e.g. no credentials before the
    /// stack bootstrap made them).
    #[error("{0}")]
    NotReady(String),
    #[error("listing {what}: {reason}")]
    List { what: String, reason: String },
    #[error("writing {key}: {reason}")]
    Write { key: String, reason: String },
}

/// The shared KV store of runtime assignments. Implementations block (with
/// their own timeouts) and must be callable from several threads.
pub trait SharedAssignments: Send + Sync {
    /// Everything under the prefix, plus the epoch marker. Does not wait.
    fn list(&self) -> Result<KvListing, KvError>;
    /// Returns once the prefix changed after `index`, or after about `wait`;
    /// the new index.
    fn wait_for_change(&self, index: u64, wait: Duration) -> Result<u64, KvError>;
    /// Writes `profile` for `mac` with `stamp_ms` as the entry's stamp, only
    /// if the key's ModifyIndex is still `cas` (0: only if absent).
    /// `Ok(false)`: the key changed meanwhile, nothing written.
    fn put(&self, mac: &MacAddr, profile: &str, stamp_ms: u64, cas: u64) -> Result<bool, KvError>;
    /// Deletes `mac`'s key if its ModifyIndex is still `cas` (> 0).
    fn delete(&self, mac: &MacAddr, cas: u64) -> Result<bool, KvError>;
    /// Sets the epoch marker if none is set. `Ok(false)`: one was set meanwhile.
    fn claim_epoch(&self, epoch: &str) -> Result<bool, KvError>;
}

/// A write the merge wants made in KV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    Put {
        mac: MacAddr,
        profile: String,
        stamp_ms: u64,
        cas: u64,
    },
    Delete {
        mac: MacAddr,
        cas: u64,
    },
    ClaimEpoch(String),
}
