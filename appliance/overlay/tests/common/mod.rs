//! Shared helpers: a throw-away "appliance" (trust store, boot media, data
//! partition and /run, all in a temp dir) and access to the fixtures.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use kindling_overlay::apply::{apply, ApplyOptions, ApplyOutcome, ApplyPaths, PushedOverlay};
use std::path::{Path, PathBuf};

pub fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn test_key(name: &str) -> kindling_overlay::SecretKey {
    let text = std::fs::read_to_string(data().join(format!("keys/TEST-ONLY-{name}.key"))).unwrap();
    kindling_overlay::SecretKey::from_file_text(&text, None).unwrap()
}

/// 2026-06-01: after the fixtures' creation, before their expiry.
pub const NOW: u64 = 1_780_272_000;

pub struct Appliance {
    pub dir: tempfile::TempDir,
    pub paths: ApplyPaths,
}

impl Appliance {
    /// Trusts TEST-ONLY-kindling.pub, like an image built with that key.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ko-appliance-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        let paths = ApplyPaths {
            trust_dir: root.join("etc/trust"),
            boot_overlays: root.join("etc/overlays"),
            data_dir: root.join("var/lib/kindling"),
            run_dir: root.join("run/kindling"),
        };
        std::fs::create_dir_all(&paths.trust_dir).unwrap();
        std::fs::create_dir_all(&paths.boot_overlays).unwrap();
        std::fs::copy(
            data().join("keys/TEST-ONLY-kindling.pub"),
            paths.trust_dir.join("kindling.pub"),
        )
        .unwrap();
        Self { dir, paths }
    }

    /// Replaces the boot media's overlays with these fixture files, in order.
    pub fn boot_media(&self, files: &[(&str, &str)]) {
        let _ = std::fs::remove_dir_all(&self.paths.boot_overlays);
        std::fs::create_dir_all(&self.paths.boot_overlays).unwrap();
        let mut order = String::new();
        for (scenario, name) in files {
            for ext in ["kovl", "kovl.minisig"] {
                std::fs::copy(
                    data().join(scenario).join(format!("{name}.{ext}")),
                    self.paths.boot_overlays.join(format!("{name}.{ext}")),
                )
                .unwrap();
            }
            order.push_str(&format!("{name}.kovl\n"));
        }
        std::fs::write(self.paths.boot_overlays.join("order"), order).unwrap();
    }

    /// One boot's config phase.
    pub fn boot(&self) -> ApplyOutcome {
        apply(
            &self.paths,
            &ApplyOptions {
                now: Some(NOW),
                ..ApplyOptions::default()
            },
            None,
        )
    }

    pub fn push_fixture(&self, scenario: &str, name: &str) -> ApplyOutcome {
        let dir = data().join(scenario);
        let kovl = std::fs::read(dir.join(format!("{name}.kovl"))).unwrap();
        let minisig = std::fs::read_to_string(dir.join(format!("{name}.kovl.minisig"))).unwrap();
        apply(
            &self.paths,
            &ApplyOptions {
                now: Some(NOW),
                ..ApplyOptions::default()
            },
            Some(PushedOverlay { kovl, minisig }),
        )
    }

    pub fn site_json(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.paths.site_json()).unwrap()).unwrap()
    }

    pub fn report_json(&self) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(self.paths.report_json()).unwrap()).unwrap()
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// The accepted (name, version) pairs of an outcome.
pub fn accepted(o: &ApplyOutcome) -> Vec<(String, u64)> {
    o.report
        .accepted
        .iter()
        .map(|a| (a.name.clone(), a.version))
        .collect()
}
