//! Tokens and policies: checking, renewing and revoking the client's own
//! token, creating orphan periodic tokens and writing ACL policies.
//!
//! Owns the token and policy calls. Must never return or log any token but
//! the one it was asked to create.

use super::client::VaultApi;
use super::error::{api_err, error_text, VaultError};
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

    /// An orphan, periodic token (vaultrs) with the `default` policy
    /// besides `policies`. Periodic: it never expires while it is renewed
    /// within `period` (the bootstrap renews it every boot).
    pub async fn create_orphan_token(
        &self,
        name: &str,
        policies: &[&str],
        period: &str,
    ) -> Result<String, VaultError> {
        self.orphan_token(name, policies, period, true).await
    }

    /// Like [`create_orphan_token`](Self::create_orphan_token) but without
    /// the `default` policy (which would add cubbyhole, response wrapping
    /// and tool endpoints): the token can do what `policies` say, nothing else.
    pub async fn create_narrow_orphan_token(
        &self,
        name: &str,
        policies: &[&str],
        period: &str,
    ) -> Result<String, VaultError> {
        self.orphan_token(name, policies, period, false).await
    }

    async fn orphan_token(
        &self,
        name: &str,
        policies: &[&str],
        period: &str,
        default_policy: bool,
    ) -> Result<String, VaultError> {
        let client = self.typed("create token")?;
        let mut opts = vaultrs::api::token::requests::CreateOrphanTokenRequest::builder();
        opts.display_name(name)
            .policies(policies.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .period(period)
            .no_default_policy(!default_policy)
            .renewable(true);
        let auth = vaultrs::token::new_orphan(&client, Some(&mut opts))
            .await
            .map_err(|e| api_err("create token", e))?;
        Ok(auth.client_token)
    }

    /// Whether the token with `accessor` exists (a response-wrapping token
    /// is gone once unwrapped or expired).
    pub async fn token_accessor_exists(&self, accessor: &str) -> Result<bool, VaultError> {
        let (status, v) = self
            .raw(
                reqwest::Method::POST,
                "auth/token/lookup-accessor",
                Some(&json!({ "accessor": accessor })),
                None,
            )
            .await?;
        match status {
            200 => Ok(true),
            400 if error_text(&v).contains("invalid accessor") => Ok(false),
            _ => Err(VaultError::Api {
                action: "look up a token accessor".into(),
                status,
                message: error_text(&v),
            }),
        }
    }

    /// The text of ACL policy `name`, `None` if there is none.
    pub async fn policy_text(&self, name: &str) -> Result<Option<String>, VaultError> {
        let (status, v) = self
            .raw(
                reqwest::Method::GET,
                &format!("sys/policies/acl/{name}"),
                None,
                None,
            )
            .await?;
        match status {
            200 => Ok(v
                .pointer("/data/policy")
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)),
            404 => Ok(None),
            _ => Err(VaultError::Api {
                action: format!("read policy {name}"),
                status,
                message: error_text(&v),
            }),
        }
    }

    pub async fn set_policy(&self, name: &str, rules: &str) -> Result<(), VaultError> {
        let client = self.typed("write policy")?;
        vaultrs::sys::policy::set(&client, name, rules)
            .await
            .map_err(|e| api_err(&format!("write policy {name}"), e))
    }
}
