//! Node enrollment grants, minted with the enrollment token: for a node the
//! PXE service serves user-data to, a response-wrapped, single-use AppRole
//! secret-id bound to the node's leased address (plus the role-id, Vault's
//! LAN address and the appliance CA). With it the node logs in to Vault,
//! from that address only, and reads its own entries, its profile's and the
//! gossip key; nothing else. Also: look a grant up by its accessors (was it
//! unwrapped, was it used to log in) and destroy a secret-id nobody redeemed.
//!
//! Holds only the enrollment token (`<state>/for-pxe/enroll-token`, policy
//! `kindling-enroll`, made by the bootstrap's `enrollment` step): it writes
//! no KV entry, no policy and no Consul token. Per-node Vault entries and
//! Consul tokens for the site's nodes are made ahead of time by that step.
//! Must never hand out an unwrapped secret-id or another node's material,
//! and never log a grant.

use crate::bootstrap::policies::{node_role, site_node_role, APPROLE_MOUNT};
use crate::layout::StackLayout;
use crate::render::lan_address;
use crate::secrets::SecretStore;
use crate::vault::{SecretIdRequest, VaultApi};
use kindling_site::enrollment::SECRET_ID_OUTLIVES_GRANT_SECS;
use kindling_site::SiteConfig;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("the stack is not bootstrapped yet (no enrollment token); try again once `stack: ready` was printed")]
    NotBootstrapped,
    #[error("profile {0:?} is not defined by the site")]
    UnknownProfile(String),
    #[error("{0:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")]
    BadMac(String),
    #[error("reading the enrollment token: {0}")]
    ReadEnrollToken(#[source] crate::secrets::SecretsError),
    #[error("reading kindling's state: {0}")]
    LanAddress(#[source] crate::render::RenderError),
    #[error("Vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
}

/// What goes into a node's user-data, and the accessors the appliance
/// checks the grant by. `Debug` hides the wrapping token.
#[derive(Clone, PartialEq, Eq)]
pub struct EnrollmentGrant {
    /// Vault on the LAN, TLS with the appliance CA: `https://192.168.100.1:8200`.
    pub vault_addr: String,
    pub role_id: String,
    /// Response-wrapping token around a single-use secret-id.
    pub wrapped_secret_id: String,
    pub ca_pem: Option<String>,
    /// The wrapping token's accessor (not a secret).
    pub wrapping_accessor: String,
    /// The secret-id's accessor (not a secret).
    pub secret_id_accessor: String,
}

impl std::fmt::Debug for EnrollmentGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EnrollmentGrant {{ vault_addr: {}, role_id: {}, wrapped_secret_id: <redacted>, wrapping_accessor: {}, secret_id_accessor: {} }}",
            self.vault_addr, self.role_id, self.wrapping_accessor, self.secret_id_accessor
        )
    }
}

/// What Vault says about a grant now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrantLookup {
    /// The wrapping token still exists: nobody unwrapped it yet.
    pub wrapping_alive: bool,
    /// The secret-id still exists: nobody logged in with it yet.
    pub secret_id_alive: bool,
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

/// One grant to mint.
#[derive(Debug, Clone)]
pub struct GrantRequest<'a> {
    pub mac: &'a str,
    pub profile: &'a str,
    pub hostname: &'a str,
    /// The node's leased address: the secret-id and its tokens work from
    /// there only.
    pub address: Ipv4Addr,
}

#[derive(Debug, Clone)]
pub struct Enroller {
    site: SiteConfig,
    layout: StackLayout,
}

impl Enroller {
    /// `None` when the site does not enable Vault (no grants to give).
    pub fn new(site: &SiteConfig, layout: &StackLayout) -> Option<Self> {
        site.stack.vault.enabled.then(|| Self {
            site: site.clone(),
            layout: layout.clone(),
        })
    }

    /// Seconds a grant's wrapping token lives (`enrollment.grant_ttl_secs`).
    pub fn grant_ttl_secs(&self) -> u32 {
        self.site.enrollment.grant_ttl_secs.secs()
    }

