//! The stack's TLS material, signed by the appliance CA (`kindling_pki`):
//! the server certificates of Vault's LAN listener, Consul and Nomad, the
//! client certificate the stack bootstrap shows Nomad's mutual-TLS API, and
//! the trust bundle Consul and Nomad check client certificates against.
//!
//! Two roots, on purpose: the appliance CA vouches for the appliance's own
//! listeners (nodes and the operator's CLI trust it, and nothing a node can
//! obtain is signed by it); Vault's PKI (`pki` → `pki_int`) issues the
//! nodes' client certificates. Consul and Nomad servers accept client
//! certificates from both ([`trust_bundle`]); a node needs only the
//! appliance CA to check the servers. A node's certificate therefore never
//! passes for the API's or Vault's listener.
//!
//! Owns `<state>/tls/{vault,consul,nomad,stack-client}{,-key}.pem` (the CA
//! files there belong to `kindling_pki`) and `<state>/tls-trust.pem` with
//! Vault's PKI root beside it in `<state>/vault-pki-ca.pem`. Leaf
//! certificates are re-issued on every render (cheap, and a changed LAN
//! address is picked up). Must never write a private key readable by anyone
//! but the service that uses it.

use kindling_pki::{ApplianceCa, CaFiles, LeafRequest, PkiError, Usage};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A certificate the stack presents, and who uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// Vault's LAN (and exposed) TLS listener.
    Vault,
    /// Consul's HTTPS API and RPC (server and client of its own RPC).
    Consul,
    /// Nomad's HTTPS API and RPC.
    Nomad,
    /// The stack bootstrap, as a client of Nomad's mutual-TLS API.
    StackClient,
}

impl Leaf {
    fn stem(self) -> &'static str {
        match self {
            Leaf::Vault => "vault",
            Leaf::Consul => "consul",
            Leaf::Nomad => "nomad",
            Leaf::StackClient => "stack-client",
        }
    }

    fn usage(self) -> Usage {
        match self {
            // Vault's listener only serves; Consul and Nomad servers dial each other.
            Leaf::Vault => Usage::Server,
            Leaf::Consul | Leaf::Nomad => Usage::ServerAndClient,
            Leaf::StackClient => Usage::Client,
        }
    }
}

/// A certificate and its key on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

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

/// The appliance CA certificate (what nodes and CLIs trust).
pub fn ca_cert(state_dir: &Path) -> PathBuf {
    CaFiles::in_dir(&tls_dir(state_dir)).cert
}

/// Where a leaf's files are, without creating anything.
pub fn leaf_files(state_dir: &Path, leaf: Leaf) -> LeafFiles {
    let dir = tls_dir(state_dir);
    LeafFiles {
        cert: dir.join(format!("{}.pem", leaf.stem())),
        key: dir.join(format!("{}-key.pem", leaf.stem())),
    }
}

/// Vault's listener files and the CA (for rendering configs).
pub fn tls_files(state_dir: &Path) -> TlsFiles {
    let vault = leaf_files(state_dir, Leaf::Vault);
    TlsFiles {
        ca_cert: ca_cert(state_dir),
        server_cert: vault.cert,
        server_key: vault.key,
    }
}

/// Vault's PKI root certificate, as the bootstrap fetched it.
pub fn vault_pki_ca(state_dir: &Path) -> PathBuf {
    state_dir.join("vault-pki-ca.pem")
}

/// The CAs Consul and Nomad accept client certificates from.
pub fn trust_bundle_file(state_dir: &Path) -> PathBuf {
    state_dir.join("tls-trust.pem")
}

/// The trust bundle's content: the appliance CA, then Vault's PKI root once
/// the bootstrap has fetched it.
pub fn trust_bundle(state_dir: &Path) -> String {
    let mut out = String::new();
    for path in [ca_cert(state_dir), vault_pki_ca(state_dir)] {
        if let Ok(pem) = std::fs::read_to_string(&path) {
            out.push_str(pem.trim_end());
            out.push('\n');
        }
    }
    out
}

/// Writes [`trust_bundle`] to [`trust_bundle_file`] (0644: certificates
/// only). Returns whether the content changed.
pub fn write_trust_bundle(state_dir: &Path) -> Result<bool, TlsError> {
    let path = trust_bundle_file(state_dir);
    let body = trust_bundle(state_dir);
    if std::fs::read_to_string(&path).ok().as_deref() == Some(body.as_str()) {
        return Ok(false);
    }
    kindling_atomic_write::write_atomic_with_mode(&path, body.as_bytes(), 0o644)
        .map_err(|source| TlsError::Write { path, source })?;
    Ok(true)
}

/// One certificate to issue: which, and for which names (DNS names or IP
/// addresses; the first is the common name).
#[derive(Debug, Clone)]
pub struct Issue<'a> {
    pub leaf: Leaf,
    pub names: &'a [String],
}

/// Makes sure the CA exists (creating it once) and issues fresh leaves.
/// Keys are written 0600; the caller hands each to its service's account.
pub fn ensure(
    state_dir: &Path,
    ca_common_name: &str,
    leaves: &[Issue<'_>],
) -> Result<Vec<LeafFiles>, TlsError> {
    let ca = ApplianceCa::ensure(&tls_dir(state_dir), ca_common_name)?;
    let mut out = Vec::new();
    for issue in leaves {
        let files = leaf_files(state_dir, issue.leaf);
        let leaf = LeafRequest {
            common_name: issue
                .names
                .first()
                .map(String::as_str)
                .unwrap_or(issue.leaf.stem()),
            names: issue.names,
            usage: issue.leaf.usage(),
        };
        ca.issue_to_files(&leaf, &files.cert, &files.key, 0o600)?;
        out.push(files);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ca_is_created_once_and_leaves_are_reissued() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["vault.lab".to_string(), "192.168.100.1".to_string()];
        let issue = [Issue {
            leaf: Leaf::Vault,
            names: &names,
        }];
        ensure(dir.path(), "kindling lab CA", &issue).unwrap();
        let files = tls_files(dir.path());
        let ca1 = std::fs::read(&files.ca_cert).unwrap();
        let srv1 = std::fs::read(&files.server_cert).unwrap();
        ensure(dir.path(), "renamed", &issue).unwrap();
        assert_eq!(
            ca1,
            std::fs::read(&files.ca_cert).unwrap(),
            "the CA is never replaced"
        );
        assert_ne!(srv1, std::fs::read(&files.server_cert).unwrap());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&files.server_key)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "a key is for its owner only");
    }

    #[test]
    fn the_bundle_grows_by_vaults_root_and_says_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let names = vec!["server.dc.consul".to_string()];
        ensure(
            dir.path(),
            "lab",
            &[Issue {
                leaf: Leaf::Consul,
                names: &names,
            }],
        )
        .unwrap();
        assert!(write_trust_bundle(dir.path()).unwrap());
        assert!(!write_trust_bundle(dir.path()).unwrap(), "unchanged");
        let ca = std::fs::read_to_string(ca_cert(dir.path())).unwrap();
        assert_eq!(trust_bundle(dir.path()).trim(), ca.trim());
        std::fs::write(
            vault_pki_ca(dir.path()),
            "-----BEGIN CERTIFICATE-----\nVAULT\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(write_trust_bundle(dir.path()).unwrap());
        let bundle = std::fs::read_to_string(trust_bundle_file(dir.path())).unwrap();
        assert!(
            bundle.starts_with(ca.trim_end()) && bundle.contains("VAULT"),
            "{bundle}"
        );
    }
}
