//! Keeps runtime assignments in a shared KV store (Consul KV on the
//! appliance, reached through the [`SharedAssignments`] trait that the stack
//! side implements) and in the local file in step. The PXE service only ever
//! reads the local file, so DHCP and HTTP never wait on the network.
//!
//! The merge rule, per MAC (docs/contracts.md "Runtime MAC → profile assignments"):
//! last write wins by wall-clock time. A change made through the API is
//! dated when the API accepted it, and that stamp travels into KV as the
//! entry's Flags; a KV entry without a stamp (an operator's
//! `consul kv put`) is dated when the sync first sees it. Consul's
//! ModifyIndex only tells whether a key changed since the record last
//! agreed with it, and check-and-set makes a push fail rather than overwrite
//! a write it has not seen. A KV whose epoch marker is missing or different
//! was rebuilt: it is re-seeded from the local file.
//!
//! Must never let a refused KV entry (bad key, unknown profile) replace an
//! assignment, never panic on what KV holds, and never drop a local change
//! unless a later write superseded it.

use crate::assignments::{unix_ms, AssignmentRecord, AssignmentStore, AssignmentsState, KvStatus};
use crate::inventory::InventoryError;
use crate::mac::MacAddr;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One KV entry under the assignments prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvEntry {
    /// The full key, for messages (`kindling/assignments/52:54:00:6b:00:10`).
    pub key: String,
    /// The part after the prefix: the MAC, if well-formed.
    pub name: String,
    pub value: Vec<u8>,
    pub modify_index: u64,
    /// The writer's change time in Unix ms; 0 when the writer set none.
    pub flags: u64,
}

/// Everything under the prefix, at one index.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvListing {
    /// The index to wait on for the next change.
    pub index: u64,
    /// The store's epoch marker, if set.
    pub epoch: Option<String>,
    pub entries: Vec<KvEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KvError {
    /// The site keeps no shared copy: assignments stay local, not a problem.
    #[error("{0}")]
    NotInUse(String),
    /// Meant to be used, not usable yet (e.g. no credentials before the
    /// stack bootstrap made them).
    #[error("{0}")]
    NotReady(String),
    #[error("listing {what}: {reason}")]
    List { what: String, reason: String },
    #[error("writing {key}: {reason}")]
    Write { key: String, reason: String },
}

/// The shared KV store of runtime assignments. Implementations block (with
/// their own timeouts) and must be callable from several threads.
pub trait SharedAssignments: Send + Sync {
    /// Everything under the prefix, plus the epoch marker. Does not wait.
    fn list(&self) -> Result<KvListing, KvError>;
    /// Returns once the prefix changed after `index`, or after about `wait`;
    /// the new index.
    fn wait_for_change(&self, index: u64, wait: Duration) -> Result<u64, KvError>;
    /// Writes `profile` for `mac` with `stamp_ms` as the entry's stamp, only
    /// if the key's ModifyIndex is still `cas` (0: only if absent).
    /// `Ok(false)`: the key changed meanwhile, nothing written.
    fn put(&self, mac: &MacAddr, profile: &str, stamp_ms: u64, cas: u64) -> Result<bool, KvError>;
    /// Deletes `mac`'s key if its ModifyIndex is still `cas` (> 0).
    fn delete(&self, mac: &MacAddr, cas: u64) -> Result<bool, KvError>;
    /// Sets the epoch marker if none is set. `Ok(false)`: one was set meanwhile.
    fn claim_epoch(&self, epoch: &str) -> Result<bool, KvError>;
}

/// A write the merge wants made in KV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvWrite {
    Put {
        mac: MacAddr,
        profile: String,
        stamp_ms: u64,
        cas: u64,
    },
    Delete {
        mac: MacAddr,
        cas: u64,
    },
    ClaimEpoch(String),
}

/// What one merge decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MergePlan {
    pub writes: Vec<KvWrite>,
    /// Human lines for the log: assignments taken from KV, conflicts, re-seeding.
    pub events: Vec<String>,
}

/// What KV holds for one MAC.
enum Side {
    Absent,
    Valid {
        profile: String,
        index: u64,
        flags: u64,
    },
    Refused {
        index: u64,
        flags: u64,
        what: String,
        reason: String,
        /// The value, if it is text.
        text: Option<String>,
    },
}

