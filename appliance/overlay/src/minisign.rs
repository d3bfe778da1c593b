//! minisign's key and signature files, so that Debian's `minisign` and
//! kindling read each other's keys and signatures.
//!
//! - public key: `untrusted comment: minisign public key <id>` + base64(`Ed` ‖
//!   key id ‖ Ed25519 public key)
//! - secret key: base64(`Ed` ‖ kdf alg ‖ `B2` ‖ salt ‖ opslimit ‖ memlimit ‖
//!   key id ‖ seed+public key ‖ BLAKE2b-256 checksum), the last three XORed
//!   with an scrypt keystream when the key is encrypted
//! - signature: prehashed (`ED`): Ed25519 over BLAKE2b-512 of the file, plus a
//!   global signature over signature ‖ trusted comment.
//!
//! Key generation, secret-key encryption and decryption, and signing are the
//! `minisign` crate's; verification is `minisign-verify`'s. This module adds
//! kindling's types (key id, trusted key list), the comment lines the
//! `minisign` tool writes, and reading minisign 0.11's unencrypted keys. It
//! never touches overlays.
//!
//! New encrypted keys use the `minisign` crate's scrypt parameters (opslimit
//! 2^20, memlimit 32 MiB); keys the `minisign` tool wrote (1 GiB) are read as
//! they are, since every key file carries its own parameters.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fmt;

const SIG_ALG: &[u8; 2] = b"Ed";
const SIG_ALG_HASHED: &[u8; 2] = b"ED";
const KDF_SCRYPT: &[u8; 2] = b"Sc";
const KDF_NONE: &[u8; 2] = b"\0\0";
const CHK_ALG: &[u8; 2] = b"B2";

/// `Ed` ‖ kdf ‖ `B2` ‖ salt(32) ‖ opslimit(8) ‖ memlimit(8) ‖ id(8) ‖ key(64) ‖ checksum(32).
const SECRET_KEY_LEN: usize = 2 + 2 + 2 + 32 + 8 + 8 + 104;
const CHECKSUM: std::ops::Range<usize> = SECRET_KEY_LEN - 32..SECRET_KEY_LEN;

/// The untrusted comments the `minisign` tool writes.
const ENCRYPTED_KEY_COMMENT: &str = "minisign encrypted secret key";
const PLAIN_KEY_COMMENT: &str = "minisign secret key (unencrypted)";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a minisign public key: {0}")]
    PublicKeyFormat(String),
    #[error("not a minisign secret key: {0}")]
    SecretKeyFormat(String),
    #[error("wrong password for the secret key (checksum mismatch)")]
    WrongPassword,
    #[error("the secret key is encrypted: a password is needed")]
    PasswordNeeded,
    #[error("generating a key pair failed: {0}")]
    Generate(String),
    #[error("signing with key {id} failed: {reason}")]
    Sign { id: KeyId, reason: String },
}

/// 8-byte key id, shown like minisign does (upper-case hex of the little-endian u64).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(KeyId)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", u64::from_le_bytes(self.0))
    }
}
impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A minisign public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub id: KeyId,
    pub key: [u8; 32],
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

impl PublicKey {
    /// From the base64 line (`RWQ…`).
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        let bytes = B64
            .decode(text.trim())
            .map_err(|e| KeyError::PublicKeyFormat(format!("base64: {e}")))?;
        Self::from_bytes(&bytes)
    }

    /// From `Ed` ‖ key id ‖ key.
    fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() != 42 || &bytes[..2] != SIG_ALG {
            return Err(KeyError::PublicKeyFormat(format!(
                "expected 42 bytes starting with 'Ed', got {}",
                bytes.len()
            )));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[2..10]);
        let mut key = [0u8; 32];
        key.copy_from_slice(&bytes[10..42]);
        Ok(Self { id: KeyId(id), key })
    }

    /// From a `.pub` file's text (comment line optional).
    pub fn from_file_text(text: &str) -> Result<Self, KeyError> {
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
            .ok_or_else(|| KeyError::PublicKeyFormat("no key line".into()))?;
        Self::from_base64(line)
    }

    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::with_capacity(42);
        bytes.extend_from_slice(SIG_ALG);
        bytes.extend_from_slice(&self.id.0);
        bytes.extend_from_slice(&self.key);
        B64.encode(bytes)
    }

    /// The `.pub` file, with the comment line `minisign -G` writes.
    pub fn to_file_text(&self) -> String {
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            self.id,
            self.to_base64()
        )
    }

    fn verifier(&self) -> Result<minisign_verify::PublicKey, KeyError> {
        minisign_verify::PublicKey::from_base64(&self.to_base64())
            .map_err(|e| KeyError::PublicKeyFormat(e.to_string()))
    }
}

