//! AppRole enrollment: roles, role-ids, response-wrapped single-use
//! secret-ids, unwrapping and login.
//!
//! Owns both sides of node enrollment's Vault calls. Must never return an
//! unwrapped secret-id from the appliance side: only the wrapping token.

use super::client::VaultApi;
use super::error::{api_err, error_text, VaultError};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// What a wrapped secret-id is minted with.
#[derive(Debug, Clone)]
pub struct SecretIdRequest<'a> {
    pub metadata: &'a BTreeMap<String, String>,
    /// The one CIDR (e.g. `192.168.100.101/32`) it and its tokens work from.
    pub bound: &'a str,
    /// Life of the secret-id itself, e.g. `"900s"`.
    pub secret_id_ttl: &'a str,
    /// Life of the wrapping token, e.g. `"300s"`.
    pub wrap_ttl: &'a str,
}

/// A minted, response-wrapped secret-id: the wrapping token (the secret a
/// node unwraps) and the two accessors that name it without being secrets.
/// `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct WrappedSecretId {
    pub token: String,
    /// The wrapping token's accessor.
    pub accessor: String,
    /// The accessor of the secret-id inside it.
    pub secret_id_accessor: String,
}

impl std::fmt::Debug for WrappedSecretId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "WrappedSecretId {{ token: <redacted>, accessor: {}, secret_id_accessor: {} }}",
            self.accessor, self.secret_id_accessor
        )
    }
}

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
    /// node policies are templated on), usable only from `bound` and giving
    /// tokens usable only from there, for `secret_id_ttl`. The wrapping token
    /// lives `wrap_ttl`.
    pub async fn wrapped_secret_id(
        &self,
        mount: &str,
        role: &str,
        request: &SecretIdRequest<'_>,
    ) -> Result<WrappedSecretId, VaultError> {
        let action = format!("wrapped secret-id for {role}");
        let body = json!({
            "metadata": serde_json::to_string(request.metadata).unwrap_or_default(),
            "cidr_list": [request.bound],
            "token_bound_cidrs": [request.bound],
            "ttl": request.secret_id_ttl,
        });
        let (status, v) = self
            .raw(
                reqwest::Method::POST,
                &format!("auth/{mount}/role/{role}/secret-id"),
                Some(&body),
                Some(request.wrap_ttl),
            )
            .await?;
        if !(200..300).contains(&status) {
            return Err(VaultError::Api {
                action,
                status,
                message: error_text(&v),
            });
        }
        let field = |name: &str| {
            v.pointer(&format!("/wrap_info/{name}"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .ok_or_else(|| VaultError::Unexpected {
                    action: action.clone(),
                    reason: format!("no wrap_info.{name}"),
                })
        };
        Ok(WrappedSecretId {
            token: field("token")?,
            accessor: field("accessor")?,
            secret_id_accessor: field("wrapped_accessor")?,
        })
    }

    /// Whether the secret-id with `accessor` still exists (a single-use one
    /// is gone once it logged in, or once destroyed or expired).
    pub async fn secret_id_exists(
        &self,
        mount: &str,
        role: &str,
        accessor: &str,
    ) -> Result<bool, VaultError> {
        let (status, v) = self
            .raw(
                reqwest::Method::POST,
                &format!("auth/{mount}/role/{role}/secret-id-accessor/lookup"),
                Some(&json!({ "secret_id_accessor": accessor })),
                None,
            )
            .await?;
        match status {
            200 => Ok(true),
            // OpenBao answers a missing accessor with 404 (and older Vaults
            // with 500 "failed to find accessor entry").
            404 => Ok(false),
            500 if error_text(&v).contains("failed to find accessor entry") => Ok(false),
            _ => Err(VaultError::Api {
                action: format!("look up a secret-id of {role}"),
                status,
                message: error_text(&v),
            }),
        }
    }

    /// Destroys the secret-id with `accessor`; one already gone is fine.
    pub async fn destroy_secret_id(
        &self,
        mount: &str,
        role: &str,
        accessor: &str,
    ) -> Result<(), VaultError> {
        if !self.secret_id_exists(mount, role, accessor).await? {
            return Ok(());
        }
        self.call(
            &format!("destroy a secret-id of {role}"),
            reqwest::Method::POST,
            &format!("auth/{mount}/role/{role}/secret-id-accessor/destroy"),
            Some(&json!({ "secret_id_accessor": accessor })),
        )
        .await
        .map(|_| ())
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
