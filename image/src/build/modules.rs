//! Chooses the kernel modules the image carries: the names in
//! `kernel-config/modules.list` plus their dependency closure from the
//! kernel's `modules.dep` (and `modules.softdep`), and the firmware those
//! modules name. It writes the filtered index files (`modules.dep`,
//! `modules.alias`, `modules.softdep`, `modules.order`) for the chosen set.
//!
//! It only reads the module tree; it never runs depmod or modprobe, and never
//! includes a module that the list does not lead to.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use super::elf;
use super::error::BuildError;

/// The load list compiled into the CLI (`kernel-config/modules.list`),
/// used unless `--modules-list` names another.
pub const DEFAULT_MODULES_LIST: &str = include_str!("../../../kernel-config/modules.list");

/// The hardware drivers compiled into the CLI (`kernel-config/drivers.list`),
/// carried in the image and loaded by init by modalias; `--drivers-list`
/// names another.
pub const DEFAULT_DRIVERS_LIST: &str = include_str!("../../../kernel-config/drivers.list");

/// Module names as the list gives them, in order: one per line, `#` starts
/// a comment, blank lines are ignored.
pub fn parse_list(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.split('#').next().unwrap_or("").trim())
        .filter(|name| !name.is_empty())
        .map(normalize_name)
        .collect()
}

/// The kernel treats `-` and `_` in module names alike; so do we.
pub fn normalize_name(name: &str) -> String {
    name.replace('-', "_")
}

/// `kernel/net/8021q/8021q.ko.zst` → `8021q`.
fn name_of(rel_path: &str) -> String {
    let file = rel_path.rsplit('/').next().unwrap_or(rel_path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalize_name(stem)
}

/// The parsed index of one kernel's module tree.
#[derive(Debug)]
pub struct ModuleTree {
    pub dir: PathBuf,
    /// Relative module path → relative paths of its dependencies.
    deps: BTreeMap<String, Vec<String>>,
    /// Module name → relative path.
    by_name: HashMap<String, String>,
    builtin: BTreeSet<String>,
    /// Module name → names (or aliases) of its soft dependencies.
    softdeps: HashMap<String, Vec<String>>,
    /// Exact (non-wildcard) alias → module names.
    aliases: HashMap<String, Vec<String>>,
}

/// What the image gets from the tree.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ModuleSelection {
    /// Modules of the load list that are loadable, in list order (→ /etc/kindling/modules.list).
    pub load: Vec<String>,
    /// Drivers of the drivers list that are loadable (carried for modalias loading).
    pub drivers: Vec<String>,
    /// Listed modules compiled into the kernel (nothing to load).
    pub builtin: Vec<String>,
    /// Listed modules this kernel does not have at all.
    pub absent: Vec<String>,
    /// Relative paths of every module file to copy (closure), sorted.
    pub files: BTreeSet<String>,
}

