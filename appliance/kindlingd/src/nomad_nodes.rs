//! `kindlingd nomad-nodes`: where the site runs Nomad, reads Nomad's client
//! node list every few seconds (`kindling_stack::nomad_nodes`) and writes it
//! to `inventory/nomad-nodes.json`, from which the PXE service decides
//! whether a node is `joined` (`kindling_inventory::membership`).
//!
//! Runs as kl-stack, the account that already holds the bootstrap's Vault
//! token and through it Nomad's management token (listing nodes needs
//! `node:read`): the LAN-facing PXE service never gains it. Owns only the
//! loop; a failed read is written as the file's `problem` (the last
//! listing kept beside it) and tried again, never the end of the service.

use kindling_inventory::nomad_nodes::{self, NomadNode};
use kindling_stack::nomad::NodeStub;
use std::path::PathBuf;
use std::time::Duration;

/// How often the list is read: a node's `joined` lags its Nomad client's
/// registration by at most this.
const READ_EVERY: Duration = Duration::from_secs(3);

#[derive(clap::Args)]
pub struct Args {
    /// Effective config (default $KINDLING_SITE_JSON or /run/kindling/site.json).
    #[arg(long, value_name = "FILE")]
    site: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::console::init("nomad-nodes");
    let site_path = args.site.unwrap_or_else(crate::site::effective_path);
    let site = kindling_site::effective::load(&site_path)?;
    let layout = crate::stack::appliance_layout();
    let state_dir = layout.data_dir.clone();
    if !site.stack.nomad.enabled {
        // No Nomad: a list left from an earlier boot must not be judged from.
        nomad_nodes::remove(&state_dir)?;
        crate::notify_ready();
        return Ok(());
    }
    crate::notify_ready();
    loop {
        let layout = layout.clone();
        let reading = match kindling_stack::api::block_on(async move {
            kindling_stack::nomad_nodes::list_as_bootstrap(&layout).await
        }) {
            Ok(Ok(nodes)) => Ok(nodes.into_iter().map(from_stub).collect()),
            Ok(Err(e)) => Err(format!("Nomad's node list cannot be read: {e}")),
            Err(e) => Err(format!("Nomad's node list cannot be read: {e}")),
        };
        match nomad_nodes::record(&state_dir, reading) {
            Ok(true) => tracing::info!("nomad-nodes: the list changed"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "nomad-nodes: not recorded"),
        }
        std::thread::sleep(READ_EVERY);
    }
}

fn from_stub(n: NodeStub) -> NomadNode {
    NomadNode {
        name: n.name,
        id: n.id,
        datacenter: n.datacenter,
        status: n.status,
    }
}
