//! Secrets kindling keeps on the data partition, and the only form in which
//! Vault's init secrets exist there: encrypted to the site's age X25519
//! recipients (`stack.vault.recipients`).
//!
//! Owns `<state>/vault-init.age` (armored age file, downloadable through the
//! status API), the bootstrap's own Vault token (`appliance-token`, policy
//! `kindling-bootstrap`), the accessor of the revoked root token, the
//! enrollment token the PXE service mints grants with (in its drop box
//! `for-pxe/`), the copy of the Consul token `kindlingd api` syncs runtime
//! assignments with (in the API's drop box `for-api/`), the lab-only local
//! unseal file, and small "step started" markers the bootstrap uses to tell its own
//! half-done work from someone else's. Must never write an unseal key or root
//! token in plain text except in the local unseal file, which exists only when
//! the site chose `unseal = "local"` (lab only, warned about loudly).

use crate::files::{self, FileError};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("stack.vault.recipients is empty: Vault's unseal keys and root token can only be stored encrypted to an operator key (age1…)")]
    NoRecipients,
    #[error("stack.vault.recipients[{index}] is not an age X25519 recipient (age1…): {reason}")]
    BadRecipient { index: usize, reason: String },
    #[error("encrypting Vault's init secrets: {0}")]
    Encrypt(String),
    #[error("decrypting {what}: {reason}")]
    Decrypt { what: String, reason: String },
    #[error("the age identity is not an AGE-SECRET-KEY-1… X25519 identity: {0}")]
    BadIdentity(String),
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path} is damaged: {reason}")]
    Damaged { path: PathBuf, reason: String },
}

/// What `vault operator init` returned. Never logged: `Debug` redacts it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitSecrets {
    pub keys_base64: Vec<String>,
    pub root_token: String,
    pub shares: u8,
    pub threshold: u8,
    /// Seconds since the epoch when Vault was initialised.
    pub created_unix: u64,
}

impl std::fmt::Debug for InitSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "InitSecrets {{ {} key shares (threshold {}), root token: <redacted> }}",
            self.keys_base64.len(),
            self.threshold
        )
    }
}

pub fn parse_recipients(list: &[String]) -> Result<Vec<age::x25519::Recipient>, SecretsError> {
    if list.is_empty() {
        return Err(SecretsError::NoRecipients);
    }
    list.iter()
        .enumerate()
        .map(|(index, r)| {
            age::x25519::Recipient::from_str(r.trim()).map_err(|e| SecretsError::BadRecipient {
                index,
                reason: e.to_string(),
            })
        })
        .collect()
}

/// A writer that encrypts everything written to it for `recipients` (any
/// one of them can decrypt) into `out`; `finish()` it to write the last
/// chunk. The one place kindling encrypts to the operators: the init
/// secrets (armored, below) and backups (binary, `kindling-backup`) both
/// come through here, so both are read with the same age identity.
pub fn encrypting_writer<W: Write>(
    recipients: &[age::x25519::Recipient],
    out: W,
) -> Result<age::stream::StreamWriter<W>, SecretsError> {
    let encryptor =
        age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| SecretsError::Encrypt(e.to_string()))?;
    encryptor
        .wrap_output(out)
        .map_err(|e| SecretsError::Encrypt(e.to_string()))
}

/// The operator's `AGE-SECRET-KEY-1…` identity, parsed.
pub fn parse_identity(identity: &str) -> Result<age::x25519::Identity, SecretsError> {
    age::x25519::Identity::from_str(identity.trim())
        .map_err(|e| SecretsError::BadIdentity(e.to_string()))
}

/// Armored age ciphertext of the init secrets, readable by any one recipient.
pub fn encrypt_init(
    secrets: &InitSecrets,
    recipients: &[age::x25519::Recipient],
) -> Result<String, SecretsError> {
    let plain = serde_json::to_vec(secrets).map_err(|e| SecretsError::Encrypt(e.to_string()))?;
    let mut out = Vec::new();
    let armor = age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
        .map_err(|e| SecretsError::Encrypt(e.to_string()))?;
    let mut writer = encrypting_writer(recipients, armor)?;
    writer
        .write_all(&plain)
        .map_err(|e| SecretsError::Encrypt(e.to_string()))?;
    writer
        .finish()
        .and_then(|armor| armor.finish())
        .map_err(|e| SecretsError::Encrypt(e.to_string()))?;
    String::from_utf8(out).map_err(|e| SecretsError::Encrypt(e.to_string()))
}