    fn vault(&self) -> Result<VaultApi, EnrollError> {
        // Read on every call: the token appears once the bootstrap made it.
        let token = SecretStore::new(&self.layout.state_dir())
            .read_enroll_token()
            .map_err(EnrollError::ReadEnrollToken)?
            .ok_or(EnrollError::NotBootstrapped)?;
        Ok(VaultApi::new(
            &self.layout.vault_local_url(),
            Some(token),
            None,
        )?)
    }

    /// The role a grant for `mac` in `profile` is minted from: the node's
    /// own when the site names it with that profile, else the profile's.
    fn role(&self, profile: &str, mac: &str) -> Result<String, EnrollError> {
        if !self.site.profiles.keys().any(|p| p.as_str() == profile) {
            return Err(EnrollError::UnknownProfile(profile.to_string()));
        }
        let key = mac_key(mac)?;
        let named = self.site.nodes.iter().any(|n| {
            n.profile.as_str() == profile && mac_key(&n.mac.to_string()).ok().as_ref() == Some(&key)
        });
        Ok(if named {
            site_node_role(&key)
        } else {
            node_role(profile)
        })
    }

    /// Mints a fresh grant for one node (each call mints a new single-use
    /// secret-id: whether a node may have one is the caller's decision).
    pub async fn issue(&self, request: &GrantRequest<'_>) -> Result<EnrollmentGrant, EnrollError> {
        let key = mac_key(request.mac)?;
        let role = self.role(request.profile, request.mac)?;
        let vault = self.vault()?;
        let role_id = vault.approle_role_id(APPROLE_MOUNT, &role).await?;
        let metadata = BTreeMap::from([
            ("mac".to_string(), key),
            ("profile".to_string(), request.profile.to_string()),
            ("hostname".to_string(), request.hostname.to_string()),
        ]);
        let ttl = self.grant_ttl_secs();
        let bound = format!("{}/32", request.address);
        // Longer than the grant: until then, "the secret-id is gone" can only
        // mean it was used to log in.
        let secret_id_ttl = format!("{}s", ttl + SECRET_ID_OUTLIVES_GRANT_SECS);
        let wrap_ttl = format!("{ttl}s");
        let wrapped = vault
            .wrapped_secret_id(
                APPROLE_MOUNT,
                &role,
                &SecretIdRequest {
                    metadata: &metadata,
                    bound: &bound,
                    secret_id_ttl: &secret_id_ttl,
                    wrap_ttl: &wrap_ttl,
                },
            )
            .await?;
        let lan = lan_address(&self.site).map_err(EnrollError::LanAddress)?;
        let ca_pem =
            std::fs::read_to_string(crate::tls::tls_files(&self.layout.state_dir()).ca_cert).ok();
        Ok(EnrollmentGrant {
            vault_addr: format!("https://{lan}:{}", self.layout.ports.vault_api),
            role_id,
            wrapped_secret_id: wrapped.token,
            ca_pem,
            wrapping_accessor: wrapped.accessor,
            secret_id_accessor: wrapped.secret_id_accessor,
        })
    }

    /// Whether a grant of `profile` was unwrapped and whether its secret-id
    /// was used, by the accessors recorded when it was minted.
    pub async fn lookup(
        &self,
        profile: &str,
        mac: &str,
        wrapping_accessor: &str,
        secret_id_accessor: &str,
    ) -> Result<GrantLookup, EnrollError> {
        let role = self.role(profile, mac)?;
        let vault = self.vault()?;
        Ok(GrantLookup {
            wrapping_alive: vault.token_accessor_exists(wrapping_accessor).await?,
            secret_id_alive: vault
                .secret_id_exists(APPROLE_MOUNT, &role, secret_id_accessor)
                .await?,
        })
    }

    /// Destroys a grant's secret-id (one already gone is fine), so whoever
    /// holds it can no longer log in.
    pub async fn withdraw(
        &self,
        profile: &str,
        mac: &str,
        secret_id_accessor: &str,
    ) -> Result<(), EnrollError> {
        let role = self.role(profile, mac)?;
        let vault = self.vault()?;
        Ok(vault
            .destroy_secret_id(APPROLE_MOUNT, &role, secret_id_accessor)
            .await?)
    }

    /// Renews the enrollment token (periodic), so a long-running appliance
    /// keeps it between boots.
    pub async fn renew_token(&self) -> Result<(), EnrollError> {
        Ok(self.vault()?.renew_self().await?)
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
