//! Reads what the build needs to know from ELF and PE files: is a binary a
//! static x86-64 executable (or which interpreter and libraries it needs),
//! which firmware a kernel module names, and where a UKI stub's sections end.
//!
//! It only reads headers and named sections; it never modifies a file.

use std::fs::File;
use std::path::Path;

use object::elf;
use object::read::elf::{Dyn, ElfFile64, FileHeader, ProgramHeader};
use object::read::pe::PeFile64;
use object::{Endianness, Object, ObjectSection, ReadCache};

/// What an executable or shared library needs from the dynamic loader.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DynamicNeeds {
    /// PT_INTERP: the loader the kernel starts first (executables only).
    pub interpreter: Option<String>,
    /// DT_NEEDED: shared libraries, by soname.
    pub needed: Vec<String>,
}

impl DynamicNeeds {
    pub fn is_static(&self) -> bool {
        self.interpreter.is_none() && self.needed.is_empty()
    }
}

/// Inspects an x86-64 ELF executable or library; `Err` carries a reason for
/// the operator.
pub fn dynamic_needs(path: &Path) -> Result<DynamicNeeds, String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let cache = ReadCache::new(file);
    let elf = ElfFile64::<Endianness, _>::parse(&cache)
        .map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
    let endian = elf.endian();
    let header = elf.elf_header();
    if header.e_machine(endian) != elf::EM_X86_64 {
        return Err(format!(
            "ELF machine {} is not x86-64",
            header.e_machine(endian)
        ));
    }
    let kind = header.e_type(endian);
    if kind != elf::ET_EXEC && kind != elf::ET_DYN {
        return Err(format!("ELF type {kind} is not an executable"));
    }
    let mut needs = DynamicNeeds::default();
    for segment in elf.elf_program_headers() {
        if segment.p_type(endian) == elf::PT_INTERP {
            let bytes = segment
                .data(endian, &cache)
                .map_err(|_| "unreadable PT_INTERP".to_string())?;
            let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
            needs.interpreter = Some(String::from_utf8_lossy(&bytes[..end]).into_owned());
        }
    }
    let sections = elf.elf_section_table();
    if let Some((entries, link)) = sections
        .dynamic(endian, &cache)
        .map_err(|e| e.to_string())?
    {
        let strings = sections
            .strings(endian, &cache, link)
            .map_err(|e| e.to_string())?;
        for entry in entries {
            if entry.tag32(endian) == Some(elf::DT_NEEDED) {
                let offset: u64 = entry.d_val(endian);
                let offset = u32::try_from(offset)
                    .map_err(|_| "DT_NEEDED offset out of range".to_string())?;
                let name = strings
                    .get(offset)
                    .map_err(|_| "unreadable DT_NEEDED name".to_string())?;
                needs
                    .needed
                    .push(String::from_utf8_lossy(name).into_owned());
            }
        }
    }
    Ok(needs)
}

/// The `firmware=` entries of a kernel module's `.modinfo` section.
/// A module without the section (or not an ELF file) names no firmware.
pub fn module_firmware(data: &[u8]) -> Vec<String> {
    let Ok(file) = object::File::parse(data) else {
        return Vec::new();
    };
    let Some(section) = file.section_by_name(".modinfo") else {
        return Vec::new();
    };
    let Ok(bytes) = section.data() else {
        return Vec::new();
    };
    bytes
        .split(|b| *b == 0)
        .filter_map(|field| field.strip_prefix(b"firmware="))
        .map(|name| String::from_utf8_lossy(name).into_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// Where new sections may be placed in a PE image (the UKI stub).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeLayout {
    pub image_base: u64,
    pub section_alignment: u64,
    /// First free relative virtual address after the last section, aligned.
    pub first_free_rva: u64,
}

pub fn pe_layout(data: &[u8]) -> Result<PeLayout, String> {
    let pe = PeFile64::parse(data).map_err(|e| e.to_string())?;
    let optional = &pe.nt_headers().optional_header;
    let image_base = optional.image_base.get(object::LittleEndian);
    let section_alignment = u64::from(optional.section_alignment.get(object::LittleEndian)).max(1);
    let mut end = 0u64;
    for section in pe.section_table().iter() {
        let start = u64::from(section.virtual_address.get(object::LittleEndian));
        let size = u64::from(section.virtual_size.get(object::LittleEndian));
        end = end.max(start + size);
    }
    Ok(PeLayout {
        image_base,
        section_alignment,
        first_free_rva: align_up(end, section_alignment),
    })
}

pub fn align_up(value: u64, alignment: u64) -> u64 {
    value.div_ceil(alignment) * alignment
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_static_rust_binary_and_a_dynamic_system_binary_are_told_apart() {
        // The test binary itself is built with +crt-static (.cargo/config.toml).
        let me = std::env::current_exe().unwrap();
        assert!(dynamic_needs(&me).unwrap().is_static());
        // Debian's coreutils are dynamically linked against libc.
        let ls = Path::new("/bin/ls");
        if ls.exists() {
            let needs = dynamic_needs(ls).unwrap();
            assert!(needs.interpreter.unwrap_or_default().contains("ld-linux"));
            assert!(
                needs.needed.iter().any(|n| n.starts_with("libc.so")),
                "{:?}",
                needs.needed
            );
        }
    }

    #[test]
    fn a_text_file_is_not_an_executable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("script");
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        assert!(dynamic_needs(&path).is_err());
    }

    #[test]
    fn the_systemd_stub_has_a_layout() {
        let stub = Path::new("/usr/lib/systemd/boot/efi/linuxx64.efi.stub");
        let Ok(data) = std::fs::read(stub) else {
            eprintln!(
                "skipped: {} not installed (apt-get install systemd-boot-efi)",
                stub.display()
            );
            return;
        };
        let layout = pe_layout(&data).unwrap();
        assert!(layout.section_alignment >= 512);
        assert_eq!(layout.first_free_rva % layout.section_alignment, 0);
        assert!(layout.first_free_rva > 0);
    }
}
