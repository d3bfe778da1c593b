//! Nomad's client node list as the appliance reads it, for the inventory's
//! `joined` check where Nomad runs: over mutual TLS on loopback with
//! Nomad's management token, which the bootstrap keeps in Vault
//! ([`crate::held`]). Only the bootstrap's account (kl-stack) can do this;
//! `kindlingd nomad-nodes` writes what it read to a file the PXE service
//! judges from, so the LAN-facing process never holds a Nomad token.

use crate::bootstrap::policies::NOMAD_MANAGEMENT_KV;
use crate::held::{self, HeldError};
use crate::layout::StackLayout;
use crate::nomad::{NodeStub, NomadApi, NomadError};

#[derive(Debug, thiserror::Error)]
pub enum NomadNodesError {
    #[error(transparent)]
    Held(#[from] HeldError),
    #[error(transparent)]
    Nomad(#[from] NomadError),
}

/// Every client node Nomad's servers know, with their status.
pub async fn list_as_bootstrap(layout: &StackLayout) -> Result<Vec<NodeStub>, NomadNodesError> {
    let vault = held::bootstrap_vault(layout)?;
    let management = held::kept_secret(&vault, NOMAD_MANAGEMENT_KV).await?;
    Ok(NomadApi::appliance(layout)?
        .with_token(&management)
        .nodes()
        .await?)
}
