//! kindling's PXE services for the bootstrap LAN: DHCP (authoritative or
//! proxy), TFTP, HTTP boot (iPXE scripts, artifacts, cloud-init NoCloud,
//! preseed) and IPv6 RAs, run as one process by
//! `kindlingd pxe` (see `service`).
//!
//! Library modules never panic on input and never exit the process; the
//! binary edge (`kindlingd`) maps errors to exit codes.

pub mod bounded;
pub mod dhcp;
pub mod enroll;
pub mod grants;
pub mod holder;
pub mod http;
pub mod leases;
pub mod local_boot;
pub mod node_files;
pub mod ra;
pub mod render;
pub mod repo;
pub mod service;
pub mod settings;
pub mod status;
pub mod tftp;

pub use enroll::{EnrollError, Enrollment, EnrollmentSource};
pub use kindling_inventory::{Inventory, ProfileChoice};
pub use kindling_site::MacAddr;
pub use settings::{PxePaths, PxeSettings};
