//! `kindling backup inspect|restore` on a backup file, as an operator runs
//! them: the right identity lists every part; another identity, a tampered
//! file and a file that is not a backup are refused with an error naming
//! what failed, and `restore` then writes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use age::secrecy::ExposeSecret;
use kindling_backup::manifest::{Appliance, Manifest, FORMAT};
use kindling_backup::{EntryKind, Part};
use std::path::Path;

mod common;

use common::{kindling_in as kindling, text};

fn write_backup(dir: &Path, id: &age::x25519::Identity) -> Vec<u8> {
    let manifest = Manifest {
        format: FORMAT,
        id: "20260101T120000Z-0a1b".into(),
        created: "2026-01-01T12:00:00Z".into(),
        created_unix: 1_767_268_800,
        appliance: Appliance {
            site_id: "lab".into(),
            hostname: "kindling-lab".into(),
            version: "1.0".into(),
        },
        vault_storage: "raft".into(),
        notes: Vec::new(),
        entries: Vec::new(),
    };
    let parts = vec![
        Part {
            name: "consul.snap".into(),
            kind: EntryKind::ConsulSnapshot,
            bytes: vec![1; 5000],
        },
        Part {
            name: "data/inventory/nodes.json".into(),
            kind: EntryKind::Inventory,
            bytes: br#"{"nodes":{}}"#.to_vec(),
        },
    ];
    let (bytes, _) =
        kindling_backup::pack(Vec::new(), &[id.to_public()], manifest, &parts).unwrap();
    std::fs::write(dir.join("lab.kbak"), &bytes).unwrap();
    bytes
}

#[test]
fn inspect_lists_the_parts_and_refusals_name_what_failed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let id = age::x25519::Identity::generate();
    std::fs::write(
        d.join("key.txt"),
        format!("# created: test\n{}\n", id.to_string().expose_secret()),
    )
    .unwrap();
    let other = age::x25519::Identity::generate();
    std::fs::write(d.join("other.txt"), other.to_string().expose_secret()).unwrap();
    let bytes = write_backup(d, &id);

    let out = kindling(
        &["backup", "inspect", "lab.kbak", "--identity", "key.txt"],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    let shown = text(&out);
    for want in [
        "backup 20260101T120000Z-0a1b of kindling-lab",
        "consul.snap",
        "consul_snapshot",
        "data/inventory/nodes.json",
        "every part matches",
    ] {
        assert!(shown.contains(want), "{want} in {shown}");
    }

    let out = kindling(
        &["backup", "inspect", "lab.kbak", "--identity", "other.txt"],
        d,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("cannot decrypt the backup with this identity"),
        "{}",
        text(&out)
    );

    let mut tampered = bytes.clone();
    let at = tampered.len() - 40;
    tampered[at] ^= 1;
    std::fs::write(d.join("tampered.kbak"), &tampered).unwrap();
    let out = kindling(
        &[
            "backup",
            "restore",
            "tampered.kbak",
            "--identity",
            "key.txt",
            "--data-dir",
            "target",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("tampered.kbak: the backup is damaged or was changed"),
        "{}",
        text(&out)
    );
    assert!(!d.join("target").exists(), "nothing written on a refusal");

    std::fs::write(d.join("plain.kbak"), b"not encrypted").unwrap();
    let out = kindling(
        &["backup", "inspect", "plain.kbak", "--identity", "key.txt"],
        d,
    );
    assert!(
        text(&out).contains("not an age-encrypted file"),
        "{}",
        text(&out)
    );

    // The good file restores its data files below the directory.
    let out = kindling(
        &[
            "backup",
            "restore",
            "lab.kbak",
            "--identity",
            "key.txt",
            "--data-dir",
            "target",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(d.join("target/inventory/nodes.json")).unwrap(),
        br#"{"nodes":{}}"#
    );
    // Both snapshots at once is refused before anything happens.
    let out = kindling(
        &[
            "backup",
            "restore",
            "lab.kbak",
            "--identity",
            "key.txt",
            "--consul",
            "http://127.0.0.1:1",
            "--consul-token-file",
            "key.txt",
            "--vault",
            "http://127.0.0.1:1",
            "--vault-token-file",
            "key.txt",
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("restore Vault first"), "{}", text(&out));
}