impl ModuleTree {
    pub fn open(dir: &Path) -> Result<Self, BuildError> {
        let dep_path = dir.join("modules.dep");
        let dep_text = fs::read_to_string(&dep_path).map_err(BuildError::io("read", &dep_path))?;
        let mut deps = BTreeMap::new();
        let mut by_name = HashMap::new();
        for (index, line) in dep_text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let Some((module, rest)) = line.split_once(':') else {
                return Err(BuildError::ModuleIndexParse {
                    file: dep_path,
                    line: index + 1,
                    reason: "expected `path.ko: dependency.ko …`".to_string(),
                });
            };
            let module = module.trim().to_string();
            by_name.insert(name_of(&module), module.clone());
            deps.insert(
                module,
                rest.split_whitespace().map(str::to_string).collect(),
            );
        }
        let builtin = read_optional(&dir.join("modules.builtin"))?
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(name_of)
            .collect();
        let mut softdeps: HashMap<String, Vec<String>> = HashMap::new();
        for line in read_optional(&dir.join("modules.softdep"))?.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else { continue };
            let wanted = words
                .filter(|w| *w != "pre:" && *w != "post:")
                .map(str::to_string);
            softdeps
                .entry(normalize_name(module))
                .or_default()
                .extend(wanted);
        }
        let mut aliases: HashMap<String, Vec<String>> = HashMap::new();
        for line in read_optional(&dir.join("modules.alias"))?.lines() {
            let mut words = line.split_whitespace();
            if let (Some("alias"), Some(alias), Some(module)) =
                (words.next(), words.next(), words.next())
            {
                if !alias.contains(['*', '?', '[']) {
                    aliases
                        .entry(alias.to_string())
                        .or_default()
                        .push(normalize_name(module));
                }
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            deps,
            by_name,
            builtin,
            softdeps,
            aliases,
        })
    }

    /// Resolves the load list and the drivers list, and their closure.
    pub fn select(&self, load: &[String], drivers: &[String]) -> ModuleSelection {
        let mut selection = ModuleSelection::default();
        let mut seen = BTreeSet::new();
        let lists = load
            .iter()
            .map(|n| (n, true))
            .chain(drivers.iter().map(|n| (n, false)));
        for (name, at_boot) in lists {
            if !seen.insert(name.clone()) {
                continue;
            }
            if self.by_name.contains_key(name) {
                if at_boot {
                    selection.load.push(name.clone());
                } else {
                    selection.drivers.push(name.clone());
                }
                self.add_closure(name, &mut selection.files);
            } else if self.builtin.contains(name) {
                selection.builtin.push(name.clone());
            } else {
                selection.absent.push(name.clone());
            }
        }
        selection
    }

    fn add_closure(&self, name: &str, files: &mut BTreeSet<String>) {
        let mut pending = vec![name.to_string()];
        while let Some(name) = pending.pop() {
            let Some(path) = self.by_name.get(&name) else {
                continue;
            };
            if !files.insert(path.clone()) {
                continue;
            }
            for dep in self.deps.get(path).into_iter().flatten() {
                pending.push(name_of(dep));
            }
            // Soft dependencies may name an alias (`crypto-crc32c`): every
            // module providing it is included, as modprobe would try them.
            for wanted in self.softdeps.get(&name).into_iter().flatten() {
                if let Some(providers) = self.aliases.get(wanted) {
                    pending.extend(providers.iter().cloned());
                } else {
                    pending.push(normalize_name(wanted));
                }
            }
        }
    }

    /// The index files for the selected set, as (file name, contents).
    /// Lines for modules outside the set are dropped; `modules.builtin` is
    /// kept whole (it describes the kernel, not the set).
    pub fn filtered_indexes(
        &self,
        selection: &ModuleSelection,
    ) -> Result<Vec<(String, Vec<u8>)>, BuildError> {
        let included: BTreeSet<String> = selection.files.iter().map(|p| name_of(p)).collect();
        let mut out = Vec::new();
        let dep: String = self
            .deps
            .iter()
            .filter(|(path, _)| selection.files.contains(*path))
            .map(|(path, deps)| format!("{path}: {}\n", deps.join(" ")).replace(": \n", ":\n"))
            .collect();
        out.push(("modules.dep".to_string(), dep.into_bytes()));
        let keep_line = |file: &str, module_word: usize| -> Result<Vec<u8>, BuildError> {
            let text = read_optional(&self.dir.join(file))?;
            let kept: String = text
                .lines()
                .filter(|line| {
                    line.split_whitespace()
                        .nth(module_word)
                        .is_some_and(|word| included.contains(&name_of(word)))
                })
                .map(|line| format!("{line}\n"))
                .collect();
            Ok(kept.into_bytes())
        };
        out.push(("modules.alias".to_string(), keep_line("modules.alias", 2)?));
        out.push((
            "modules.softdep".to_string(),
            keep_line("modules.softdep", 1)?,
        ));
        out.push(("modules.order".to_string(), keep_line("modules.order", 0)?));
        out.push((
            "modules.builtin".to_string(),
            read_optional(&self.dir.join("modules.builtin"))?.into_bytes(),
        ));
        Ok(out)
    }

    /// Firmware file names the selected modules declare (sorted, unique).
    pub fn firmware_names(
        &self,
        selection: &ModuleSelection,
    ) -> Result<BTreeSet<String>, BuildError> {
        let mut names = BTreeSet::new();
        for rel in &selection.files {
            let path = self.dir.join(rel);
            let raw = fs::read(&path).map_err(BuildError::io("read module", &path))?;
            let data = if rel.ends_with(".ko.zst") {
                zstd::decode_all(raw.as_slice())
                    .map_err(BuildError::io("decompress module", &path))?
            } else {
                raw
            };
            names.extend(elf::module_firmware(&data));
        }
        Ok(names)
    }
}

