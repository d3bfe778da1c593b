//! Host files the lab boots with: the Debian kernel and its module directory,
//! OVMF, and the iPXE NIC ROMs. Read-only lookups; nothing here writes.

use crate::error::{LabError, Result};
use std::path::{Path, PathBuf};

/// A kernel image and the module tree that matches it.
#[derive(Debug, Clone)]
pub struct KernelInfo {
    pub image: PathBuf,
    pub version: String,
    pub modules_dir: PathBuf,
}

impl KernelInfo {
    /// The newest `/boot/vmlinuz-*` that has a matching `/lib/modules/<version>`.
    pub fn newest_installed() -> Result<Self> {
        let mut found: Vec<(String, PathBuf)> = std::fs::read_dir("/boot")
            .map_err(|e| LabError::io("listing", "/boot", e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let version = name.strip_prefix("vmlinuz-")?.to_string();
                Path::new("/lib/modules")
                    .join(&version)
                    .join("modules.dep")
                    .exists()
                    .then(|| (version, e.path()))
            })
            .collect();
        found.sort_by_key(|(version, _)| version_key(version));
        let (version, image) = found.pop().ok_or_else(|| LabError::ArtifactMissing {
            what: "kernel",
            path: PathBuf::from("/boot/vmlinuz-*"),
            fix: "install Debian's kernel with `apt-get install linux-image-amd64` (tests/install-deps does)".into(),
        })?;
        Ok(Self {
            image,
            modules_dir: Path::new("/lib/modules").join(&version),
            version,
        })
    }

    /// A kernel given by path; its version comes from the `vmlinuz-<version>` name.
    pub fn from_image(image: &Path) -> Result<Self> {
        if !image.is_file() {
            return Err(LabError::ArtifactMissing {
                what: "kernel",
                path: image.to_path_buf(),
                fix: "pass an existing kernel image".into(),
            });
        }
        let name = image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let version = name
            .strip_prefix("vmlinuz-")
            .ok_or_else(|| LabError::InvalidOption {
                option: "--kernel",
                reason: format!(
                    "{}: cannot tell the kernel version (expected a name vmlinuz-<version>)",
                    image.display()
                ),
            })?;
        let modules_dir = Path::new("/lib/modules").join(version);
        if !modules_dir.join("modules.dep").exists() {
            return Err(LabError::ArtifactMissing {
                what: "kernel modules",
                path: modules_dir,
                fix: "install the matching linux-image package".into(),
            });
        }
        Ok(Self {
            image: image.to_path_buf(),
            version: version.to_string(),
            modules_dir,
        })
    }
}

/// Orders `6.1.0-56-amd64` numerically component by component.
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Firmware files QEMU loads.
#[derive(Debug, Clone)]
pub struct Firmware {
    pub ovmf_code: PathBuf,
    pub ovmf_vars: PathBuf,
}

impl Firmware {
    pub fn ovmf() -> Result<Self> {
        let code = PathBuf::from("/usr/share/OVMF/OVMF_CODE_4M.fd");
        let vars = PathBuf::from("/usr/share/OVMF/OVMF_VARS_4M.fd");
        for (what, path) in [("OVMF code", &code), ("OVMF vars", &vars)] {
            if !path.exists() {
                return Err(LabError::ArtifactMissing {
                    what,
                    path: path.clone(),
                    fix: "install the ovmf package (`tests/install-deps`)".into(),
                });
            }
        }
        Ok(Self {
            ovmf_code: code,
            ovmf_vars: vars,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        assert!(version_key("6.1.0-56-amd64") > version_key("6.1.0-9-amd64"));
        assert!(version_key("6.10.0-1-amd64") > version_key("6.9.0-1-amd64"));
    }

    #[test]
    fn a_kernel_path_without_a_version_is_refused() {
        let err = KernelInfo::from_image(Path::new("/proc/self/exe"))
            .err()
            .map(|e| e.to_string());
        assert!(err.unwrap_or_default().contains("vmlinuz-<version>"));
    }
}
