//! A certificate's SHA-256 fingerprint as an operator reads, compares and
//! pins it: `sha256:` and 64 lower-case hex digits.

use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub fn of_der(der: &[u8]) -> Self {
        Self(Sha256::digest(der).into())
    }

    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("sha256:")?;
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{input:?} is not a certificate fingerprint: expected sha256: and 64 hex digits (colons allowed)")]
pub struct ParseFingerprintError {
    input: String,
}

/// Accepts `sha256:` + 64 hex digits, any case, with or without `:` between
/// bytes (as `openssl x509 -fingerprint -sha256` prints them).
impl FromStr for Fingerprint {
    type Err = ParseFingerprintError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = || ParseFingerprintError {
            input: input.chars().take(120).collect(),
        };
        let lower = input.trim().to_ascii_lowercase();
        let hex: String = lower
            .strip_prefix("sha256:")
            .or_else(|| lower.strip_prefix("sha256 fingerprint="))
            .unwrap_or(&lower)
            .chars()
            .filter(|c| *c != ':')
            .collect();
        if hex.len() != 64 {
            return Err(err());
        }
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            *slot = u8::from_str_radix(hex.get(2 * i..2 * i + 2).ok_or_else(err)?, 16)
                .map_err(|_| err())?;
        }
        Ok(Self(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_its_own_and_openssl_forms() {
        let fp = Fingerprint::of_der(b"certificate");
        let openssl = fp
            .bytes()
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(
            format!("SHA256 Fingerprint={openssl}")
                .parse::<Fingerprint>()
                .unwrap(),
            fp
        );
        assert_eq!(openssl.parse::<Fingerprint>().unwrap(), fp);
        for bad in ["", "sha256:", "sha256:zz", &format!("{fp}00")] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
    }
}
