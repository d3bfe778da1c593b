//! Browser sessions for the status page: a browser cannot send a bearer
//! token on navigation, so `POST /ui/login` checks the token once and hands
//! back a cookie naming a server-side session ([`Sessions::open`]).
//!
//! A session is bound to the operator's name, role and token digest: when an
//! overlay removes, demotes or rotates that operator, the session is gone with
//! the next request ([`Sessions::check`]). It ends after [`IDLE`] without a
//! request, [`LIFETIME`] after login, at logout, or when the API restarts
//! (kept in memory only). Requests that change something through a session
//! must also carry its CSRF token in [`CSRF_HEADER`]; only the page the
//! session opened knows it (the cookie is HttpOnly and SameSite=Strict).
//!
//! The map is keyed by the session id's SHA-256, so a lookup's timing says
//! nothing about stored ids; the CSRF token is compared in constant time.

use kindling_site::{ApiOperator, OperatorRole, TokenSha256};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name: `__Host-` makes browsers refuse it unless Secure,
/// Path=/ and without Domain, so no other host can plant one.
pub const COOKIE: &str = "__Host-kindling_session";
/// The header a session's state-changing request carries its CSRF token in.
pub const CSRF_HEADER: &str = "x-kindling-csrf";
/// A session unused this long is over.
pub const IDLE: Duration = Duration::from_secs(15 * 60);
/// A session is over this long after login, however busy.
pub const LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// At most this many sessions at once; a login past it ends the least
/// recently used one.
const MAX_SESSIONS: usize = 256;

/// What a valid session stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub operator: String,
    pub role: OperatorRole,
    token_sha256: TokenSha256,
    /// Sent by the page in [`CSRF_HEADER`]; hex.
    pub csrf: String,
    opened: Instant,
    last_used: Instant,
}

/// A freshly opened session: the cookie value (the id, shown once) and
/// the session.
pub struct Opened {
    pub id: String,
    pub session: Session,
}

/// Why a session cookie was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session is unknown or has ended: log in again")]
    Unknown,
    #[error("the session has expired: log in again")]
    Expired,
    #[error("the session's operator was removed or changed by the site config: log in again")]
    OperatorChanged,
    #[error("no randomness for a session id: {0}")]
    NoRandomness(&'static str),
}

/// The API's live sessions.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl Sessions {
    /// A new session for `operator`, who has just proven their token.
    pub fn open(&self, operator: &ApiOperator, now: Instant) -> Result<Opened, SessionError> {
        let id = hex(&random()?);
        let session = Session {
            operator: operator.name.clone(),
            role: operator.role,
            token_sha256: operator.token_sha256,
            csrf: hex(&random()?),
            opened: now,
            last_used: now,
        };
        let mut map = self.map.lock().map_err(|_| SessionError::Unknown)?;
        map.retain(|_, s| live(s, now));
        if map.len() >= MAX_SESSIONS {
            let oldest = map.iter().min_by_key(|(_, s)| s.last_used).map(|(k, _)| *k);
            if let Some(key) = oldest {
                map.remove(&key);
            }
        }
        map.insert(key(&id), session.clone());
        Ok(Opened { id, session })
    }

    /// The session `id` names, if it is live and its operator is still in
    /// `operators` with the same role and token; marks it used. A session
    /// that fails is removed.
    pub fn check(
        &self,
        id: &str,
        operators: &[ApiOperator],
        now: Instant,
    ) -> Result<Session, SessionError> {
        let mut map = self.map.lock().map_err(|_| SessionError::Unknown)?;
        let key = key(id);
        let Some(session) = map.get_mut(&key) else {
            return Err(SessionError::Unknown);
        };
        if !live(session, now) {
            map.remove(&key);
            return Err(SessionError::Expired);
        }
        let still_there = operators.iter().any(|o| {
            o.name == session.operator
                && o.role == session.role
                && o.token_sha256 == session.token_sha256
        });
        if !still_there {
            map.remove(&key);
            return Err(SessionError::OperatorChanged);
        }
        session.last_used = now;
        Ok(session.clone())
    }

    /// Ends the session whose CSRF token is `csrf` (logout: the handler
    /// knows the caller, not the cookie).
    pub fn close_by_csrf(&self, csrf: &str) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, s| s.csrf != csrf);
        }
    }
}

fn live(session: &Session, now: Instant) -> bool {
    now.saturating_duration_since(session.last_used) < IDLE
        && now.saturating_duration_since(session.opened) < LIFETIME
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// 32 bytes from the kernel's CSRNG.
fn random() -> Result<[u8; 32], SessionError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|_| SessionError::NoRandomness("/dev/urandom cannot be read"))?;
    Ok(bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session id in a request's `Cookie` headers, if any.
pub fn cookie_value<'a>(headers: impl Iterator<Item = &'a [u8]>) -> Option<&'a str> {
    headers
        .filter_map(|h| std::str::from_utf8(h).ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
}