fn shown(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let cut: String = text.chars().take(64).collect();
    format!("{cut:?}")
}

/// Sorts the listing into per-MAC sides; refused keys go to `refused`.
fn sides(
    listing: &KvListing,
    profiles: &BTreeSet<String>,
    refused: &mut Vec<String>,
) -> BTreeMap<MacAddr, Side> {
    let mut out = BTreeMap::new();
    for entry in &listing.entries {
        if entry.name.is_empty() {
            // The prefix's own "folder" key (the Consul UI makes one).
            continue;
        }
        let mac: MacAddr = match entry.name.parse() {
            Ok(m) => m,
            Err(e) => {
                refused.push(format!("Consul KV {} refused: {e}", entry.key));
                continue;
            }
        };
        if mac.to_string() != entry.name {
            let canonical = format!(
                "{}{mac}",
                entry.key.strip_suffix(&entry.name).unwrap_or_default()
            );
            refused.push(format!(
                "Consul KV {} refused: write the MAC lower-case with colons: {canonical}",
                entry.key
            ));
            continue;
        }
        let what = format!("Consul KV {} = {}", entry.key, shown(&entry.value));
        let (index, flags) = (entry.modify_index, entry.flags);
        let side = match std::str::from_utf8(&entry.value).map(str::trim) {
            Err(_) => Side::Refused {
                index,
                flags,
                what,
                reason: "the value is not text".into(),
                text: None,
            },
            Ok("") => Side::Refused {
                index,
                flags,
                what,
                reason: "the value is empty (delete the key to unassign)".into(),
                text: None,
            },
            Ok(p) if !profiles.contains(p) => Side::Refused {
                index,
                flags,
                what,
                text: Some(p.to_string()),
                reason: format!(
                    "profile {p:?} is not defined by the site (known: {})",
                    profiles.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            },
            Ok(p) => Side::Valid {
                profile: p.to_string(),
                index,
                flags,
            },
        };
        out.insert(mac, side);
    }
    out
}

fn push_of(mac: MacAddr, rec: &AssignmentRecord, cas: u64) -> KvWrite {
    match &rec.profile {
        Some(p) => KvWrite::Put {
            mac,
            profile: p.clone(),
            stamp_ms: rec.changed_ms,
            cas,
        },
        None => KvWrite::Delete { mac, cas },
    }
}

fn named(profile: Option<&str>) -> String {
    profile.map_or_else(|| "no assignment".into(), |p| format!("profile {p}"))
}

/// Merges one KV listing into the local state (pure: no I/O). `now_ms` dates
/// unstamped KV entries; `epoch_seed` names a new epoch should one be needed.
pub fn merge(
    state: &mut AssignmentsState,
    listing: &KvListing,
    profiles: &BTreeSet<String>,
    now_ms: u64,
    epoch_seed: &str,
) -> MergePlan {
    let mut plan = MergePlan::default();

    match (&state.kv_epoch, &listing.epoch) {
        (Some(mine), Some(theirs)) if mine == theirs => {}
        (None, Some(theirs)) => state.kv_epoch = Some(theirs.clone()),
        (None, None) => {}
        (Some(mine), theirs) => {
            // Not the KV these records were merged with (Consul's data was
            // lost or replaced): what it lacks is re-seeded from here.
            plan.events.push(format!(
                "Consul KV's assignments epoch is {} (was {mine}): re-seeding it from the local copy",
                theirs.as_deref().unwrap_or("unset")
            ));
            state.records.retain(|_, r| r.profile.is_some());
            for r in state.records.values_mut() {
                r.kv_index = 0;
                r.pending = true;
            }
            state.kv_epoch = theirs.clone();
        }
    }
    if state.kv_epoch.is_none() {
        plan.writes
            .push(KvWrite::ClaimEpoch(epoch_seed.to_string()));
    }

    let mut refused = Vec::new();
    let mut kv = sides(listing, profiles, &mut refused);
    let macs: BTreeSet<MacAddr> = state.records.keys().chain(kv.keys()).copied().collect();
    // A stamp from the future (a wrong clock, or any number a KV writer put
    // in Flags) counts as now, so it cannot win every later conflict.
    let kv_time = |flags: u64| if flags > 0 { flags.min(now_ms) } else { now_ms };

    for mac in macs {
        let side = kv.remove(&mac).unwrap_or(Side::Absent);
        // KV's entry becomes this MAC's record.
        let pull = |state: &mut AssignmentsState, profile: String, index: u64, flags: u64| {
            state.records.insert(
                mac,
                AssignmentRecord {
                    profile: Some(profile),
                    changed_ms: kv_time(flags),
                    kv_index: index,
                    pending: false,
                },
            );
        };
        // The record and KV agree as of `index`: nothing left to push.
        let agreed = |state: &mut AssignmentsState, index: u64| {
            if let Some(r) = state.records.get_mut(&mac) {
                r.kv_index = index;
                r.pending = false;
            }
        };
        let Some(rec) = state.records.get(&mac).cloned() else {
            match side {
                Side::Valid {
                    profile,
                    index,
                    flags,
                } => {
                    plan.events
                        .push(format!("{mac}: profile {profile} from Consul KV"));
                    pull(state, profile, index, flags);
                }
                Side::Refused { what, reason, .. } => {
                    refused.push(format!(
                        "{what} refused: {reason}; {mac} keeps no assignment"
                    ));
                }
                Side::Absent => {}
            }
            continue;
        };
        let current = named(rec.profile.as_deref());
        if let Side::Refused {
            index,
            what,
            reason,
            text: Some(text),
            ..
        } = &side
        {
            if rec.profile.as_deref() == Some(text.as_str()) {
                // KV holds this record's own profile, which the site no
                // longer defines (a newer overlay dropped it): in step, and
                // not in force until a profile of that name is back.
                refused.push(format!(
                    "{what}: {reason}; kept, but not in force until the site defines it"
                ));
                agreed(state, *index);
                continue;
            }
        }
        // A record that agreed with KV at some index and was not changed here
        // since: KV's later state is taken (if valid).
        if !rec.pending && rec.kv_index > 0 {
            match side {
                Side::Absent => {
                    plan.events
                        .push(format!("{mac}: unassigned in Consul KV (was {current})"));
                    state.records.remove(&mac);
                }
                Side::Valid {
                    profile,
                    index,
                    flags,
                } => {
                    if rec.profile.as_deref() == Some(profile.as_str()) {
                        agreed(state, index);
                    } else {
                        plan.events.push(format!(
                            "{mac}: profile {profile} from Consul KV (was {current})"
                        ));
                        pull(state, profile, index, flags);
                    }
                }
                Side::Refused { what, reason, .. } => {
                    refused.push(format!("{what} refused: {reason}; {mac} keeps {current}"));
                }
            }
            continue;
        }
        // A change made here that KV has not seen.
        match side {
            Side::Absent => match &rec.profile {
                None => {
                    // KV has no entry either: the unassignment is done.
                    state.records.remove(&mac);
                }
                Some(_) if rec.kv_index == 0 || rec.changed_ms >= now_ms => {
                    plan.writes.push(push_of(mac, &rec, 0));
                }
                Some(_) => {
                    plan.events.push(format!(
                        "{mac}: {current} (set here at {} ms) lost to its deletion in Consul KV, which is later",
                        rec.changed_ms
                    ));
                    state.records.remove(&mac);
                }
            },
            Side::Valid {
                profile,
                index,
                flags,
            } => {
                if rec.profile.as_deref() == Some(profile.as_str()) {
                    // KV holds this change already (our own push landed).
                    agreed(state, index);
                } else if index == rec.kv_index {
                    plan.writes.push(push_of(mac, &rec, index));
                } else if rec.changed_ms >= kv_time(flags) {
                    plan.events.push(format!(
                        "{mac}: {current} set here wins over profile {profile} in Consul KV (later change)"
                    ));
                    plan.writes.push(push_of(mac, &rec, index));
                } else {
                    plan.events.push(format!(
                        "{mac}: profile {profile} from Consul KV wins over {current} set here (later change)"
                    ));
                    pull(state, profile, index, flags);
                }
            }
            Side::Refused {
                index,
                flags,
                what,
                reason,
                ..
            } => {
                if rec.changed_ms >= kv_time(flags) {
                    refused.push(format!(
                        "{what} refused: {reason}; replacing it with {current} set here (later change)"
                    ));
                    plan.writes.push(push_of(mac, &rec, index));
                } else {
                    refused.push(format!(
                        "{what} refused: {reason}; {mac} keeps {current}, set here and not pushed over the later KV entry"
                    ));
                }
            }
        }
    }
    state.refused = refused;
    plan
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("assignments file: {0}")]
    LocalFile(#[from] InventoryError),
}

/// What one sync did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The KV index the sync saw last (to wait on).
    pub index: u64,
    pub writes: usize,
}

