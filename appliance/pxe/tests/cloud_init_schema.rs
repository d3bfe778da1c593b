//! Every shipped profile's rendered user-data (with and without enrollment
//! material) passes Debian's `cloud-init schema --config-file`, and uses only
//! known top-level cloud-config keys (cloud-init 22.4's schema check does not
//! flag unknown top-level keys, so they are checked here).
//!
//! Ubuntu autoinstall profiles are checked twice over: the `autoinstall`
//! section against subiquity's published schema (`tests/data/`, with
//! Debian's python3-jsonschema), and the node's own cloud-config nested in
//! it like any other user-data.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::each_shipped_profile;
use kindling_pxe::render::{cloud_init, NodeContext};
use kindling_pxe::Enrollment;
use kindling_site::BootPayload;
use std::path::Path;
use std::process::Command;

/// Debian's Python, where cloud-init's own YAML and jsonschema modules live.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

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

struct Rendered {
    label: String,
    autoinstall: bool,
    text: String,
}

/// user-data for every shipped profile, without and with enrollment.
fn every_user_data() -> Vec<Rendered> {
    let mut out = Vec::new();
    each_shipped_profile(|label, ctx| {
        let enrolled = NodeContext {
            enrollment: Some(Enrollment {
                vault_addr: "https://192.168.100.1:8200".into(),
                role_id: "0b9c-role".into(),
                wrapped_secret_id: "hvs.CAES-wrapped".into(),
                ca_pem: Some(
                    "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
                ),
                ticket: kindling_pxe::enroll::GrantTicket {
                    wrapping_accessor: "acc-w".into(),
                    secret_id_accessor: "acc-s".into(),
                    ttl_secs: 300,
                },
            }),
            ..ctx.clone()
        };
        let autoinstall = matches!(ctx.profile.boot, BootPayload::UbuntuAutoinstall { .. });
        for (ctx, suffix) in [(ctx, ""), (enrolled, " (enrolled)")] {
            out.push(Rendered {
                label: format!("{label}{suffix}"),
                autoinstall,
                text: cloud_init::user_data(&ctx).unwrap(),
            });
        }
    });
    out
}

fn have(program: &str, arg: &str) -> bool {
    Command::new(program).arg(arg).output().is_ok()
}

fn assert_known_top_level_keys(label: &str, text: &str) {
    for line in text.lines().skip(1) {
        if line.is_empty() || line.starts_with([' ', '-', '#']) {
            continue;
        }
        let key = line.split(':').next().unwrap();
        assert!(
            KNOWN_KEYS.contains(&key),
            "{label}: unknown top-level key {key:?}"
        );
    }
}

fn assert_cloud_init_schema(label: &str, file: &Path, text: &str) {
    std::fs::write(file, text).unwrap();
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{label}: cloud-init schema failed:\n{}{}\n---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_shipped_profile_renders_valid_cloud_config() {
    if !have("cloud-init", "--version") {
        eprintln!("skipping: cloud-init is not installed (tests/install-deps installs it)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for r in every_user_data().iter().filter(|r| !r.autoinstall) {
        assert_known_top_level_keys(&r.label, &r.text);
        assert_cloud_init_schema(&r.label, &tmp.path().join("user-data"), &r.text);
        checked += 1;
    }
    assert!(
        checked >= 4,
        "expected the lab's dev and prod profiles at least, checked {checked}"
    );
}

/// Validates the `autoinstall` section of the user-data in argv[1] against
/// the schema in argv[2] and writes its nested `user-data` as a
/// cloud-config document to argv[3].
const SPLIT_AUTOINSTALL: &str = r##"
import json, sys, yaml, jsonschema
doc = yaml.safe_load(open(sys.argv[1]))
if set(doc) != {"autoinstall"}:
    sys.exit(f"top-level keys {sorted(doc)}: only autoinstall may reach the live installer")
section = doc["autoinstall"]
try:
    jsonschema.validate(section, json.load(open(sys.argv[2])))
except jsonschema.ValidationError as e:
    sys.exit(f"autoinstall: {e.message} at {list(e.absolute_path)}")
with open(sys.argv[3], "w") as out:
    out.write("#cloud-config\n" + yaml.safe_dump(section["user-data"], sort_keys=False))
"##;

#[test]
fn ubuntu_autoinstall_profiles_pass_subiquity_and_cloud_init_schemas() {
    if !have("cloud-init", "--version") || !have(SYSTEM_PYTHON, "--version") {
        eprintln!("skipping: cloud-init (with Debian's python3) is not installed (tests/install-deps installs it)");
        return;
    }
    let schema =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/subiquity-autoinstall-schema.json");
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for r in every_user_data().iter().filter(|r| r.autoinstall) {
        // The whole document as the live installer's cloud-init reads it.
        let whole = tmp.path().join("user-data");
        assert_cloud_init_schema(&r.label, &whole, &r.text);
        let nested = tmp.path().join("nested-user-data");
        let out = Command::new(SYSTEM_PYTHON)
            .args(["-c", SPLIT_AUTOINSTALL])
            .args([&whole, &schema, &nested])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}\n---\n{}",
            r.label,
            String::from_utf8_lossy(&out.stderr),
            r.text
        );
        // The installed system's cloud-config, as the installer hands it on.
        let text = std::fs::read_to_string(&nested).unwrap();
        assert_known_top_level_keys(&r.label, &text);
        assert_cloud_init_schema(&r.label, &nested, &text);
        checked += 1;
    }
    assert!(
        checked >= 2,
        "expected the production example's Ubuntu profiles, checked {checked}"
    );
}
