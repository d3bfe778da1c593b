//! What the user-data gives the agent: `/etc/kindling/node.json` (who the
//! node is, where the appliance and the stack's servers are, which client
//! binaries to install) and `/etc/kindling/enrollment.json` (the grant).
//!
//! Typed and strict: an unknown key or a missing one is an error naming the
//! file, so a renderer and an agent that disagree fail loudly on the node.

use crate::error::StepError;
use crate::files::{paths, Root};
use serde::Deserialize;
use std::collections::BTreeMap;

/// `/etc/kindling/node.json`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeFile {
    /// The appliance's PXE HTTP base URL (`http://192.168.100.1/`): events
    /// go to `<appliance>nodes/<mac>/events`.
    pub appliance: String,
    pub mac: String,
    pub profile: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The site's domain: the SSH host certificate also names
    /// `<hostname>.<domain>`.
    #[serde(default)]
    pub domain: Option<String>,
    /// Where the stack's servers are; without it the Consul and Nomad
    /// configuration steps fail.
    #[serde(default)]
    pub stack: Option<StackFile>,
    /// `consul` and `nomad` to install, by URL and sha256.
    #[serde(default)]
    pub binaries: BTreeMap<String, BinaryFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackFile {
    pub datacenter: String,
    /// Consul's LAN gossip addresses to join (`192.168.100.1:8301`).
    pub consul_join: Vec<String>,
    /// Nomad servers' RPC addresses (`192.168.100.1:4647`).
    pub nomad_servers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BinaryFile {
    pub url: String,
    /// Lowercase hex.
    pub sha256: String,
}

/// `/etc/kindling/enrollment.json`. `Debug` hides the wrapping token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentFile {
    pub vault_addr: String,
    pub role_id: String,
    pub wrapped_secret_id: String,
}

impl std::fmt::Debug for EnrollmentFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "EnrollmentFile {{ vault_addr: {}, role_id: {}, wrapped_secret_id: <redacted> }}",
            self.vault_addr, self.role_id
        )
    }
}

fn parse<T: serde::de::DeserializeOwned>(root: &Root, rel: &str) -> Result<Option<T>, StepError> {
    let Some(bytes) = root.read(rel)? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StepError::Parse {
            path: root.join(rel),
            reason: e.to_string(),
        })
}

pub fn node_file(root: &Root) -> Result<NodeFile, StepError> {
    parse(root, paths::NODE)?.ok_or_else(|| StepError::NoNodeFile(root.join(paths::NODE)))
}

pub fn enrollment_file(root: &Root) -> Result<Option<EnrollmentFile>, StepError> {
    parse(root, paths::ENROLLMENT)
}

/// `52:54:00:6B:00:10` → `52-54-00-6b-00-10`, the form of Vault's paths.
pub fn mac_key(mac: &str) -> String {
    mac.trim().replace(':', "-").to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn node_file_is_strict_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        root.write(
            paths::NODE,
            br#"{"appliance":"http://a/","mac":"52:54:00:6b:00:10","profile":"dev","colour":"red"}"#,
            0o644,
        )
        .unwrap();
        let err = node_file(&root).unwrap_err().to_string();
        assert!(err.contains("node.json") && err.contains("colour"), "{err}");
        assert_eq!(mac_key("52:54:00:6B:00:10"), "52-54-00-6b-00-10");
    }

    #[test]
    fn enrollment_debug_hides_the_wrapping_token() {
        let e = EnrollmentFile {
            vault_addr: "https://v".into(),
            role_id: "r".into(),
            wrapped_secret_id: "hvs.secret".into(),
        };
        assert!(!format!("{e:?}").contains("hvs.secret"));
    }
}