/// How long a watch waits for a KV change before syncing anyway (which also
/// retries held-back pushes and re-checks refused entries against the site).
pub const WATCH_WAIT: Duration = Duration::from_secs(5);
const RETRY_MIN: Duration = Duration::from_millis(500);
/// The shortest time between two syncs of the watch loop.
const MIN_ROUND: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Merges and writes per sync; a write refused by check-and-set is retried
/// on the next pass with what KV holds then.
const PASSES: usize = 4;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Guards no data of its own (only serialises merges): a panic elsewhere
    // leaves nothing half-done here.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The sync between the local file and the shared KV.
pub struct AssignmentSync {
    store: AssignmentStore,
    kv: Arc<dyn SharedAssignments>,
    merging: Mutex<()>,
}

impl AssignmentSync {
    pub fn new(store: AssignmentStore, kv: Arc<dyn SharedAssignments>) -> Self {
        Self {
            store,
            kv,
            merging: Mutex::new(()),
        }
    }

    pub fn store(&self) -> &AssignmentStore {
        &self.store
    }

    /// Records why KV cannot be used now (file rewritten only if that changed).
    fn note(&self, status: KvStatus) {
        let result = self.store.update(|s| {
            if let KvStatus::LocalOnly(_) = status {
                // Nothing in KV is in force: its refusals are moot.
                s.refused.clear();
            }
            s.kv_status = Some(status);
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "assignments: could not record the KV status");
        }
    }

