//! What the bootstrap's account (kl-stack) holds, for the services that run
//! as it (`kindlingd node-tokens`, `nomad-nodes`, `backup`): the bootstrap's
//! Vault token (`stack/appliance-token`) and, read through it for one call
//! only, a management token the bootstrap keeps in Vault KV. Nothing here
//! is cached or logged.

use crate::bootstrap::policies::KV_MOUNT;
use crate::layout::StackLayout;
use crate::secrets::{SecretStore, SecretsError};
use crate::vault::{VaultApi, VaultError};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum HeldError {
    #[error("the stack is not bootstrapped yet: {0}")]
    NotBootstrapped(String),
    #[error("reading the bootstrap's token: {0}")]
    ReadToken(#[from] SecretsError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

/// The bootstrap's Vault token.
pub fn bootstrap_token(layout: &StackLayout) -> Result<String, HeldError> {
    SecretStore::new(&layout.state_dir())
        .read_appliance_token()?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| HeldError::NotBootstrapped("no stack/appliance-token".into()))
}

/// Vault on loopback with the bootstrap's token.
pub fn bootstrap_vault(layout: &StackLayout) -> Result<VaultApi, HeldError> {
    let token = bootstrap_token(layout)?;
    Ok(VaultApi::new(&layout.vault_local_url(), None, None)?.with_token(&token))
}

/// The secret id of the token the bootstrap keeps at `kv_path` in
/// [`KV_MOUNT`] (e.g. `policies::CONSUL_MANAGEMENT_KV`).
pub async fn kept_secret(vault: &VaultApi, kv_path: &str) -> Result<String, HeldError> {
    vault
        .kv_read(KV_MOUNT, kv_path)
        .await?
        .and_then(|v| {
            v.get("secret_id")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .ok_or_else(|| {
            HeldError::NotBootstrapped(format!("no token in Vault at {KV_MOUNT}/{kv_path}"))
        })
}
