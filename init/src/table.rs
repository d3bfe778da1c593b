//! The service table (`services.json`): serde types, parsing and validation.
//!
//! Owns the typed shape of the table `kindlingd config apply` writes and init
//! supervises (see docs/contracts.md). It must never start, stop or touch a
//! process: it only describes and checks. Validation rejects what would make
//! supervision ambiguous (duplicate names, unknown dependencies, cycles, unknown
//! capabilities, a relative program path) with an error naming the service and
//! the field.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::graph::{self, GraphError};

/// One boot's service table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ServiceTable {
    /// Hostname init sets before starting services (none: keep the current one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Services, in any order; dependencies decide the start order.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
}

/// One supervised child.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Unique name: `[a-z0-9][a-z0-9_-]*`, used for logs, cgroup and socket commands.
    pub name: String,
    /// Program (absolute path) and arguments.
    pub argv: Vec<String>,
    /// Environment of the child; init passes nothing else except `KINDLING_NOTIFY_FD`
    /// (notify readiness) and a default `PATH`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Numeric user id the child runs as.
    #[serde(default)]
    pub user: u32,
    /// Numeric group id the child runs as (supplementary groups are cleared).
    #[serde(default)]
    pub group: u32,
    /// Capabilities kept (`CAP_NET_ADMIN`, ...); every other one is dropped from
    /// the bounding, permitted, effective and inheritable sets. Default: none.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Services that must be ready before this one starts.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// When the child counts as ready. Default: `started`.
    #[serde(default)]
    pub readiness: Readiness,
    /// Restart policy. Default: `always` (`on_failure` is the sensible choice for one-shots).
    #[serde(default)]
    pub restart: RestartPolicy,
    /// A one-shot runs to completion; exit 0 means done and is never restarted.
    #[serde(default)]
    pub oneshot: bool,
    /// A required service that is not ready makes the appliance `degraded`.
    #[serde(default = "default_required")]
    pub required: bool,
    /// Time between SIGTERM and SIGKILL when stopping.
    #[serde(default = "default_stop_grace_ms")]
    pub stop_grace_ms: u64,
    /// Boot phase in which the service starts.
    #[serde(default)]
    pub phase: Phase,
}

fn default_required() -> bool {
    true
}

/// Default grace between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_GRACE_MS: u64 = 5000;

fn default_stop_grace_ms() -> u64 {
    DEFAULT_STOP_GRACE_MS
}

/// When a child counts as ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Readiness {
    /// The child writes a line to the fd named in env `KINDLING_NOTIFY_FD`.
    Notify,
    /// A TCP connect to `addr` succeeds.
    Tcp { addr: SocketAddr },
    /// A plain-HTTP GET of `url` answers with a status in `ok`.
    Http {
        url: String,
        #[serde(default = "default_http_ok")]
        ok: Vec<u16>,
    },
    /// Ready as soon as it was spawned.
    #[default]
    Started,
    /// One-shot: ready when it exited with status 0.
    Exited,
}

fn default_http_ok() -> Vec<u16> {
    vec![200]
}

/// What to do when the child exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    /// Restart after every exit (a one-shot: after every failed exit).
    #[default]
    Always,
    /// Restart only after a non-zero exit or a signal.
    OnFailure,
    /// Never restart.
    Never,
}

/// Boot phase in which a service starts.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Started (and waited for, bounded) before the services phase.
    Network,
    /// Started in the services phase.
    #[default]
    Services,
}

/// A plain-HTTP URL split into what a GET needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// `host:port` to connect to.
    pub authority: String,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl HttpTarget {
    /// Parses `http://host[:port][/path]`; `https` is refused (readiness probes are local).
    pub fn parse(url: &str) -> Result<HttpTarget, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?} is not a plain http:// URL"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        Ok(HttpTarget {
            authority,
            path: path.to_string(),
        })
    }
}

/// Why a service table was refused.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("reading service table {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing service table {origin}: {source}")]
    Parse {
        origin: String,
        source: serde_json::Error,
    },
    #[error("service table {origin}: service #{index}: invalid name {name:?}: {reason}")]
    InvalidName {
        origin: String,
        index: usize,
        name: String,
        reason: &'static str,
    },
    #[error("service table {origin}: service {name:?} is declared twice")]
    DuplicateName { origin: String, name: String },
    #[error("service table {origin}: service {name:?}: field {field}: {reason}")]
    InvalidField {
        origin: String,
        name: String,
        field: &'static str,
        reason: String,
    },
    #[error("service table {origin}: {source}")]
    Graph { origin: String, source: GraphError },
}

