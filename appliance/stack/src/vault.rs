//! Talking to Vault/OpenBao over its HTTP API: health by status code, init,
//! unseal, root-token regeneration, and the idempotent "ensure" operations the
//! bootstrap's setup step is made of. Typed calls go through `vaultrs`; the
//! few it cannot do against OpenBao (health and seal status decode fails,
//! audit devices, wrapped responses) are plain JSON requests.
//!
//! Owns no state on disk. Must never log or return a secret in an error
//! message: errors carry Vault's error text and the path, never a body we sent.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("Vault at {url} is not reachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Vault {action}: HTTP {status}: {message}")]
    Api {
        action: String,
        status: u16,
        message: String,
    },
    #[error("Vault {action}: {reason}")]
    Client { action: String, reason: String },
    #[error("Vault {action}: unexpected answer: {reason}")]
    Unexpected { action: String, reason: String },
}

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

fn api_err(action: &str, e: vaultrs::error::ClientError) -> VaultError {
    match e {
        vaultrs::error::ClientError::APIError { code, errors } => VaultError::Api {
            action: action.to_string(),
            status: code,
            message: errors.join("; "),
        },
        other => VaultError::Client {
            action: action.to_string(),
            reason: other.to_string(),
        },
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
    fn typed(&self, action: &str) -> Result<VaultClient, VaultError> {
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
        for _ in 0..25 {
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
            tokio::time::sleep(Duration::from_millis(200)).await;
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

fn parse_seal(v: &Value) -> SealStatus {
    SealStatus {
        initialized: v["initialized"].as_bool().unwrap_or(true),
        sealed: v["sealed"].as_bool().unwrap_or(true),
        threshold: v["t"].as_u64().unwrap_or(0),
        shares: v["n"].as_u64().unwrap_or(0),
        progress: v["progress"].as_u64().unwrap_or(0),
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

/// Vault's `{"errors": [...]}` as one line.
pub fn error_text(v: &Value) -> String {
    match v.get("errors").and_then(Value::as_array) {
        Some(errs) if !errs.is_empty() => errs
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; "),
        _ => match v {
            Value::String(s) => s.trim().to_string(),
            Value::Null => "(empty answer)".into(),
            other => other.to_string().chars().take(200).collect(),
        },
    }
}

/// reqwest's error with its sources ("connection refused" is several levels down).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
