//! Runtime MAC → profile assignments on the data partition
//! (`inventory/assignments.json`): what the PXE service serves, and the
//! appliance's own copy of what Consul KV holds when the stack is up (see
//! `sync` for how the two are kept in step). The operator's node tags
//! (`kindling node tag`) live in the same file, under the same lock, so the
//! PXE service reads both with one look; they are local to the appliance
//! (and its backups), not synced to Consul KV.
//!
//! Owns the file format and its lock. Writers (`kindlingd api`: the API and
//! its KV sync) change it under an exclusive lock, atomically and fsynced;
//! the PXE service only reads it. It never talks to the network.

use crate::error::InventoryError;
use kindling_api::nodes::KvStatus;
use kindling_clock::unix_ms;
use kindling_site::{MacAddr, NodeTags};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One MAC's runtime assignment, with what the sync needs to merge it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRecord {
    /// The profile; `None` is an unassignment the shared KV has not seen yet
    /// (kept only until it has).
    pub profile: Option<String>,
    /// When the change was made, in Unix milliseconds: when the API accepted
    /// it, or the stamp a KV entry carries, or when the sync first saw an
    /// unstamped KV entry. "Last write wins" compares these.
    pub changed_ms: u64,
    /// Consul's ModifyIndex of the KV entry this record last agreed with;
    /// 0 when it never was in KV.
    #[serde(default)]
    pub kv_index: u64,
    /// Made here and not yet in KV (always true while Consul is off).
    #[serde(default)]
    pub pending: bool,
}

/// The whole file, as the sync and the API see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssignmentsState {
    pub records: BTreeMap<MacAddr, AssignmentRecord>,
    /// Identity of the KV copy the records were last merged with; a KV
    /// without it (or with another) was rebuilt and is re-seeded from here.
    pub kv_epoch: Option<String>,
    pub kv_status: Option<KvStatus>,
    /// Refused KV entries, one line each, for the PXE status.
    pub refused: Vec<String>,
    /// The operator's tags per node (never empty maps: untagged nodes are
    /// absent).
    pub tags: BTreeMap<MacAddr, NodeTags>,
}

impl AssignmentsState {
    /// The assignments in effect: every record that names a profile.
    pub fn effective(&self) -> BTreeMap<MacAddr, String> {
        self.records
            .iter()
            .filter_map(|(mac, r)| r.profile.clone().map(|p| (*mac, p)))
            .collect()
    }

    /// `mac`'s tags (none: empty).
    pub fn tags_of(&self, mac: &MacAddr) -> NodeTags {
        self.tags.get(mac).cloned().unwrap_or_default()
    }

    /// Records not yet in KV.
    pub fn pending(&self) -> usize {
        self.records.values().filter(|r| r.pending).count()
    }

    /// What the PXE service reports as problems: refused KV entries, and
    /// local changes held back because KV is meant to be used but is not
    /// reachable.
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.refused.clone();
        if let Some(KvStatus::Waiting(why)) = &self.kv_status {
            let n = self.pending();
            if n > 0 {
                out.push(format!(
                    "{n} assignment change(s) kept locally, not yet in Consul KV: {why}"
                ));
            }
        }
        out
    }
}

/// On disk. `assignments` was the file's only field before the KV sync and
/// is still written (derived from `records`) for readers of that format.
#[derive(Serialize, Deserialize, Default)]
struct AssignmentsFile {
    #[serde(default)]
    assignments: BTreeMap<MacAddr, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    records: Option<BTreeMap<MacAddr, AssignmentRecord>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kv_epoch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kv_status: Option<KvStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    refused: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    tags: BTreeMap<MacAddr, NodeTags>,
}

impl AssignmentsFile {
    fn into_state(self) -> AssignmentsState {
        let records = match self.records {
            Some(r) => r,
            // The first format: plain MAC → profile, never seen by any KV.
            None => self
                .assignments
                .into_iter()
                .map(|(mac, profile)| {
                    (
                        mac,
                        AssignmentRecord {
                            profile: Some(profile),
                            changed_ms: 0,
                            kv_index: 0,
                            pending: true,
                        },
                    )
                })
                .collect(),
        };
        AssignmentsState {
            records,
            kv_epoch: self.kv_epoch,
            kv_status: self.kv_status,
            refused: self.refused,
            // Tags are checked when set; a hand-edited file with bad ones
            // is read as written (a selector can only ask valid ones).
            tags: self
                .tags
                .into_iter()
                .filter(|(_, t)| !t.is_empty())
                .collect(),
        }
    }

