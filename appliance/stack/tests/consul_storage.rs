//! Vault on Consul storage (`stack.vault.storage = "consul"`) against the real
//! binaries: with Consul's ACLs denying by default, the bootstrap bootstraps
//! Consul's ACLs first, gives Vault a storage token (allowed exactly Vault's
//! prefix), writes it into Vault's config and has init restart Vault. init's
//! control socket is played by a small stand-in below that answers
//! `{"cmd":"restart","name":"vault"}` by restarting the real Vault.
//!
//! OpenBao 2.x, the Vault available here, has no Consul storage ("unknown
//! storage type consul"): the restarted Vault exits, and the test checks the
//! bootstrap says so clearly. With HashiCorp Vault the run continues as with
//! raft.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use kindling_stack::bootstrap::{self, Step};
use kindling_stack::status::StepState;
use std::sync::atomic::Ordering;

#[test]
fn vault_on_consul_storage_gets_its_token_and_is_restarted() {
    let Some(tools) = tools() else { return };
    let identity = new_identity();
    let mut site = site("local", false, &identity);
    site.stack.vault.storage = kindling_site::VaultStorage::Consul;
    let mut lab = Lab::new(&tools, site);
    assert_eq!(lab.spec("vault").depends_on, vec!["consul".to_string()]);
    lab.start("consul");
    let init = FakeInit::start(&lab);
    let mut opts = lab.options();
    opts.control_socket = Some(init.socket.clone());
    let rt = rt();

    opts.service_timeout = std::time::Duration::from_secs(5);

    let err = rt.block_on(bootstrap::run(opts.clone())).unwrap_err();
    let status = kindling_stack::status::read(&lab.layout.status_file).unwrap();
    let step = |n: &str| status.steps.iter().find(|s| s.name == n).unwrap().clone();
    assert_eq!(
        step(Step::VaultStorage.name()).state,
        StepState::Done,
        "{}",
        lab.status_text()
    );
    assert!(
        step(Step::VaultStorage.name())
            .detail
            .contains("Vault restarted with it"),
        "{}",
        lab.status_text()
    );
    assert_eq!(
        init.restarts.load(Ordering::Relaxed),
        1,
        "Vault restarted once, with its token"
    );
    let token = std::fs::read_to_string(kindling_stack::render::consul_storage_token_file(
        &lab.layout,
    ))
    .unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.layout.vault_config()).unwrap()).unwrap();
    assert_eq!(
        config["storage"]["consul"]["token"],
        token.trim(),
        "the token is in Vault's config"
    );
    assert!(
        lab.log("vault").contains("unknown storage type consul"),
        "OpenBao has no Consul storage"
    );
    assert_eq!(err.step(), Some(Step::VaultApi));
    assert!(
        err.reason()
            .contains("needs HashiCorp Vault: OpenBao has no Consul storage"),
        "{}",
        err.reason()
    );

    // The storage token may write Vault's prefix and nothing else.
    rt.block_on(async {
        let c = kindling_stack::consul::ConsulApi::new(
            &lab.layout.consul_local_url(),
            Some(token.trim().to_string()),
        );
        c.kv_put("vault/core/probe", "x").await.unwrap();
        assert!(
            c.kv_put("kindling/probe", "x").await.is_err(),
            "outside vault/ is denied"
        );
    });

    // A rerun keeps the token, does not bootstrap Consul again, restarts nothing.
    let _ = rt.block_on(bootstrap::run(opts)).unwrap_err();
    let status = kindling_stack::status::read(&lab.layout.status_file).unwrap();
    let again = status
        .steps
        .iter()
        .find(|s| s.name == Step::VaultStorage.name())
        .unwrap();
    assert_eq!(again.state, StepState::AlreadyDone, "{}", lab.status_text());
    assert_eq!(init.restarts.load(Ordering::Relaxed), 1);
    assert_eq!(
        std::fs::read_to_string(kindling_stack::render::consul_storage_token_file(
            &lab.layout
        ))
        .unwrap(),
        token
    );
    // The management token waits for Vault (the marker keeps the reset path open).
    assert!(
        kindling_stack::secrets::SecretStore::new(&lab.layout.state_dir())
            .was_started("consul-acl-bootstrap")
    );
}
