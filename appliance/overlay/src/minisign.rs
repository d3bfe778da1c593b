//! minisign's key and signature formats, so that Debian's `minisign` and
//! kindling read each other's keys and signatures.
//!
//! - public key: `untrusted comment: …` + base64(`Ed` ‖ key id ‖ Ed25519 public key)
//! - secret key: base64(`Ed` ‖ kdf alg ‖ `B2` ‖ salt ‖ opslimit ‖ memlimit ‖
//!   (key id ‖ seed+public key ‖ BLAKE2b-256 checksum) XOR scrypt keystream)
//! - signature: prehashed (`ED`): Ed25519 over BLAKE2b-512 of the file, plus a
//!   global signature over signature ‖ trusted comment.
//!
//! Verification uses the `minisign-verify` crate; this module adds what it
//! lacks (key files, signing, reading the key id). It never touches overlays.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use blake2::digest::consts::U32;
use blake2::{Blake2b, Blake2b512, Digest};
use ed25519_dalek::{Signer, SigningKey};
use std::fmt;

const SIG_ALG: &[u8; 2] = b"Ed";
const SIG_ALG_HASHED: &[u8; 2] = b"ED";
const KDF_SCRYPT: &[u8; 2] = b"Sc";
const KDF_NONE: &[u8; 2] = b"\0\0";
const CHK_ALG: &[u8; 2] = b"B2";
/// libsodium's `crypto_pwhash_scryptsalsa208sha256_*_SENSITIVE`, minisign's defaults.
pub const DEFAULT_OPSLIMIT: u64 = 33_554_432;
pub const DEFAULT_MEMLIMIT: u64 = 1_073_741_824;

const SECRET_KEY_LEN: usize = 2 + 2 + 2 + 32 + 8 + 8 + 104;

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
    #[error("key derivation (scrypt) failed: {0}")]
    Kdf(String),
}

/// 8-byte key id, shown like minisign does (upper-case hex of the little-endian u64).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 8]);

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

/// A decrypted minisign secret key.
pub struct SecretKey {
    pub id: KeyId,
    signing: SigningKey,
}

impl SecretKey {
    /// A fresh random key pair.
    pub fn generate() -> Self {
        use rand::RngCore;
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let mut id = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut id);
        Self {
            id: KeyId(id),
            signing: SigningKey::from_bytes(&seed),
        }
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            id: self.id,
            key: self.signing.verifying_key().to_bytes(),
        }
    }

    /// minisign's 64-byte secret key: seed ‖ public key.
    fn sk64(&self) -> [u8; 64] {
        let mut sk = [0u8; 64];
        sk[..32].copy_from_slice(&self.signing.to_bytes());
        sk[32..].copy_from_slice(&self.signing.verifying_key().to_bytes());
        sk
    }

    fn checksum(&self) -> [u8; 32] {
        let mut h = Blake2b::<U32>::new();
        h.update(SIG_ALG);
        h.update(self.id.0);
        h.update(self.sk64());
        h.finalize().into()
    }

    /// The key file's text. `password: None` writes an unencrypted key (as
    /// `minisign -G -W` does); otherwise scrypt with the given limits.
    pub fn to_file_text(
        &self,
        password: Option<&str>,
        opslimit: u64,
        memlimit: u64,
    ) -> Result<String, KeyError> {
        let mut keynum = Vec::with_capacity(104);
        keynum.extend_from_slice(&self.id.0);
        keynum.extend_from_slice(&self.sk64());
        keynum.extend_from_slice(&self.checksum());
        let mut out = Vec::with_capacity(SECRET_KEY_LEN);
        out.extend_from_slice(SIG_ALG);
        let mut salt = [0u8; 32];
        match password {
            Some(pw) => {
                use rand::RngCore;
                rand::rngs::OsRng.fill_bytes(&mut salt);
                out.extend_from_slice(KDF_SCRYPT);
                let stream = kdf_stream(pw, &salt, opslimit, memlimit)?;
                keynum
                    .iter_mut()
                    .zip(stream.iter())
                    .for_each(|(b, k)| *b ^= k);
                out.extend_from_slice(CHK_ALG);
                out.extend_from_slice(&salt);
                out.extend_from_slice(&opslimit.to_le_bytes());
                out.extend_from_slice(&memlimit.to_le_bytes());
            }
            None => {
                out.extend_from_slice(KDF_NONE);
                out.extend_from_slice(CHK_ALG);
                out.extend_from_slice(&salt);
                out.extend_from_slice(&0u64.to_le_bytes());
                out.extend_from_slice(&0u64.to_le_bytes());
            }
        }
        out.extend_from_slice(&keynum);
        let comment = if password.is_some() {
            "minisign encrypted secret key"
        } else {
            "minisign secret key (unencrypted)"
        };
        Ok(format!(
            "untrusted comment: {comment}\n{}\n",
            B64.encode(out)
        ))
    }

    /// Whether the key file needs a password.
    pub fn file_is_encrypted(text: &str) -> Result<bool, KeyError> {
        let bytes = decode_secret(text)?;
        Ok(&bytes[2..4] == KDF_SCRYPT)
    }

    /// Reads a key file; `password` is needed when it is encrypted.
    pub fn from_file_text(text: &str, password: Option<&str>) -> Result<Self, KeyError> {
        let bytes = decode_secret(text)?;
        let kdf = &bytes[2..4];
        let mut keynum = bytes[54..].to_vec();
        if kdf == KDF_SCRYPT {
            let pw = password.ok_or(KeyError::PasswordNeeded)?;
            let mut salt = [0u8; 32];
            salt.copy_from_slice(&bytes[6..38]);
            let ops = u64::from_le_bytes(
                bytes[38..46]
                    .try_into()
                    .map_err(|_| KeyError::SecretKeyFormat("opslimit".into()))?,
            );
            let mem = u64::from_le_bytes(
                bytes[46..54]
                    .try_into()
                    .map_err(|_| KeyError::SecretKeyFormat("memlimit".into()))?,
            );
            let stream = kdf_stream(pw, &salt, ops, mem)?;
            keynum
                .iter_mut()
                .zip(stream.iter())
                .for_each(|(b, k)| *b ^= k);
        } else if kdf != KDF_NONE {
            return Err(KeyError::SecretKeyFormat(
                "unknown key derivation algorithm".into(),
            ));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&keynum[..8]);
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&keynum[8..40]);
        let key = Self {
            id: KeyId(id),
            signing: SigningKey::from_bytes(&seed),
        };
        let stored_chk = &keynum[72..104];
        // minisign 0.11 writes an all-zero checksum for unencrypted (-W) keys.
        let zero_ok = kdf == KDF_NONE && stored_chk.iter().all(|b| *b == 0);
        if !zero_ok && stored_chk != key.checksum() {
            return Err(if kdf == KDF_SCRYPT {
                KeyError::WrongPassword
            } else {
                KeyError::SecretKeyFormat("checksum mismatch".into())
            });
        }
        if keynum[40..72] != key.signing.verifying_key().to_bytes() {
            return Err(KeyError::SecretKeyFormat(
                "public half does not match the seed".into(),
            ));
        }
        Ok(key)
    }

    /// A prehashed minisign signature file over `data` with `trusted_comment`.
    pub fn sign(&self, data: &[u8], trusted_comment: &str) -> String {
        let digest = Blake2b512::digest(data);
        let sig = self.signing.sign(&digest).to_bytes();
        let mut sig_line = Vec::with_capacity(74);
        sig_line.extend_from_slice(SIG_ALG_HASHED);
        sig_line.extend_from_slice(&self.id.0);
        sig_line.extend_from_slice(&sig);
        let mut global = Vec::with_capacity(64 + trusted_comment.len());
        global.extend_from_slice(&sig);
        global.extend_from_slice(trusted_comment.as_bytes());
        let global_sig = self.signing.sign(&global).to_bytes();
        format!(
            "untrusted comment: signature from kindling secret key {}\n{}\ntrusted comment: {}\n{}\n",
            self.id,
            B64.encode(sig_line),
            trusted_comment,
            B64.encode(global_sig)
        )
    }
}

