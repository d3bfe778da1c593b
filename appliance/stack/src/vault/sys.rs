//! Vault's `sys/` lifecycle calls: health, seal status, init, unseal and
//! root-token regeneration.
//!
//! Owns reading Vault's lifecycle state. Must never store or log the key
//! shares or tokens these calls handle: the caller encrypts them.

use super::client::VaultApi;
use super::error::{api_err, VaultError};
use serde_json::{json, Value};

/// `GET /v1/sys/health` read by status code (vaultrs cannot decode OpenBao's body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Active,
    Standby,
    Uninitialized,
    Sealed,
    Other(u16),
}

/// `sys/seal-status` / `sys/unseal` answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealStatus {
    pub initialized: bool,
    pub sealed: bool,
    pub threshold: u64,
    pub shares: u64,
    pub progress: u64,
}

impl VaultApi {
    pub async fn health(&self) -> Result<Health, VaultError> {
        let (status, _) = self
            .raw(reqwest::Method::GET, "sys/health", None, None)
            .await?;
        Ok(match status {
            200 => Health::Active,
            429 | 472 | 473 => Health::Standby,
            501 => Health::Uninitialized,
            503 => Health::Sealed,
            other => Health::Other(other),
        })
    }

    pub async fn seal_status(&self) -> Result<SealStatus, VaultError> {
        let v = self
            .call("seal status", reqwest::Method::GET, "sys/seal-status", None)
            .await?;
        Ok(parse_seal(&v))
    }

    /// `vault operator init` (vaultrs). The answer holds secrets: the caller
    /// encrypts it before anything else happens.
    pub async fn init(
        &self,
        shares: u8,
        threshold: u8,
    ) -> Result<(Vec<String>, String), VaultError> {
        let client = self.typed("init")?;
        let r = vaultrs::sys::start_initialization(
            &client,
            u64::from(shares),
            u64::from(threshold),
            None,
        )
        .await
        .map_err(|e| api_err("init", e))?;
        Ok((r.keys_base64, r.root_token))
    }

    /// Submits one key share. A wrong share is Vault's 400, reported without
    /// echoing the share.
    pub async fn unseal(&self, key: &str) -> Result<SealStatus, VaultError> {
        let v = self
            .call(
                "unseal",
                reqwest::Method::PUT,
                "sys/unseal",
                Some(&json!({ "key": key })),
            )
            .await?;
        Ok(parse_seal(&v))
    }

    /// Regenerates a root token from unseal key shares (`sys/generate-root`),
    /// for when the appliance token was lost between init and its creation.
    pub async fn generate_root(&self, keys: &[String]) -> Result<String, VaultError> {
        use base64::Engine;
        let _ = self
            .raw(
                reqwest::Method::DELETE,
                "sys/generate-root/attempt",
                None,
                None,
            )
            .await;
        let start = self
            .call(
                "generate-root start",
                reqwest::Method::PUT,
                "sys/generate-root/attempt",
                Some(&json!({})),
            )
            .await?;
        let nonce = start["nonce"].as_str().unwrap_or_default().to_string();
        let otp = start["otp"].as_str().unwrap_or_default().to_string();
        let mut last = Value::Null;
        for key in keys {
            last = self
                .call(
                    "generate-root update",
                    reqwest::Method::PUT,
                    "sys/generate-root/update",
                    Some(&json!({"key": key, "nonce": nonce})),
                )
                .await?;
            if last["complete"].as_bool() == Some(true) {
                break;
            }
        }
        let encoded = last["encoded_token"]
            .as_str()
            .or_else(|| last["encoded_root_token"].as_str())
            .unwrap_or_default();
        let raw = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .map_err(|e| VaultError::Unexpected {
                action: "generate-root".into(),
                reason: format!("encoded token: {e}"),
            })?;
        if raw.len() != otp.len() {
            return Err(VaultError::Unexpected {
                action: "generate-root".into(),
                reason: "token and OTP lengths differ".into(),
            });
        }
        let token: Vec<u8> = raw.iter().zip(otp.as_bytes()).map(|(a, b)| a ^ b).collect();
        String::from_utf8(token).map_err(|e| VaultError::Unexpected {
            action: "generate-root".into(),
            reason: e.to_string(),
        })
    }
}

fn parse_seal(v: &Value) -> SealStatus {
    SealStatus {
        initialized: v["initialized"].as_bool().unwrap_or(true),
        sealed: v["sealed"].as_bool().unwrap_or(true),
        threshold: v["t"].as_u64().unwrap_or(0),
        shares: v["n"].as_u64().unwrap_or(0),
        progress: v["progress"].as_u64().unwrap_or(0),
    }
}
