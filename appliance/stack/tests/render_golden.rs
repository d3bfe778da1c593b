//! Rendered configs and service entries against golden files
//! (`tests/data/golden/`; `UPDATE_GOLDEN=1` rewrites them after a reviewed
//! change), the real `consul validate` on a rendered config, and the site
//! checks rendering depends on. (The real `bao server` is started from the
//! rendered `vault.json` by every scenario test.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use kindling_stack::render::{self, RenderError};
use kindling_stack::StackLayout;
use serde_json::Value;
use std::path::Path;

fn lab_site() -> kindling_site::SiteConfig {
    let recipient = common::new_identity().to_public().to_string();
    serde_json::from_value(serde_json::json!({
        "site": {"id": "lab", "hostname": "kindling-lab", "domain": "lab.kindling.internal"},
        "nodes": [{"mac": "52:54:00:6b:00:10", "profile": "dev", "hostname": "node-dev-1"}],
        "stack": {
            "datacenter": "lab",
            "consul": {"enabled": true, "connect_vault_ca": true},
            "vault": {"enabled": true, "unseal": "manual", "recipients": [recipient]},
            "nomad": {"enabled": true}
        },
        "profiles": {"dev": {"name": "dev", "tags": {"env": "development"}, "boot": {"kind": "linux", "kernel": "vmlinuz"}}}
    }))
    .unwrap()
}

fn golden(name: &str, actual: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/golden")
        .join(name);
    let text = format!("{}\n", serde_json::to_string_pretty(actual).unwrap());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &text).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 creates it)", path.display()));
    assert_eq!(
        text,
        want,
        "{} differs from the rendered output",
        path.display()
    );
}

#[test]
fn rendered_configs_match_golden_files() {
    let site = lab_site();
    let layout = StackLayout::appliance();
    golden(
        "consul.json",
        &render::consul_config(
            &site,
            &layout,
            "R09MREVOLUdPU1NJUEtFWUZPUlRFU1RTT05MWTEyMzQ=",
            "6b696e64-6c69-4e67-8000-676f6c64656e",
        )
        .unwrap(),
    );
    golden(
        "vault.json",
        &render::vault_config(&site, &layout, None).unwrap(),
    );
    golden(
        "nomad.json",
        &render::nomad_config(
            &site,
            &layout,
            "Tk9NQURHT1NTSVBLRVlGT1JURVNUU09OTFkxMjM0NTY=",
        )
        .unwrap(),
    );
    golden(
        "services.json",
        &serde_json::to_value(render::service_entries(&site, &layout)).unwrap(),
    );
}

#[test]
fn real_consul_validates_the_rendered_config() {
    let Some(tools) = common::tools() else { return };
    let lab = common::Lab::new(&tools, common::site("local", true, &common::new_identity()));
    let out = std::process::Command::new(tools.join("consul"))
        .arg("validate")
        .arg(lab.layout.consul_config())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "consul validate: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The files a secret lives in are not world-readable: keys are their
    // owner's alone; the Consul config (it carries the gossip key) is also
    // readable by Consul's group, since the bootstrap's account writes it.
    use std::os::unix::fs::PermissionsExt;
    let mode = |f: &Path| std::fs::metadata(f).unwrap().permissions().mode();
    assert_eq!(mode(&lab.layout.consul_config()) & 0o007, 0);
    for f in [
        lab.layout.state_dir().join("consul-gossip.key"),
        lab.layout.state_dir().join("tls/ca-key.pem"),
        lab.layout.state_dir().join("tls/consul-key.pem"),
    ] {
        assert_eq!(mode(&f) & 0o077, 0, "{}", f.display());
    }
}

#[test]
fn real_bao_starts_from_the_rendered_config_without_warnings() {
    let Some(tools) = common::tools() else { return };
    let mut lab = common::Lab::new(
        &tools,
        common::site("local", false, &common::new_identity()),
    );
    // Waits for /v1/sys/health to answer (501: not initialised) on the loopback listener.
    lab.start("vault");
    // The TLS listener on the LAN address answers with the appliance CA's certificate.
    let ca = lab.layout.state_dir().join("tls/ca.pem");
    let url = format!("https://127.0.0.2:{}", lab.layout.ports.vault_api);
    let health = common::rt().block_on(async {
        kindling_stack::vault::VaultApi::new(&url, None, Some(&ca))
            .unwrap()
            .health()
            .await
            .unwrap()
    });
    assert_eq!(health, kindling_stack::vault::Health::Uninitialized);
    let log = lab.log("vault");
    for bad in ["unknown or unsupported field", "error", "WARN"] {
        let hits: Vec<&str> = log.lines().filter(|l| l.contains(bad)).collect();
        assert!(
            hits.is_empty(),
            "bao complained about the rendered config ({bad}): {hits:?}"
        );
    }
}

#[test]
fn missing_binaries_still_get_entries_and_disabled_stack_gets_none() {
    let dir = tempfile::tempdir().unwrap();
    let mut layout = StackLayout::appliance();
    layout.config_dir = dir.path().join("run");
    layout.data_dir = dir.path().join("data");
    layout.bin_dir = dir.path().join("no-such-bin");
    let rendered = render::render(&lab_site(), &layout).unwrap();
    let names: Vec<&str> = rendered.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["consul", "vault", "nomad", "stack"]);
    // Each runs as its own account; only Vault keeps a capability
    // (CAP_IPC_LOCK, for HashiCorp Vault's mlock).
    for s in &rendered.services {
        assert_ne!(s.user, 0, "{} runs as root", s.name);
        let want: &[&str] = if s.name == "vault" {
            &["CAP_IPC_LOCK"]
        } else {
            &[]
        };
        assert_eq!(s.capabilities, want, "{}", s.name);
    }
    let mut uids: Vec<u32> = rendered.services.iter().map(|s| s.user).collect();
    uids.dedup();
    assert_eq!(uids.len(), 4, "one account per service");

    let mut off = lab_site();
    off.stack.consul.enabled = false;
    off.stack.vault.enabled = false;
    off.stack.nomad.enabled = false;
    assert!(render::render(&off, &layout).unwrap().services.is_empty());
}

#[test]
fn bad_stack_settings_are_named() {
    let layout = StackLayout::appliance();
    let mut s = lab_site();
    s.stack.vault.key_threshold = 6;
    let err = render::render(&s, &layout).unwrap_err();
    assert!(
        matches!(
            err,
            RenderError::KeyThreshold {
                shares: 5,
                threshold: 6
            }
        ),
        "{err}"
    );

    let mut s = lab_site();
    s.stack.vault.recipients = vec![];
    assert!(render::render(&s, &layout)
        .unwrap_err()
        .to_string()
        .contains("stack.vault.recipients is empty"));

    let mut s = lab_site();
    s.stack.vault.recipients = vec!["age1notarealkey".into()];
    assert!(render::render(&s, &layout)
        .unwrap_err()
        .to_string()
        .contains("stack.vault.recipients[0]"));

    let mut s = lab_site();
    s.stack.vault.enabled = false;
    assert!(matches!(
        render::render(&s, &layout).unwrap_err(),
        RenderError::NeedsVault
    ));

    let mut s = lab_site();
    s.stack.vault.storage = kindling_site::VaultStorage::Consul;
    s.stack.consul.enabled = false;
    s.stack.nomad.enabled = false;
    assert!(matches!(
        render::render(&s, &layout).unwrap_err(),
        RenderError::VaultStorageNeedsConsul
    ));
}
