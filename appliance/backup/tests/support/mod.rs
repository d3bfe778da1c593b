//! What the backup tests share: an appliance bootstrapped by kindling with
//! data in Consul KV, Vault and the inventory, and a backup of it made the
//! way `kindlingd backup` makes one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use crate::common::*;
use kindling_backup::manifest::Appliance;
use kindling_backup::{BackupId, BackupStore, Job, Made, Retention, Sources};
use kindling_stack::bootstrap::policies::{CONSUL_MANAGEMENT_KV, KV_MOUNT};
use kindling_stack::consul::ConsulApi;
use kindling_stack::secrets::InitSecrets;
use kindling_stack::vault::{Health, VaultApi};
use std::time::Duration;

pub const NODES: &str = r#"{"nodes":{"52:54:00:6b:00:10":{"state":"installed"}}}"#;
/// The Consul KV key and value written before the backup.
pub const KV: (&str, &str) = ("backup-test/value", "written-before-the-backup");
/// The Vault KV path and value written before the backup.
pub const SECRET: (&str, &str) = ("backup-test", "vault-before");

/// The source appliance and what an operator and the test know of it.
pub struct Source {
    pub lab: Lab,
    /// Its init secrets, as the operator decrypts them.
    pub original: InitSecrets,
    /// The bootstrap's Vault token.
    pub token: String,
    /// Consul's management token, as the bootstrap keeps it in Vault.
    pub mgmt: String,
}

pub fn appliance_token(lab: &Lab) -> String {
    std::fs::read_to_string(lab.layout.state_dir().join("appliance-token"))
        .unwrap()
        .trim()
        .to_string()
}

/// An appliance bootstrapped by kindling with [`KV`] in Consul, [`SECRET`]
/// in Vault, [`NODES`] in its inventory, leases and an overlay.
pub fn source_with_data(
    tools: &std::path::Path,
    identity: &age::x25519::Identity,
    rt: &tokio::runtime::Runtime,
) -> Source {
    let mut lab = Lab::new(tools, site("local", false, identity));
    lab.start("consul");
    lab.start("vault");
    rt.block_on(kindling_stack::bootstrap::run(lab.options()))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.status_text()));
    let original = lab.init_secrets(identity);
    let token = appliance_token(&lab);
    let vault = VaultApi::new(&lab.layout.vault_local_url(), None, None)
        .unwrap()
        .with_token(&token);
    let mgmt = rt
        .block_on(vault.kv_read(KV_MOUNT, CONSUL_MANAGEMENT_KV))
        .unwrap()
        .unwrap()["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let consul = ConsulApi::new(&lab.layout.consul_local_url(), Some(mgmt.clone()));
    rt.block_on(consul.kv_put(KV.0, KV.1)).unwrap();
    rt.block_on(vault.kv_write(KV_MOUNT, SECRET.0, &serde_json::json!({"v": SECRET.1})))
        .unwrap();
    let data = &lab.layout.data_dir;
    for (rel, text) in [
        ("inventory/nodes.json", NODES),
        ("leases/leases.json", r#"{"leases":[]}"#),
        ("overlays/lab.kovl", "signed overlay bytes"),
        ("state.json", r#"{"overlays":{"floors":{"lab":3}}}"#),
    ] {
        std::fs::create_dir_all(data.join(rel).parent().unwrap()).unwrap();
        std::fs::write(data.join(rel), text).unwrap();
    }
    Source {
        lab,
        original,
        token,
        mgmt,
    }
}

/// A backup of `lab`, made the way `kindlingd backup` makes it (its own
/// tokens, found as the backup service finds them); its size and time are
/// printed (the issue's numbers, not asserted).
pub fn backup(rt: &tokio::runtime::Runtime, lab: &Lab) -> (BackupId, Made, Vec<u8>) {
    let sources = rt
        .block_on(Sources::for_appliance(&lab.site, &lab.layout))
        .unwrap();
    assert_eq!(sources.vault_storage, "raft");
    let store = BackupStore::in_data_dir(&lab.layout.data_dir);
    let job = Job {
        recipients: kindling_stack::secrets::parse_recipients(&lab.site.stack.vault.recipients)
            .unwrap(),
        appliance: Appliance {
            site_id: lab.site.site.id.clone(),
            hostname: "kindling-test".into(),
            version: "test".into(),
        },
        retention: Retention {
            keep: 7,
            max_bytes: u64::MAX,
        },
    };
    let id = BackupId::new(kindling_clock::unix_now());
    let started = std::time::Instant::now();
    let made = rt
        .block_on(kindling_backup::make(
            &sources,
            &job,
            &store,
            &id,
            kindling_clock::unix_now(),
        ))
        .unwrap();
    let file = std::fs::read(&made.stored.path).unwrap();
    eprintln!(
        "backup {}: {} bytes encrypted, {} parts, made in {} ms",
        id,
        file.len(),
        made.manifest.entries.len(),
        started.elapsed().as_millis()
    );
    (id, made, file)
}

/// A data directory reused outside the target lab's temp dir.
pub struct RemoveOnDrop(pub std::path::PathBuf);
impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn wait_active(rt: &tokio::runtime::Runtime, vault: &VaultApi) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if rt.block_on(vault.health()).ok() == Some(Health::Active) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("vault did not become active");
}
