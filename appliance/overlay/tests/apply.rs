//! The config pipeline over several "boots" of one appliance (same temp state
//! dir): version floors persist, the newest good overlay wins over older boot
//! media, key rotation, layering with provenance, and runtime pushes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use kindling_api::{ApiFailure, ErrorKind};
use kindling_overlay::{ApplyOptions, BuildOptions, LayerKind};

/// Builds `overlays/lab` (optionally edited) as lab vN with the TEST key.
fn lab_version(version: u64, edit: impl Fn(String) -> String) -> (Vec<u8>, String) {
    let tmp = tempfile::Builder::new()
        .prefix("ko-tree-")
        .tempdir()
        .unwrap();
    let src = repo().join("overlays/lab");
    std::fs::create_dir_all(tmp.path().join("profiles")).unwrap();
    for f in ["profiles/dev.toml", "profiles/prod.toml"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    let site = edit(std::fs::read_to_string(src.join("site.toml")).unwrap());
    std::fs::write(tmp.path().join("site.toml"), site).unwrap();
    let opts = BuildOptions {
        name: "lab".into(),
        version,
        layer: LayerKind::Site,
        site_id: None,
        created: NOW - 100,
        expires: NOW + 86_400,
    };
    let built = kindling_overlay::build(tmp.path(), &opts, &test_key("kindling")).unwrap();
    (built.kovl, built.minisig)
}

fn push_json(kovl: &[u8], minisig: &str) -> Vec<u8> {
    serde_json::json!({
        "kovl": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, kovl),
        "minisig": minisig,
    })
    .to_string()
    .into_bytes()
}

fn opts() -> ApplyOptions {
    ApplyOptions {
        now: Some(NOW),
        ..ApplyOptions::default()
    }
}

#[test]
fn floors_and_accepted_copies_survive_reboots() {
    let a = Appliance::new();
    a.boot_media(&[("good", "lab")]);
    assert_eq!(accepted(&a.boot()), vec![("lab".into(), 3)]);
    // Runtime push of v5, then a reboot from the same (old, v3) boot media.
    let (kovl, sig) = lab_version(5, |s| s.replace("lease_secs = 3600", "lease_secs = 1800"));
    let r = kindling_overlay::api::push(&a.paths, &push_json(&kovl, &sig), &opts());
    assert!(r.is_ok(), "{r:?}");
    let out = a.boot();
    assert_eq!(accepted(&out), vec![("lab".into(), 5)], "{:?}", out.report);
    assert_eq!(a.site_json()["pxe"]["lease_secs"], 1800);
    let line = out.report.refused[0].line();
    assert!(
        line.contains("lab v3") && line.contains("(rollback refused); using v5 from"),
        "{line}"
    );
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.paths.state_file()).unwrap()).unwrap();
    assert_eq!(state["overlays"]["floors"]["lab"], 5);
    assert_eq!(state["overlays"]["site_id"], "lab");
    // The data partition's copy is lost: the boot media's v3 is now a rollback.
    std::fs::remove_dir_all(a.paths.persisted_dir()).unwrap();
    let out = a.boot();
    assert!(!out.report.ok);
    assert!(
        out.report.refused[0]
            .line()
            .contains("version 3 is older than the accepted version 5"),
        "{:?}",
        out.report.refused
    );
}

#[test]
fn newer_boot_media_overlay_replaces_persisted_one() {
    let a = Appliance::new();
    a.boot_media(&[("good", "lab")]);
    a.boot();
    let (kovl, sig) = lab_version(4, |s| {
        s.replace(
            "hostname = \"kindling-lab\"",
            "hostname = \"kindling-lab-4\"",
        )
    });
    std::fs::write(a.paths.boot_overlays.join("lab.kovl"), &kovl).unwrap();
    std::fs::write(a.paths.boot_overlays.join("lab.kovl.minisig"), &sig).unwrap();
    let out = a.boot();
    assert_eq!(accepted(&out), vec![("lab".into(), 4)]);
    assert_eq!(a.site_json()["site"]["hostname"], "kindling-lab-4");
    assert_eq!(
        std::fs::read(a.paths.persisted_dir().join("lab.kovl")).unwrap(),
        kovl
    );
}

