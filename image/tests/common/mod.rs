//! Shared fixtures for the image builder's integration tests: a small, fast
//! set of real inputs in a temp dir (a static ELF as init and kindlingd, a
//! bzImage-shaped kernel file, a module tree with modules.dep, the lab
//! overlay packed by `kindling overlay build` and signed with keys made by
//! the real `minisign` CLI) and helpers to run the real
//! `kindling` binary and read the initramfs it writes.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const KERNEL_VERSION: &str = "6.6.6-kindling-test";
pub const EPOCH: &str = "1700000000";

pub struct Fixture {
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Arguments for a fast initramfs-only build from the fixture's inputs.
    pub fn args(&self, out: &Path) -> Vec<String> {
        let p = |rel: &str| self.path(rel).display().to_string();
        vec![
            "image".into(),
            "build".into(),
            "--site".into(),
            p("site/lab.kovl"),
            "--trust-key".into(),
            p("keys/test.pub"),
            "--out".into(),
            out.display().to_string(),
            "--kernel".into(),
            p("boot/bzImage"),
            "--modules-dir".into(),
            p(&format!("modules/{KERNEL_VERSION}")),
            "--modules-list".into(),
            p("modules.list"),
            "--drivers-list".into(),
            p("drivers.list"),
            "--firmware-dir".into(),
            p("firmware"),
            "--bin-dir".into(),
            p("bin"),
            "--ca-bundle".into(),
            p("ca.crt"),
            "--ipxe-dir".into(),
            p("ipxe"),
            // A stand-in for the installer's mke2fs (the host's brings
            // its shared libraries, which differ between machines).
            "--mke2fs".into(),
            p("bin/kindlingd"),
            "--version".into(),
            "1.0.0-test".into(),
            "--formats".into(),
            "initramfs".into(),
            "--zstd-level".into(),
            "3".into(),
        ]
    }
}

/// True when the `minisign` CLI is installed (tests/install-deps installs it).
pub fn have_minisign() -> bool {
    Command::new("minisign").arg("-v").output().is_ok()
}

pub fn kindling(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args(args)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .expect("run kindling")
}

