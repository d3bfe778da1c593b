//! Status resources: init's phases and services (over its control socket), and
//! the status files every service keeps in `/run/kindling/status/`.
//! Read-only except for `restart`, which asks init to restart one service.
//! Chooses no HTTP status: failures are [`StatusError`]s with their kind.

use super::ApiPaths;
use kindling_api::overlays::Report;
use kindling_api::status::{ApiEndpoint, RestartAccepted, ServiceList, Status};
use kindling_api::{ApiFailure, ErrorKind};
use kindling_init_protocol::control::{Client, ControlError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CONTROL_TIMEOUT: Duration = Duration::from_secs(3);

/// A status request that failed, named by what it could not do.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("listing init's services: {0}")]
    ListServices(ControlError),
    #[error("restarting {name}: {source}")]
    RestartService { name: String, source: ControlError },
    #[error("no config report yet (config phase has not run): {path} is missing")]
    ReadConfigReport { path: PathBuf },
    #[error("{path} is not a config report: {source}")]
    ParseConfigReport {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl ApiFailure for StatusError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::ListServices(e) | Self::RestartService { source: e, .. } => control_kind(e),
            Self::ReadConfigReport { .. } => ErrorKind::NotFound,
            Self::ParseConfigReport { .. } => ErrorKind::Internal,
        }
    }
}

/// What a control-socket failure means for the API's caller: init not
/// answering is "try later", init refusing (no such service) is "not found".
fn control_kind(e: &ControlError) -> ErrorKind {
    match e {
        ControlError::Connect { .. } | ControlError::Io { .. } | ControlError::NoAnswer { .. } => {
            ErrorKind::Unavailable
        }
        ControlError::Decode { .. } => ErrorKind::Internal,
        ControlError::Refused(_) => ErrorKind::NotFound,
    }
}

fn init(paths: &ApiPaths) -> Client {
    Client::new(paths.control_socket()).with_timeout(CONTROL_TIMEOUT)
}

/// init's `list` answer as JSON.
fn list(paths: &ApiPaths) -> Result<Value, StatusError> {
    let list = init(paths).list().map_err(StatusError::ListServices)?;
    Ok(serde_json::to_value(list).unwrap_or(Value::Null))
}

/// `GET /v1/status`: everything an operator looks at first. Never fails: a
/// part that cannot be read says so in its place.
pub fn status(paths: &ApiPaths, api: ApiEndpoint) -> Status {
    let init = list(paths).unwrap_or_else(|e| json!({ "error": e.to_string() }));
    Status {
        version: std::fs::read_to_string("/etc/kindling/version")
            .unwrap_or_default()
            .trim()
            .to_string(),
        init,
        config: read_json(&paths.run_dir.join("config-report.json")),
        services: service_status_files(paths),
        api,
    }
}

/// `GET /v1/services`: init's view of the supervised children.
pub fn services(paths: &ApiPaths) -> Result<ServiceList, StatusError> {
    list(paths).map(ServiceList)
}

/// `POST /v1/services/NAME/restart`.
pub fn restart(paths: &ApiPaths, name: &str) -> Result<RestartAccepted, StatusError> {
    init(paths)
        .restart(name)
        .map(|()| RestartAccepted { ok: true })
        .map_err(|source| StatusError::RestartService {
            name: name.to_string(),
            source,
        })
}

/// Asks init to reboot, saying why (a restore staged for the next boot).
pub fn reboot(paths: &ApiPaths, reason: &str) -> Result<(), String> {
    init(paths).reboot(reason).map_err(|e| e.to_string())
}

/// `GET /v1/config/report`: which overlays were accepted or refused at boot.
pub fn config_report(paths: &ApiPaths) -> Result<Report, StatusError> {
    let path = paths.run_dir.join("config-report.json");
    let text =
        std::fs::read(&path).map_err(|_| StatusError::ReadConfigReport { path: path.clone() })?;
    serde_json::from_slice(&text).map_err(|source| StatusError::ParseConfigReport { path, source })
}

/// Every `status/NAME.json`, keyed by NAME. A file that does not parse is shown
/// as such rather than hidden.
fn service_status_files(paths: &ApiPaths) -> BTreeMap<String, Value> {
    let mut all = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(paths.run_dir.join("status")) else {
        return all;
    };
    for path in entries.flatten().map(|e| e.path()) {
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
            all.insert(stem.to_string(), read_json(&path));
        }
    }
    all
}

fn read_json(path: &Path) -> Value {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(
            |e| json!({ "error": format!("{} is not valid JSON: {e}", path.display()) }),
        ),
        Err(_) => Value::Null,
    }
}
