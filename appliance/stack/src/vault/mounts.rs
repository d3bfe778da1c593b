//! Secrets engines, auth methods and audit devices: listing them and the
//! idempotent "ensure" calls that enable one unless it is there.
//!
//! Owns the mount tables' reading. Must never disable, replace or tune an
//! existing mount: a different engine at a path is an error.

use super::client::VaultApi;
use super::error::{api_err, VaultError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;

impl VaultApi {
    /// Mount paths (with trailing '/') → type, for secrets engines.
    pub async fn mounts(&self) -> Result<BTreeMap<String, String>, VaultError> {
        let v = self
            .call("list mounts", reqwest::Method::GET, "sys/mounts", None)
            .await?;
        Ok(type_map(&v))
    }

    /// Auth mount paths → (type, accessor).
    pub async fn auth_mounts(&self) -> Result<BTreeMap<String, (String, String)>, VaultError> {
        let v = self
            .call("list auth methods", reqwest::Method::GET, "sys/auth", None)
            .await?;
        let data = v.get("data").filter(|d| d.is_object()).unwrap_or(&v);
        Ok(data
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, e)| e.get("type").is_some())
                    .map(|(k, e)| (k.clone(), (str_of(e, "type"), str_of(e, "accessor"))))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Enables a secrets engine at `path` unless one is there. Returns
    /// whether it enabled one. A different type at the path is an error.
    pub async fn ensure_secrets_engine(
        &self,
        path: &str,
        kind: &str,
        max_lease_ttl: Option<&str>,
    ) -> Result<bool, VaultError> {
        let key = format!("{}/", path.trim_end_matches('/'));
        if let Some(existing) = self.mounts().await?.get(&key) {
            let same = existing == kind || (kind == "kv-v2" && existing == "kv");
            return if same {
                Ok(false)
            } else {
                Err(VaultError::Unexpected {
                    action: format!("enable {kind} at {path}"),
                    reason: format!("a {existing} engine is already mounted there; kindling will not replace it"),
                })
            };
        }
        let client = self.typed("enable secrets engine")?;
        let mut opts = vaultrs::api::sys::requests::EnableEngineRequest::builder();
        if kind == "kv-v2" {
            opts.engine_type("kv")
                .options(std::collections::HashMap::from([(
                    "version".to_string(),
                    "2".to_string(),
                )]));
        }
        if let Some(ttl) = max_lease_ttl {
            opts.config(vaultrs::api::sys::requests::EnableEngineDataConfig {
                max_lease_ttl: Some(ttl.to_string()),
                ..Default::default()
            });
        }
        let engine_type = if kind == "kv-v2" { "kv" } else { kind };
        vaultrs::sys::mount::enable(&client, path, engine_type, Some(&mut opts))
            .await
            .map_err(|e| api_err(&format!("enable {kind} at {path}"), e))?;
        Ok(true)
    }

    pub async fn ensure_auth(&self, path: &str, kind: &str) -> Result<bool, VaultError> {
        let key = format!("{}/", path.trim_end_matches('/'));
        if self.auth_mounts().await?.contains_key(&key) {
            return Ok(false);
        }
        let client = self.typed("enable auth method")?;
        vaultrs::sys::auth::enable(&client, path, kind, None)
            .await
            .map_err(|e| api_err(&format!("enable auth {kind} at {path}"), e))?;
        Ok(true)
    }

    /// A file audit device, unless one is enabled at `file/`.
    pub async fn ensure_file_audit(&self, log_path: &str) -> Result<bool, VaultError> {
        // OpenBao creates the device from its config right after unsealing:
        // give it a moment to appear before trying the API (HashiCorp Vault).
        let patience = std::time::Instant::now();
        let mut backoff = crate::patience::Backoff::default();
        while patience.elapsed() < Duration::from_secs(5) {
            let v = self
                .call(
                    "list audit devices",
                    reqwest::Method::GET,
                    "sys/audit",
                    None,
                )
                .await?;
            let data = v.get("data").filter(|d| d.is_object()).unwrap_or(&v);
            if data.get("file/").is_some() {
                return Ok(false);
            }
            backoff.pause().await;
        }
        self.call(
            "enable the file audit device (it is not declared in the config, or the config was not loaded)",
            reqwest::Method::PUT,
            "sys/audit/file",
            Some(&json!({"type": "file", "options": {"file_path": log_path}})),
        )
        .await?;
        Ok(true)
    }
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

fn type_map(v: &Value) -> BTreeMap<String, String> {
    let data = v.get("data").filter(|d| d.is_object()).unwrap_or(v);
    data.as_object()
        .map(|m| {
            m.iter()
                .filter(|(_, e)| e.get("type").is_some())
                .map(|(k, e)| {
                    let mut kind = str_of(e, "type");
                    if kind == "kv"
                        && e.pointer("/options/version").and_then(Value::as_str) == Some("2")
                    {
                        kind = "kv-v2".into();
                    }
                    (k.clone(), kind)
                })
                .collect()
        })
        .unwrap_or_default()
}