    fn note_error(&self, e: &KvError) {
        self.note(match e {
            KvError::NotInUse(why) => KvStatus::LocalOnly(why.clone()),
            other => KvStatus::Waiting(other.to_string()),
        });
    }

    /// Lists KV, merges it into the local file and makes the writes the
    /// merge asks for, until nothing is left to write. `profiles` are the
    /// site's profile names (what a KV value may name).
    pub fn sync_once(&self, profiles: &BTreeSet<String>) -> Result<SyncReport, SyncError> {
        let _merging = lock(&self.merging);
        let mut report = SyncReport::default();
        for _ in 0..PASSES {
            let listing = self.kv.list().inspect_err(|e| self.note_error(e))?;
            report.index = listing.index;
            let now = unix_ms();
            let seed = format!("{now:x}.{:x}", std::process::id());
            let (plan, newly_refused) = self.store.update(|state| {
                let before = std::mem::take(&mut state.refused);
                let plan = merge(state, &listing, profiles, now, &seed);
                state.kv_status = Some(KvStatus::InUse);
                let new: Vec<String> = state
                    .refused
                    .iter()
                    .filter(|l| !before.contains(l))
                    .cloned()
                    .collect();
                (plan, new)
            })?;
            for line in &plan.events {
                tracing::info!("assignments: {line}");
            }
            // Each refusal is logged when it first appears, not every round.
            for line in &newly_refused {
                tracing::warn!("assignments: {line}");
            }
            if plan.writes.is_empty() {
                return Ok(report);
            }
            for write in &plan.writes {
                let done = match write {
                    KvWrite::Put {
                        mac,
                        profile,
                        stamp_ms,
                        cas,
                    } => self.kv.put(mac, profile, *stamp_ms, *cas),
                    KvWrite::Delete { mac, cas } => self.kv.delete(mac, *cas),
                    KvWrite::ClaimEpoch(epoch) => self.kv.claim_epoch(epoch),
                }
                .inspect_err(|e| self.note_error(e))?;
                if done {
                    report.writes += 1;
                    match write {
                        KvWrite::Put { mac, profile, .. } => {
                            tracing::info!(
                                "assignments: {mac}: profile {profile} written to Consul KV"
                            )
                        }
                        KvWrite::Delete { mac, .. } => {
                            tracing::info!("assignments: {mac}: unassignment written to Consul KV")
                        }
                        KvWrite::ClaimEpoch(epoch) => {
                            tracing::info!(
                                "assignments: Consul KV's assignments epoch set to {epoch}"
                            )
                        }
                    }
                }
            }
        }
        // Still writes left after every pass: KV keeps changing under us.
        // The next sync carries on; the status says why.
        self.note(KvStatus::Waiting(
            "Consul KV kept changing during the sync; retrying".into(),
        ));
        Ok(report)
    }

