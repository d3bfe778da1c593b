//! The real kindling-init binary started as `modprobe` (argv[0]), the way the
//! kernel's usermode helper runs `/sbin/modprobe -q -- <name>` (the image's
//! /sbin/modprobe is a symlink to /init), over a fake module tree: exit codes,
//! messages, and that none of PID 1's work happens in that mode. Nothing real
//! is loaded here: the only module file the tests let it try is not an ELF
//! object, which the kernel refuses (or, without module support, ENOSYS).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_kindling-init");

/// A module tree for the running kernel release, and an init.json naming it.
struct FakeTree(PathBuf);

impl FakeTree {
    fn new(test: &str) -> FakeTree {
        let root = std::env::temp_dir().join(format!("ki-modprobe-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let release = nix::sys::utsname::uname().unwrap();
        let dir = root.join("modules").join(release.release());
        std::fs::create_dir_all(dir.join("kernel/fs")).unwrap();
        std::fs::write(
            dir.join("modules.dep"),
            "kernel/fs/kitest_top.ko: kernel/fs/kitest_dep.ko\nkernel/fs/kitest_dep.ko:\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("modules.builtin"),
            "kernel/drivers/block/kitest_builtin.ko\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("modules.alias"),
            "alias fs-kitest kitest_top\nalias kitest-absent-* kitest_absent\n",
        )
        .unwrap();
        // Not an ELF object: finit_module must refuse it.
        std::fs::write(dir.join("kernel/fs/kitest_dep.ko"), b"not a module").unwrap();
        std::fs::write(dir.join("kernel/fs/kitest_top.ko"), b"not a module").unwrap();
        std::fs::write(
            root.join("init.json"),
            serde_json::json!({ "modules_dir": root.join("modules") }).to_string(),
        )
        .unwrap();
        FakeTree(root)
    }

    fn modprobe(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg0("/sbin/modprobe")
            .args(args)
            .env("KINDLING_INIT_CONFIG", self.0.join("init.json"))
            .output()
            .unwrap()
    }
}

impl Drop for FakeTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn unknown_name_fails_quietly_with_q_and_does_no_pid1_work() {
    let tree = FakeTree::new("quiet");
    let out = tree.modprobe(&["-q", "--", "fs-nosuchfs"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(text(&out.stderr), "");
    // PID 1 would announce itself on stdout (no console configured).
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn unknown_name_is_named_without_q() {
    let tree = FakeTree::new("loud");
    let out = tree.modprobe(&["fs-nosuchfs"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("modprobe: fs-nosuchfs: no module or alias of that name in this image"),
        "{err}"
    );
    // An alias whose module the image does not carry is not found either.
    let out = tree.modprobe(&["-q", "kitest-absent-1"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn builtin_module_succeeds_without_loading() {
    let tree = FakeTree::new("builtin");
    let out = tree.modprobe(&["-q", "--", "kitest-builtin"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "");
}

#[test]
fn alias_resolves_and_the_dependency_loads_first() {
    let tree = FakeTree::new("alias");
    let out = tree.modprobe(&["-q", "--", "fs-kitest"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    // The alias led to kitest_top; its dependency was tried first (and refused).
    assert!(
        err.contains("fs-kitest: module kitest_top: dependency kitest_dep failed: module kitest_dep: finit_module("),
        "{err}"
    );
}

#[test]
fn bad_command_line_is_named() {
    let tree = FakeTree::new("usage");
    let out = tree.modprobe(&["-r", "ext4"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unknown option -r"),
        "{}",
        text(&out.stderr)
    );
    let out = tree.modprobe(&["-q", "--"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("no module name given"));
}

#[test]
fn missing_index_is_named() {
    let tree = FakeTree::new("noindex");
    let release = nix::sys::utsname::uname().unwrap();
    let dep = tree
        .0
        .join("modules")
        .join(release.release())
        .join("modules.dep");
    std::fs::remove_file(&dep).unwrap();
    let out = tree.modprobe(&["-q", "ext4"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!("module index: reading {}", dep.display())),
        "{err}"
    );
}