/// A decrypted minisign secret key, ready to sign.
pub struct SecretKey {
    pub id: KeyId,
    key: minisign::SecretKey,
    public: minisign::PublicKey,
}

/// A new key pair: the decrypted key, and its secret key file (encrypted when
/// it was generated with a password).
pub struct GeneratedKey {
    pub key: SecretKey,
    pub file_text: String,
}

impl SecretKey {
    /// A fresh random key pair, unencrypted (tests, `minisign -G -W`).
    pub fn generate() -> Result<Self, KeyError> {
        let pair = minisign::KeyPair::generate_unencrypted_keypair()
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        Self::checked(pair.sk)
    }

    /// A fresh key pair and its key file: scrypt-encrypted with `password`
    /// (the `minisign` crate's parameters), or unencrypted with `None`.
    pub fn generate_file(password: Option<&str>) -> Result<GeneratedKey, KeyError> {
        let Some(password) = password else {
            let key = Self::generate()?;
            let file_text = key.to_unencrypted_file_text()?;
            return Ok(GeneratedKey { key, file_text });
        };
        let pair = minisign::KeyPair::generate_encrypted_keypair(Some(password.to_string()))
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let file_text = pair
            .sk
            .to_box(Some(ENCRYPTED_KEY_COMMENT))
            .map_err(|e| KeyError::Generate(e.to_string()))?
            .into_string();
        let key = Self::from_file_text(&file_text, Some(password))?;
        Ok(GeneratedKey { key, file_text })
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.public_bytes(),
        }
    }

    fn public_bytes(&self) -> [u8; 32] {
        let mut key = [0u8; 32];
        // `Ed` ‖ key id ‖ key: always 42 bytes.
        if let Some(bytes) = self.public.to_bytes().get(10..42) {
            key.copy_from_slice(bytes);
        }
        key
    }

    /// The unencrypted key file (as `minisign -G -W` writes it).
    pub fn to_unencrypted_file_text(&self) -> Result<String, KeyError> {
        Ok(self
            .key
            .to_box(Some(PLAIN_KEY_COMMENT))
            .map_err(|e| KeyError::SecretKeyFormat(e.to_string()))?
            .into_string())
    }

    /// Whether the key file needs a password.
    pub fn file_is_encrypted(text: &str) -> Result<bool, KeyError> {
        let (_, bytes) = decode_secret(text)?;
        Ok(&bytes[2..4] == KDF_SCRYPT)
    }

    /// Reads a key file; `password` is needed when it is encrypted.
    pub fn from_file_text(text: &str, password: Option<&str>) -> Result<Self, KeyError> {
        let (line, bytes) = decode_secret(text)?;
        // The crate reads a box as: comment line, key line.
        let key_box = minisign::SecretKeyBox::from_string(&format!("untrusted comment:\n{line}\n"))
            .map_err(|e| KeyError::SecretKeyFormat(e.to_string()))?;
        let key = match &bytes[2..4] {
            kdf if kdf == KDF_SCRYPT => {
                // Never `None`: the crate would prompt on the terminal itself.
                let password = password.ok_or(KeyError::PasswordNeeded)?;
                key_box
                    .into_secret_key(Some(password.to_string()))
                    .map_err(|e| match e.kind() {
                        minisign::ErrorKind::Verify => KeyError::WrongPassword,
                        _ => KeyError::SecretKeyFormat(e.to_string()),
                    })?
            }
            kdf if kdf == KDF_NONE => {
                // minisign 0.11 writes an all-zero checksum for unencrypted
                // (-W) keys, which the crate's box reader refuses.
                if bytes[CHECKSUM].iter().all(|b| *b == 0) {
                    minisign::SecretKey::from_bytes(&bytes)
                } else {
                    key_box.into_unencrypted_secret_key()
                }
                .map_err(|e| KeyError::SecretKeyFormat(e.to_string()))?
            }
            _ => {
                return Err(KeyError::SecretKeyFormat(
                    "unknown key derivation algorithm".into(),
                ))
            }
        };
        Self::checked(key)
    }

    /// Wraps a decrypted key after checking that its public half belongs to
    /// its seed (a signature made with one verifies with the other).
    fn checked(key: minisign::SecretKey) -> Result<Self, KeyError> {
        let id = KeyId::from_slice(key.keynum())
            .ok_or_else(|| KeyError::SecretKeyFormat("key id is not 8 bytes".into()))?;
        let public = minisign::PublicKey::from_secret_key(&key)
            .map_err(|e| KeyError::SecretKeyFormat(e.to_string()))?;
        minisign::sign(Some(&public), &key, &b""[..], Some(""), None).map_err(|e| {
            match e.kind() {
                minisign::ErrorKind::Verify => {
                    KeyError::SecretKeyFormat("public half does not match the seed".into())
                }
                _ => KeyError::Sign {
                    id,
                    reason: e.to_string(),
                },
            }
        })?;
        Ok(Self { id, key, public })
    }

    /// A prehashed minisign signature file over `data` with `trusted_comment`.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> Result<String, KeyError> {
        let untrusted = format!("signature from kindling secret key {}", self.id);
        minisign::sign(
            Some(&self.public),
            &self.key,
            data,
            Some(trusted_comment),
            Some(&untrusted),
        )
        .map(|sig| sig.into_string())
        .map_err(|e| KeyError::Sign {
            id: self.id,
            reason: e.to_string(),
        })
    }
}

