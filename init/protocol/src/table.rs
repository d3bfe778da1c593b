//! Parsing and validation of the service table (`services.json`).
//!
//! Owns what makes a table acceptable: it rejects what would make supervision
//! ambiguous (duplicate names, unknown dependencies, cycles, unknown
//! capabilities, a relative program path) with an error naming the service and
//! the field. It must never start, stop or touch a process.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::graph::{self, GraphError};
pub use crate::spec::{
    HttpTarget, LogLimit, OutputLogLimits, Phase, Readiness, RestartPolicy, ServiceSpec,
    ServiceTable, DEFAULT_STOP_GRACE_MS,
};

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
        for log in &self.logs {
            if !log.path.starts_with('/') || log.path.contains('\0') {
                return Err((
                    "logs.path",
                    format!("{:?} is not an absolute path", log.path),
                ));
            }
            if log.max_bytes == 0 {
                return Err(("logs.max_bytes", format!("{}: must be above 0", log.path)));
            }
            log.signal().map_err(|e| ("logs.reopen_signal", e))?;
        }
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
