//! The overlay manifest (`manifest.json`, first entry of a `.kovl`) and the
//! trusted comment that repeats its security-relevant fields inside the
//! minisign signature. Pure data; no I/O.

use kindling_clock::rfc3339;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const FORMAT: &str = "kindling-overlay/1";

/// Which layer an overlay fills; the same type the API reports.
pub use kindling_api::overlays::LayerKind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub name: String,
    /// Monotonic per name: the appliance refuses anything below the highest it accepted.
    pub version: u64,
    #[serde(default)]
    pub layer: LayerKind,
    pub site_id: String,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds; refused after this.
    pub expires: u64,
    /// sha256 (hex) of `payload.tar.zst`, the second entry.
    pub payload_sha256: String,
    pub payload_size: u64,
    /// Sum of the payload's file sizes once unpacked.
    pub unpacked_size: u64,
    /// Files in the payload, `/`-separated, sorted.
    pub files: Vec<String>,
    /// Key rotation: minisign public keys (base64 lines) trusted once this overlay is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<String>,
}

/// Overlay names become file names on the appliance.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        && !name.starts_with(['-', '_'])
}

impl Manifest {
    /// The trusted comment carried in the signature: name, version, layer,
    /// site, expiry and payload hash, as space-separated `key=value` pairs.
    pub fn trusted_comment(&self) -> String {
        format!(
            "kindling-overlay name={} version={} layer={} site={} expires={} sha256={}",
            self.name,
            self.version,
            self.layer.as_str(),
            self.site_id,
            rfc3339(self.expires),
            self.payload_sha256
        )
    }

    /// Whether a (verified) trusted comment states exactly this manifest's
    /// fields; returns the first field that differs.
    pub fn check_trusted_comment(&self, comment: &str) -> Result<(), String> {
        let mut words = comment.split_whitespace();
        if words.next() != Some("kindling-overlay") {
            return Err("trusted comment is not a kindling-overlay comment".into());
        }
        let pairs: BTreeMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
        let expected = self.trusted_comment();
        let want: BTreeMap<&str, &str> = expected
            .split_whitespace()
            .skip(1)
            .filter_map(|w| w.split_once('='))
            .collect();
        if pairs.len() != want.len() {
            return Err(format!(
                "trusted comment has {} fields, expected {}",
                pairs.len(),
                want.len()
            ));
        }
        for (k, v) in &want {
            match pairs.get(k) {
                Some(got) if got == v => {}
                Some(got) => {
                    return Err(format!("trusted comment says {k}={got}, manifest says {v}"))
                }
                None => return Err(format!("trusted comment lacks {k}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn m() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            name: "lab".into(),
            version: 3,
            layer: LayerKind::Site,
            site_id: "lab".into(),
            created: 0,
            expires: 86_400,
            payload_sha256: "ab".repeat(32),
            payload_size: 1,
            unpacked_size: 1,
            files: vec![],
            trusted_keys: vec![],
        }
    }

    #[test]
    fn trusted_comment_round_trip() {
        let c = m().trusted_comment();
        assert!(c.contains("expires=1970-01-02T00:00:00Z"), "{c}");
        m().check_trusted_comment(&c).unwrap();
        let err = m()
            .check_trusted_comment(&c.replace("version=3", "version=4"))
            .unwrap_err();
        assert!(err.contains("version=4"), "{err}");
    }
}
