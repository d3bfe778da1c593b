//! `MacAddr`: the one spelling of a node's hardware address used everywhere in
//! the PXE service (URLs, files, inventory keys).
//!
//! Owns parsing and formatting only. It never guesses: a string that is not six
//! hex pairs separated by `:` or `-` is an error naming what was wrong.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// An Ethernet MAC address. Displays as lower-case, colon-separated
/// (`52:54:00:6b:00:10`); parses colon- or dash-separated, any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid MAC address {input:?}: {reason}")]
pub struct MacParseError {
    pub input: String,
    pub reason: &'static str,
}

impl MacAddr {
    /// The address as lower-case hex without separators (`5254006b0010`),
    /// for file names and instance ids.
    pub fn compact(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A MAC from the first six bytes of a DHCP `chaddr`; `None` if shorter.
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
    type Err = MacParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| MacParseError {
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
        for (i, part) in input.split(sep as char).enumerate() {
            let slot = out.get_mut(i).ok_or_else(|| err("more than six octets"))?;
            if part.len() != 2 {
                return Err(err("each octet must be two hex digits"));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| err("octet is not hex"))?;
        }
        if input.split(sep as char).count() != 6 {
            return Err(err("expected six octets"));
        }
        Ok(Self(out))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
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
        assert_eq!(a.to_string(), "52:54:00:6b:00:10");
        assert_eq!(a.compact(), "5254006b0010");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "52:54:00:6b:00",
            "52:54:00:6b:00:1g",
            "52:54-00:6b:00:10",
            "525400:6b:00:10:",
            "52.54.00.6b.00.10",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad} should be rejected");
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
