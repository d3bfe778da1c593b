//! Checks and resolves everything a build reads before anything is written:
//! the appliance binaries, extra binaries (with the shared libraries a
//! dynamically linked one needs), signed overlays against the trust keys,
//! artifacts, and host files (CA bundle, iPXE, busybox).
//!
//! Every bad input becomes a one-line `BuildError` naming the input and the
//! fix. It never writes anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::elf::{self, DynamicNeeds};
use super::error::BuildError;

/// Directories searched for a dynamically linked binary's libraries,
/// as Debian's loader searches them.
pub const LIBRARY_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
];

/// A binary going into the image.
#[derive(Debug, Clone)]
pub struct Binary {
    /// Name shown in the manifest (`kindling-init`, `kindlingd`, `vault`, …).
    pub name: String,
    pub source: PathBuf,
    /// Where it lives in the image (`/init`, `/bin/vault`).
    pub image_path: String,
    pub linkage: &'static str,
    /// The file actually installed when it differs from `source` (a copy
    /// without debug sections).
    pub installed: Option<PathBuf>,
}

/// A file on the build machine copied into the image at `image_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCopy {
    pub source: PathBuf,
    pub image_path: String,
}

/// A signed overlay accepted by one of the trust keys.
#[derive(Debug, Clone)]
pub struct Overlay {
    /// File name in the image (`lab.kovl`).
    pub file_name: String,
    pub path: PathBuf,
    pub signature: PathBuf,
    /// The trust key file that verified it.
    pub signed_by: PathBuf,
    /// Overlay name and version from its signed manifest.
    pub name: String,
    pub version: u64,
}

#[derive(Debug, Clone)]
pub struct TrustKey {
    pub path: PathBuf,
    /// File name in the image (`kindling.pub`).
    pub file_name: String,
    key: kindling_overlay::PublicKey,
}

/// `NAME=PATH` as given to --extra-bin / --artifact.
pub fn parse_name_path(arg: &str) -> Option<(String, PathBuf)> {
    let (name, path) = arg.split_once('=')?;
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains('/')
        && !name.contains('\0');
    (plain && !path.is_empty()).then(|| (name.to_string(), PathBuf::from(path)))
}

/// An appliance binary from --bin-dir: must exist and be static, because
/// the image has no C library unless an extra binary brings one.
pub fn appliance_binary(
    bin_dir: &Path,
    name: &str,
    image_path: &str,
) -> Result<Binary, BuildError> {
    let source = bin_dir.join(name);
    if !source.is_file() {
        return Err(BuildError::BinaryMissing {
            what: name.to_string(),
            path: source,
            fix: format!(
                "build it with `cargo build --release -p kindling-init -p kindlingd -p kindling-node` or pass --bin-dir DIR (now {})",
                bin_dir.display()
            ),
        });
    }
    static_binary(name, source, image_path)
}

/// PID 1 from an explicit path (the musl build, `--init-bin`).
pub fn init_binary(source: &Path) -> Result<Binary, BuildError> {
    if !source.is_file() {
        return Err(BuildError::BinaryMissing {
            what: "kindling-init".to_string(),
            path: source.to_path_buf(),
            fix: "build it with `cargo build --release -p kindling-init --target x86_64-unknown-linux-musl` or pass --init-bin PATH".to_string(),
        });
    }
    static_binary("kindling-init", source.to_path_buf(), "/init")
}

/// A binary kindling ships, which must be static (the image has no loader).
fn static_binary(name: &str, source: PathBuf, image_path: &str) -> Result<Binary, BuildError> {
    let needs = elf::dynamic_needs(&source).map_err(|reason| BuildError::BinaryNotElf {
        what: name.to_string(),
        path: source.clone(),
        reason,
    })?;
    if !needs.is_static() {
        return Err(BuildError::BinaryNotElf {
            what: name.to_string(),
            path: source,
            reason: "dynamically linked; build it inside the workspace so .cargo/config.toml makes it static".to_string(),
        });
    }
    Ok(Binary {
        name: name.to_string(),
        source,
        image_path: image_path.to_string(),
        linkage: "static",
        installed: None,
    })
}