#[test]
fn key_rotation_by_an_overlay_signed_with_the_old_key() {
    let a = Appliance::new();
    // Without the rotation overlay, the new key is not trusted.
    a.boot_media(&[("key-rotation", "lab")]);
    let out = a.boot();
    assert!(
        out.report.refused[0].reason.contains("not trusted"),
        "{:?}",
        out.report.refused
    );
    // With it (in any order), the new key's lab v4 is accepted.
    a.boot_media(&[("key-rotation", "lab"), ("key-rotation", "rotate")]);
    let out = a.boot();
    let mut got = accepted(&out);
    got.sort();
    assert_eq!(
        got,
        vec![("lab".into(), 4), ("rotate".into(), 1)],
        "{:?}",
        out.report
    );
    let rotated_id = test_key("rotated").id.to_string();
    assert!(out
        .report
        .accepted
        .iter()
        .any(|e| e.name == "lab" && e.key_id == rotated_id));
    // The rotated key is remembered in state.json across reboots.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.paths.state_file()).unwrap()).unwrap();
    assert_eq!(
        state["overlays"]["trusted_keys"][0],
        test_key("rotated").public_key().to_base64()
    );
}

#[test]
fn appliance_layer_overrides_site_layer_with_provenance() {
    let a = Appliance::new();
    // Listed first on purpose: layer kind, not list position, puts it on top.
    a.boot_media(&[("appliance-layer", "appliance-7"), ("good", "lab")]);
    let out = a.boot();
    assert!(out.report.refused.is_empty(), "{:?}", out.report.refused);
    let eff = out.effective.unwrap();
    assert_eq!(eff.config.site.hostname, "kindling-7");
    assert_eq!(eff.config.pxe.lease_secs, 600);
    assert_eq!(eff.config.site.domain, "lab.kindling.internal");
    assert_eq!(eff.origin_of("site.hostname").unwrap().layer, "appliance-7");
    assert_eq!(eff.origin_of("site.domain").unwrap().layer, "lab");
    assert_eq!(eff.origin_of("pxe.range").unwrap().layer, "lab");
    assert!(eff.origin_of("api.port").is_none(), "image default");
    // The API serves the same, with provenance.
    let body = serde_json::to_value(kindling_overlay::api::effective(&a.paths).unwrap()).unwrap();
    assert_eq!(body["provenance"]["site.hostname"]["layer"], "appliance-7");
    assert_eq!(body["config"]["site"]["hostname"], "kindling-7");
    // Unpacked trees of both are in place.
    assert!(a
        .paths
        .unpacked_dir()
        .join("appliance-7/site.toml")
        .exists());
    assert!(a
        .paths
        .unpacked_dir()
        .join("lab/profiles/dev.toml")
        .exists());
}

#[test]
fn push_applies_pxe_changes_now_and_nic_changes_at_next_boot() {
    let a = Appliance::new();
    a.boot_media(&[("good", "lab")]);
    a.boot();
    let (kovl, sig) = lab_version(4, |s| s.replace("lease_secs = 3600", "lease_secs = 7200"));
    // Which changed sections apply live is kindlingd's decision (pxe: live,
    // network: next boot); the library says which sections changed.
    let r = kindling_overlay::api::push(&a.paths, &push_json(&kovl, &sig), &opts()).unwrap();
    assert_eq!(r.changed_sections, vec!["pxe".to_string()]);
    assert_eq!(a.site_json()["pxe"]["lease_secs"], 7200);

    let (kovl, sig) = lab_version(5, |s| {
        s.replace("lease_secs = 3600", "lease_secs = 7200")
            .replace("match = { order = 2 }", "match = { order = 3 }")
    });
    let r = kindling_overlay::api::push(&a.paths, &push_json(&kovl, &sig), &opts()).unwrap();
    assert_eq!(r.changed_sections, vec!["network".to_string()]);
    assert_eq!(r.accepted.version, 5);

    // The same version pushed again is idempotent; an older one is a rollback.
    let (kovl4, sig4) = lab_version(4, |s| s);
    let err =
        kindling_overlay::api::push(&a.paths, &push_json(&kovl4, &sig4), &opts()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("rollback refused"), "{err}");

    let body = serde_json::to_value(kindling_overlay::api::list(&a.paths)).unwrap();
    assert_eq!(body["state"]["floors"]["lab"], 5);
}

