//! Error kinds: what a failed API action means for its caller, independent of
//! the transport. Library error enums say which kind each variant is; kindlingd
//! turns the kind into an HTTP status in one place.

use serde::{Deserialize, Serialize};

/// Why an API action failed, as the caller must see it. Closed on purpose: a
/// new kind forces a decision in kindlingd's status mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or names something invalid (bad JSON, a bad MAC).
    BadRequest,
    /// No credentials, or credentials that prove nothing.
    Unauthenticated,
    /// Credentials that are valid but may not do this.
    Forbidden,
    /// The thing named does not exist.
    NotFound,
    /// The request is well-formed but what it carries is refused on its
    /// merits (an overlay with a bad signature, an expired or older version,
    /// a configuration that does not validate).
    Refused,
    /// The request conflicts with the current state (older overlay version, a
    /// grant already used).
    Conflict,
    /// The request body is larger than the endpoint accepts.
    TooLarge,
    /// The appliance's disk has no room for what is sent (the data
    /// partition is full, or would be left with less than it must keep).
    InsufficientStorage,
    /// The appliance cannot do it now (a service it needs is down or not
    /// bootstrapped yet); retrying later may work.
    Unavailable,
    /// The appliance failed on its own side (disk, a child process).
    Internal,
}

/// An error a library hands to kindlingd: its kind and a message that names
/// what failed and where.
pub trait ApiFailure: std::fmt::Display {
    fn kind(&self) -> ErrorKind;
}

/// The JSON body of every error reply: `{"error": "...", "kind": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: String,
    pub kind: ErrorKind,
}

impl ErrorBody {
    pub fn new(kind: ErrorKind, message: impl std::fmt::Display) -> Self {
        Self {
            error: message.to_string(),
            kind,
        }
    }

    pub fn from_failure(failure: &dyn ApiFailure) -> Self {
        Self::new(failure.kind(), failure)
    }
}
