//! An update on trial whose image carries a newer site overlay, with the
//! real processes: `kindlingd config apply` (the config phase) uses the
//! image's lab v4 but records nothing while the booted entry counts tries;
//! `kindlingd api` records it once the update agent's status says the slot
//! is blessed. The trial is what the agent reports in `status/update.json`
//! (this host has no `LoaderEntrySelected`: the test skips where it has).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::appliance::{build_overlay, repo, start_api, Root};
use std::time::{Duration, Instant};

fn state(root: &Root) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(root.path("var/lib/kindling/state.json")).unwrap())
        .unwrap()
}

fn agent_status(root: &Root, mode: &str, entry: &str) {
    let dir = root.path("run/kindling/status");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("update.json"),
        serde_json::json!({"mode": mode, "entry": entry}).to_string(),
    )
    .unwrap();
}

/// Lab v4 (lease 7200 s), as the update's image carries it on its boot media.
fn bake_lab_v4(root: &Root) -> Vec<u8> {
    let tree = tempfile::Builder::new()
        .prefix("kd-tree-")
        .tempdir()
        .unwrap();
    let lab = repo().join("overlays/lab");
    std::fs::create_dir_all(tree.path().join("profiles")).unwrap();
    for f in ["profiles/dev.toml", "profiles/prod.toml"] {
        std::fs::copy(lab.join(f), tree.path().join(f)).unwrap();
    }
    let site = std::fs::read_to_string(lab.join("site.toml")).unwrap();
    std::fs::write(
        tree.path().join("site.toml"),
        site.replace("lease_secs = 3600", "lease_secs = 7200"),
    )
    .unwrap();
    let built = build_overlay(tree.path(), "lab", 4, kindling_overlay::LayerKind::Site);
    std::fs::write(root.path("etc/overlays/lab.kovl"), &built.kovl).unwrap();
    std::fs::write(root.path("etc/overlays/lab.kovl.minisig"), &built.minisig).unwrap();
    built.kovl
}

fn config_apply(root: &Root) -> String {
    let out = root.command(&["config", "apply"]).output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "config apply failed: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

#[test]
fn an_update_on_trial_records_its_overlay_only_once_blessed() {
    if std::path::Path::new(kindling_update::slots::LOADER_ENTRY_SELECTED).exists() {
        eprintln!("skipped: this host has its own LoaderEntrySelected");
        return;
    }
    let root = Root::new();
    // v2, blessed, with the fixture's lab v3.
    config_apply(&root);
    let before = state(&root);
    assert_eq!(before["overlays"]["floors"]["lab"], 3);
    let copy = root.path("var/lib/kindling/overlays/lab.kovl");
    let v3_copy = std::fs::read(&copy).unwrap();

    // v3's boot on trial (its second try), its image carrying lab v4.
    let v4 = bake_lab_v4(&root);
    std::fs::remove_dir_all(root.path("run/kindling")).unwrap();
    std::fs::create_dir_all(root.path("run/kindling")).unwrap();
    agent_status(&root, "gating", "kindling-0.1.1+2-1.efi");
    let said = config_apply(&root);
    assert!(said.contains("update on trial"), "{said}");
    assert!(said.contains("used for this boot only"), "{said}");
    let site: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.path("run/kindling/site.json")).unwrap())
            .unwrap();
    assert_eq!(site["pxe"]["lease_secs"], 7200, "the trial uses lab v4");
    assert_eq!(state(&root), before, "the trial recorded its overlay");
    assert_eq!(std::fs::read(&copy).unwrap(), v3_copy);

    // The API waits for the blessing; gating, nothing is recorded.
    let _api = start_api(&root);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state(&root), before, "recorded before the blessing");

    agent_status(&root, "blessed", "kindling-0.1.1.efi");
    let deadline = Instant::now() + Duration::from_secs(15);
    while state(&root)["overlays"]["floors"]["lab"] != 4 {
        assert!(
            Instant::now() < deadline,
            "lab v4 not recorded after the blessing: {}",
            state(&root)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(state(&root)["overlays"]["accepted"]["lab"]["version"], 4);
    assert_eq!(std::fs::read(&copy).unwrap(), v4);
}

#[test]
fn a_failed_trial_records_nothing_and_the_old_image_keeps_its_overlay() {
    if std::path::Path::new(kindling_update::slots::LOADER_ENTRY_SELECTED).exists() {
        eprintln!("skipped: this host has its own LoaderEntrySelected");
        return;
    }
    let root = Root::new();
    config_apply(&root);
    let before = state(&root);
    let v3_boot_media = std::fs::read(root.path("etc/overlays/lab.kovl")).unwrap();
    let v3_sig = std::fs::read(root.path("etc/overlays/lab.kovl.minisig")).unwrap();

    bake_lab_v4(&root);
    std::fs::remove_dir_all(root.path("run/kindling")).unwrap();
    std::fs::create_dir_all(root.path("run/kindling")).unwrap();
    agent_status(&root, "gating", "kindling-0.1.1+1-2.efi");
    config_apply(&root);
    let api = start_api(&root);
    agent_status(&root, "gate_failed", "kindling-0.1.1+1-2.efi");
    std::thread::sleep(Duration::from_secs(3));
    drop(api);
    assert_eq!(state(&root), before, "a failed trial recorded its overlay");

    // The firmware falls back to v2: blessed, its own lab v3 on its boot media.
    std::fs::write(root.path("etc/overlays/lab.kovl"), v3_boot_media).unwrap();
    std::fs::write(root.path("etc/overlays/lab.kovl.minisig"), v3_sig).unwrap();
    std::fs::remove_dir_all(root.path("run/kindling")).unwrap();
    std::fs::create_dir_all(root.path("run/kindling")).unwrap();
    let said = config_apply(&root);
    assert!(!said.contains("rollback"), "{said}");
    let site: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.path("run/kindling/site.json")).unwrap())
            .unwrap();
    assert_eq!(
        site["pxe"]["lease_secs"], 3600,
        "v2 runs with its own lab v3"
    );
    assert_eq!(state(&root)["overlays"]["floors"]["lab"], 3);
}
