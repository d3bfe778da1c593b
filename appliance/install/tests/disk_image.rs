//! The installer's layout on a sparse disk image file, read back with the
//! `gpt` and `fatfs` crates; as root also through a loop device: the
//! kernel's partitions, `blkid` and `fsck.ext4 -n` on the data partition,
//! the copied state (owners and modes) by debugfs, and the refusal of the
//! now-installed disk without wipe.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kindling_install::layout::{self, MIB};
use kindling_install::target::{self, Refusal, Request, Source, Verdict};
use kindling_install::write::{self, BootFile, Inputs};
use std::fs::File;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const VERSION: &str = "9.8.7";

struct Fixture {
    dir: tempfile::TempDir,
    uki: Vec<u8>,
    boot: File,
    state: PathBuf,
}

/// A stand-in UKI (a PE stub would do no more here: the installer copies
/// bytes), the host's systemd-boot when installed, and a state directory
/// with files of a service account.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let uki_path = dir.path().join("kindling.efi");
    let mut uki = b"MZ stub\0NAME=kindling\nIMAGE_VERSION=9.8.7\n".to_vec();
    uki.extend((0..3 * MIB).map(|i| (i % 251) as u8));
    std::fs::write(&uki_path, &uki).unwrap();
    let host_boot = Path::new("/usr/lib/systemd/boot/efi/systemd-bootx64.efi");
    let boot_path = if host_boot.is_file() {
        host_boot.to_path_buf()
    } else {
        let p = dir.path().join("bootx64.efi");
        std::fs::write(&p, vec![0x4du8; 100_000]).unwrap();
        p
    };
    let state = dir.path().join("state");
    std::fs::create_dir_all(state.join("inventory")).unwrap();
    std::fs::write(state.join("inventory/nodes.json"), b"{\"marker\": 1}\n").unwrap();
    std::fs::set_permissions(
        state.join("inventory/nodes.json"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::symlink("inventory/nodes.json", state.join("link")).unwrap();
    if nix_is_root() {
        std::os::unix::fs::chown(state.join("inventory"), Some(402), Some(422)).unwrap();
    }
    Fixture {
        uki: std::fs::read(&uki_path).unwrap(),
        boot: File::open(&boot_path).unwrap(),
        state,
        dir,
    }
}

fn nix_is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

fn mke2fs() -> Option<PathBuf> {
    ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

fn inputs<'a>(f: &'a Fixture, mke2fs: &'a Path) -> Inputs<'a> {
    Inputs {
        uki: &f.uki,
        systemd_boot: BootFile::whole(&f.boot).unwrap(),
        version: VERSION,
        state_dir: Some(&f.state),
        mke2fs,
    }
}

fn plan(f: &Fixture, disk_size: u64) -> layout::Layout {
    layout::plan(
        disk_size,
        f.uki.len() as u64,
        f.boot.metadata().unwrap().len(),
    )
    .unwrap()
}

#[test]
fn the_layout_on_a_sparse_image_reads_back() {
    let Some(mke2fs) = mke2fs() else {
        eprintln!("skipping: mke2fs (e2fsprogs) not installed");
        return;
    };
    let f = fixture();
    let disk = f.dir.path().join("disk.img");
    let size = 512 * MIB;
    File::create(&disk).unwrap().set_len(size).unwrap();
    let layout = plan(&f, size);
    let inputs = inputs(&f, &mke2fs);
    let mut steps = Vec::new();
    write::write(&disk, &layout, &inputs, &mut |s| steps.push(s.to_string())).unwrap();
    assert!(
        steps.iter().any(|s| s.contains("writing the GPT")),
        "{steps:?}"
    );
    let written = write::verify(&disk, &layout, &inputs).unwrap();
    assert_eq!(
        written.partitions,
        [
            ("EFI system".to_string(), MIB, layout.esp_size),
            (
                "KINDLING-DATA".to_string(),
                layout.data_start,
                layout.data_size
            )
        ]
    );
    assert!(written
        .esp_files
        .iter()
        .any(|(p, _)| p == "EFI/Linux/kindling-9.8.7+3-0.efi"));
    // The file stays sparse: the data partition's free space is not written.
    let used = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&disk).unwrap()) * 512;
    assert!(used < size / 2, "{used} bytes allocated of {size}");
    // The slot file's bytes are the UKI's.
    let reread = File::open(&disk).unwrap();
    let fs = fatfs::FileSystem::new(
        write::Slice::new(&reread, layout.esp_start, layout.esp_size),
        fatfs::FsOptions::new(),
    )
    .unwrap();
    let mut copied = Vec::new();
    std::io::Read::read_to_end(
        &mut fs
            .root_dir()
            .open_file("EFI/Linux/kindling-9.8.7+3-0.efi")
            .unwrap(),
        &mut copied,
    )
    .unwrap();
    assert!(copied == f.uki, "slot A differs from the UKI");
    // Reading back against other bytes of the same size fails, naming where.
    let mut other = f.uki.clone();
    other[2 * MIB as usize + 5] ^= 1;
    let err = write::verify(
        &disk,
        &layout,
        &Inputs {
            uki: &other,
            ..inputs
        },
    )
    .unwrap_err();
    assert!(
        err.contains(&format!("from byte {} on", 2 * MIB + 5)),
        "{err}"
    );
    // The probe now sees what it would refuse without wipe.
    let head = kindling_install::probe::read_head(&File::open(&disk).unwrap()).unwrap();
    assert_eq!(
        kindling_install::probe::signatures(&head),
        ["a GPT partition table"]
    );
}

