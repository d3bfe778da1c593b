//! kindling's PXE services for the bootstrap LAN: DHCP (authoritative or
//! proxy), TFTP, HTTP boot (iPXE scripts, artifacts, cloud-init NoCloud,
//! preseed), the node inventory and IPv6 RAs, run as one process by
//! `kindlingd pxe` (see `service`).
//!
//! Library modules never panic on input and never exit the process; the
//! binary edge (`kindlingd`) maps errors to exit codes.

pub mod assignment_sync;
pub mod assignments;
pub mod dhcp;
pub mod enroll;
pub mod http;
pub mod inventory;
pub mod leases;
pub mod mac;
pub mod node_api;
pub mod ra;
pub mod render;
pub mod repo;
pub mod service;
pub mod settings;
pub mod status;
pub mod tftp;

pub use assignment_sync::{AssignmentSync, KvError, SharedAssignments};
pub use enroll::{EnrollError, Enrollment, EnrollmentSource};
pub use inventory::{AssignmentStore, Inventory, NodeRecord, NodeState, ProfileChoice};
pub use mac::MacAddr;
pub use settings::{PxePaths, PxeSettings};
