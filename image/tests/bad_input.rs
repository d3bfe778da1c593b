//! Bad input to `kindling image build`: a one-line error that names the
//! cause and the fix, a non-zero exit, and nothing in the output directory
//! that looks like a build.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::Path;

use common::{fixture, have_minisign, kindling, stderr, Fixture};

/// Replaces the value after `flag` (or appends the pair).
fn with(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1] = value.to_string(),
        None => args.extend([flag.to_string(), value.to_string()]),
    }
    args
}

/// Runs a build that must fail; returns its one stderr line.
fn fails(fx: &Fixture, args: Vec<String>, out: &Path) -> String {
    let output = kindling(&args);
    let err = stderr(&output);
    assert!(!output.status.success(), "build succeeded; stderr: {err}");
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("kindling: error:"))
        .collect();
    assert_eq!(lines.len(), 1, "expected one error line, got: {err}");
    for artifact in [
        "initramfs.cpio.zst",
        "vmlinuz",
        "manifest.json",
        "kindling.iso",
        "kindling.img",
        "kindling.efi",
        "pxe",
    ] {
        assert!(
            !out.join(artifact).exists(),
            "{artifact} left behind after a failed build"
        );
    }
    if out.is_dir() {
        let leftovers: Vec<_> = fs::read_dir(out).unwrap().collect();
        assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    }
    let _ = fx;
    lines[0].to_string()
}

macro_rules! require_minisign {
    () => {
        if !have_minisign() {
            eprintln!("skipped: the minisign CLI is not installed (run tests/install-deps)");
            return;
        }
    };
}

#[test]
fn missing_kernel() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    let err = fails(
        &fx,
        with(fx.args(&out), "--kernel", "/nonexistent/vmlinuz"),
        &out,
    );
    assert!(
        err.contains("/nonexistent/vmlinuz") && err.contains("--kernel"),
        "{err}"
    );
}

#[test]
fn no_kernel_in_boot_dir() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    let mut args = fx.args(&out);
    let i = args.iter().position(|a| a == "--kernel").unwrap();
    args.drain(i..i + 2);
    fs::create_dir_all(fx.path("emptyboot")).unwrap();
    let err = fails(
        &fx,
        with(
            args,
            "--boot-dir",
            &fx.path("emptyboot").display().to_string(),
        ),
        &out,
    );
    assert!(err.contains("apt-get install linux-image-amd64"), "{err}");
}

#[test]
fn missing_extra_binary() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    let err = fails(
        &fx,
        with(fx.args(&out), "--extra-bin", "consul=/nonexistent/consul"),
        &out,
    );
    assert!(
        err.contains("--extra-bin consul") && err.contains("/nonexistent/consul"),
        "{err}"
    );
}

#[test]
fn extra_binary_that_is_not_an_executable() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    let err = fails(
        &fx,
        with(
            fx.args(&out),
            "--extra-bin",
            &format!("nomad={}", fx.path("ca.crt").display()),
        ),
        &out,
    );
    assert!(err.contains("not an x86-64 Linux ELF executable"), "{err}");
}

#[test]
fn missing_appliance_binaries_name_the_cargo_command() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    fs::create_dir_all(fx.path("emptybin")).unwrap();
    let err = fails(
        &fx,
        with(
            fx.args(&out),
            "--bin-dir",
            &fx.path("emptybin").display().to_string(),
        ),
        &out,
    );
    assert!(
        err.contains("kindling-init")
            && err.contains("cargo build --release -p kindling-init -p kindlingd"),
        "{err}"
    );
}

#[test]
fn unsigned_overlay() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    let err = fails(
        &fx,
        with(
            fx.args(&out),
            "--site",
            &fx.path("site/unsigned.kovl").display().to_string(),
        ),
        &out,
    );
    assert!(
        err.contains("unsigned") && err.contains("unsigned.kovl.minisig"),
        "{err}"
    );
}

#[test]
fn overlay_signed_by_an_untrusted_key() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    let err = fails(
        &fx,
        with(
            fx.args(&out),
            "--site",
            &fx.path("site/rogue.kovl").display().to_string(),
        ),
        &out,
    );
    assert!(err.contains("not signed by any --trust-key"), "{err}");
}

