//! The appliance's own certificate authority: one CA per appliance, created
//! once on the data partition, that signs the certificates of every TLS
//! listener the appliance runs (the control API, Vault, Consul, Nomad) and
//! that nodes and the operator's CLI trust.
//!
//! Owns `<dir>/ca.pem`, `<dir>/ca-key.pem` and `<dir>/ca.cn`. The CA key never
//! leaves that directory and an existing CA is never replaced: nodes and
//! CLIs have pinned it. Leaf certificates are cheap and issued anew by their
//! users on every start (a changed LAN address is picked up that way).

mod fingerprint;

pub use fingerprint::Fingerprint;

use kindling_atomic_write::write_atomic_with_mode;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a usable PEM private key: {source}")]
    BadKey { path: PathBuf, source: rcgen::Error },
    #[error("{path} is not a PEM certificate: {reason}")]
    BadCert { path: PathBuf, reason: String },
    #[error("the CA in {dir} is incomplete: {missing} is missing (refusing to replace a CA others may trust)")]
    Incomplete { dir: PathBuf, missing: &'static str },
    #[error("generating {what}: {source}")]
    Generate { what: String, source: rcgen::Error },
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (the API, Vault's listener).
    Server,
    /// A TLS client (a node agent, a CLI with a client certificate).
    Client,
    /// Both: cluster members that serve and dial each other (Consul and
    /// Nomad RPC with mutual TLS).
    ServerAndClient,
}

/// A certificate to issue: its common name, its subject alternative names
/// (each a DNS name or an IP address) and what it is for.
#[derive(Debug, Clone)]
pub struct LeafRequest<'a> {
    pub common_name: &'a str,
    pub names: &'a [String],
    pub usage: Usage,
}

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Where a CA directory keeps its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub common_name: PathBuf,
}

impl CaFiles {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            cert: dir.join("ca.pem"),
            key: dir.join("ca-key.pem"),
            common_name: dir.join("ca.cn"),
        }
    }
}

/// The appliance CA, loaded with its key: able to issue.
pub struct ApplianceCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    fingerprint: Fingerprint,
}

impl ApplianceCa {
    /// Loads the CA in `dir`, creating it (named `common_name`) when the
    /// directory holds none. A directory with only part of a CA is an error,
    /// never silently replaced.
    pub fn ensure(dir: &Path, common_name: &str) -> Result<Self, PkiError> {
        let files = CaFiles::in_dir(dir);
        match (files.cert.exists(), files.key.exists()) {
            (true, true) => Self::load(dir),
            (false, false) => Self::create(&files, common_name),
            (false, true) => Err(PkiError::Incomplete {
                dir: dir.to_path_buf(),
                missing: "ca.pem",
            }),
            (true, false) => Err(PkiError::Incomplete {
                dir: dir.to_path_buf(),
                missing: "ca-key.pem",
            }),
        }
    }

    /// Loads an existing CA; never creates one.
    pub fn load(dir: &Path) -> Result<Self, PkiError> {
        let files = CaFiles::in_dir(dir);
        let key_pem = read(&files.key)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|source| PkiError::BadKey {
            path: files.key.clone(),
            source,
        })?;
        let cert_pem = read(&files.cert)?;
        let fingerprint = fingerprint_of_pem(&files.cert, &cert_pem)?;
        // Leaves must name the issuer exactly as the CA certificate nodes
        // already trust does, even if the site was renamed since.
        let cn = read(&files.common_name)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "kindling CA".to_string());
        Ok(Self {
            issuer: Issuer::new(ca_params(&cn), key),
            cert_pem,
            fingerprint,
        })
    }

    fn create(files: &CaFiles, common_name: &str) -> Result<Self, PkiError> {
        let key = KeyPair::generate().map_err(|source| generate("the CA key", source))?;
        let cert = ca_params(common_name)
            .self_signed(&key)
            .map_err(|source| generate("the CA certificate", source))?;
        // Key first: a crash in between leaves "key without cert", which
        // `ensure` reports instead of minting a second CA.
        write(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
        write(&files.common_name, common_name.as_bytes(), 0o644)?;
        write(&files.cert, cert.pem().as_bytes(), 0o644)?;
        Ok(Self {
            fingerprint: Fingerprint::of_der(cert.der()),
            cert_pem: cert.pem(),
            issuer: Issuer::new(ca_params(common_name), key),
        })
    }

    /// The CA certificate, PEM: what nodes and CLIs trust.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate (DER): what an operator compares on the
    /// console and pins in the CLI.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    /// Issues a fresh key and certificate for `leaf`.
    pub fn issue(&self, leaf: &LeafRequest<'_>) -> Result<Issued, PkiError> {
        let what = || format!("the certificate for {}", leaf.common_name);
        let mut params =
            CertificateParams::new(leaf.names.to_vec()).map_err(|source| PkiError::Generate {
                what: what(),
                source,
            })?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, leaf.common_name);
        params.distinguished_name = dn;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = match leaf.usage {
            Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
            Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Usage::ServerAndClient => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        };
        let key = KeyPair::generate().map_err(|source| PkiError::Generate {
            what: what(),
            source,
        })?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|source| PkiError::Generate {
                what: what(),
                source,
            })?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Issues `leaf` and writes it: the certificate (0644) and its key
    /// (`key_mode`, 0600 unless a service of another uid must read it).
    pub fn issue_to_files(
        &self,
        leaf: &LeafRequest<'_>,
        cert_path: &Path,
        key_path: &Path,
        key_mode: u32,
    ) -> Result<(), PkiError> {
        let issued = self.issue(leaf)?;
        write(key_path, issued.key_pem.as_bytes(), key_mode)?;
        write(cert_path, issued.cert_pem.as_bytes(), 0o644)
    }
}