/// The key line of a secret key file and its bytes, checked for length and
/// the `Ed`/`B2` markers.
fn decode_secret(text: &str) -> Result<(&str, Vec<u8>), KeyError> {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .ok_or_else(|| KeyError::SecretKeyFormat("no key line".into()))?;
    let bytes = B64
        .decode(line)
        .map_err(|e| KeyError::SecretKeyFormat(format!("base64: {e}")))?;
    if bytes.len() != SECRET_KEY_LEN || &bytes[..2] != SIG_ALG || &bytes[4..6] != CHK_ALG {
        return Err(KeyError::SecretKeyFormat(format!(
            "expected {SECRET_KEY_LEN} bytes 'Ed…B2…', got {}",
            bytes.len()
        )));
    }
    Ok((line, bytes))
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature file is malformed: {0}")]
    Malformed(String),
    #[error("signed by key {0}, which is not trusted")]
    UntrustedKey(KeyId),
    #[error("signature does not match the file (modified, truncated or corrupted)")]
    Mismatch,
    #[error("legacy (non-prehashed) minisign signatures are not accepted")]
    Legacy,
}

/// A signature that verified: who signed and the trusted comment.
#[derive(Debug, Clone)]
pub struct VerifiedSignature {
    pub key_id: KeyId,
    pub trusted_comment: String,
}

/// The key id a signature file names, without verifying anything.
pub fn signature_key_id(sig_text: &str) -> Result<KeyId, SignatureError> {
    let line = sig_text
        .lines()
        .nth(1)
        .ok_or_else(|| SignatureError::Malformed("missing signature line".into()))?;
    let bytes = B64
        .decode(line.trim())
        .map_err(|e| SignatureError::Malformed(format!("base64: {e}")))?;
    if bytes.len() != 74 {
        return Err(SignatureError::Malformed(format!(
            "signature is {} bytes, expected 74",
            bytes.len()
        )));
    }
    if &bytes[..2] == SIG_ALG {
        return Err(SignatureError::Legacy);
    }
    if &bytes[..2] != SIG_ALG_HASHED {
        return Err(SignatureError::Malformed(
            "unknown signature algorithm".into(),
        ));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&bytes[2..10]);
    Ok(KeyId(id))
}

