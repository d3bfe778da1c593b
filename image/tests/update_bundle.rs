//! `kindling update build|verify` as an operator runs them: a bundle from a
//! UKI file, checked with the public key, refused for an appliance already
//! at that version, refused with another key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

fn kindling(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kindling"))
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn build_then_verify_and_the_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for keys in ["keys", "other"] {
        let out = kindling(&["keygen", "--out", keys, "--unencrypted"], d);
        assert!(out.status.success(), "{}", text(&out));
    }
    std::fs::write(d.join("kindling.efi"), vec![0x4du8; 70_000]).unwrap();
    let out = kindling(
        &[
            "update",
            "build",
            "--uki",
            "kindling.efi",
            "--version",
            "1.4",
            "--min-from",
            "1.2",
            "--valid-for",
            "7d",
            "--key",
            "keys/kindling.key",
            "--out",
            "k.kupd",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("kindling 1.4 (from 1.2 on), image 70000 bytes"),
        "{}",
        text(&out)
    );

    let out = kindling(
        &[
            "update",
            "verify",
            "k.kupd",
            "--pubkey",
            "keys/kindling.pub",
            "--running",
            "1.3",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("good: kindling 1.4"), "{}", text(&out));

    let out = kindling(
        &[
            "update",
            "verify",
            "k.kupd",
            "--pubkey",
            "keys/kindling.pub",
            "--running",
            "1.4",
        ],
        d,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("bundle 1.4 is not newer than the running 1.4"),
        "{}",
        text(&out)
    );

    let out = kindling(
        &[
            "update",
            "verify",
            "k.kupd",
            "--pubkey",
            "other/kindling.pub",
        ],
        d,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("manifest signature"), "{}", text(&out));

    let out = kindling(
        &[
            "update",
            "build",
            "--uki",
            "kindling.efi",
            "--version",
            "1.x",
            "--key",
            "keys/kindling.key",
            "--out",
            "bad.kupd",
        ],
        d,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("expected dotted numbers"),
        "{}",
        text(&out)
    );
    assert!(!d.join("bad.kupd").exists());
}
