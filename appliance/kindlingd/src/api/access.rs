//! Who may call what: the one gate every API request passes before its
//! handler runs ([`authorize`]), the access level each route declares
//! ([`Access`]) and the caller a handler is told about ([`Caller`]).
//!
//! Today the API is unauthenticated on the management network and
//! [`authorize`] lets every request through. This module is where TLS client
//! identity, bearer tokens and roles will be checked; it must never look at a
//! request's body or run a handler itself.

use super::Request;
use kindling_api::{ApiFailure, ErrorKind};

/// What a route does to the appliance, as far as permission goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Open to anyone, by design (`/healthz`, "no such endpoint"). Must
    /// never reveal a secret, the inventory or the site config.
    Public,
    /// Reads state (status, config, nodes, the stack's progress).
    Read,
    /// Changes the appliance or hands out secret material (overlay push,
    /// restarts, assignments, unseal, the encrypted init secrets).
    Admin,
}

/// Who made a request, as [`authorize`] established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials are checked yet: every request is anonymous.
    Anonymous,
}

/// Why a request was refused before its handler ran. No variant yet: the
/// checks that can refuse (missing or unknown credentials, a role below the
/// route's [`Access`]) add theirs, and [`ApiFailure::kind`] must then say
/// whether each is `Unauthenticated` or `Forbidden`.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {}

impl ApiFailure for AuthError {
    fn kind(&self) -> ErrorKind {
        match *self {}
    }
}

/// Decides whether the request may reach a route of `access`. Runs before the
/// body is read. Today every caller is [`Caller::Anonymous`] and allowed; the
/// match stays exhaustive so a new access level needs a decision here.
pub fn authorize(_request: &Request<'_>, access: Access) -> Result<Caller, AuthError> {
    match access {
        Access::Public | Access::Read | Access::Admin => Ok(Caller::Anonymous),
    }
}
