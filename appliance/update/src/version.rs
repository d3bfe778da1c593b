//! `Version`: dotted numbers (`1`, `1.4`, `2.0.3`), compared number by
//! number, a missing part counting as 0 (`1.4` = `1.4.0`). What the update
//! rules compare: newer than the running one, not below the floor.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Eq)]
pub struct Version(Vec<u64>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("version {input:?}: {reason} (expected dotted numbers such as 1.4.2)")]
pub struct ParseVersionError {
    input: String,
    reason: &'static str,
}

/// More parts than any release numbering needs; bounds the comparison.
const MAX_PARTS: usize = 4;

impl FromStr for Version {
    type Err = ParseVersionError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseVersionError {
            input: input.chars().take(40).collect(),
            reason,
        };
        let parts = input
            .split('.')
            .map(|p| {
                if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
                    Err(err("each part is a number"))
                } else {
                    p.parse::<u64>().map_err(|_| err("a part is too large"))
                }
            })
            .collect::<Result<Vec<u64>, _>>()?;
        if parts.len() > MAX_PARTS {
            return Err(err("at most four parts"));
        }
        Ok(Self(parts))
    }
}

impl Version {
    fn part(&self, i: usize) -> u64 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (0..MAX_PARTS)
            .map(|i| self.part(i).cmp(&other.part(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u64::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

impl Serialize for Version {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn numbers_compare_as_numbers_and_missing_parts_are_zero() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("2") > v("1.99.99"));
        assert_eq!(v("1.4"), v("1.4.0"));
        assert!(v("1.4.1") > v("1.4"));
        assert_eq!(v("01.2").to_string(), "1.2");
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for bad in [
            "",
            "1.",
            ".1",
            "1..2",
            "v1",
            "1.2-rc1",
            "1.2.3.4.5",
            "99999999999999999999",
        ] {
            let e = bad.parse::<Version>().unwrap_err();
            assert!(
                e.to_string().contains("expected dotted numbers"),
                "{bad}: {e}"
            );
        }
    }
}
