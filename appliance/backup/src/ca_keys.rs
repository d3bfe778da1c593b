//! The appliance CAs' private keys in backups. A CA key is root's alone
//! (0600): the backup service (kl-stack) never reads it. The config phase
//! (root) keeps a copy of each key encrypted to the site's age recipients
//! beside it ([`seal`], `ca-key.pem.age`), which backups carry; the
//! operator's machine, holding the identity that opens the backup, opens
//! that copy too ([`unseal`]) and hands the key back with the restore.
//! A restored appliance so keeps the CAs its nodes and operators pin.
//!
//! Owns the sealed copies' names and their encryption. Must never write a
//! key in the clear anywhere but where root keeps it.

use crate::archive::{OpenError, Opened, Part};
use crate::manifest::{EntryKind, DATA_PREFIX};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The CA directories below the data partition: the stack's (Vault's,
/// Consul's and Nomad's listeners) and the API's.
pub const CA_DIRS: &[&str] = &["stack/tls", "tls"];
/// A CA's key, as the PKI writes it.
pub const KEY: &str = "ca-key.pem";
/// Its copy encrypted to the site's recipients.
pub const SEALED: &str = "ca-key.pem.age";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("encrypting {path}: {reason}")]
    Encrypt { path: PathBuf, reason: String },
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes `DIR/ca-key.pem.age` for every CA key below `data_dir`, encrypted
/// to `recipients` (0644: only an operator's identity opens it). Returns
/// the copies written.
pub fn seal(
    data_dir: &Path,
    recipients: &[age::x25519::Recipient],
) -> Result<Vec<PathBuf>, SealError> {
    let mut written = Vec::new();
    for dir in CA_DIRS {
        let key = data_dir.join(dir).join(KEY);
        let plain = match std::fs::read(&key) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(SealError::Io {
                    action: "reading",
                    path: key,
                    source,
                })
            }
        };
        let encrypt_err = |reason: String| SealError::Encrypt {
            path: key.clone(),
            reason,
        };
        let mut writer = kindling_stack::secrets::encrypting_writer(recipients, Vec::new())
            .map_err(|e| encrypt_err(e.to_string()))?;
        writer
            .write_all(&plain)
            .map_err(|e| encrypt_err(e.to_string()))?;
        let sealed = writer.finish().map_err(|e| encrypt_err(e.to_string()))?;
        let path = data_dir.join(dir).join(SEALED);
        kindling_atomic_write::write_atomic_with_mode(&path, &sealed, 0o644).map_err(|source| {
            SealError::Io {
                action: "writing",
                path: path.clone(),
                source,
            }
        })?;
        written.push(path);
    }
    Ok(written)
}

/// Adds to `opened` each CA key its sealed copies hold, decrypted with the
/// operator's `identity` (`data/DIR/ca-key.pem`, restored 0600 for root).
/// Returns how many.
pub fn unseal(opened: &mut Opened, identity: &age::x25519::Identity) -> Result<usize, OpenError> {
    let mut keys = Vec::new();
    for dir in CA_DIRS {
        let sealed_name = format!("{DATA_PREFIX}{dir}/{SEALED}");
        let Some(sealed) = opened.part(&sealed_name) else {
            continue;
        };
        let entry = |reason: String| OpenError::Entry {
            name: sealed_name.clone(),
            reason,
        };
        let decryptor = age::Decryptor::new(&sealed.bytes[..]).map_err(|e| entry(e.to_string()))?;
        let mut plain = Vec::new();
        decryptor
            .decrypt(std::iter::once(identity as &dyn age::Identity))
            .map_err(|e| entry(format!("cannot decrypt it with this identity: {e}")))?
            .read_to_end(&mut plain)
            .map_err(|e| entry(e.to_string()))?;
        keys.push(Part {
            name: format!("{DATA_PREFIX}{dir}/{KEY}"),
            kind: EntryKind::StackState,
            bytes: plain,
        });
    }
    let count = keys.len();
    opened
        .parts
        .retain(|p| !keys.iter().any(|k| k.name == p.name));
    opened.parts.extend(keys);
    Ok(count)
}

/// The CA directories whose certificate `opened` holds without the key
/// (not sealed when the backup was made, or not opened): restoring the
/// certificate alone would pair it with the target's own key.
pub fn unpaired(opened: &Opened) -> Vec<String> {
    CA_DIRS
        .iter()
        .filter(|dir| {
            opened.part(&format!("{DATA_PREFIX}{dir}/ca.pem")).is_some()
                && opened.part(&format!("{DATA_PREFIX}{dir}/{KEY}")).is_none()
        })
        .map(|dir| (*dir).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::manifest::Manifest;

    #[test]
    fn sealed_by_the_appliance_opened_by_the_operator_only() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("stack/tls");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join(KEY), b"-----BEGIN PRIVATE KEY-----\nk\n").unwrap();
        let operator = age::x25519::Identity::generate();
        let written = seal(dir.path(), &[operator.to_public()]).unwrap();
        assert_eq!(written, vec![tls.join(SEALED)], "no API CA here: one copy");
        let sealed = std::fs::read(tls.join(SEALED)).unwrap();
        assert!(!sealed.windows(11).any(|w| w == b"PRIVATE KEY"));
        let mut opened = Opened {
            manifest: serde_json::from_value::<Manifest>(serde_json::json!({
                "format": 2, "id": "x", "created": "", "created_unix": 0,
                "appliance": {"site_id": "", "hostname": "", "version": ""},
                "vault_storage": "raft", "entries": []
            }))
            .unwrap(),
            parts: vec![Part {
                name: "data/stack/tls/ca-key.pem.age".into(),
                kind: EntryKind::StackState,
                bytes: sealed,
            }],
        };
        let stranger = age::x25519::Identity::generate();
        assert!(unseal(&mut opened, &stranger).is_err());
        assert_eq!(unseal(&mut opened, &operator).unwrap(), 1);
        let key = opened.part("data/stack/tls/ca-key.pem").unwrap();
        assert_eq!(key.bytes, b"-----BEGIN PRIVATE KEY-----\nk\n");
        assert_eq!(unseal(&mut opened, &operator).unwrap(), 1, "idempotent");
        assert_eq!(opened.parts.len(), 2);
    }

    #[test]
    fn a_ca_certificate_without_its_key_is_not_restored() {
        let part = |name: &str| Part {
            name: name.into(),
            kind: EntryKind::StackState,
            bytes: b"pem".to_vec(),
        };
        let manifest: Manifest = serde_json::from_value(serde_json::json!({
            "format": 2, "id": "x", "created": "", "created_unix": 0,
            "appliance": {"site_id": "", "hostname": "", "version": ""},
            "vault_storage": "raft", "entries": []
        }))
        .unwrap();
        let opened = Opened {
            manifest,
            parts: vec![
                part("data/stack/tls/ca.pem"),
                part("data/stack/tls/ca.cn"),
                part("data/tls/ca.pem"),
                part("data/tls/ca-key.pem"),
                part("data/inventory/nodes.json"),
            ],
        };
        assert_eq!(unpaired(&opened), vec!["stack/tls".to_string()]);
        let dir = tempfile::tempdir().unwrap();
        let written = crate::restore::files(&opened, dir.path()).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            ["tls/ca.pem", "tls/ca-key.pem", "inventory/nodes.json"],
            "the stack's CA certificate stays the target's"
        );
    }
}