    /// Syncs, then waits for KV to change (or `WATCH_WAIT`), again and
    /// again until `stop`. `profiles` reads the site's profile names each
    /// round (`None`: the site cannot be read now). Never panics, never
    /// returns early; trouble is logged once per new reason and recorded
    /// in the file's `kv_status`.
    pub fn run(&self, profiles: impl Fn() -> Option<BTreeSet<String>>, stop: &AtomicBool) {
        let mut retry = RETRY_MIN;
        let mut last_trouble = String::new();
        while !stop.load(Ordering::Relaxed) {
            let Some(names) = profiles() else {
                sleep_unless(stop, RETRY_MAX);
                continue;
            };
            match self.sync_once(&names) {
                Ok(report) => {
                    if !last_trouble.is_empty() {
                        tracing::info!("assignments: Consul KV in use again");
                        last_trouble.clear();
                    }
                    retry = RETRY_MIN;
                    let watch = Instant::now();
                    if let Err(e) = self.kv.wait_for_change(report.index, WATCH_WAIT) {
                        tracing::debug!(error = %e, "assignments: watch ended");
                        sleep_unless(stop, retry);
                    }
                    // A watch that answers at once round after round (a
                    // missing index, KV written in a tight loop) must not
                    // become a busy loop against Consul.
                    sleep_unless(stop, MIN_ROUND.saturating_sub(watch.elapsed()));
                }
                Err(e) => {
                    let text = e.to_string();
                    if text != last_trouble {
                        match &e {
                            SyncError::Kv(KvError::NotInUse(_)) => {
                                tracing::info!("assignments: kept locally only: {text}")
                            }
                            _ => tracing::warn!(
                                "assignments: Consul KV not usable, keeping changes locally: {text}"
                            ),
                        }
                        last_trouble = text;
                    }
                    sleep_unless(stop, retry);
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }
}

fn sleep_unless(stop: &AtomicBool, total: Duration) {
    let end = Instant::now() + total;
    while !stop.load(Ordering::Relaxed) {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    const A: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);
    const B: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x20]);
    const NOW: u64 = 1_000_000;

    fn profiles() -> BTreeSet<String> {
        ["dev", "prod"].into_iter().map(String::from).collect()
    }

    fn entry(name: &str, value: &str, index: u64, flags: u64) -> KvEntry {
        KvEntry {
            key: format!("kindling/assignments/{name}"),
            name: name.into(),
            value: value.as_bytes().to_vec(),
            modify_index: index,
            flags,
        }
    }

    fn listing(entries: Vec<KvEntry>) -> KvListing {
        KvListing {
            index: 100,
            epoch: Some("e1".into()),
            entries,
        }
    }

    fn synced(profile: &str, index: u64) -> AssignmentRecord {
        AssignmentRecord {
            profile: Some(profile.into()),
            changed_ms: 10,
            kv_index: index,
            pending: false,
        }
    }

    fn local(profile: Option<&str>, at: u64, base: u64) -> AssignmentRecord {
        AssignmentRecord {
            profile: profile.map(String::from),
            changed_ms: at,
            kv_index: base,
            pending: true,
        }
    }

    fn state(records: Vec<(MacAddr, AssignmentRecord)>) -> AssignmentsState {
        AssignmentsState {
            records: records.into_iter().collect(),
            kv_epoch: Some("e1".into()),
            ..Default::default()
        }
    }

    fn run(s: &mut AssignmentsState, l: &KvListing) -> MergePlan {
        merge(s, l, &profiles(), NOW, "seed")
    }

    #[test]
    fn kv_changes_are_taken_when_nothing_changed_here() {
        let mut s = state(vec![(A, synced("dev", 5)), (B, synced("dev", 6))]);
        let plan = run(
            &mut s,
            &listing(vec![entry("52:54:00:6b:00:10", "prod\n", 7, 0)]),
        );
        assert!(plan.writes.is_empty(), "{plan:?}");
        assert_eq!(
            s.records[&A],
            AssignmentRecord {
                profile: Some("prod".into()),
                changed_ms: NOW,
                kv_index: 7,
                pending: false
            }
        );
        assert!(!s.records.contains_key(&B), "deleted in KV: unassigned");
        assert!(s.refused.is_empty());
    }

    #[test]
    fn local_changes_are_pushed_with_check_and_set() {
        let mut s = state(vec![
            (A, local(Some("prod"), 50, 5)),
            (B, local(None, 50, 6)),
        ]);
        s.records
            .insert(MacAddr([2, 0, 0, 0, 0, 1]), local(Some("dev"), 50, 0));
        let plan = run(
            &mut s,
            &listing(vec![
                entry("52:54:00:6b:00:10", "dev", 5, 0),
                entry("52:54:00:6b:00:20", "dev", 6, 0),
            ]),
        );
        assert_eq!(
            plan.writes,
            vec![
                KvWrite::Put {
                    mac: MacAddr([2, 0, 0, 0, 0, 1]),
                    profile: "dev".into(),
                    stamp_ms: 50,
                    cas: 0
                },
                KvWrite::Put {
                    mac: A,
                    profile: "prod".into(),
                    stamp_ms: 50,
                    cas: 5
                },
                KvWrite::Delete { mac: B, cas: 6 },
            ]
        );
        // Once KV shows them, they are in sync.
        let plan = run(
            &mut s,
            &listing(vec![
                entry("52:54:00:6b:00:10", "prod", 9, 50),
                entry("02:00:00:00:00:01", "dev", 8, 50),
            ]),
        );
        assert!(plan.writes.is_empty());
        assert_eq!(s.pending(), 0);
        assert_eq!(s.records[&A].kv_index, 9);
        assert!(!s.records.contains_key(&B));
    }

    #[test]
    fn conflicts_go_to_the_later_change() {
        // Changed here at 50 and in KV (stamped 40, i.e. earlier): ours wins.
        let mut s = state(vec![(A, local(Some("prod"), 50, 5))]);
        let plan = run(
            &mut s,
            &listing(vec![entry("52:54:00:6b:00:10", "dev", 8, 40)]),
        );
        assert_eq!(
            plan.writes,
            vec![KvWrite::Put {
                mac: A,
                profile: "prod".into(),
                stamp_ms: 50,
                cas: 8
            }]
        );
        // KV stamped later than ours: KV wins.
        let mut s = state(vec![(A, local(Some("prod"), 50, 5))]);
        let plan = run(
            &mut s,
            &listing(vec![entry("52:54:00:6b:00:10", "dev", 8, 60)]),
        );
        assert!(plan.writes.is_empty());
        assert_eq!(s.records[&A], synced_at("dev", 60, 8));
        // A stamp from the future counts as now: a local change made later wins.
        let mut s = state(vec![(A, local(Some("prod"), NOW + 5, 5))]);
        let plan = run(
            &mut s,
            &listing(vec![entry("52:54:00:6b:00:10", "dev", 8, u64::MAX)]),
        );
        assert_eq!(plan.writes.len(), 1, "{plan:?}");
        // Unstamped KV write (an operator's `consul kv put`): dated when seen,
        // so later than a change made here before.
        let mut s = state(vec![(A, local(Some("prod"), 50, 5))]);
        run(
            &mut s,
            &listing(vec![entry("52:54:00:6b:00:10", "dev", 8, 0)]),
        );
        assert_eq!(s.records[&A], synced_at("dev", NOW, 8));
        // Deleted in KV after it agreed with us, changed here before that was seen.
        let mut s = state(vec![(A, local(Some("prod"), 50, 5))]);
        let plan = run(&mut s, &listing(vec![]));
        assert!(plan.writes.is_empty() && s.records.is_empty(), "{plan:?}");
    }

    fn synced_at(profile: &str, at: u64, index: u64) -> AssignmentRecord {
        AssignmentRecord {
            profile: Some(profile.into()),
            changed_ms: at,
            kv_index: index,
            pending: false,
        }
    }

    #[test]
    fn refused_entries_never_replace_an_assignment_and_are_reported() {
        let mut s = state(vec![(A, synced("dev", 5))]);
        let plan = run(
            &mut s,
            &listing(vec![
                entry("52:54:00:6b:00:10", "gpu", 9, 0),
                entry("52:54:00:6b:00:20", "", 10, 0),
                entry("not-a-mac", "dev", 11, 0),
                entry("52-54-00-6B-00-30", "dev", 12, 0),
                KvEntry {
                    value: vec![0xff, 0xfe],
                    ..entry("52:54:00:6b:00:40", "", 13, 0)
                },
                entry("", "", 14, 0),
            ]),
        );
        assert!(plan.writes.is_empty());
        assert_eq!(s.records.len(), 1);
        assert_eq!(s.records[&A], synced("dev", 5), "last good kept");
        let all = s.refused.join("\n");
        for needle in [
            "kindling/assignments/52:54:00:6b:00:10 = \"gpu\" refused: profile \"gpu\" is not defined by the site (known: dev, prod); 52:54:00:6b:00:10 keeps profile dev",
            "kindling/assignments/52:54:00:6b:00:20 = \"\" refused: the value is empty",
            "kindling/assignments/not-a-mac refused: invalid MAC address",
            "write the MAC lower-case with colons: kindling/assignments/52:54:00:6b:00:30",
            "refused: the value is not text",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(s.refused.len(), 5, "{all}");
        assert_eq!(s.problems().len(), 5);
        // Fixed in KV: taken, and the problem is gone.
        run(
            &mut s,
            &listing(vec![entry("52:54:00:6b:00:10", "prod", 15, 0)]),
        );
        assert_eq!(s.records[&A].profile.as_deref(), Some("prod"));
        assert!(s.refused.is_empty());
        // A refused entry over a newer local change is replaced by it.
        let mut s = state(vec![(A, local(Some("prod"), NOW + 1, 5))]);
        let plan = run(
            &mut s,
            &listing(vec![entry("52:54:00:6b:00:10", "gpu", 9, 0)]),
        );
        assert_eq!(plan.writes.len(), 1);
        // An assignment to a profile a newer overlay dropped: pushed once,
        // then in step (not pushed again and again), and reported.
        let mut s = state(vec![(A, local(Some("gpu"), 50, 0))]);
        assert_eq!(run(&mut s, &listing(vec![])).writes.len(), 1);
        let plan = run(
            &mut s,
            &listing(vec![entry("52:54:00:6b:00:10", "gpu", 9, 50)]),
        );
        assert!(plan.writes.is_empty(), "{plan:?}");
        assert_eq!(s.pending(), 0);
        assert!(
            s.refused[0].ends_with("kept, but not in force until the site defines it"),
            "{:?}",
            s.refused
        );
    }

    #[test]
    fn a_rebuilt_kv_is_reseeded_and_a_new_one_claimed() {
        let mut s = state(vec![(A, synced("dev", 5)), (B, local(None, 50, 6))]);
        let mut l = listing(vec![]);
        l.epoch = None;
        let plan = run(&mut s, &l);
        assert_eq!(
            plan.writes,
            vec![
                KvWrite::ClaimEpoch("seed".into()),
                KvWrite::Put {
                    mac: A,
                    profile: "dev".into(),
                    stamp_ms: 10,
                    cas: 0
                }
            ]
        );
        assert!(plan.events[0].contains("re-seeding"), "{plan:?}");
        assert!(!s.records.contains_key(&B), "nothing to delete in a new KV");
        // The claimed epoch is adopted on the next listing.
        let mut l = listing(vec![entry("52:54:00:6b:00:10", "dev", 3, 10)]);
        l.epoch = Some("seed".into());
        let plan = run(&mut s, &l);
        assert!(plan.writes.is_empty());
        assert_eq!(s.kv_epoch.as_deref(), Some("seed"));
        assert_eq!(s.records[&A], synced_at("dev", 10, 3));
    }

    #[test]
    fn problems_name_held_back_changes_only_while_kv_is_meant_to_be_used() {
        let mut s = state(vec![(A, local(Some("prod"), 50, 0))]);
        s.kv_status = Some(KvStatus::LocalOnly("stack.consul.enabled = false".into()));
        assert!(s.problems().is_empty());
        s.kv_status = Some(KvStatus::Waiting("Consul not reachable".into()));
        assert_eq!(
            s.problems(),
            vec!["1 assignment change(s) kept locally, not yet in Consul KV: Consul not reachable"]
        );
    }

    /// key → (value, ModifyIndex, Flags)
    type Entries = BTreeMap<String, (String, u64, u64)>;

    /// An in-memory KV with Consul's check-and-set rules, for the engine:
    /// (last index, entries, epoch).
    #[derive(Default)]
    struct MemoryKv {
        inner: Mutex<(u64, Entries, Option<String>)>,
        down: AtomicBool,
    }

    impl MemoryKv {
        fn check(&self) -> Result<(), KvError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(KvError::List {
                    what: "memory".into(),
                    reason: "down".into(),
                });
            }
            Ok(())
        }
        fn operator_put(&self, key: &str, value: &str) {
            let mut g = self.inner.lock().unwrap();
            g.0 += 1;
            let i = g.0;
            g.1.insert(key.into(), (value.into(), i, 0));
        }
    }

