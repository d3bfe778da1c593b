//! The API's TLS identity: a server certificate from the appliance CA
//! (`kindling_pki`, CA in `<state>/tls`, shared with the stack's Vault
//! listener), issued afresh each boot into `<run>/api-tls/`.
//!
//! Issuing ([`issue`]) needs the CA key, so it runs in the config phase,
//! which init runs as root before any child drops privileges; the key file
//! is then handed to the uid the service table gives `api` and nobody else
//! can read it. The API itself only [`load`]s the result and never sees the
//! CA key. The certificate names the LAN address, a static uplink address
//! when the API is exposed there, and the site's host name (a DHCP uplink's
//! address is not known yet: clients dialling it expect the host name).

use kindling_pki::{fingerprint_of_pem, ApplianceCa, Fingerprint, LeafRequest, PkiError, Usage};
use kindling_site::{SiteConfig, UplinkMode};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the appliance CA: {0}")]
    Ca(#[from] PkiError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason} (was the config phase able to issue the API's certificate?)")]
    Load { path: PathBuf, reason: String },
    #[error("the API's TLS settings: {0}")]
    Config(rustls::Error),
}

/// Where the API's certificate, key and CA copy live for this boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTlsFiles {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

pub fn files(run_dir: &Path) -> ApiTlsFiles {
    let dir = run_dir.join("api-tls");
    ApiTlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server-key.pem"),
        ca: dir.join("ca.pem"),
        dir,
    }
}

/// The names the API's certificate carries for `site`.
pub fn names(site: &SiteConfig) -> Vec<String> {
    let mut names = vec![site.network.lan.address.addr().to_string()];
    let uplink = &site.network.uplink;
    if uplink.expose.iter().any(|s| s == "api") && uplink.mode == UplinkMode::Static {
        if let Some(address) = uplink.address {
            names.push(address.addr().to_string());
        }
    }
    names.push(site.site.hostname.clone());
    names.push(format!("{}.{}", site.site.hostname, site.site.domain));
    names.dedup();
    names
}

/// Who may read the key: the uid and gid the service table runs `api` as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyOwner {
    pub uid: u32,
    pub gid: u32,
}

/// Creates the appliance CA if there is none, issues the API's certificate
/// for `site` and writes it with the CA's certificate into
/// `<run_dir>/api-tls/` (directory and key 0700/0600, owned by `owner`).
/// Returns the CA's fingerprint.
pub fn issue(
    site: &SiteConfig,
    state_dir: &Path,
    run_dir: &Path,
    owner: KeyOwner,
) -> Result<Fingerprint, TlsError> {
    // Whoever creates the CA first (this or the stack's renderer) names it
    // this way; later callers only load it.
    let ca = ApplianceCa::ensure(
        &state_dir.join("tls"),
        &format!("kindling {} appliance CA", site.site.id),
    )?;
    let files = files(run_dir);
    make_private_dir(&files.dir)?;
    let names = names(site);
    let leaf = LeafRequest {
        common_name: &format!("{}.{}", site.site.hostname, site.site.domain),
        names: &names,
        usage: Usage::Server,
    };
    ca.issue_to_files(&leaf, &files.cert, &files.key, 0o600)?;
    kindling_atomic_write::write_atomic_with_mode(&files.ca, ca.cert_pem().as_bytes(), 0o644)
        .map_err(|source| io(&files.ca, source))?;
    // A public copy outside the API's private directory, for the console
    // dashboard to show the fingerprint operators pin.
    let public = run_dir.join(crate::dashboard::PUBLIC_CA);
    kindling_atomic_write::write_atomic_with_mode(&public, ca.cert_pem().as_bytes(), 0o644)
        .map_err(|source| io(&public, source))?;
    // Only root can give files away; run by anyone else (tests) they stay
    // the caller's, who is then also the API's user.
    if nix::unistd::geteuid().is_root() {
        for path in [&files.dir, &files.key, &files.cert, &files.ca] {
            std::os::unix::fs::chown(path, Some(owner.uid), Some(owner.gid))
                .map_err(|source| io(path, source))?;
        }
    }
    Ok(*ca.fingerprint())
}

fn io(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn make_private_dir(dir: &Path) -> Result<(), TlsError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| io(dir, source))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|source| io(dir, source))
}

/// What the API serves with: the TLS settings and the CA's fingerprint.
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    pub ca_fingerprint: Fingerprint,
}

/// Reads the certificate the config phase issued. The chain sent to
/// clients is the server certificate and the CA, so a client that pinned
/// only the CA's fingerprint can find it.
pub fn load(run_dir: &Path) -> Result<Loaded, TlsError> {
    let files = files(run_dir);
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|source| io(path, source));
    let bad = |path: &Path, reason: String| TlsError::Load {
        path: path.to_path_buf(),
        reason,
    };
    let (cert_pem, key_pem, ca_pem) = (read(&files.cert)?, read(&files.key)?, read(&files.ca)?);
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map_err(|e| bad(&files.cert, e.to_string()))?;
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
        .map_err(|e| bad(&files.ca, e.to_string()))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| bad(&files.key, e.to_string()))?;
    let ca_fingerprint = fingerprint_of_pem(&files.ca, &ca_pem)?;
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_single_cert(vec![cert, ca], key)
            .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Loaded {
        config: Arc::new(config),
        ca_fingerprint,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn names_follow_the_lan_the_exposed_static_uplink_and_the_host_name() {
        let mut site = super::super::lab_site();
        assert_eq!(
            names(&site),
            [
                "192.168.100.1",
                "kindling-lab",
                "kindling-lab.lab.kindling.internal"
            ]
        );
        site.network.uplink.mode = UplinkMode::Static;
        site.network.uplink.address = Some("10.0.0.2/24".parse().unwrap());
        assert!(names(&site).contains(&"10.0.0.2".to_string()));
        site.network.uplink.expose.clear();
        assert!(!names(&site).contains(&"10.0.0.2".to_string()));
    }

    #[test]
    fn issued_once_per_boot_private_to_its_owner_and_loadable() {
        let dir = tempfile::tempdir().unwrap();
        let (state, run) = (dir.path().join("state"), dir.path().join("run"));
        let me = KeyOwner {
            uid: nix::unistd::getuid().as_raw(),
            gid: nix::unistd::getgid().as_raw(),
        };
        let first = issue(&super::super::lab_site(), &state, &run, me).unwrap();
        let files = files(&run);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&files.dir), 0o700);
        assert_eq!(mode(&files.key), 0o600);
        assert_eq!(std::fs::metadata(&files.key).unwrap().uid(), me.uid);
        let loaded = load(&run).unwrap();
        assert_eq!(loaded.ca_fingerprint, first);
        // The next boot: same CA (clients pinned it), a new server key.
        let key = std::fs::read(&files.key).unwrap();
        assert_eq!(
            issue(&super::super::lab_site(), &state, &run, me).unwrap(),
            first
        );
        assert_ne!(std::fs::read(&files.key).unwrap(), key);
        // The CA's key stays in the state directory.
        assert!(state.join("tls/ca-key.pem").is_file());
        assert!(!std::fs::read_to_string(&files.ca)
            .unwrap()
            .contains("PRIVATE KEY"));
    }

    #[test]
    fn nothing_issued_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(dir.path()).err().unwrap().to_string();
        assert!(err.contains("api-tls/server.pem"), "{err}");
    }
}
