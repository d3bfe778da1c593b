//! The typed site configuration of a kindling appliance.
//!
//! Owns the data model every other crate reads (`SiteConfig`, `Profile`), the
//! newtypes that validate themselves (`MacAddr`, `Cidr`, `ProfileName`,
//! `DhcpRange`, `TokenSha256`), whole-config validation, reading config trees with errors that
//! name file, line, key and reason, layering with provenance, and the JSON
//! Schema. It never touches the network or signatures: verifying where a config
//! came from is the overlay crate's job.

pub mod effective;
pub mod enrollment;
pub mod error;
pub mod keypath;
pub mod layers;
pub mod load;
pub mod mac;
pub mod model;
pub mod operator;
pub mod profile;
pub mod reference;
pub mod schema;
pub mod selector;
pub mod tags;
pub mod types;
pub mod update;
pub mod validate;

pub use enrollment::{EnrollmentConfig, GrantTtl, ProfileEnrollment};
pub use error::{ConfigErrors, ConfigIssue, LoadTreeError};
pub use layers::{merge_layers, Effective, Layer, Origin};
pub use load::{SiteTree, SourceDoc};
pub use mac::MacAddr;
pub use model::*;
pub use operator::{ApiOperator, OperatorRole, TokenSha256};
pub use profile::*;
pub use selector::{BootFirmware, MacPrefix, NodeFacts, ProfileSelector};
pub use tags::{NodeTags, TagError};
pub use types::{Cidr, ParseValueError, ProfileName};
pub use update::{MaintenanceWindow, UpdateConfig};
