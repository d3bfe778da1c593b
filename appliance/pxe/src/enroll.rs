//! The hook through which a node's enrollment material (Vault AppRole
//! credentials, CA) reaches its cloud-init user-data.
//!
//! Owns the interface only. The stack side implements it (minting a
//! response-wrapped secret-id per request); the PXE service renders whatever
//! it returns and never stores it.

use kindling_site::MacAddr;
use serde::Serialize;

/// What a node needs to authenticate to Vault on first boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enrollment {
    /// e.g. `https://192.168.100.1:8200`
    pub vault_addr: String,
    pub role_id: String,
    /// A response-wrapping token around a single-use secret-id: usable once,
    /// by the node, shortly after it fetched its user-data.
    pub wrapped_secret_id: String,
    /// PEM of the CA that signed Vault's certificate, if not publicly trusted.
    pub ca_pem: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("enrollment for {mac} (profile {profile}): {reason}")]
pub struct EnrollError {
    pub mac: MacAddr,
    pub profile: String,
    pub reason: String,
}

/// Supplies enrollment material. `Ok(None)` means "the stack has none to give
/// (e.g. Vault is disabled)": the user-data is rendered without it.
pub trait EnrollmentSource: Send + Sync {
    fn enroll(&self, mac: &MacAddr, profile: &str) -> Result<Option<Enrollment>, EnrollError>;
}

/// The source used when the stack offers none.
pub struct NoEnrollment;

impl EnrollmentSource for NoEnrollment {
    fn enroll(&self, _mac: &MacAddr, _profile: &str) -> Result<Option<Enrollment>, EnrollError> {
        Ok(None)
    }
}
