//! `/repo.tar.gz`: the site's repository directory (e.g. the overlay's
//! `files/repo/`) packed as a gzip'd tarball for nodes' `begin.sh`.
//!
//! Owns packing only. Symlinks are stored as links, never followed, so
//! nothing outside the directory ends up in the tarball.

use flate2::write::GzEncoder;
use flate2::Compression;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("pack repository {dir}: {source}")]
pub struct RepoError {
    pub dir: PathBuf,
    pub source: std::io::Error,
}

pub fn tarball(dir: &Path) -> Result<Vec<u8>, RepoError> {
    let err = |source| RepoError {
        dir: dir.into(),
        source,
    };
    let gz = GzEncoder::new(Vec::new(), Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Deterministic);
    tar.append_dir_all(".", dir).map_err(err)?;
    tar.into_inner().map_err(err)?.finish().map_err(err)
}
