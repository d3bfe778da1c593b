//! `kindling update publish|promote|check` as an operator runs them: two
//! bundles on dev, one promoted to prod, and what each channel then offers;
//! the index is a minisign signature Debian's `minisign` accepts; a
//! tampered, foreign-key, stale or replayed index is refused by `check`,
//! which makes the appliance's checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::{Command, Output};

mod common;

use common::{kindling_in as kindling, text};

/// Runs `args`; panics with the output unless it succeeds. Returns the output.
fn ok(args: &[&str], dir: &Path) -> String {
    let out = kindling(args, dir);
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    text(&out)
}

/// Runs `args`; panics unless it fails. Returns the output.
fn refused(args: &[&str], dir: &Path) -> String {
    let out = kindling(args, dir);
    assert!(
        !out.status.success(),
        "{args:?} was accepted: {}",
        text(&out)
    );
    text(&out)
}

const KEY: &str = "keys/kindling.key";
const PUB: &str = "keys/kindling.pub";

fn bundle(version: &str, d: &Path) {
    std::fs::write(d.join("kindling.efi"), format!("image {version}")).unwrap();
    let out = format!("kindling-{version}.kupd");
    ok(
        &[
            "update",
            "build",
            "--uki",
            "kindling.efi",
            "--version",
            version,
            "--key",
            KEY,
            "--out",
            &out,
        ],
        d,
    );
}

fn check(channel: &str, running: &str, extra: &[&str], d: &Path) -> Output {
    let mut args = vec![
        "update",
        "check",
        "--channel",
        channel,
        "--dir",
        "site",
        "--pubkey",
        PUB,
        "--running",
        running,
    ];
    args.extend_from_slice(extra);
    kindling(&args, d)
}

#[test]
fn dev_first_then_prod_and_the_refusals() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("site")).unwrap();
    for keys in ["keys", "other"] {
        ok(&["keygen", "--out", keys, "--unencrypted"], d);
    }
    bundle("1.1", d);
    bundle("1.2", d);
    for version in ["1.1", "1.2"] {
        let name = format!("kindling-{version}.kupd");
        let said = ok(
            &[
                "update",
                "publish",
                &name,
                "--channel",
                "dev",
                "--dir",
                "site",
                "--key",
                KEY,
            ],
            d,
        );
        assert!(said.contains("channel dev #"), "{said}");
    }
    assert!(d.join("site/kindling-1.2.kupd").is_file());
    // A bundle signed by a key the index is not signed with is refused.
    ok(
        &[
            "update",
            "build",
            "--uki",
            "kindling.efi",
            "--version",
            "1.3",
            "--key",
            "other/kindling.key",
            "--out",
            "foreign.kupd",
        ],
        d,
    );
    let said = refused(
        &[
            "update",
            "publish",
            "foreign.kupd",
            "--channel",
            "dev",
            "--dir",
            "site",
            "--key",
            KEY,
        ],
        d,
    );
    assert!(said.contains("manifest signature"), "{said}");

    // Debian's minisign accepts the index signature.
    let minisign = Command::new("minisign")
        .args(["-V", "-p", PUB, "-m", "site/dev.json"])
        .current_dir(d)
        .output()
        .expect("minisign is not installed (tests/install-deps installs it)");
    assert!(minisign.status.success(), "minisign: {}", text(&minisign));
    assert!(
        text(&minisign).contains("kindling channel dev #2"),
        "{}",
        text(&minisign)
    );

    // dev offers its newest; prod offers nothing until a promotion.
    let out = check("dev", "1.0", &[], d);
    assert!(
        text(&out).contains("offers 1.2 (kindling-1.2.kupd"),
        "{}",
        text(&out)
    );
    let said = refused(
        &[
            "update", "promote", "1.9", "--from", "dev", "--to", "prod", "--dir", "site", "--key",
            KEY,
        ],
        d,
    );
    assert!(said.contains("version 1.9 is not on channel dev"), "{said}");
    ok(
        &[
            "update", "promote", "1.1", "--from", "dev", "--to", "prod", "--dir", "site", "--key",
            KEY,
        ],
        d,
    );
    // 1.2 put on prod directly, not through dev: a prod appliance skips it.
    ok(
        &[
            "update",
            "publish",
            "kindling-1.2.kupd",
            "--channel",
            "prod",
            "--dir",
            "site",
            "--key",
            KEY,
        ],
        d,
    );
    let out = check("prod", "1.0", &["--requires-blessing-on", "dev"], d);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("offers 1.1 (kindling-1.1.kupd"),
        "{}",
        text(&out)
    );
    let out = check("prod", "1.1", &["--requires-blessing-on", "dev"], d);
    assert!(
        text(&out).contains("offers nothing newer than 1.1"),
        "{}",
        text(&out)
    );

    // Replay: yesterday's copy after a re-sign raised the sequence.
    std::fs::copy(d.join("site/dev.json"), d.join("old.json")).unwrap();
    std::fs::copy(d.join("site/dev.json.minisig"), d.join("old.json.minisig")).unwrap();
    let said = ok(
        &[
            "update",
            "publish",
            "--channel",
            "dev",
            "--dir",
            "site",
            "--key",
            KEY,
        ],
        d,
    );
    assert!(said.contains("channel dev #3"), "{said}");
    std::fs::copy(d.join("old.json"), d.join("site/dev.json")).unwrap();
    std::fs::copy(d.join("old.json.minisig"), d.join("site/dev.json.minisig")).unwrap();
    let out = check("dev", "1.0", &["--seen", "3"], d);
    assert!(!out.status.success());
    assert!(text(&out).contains("older than #3"), "{}", text(&out));

    // Tampered: a byte of the index changed.
    let json = std::fs::read_to_string(d.join("site/dev.json")).unwrap();
    std::fs::write(d.join("site/dev.json"), json.replace("1.2", "1.7")).unwrap();
    let out = check("dev", "1.0", &[], d);
    assert!(!out.status.success());
    assert!(text(&out).contains("index signature"), "{}", text(&out));
    // Another key's index; another channel's index under this name.
    let out = kindling(
        &[
            "update",
            "check",
            "--channel",
            "prod",
            "--dir",
            "site",
            "--pubkey",
            "other/kindling.pub",
            "--running",
            "1.0",
        ],
        d,
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("index signature"), "{}", text(&out));
    std::fs::copy(d.join("site/prod.json"), d.join("site/dev.json")).unwrap();
    std::fs::copy(
        d.join("site/prod.json.minisig"),
        d.join("site/dev.json.minisig"),
    )
    .unwrap();
    let out = check("dev", "1.0", &[], d);
    assert!(
        text(&out).contains("is for channel \"prod\", not \"dev\""),
        "{}",
        text(&out)
    );

    // Stale: an index signed to stay fresh for one second, read later.
    ok(
        &[
            "update",
            "publish",
            "--channel",
            "prod",
            "--dir",
            "site",
            "--key",
            KEY,
            "--valid-for",
            "1s",
        ],
        d,
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = check("prod", "1.0", &[], d);
    assert!(!out.status.success());
    assert!(text(&out).contains("the mirror is stale"), "{}", text(&out));
}
