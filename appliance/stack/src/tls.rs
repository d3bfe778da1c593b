//! The Vault listener's certificate, signed by the appliance CA
//! (`kindling_pki`), so nodes on the LAN trust Vault with one CA file
//! (`ca.pem`, handed out in enrollment grants).
//!
//! Owns `<state>/tls/vault*.pem`; the CA in the same directory belongs to
//! `kindling_pki`. The certificate is re-issued on every render (cheap, and
//! picks up a changed LAN address).

use kindling_pki::{ApplianceCa, CaFiles, LeafRequest, PkiError, Usage};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct TlsError(#[from] PkiError);

/// Paths of the files the Vault listener and nodes use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

/// The appliance CA's directory on the data partition.
pub fn tls_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("tls")
}

/// Where the files are, without creating anything (for rendering configs).
pub fn tls_files(state_dir: &Path) -> TlsFiles {
    let dir = tls_dir(state_dir);
    TlsFiles {
        ca_cert: CaFiles::in_dir(&dir).cert,
        server_cert: dir.join("vault.pem"),
        server_key: dir.join("vault-key.pem"),
    }
}

/// Makes sure the CA exists (creating it once) and issues a fresh Vault
/// listener certificate for `names` (DNS names or IP addresses).
pub fn ensure(
    state_dir: &Path,
    ca_common_name: &str,
    names: &[String],
) -> Result<TlsFiles, TlsError> {
    let ca = ApplianceCa::ensure(&tls_dir(state_dir), ca_common_name)?;
    let files = tls_files(state_dir);
    let leaf = LeafRequest {
        common_name: names.first().map(String::as_str).unwrap_or("vault"),
        names,
        usage: Usage::ServerAndClient,
    };
    ca.issue_to_files(&leaf, &files.server_cert, &files.server_key, 0o600)?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ca_is_created_once_and_server_certs_are_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["vault.lab".to_string(), "192.168.100.1".to_string()];
        let first = ensure(dir.path(), "kindling lab CA", &names).unwrap();
        let ca1 = std::fs::read(&first.ca_cert).unwrap();
        let srv1 = std::fs::read(&first.server_cert).unwrap();
        let second = ensure(dir.path(), "renamed", &names).unwrap();
        assert_eq!(
            ca1,
            std::fs::read(&second.ca_cert).unwrap(),
            "the CA is never replaced"
        );
        assert_ne!(srv1, std::fs::read(&second.server_cert).unwrap());
    }
}
