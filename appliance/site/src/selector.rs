//! `[[selectors]]`: profiles chosen by what a booting node says about itself
//! (MAC prefix, firmware kind, DHCP client architecture) and the tags an
//! operator put on it, rather than by its whole MAC. Between two selectors that can match the same node, the one
//! that refines the other (asks for everything the other asks, and more
//! narrowly) wins; two that overlap with neither refining the other are an
//! error when the overlay is built, so at most one ever decides a node.
//!
//! Owns the selector type, its parsing and the match and refinement rules.
//! Pure: the precedence against `[[nodes]]` and runtime assignments is the
//! inventory's policy.

use crate::tags::NodeTags;
use crate::types::ParseValueError;
use crate::{MacAddr, ProfileName};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One `[[selectors]]` entry. At least one criterion must be set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileSelector {
    pub profile: ProfileName,
    /// Leading octets of the MAC (`"52:54:00"`: a vendor OUI), one to five.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac_prefix: Option<MacPrefix>,
    /// How the node network-boots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firmware: Option<BootFirmware>,
    /// DHCP option 93 client architecture (0 x86 BIOS, 7 x86-64 UEFI,
    /// 11 arm64 UEFI, 16 x86-64 UEFI HTTP, 19 arm64 UEFI HTTP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<u16>,
    /// Node tags that must all be on the node with these values
    /// (`tags = { rack = "r12" }`); set with `kindling node tag MAC KEY=VALUE`.
    #[serde(default, skip_serializing_if = "NodeTags::is_empty")]
    pub tags: NodeTags,
}

/// The firmware kinds a selector can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BootFirmware {
    Bios,
    Uefi,
    UefiHttp,
}

impl BootFirmware {
    /// As written in the site overlay.
    pub fn as_str(self) -> &'static str {
        match self {
            BootFirmware::Bios => "bios",
            BootFirmware::Uefi => "uefi",
            BootFirmware::UefiHttp => "uefi-http",
        }
    }
}

/// What a booting node is known by when a selector is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub mac: MacAddr,
    pub firmware: Option<BootFirmware>,
    pub arch: Option<u16>,
    /// The operator's tags on the node (none: no tag selector matches).
    pub tags: NodeTags,
}

impl NodeFacts {
    /// Only the MAC is known (no DHCP exchange seen yet).
    pub fn mac_only(mac: MacAddr) -> Self {
        Self {
            mac,
            firmware: None,
            arch: None,
            tags: NodeTags::new(),
        }
    }
}

impl ProfileSelector {
    pub fn has_criteria(&self) -> bool {
        self.mac_prefix.is_some()
            || self.firmware.is_some()
            || self.arch.is_some()
            || !self.tags.is_empty()
    }

    /// Whether `node` meets every criterion. A fact the node has not told
    /// (yet) meets none.
    pub fn matches(&self, node: &NodeFacts) -> bool {
        self.has_criteria()
            && self.mac_prefix.as_ref().is_none_or(|p| p.covers(&node.mac))
            && self.firmware.is_none_or(|f| node.firmware == Some(f))
            && self.arch.is_none_or(|a| node.arch == Some(a))
            && self.tags.iter().all(|(k, v)| node.tags.get(k) == Some(v))
    }

    /// Whether some node could meet both.
    pub fn overlaps(&self, other: &Self) -> bool {
        let prefixes = match (&self.mac_prefix, &other.mac_prefix) {
            (Some(a), Some(b)) => a.extends(b) || b.extends(a),
            _ => true,
        };
        // Tags clash only where both ask for one key with different values.
        let tags = self
            .tags
            .iter()
            .all(|(k, v)| other.tags.get(k).is_none_or(|o| o == v));
        prefixes
            && compatible(self.firmware, other.firmware)
            && compatible(self.arch, other.arch)
            && tags
    }