#[test]
fn a_disk_too_small_for_the_layout_is_not_planned() {
    let f = fixture();
    let uki = f.uki.len() as u64;
    let boot = f.boot.metadata().unwrap().len();
    let min = layout::min_disk_size(uki, boot);
    assert!(layout::plan(min - MIB, uki, boot).is_none());
    assert!(layout::plan(min, uki, boot).is_some());
}

/// Detaches the loop device when the test ends, however it ends.
struct Loop(String);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn through_a_loop_device_the_kernel_blkid_and_fsck_agree() {
    let Some(mke2fs) = mke2fs() else {
        eprintln!("skipping: mke2fs (e2fsprogs) not installed");
        return;
    };
    if !nix_is_root() || Command::new("losetup").arg("--version").output().is_err() {
        eprintln!("skipping: needs root and losetup");
        return;
    }
    let f = fixture();
    let image = f.dir.path().join("loop.img");
    File::create(&image).unwrap().set_len(600 * MIB).unwrap();
    let attach = Command::new("losetup")
        .args(["--find", "--show", "--partscan"])
        .arg(&image)
        .output()
        .unwrap();
    if !attach.status.success() {
        eprintln!(
            "skipping: no loop device here ({})",
            String::from_utf8_lossy(&attach.stderr).trim()
        );
        return;
    }
    let device = Loop(String::from_utf8_lossy(&attach.stdout).trim().to_string());
    let node = PathBuf::from(&device.0);
    let name = node.file_name().unwrap().to_string_lossy().into_owned();

    // The blank loop device: resolved through sysfs, decided, written.
    let sys = Path::new("/sys");
    let request = Request {
        disk: device.0.clone(),
        wipe: false,
        source: Source::Site,
    };
    let (disk, path) = target::resolve(&request.disk, sys, Path::new("/dev")).unwrap();
    assert_eq!(disk.name, name);
    assert_eq!(disk.size, 600 * MIB);
    let head = kindling_install::probe::read_head(&File::open(&path).unwrap()).unwrap();
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let facts = target::gather(&request.disk, &disk, &path, sys, &mountinfo, &head, false);
    let layout = plan(&f, facts.size);
    let min = layout::min_disk_size(f.uki.len() as u64, f.boot.metadata().unwrap().len());
    assert_eq!(
        target::decide(&facts, &request, "/var/lib/kindling", min),
        Ok(Verdict::Install)
    );
    let inputs = inputs(&f, &mke2fs);
    write::write(&path, &layout, &inputs, &mut |_| {}).unwrap();
    write::verify(&path, &layout, &inputs).unwrap();

