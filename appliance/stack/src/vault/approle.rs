//! AppRole enrollment: roles, role-ids, response-wrapped single-use
//! secret-ids, unwrapping and login.
//!
//! Owns both sides of node enrollment's Vault calls. Must never return an
//! unwrapped secret-id from the appliance side: only the wrapping token.

use super::client::VaultApi;
use super::error::{api_err, error_text, VaultError};
use serde_json::{json, Value};
use std::collections::BTreeMap;

impl VaultApi {
    /// Writes an AppRole role (vaultrs); overwriting with the same values is a no-op.
    pub async fn set_approle_role(
        &self,
        mount: &str,
        role: &str,
        policies: &[String],
        secret_id_ttl: &str,
    ) -> Result<(), VaultError> {
        let client = self.typed("write approle role")?;
        let mut opts = vaultrs::api::auth::approle::requests::SetAppRoleRequest::builder();
        opts.token_policies(policies.to_vec())
            .secret_id_num_uses(1u64)
            .secret_id_ttl(secret_id_ttl)
            .token_ttl("1h")
            .token_max_ttl("4h");
        vaultrs::auth::approle::role::set(&client, mount, role, Some(&mut opts))
            .await
            .map_err(|e| api_err(&format!("write approle role {role}"), e))
    }

    pub async fn approle_role_id(&self, mount: &str, role: &str) -> Result<String, VaultError> {
        let client = self.typed("read role-id")?;
        vaultrs::auth::approle::role::read_id(&client, mount, role)
            .await
            .map(|r| r.role_id)
            .map_err(|e| api_err(&format!("read role-id of {role}"), e))
    }

    /// A response-wrapped, single-use secret-id for `role`, carrying
    /// `metadata` (it becomes the login's identity alias metadata, which the
    /// node policies are templated on). Returns the wrapping token.
    pub async fn wrapped_secret_id(
        &self,
        mount: &str,
        role: &str,
        metadata: &BTreeMap<String, String>,
        wrap_ttl: &str,
    ) -> Result<String, VaultError> {
        let body = json!({ "metadata": serde_json::to_string(metadata).unwrap_or_default() });
        let (status, v) = self
            .raw(
                reqwest::Method::POST,
                &format!("auth/{mount}/role/{role}/secret-id"),
                Some(&body),
                Some(wrap_ttl),
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(VaultError::Api {
                action: format!("wrapped secret-id for {role}"),
                status,
                message: error_text(&v),
            });
        }
        v.pointer("/wrap_info/token")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| VaultError::Unexpected {
                action: format!("wrapped secret-id for {role}"),
                reason: "no wrap_info.token".into(),
            })
    }

    /// Unwraps a wrapping token (vaultrs): the node side of enrollment.
    pub async fn unwrap(&self, wrapping_token: &str) -> Result<Value, VaultError> {
        // The wrapping token authenticates the call itself: a node has no
        // other token yet.
        let client = self.with_token(wrapping_token).typed("unwrap")?;
        vaultrs::sys::wrapping::unwrap::<Value>(&client, None)
            .await
            .map_err(|e| api_err("unwrap", e))
    }

    /// AppRole login (vaultrs): returns the client token.
    pub async fn approle_login(
        &self,
        mount: &str,
        role_id: &str,
        secret_id: &str,
    ) -> Result<String, VaultError> {
        let client = self.typed("approle login")?;
        vaultrs::auth::approle::login(&client, mount, role_id, secret_id)
            .await
            .map(|a| a.client_token)
            .map_err(|e| api_err("approle login", e))
    }
}
