//! A site node's Consul token: its node identity (the hostname the site
//! gives it, in the stack's datacenter, so it may register that one node
//! name and no other) and its profile's policy `node-<profile>`. Made ahead
//! of time by the bootstrap's `enrollment` step and kept in Vault KV at
//! `kindling/nodes/<mac>/consul` (`accessor_id`, `secret_id`), where only
//! that node's Vault login can read it.
//!
//! When the operator re-arms a node (`kindling node reprovision MAC`), the
//! token its old install was given is revoked (deleted by accessor, with a
//! token that has `acl = "write"`: the management token, never a
//! LAN-facing service's), the client certificates it issued are revoked
//! ([`crate::node_certs`]) and a fresh token is made for the next install:
//! [`replace`]. Must never log or return a secret id.

use crate::bootstrap::policies::{self, CONSUL_MANAGEMENT_KV, KV_MOUNT};
use crate::consul::{AclToken, ConsulApi, ConsulError};
use crate::enroll::mac_key;
use crate::held;
use crate::layout::StackLayout;
use crate::vault::{VaultApi, VaultError};
use kindling_site::{MacAddr, NodeAssignment, SiteConfig};
use serde_json::{json, Value};

#[derive(Debug, thiserror::Error)]
pub enum NodeTokenError {
    #[error(transparent)]
    Consul(#[from] ConsulError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Held(#[from] held::HeldError),
}

/// Where a node's token is kept in [`KV_MOUNT`].
pub fn kv_path(mac: &MacAddr) -> String {
    format!(
        "nodes/{}/consul",
        mac_key(&mac.to_string()).unwrap_or_default()
    )
}

/// The catalog node name a site node's token may register.
pub fn node_name(node: &NodeAssignment) -> String {
    node.hostname
        .clone()
        .unwrap_or_else(|| node.mac.default_hostname())
}

/// Makes a token for `node` (not recorded anywhere: the caller keeps it).
pub async fn make(
    consul_admin: &ConsulApi,
    site: &SiteConfig,
    node: &NodeAssignment,
) -> Result<AclToken, ConsulError> {
    let name = node_name(node);
    let key = mac_key(&node.mac.to_string()).unwrap_or_default();
    consul_admin
        .create_token(
            &format!("kindling node {name} ({key})"),
            &[policies::node_role(node.profile.as_str()).as_str()],
            &[(name, site.stack.datacenter.clone())],
        )
        .await
}

/// Keeps `token` as `mac`'s, where only that node's Vault login reads it.
pub async fn record(vault: &VaultApi, mac: &MacAddr, token: &AclToken) -> Result<(), VaultError> {
    vault
        .kv_write(
            KV_MOUNT,
            &kv_path(mac),
            &json!({"accessor_id": token.accessor_id, "secret_id": token.secret_id}),
        )
        .await
}

/// What [`replace`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replaced {
    /// The accessor of the token the old install held (`None`: it had none).
    pub revoked: Option<String>,
    /// Whether Consul still had that token (false: deleted before).
    pub was_live: bool,
    /// Serial numbers of the client certificates the old install issued
    /// that were revoked now.
    pub certificates: Vec<String>,
    /// The accessor of the token made for the next install.
    pub made: String,
}

/// Revokes `mac`'s recorded token and its certificates and records a fresh
/// token. `Ok(None)` for a MAC the site does not name (it was never given a
/// token). Safe to run again after a failure part-way: a token already
/// deleted counts as revoked, a revoked certificate is left alone.
pub async fn replace(
    vault: &VaultApi,
    consul_admin: &ConsulApi,
    site: &SiteConfig,
    mac: &MacAddr,
) -> Result<Option<Replaced>, NodeTokenError> {
    let Some(node) = site.nodes.iter().find(|n| n.mac == *mac) else {
        return Ok(None);
    };
    let path = kv_path(mac);
    let old = vault.kv_read(KV_MOUNT, &path).await?.and_then(|v| {
        v.get("accessor_id")
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let was_live = match &old {
        Some(accessor) => consul_admin.delete_token(accessor).await?,
        None => false,
    };
    let certificates = crate::node_certs::revoke_for(vault, &node_name(node)).await?;
    let token = make(consul_admin, site, node).await?;
    record(vault, &node.mac, &token).await?;
    Ok(Some(Replaced {
        revoked: old,
        was_live,
        certificates,
        made: token.accessor_id,
    }))
}

/// [`replace`] with the tokens the bootstrap's account holds (kl-stack):
/// its Vault token and, through it, Consul's management token
/// ([`crate::held`]).
pub async fn replace_as_bootstrap(
    layout: &StackLayout,
    site: &SiteConfig,
    mac: &MacAddr,
) -> Result<Option<Replaced>, NodeTokenError> {
    if !site.nodes.iter().any(|n| n.mac == *mac) {
        return Ok(None);
    }
    let vault = held::bootstrap_vault(layout)?;
    let management = held::kept_secret(&vault, CONSUL_MANAGEMENT_KV).await?;
    let consul = ConsulApi::new(&layout.consul_local_url(), Some(management));
    replace(&vault, &consul, site, mac).await
}
