//! Building an overlay from a directory tree on the operator's machine:
//! validate the config files first (every problem listed), then pack the tree
//! as a deterministic tar+zstd payload, write the manifest and sign.
//!
//! Only regular files and directories are packed; a symlink or device in the
//! tree is an error, so what is signed is exactly what gets unpacked.

use crate::format::{sha256_hex, write_kovl};
use crate::manifest::{valid_name, LayerKind, Manifest, FORMAT};
use crate::minisign::{PublicKey, SecretKey};
use crate::pin::{self, Catalog, Resolution};
use kindling_site::{ConfigErrors, LoadTreeError, SiteTree};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: only regular files and directories can be packed (found a {kind})")]
    UnsupportedFile { path: String, kind: &'static str },
    #[error("{path}: file name is not valid UTF-8")]
    NonUtf8Path { path: String },
    #[error("invalid overlay name {0:?}: use 1-64 characters of a-z, 0-9, '-', '_'")]
    Name(String),
    #[error("the site id is unknown: set site.id in site.toml or pass --site-id")]
    NoSiteId,
    #[error("invalid site id {0:?}: use 1-64 characters of a-z, 0-9, '-', '_'")]
    SiteId(String),
    #[error("--site-id {flag:?} differs from site.id {file:?} in site.toml")]
    SiteIdConflict { flag: String, file: String },
    // Not a `source`: the message already lists every problem, and anyhow's
    // `{:#}` would print the list twice.
    #[error("invalid configuration:\n{0}")]
    Config(ConfigErrors),
    #[error("{path}: {reason}")]
    TrustKey { path: String, reason: String },
    #[error("packing the payload: {0}")]
    Pack(std::io::Error),
    #[error("signing the overlay: {0}")]
    Sign(crate::minisign::KeyError),
    #[error("{0}")]
    Pin(#[from] crate::pin::PinError),
}

impl From<ConfigErrors> for BuildError {
    fn from(e: ConfigErrors) -> Self {
        BuildError::Config(e)
    }
}

impl From<LoadTreeError> for BuildError {
    fn from(e: LoadTreeError) -> Self {
        match e {
            LoadTreeError::Read { path, source } => BuildError::Read { path, source },
            LoadTreeError::Invalid(c) => BuildError::Config(c),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub name: String,
    pub version: u64,
    pub layer: LayerKind,
    /// Overrides/provides the site id (required when site.toml does not set it).
    pub site_id: Option<String>,
    /// Unix seconds.
    pub created: u64,
    /// Unix seconds.
    pub expires: u64,
}

/// A packed overlay (not yet signed).
#[derive(Debug, Clone)]
pub struct Packed {
    pub manifest: Manifest,
    pub kovl: Vec<u8>,
}

/// A packed and signed overlay.
#[derive(Debug, Clone)]
pub struct Built {
    pub manifest: Manifest,
    pub kovl: Vec<u8>,
    pub minisig: String,
}

/// Files of the tree, sorted, as (relative `/` path, absolute path).
fn walk(dir: &Path) -> Result<Vec<(String, PathBuf)>, BuildError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let read_err = |source| BuildError::Read {
            path: d.display().to_string(),
            source,
        };
        for entry in std::fs::read_dir(&d).map_err(read_err)? {
            let entry = entry.map_err(read_err)?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).map_err(|source| BuildError::Read {
                path: path.display().to_string(),
                source,
            })?;
            let ft = meta.file_type();
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_file() {
                let rel = path
                    .strip_prefix(dir)
                    .ok()
                    .and_then(|p| p.to_str())
                    .ok_or_else(|| BuildError::NonUtf8Path {
                        path: path.display().to_string(),
                    })?;
                out.push((rel.replace(std::path::MAIN_SEPARATOR, "/"), path));
            } else {
                let kind = if ft.is_symlink() {
                    "symlink"
                } else {
                    "special file"
                };
                return Err(BuildError::UnsupportedFile {
                    path: path.display().to_string(),
                    kind,
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Checks the tree's config and returns the site id it is for.
pub fn validate_tree(dir: &Path, opts: &BuildOptions) -> Result<String, BuildError> {
    check_tree(SiteTree::read_dir(dir)?, &dir.display().to_string(), opts)
}

/// `validate_tree` of a tree already read (`label` names it in errors).
fn check_tree(tree: SiteTree, label: &str, opts: &BuildOptions) -> Result<String, BuildError> {
    let file_id = tree
        .site
        .as_ref()
        .and_then(|d| d.table.get("site"))
        .and_then(|s| s.get("id"))
        .and_then(|v| v.as_str())
        .map(str::to_string);
    let site_id = match (&opts.site_id, file_id) {
        (Some(flag), Some(file)) if *flag != file => {
            return Err(BuildError::SiteIdConflict {
                flag: flag.clone(),
                file,
            })
        }
        (Some(id), _) => id.clone(),
        (None, Some(id)) => id,
        (None, None) => return Err(BuildError::NoSiteId),
    };
    // A tree that names its site is a complete config: check it whole. A
    // partial tree (a per-appliance or add-on overlay) is checked per file here
    // and whole on the appliance, after merging.
    if tree
        .site
        .as_ref()
        .is_some_and(|d| d.table.get("site").and_then(|s| s.get("id")).is_some())
    {
        tree.to_config(label)?;
    }
    Ok(site_id)
}

/// Rotation keys from `trust/*.pub`, as base64 lines.
fn trust_keys(files: &[(String, PathBuf)]) -> Result<Vec<String>, BuildError> {
    let mut keys = Vec::new();
    for (rel, abs) in files {
        if rel.starts_with("trust/") && rel.ends_with(".pub") {
            let text = std::fs::read_to_string(abs).map_err(|source| BuildError::Read {
                path: abs.display().to_string(),
                source,
            })?;
            let pk = PublicKey::from_file_text(&text).map_err(|e| BuildError::TrustKey {
                path: rel.clone(),
                reason: e.to_string(),
            })?;
            keys.push(pk.to_base64());
        }
    }
    Ok(keys)
}

/// The profile a packed file is (`profiles/NAME.toml`), if it is one.
fn profile_of(rel: &str) -> Option<&str> {
    rel.strip_prefix("profiles/")?
        .strip_suffix(".toml")
        .filter(|name| !name.contains('/'))
}

/// Validates and packs `dir`; the result is ready to be signed.
pub fn pack(dir: &Path, opts: &BuildOptions) -> Result<Packed, BuildError> {
    pack_pinned(dir, opts, None).map(|(packed, _)| packed)
}

/// `pack`, with the profiles' artifact names that `catalog` holds pinned
/// to `sha256/HEX` in the packed files (`pin`); what became of each name.
/// The operator's files are checked as written, and again as packed.
pub fn pack_pinned(
    dir: &Path,
    opts: &BuildOptions,
    catalog: Option<&Catalog>,
) -> Result<(Packed, Vec<Resolution>), BuildError> {
    if !valid_name(&opts.name) {
        return Err(BuildError::Name(opts.name.clone()));
    }
    let site_id = validate_tree(dir, opts)?;
    if !valid_name(&site_id) {
        return Err(BuildError::SiteId(site_id));
    }
    let files = walk(dir)?;
    let trusted_keys = trust_keys(&files)?;
    let mut contents = Vec::with_capacity(files.len());
    let mut resolutions = Vec::new();
    for (rel, abs) in &files {
        let data = std::fs::read(abs).map_err(|source| BuildError::Read {
            path: abs.display().to_string(),
            source,
        })?;
        let data = match (catalog, profile_of(rel)) {
            (Some(catalog), Some(profile)) => {
                // Read as UTF-8 by the validation above.
                let text = String::from_utf8_lossy(&data);
                let (pinned, mut found) = pin::pin_profile(profile, &text, catalog)?;
                resolutions.append(&mut found);
                pinned.into_bytes()
            }
            _ => data,
        };
        contents.push((rel.as_str(), data));
    }
    if resolutions
        .iter()
        .any(|r| matches!(r, Resolution::Pinned { .. }))
    {
        let config = contents
            .iter()
            .filter(|(rel, _)| *rel == "site.toml" || rel.starts_with("profiles/"))
            .map(|(rel, data)| (rel.to_string(), String::from_utf8_lossy(data).into_owned()))
            .collect();
        let label = format!("{} (artifacts pinned)", dir.display());
        check_tree(SiteTree::from_files(config)?, &label, opts)?;
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut unpacked_size = 0u64;
    for (rel, data) in contents {
        unpacked_size += data.len() as u64;
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(opts.created);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, rel, data.as_slice())
            .map_err(BuildError::Pack)?;
    }
    let tar_bytes = tar.into_inner().map_err(BuildError::Pack)?;
    let payload = zstd::encode_all(tar_bytes.as_slice(), 9).map_err(BuildError::Pack)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        name: opts.name.clone(),
        version: opts.version,
        layer: opts.layer,
        site_id,
        created: opts.created,
        expires: opts.expires,
        payload_sha256: sha256_hex(&payload),
        payload_size: payload.len() as u64,
        unpacked_size,
        files: files.into_iter().map(|(rel, _)| rel).collect(),
        trusted_keys,
    };
    let kovl = write_kovl(&manifest, &payload).map_err(BuildError::Pack)?;
    Ok((Packed { manifest, kovl }, resolutions))
}

/// Validates, packs and signs `dir`.
pub fn build(dir: &Path, opts: &BuildOptions, key: &SecretKey) -> Result<Built, BuildError> {
    let Packed { manifest, kovl } = pack(dir, opts)?;
    let minisig = key
        .sign(&kovl, &manifest.trusted_comment())
        .map_err(BuildError::Sign)?;
    Ok(Built {
        manifest,
        kovl,
        minisig,
    })
}
