//! Gathering a backup's parts: Consul's snapshot, Vault's raft snapshot
//! (when Vault keeps its data in raft; with Consul storage, Consul's
//! snapshot holds Vault's data), and the data partition's leases,
//! inventory, accepted overlays and their version floors (`state.json`).
//!
//! Owns which files a backup holds ([`DATA_FILES`]) and how the appliance
//! finds the tokens for the snapshots ([`Sources::for_appliance`]). Must
//! never write what it gathered anywhere: the parts stay in memory until
//! they are encrypted.

use crate::archive::Part;
pub use crate::http::{Endpoint, HttpError};
use crate::manifest::{EntryKind, CONSUL_SNAPSHOT, DATA_PREFIX, VAULT_SNAPSHOT};
use std::path::{Path, PathBuf};

/// The directories and files of the data partition a backup holds: each
/// regular, non-hidden file directly in a directory, or the file itself.
pub const DATA_FILES: &[(&str, EntryKind)] = &[
    ("leases", EntryKind::Leases),
    ("inventory", EntryKind::Inventory),
    ("overlays", EntryKind::Overlays),
    ("state.json", EntryKind::Overlays),
    ("stack/vault-init.age", EntryKind::VaultInit),
    // What makes a restored appliance the same one to its nodes and
    // operators: its Vault token, its Consul node id, the gossip keys every
    // joined agent holds.
    ("stack/appliance-token", EntryKind::StackState),
    ("stack/root-token.accessor", EntryKind::StackState),
    ("stack/consul-node-id", EntryKind::StackState),
    ("stack/consul-gossip.key", EntryKind::StackState),
    ("stack/nomad-gossip.key", EntryKind::StackState),
    // The CAs: certificates and names, and each key as the config phase
    // sealed it to the operators (`ca_keys`); the keys themselves are
    // root's alone. Leaf certificates are issued again at every boot.
    ("stack/tls/ca.pem", EntryKind::StackState),
    ("stack/tls/ca.cn", EntryKind::StackState),
    ("stack/tls/ca-key.pem.age", EntryKind::StackState),
    ("tls/ca.pem", EntryKind::StackState),
    ("tls/ca.cn", EntryKind::StackState),
    ("tls/ca-key.pem.age", EntryKind::StackState),
];

#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("Consul's snapshot: {0}")]
    Consul(HttpError),
    #[error("Vault's raft snapshot: {0}")]
    Vault(HttpError),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the stack is not bootstrapped yet: {0}")]
    NotBootstrapped(String),
    #[error("finding the tokens for the snapshots: {0}")]
    Tokens(String),
}

/// Where a backup's parts come from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// The data partition (`/var/lib/kindling`).
    pub data_dir: PathBuf,
    /// Consul's HTTP API and a token allowed its snapshot (`acl = "write"`).
    pub consul: Option<Endpoint>,
    /// Vault's API and a token allowed `sys/storage/raft/snapshot` (read).
    pub vault: Option<Endpoint>,
    /// `raft`, `consul` or `none` (see `Manifest::vault_storage`).
    pub vault_storage: String,
}

