//! How an operator proves itself to the API: a bearer token (`kt1_` and 64
//! hex digits of randomness) sent as `Authorization: Bearer <token>`, whose
//! SHA-256 the signed site config lists under `[[api.operators]]`.
//!
//! Owns the token's format, its digest, the parsing of the `Authorization`
//! header and the lookup of the operator a token belongs to (constant time
//! over every listed digest). Pure and panic-free on any input (fuzzed by
//! `fuzz/`); it never decides what a role may do (kindlingd's `authorize`)
//! and never stores a token.

use kindling_site::{ApiOperator, OperatorRole, TokenSha256};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The prefix of every token kindling mints: recognisable in a leaked log or
/// a secret scanner, and a version for the format.
pub const TOKEN_PREFIX: &str = "kt1_";
/// Longest credential accepted in a header; a token is 68 characters.
pub const MAX_CREDENTIAL: usize = 256;

/// An operator's bearer token. The secret itself: never logged (Debug hides
/// it), shown once when minted, kept by the operator's CLI in a 0600 file.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A new token from 32 bytes of randomness (the caller's CSPRNG).
    pub fn from_random(bytes: [u8; 32]) -> Self {
        let mut text = String::with_capacity(TOKEN_PREFIX.len() + 64);
        text.push_str(TOKEN_PREFIX);
        for b in bytes {
            text.push_str(&format!("{b:02x}"));
        }
        Self(text)
    }

    /// A token as the operator typed or stored it: whatever a header may
    /// carry (RFC 7235 token68 characters, at most [`MAX_CREDENTIAL`]).
    pub fn parse(text: &str) -> Result<Self, AuthHeaderError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(AuthHeaderError::Empty);
        }
        if text.len() > MAX_CREDENTIAL {
            return Err(AuthHeaderError::TooLong);
        }
        if !text.bytes().all(is_token68) {
            return Err(AuthHeaderError::BadCharacter);
        }
        Ok(Self(text.to_string()))
    }

    /// The digest the site config lists for this token.
    pub fn sha256(&self) -> TokenSha256 {
        TokenSha256::from_bytes(Sha256::digest(self.0.as_bytes()).into())
    }

    /// The secret text, for the one place that sends or prints it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// RFC 7235 `token68`: ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/",
/// with trailing "=" padding.
fn is_token68(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// Why an `Authorization` header proves nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthHeaderError {
    #[error("the Authorization header is empty")]
    Empty,
    #[error("the Authorization scheme must be Bearer (an operator token from the site config)")]
    NotBearer,
    #[error("the bearer token is longer than {MAX_CREDENTIAL} characters")]
    TooLong,
    #[error("the bearer token has a character no token has")]
    BadCharacter,
}

/// The token in an `Authorization` header value: `Bearer <token>`, the
/// scheme in any case, one or more spaces.
pub fn parse_authorization(value: &[u8]) -> Result<Token, AuthHeaderError> {
    if value.len() > MAX_CREDENTIAL + 32 {
        return Err(AuthHeaderError::TooLong);
    }
    let text = std::str::from_utf8(value).map_err(|_| AuthHeaderError::BadCharacter)?;
    let text = text.trim_matches(|c| c == ' ' || c == '\t');
    if text.is_empty() {
        return Err(AuthHeaderError::Empty);
    }
    let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthHeaderError::NotBearer);
    }
    Token::parse(rest.trim_start_matches(' '))
}

/// The operator `token` belongs to. Every listed digest is compared, in
/// constant time, whatever matches first: how long this takes says nothing
/// about which digest (or which prefix of one) came close.
pub fn identify<'a>(operators: &'a [ApiOperator], token: &Token) -> Option<&'a ApiOperator> {
    let presented = token.sha256();
    let mut found: Option<&ApiOperator> = None;
    for op in operators {
        let equal: bool = op.token_sha256.bytes().ct_eq(presented.bytes()).into();
        if equal && found.is_none() {
            found = Some(op);
        }
    }
    found
}

/// `GET /v1/whoami`: the operator the request's token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WhoAmI {
    pub name: String,
    pub role: OperatorRole,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn operator(name: &str, role: OperatorRole, token: &Token) -> ApiOperator {
        ApiOperator {
            name: name.into(),
            role,
            token_sha256: token.sha256(),
        }
    }

    #[test]
    fn minted_tokens_have_the_format_and_a_stable_digest() {
        let token = Token::from_random([7; 32]);
        assert!(token.expose().starts_with("kt1_"));
        assert_eq!(token.expose().len(), 68);
        assert_eq!(Token::parse(token.expose()).unwrap(), token);
        assert_eq!(token.sha256(), Token::from_random([7; 32]).sha256());
        assert_ne!(token.sha256(), Token::from_random([8; 32]).sha256());
        // sha256("kt1_" + "07" * 32), computed independently with sha256sum.
        assert_eq!(
            token.sha256().to_string(),
            "3259e05643b1c3b9067de5a6c43713f8f2cd38e6a131d5d6d6f8f7b9f1959fbc"
        );
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
    }

    #[test]
    fn authorization_headers() {
        let token = Token::from_random([1; 32]);
        let header = format!("Bearer {}", token.expose());
        assert_eq!(parse_authorization(header.as_bytes()).unwrap(), token);
        let lower = format!("bearer   {}  ", token.expose());
        assert_eq!(parse_authorization(lower.as_bytes()).unwrap(), token);
        let cases: &[(&[u8], AuthHeaderError)] = &[
            (b"", AuthHeaderError::Empty),
            (b"Bearer", AuthHeaderError::Empty),
            (b"Bearer   ", AuthHeaderError::Empty),
            (b"Basic YWxpY2U6cHc=", AuthHeaderError::NotBearer),
            (b"Bearerkt1_x", AuthHeaderError::NotBearer),
            (b"Bearer a b", AuthHeaderError::BadCharacter),
            (b"Bearer kt1_\xff", AuthHeaderError::BadCharacter),
            (b"Bearer kt1_\"x\"", AuthHeaderError::BadCharacter),
        ];
        for (value, want) in cases {
            assert_eq!(
                parse_authorization(value).unwrap_err(),
                *want,
                "{:?}",
                String::from_utf8_lossy(value)
            );
        }
        let long = format!("Bearer {}", "a".repeat(MAX_CREDENTIAL + 1));
        assert_eq!(
            parse_authorization(long.as_bytes()).unwrap_err(),
            AuthHeaderError::TooLong
        );
    }

    #[test]
    fn a_token_identifies_its_operator_only() {
        let (alice, bob) = (Token::from_random([1; 32]), Token::from_random([2; 32]));
        let ops = [
            operator("alice", OperatorRole::Admin, &alice),
            operator("bob", OperatorRole::Read, &bob),
        ];
        assert_eq!(
            identify(&ops, &alice).map(|o| o.name.as_str()),
            Some("alice")
        );
        assert_eq!(
            identify(&ops, &bob).map(|o| o.role),
            Some(OperatorRole::Read)
        );
        assert!(identify(&ops, &Token::from_random([3; 32])).is_none());
        assert!(identify(&[], &alice).is_none());
        // The digest itself is not a credential.
        let digest_as_token = Token::parse(&alice.sha256().to_string()).unwrap();
        assert!(identify(&ops, &digest_as_token).is_none());
    }
}
