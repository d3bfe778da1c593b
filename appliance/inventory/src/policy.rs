//! `ProfilePolicy`: which profile a node gets, by one precedence used by the
//! PXE service and the API alike: a runtime assignment (to a profile the site
//! defines), then the site's `[[nodes]]` (its whole MAC), then the site's
//! `[[selectors]]` (MAC prefix, firmware, architecture, the operator's node
//! tags; the narrowest matching rule), then the unknown-MAC policy.
//!
//! Pure: reads nothing, writes nothing.

use kindling_api::nodes::{Firmware, ProfileChoice};
use kindling_site::{
    BootFirmware, MacAddr, NodeFacts, ProfileSelector, SiteConfig, UnknownMacPolicy,
};
use std::collections::{BTreeMap, BTreeSet};

/// The part of the site that decides profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePolicy {
    /// Profiles the site defines.
    pub profiles: BTreeSet<String>,
    /// `[[nodes]]`: MAC → profile.
    pub reservations: BTreeMap<MacAddr, String>,
    /// `[[selectors]]`, validated: overlapping rules refine each other.
    pub selectors: Vec<ProfileSelector>,
    pub unknown: UnknownMacPolicy,
    pub default_profile: Option<String>,
}

impl ProfilePolicy {
    pub fn from_site(site: &SiteConfig) -> Self {
        Self {
            profiles: site.profiles.keys().map(|p| p.to_string()).collect(),
            reservations: site
                .nodes
                .iter()
                .map(|n| (n.mac, n.profile.to_string()))
                .collect(),
            selectors: site.selectors.clone(),
            unknown: site.pxe.unknown,
            default_profile: site.pxe.default_profile.as_ref().map(|p| p.to_string()),
        }
    }

    /// The profile `node` gets given the runtime `assignments`.
    pub fn resolve(
        &self,
        assignments: &BTreeMap<MacAddr, String>,
        node: &NodeFacts,
    ) -> ProfileChoice {
        let mac = &node.mac;
        if let Some(p) = assignments.get(mac).filter(|p| self.profiles.contains(*p)) {
            return ProfileChoice::Assigned(p.clone());
        }
        if let Some(p) = self.reservations.get(mac) {
            return ProfileChoice::Site(p.clone());
        }
        if let Some(rule) = ProfileSelector::decide(&self.selectors, node) {
            return ProfileChoice::Selected(rule.profile.to_string());
        }
        match (self.unknown, &self.default_profile) {
            (UnknownMacPolicy::DefaultProfile, Some(p)) => ProfileChoice::Default(p.clone()),
            (UnknownMacPolicy::Menu, _) => ProfileChoice::Menu,
            _ => ProfileChoice::NotServed,
        }
    }
}

/// What a selector may ask of a node the inventory has seen, but its tags
/// (the inventory adds those from the assignments file).
pub fn node_facts(mac: MacAddr, arch: Option<u16>, firmware: Option<Firmware>) -> NodeFacts {
    NodeFacts {
        mac,
        arch,
        tags: Default::default(),
        firmware: firmware.and_then(|f| match f {
            Firmware::Bios => Some(BootFirmware::Bios),
            Firmware::Uefi => Some(BootFirmware::Uefi),
            Firmware::UefiHttp => Some(BootFirmware::UefiHttp),
            Firmware::Other | Firmware::None => None,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    fn policy(unknown: UnknownMacPolicy, default: Option<&str>) -> ProfilePolicy {
        ProfilePolicy {
            profiles: ["dev", "prod"].into_iter().map(String::from).collect(),
            reservations: [(A, "dev".to_string())].into_iter().collect(),
            selectors: vec![ProfileSelector {
                profile: "prod".parse().unwrap(),
                mac_prefix: Some("02:00:00".parse().unwrap()),
                firmware: Some(BootFirmware::Uefi),
                arch: None,
                tags: Default::default(),
            }],
            unknown,
            default_profile: default.map(String::from),
        }
    }

    fn bios(mac: MacAddr) -> NodeFacts {
        node_facts(mac, Some(0), Some(Firmware::Bios))
    }

    fn uefi(mac: MacAddr) -> NodeFacts {
        node_facts(mac, Some(7), Some(Firmware::Uefi))
    }

    #[test]
    fn precedence_table() {
        use ProfileChoice::*;
        use UnknownMacPolicy as U;
        let assigned = |p: &str| {
            [(A, p.to_string()), (B, p.to_string())]
                .into_iter()
                .collect()
        };
        let none = BTreeMap::new();
        let rows: Vec<(
            ProfilePolicy,
            BTreeMap<MacAddr, String>,
            NodeFacts,
            ProfileChoice,
        )> = vec![
            (
                policy(U::Ignore, None),
                assigned("prod"),
                bios(A),
                Assigned("prod".into()),
            ),
            (
                policy(U::Ignore, None),
                assigned("gone"),
                bios(A),
                Site("dev".into()),
            ),
            (
                policy(U::Ignore, None),
                none.clone(),
                bios(A),
                Site("dev".into()),
            ),
            (
                policy(U::Ignore, None),
                assigned("gone"),
                bios(B),
                NotServed,
            ),
            (
                policy(U::DefaultProfile, Some("prod")),
                none.clone(),
                bios(B),
                Default("prod".into()),
            ),
            (
                policy(U::DefaultProfile, None),
                none.clone(),
                bios(B),
                NotServed,
            ),
            (policy(U::Menu, None), none.clone(), bios(B), Menu),
            (
                policy(U::Menu, None),
                assigned("dev"),
                bios(B),
                Assigned("dev".into()),
            ),
            (
                policy(U::Ignore, None),
                none.clone(),
                uefi(B),
                Selected("prod".into()),
            ),
            (
                policy(U::DefaultProfile, Some("dev")),
                none.clone(),
                node_facts(B, None, None),
                Default("dev".into()),
            ),
            (
                policy(U::Ignore, None),
                none.clone(),
                uefi(A),
                Site("dev".into()),
            ),
            (
                policy(U::Ignore, None),
                assigned("dev"),
                uefi(B),
                Assigned("dev".into()),
            ),
        ];
        for (i, (policy, assignments, node, want)) in rows.into_iter().enumerate() {
            assert_eq!(policy.resolve(&assignments, &node), want, "row {i}");
        }
    }
}
