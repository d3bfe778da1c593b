//! Which boot program a network-booting client gets, by firmware: BIOS →
//! `undionly.kpxe` over TFTP, UEFI → `snponly.efi` (or `ipxe.efi`) over TFTP,
//! UEFI HTTP boot → the same EFI program by HTTP URL, iPXE → its per-MAC
//! script.
//!
//! Owns that decision and the iPXE-specific DHCP option bytes. It never looks
//! at profiles: whether a MAC may boot at all is the caller's policy.

use super::client::{ClientFacts, Firmware};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootFile {
    /// A file name relative to the TFTP root, with `siaddr` = the appliance.
    Tftp(String),
    /// A full URL (UEFI HTTP boot and iPXE).
    Http(String),
}

impl BootFile {
    pub fn as_str(&self) -> &str {
        match self {
            BootFile::Tftp(s) | BootFile::Http(s) => s,
        }
    }
}

/// iPXE encapsulated options (option 175) with setting 176 "no-pxedhcp" = 1:
/// iPXE then skips its ~3 s wait for a proxyDHCP offer.
pub const IPXE_ENCAPSULATED_NO_PXEDHCP: [u8; 3] = [0xb0, 0x01, 0x01];

/// PXE vendor options (option 43) for proxyDHCP replies: discovery control
/// (sub-option 6) = 8, "boot the file in this reply, skip boot-server
/// discovery", then END.
pub const PXE_VENDOR_USE_BOOTFILE: [u8; 4] = [0x06, 0x01, 0x08, 0xff];

/// The boot file names the TFTP/HTTP servers offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootFiles {
    pub bios: String,
    /// For UEFI PXE and UEFI HTTP boot alike.
    pub uefi: String,
}

impl Default for BootFiles {
    fn default() -> Self {
        Self {
            bios: "undionly.kpxe".into(),
            uefi: "snponly.efi".into(),
        }
    }
}

impl BootFiles {
    /// Prefer `snponly.efi` (drives the NIC through the firmware's own SNP
    /// driver, so it works on any NIC the firmware knows; an HTTP-booting
    /// firmware has just proven its driver works, and in QEMU snponly.efi
    /// reached the payload ~4 s sooner than ipxe.efi) but fall back to
    /// `ipxe.efi` when the boot directory lacks it.
    pub fn from_dir(dir: &std::path::Path) -> Self {
        let mut files = Self::default();
        if !dir.join(&files.uefi).is_file() && dir.join("ipxe.efi").is_file() {
            files.uefi = "ipxe.efi".into();
        }
        files
    }
}

/// `base_url` ends with `/`.
pub fn choose(facts: &ClientFacts, files: &BootFiles, base_url: &str) -> Option<BootFile> {
    if facts.is_ipxe {
        return Some(BootFile::Http(format!("{base_url}boot/{}.ipxe", facts.mac)));
    }
    match facts.firmware {
        Firmware::Bios => Some(BootFile::Tftp(files.bios.clone())),
        Firmware::Uefi => Some(BootFile::Tftp(files.uefi.clone())),
        Firmware::UefiHttp => Some(BootFile::Http(format!("{base_url}boot/{}", files.uefi))),
        Firmware::Other | Firmware::None => None,
    }
}
