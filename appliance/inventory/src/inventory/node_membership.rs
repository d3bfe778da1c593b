//! The membership part of a node's record: where its Consul catalog entry
//! (and, where Nomad runs, its Nomad client) stands (`joined`, `left`, or
//! why it is still `installed`), and its last failure. The decision is
//! `crate::membership::judge`'s; this applies it under the inventory's
//! lock, for every node when a new catalog or Nomad listing comes in and
//! for one node when it reports an event.

use super::{lock, push_event, Inventory, NodeRecord, Nodes};
use crate::catalog::{CatalogNode, CatalogState};
use crate::membership::{judge, CatalogView, MembershipRules, NomadView, Standing};
use crate::nomad_nodes::{NomadNode, NomadNodesState};
use crate::shared_file::Watched;
use crate::transitions::JOINED;
use kindling_api::nodes::{FailureKind, NodeEvent, NodeFailure, NodeState};
use kindling_site::MacAddr;
use std::collections::BTreeMap;

/// The longest step name and error text kept from a node's report.
const STEP_CHARS: usize = 80;
const ERROR_CHARS: usize = 2000;

/// What the inventory judges membership with.
#[derive(Debug)]
pub(super) struct Membership {
    rules: MembershipRules,
    catalog: CatalogState,
    /// Node name → entry of the last good listing.
    listed: BTreeMap<String, CatalogNode>,
    nomad: NomadNodesState,
    /// Node name → Nomad client of the last good listing.
    nomad_listed: BTreeMap<String, NomadNode>,
}

impl Default for Membership {
    fn default() -> Self {
        Self {
            rules: MembershipRules {
                no_consul: Some("this process checks no Consul catalog".into()),
                ..MembershipRules::default()
            },
            catalog: CatalogState::NotListed,
            listed: BTreeMap::new(),
            nomad: Watched::NotListed,
            nomad_listed: BTreeMap::new(),
        }
    }
}

impl Membership {
    fn view(&self) -> CatalogView<'_> {
        if let Some(why) = &self.rules.no_consul {
            return CatalogView::Unknown(why);
        }
        match self.catalog.unusable(
            "the appliance has not listed its Consul catalog yet (kindlingd api lists it once the stack bootstrap gave it its Consul token)",
        ) {
            Some(why) => CatalogView::Unknown(why),
            None => CatalogView::Listed(&self.listed),
        }
    }

    fn nomad_view(&self) -> NomadView<'_> {
        if !self.rules.nomad {
            return NomadView::NotRun;
        }
        match self.nomad.unusable(
            "the appliance has not listed Nomad's client nodes yet (kindlingd nomad-nodes lists them once the stack bootstrap kept Nomad's management token)",
        ) {
            Some(why) => NomadView::Unknown(why),
            None => NomadView::Listed(&self.nomad_listed),
        }
    }
}

/// When the node last said `joined` in its current state.
fn claimed(record: &NodeRecord) -> Option<u64> {
    record
        .seen
        .events
        .iter()
        .rev()
        .find(|e| e.event == JOINED && e.at >= record.seen.state_changed)
        .map(|e| e.at)
}