impl Sources {
    /// The appliance's own sources: Consul and Vault on loopback, with the
    /// bootstrap's Vault token (`stack/appliance-token`) and the Consul
    /// management token it keeps in Vault. Held only by the account that
    /// runs the bootstrap (kl-stack).
    pub async fn for_appliance(
        site: &kindling_site::SiteConfig,
        layout: &kindling_stack::StackLayout,
    ) -> Result<Self, CollectError> {
        use kindling_stack::bootstrap::policies::CONSUL_MANAGEMENT_KV;
        let (vault_enabled, consul_enabled) = (site.stack.vault.enabled, site.stack.consul.enabled);
        let vault_storage = if !vault_enabled {
            "none"
        } else if site.stack.vault.storage == kindling_site::VaultStorage::Consul {
            "consul"
        } else {
            "raft"
        };
        let mut sources = Sources {
            data_dir: layout.data_dir.clone(),
            consul: None,
            vault: None,
            vault_storage: vault_storage.into(),
        };
        if !vault_enabled {
            // Without Vault there is no place kindling keeps a Consul
            // management token: the files alone.
            return Ok(sources);
        }
        use kindling_stack::held::{self, HeldError};
        let held_error = |context: &str, e: HeldError| match e {
            HeldError::NotBootstrapped(why) => CollectError::NotBootstrapped(why),
            other => CollectError::Tokens(format!("{context}{other}")),
        };
        let token = held::bootstrap_token(layout).map_err(|e| held_error("", e))?;
        if consul_enabled {
            let vault = kindling_stack::vault::VaultApi::new(&layout.vault_local_url(), None, None)
                .map_err(|e| CollectError::Tokens(e.to_string()))?
                .with_token(&token);
            let secret = held::kept_secret(&vault, CONSUL_MANAGEMENT_KV)
                .await
                .map_err(|e| {
                    held_error(
                        "reading Consul's management token from Vault (is Vault unsealed?): ",
                        e,
                    )
                })?;
            sources.consul = Some(Endpoint {
                url: layout.consul_local_url(),
                token: secret.to_string(),
                ca_pem: None,
            });
        }
        if vault_storage == "raft" {
            sources.vault = Some(Endpoint {
                url: layout.vault_local_url(),
                token,
                ca_pem: None,
            });
        }
        Ok(sources)
    }
}

/// The parts of a backup of `sources`, plus notes on what is not in it.
pub async fn collect(sources: &Sources) -> Result<(Vec<Part>, Vec<String>), CollectError> {
    let mut parts = Vec::new();
    let mut notes = Vec::new();
    match &sources.consul {
        Some(consul) => {
            let bytes = crate::http::exchange(
                consul,
                reqwest::Method::GET,
                "/v1/snapshot",
                "X-Consul-Token",
                None,
                "GET /v1/snapshot",
            )
            .await
            .map_err(CollectError::Consul)?;
            parts.push(Part {
                name: CONSUL_SNAPSHOT.into(),
                kind: EntryKind::ConsulSnapshot,
                bytes,
            });
        }
        None => notes.push("no Consul snapshot: Consul is not enabled".into()),
    }
    match (&sources.vault, sources.vault_storage.as_str()) {
        (Some(vault), _) => {
            let bytes = crate::http::exchange(
                vault,
                reqwest::Method::GET,
                "/v1/sys/storage/raft/snapshot",
                "X-Vault-Token",
                None,
                "GET /v1/sys/storage/raft/snapshot",
            )
            .await
            .map_err(CollectError::Vault)?;
            parts.push(Part {
                name: VAULT_SNAPSHOT.into(),
                kind: EntryKind::VaultSnapshot,
                bytes,
            });
        }
        (None, "consul") => notes.push(
            "no Vault snapshot: Vault keeps its data in Consul, so consul.snap holds it".into(),
        ),
        (None, _) => notes.push("no Vault snapshot: Vault is not enabled".into()),
    }
    for (name, kind) in DATA_FILES {
        for rel in data_files(&sources.data_dir, name)? {
            let path = sources.data_dir.join(&rel);
            let bytes = std::fs::read(&path).map_err(|source| CollectError::Read {
                path: path.clone(),
                source,
            })?;
            parts.push(Part {
                name: format!("{DATA_PREFIX}{rel}"),
                kind: *kind,
                bytes,
            });
        }
    }
    Ok((parts, notes))
}

/// `name` itself if it is a file, else the regular non-hidden files in it,
/// sorted; nothing when it does not exist.
fn data_files(data_dir: &Path, name: &str) -> Result<Vec<String>, CollectError> {
    let path = data_dir.join(name);
    let read_err = |source| CollectError::Read {
        path: path.clone(),
        source,
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    if meta.is_file() {
        return Ok(vec![name.to_string()]);
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&path).map_err(read_err)? {
        let entry = entry.map_err(|source| CollectError::Read {
            path: path.clone(),
            source,
        })?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let regular = entry.file_type().map(|t| t.is_file()).unwrap_or(false);
        if regular && !file.starts_with('.') {
            out.push(format!("{name}/{file}"));
        }
    }
    out.sort();
    Ok(out)
}
