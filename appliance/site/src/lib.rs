//! The typed site configuration of a kindling appliance.
//!
//! Owns the data model every other crate reads (`SiteConfig`, `Profile`) and its
//! validation. It never touches the network, the disk beyond reading the file it
//! is given, or signatures: verifying where a config came from is the overlay
//! crate's job.

pub mod model;
pub mod profile;

pub use model::*;
pub use profile::*;