/// Judges the records `which` selects, in place; true if any changed.
fn judge_records(nodes: &mut Nodes, which: Option<MacAddr>, now: u64) -> bool {
    let Nodes {
        map, membership, ..
    } = nodes;
    let rules = &membership.rules;
    // A name two records expect cannot be told apart in the catalog.
    let mut names: BTreeMap<String, Vec<MacAddr>> = BTreeMap::new();
    for r in map.values().filter(|r| r.state >= NodeState::Installed) {
        names
            .entry(rules.node_name(&r.mac))
            .or_default()
            .push(r.mac);
    }
    let view = membership.view();
    let nomad = membership.nomad_view();
    let mut changed = false;
    for record in map.values_mut() {
        if which.is_some_and(|m| m != record.mac) {
            continue;
        }
        let expected = rules.expected(&record.mac, record.seen.profile.as_deref());
        let shared = expected.as_ref().ok().and_then(|e| {
            names.get(&e.node).filter(|macs| macs.len() > 1).map(|macs| {
                let macs: Vec<String> = macs.iter().map(MacAddr::to_string).collect();
                format!(
                    "the node name {} is expected for {}, so the catalog cannot tell them apart; give them distinct hostnames",
                    e.node,
                    macs.join(" and ")
                )
            })
        });
        let expected = match (&expected, &shared) {
            (_, Some(why)) => Err(why.as_str()),
            (Ok(e), None) => Ok(e),
            (Err(why), None) => Err(why.as_str()),
        };
        let standing = Standing {
            state: record.state,
            member: record.seen.consul.as_ref(),
            claimed: claimed(record),
        };
        let Some(verdict) = judge(standing, expected, view, nomad, now) else {
            if record.seen.reason.take().is_some() {
                changed = true;
            }
            continue;
        };
        if verdict.state != record.state {
            record.state = verdict.state;
            record.seen.state_changed = now;
        }
        record.seen.reason = verdict.reason;
        record.seen.consul = verdict.member;
        if let Some((event, detail)) = verdict.event {
            tracing::info!(mac = %record.mac, event, %detail, "inventory: catalog");
            push_event(
                record,
                NodeEvent {
                    at: now,
                    event: event.to_string(),
                    detail,
                },
            );
        }
        changed = true;
    }
    changed
}

/// The text of `key` in an event body, bounded.
fn field(detail: &serde_json::Value, key: &str, max: usize) -> Option<String> {
    detail
        .get(key)
        .and_then(serde_json::Value::as_str)
        .map(|s| s.chars().take(max).collect())
}

impl Inventory {
    /// Sets what decides a node's catalog entry (from the site).
    pub fn with_membership(self, rules: MembershipRules) -> Self {
        {
            let mut nodes = lock(&self.nodes);
            nodes.membership.rules = rules;
            let now = kindling_clock::unix_now();
            if judge_records(&mut nodes, None, now) {
                nodes.dirty = true;
            }
        }
        self
    }

    /// A new view of the catalog: every installed, joined or left node is
    /// judged against it.
    pub fn set_catalog(&self, catalog: CatalogState, now: u64) {
        self.rejudge_all(now, |m| {
            m.listed = match &catalog {
                CatalogState::Listed(file) => file.by_name(),
                _ => BTreeMap::new(),
            };
            m.catalog = catalog;
        });
    }

    /// A new view of Nomad's client nodes: every installed, joined or left
    /// node is judged against it (where the site runs Nomad).
    pub fn set_nomad_nodes(&self, listing: NomadNodesState, now: u64) {
        self.rejudge_all(now, |m| {
            m.nomad_listed = match &listing {
                Watched::Listed(file) => file.by_name(),
                _ => BTreeMap::new(),
            };
            m.nomad = listing;
        });
    }

    /// Changes what membership is judged from, then judges every node.
    fn rejudge_all(&self, now: u64, change: impl FnOnce(&mut Membership)) {
        let mut nodes = lock(&self.nodes);
        change(&mut nodes.membership);
        if judge_records(&mut nodes, None, now) {
            nodes.dirty = true;
        }
    }

    /// Judges `mac` after its event (its claim, or its `installed`).
    pub(super) fn judge_one(nodes: &mut Nodes, mac: MacAddr, now: u64) {
        if judge_records(nodes, Some(mac), now) {
            nodes.dirty = true;
        }
    }
}

/// Records `kind` as the node's last failure.
pub(super) fn fail(
    record: &mut NodeRecord,
    kind: FailureKind,
    step: Option<String>,
    error: String,
    now: u64,
) {
    record.seen.failure = Some(NodeFailure {
        kind,
        at: now,
        step,
        error,
    });
}