/// Verifies a prehashed minisign signature over `data` with whichever of
/// `trusted` keys it names.
pub fn verify(
    data: &[u8],
    sig_text: &str,
    trusted: &[PublicKey],
) -> Result<VerifiedSignature, SignatureError> {
    let key_id = signature_key_id(sig_text)?;
    let key = trusted
        .iter()
        .find(|k| k.id == key_id)
        .ok_or(SignatureError::UntrustedKey(key_id))?;
    let sig = minisign_verify::Signature::decode(sig_text)
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    let pk = key
        .verifier()
        .map_err(|e| SignatureError::Malformed(e.to_string()))?;
    pk.verify(data, &sig, false)
        .map_err(|_| SignatureError::Mismatch)?;
    Ok(VerifiedSignature {
        key_id,
        trusted_comment: sig.trusted_comment().to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn sign_verify_round_trip_and_tamper() {
        let sk = SecretKey::generate().unwrap();
        let pk = sk.public_key();
        let sig = sk.sign(b"hello", "name=x version=1").unwrap();
        let ok = verify(b"hello", &sig, std::slice::from_ref(&pk)).unwrap();
        assert_eq!(ok.trusted_comment, "name=x version=1");
        assert_eq!(
            verify(b"hellp", &sig, std::slice::from_ref(&pk)).unwrap_err(),
            SignatureError::Mismatch
        );
        let other = SecretKey::generate().unwrap().public_key();
        assert!(matches!(
            verify(b"hello", &sig, &[other]),
            Err(SignatureError::UntrustedKey(_))
        ));
        let forged = sig.replace("version=1", "version=9");
        assert_eq!(
            verify(b"hello", &forged, &[pk]).unwrap_err(),
            SignatureError::Mismatch
        );
    }

    #[test]
    fn key_files_round_trip() {
        let sk = SecretKey::generate().unwrap();
        let pk = sk.public_key();
        assert_eq!(PublicKey::from_file_text(&pk.to_file_text()).unwrap(), pk);
        let plain = sk.to_unencrypted_file_text().unwrap();
        assert!(!SecretKey::file_is_encrypted(&plain).unwrap());
        assert_eq!(
            SecretKey::from_file_text(&plain, None)
                .unwrap()
                .public_key(),
            pk
        );
        let generated = SecretKey::generate_file(Some("pw")).unwrap();
        let (pk, enc) = (generated.key.public_key(), generated.file_text);
        assert!(SecretKey::file_is_encrypted(&enc).unwrap());
        assert_eq!(
            SecretKey::from_file_text(&enc, Some("pw"))
                .unwrap()
                .public_key(),
            pk
        );
        assert!(matches!(
            SecretKey::from_file_text(&enc, Some("nope")),
            Err(KeyError::WrongPassword)
        ));
        assert!(matches!(
            SecretKey::from_file_text(&enc, None),
            Err(KeyError::PasswordNeeded)
        ));
    }

    #[test]
    fn key_files_carry_the_comment_lines_minisign_writes() {
        let plain = SecretKey::generate_file(None).unwrap();
        assert!(plain
            .file_text
            .starts_with("untrusted comment: minisign secret key (unencrypted)\n"));
        let enc = SecretKey::generate_file(Some("pw")).unwrap();
        assert!(enc
            .file_text
            .starts_with("untrusted comment: minisign encrypted secret key\n"));
        let pk = enc.key.public_key();
        assert_eq!(
            pk.to_file_text(),
            format!(
                "untrusted comment: minisign public key {}\n{}\n",
                pk.id,
                pk.to_base64()
            )
        );
        let sig = enc.key.sign(b"x", "t").unwrap();
        let lines: Vec<&str> = sig.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "untrusted comment: signature from kindling secret key {}",
                pk.id
            )
        );
        assert_eq!(lines[2], "trusted comment: t");
        assert_eq!(signature_key_id(&sig).unwrap(), pk.id);
    }

    #[test]
    fn a_key_whose_public_half_is_not_its_seeds_is_refused() {
        let text = SecretKey::generate()
            .unwrap()
            .to_unencrypted_file_text()
            .unwrap();
        let (_, mut bytes) = decode_secret(&text).unwrap();
        // The public half of the 64-byte key (after the 8-byte id and 32-byte
        // seed), with the checksum zeroed as minisign 0.11 writes it.
        bytes[54 + 8 + 32] ^= 1;
        bytes[CHECKSUM].fill(0);
        let forged = format!("untrusted comment: x\n{}\n", B64.encode(&bytes));
        assert!(matches!(
            SecretKey::from_file_text(&forged, None),
            Err(KeyError::SecretKeyFormat(_))
        ));
    }
}
