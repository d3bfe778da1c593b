//! Whether a node is `joined`, decided by the appliance from its own Consul
//! catalog, never from the node's word: [`judge`], pure.
//!
//! A node is matched to its catalog entry by node name only: the hostname
//! the site gives its MAC (`[[nodes]] hostname`, else `node-xxxxxx` from
//! the MAC), the same name its Consul token's node identity carries
//! (`bootstrap::enroll_steps`). That token may register that one name and
//! nothing else, so a node cannot pass itself off as another; node meta
//! (which any node can set on its own entry) is checked, never used to
//! find the node. The expected meta is its profile's `tags` plus
//! `kindling-profile = <profile>`.
//!
//! Where the appliance runs Nomad, the node must also be in Nomad's client
//! node list under the same name with status `ready` (its Nomad client
//! registered and heartbeats).
//!
//! `installed` → `joined` when the entry is there with the expected meta
//! (and Nomad lists it ready); `joined` → `left` when it is gone (a
//! graceful leave, a reap of a dead node, a force-leave), its meta no
//! longer matches or Nomad says it is down; `left` → `joined` when it is
//! back. While a list cannot be read, states stay as they are and
//! `installed` nodes say why they cannot be checked.

use crate::catalog::CatalogNode;
use crate::nomad_nodes::{NomadNode, READY};
use kindling_api::nodes::{ConsulMember, NodeState};
use kindling_site::{MacAddr, SiteConfig};
use std::collections::BTreeMap;

/// The node meta key naming the node's profile.
pub const PROFILE_META: &str = "kindling-profile";

/// The event the appliance records when it saw a node join its catalog.
pub const CATALOG_JOINED: &str = "catalog-joined";
/// The event the appliance records when a joined node is no longer there.
pub const CATALOG_LEFT: &str = "catalog-left";

/// What the catalog must show for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub node: String,
    pub meta: BTreeMap<String, String>,
}

/// The part of the site that decides what a node's catalog entry must be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipRules {
    /// Why the appliance has no catalog to check (`None`: Consul runs).
    pub no_consul: Option<String>,
    /// Whether the appliance runs Nomad (then nodes must be in its list).
    pub nomad: bool,
    /// `[[nodes]] hostname`, where the site sets one.
    pub hostnames: BTreeMap<MacAddr, String>,
    /// Profile → its `tags`.
    pub profile_tags: BTreeMap<String, BTreeMap<String, String>>,
}

impl MembershipRules {
    pub fn from_site(site: &SiteConfig) -> Self {
        Self {
            no_consul: (!site.stack.consul.enabled).then(|| {
                "the appliance runs no Consul (stack.consul.enabled = false), so `joined` cannot be verified".to_string()
            }),
            nomad: site.stack.nomad.enabled,
            hostnames: site
                .nodes
                .iter()
                .filter_map(|n| n.hostname.clone().map(|h| (n.mac, h)))
                .collect(),
            profile_tags: site
                .profiles
                .iter()
                .map(|(name, p)| (name.to_string(), p.tags.clone()))
                .collect(),
        }
    }

    /// The catalog node name of `mac` (its Consul token's node identity).
    pub fn node_name(&self, mac: &MacAddr) -> String {
        self.hostnames
            .get(mac)
            .cloned()
            .unwrap_or_else(|| mac.default_hostname())
    }

    /// What `mac`, served `profile`, must look like in the catalog; why
    /// there is nothing to expect otherwise.
    pub fn expected(&self, mac: &MacAddr, profile: Option<&str>) -> Result<Expected, String> {
        let profile = profile.ok_or("no profile was served to it, so no node meta is expected")?;
        let tags = self
            .profile_tags
            .get(profile)
            .ok_or_else(|| format!("its profile {profile:?} is no longer defined by the site"))?;
        let mut meta = tags.clone();
        meta.insert(PROFILE_META.to_string(), profile.to_string());
        Ok(Expected {
            node: self.node_name(mac),
            meta,
        })
    }
}