fn write(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

/// A file with the x86 boot protocol header fields the builder reads.
fn fake_bzimage() -> Vec<u8> {
    let mut image = vec![0u8; 0x1000];
    image[0x202..0x206].copy_from_slice(b"HdrS");
    image[0x20E..0x210].copy_from_slice(&0x200u16.to_le_bytes());
    let version = format!("{KERNEL_VERSION} (test@kindling) #1 SMP\0");
    image[0x400..0x400 + version.len()].copy_from_slice(version.as_bytes());
    image
}

/// An ELF relocatable whose `.modinfo` section names `firmware`, made by
/// binutils the way a real module carries it.
fn module_with_firmware(dir: &Path, firmware: &str) -> Vec<u8> {
    let info = dir.join("modinfo.bin");
    fs::write(
        &info,
        format!("license=GPL\0firmware={firmware}\0name=fakenic\0"),
    )
    .unwrap();
    let out = dir.join("fakenic.ko");
    let status = Command::new("objcopy")
        .args([
            "-I",
            "binary",
            "-O",
            "elf64-x86-64",
            "--rename-section",
            ".data=.modinfo",
        ])
        .arg(&info)
        .arg(&out)
        .status()
        .expect("objcopy (binutils) is needed to make a test module");
    assert!(status.success());
    fs::read(out).unwrap()
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Any static x86-64 executable stands in for init and kindlingd: Debian's
    // busybox-static is small (2 MB, fast tests); the workspace's own
    // `kindling` (static, but ~50 MB in debug builds) when busybox is absent.
    let busybox = Path::new("/bin/busybox");
    let exe = if busybox.is_file() {
        fs::read(busybox).unwrap()
    } else {
        fs::read(env!("CARGO_BIN_EXE_kindling")).unwrap()
    };
    write(&root.join("bin/kindling-init"), &exe);
    write(&root.join("bin/kindlingd"), &exe);
    write(&root.join("bin/kindling-node"), &exe);
    write(&root.join("boot/bzImage"), &fake_bzimage());

    let kmod = root.join(format!("modules/{KERNEL_VERSION}"));
    let modules = [
        ("kernel/crypto/crc32c_generic.ko", b"crc32c".to_vec()),
        ("kernel/lib/libcrc32c.ko", b"libcrc32c".to_vec()),
        ("kernel/net/netfilter/nf_tables.ko", b"nf_tables".to_vec()),
        ("kernel/net/netfilter/nfnetlink.ko", b"nfnetlink".to_vec()),
        ("kernel/net/netfilter/nft_masq.ko", b"nft_masq".to_vec()),
        ("kernel/drivers/net/virtio_net.ko", b"virtio_net".to_vec()),
        (
            "kernel/drivers/net/net_failover.ko",
            b"net_failover".to_vec(),
        ),
        ("kernel/drivers/net/unused_nic.ko", b"unused".to_vec()),
        ("kernel/sound/unused_sound.ko", b"unused".to_vec()),
    ];
    for (rel, bytes) in &modules {
        write(&kmod.join(rel), bytes);
    }
    let fakenic = module_with_firmware(root, "fakevendor/fakenic-1.bin");
    write(&kmod.join("kernel/drivers/net/fakenic.ko"), &fakenic);
    write(
        &kmod.join("modules.dep"),
        b"kernel/crypto/crc32c_generic.ko:\n\
          kernel/lib/libcrc32c.ko:\n\
          kernel/net/netfilter/nf_tables.ko: kernel/lib/libcrc32c.ko kernel/net/netfilter/nfnetlink.ko\n\
          kernel/net/netfilter/nfnetlink.ko:\n\
          kernel/net/netfilter/nft_masq.ko: kernel/net/netfilter/nf_tables.ko kernel/lib/libcrc32c.ko kernel/net/netfilter/nfnetlink.ko\n\
          kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko\n\
          kernel/drivers/net/net_failover.ko:\n\
          kernel/drivers/net/unused_nic.ko:\n\
          kernel/drivers/net/fakenic.ko:\n\
          kernel/sound/unused_sound.ko:\n",
    );
    write(
        &kmod.join("modules.softdep"),
        b"softdep libcrc32c pre: crc32c\n",
    );
    write(
        &kmod.join("modules.alias"),
        b"alias crypto-crc32c crc32c_generic\nalias crc32c crc32c_generic\nalias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_net\nalias pci:v*d*sv*sd*bc02sc00i* unused_nic\n",
    );
    write(&kmod.join("modules.builtin"), b"kernel/fs/ext4/ext4.ko\n");
    write(
        &kmod.join("modules.order"),
        b"kernel/crypto/crc32c_generic.ko\nkernel/net/netfilter/nf_tables.ko\nkernel/sound/unused_sound.ko\n",
    );
    write(
        &root.join("modules.list"),
        b"# test list\ncrc32c_generic\nnft-masq\next4\nno_such_module\n",
    );
    write(&root.join("drivers.list"), b"virtio_net\nfakenic\n");
    write(
        &root.join("firmware/fakevendor/fakenic-1.bin"),
        b"firmware blob",
    );

    write(
        &root.join("ca.crt"),
        b"-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n",
    );
    for name in ["undionly.kpxe", "ipxe.efi", "snponly.efi"] {
        write(&root.join(format!("ipxe/{name}")), name.as_bytes());
    }

    if have_minisign() {
        fs::create_dir_all(root.join("keys")).unwrap();
        // Test-only keys, generated per run without a password (-W).
        for key in ["test", "other"] {
            let status = Command::new("minisign")
                .args(["-G", "-W", "-f", "-p"])
                .arg(root.join(format!("keys/{key}.pub")))
                .arg("-s")
                .arg(root.join(format!("keys/{key}.key")))
                .output()
                .unwrap();
            assert!(
                status.status.success(),
                "minisign -G: {}",
                String::from_utf8_lossy(&status.stderr)
            );
        }
        // Real overlays of the repository's lab site, packed by the real
        // `kindling overlay build`, signed with the test keys.
        fs::create_dir_all(root.join("site")).unwrap();
        overlay(root, "lab", &["--key", &key(root, "test")]);
        overlay(root, "rogue", &["--key", &key(root, "other")]);
        overlay(root, "unsigned", &["--unsigned"]);
    }
    Fixture { dir }
}

fn key(root: &Path, name: &str) -> String {
    root.join(format!("keys/{name}.key")).display().to_string()
}

/// `kindling overlay build overlays/lab --name NAME …` into site/NAME.kovl.
pub fn overlay(root: &Path, name: &str, extra: &[&str]) {
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("../overlays/lab");
    let out = Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args(["overlay", "build"])
        .arg(lab)
        .args(["--name", name, "--version", "1", "--out"])
        .arg(root.join(format!("site/{name}.kovl")))
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kindling overlay build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One entry of a cpio archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    pub ino: u32,
    pub data: Vec<u8>,
}

/// Decompresses and lists `initramfs.cpio.zst`.
pub fn read_initramfs(path: &Path) -> Vec<Entry> {
    let compressed = fs::read(path).unwrap();
    let archive = zstd::decode_all(compressed.as_slice()).unwrap();
    let mut rest = archive.as_slice();
    let mut entries = Vec::new();
    loop {
        let mut reader = cpio::NewcReader::new(rest).unwrap();
        if reader.entry().is_trailer() {
            break;
        }
        let e = reader.entry();
        let mut entry = Entry {
            name: e.name().to_string(),
            mode: e.mode(),
            uid: e.uid(),
            gid: e.gid(),
            mtime: e.mtime(),
            ino: e.ino(),
            data: Vec::new(),
        };
        reader.read_to_end(&mut entry.data).unwrap();
        entries.push(entry);
        rest = reader.finish().unwrap();
    }
    entries
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs the real `kindling` binary in `dir` (relative paths as an operator
/// types them).
pub fn kindling_in(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Everything a command printed, stdout then stderr.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