/// The SHA-256 fingerprint of the first certificate in a PEM file.
pub fn fingerprint_of_pem(path: &Path, pem: &str) -> Result<Fingerprint, PkiError> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::BadCert {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(Fingerprint::of_der(&der))
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

fn generate(what: &str, source: rcgen::Error) -> PkiError {
    PkiError::Generate {
        what: what.to_string(),
        source,
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    write_atomic_with_mode(path, bytes, mode).map_err(|source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn ca_is_created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = ApplianceCa::ensure(dir.path(), "kindling lab CA").unwrap();
        let pem = first.cert_pem().to_string();
        let second = ApplianceCa::ensure(dir.path(), "renamed").unwrap();
        assert_eq!(second.cert_pem(), pem, "the CA is never replaced");
        assert_eq!(second.fingerprint(), first.fingerprint());
        let files = CaFiles::in_dir(dir.path());
        let mode = |p: &Path| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::metadata(p).unwrap().permissions().mode() & 0o777
        };
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(mode(&files.cert), 0o644);
    }

    #[test]
    fn a_partial_ca_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        ApplianceCa::ensure(dir.path(), "lab").unwrap();
        std::fs::remove_file(CaFiles::in_dir(dir.path()).cert).unwrap();
        let err = ApplianceCa::ensure(dir.path(), "lab").err().unwrap();
        assert!(err.to_string().contains("ca.pem is missing"), "{err}");
        assert!(CaFiles::in_dir(dir.path()).key.exists());
    }

    #[test]
    fn leaves_are_signed_by_the_ca_and_fresh_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ApplianceCa::ensure(dir.path(), "lab").unwrap();
        let sans = names(&["kindling.lab", "192.168.100.1"]);
        let leaf = LeafRequest {
            common_name: "api",
            names: &sans,
            usage: Usage::Server,
        };
        let a = ca.issue(&leaf).unwrap();
        let b = ca.issue(&leaf).unwrap();
        assert_ne!(a.cert_pem, b.cert_pem);
        assert_ne!(a.key_pem, b.key_pem);
        assert!(
            !format!("{a:?}").contains("PRIVATE KEY"),
            "Debug hides the key"
        );

        // The chain verifies with the CA as the only root (what a pinned
        // CLI and a node do), for each name; another name does not.
        let verify = |name: &str| {
            use rustls::client::danger::ServerCertVerifier;
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
                .unwrap();
            let verifier =
                rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            let leaf = CertificateDer::from_pem_slice(a.cert_pem.as_bytes()).unwrap();
            let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
            verifier.verify_server_cert(&leaf, &[], &name, &[], rustls_pki_types::UnixTime::now())
        };
        verify("kindling.lab").unwrap();
        verify("192.168.100.1").unwrap();
        assert!(verify("other.lab").is_err());
        assert!(verify("192.168.100.2").is_err());
    }

    #[test]
    fn another_ca_does_not_vouch_for_our_leaves() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let ours = ApplianceCa::ensure(one.path(), "lab").unwrap();
        let theirs = ApplianceCa::ensure(two.path(), "lab").unwrap();
        assert_ne!(ours.fingerprint(), theirs.fingerprint());
    }

    #[test]
    fn fingerprint_is_sha256_of_the_der() {
        let dir = tempfile::tempdir().unwrap();
        let ca = ApplianceCa::ensure(dir.path(), "lab").unwrap();
        let path = CaFiles::in_dir(dir.path()).cert;
        let again = fingerprint_of_pem(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(&again, ca.fingerprint());
        let text = ca.fingerprint().to_string();
        assert!(
            text.starts_with("sha256:") && text.len() == 7 + 64,
            "{text}"
        );
        assert_eq!(text.parse::<Fingerprint>().unwrap(), again);
    }
}
