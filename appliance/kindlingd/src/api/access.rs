//! Who may call what: the one gate every API request passes before its body
//! is read and its handler runs ([`authorize`]), the access level each route
//! declares ([`Access`]) and the caller a handler is told about ([`Caller`]).
//!
//! Identity is a bearer token whose SHA-256 the signed site config lists
//! under `[[api.operators]]` (format, parsing and the constant-time lookup
//! are `kindling_api::auth`). Only `GET /healthz` and the status page's
//! login form (`GET`/`POST /ui/login`, which checks the token itself) are
//! public; a browser session's cookie is checked by `ui`. This module
//! must never look at a request's body or run a handler itself.

use super::Request;
use kindling_api::auth::{identify, parse_authorization, AuthHeaderError};
use kindling_api::{ApiFailure, ErrorKind};
use kindling_site::{ApiOperator, OperatorRole};

/// What a route does to the appliance, as far as permission goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Open to anyone, by design: only `GET /healthz` and the login form
    /// (`/ui/login`). Must never reveal a secret, the inventory or the site
    /// config.
    Public,
    /// Reads state (status, config, nodes, the stack's progress); also what
    /// an unknown endpoint needs, so an anonymous caller learns nothing.
    Read,
    /// Changes the appliance or hands out secret material (overlay push,
    /// restarts, assignments, unseal, the encrypted init secrets).
    Admin,
}

impl Access {
    /// The least role that may call a route of this access.
    pub fn needs(self) -> Option<OperatorRole> {
        match self {
            Access::Public => None,
            Access::Read => Some(OperatorRole::Read),
            Access::Admin => Some(OperatorRole::Admin),
        }
    }
}

/// Who made a request, as [`authorize`] established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A public route's caller: nothing was checked.
    Anonymous,
    /// An operator of the site config, by its token. `csrf` is the
    /// browser session's CSRF token when the request came with the status
    /// page's session cookie (`session`), for the page to embed.
    Operator {
        name: String,
        role: OperatorRole,
        csrf: Option<String>,
    },
}

/// Why a request was refused before its body was read.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("authentication required: send an operator token as `Authorization: Bearer <token>`")]
    NoCredentials,
    #[error("the Authorization header proves nothing: {0}")]
    BadHeader(AuthHeaderError),
    #[error("more than one Authorization header")]
    TwoCredentials,
    #[error("the token is not one of this site's operators")]
    UnknownToken,
    #[error("operator {name:?} has the {role} role; this needs {needs}")]
    RoleTooLow {
        name: String,
        role: OperatorRole,
        needs: OperatorRole,
    },
}

impl AuthError {
    /// The `WWW-Authenticate` challenge a 401 carries (RFC 6750).
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            Self::NoCredentials => Some(r#"Bearer realm="kindling""#),
            Self::BadHeader(_) | Self::TwoCredentials => {
                Some(r#"Bearer realm="kindling", error="invalid_request""#)
            }
            Self::UnknownToken => Some(r#"Bearer realm="kindling", error="invalid_token""#),
            Self::RoleTooLow { .. } => None,
        }
    }
}

impl ApiFailure for AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NoCredentials
            | Self::BadHeader(_)
            | Self::TwoCredentials
            | Self::UnknownToken => ErrorKind::Unauthenticated,
            Self::RoleTooLow { .. } => ErrorKind::Forbidden,
        }
    }
}

/// Decides whether the request may reach a route of `access`, given the
/// site's `operators`. Runs before the body is read. The match on
/// [`Access`] stays exhaustive so a new access level needs a decision here.
pub fn authorize(
    request: &Request<'_>,
    access: Access,
    operators: &[ApiOperator],
) -> Result<Caller, AuthError> {
    let Some(needs) = access.needs() else {
        return Ok(Caller::Anonymous);
    };
    let header = match request.authorization.as_slice() {
        [] => return Err(AuthError::NoCredentials),
        [one] => *one,
        _ => return Err(AuthError::TwoCredentials),
    };
    let token = parse_authorization(header).map_err(AuthError::BadHeader)?;
    let operator = identify(operators, &token).ok_or(AuthError::UnknownToken)?;
    if operator.role < needs {
        return Err(AuthError::RoleTooLow {
            name: operator.name.clone(),
            role: operator.role,
            needs,
        });
    }
    Ok(Caller::Operator {
        name: operator.name.clone(),
        role: operator.role,
        csrf: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Method;
    use super::*;
    use kindling_api::auth::Token;

    fn operators() -> (Token, Token, Vec<ApiOperator>) {
        let (admin, read) = (Token::from_random([1; 32]), Token::from_random([2; 32]));
        let ops = vec![
            ApiOperator {
                name: "alice".into(),
                role: OperatorRole::Admin,
                token_sha256: admin.sha256(),
            },
            ApiOperator {
                name: "ro".into(),
                role: OperatorRole::Read,
                token_sha256: read.sha256(),
            },
        ];
        (admin, read, ops)
    }

    fn check(headers: &[&str], access: Access, ops: &[ApiOperator]) -> Result<Caller, AuthError> {
        let request = Request {
            method: Method::Get,
            segments: vec!["v1", "status"],
            query: "",
            authorization: headers.iter().map(|h| h.as_bytes()).collect(),
        };
        authorize(&request, access, ops)
    }

    #[test]
    fn roles_reach_their_routes_and_nothing_above() {
        let (admin, read, ops) = operators();
        let bearer = |t: &Token| format!("Bearer {}", t.expose());
        let (admin, read) = (bearer(&admin), bearer(&read));
        assert_eq!(
            check(&[], Access::Public, &ops).ok(),
            Some(Caller::Anonymous)
        );
        for access in [Access::Read, Access::Admin] {
            let caller = check(&[&admin], access, &ops).ok();
            assert!(
                matches!(caller, Some(Caller::Operator { ref name, .. }) if name == "alice"),
                "{access:?}"
            );
        }
        assert!(check(&[&read], Access::Read, &ops).is_ok());
        let err = check(&[&read], Access::Admin, &ops).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Forbidden);
        assert_eq!(err.challenge(), None);
        assert!(
            err.to_string().contains("\"ro\" has the read role"),
            "{err}"
        );
    }

    #[test]
    fn no_wrong_or_doubled_credentials_are_unauthenticated_with_a_challenge() {
        let (admin, _, ops) = operators();
        let good = format!("Bearer {}", admin.expose());
        let unknown = format!("Bearer {}", Token::from_random([3; 32]).expose());
        let digest = format!("Bearer {}", admin.sha256());
        for (headers, challenge) in [
            (vec![], r#"Bearer realm="kindling""#),
            (vec![unknown.as_str()], "invalid_token"),
            (vec![digest.as_str()], "invalid_token"),
            (vec!["Basic YWRtaW46YWRtaW4="], "invalid_request"),
            (vec![good.as_str(), good.as_str()], "invalid_request"),
        ] {
            let err = check(&headers, Access::Read, &ops).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Unauthenticated, "{headers:?}");
            assert!(
                err.challenge().is_some_and(|c| c.contains(challenge)),
                "{headers:?}: {:?}",
                err.challenge()
            );
        }
        // A site with no operators admits nobody.
        let err = check(&[&good], Access::Read, &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unauthenticated);
    }
}
