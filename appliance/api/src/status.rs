//! Appliance status bodies: `GET /v1/status`, `GET /v1/services`,
//! `POST /v1/services/NAME/restart`, `GET /v1/config/report` and
//! `GET /v1/config/effective`.
//!
//! Parts whose shape another component owns (init's control-socket answer,
//! the overlay report, a service's own status file, the site config) are
//! carried as JSON values: the API passes them through verbatim and must not
//! redefine them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `GET /v1/status`: everything an operator looks at first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Status {
    /// The image version (`/etc/kindling/version`), empty when unknown.
    pub version: String,
    /// init's `list` answer (phases, services, readiness), or
    /// `{"error": "..."}` when init cannot be asked: the status page still
    /// answers when init's socket is down.
    pub init: Value,
    /// The boot's config report, `null` before the config phase ran.
    pub config: Value,
    /// Every `/run/kindling/status/NAME.json`, keyed by NAME, verbatim (a file
    /// that does not parse shows as `{"error": "..."}`).
    pub services: BTreeMap<String, Value>,
    /// The API's own endpoint: what a CLI pins and where it listens.
    pub api: ApiEndpoint,
}

/// The control API as it serves this boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiEndpoint {
    /// SHA-256 of the appliance CA certificate that signs the API's
    /// certificate (`sha256:` and 64 hex digits): the value the console
    /// prints and `kindling login` pins.
    pub ca_fingerprint: String,
    /// The addresses the API listens on (`ADDR:PORT`), TLS only.
    pub listening: Vec<String>,
    /// Connections and requests refused since the API started, by reason
    /// (`connections_refused_busy`, `tls_handshakes_failed`,
    /// `requests_unauthenticated`, `requests_forbidden`) and
    /// `connections_open`.
    pub counters: BTreeMap<String, u64>,
}

/// `GET /v1/services`: init's `list` answer, verbatim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct ServiceList(pub Value);

/// `POST /v1/services/NAME/restart` once init accepted it: `{"ok": true}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RestartAccepted {
    pub ok: bool,
}
