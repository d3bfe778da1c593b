//! An appliance's ESP as the update tests need it: booted from
//! `kindling-1+2-1.efi` (on trial), an older blessed fallback beside it,
//! and the boot blessed by its gate.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kindling_update::agent::{run_boot, AgentPaths, Gate, Mode, UpdateStatus};
use std::path::Path;
use std::time::Duration;

/// The booted entry's name, as systemd-boot reports it.
pub const BOOTED: &str = "kindling-1+2-1.efi";

/// Makes `dir/esp` (with `extra` files beside the two slots) and
/// `dir/spool`, runs the boot duty with a gate that passes, and returns
/// the paths and the status it wrote.
pub fn blessed_appliance(dir: &Path, extra: &[&str]) -> (AgentPaths, UpdateStatus) {
    let linux = dir.join("esp/EFI/Linux");
    std::fs::create_dir_all(&linux).unwrap();
    std::fs::create_dir_all(dir.join("spool")).unwrap();
    for e in [BOOTED, "kindling-0.9.efi"].iter().chain(extra) {
        std::fs::write(linux.join(e), e).unwrap();
    }
    let var = dir.join("LoaderEntrySelected");
    // efivarfs: 4 attribute bytes, then UTF-16LE with a NUL.
    let mut bytes = vec![6, 0, 0, 0];
    for u in BOOTED.encode_utf16().chain([0]) {
        bytes.extend(u.to_le_bytes());
    }
    std::fs::write(&var, bytes).unwrap();
    let paths = AgentPaths {
        esp: dir.join("esp"),
        loader_entry: var,
        status: dir.join("update.json"),
    };
    let status = run_boot(&paths, Duration::ZERO, || Gate::Ready).status;
    assert_eq!(status.mode, Mode::Blessed);
    (paths, status)
}

/// Every file in the ESP's slot directory with its bytes, sorted by name.
pub fn slot_files(paths: &AgentPaths) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(paths.esp.join("EFI/Linux"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}
