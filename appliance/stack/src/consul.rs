//! Talking to Consul's HTTP API: leader, ACL bootstrap (with the "legacy
//! mode" retry and the documented bootstrap reset), policies, tokens, the
//! agent token, KV, the catalog's node list. Owns no state. Must never put a token in an error message.

use crate::agent_http::{AgentHttp, Unreachable};
use crate::patience::Backoff;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ConsulError {
    #[error("Consul at {url} is not reachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Consul {action}: HTTP {status}: {message}")]
    Api {
        action: String,
        status: u16,
        message: String,
    },
    #[error("Consul's ACL system was bootstrapped before (reset index {reset_index})")]
    AlreadyBootstrapped { reset_index: u64 },
    #[error("Consul {action}: gave up after {secs} s: {last}")]
    Timeout {
        action: String,
        secs: u64,
        last: String,
    },
    #[error("Consul {action}: unexpected answer: {reason}")]
    Unexpected { action: String, reason: String },
}

#[derive(Clone)]
pub struct ConsulApi {
    agent: AgentHttp,
}

impl std::fmt::Debug for ConsulApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ConsulApi {{ url: {} }}", self.agent.url())
    }
}

/// A created ACL token: only its ids.
#[derive(Clone, PartialEq, Eq)]
pub struct AclToken {
    pub accessor_id: String,
    pub secret_id: String,
}

impl std::fmt::Debug for AclToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AclToken {{ accessor_id: {}, secret_id: <redacted> }}",
            self.accessor_id
        )
    }
}

/// One node of `GET /v1/catalog/nodes`, as Consul spells it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct CatalogEntry {
    #[serde(rename = "Node")]
    pub node: String,
    #[serde(rename = "ID", default)]
    pub id: String,
    #[serde(rename = "Address", default)]
    pub address: String,
    #[serde(rename = "Meta", default)]
    pub meta: Option<std::collections::BTreeMap<String, String>>,
}

