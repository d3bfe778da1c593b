//! A restore through the appliance itself, against real processes (OpenBao
//! as `vault`, Consul 1.8.7, on loopback; init's control socket played by
//! `FakeInit`, which restarts the real Vault):
//!
//! 1. appliance A is bootstrapped by kindling, holds a Consul KV value, a
//!    Vault secret and a node, and is backed up the appliance's way;
//! 2. appliance B, a fresh install of the same site, bootstraps its own
//!    cluster (other unseal keys, other tokens);
//! 3. the operator's decrypted backup is staged on B as the API stages it
//!    (a tampered one and one of another site are refused, nothing staged);
//! 4. B "reboots": the config phase's apply moves its fresh Consul and
//!    Vault data aside and writes the backup's files; the bootstrap forces
//!    Vault's snapshot in, waits for the ORIGINAL shares (a run cut off
//!    before Vault's restart has the next one restart it; one that gives
//!    up waiting leaves the next one saying Vault is restored), restores
//!    Consul's snapshot and carries on with A's own Vault token.
//!
//! B then answers with A's KV value, A's Vault secret, A's node, and A's
//! Consul management token, and holds A's CA (its key sealed to the
//! operators in the backup, opened by the operator's side); a second
//! bootstrap run restores nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../stack/tests/common/mod.rs"]
mod common;
mod support;

use age::secrecy::ExposeSecret;
use common::*;
use kindling_backup::staged::{self, ApplyPaths, StageError};
use kindling_stack::bootstrap::policies::KV_MOUNT;
use kindling_stack::consul::ConsulApi;
use kindling_stack::status::StepState;
use kindling_stack::vault::{Health, VaultApi};
use std::io::Read;
use std::time::{Duration, Instant};
use support::*;

fn step_state(lab: &Lab, name: &str) -> (StepState, String) {
    let status = kindling_stack::status::read(&lab.layout.status_file).unwrap();
    let step = status.steps.iter().find(|s| s.name == name).unwrap();
    (step.state, step.detail.clone())
}