    /// Whether every node `self` matches is matched by `other` too, and
    /// the two differ: `self` is the narrower rule.
    pub fn refines(&self, other: &Self) -> bool {
        let prefix = match (&self.mac_prefix, &other.mac_prefix) {
            (_, None) => true,
            (Some(a), Some(b)) => a.extends(b),
            (None, Some(_)) => false,
        };
        // `self` asks every tag `other` asks, with the same value.
        let tags = other.tags.iter().all(|(k, v)| self.tags.get(k) == Some(v));
        let criteria_differ = self.mac_prefix != other.mac_prefix
            || self.firmware != other.firmware
            || self.arch != other.arch
            || self.tags != other.tags;
        prefix
            && narrower(self.firmware, other.firmware)
            && narrower(self.arch, other.arch)
            && tags
            && criteria_differ
    }

    /// Of `selectors`, the one that decides `node`: among those matching,
    /// the one that refines every other match. Overlay validation makes
    /// the matches a chain, so there is one; `None` when nothing matches.
    pub fn decide<'a>(selectors: &'a [Self], node: &NodeFacts) -> Option<&'a Self> {
        let matching: Vec<&Self> = selectors.iter().filter(|s| s.matches(node)).collect();
        matching
            .iter()
            .find(|s| {
                matching
                    .iter()
                    .all(|o| std::ptr::eq(**s, *o) || s.refines(o))
            })
            .or(matching.first())
            .copied()
    }
}

fn compatible<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// `a` asks at least what `b` asks.
fn narrower<T: PartialEq>(a: Option<T>, b: Option<T>) -> bool {
    match (a, b) {
        (_, None) => true,
        (Some(a), Some(b)) => a == b,
        (None, Some(_)) => false,
    }
}

impl fmt::Display for ProfileSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(p) = &self.mac_prefix {
            parts.push(format!("mac_prefix {p}"));
        }
        if let Some(fw) = self.firmware {
            parts.push(format!("firmware {}", fw.as_str()));
        }
        if let Some(a) = self.arch {
            parts.push(format!("arch {a}"));
        }
        if !self.tags.is_empty() {
            parts.push(format!("tags {}", crate::tags::display(&self.tags)));
        }
        write!(f, "{} → {}", parts.join(", "), self.profile)
    }
}

/// One to five leading MAC octets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacPrefix(Vec<u8>);

impl MacPrefix {
    pub fn covers(&self, mac: &MacAddr) -> bool {
        mac.0.starts_with(&self.0)
    }

    /// `self` is `other` or longer with the same start.
    pub fn extends(&self, other: &MacPrefix) -> bool {
        self.0.starts_with(&other.0)
    }
}

impl fmt::Display for MacPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex: Vec<String> = self.0.iter().map(|b| format!("{b:02x}")).collect();
        f.write_str(&hex.join(":"))
    }
}

impl FromStr for MacPrefix {
    type Err = ParseValueError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseValueError::Mac {
            input: input.chars().take(64).collect(),
            reason,
        };
        let sep = if input.contains('-') { '-' } else { ':' };
        let octets = input
            .split(sep)
            .map(|part| {
                if part.len() == 2 {
                    u8::from_str_radix(part, 16).map_err(|_| err("octets are two hex digits"))
                } else {
                    Err(err("octets are two hex digits"))
                }
            })
            .collect::<Result<Vec<u8>, _>>()?;
        if octets.len() > 5 {
            return Err(err(
                "a prefix has one to five octets (six is a whole MAC: use [[nodes]])",
            ));
        }
        Ok(Self(octets))
    }
}

impl Serialize for MacPrefix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacPrefix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for MacPrefix {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "MacPrefix".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "One to five leading MAC octets, e.g. 52:54:00",
            "pattern": "^[0-9A-Fa-f]{2}([:-][0-9A-Fa-f]{2}){0,4}$"
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sel(
        profile: &str,
        prefix: Option<&str>,
        fw: Option<BootFirmware>,
        arch: Option<u16>,
    ) -> ProfileSelector {
        ProfileSelector {
            profile: profile.parse().unwrap(),
            mac_prefix: prefix.map(|p| p.parse().unwrap()),
            firmware: fw,
            arch,
            tags: NodeTags::new(),
        }
    }

