//! `manifest.json` of a bundle: which version it carries, which versions
//! may move to it, how long it may be applied, and the image it binds by
//! size and sha256. The appliance trusts it only once its signature is
//! verified (`bundle::stage`).

use crate::version::Version;
use serde::{Deserialize, Serialize};

/// The one manifest format this build writes and reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// The version the image reports once running.
    pub version: Version,
    /// The oldest running version that may move to this one.
    pub min_from: Version,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds after which the bundle is refused (a stale copy).
    pub expires: u64,
    /// `kindling.efi`'s length and sha256 (hex).
    pub image_size: u64,
    pub image_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest.json: {0}")]
    Parse(serde_json::Error),
    #[error("manifest.json: format {0}, this appliance reads format {FORMAT}")]
    Format(u32),
    #[error("manifest.json: image_sha256 {0:?} is not 64 hex digits")]
    Digest(String),
}

impl Manifest {
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(ManifestError::Parse)?;
        if m.format != FORMAT {
            return Err(ManifestError::Format(m.format));
        }
        let hex = m.image_sha256.len() == 64
            && m.image_sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(ManifestError::Digest(m.image_sha256));
        }
        Ok(m)
    }

    /// What the signature's trusted comment says, for people reading it
    /// with `minisign -V`.
    pub fn trusted_comment(&self) -> String {
        format!(
            "kindling update {} (from {} on) expires {}",
            self.version, self.min_from, self.expires
        )
    }
}
