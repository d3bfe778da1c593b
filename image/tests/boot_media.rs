//! The boot media `kindling image build` writes, read back with the tools
//! firmware-facing layouts are checked with (sfdisk, mtools, xorriso) and
//! the `object` PE reader: the hybrid ISO has BIOS and UEFI El Torito
//! entries, the raw disk has the GPT, ESP contents (systemd-boot, UKI in slot
//! A with boot counting) and the KINDLING-DATA ext4 partition, and the PXE
//! script names the files beside it. Booting them is the lab's job
//! (tests/scenarios).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::{fixture, have_minisign, kindling, stderr};
use object::{Object, ObjectSection};

fn tool(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have_tools() -> bool {
    [
        "grub-mkrescue",
        "xorriso",
        "mkfs.vfat",
        "mkfs.ext4",
        "mcopy",
        "sfdisk",
        "objcopy",
    ]
    .iter()
    .all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t}")])
            .output()
            .is_ok_and(|o| o.status.success())
    }) && Path::new("/usr/lib/systemd/boot/efi/linuxx64.efi.stub").exists()
}

#[test]
fn iso_disk_and_pxe_have_the_promised_layout() {
    if !have_minisign() || !have_tools() {
        eprintln!("skipped: minisign, grub/xorriso/mtools/dosfstools/e2fsprogs/fdisk or systemd-boot-efi missing (run tests/install-deps)");
        return;
    }
    let fx = fixture();
    let out = fx.path("out");
    let mut args = fx.args(&out);
    let i = args.iter().position(|a| a == "--formats").unwrap();
    args[i + 1] = "initramfs,iso,disk,pxe".into();
    args.extend(["--data-size-mib".into(), "32".into()]);
    let output = kindling(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let kernel = fs::read(fx.path("boot/bzImage")).unwrap();
    let initramfs = fs::read(out.join("initramfs.cpio.zst")).unwrap();

    // ISO: both El Torito platforms, kernel + initramfs + serial console in grub.cfg.
    let iso = out.join("kindling.iso").display().to_string();
    let torito = tool("xorriso", &["-indev", &iso, "-report_el_torito", "plain"]);
    assert!(
        torito.contains("BIOS") && torito.contains("UEFI"),
        "{torito}"
    );
    let files = tool("xorriso", &["-indev", &iso, "-find", "/boot", "-type", "f"]);
    assert!(
        files.contains("/boot/vmlinuz") && files.contains("/boot/initramfs.cpio.zst"),
        "{files}"
    );
    // The installer's files, found by its own ISO reader as it reads the
    // boot medium: the UKI's rest (stub, small sections, symbols) and sum (its kernel and initramfs are
    // the ones GRUB boots: the ISO stores them once) and systemd-boot.
    let medium = fs::File::open(&iso).unwrap();
    assert_eq!(
        kindling_install::iso::volume_id(&medium).as_deref(),
        Some(kindling_install::iso::VOLUME_ID)
    );
    assert!(!files.contains("/boot/kindling.efi'"), "{files}");
    let parts = kindling_install::uki::OnMedium::find(&medium)
        .unwrap()
        .expect("the ISO carries the UKI's parts");
    let (rest, sum) = parts.read(&medium).unwrap();
    let published = fs::read(out.join("kindling.efi")).unwrap();
    assert_eq!(sum.size, published.len() as u64);
    assert!(
        rest.len() < 256 * 1024,
        "the rest is the stub and small sections, not {} bytes",
        rest.len()
    );
    assert_eq!(
        kindling_install::iso::uki_version(&rest).as_deref(),
        Some("1.0.0-test"),
        "the version check reads the .osrel in the rest"
    );
    // Assembled as the installer does: byte for byte the published UKI
    // (the raw disk's slot A).
    let assembled = parts.assemble(&medium, &rest, &sum).unwrap();
    assert!(
        assembled == published,
        "the UKI assembled from the ISO is not the published one"
    );
    // A kernel changed on the medium (one byte, same size) is refused,
    // naming it; so is another initramfs.
    let bad_iso = fx.path("bad.iso");
    fs::copy(&iso, &bad_iso).unwrap();
    let bad = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&bad_iso)
        .unwrap();
    let mut byte = [0u8; 1];
    let at = parts.linux.offset + parts.linux.size / 2;
    std::os::unix::fs::FileExt::read_exact_at(&bad, &mut byte, at).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&bad, &[byte[0] ^ 0xff], at).unwrap();
    let err = parts.assemble(&bad, &rest, &sum).unwrap_err().to_string();
    assert!(
        err.contains("/boot/vmlinuz (the UKI's .linux) has sha256"),
        "{err}"
    );
    std::os::unix::fs::FileExt::write_all_at(&bad, &byte, at).unwrap();
    let at = parts.initrd.offset + 100;
    std::os::unix::fs::FileExt::read_exact_at(&bad, &mut byte, at).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&bad, &[byte[0] ^ 1], at).unwrap();
    let err = parts.assemble(&bad, &rest, &sum).unwrap_err().to_string();
    assert!(
        err.contains("/boot/initramfs.cpio.zst (the UKI's .initrd) has sha256"),
        "{err}"
    );
    let boot = kindling_install::iso::find(&medium, kindling_install::iso::SYSTEMD_BOOT_PATH)
        .unwrap()
        .expect("the ISO carries systemd-boot");
    assert_eq!(
        boot.size,
        fs::metadata("/usr/lib/systemd/boot/efi/systemd-bootx64.efi")
            .unwrap()
            .len()
    );
    let cfg = fx.path("grub.cfg");
    tool(
        "xorriso",
        &[
            "-osirrox",
            "on",
            "-indev",
            &iso,
            "-extract",
            "/boot/grub/grub.cfg",
            &cfg.display().to_string(),
        ],
    );
    let cfg = fs::read_to_string(cfg).unwrap();
    assert!(
        cfg.contains("linux /boot/vmlinuz console=tty0 console=ttyS0,115200"),
        "{cfg}"
    );
    assert!(cfg.contains("serial --unit=0 --speed=115200"), "{cfg}");

    // Disk: GPT with the ESP and the data partition.
    let img = out.join("kindling.img");
    let table: serde_json::Value =
        serde_json::from_str(&tool("sfdisk", &["--json", &img.display().to_string()])).unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    assert_eq!(table["partitiontable"]["label"], "gpt");
    assert_eq!(parts.len(), 2);
    assert_eq!(parts[0]["type"], "C12A7328-F81F-11D2-BA4B-00A0C93EC93B");
    assert_eq!(parts[1]["type"], "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    assert_eq!(parts[1]["name"], "KINDLING-DATA");
    let esp_offset = parts[0]["start"].as_u64().unwrap() * 512;
    let data_offset = parts[1]["start"].as_u64().unwrap() * 512;

    // ESP: systemd-boot as the removable-media loader, loader.conf, the UKI in slot A.
    let esp = format!("{}@@{esp_offset}", img.display());
    let listing = tool("mdir", &["-i", &esp, "-b", "-/", "::/"]);
    assert!(listing.contains("::/EFI/BOOT/BOOTX64.EFI"), "{listing}");
    assert!(
        listing.contains("::/EFI/Linux/kindling-1.0.0-test+3-0.efi"),
        "{listing}"
    );
    let loader = tool("mtype", &["-i", &esp, "::/loader/loader.conf"]);
    assert!(loader.contains("default kindling-*"), "{loader}");
    let uki_path = fx.path("slot-a.efi");
    tool(
        "mcopy",
        &[
            "-i",
            &esp,
            "::/EFI/Linux/kindling-1.0.0-test+3-0.efi",
            &uki_path.display().to_string(),
        ],
    );
    let uki = fs::read(&uki_path).unwrap();
    let pe = object::File::parse(uki.as_slice()).unwrap();
    let section = |name: &str| {
        pe.section_by_name(name)
            .unwrap_or_else(|| panic!("UKI has no {name}"))
            .data()
            .unwrap()
            .to_vec()
    };
    assert_eq!(&section(".linux")[..kernel.len()], kernel.as_slice());
    assert_eq!(&section(".initrd")[..initramfs.len()], initramfs.as_slice());
    assert!(String::from_utf8_lossy(&section(".cmdline"))
        .starts_with("console=tty0 console=ttyS0,115200"));
    assert!(String::from_utf8_lossy(&section(".osrel")).contains("VERSION_ID=1.0.0-test"));

    // Data partition: ext4 (superblock magic 0xEF53 at 1024+0x38), label at 1024+0x78.
    let disk = fs::read(&img).unwrap();
    let superblock = &disk[data_offset as usize + 1024..data_offset as usize + 2048];
    assert_eq!(&superblock[0x38..0x3a], &[0x53, 0xef]);
    assert_eq!(&superblock[0x78..0x78 + 13], b"KINDLING-DATA");

    // PXE: the script loads the two files beside it.
    let script = fs::read_to_string(out.join("pxe/boot.ipxe")).unwrap();
    assert!(script.starts_with("#!ipxe\n"), "{script}");
    assert!(
        script
            .contains("kernel vmlinuz initrd=initramfs.cpio.zst console=tty0 console=ttyS0,115200"),
        "{script}"
    );
    assert!(script.contains("initrd initramfs.cpio.zst"), "{script}");
    assert_eq!(fs::read(out.join("pxe/vmlinuz")).unwrap(), kernel);
    assert_eq!(
        fs::read(out.join("pxe/initramfs.cpio.zst")).unwrap(),
        initramfs
    );

    // The manifest lists every artifact with its real size.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let listed: Vec<&str> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        [
            "initramfs.cpio.zst",
            "vmlinuz",
            "kindling.iso",
            "kindling.img",
            "kindling.efi",
            "pxe/boot.ipxe",
            "pxe/initramfs.cpio.zst",
            "pxe/vmlinuz"
        ]
    );
    for artifact in manifest["artifacts"].as_array().unwrap() {
        let len = fs::metadata(out.join(artifact["path"].as_str().unwrap()))
            .unwrap()
            .len();
        assert_eq!(artifact["size"], len);
    }
    // Nothing but the published artifacts is left in the output directory.
    let mut names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "initramfs.cpio.zst",
            "kindling.efi",
            "kindling.img",
            "kindling.iso",
            "manifest.json",
            "pxe",
            "vmlinuz"
        ]
    );
}
