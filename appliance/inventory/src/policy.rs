//! `ProfilePolicy`: which profile a MAC gets, by one precedence used by the
//! PXE service and the API alike: a runtime assignment (to a profile the site
//! defines), then the site's `[[nodes]]`, then the unknown-MAC policy.
//!
//! Pure: reads nothing, writes nothing.

use kindling_api::nodes::ProfileChoice;
use kindling_site::{MacAddr, SiteConfig, UnknownMacPolicy};
use std::collections::{BTreeMap, BTreeSet};

/// The part of the site that decides profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePolicy {
    /// Profiles the site defines.
    pub profiles: BTreeSet<String>,
    /// `[[nodes]]`: MAC → profile.
    pub reservations: BTreeMap<MacAddr, String>,
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
            unknown: site.pxe.unknown,
            default_profile: site.pxe.default_profile.as_ref().map(|p| p.to_string()),
        }
    }

    /// The profile `mac` gets given the runtime `assignments`.
    pub fn resolve(&self, assignments: &BTreeMap<MacAddr, String>, mac: &MacAddr) -> ProfileChoice {
        if let Some(p) = assignments.get(mac).filter(|p| self.profiles.contains(*p)) {
            return ProfileChoice::Assigned(p.clone());
        }
        if let Some(p) = self.reservations.get(mac) {
            return ProfileChoice::Site(p.clone());
        }
        match (self.unknown, &self.default_profile) {
            (UnknownMacPolicy::DefaultProfile, Some(p)) => ProfileChoice::Default(p.clone()),
            (UnknownMacPolicy::Menu, _) => ProfileChoice::Menu,
            _ => ProfileChoice::NotServed,
        }
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
            unknown,
            default_profile: default.map(String::from),
        }
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
            MacAddr,
            ProfileChoice,
        )> = vec![
            (
                policy(U::Ignore, None),
                assigned("prod"),
                A,
                Assigned("prod".into()),
            ),
            (
                policy(U::Ignore, None),
                assigned("gone"),
                A,
                Site("dev".into()),
            ),
            (policy(U::Ignore, None), none.clone(), A, Site("dev".into())),
            (policy(U::Ignore, None), assigned("gone"), B, NotServed),
            (
                policy(U::DefaultProfile, Some("prod")),
                none.clone(),
                B,
                Default("prod".into()),
            ),
            (policy(U::DefaultProfile, None), none.clone(), B, NotServed),
            (policy(U::Menu, None), none.clone(), B, Menu),
            (
                policy(U::Menu, None),
                assigned("dev"),
                B,
                Assigned("dev".into()),
            ),
        ];
        for (i, (policy, assignments, mac, want)) in rows.into_iter().enumerate() {
            assert_eq!(policy.resolve(&assignments, &mac), want, "row {i}");
        }
    }
}
