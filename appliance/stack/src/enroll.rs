//! Node enrollment grants: for a node the PXE service renders user-data for,
//! a response-wrapped, single-use, short-lived AppRole secret-id (plus the
//! role-id, Vault's LAN address and the appliance CA). With it `begin.sh` on
//! the node logs in to Vault and reads its own Consul token, the gossip key
//! and client certificates; nothing else.
//!
//! Owns the per-node entries in Vault KV (`kindling/nodes/<mac>/…`) and the
//! node's Consul token. Must never hand out an unwrapped secret-id or another
//! node's material, and never log a grant.

use crate::bootstrap::policies::{APPROLE_MOUNT, KV_MOUNT};
use crate::consul::ConsulApi;
use crate::layout::StackLayout;
use crate::render::lan_address;
use crate::secrets::SecretStore;
use crate::vault::VaultApi;
use kindling_site::SiteConfig;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("the stack is not bootstrapped yet (no Vault token for kindling); try again once `stack: ready` was printed")]
    NotBootstrapped,
    #[error("profile {0:?} is not defined by the site")]
    UnknownProfile(String),
    #[error("{0:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")]
    BadMac(String),
    #[error("reading kindling's state: {0}")]
    ReadApplianceToken(#[source] crate::secrets::SecretsError),
    #[error("reading kindling's state: {0}")]
    LanAddress(#[source] crate::render::RenderError),
    #[error("Vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
    #[error("Consul: {0}")]
    Consul(#[from] crate::consul::ConsulError),
}

/// What goes into a node's user-data. `Debug` hides the wrapping token.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentGrant {
    /// Vault on the LAN, TLS with the appliance CA: `https://192.168.100.1:8200`.
    pub vault_addr: String,
    pub role_id: String,
    /// Response-wrapping token around a single-use secret-id.
    pub wrapped_secret_id: String,
    pub ca_pem: Option<String>,
}

impl std::fmt::Debug for EnrollmentGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EnrollmentGrant {{ vault_addr: {}, role_id: {}, wrapped_secret_id: <redacted> }}",
            self.vault_addr, self.role_id
        )
    }
}

/// `52:54:00:6B:00:10` or `52-54-00-6b-00-10` → `52-54-00-6b-00-10` (the
/// form used in Vault paths and in the secret-id's `mac` metadata).
pub fn mac_key(mac: &str) -> Result<String, EnrollError> {
    let parts: Vec<&str> = mac.trim().split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(EnrollError::BadMac(mac.to_string()));
    }
    Ok(parts.join("-").to_ascii_lowercase())
}

#[derive(Debug, Clone)]
pub struct Enroller {
    site: SiteConfig,
    layout: StackLayout,
    /// How long the wrapping token (and so the grant) is usable.
    pub wrap_ttl: String,
}

impl Enroller {
    /// `None` when the site does not enable Vault (no grants to give).
    pub fn new(site: &SiteConfig, layout: &StackLayout) -> Option<Self> {
        site.stack.vault.enabled.then(|| Self {
            site: site.clone(),
            layout: layout.clone(),
            wrap_ttl: "2h".into(),
        })
    }

    fn vault(&self) -> Result<VaultApi, EnrollError> {
        // Read on every call: the token appears once the bootstrap made it.
        let token = SecretStore::new(&self.layout.state_dir())
            .read_appliance_token()
            .map_err(EnrollError::ReadApplianceToken)?
            .ok_or(EnrollError::NotBootstrapped)?;
        Ok(VaultApi::new(
            &self.layout.vault_local_url(),
            Some(token),
            None,
        )?)
    }

    /// Issues a fresh grant for `mac` in `profile` (each call mints a new
    /// single-use secret-id; the node's Consul token is created once).
    pub async fn issue(&self, mac: &str, profile: &str) -> Result<EnrollmentGrant, EnrollError> {
        let key = mac_key(mac)?;
        let profile_def = self
            .site
            .profiles
            .iter()
            .find(|(name, _)| name.as_str() == profile)
            .map(|(_, p)| p.clone())
            .ok_or_else(|| EnrollError::UnknownProfile(profile.to_string()))?;
        let vault = self.vault()?;
        let hostname = self
            .site
            .nodes
            .iter()
            .find(|n| mac_key(&n.mac.to_string()).ok().as_deref() == Some(key.as_str()))
            .and_then(|n| n.hostname.clone())
            .unwrap_or_else(|| format!("node-{key}"));

        vault
            .kv_write(
                KV_MOUNT,
                &format!("nodes/{key}/meta"),
                &json!({"mac": key, "profile": profile, "hostname": hostname, "tags": profile_def.tags}),
            )
            .await?;
        if self.site.stack.consul.enabled {
            self.ensure_consul_token(&vault, &key, profile, &hostname)
                .await?;
        }
        let role = format!("node-{profile}");
        let role_id = vault.approle_role_id(APPROLE_MOUNT, &role).await?;
        let metadata = BTreeMap::from([
            ("mac".to_string(), key.clone()),
            ("profile".to_string(), profile.to_string()),
        ]);
        let wrapped_secret_id = vault
            .wrapped_secret_id(APPROLE_MOUNT, &role, &metadata, &self.wrap_ttl)
            .await?;
        let lan = lan_address(&self.site).map_err(EnrollError::LanAddress)?;
        let ca_pem =
            std::fs::read_to_string(crate::tls::tls_files(&self.layout.state_dir()).ca_cert).ok();
        Ok(EnrollmentGrant {
            vault_addr: format!("https://{lan}:{}", self.layout.ports.vault_api),
            role_id,
            wrapped_secret_id,
            ca_pem,
        })
    }

    async fn ensure_consul_token(
        &self,
        vault: &VaultApi,
        key: &str,
        profile: &str,
        hostname: &str,
    ) -> Result<(), EnrollError> {
        let path = format!("nodes/{key}/consul");
        if vault
            .kv_read(KV_MOUNT, &path)
            .await?
            .and_then(|v| v.get("secret_id").cloned())
            .is_some()
        {
            return Ok(());
        }
        let mgmt = vault
            .kv_read(KV_MOUNT, "stack/consul/management")
            .await?
            .and_then(|v| {
                v.get("secret_id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .ok_or(EnrollError::NotBootstrapped)?;
        let consul = ConsulApi::new(&self.layout.consul_local_url(), Some(mgmt));
        let policy = format!("node-{profile}");
        let token = consul
            .create_token(
                &format!("kindling node {hostname} ({key})"),
                &[policy.as_str()],
                &[(hostname.to_string(), self.site.stack.datacenter.clone())],
            )
            .await?;
        vault
            .kv_write(
                KV_MOUNT,
                &path,
                &json!({"accessor_id": token.accessor_id, "secret_id": token.secret_id}),
            )
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_keys_are_normalised_and_bad_ones_named() {
        assert_eq!(
            mac_key("52:54:00:6B:00:10").ok().as_deref(),
            Some("52-54-00-6b-00-10")
        );
        assert_eq!(
            mac_key("52-54-00-6b-00-10").ok().as_deref(),
            Some("52-54-00-6b-00-10")
        );
        assert!(matches!(
            mac_key("52:54:00:6b:00"),
            Err(EnrollError::BadMac(_))
        ));
        assert!(matches!(
            mac_key("52:54:00:6b:00:zz"),
            Err(EnrollError::BadMac(_))
        ));
    }
}
