//! kindling-image: the library behind the operator CLI `kindling`.
//!
//! `build` turns the workspace's binaries, a kernel and signed site overlays
//! into boot media (initramfs, ISO, raw GPT disk with a UKI, PXE artifacts).
//! It runs on the operator's build machine only: it may shell out to host
//! tools (grub-mkrescue, mkfs.*, objcopy, sfdisk, mtools), which appliance
//! code never does.

pub mod build;
