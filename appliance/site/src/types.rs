//! Validating newtypes used by the site model: a value of one of these types is
//! well-formed by construction (parsing is the only way in), so code reading a
//! `SiteConfig` never re-checks a MAC address or a CIDR.
//!
//! Each type serialises as the string an operator writes in TOML, and parses
//! with an error that says what was expected.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::borrow::{Borrow, Cow};
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Deref;
use std::str::FromStr;

/// Why a string is not a valid value of one of the newtypes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseValueError {
    #[error("invalid MAC address {input:?}: {reason}")]
    Mac {
        /// The text given (at most 64 characters of it).
        input: String,
        reason: &'static str,
    },
    #[error(
        "invalid CIDR {0:?}: expected an IPv4 address with prefix length like 192.168.100.1/24"
    )]
    Cidr(String),
    #[error(
        "invalid profile name {0:?}: expected 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit"
    )]
    ProfileName(String),
}

/// A host address with its prefix length, e.g. the LAN interface address
/// `192.168.100.1/24`. Host bits are kept (it names an interface address, not
/// only a network).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr(ipnetwork::Ipv4Network);

impl Cidr {
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, ParseValueError> {
        ipnetwork::Ipv4Network::new(addr, prefix_len)
            .map(Self)
            .map_err(|_| ParseValueError::Cidr(format!("{addr}/{prefix_len}")))
    }
    /// `0.0.0.0/0`.
    pub fn any() -> Self {
        Self(ipnetwork::Ipv4Network::from(Ipv4Addr::UNSPECIFIED))
    }
    /// The interface address (host bits kept).
    pub fn addr(&self) -> Ipv4Addr {
        self.0.ip()
    }
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix()
    }
    pub fn network(&self) -> Ipv4Addr {
        self.0.network()
    }
    pub fn netmask(&self) -> Ipv4Addr {
        self.0.mask()
    }
    pub fn broadcast(&self) -> Ipv4Addr {
        self.0.broadcast()
    }
    /// Whether `ip` is inside this subnet.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.0.contains(ip)
    }
    /// Whether the two subnets share any address.
    pub fn overlaps(&self, other: &Cidr) -> bool {
        self.0.contains(other.network()) || other.0.contains(self.network())
    }
    /// The subnet in network form, e.g. `192.168.100.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}/{}", self.network(), self.prefix_len())
    }
}

impl FromStr for Cidr {
    type Err = ParseValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // ipnetwork reads a bare address as /32; a config must say its prefix.
        if !s.contains('/') {
            return Err(ParseValueError::Cidr(s.to_string()));
        }
        s.parse::<ipnetwork::Ipv4Network>()
            .map(Self)
            .map_err(|_| ParseValueError::Cidr(s.to_string()))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr(), self.prefix_len())
    }
}

/// A profile's name: used as a file name (`profiles/NAME.toml`), in URLs and in
/// node assignments, so it is kept to a safe character set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProfileName(String);

impl ProfileName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for ProfileName {
    type Err = ParseValueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chars = s.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
        let rest_ok =
            chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if first_ok && rest_ok && s.len() <= 63 {
            Ok(Self(s.to_string()))
        } else {
            Err(ParseValueError::ProfileName(s.to_string()))
        }
    }
}

/// String-like behaviour shared by the string newtypes, so code that compares or
/// prints them reads as if they were `String`s.
macro_rules! string_newtype {
    ($ty:ident, $pattern:expr, $desc:expr) => {
        impl Deref for $ty {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }
        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
        impl Borrow<str> for $ty {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }
        impl PartialEq<&str> for $ty {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }
        impl From<$ty> for String {
            fn from(value: $ty) -> String {
                value.0
            }
        }
        impl TryFrom<&str> for $ty {
            type Error = ParseValueError;
            fn try_from(value: &str) -> Result<Self, Self::Error> {
                value.parse()
            }
        }
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "pattern": $pattern, "description": $desc })
            }
        }
    };
}

string_newtype!(
    ProfileName,
    "^[a-z0-9][a-z0-9_-]{0,62}$",
    "Profile name: file name of profiles/NAME.toml"
);

impl JsonSchema for Cidr {
    fn schema_name() -> Cow<'static, str> {
        "Cidr".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^([0-9]{1,3}\\.){3}[0-9]{1,3}/[0-9]{1,2}$",
            "description": "IPv4 address with prefix length, e.g. 192.168.100.1/24"
        })
    }
}

/// Serde for all newtypes: the string form on the wire, parsing on the way in.
macro_rules! serde_via_str {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = Cow::<str>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_via_str!(Cidr);
serde_via_str!(ProfileName);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn cidr_keeps_host_bits_and_knows_its_subnet() {
        let c: Cidr = "192.168.100.1/24".parse().unwrap();
        assert_eq!(c.addr(), Ipv4Addr::new(192, 168, 100, 1));
        assert_eq!(c.subnet(), "192.168.100.0/24");
        assert!(c.contains(Ipv4Addr::new(192, 168, 100, 254)));
        assert!(!c.contains(Ipv4Addr::new(192, 168, 101, 1)));
        assert_eq!(c.to_string(), "192.168.100.1/24");
        for bad in [
            "192.168.100.1",
            "192.168.100.1/33",
            "300.1.1.1/24",
            "fe80::1/64",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn profile_name_charset() {
        assert!("dev".parse::<ProfileName>().is_ok());
        assert!("gpu-node_2".parse::<ProfileName>().is_ok());
        for bad in ["", "Dev", "../x", "-dev", "a b", &"x".repeat(64)] {
            assert!(bad.parse::<ProfileName>().is_err(), "{bad}");
        }
    }
}
