//! `kindlingd node-tokens`: when the operator re-arms a node (`kindling node
//! reprovision MAC`, recorded in `inventory/reprovision.json`), revokes the
//! Consul token the node's old install held and makes the one its next
//! install gets (`kindling_stack::node_tokens`), and records what it
//! revoked in `inventory/node-tokens.json` (`GET /v1/nodes` shows it).
//!
//! Runs as kl-stack, the account that already holds the bootstrap's Vault
//! token and through it Consul's management token (deleting a token needs
//! `acl = "write"`): neither the API nor the PXE service ever gains it.
//! Owns only the loop; a failure (Vault sealed, Consul down) is recorded
//! and retried, never the end of the service.

use kindling_api::nodes::TokenRevocation;
use kindling_inventory::revocations::{pending, RevocationStore};
use kindling_inventory::ReprovisionStore;
use kindling_site::{MacAddr, SiteConfig};
use kindling_stack::StackLayout;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often re-arm requests are looked for, and how long a failed one
/// waits before it is tried again.
const LOOK_EVERY: Duration = Duration::from_secs(1);
const RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub struct Args {
    /// Effective config (default $KINDLING_SITE_JSON or /run/kindling/site.json).
    #[arg(long, value_name = "FILE")]
    site: Option<PathBuf>,
}

struct Keeper {
    site: SiteConfig,
    layout: StackLayout,
    requests: ReprovisionStore,
    record: RevocationStore,
    tried: BTreeMap<MacAddr, Instant>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::console::init("node-tokens");
    let site_path = args.site.unwrap_or_else(crate::site::effective_path);
    let site = kindling_site::effective::load(&site_path)?;
    let layout = crate::stack::appliance_layout();
    let mut keeper = Keeper {
        requests: ReprovisionStore::in_state_dir(&layout.data_dir),
        record: RevocationStore::in_state_dir(&layout.data_dir),
        site,
        layout,
        tried: BTreeMap::new(),
    };
    crate::notify_ready();
    loop {
        keeper.tick();
        std::thread::sleep(LOOK_EVERY);
    }
}

impl Keeper {
    fn tick(&mut self) {
        let (requests, done) = match (self.requests.load(), self.record.load()) {
            (Ok(r), Ok(d)) => (r, d),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "node-tokens: re-arm requests unreadable");
                return;
            }
        };
        for (mac, generation) in pending(&requests, &done) {
            if self
                .tried
                .get(&mac)
                .is_some_and(|t| t.elapsed() < RETRY_AFTER)
            {
                continue;
            }
            self.tried.insert(mac, Instant::now());
            let (layout, site) = (self.layout.clone(), self.site.clone());
            let result = kindling_stack::api::block_on(async move {
                kindling_stack::node_tokens::replace_as_bootstrap(&layout, &site, &mac).await
            });
            let at = kindling_clock::unix_now();
            let revocation = match result {
                Ok(Ok(replaced)) => {
                    let replaced = replaced.unwrap_or_default();
                    tracing::info!(%mac, generation, revoked = replaced.revoked.as_deref().unwrap_or("none"), was_live = replaced.was_live, certificates = replaced.certificates.len(), "node-tokens: re-armed node's Consul token and certificates revoked");
                    TokenRevocation {
                        generation,
                        at,
                        accessor: replaced.revoked,
                        was_live: replaced.was_live,
                        certificates: replaced.certificates,
                        made: Some(replaced.made).filter(|m| !m.is_empty()),
                        error: None,
                    }
                }
                Ok(Err(e)) => failed(generation, at, e.to_string()),
                Err(e) => failed(generation, at, e.to_string()),
            };
            if let Some(e) = &revocation.error {
                tracing::warn!(%mac, generation, error = %e, "node-tokens: not revoked yet; will retry");
            }
            if let Err(e) = self.record.record(mac, revocation) {
                tracing::warn!(%mac, error = %e, "node-tokens: not recorded");
            }
        }
    }
}

fn failed(generation: u64, at: u64, error: String) -> TokenRevocation {
    TokenRevocation {
        generation,
        at,
        accessor: None,
        was_live: false,
        certificates: Vec::new(),
        made: None,
        error: Some(error),
    }
}