    // The kernel reads the new table; blkid and fsck see the data partition.
    run(Command::new("partx").args(["-u"]).arg(&path));
    let data = format!("{}p2", device.0);
    let esp = format!("{}p1", device.0);
    for _ in 0..50 {
        if Path::new(&data).exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let blkid = run(Command::new("blkid").args(["-o", "export", &data]));
    assert!(blkid.contains("LABEL=KINDLING-DATA"), "{blkid}");
    assert!(blkid.contains("TYPE=ext4"), "{blkid}");
    assert!(blkid.contains("PARTLABEL=KINDLING-DATA"), "{blkid}");
    let blkid = run(Command::new("blkid").args(["-p", "-o", "export", &esp]));
    assert!(blkid.contains("TYPE=vfat"), "{blkid}");
    assert!(blkid.contains("VERSION=FAT32"), "{blkid}");
    assert!(blkid.contains(r"PART_ENTRY_NAME=EFI\ system"), "{blkid}");
    assert!(
        blkid.contains("PART_ENTRY_TYPE=c12a7328-f81f-11d2-ba4b-00a0c93ec93b"),
        "{blkid}"
    );
    run(Command::new("fsck.ext4").args(["-fn", &data]));
    // -l lists every file by its long name: fsck.fat reads the LFNs too.
    let fsck = run(Command::new("fsck.vfat").args(["-n", "-l", &esp]));
    assert!(!fsck.contains("\n  "), "fsck.fat has remarks: {fsck}");
    for path in [
        "/EFI/BOOT/BOOTX64.EFI",
        "/EFI/systemd/systemd-bootx64.efi",
        "/EFI/Linux/kindling-9.8.7+3-0.efi",
        "/loader/loader.conf",
        "/loader/entries",
    ] {
        assert!(
            fsck.contains(&format!("Checking file {path}")),
            "{path}: {fsck}"
        );
    }
    // The state came along, owners and modes kept.
    let listing = run(Command::new("debugfs").args(["-R", "ls -l /inventory", &data]));
    assert!(
        listing.contains("100640") && listing.contains("nodes.json"),
        "{listing}"
    );
    let stat = run(Command::new("debugfs").args(["-R", "stat /inventory", &data]));
    assert!(
        stat.contains("User:   402") && stat.contains("Group:   422"),
        "{stat}"
    );
    let marker = run(Command::new("debugfs").args(["-R", "cat /inventory/nodes.json", &data]));
    assert_eq!(marker, "{\"marker\": 1}\n");

    // Now installed: refused without wipe, naming what is there and the option.
    let (disk, path) = target::resolve(&request.disk, sys, Path::new("/dev")).unwrap();
    let head = kindling_install::probe::read_head(&File::open(&path).unwrap()).unwrap();
    let facts = target::gather(&request.disk, &disk, &path, sys, &mountinfo, &head, false);
    assert_eq!(facts.partitions, [format!("{name}p1"), format!("{name}p2")]);
    let refusal = target::decide(&facts, &request, "/var/lib/kindling", min).unwrap_err();
    assert!(matches!(refusal, Refusal::NotBlank { .. }), "{refusal}");
    let text = refusal.to_string();
    assert!(
        text.starts_with(&format!(
            "/dev/{name} is not blank: it holds a GPT partition table, 2 partition(s)"
        )),
        "{text}"
    );
    assert!(text.contains("`wipe = true` under [install]"), "{text}");
    // A partition is not a disk.
    let (part, part_path) = target::resolve(&data, sys, Path::new("/dev")).unwrap();
    let facts = target::gather(&data, &part, &part_path, sys, &mountinfo, &[], false);
    let refusal = target::decide(&facts, &request, "/var/lib/kindling", min).unwrap_err();
    assert!(
        refusal
            .to_string()
            .contains(&format!("is a partition of /dev/{name}")),
        "{refusal}"
    );
}
