//! Kernel modules: `modules.dep`/`modules.alias`/`modules.builtin` of the image,
//! dependency closure, `finit_module(2)`.
//!
//! Owns which module file to load and in what order. Built-in and already
//! loaded modules are not errors. It must never load a module that is not in
//! `modules.dep` (only what the image carries).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use kindling_init_protocol::phase::BootPhase;
use nix::kmod::{finit_module, ModuleInitFlags};

use crate::say;

/// `MODULE_INIT_COMPRESSED_FILE`: the kernel decompresses `.ko.xz`/`.ko.zst`/`.ko.gz`.
const MODULE_INIT_COMPRESSED_FILE: libc::c_uint = 4;

/// Why a module could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    #[error("reading {path}: {source}")]
    ReadIndex {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("module {0}: not in this image (not in modules.dep or modules.builtin)")]
    NotInImage(String),
    #[error("module {name}: opening {path}: {source}")]
    Open {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("module {name}: finit_module({path}): {source}")]
    Load {
        name: String,
        path: PathBuf,
        source: nix::Error,
    },
    #[error("module {name}: dependency {dependency} failed: {source}")]
    Dependency {
        name: String,
        dependency: String,
        source: Box<ModuleError>,
    },
}

/// `e1000e`, `nf-tables.ko.xz` → `nf_tables`: the kernel's own module name.
pub fn module_name(file_or_name: &str) -> String {
    let base = file_or_name.rsplit('/').next().unwrap_or(file_or_name);
    let stem = base.split(".ko").next().unwrap_or(base);
    stem.replace('-', "_")
}

struct Entry {
    path: PathBuf,
    deps: Vec<String>,
}

/// The image's module metadata for one kernel release.
pub struct ModuleIndex {
    /// `/lib/modules/<release>`; relative paths in modules.dep are under it.
    root: Option<PathBuf>,
    modules: HashMap<String, Entry>,
    builtin: HashSet<String>,
    /// `modules.alias` text given to `parse` (tests); `load` reads the file
    /// from `root` on demand instead, so its ~1 MB never stays in memory.
    alias_text: Option<String>,
}

impl ModuleIndex {
    /// Reads `<dir>/modules.dep` (required), `modules.builtin` and `modules.alias` (optional).
    pub fn load(dir: &Path) -> Result<ModuleIndex, ModuleError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|source| ModuleError::ReadIndex { path, source })
        };
        let dep = read("modules.dep")?;
        let builtin = read("modules.builtin").unwrap_or_default();
        let mut index = ModuleIndex::parse(&dep, &builtin, "");
        index.root = Some(dir.to_path_buf());
        index.alias_text = None;
        Ok(index)
    }

    /// Whether the module's file is present (an image may carry a full
    /// modules.dep but only some of the files).
    fn file_present(&self, name: &str) -> bool {
        match (self.modules.get(name), &self.root) {
            (Some(entry), Some(root)) => root.join(&entry.path).exists(),
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Parses the three files' contents.
    pub fn parse(dep: &str, builtin: &str, alias: &str) -> ModuleIndex {
        let modules = dep
            .lines()
            .filter_map(|line| {
                let (path, deps) = line.split_once(':')?;
                let path = path.trim();
                Some((
                    module_name(path),
                    Entry {
                        path: PathBuf::from(path),
                        deps: deps.split_whitespace().map(module_name).collect(),
                    },
                ))
            })
            .collect();
        let builtin = builtin
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(module_name)
            .collect();
        ModuleIndex {
            root: None,
            modules,
            builtin,
            alias_text: Some(alias.to_string()),
        }
    }

    /// Whether the image has the module as a file.
    pub fn has(&self, name: &str) -> bool {
        self.modules.contains_key(&module_name(name))
    }

    /// Whether the kernel has the module built in (nothing to load).
    pub fn is_builtin(&self, name: &str) -> bool {
        let name = module_name(name);
        self.builtin.contains(&name) && !self.modules.contains_key(&name)
    }

    /// Modules (present in the image) whose alias pattern matches one of
    /// `modaliases`, in `modules.alias` order. The file is streamed line by line.
    pub fn modules_for_aliases(&self, modaliases: &[String]) -> Vec<String> {
        self.matching_modules(|literal, pattern| {
            let mut candidates = modaliases.iter().filter(|m| m.starts_with(literal));
            let Some(first) = candidates.next() else {
                return false;
            };
            // Compiled only for lines whose literal prefix fits: most do not.
            let Ok(compiled) = glob::Pattern::new(pattern) else {
                return false;
            };
            compiled.matches(first) || candidates.any(|m| compiled.matches(m))
        })
    }

    /// Modules (present in the image) providing the alias the kernel asked
    /// for in `request_module()` (`fs-ext4`, `nft-expr-masq`, `net-pf-16-proto-12`).
    /// `-` and `_` are the same here, as they are for module names.
    pub fn modules_for_request(&self, request: &str) -> Vec<String> {
        let wanted = request.replace('-', "_");
        self.matching_modules(|literal, pattern| {
            let literal = literal.replace('-', "_");
            if !wanted.starts_with(&literal) {
                return false;
            }
            match glob::Pattern::new(&pattern.replace('-', "_")) {
                Ok(normalised) => normalised.matches(&wanted),
                Err(_) => false,
            }
        })
    }

    /// Streams `modules.alias` and collects, once each and in file order, the
    /// modules in the image whose pattern `matches` (given the pattern's
    /// literal prefix, for a cheap pre-check, and the whole pattern).
    fn matching_modules(&self, matches: impl Fn(&str, &str) -> bool) -> Vec<String> {
        let mut found = Vec::new();
        let mut seen = HashSet::new();
        let mut consider = |line: &str| {
            let mut parts = line.split_whitespace();
            if parts.next() != Some("alias") {
                return;
            }
            let (Some(pattern), Some(module)) = (parts.next(), parts.next()) else {
                return;
            };
            let literal = pattern.split(['*', '?', '[']).next().unwrap_or_default();
            let module = module_name(module);
            if !seen.contains(&module) && matches(literal, pattern) && self.file_present(&module) {
                seen.insert(module.clone());
                found.push(module);
            }
        };
        match (&self.alias_text, &self.root) {
            (Some(text), _) => text.lines().for_each(&mut consider),
            (None, Some(root)) => {
                use std::io::BufRead;
                if let Ok(file) = File::open(root.join("modules.alias")) {
                    for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
                        consider(&line);
                    }
                }
            }
            (None, None) => {}
        }
        found
    }

    /// Dependencies of a module, in load order (deepest first).
    pub fn load_order(&self, name: &str) -> Result<Vec<String>, ModuleError> {
        let name = module_name(name);
        let mut order = Vec::new();
        let mut visiting = HashSet::new();
        self.visit(&name, &mut order, &mut visiting)?;
        Ok(order)
    }

    fn visit(
        &self,
        name: &str,
        order: &mut Vec<String>,
        visiting: &mut HashSet<String>,
    ) -> Result<(), ModuleError> {
        if order.iter().any(|n| n == name) || !visiting.insert(name.to_string()) {
            return Ok(());
        }
        if self.builtin.contains(name) && !self.modules.contains_key(name) {
            return Ok(());
        }
        let entry = self
            .modules
            .get(name)
            .ok_or_else(|| ModuleError::NotInImage(name.to_string()))?;
        // modules.dep lists the closure with the module to load first last.
        for dep in entry.deps.iter().rev() {
            self.visit(dep, order, visiting)?;
        }
        order.push(name.to_string());
        Ok(())
    }
}

