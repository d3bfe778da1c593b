//! kindling's node inventory: every MAC the PXE service has seen and where it
//! stands, runtime MAC → profile assignments, their sync with Consul KV, and
//! the node part of the appliance API.
//!
//! The PXE service asks [`Inventory`] which profile a MAC gets
//! ([`Inventory::profile_for`]) and tells it what a node did
//! ([`Inventory::observe_dhcp`], [`Inventory::observe_boot_script`],
//! [`Inventory::record_event`]). This crate knows nothing of DHCP packets,
//! TFTP or HTTP, and never panics on what files or KV hold.
//!
//! Modules, each depending only on those listed before it: `error`,
//! `shared_file` (reading and locking the shared files), `policy` (profile precedence),
//! `transitions` (which event is valid in which state), `grants` (the
//! enrollment grant's lifecycle, pure), `catalog` (the Consul catalog
//! listing the API hands the PXE service), `nomad_nodes` (Nomad's client
//! node list, handed over the same way), `membership` (whether a node is
//! `joined`, from those listings, pure), `assignments` (the assignments
//! file), `reprovision` (re-arm requests from the API), `revocations` (what
//! re-arms revoked, from the stack), `forget` (forget
//! requests from the API), `inventory` (the
//! live inventory and `nodes.json`, with each node's grant), `sync` (the
//! Consul KV merge and its engine), `node_api` (the API handlers); `testing`
//! (lab fixtures, for tests and the `testing` feature only).

pub mod assignments;
pub mod catalog;
pub mod error;
pub mod forget;
pub mod grants;
pub mod inventory;
pub mod membership;
pub mod node_api;
pub mod nomad_nodes;
pub mod policy;
pub mod reprovision;
pub mod revocations;
mod shared_file;
pub mod sync;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod transitions;

pub use assignments::{AssignmentRecord, AssignmentStore, AssignmentsState};
pub use catalog::{CatalogState, CatalogWatch};
pub use error::InventoryError;
pub use forget::{ForgetRequest, ForgetStore};
pub use inventory::{
    read_nodes, Claim, ClaimRequest, InstalledNode, Inventory, IssuedGrant, NodeRecord,
    DEFAULT_MAX_DISCOVERED, REPROVISION_EVENT,
};
pub use kindling_api::nodes::{
    AlertKind, ConsulMember, FailureKind, Firmware, Grant, GrantState, KvStatus, NodeAlert,
    NodeEvent, NodeFailure, NodeState, ProfileChoice,
};
pub use kindling_site::MacAddr;
pub use membership::MembershipRules;
pub use nomad_nodes::{NomadNodesState, NomadNodesWatch};
pub use policy::ProfilePolicy;
pub use reprovision::{Rearm, ReprovisionStore, ReprovisionWatch};
pub use revocations::RevocationStore;
pub use shared_file::{FileWatch, ListingFile, SharedFile, Watched};
pub use sync::{AssignmentSync, KvError, SharedAssignments};

use std::path::{Path, PathBuf};

/// `inventory/nodes.json` under the data partition `state_dir`.
pub fn nodes_file(state_dir: &Path) -> PathBuf {
    state_dir.join("inventory").join("nodes.json")
}

/// `inventory/assignments.json` under the data partition `state_dir`.
pub fn assignments_file(state_dir: &Path) -> PathBuf {
    state_dir.join("inventory").join("assignments.json")
}
