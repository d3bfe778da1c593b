//! The effective site configuration file, `site.json`: the merged, validated
//! `SiteConfig` that `kindlingd config apply` writes for every other service.
//!
//! Owns where that file is (`$KINDLING_SITE_JSON`, else
//! `/run/kindling/site.json`) and the one way to read it. Every reader of the
//! effective configuration goes through [`load`]; it never writes the file
//! (the overlay pipeline does) and never merges or validates layers.

use crate::SiteConfig;
use std::path::{Path, PathBuf};

/// The appliance's effective config file.
pub const DEFAULT_PATH: &str = "/run/kindling/site.json";
/// Environment variable that overrides [`DEFAULT_PATH`] (tests, the lab).
pub const PATH_ENV: &str = "KINDLING_SITE_JSON";
/// The file's name inside a run directory.
pub const FILE_NAME: &str = "site.json";

/// Why the effective config could not be read; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadEffectiveError {
    #[error("reading {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a valid site config: {source}", path.display())]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

impl LoadEffectiveError {
    /// The file is not there (yet): the config phase has not written it.
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// `$KINDLING_SITE_JSON`, else [`DEFAULT_PATH`].
pub fn default_path() -> PathBuf {
    std::env::var_os(PATH_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// `site.json` inside `run_dir` (the API and the overlay pipeline address
/// the run directory as a whole).
pub fn in_run_dir(run_dir: &Path) -> PathBuf {
    run_dir.join(FILE_NAME)
}

/// Reads and parses the effective config at `path`.
pub fn load(path: &Path) -> Result<SiteConfig, LoadEffectiveError> {
    let bytes = std::fs::read(path).map_err(|source| LoadEffectiveError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_slice(&bytes).map_err(|source| LoadEffectiveError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads the effective config at [`default_path`].
pub fn load_default() -> Result<SiteConfig, LoadEffectiveError> {
    load(&default_path())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn round_trips_and_names_the_file_on_errors() {
        let tmp = std::env::temp_dir().join(format!("ks-effective-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let path = in_run_dir(&tmp);
        let _ = std::fs::remove_file(&path);

        let missing = load(&path).unwrap_err();
        assert!(missing.is_missing());
        assert!(missing.to_string().contains(&path.display().to_string()));

        std::fs::write(&path, b"{ not json").unwrap();
        let bad = load(&path).unwrap_err();
        assert!(!bad.is_missing());
        assert!(
            bad.to_string().contains("is not a valid site config"),
            "{bad}"
        );

        let site = SiteConfig::default();
        std::fs::write(&path, serde_json::to_vec(&site).unwrap()).unwrap();
        assert_eq!(load(&path).unwrap(), site);
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