    fn from_state(state: &AssignmentsState) -> Self {
        Self {
            assignments: state.effective(),
            records: Some(state.records.clone()),
            kv_epoch: state.kv_epoch.clone(),
            kv_status: state.kv_status.clone(),
            refused: state.refused.clone(),
            tags: state.tags.clone(),
        }
    }
}

/// Runtime MAC → profile assignments on disk, shared between processes (the
/// API and its sync write, the PXE service reads).
#[derive(Debug, Clone)]
pub struct AssignmentStore {
    path: PathBuf,
}

impl AssignmentStore {
    pub fn new(path: PathBuf) -> Self {
        Self { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The whole file; a missing file is an empty state.
    pub fn load_state(&self) -> Result<AssignmentsState, InventoryError> {
        crate::shared_file::read_json::<AssignmentsFile>(&self.path)
            .map(AssignmentsFile::into_state)
    }

    /// The assignments in effect; a missing file is none.
    pub fn load(&self) -> Result<BTreeMap<MacAddr, String>, InventoryError> {
        self.load_state().map(|s| s.effective())
    }

    /// Read-modify-write under an exclusive lock, so concurrent writers never
    /// lose each other's change. The file is rewritten only if `change`
    /// changed the state.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut AssignmentsState) -> R,
    ) -> Result<R, InventoryError> {
        crate::shared_file::with_lock(&self.path, || {
            let before = self.load_state()?;
            let mut state = before.clone();
            let out = change(&mut state);
            if state != before {
                crate::shared_file::write_json(&self.path, &AssignmentsFile::from_state(&state))?;
            }
            Ok(out)
        })
    }

    /// Sets (or with `None` removes) one assignment, as a local change: it
    /// is in effect at once and pending until the shared KV has it.
    pub fn assign(&self, mac: MacAddr, profile: Option<&str>) -> Result<(), InventoryError> {
        let now = unix_ms();
        self.update(|state| record_local_change(state, mac, profile, now))
    }
}

/// Applies `set` then `unset` to `mac`'s tags and returns (before, after).
/// Refused (nothing changed) if a key or value breaks the tag rules, a key
/// is both set and unset, or the node would carry too many.
pub fn change_tags(
    state: &mut AssignmentsState,
    mac: MacAddr,
    set: &NodeTags,
    unset: &[String],
) -> Result<(NodeTags, NodeTags), kindling_site::TagError> {
    use kindling_site::tags::{check_key, check_tags};
    for key in unset {
        check_key(key)?;
    }
    check_tags(set)?;
    if let Some(key) = unset.iter().find(|k| set.contains_key(*k)) {
        return Err(kindling_site::TagError::Key {
            key: key.clone(),
            reason: "both set and unset in one request",
        });
    }
    let before = state.tags_of(&mac);
    let mut after = before.clone();
    after.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    for key in unset {
        after.remove(key);
    }
    check_tags(&after)?;
    if after.is_empty() {
        state.tags.remove(&mac);
    } else {
        state.tags.insert(mac, after.clone());
    }
    Ok((before, after))
}

/// A change made here (through the API) at `now_ms`.
pub fn record_local_change(
    state: &mut AssignmentsState,
    mac: MacAddr,
    profile: Option<&str>,
    now_ms: u64,
) {
    let previous = state.records.get(&mac).cloned();
    if previous.as_ref().and_then(|r| r.profile.as_deref()) == profile {
        // Same as in effect: nothing to change or push.
        return;
    }
    let kv_index = previous.as_ref().map_or(0, |r| r.kv_index);
    if profile.is_none() && kv_index == 0 {
        // Never reached KV: nothing there to delete.
        state.records.remove(&mac);
        return;
    }
    state.records.insert(
        mac,
        AssignmentRecord {
            profile: profile.map(str::to_string),
            // A change must date after the one it replaces, even if the
            // clock stepped back meanwhile.
            changed_ms: now_ms.max(previous.map_or(0, |r| r.changed_ms.saturating_add(1))),
            kv_index,
            pending: true,
        },
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x99]);

