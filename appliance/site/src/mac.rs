//! `MacAddr`: the one Ethernet address type of the workspace (site config,
//! DHCP, inventory keys, URLs, API bodies, Consul KV keys).
//!
//! Owns parsing, formatting and the JSON Schema. It never guesses: a string
//! that is not six hex pairs all separated by `:` or all by `-` is an error
//! naming what was wrong.

use crate::types::ParseValueError;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

/// An Ethernet MAC address. Any six bytes are one, so the bytes are public;
/// text becomes one only through parsing. Displays and serialises lower-case,
/// colon-separated (`52:54:00:6b:00:10`); parses colon- or dash-separated, any
/// case, so URL forms and vendor spreadsheets both work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    pub const fn from_octets(octets: [u8; 6]) -> Self {
        Self(octets)
    }

    /// The six octets.
    pub const fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The address as lower-case hex without separators (`5254006b0010`),
    /// for file names and instance ids.
    pub fn compact(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The hostname a node gets when the site names none: stable and
    /// derived from its last three octets (`node-6b0010`). The PXE renders
    /// and the stack's Vault entries use this one rule.
    pub fn default_hostname(&self) -> String {
        format!("node-{:02x}{:02x}{:02x}", self.0[3], self.0[4], self.0[5])
    }

    /// A MAC from the first six bytes of a hardware address (a DHCP
    /// `chaddr`); `None` if shorter.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let six: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(Self(six))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddr {
    type Err = ParseValueError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseValueError::Mac {
            input: input.chars().take(64).collect(),
            reason,
        };
        if input.len() != 17 {
            return Err(err("expected 17 characters like 52:54:00:6b:00:10"));
        }
        let sep = input.as_bytes()[2];
        if sep != b':' && sep != b'-' {
            return Err(err("octets must be separated by ':' or '-'"));
        }
        let mut out = [0u8; 6];
        let mut parts = input.split(sep as char);
        for slot in &mut out {
            let part = parts.next().ok_or_else(|| err("expected six octets"))?;
            if part.len() != 2 {
                return Err(err("each octet must be two hex digits"));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| err("octet is not hex"))?;
        }
        if parts.next().is_some() {
            return Err(err("more than six octets"));
        }
        Ok(Self(out))
    }
}

impl TryFrom<&str> for MacAddr {
    type Error = ParseValueError;
    fn try_from(value: &str) -> Result<Self, Self::Error> {
        value.parse()
    }
}

/// Compares with text the way an operator reads it: `"52-54-00-6B-00-10"`
/// equals the address it parses to; text that is no MAC equals none.
impl PartialEq<str> for MacAddr {
    fn eq(&self, other: &str) -> bool {
        other.parse::<MacAddr>().is_ok_and(|m| m == *self)
    }
}

impl PartialEq<&str> for MacAddr {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for MacAddr {
    fn schema_name() -> Cow<'static, str> {
        "MacAddr".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$|^[0-9A-Fa-f]{2}(-[0-9A-Fa-f]{2}){5}$",
            "description": "Ethernet MAC address, e.g. 52:54:00:6b:00:10"
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_colon_and_dash_any_case() {
        let a: MacAddr = "52:54:00:6B:00:10".parse().unwrap();
        let b: MacAddr = "52-54-00-6b-00-10".parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "52:54:00:6b:00:10");
        assert_eq!(a.octets(), [0x52, 0x54, 0, 0x6b, 0, 0x10]);
        assert_eq!(a.to_string(), "52:54:00:6b:00:10");
        assert_eq!(a.compact(), "5254006b0010");
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"52:54:00:6b:00:10\"");
        assert_eq!(
            serde_json::from_str::<MacAddr>("\"52-54-00-6B-00-10\"").unwrap(),
            a
        );
    }

    #[test]
    fn rejects_malformed_with_the_reason() {
        for bad in [
            "",
            "52:54:00:6b:00",
            "52:54:00:6b:00:1",
            "52:54:00:6b:00:1g",
            "zz:54:00:6b:00:10",
            "52:54:00:6b:00:10:11",
            "52:54-00:6b:00:10",
            "525400:6b:00:10:",
            "52.54.00.6b.00.10",
        ] {
            let err = bad.parse::<MacAddr>().unwrap_err();
            assert!(
                err.to_string().contains("invalid MAC address"),
                "{bad}: {err}"
            );
            assert!(
                serde_json::from_value::<MacAddr>(bad.into()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn display_parse_round_trip() {
        for seed in 0u8..=255 {
            let mac = MacAddr([seed, seed.wrapping_mul(7), 0, 0xff, seed ^ 0x5a, 1]);
            assert_eq!(mac.to_string().parse::<MacAddr>().unwrap(), mac);
        }
    }
}