impl ConsulApi {
    pub fn new(url: &str, token: Option<String>) -> Self {
        Self {
            agent: AgentHttp::new(url, token, "X-Consul-Token"),
        }
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            agent: self.agent.with_token(token),
        }
    }

    pub async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, String), ConsulError> {
        let (status, _, text) = self.send(method, path, body.map(Value::to_string)).await?;
        Ok((status, text))
    }

    /// One request with the token; the body as is (JSON or a raw KV value).
    /// Answers the status, the `X-Consul-Index` (0 without one) and the text.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> Result<(u16, u64, String), ConsulError> {
        let answer = self
            .agent
            .send(method, path, body)
            .await
            .map_err(|Unreachable { url, reason }| ConsulError::Unreachable { url, reason })?;
        Ok((answer.status, answer.index, answer.text))
    }

    async fn call(
        &self,
        action: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ConsulError> {
        let (status, text) = self.raw(method, path, body).await?;
        if !(200..300).contains(&status) {
            return Err(ConsulError::Api {
                action: action.into(),
                status,
                message: text.trim().chars().take(300).collect(),
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The leader's address, empty while there is none.
    pub async fn leader(&self) -> Result<String, ConsulError> {
        let v = self
            .call("status/leader", reqwest::Method::GET, "status/leader", None)
            .await?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Why Consul cannot take ACL requests yet, `None` once it can: a
    /// leader is elected and the ACL system has left legacy mode (Consul
    /// 1.8 answers 500 "legacy mode" for a moment after the election).
    /// Asked without a token: any answer but that 500 means the new ACL
    /// system is answering.
    pub async fn acl_not_ready(&self) -> Result<Option<String>, ConsulError> {
        if self.leader().await?.is_empty() {
            return Ok(Some("no leader elected yet".into()));
        }
        let (status, text) = self
            .send(reqwest::Method::GET, "acl/token/self", None)
            .await
            .map(|(status, _, text)| (status, text))?;
        Ok(match status {
            500 if text.contains("legacy mode") => Some("the ACL system is in legacy mode".into()),
            500..=599 => Some(format!(
                "acl/token/self answered HTTP {status}: {}",
                text.trim().chars().take(200).collect::<String>()
            )),
            _ => None,
        })
    }

    /// Waits until a leader is elected.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(), ConsulError> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        let mut backoff = Backoff::default();
        while start.elapsed() < timeout {
            match self.leader().await {
                Ok(l) if !l.is_empty() => return Ok(()),
                Ok(_) => last = "no leader elected yet".into(),
                Err(e) => last = e.to_string(),
            }
            backoff.pause().await;
        }
        Err(ConsulError::Timeout {
            action: "waiting for a leader".into(),
            secs: timeout.as_secs(),
            last,
        })
    }

    /// `PUT /v1/acl/bootstrap`. Consul answers 500 "legacy mode" for a few
    /// seconds after start: retried until `timeout`. 403 → [`ConsulError::AlreadyBootstrapped`].
    pub async fn acl_bootstrap(&self, timeout: Duration) -> Result<AclToken, ConsulError> {
        let start = Instant::now();
        let mut backoff = Backoff::default();
        loop {
            let (status, text) = self
                .raw(reqwest::Method::PUT, "acl/bootstrap", None)
                .await?;
            match status {
                200 => return parse_token("ACL bootstrap", &text),
                403 => {
                    return Err(ConsulError::AlreadyBootstrapped {
                        reset_index: reset_index(&text).unwrap_or(0),
                    })
                }
                500 if start.elapsed() < timeout => backoff.pause().await,
                _ => {
                    return Err(ConsulError::Api {
                        action: "ACL bootstrap".into(),
                        status,
                        message: text.trim().chars().take(300).collect(),
                    })
                }
            }
        }
    }

    /// Whether this client's token is a valid token.
    /// Like `token_valid`, but a rejection is only believed after it
    /// persisted for `patience`: right after a restart Consul answers "ACL
    /// not found" for valid tokens until its ACL state is loaded.
    pub async fn token_valid_settled(&self, patience: Duration) -> Result<bool, ConsulError> {
        crate::patience::yes_within(patience, || self.token_valid()).await
    }

    pub async fn token_valid(&self) -> Result<bool, ConsulError> {
        let (status, _) = self
            .raw(reqwest::Method::GET, "acl/token/self", None)
            .await?;
        Ok(status == 200)
    }

    /// Creates or updates the policy `name`. Returns its id.
    pub async fn upsert_policy(
        &self,
        name: &str,
        rules: &str,
        description: &str,
    ) -> Result<String, ConsulError> {
        let (status, text) = self
            .raw(
                reqwest::Method::GET,
                &format!("acl/policy/name/{name}"),
                None,
            )
            .await?;
        let body = json!({"Name": name, "Description": description, "Rules": rules});
        if status == 200 {
            let existing: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let id = existing["ID"].as_str().unwrap_or_default().to_string();
            if existing["Rules"].as_str() == Some(rules) {
                return Ok(id);
            }
            self.call(
                &format!("update policy {name}"),
                reqwest::Method::PUT,
                &format!("acl/policy/{id}"),
                Some(&body),
            )
            .await?;
            return Ok(id);
        }
        let v = self
            .call(
                &format!("create policy {name}"),
                reqwest::Method::PUT,
                "acl/policy",
                Some(&body),
            )
            .await?;
        Ok(v["ID"].as_str().unwrap_or_default().to_string())
    }

    /// Creates a token with the given policies and node identities.
    pub async fn create_token(
        &self,
        description: &str,
        policies: &[&str],
        node_identities: &[(String, String)],
    ) -> Result<AclToken, ConsulError> {
        let body = json!({
            "Description": description,
            "Policies": policies.iter().map(|p| json!({"Name": p})).collect::<Vec<_>>(),
            "NodeIdentities": node_identities.iter().map(|(n, dc)| json!({"NodeName": n, "Datacenter": dc})).collect::<Vec<_>>(),
            "Local": false,
        });
        let (status, text) = self
            .raw(reqwest::Method::PUT, "acl/token", Some(&body))
            .await?;
        if status != 200 {
            return Err(ConsulError::Api {
                action: format!("create token {description:?}"),
                status,
                message: text.trim().chars().take(300).collect(),
            });
        }
        parse_token("create token", &text)
    }

    /// Deletes the token with `accessor_id` (`acl = "write"`). `Ok(false)`
    /// when Consul had no such token (deleted before).
    pub async fn delete_token(&self, accessor_id: &str) -> Result<bool, ConsulError> {
        let (status, text) = self
            .raw(
                reqwest::Method::DELETE,
                &format!("acl/token/{accessor_id}"),
                None,
            )
            .await?;
        match status {
            200 => Ok(true),
            // Consul 1.8 answers 403 "ACL not found" for an unknown accessor.
            404 => Ok(false),
            403 if text.contains("ACL not found") => Ok(false),
            _ => Err(ConsulError::Api {
                action: format!("delete token {accessor_id}"),
                status,
                message: text.trim().chars().take(300).collect(),
            }),
        }
    }

    /// `GET /v1/catalog/nodes` (`node_prefix "" { policy = "read" }`), as a
    /// blocking query on `index` for up to `wait` when given: every node
    /// the token may read, and the index to wait on next.
    pub async fn catalog_nodes(
        &self,
        wait: Option<(u64, Duration)>,
    ) -> Result<(u64, Vec<CatalogEntry>), ConsulError> {
        let mut path = String::from("catalog/nodes");
        if let Some((index, time)) = wait {
            path.push_str(&format!("?index={index}&wait={}ms", time.as_millis()));
        }
        let (status, index, text) = self.send(reqwest::Method::GET, &path, None).await?;
        let action = "list the catalog's nodes".to_string();
        if status != 200 {
            return Err(ConsulError::Api {
                action,
                status,
                message: text.trim().chars().take(300).collect(),
            });
        }
        let nodes: Vec<CatalogEntry> =
            serde_json::from_str(&text).map_err(|e| ConsulError::Unexpected {
                action,
                reason: e.to_string(),
            })?;
        Ok((index, nodes))
    }

    /// Sets the agent's own ACL token (persisted by Consul: `enable_token_persistence`).
    pub async fn set_agent_token(&self, secret: &str) -> Result<(), ConsulError> {
        self.call(
            "set the agent token",
            reqwest::Method::PUT,
            "agent/token/agent",
            Some(&json!({"Token": secret})),
        )
        .await
        .map(|_| ())
    }

    /// Makes the agent re-read its config files, its TLS files among them
    /// (`consul reload`; needs `agent:write`).
    pub async fn reload(&self) -> Result<(), ConsulError> {
        self.call(
            "reload the agent",
            reqwest::Method::PUT,
            "agent/reload",
            None,
        )
        .await
        .map(|_| ())
    }

    /// The gossip keys every member of the LAN pool holds (`consul keyring
    /// -list`; needs `keyring:read`).
    pub async fn lan_gossip_keys(&self) -> Result<Vec<String>, ConsulError> {
        let v = self
            .call(
                "list the gossip keys",
                reqwest::Method::GET,
                "operator/keyring",
                None,
            )
            .await?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .filter(|pool| pool.get("WAN").and_then(Value::as_bool) != Some(true))
            .filter_map(|pool| pool.get("Keys").and_then(Value::as_object))
            .flat_map(|keys| keys.keys().cloned())
            .collect())
    }

    /// Raw KV value, `None` when the key does not exist.
    pub async fn kv_get(&self, key: &str) -> Result<Option<String>, ConsulError> {
        let (status, text) = self
            .raw(reqwest::Method::GET, &format!("kv/{key}?raw"), None)
            .await?;
        match status {
            200 => Ok(Some(text)),
            404 => Ok(None),
            _ => Err(ConsulError::Api {
                action: format!("read kv {key}"),
                status,
                message: text.trim().chars().take(300).collect(),
            }),
        }
    }

    pub async fn kv_put(&self, key: &str, value: &str) -> Result<(), ConsulError> {
        let action = format!("write kv {key}");
        if self
            .kv_cas(
                reqwest::Method::PUT,
                &format!("kv/{key}"),
                Some(value),
                &action,
            )
            .await?
        {
            Ok(())
        } else {
            // Without ?cas, Consul answers false only when it could not write.
            Err(ConsulError::Api {
                action,
                status: 200,
                message: "false".into(),
            })
        }
    }

    /// Every key under `prefix` (`?recurse`), with the index to wait on.
    /// With `wait = Some((index, time))` it is a blocking query: Consul
    /// answers once something under the prefix changed after `index`, or
    /// after about `time`. A prefix with no keys is an empty list.
    pub async fn kv_list(
        &self,
        prefix: &str,
        wait: Option<(u64, Duration)>,
    ) -> Result<(u64, Vec<KvPair>), ConsulError> {
        let mut path = format!("kv/{prefix}?recurse=true");
        if let Some((index, time)) = wait {
            path.push_str(&format!("&index={index}&wait={}ms", time.as_millis()));
        }
        let (status, index, text) = self.send(reqwest::Method::GET, &path, None).await?;
        let action = format!("list kv {prefix}");
        match status {
            200 => {
                let pairs: Vec<KvPair> =
                    serde_json::from_str(&text).map_err(|e| ConsulError::Unexpected {
                        action,
                        reason: e.to_string(),
                    })?;
                Ok((index, pairs))
            }
            404 => Ok((index, Vec::new())),
            _ => Err(ConsulError::Api {
                action,
                status,
                message: text.trim().chars().take(300).collect(),
            }),
        }
    }

    /// `PUT kv/KEY?cas=N&flags=F`: writes only if the key's ModifyIndex is
    /// still `cas` (0: only if absent). `Ok(false)` when it was not.
    pub async fn kv_put_cas(
        &self,
        key: &str,
        value: &str,
        flags: u64,
        cas: u64,
    ) -> Result<bool, ConsulError> {
        self.kv_cas(
            reqwest::Method::PUT,
            &format!("kv/{key}?cas={cas}&flags={flags}"),
            Some(value),
            &format!("write kv {key}"),
        )
        .await
    }

    /// `DELETE kv/KEY?cas=N` (`cas` > 0: Consul ignores a 0 here).
    pub async fn kv_delete_cas(&self, key: &str, cas: u64) -> Result<bool, ConsulError> {
        self.kv_cas(
            reqwest::Method::DELETE,
            &format!("kv/{key}?cas={cas}"),
            None,
            &format!("delete kv {key}"),
        )
        .await
    }

    async fn kv_cas(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
        action: &str,
    ) -> Result<bool, ConsulError> {
        let (status, _, text) = self.send(method, path, body.map(str::to_string)).await?;
        match (status, text.trim()) {
            (200, "true") => Ok(true),
            (200, "false") => Ok(false),
            _ => Err(ConsulError::Api {
                action: action.into(),
                status,
                message: text.trim().chars().take(300).collect(),
            }),
        }
    }

    /// Switches Connect's CA provider (e.g. to Vault).
    pub async fn set_connect_ca(&self, provider: &str, config: &Value) -> Result<(), ConsulError> {
        let body = json!({"Provider": provider, "Config": config});
        self.call(
            "set the Connect CA",
            reqwest::Method::PUT,
            "connect/ca/configuration",
            Some(&body),
        )
        .await
        .map(|_| ())
    }

    pub async fn connect_ca_provider(&self) -> Result<String, ConsulError> {
        let v = self
            .call(
                "read the Connect CA",
                reqwest::Method::GET,
                "connect/ca/configuration",
                None,
            )
            .await?;
        Ok(v["Provider"].as_str().unwrap_or_default().to_string())
    }
}

/// One KV entry as Consul lists it (`Value` is base64, absent for an empty value).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KvPair {
    pub key: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub flags: u64,
    #[serde(default)]
    pub modify_index: u64,
}

impl KvPair {
    /// The decoded value (empty if there is none or it is not base64).
    pub fn bytes(&self) -> Vec<u8> {
        use base64::Engine;
        self.value
            .as_deref()
            .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
            .unwrap_or_default()
    }
}

fn parse_token(action: &str, text: &str) -> Result<AclToken, ConsulError> {
    let v: Value = serde_json::from_str(text).map_err(|e| ConsulError::Unexpected {
        action: action.into(),
        reason: e.to_string(),
    })?;
    match (v["AccessorID"].as_str(), v["SecretID"].as_str()) {
        (Some(a), Some(s)) => Ok(AclToken {
            accessor_id: a.to_string(),
            secret_id: s.to_string(),
        }),
        _ => Err(ConsulError::Unexpected {
            action: action.into(),
            reason: "no AccessorID/SecretID".into(),
        }),
    }
}

/// "… (reset index: 12)" → 12 (Consul and Nomad both word it so).
pub fn reset_index(text: &str) -> Option<u64> {
    let tail = text.split("reset index:").nth(1)?;
    tail.trim()
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_index_is_read_from_consul_and_nomad_errors() {
        assert_eq!(
            reset_index("Permission denied: ACL bootstrap no longer allowed (reset index: 13)"),
            Some(13)
        );
        assert_eq!(
            reset_index("ACL bootstrap already done (reset index: 7)\n"),
            Some(7)
        );
        assert_eq!(reset_index("something else"), None);
    }
}