/// Loads modules, remembering what is already in the kernel.
pub struct Loader<'a> {
    index: &'a ModuleIndex,
    dir: PathBuf,
    done: HashSet<String>,
    loaded: Vec<String>,
    /// The console subject of the "loaded module" lines (`early`, `modprobe`).
    subject: &'static str,
}

impl<'a> Loader<'a> {
    pub fn new(index: &'a ModuleIndex, dir: &Path) -> Loader<'a> {
        Loader {
            index,
            dir: dir.to_path_buf(),
            done: HashSet::new(),
            loaded: Vec::new(),
            subject: BootPhase::Early.name(),
        }
    }

    /// Names the console lines with `subject` instead of `early`.
    pub fn with_subject(mut self, subject: &'static str) -> Loader<'a> {
        self.subject = subject;
        self
    }

    /// How many modules this loader put into the kernel.
    pub fn loaded(&self) -> usize {
        self.loaded.len()
    }

    /// The modules this loader put into the kernel, in load order.
    pub fn loaded_names(&self) -> &[String] {
        &self.loaded
    }

    /// Loads `name` and its dependencies; Ok(true) if `name` was newly loaded.
    pub fn load(&mut self, name: &str) -> Result<bool, ModuleError> {
        let name = module_name(name);
        if self.done.contains(&name) {
            return Ok(false);
        }
        if self.index.builtin.contains(&name) && !self.index.has(&name) {
            self.done.insert(name);
            return Ok(false);
        }
        let order = self.index.load_order(&name)?;
        let mut newly = false;
        for module in order {
            if self.done.contains(&module) {
                continue;
            }
            match self.insert(&module) {
                Ok(fresh) => {
                    newly = fresh && module == name;
                    self.done.insert(module);
                }
                Err(e) if module != name => {
                    return Err(ModuleError::Dependency {
                        name,
                        dependency: module,
                        source: Box::new(e),
                    })
                }
                Err(e) => return Err(e),
            }
        }
        Ok(newly)
    }

    fn insert(&mut self, name: &str) -> Result<bool, ModuleError> {
        if Path::new("/sys/module")
            .join(name)
            .join("initstate")
            .exists()
        {
            return Ok(false);
        }
        let Some(entry) = self.index.modules.get(name) else {
            return Err(ModuleError::NotInImage(name.to_string()));
        };
        let path = if entry.path.is_absolute() {
            entry.path.clone()
        } else {
            self.dir.join(&entry.path)
        };
        let file = File::open(&path).map_err(|source| ModuleError::Open {
            name: name.to_string(),
            path: path.clone(),
            source,
        })?;
        let compressed = path
            .extension()
            .is_some_and(|e| e == "xz" || e == "zst" || e == "gz");
        let flags = if compressed {
            ModuleInitFlags::from_bits_retain(MODULE_INIT_COMPRESSED_FILE)
        } else {
            ModuleInitFlags::empty()
        };
        match finit_module(&file, c"", flags) {
            Ok(()) => {
                say!(self.subject, "loaded module {name}");
                self.loaded.push(name.to_string());
                Ok(true)
            }
            Err(nix::errno::Errno::EEXIST) => Ok(false),
            Err(source) => Err(ModuleError::Load {
                name: name.to_string(),
                path,
                source,
            }),
        }
    }
}

/// Module names from a list file: one per line, `#` comments, blank lines ignored.
pub fn read_list(path: &Path) -> std::io::Result<Vec<String>> {
    Ok(std::fs::read_to_string(path)?
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(module_name)
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const DEP: &str = "\
kernel/net/netfilter/nf_tables.ko.xz: kernel/lib/crc32c_generic.ko.xz kernel/net/netfilter/nfnetlink.ko.xz
kernel/net/netfilter/nfnetlink.ko.xz:
kernel/lib/crc32c_generic.ko.xz:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/drivers/net/ethernet/intel/e1000/e1000.ko:
";
    const BUILTIN: &str = "kernel/drivers/virtio/virtio_pci.ko\n";
    const ALIAS: &str = "\
# Aliases extracted from modules themselves.
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias virtio:d00000001v* virtio_net
alias pci:v000010ECd00008168sv*sd*bc*sc*i* r8169
alias acpi*:PNP0501:* serial_fake
";

    fn index() -> ModuleIndex {
        ModuleIndex::parse(DEP, BUILTIN, ALIAS)
    }

    #[test]
    fn names_are_normalised() {
        assert_eq!(module_name("kernel/net/nf-tables.ko.xz"), "nf_tables");
        assert_eq!(module_name("e1000e"), "e1000e");
        assert_eq!(module_name("crc32c-generic"), "crc32c_generic");
    }

    #[test]
    fn dependencies_load_first() {
        let order = index().load_order("nf_tables").unwrap();
        assert_eq!(order, ["nfnetlink", "crc32c_generic", "nf_tables"]);
        let order = index().load_order("virtio-net").unwrap();
        assert_eq!(order, ["failover", "net_failover", "virtio_net"]);
    }

    #[test]
    fn builtin_needs_no_file_and_unknown_is_named() {
        assert_eq!(
            index().load_order("virtio_pci").unwrap(),
            Vec::<String>::new()
        );
        let err = index().load_order("ice").unwrap_err().to_string();
        assert!(err.contains("module ice: not in this image"), "{err}");
    }

    #[test]
    fn modalias_matching_picks_only_modules_in_the_image() {
        let aliases = vec![
            "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00".to_string(),
            "virtio:d00000001v00001AF4".to_string(),
            "pci:v000010ECd00008168sv00001043sd00008554bc02sc00i00".to_string(),
            "pci:v00001234d00001111sv00001AF4sd00001100bc03sc00i00".to_string(),
        ];
        // r8169 matches but is not in modules.dep, so it is not offered.
        assert_eq!(
            index().modules_for_aliases(&aliases),
            ["e1000", "virtio_net"]
        );
    }

    #[test]
    fn list_file_ignores_comments() {
        let dir = std::env::temp_dir().join(format!("ki-modlist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("modules.list");
        std::fs::write(
            &path,
            "# NICs\nvirtio_net\n\ne1000 # legacy\ncrc32c-generic\n",
        )
        .unwrap();
        assert_eq!(
            read_list(&path).unwrap(),
            ["virtio_net", "e1000", "crc32c_generic"]
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn real_debian_module_index_matches_e1000() {
        // This machine's Debian kernel modules (any installed release): real
        // modules.dep/modules.alias, streamed; nothing is loaded.
        let dir = std::fs::read_dir("/lib/modules").ok().and_then(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .find(|p| p.join("modules.dep").exists() && p.join("modules.alias").exists())
        });
        let Some(dir) = dir else {
            eprintln!("skipping: no /lib/modules/*/modules.dep on this machine");
            return;
        };
        let index = ModuleIndex::load(&dir).unwrap();
        if !index.has("e1000") {
            eprintln!("skipping: {} has no e1000", dir.display());
            return;
        }
        let matched = index.modules_for_aliases(&[
            "pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00".to_string(),
        ]);
        assert_eq!(matched, ["e1000"], "{}", dir.display());
        let order = index.load_order("nf_tables").unwrap();
        assert_eq!(order.last().map(String::as_str), Some("nf_tables"));
        assert!(order.len() > 1, "nf_tables has dependencies: {order:?}");
    }
}
