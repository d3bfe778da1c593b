//! `kindling image build` writes the initramfs docs/contracts.md describes,
//! reproducibly, with the module closure modules.dep implies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::fs;

use common::{fixture, have_minisign, kindling, read_initramfs, stderr, Entry, KERNEL_VERSION};

macro_rules! require_minisign {
    () => {
        if !have_minisign() {
            eprintln!("skipped: the minisign CLI is not installed (run tests/install-deps)");
            return;
        }
    };
}

fn build(fx: &common::Fixture, out: &str, extra: &[&str]) -> Vec<Entry> {
    let out = fx.path(out);
    let mut args = fx.args(&out);
    args.extend(extra.iter().map(|s| s.to_string()));
    let output = kindling(&args);
    assert!(output.status.success(), "build failed: {}", stderr(&output));
    read_initramfs(&out.join("initramfs.cpio.zst"))
}

#[test]
fn two_builds_from_the_same_inputs_are_byte_identical() {
    require_minisign!();
    let fx = fixture();
    build(&fx, "out-a", &[]);
    build(&fx, "out-b", &[]);
    let a = fs::read(fx.path("out-a/initramfs.cpio.zst")).unwrap();
    let b = fs::read(fx.path("out-b/initramfs.cpio.zst")).unwrap();
    assert!(
        a == b,
        "initramfs differs between two builds ({} vs {} bytes)",
        a.len(),
        b.len()
    );
    // Touching an input's mtime must not change the archive either.
    let kindlingd = fx.path("bin/kindlingd");
    let bytes = fs::read(&kindlingd).unwrap();
    fs::remove_file(&kindlingd).unwrap();
    fs::write(&kindlingd, bytes).unwrap();
    build(&fx, "out-c", &[]);
    assert!(
        a == fs::read(fx.path("out-c/initramfs.cpio.zst")).unwrap(),
        "host mtimes leaked into the archive"
    );
}

#[test]
fn source_date_epoch_sets_every_mtime_and_owner_is_root() {
    require_minisign!();
    let fx = fixture();
    let entries = build(&fx, "out", &[]);
    let epoch: u32 = common::EPOCH.parse().unwrap();
    for entry in &entries {
        assert_eq!(entry.mtime, epoch, "{}", entry.name);
        assert_eq!((entry.uid, entry.gid), (0, 0), "{}", entry.name);
    }
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "entries are not in sorted order");
    let inodes: Vec<u32> = entries.iter().map(|e| e.ino).collect();
    assert_eq!(inodes, (1..=entries.len() as u32).collect::<Vec<_>>());
}

