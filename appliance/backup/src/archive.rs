//! The backup file: a tar archive (manifest first, then every part),
//! compressed with zstd, encrypted with age to the site's recipients.
//! [`pack`] streams it into any writer; [`open`] decrypts, unpacks and
//! checks every part against the manifest, in memory.
//!
//! Owns the byte format. Must never hand out a part that did not match its
//! manifest entry, and never write plain bytes anywhere but memory.

use crate::manifest::{self, Entry, EntryKind, Manifest, FORMAT, MANIFEST_NAME};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// One part of a backup, held in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub kind: EntryKind,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Part {
    // A snapshot holds ACL tokens: never print its bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Part {{ {} ({} bytes) }}", self.name, self.bytes.len())
    }
}

/// The largest part [`open`] reads into memory (a runaway or hostile file
/// must not exhaust it).
pub const MAX_PART: u64 = 4 << 30;

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("encrypting the backup: {0}")]
    Encrypt(#[from] kindling_stack::secrets::SecretsError),
    #[error("writing the backup: {0}")]
    Write(#[from] std::io::Error),
    #[error(transparent)]
    BadName(#[from] manifest::BadName),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("not an age-encrypted file (a kindling backup starts with the age header): {0}")]
    NotAge(String),
    #[error("cannot decrypt the backup with this identity (it was encrypted to other recipients, or the header is damaged): {0}")]
    Decrypt(String),
    #[error(
        "the backup is damaged or was changed after it was written ({0}); nothing was restored"
    )]
    Damaged(String),
    #[error("not a kindling backup: the first member is {0:?}, not manifest.json")]
    NoManifest(String),
    #[error("manifest.json is not valid: {0}")]
    BadManifest(String),
    #[error(
        "the backup's format is {found}; this kindling reads formats 1 to {FORMAT}: use a newer kindling"
    )]
    NewerFormat { found: u32 },
    #[error("entry {name}: {reason}")]
    Entry { name: String, reason: String },
    #[error("entry {name} is listed in the manifest but not in the archive")]
    Missing { name: String },
    #[error(transparent)]
    BadName(#[from] manifest::BadName),
}

/// Writes `manifest` (its `entries` filled in from `parts`) and `parts`,
/// compressed and encrypted to `recipients`, into `out`; returns `out` and
/// the manifest as written.
pub fn pack<W: Write>(
    out: W,
    recipients: &[age::x25519::Recipient],
    mut manifest: Manifest,
    parts: &[Part],
) -> Result<(W, Manifest), PackError> {
    for p in parts {
        manifest::data_path(&p.name)?;
    }
    manifest.format = FORMAT;
    manifest.entries = entries(parts);
    let encrypted = kindling_stack::secrets::encrypting_writer(recipients, out)?;
    let out = write_archive(encrypted, &manifest, parts)?.finish()?;
    Ok((out, manifest))
}

/// The archive of an opened backup, not encrypted (zstd of tar, as inside
/// the age file): what `kindling backup restore` hands the appliance over
/// TLS. The manifest's entries are made again from `parts`.
pub fn pack_plain(opened: &Opened) -> Result<Vec<u8>, PackError> {
    let mut manifest = opened.manifest.clone();
    manifest.entries = entries(&opened.parts);
    Ok(write_archive(Vec::new(), &manifest, &opened.parts)?)
}

fn entries(parts: &[Part]) -> Vec<Entry> {
    parts
        .iter()
        .map(|p| Entry {
            name: p.name.clone(),
            kind: p.kind,
            bytes: p.bytes.len() as u64,
            sha256: crate::sha256_hex(&p.bytes),
        })
        .collect()
}

/// The manifest, then every part, into tar and zstd on `out`.
fn write_archive<W: Write>(out: W, manifest: &Manifest, parts: &[Part]) -> std::io::Result<W> {
    let compressed = zstd::Encoder::new(out, 3)?;
    let mut tar = tar::Builder::new(compressed);
    let head = serde_json::to_vec_pretty(manifest)
        .map_err(|e| std::io::Error::other(format!("encoding the manifest: {e}")))?;
    append(&mut tar, MANIFEST_NAME, &head, manifest.created_unix)?;
    for p in parts {
        append(&mut tar, &p.name, &p.bytes, manifest.created_unix)?;
    }
    tar.into_inner()?.finish()
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    bytes: &[u8],
    mtime: u64,
) -> std::io::Result<()> {
    let mut header = tar::Header::new_gnu();
    header.set_size(bytes.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(mtime);
    header.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut header, name, bytes)
}

/// A backup decrypted and checked: every part matched its manifest entry.
#[derive(Debug)]
pub struct Opened {
    pub manifest: Manifest,
    pub parts: Vec<Part>,
}