    fn node(mac: &str, fw: Option<BootFirmware>, arch: Option<u16>) -> NodeFacts {
        NodeFacts {
            mac: mac.parse().unwrap(),
            firmware: fw,
            arch,
            tags: NodeTags::new(),
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> NodeTags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn tagged(profile: &str, pairs: &[(&str, &str)]) -> ProfileSelector {
        ProfileSelector {
            tags: tags(pairs),
            ..sel(profile, None, None, None)
        }
    }

    fn tagged_node(pairs: &[(&str, &str)]) -> NodeFacts {
        NodeFacts {
            tags: tags(pairs),
            ..node("52:54:00:6b:00:20", Some(BootFirmware::Uefi), Some(7))
        }
    }

    /// What overlay validation refuses: overlapping, neither narrower.
    fn ambiguous(a: &ProfileSelector, b: &ProfileSelector) -> bool {
        a.overlaps(b) && b.overlaps(a) && !a.refines(b) && !b.refines(a)
    }

    #[test]
    fn tag_selectors_need_every_tag_with_its_value() {
        let s = tagged("gpu", &[("rack", "r12"), ("gpu", "a100")]);
        assert!(s.has_criteria());
        assert!(s.matches(&tagged_node(&[
            ("rack", "r12"),
            ("gpu", "a100"),
            ("x", "y")
        ])));
        assert!(!s.matches(&tagged_node(&[("rack", "r12")])));
        assert!(!s.matches(&tagged_node(&[("rack", "r12"), ("gpu", "h100")])));
        assert!(
            !s.matches(&node(
                "52:54:00:6b:00:20",
                Some(BootFirmware::Uefi),
                Some(7)
            )),
            "a node with no tags matches no tag selector"
        );
        assert_eq!(s.to_string(), "tags gpu=a100,rack=r12 → gpu");
    }

    #[test]
    fn tag_only_selectors_conflict_refine_or_overlap_ambiguously() {
        let r12 = tagged("a", &[("rack", "r12")]);
        let r13 = tagged("b", &[("rack", "r13")]);
        let r12_gpu = tagged("b", &[("rack", "r12"), ("gpu", "a100")]);
        let gpu = tagged("b", &[("gpu", "a100")]);
        // Same key, other value: no node has both, so no overlap.
        assert!(!r12.overlaps(&r13) && !r13.overlaps(&r12));
        assert!(!ambiguous(&r12, &r13));
        // A superset of tags refines.
        assert!(r12_gpu.refines(&r12) && !r12.refines(&r12_gpu));
        assert!(!ambiguous(&r12, &r12_gpu));
        // Different keys: a node may carry both, neither is narrower.
        assert!(r12.overlaps(&gpu) && ambiguous(&r12, &gpu));
        assert!(!r12.refines(&r12), "a rule does not refine itself");
        assert!(
            ambiguous(&r12, &tagged("c", &[("rack", "r12")])),
            "duplicate"
        );
    }

    #[test]
    fn tags_mixed_with_firmware() {
        use BootFirmware::*;
        let uefi = sel("a", None, Some(Uefi), None);
        let bios = sel("a", None, Some(Bios), None);
        let r12 = tagged("b", &[("rack", "r12")]);
        let r12_uefi = ProfileSelector {
            firmware: Some(Uefi),
            ..tagged("c", &[("rack", "r12")])
        };
        let r12_bios = ProfileSelector {
            firmware: Some(Bios),
            ..tagged("c", &[("rack", "r12")])
        };
        // Firmware-only and tag-only: a tagged UEFI node meets both.
        assert!(ambiguous(&uefi, &r12));
        // Tags plus firmware refine either alone.
        assert!(r12_uefi.refines(&uefi) && r12_uefi.refines(&r12));
        assert!(!ambiguous(&r12_uefi, &uefi) && !ambiguous(&r12_uefi, &r12));
        // The firmware keeps them apart whatever the tags.
        assert!(!r12_uefi.overlaps(&r12_bios) && !r12_uefi.overlaps(&bios));
        let rules = [uefi.clone(), r12_uefi.clone()];
        let pick =
            |n: NodeFacts| ProfileSelector::decide(&rules, &n).map(|s| s.profile.to_string());
        assert_eq!(pick(tagged_node(&[("rack", "r12")])).as_deref(), Some("c"));
        assert_eq!(pick(tagged_node(&[("rack", "r13")])).as_deref(), Some("a"));
        assert_eq!(pick(tagged_node(&[])).as_deref(), Some("a"));
    }

    #[test]
    fn prefixes_parse_strictly() {
        assert_eq!(
            "52:54:00".parse::<MacPrefix>().unwrap().to_string(),
            "52:54:00"
        );
        assert_eq!(
            "52-54-0A".parse::<MacPrefix>().unwrap().to_string(),
            "52:54:0a"
        );
        for bad in ["", "5", "52:5", "52:54:00:6b:00:10", "52:zz", "52:54:"] {
            assert!(bad.parse::<MacPrefix>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn every_criterion_must_match_and_an_untold_fact_matches_nothing() {
        use BootFirmware::*;
        let s = sel("prod", Some("52:54:00"), Some(Uefi), None);
        assert!(s.matches(&node("52:54:00:6b:00:20", Some(Uefi), Some(7))));
        assert!(!s.matches(&node("52:54:00:6b:00:20", Some(Bios), Some(0))));
        assert!(!s.matches(&node("52:54:01:6b:00:20", Some(Uefi), Some(7))));
        assert!(!s.matches(&node("52:54:00:6b:00:20", None, None)));
        assert!(!sel("prod", None, None, None).matches(&node("52:54:00:6b:00:20", None, None)));
    }

    #[test]
    fn refinement_and_overlap() {
        use BootFirmware::*;
        let vendor = sel("dev", Some("52:54:00"), None, None);
        let vendor_uefi = sel("prod", Some("52:54:00"), Some(Uefi), None);
        let longer = sel("prod", Some("52:54:00:6b"), None, None);
        let uefi = sel("prod", None, Some(Uefi), None);
        let bios = sel("dev", None, Some(Bios), None);
        assert!(vendor_uefi.refines(&vendor) && !vendor.refines(&vendor_uefi));
        assert!(longer.refines(&vendor));
        assert!(vendor_uefi.refines(&uefi));
        assert!(!vendor.refines(&vendor), "a rule does not refine itself");
        assert!(vendor.overlaps(&uefi) && !vendor.refines(&uefi) && !uefi.refines(&vendor));
        assert!(!uefi.overlaps(&bios));
        assert!(!sel("a", Some("52"), None, None).overlaps(&sel("b", Some("53"), None, None)));
    }

    #[test]
    fn the_narrowest_match_decides() {
        use BootFirmware::*;
        let rules = [
            sel("dev", Some("52:54:00"), None, None),
            sel("prod", Some("52:54:00"), Some(Uefi), None),
            sel("prod-arm", Some("52:54:00"), Some(Uefi), Some(11)),
        ];
        let pick =
            |n: NodeFacts| ProfileSelector::decide(&rules, &n).map(|s| s.profile.to_string());
        assert_eq!(
            pick(node("52:54:00:00:00:01", Some(Bios), Some(0))).as_deref(),
            Some("dev")
        );
        assert_eq!(
            pick(node("52:54:00:00:00:01", Some(Uefi), Some(7))).as_deref(),
            Some("prod")
        );
        assert_eq!(
            pick(node("52:54:00:00:00:01", Some(Uefi), Some(11))).as_deref(),
            Some("prod-arm")
        );
        assert_eq!(pick(node("02:00:00:00:00:01", Some(Uefi), Some(7))), None);
    }
}
