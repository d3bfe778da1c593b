//! The runtime-assignment sync's shared store, implemented with Consul KV
//! through the stack's client (`kindling_stack::assignments`) and the
//! least-privilege token the stack bootstrap leaves on the data partition.
//! `kindlingd api` runs the sync (a thread, plus one sync per assign call),
//! so the LAN-facing PXE process holds no Consul credentials and only reads
//! the local file.
//!
//! Owns only the adapter between the two crates' types and the thread's
//! start, like `enroll.rs`. Must never log the token.

use kindling_inventory::sync::{KvEntry, KvListing};
use kindling_inventory::{AssignmentStore, AssignmentSync, KvError, SharedAssignments};
use kindling_site::{MacAddr, SiteConfig};
use kindling_stack::assignments::{AssignmentKv, AssignmentKvError, PREFIX};
use kindling_stack::StackLayout;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

struct ConsulAssignments {
    /// The effective site, re-read on each call: an overlay may switch
    /// Consul on or off while the API runs.
    site_json: PathBuf,
    kv: AssignmentKv,
}

fn read_site(path: &Path) -> Result<SiteConfig, String> {
    kindling_site::effective::load(path).map_err(|e| e.to_string())
}

impl ConsulAssignments {
    fn in_use(&self) -> Result<(), KvError> {
        let site = read_site(&self.site_json).map_err(KvError::NotReady)?;
        if site.stack.consul.enabled {
            Ok(())
        } else {
            Err(KvError::NotInUse("stack.consul.enabled is false".into()))
        }
    }

    fn failed(&self, e: AssignmentKvError, action: &str, key: Option<String>) -> KvError {
        match e {
            AssignmentKvError::NoToken { .. }
            | AssignmentKvError::TokenRead(_)
            | AssignmentKvError::Runtime(_) => KvError::NotReady(e.to_string()),
            AssignmentKvError::Timeout { .. } | AssignmentKvError::Consul(_) => match key {
                Some(key) => KvError::Write {
                    key,
                    reason: e.to_string(),
                },
                // The error names Consul's address already.
                None => KvError::List {
                    what: action.to_string(),
                    reason: e.to_string(),
                },
            },
        }
    }
}

impl SharedAssignments for ConsulAssignments {
    fn list(&self) -> Result<KvListing, KvError> {
        self.in_use()?;
        let listing = self
            .kv
            .list()
            .map_err(|e| self.failed(e, &format!("{PREFIX}*"), None))?;
        Ok(KvListing {
            index: listing.index,
            epoch: listing.epoch,
            entries: listing
                .entries
                .into_iter()
                .map(|pair| KvEntry {
                    name: pair
                        .key
                        .strip_prefix(PREFIX)
                        .unwrap_or(&pair.key)
                        .to_string(),
                    value: pair.bytes(),
                    modify_index: pair.modify_index,
                    flags: pair.flags,
                    key: pair.key,
                })
                .collect(),
        })
    }

    fn wait_for_change(&self, index: u64, wait: Duration) -> Result<u64, KvError> {
        self.in_use()?;
        self.kv
            .wait_for_change(index, wait)
            .map_err(|e| self.failed(e, &format!("watching {PREFIX}*"), None))
    }

    fn put(&self, mac: &MacAddr, profile: &str, stamp_ms: u64, cas: u64) -> Result<bool, KvError> {
        self.in_use()?;
        self.kv
            .put(&mac.to_string(), profile, stamp_ms, cas)
            .map_err(|e| self.failed(e, "write", Some(format!("{PREFIX}{mac}"))))
    }

    fn delete(&self, mac: &MacAddr, cas: u64) -> Result<bool, KvError> {
        self.in_use()?;
        self.kv
            .delete(&mac.to_string(), cas)
            .map_err(|e| self.failed(e, "delete", Some(format!("{PREFIX}{mac}"))))
    }

    fn claim_epoch(&self, epoch: &str) -> Result<bool, KvError> {
        self.in_use()?;
        self.kv.claim_epoch(epoch).map_err(|e| {
            self.failed(
                e,
                "claim",
                Some(kindling_stack::assignments::EPOCH_KEY.into()),
            )
        })
    }
}

/// Consul's HTTP address: the appliance's loopback listener, or
/// `$KINDLING_CONSUL_URL` (tests run Consul on a free port).
pub fn consul_url() -> String {
    std::env::var("KINDLING_CONSUL_URL")
        .unwrap_or_else(|_| StackLayout::appliance().consul_local_url())
}

/// The API's assignment sync over `state_dir/inventory/assignments.json`
/// and Consul KV; `None` (logged) if it cannot be set up, in which case
/// assignments stay local.
pub fn sync(run_dir: &Path, state_dir: &Path) -> Option<Arc<AssignmentSync>> {
    let layout = StackLayout {
        data_dir: state_dir.to_path_buf(),
        ..StackLayout::appliance()
    };
    let kv = match AssignmentKv::new(&consul_url(), &layout.state_dir()) {
        Ok(kv) => kv,
        Err(e) => {
            eprintln!("api: assignments stay local only: {e}");
            return None;
        }
    };
    let store = AssignmentStore::new(kindling_inventory::assignments_file(state_dir));
    let shared = ConsulAssignments {
        site_json: kindling_site::effective::in_run_dir(run_dir),
        kv,
    };
    Some(Arc::new(AssignmentSync::new(store, Arc::new(shared))))
}

/// Runs the sync for as long as the process lives (the API has no orderly
/// stop: init's SIGTERM ends it, and every write the sync makes is atomic).
pub fn spawn(sync: Arc<AssignmentSync>, run_dir: &Path) {
    static NEVER: AtomicBool = AtomicBool::new(false);
    let site_json = kindling_site::effective::in_run_dir(run_dir);
    let profiles = move || -> Option<BTreeSet<String>> {
        read_site(&site_json)
            .ok()
            .map(|s| s.profiles.keys().map(|p| p.to_string()).collect())
    };
    let started = std::thread::Builder::new()
        .name("assignment-sync".into())
        .spawn(move || sync.run(profiles, &NEVER));
    if let Err(e) = started {
        eprintln!("api: assignment sync not started (assignments stay local): {e}");
    }
}
