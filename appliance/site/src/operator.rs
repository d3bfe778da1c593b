//! The control API's operators (`[[api.operators]]`): who may call the API,
//! with which role, proven by which bearer token.
//!
//! Only the SHA-256 of each token is in the site config (signed, so nobody
//! can add an operator without the site key, and readable by whoever holds
//! an overlay without revealing a usable credential). Owns the shapes and the
//! per-value checks; it never sees a token itself (that is `kindling-api`'s
//! `auth` module) and never decides what a role may do (kindlingd's gate).

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// One operator allowed to call the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiOperator {
    /// Who this is (shown in the API's log and `GET /v1/whoami`):
    /// 1-64 characters of a-z, 0-9, '.', '_', '-'.
    pub name: String,
    pub role: OperatorRole,
    /// SHA-256 of the operator's bearer token, 64 hex digits, as printed by
    /// `kindling token new`. The token itself never goes into an overlay.
    pub token_sha256: TokenSha256,
}

/// What an operator may do. Ordered: a higher role includes every lower one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OperatorRole {
    /// Reads status, config, inventory and the stack's progress.
    Read,
    /// Also changes the appliance (pushes, restarts, assignments, unseal)
    /// and fetches the encrypted init secrets.
    Admin,
}

impl OperatorRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for OperatorRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OperatorRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read" => Ok(Self::Read),
            "admin" => Ok(Self::Admin),
            other => Err(format!(
                "unknown role {other:?}: expected \"read\" or \"admin\""
            )),
        }
    }
}

/// A SHA-256 digest of a bearer token: 32 bytes, written as 64 lower-case
/// hex digits (upper case is accepted and normalised).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TokenSha256([u8; 32]);

impl TokenSha256 {
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// A digest is not a secret, but it is long: show it whole only in Display.
impl fmt::Debug for TokenSha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TokenSha256({}…)", &self.to_string()[..12])
    }
}

impl fmt::Display for TokenSha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid token_sha256 {0:?}: expected the 64 hex digits `kindling token new` prints (the SHA-256 of the token, not the token)")]
pub struct ParseTokenSha256Error(String);

impl FromStr for TokenSha256 {
    type Err = ParseTokenSha256Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseTokenSha256Error(s.chars().take(80).collect());
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            let pair = s.get(2 * i..2 * i + 2).ok_or_else(err)?;
            *slot = u8::from_str_radix(pair, 16).map_err(|_| err())?;
        }
        Ok(Self(out))
    }
}

impl Serialize for TokenSha256 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TokenSha256 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for TokenSha256 {
    fn schema_name() -> Cow<'static, str> {
        "TokenSha256".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9a-fA-F]{64}$",
            "description": "SHA-256 of an operator's bearer token (64 hex digits, from `kindling token new`)"
        })
    }
}

/// Whether `name` is a valid operator name.
pub fn is_operator_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
        && name.len() <= 64
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn digests_parse_from_hex_and_print_lower_case() {
        let hex = "AB".repeat(32);
        let d: TokenSha256 = hex.parse().unwrap();
        assert_eq!(d.bytes(), &[0xab; 32]);
        assert_eq!(d.to_string(), "ab".repeat(32));
        assert!(format!("{d:?}").len() < 30, "Debug stays short");
        for bad in ["", "ab", &"g".repeat(64), &"a".repeat(65), "kt1_notahash"] {
            let err = bad.parse::<TokenSha256>().unwrap_err();
            assert!(err.to_string().contains("64 hex digits"), "{err}");
        }
    }

    #[test]
    fn roles_are_ordered_and_spelled_as_in_toml() {
        assert!(OperatorRole::Admin > OperatorRole::Read);
        let op: ApiOperator = toml::from_str(&format!(
            "name = \"alice\"\nrole = \"admin\"\ntoken_sha256 = \"{}\"\n",
            "0".repeat(64)
        ))
        .unwrap();
        assert_eq!(op.role, OperatorRole::Admin);
        assert_eq!("read".parse::<OperatorRole>(), Ok(OperatorRole::Read));
        assert!("root".parse::<OperatorRole>().is_err());
        let err =
            toml::from_str::<ApiOperator>("name = \"a\"\nrole = \"root\"\ntoken_sha256 = \"x\"\n")
                .unwrap_err();
        assert!(err.to_string().contains("role"), "{err}");
    }

    #[test]
    fn operator_names() {
        for good in ["alice", "ci-bot", "ops.team_2", "0"] {
            assert!(is_operator_name(good), "{good}");
        }
        for bad in ["", "Alice", "-x", "a b", "a/b", &"a".repeat(65)] {
            assert!(!is_operator_name(bad), "{bad}");
        }
    }
}
