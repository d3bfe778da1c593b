//! A backup's id: `YYYYMMDDTHHMMSSZ-xxxx` (UTC creation time, 4 random hex
//! digits). Sorting ids sorts backups by age, and an id is always a safe
//! file name: nothing else can be constructed, so a request path can never
//! name a file outside the backups directory.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(String);

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a backup id (YYYYMMDDTHHMMSSZ-xxxx, e.g. 20260101T120000Z-0a1b)")]
pub struct BadId(pub String);

impl BackupId {
    /// A new id for a backup created at `unix` seconds.
    pub fn new(unix: u64) -> Self {
        let stamp: String = kindling_clock::rfc3339(unix)
            .chars()
            .filter(|c| c.is_ascii_digit() || *c == 'T' || *c == 'Z')
            .collect();
        Self(format!("{stamp}-{:04x}", rand::random::<u16>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for BackupId {
    type Err = BadId;
    fn from_str(s: &str) -> Result<Self, BadId> {
        let b = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
        let ok = b.len() == 21
            && digits(0..8)
            && b[8] == b'T'
            && digits(9..15)
            && b[15] == b'Z'
            && b[16] == b'-'
            && b[17..]
                .iter()
                .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Self(s.to_string()))
        } else {
            Err(BadId(s.chars().take(64).collect()))
        }
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn new_ids_parse_and_sort_by_time() {
        let a = BackupId::new(1_700_000_000);
        let b = BackupId::new(1_700_000_060);
        assert!(a.as_str().starts_with("20231114T221320Z-"), "{a}");
        assert_eq!(a.as_str().parse::<BackupId>().unwrap(), a);
        assert!(a < b);
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "",
            "../../etc/passwd",
            "20231114T221320Z-0A1B",
            "20231114T221320Z-0a1b.kbak",
            "20231114T221320Z/0a1b",
            "2023111xT221320Z-0a1b",
        ] {
            assert!(bad.parse::<BackupId>().is_err(), "{bad}");
        }
    }
}