#[test]
fn build_refuses_an_invalid_tree_listing_every_problem() {
    let tmp = tempfile::Builder::new()
        .prefix("ko-tree-")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(tmp.path().join("profiles")).unwrap();
    std::fs::write(
        tmp.path().join("site.toml"),
        "[site]\nid = \"lab\"\n[pxe]\nrange = { start = \"10.0.0.1\", end = \"10.0.0.9\" }\ndefault_profile = \"dev\"\n[[nodes]]\nmac = \"52:54:00:00:00:01\"\nprofile = \"gpu\"\n",
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("profiles/dev.toml"),
        "name = \"dev\"\n[boot]\nkind = \"linux\"\nkernel = \"k\"\n",
    )
    .unwrap();
    let opts = BuildOptions {
        name: "lab".into(),
        version: 1,
        layer: LayerKind::Site,
        site_id: None,
        created: NOW,
        expires: NOW + 1,
    };
    let err = kindling_overlay::build(tmp.path(), &opts, &test_key("kindling"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("site.toml:4: pxe.range: DHCP range 10.0.0.1-10.0.0.9 is outside the LAN"),
        "{err}"
    );
    assert!(
        err.contains("site.toml:8: nodes[0].profile: profile \"gpu\" does not exist"),
        "{err}"
    );

    // A symlink in the tree is refused: what is signed is what gets unpacked.
    std::fs::write(
        tmp.path().join("site.toml"),
        "[site]\nid = \"lab\"\n[pxe]\ndefault_profile = \"dev\"\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("passwd")).unwrap();
    let err = kindling_overlay::build(tmp.path(), &opts, &test_key("kindling"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("only regular files and directories can be packed (found a symlink)"),
        "{err}"
    );
}

/// Puts `kovl`/`sig` on the boot media as `lab`: the overlay baked into an image.
fn bake(a: &Appliance, kovl: &[u8], sig: &str) {
    std::fs::write(a.paths.boot_overlays.join("lab.kovl"), kovl).unwrap();
    std::fs::write(a.paths.boot_overlays.join("lab.kovl.minisig"), sig).unwrap();
}

fn state_json(a: &Appliance) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(a.paths.state_file()).unwrap()).unwrap()
}

fn on_trial() -> ApplyOptions {
    ApplyOptions {
        image_on_trial: true,
        ..opts()
    }
}

/// v2 runs blessed with its lab v3; update v3 is tried carrying lab v4.
/// The trial boot uses v4 but records nothing; a failed trial leaves v2
/// its own v3 (no rollback refusal); a blessed one records v4.
#[test]
fn an_image_on_trial_uses_its_overlay_without_raising_the_floor() {
    let a = Appliance::new();
    a.boot_media(&[("good", "lab")]);
    assert_eq!(accepted(&a.boot()), vec![("lab".into(), 3)]);
    let v2_copy = std::fs::read(a.paths.persisted_dir().join("lab.kovl")).unwrap();
    let state_v2 = state_json(&a);
    assert_eq!(state_v2["overlays"]["floors"]["lab"], 3);

    // Boot of update v3, on trial, with a newer baked overlay.
    let (kovl4, sig4) = lab_version(4, |s| {
        s.replace(
            "hostname = \"kindling-lab\"",
            "hostname = \"kindling-lab-4\"",
        )
    });
    bake(&a, &kovl4, &sig4);
    let out = kindling_overlay::apply(&a.paths, &on_trial(), None);
    assert_eq!(accepted(&out), vec![("lab".into(), 4)], "{:?}", out.report);
    assert_eq!(a.site_json()["site"]["hostname"], "kindling-lab-4");
    assert!(
        out.report
            .notes
            .iter()
            .any(|n| n.contains("lab v4") && n.contains("on trial")),
        "{:?}",
        out.report.notes
    );
    assert_eq!(state_json(&a), state_v2, "the trial changed state.json");
    assert_eq!(
        std::fs::read(a.paths.persisted_dir().join("lab.kovl")).unwrap(),
        v2_copy,
        "the trial replaced the data partition's copy"
    );
    // Every try of it alike.
    kindling_overlay::apply(&a.paths, &on_trial(), None);
    assert_eq!(state_json(&a), state_v2);

    // The trial failed: the firmware boots v2 again, blessed, with its v3.
    a.boot_media(&[("good", "lab")]);
    let out = a.boot();
    assert_eq!(accepted(&out), vec![("lab".into(), 3)], "{:?}", out.report);
    assert!(out.report.refused.is_empty(), "{:?}", out.report.refused);
    assert_eq!(a.site_json()["site"]["hostname"], "kindling-lab");
    assert_eq!(state_json(&a)["overlays"]["floors"]["lab"], 3);

    // A later try that passes: recorded at blessing, kept on the next boot.
    bake(&a, &kovl4, &sig4);
    kindling_overlay::apply(&a.paths, &on_trial(), None);
    assert_eq!(state_json(&a)["overlays"]["floors"]["lab"], 3);
    let out = kindling_overlay::api::record_after_blessing(&a.paths, &on_trial());
    assert_eq!(accepted(&out), vec![("lab".into(), 4)], "{:?}", out.report);
    let state = state_json(&a);
    assert_eq!(state["overlays"]["floors"]["lab"], 4);
    assert_eq!(state["overlays"]["accepted"]["lab"]["version"], 4);
    assert_eq!(
        std::fs::read(a.paths.persisted_dir().join("lab.kovl")).unwrap(),
        kovl4
    );
    // Blessed, the older image's overlay is a rollback again.
    a.boot_media(&[("good", "lab")]);
    let out = a.boot();
    assert_eq!(accepted(&out), vec![("lab".into(), 4)]);
    assert!(
        out.report.refused[0].line().contains("rollback refused"),
        "{:?}",
        out.report.refused
    );
}

/// An operator's push during a trial is its own signed decision: recorded.
#[test]
fn a_push_during_a_trial_is_recorded_but_not_the_images_overlay() {
    let a = Appliance::new();
    a.boot_media(&[("good", "lab")]);
    a.boot();
    let (kovl4, sig4) = lab_version(4, |s| s);
    bake(&a, &kovl4, &sig4);
    kindling_overlay::apply(&a.paths, &on_trial(), None);
    let (kovl5, sig5) = lab_version(5, |s| s.replace("lease_secs = 3600", "lease_secs = 1800"));
    let r = kindling_overlay::api::push(&a.paths, &push_json(&kovl5, &sig5), &on_trial());
    assert!(r.is_ok(), "{r:?}");
    let state = state_json(&a);
    assert_eq!(state["overlays"]["floors"]["lab"], 5);
    assert_eq!(
        std::fs::read(a.paths.persisted_dir().join("lab.kovl")).unwrap(),
        kovl5
    );
}

/// The lab tree in a temp dir (site.toml and both profiles as shipped).
fn lab_tree() -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix("ko-tree-")
        .tempdir()
        .unwrap();
    let src = repo().join("overlays/lab");
    std::fs::create_dir_all(tmp.path().join("profiles")).unwrap();
    for f in ["site.toml", "profiles/dev.toml", "profiles/prod.toml"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    tmp
}

fn lab_opts(version: u64) -> BuildOptions {
    BuildOptions {
        name: "lab".into(),
        version,
        layer: LayerKind::Site,
        site_id: None,
        created: NOW - 100,
        expires: NOW + 86_400,
    }
}

/// `kindling artifact list --json` output holding `items` (name, sha256).
fn catalog(items: &[(&str, String)]) -> kindling_overlay::Catalog {
    let artifacts: Vec<serde_json::Value> = items
        .iter()
        .map(|(name, sha)| {
            serde_json::json!({"sha256": sha, "name": name, "bytes": 1,
                "uploaded": "2026-12-07T05:00:00Z", "uploaded_by": "alice",
                "path": format!("/by-hash/sha256/{sha}")})
        })
        .collect();
    let json = serde_json::json!({"artifacts": artifacts, "max_bytes": 1, "keep_free_bytes": 1});
    kindling_overlay::Catalog::from_json(&json.to_string()).unwrap()
}

#[test]
fn pushed_artifact_names_are_pinned_at_build_and_reach_the_appliance() {
    let tree = lab_tree();
    let original = std::fs::read_to_string(tree.path().join("profiles/dev.toml")).unwrap();
    let k = "1a".repeat(32);
    let (packed, resolutions) = kindling_overlay::pack_pinned(
        tree.path(),
        &lab_opts(4),
        Some(&catalog(&[
            ("vmlinuz", k.clone()),
            ("other.iso", "2b".repeat(32)),
        ])),
    )
    .unwrap();
    let lines: Vec<String> = resolutions.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        vec![
            format!("profile dev: kernel vmlinuz -> sha256/{k}"),
            "profile dev: initrd[0] lab-node.cpio.zst is not a pushed artifact; it stays a file name (served from the image's artifacts, e.g. baked with --artifact)".to_string(),
            format!("profile prod: kernel vmlinuz -> sha256/{k}"),
            "profile prod: initrd[0] lab-node.cpio.zst is not a pushed artifact; it stays a file name (served from the image's artifacts, e.g. baked with --artifact)".to_string(),
        ]
    );
    // The operator's file is untouched; the packed one differs only there.
    assert_eq!(
        std::fs::read_to_string(tree.path().join("profiles/dev.toml")).unwrap(),
        original
    );
    let parts =
        kindling_overlay::format::read_kovl(&packed.kovl, &kindling_overlay::Limits::default())
            .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tree");
    kindling_overlay::unpack::unpack_payload(
        &parts.payload,
        &out,
        &kindling_overlay::Limits::default(),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("profiles/dev.toml")).unwrap(),
        original.replace("kernel = \"vmlinuz\"", &format!("kernel = \"sha256/{k}\""))
    );

    // Signed and accepted: the appliance's config names the pinned hash.
    let key = test_key("kindling");
    let sig = key
        .sign(&packed.kovl, &packed.manifest.trusted_comment())
        .unwrap();
    let a = Appliance::new();
    a.boot_media(&[("good", "lab")]);
    a.boot();
    let r = kindling_overlay::api::push(&a.paths, &push_json(&packed.kovl, &sig), &opts());
    assert!(r.is_ok(), "{r:?}");
    let site = a.site_json();
    assert_eq!(
        site["profiles"]["dev"]["boot"]["kernel"],
        format!("sha256/{k}")
    );
    assert_eq!(
        site["profiles"]["dev"]["boot"]["initrd"][0],
        "lab-node.cpio.zst"
    );

    // Without a catalog nothing is pinned; a name kept twice is refused.
    let (_, none) = kindling_overlay::pack_pinned(tree.path(), &lab_opts(5), None).unwrap();
    assert!(none.is_empty());
    let twice = catalog(&[("vmlinuz", "aa".repeat(32)), ("vmlinuz", "bb".repeat(32))]);
    let err = kindling_overlay::pack_pinned(tree.path(), &lab_opts(5), Some(&twice))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "sha256/{}, sha256/{}",
            "aa".repeat(32),
            "bb".repeat(32)
        )) && err.starts_with("profile dev: boot.kernel names \"vmlinuz\""),
        "{err}"
    );
}

