//! Tokens and policies: checking, renewing and revoking the client's own
//! token, creating orphan periodic tokens and writing ACL policies.
//!
//! Owns the token and policy calls. Must never return or log any token but
//! the one it was asked to create.

use super::client::VaultApi;
use super::error::{api_err, VaultError};
use serde_json::json;

impl VaultApi {
    pub async fn token_valid(&self) -> Result<bool, VaultError> {
        let (status, _) = self
            .raw(reqwest::Method::GET, "auth/token/lookup-self", None, None)
            .await?;
        Ok(status == 200)
    }

    pub async fn renew_self(&self) -> Result<(), VaultError> {
        self.call(
            "token renew-self",
            reqwest::Method::PUT,
            "auth/token/renew-self",
            Some(&json!({})),
        )
        .await
        .map(|_| ())
    }

    pub async fn revoke_self(&self) -> Result<(), VaultError> {
        self.call(
            "token revoke-self",
            reqwest::Method::PUT,
            "auth/token/revoke-self",
            Some(&json!({})),
        )
        .await
        .map(|_| ())
    }

    /// An orphan, periodic token (vaultrs). Periodic: it never expires while
    /// it is renewed within `period` (the bootstrap renews it every boot).
    pub async fn create_orphan_token(
        &self,
        name: &str,
        policies: &[&str],
        period: &str,
    ) -> Result<String, VaultError> {
        let client = self.typed("create token")?;
        let mut opts = vaultrs::api::token::requests::CreateOrphanTokenRequest::builder();
        opts.display_name(name)
            .policies(policies.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .period(period)
            .no_default_policy(false)
            .renewable(true);
        let auth = vaultrs::token::new_orphan(&client, Some(&mut opts))
            .await
            .map_err(|e| api_err("create token", e))?;
        Ok(auth.client_token)
    }

    pub async fn set_policy(&self, name: &str, rules: &str) -> Result<(), VaultError> {
        let client = self.typed("write policy")?;
        vaultrs::sys::policy::set(&client, name, rules)
            .await
            .map_err(|e| api_err(&format!("write policy {name}"), e))
    }
}
