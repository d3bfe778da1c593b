//! Tokens and policies: checking, renewing and revoking the client's own
//! token, creating orphan periodic tokens and writing ACL policies.
//!
//! Owns the token and policy calls. Must never return or log any token but
//! the one it was asked to create.

use super::client::VaultApi;
use super::error::{api_err, error_text, VaultError};
use serde_json::{json, Value};

/// A token role: it hands out exactly one policy, as an orphan, periodic
/// token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRole {
    pub role: &'static str,
    pub policy: &'static str,
    pub period: &'static str,
    /// Whether its tokens also get Vault's `default` policy (cubbyhole,
    /// response wrapping, tools); the enrollment token does not.
    pub default_policy: bool,
}

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
        let client = self.typed("create token")?;
        let mut opts = vaultrs::api::token::requests::CreateOrphanTokenRequest::builder();
        opts.display_name(name)
            .policies(policies.iter().map(|p| p.to_string()).collect::<Vec<_>>())
            .period(period)
            .renewable(true);
        let auth = vaultrs::token::new_orphan(&client, Some(&mut opts))
            .await
            .map_err(|e| api_err("create token", e))?;
        Ok(auth.client_token)
    }

    /// The accessor of the client's own token (`lookup-self`).
    pub async fn own_accessor(&self) -> Result<String, VaultError> {
        let v = self
            .call(
                "token lookup-self",
                reqwest::Method::GET,
                "auth/token/lookup-self",
                None,
            )
            .await?;
        v.pointer("/data/accessor")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| VaultError::Unexpected {
                action: "token lookup-self".into(),
                reason: "no accessor in the answer".into(),
            })
    }

    /// Whether the token behind `accessor` still exists; `Some(policies)`
    /// when it does.
    pub async fn accessor_policies(
        &self,
        accessor: &str,
    ) -> Result<Option<Vec<String>>, VaultError> {
        let (status, v) = self
            .raw(
                reqwest::Method::POST,
                "auth/token/lookup-accessor",
                Some(&json!({ "accessor": accessor })),
                None,
            )
            .await?;
        match status {
            200 => Ok(Some(
                v.pointer("/data/policies")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
            )),
            // Vault answers 400 "invalid accessor" for a revoked token.
            400 | 404 => Ok(None),
            status => Err(VaultError::Api {
                action: "token lookup-accessor".into(),
                status,
                message: error_text(&v),
            }),
        }
    }

    pub async fn revoke_accessor(&self, accessor: &str) -> Result<(), VaultError> {
        self.call(
            "token revoke-accessor",
            reqwest::Method::POST,
            "auth/token/revoke-accessor",
            Some(&json!({ "accessor": accessor })),
        )
        .await
        .map(|_| ())
    }

    /// Writes a token role that hands out exactly its policy as an orphan,
    /// periodic token.
    pub async fn set_token_role(&self, role: &TokenRole) -> Result<(), VaultError> {
        self.call(
            &format!("write token role {}", role.role),
            reqwest::Method::POST,
            &format!("auth/token/roles/{}", role.role),
            Some(&json!({
                "allowed_policies": [role.policy],
                "orphan": true,
                "renewable": true,
                "token_period": role.period,
                "token_no_default_policy": !role.default_policy,
            })),
        )
        .await
        .map(|_| ())
    }

    /// A new token from a token role (its policy, orphan, periodic).
    pub async fn create_role_token(
        &self,
        role: &str,
        display_name: &str,
    ) -> Result<String, VaultError> {
        let v = self
            .call(
                &format!("create a token from role {role}"),
                reqwest::Method::POST,
                &format!("auth/token/create/{role}"),
                Some(&json!({ "display_name": display_name })),
            )
            .await?;
        v.pointer("/auth/client_token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| VaultError::Unexpected {
                action: format!("create a token from role {role}"),
                reason: "no auth.client_token in the answer".into(),
            })
    }

    /// Whether the token with `accessor` exists (a response-wrapping token
    /// is gone once unwrapped or expired).
    pub async fn token_accessor_exists(&self, accessor: &str) -> Result<bool, VaultError> {
        Ok(self.accessor_policies(accessor).await?.is_some())
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
