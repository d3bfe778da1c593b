//! The contract of kindling's control API (`kindlingd api`, TLS on port 9000)
//! and its client (`kindling` CLI): every request and response body as a
//! serde type, the closed set of error kinds a handler may fail with, and
//! the operator's credential ([`auth`]: bearer token format, header parsing,
//! lookup by digest).
//!
//! Both ends compile against these types, so client and server cannot drift.
//! This crate only describes: it does no I/O and knows nothing of HTTP status
//! codes (kindlingd maps [`ErrorKind`] to a status in one exhaustive match).
//! One module per resource; [`schema`] lists every body for the shipped JSON
//! Schemas.

pub mod artifacts;
pub mod auth;
pub mod backups;
pub mod error;
pub mod health;
pub mod logs;
pub mod nodes;
pub mod overlays;
pub mod schema;
pub mod stack;
pub mod status;
pub mod update;
pub mod vault;

pub use error::{ApiFailure, ErrorBody, ErrorKind};