/// What the appliance knows of its catalog now.
#[derive(Debug, Clone, Copy)]
pub enum CatalogView<'a> {
    /// The catalog cannot be consulted (no Consul, not read yet, an error).
    Unknown(&'a str),
    /// Node name → entry.
    Listed(&'a BTreeMap<String, CatalogNode>),
}

/// What the appliance knows of Nomad's client node list now.
#[derive(Debug, Clone, Copy)]
pub enum NomadView<'a> {
    /// The appliance runs no Nomad: nothing to check there.
    NotRun,
    /// The list cannot be consulted (not read yet, an error).
    Unknown(&'a str),
    /// Node name → entry.
    Listed(&'a BTreeMap<String, NomadNode>),
}

/// Why Nomad's list does not show `name` ready; `None` when it does (or
/// there is no Nomad).
fn nomad_problem(nomad: NomadView<'_>, name: &str) -> Option<String> {
    match nomad {
        NomadView::NotRun | NomadView::Unknown(_) => None,
        NomadView::Listed(nodes) => match nodes.get(name) {
            Some(n) if n.status == READY => None,
            Some(n) => Some(format!(
                "Nomad lists {} (ID {}) with status {} (expected {READY})",
                n.name, n.id, n.status
            )),
            None => Some(format!("not in the appliance's Nomad node list as {name}")),
        },
    }
}

/// One node as the inventory has it.
#[derive(Debug, Clone, Copy)]
pub struct Standing<'a> {
    pub state: NodeState,
    pub member: Option<&'a ConsulMember>,
    /// When the node last said `joined` in this state (Unix seconds).
    pub claimed: Option<u64>,
}

/// The judgement on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub state: NodeState,
    pub member: Option<ConsulMember>,
    pub reason: Option<String>,
    /// The event to record, when the node joined or left.
    pub event: Option<(&'static str, serde_json::Value)>,
}

/// `k=v, k=v`.
pub fn meta_text(meta: &BTreeMap<String, String>) -> String {
    meta.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How `actual` differs from `expected` (keys it lacks or has otherwise);
/// extra keys are the node's own business.
fn meta_differences(
    expected: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
) -> Vec<String> {
    expected
        .iter()
        .filter_map(|(k, want)| match actual.get(k) {
            Some(v) if v == want => None,
            Some(v) => Some(format!("{k}={v} (expected {want})")),
            None => Some(format!("no {k} (expected {want})")),
        })
        .collect()
}

/// Where `node` stands given the catalog; `None` for a node that is not
/// installed yet (the catalog says nothing about booting nodes).
pub fn judge(
    node: Standing<'_>,
    expected: Result<&Expected, &str>,
    view: CatalogView<'_>,
    nomad: NomadView<'_>,
    now: u64,
) -> Option<Verdict> {
    if !matches!(
        node.state,
        NodeState::Installed | NodeState::Joined | NodeState::Left
    ) {
        return None;
    }
    let claim = node
        .claimed
        .map(|at| format!("it says joined (at {at}), but "))
        .unwrap_or_default();
    let keep = |reason: String| Verdict {
        state: node.state,
        member: node.member.cloned(),
        reason: Some(reason),
        event: None,
    };
    let expected = match expected {
        Ok(e) => e,
        Err(why) => return Some(keep(format!("{claim}it cannot be checked: {why}"))),
    };
    let listed = match (view, nomad) {
        (CatalogView::Unknown(why), _) | (_, NomadView::Unknown(why)) => {
            return Some(keep(match node.state {
                NodeState::Installed => format!("{claim}it cannot be checked: {why}"),
                _ => format!("as last seen; it cannot be checked now: {why}"),
            }))
        }
        (CatalogView::Listed(listed), _) => listed,
    };
    let wanted = format!("as {} with {}", expected.node, meta_text(&expected.meta));
    let differences = listed
        .get(&expected.node)
        .map(|entry| (entry, meta_differences(&expected.meta, &entry.meta)));
    let in_nomad = nomad_problem(nomad, &expected.node);
    // A re-installed node: Consul keeps a dead node's entry until it is
    // reaped, so the catalog may still list the install a re-arm ended
    // (kept as `member`, marked left). That entry is not this install.
    let previous_install = |entry: &CatalogNode| {
        node.state == NodeState::Installed
            && node
                .member
                .is_some_and(|m| m.left_at.is_some() && m.id == entry.id)
    };
    match differences {
        Some((entry, diff)) if diff.is_empty() && previous_install(entry) => Some(keep(format!(
            "{claim}the catalog's {} (ID {}) is the install that was re-provisioned; waiting for this install's own agent",
            entry.node, entry.id
        ))),
        Some((entry, diff)) if diff.is_empty() && in_nomad.is_none() => {
            let same = node.member.filter(|m| {
                m.id == entry.id && m.left_at.is_none() && node.state == NodeState::Joined
            });
            let member = ConsulMember {
                node: entry.node.clone(),
                id: entry.id.clone(),
                address: entry.address.clone(),
                joined_at: same.map_or(now, |m| m.joined_at),
                seen_at: now,
                left_at: None,
            };
            let event = (same.is_none()).then(|| {
                (
                    CATALOG_JOINED,
                    serde_json::json!({"node": entry.node, "id": entry.id}),
                )
            });
            Some(Verdict {
                state: NodeState::Joined,
                member: Some(member),
                reason: None,
                event,
            })
        }
        found => {
            let why = match &found {
                Some((entry, diff)) if diff.is_empty() => format!(
                    "{} (ID {}) is in the appliance's Consul catalog, but {}",
                    entry.node,
                    entry.id,
                    in_nomad.unwrap_or_default()
                ),
                Some((entry, diff)) => format!(
                    "{} (ID {}) is in the appliance's Consul catalog, but its node meta has {}",
                    entry.node,
                    entry.id,
                    diff.join(", ")
                ),
                None => format!("not in the appliance's Consul catalog {wanted}"),
            };
            match node.state {
                NodeState::Joined => {
                    let member = node.member.cloned().map(|m| ConsulMember {
                        left_at: Some(now),
                        ..m
                    });
                    let detail = serde_json::json!({
                        "node": expected.node,
                        "id": member.as_ref().map(|m| m.id.clone()),
                    });
                    let why = match found {
                        None => format!(
                            "left the appliance's Consul catalog at {now}: {} is no longer listed (a graceful leave, a reap of a dead node or a force-leave)",
                            expected.node
                        ),
                        Some(_) => format!("no longer as expected since {now}: {why}"),
                    };
                    Some(Verdict {
                        state: NodeState::Left,
                        member,
                        reason: Some(why),
                        event: Some((CATALOG_LEFT, detail)),
                    })
                }
                _ => Some(keep(format!("{claim}{why}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use NodeState::*;

    const DEV: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);

    fn rules() -> MembershipRules {
        MembershipRules {
            no_consul: None,
            nomad: false,
            hostnames: BTreeMap::from([(DEV, "node-dev-1".to_string())]),
            profile_tags: BTreeMap::from([(
                "dev".to_string(),
                BTreeMap::from([("env".to_string(), "development".to_string())]),
            )]),
        }
    }

    fn entry(name: &str, env: &str) -> CatalogNode {
        CatalogNode {
            node: name.into(),
            id: "1b2c".into(),
            address: "192.168.100.120".into(),
            meta: BTreeMap::from([
                ("env".to_string(), env.to_string()),
                (PROFILE_META.to_string(), "dev".to_string()),
            ]),
        }
    }

    fn catalog(entries: &[CatalogNode]) -> BTreeMap<String, CatalogNode> {
        entries
            .iter()
            .map(|e| (e.node.clone(), e.clone()))
            .collect()
    }

    fn member(left_at: Option<u64>) -> ConsulMember {
        ConsulMember {
            node: "node-dev-1".into(),
            id: "1b2c".into(),
            address: "192.168.100.120".into(),
            joined_at: 10,
            seen_at: 20,
            left_at,
        }
    }

    #[test]
    fn expected_meta_is_the_profile_tags_and_its_name_under_the_site_hostname() {
        let e = rules().expected(&DEV, Some("dev")).unwrap();
        assert_eq!(e.node, "node-dev-1");
        assert_eq!(meta_text(&e.meta), "env=development, kindling-profile=dev");
        let stranger: MacAddr = "0c:42:a1:00:00:07".parse().unwrap();
        assert_eq!(
            rules().expected(&stranger, Some("dev")).unwrap().node,
            "node-000007"
        );
        assert!(rules()
            .expected(&DEV, None)
            .unwrap_err()
            .contains("no profile"));
        assert!(rules()
            .expected(&DEV, Some("gpu"))
            .unwrap_err()
            .contains("gpu"));
    }

    /// (state, member, claimed, catalog) → (state, reason contains, event).
    #[test]
    fn the_whole_table() {
        let expected = rules().expected(&DEV, Some("dev")).unwrap();
        let good = catalog(&[entry("node-dev-1", "development")]);
        let wrong_meta = catalog(&[entry("node-dev-1", "production")]);
        let other_name = catalog(&[entry("node-dev-2", "development")]);
        let empty = catalog(&[]);
        let joined = member(None);
        let gone = member(Some(30));
        type Row<'a> = (
            NodeState,
            Option<&'a ConsulMember>,
            Option<u64>,
            CatalogView<'a>,
            NodeState,
            &'a str,
            Option<&'a str>,
        );
        let rows: Vec<Row<'_>> = vec![
            (Installed, None, None, CatalogView::Listed(&good), Joined, "", Some(CATALOG_JOINED)),
            (Installed, None, Some(5), CatalogView::Listed(&empty), Installed,
             "it says joined (at 5), but not in the appliance's Consul catalog as node-dev-1 with env=development, kindling-profile=dev", None),
            (Installed, None, None, CatalogView::Listed(&other_name), Installed, "not in the appliance's Consul catalog as node-dev-1", None),
            (Installed, None, Some(5), CatalogView::Listed(&wrong_meta), Installed,
             "node-dev-1 (ID 1b2c) is in the appliance's Consul catalog, but its node meta has env=production (expected development)", None),
            (Installed, None, Some(5), CatalogView::Unknown("Consul is down"), Installed, "it cannot be checked: Consul is down", None),
            (Joined, Some(&joined), None, CatalogView::Listed(&good), Joined, "", None),
            (Joined, Some(&joined), None, CatalogView::Listed(&empty), Left, "left the appliance's Consul catalog at 100", Some(CATALOG_LEFT)),
            (Joined, Some(&joined), None, CatalogView::Listed(&wrong_meta), Left, "no longer as expected since 100", Some(CATALOG_LEFT)),
            (Joined, Some(&joined), None, CatalogView::Unknown("Consul is down"), Joined, "as last seen", None),
            (Left, Some(&gone), None, CatalogView::Listed(&good), Joined, "", Some(CATALOG_JOINED)),
            (Left, Some(&gone), None, CatalogView::Listed(&empty), Left, "not in the appliance's Consul catalog", None),
        ];
        for (i, (state, member, claimed, view, want, reason, event)) in rows.into_iter().enumerate()
        {
            let node = Standing {
                state,
                member,
                claimed,
            };
            let v = judge(node, Ok(&expected), view, NomadView::NotRun, 100).unwrap();
            assert_eq!(v.state, want, "row {i}");
            let got = v.reason.clone().unwrap_or_default();
            assert!(got.contains(reason), "row {i}: {got:?} lacks {reason:?}");
            assert_eq!(reason.is_empty(), v.reason.is_none(), "row {i}: {got:?}");
            assert_eq!(v.event.map(|e| e.0), event, "row {i}");
            if want == Joined {
                let m = v.member.unwrap();
                assert_eq!((m.id.as_str(), m.left_at), ("1b2c", None), "row {i}");
                // Seen now, unless the catalog could not be read.
                assert_eq!(m.seen_at == 100, reason.is_empty(), "row {i}");
            }
        }
    }

    #[test]
    fn a_joined_node_keeps_when_it_joined_and_a_rejoin_starts_again() {
        let expected = rules().expected(&DEV, Some("dev")).unwrap();
        let good = catalog(&[entry("node-dev-1", "development")]);
        let joined = member(None);
        let still = Standing {
            state: Joined,
            member: Some(&joined),
            claimed: None,
        };
        let v = judge(
            still,
            Ok(&expected),
            CatalogView::Listed(&good),
            NomadView::NotRun,
            100,
        )
        .unwrap();
        assert_eq!(v.member.unwrap().joined_at, 10);
        let gone = member(Some(50));
        let back = Standing {
            state: Left,
            member: Some(&gone),
            claimed: None,
        };
        let v = judge(
            back,
            Ok(&expected),
            CatalogView::Listed(&good),
            NomadView::NotRun,
            100,
        )
        .unwrap();
        assert_eq!(v.member.unwrap().joined_at, 100);
    }

    /// After a re-arm the old install's entry (same ID) does not make the
    /// re-installed node joined; its new agent's entry (a new ID) does.
    #[test]
    fn a_reinstalled_node_is_not_joined_by_its_old_installs_entry() {
        let expected = rules().expected(&DEV, Some("dev")).unwrap();
        let retired = member(Some(50));
        let node = Standing {
            state: Installed,
            member: Some(&retired),
            claimed: None,
        };
        let old = catalog(&[entry("node-dev-1", "development")]);
        let v = judge(
            node,
            Ok(&expected),
            CatalogView::Listed(&old),
            NomadView::NotRun,
            100,
        )
        .unwrap();
        assert_eq!(v.state, Installed);
        assert!(v.reason.unwrap().contains("re-provisioned"));
        let mut fresh = entry("node-dev-1", "development");
        fresh.id = "9e8d".into();
        let new = catalog(&[fresh]);
        let v = judge(
            node,
            Ok(&expected),
            CatalogView::Listed(&new),
            NomadView::NotRun,
            100,
        )
        .unwrap();
        assert_eq!(v.state, Joined);
        assert_eq!(v.member.unwrap().id, "9e8d");
    }

    #[test]
    fn booting_nodes_are_not_judged_and_unexpected_nodes_say_why() {
        let expected = rules().expected(&DEV, Some("dev")).unwrap();
        let good = catalog(&[entry("node-dev-1", "development")]);
        for state in [Discovered, Booting] {
            let node = Standing {
                state,
                member: None,
                claimed: None,
            };
            assert_eq!(
                judge(
                    node,
                    Ok(&expected),
                    CatalogView::Listed(&good),
                    NomadView::NotRun,
                    1
                ),
                None
            );
        }
        let node = Standing {
            state: Installed,
            member: None,
            claimed: Some(3),
        };
        let v = judge(
            node,
            Err("no profile was served to it"),
            CatalogView::Listed(&good),
            NomadView::NotRun,
            4,
        )
        .unwrap();
        assert_eq!(v.state, Installed);
        assert!(v.reason.unwrap().contains("cannot be checked: no profile"));
    }

    /// Where Nomad runs, the Consul entry alone is not enough.
    #[test]
    fn with_nomad_a_node_is_joined_only_when_nomad_lists_it_ready() {
        let expected = rules().expected(&DEV, Some("dev")).unwrap();
        let good = catalog(&[entry("node-dev-1", "development")]);
        let nomad = |status: &str| {
            BTreeMap::from([(
                "node-dev-1".to_string(),
                NomadNode {
                    name: "node-dev-1".into(),
                    id: "9a7f".into(),
                    datacenter: "dc1".into(),
                    status: status.into(),
                },
            )])
        };
        let (ready, down, none) = (nomad(READY), nomad("down"), BTreeMap::new());
        let joined = member(None);
        type Row<'a> = (
            NodeState,
            Option<&'a ConsulMember>,
            NomadView<'a>,
            NodeState,
            &'a str,
            Option<&'a str>,
        );
        let rows: Vec<Row<'_>> = vec![
            (Installed, None, NomadView::Listed(&ready), Joined, "", Some(CATALOG_JOINED)),
            (Installed, None, NomadView::Listed(&none), Installed,
             "node-dev-1 (ID 1b2c) is in the appliance's Consul catalog, but not in the appliance's Nomad node list as node-dev-1", None),
            (Installed, None, NomadView::Listed(&down), Installed, "Nomad lists node-dev-1 (ID 9a7f) with status down (expected ready)", None),
            (Installed, None, NomadView::Unknown("Nomad is sealed off"), Installed, "it cannot be checked: Nomad is sealed off", None),
            (Joined, Some(&joined), NomadView::Listed(&ready), Joined, "", None),
            (Joined, Some(&joined), NomadView::Listed(&down), Left, "no longer as expected since 100", Some(CATALOG_LEFT)),
            (Joined, Some(&joined), NomadView::Unknown("Nomad is down"), Joined, "as last seen; it cannot be checked now: Nomad is down", None),
        ];
        for (i, (state, member, view, want, reason, event)) in rows.into_iter().enumerate() {
            let node = Standing {
                state,
                member,
                claimed: None,
            };
            let v = judge(node, Ok(&expected), CatalogView::Listed(&good), view, 100).unwrap();
            assert_eq!(v.state, want, "row {i}");
            let got = v.reason.clone().unwrap_or_default();
            assert!(got.contains(reason), "row {i}: {got:?} lacks {reason:?}");
            assert_eq!(reason.is_empty(), v.reason.is_none(), "row {i}: {got:?}");
            assert_eq!(v.event.map(|e| e.0), event, "row {i}");
        }
    }
}
