//! KV v2 secrets: reading and writing one secret.
//!
//! Owns the KV calls. Must never put a secret's value into an error.

use super::client::VaultApi;
use super::error::{api_err, VaultError};
use serde_json::Value;

impl VaultApi {
    /// KV v2 read (vaultrs); `None` when the secret does not exist.
    pub async fn kv_read(&self, mount: &str, path: &str) -> Result<Option<Value>, VaultError> {
        let client = self.typed("kv read")?;
        match vaultrs::kv2::read::<Value>(&client, mount, path).await {
            Ok(v) => Ok(Some(v)),
            Err(vaultrs::error::ClientError::APIError { code: 404, .. }) => Ok(None),
            Err(e) => Err(api_err(&format!("read {mount}/{path}"), e)),
        }
    }

    pub async fn kv_write(&self, mount: &str, path: &str, data: &Value) -> Result<(), VaultError> {
        let client = self.typed("kv write")?;
        vaultrs::kv2::set(&client, mount, path, data)
            .await
            .map(|_| ())
            .map_err(|e| api_err(&format!("write {mount}/{path}"), e))
    }
}