impl Opened {
    pub fn part(&self, name: &str) -> Option<&Part> {
        self.parts.iter().find(|p| p.name == name)
    }
}

/// Decrypts `input` with `identity`, unpacks it and checks the manifest
/// (format, every entry present once, sizes, sha256) before returning
/// anything. Every failure names what failed.
pub fn open<R: Read>(input: R, identity: &age::x25519::Identity) -> Result<Opened, OpenError> {
    open_plain(decrypting_reader(input, identity)?)
}

/// The archive inside `input` (zstd of tar), decrypted as it is read: a
/// damaged chunk fails the read that reaches it.
pub fn decrypting_reader<R: Read>(
    input: R,
    identity: &age::x25519::Identity,
) -> Result<impl Read, OpenError> {
    let decryptor = age::Decryptor::new(input).map_err(|e| OpenError::NotAge(e.to_string()))?;
    decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| OpenError::Decrypt(e.to_string()))
}

/// Unpacks an archive already decrypted (what a restore hands the
/// appliance over TLS) and checks it exactly as [`open`] does.
pub fn open_plain<R: Read>(plain: R) -> Result<Opened, OpenError> {
    let damaged = |what: &str, e: std::io::Error| OpenError::Damaged(format!("{what}: {e}"));
    let decompressed = zstd::Decoder::new(plain).map_err(|e| damaged("starting zstd", e))?;
    let mut archive = tar::Archive::new(decompressed);
    let mut members = archive
        .entries()
        .map_err(|e| damaged("reading the archive", e))?;
    let mut read_member = |what: &str| -> Result<Option<(String, Vec<u8>)>, OpenError> {
        let Some(member) = members.next() else {
            return Ok(None);
        };
        let mut member = member.map_err(|e| damaged(what, e))?;
        let name = member
            .path()
            .map_err(|e| damaged(what, e))?
            .to_string_lossy()
            .into_owned();
        if !member.header().entry_type().is_file() {
            return Err(OpenError::Entry {
                name,
                reason: "not a regular file".into(),
            });
        }
        let size = member.size();
        if size > MAX_PART {
            return Err(OpenError::Entry {
                name,
                reason: format!("{size} bytes, more than the {MAX_PART} a part may have"),
            });
        }
        let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0).min(1 << 26));
        member
            .read_to_end(&mut bytes)
            .map_err(|e| damaged(&format!("reading {name}"), e))?;
        Ok(Some((name, bytes)))
    };
    let Some((first, head)) = read_member("reading the first member")? else {
        return Err(OpenError::NoManifest("nothing (an empty archive)".into()));
    };
    if first != MANIFEST_NAME {
        return Err(OpenError::NoManifest(first));
    }
    let manifest = parse_manifest(&head)?;
    let mut listed: BTreeMap<&str, &Entry> = BTreeMap::new();
    for e in &manifest.entries {
        manifest::data_path(&e.name)?;
        if listed.insert(e.name.as_str(), e).is_some() {
            return Err(OpenError::BadManifest(format!(
                "{} is listed twice",
                e.name
            )));
        }
    }
    let mut parts = Vec::new();
    while let Some((name, bytes)) = read_member("reading the archive")? {
        let Some(entry) = listed.remove(name.as_str()) else {
            return Err(OpenError::Entry {
                name,
                reason: "in the archive but not in the manifest (or twice)".into(),
            });
        };
        check(entry, &bytes)?;
        parts.push(Part {
            name,
            kind: entry.kind,
            bytes,
        });
    }
    if let Some(name) = listed.keys().next() {
        return Err(OpenError::Missing {
            name: (*name).to_string(),
        });
    }
    Ok(Opened { manifest, parts })
}

fn parse_manifest(bytes: &[u8]) -> Result<Manifest, OpenError> {
    // The format first, so a newer manifest says "newer" rather than
    // failing on a field this code does not know.
    let format = serde_json::from_slice::<serde_json::Value>(bytes)
        .map_err(|e| OpenError::BadManifest(e.to_string()))?
        .get("format")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| OpenError::BadManifest("no format number".into()))?;
    if format == 0 {
        return Err(OpenError::BadManifest("format 0 is no format".into()));
    }
    if format > u64::from(FORMAT) {
        return Err(OpenError::NewerFormat {
            found: u32::try_from(format).unwrap_or(u32::MAX),
        });
    }
    serde_json::from_slice(bytes).map_err(|e| OpenError::BadManifest(e.to_string()))
}

