//! The live node inventory: every MAC the PXE service has seen, its profile
//! and its provisioning state (discovered → booting → installed → joined),
//! plus the profile each MAC gets (runtime assignments over the site's
//! policy).
//!
//! Owns `inventory/nodes.json` (written by the PXE service only, write-behind
//! and atomic) and the PXE service's view of `inventory/assignments.json`
//! (format and writers in `assignments`; re-read when it changes). It never
//! talks to the network.

mod node_grants;
mod node_membership;

pub use node_grants::{Claim, ClaimRequest, IssuedGrant, MINT_DEADLINE_SECS, REPROVISION_EVENT};

use crate::assignments::AssignmentStore;
use crate::error::InventoryError;
use crate::policy::{node_facts, ProfilePolicy};
use crate::transitions::{next_state, TransitionError, FAILED, JOINED};
use kindling_api::nodes::{Firmware, NodeEvent, NodeState, ProfileChoice, SeenNode};
use kindling_atomic_write::write_atomic;
use kindling_site::{MacAddr, NodeFacts, NodeTags};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

mod discovered;
mod forget;
pub use discovered::DEFAULT_MAX_DISCOVERED;

/// How many phone-home events are kept per node.
const EVENTS_KEPT: usize = 16;

/// Appends to a node's event history, keeping the newest [`EVENTS_KEPT`].
fn push_event(record: &mut NodeRecord, event: NodeEvent) {
    record.seen.events.push(event);
    let excess = record.seen.events.len().saturating_sub(EVENTS_KEPT);
    record.seen.events.drain(..excess);
}

/// What [`Inventory::installed`] knows of an installed node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledNode {
    /// The profile it was last served (its installer's).
    pub profile: Option<String>,
    /// Re-arm requests applied to it so far.
    pub rearmed: u64,
}

/// One node of `nodes.json`: its MAC and state, and the facts the API shows
/// ([`SeenNode`], flattened so the file keeps one flat object per node).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub mac: MacAddr,
    pub state: NodeState,
    #[serde(flatten)]
    pub seen: SeenNode,
}

#[derive(Serialize, Deserialize, Default)]
struct NodesFile {
    nodes: Vec<NodeRecord>,
}