fn decode_secret(text: &str) -> Result<Vec<u8>, KeyError> {
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
    Ok(bytes)
}

/// libsodium's `pickparams` for scrypt: minisign stores opslimit/memlimit, not N/r/p.
fn scrypt_params(opslimit: u64, memlimit: u64) -> (u8, u32, u32) {
    let ops = opslimit.max(32_768);
    let r: u64 = 8;
    let pick_log_n = |max_n: u64| -> u8 {
        let mut n_log2 = 1u8;
        while n_log2 < 63 && (1u64 << n_log2) <= max_n / 2 {
            n_log2 += 1;
        }
        n_log2
    };
    if ops < memlimit / 32 {
        let log_n = pick_log_n(ops / (r * 4));
        (log_n, 8, 1)
    } else {
        let log_n = pick_log_n(memlimit / (r * 128));
        let maxrp = ((ops / 4) / (1u64 << log_n)).min(0x3fff_ffff);
        let p = u32::try_from(maxrp / r).unwrap_or(1).max(1);
        (log_n, 8, p)
    }
}

fn kdf_stream(
    password: &str,
    salt: &[u8; 32],
    opslimit: u64,
    memlimit: u64,
) -> Result<[u8; 104], KeyError> {
    let (log_n, r, p) = scrypt_params(opslimit, memlimit);
    let params = scrypt::Params::new(log_n, r, p, scrypt::Params::RECOMMENDED_LEN)
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    let mut out = [0u8; 104];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut out)
        .map_err(|e| KeyError::Kdf(e.to_string()))?;
    Ok(out)
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
        let sk = SecretKey::generate();
        let pk = sk.public_key();
        let sig = sk.sign(b"hello", "name=x version=1");
        let ok = verify(b"hello", &sig, std::slice::from_ref(&pk)).unwrap();
        assert_eq!(ok.trusted_comment, "name=x version=1");
        assert_eq!(
            verify(b"hellp", &sig, std::slice::from_ref(&pk)).unwrap_err(),
            SignatureError::Mismatch
        );
        let other = SecretKey::generate().public_key();
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
        let sk = SecretKey::generate();
        let pk = sk.public_key();
        assert_eq!(PublicKey::from_file_text(&pk.to_file_text()).unwrap(), pk);
        let plain = sk.to_file_text(None, 0, 0).unwrap();
        assert!(!SecretKey::file_is_encrypted(&plain).unwrap());
        assert_eq!(
            SecretKey::from_file_text(&plain, None)
                .unwrap()
                .public_key(),
            pk
        );
        // Cheap scrypt limits keep the test fast; the format is the same.
        let enc = sk.to_file_text(Some("pw"), 1 << 16, 1 << 24).unwrap();
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
    fn scrypt_params_match_libsodium_for_minisign_defaults() {
        assert_eq!(
            scrypt_params(DEFAULT_OPSLIMIT, DEFAULT_MEMLIMIT),
            (20, 8, 1)
        );
    }
}
