//! The `.kovl` container: an uncompressed tar with exactly two entries,
//! `manifest.json` then `payload.tar.zst` (the overlay tree as a zstd-compressed
//! tar). The minisign signature (`NAME.kovl.minisig`) covers the whole file.
//!
//! This module writes containers and splits them into manifest and payload; it
//! never unpacks a payload to disk (that is `unpack`) and never decides trust.

use crate::limits::Limits;
use crate::manifest::Manifest;
use sha2::{Digest, Sha256};
use std::io::{Cursor, Read};

pub const MANIFEST_ENTRY: &str = "manifest.json";
pub const PAYLOAD_ENTRY: &str = "payload.tar.zst";
const TAR_BLOCK: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum ReadKovlError {
    #[error("file is {0} bytes, larger than the {1}-byte limit")]
    TooLarge(u64, u64),
    #[error("truncated: {0} bytes is not a whole overlay container")]
    Truncated(usize),
    #[error("not a kindling overlay: {0}")]
    Malformed(String),
}

/// A container split into its parts (not yet trusted: see `verify`).
#[derive(Debug, Clone)]
pub struct KovlParts {
    pub manifest: Manifest,
    pub payload: Vec<u8>,
}

pub fn sha256_hex(data: &[u8]) -> String {
    let digest = Sha256::digest(data);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Cheap structural checks that need no parsing: size and tar block alignment.
pub fn precheck(kovl: &[u8], limits: &Limits) -> Result<(), ReadKovlError> {
    let len = kovl.len() as u64;
    if len > limits.max_kovl_bytes {
        return Err(ReadKovlError::TooLarge(len, limits.max_kovl_bytes));
    }
    // Two headers, data, and the two zero end blocks at least.
    if !kovl.len().is_multiple_of(TAR_BLOCK) || kovl.len() < 4 * TAR_BLOCK {
        return Err(ReadKovlError::Truncated(kovl.len()));
    }
    Ok(())
}

/// Splits a container into manifest and payload.
pub fn read_kovl(kovl: &[u8], limits: &Limits) -> Result<KovlParts, ReadKovlError> {
    precheck(kovl, limits)?;
    let bad = |what: String| ReadKovlError::Malformed(what);
    let mut archive = tar::Archive::new(Cursor::new(kovl));
    let mut entries = archive.entries().map_err(|e| bad(format!("tar: {e}")))?;
    let mut next_entry = |expect: &str, max: u64| -> Result<Vec<u8>, ReadKovlError> {
        let entry = entries
            .next()
            .ok_or_else(|| bad(format!("missing {expect}")))?
            .map_err(|e| bad(format!("tar: {e}")))?;
        let path = entry
            .path()
            .map_err(|e| bad(format!("tar: {e}")))?
            .to_string_lossy()
            .into_owned();
        if path != expect {
            return Err(bad(format!("expected entry {expect}, found {path:?}")));
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(bad(format!("{expect} is not a regular file")));
        }
        let size = entry.size();
        if size > max {
            return Err(bad(format!("{expect} is {size} bytes, limit {max}")));
        }
        let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        entry
            .take(max)
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("reading {expect}: {e}")))?;
        if data.len() as u64 != size {
            return Err(ReadKovlError::Truncated(kovl.len()));
        }
        Ok(data)
    };
    let manifest_bytes = next_entry(MANIFEST_ENTRY, limits.max_manifest_bytes)?;
    let payload = next_entry(PAYLOAD_ENTRY, limits.max_kovl_bytes)?;
    if entries.next().is_some() {
        return Err(bad("unexpected entry after the payload".into()));
    }
    let manifest: Manifest =
        serde_json::from_slice(&manifest_bytes).map_err(|e| bad(format!("manifest.json: {e}")))?;
    Ok(KovlParts { manifest, payload })
}

/// Writes a container from a manifest and a payload (the manifest's hash
/// fields are taken as given: `pack` fills them in).
pub fn write_kovl(manifest: &Manifest, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let manifest_json = serde_json::to_vec_pretty(manifest).map_err(std::io::Error::other)?;
    let mut builder = tar::Builder::new(Vec::new());
    for (name, data) in [
        (MANIFEST_ENTRY, manifest_json.as_slice()),
        (PAYLOAD_ENTRY, payload),
    ] {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(manifest.created);
        header.set_entry_type(tar::EntryType::Regular);
        builder.append_data(&mut header, name, data)?;
    }
    builder.into_inner()
}
