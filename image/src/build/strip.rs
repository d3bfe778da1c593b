//! Drops debug sections from extra binaries (Go builds such as OpenBao ship
//! with DWARF: half of their compressed size) before they go into the
//! initramfs. Only `.debug*`/`.zdebug*` sections are removed
//! (`objcopy --strip-debug`); code, symbols the runtime reads, and build ids
//! stay. The operator's file is never modified: the stripped copy is written
//! to the build's work directory.

use std::fs::File;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ReadCache};

use super::error::BuildError;
use super::tool::OBJCOPY;

/// True when the ELF file carries DWARF sections. Sections loaded at run
/// time (address ≠ 0, e.g. `.debug_gdb_scripts`) are not debug info and
/// objcopy keeps them.
pub fn has_debug_sections(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let cache = ReadCache::new(file);
    let Ok(elf) = object::File::parse(&cache) else {
        return false;
    };
    elf.sections()
        .filter(|section| section.address() == 0)
        .any(|section| {
            section
                .name()
                .is_ok_and(|name| name.starts_with(".debug") || name.starts_with(".zdebug"))
        })
}

/// Writes a copy of `source` without debug sections into `work_dir` and
/// returns its path.
pub fn strip_debug(source: &Path, name: &str, work_dir: &Path) -> Result<PathBuf, BuildError> {
    let out = work_dir.join(format!("stripped-{name}"));
    let (from, to) = (source.display().to_string(), out.display().to_string());
    OBJCOPY.run(
        &format!("removing debug sections from --extra-bin {name}"),
        ["--strip-debug", from.as_str(), to.as_str()],
        &[],
        None,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn debug_sections_are_found_and_removed() {
        // Test binaries are built with `debug = 1` (root Cargo.toml).
        let me = std::env::current_exe().unwrap();
        assert!(has_debug_sections(&me));
        let dir = tempfile::tempdir().unwrap();
        let stripped = strip_debug(&me, "me", dir.path()).unwrap();
        assert!(!has_debug_sections(&stripped));
        assert!(
            std::fs::metadata(&stripped).unwrap().len() < std::fs::metadata(&me).unwrap().len()
        );
    }
}