/// Whether `presented` is the session's CSRF token (constant time over the
/// token's length).
pub fn csrf_matches(session: &Session, presented: Option<&[u8]>) -> bool {
    let Some(presented) = presented else {
        return false;
    };
    let expected = session.csrf.as_bytes();
    if presented.len() != expected.len() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// The `Set-Cookie` value that hands `id` to the browser.
pub fn set_cookie(id: &str) -> String {
    format!(
        "{COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that makes the browser forget the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn operator(name: &str, role: OperatorRole, digest: char) -> ApiOperator {
        ApiOperator {
            name: name.into(),
            role,
            token_sha256: digest.to_string().repeat(64).parse().unwrap(),
        }
    }

    #[test]
    fn a_session_lives_while_used_and_its_operator_is_unchanged() {
        let sessions = Sessions::default();
        let ro = operator("ro", OperatorRole::Read, 'a');
        let t0 = Instant::now();
        let opened = sessions.open(&ro, t0).unwrap();
        assert_eq!(opened.id.len(), 64);
        assert_ne!(opened.id, opened.session.csrf);
        let ops = vec![ro.clone()];
        let s = sessions.check(&opened.id, &ops, t0 + IDLE / 2).unwrap();
        assert_eq!((s.operator.as_str(), s.role), ("ro", OperatorRole::Read));
        // Used at IDLE/2, so still live at IDLE/2 + IDLE - 1s.
        let later = t0 + IDLE / 2 + IDLE - Duration::from_secs(1);
        assert!(sessions.check(&opened.id, &ops, later).is_ok());
        assert_eq!(
            sessions.check("f".repeat(64).as_str(), &ops, later),
            Err(SessionError::Unknown)
        );
    }

    #[test]
    fn idle_lifetime_rotation_and_logout_end_a_session() {
        let sessions = Sessions::default();
        let ro = operator("ro", OperatorRole::Read, 'a');
        let ops = vec![ro.clone()];
        let t0 = Instant::now();
        let idle = sessions.open(&ro, t0).unwrap().id;
        assert_eq!(
            sessions.check(&idle, &ops, t0 + IDLE),
            Err(SessionError::Expired)
        );
        assert_eq!(
            sessions.check(&idle, &ops, t0),
            Err(SessionError::Unknown),
            "an expired session is forgotten"
        );

        let busy = sessions.open(&ro, t0).unwrap().id;
        let mut now = t0;
        while now + IDLE / 2 < t0 + LIFETIME {
            now += IDLE / 2;
            assert!(sessions.check(&busy, &ops, now).is_ok());
        }
        // Used less than IDLE ago, but LIFETIME after login.
        assert_eq!(
            sessions.check(&busy, &ops, t0 + LIFETIME),
            Err(SessionError::Expired)
        );

        for changed in [
            vec![],
            vec![operator("ro", OperatorRole::Admin, 'a')],
            vec![operator("ro", OperatorRole::Read, 'b')],
            vec![operator("other", OperatorRole::Read, 'a')],
        ] {
            let id = sessions.open(&ro, t0).unwrap().id;
            assert_eq!(
                sessions.check(&id, &changed, t0),
                Err(SessionError::OperatorChanged),
                "{changed:?}"
            );
            assert_eq!(sessions.check(&id, &ops, t0), Err(SessionError::Unknown));
        }

        let opened = sessions.open(&ro, t0).unwrap();
        sessions.close_by_csrf(&opened.session.csrf);
        assert_eq!(
            sessions.check(&opened.id, &ops, t0),
            Err(SessionError::Unknown)
        );
    }

    #[test]
    fn the_map_is_bounded() {
        let sessions = Sessions::default();
        let ro = operator("ro", OperatorRole::Read, 'a');
        let t0 = Instant::now();
        let first = sessions.open(&ro, t0).unwrap().id;
        for i in 1..=MAX_SESSIONS as u64 {
            sessions.open(&ro, t0 + Duration::from_millis(i)).unwrap();
        }
        assert_eq!(sessions.map.lock().unwrap().len(), MAX_SESSIONS);
        assert_eq!(
            sessions.check(&first, &[ro], t0 + Duration::from_secs(1)),
            Err(SessionError::Unknown),
            "the least recently used session made room"
        );
    }

    #[test]
    fn cookie_and_csrf_parsing() {
        let headers: Vec<&[u8]> = vec![
            b"theme=dark; __Host-kindling_session=abc123",
            b"__Host-kindling_session=second",
        ];
        assert_eq!(cookie_value(headers.into_iter()), Some("abc123"));
        let none: Vec<&[u8]> = vec![b"kindling_session=abc"];
        assert_eq!(cookie_value(none.into_iter()), None);
        let sessions = Sessions::default();
        let s = sessions
            .open(&operator("a", OperatorRole::Admin, 'a'), Instant::now())
            .unwrap()
            .session;
        assert!(csrf_matches(&s, Some(s.csrf.as_bytes())));
        assert!(!csrf_matches(&s, None));
        assert!(!csrf_matches(&s, Some(b"")));
        let mut wrong = s.csrf.clone().into_bytes();
        wrong[0] ^= 1;
        assert!(!csrf_matches(&s, Some(&wrong)));
        assert!(set_cookie("x").contains("HttpOnly; SameSite=Strict"));
    }
}
