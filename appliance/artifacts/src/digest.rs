//! A sha256 named on the wire: exactly 64 lowercase hex digits, so it can
//! be joined to a path (no separator, no dot, nothing else can pass).

use crate::StoreError;

/// A sha256 as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hex of a finished hash.
    pub(crate) fn of_bytes(hash: &[u8]) -> Self {
        Self(hash.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl std::str::FromStr for Sha256Hex {
    type Err = StoreError;

    /// Upper-case digits are taken and lowered (an operator may paste
    /// either); anything but 64 hex digits is refused.
    fn from_str(text: &str) -> Result<Self, StoreError> {
        if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(Self(text.to_ascii_lowercase()))
        } else {
            Err(StoreError::BadDigest(text.chars().take(80).collect()))
        }
    }
}

impl std::fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_64_hex_digits_pass() {
        let ok: Sha256Hex = "AB".repeat(32).parse().unwrap();
        assert_eq!(ok.as_str(), "ab".repeat(32));
        for bad in [
            String::new(),
            "a".repeat(63),
            "a".repeat(65),
            format!("{}g", "a".repeat(63)),
            format!("../{}", "a".repeat(61)),
        ] {
            assert!(bad.parse::<Sha256Hex>().is_err(), "{bad}");
        }
    }
}
