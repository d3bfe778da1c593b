//! Against real processes (OpenBao as `vault`, Consul 1.8.7, on loopback):
//! an appliance bootstrapped by kindling is backed up the appliance's way
//! (its own tokens, found as the backup service finds them); the backup is
//! opened with the operator's identity and restored onto a fresh Consul +
//! OpenBao pair, where the Consul KV value and the node inventory are back
//! and Vault unseals with the ORIGINAL shares and holds its old secret. A
//! tampered copy is refused before anything touches the target.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../stack/tests/common/mod.rs"]
mod common;
mod support;

use age::secrecy::ExposeSecret;
use common::*;
use kindling_backup::{restore, Endpoint};
use kindling_stack::bootstrap::policies::KV_MOUNT;
use kindling_stack::consul::ConsulApi;
use kindling_stack::vault::{Health, VaultApi};
use std::time::Duration;
use support::*;

#[test]
fn backup_one_appliance_restore_on_a_fresh_pair() {
    let Some(tools) = tools() else { return };
    let identity = new_identity();
    let rt = rt();

    // 1. The appliance: bootstrapped by kindling, a value in Consul KV and
    //    in Vault, a node in the inventory.
    let Source {
        lab: source,
        original,
        token,
        mgmt,
    } = source_with_data(&tools, &identity, &rt);

    // 2. The backup, made the way `kindlingd backup` makes it.
    let (id, made, file) = backup(&rt, &source);
    assert!(file.starts_with(b"age-encryption.org/v1"));
    assert!(
        !file.windows(mgmt.len()).any(|w| w == mgmt.as_bytes()),
        "the management token is not in the file in clear"
    );
    let names: Vec<&str> = made
        .manifest
        .entries
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for want in [
        "consul.snap",
        "vault.snap",
        "data/inventory/nodes.json",
        "data/leases/leases.json",
        "data/overlays/lab.kovl",
        "data/state.json",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    assert!(names.contains(&"data/stack/vault-init.age"), "{names:?}");
    let keys = original.keys_base64.clone();
    let ports = source.layout.ports;
    let data_dir = source.layout.data_dir.clone();
    drop(source); // the old appliance is gone

    // 3. A fresh pair: Consul with ACLs bootstrapped anew, OpenBao
    //    initialised with other keys.
    //    Same ports as the old one, as on a reinstalled appliance: Consul's
    //    snapshot names Vault's address (its Connect CA provider).
    let mut target = Lab::new(&tools, site("manual", false, &new_identity()));
    //    And the same data directory: Vault's restored audit device names
    //    its file there, and OpenBao refuses one whose path differs from
    //    its config (on an appliance it is always /var/lib/kindling).
    target.layout.ports = ports;
    target.layout.data_dir = data_dir.clone();
    let _cleanup = RemoveOnDrop(data_dir.clone());
    target.services = kindling_stack::render(&target.site, &target.layout)
        .unwrap()
        .services;
    target.start("consul");
    target.start("vault");
    let t_consul = ConsulApi::new(&target.layout.consul_local_url(), None);
    rt.block_on(t_consul.wait_for_leader(Duration::from_secs(60)))
        .unwrap();
    let t_mgmt = rt
        .block_on(t_consul.acl_bootstrap(Duration::from_secs(60)))
        .unwrap();
    let t_vault = VaultApi::new(&target.layout.vault_local_url(), None, None).unwrap();
    let (t_keys, t_root) = rt.block_on(t_vault.init(1, 1)).unwrap();
    rt.block_on(t_vault.unseal(&t_keys[0])).unwrap();
    wait_active(&rt, &t_vault);
    let consul_ep = Endpoint {
        url: target.layout.consul_local_url(),
        token: t_mgmt.secret_id.clone(),
        ca_pem: None,
    };
    let vault_ep = Endpoint {
        url: target.layout.vault_local_url(),
        token: t_root.clone(),
        ca_pem: None,
    };

    // 4. A tampered copy is refused before anything reaches the target.
    let operator =
        kindling_stack::secrets::parse_identity(identity.to_string().expose_secret()).unwrap();
    let mut tampered = file.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x40;
    let err = kindling_backup::open(&tampered[..], &operator).unwrap_err();
    assert!(err.to_string().contains("damaged or was changed"), "{err}");
    let target_consul = t_consul.with_token(&t_mgmt.secret_id);
    assert_eq!(rt.block_on(target_consul.kv_get(KV.0)).unwrap(), None);

    // 5. The real file: opened, checked, restored: Vault first (Consul's
    //    Connect CA provider is that Vault, with a token only the restored
    //    Vault knows), then Consul, then the files.
    let opened = kindling_backup::open(&file[..], &operator).unwrap();
    assert_eq!(opened.manifest.id, id.to_string());
    rt.block_on(restore::vault(&opened, &vault_ep)).unwrap();

    // Vault: the old one, which seals itself once the snapshot is in; after
    // a restart the ORIGINAL shares open it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rt.block_on(t_vault.health()).ok() != Some(Health::Sealed) {
        assert!(
            std::time::Instant::now() < deadline,
            "Vault did not seal after the restore"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // A sealed OpenBao keeps the seal configuration it started with (the
    // fresh pair's, 1 share): restarted, it reads the restored one.
    target.kill9("vault");
    target.start("vault");
    // The first original share is taken as one of the original's seal
    // (3 shares, threshold 2: the fresh pair's was 1 of 1), the second opens it.
    let first = rt.block_on(t_vault.unseal(&keys[0])).unwrap();
    assert_eq!(
        (first.sealed, first.shares, first.threshold, first.progress),
        (true, 3, 2, 1),
        "the restored Vault has the original's seal: {first:?}"
    );
    let second = rt.block_on(t_vault.unseal(&keys[1])).unwrap();
    assert!(!second.sealed, "{second:?}");
    wait_active(&rt, &t_vault);
    let restored = VaultApi::new(&target.layout.vault_local_url(), None, None)
        .unwrap()
        .with_token(&token);
    let v = rt
        .block_on(restored.kv_read(KV_MOUNT, SECRET.0))
        .unwrap()
        .unwrap();
    assert_eq!(v["v"], SECRET.1);

    // Consul: the old ACLs (the old management token works) and the KV value.
    rt.block_on(restore::consul(&opened, &consul_ep)).unwrap();
    let old_mgmt = t_consul.with_token(&mgmt);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let value = loop {
        match rt.block_on(old_mgmt.kv_get(KV.0)) {
            Ok(Some(v)) => break v,
            other if std::time::Instant::now() > deadline => panic!("{other:?}"),
            _ => std::thread::sleep(Duration::from_millis(250)),
        }
    };
    assert_eq!(value, KV.1);

    // The files: the node inventory and the original (encrypted) shares.
    let written = restore::files(&opened, &target.layout.data_dir).unwrap();
    for want in [
        "inventory/nodes.json",
        "leases/leases.json",
        "state.json",
        "stack/vault-init.age",
        "stack/appliance-token",
        "stack/consul-gossip.key",
    ] {
        assert!(
            written.contains(&target.layout.data_dir.join(want)),
            "{want} in {written:?}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(target.layout.data_dir.join("inventory/nodes.json")).unwrap(),
        NODES
    );
    assert_eq!(target.init_secrets(&identity).keys_base64, keys);
}