impl ServiceTable {
    /// Reads, parses and validates a table file.
    pub fn load(path: &Path) -> Result<ServiceTable, TableError> {
        let bytes = std::fs::read(path).map_err(|source| TableError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ServiceTable::parse(&bytes, &path.display().to_string())
    }

    /// Parses and validates table JSON; `origin` names the source in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<ServiceTable, TableError> {
        let table: ServiceTable =
            serde_json::from_slice(bytes).map_err(|source| TableError::Parse {
                origin: origin.to_string(),
                source,
            })?;
        table.validate(origin)?;
        Ok(table)
    }

    /// Checks names, fields and the dependency graph.
    pub fn validate(&self, origin: &str) -> Result<(), TableError> {
        let mut seen = BTreeSet::new();
        for (index, spec) in self.services.iter().enumerate() {
            if let Err(reason) = check_name(&spec.name) {
                return Err(TableError::InvalidName {
                    origin: origin.to_string(),
                    index,
                    name: spec.name.clone(),
                    reason,
                });
            }
            if !seen.insert(spec.name.as_str()) {
                return Err(TableError::DuplicateName {
                    origin: origin.to_string(),
                    name: spec.name.clone(),
                });
            }
            spec.validate_fields()
                .map_err(|(field, reason)| TableError::InvalidField {
                    origin: origin.to_string(),
                    name: spec.name.clone(),
                    field,
                    reason,
                })?;
        }
        graph::start_order(&self.services).map_err(|source| TableError::Graph {
            origin: origin.to_string(),
            source,
        })?;
        Ok(())
    }

    /// The spec called `name`.
    pub fn get(&self, name: &str) -> Option<&ServiceSpec> {
        self.services.iter().find(|s| s.name == name)
    }
}

impl ServiceSpec {
    /// A spec with the given name and argv and every other field at its default.
    pub fn new(name: &str, argv: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.to_string(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::new(),
            user: 0,
            group: 0,
            capabilities: Vec::new(),
            depends_on: Vec::new(),
            readiness: Readiness::default(),
            restart: RestartPolicy::default(),
            oneshot: false,
            required: default_required(),
            stop_grace_ms: DEFAULT_STOP_GRACE_MS,
            phase: Phase::default(),
        }
    }

    /// The capability set this spec keeps, parsed.
    pub fn kept_capabilities(&self) -> Result<Vec<caps::Capability>, String> {
        self.capabilities
            .iter()
            .map(|c| caps::Capability::from_str(c).map_err(|_| format!("unknown capability {c:?}")))
            .collect()
    }