#[test]
fn a_malformed_pin_is_refused_at_build_and_by_the_appliance() {
    let tree = lab_tree();
    let dev = tree.path().join("profiles/dev.toml");
    let text = std::fs::read_to_string(&dev).unwrap().replace(
        "kernel = \"vmlinuz\"",
        &format!("kernel = \"sha256/{}\"", "A1".repeat(32)),
    );
    std::fs::write(&dev, &text).unwrap();
    let err = kindling_overlay::pack(tree.path(), &lab_opts(4))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("profiles.dev.boot.kernel: profile dev, boot.kernel: ")
            && err.contains("64 lower-case hex digits"),
        "{err}"
    );

    // A partial overlay (no site id: checked per file at build) carrying
    // the same profile is refused when the appliance merges it.
    std::fs::remove_file(tree.path().join("site.toml")).unwrap();
    std::fs::remove_file(tree.path().join("profiles/prod.toml")).unwrap();
    let extra = BuildOptions {
        name: "extra".into(),
        site_id: Some("lab".into()),
        ..lab_opts(1)
    };
    let built = kindling_overlay::build(tree.path(), &extra, &test_key("kindling")).unwrap();
    let a = Appliance::new();
    a.boot_media(&[("good", "lab")]);
    a.boot();
    let err =
        kindling_overlay::api::push(&a.paths, &push_json(&built.kovl, &built.minisig), &opts())
            .unwrap_err()
            .to_string();
    assert!(
        err.contains("profiles.dev.boot.kernel") && err.contains("64 lower-case hex digits"),
        "{err}"
    );
}