/// Where each firmware name was found under `firmware_dir` (possibly
/// compressed, as the kernel's loader also accepts `.xz`/`.zst`), and which
/// names are absent.
pub fn locate_firmware(
    firmware_dir: &Path,
    names: &BTreeSet<String>,
) -> (Vec<(String, PathBuf)>, Vec<String>) {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        let hit = ["", ".zst", ".xz"].iter().find_map(|ext| {
            let candidate = firmware_dir.join(format!("{name}{ext}"));
            candidate
                .is_file()
                .then(|| (format!("{name}{ext}"), candidate))
        });
        match hit {
            Some(hit) => found.push(hit),
            None => missing.push(name.clone()),
        }
    }
    (found, missing)
}

fn read_optional(path: &Path) -> Result<String, BuildError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(err) => Err(BuildError::Io {
            action: "read",
            path: path.to_path_buf(),
            source: err,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn tree(files: &[(&str, &str)]) -> (tempfile::TempDir, ModuleTree) {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        let tree = ModuleTree::open(dir.path()).unwrap();
        (dir, tree)
    }

    #[test]
    fn list_parsing_drops_comments_and_normalizes_dashes() {
        assert_eq!(
            parse_list("# nic\nusb-storage  # disk\n\n  e1000\n"),
            ["usb_storage", "e1000"]
        );
    }

    #[test]
    fn default_lists_do_not_overlap() {
        let load: BTreeSet<String> = parse_list(DEFAULT_MODULES_LIST).into_iter().collect();
        let drivers: BTreeSet<String> = parse_list(DEFAULT_DRIVERS_LIST).into_iter().collect();
        assert!(
            load.is_disjoint(&drivers),
            "{:?}",
            load.intersection(&drivers).collect::<Vec<_>>()
        );
        assert!(drivers.contains("virtio_net") && drivers.contains("e1000e"));
    }

    #[test]
    fn the_default_list_loads_crc32c_before_nf_tables() {
        let list = parse_list(DEFAULT_MODULES_LIST);
        let crc = list.iter().position(|m| m == "crc32c_generic").unwrap();
        let nft = list.iter().position(|m| m == "nf_tables").unwrap();
        assert!(crc < nft);
    }

    #[test]
    fn closure_follows_deps_and_softdep_aliases() {
        let (_dir, tree) = tree(&[
            (
                "modules.dep",
                "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko\n\
                 kernel/fs/jbd2/jbd2.ko:\nkernel/fs/mbcache.ko:\n\
                 kernel/crypto/crc32c_generic.ko:\nkernel/drivers/unused.ko:\n",
            ),
            ("modules.softdep", "softdep ext4 pre: crypto-crc32c\n"),
            (
                "modules.alias",
                "alias crypto-crc32c crc32c_generic\nalias pci:v*d* unused\n",
            ),
            ("modules.builtin", "kernel/fs/vfat/vfat.ko\n"),
        ]);
        let selection = tree.select(
            &parse_list("ext4\nvfat\nnosuch\next4\n"),
            &parse_list("jbd2\nvfat\n"),
        );
        assert_eq!(selection.load, ["ext4"]);
        assert_eq!(selection.drivers, ["jbd2"]);
        assert_eq!(selection.builtin, ["vfat"]);
        assert_eq!(selection.absent, ["nosuch"]);
        let files: Vec<&str> = selection.files.iter().map(String::as_str).collect();
        assert_eq!(
            files,
            [
                "kernel/crypto/crc32c_generic.ko",
                "kernel/fs/ext4/ext4.ko",
                "kernel/fs/jbd2/jbd2.ko",
                "kernel/fs/mbcache.ko"
            ]
        );
        let indexes = tree.filtered_indexes(&selection).unwrap();
        let dep = String::from_utf8(indexes[0].1.clone()).unwrap();
        assert!(!dep.contains("unused"), "{dep}");
        assert!(dep.contains("kernel/fs/jbd2/jbd2.ko:\n"), "{dep}");
        let alias = String::from_utf8(indexes[1].1.clone()).unwrap();
        assert_eq!(alias, "alias crypto-crc32c crc32c_generic\n");
    }

    #[test]
    fn a_malformed_modules_dep_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("modules.dep"), "a.ko:\nbroken line\n").unwrap();
        let err = ModuleTree::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("modules.dep:2"), "{err}");
    }
}