    fn validate_fields(&self) -> Result<(), (&'static str, String)> {
        let program = self.argv.first().ok_or(("argv", "is empty".to_string()))?;
        if !program.starts_with('/') {
            return Err((
                "argv",
                format!("program {program:?} is not an absolute path"),
            ));
        }
        if let Some(arg) = self.argv.iter().find(|a| a.contains('\0')) {
            return Err(("argv", format!("argument {arg:?} contains a NUL byte")));
        }
        for (key, value) in &self.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(("env", format!("invalid variable {key:?}")));
            }
        }
        self.kept_capabilities().map_err(|e| ("capabilities", e))?;
        match &self.readiness {
            Readiness::Http { url, ok } => {
                HttpTarget::parse(url).map_err(|e| ("readiness.url", e))?;
                if ok.is_empty() {
                    return Err(("readiness.ok", "lists no status code".to_string()));
                }
            }
            Readiness::Exited if !self.oneshot => {
                return Err((
                    "readiness",
                    "kind \"exited\" needs \"oneshot\": true".to_string(),
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), &'static str> {
    let mut chars = name.chars();
    match chars.next() {
        None => return Err("is empty"),
        Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
            return Err("must start with a lower-case letter or digit")
        }
        _ => {}
    }
    if name.len() > 64 {
        return Err("is longer than 64 characters");
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_') {
        return Err("may only contain a-z, 0-9, '-' and '_'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const EXAMPLE: &str = r#"{
      "hostname": "kindling-lab",
      "services": [
        {
          "name": "net",
          "argv": ["/bin/kindlingd", "net"],
          "env": {"RUST_LOG": "info"},
          "user": 0, "group": 0,
          "capabilities": ["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_NET_BIND_SERVICE"],
          "depends_on": [],
          "readiness": {"kind": "notify"},
          "restart": "always",
          "oneshot": false,
          "required": true,
          "stop_grace_ms": 5000,
          "phase": "network"
        },
        {"name": "vault", "argv": ["/bin/vault", "server"], "depends_on": ["net"],
         "readiness": {"kind": "http", "url": "http://127.0.0.1:8200/v1/sys/health", "ok": [200, 429, 501, 503]}},
        {"name": "consul", "argv": ["/bin/consul"], "readiness": {"kind": "tcp", "addr": "127.0.0.1:8500"}},
        {"name": "stack-bootstrap", "argv": ["/bin/kindlingd", "stack-bootstrap"], "oneshot": true,
         "readiness": {"kind": "exited"}, "restart": "on_failure", "depends_on": ["vault", "consul"]}
      ]
    }"#;

    #[test]
    fn contract_example_parses_with_defaults() {
        let table = ServiceTable::parse(EXAMPLE.as_bytes(), "example").unwrap();
        assert_eq!(table.hostname.as_deref(), Some("kindling-lab"));
        let net = table.get("net").unwrap();
        assert_eq!(net.readiness, Readiness::Notify);
        assert_eq!(net.phase, Phase::Network);
        assert_eq!(net.kept_capabilities().unwrap().len(), 3);
        let consul = table.get("consul").unwrap();
        assert_eq!(consul.restart, RestartPolicy::Always);
        assert_eq!(consul.phase, Phase::Services);
        assert!(consul.required);
        assert_eq!(consul.stop_grace_ms, DEFAULT_STOP_GRACE_MS);
        assert!(consul.capabilities.is_empty());
        let vault = table.get("vault").unwrap();
        assert_eq!(
            vault.readiness,
            Readiness::Http {
                url: "http://127.0.0.1:8200/v1/sys/health".into(),
                ok: vec![200, 429, 501, 503]
            }
        );
    }

    #[test]
    fn unknown_field_is_named() {
        let err = ServiceTable::parse(
            br#"{"services":[{"name":"a","argv":["/bin/true"],"restrat":"never"}]}"#,
            "t.json",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("t.json") && err.contains("restrat"), "{err}");
    }

    #[test]
    fn unknown_readiness_kind_is_refused() {
        let err = ServiceTable::parse(
            br#"{"services":[{"name":"a","argv":["/bin/true"],"readiness":{"kind":"dbus"}}]}"#,
            "t.json",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("dbus"), "{err}");
    }

    #[test]
    fn bad_fields_name_service_and_field() {
        let cases: &[(&str, &str)] = &[
            (r#"{"name":"a","argv":[]}"#, "argv"),
            (r#"{"name":"a","argv":["sh"]}"#, "not an absolute path"),
            (
                r#"{"name":"a","argv":["/x"],"capabilities":["CAP_FLY"]}"#,
                "CAP_FLY",
            ),
            (
                r#"{"name":"a","argv":["/x"],"readiness":{"kind":"exited"}}"#,
                "oneshot",
            ),
            (
                r#"{"name":"a","argv":["/x"],"readiness":{"kind":"http","url":"https://x/"}}"#,
                "readiness.url",
            ),
            (r#"{"name":"Bad","argv":["/x"]}"#, "invalid name"),
        ];
        for (service, expected) in cases {
            let json = format!(r#"{{"services":[{service}]}}"#);
            let err = ServiceTable::parse(json.as_bytes(), "t.json")
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{service}: {err}");
        }
    }

    #[test]
    fn duplicate_name_is_refused() {
        let err = ServiceTable::parse(
            br#"{"services":[{"name":"a","argv":["/x"]},{"name":"a","argv":["/y"]}]}"#,
            "t.json",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"a\" is declared twice"), "{err}");
    }

    #[test]
    fn http_target_parsing() {
        let t = HttpTarget::parse("http://127.0.0.1:8200/v1/sys/health").unwrap();
        assert_eq!(t.authority, "127.0.0.1:8200");
        assert_eq!(t.path, "/v1/sys/health");
        let t = HttpTarget::parse("http://localhost").unwrap();
        assert_eq!(t.authority, "localhost:80");
        assert_eq!(t.path, "/");
        assert!(HttpTarget::parse("http:///x").is_err());
    }

    #[test]
    fn round_trips_through_json() {
        let table = ServiceTable::parse(EXAMPLE.as_bytes(), "example").unwrap();
        let json = serde_json::to_vec(&table).unwrap();
        assert_eq!(ServiceTable::parse(&json, "again").unwrap(), table);
    }
}
