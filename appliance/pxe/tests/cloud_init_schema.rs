//! Every shipped profile's rendered user-data (with and without enrollment
//! material) passes Debian's `cloud-init schema --config-file`, and uses only
//! known top-level cloud-config keys (cloud-init 22.4's schema check does not
//! flag unknown top-level keys, so they are checked here).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kindling_pxe::render::{cloud_init, NodeContext};
use kindling_pxe::{Enrollment, MacAddr};
use std::path::Path;
use std::process::Command;

/// cloud-config keys kindling renders or profiles may reasonably add.
const KNOWN_KEYS: &[&str] = &[
    "hostname",
    "fqdn",
    "prefer_fqdn_over_hostname",
    "ssh_authorized_keys",
    "packages",
    "write_files",
    "runcmd",
    "timezone",
    "users",
    "groups",
    "apt",
    "package_update",
    "package_upgrade",
    "ntp",
    "bootcmd",
    "mounts",
    "ssh_pwauth",
    "disable_root",
    "final_message",
    "power_state",
    "locale",
    "ca_certs",
    "chpasswd",
    "ssh",
];

fn overlays() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlays");
    let mut dirs: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("site.toml").is_file() || p.join("profiles").is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_shipped_profile_renders_valid_cloud_config() {
    if Command::new("cloud-init")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipping: cloud-init is not installed (tests/install-deps installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for dir in overlays() {
        let site = kindling_site::SiteTree::read_dir(&dir)
            .unwrap()
            .to_config("test")
            .unwrap()
            .config;
        for (name, profile) in &site.profiles {
            for enrollment in [
                None,
                Some(Enrollment {
                    vault_addr: "https://192.168.100.1:8200".into(),
                    role_id: "0b9c-role".into(),
                    wrapped_secret_id: "hvs.CAES-wrapped".into(),
                    ca_pem: Some(
                        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
                    ),
                }),
            ] {
                let ctx = NodeContext {
                    mac: MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]),
                    hostname: "node-1".into(),
                    domain: site.site.domain.clone(),
                    profile_name: name.as_str(),
                    profile,
                    base_url: "http://192.168.100.1/",
                    enrollment,
                };
                let text = cloud_init::user_data(&ctx).unwrap();
                for line in text.lines().skip(1) {
                    if line.is_empty() || line.starts_with([' ', '-', '#']) {
                        continue;
                    }
                    let key = line.split(':').next().unwrap();
                    assert!(
                        KNOWN_KEYS.contains(&key),
                        "{}: profile {name}: unknown top-level key {key:?}",
                        dir.display()
                    );
                }
                let file = tmp.path().join(format!("{name}.yaml"));
                std::fs::write(&file, &text).unwrap();
                let out = Command::new("cloud-init")
                    .args(["schema", "--config-file"])
                    .arg(&file)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "{}: profile {name}: cloud-init schema failed:\n{}{}\n---\n{text}",
                    dir.display(),
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked >= 4,
        "expected the lab's dev and prod profiles at least, checked {checked}"
    );
}
