//! The Vault HTTP client core: the reqwest client (with the optional extra
//! trust anchor), the token, raw JSON requests and typed `vaultrs` clients.
//!
//! Owns the connection settings and the request plumbing every API group
//! uses. Must never know about a particular Vault API path, and never print
//! the token (`Debug` shows only whether one is set).

use super::error::{api_err, error_chain, error_text, VaultError};
use serde_json::Value;
use std::time::Duration;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

pub fn install_crypto_provider() {
    // Errors only if a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A Vault API client with an optional token.
#[derive(Clone)]
pub struct VaultApi {
    url: String,
    http: reqwest::Client,
    token: Option<String>,
    /// PEM file of an extra trust anchor, for vaultrs (which takes paths).
    ca_file: Option<String>,
}

impl std::fmt::Debug for VaultApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "VaultApi {{ url: {}, token: {} }}",
            self.url,
            if self.token.is_some() {
                "<set>"
            } else {
                "<none>"
            }
        )
    }
}

impl VaultApi {
    /// `ca_file`: PEM file of an extra trust anchor for a TLS listener
    /// (nodes trust the appliance CA this way).
    pub fn new(
        url: &str,
        token: Option<String>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, VaultError> {
        install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .no_proxy();
        if let Some(path) = ca_file {
            let pem = std::fs::read(path).map_err(|e| VaultError::Client {
                action: format!("reading the CA certificate {}", path.display()),
                reason: e.to_string(),
            })?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| VaultError::Client {
                action: "loading the CA certificate".into(),
                reason: e.to_string(),
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| VaultError::Client {
            action: "building the HTTP client".into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            url: url.trim_end_matches('/').to_string(),
            http,
            token,
            ca_file: ca_file.map(|p| p.to_string_lossy().into_owned()),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            url: self.url.clone(),
            http: self.http.clone(),
            token: Some(token.to_string()),
            ca_file: self.ca_file.clone(),
        }
    }

    /// A vaultrs client for the typed calls.
    pub(super) fn typed(&self, action: &str) -> Result<VaultClient, VaultError> {
        let settings = VaultClientSettingsBuilder::default()
            .address(&self.url)
            .token(self.token.clone().unwrap_or_default())
            .ca_certs(self.ca_file.iter().cloned().collect())
            .verify(true)
            .timeout(Some(Duration::from_secs(30)))
            .build()
            .map_err(|e| VaultError::Client {
                action: action.to_string(),
                reason: e.to_string(),
            })?;
        VaultClient::new(settings).map_err(|e| api_err(action, e))
    }

    /// One raw JSON request; `wrap_ttl` asks Vault to response-wrap the answer.
    /// Returns the status and the parsed body (`Null` when empty).
    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        wrap_ttl: Option<&str>,
    ) -> Result<(u16, Value), VaultError> {
        let mut req = self.http.request(
            method,
            format!("{}/v1/{}", self.url, path.trim_start_matches('/')),
        );
        if let Some(t) = &self.token {
            req = req.header("X-Vault-Token", t);
        }
        if let Some(ttl) = wrap_ttl {
            req = req.header("X-Vault-Wrap-TTL", ttl);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| VaultError::Unreachable {
            url: self.url.clone(),
            reason: error_chain(&e),
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let value = if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok((status, value))
    }

    /// Like [`raw`](Self::raw) but a non-2xx status is an error naming `action`.
    pub async fn call(
        &self,
        action: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, VaultError> {
        let (status, value) = self.raw(method, path, body, None).await?;
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            Err(VaultError::Api {
                action: action.to_string(),
                status,
                message: error_text(&value),
            })
        }
    }
}
