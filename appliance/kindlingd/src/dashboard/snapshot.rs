//! What the dashboard shows, gathered from the sources `GET /v1/status`
//! uses: init's `list` (over the control socket, which lets the console's
//! account list and nothing else), the services' status files, the API
//! CA's public certificate, the image version and the site. No token, no
//! network. Every part that cannot be read says why in its place.

use kindling_init_protocol::control::{Client, ListResponse};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the dashboard reads from; overridable for tests.
#[derive(Debug, Clone)]
pub struct Sources {
    /// `/run/kindling`: init.sock, status/*.json, api-ca.pem.
    pub run_dir: PathBuf,
    /// `/etc/kindling/version`.
    pub version_file: PathBuf,
}

/// One look at the appliance.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Unix seconds when taken.
    pub now: u64,
    pub version: String,
    /// `hostname.domain` and site id of the effective site, when known.
    pub host: Option<String>,
    pub site_id: Option<String>,
    /// init's answer, or why it could not be asked.
    pub init: Result<ListResponse, String>,
    /// `status/net.json` and `status/pxe.json`, verbatim (null: absent).
    pub net: Value,
    pub pxe: Value,
    /// `sha256:…` of the API's CA, or why it is not known.
    pub ca_fingerprint: Result<String, String>,
}

/// The public copy of the API's CA certificate the config phase writes.
pub const PUBLIC_CA: &str = "api-ca.pem";

fn read_json(path: &Path) -> Value {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| serde_json::json!({ "error": format!("{}: {e}", path.display()) })),
        Err(_) => Value::Null,
    }
}

impl Sources {
    pub fn take(&self, now: u64) -> Snapshot {
        let init = Client::new(self.run_dir.join("init.sock"))
            .with_timeout(Duration::from_secs(2))
            .list()
            .map_err(|e| e.to_string());
        let ca_path = self.run_dir.join(PUBLIC_CA);
        let ca_fingerprint = std::fs::read_to_string(&ca_path)
            .map_err(|e| format!("{}: {e}", ca_path.display()))
            .and_then(|pem| {
                kindling_pki::fingerprint_of_pem(&ca_path, &pem)
                    .map(|f| f.to_string())
                    .map_err(|e| e.to_string())
            });
        let site =
            kindling_site::effective::load(&kindling_site::effective::in_run_dir(&self.run_dir))
                .ok();
        Snapshot {
            now,
            version: std::fs::read_to_string(&self.version_file)
                .unwrap_or_default()
                .trim()
                .to_string(),
            host: site
                .as_ref()
                .map(|s| format!("{}.{}", s.site.hostname, s.site.domain)),
            site_id: site.map(|s| s.site.id),
            init,
            net: read_json(&self.run_dir.join("status/net.json")),
            pxe: read_json(&self.run_dir.join("status/pxe.json")),
            ca_fingerprint,
        }
    }
}
