//! Building a bundle (the operator's side) and staging one (the
//! appliance's): verify the signed manifest, check it against the running
//! version, the floor and the refused list, then stream the image into the
//! slot directory under a temporary name, hashing as it goes; only a whole,
//! matching image is fsynced and renamed into place. Anything else leaves
//! the slot directory as it was.

use crate::manifest::{Manifest, ManifestError, FORMAT};
use crate::version::Version;
use kindling_overlay::minisign::{self, KeyError, PublicKey, SecretKey, SignatureError};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const MANIFEST_ENTRY: &str = "manifest.json";
pub const SIGNATURE_ENTRY: &str = "manifest.json.minisig";
pub const IMAGE_ENTRY: &str = "kindling.efi";

const MAX_MANIFEST: u64 = 64 * 1024;
const MAX_SIGNATURE: u64 = 4 * 1024;
/// An ESP slot holds a unified kernel image, not a disk image.
pub const MAX_IMAGE: u64 = 512 * 1024 * 1024;

pub struct BuildRequest<'a> {
    pub image: &'a Path,
    pub version: Version,
    pub min_from: Version,
    /// Unix seconds.
    pub now: u64,
    pub valid_secs: u64,
    pub key: &'a SecretKey,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {size} bytes, more than a slot takes ({MAX_IMAGE})")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("min_from {min_from} is newer than the bundle's version {version}")]
    MinFrom { min_from: Version, version: Version },
    #[error("sign the manifest: {0}")]
    Sign(#[from] KeyError),
}

