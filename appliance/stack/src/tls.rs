//! The appliance's own TLS CA and the Vault listener certificate it signs, so
//! nodes on the LAN can trust Vault with one CA file (`ca.pem`, handed out in
//! enrollment grants).
//!
//! Owns `<state>/tls/`. The CA key never leaves the data partition and is
//! generated once; the server certificate is re-issued on every render (cheap,
//! and picks up a changed LAN address). Must never overwrite an existing CA.

use crate::files::{self, FileError};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("the CA key {path} is not a usable PEM private key: {source}")]
    BadCaKey { path: PathBuf, source: rcgen::Error },
    #[error("generating a certificate for {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
}

/// Paths of the files the Vault listener and nodes use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

pub fn tls_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("tls")
}

/// Where the files are, without creating anything (for rendering configs).
pub fn tls_files(state_dir: &Path) -> TlsFiles {
    let dir = tls_dir(state_dir);
    TlsFiles {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("vault.pem"),
        server_key: dir.join("vault-key.pem"),
    }
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "kindling");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn read(path: &Path) -> Result<String, TlsError> {
    Ok(files::read_to_string(path)?)
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    Ok(files::write(path, bytes, mode)?)
}

/// Makes sure the CA exists (creating it once) and issues a fresh server
/// certificate for `names` (DNS names or IP addresses).
pub fn ensure(
    state_dir: &Path,
    ca_common_name: &str,
    names: &[String],
) -> Result<TlsFiles, TlsError> {
    let dir = tls_dir(state_dir);
    let files = tls_files(state_dir);
    let key_path = dir.join("ca-key.pem");
    let cn_path = dir.join("ca.cn");
    let (ca_key, cn) = if key_path.exists() && files.ca_cert.exists() {
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(|source| TlsError::BadCaKey {
            path: key_path.clone(),
            source,
        })?;
        // The issuer name must match the CA certificate nodes already trust,
        // even if the site was renamed since.
        let cn = read(&cn_path)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| ca_common_name.to_string());
        (key, cn)
    } else {
        let key = KeyPair::generate().map_err(|source| TlsError::Generate {
            what: "the CA key",
            source,
        })?;
        let cert = ca_params(ca_common_name)
            .self_signed(&key)
            .map_err(|source| TlsError::Generate {
                what: "the CA",
                source,
            })?;
        write(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
        write(&cn_path, ca_common_name.as_bytes(), 0o644)?;
        write(&files.ca_cert, cert.pem().as_bytes(), 0o644)?;
        (key, ca_common_name.to_string())
    };
    let issuer = Issuer::new(ca_params(&cn), ca_key);

    let mut params =
        CertificateParams::new(names.to_vec()).map_err(|source| TlsError::Generate {
            what: "the Vault listener",
            source,
        })?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_else(|| "vault".into()),
    );
    params.distinguished_name = dn;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let server_key = KeyPair::generate().map_err(|source| TlsError::Generate {
        what: "the Vault listener key",
        source,
    })?;
    let cert = params
        .signed_by(&server_key, &issuer)
        .map_err(|source| TlsError::Generate {
            what: "the Vault listener",
            source,
        })?;
    write(
        &files.server_key,
        server_key.serialize_pem().as_bytes(),
        0o600,
    )?;
    write(&files.server_cert, cert.pem().as_bytes(), 0o644)?;
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