    impl SharedAssignments for MemoryKv {
        fn list(&self) -> Result<KvListing, KvError> {
            self.check()?;
            let g = self.inner.lock().unwrap();
            Ok(KvListing {
                index: g.0,
                epoch: g.2.clone(),
                entries: g
                    .1
                    .iter()
                    .map(|(k, (v, i, f))| KvEntry {
                        key: format!("kv/{k}"),
                        name: k.clone(),
                        value: v.as_bytes().to_vec(),
                        modify_index: *i,
                        flags: *f,
                    })
                    .collect(),
            })
        }
        fn wait_for_change(&self, index: u64, _wait: Duration) -> Result<u64, KvError> {
            Ok(index)
        }
        fn put(&self, mac: &MacAddr, p: &str, stamp: u64, cas: u64) -> Result<bool, KvError> {
            self.check()?;
            let mut g = self.inner.lock().unwrap();
            let key = mac.to_string();
            if g.1.get(&key).map_or(0, |e| e.1) != cas {
                return Ok(false);
            }
            g.0 += 1;
            let i = g.0;
            g.1.insert(key, (p.into(), i, stamp));
            Ok(true)
        }
        fn delete(&self, mac: &MacAddr, cas: u64) -> Result<bool, KvError> {
            self.check()?;
            let mut g = self.inner.lock().unwrap();
            let key = mac.to_string();
            if g.1.get(&key).map(|e| e.1) != Some(cas) {
                return Ok(false);
            }
            g.0 += 1;
            g.1.remove(&key);
            Ok(true)
        }
        fn claim_epoch(&self, epoch: &str) -> Result<bool, KvError> {
            self.check()?;
            let mut g = self.inner.lock().unwrap();
            if g.2.is_some() {
                return Ok(false);
            }
            g.2 = Some(epoch.into());
            Ok(true)
        }
    }