#[test]
fn tampered_overlay_fails_its_signature() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    let mut kovl = fs::read(fx.path("site/lab.kovl")).unwrap();
    let last = kovl.len() - 1;
    kovl[last] ^= 0x01;
    fs::write(fx.path("site/lab.kovl"), kovl).unwrap();
    let err = fails(&fx, fx.args(&out), &out);
    assert!(
        err.contains("lab.kovl") && err.contains("not signed by any --trust-key"),
        "{err}"
    );
}

#[test]
fn missing_overlay_and_directory_overlay() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    let err = fails(
        &fx,
        with(fx.args(&out), "--site", "/nonexistent/site.kovl"),
        &out,
    );
    assert!(
        err.contains("/nonexistent/site.kovl") && err.contains("kindling overlay build"),
        "{err}"
    );
    let err = fails(
        &fx,
        with(
            fx.args(&out),
            "--site",
            &fx.path("site").display().to_string(),
        ),
        &out,
    );
    assert!(err.contains("is a directory"), "{err}");
}

#[test]
fn unwritable_output_directory() {
    require_minisign!();
    let fx = fixture();
    // A path below a regular file cannot be created, even by root.
    let out = fx.path("ca.crt/out");
    let output = kindling(&fx.args(&out));
    let err = stderr(&output);
    assert!(!output.status.success());
    assert!(
        err.contains("is not writable") && err.contains("--out"),
        "{err}"
    );
}

#[test]
fn a_failed_build_keeps_the_previous_complete_build() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    let ok = kindling(&fx.args(&out));
    assert!(ok.status.success(), "{}", stderr(&ok));
    let before = fs::read(out.join("manifest.json")).unwrap();
    let bad = kindling(&with(
        fx.args(&out),
        "--extra-bin",
        "consul=/nonexistent/consul",
    ));
    assert!(!bad.status.success());
    assert_eq!(fs::read(out.join("manifest.json")).unwrap(), before);
    let names: Vec<String> = fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".kindling-build-")),
        "staging left behind: {names:?}"
    );
}

#[test]
fn renamed_overlay_would_be_refused_by_the_appliance() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    fs::copy(fx.path("site/lab.kovl"), fx.path("site/mysite.kovl")).unwrap();
    fs::copy(
        fx.path("site/lab.kovl.minisig"),
        fx.path("site/mysite.kovl.minisig"),
    )
    .unwrap();
    let err = fails(
        &fx,
        with(
            fx.args(&out),
            "--site",
            &fx.path("site/mysite.kovl").display().to_string(),
        ),
        &out,
    );
    assert!(
        err.contains("lab.kovl") && err.contains("mysite.kovl"),
        "{err}"
    );
}

#[test]
fn signed_file_that_is_not_an_overlay() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    // Correctly signed by the trusted key, but not a .kovl container.
    let fake = fx.path("site/junk.kovl");
    fs::write(&fake, b"not an overlay container").unwrap();
    let status = std::process::Command::new("minisign")
        .args(["-S", "-s"])
        .arg(fx.path("keys/test.key"))
        .arg("-m")
        .arg(&fake)
        .output()
        .unwrap();
    assert!(status.status.success());
    let err = fails(
        &fx,
        with(fx.args(&out), "--site", &fake.display().to_string()),
        &out,
    );
    assert!(
        err.contains("junk.kovl") && err.contains("invalid"),
        "{err}"
    );
}

#[test]
fn expired_overlay() {
    require_minisign!();
    let fx = fixture();
    let out = fx.path("out");
    common::overlay(
        fx.dir.path(),
        "short",
        &[
            "--key",
            &fx.path("keys/test.key").display().to_string(),
            "--expires",
            "1s",
        ],
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let err = fails(
        &fx,
        with(
            fx.args(&out),
            "--site",
            &fx.path("site/short.kovl").display().to_string(),
        ),
        &out,
    );
    assert!(err.contains("expired"), "{err}");
}
