//! Finds the kernel the image boots and tells its version.
//!
//! Default: the newest Debian kernel `/boot/vmlinuz-*-amd64`. The version is
//! read from the bzImage header (the string the kernel prints at boot), so a
//! kernel passed with `--kernel` needs no particular file name. It never
//! installs anything on the build machine.

use std::cmp::Ordering;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::error::BuildError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub path: PathBuf,
    pub version: String,
}

/// Picks the newest `vmlinuz-*-amd64` in `boot_dir`.
pub fn find_default(boot_dir: &Path) -> Result<PathBuf, BuildError> {
    let searched = format!("{}/vmlinuz-*-amd64", boot_dir.display());
    let entries = fs::read_dir(boot_dir).map_err(|_| BuildError::KernelNotFound {
        searched: searched.clone(),
    })?;
    let mut versions: Vec<String> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|name| name.strip_prefix("vmlinuz-").map(str::to_string))
        .filter(|version| version.ends_with("-amd64"))
        .collect();
    versions.sort_by(|a, b| compare_versions(a, b));
    match versions.last() {
        Some(version) => Ok(boot_dir.join(format!("vmlinuz-{version}"))),
        None => Err(BuildError::KernelNotFound { searched }),
    }
}

/// Resolves the kernel at `path` and its version (`override_version` wins).
pub fn inspect(path: &Path, override_version: Option<&str>) -> Result<Kernel, BuildError> {
    if !path.is_file() {
        return Err(BuildError::KernelMissing {
            path: path.to_path_buf(),
        });
    }
    let version = match override_version {
        Some(version) => Some(version.to_string()),
        None => bzimage_version(path)?.or_else(|| file_name_version(path)),
    };
    match version {
        Some(version) => Ok(Kernel {
            path: path.to_path_buf(),
            version,
        }),
        None => Err(BuildError::KernelVersionUnknown {
            path: path.to_path_buf(),
        }),
    }
}

/// Reads the version from the x86 boot protocol header: "HdrS" at 0x202,
/// and at 0x20E a pointer (minus 0x200) to a NUL-terminated string whose first
/// word is the release (`6.1.0-56-amd64 (debian-kernel@…) #1 SMP …`).
fn bzimage_version(path: &Path) -> Result<Option<String>, BuildError> {
    let mut head = vec![0u8; 64 * 1024];
    let mut file = fs::File::open(path).map_err(BuildError::io("read kernel", path))?;
    let mut filled = 0;
    while filled < head.len() {
        let n = file
            .read(&mut head[filled..])
            .map_err(BuildError::io("read kernel", path))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    head.truncate(filled);
    if head.get(0x202..0x206) != Some(b"HdrS".as_slice()) {
        return Ok(None);
    }
    let Some(pointer) = head.get(0x20E..0x210) else {
        return Ok(None);
    };
    let offset = usize::from(u16::from_le_bytes([pointer[0], pointer[1]])) + 0x200;
    let Some(tail) = head.get(offset..) else {
        return Ok(None);
    };
    let end = tail.iter().position(|b| *b == 0).unwrap_or(tail.len());
    let text = String::from_utf8_lossy(&tail[..end]);
    Ok(text
        .split_whitespace()
        .next()
        .filter(|v| !v.is_empty())
        .map(str::to_string))
}

fn file_name_version(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_prefix("vmlinuz-")
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Orders kernel releases so that 6.10 > 6.9 and -56 > -9: digit runs compare
/// as numbers, everything else as text.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let na = trim_zeros(&a[..da]);
                let nb = trim_zeros(&b[..db]);
                let ord = na.len().cmp(&nb.len()).then_with(|| na.cmp(nb));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let start = digits
        .iter()
        .position(|d| *d != b'0')
        .unwrap_or(digits.len());
    &digits[start..]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn numeric_parts_compare_as_numbers() {
        assert_eq!(
            compare_versions("6.1.0-56-amd64", "6.1.0-9-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            compare_versions("6.10.0-1-amd64", "6.9.0-1-amd64"),
            Ordering::Greater
        );
        assert_eq!(
            compare_versions("6.1.0-1-amd64", "6.1.0-1-amd64"),
            Ordering::Equal
        );
    }

    #[test]
    fn newest_amd64_kernel_is_picked() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "vmlinuz-6.1.0-9-amd64",
            "vmlinuz-6.1.0-56-amd64",
            "vmlinuz-6.1.0-60-cloud-amd64x",
            "config-6.1.0-99-amd64",
        ] {
            fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(
            find_default(dir.path()).unwrap(),
            dir.path().join("vmlinuz-6.1.0-56-amd64")
        );
    }

    #[test]
    fn empty_boot_dir_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_default(dir.path()).unwrap_err().to_string();
        assert!(err.contains("apt-get install linux-image-amd64"), "{err}");
    }

    #[test]
    fn version_comes_from_the_bzimage_header() {
        let dir = tempfile::tempdir().unwrap();
        let mut image = vec![0u8; 0x400];
        image[0x202..0x206].copy_from_slice(b"HdrS");
        image[0x20E..0x210].copy_from_slice(&0x100u16.to_le_bytes());
        image[0x300..0x300 + 20].copy_from_slice(b"6.6.6-test (x) #1 \0\0");
        let path = dir.path().join("bzImage");
        fs::write(&path, &image).unwrap();
        assert_eq!(inspect(&path, None).unwrap().version, "6.6.6-test");
    }
}
