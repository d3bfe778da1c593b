//! Deciding whether one overlay file is authentic and admissible: signature by
//! a trusted key, trusted comment = manifest, payload hash, expiry, version
//! floor, site id. Nothing is unpacked or written here; the result either
//! carries the verified payload or a `VerifyError` whose message is one line.

use crate::format::{precheck, read_kovl, sha256_hex, ReadKovlError};
use crate::limits::Limits;
use crate::manifest::{valid_name, LayerKind, Manifest, FORMAT};
use crate::minisign::{self, KeyId, PublicKey, SignatureError};
use kindling_clock::rfc3339;

/// Why an overlay failed verification. Messages are one line and name the
/// reason; the caller names the overlay.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("signature file {file}.minisig is missing")]
    MissingSignature { file: String },
    #[error(transparent)]
    Container(#[from] ReadKovlError),
    // Not a `source`: the message already includes it (one line in reports).
    #[error("signature: {0}")]
    Signature(SignatureError),
    #[error("manifest: {0}")]
    Manifest(String),
    #[error("signed trusted comment does not match the manifest: {0}")]
    TrustedComment(String),
    #[error("payload sha256 {actual} does not match the manifest's {expected}")]
    PayloadHash { expected: String, actual: String },
    #[error("expired at {expires} (now {now})")]
    Expired { expires: String, now: String },
    #[error("version {version} is older than the accepted version {floor} (rollback refused)")]
    Rollback { version: u64, floor: u64 },
    #[error("overlay is for site {got:?}, this appliance is site {want:?}")]
    WrongSite { got: String, want: String },
    #[error("file name {file:?} does not match the overlay name {name:?}")]
    FileName { file: String, name: String },
    #[error(transparent)]
    Unpack(#[from] crate::unpack::UnpackError),
}

impl kindling_api::ApiFailure for VerifyError {
    fn kind(&self) -> kindling_api::ErrorKind {
        use kindling_api::ErrorKind;
        match self {
            VerifyError::MissingSignature { .. }
            | VerifyError::Container(_)
            | VerifyError::Signature(_)
            | VerifyError::Manifest(_)
            | VerifyError::TrustedComment(_)
            | VerifyError::PayloadHash { .. }
            | VerifyError::Expired { .. }
            | VerifyError::Rollback { .. }
            | VerifyError::WrongSite { .. }
            | VerifyError::FileName { .. } => ErrorKind::Refused,
            VerifyError::Unpack(e) => kindling_api::ApiFailure::kind(e),
        }
    }
}

impl From<SignatureError> for VerifyError {
    fn from(e: SignatureError) -> Self {
        VerifyError::Signature(e)
    }
}

/// An overlay whose signature and manifest checked out.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub payload: Vec<u8>,
    pub key_id: KeyId,
}

impl Verified {
    pub fn layer(&self) -> LayerKind {
        self.manifest.layer
    }
}

/// Authenticity and integrity: the signature over the whole file by one of
/// `trusted`, then the container, trusted comment and payload hash. Policy
/// (expiry, floor, site) is `check_policy`.
pub fn verify_authentic(
    kovl: &[u8],
    minisig: &str,
    trusted: &[PublicKey],
    limits: &Limits,
) -> Result<Verified, VerifyError> {
    precheck(kovl, limits)?;
    let sig = minisign::verify(kovl, minisig, trusted)?;
    let parts = read_kovl(kovl, limits)?;
    let m = &parts.manifest;
    if m.format != FORMAT {
        return Err(VerifyError::Manifest(format!(
            "unknown format {:?} (expected {FORMAT})",
            m.format
        )));
    }
    if !valid_name(&m.name) {
        return Err(VerifyError::Manifest(format!(
            "invalid overlay name {:?}",
            m.name
        )));
    }
    // Names and site ids are single words: the trusted comment is split on spaces.
    if !valid_name(&m.site_id) {
        return Err(VerifyError::Manifest(format!(
            "invalid site id {:?}",
            m.site_id
        )));
    }
    m.check_trusted_comment(&sig.trusted_comment)
        .map_err(VerifyError::TrustedComment)?;
    let actual = sha256_hex(&parts.payload);
    if actual != m.payload_sha256 || parts.payload.len() as u64 != m.payload_size {
        return Err(VerifyError::PayloadHash {
            expected: m.payload_sha256.clone(),
            actual,
        });
    }
    if m.unpacked_size > limits.max_unpacked_bytes {
        return Err(crate::unpack::UnpackError::TooLarge {
            limit: limits.max_unpacked_bytes,
        }
        .into());
    }
    Ok(Verified {
        manifest: parts.manifest,
        payload: parts.payload,
        key_id: sig.key_id,
    })
}

/// What the appliance admits: not expired, not below the recorded floor for
/// its name, and for this appliance's site.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Unix seconds.
    pub now: u64,
    /// The highest accepted version per name.
    pub floors: std::collections::BTreeMap<String, u64>,
    /// The site this appliance serves, once known.
    pub site_id: Option<String>,
}

pub fn check_policy(m: &Manifest, policy: &Policy) -> Result<(), VerifyError> {
    if policy.now > m.expires {
        return Err(VerifyError::Expired {
            expires: rfc3339(m.expires),
            now: rfc3339(policy.now),
        });
    }
    if let Some(&floor) = policy.floors.get(&m.name) {
        if m.version < floor {
            return Err(VerifyError::Rollback {
                version: m.version,
                floor,
            });
        }
    }
    if let Some(want) = &policy.site_id {
        if *want != m.site_id {
            return Err(VerifyError::WrongSite {
                got: m.site_id.clone(),
                want: want.clone(),
            });
        }
    }
    Ok(())
}
