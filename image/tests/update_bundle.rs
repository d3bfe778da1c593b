//! `kindling update build|verify` as an operator runs them: a bundle from a
//! UKI file, checked with the public key, refused for an appliance already
//! at that version, refused with another key.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{kindling_in as kindling, text};

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

    let verify = |pubkey: &str, running: &str| {
        let args = [
            "update",
            "verify",
            "k.kupd",
            "--pubkey",
            pubkey,
            "--running",
            running,
        ];
        let out = kindling(&args, d);
        (out.status.success(), text(&out))
    };
    let (ok, said) = verify("keys/kindling.pub", "1.3");
    assert!(ok && said.contains("good: kindling 1.4"), "{said}");
    let (ok, said) = verify("keys/kindling.pub", "1.4");
    assert!(
        !ok && said.contains("bundle 1.4 is not newer than the running 1.4"),
        "{said}"
    );
    let (ok, said) = verify("other/kindling.pub", "1.3");
    assert!(!ok && said.contains("manifest signature"), "{said}");

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
