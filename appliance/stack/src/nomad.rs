//! Talking to Nomad's HTTP API: leader, ACL bootstrap (with Nomad's
//! documented bootstrap reset), token check, the client node list. The endpoints used here are the
//! ones `tests/nomad-double` serves and checks against Nomad's OpenAPI
//! document. Owns no state. Must never put a token in an error message.

use crate::agent_http::{AgentHttp, Unreachable};
use crate::consul::{reset_index, AclToken};
use serde_json::Value;
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum NomadError {
    #[error("Nomad at {url} is not reachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Nomad {action}: HTTP {status}: {message}")]
    Api {
        action: String,
        status: u16,
        message: String,
    },
    #[error("Nomad's TLS client: {0}")]
    Tls(String),
    #[error("Nomad's ACL system was bootstrapped before (reset index {reset_index})")]
    AlreadyBootstrapped { reset_index: u64 },
    #[error("Nomad {action}: gave up after {secs} s: {last}")]
    Timeout {
        action: String,
        secs: u64,
        last: String,
    },
}

/// One client node as `GET /v1/nodes` lists it (Nomad's `NodeListStub`;
/// the fields kindling reads).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct NodeStub {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Datacenter", default)]
    pub datacenter: String,
    /// `initializing`, `ready` or `down`.
    #[serde(rename = "Status")]
    pub status: String,
}

#[derive(Clone)]
pub struct NomadApi {
    agent: AgentHttp,
}

impl NomadApi {
    pub fn new(url: &str, token: Option<String>) -> Self {
        Self {
            agent: AgentHttp::new(url, token, "X-Nomad-Token"),
        }
    }

    /// Nomad as the appliance reaches it: over mutual TLS on loopback,
    /// trusting the appliance CA and showing the stack bootstrap's client
    /// certificate (Nomad's `verify_https_client`).
    pub fn appliance(layout: &crate::StackLayout) -> Result<Self, NomadError> {
        let state = layout.state_dir();
        let client = crate::tls::leaf_files(&state, crate::tls::Leaf::StackClient);
        let agent = AgentHttp::new(&layout.nomad_local_url(), None, "X-Nomad-Token")
            .with_tls(&crate::tls::ca_cert(&state), (&client.cert, &client.key))
            .map_err(NomadError::Tls)?;
        Ok(Self { agent })
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            agent: self.agent.with_token(token),
        }
    }

    async fn raw(&self, method: reqwest::Method, path: &str) -> Result<(u16, String), NomadError> {
        let answer = self
            .agent
            .send(method, path, None)
            .await
            .map_err(|Unreachable { url, reason }| NomadError::Unreachable { url, reason })?;
        Ok((answer.status, answer.text))
    }

    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(), NomadError> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        let mut backoff = crate::patience::Backoff::default();
        while start.elapsed() < timeout {
            match self.raw(reqwest::Method::GET, "status/leader").await {
                Ok((200, text))
                    if serde_json::from_str::<Value>(&text)
                        .ok()
                        .and_then(|v| v.as_str().map(|s| !s.is_empty()))
                        == Some(true) =>
                {
                    return Ok(())
                }
                Ok((status, text)) => last = format!("HTTP {status}: {}", text.trim()),
                Err(e) => last = e.to_string(),
            }
            backoff.pause().await;
        }
        Err(NomadError::Timeout {
            action: "waiting for a leader".into(),
            secs: timeout.as_secs(),
            last,
        })
    }

    /// `POST /v1/acl/bootstrap`; 400 "already done" → [`NomadError::AlreadyBootstrapped`].
    pub async fn acl_bootstrap(&self) -> Result<AclToken, NomadError> {
        let (status, text) = self.raw(reqwest::Method::POST, "acl/bootstrap").await?;
        match status {
            200 => {
                let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                match (v["AccessorID"].as_str(), v["SecretID"].as_str()) {
                    (Some(a), Some(s)) => Ok(AclToken {
                        accessor_id: a.into(),
                        secret_id: s.into(),
                    }),
                    _ => Err(NomadError::Api {
                        action: "ACL bootstrap".into(),
                        status,
                        message: "no AccessorID/SecretID in the answer".into(),
                    }),
                }
            }
            400 if text.contains("already done") => Err(NomadError::AlreadyBootstrapped {
                reset_index: reset_index(&text).unwrap_or(0),
            }),
            _ => Err(NomadError::Api {
                action: "ACL bootstrap".into(),
                status,
                message: text.trim().chars().take(300).collect(),
            }),
        }
    }

    /// Like `token_valid`, but a rejection is only believed after it
    /// persisted for `patience`: right after a restart Nomad answers "ACL
    /// not found" for valid tokens until its ACL state is loaded.
    pub async fn token_valid_settled(&self, patience: Duration) -> Result<bool, NomadError> {
        crate::patience::yes_within(patience, || self.token_valid()).await
    }

    pub async fn token_valid(&self) -> Result<bool, NomadError> {
        let (status, _) = self.raw(reqwest::Method::GET, "acl/token/self").await?;
        Ok(status == 200)
    }

    /// `GET /v1/nodes` (needs `node:read`: the management token).
    pub async fn nodes(&self) -> Result<Vec<NodeStub>, NomadError> {
        let (status, text) = self.raw(reqwest::Method::GET, "nodes").await?;
        if status != 200 {
            return Err(NomadError::Api {
                action: "listing client nodes".into(),
                status,
                message: text.trim().chars().take(300).collect(),
            });
        }
        serde_json::from_str(&text).map_err(|e| NomadError::Api {
            action: "listing client nodes".into(),
            status,
            message: format!("the answer is not a node list: {e}"),
        })
    }
}