    #[test]
    fn first_format_files_are_read_as_pending_local_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("assignments.json");
        std::fs::write(&path, br#"{"assignments":{"52:54:00:6b:00:99":"prod"}}"#).unwrap();
        let store = AssignmentStore::new(path.clone());
        let state = store.load_state().unwrap();
        let rec = &state.records[&MAC];
        assert_eq!(
            (rec.profile.as_deref(), rec.pending, rec.kv_index),
            (Some("prod"), true, 0)
        );
        // Rewritten in the new format, still readable as the old one.
        store.assign(MAC, Some("dev")).unwrap();
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(raw["assignments"]["52:54:00:6b:00:99"], "dev");
        assert_eq!(raw["records"]["52:54:00:6b:00:99"]["pending"], true);
    }

    #[test]
    fn local_unassign_keeps_a_tombstone_only_for_what_kv_has() {
        let mut state = AssignmentsState::default();
        record_local_change(&mut state, MAC, Some("prod"), 10);
        record_local_change(&mut state, MAC, None, 11);
        assert!(state.records.is_empty(), "never in KV: nothing to delete");

        state.records.insert(
            MAC,
            AssignmentRecord {
                profile: Some("prod".into()),
                changed_ms: 10,
                kv_index: 42,
                pending: false,
            },
        );
        record_local_change(&mut state, MAC, Some("prod"), 20);
        assert!(!state.records[&MAC].pending, "same profile: no change");
        record_local_change(&mut state, MAC, None, 5);
        let rec = &state.records[&MAC];
        assert_eq!(
            (rec.profile.as_deref(), rec.kv_index, rec.pending),
            (None, 42, true)
        );
        assert_eq!(rec.changed_ms, 11, "dated after what it replaces");
        assert!(state.effective().is_empty());
    }

    #[test]
    fn tags_are_set_unset_checked_and_kept_beside_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = AssignmentStore::new(dir.path().join("a.json"));
        let set: NodeTags = [("rack".into(), "r12".into()), ("gpu".into(), "a100".into())].into();
        let (before, after) = store
            .update(|s| change_tags(s, MAC, &set, &[]))
            .unwrap()
            .unwrap();
        assert!(before.is_empty());
        assert_eq!(after, set);
        store.assign(MAC, Some("prod")).unwrap();
        let state = store.load_state().unwrap();
        assert_eq!(
            state.tags_of(&MAC),
            set,
            "survives a reload and an assignment"
        );

        // Refused changes name the key and change nothing.
        let bad: NodeTags = [("Rack".into(), "r1".into())].into();
        let e = store
            .update(|s| change_tags(s, MAC, &bad, &[]))
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("\"Rack\""), "{e}");
        let e = store
            .update(|s| change_tags(s, MAC, &set, &["rack".into()]))
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("both set and unset"), "{e}");
        let many: NodeTags = (0..16).map(|i| (format!("k{i}"), "v".into())).collect();
        let e = store
            .update(|s| change_tags(s, MAC, &many, &[]))
            .unwrap()
            .unwrap_err();
        assert!(e.to_string().contains("at most 16"), "{e}");
        assert_eq!(store.load_state().unwrap().tags_of(&MAC), set);

        // Unsetting every tag drops the node from the map.
        store
            .update(|s| change_tags(s, MAC, &NodeTags::new(), &["rack".into(), "gpu".into()]))
            .unwrap()
            .unwrap();
        assert!(store.load_state().unwrap().tags.is_empty());
    }

    #[test]
    fn unchanged_state_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let store = AssignmentStore::new(dir.path().join("a.json"));
        store.update(|_| ()).unwrap();
        assert!(!store.path().exists());
        store.assign(MAC, Some("prod")).unwrap();
        let mtime = std::fs::metadata(store.path()).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        store.assign(MAC, Some("prod")).unwrap();
        assert_eq!(
            std::fs::metadata(store.path()).unwrap().modified().unwrap(),
            mtime
        );
    }
}
