//! What the double knows of Nomad's agent configuration: it reads a config
//! directory the way `nomad agent -config=DIR` does (every `.json` file, in
//! lexical order, later files merged over earlier ones) and refuses any key
//! or type that Nomad's published documentation does not list for the
//! parameters kindling uses (`agent-config/documented-keys.json`). From the
//! result it takes what the double enforces: the HTTP port, the `tls` block
//! (served over mutual TLS when `verify_https_client`) and the gossip key.

use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

const DOCUMENTED: &str = include_str!("../agent-config/documented-keys.json");

/// The settings the double acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The merged configuration.
    pub merged: Value,
    pub http_port: u16,
    pub tls: Option<TlsConfig>,
    /// `server.encrypt`, decoded length checked (32 bytes).
    pub gossip_key: Option<String>,
}

/// The `tls` block, with HTTP TLS on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub verify_https_client: bool,
    pub rpc: bool,
    pub verify_server_hostname: bool,
}

impl AgentConfig {
    /// Loads and checks `dir`; every problem found is listed.
    pub fn load(dir: &Path) -> Result<Self, Vec<String>> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| vec![format!("reading {}: {e}", dir.display())])?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut merged = Value::Object(Map::new());
        let mut problems = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file)
                .map_err(|e| vec![format!("reading {}: {e}", file.display())])?;
            match serde_json::from_str::<Value>(&text) {
                Ok(v) => merge(&mut merged, v),
                Err(e) => problems.push(format!("{}: not JSON: {e}", file.display())),
            }
        }
        let documented: Value = serde_json::from_str(DOCUMENTED).unwrap_or(Value::Null);
        check(&merged, &documented, "", &mut problems);
        let http_port = merged
            .pointer("/ports/http")
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(4646);
        let tls = tls_block(&merged, &mut problems);
        let gossip_key = merged
            .pointer("/server/encrypt")
            .and_then(Value::as_str)
            .map(str::to_string);
        if let Some(key) = &gossip_key {
            if decoded_len(key) != Some(32) {
                problems.push("server.encrypt: not 32 bytes of base64".to_string());
            }
        }
        if problems.is_empty() {
            Ok(Self {
                merged,
                http_port,
                tls,
                gossip_key,
            })
        } else {
            Err(problems)
        }
    }
}

/// Nomad merges blocks key by key; a later scalar replaces an earlier one.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}

fn check(value: &Value, documented: &Value, at: &str, problems: &mut Vec<String>) {
    let Some(obj) = value.as_object() else { return };
    for (key, v) in obj {
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match documented.get(key) {
            None => problems.push(format!("{path}: not a documented Nomad agent parameter")),
            Some(Value::Object(_)) if !v.is_object() => {
                problems.push(format!("{path}: must be a block"))
            }
            Some(block @ Value::Object(_)) => check(v, block, &path, problems),
            Some(Value::String(kind)) => {
                let ok = match kind.as_str() {
                    "string" => v.is_string(),
                    "bool" => v.is_boolean(),
                    "int" => v.is_u64() || v.is_i64(),
                    "string-list" => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
                    "string-map" => v
                        .as_object()
                        .is_some_and(|m| m.values().all(Value::is_string)),
                    _ => false,
                };
                if !ok {
                    problems.push(format!("{path}: must be a {kind}"));
                }
            }
            Some(_) => problems.push(format!("{path}: bad entry in documented-keys.json")),
        }
    }
}

fn tls_block(merged: &Value, problems: &mut Vec<String>) -> Option<TlsConfig> {
    let tls = merged.get("tls")?;
    if tls.get("http").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    let mut file = |key: &str| match tls.get(key).and_then(Value::as_str) {
        Some(p) if Path::new(p).is_file() => Some(PathBuf::from(p)),
        Some(p) => {
            problems.push(format!("tls.{key}: {p} does not exist"));
            None
        }
        None => {
            problems.push(format!("tls.{key}: needed with tls.http"));
            None
        }
    };
    let (ca, cert, key) = (file("ca_file"), file("cert_file"), file("key_file"));
    let flag = |key: &str| tls.get(key).and_then(Value::as_bool) == Some(true);
    Some(TlsConfig {
        ca_file: ca?,
        cert_file: cert?,
        key_file: key?,
        verify_https_client: flag("verify_https_client"),
        rpc: flag("rpc"),
        verify_server_hostname: flag("verify_server_hostname"),
    })
}

/// Length of a standard-base64 string's decoded bytes, if it is one.
fn decoded_len(s: &str) -> Option<usize> {
    let body = s.trim_end_matches('=');
    let valid = body
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    (valid && s.len().is_multiple_of(4)).then(|| body.len() * 3 / 4)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn dir_with(files: &[(&str, Value)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, v) in files {
            std::fs::write(dir.path().join(name), v.to_string()).unwrap();
        }
        dir
    }

    #[test]
    fn merges_in_lexical_order_and_takes_the_port() {
        let dir = dir_with(&[
            (
                "00-a.json",
                serde_json::json!({"ports": {"http": 1}, "acl": {"enabled": true}}),
            ),
            ("50-b.json", serde_json::json!({"ports": {"http": 4747}})),
        ]);
        let c = AgentConfig::load(dir.path()).unwrap();
        assert_eq!(c.http_port, 4747);
        assert_eq!(c.merged["acl"]["enabled"], true);
        assert_eq!(c.tls, None);
    }

    #[test]
    fn undocumented_keys_wrong_types_and_short_keys_are_refused() {
        let dir = dir_with(&[(
            "00.json",
            serde_json::json!({
                "tls": {"http": "yes", "verify_https_clients": true},
                "server": {"encrypt": "c2hvcnQ="},
                "ports": 4646
            }),
        )]);
        let problems = AgentConfig::load(dir.path()).unwrap_err().join("\n");
        for want in [
            "tls.http: must be a bool",
            "tls.verify_https_clients: not a documented",
            "server.encrypt: not 32 bytes",
            "ports: must be a block",
        ] {
            assert!(problems.contains(want), "{want}: {problems}");
        }
    }

    #[test]
    fn tls_needs_its_files() {
        let dir = dir_with(&[(
            "00.json",
            serde_json::json!({"tls": {"http": true, "ca_file": "/nonexistent/ca.pem"}}),
        )]);
        let problems = AgentConfig::load(dir.path()).unwrap_err().join("\n");
        assert!(
            problems.contains("tls.ca_file: /nonexistent/ca.pem does not exist"),
            "{problems}"
        );
        assert!(problems.contains("tls.cert_file: needed"), "{problems}");
    }
}