/// Writes the bundle to `out` (through a temporary file, renamed when
/// whole) and returns its manifest.
pub fn build(request: &BuildRequest<'_>, out: &Path) -> Result<Manifest, BuildError> {
    if request.min_from > request.version {
        return Err(BuildError::MinFrom {
            min_from: request.min_from.clone(),
            version: request.version.clone(),
        });
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BuildError::Io { path, source }
    };
    let image = request.image;
    let (image_size, image_sha256) = hash_file(image).map_err(io(image))?;
    if image_size > MAX_IMAGE {
        return Err(BuildError::TooLarge {
            path: image.into(),
            size: image_size,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        version: request.version.clone(),
        min_from: request.min_from.clone(),
        created: request.now,
        expires: request.now.saturating_add(request.valid_secs),
        image_size,
        image_sha256,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    let signature = request
        .key
        .sign(&manifest_bytes, &manifest.trusted_comment())?;

    let partial = out.with_extension("kupd.partial");
    let file = File::create(&partial).map_err(io(&partial))?;
    let written = (|| {
        let mut tar = tar::Builder::new(file);
        append(&mut tar, MANIFEST_ENTRY, request.now, &manifest_bytes)?;
        append(&mut tar, SIGNATURE_ENTRY, request.now, signature.as_bytes())?;
        let mut header = entry_header(image_size, request.now);
        tar.append_data(&mut header, IMAGE_ENTRY, File::open(image)?)?;
        tar.into_inner()?.sync_all()
    })();
    if let Err(source) = written.and_then(|()| std::fs::rename(&partial, out)) {
        let _ = std::fs::remove_file(&partial);
        return Err(BuildError::Io {
            path: out.into(),
            source,
        });
    }
    Ok(manifest)
}

fn entry_header(size: u64, mtime: u64) -> tar::Header {
    let mut header = tar::Header::new_ustar();
    header.set_size(size);
    header.set_mode(0o644);
    header.set_mtime(mtime);
    header.set_cksum();
    header
}

fn append(
    tar: &mut tar::Builder<File>,
    name: &str,
    mtime: u64,
    data: &[u8],
) -> std::io::Result<()> {
    let mut header = entry_header(data.len() as u64, mtime);
    tar.append_data(&mut header, name, data)
}

fn hash_file(path: &Path) -> std::io::Result<(u64, String)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher)?;
    Ok((size, hex(&hasher.finalize())))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the appliance checks a bundle against.
pub struct StageRequest<'a> {
    pub trusted: &'a [PublicKey],
    pub running: &'a Version,
    /// The lowest version this appliance may ever run again.
    pub floor: &'a Version,
    /// Versions that failed their health gate here.
    pub refused: &'a [Version],
    /// Unix seconds.
    pub now: u64,
    /// The inactive slot's directory and the image's name in it.
    pub slot_dir: &'a Path,
    pub file_name: &'a str,
}

#[derive(Debug)]
pub struct Staged {
    pub manifest: Manifest,
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum StageError {
    #[error("not an update bundle: {0}")]
    Malformed(String),
    #[error("{entry}: more than {max} bytes")]
    Oversized { entry: &'static str, max: u64 },
    #[error("manifest signature: {0}")]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("bundle {version} expired at {expires} (now {now}): a stale copy; build or fetch a fresh one")]
    Expired {
        version: Version,
        expires: u64,
        now: u64,
    },
    #[error("bundle {version} is not newer than the running {running}")]
    NotNewer { version: Version, running: Version },
    #[error("bundle {version} is below this appliance's version floor {floor}")]
    BelowFloor { version: Version, floor: Version },
    #[error("bundle {version} needs at least {min_from} running; this is {running}")]
    TooOld {
        version: Version,
        min_from: Version,
        running: Version,
    },
    #[error("bundle {0} failed its health gate here before; a newer version is needed")]
    PreviouslyFailed(Version),
    #[error("kindling.efi: {got_size} bytes with sha256 {got}, the signed manifest says {want_size} bytes with {want}")]
    ImageMismatch {
        want: String,
        want_size: u64,
        got: String,
        got_size: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Verifies the bundle read from `bundle` and writes its image to
/// `slot_dir/file_name`. On any error nothing is left in `slot_dir`.
pub fn stage(bundle: impl Read, request: &StageRequest<'_>) -> Result<Staged, StageError> {
    let bad = |what: String| StageError::Malformed(what);
    let mut archive = tar::Archive::new(bundle);
    let mut entries = archive.entries().map_err(|e| bad(format!("tar: {e}")))?;
    let mut next = |want: &'static str| {
        let entry = entries
            .next()
            .ok_or_else(|| bad(format!("ends before {want}")))?
            .map_err(|e| bad(format!("tar: {e}")))?;
        let path = entry.path().map_err(|e| bad(format!("tar: {e}")))?;
        if path.as_os_str() != want {
            return Err(bad(format!("expected {want}, found {}", path.display())));
        }
        Ok(entry)
    };
    let manifest_bytes = read_small(next(MANIFEST_ENTRY)?, MANIFEST_ENTRY, MAX_MANIFEST)?;
    let signature = read_small(next(SIGNATURE_ENTRY)?, SIGNATURE_ENTRY, MAX_SIGNATURE)?;
    let signature =
        String::from_utf8(signature).map_err(|_| bad("the signature is not text".into()))?;
    minisign::verify(&manifest_bytes, &signature, request.trusted)?;
    let manifest = Manifest::parse(&manifest_bytes)?;
    check_versions(&manifest, request)?;
    if manifest.image_size > MAX_IMAGE {
        return Err(StageError::Oversized {
            entry: IMAGE_ENTRY,
            max: MAX_IMAGE,
        });
    }
    let image = next(IMAGE_ENTRY)?;
    let path = write_image(image, &manifest, request)?;
    Ok(Staged { manifest, path })
}

fn read_small(entry: impl Read, name: &'static str, max: u64) -> Result<Vec<u8>, StageError> {
    let mut out = Vec::new();
    entry
        .take(max + 1)
        .read_to_end(&mut out)
        .map_err(|e| StageError::Malformed(format!("{name}: {e}")))?;
    if out.len() as u64 > max {
        return Err(StageError::Oversized { entry: name, max });
    }
    Ok(out)
}

fn check_versions(m: &Manifest, r: &StageRequest<'_>) -> Result<(), StageError> {
    let version = m.version.clone();
    if r.now > m.expires {
        return Err(StageError::Expired {
            version,
            expires: m.expires,
            now: r.now,
        });
    }
    if r.refused.contains(&m.version) {
        return Err(StageError::PreviouslyFailed(version));
    }
    if m.version <= *r.running {
        return Err(StageError::NotNewer {
            version,
            running: r.running.clone(),
        });
    }
    if m.version < *r.floor {
        return Err(StageError::BelowFloor {
            version,
            floor: r.floor.clone(),
        });
    }
    if *r.running < m.min_from {
        return Err(StageError::TooOld {
            version,
            min_from: m.min_from.clone(),
            running: r.running.clone(),
        });
    }
    Ok(())
}

/// Streams the image to a temporary name, then checks, syncs and renames.
fn write_image(
    image: impl Read,
    m: &Manifest,
    r: &StageRequest<'_>,
) -> Result<PathBuf, StageError> {
    let target = r.slot_dir.join(r.file_name);
    let partial = r.slot_dir.join(format!(".{}.partial", r.file_name));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| StageError::Io { path, source }
    };
    // A partial file from an earlier interrupted try is ours to replace.
    let _ = std::fs::remove_file(&partial);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&partial)
            .map_err(io(&partial))?;
        let mut hashing = HashingWriter {
            inner: &mut file,
            hasher: Sha256::new(),
        };
        // One byte past the promise tells a longer image from an exact one.
        let got_size =
            std::io::copy(&mut image.take(m.image_size + 1), &mut hashing).map_err(io(&partial))?;
        let got = hex(&hashing.hasher.finalize());
        if got_size != m.image_size || got != m.image_sha256 {
            return Err(StageError::ImageMismatch {
                want: m.image_sha256.clone(),
                want_size: m.image_size,
                got,
                got_size,
            });
        }
        file.sync_all().map_err(io(&partial))?;
        std::fs::rename(&partial, &target).map_err(io(&target))?;
        File::open(r.slot_dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io(r.slot_dir))
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    Ok(target)
}

struct HashingWriter<'a> {
    inner: &'a mut File,
    hasher: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
