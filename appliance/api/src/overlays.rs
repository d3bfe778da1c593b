//! Overlay and effective-config bodies: `GET /v1/overlays`,
//! `POST /v1/overlays`, `GET /v1/config/effective`, and the config report
//! (`/run/kindling/config-report.json`) they carry.
//!
//! Describes only: verifying, merging and recording overlays is
//! `kindling-overlay`'s job, deciding what applies live is kindlingd's.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The merged config and where each value came from (`GET /v1/config/effective`).
pub use kindling_site::{Effective, Origin};

/// Which layer an overlay fills: image defaults < `site` (in declared order) < `appliance`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LayerKind {
    #[default]
    Site,
    Appliance,
}

impl LayerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerKind::Site => "site",
            LayerKind::Appliance => "appliance",
        }
    }
}

/// Where an overlay file was found. The order is the preference between
/// equal versions: a pushed copy wins over a persisted one, which wins over
/// the boot media's.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    BootMedia,
    DataPartition,
    Pushed,
}

/// An overlay that is part of the running configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AcceptedEntry {
    pub name: String,
    pub version: u64,
    pub layer: LayerKind,
    pub site_id: String,
    pub source: Source,
    pub file: String,
    pub key_id: String,
    /// RFC 3339.
    pub expires: String,
}

/// An overlay file that was not used, and why (one line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefusedEntry {
    pub file: String,
    pub name: Option<String>,
    pub version: Option<u64>,
    pub source: Source,
    pub reason: String,
}

impl RefusedEntry {
    /// The console/report line: names the overlay and the reason.
    pub fn line(&self) -> String {
        match (&self.name, self.version) {
            (Some(n), Some(v)) => {
                format!("refused overlay {n} v{v} ({}): {}", self.file, self.reason)
            }
            _ => format!("refused overlay {}: {}", self.file, self.reason),
        }
    }
}

/// The config phase's (or a push's) report, `config-report.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// RFC 3339.
    pub generated_at: String,
    pub site_id: Option<String>,
    /// A valid merged configuration exists (site.json was written).
    pub ok: bool,
    pub accepted: Vec<AcceptedEntry>,
    pub refused: Vec<RefusedEntry>,
    /// Informational: superseded older versions, state or key problems.
    pub notes: Vec<String>,
}

impl Report {
    /// One line per event, for init's console log.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .accepted
            .iter()
            .map(|a| {
                format!(
                    "accepted overlay {} v{} ({} layer, key {}, from {})",
                    a.name,
                    a.version,
                    a.layer.as_str(),
                    a.key_id,
                    a.file
                )
            })
            .collect();
        out.extend(self.refused.iter().map(RefusedEntry::line));
        out.extend(self.notes.iter().map(|n| format!("note: {n}")));
        if !self.ok {
            out.push("no valid site configuration: running on image defaults only".into());
        }
        out
    }
}

/// One accepted overlay as recorded on the data partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AcceptedOverlay {
    pub version: u64,
    pub layer: LayerKind,
    pub payload_sha256: String,
    pub key_id: String,
    /// Unix seconds.
    pub expires: u64,
    /// Unix seconds when first accepted.
    pub accepted_at: u64,
}

/// The overlay section of `state.json`: floors, accepted overlays, the
/// pinned site and keys added by rotation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OverlayState {
    #[serde(default)]
    pub site_id: Option<String>,
    /// Highest accepted version per overlay name.
    #[serde(default)]
    pub floors: BTreeMap<String, u64>,
    #[serde(default)]
    pub accepted: BTreeMap<String, AcceptedOverlay>,
    /// Site-layer overlay names in the order they were first accepted (for
    /// overlays pushed at runtime that no boot-media order file lists).
    #[serde(default)]
    pub order: Vec<String>,
    /// Public keys (base64) trusted through rotation, in addition to the image's.
    #[serde(default)]
    pub trusted_keys: Vec<String>,
}

/// The recorded state, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StateView {
    State(OverlayState),
    Unreadable { error: String },
}

/// `GET /v1/overlays`: the last config report (null before the first) and
/// the recorded state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OverlayList {
    pub report: Option<Report>,
    pub state: StateView,
}

/// `POST /v1/overlays` request: a signed overlay, authenticated by its
/// signature alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PushRequest {
    /// Base64 of `NAME.kovl`.
    pub kovl: String,
    /// Text of `NAME.kovl.minisig`.
    pub minisig: String,
}

/// `POST /v1/overlays` reply when the pushed overlay was accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PushReply {
    pub accepted: AcceptedEntry,
    /// Top-level config sections that changed and were applied at once.
    pub applied_now: Vec<String>,
    /// Sections that changed but take effect at the next boot.
    pub applies_at_next_boot: Vec<String>,
    pub report: Report,
    /// What the appliance did to apply the live sections, one line each.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
}