/// The node agent's `failed` event: its step and error.
pub(super) fn agent_failed(record: &mut NodeRecord, detail: &serde_json::Value, now: u64) {
    let step = field(detail, "step", STEP_CHARS);
    let error = field(detail, "error", ERROR_CHARS)
        .unwrap_or_else(|| "the node reported a failure without an error text".into());
    fail(record, FailureKind::AgentFailed, step, error, now);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::catalog::CatalogFile;
    use crate::testing::lab_policy;
    use kindling_api::nodes::Firmware;

    const DEV: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);

    fn rules() -> MembershipRules {
        MembershipRules::from_site(&{
            let mut site = crate::testing::lab_site();
            site.stack.consul.enabled = true;
            site
        })
    }

    fn listed(meta_env: &str) -> CatalogState {
        CatalogState::Listed(CatalogFile {
            listed_ms: 1,
            index: 5,
            nodes: vec![CatalogNode {
                node: "node-dev-1".into(),
                id: "8f3e".into(),
                address: "192.168.100.100".into(),
                meta: [
                    ("env", meta_env),
                    ("role", "worker"),
                    ("kindling-profile", "dev"),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            }],
            problem: None,
        })
    }

    fn installed(dir: &std::path::Path) -> Inventory {
        let inv = Inventory::open(dir, lab_policy())
            .0
            .with_membership(rules());
        inv.observe_dhcp(DEV, None, Some(0), Firmware::Bios, 1);
        inv.observe_boot_script(DEV, "dev", 2);
        inv.record_event(DEV, "installed", serde_json::Value::Null, 3)
            .unwrap();
        inv
    }

    #[test]
    fn a_claim_is_not_joined_until_the_catalog_shows_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let inv = installed(dir.path());
        let state = inv
            .record_event(DEV, JOINED, serde_json::json!({"event": "joined"}), 4)
            .unwrap();
        assert_eq!(state, NodeState::Installed);
        let reason = inv.node(&DEV).unwrap().seen.reason.unwrap();
        assert!(
            reason.contains("it says joined (at 4), but it cannot be checked: the appliance has not listed its Consul catalog yet"),
            "{reason}"
        );

        inv.set_catalog(listed("production"), 5);
        let node = inv.node(&DEV).unwrap();
        assert_eq!(node.state, NodeState::Installed);
        assert!(
            node.seen
                .reason
                .unwrap()
                .contains("env=production (expected development)"),
            "wrong meta is named"
        );

        inv.set_catalog(listed("development"), 6);
        let node = inv.node(&DEV).unwrap();
        assert_eq!(node.state, NodeState::Joined);
        assert_eq!(node.seen.consul.as_ref().unwrap().id, "8f3e");
        assert_eq!(node.seen.reason, None);
        assert_eq!(node.seen.events.last().unwrap().event, "catalog-joined");

        inv.set_catalog(CatalogState::Listed(CatalogFile::default()), 7);
        let node = inv.node(&DEV).unwrap();
        assert_eq!(node.state, NodeState::Left);
        assert_eq!(node.seen.consul.unwrap().left_at, Some(7));
        assert!(inv.flush_if_dirty().unwrap());

        // Re-armed: a new cycle forgets the old failure; the old install's
        // catalog entry stays marked left (when it left, here at 7).
        inv.apply_rearm(DEV, 1, 8);
        let node = inv.node(&DEV).unwrap();
        assert_eq!(node.seen.reason, None);
        assert_eq!(node.seen.consul.unwrap().left_at, Some(7));
    }

    #[test]
    fn where_nomad_runs_the_node_joins_once_nomad_lists_it_ready() {
        use crate::nomad_nodes::{NomadNodesFile, READY};
        let dir = tempfile::tempdir().unwrap();
        let mut with_nomad = rules();
        with_nomad.nomad = true;
        let inv = Inventory::open(dir.path(), lab_policy())
            .0
            .with_membership(with_nomad);
        inv.set_catalog(listed("development"), 1);
        inv.observe_dhcp(DEV, None, Some(0), Firmware::Bios, 1);
        inv.observe_boot_script(DEV, "dev", 2);
        let state = inv
            .record_event(DEV, "installed", serde_json::Value::Null, 3)
            .unwrap();
        assert_eq!(state, NodeState::Installed, "Nomad's list not read yet");
        let reason = inv.node(&DEV).unwrap().seen.reason.unwrap();
        assert!(
            reason.contains("has not listed Nomad's client nodes yet"),
            "{reason}"
        );

        let nomad = |status: &str| {
            Watched::Listed(NomadNodesFile {
                listed_ms: 1,
                nodes: vec![NomadNode {
                    name: "node-dev-1".into(),
                    id: "77aa".into(),
                    datacenter: "dc1".into(),
                    status: status.into(),
                }],
                problem: None,
            })
        };
        inv.set_nomad_nodes(nomad("initializing"), 4);
        let reason = inv.node(&DEV).unwrap().seen.reason.unwrap();
        assert!(reason.contains("with status initializing"), "{reason}");
        inv.set_nomad_nodes(nomad(READY), 5);
        assert_eq!(inv.node(&DEV).unwrap().state, NodeState::Joined);
        inv.set_nomad_nodes(nomad("down"), 6);
        let node = inv.node(&DEV).unwrap();
        assert_eq!(node.state, NodeState::Left);
        assert!(node.seen.reason.unwrap().contains("status down"));
        inv.set_nomad_nodes(Watched::Unreadable("nomad-nodes.json: bad JSON".into()), 7);
        assert_eq!(inv.node(&DEV).unwrap().state, NodeState::Left, "kept");
    }

    #[test]
    fn an_installed_node_already_listed_joins_on_its_event() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(dir.path(), lab_policy())
            .0
            .with_membership(rules());
        inv.set_catalog(listed("development"), 1);
        inv.observe_dhcp(DEV, None, Some(0), Firmware::Bios, 1);
        inv.observe_boot_script(DEV, "dev", 2);
        let state = inv
            .record_event(DEV, "installed", serde_json::Value::Null, 3)
            .unwrap();
        assert_eq!(state, NodeState::Joined);
    }

    #[test]
    fn without_consul_a_claim_stays_installed_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let inv = Inventory::open(dir.path(), lab_policy())
            .0
            .with_membership(MembershipRules::from_site(&crate::testing::lab_site()));
        inv.observe_dhcp(DEV, None, Some(0), Firmware::Bios, 1);
        inv.observe_boot_script(DEV, "dev", 2);
        inv.record_event(DEV, "installed", serde_json::Value::Null, 3)
            .unwrap();
        inv.set_catalog(listed("development"), 4);
        let state = inv
            .record_event(DEV, JOINED, serde_json::Value::Null, 5)
            .unwrap();
        assert_eq!(state, NodeState::Installed, "a stale file is not believed");
        let reason = inv.node(&DEV).unwrap().seen.reason.unwrap();
        assert!(reason.contains("stack.consul.enabled = false"), "{reason}");
    }

    #[test]
    fn the_agent_failing_is_recorded_with_its_step_and_error() {
        let dir = tempfile::tempdir().unwrap();
        let inv = installed(dir.path());
        let body = serde_json::json!({"event": "failed", "step": "consul-join", "error": "connection refused"});
        assert_eq!(
            inv.record_event(DEV, "failed", body, 9).unwrap(),
            NodeState::Installed
        );
        let failure = inv.node(&DEV).unwrap().seen.failure.unwrap();
        assert_eq!(failure.kind, FailureKind::AgentFailed);
        assert_eq!(failure.step.as_deref(), Some("consul-join"));
        assert_eq!(
            (failure.error.as_str(), failure.at),
            ("connection refused", 9)
        );
        inv.record_event(DEV, "failed", serde_json::json!({"event": "failed"}), 10)
            .unwrap();
        let failure = inv.node(&DEV).unwrap().seen.failure.unwrap();
        assert_eq!(failure.step, None);
        assert!(failure.error.contains("without an error text"));
    }
}
