//! The catalog check's source, implemented with the Consul client and
//! token `kindlingd api` already holds for the assignment sync (whose
//! policy also reads node entries: `node_prefix "" read`), and the thread
//! that keeps `inventory/catalog.json` current for the PXE service, which
//! decides `joined` from it. The LAN-facing PXE process holds no Consul
//! credentials.
//!
//! Owns only the adapter between the two crates' types and the thread's
//! start, like `assignments.rs`. Must never log the token.

use kindling_inventory::catalog::{CatalogNode, CatalogSource, CatalogWatcher, Listing};
use kindling_stack::assignments::AssignmentKv;
use kindling_stack::StackLayout;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

struct ConsulCatalog {
    /// The effective site, re-read on each round: an overlay may switch
    /// Consul on or off while the API runs.
    site_json: PathBuf,
    consul: AssignmentKv,
}

impl CatalogSource for ConsulCatalog {
    fn list(&self, index: u64, wait: Duration) -> Result<Listing, String> {
        let (index, entries) = self
            .consul
            .catalog_nodes(index, wait)
            .map_err(|e| format!("the appliance's Consul catalog cannot be read: {e}"))?;
        Ok((
            index,
            entries
                .into_iter()
                .map(|e| CatalogNode {
                    node: e.node,
                    id: e.id,
                    address: e.address,
                    meta: e.meta.unwrap_or_default(),
                })
                .collect(),
        ))
    }

    fn not_in_use(&self) -> Option<String> {
        match kindling_site::effective::load(&self.site_json) {
            Ok(site) if site.stack.consul.enabled => None,
            Ok(_) => Some("stack.consul.enabled is false".into()),
            Err(e) => Some(e.to_string()),
        }
    }
}

/// Starts the catalog check for as long as the process lives; logged and
/// left out if its client cannot be made (nodes then stay `installed`,
/// saying the catalog was not listed).
pub fn spawn(run_dir: &Path, state_dir: &Path, consul_url: &str) {
    static NEVER: AtomicBool = AtomicBool::new(false);
    let layout = StackLayout {
        data_dir: state_dir.to_path_buf(),
        ..StackLayout::appliance()
    };
    let consul = match AssignmentKv::new(consul_url, &layout.state_dir()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("api: no catalog check (nodes cannot be seen joined): {e}");
            return;
        }
    };
    let source = ConsulCatalog {
        site_json: kindling_site::effective::in_run_dir(run_dir),
        consul,
    };
    let watcher = CatalogWatcher::new(state_dir, Arc::new(source));
    let started = std::thread::Builder::new()
        .name("catalog-check".into())
        .spawn(move || watcher.run(&NEVER));
    if let Err(e) = started {
        eprintln!("api: catalog check not started: {e}");
    }
}
