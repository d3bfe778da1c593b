//! Interop with Debian's real `minisign` binary, both directions: kindling's
//! signatures verify with `minisign -V`, `minisign -S` signatures verify in
//! kindling, and each side uses the other's keys (unencrypted and encrypted).
//! Skips with a message when `minisign` is not installed (CI installs it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use kindling_overlay::minisign::{PublicKey, SecretKey};
use kindling_overlay::verify::verify_authentic;
use kindling_overlay::Limits;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn minisign_present() -> bool {
    let found = Command::new("minisign").arg("-v").output().is_ok();
    if !found {
        eprintln!("SKIP: `minisign` not installed (apt-get install minisign); interop not tested");
    }
    found
}

/// Runs minisign with `stdin_text` on stdin; returns (success, stdout+stderr).
fn minisign(args: &[&str], stdin_text: &str) -> (bool, String) {
    let mut child = Command::new("minisign")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // minisign reads no password for an unencrypted key and may already have
    // exited: a closed pipe here is not a failure, its exit status decides.
    let written = child.stdin.take().unwrap().write_all(stdin_text.as_bytes());
    if let Err(e) = written {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing minisign's stdin: {e}"
        );
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn trusted_comment_of(kovl: &[u8]) -> String {
    kindling_overlay::format::read_kovl(kovl, &Limits::default())
        .unwrap()
        .manifest
        .trusted_comment()
}

#[test]
fn kindling_signature_verifies_with_minisign() {
    if !minisign_present() {
        return;
    }
    let dir = data().join("good");
    let (ok, out) = minisign(
        &[
            "-V",
            "-p",
            p(&data().join("keys/TEST-ONLY-kindling.pub")),
            "-m",
            p(&dir.join("lab.kovl")),
        ],
        "",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("Trusted comment: kindling-overlay name=lab version=3"),
        "{out}"
    );
    // And minisign refuses the tampered fixture too.
    let bad = data().join("flipped-payload-byte");
    let (ok, out) = minisign(
        &[
            "-V",
            "-p",
            p(&data().join("keys/TEST-ONLY-kindling.pub")),
            "-m",
            p(&bad.join("lab.kovl")),
        ],
        "",
    );
    assert!(!ok, "{out}");
}

#[test]
fn minisign_signed_overlay_is_accepted_by_the_appliance() {
    if !minisign_present() {
        return;
    }
    let a = Appliance::new();
    let kovl = std::fs::read(data().join("good/lab.kovl")).unwrap();
    let target = a.paths.boot_overlays.join("lab.kovl");
    std::fs::write(&target, &kovl).unwrap();
    std::fs::write(a.paths.boot_overlays.join("order"), "lab.kovl\n").unwrap();
    let comment = trusted_comment_of(&kovl);
    let (ok, out) = minisign(
        &[
            "-S",
            "-s",
            p(&data().join("keys/TEST-ONLY-kindling.key")),
            "-m",
            p(&target),
            "-t",
            &comment,
        ],
        "",
    );
    assert!(ok, "{out}");
    let sig = std::fs::read_to_string(a.paths.boot_overlays.join("lab.kovl.minisig")).unwrap();
    assert!(
        sig.contains("signature from minisign secret key"),
        "signed by minisign, not a copy: {sig}"
    );
    let out = a.boot();
    assert_eq!(accepted(&out), vec![("lab".into(), 3)], "{:?}", out.report);
    // A minisign signature with an arbitrary trusted comment is refused.
    let (ok, _) = minisign(
        &[
            "-S",
            "-s",
            p(&data().join("keys/TEST-ONLY-kindling.key")),
            "-m",
            p(&target),
            "-t",
            "hello",
        ],
        "",
    );
    assert!(ok);
    let sig = std::fs::read_to_string(a.paths.boot_overlays.join("lab.kovl.minisig")).unwrap();
    let pk = PublicKey::from_file_text(
        &std::fs::read_to_string(data().join("keys/TEST-ONLY-kindling.pub")).unwrap(),
    )
    .unwrap();
    let err = verify_authentic(&kovl, &sig, &[pk], &Limits::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("trusted comment is not a kindling-overlay comment"),
        "{err}"
    );
}

#[test]
fn minisign_unencrypted_key_signs_in_kindling() {
    if !minisign_present() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("ko-ms-").tempdir().unwrap();
    let (pubf, keyf) = (tmp.path().join("m.pub"), tmp.path().join("m.key"));
    let (ok, out) = minisign(&["-G", "-W", "-p", p(&pubf), "-s", p(&keyf)], "");
    assert!(ok, "{out}");
    let key = SecretKey::from_file_text(&std::fs::read_to_string(&keyf).unwrap(), None).unwrap();
    let pk = PublicKey::from_file_text(&std::fs::read_to_string(&pubf).unwrap()).unwrap();
    assert_eq!(key.public_key(), pk);
    let file = tmp.path().join("data.bin");
    std::fs::write(&file, b"kindling interop").unwrap();
    std::fs::write(
        tmp.path().join("data.bin.minisig"),
        key.sign(b"kindling interop", "t=1").unwrap(),
    )
    .unwrap();
    let (ok, out) = minisign(&["-V", "-p", p(&pubf), "-m", p(&file)], "");
    assert!(ok, "{out}");
}

#[test]
fn kindling_keys_sign_with_minisign_plain_and_encrypted() {
    if !minisign_present() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("ko-ms-").tempdir().unwrap();
    let file = tmp.path().join("data.bin");
    std::fs::write(&file, b"payload").unwrap();
    // Key files as `kindling keygen` writes them, with and without a password.
    for (name, password) in [("plain.key", None), ("enc.key", Some("correct horse"))] {
        let generated = SecretKey::generate_file(password).unwrap();
        let keyf = tmp.path().join(name);
        std::fs::write(&keyf, &generated.file_text).unwrap();
        let (ok, out) = minisign(
            &["-S", "-s", p(&keyf), "-m", p(&file), "-t", "k"],
            &format!("{}\n", password.unwrap_or("")),
        );
        assert!(ok, "{name}: {out}");
        let sig = std::fs::read_to_string(tmp.path().join("data.bin.minisig")).unwrap();
        let v = kindling_overlay::minisign::verify(b"payload", &sig, &[generated.key.public_key()])
            .unwrap();
        assert_eq!(v.trusted_comment, "k");
        // minisign reads kindling's public key file.
        let pubf = tmp.path().join("k.pub");
        std::fs::write(&pubf, generated.key.public_key().to_file_text()).unwrap();
        let (ok, out) = minisign(&["-V", "-p", p(&pubf), "-m", p(&file)], "");
        assert!(ok, "{name}: {out}");
    }
}

#[test]
fn minisign_encrypted_key_is_read_by_kindling() {
    if !minisign_present() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("ko-ms-").tempdir().unwrap();
    let (pubf, keyf) = (tmp.path().join("m.pub"), tmp.path().join("m.key"));
    // minisign's own default scrypt parameters (1 GiB): the real format.
    let (ok, out) = minisign(&["-G", "-p", p(&pubf), "-s", p(&keyf)], "pw-123\npw-123\n");
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&keyf).unwrap();
    assert!(SecretKey::file_is_encrypted(&text).unwrap());
    let key = SecretKey::from_file_text(&text, Some("pw-123")).unwrap();
    assert_eq!(
        key.public_key(),
        PublicKey::from_file_text(&std::fs::read_to_string(&pubf).unwrap()).unwrap()
    );
    assert!(SecretKey::from_file_text(&text, Some("wrong")).is_err());
}
