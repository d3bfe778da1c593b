//! The gate for a request that proves itself with the status page's session
//! cookie instead of an `Authorization` header (`app` calls it), and where a
//! browser refused at `GET /` is sent. Sessions themselves are `session`.

use super::access::{Access, Caller};
use super::session::{self, Session, Sessions};
use super::{Method, Reply};
use kindling_api::ErrorKind;
use kindling_site::ApiOperator;
use std::time::Instant;

/// The gate for a request that carries the session cookie and no
/// `Authorization` header: the session must be live and its operator
/// unchanged (else 401), its role high enough for `access` (else 403), and
/// a request that is not a GET must carry the session's CSRF token (else
/// 403). The error is the reply and its (absent) challenge.
pub fn authorize_session(
    sessions: &Sessions,
    id: &str,
    method: Method,
    access: Access,
    csrf: Option<&[u8]>,
    operators: &[ApiOperator],
) -> Result<Caller, (Reply, Option<&'static str>)> {
    let session = sessions
        .check(id, operators, Instant::now())
        .map_err(|e| (Reply::failed(ErrorKind::Unauthenticated, e), None))?;
    if let Some(needs) = access.needs() {
        if session.role < needs {
            let message = format!(
                "operator {:?} has the {} role; this needs {needs}",
                session.operator, session.role
            );
            return Err((Reply::failed(ErrorKind::Forbidden, message), None));
        }
    }
    if method != Method::Get && !session::csrf_matches(&session, csrf) {
        let message = format!(
            "a request through a browser session must carry the session's CSRF token in {}",
            session::CSRF_HEADER
        );
        return Err((Reply::failed(ErrorKind::Forbidden, message), None));
    }
    Ok(caller_of(&session))
}

fn caller_of(session: &Session) -> Caller {
    Caller::Operator {
        name: session.operator.clone(),
        role: session.role,
        csrf: Some(session.csrf.clone()),
    }
}

/// A refused request's reply: a browser (`Accept: text/html`) that opens
/// the page is sent to the login form (303, so a login is not logged as a
/// failed load); anything else gets the API's JSON error.
pub fn refused(method: Method, segments: &[&str], browser: bool, reply: Reply) -> Reply {
    if method != Method::Get || !segments.is_empty() || !browser {
        return reply;
    }
    Reply::text("text/html; charset=utf-8", String::new())
        .with_status(303)
        .with_header("location", "/ui/login".into())
}
