//! Files under the agent's root (`/` on a node, a temp dir in tests):
//! reading, and replacing atomically with a mode set before the rename, so a
//! secret is never readable by others and a reader never sees half a file.

use crate::error::StepError;
use std::path::{Path, PathBuf};

/// Paths on the node, relative to the root.
pub mod paths {
    pub const ENROLLMENT: &str = "etc/kindling/enrollment.json";
    pub const NODE: &str = "etc/kindling/node.json";
    /// The appliance CA, as the user-data writes it.
    pub const APPLIANCE_CA: &str = "usr/local/share/ca-certificates/kindling-vault.crt";
    pub const STATE: &str = "var/lib/kindling-node/state.json";
    pub const CONSUL_TOKEN: &str = "etc/kindling/secrets/consul-token";
    pub const CONSUL_GOSSIP: &str = "etc/kindling/secrets/consul-gossip.key";
    pub const TLS_CA: &str = "etc/kindling/tls/ca.pem";
    pub const TLS_CERT: &str = "etc/kindling/tls/node.pem";
    pub const TLS_KEY: &str = "etc/kindling/tls/node-key.pem";
    pub const SSH_HOST_KEY_PUB: &str = "etc/ssh/ssh_host_ed25519_key.pub";
    pub const SSH_HOST_CERT: &str = "etc/ssh/ssh_host_ed25519_key-cert.pub";
    pub const SSH_USER_CA: &str = "etc/ssh/kindling-user-ca.pub";
    pub const SSHD_DROP_IN: &str = "etc/ssh/sshd_config.d/50-kindling.conf";
    pub const CONSUL_CONFIG: &str = "etc/consul.d/kindling.json";
    pub const NOMAD_CONFIG: &str = "etc/nomad.d/kindling.json";
    pub const BIN_DIR: &str = "usr/local/bin";
    pub const UNIT_DIR: &str = "etc/systemd/system";
    pub const CONSUL_DATA: &str = "opt/consul";
    pub const NOMAD_DATA: &str = "opt/nomad";
}

/// The root the agent writes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root(PathBuf);

impl Root {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// Whether this is the running system's own root.
    pub fn is_system(&self) -> bool {
        self.0 == Path::new("/")
    }

    /// `rel` (a node path without the leading `/`) under the root.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.0.join(rel.trim_start_matches('/'))
    }

    /// The path as the node sees it (what goes into configuration files).
    pub fn on_node(rel: &str) -> String {
        format!("/{}", rel.trim_start_matches('/'))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.join(rel).is_file()
    }

    pub fn read(&self, rel: &str) -> Result<Option<Vec<u8>>, StepError> {
        let path = self.join(rel);
        match std::fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StepError::Read { path, source }),
        }
    }

    pub fn read_string(&self, rel: &str) -> Result<Option<String>, StepError> {
        self.read(rel)?
            .map(|b| {
                String::from_utf8(b).map_err(|_| StepError::Parse {
                    path: self.join(rel),
                    reason: "not UTF-8".into(),
                })
            })
            .transpose()
    }

    /// Replaces `rel` with `bytes` at `mode` unless it holds them already;
    /// true if it wrote.
    pub fn write(&self, rel: &str, bytes: &[u8], mode: u32) -> Result<bool, StepError> {
        let path = self.join(rel);
        if std::fs::read(&path).ok().as_deref() == Some(bytes) && mode_of(&path) == Some(mode) {
            return Ok(false);
        }
        kindling_atomic_write::write_atomic_with_mode(&path, bytes, mode)
            .map_err(|source| StepError::Write { path, source })?;
        Ok(true)
    }

    pub fn create_dir(&self, rel: &str, mode: u32) -> Result<(), StepError> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.join(rel);
        std::fs::create_dir_all(&path)
            .and_then(|()| std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)))
            .map_err(|source| StepError::Write { path, source })
    }
}

fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}
