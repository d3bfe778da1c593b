//! Every bad-overlay scenario, one fixture directory each under
//! `tests/data/<scenario>/` (signed with the TEST-ONLY keys): the overlay is
//! refused with one line naming it and the reason, the last good overlay keeps
//! running, and the refusal is in the report. Checked at boot (boot media) and
//! at runtime (push).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::*;
use kindling_api::{ApiFailure, ErrorKind};

const SCENARIOS: &[&str] = &[
    "wrong-key",
    "flipped-payload-byte",
    "flipped-signature-byte",
    "truncated",
    "expired",
    "rollback",
    "other-site",
    "path-traversal",
    "absolute-path",
    "symlink-out",
    "zip-bomb",
    "invalid-toml",
    "unknown-key",
    "dhcp-range-outside-lan",
    "manifest-hash-mismatch",
    "trusted-comment-mismatch",
];

fn expect(scenario: &str) -> String {
    std::fs::read_to_string(data().join(scenario).join("expect.txt"))
        .unwrap()
        .trim()
        .to_string()
}

/// An appliance that accepted good/lab.kovl v3 on its first boot.
fn running_lab() -> Appliance {
    let a = Appliance::new();
    a.boot_media(&[("good", "lab")]);
    let first = a.boot();
    assert_eq!(
        accepted(&first),
        vec![("lab".to_string(), 3)],
        "{:?}",
        first.report
    );
    assert!(
        first.report.refused.is_empty(),
        "{:?}",
        first.report.refused
    );
    a
}

#[test]
fn each_bad_overlay_on_boot_media_is_refused_and_last_good_kept() {
    for scenario in SCENARIOS {
        let a = running_lab();
        // Next boot: the boot media now carries the bad overlay.
        a.boot_media(&[(scenario, "lab")]);
        let out = a.boot();
        let want = expect(scenario);
        let lines: Vec<String> = out.report.refused.iter().map(|r| r.line()).collect();
        assert_eq!(lines.len(), 1, "{scenario}: {lines:#?}");
        let line = &lines[0];
        assert!(line.contains(&want), "{scenario}: {line:?} lacks {want:?}");
        assert!(
            line.starts_with("refused overlay lab") || line.contains("/lab.kovl"),
            "{scenario}: {line:?} does not name the overlay"
        );
        assert!(!line.contains('\n'), "{scenario}: not one line: {line:?}");
        // The last good overlay (persisted on the data partition) still runs.
        assert_eq!(accepted(&out), vec![("lab".to_string(), 3)], "{scenario}");
        assert!(out.report.ok, "{scenario}");
        assert_eq!(a.site_json()["site"]["id"], "lab", "{scenario}");
        assert_eq!(
            a.site_json()["pxe"]["range"]["start"],
            "192.168.100.100",
            "{scenario}"
        );
        // The refusal is in the report file the status API serves.
        let report = a.report_json();
        let reasons: Vec<&str> = report["refused"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["reason"].as_str())
            .collect();
        assert!(
            reasons
                .iter()
                .any(|r| want.contains(r) || r.contains(want.as_str()) || line.contains(r)),
            "{scenario}: {reasons:?}"
        );
        // Nothing of the refused overlay was unpacked; no escapee outside it.
        assert!(!a.root().join("run/kindling/escape.toml").exists());
        assert!(!a.root().join("run/escape.toml").exists());
        assert!(!std::path::Path::new("/etc/kindling-escape").exists());
        let unpacked = a.paths.unpacked_dir().join("lab");
        assert!(
            !unpacked.join("files").exists(),
            "{scenario}: bad payload was unpacked"
        );
    }
}

#[test]
fn each_bad_overlay_pushed_is_refused_without_changing_anything() {
    for scenario in SCENARIOS {
        let a = running_lab();
        let state_before = std::fs::read(a.paths.state_file()).unwrap();
        let site_before = a.site_json();
        let out = a.push_fixture(scenario, "lab");
        let want = expect(scenario);
        let refused = match &out.pushed {
            Some(Err(r)) => r.line(),
            other => panic!("{scenario}: push not refused: {other:?}"),
        };
        assert!(
            refused.contains(&want),
            "{scenario}: {refused:?} lacks {want:?}"
        );
        assert_eq!(
            std::fs::read(a.paths.state_file()).unwrap(),
            state_before,
            "{scenario}: state changed"
        );
        assert_eq!(a.site_json(), site_before, "{scenario}: site.json changed");
        assert_eq!(accepted(&out), vec![("lab".to_string(), 3)], "{scenario}");
    }
}

#[test]
fn pushed_bad_overlay_via_api_is_422_with_reason() {
    let a = running_lab();
    let dir = data().join("dhcp-range-outside-lan");
    let body = serde_json::json!({
        "kovl": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, std::fs::read(dir.join("lab.kovl")).unwrap()),
        "minisig": std::fs::read_to_string(dir.join("lab.kovl.minisig")).unwrap(),
    });
    let opts = kindling_overlay::ApplyOptions {
        now: Some(NOW),
        ..Default::default()
    };
    let r = kindling_overlay::api::push(&a.paths, body.to_string().as_bytes(), &opts).unwrap_err();
    assert_eq!(r.kind(), ErrorKind::Refused);
    let err = r.to_string();
    assert!(err.starts_with("refused overlay lab v4 (pushed overlay): invalid configuration: lab/site.toml:25: pxe.range"), "{err}");
    let bad = kindling_overlay::api::push(&a.paths, b"{\"kovl\": 1}", &opts).unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::BadRequest, "{bad}");
}

#[test]
fn no_good_overlay_at_all_still_returns_a_report() {
    let a = Appliance::new();
    a.boot_media(&[("wrong-key", "lab")]);
    let out = a.boot();
    assert!(!out.report.ok);
    assert!(out.effective.is_none());
    assert!(!a.paths.site_json().exists());
    assert_eq!(
        a.report_json()["refused"][0]["name"],
        serde_json::Value::Null
    );
    assert!(out
        .report
        .lines()
        .iter()
        .any(|l| l.contains("no valid site configuration")));
}