/// Reads the nodes file written by a running PXE service (for the API).
pub fn read_nodes(path: &Path) -> Result<Vec<NodeRecord>, InventoryError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice::<NodesFile>(&bytes)
            .map(|f| f.nodes)
            .map_err(|source| InventoryError::Parse {
                path: path.into(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(InventoryError::Read {
            path: path.into(),
            source,
        }),
    }
}

struct CachedAssignments {
    /// The file's mtime when last loaded.
    mtime: Option<SystemTime>,
    /// When the file was last looked at; `None` forces a look.
    looked: Option<Instant>,
    map: BTreeMap<MacAddr, String>,
    /// The operator's node tags, kept in the same file.
    tags: BTreeMap<MacAddr, NodeTags>,
    /// Refused KV entries and held-back changes, for status.
    problems: Vec<String>,
}

/// How often the DHCP/HTTP hot path may stat the assignments file: an
/// assignment made through the API applies within this time.
const ASSIGNMENTS_RECHECK: Duration = Duration::from_millis(500);

struct Nodes {
    map: BTreeMap<MacAddr, NodeRecord>,
    dirty: bool,
    /// The cap on discovered-only records (`discovered`).
    discovered: discovered::DiscoveredCap,
    /// The catalog and rules `joined` is decided by (`node_membership`).
    membership: node_membership::Membership,
}

/// The PXE service's live inventory.
pub struct Inventory {
    nodes: Mutex<Nodes>,
    nodes_path: PathBuf,
    assignments: AssignmentStore,
    cached: Mutex<CachedAssignments>,
    policy: ProfilePolicy,
    /// Held for a whole flush: the service's write-behind loop and a grant
    /// that must be on disk before it is served may flush at once, and
    /// both write the same temporary file.
    flushing: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data: a panic elsewhere cannot leave it half-updated in a way that
    // matters more than stopping the service would.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inventory {
    /// Loads `state_dir/inventory/nodes.json`; a corrupt file is moved aside
    /// (never deleted) and the inventory starts empty, with the reason
    /// returned for status. `policy` decides profiles.
    pub fn open(state_dir: &Path, policy: ProfilePolicy) -> (Self, Option<String>) {
        let nodes_path = crate::nodes_file(state_dir);
        let (map, problem) = match read_nodes(&nodes_path) {
            Ok(list) => (list.into_iter().map(|n| (n.mac, n)).collect(), None),
            Err(e) => {
                let aside =
                    nodes_path.with_extension(format!("corrupt.{}", kindling_clock::unix_now()));
                let _ = std::fs::rename(&nodes_path, &aside);
                (
                    BTreeMap::new(),
                    Some(format!("{e}; moved to {}", aside.display())),
                )
            }
        };
        let inv = Self {
            nodes: Mutex::new(Nodes {
                discovered: discovered::DiscoveredCap::from_records(&map),
                map,
                dirty: false,
                membership: node_membership::Membership::default(),
            }),
            nodes_path,
            assignments: AssignmentStore::new(crate::assignments_file(state_dir)),
            cached: Mutex::new(CachedAssignments {
                mtime: None,
                looked: None,
                map: BTreeMap::new(),
                tags: BTreeMap::new(),
                problems: Vec::new(),
            }),
            policy,
            flushing: Mutex::new(()),
        };
        (inv, problem)
    }

    pub fn assignment_store(&self) -> &AssignmentStore {
        &self.assignments
    }

    /// Runtime assignments, re-read when the file changed (so an assignment
    /// made through the API applies to the next request).
    /// Re-reads the assignments file if it changed (checked at most every
    /// `ASSIGNMENTS_RECHECK`, so the per-packet cost is a clock read).
    fn refresh_assignments(&self, cached: &mut CachedAssignments) {
        if cached
            .looked
            .is_some_and(|t| t.elapsed() < ASSIGNMENTS_RECHECK)
        {
            return;
        }
        cached.looked = Some(Instant::now());
        let mtime = std::fs::metadata(self.assignments.path())
            .and_then(|m| m.modified())
            .ok();
        if mtime == cached.mtime && mtime.is_some() {
            return;
        }
        match self.assignments.load_state() {
            Ok(state) => {
                cached.map = state.effective();
                cached.problems = state.problems();
                cached.tags = state.tags;
                cached.mtime = mtime;
            }
            Err(e) => tracing::warn!(error = %e, "inventory: keeping previous assignments"),
        }
    }

    /// Runtime assignments as currently in effect.
    pub fn assignments(&self) -> BTreeMap<MacAddr, String> {
        let mut cached = lock(&self.cached);
        self.refresh_assignments(&mut cached);
        cached.map.clone()
    }

    /// What the assignments file reports as problems (refused Consul KV
    /// entries, changes not yet in KV), for the status file.
    pub fn assignment_problems(&self) -> Vec<String> {
        let mut cached = lock(&self.cached);
        self.refresh_assignments(&mut cached);
        cached.problems.clone()
    }

    /// Sets or (with `None`) removes a runtime assignment, effective at once.
    pub fn assign(&self, mac: MacAddr, profile: Option<&str>) -> Result<(), InventoryError> {
        self.assignments.assign(mac, profile)?;
        lock(&self.cached).looked = None;
        Ok(())
    }

    /// The profile of a node the inventory has seen (its DHCP facts and
    /// tags count for `[[selectors]]`).
    pub fn profile_for(&self, mac: &MacAddr) -> ProfileChoice {
        let facts = lock(&self.nodes)
            .map
            .get(mac)
            .map_or(NodeFacts::mac_only(*mac), |r| {
                node_facts(*mac, r.seen.arch, r.seen.firmware)
            });
        self.profile_for_facts(&facts)
    }

    /// The profile of a node that is telling its facts right now (a DHCP
    /// request, before the inventory records them). Its tags are the
    /// operator's, as the assignments file holds them now, whatever
    /// `node.tags` says.
    pub fn profile_for_facts(&self, node: &NodeFacts) -> ProfileChoice {
        let mut cached = lock(&self.cached);
        self.refresh_assignments(&mut cached);
        let node = NodeFacts {
            tags: cached.tags.get(&node.mac).cloned().unwrap_or_default(),
            ..node.clone()
        };
        self.policy.resolve(&cached.map, &node)
    }

    /// The operator's tags on `mac`, as currently in effect.
    pub fn tags(&self, mac: &MacAddr) -> NodeTags {
        let mut cached = lock(&self.cached);
        self.refresh_assignments(&mut cached);
        cached.tags.get(mac).cloned().unwrap_or_default()
    }

    fn touch(&self, mac: MacAddr, now: u64, update: impl FnOnce(&mut NodeRecord)) {
        let mut nodes = lock(&self.nodes);
        let created = !nodes.map.contains_key(&mac);
        let record = nodes.map.entry(mac).or_insert_with(|| NodeRecord {
            mac,
            state: NodeState::Discovered,
            seen: SeenNode {
                ip: None,
                arch: None,
                firmware: None,
                profile: None,
                first_seen: now,
                last_seen: now,
                state_changed: now,
                events: Vec::new(),
                grant: None,
                rearmed: 0,
                alerts: Vec::new(),
                reason: None,
                consul: None,
                failure: None,
            },
        });
        record.seen.last_seen = now;
        update(record);
        nodes.dirty = true;
        let over_cap = created && nodes.discovered.created(mac, self.is_site_node(&mac));
        drop(nodes);
        if over_cap {
            self.evict_excess();
        }
    }

    /// A DHCP request from `mac`.
    pub fn observe_dhcp(
        &self,
        mac: MacAddr,
        ip: Option<Ipv4Addr>,
        arch: Option<u16>,
        firmware: Firmware,
        now: u64,
    ) {
        self.touch(mac, now, |r| {
            if ip.is_some() {
                r.seen.ip = ip;
            }
            if firmware != Firmware::None {
                r.seen.arch = arch;
                r.seen.firmware = Some(firmware);
            }
        });
    }

    /// The node fetched its iPXE script: it is (re)provisioning with `profile`.
    pub fn observe_boot_script(&self, mac: MacAddr, profile: &str, now: u64) {
        self.touch(mac, now, |r| {
            r.seen.profile = Some(profile.to_string());
            if r.state != NodeState::Booting {
                r.state = NodeState::Booting;
                r.seen.state_changed = now;
            }
            // Reasons explain installed, joined and left only.
            r.seen.reason = None;
        });
    }

    /// A phone-home event, accepted only as a valid transition from the
    /// node's current state (the table is `transitions::EVENT_RULES`); a
    /// refused event changes nothing. `failed` records the node's failure;
    /// after `installed` and `joined` the node is judged against the
    /// catalog (`joined` itself is only a claim). Returns the state after.
    pub fn record_event(
        &self,
        mac: MacAddr,
        event: &str,
        detail: serde_json::Value,
        now: u64,
    ) -> Result<NodeState, TransitionError> {
        let current = lock(&self.nodes)
            .map
            .get(&mac)
            .map_or(NodeState::Discovered, |r| r.state);
        let target = next_state(current, event)?;
        let mut state = target;
        self.touch(mac, now, |r| {
            // Re-checked under the lock: another event may have moved it.
            let target = next_state(r.state, event).unwrap_or(r.state);
            if target != r.state {
                r.state = target;
                r.seen.state_changed = now;
            }
            if event == FAILED {
                node_membership::agent_failed(r, &detail, now);
            }
            state = r.state;
            push_event(
                r,
                NodeEvent {
                    at: now,
                    event: event.to_string(),
                    detail,
                },
            );
        });
        if event == JOINED || state == NodeState::Installed {
            let mut nodes = lock(&self.nodes);
            Self::judge_one(&mut nodes, mac, now);
            state = nodes.map.get(&mac).map_or(state, |r| r.state);
        }
        Ok(state)
    }

    pub fn nodes(&self) -> Vec<NodeRecord> {
        lock(&self.nodes).map.values().cloned().collect()
    }

    pub fn node(&self, mac: &MacAddr) -> Option<NodeRecord> {
        lock(&self.nodes).map.get(mac).cloned()
    }

    /// For an installed (or joined, or left) node, the profile it was last served;
    /// `None` for any other node. Cheap: asked on every DHCP packet.
    pub fn installed(&self, mac: &MacAddr) -> Option<InstalledNode> {
        let nodes = lock(&self.nodes);
        let record = nodes.map.get(mac)?;
        (record.state >= NodeState::Installed).then(|| InstalledNode {
            profile: record.seen.profile.clone(),
            rearmed: record.seen.rearmed,
        })
    }

    /// Count of nodes per state, for status.
    pub fn summary(&self) -> BTreeMap<String, usize> {
        let mut out = BTreeMap::new();
        for n in lock(&self.nodes).map.values() {
            let key = serde_json::to_value(n.state)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default();
            *out.entry(key).or_default() += 1;
        }
        out
    }

    pub fn flush_if_dirty(&self) -> Result<bool, InventoryError> {
        let _one_writer = lock(&self.flushing);
        // Copy under the lock, serialise and fsync outside it: DHCP and
        // HTTP threads record observations meanwhile.
        let list: Vec<NodeRecord> = {
            let mut nodes = lock(&self.nodes);
            if !nodes.dirty {
                return Ok(false);
            }
            nodes.dirty = false;
            nodes.map.values().cloned().collect()
        };
        let result = serde_json::to_vec(&NodesFile { nodes: list })
            .map_err(|source| InventoryError::Parse {
                path: self.nodes_path.clone(),
                source,
            })
            .and_then(|bytes| {
                write_atomic(&self.nodes_path, &bytes, true).map_err(|source| {
                    InventoryError::Write {
                        path: self.nodes_path.clone(),
                        source,
                    }
                })
            });
        if result.is_err() {
            lock(&self.nodes).dirty = true;
        }
        result.map(|()| true)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::testing::lab_policy;

    fn inventory(dir: &Path) -> Inventory {
        Inventory::open(dir, lab_policy()).0
    }

    const DEV: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);
    const STRANGER: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x99]);

    #[test]
    fn profile_precedence_assignment_site_default() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory(dir.path());
        assert_eq!(inv.profile_for(&DEV), ProfileChoice::Site("dev".into()));
        assert_eq!(
            inv.profile_for(&STRANGER),
            ProfileChoice::Default("dev".into())
        );
        inv.assign(STRANGER, Some("prod")).unwrap();
        assert_eq!(
            inv.profile_for(&STRANGER),
            ProfileChoice::Assigned("prod".into())
        );
        inv.assign(STRANGER, None).unwrap();
        assert_eq!(
            inv.profile_for(&STRANGER),
            ProfileChoice::Default("dev".into())
        );
    }

    #[test]
    fn tags_select_a_profile_until_untagged() {
        use crate::assignments::change_tags;
        use kindling_site::{BootFirmware, ProfileSelector};
        let dir = tempfile::tempdir().unwrap();
        let mut policy = lab_policy();
        let rack: NodeTags = [("rack".to_string(), "r12".to_string())].into();
        policy.selectors = vec![
            ProfileSelector {
                profile: "prod".parse().unwrap(),
                mac_prefix: None,
                firmware: None,
                arch: None,
                tags: rack.clone(),
            },
            ProfileSelector {
                profile: "dev".parse().unwrap(),
                mac_prefix: None,
                firmware: Some(BootFirmware::Uefi),
                arch: None,
                tags: rack.clone(),
            },
        ];
        let inv = Inventory::open(dir.path(), policy).0;
        let store = inv.assignment_store().clone();
        let set = |tags: &NodeTags, unset: &[String]| {
            store
                .update(|s| change_tags(s, STRANGER, tags, unset))
                .unwrap()
                .unwrap();
        };
        // Discovered, untagged: the unknown-MAC default.
        inv.observe_dhcp(STRANGER, None, Some(0), Firmware::Bios, 1);
        assert_eq!(
            inv.profile_for(&STRANGER),
            ProfileChoice::Default("dev".into())
        );
        // Tagged: its next request gets the selected profile, by the
        // recorded facts and by the facts of a request in flight.
        set(&rack, &[]);
        std::thread::sleep(ASSIGNMENTS_RECHECK);
        assert_eq!(inv.tags(&STRANGER), rack);
        assert_eq!(
            inv.profile_for(&STRANGER),
            ProfileChoice::Selected("prod".into())
        );
        let uefi = node_facts(STRANGER, Some(7), Some(Firmware::Uefi));
        assert_eq!(
            inv.profile_for_facts(&uefi),
            ProfileChoice::Selected("dev".into())
        );
        // A runtime assignment still comes first.
        inv.assign(STRANGER, Some("dev")).unwrap();
        assert_eq!(
            inv.profile_for(&STRANGER),
            ProfileChoice::Assigned("dev".into())
        );
        inv.assign(STRANGER, None).unwrap();
        assert_eq!(
            inv.profile_for(&STRANGER),
            ProfileChoice::Selected("prod".into())
        );
        // Untagged: back to the lower-precedence choice.
        set(&NodeTags::new(), &["rack".to_string()]);
        std::thread::sleep(ASSIGNMENTS_RECHECK);
        assert_eq!(
            inv.profile_for(&STRANGER),
            ProfileChoice::Default("dev".into())
        );
        assert_eq!(
            inv.profile_for_facts(&uefi),
            ProfileChoice::Default("dev".into())
        );
    }

    #[test]
    fn state_machine_moves_forward_only_and_reprovision_reboots() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory(dir.path());
        inv.observe_dhcp(DEV, None, Some(0), Firmware::Bios, 1);
        assert_eq!(inv.node(&DEV).unwrap().state, NodeState::Discovered);
        inv.observe_boot_script(DEV, "dev", 2);
        assert_eq!(
            inv.record_event(DEV, "installed", serde_json::Value::Null, 3)
                .unwrap(),
            NodeState::Installed
        );
        assert!(
            inv.record_event(DEV, "booted", serde_json::Value::Null, 4)
                .is_err(),
            "an installed node does not go back to booting by an event"
        );
        assert_eq!(inv.node(&DEV).unwrap().state, NodeState::Installed);
        assert_eq!(
            inv.record_event(DEV, "joined", serde_json::Value::Null, 5)
                .unwrap(),
            NodeState::Installed,
            "the node's own `joined` is a claim: no catalog, not joined"
        );
        assert!(inv.node(&DEV).unwrap().seen.reason.is_some());
        assert!(inv
            .record_event(DEV, "exploded", serde_json::Value::Null, 6)
            .is_err());
        inv.observe_boot_script(DEV, "dev", 7);
        assert_eq!(
            inv.node(&DEV).unwrap().state,
            NodeState::Booting,
            "a new PXE boot re-provisions"
        );
    }

    #[test]
    fn an_installed_node_stays_installed_until_re_armed() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory(dir.path());
        assert_eq!(inv.installed(&DEV), None, "never seen");
        inv.observe_dhcp(DEV, None, Some(0), Firmware::Bios, 1);
        inv.observe_boot_script(DEV, "dev", 2);
        assert_eq!(inv.installed(&DEV), None, "booting is not installed");
        inv.record_event(DEV, "installed", serde_json::Value::Null, 3)
            .unwrap();
        let installed = Some(InstalledNode {
            profile: Some("dev".into()),
            rearmed: 0,
        });
        assert_eq!(inv.installed(&DEV), installed);
        inv.record_event(DEV, "joined", serde_json::Value::Null, 4)
            .unwrap();
        assert_eq!(inv.installed(&DEV), installed, "a claim changes nothing");

        assert_eq!(inv.apply_rearm(DEV, 1, 5), Some(None));
        assert_eq!(inv.installed(&DEV), None, "re-armed: install again");
        let node = inv.node(&DEV).unwrap();
        assert_eq!(node.state, NodeState::Discovered);
        assert_eq!(node.seen.state_changed, 5);
        let last = node.seen.events.last().unwrap();
        assert_eq!(
            (last.event.as_str(), &last.detail),
            (REPROVISION_EVENT, &serde_json::json!({"generation": 1}))
        );
        assert_eq!(inv.apply_rearm(DEV, 1, 6), None, "applied once");
    }

    #[test]
    fn nodes_file_is_one_flat_object_per_node() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nodes.json");
        let text = r#"{"nodes":[{"mac":"52:54:00:6b:00:10","ip":"192.168.100.120",
            "arch":7,"firmware":"uefi","profile":"dev","state":"booting","first_seen":1,
            "last_seen":2,"state_changed":2,"events":[{"at":2,"event":"booted"}]}]}"#;
        std::fs::write(&path, text).unwrap();
        let nodes = read_nodes(&path).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].mac, DEV);
        assert_eq!(nodes[0].state, NodeState::Booting);
        assert_eq!(nodes[0].seen.ip, Some(Ipv4Addr::new(192, 168, 100, 120)));
        assert_eq!(nodes[0].seen.firmware, Some(Firmware::Uefi));
        assert_eq!(nodes[0].seen.events.len(), 1);
        let written = serde_json::to_value(&nodes[0]).unwrap();
        let original: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(written, original["nodes"][0]);
    }

    #[test]
    fn nodes_survive_restart_and_corrupt_file_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let inv = inventory(dir.path());
        inv.observe_dhcp(
            DEV,
            Some(Ipv4Addr::new(192, 168, 100, 120)),
            Some(7),
            Firmware::Uefi,
            1,
        );
        assert!(inv.flush_if_dirty().unwrap());
        let again = inventory(dir.path());
        assert_eq!(
            again.node(&DEV).unwrap().seen.firmware,
            Some(Firmware::Uefi)
        );
        std::fs::write(dir.path().join("inventory/nodes.json"), b"[broken").unwrap();
        let (fresh, problem) = Inventory::open(dir.path(), lab_policy());
        assert!(fresh.nodes().is_empty());
        assert!(problem.unwrap().contains("nodes.json"));
        let kept = std::fs::read_dir(dir.path().join("inventory"))
            .unwrap()
            .count();
        assert!(kept >= 1, "the corrupt file is moved aside, not deleted");
    }
}