/// An --extra-bin: any x86-64 executable; a dynamic one brings its loader
/// and libraries (returned as extra copies).
pub fn extra_binary(name: &str, source: &Path) -> Result<(Binary, Vec<HostCopy>), BuildError> {
    let what = format!("--extra-bin {name}");
    if !source.is_file() {
        return Err(BuildError::BinaryMissing {
            what,
            path: source.to_path_buf(),
            fix: "pass the path of an existing executable (e.g. --extra-bin consul=build/tools/consul)".to_string(),
        });
    }
    let needs = elf::dynamic_needs(source).map_err(|reason| BuildError::BinaryNotElf {
        what: what.clone(),
        path: source.to_path_buf(),
        reason,
    })?;
    let libraries = if needs.is_static() {
        Vec::new()
    } else {
        library_closure(&what, source, &needs)?
    };
    let binary = Binary {
        name: name.to_string(),
        source: source.to_path_buf(),
        image_path: format!("/bin/{name}"),
        linkage: if needs.is_static() {
            "static"
        } else {
            "dynamic"
        },
        installed: None,
    };
    Ok((binary, libraries))
}

/// The loader and every library (transitively) a dynamic binary needs,
/// placed where Debian's loader looks for them.
fn library_closure(
    what: &str,
    source: &Path,
    needs: &DynamicNeeds,
) -> Result<Vec<HostCopy>, BuildError> {
    let mut copies = BTreeMap::new();
    if let Some(interpreter) = &needs.interpreter {
        let host = fs::canonicalize(interpreter).map_err(|_| BuildError::SharedLibraryMissing {
            what: what.to_string(),
            path: source.to_path_buf(),
            library: interpreter.clone(),
            searched: "the build machine".to_string(),
        })?;
        copies.insert(interpreter.clone(), host);
    }
    let mut pending: Vec<String> = needs.needed.clone();
    let mut seen = BTreeSet::new();
    while let Some(soname) = pending.pop() {
        if !seen.insert(soname.clone()) {
            continue;
        }
        let found = LIBRARY_DIRS
            .iter()
            .map(|dir| Path::new(dir).join(&soname))
            .find(|p| p.is_file());
        let Some(found) = found else {
            return Err(BuildError::SharedLibraryMissing {
                what: what.to_string(),
                path: source.to_path_buf(),
                library: soname,
                searched: LIBRARY_DIRS.join(", "),
            });
        };
        let host = fs::canonicalize(&found).map_err(BuildError::io("resolve", &found))?;
        if let Ok(lib_needs) = elf::dynamic_needs(&host) {
            pending.extend(lib_needs.needed);
        }
        copies.insert(found.to_string_lossy().into_owned(), host);
    }
    Ok(copies
        .into_iter()
        .map(|(image_path, source)| HostCopy { source, image_path })
        .collect())
}

pub fn trust_key(path: &Path) -> Result<TrustKey, BuildError> {
    let text = fs::read_to_string(path).map_err(|err| BuildError::TrustKeyInvalid {
        path: path.to_path_buf(),
        reason: err.to_string(),
    })?;
    let key = kindling_overlay::PublicKey::from_file_text(&text).map_err(|err| {
        BuildError::TrustKeyInvalid {
            path: path.to_path_buf(),
            reason: err.to_string(),
        }
    })?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".pub"))
        .unwrap_or_else(|| "key.pub".to_string());
    Ok(TrustKey {
        path: path.to_path_buf(),
        file_name,
        key,
    })
}

/// Gives every trust key a distinct file name in /etc/kindling/trust/.
pub fn dedupe_key_names(keys: &mut [TrustKey]) {
    let mut used = BTreeSet::new();
    for key in keys.iter_mut() {
        let stem = key.file_name.trim_end_matches(".pub").to_string();
        let mut candidate = key.file_name.clone();
        let mut n = 2;
        while !used.insert(candidate.clone()) {
            candidate = format!("{stem}-{n}.pub");
            n += 1;
        }
        key.file_name = candidate;
    }
}