/// The operator's side: decrypt `vault-init.age` with an `AGE-SECRET-KEY-1…`.
pub fn decrypt_init(armored: &[u8], identity: &str) -> Result<InitSecrets, SecretsError> {
    let identity = parse_identity(identity)?;
    let plain = age::decrypt(&identity, armored).map_err(|e| SecretsError::Decrypt {
        what: "the Vault init secrets".into(),
        reason: e.to_string(),
    })?;
    serde_json::from_slice(&plain).map_err(|e| SecretsError::Decrypt {
        what: "the Vault init secrets".into(),
        reason: format!("not kindling's format: {e}"),
    })
}

/// The secrets and markers under `<data>/stack/`.
#[derive(Debug, Clone)]
pub struct SecretStore {
    dir: PathBuf,
}

impl SecretStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            dir: state_dir.to_path_buf(),
        }
    }

    pub fn init_file(&self) -> PathBuf {
        self.dir.join("vault-init.age")
    }
    /// The lab's local unseal keys (`unseal = "local"`), in plain text.
    pub fn local_unseal_file(&self) -> PathBuf {
        self.dir.join("vault-unseal-local.json")
    }
    fn token_file(&self) -> PathBuf {
        self.dir.join("appliance-token")
    }
    /// Files the bootstrap leaves for `kindlingd api`: a directory of the
    /// API's group (setgid), so what is written here is readable by the
    /// API's account and no other service.
    pub fn for_api_dir(&self) -> PathBuf {
        self.dir.join("for-api")
    }
    /// The same for `kindlingd pxe` (its enrollment credentials).
    pub fn for_pxe_dir(&self) -> PathBuf {
        self.dir.join("for-pxe")
    }
    /// The assignments sync's Consul token (policy `kindling-assignments`:
    /// its KV keys only). Vault keeps the record; this copy lets the sync
    /// run while Vault is sealed (manual unseal after a reboot).
    pub fn consul_assignments_token_file(&self) -> PathBuf {
        self.for_api_dir().join("consul-assignments-token")
    }
    /// The accessor of the root token `sys/init` returned (not a secret:
    /// it can only look the token up or revoke it), so a run that did not
    /// initialise Vault can still check the root token is revoked.
    pub fn root_accessor_file(&self) -> PathBuf {
        self.dir.join("root-token.accessor")
    }
    /// The PXE service's enrollment token (policy `kindling-enroll`: wrapped
    /// secret-ids for node roles and the lookups that check them, nothing
    /// else). The only Vault token the LAN-facing process reads.
    pub fn enroll_token_file(&self) -> PathBuf {
        self.for_pxe_dir().join("enroll-token")
    }
    fn marker(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.started"))
    }

    fn read_opt(path: &Path) -> Result<Option<Vec<u8>>, SecretsError> {
        Ok(files::read_opt(path)?)
    }
    fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SecretsError> {
        Ok(files::write(path, bytes, mode)?)
    }

    /// The armored, encrypted init secrets, if kindling initialised this Vault.
    pub fn read_init(&self) -> Result<Option<Vec<u8>>, SecretsError> {
        Self::read_opt(&self.init_file())
    }
    /// 0644: it is encrypted to the operators, and the API hands it out.
    pub fn write_init(&self, armored: &str) -> Result<(), SecretsError> {
        Self::write(&self.init_file(), armored.as_bytes(), 0o644)
    }

    pub fn read_root_accessor(&self) -> Result<Option<String>, SecretsError> {
        Ok(Self::read_opt(&self.root_accessor_file())?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|a| !a.is_empty()))
    }
    pub fn write_root_accessor(&self, accessor: &str) -> Result<(), SecretsError> {
        Self::write(&self.root_accessor_file(), accessor.as_bytes(), 0o600)
    }

    /// Lab only (`unseal = "local"`): the threshold of key shares, in plain
    /// text, mode 0600. The caller warns loudly whenever this is used.
    pub fn write_local_unseal(&self, keys: &[String]) -> Result<(), SecretsError> {
        let body = serde_json::json!({
            "warning": "LAB ONLY: Vault unseal key shares in plain text (site chose unseal = \"local\")",
            "keys_base64": keys,
        });
        Self::write(
            &self.local_unseal_file(),
            body.to_string().as_bytes(),
            0o600,
        )
    }
    pub fn read_local_unseal(&self) -> Result<Option<Vec<String>>, SecretsError> {
        let path = self.local_unseal_file();
        let Some(bytes) = Self::read_opt(&path)? else {
            return Ok(None);
        };
        let v: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| SecretsError::Damaged {
                path: path.clone(),
                reason: e.to_string(),
            })?;
        let keys = v
            .get("keys_base64")
            .and_then(|k| k.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .ok_or_else(|| SecretsError::Damaged {
                path,
                reason: "no keys_base64 list".into(),
            })?;
        Ok(Some(keys))
    }
    pub fn has_local_unseal(&self) -> bool {
        self.local_unseal_file().exists()
    }

    /// kindling's own Vault token (policy `kindling-appliance`, not root).
    pub fn read_appliance_token(&self) -> Result<Option<String>, SecretsError> {
        Ok(Self::read_opt(&self.token_file())?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string()))
    }
    pub fn write_appliance_token(&self, token: &str) -> Result<(), SecretsError> {
        Self::write(&self.token_file(), token.as_bytes(), 0o600)
    }

    pub fn read_enroll_token(&self) -> Result<Option<String>, SecretsError> {
        Ok(Self::read_opt(&self.enroll_token_file())?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|t| !t.is_empty()))
    }
    pub fn write_enroll_token(&self, token: &str) -> Result<(), SecretsError> {
        Self::write(&self.enroll_token_file(), token.as_bytes(), 0o640)
    }

    pub fn read_consul_assignments_token(&self) -> Result<Option<String>, SecretsError> {
        Ok(Self::read_opt(&self.consul_assignments_token_file())?
            .map(|b| String::from_utf8_lossy(&b).trim().to_string())
            .filter(|t| !t.is_empty()))
    }
    /// 0640 in the API's drop box: readable by the API's group only.
    pub fn write_consul_assignments_token(&self, token: &str) -> Result<(), SecretsError> {
        Self::write(
            &self.consul_assignments_token_file(),
            token.as_bytes(),
            0o640,
        )
    }

    /// Records that a non-repeatable step is about to run (e.g. Consul's ACL
    /// bootstrap), so a later "already done" answer can be told apart from
    /// someone else's bootstrap.
    pub fn mark_started(&self, name: &str) -> Result<(), SecretsError> {
        Self::write(&self.marker(name), b"", 0o600)
    }
    pub fn was_started(&self, name: &str) -> bool {
        self.marker(name).exists()
    }
    pub fn clear_started(&self, name: &str) -> Result<(), SecretsError> {
        match std::fs::remove_file(self.marker(name)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(FileError::Write {
                path: self.marker(name),
                source,
            }
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use age::secrecy::ExposeSecret;

    fn sample() -> InitSecrets {
        InitSecrets {
            keys_base64: vec!["a2V5MQ==".into(), "a2V5Mg==".into()],
            root_token: "s.rootrootroot".into(),
            shares: 2,
            threshold: 2,
            created_unix: 1,
        }
    }

    #[test]
    fn init_secrets_round_trip_for_every_recipient_and_not_for_others() {
        let a = age::x25519::Identity::generate();
        let b = age::x25519::Identity::generate();
        let stranger = age::x25519::Identity::generate();
        let recipients =
            parse_recipients(&[a.to_public().to_string(), b.to_public().to_string()]).unwrap();
        let armored = encrypt_init(&sample(), &recipients).unwrap();
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!armored.contains("s.rootrootroot"));
        for id in [&a, &b] {
            assert_eq!(
                decrypt_init(armored.as_bytes(), id.to_string().expose_secret()).unwrap(),
                sample()
            );
        }
        let err =
            decrypt_init(armored.as_bytes(), stranger.to_string().expose_secret()).unwrap_err();
        assert!(
            err.to_string()
                .contains("decrypting the Vault init secrets"),
            "{err}"
        );
    }

    #[test]
    fn bad_recipients_are_named() {
        assert!(matches!(
            parse_recipients(&[]),
            Err(SecretsError::NoRecipients)
        ));
        let good = age::x25519::Identity::generate().to_public().to_string();
        let err = parse_recipients(&[good, "ssh-ed25519 AAAA".into()]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("stack.vault.recipients[1] is not an age X25519 recipient"),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_secrets() {
        let shown = format!("{:?}", sample());
        assert!(
            !shown.contains("rootroot") && !shown.contains("a2V5"),
            "{shown}"
        );
    }
}
