//! The operations behind the overlay endpoints of the appliance API, as typed
//! results: the recorded state and last report (`GET /v1/overlays`), the
//! effective config (`GET /v1/config/effective`) and accepting a pushed
//! overlay (`POST /v1/overlays`).
//!
//! Knows nothing of HTTP: errors say their [`ErrorKind`] and kindlingd picks
//! the status. Never decides what a change means for running services: a push
//! reports which top-level config sections changed, and kindlingd decides
//! which apply at once and which at the next boot.
//!
//! Push body: [`PushRequest`], `{"kovl": "<base64 of NAME.kovl>", "minisig":
//! "<text of NAME.kovl.minisig>"}`. It is authenticated by the signature
//! alone, verified exactly like at boot.

use crate::apply::{apply, ApplyOptions, ApplyPaths, PushedOverlay, Refused};
use crate::state::StateFile;
use base64::Engine;
use kindling_api::overlays::{AcceptedEntry, OverlayList, PushRequest, Report, StateView};
use kindling_api::{ApiFailure, ErrorKind};
use kindling_site::{Effective, SiteConfig};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Mutex;

/// Pushes are applied one at a time: each rewrites state.json and site.json.
static PUSH_LOCK: Mutex<()> = Mutex::new(());

/// `GET /v1/overlays`: the last config report and the recorded state.
pub fn list(paths: &ApplyPaths) -> OverlayList {
    let state = match StateFile::load(&paths.state_file()) {
        Ok(s) => StateView::State(s.overlays),
        Err(e) => StateView::Unreadable {
            error: e.to_string(),
        },
    };
    let report = std::fs::read(paths.report_json())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    OverlayList { report, state }
}

#[derive(Debug, thiserror::Error)]
pub enum EffectiveError {
    #[error("no effective configuration: {} is missing (see /v1/overlays for refusals)", path.display())]
    Missing { path: PathBuf },
}

impl ApiFailure for EffectiveError {
    fn kind(&self) -> ErrorKind {
        match self {
            EffectiveError::Missing { .. } => ErrorKind::Unavailable,
        }
    }
}

/// `GET /v1/config/effective`: the merged config and where each value came from.
pub fn effective(paths: &ApplyPaths) -> Result<Effective, EffectiveError> {
    let path = paths.effective_json();
    std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(EffectiveError::Missing { path })
}

/// A pushed overlay that is now part of the running configuration.
#[derive(Debug, Clone)]
pub struct PushAccepted {
    pub accepted: AcceptedEntry,
    /// Top-level config sections whose value changed, sorted.
    pub changed_sections: Vec<String>,
    /// The new effective config (as written to site.json); accepting an
    /// overlay means it merged, so this is always there in practice.
    pub site: Option<SiteConfig>,
    pub report: Report,
}

/// Why a push was not applied.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("body is not JSON {{\"kovl\": base64, \"minisig\": text}}: {0}")]
    Body(#[source] serde_json::Error),
    #[error("\"kovl\" is not base64: {0}")]
    NotBase64(#[source] base64::DecodeError),
    /// The pipeline refused the pushed overlay; the report says what runs.
    #[error("{refused}")]
    Refused {
        refused: Box<Refused>,
        report: Box<Report>,
    },
    #[error("not applied: an equal or newer version of this overlay is already accepted")]
    Superseded { report: Box<Report> },
}

impl PushError {
    /// The pipeline's report, when the push got that far.
    pub fn report(&self) -> Option<&Report> {
        match self {
            PushError::Body(_) | PushError::NotBase64(_) => None,
            PushError::Refused { report, .. } | PushError::Superseded { report } => Some(report),
        }
    }
}

impl ApiFailure for PushError {
    fn kind(&self) -> ErrorKind {
        match self {
            PushError::Body(_) | PushError::NotBase64(_) => ErrorKind::BadRequest,
            PushError::Refused { refused, .. } => refused.kind(),
            PushError::Superseded { .. } => ErrorKind::Conflict,
        }
    }
}

/// Once the update agent blessed an image that booted on trial: runs the
/// pipeline again, not on trial, so the image's own overlays (used since
/// boot, not recorded) are recorded: floors raised, copies kept on the
/// data partition. The same overlays are chosen as at boot, so the
/// effective configuration does not change. Serialised with pushes.
pub fn record_after_blessing(paths: &ApplyPaths, opts: &ApplyOptions) -> crate::ApplyOutcome {
    let _guard = PUSH_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let opts = ApplyOptions {
        image_on_trial: false,
        ..opts.clone()
    };
    apply(paths, &opts, None)
}

/// The overlay carried by a push body.
pub fn decode(body: &[u8]) -> Result<PushedOverlay, PushError> {
    let request: PushRequest = serde_json::from_slice(body).map_err(PushError::Body)?;
    let kovl = base64::engine::general_purpose::STANDARD
        .decode(request.kovl.trim())
        .map_err(PushError::NotBase64)?;
    Ok(PushedOverlay {
        kovl,
        minisig: request.minisig,
    })
}

/// `POST /v1/overlays`: runs the pipeline with the pushed overlay and says
/// what changed.
pub fn push(
    paths: &ApplyPaths,
    body: &[u8],
    opts: &ApplyOptions,
) -> Result<PushAccepted, PushError> {
    let pushed = decode(body)?;
    let _guard = PUSH_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let before = kindling_site::effective::load(&paths.site_json())
        .ok()
        .and_then(|s| serde_json::to_value(s).ok());
    let outcome = apply(paths, opts, Some(pushed));
    let report = Box::new(outcome.report);
    match outcome.pushed {
        Some(Ok(accepted)) => {
            let site = outcome.effective.map(|e| e.config);
            let after = site.as_ref().and_then(|s| serde_json::to_value(s).ok());
            Ok(PushAccepted {
                accepted,
                changed_sections: changed_sections(before.as_ref(), after.as_ref()),
                site,
                report: *report,
            })
        }
        Some(Err(refused)) => Err(PushError::Refused {
            refused: Box::new(refused),
            report,
        }),
        // The pushed file was superseded by an equal or newer accepted version.
        None => Err(PushError::Superseded { report }),
    }
}

/// Top-level sections whose value differs, sorted.
fn changed_sections(before: Option<&Value>, after: Option<&Value>) -> Vec<String> {
    let empty = serde_json::Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .cloned()
        .collect()
}
