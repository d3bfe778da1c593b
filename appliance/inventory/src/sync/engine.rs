//! The I/O side of the assignment sync: lists and watches the shared KV,
//! merges each listing into the local file under its lock (the decisions are
//! `merge`'s), makes the writes the merge asks for, and records in the file
//! how KV stands.
//!
//! Never decides a conflict itself, never holds the file's lock while it
//! talks to KV, and never gives up: trouble is logged once per new reason
//! and retried with back-off.

use super::merge::merge;
use super::{KvError, KvWrite, SharedAssignments};
use crate::assignments::AssignmentStore;
use crate::error::InventoryError;
use kindling_api::nodes::KvStatus;
use kindling_clock::unix_ms;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    use crate::sync::{KvEntry, KvListing};
    use kindling_site::MacAddr;
    use std::collections::BTreeMap;

    const A: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);
    const B: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x20]);

    fn profiles() -> BTreeSet<String> {
        ["dev", "prod"].into_iter().map(String::from).collect()
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