#[test]
fn the_archive_holds_exactly_the_contract_layout() {
    require_minisign!();
    let fx = fixture();
    let entries = build(
        &fx,
        "out",
        &[
            "--extra-bin",
            &format!("vault={}", fx.path("bin/kindlingd").display()),
        ],
    );
    let files: BTreeSet<&str> = entries
        .iter()
        .filter(|e| e.mode & 0o170000 != 0o040000)
        .map(|e| e.name.as_str())
        .collect();
    let k = format!("lib/modules/{KERNEL_VERSION}");
    let expected: BTreeSet<String> = [
        "init",
        // Symlink to /init (kindling-init's modprobe mode).
        "sbin/modprobe",
        "bin/kindlingd",
        // The node agent, handed to provisioned nodes by its sha256.
        "usr/share/kindling/node/kindling-node",
        "bin/vault",
        // The installer's mke2fs (docs/install.md).
        "bin/mke2fs",
        "dev/console",
        "etc/passwd",
        "etc/group",
        "etc/kindling/version",
        "etc/kindling/modules.list",
        "etc/kindling/services.json",
        "etc/kindling/trust/test.pub",
        "etc/kindling/overlays/order",
        "etc/kindling/overlays/lab.kovl",
        "etc/kindling/overlays/lab.kovl.minisig",
        "etc/ssl/certs/ca-certificates.crt",
        "lib/firmware/fakevendor/fakenic-1.bin",
        "usr/share/kindling/boot/undionly.kpxe",
        "usr/share/kindling/boot/ipxe.efi",
        "usr/share/kindling/boot/snponly.efi",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(
        [
            "modules.dep",
            "modules.alias",
            "modules.softdep",
            "modules.order",
            "modules.builtin",
            "kernel/crypto/crc32c_generic.ko",
            "kernel/lib/libcrc32c.ko",
            "kernel/net/netfilter/nf_tables.ko",
            "kernel/net/netfilter/nfnetlink.ko",
            "kernel/net/netfilter/nft_masq.ko",
            "kernel/drivers/net/virtio_net.ko",
            "kernel/drivers/net/net_failover.ko",
            "kernel/drivers/net/fakenic.ko",
        ]
        .iter()
        .map(|m| format!("{k}/{m}")),
    )
    .collect();
    let expected: BTreeSet<&str> = expected.iter().map(String::as_str).collect();
    assert_eq!(files, expected);

    let get = |name: &str| {
        entries
            .iter()
            .find(|e| e.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    };
    assert_eq!(get("init").mode, 0o100755);
    assert_eq!(
        get("init").data,
        fs::read(fx.path("bin/kindling-init")).unwrap()
    );
    assert_eq!(get("dev/console").mode, 0o020600);
    assert_eq!(get("tmp").mode, 0o041777);
    assert_eq!(get("etc/kindling/version").data, b"1.0.0-test\n");
    let passwd = String::from_utf8_lossy(&get("etc/passwd").data).to_string();
    assert!(passwd.contains("kl-vault:x:411:411:"), "{passwd}");
    assert_eq!(get("etc/kindling/overlays/order").data, b"lab.kovl\n");
    assert_eq!(
        get("etc/kindling/overlays/lab.kovl").data,
        fs::read(fx.path("site/lab.kovl")).unwrap()
    );
    assert_eq!(
        get("etc/kindling/trust/test.pub").data,
        fs::read(fx.path("keys/test.pub")).unwrap()
    );
    // Modules to load: listed order, loadable only (ext4 is builtin, one is
    // absent); drivers are carried (files above) but not in the load list.
    assert_eq!(
        get("etc/kindling/modules.list").data,
        b"crc32c_generic\nnft_masq\n"
    );
    let services: serde_json::Value =
        serde_json::from_slice(&get("etc/kindling/services.json").data).unwrap();
    assert_eq!(services["services"][0]["name"], "api");
    for dir in [
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var/lib/kindling",
        "usr/share/kindling/artifacts",
    ] {
        assert_eq!(
            get(dir).mode & 0o170000,
            0o040000,
            "{dir} is not a directory"
        );
    }
    assert!(
        !entries
            .iter()
            .any(|e| e.name.starts_with("bin/sh") || e.name == "bin/busybox"),
        "a shell leaked into a sealed image"
    );

    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(fx.path("out/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kernel_version"], KERNEL_VERSION);
    assert_eq!(
        manifest["modules"]["absent"],
        serde_json::json!(["no_such_module"])
    );
    assert_eq!(manifest["modules"]["builtin"], serde_json::json!(["ext4"]));
    assert_eq!(
        manifest["modules"]["drivers"],
        serde_json::json!(["virtio_net", "fakenic"])
    );
    let initramfs = &manifest["artifacts"][0];
    assert_eq!(initramfs["path"], "initramfs.cpio.zst");
    let bytes = fs::read(fx.path("out/initramfs.cpio.zst")).unwrap();
    assert_eq!(initramfs["size"], bytes.len() as u64);
    use sha2::Digest;
    let digest: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(initramfs["sha256"], digest);
}

#[test]
fn module_closure_follows_modules_dep_and_filters_the_indexes() {
    require_minisign!();
    let fx = fixture();
    let entries = build(&fx, "out", &[]);
    let text = |name: &str| {
        let path = format!("lib/modules/{KERNEL_VERSION}/{name}");
        String::from_utf8(
            entries
                .iter()
                .find(|e| e.name == path)
                .unwrap()
                .data
                .clone(),
        )
        .unwrap()
    };
    let dep = text("modules.dep");
    // nft_masq pulls nf_tables, which pulls nfnetlink and libcrc32c; libcrc32c's
    // softdep pulls crc32c_generic through the `crc32c` alias.
    assert!(
        dep.contains("kernel/net/netfilter/nft_masq.ko: kernel/net/netfilter/nf_tables.ko"),
        "{dep}"
    );
    assert!(
        dep.contains("kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko"),
        "{dep}"
    );
    assert!(
        !dep.contains("unused"),
        "modules outside the closure leaked into modules.dep: {dep}"
    );
    assert!(
        entries.iter().all(|e| !e.name.contains("unused")),
        "an unlisted module was copied"
    );
    let alias = text("modules.alias");
    assert!(
        alias.contains("virtio_net") && !alias.contains("unused_nic"),
        "{alias}"
    );
    assert_eq!(
        text("modules.order"),
        "kernel/crypto/crc32c_generic.ko\nkernel/net/netfilter/nf_tables.ko\n"
    );
}

#[test]
fn debug_shell_adds_busybox_and_applet_links() {
    require_minisign!();
    if !std::path::Path::new("/bin/busybox").exists() {
        eprintln!("skipped: /bin/busybox missing (apt-get install busybox-static)");
        return;
    }
    let fx = fixture();
    let entries = build(&fx, "out", &["--debug-shell"]);
    let sh = entries.iter().find(|e| e.name == "bin/sh").expect("bin/sh");
    assert_eq!(sh.mode & 0o170000, 0o120000);
    assert_eq!(sh.data, b"/bin/busybox");
    assert!(entries.iter().any(|e| e.name == "bin/busybox"));
    // An applet never replaces the image's own files.
    let init = entries.iter().find(|e| e.name == "init").unwrap();
    assert_eq!(init.mode, 0o100755);
}

#[test]
fn a_dynamic_extra_binary_brings_its_loader_and_libraries() {
    require_minisign!();
    if !std::path::Path::new("/bin/ls").exists() {
        return;
    }
    let fx = fixture();
    let out = fx.path("out");
    let mut args = fx.args(&out);
    args.extend(["--extra-bin".to_string(), "ls=/bin/ls".to_string()]);
    let output = kindling(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let entries = read_initramfs(&out.join("initramfs.cpio.zst"));
    // The loader is named twice (PT_INTERP /lib64/…, and by libc from
    // /lib/x86_64-linux-gnu/…): one regular file, the other a link to it.
    let loaders: Vec<&Entry> = entries
        .iter()
        .filter(|e| e.name.ends_with("/ld-linux-x86-64.so.2"))
        .collect();
    assert!(
        loaders
            .iter()
            .any(|e| e.name == "lib64/ld-linux-x86-64.so.2"),
        "loader missing at its PT_INTERP path"
    );
    let copies: Vec<&&Entry> = loaders
        .iter()
        .filter(|e| e.mode & 0o170000 == 0o100000)
        .collect();
    assert_eq!(copies.len(), 1, "{loaders:?}");
    for link in loaders.iter().filter(|e| e.mode & 0o170000 == 0o120000) {
        assert_eq!(link.data, format!("/{}", copies[0].name).into_bytes());
    }
    assert!(
        entries
            .iter()
            .any(|e| e.name.ends_with("x86_64-linux-gnu/libc.so.6")),
        "libc missing"
    );
    assert!(
        stderr(&output).contains("dynamically linked"),
        "no warning: {}",
        stderr(&output)
    );
}

#[test]
fn debug_sections_of_extra_binaries_are_removed_unless_kept() {
    require_minisign!();
    let fx = fixture();
    // A static executable with a DWARF section, as Go builds of OpenBao ship.
    let debug_info = fx.path("debug_info.bin");
    fs::write(&debug_info, vec![0x5a; 64 * 1024]).unwrap();
    let with_debug = fx.path("bin/vault-with-debug");
    let status = std::process::Command::new("objcopy")
        .arg("--add-section")
        .arg(format!(".debug_info={}", debug_info.display()))
        .arg(fx.path("bin/kindlingd"))
        .arg(&with_debug)
        .status()
        .unwrap();
    assert!(status.success());
    let original = fs::read(&with_debug).unwrap();
    let vault = format!("vault={}", with_debug.display());

    let entries = build(&fx, "stripped", &["--extra-bin", &vault]);
    let installed = &entries.iter().find(|e| e.name == "bin/vault").unwrap().data;
    assert!(
        installed.len() + 60 * 1024 < original.len(),
        "debug section kept: {} vs {}",
        installed.len(),
        original.len()
    );
    assert_eq!(
        fs::read(&with_debug).unwrap(),
        original,
        "the operator's file was modified"
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(fx.path("stripped/manifest.json")).unwrap()).unwrap();
    let record = manifest["binaries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == "vault")
        .unwrap()
        .clone();
    assert_eq!(record["debug_sections_removed"], true);

    let entries = build(&fx, "kept", &["--extra-bin", &vault, "--keep-debug"]);
    assert_eq!(
        entries.iter().find(|e| e.name == "bin/vault").unwrap().data,
        original
    );
}