    #[test]
    fn engine_pushes_local_changes_once_kv_is_back_and_takes_kv_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = AssignmentStore::new(dir.path().join("assignments.json"));
        let kv = Arc::new(MemoryKv::default());
        let sync = AssignmentSync::new(store.clone(), kv.clone());

        kv.down.store(true, Ordering::Relaxed);
        store.assign(A, Some("prod")).unwrap();
        assert!(sync.sync_once(&profiles()).is_err());
        let s = store.load_state().unwrap();
        assert_eq!(s.effective()[&A], "prod", "in force locally meanwhile");
        assert_eq!(s.problems().len(), 1, "{:?}", s.problems());

        kv.down.store(false, Ordering::Relaxed);
        let report = sync.sync_once(&profiles()).unwrap();
        assert_eq!(report.writes, 2, "epoch + the assignment");
        assert_eq!(kv.list().unwrap().entries[0].value, b"prod");
        let s = store.load_state().unwrap();
        assert_eq!((s.pending(), s.kv_status), (0, Some(KvStatus::InUse)));

        kv.operator_put("52:54:00:6b:00:10", "dev");
        kv.operator_put("52:54:00:6b:00:20", "nope");
        sync.sync_once(&profiles()).unwrap();
        let s = store.load_state().unwrap();
        assert_eq!(s.effective()[&A], "dev");
        assert!(!s.effective().contains_key(&B));
        assert_eq!(s.problems().len(), 1, "{:?}", s.problems());

        store.assign(A, None).unwrap();
        sync.sync_once(&profiles()).unwrap();
        assert_eq!(kv.list().unwrap().entries.len(), 1, "only the refused one");
        assert!(store.load_state().unwrap().records.is_empty());
    }
}