/// A `--site` argument: a `.kovl` with its `.minisig` beside it, verified
/// by one of `keys`.
pub fn overlay(path: &Path, keys: &[TrustKey]) -> Result<Overlay, BuildError> {
    if path.is_dir() {
        return Err(BuildError::OverlayIsDirectory {
            path: path.to_path_buf(),
        });
    }
    if !path.exists() {
        return Err(BuildError::OverlayMissing {
            path: path.to_path_buf(),
        });
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !file_name.ends_with(".kovl") || file_name.len() <= ".kovl".len() {
        return Err(BuildError::OverlayNotKovl {
            path: path.to_path_buf(),
        });
    }
    let mut signature = path.as_os_str().to_os_string();
    signature.push(".minisig");
    let signature = PathBuf::from(signature);
    if !signature.is_file() {
        return Err(BuildError::OverlayUnsigned {
            path: path.to_path_buf(),
            signature,
        });
    }
    let sig_text =
        fs::read_to_string(&signature).map_err(|err| BuildError::OverlaySignatureInvalid {
            path: path.to_path_buf(),
            signature: signature.clone(),
            reason: err.to_string(),
        })?;
    let content = fs::read(path).map_err(BuildError::io("read overlay", path))?;
    // The appliance's own checks, run at build time: signature by a trusted
    // key, container, trusted comment = manifest, payload hash.
    let trusted: Vec<kindling_overlay::PublicKey> = keys.iter().map(|k| k.key.clone()).collect();
    let limits = kindling_overlay::Limits::default();
    let verified =
        match kindling_overlay::verify::verify_authentic(&content, &sig_text, &trusted, &limits) {
            Ok(verified) => verified,
            Err(kindling_overlay::VerifyError::Signature(reason)) => {
                return Err(BuildError::OverlayUntrusted {
                    path: path.to_path_buf(),
                    keys: keys
                        .iter()
                        .map(|k| k.path.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    reason: reason.to_string(),
                })
            }
            Err(refusal) => {
                return Err(BuildError::OverlayInvalid {
                    path: path.to_path_buf(),
                    reason: refusal.to_string(),
                })
            }
        };
    // The appliance refuses an overlay whose file name is not NAME.kovl.
    if file_name.trim_end_matches(".kovl") != verified.manifest.name {
        return Err(BuildError::OverlayRenamed {
            path: path.to_path_buf(),
            name: verified.manifest.name.clone(),
        });
    }
    if kindling_clock::unix_now() > verified.manifest.expires {
        return Err(BuildError::OverlayExpired {
            path: path.to_path_buf(),
            expires: kindling_clock::rfc3339(verified.manifest.expires),
        });
    }
    let signed_by = keys
        .iter()
        .find(|k| k.key.id == verified.key_id)
        .map(|k| k.path.clone())
        .unwrap_or_default();
    Ok(Overlay {
        file_name,
        path: path.to_path_buf(),
        signature,
        signed_by,
        name: verified.manifest.name.clone(),
        version: verified.manifest.version,
    })
}

/// A host file the image needs (CA bundle, iPXE binary, …).
pub fn host_file(input: &str, path: &Path, fix: &str) -> Result<PathBuf, BuildError> {
    if path.is_file() {
        Ok(path.to_path_buf())
    } else {
        Err(BuildError::HostFileMissing {
            input: input.to_string(),
            path: path.to_path_buf(),
            fix: fix.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn name_path_pairs_reject_paths_as_names() {
        assert_eq!(
            parse_name_path("vault=/usr/bin/bao"),
            Some(("vault".into(), PathBuf::from("/usr/bin/bao")))
        );
        assert_eq!(
            parse_name_path("a=b=c"),
            Some(("a".into(), PathBuf::from("b=c")))
        );
        for bad in ["vault", "=x", "../x=y", "a/b=c", "..=x", "name="] {
            assert_eq!(parse_name_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_dynamic_binary_brings_loader_and_libc() {
        let ls = Path::new("/bin/ls");
        if !ls.exists() {
            return;
        }
        let (binary, libs) = extra_binary("ls", ls).unwrap();
        assert_eq!(binary.linkage, "dynamic");
        assert!(
            libs.iter().any(|c| c.image_path.ends_with("/libc.so.6")),
            "{libs:?}"
        );
        assert!(
            libs.iter().any(|c| c.image_path.contains("ld-linux")),
            "{libs:?}"
        );
    }

    #[test]
    fn trust_key_names_are_made_unique() {
        let dir = tempfile::tempdir().unwrap();
        // An in-tree-style test key (public half only): minisign format.
        let path = dir.path().join("kindling.pub");
        fs::write(&path, "untrusted comment: test key\nRWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\n").unwrap();
        let mut keys = vec![trust_key(&path).unwrap(), trust_key(&path).unwrap()];
        dedupe_key_names(&mut keys);
        assert_eq!(keys[0].file_name, "kindling.pub");
        assert_eq!(keys[1].file_name, "kindling-2.pub");
    }
}