#[test]
fn a_backup_restored_through_the_appliance_brings_its_cluster_back() {
    let Some(tools) = tools() else { return };
    let identity = new_identity();
    let rt = rt();

    // 1. Appliance A.
    let Source {
        lab: a,
        original,
        token: a_token,
        mgmt: a_mgmt,
    } = source_with_data(&tools, &identity, &rt);
    let data = a.layout.data_dir.clone();
    let a_node_id = std::fs::read_to_string(a.layout.state_dir().join("consul-node-id")).unwrap();
    // The config phase seals the CA keys for backups (they are root's).
    let recipients =
        kindling_stack::secrets::parse_recipients(&a.site.stack.vault.recipients).unwrap();
    kindling_backup::ca_keys::seal(&data, &recipients).unwrap();
    let a_ca_key = std::fs::read(a.layout.state_dir().join("tls/ca-key.pem")).unwrap();
    let a_ca = std::fs::read(a.layout.state_dir().join("tls/ca.pem")).unwrap();
    let (id, made, file) = backup(&rt, &a);
    let names: Vec<&str> = made
        .manifest
        .entries
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    for want in [
        "data/stack/appliance-token",
        "data/stack/consul-node-id",
        "data/stack/consul-gossip.key",
        "data/stack/tls/ca.pem",
        "data/stack/tls/ca-key.pem.age",
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    let ports = a.layout.ports;
    drop(a); // A is gone.

    // 2. Appliance B: the same site freshly installed (same ports and data
    //    directory, as on a reinstalled appliance), bootstrapped anew.
    let mut b = Lab::new(&tools, site("local", false, &new_identity()));
    b.layout.ports = ports;
    b.layout.data_dir = data.clone();
    let _cleanup = RemoveOnDrop(data.clone());
    let _ = std::fs::remove_dir_all(&data);
    b.services = kindling_stack::render(&b.site, &b.layout).unwrap().services;
    b.start("consul");
    let init = FakeInit::start(&b);
    b.wait_ready(&b.spec("vault"));
    let mut opts = b.options();
    opts.control_socket = Some(init.socket.clone());
    rt.block_on(kindling_stack::bootstrap::run(opts.clone()))
        .unwrap_or_else(|e| panic!("{e}\n{}", b.status_text()));
    assert_ne!(appliance_token(&b), a_token, "B has a token of its own");
    assert_eq!(step_state(&b, "vault-restore").0, StepState::Skipped);

    // 3. The operator's side: decrypt and send. What the API refuses
    //    stages nothing.
    let operator =
        kindling_stack::secrets::parse_identity(identity.to_string().expose_secret()).unwrap();
    let mut plain = Vec::new();
    kindling_backup::archive::decrypting_reader(&file[..], &operator)
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    // As `kindling backup restore` does: the CA keys opened with the same
    // identity, the archive packed again.
    let mut opened = kindling_backup::open_plain(&plain[..]).unwrap();
    assert!(
        opened.part("data/stack/tls/ca-key.pem").is_none(),
        "no CA key in the clear in a backup"
    );
    assert!(kindling_backup::ca_keys::unseal(&mut opened, &operator).unwrap() >= 1);
    let plain = kindling_backup::pack_plain(&opened).unwrap();
    let now = kindling_clock::unix_now();
    let err = staged::stage(&data, &plain, "other-site", "ops", now).unwrap_err();
    assert!(matches!(err, StageError::OtherSite { .. }), "{err}");
    let mut tampered = plain.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x40;
    let err = staged::stage(&data, &tampered, "kstest", "ops", now).unwrap_err();
    assert!(matches!(err, StageError::Open(_)), "{err}");
    assert_eq!(staged::pending(&data), None, "nothing staged");
    let manifest = staged::stage(&data, &plain, "kstest", "ops", now).unwrap();
    assert_eq!(manifest.id, id.to_string());
    assert_eq!(staged::pending(&data).unwrap().backup_id, id.to_string());
    let err = staged::stage(&data, &plain, "kstest", "ops", now).unwrap_err();
    assert!(matches!(err, StageError::AlreadyStaged(_)), "{err}");

    // 4. B reboots: services stop, the config phase applies the restore
    //    and renders, the services start, the bootstrap runs.
    b.kill9("consul");
    drop(init);
    let applied = staged::apply(&ApplyPaths::for_stack(&b.layout), now)
        .expect("a restore was staged")
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(applied.ok && applied.files >= 8, "{applied:?}");
    let replaced = std::path::PathBuf::from(applied.replaced.clone().unwrap());
    assert!(replaced.join("vault").is_dir() && replaced.join("consul").is_dir());
    assert_eq!(staged::pending(&data), None);
    assert_eq!(staged::last(&data).unwrap(), applied);
    assert!(
        staged::apply(&ApplyPaths::for_stack(&b.layout), now).is_none(),
        "applied once"
    );
    assert_eq!(appliance_token(&b), a_token, "A's Vault token is back");
    let b_tls = b.layout.state_dir().join("tls");
    assert_eq!(std::fs::read(b_tls.join("ca-key.pem")).unwrap(), a_ca_key);
    assert_eq!(
        std::fs::read(b_tls.join("ca.pem")).unwrap(),
        a_ca,
        "A's CA is back"
    );
    b.services = kindling_stack::render(&b.site, &b.layout).unwrap().services;
    assert_eq!(
        std::fs::read_to_string(b.layout.state_dir().join("consul-node-id")).unwrap(),
        a_node_id,
        "the render kept A's Consul node id"
    );
    b.start("consul");
    let init = FakeInit::start(&b);
    b.wait_ready(&b.spec("vault"));
    // The first run restores Vault, then gives up waiting for the shares
    // (as when the appliance reboots while the operator gathers them).
    opts.unseal_timeout = Some(Duration::from_secs(2));
    let gave_up = rt_run(opts.clone()).unwrap_err();
    assert!(gave_up.to_string().contains("share"), "{gave_up}");
    let (restored, detail) = step_state(&b, "vault-restore");
    assert_eq!(restored, StepState::Done, "{detail}");
    assert_eq!(step_state(&b, "consul-restore").0, StepState::Pending);
    // A run cut off between the snapshot and Vault's restart: the next one
    // restarts Vault onto the restored seal.
    let marker = b.layout.restore_vault_marker();
    assert_eq!(std::fs::read(&marker).unwrap(), b"restarted\n");
    std::fs::write(&marker, b"forced\n").unwrap();
    let restarts = init.restarts.load(std::sync::atomic::Ordering::Relaxed);
    rt_run(opts.clone()).unwrap_err();
    let (restored, detail) = step_state(&b, "vault-restore");
    assert_eq!(restored, StepState::Done, "{detail}");
    assert!(detail.contains("restarted onto it"), "{detail}");
    assert_eq!(
        init.restarts.load(std::sync::atomic::Ordering::Relaxed),
        restarts + 1
    );
    opts.unseal_timeout = Some(Duration::from_secs(120));
    let run = {
        let opts = opts.clone();
        std::thread::spawn(move || rt_run(opts))
    };
    // The operator, once the restored Vault waits: A's shares, not B's.
    let vault = VaultApi::new(&b.layout.vault_local_url(), None, None).unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (state, _) = step_state(&b, "vault-unseal");
        if state == StepState::Waiting {
            break;
        }
        assert!(
            Instant::now() < deadline && !run.is_finished(),
            "the restored Vault never waited for shares:\n{}",
            b.status_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (restored, detail) = step_state(&b, "vault-restore");
    assert_eq!(
        restored,
        StepState::AlreadyDone,
        "the rerun knows: {detail}"
    );
    let first = rt.block_on(vault.unseal(&original.keys_base64[0])).unwrap();
    assert_eq!(
        (first.shares, first.threshold),
        (u64::from(original.shares), u64::from(original.threshold)),
        "the restored Vault has A's seal"
    );
    for key in &original.keys_base64[1..usize::from(original.threshold)] {
        rt.block_on(vault.unseal(key)).unwrap();
    }
    run.join()
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", b.status_text()));
    assert_eq!(step_state(&b, "consul-restore").0, StepState::Done);
    assert_eq!(rt.block_on(vault.health()).unwrap(), Health::Active);

    // A's cluster, on B.
    let b_vault = vault.with_token(&a_token);
    let v = rt
        .block_on(b_vault.kv_read(KV_MOUNT, SECRET.0))
        .unwrap()
        .unwrap();
    assert_eq!(v["v"], SECRET.1);
    let b_consul = ConsulApi::new(&b.layout.consul_local_url(), Some(a_mgmt));
    assert_eq!(
        rt.block_on(b_consul.kv_get(KV.0)).unwrap(),
        Some(KV.1.to_string())
    );
    assert_eq!(
        std::fs::read_to_string(data.join("inventory/nodes.json")).unwrap(),
        NODES
    );

    // The credentials B's fresh bootstrap had handed its own services are
    // worthless now; the bootstrap replaced them with ones A's cluster
    // knows (PXE's enrollment token in Vault, the API's Consul token).
    let store = kindling_stack::secrets::SecretStore::new(&b.layout.state_dir());
    let enroll = store.read_enroll_token().unwrap().unwrap();
    assert!(
        rt.block_on(vault.with_token(&enroll).token_valid())
            .unwrap(),
        "PXE's enrollment token is valid in the restored Vault"
    );
    let assignments = store.read_consul_assignments_token().unwrap().unwrap();
    assert!(
        rt.block_on(ConsulApi::new(&b.layout.consul_local_url(), Some(assignments)).token_valid())
            .unwrap(),
        "the API's Consul token is valid in the restored Consul"
    );

    // A second run finds nothing to restore and everything in place.
    rt_run(opts).unwrap_or_else(|e| panic!("{e}\n{}", b.status_text()));
    assert_eq!(step_state(&b, "vault-restore").0, StepState::Skipped);
    assert_eq!(step_state(&b, "consul-restore").0, StepState::Skipped);
    drop(init);
}

fn rt_run(
    opts: kindling_stack::bootstrap::BootstrapOptions,
) -> Result<(), kindling_stack::bootstrap::BootstrapError> {
    rt().block_on(kindling_stack::bootstrap::run(opts))
        .map(|_| ())
}