fn check(entry: &Entry, bytes: &[u8]) -> Result<(), OpenError> {
    let fail = |reason: String| OpenError::Entry {
        name: entry.name.clone(),
        reason,
    };
    if bytes.len() as u64 != entry.bytes {
        return Err(fail(format!(
            "{} bytes, the manifest says {}",
            bytes.len(),
            entry.bytes
        )));
    }
    let sum = crate::sha256_hex(bytes);
    if sum != entry.sha256 {
        return Err(fail(format!(
            "sha256 {sum} does not match the manifest's {}",
            entry.sha256
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::manifest::Appliance;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            id: "20260101T000000Z-0000".into(),
            created: "2026-01-01T00:00:00Z".into(),
            created_unix: 1_767_225_600,
            appliance: Appliance::default(),
            vault_storage: "raft".into(),
            notes: Vec::new(),
            entries: Vec::new(),
        }
    }

    fn parts() -> Vec<Part> {
        vec![
            Part {
                name: "consul.snap".into(),
                kind: EntryKind::ConsulSnapshot,
                bytes: b"consul secret acl token".to_vec(),
            },
            Part {
                name: "data/leases/leases.json".into(),
                kind: EntryKind::Leases,
                bytes: b"{\"leases\":[]}".to_vec(),
            },
        ]
    }

    fn packed(id: &age::x25519::Identity, m: Manifest, p: &[Part]) -> Vec<u8> {
        pack(Vec::new(), &[id.to_public()], m, p).unwrap().0
    }

    #[test]
    fn round_trip_and_nothing_in_clear() {
        let id = age::x25519::Identity::generate();
        let bytes = packed(&id, manifest(), &parts());
        assert!(bytes.starts_with(b"age-encryption.org/v1"));
        assert!(!bytes.windows(6).any(|w| w == b"secret"));
        let opened = open(&bytes[..], &id).unwrap();
        assert_eq!(opened.parts, parts());
        assert_eq!(opened.manifest.entries.len(), 2);
        assert_eq!(opened.manifest.entries[0].bytes, 23);
    }

    #[test]
    fn another_identity_cannot_open_it() {
        let id = age::x25519::Identity::generate();
        let other = age::x25519::Identity::generate();
        let err = open(&packed(&id, manifest(), &parts())[..], &other).unwrap_err();
        assert!(matches!(err, OpenError::Decrypt(_)), "{err}");
    }

    #[test]
    fn a_flipped_byte_is_refused_as_damaged() {
        let id = age::x25519::Identity::generate();
        let mut bytes = packed(&id, manifest(), &parts());
        let at = bytes.len() - 20;
        bytes[at] ^= 1;
        let err = open(&bytes[..], &id).unwrap_err();
        assert!(matches!(err, OpenError::Damaged(_)), "{err}");
        assert!(err.to_string().contains("damaged or was changed"), "{err}");
    }

    #[test]
    fn a_plain_file_is_not_a_backup() {
        let id = age::x25519::Identity::generate();
        let err = open(&b"hello"[..], &id).unwrap_err();
        assert!(matches!(err, OpenError::NotAge(_)), "{err}");
    }

    /// Someone holding only the public key re-encrypts an archive whose
    /// part does not match its manifest: refused, naming the part.
    #[test]
    fn a_part_that_does_not_match_its_manifest_is_named() {
        let id = age::x25519::Identity::generate();
        let mut m = manifest();
        m.entries = vec![Entry {
            name: "consul.snap".into(),
            kind: EntryKind::ConsulSnapshot,
            bytes: 3,
            sha256: crate::sha256_hex(b"abc"),
        }];
        // Hand-built archive: manifest, then a part with other bytes.
        let mut tar = tar::Builder::new(Vec::new());
        append(&mut tar, MANIFEST_NAME, &serde_json::to_vec(&m).unwrap(), 0).unwrap();
        append(&mut tar, "consul.snap", b"abd", 0).unwrap();
        let plain = zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap();
        let mut w =
            kindling_stack::secrets::encrypting_writer(&[id.to_public()], Vec::new()).unwrap();
        w.write_all(&plain).unwrap();
        let bytes = w.finish().unwrap();
        let err = open(&bytes[..], &id).unwrap_err();
        assert!(
            err.to_string().starts_with("entry consul.snap: sha256"),
            "{err}"
        );
    }

    #[test]
    fn a_newer_format_says_so() {
        let id = age::x25519::Identity::generate();
        let mut tar = tar::Builder::new(Vec::new());
        append(
            &mut tar,
            MANIFEST_NAME,
            br#"{"format": 9, "future": true}"#,
            0,
        )
        .unwrap();
        let plain = zstd::encode_all(&tar.into_inner().unwrap()[..], 3).unwrap();
        let mut w =
            kindling_stack::secrets::encrypting_writer(&[id.to_public()], Vec::new()).unwrap();
        w.write_all(&plain).unwrap();
        let err = open(&w.finish().unwrap()[..], &id).unwrap_err();
        assert!(matches!(err, OpenError::NewerFormat { found: 9 }), "{err}");
    }
}
