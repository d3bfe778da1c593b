//! Against real processes: OpenBao (`bao`, installed as `vault`) and Consul
//! 1.8.7 on loopback, plus the Nomad test double. One lab, in order: cold
//! bootstrap from empty dirs, a rerun that finds everything done, a Vault and
//! a Consul kill -9 + restart, node enrollment from the node's side, and the
//! Consul KV mirror read with the real `consul kv` CLI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use kindling_stack::bootstrap::{self, Step};
use kindling_stack::enroll::Enroller;
use kindling_stack::status::{OverallState, StepState};
use kindling_stack::vault::VaultApi;
use serde_json::Value;

/// Step states, without `vault-api` and `consul-api` (waits for the APIs,
/// not work that can be done twice) and `vault-storage` (skipped: this site
/// uses raft).
fn states(status: &kindling_stack::status::StackStatus) -> Vec<(String, StepState)> {
    status
        .steps
        .iter()
        .filter(|s| !WAIT_OR_SKIPPED.iter().any(|w| w.name() == s.name))
        .map(|s| (s.name.clone(), s.state))
        .collect()
}

/// Steps that only wait (for an API) or are skipped here (raft storage, no
/// restore staged): their state says nothing of a rerun.
const WAIT_OR_SKIPPED: [Step; 5] = [
    Step::VaultApi,
    Step::ConsulApi,
    Step::VaultStorage,
    Step::VaultRestore,
    Step::ConsulRestore,
];

#[test]
fn cold_bootstrap_rerun_restarts_and_node_enrollment() {
    let Some(tools) = tools() else { return };
    let identity = new_identity();
    let mut lab = Lab::new(&tools, site("local", true, &identity));
    lab.start("consul");
    lab.start("vault");
    lab.start("nomad");
    let rt = rt();

    // 1. Cold bootstrap from empty data dirs.
    let first = rt
        .block_on(bootstrap::run(lab.options()))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.status_text()));
    assert_eq!(first.state, OverallState::Ready);
    for restore in [Step::VaultRestore, Step::ConsulRestore] {
        let step = first
            .steps
            .iter()
            .find(|s| s.name == restore.name())
            .unwrap();
        assert_eq!(
            (step.state, step.detail.as_str()),
            (StepState::Skipped, "no restore")
        );
    }
    for (name, state) in states(&first) {
        assert_eq!(
            state,
            StepState::Done,
            "{name} on a cold boot: {}",
            lab.status_text()
        );
    }
    let secrets = lab.init_secrets(&identity);
    assert_eq!(
        (secrets.shares, secrets.threshold, secrets.keys_base64.len()),
        (3, 2, 3)
    );
    let init_bytes = std::fs::read(lab.init_file()).unwrap();
    let status_text = lab.status_text();
    assert!(
        !status_text.contains(&secrets.root_token),
        "the status file never holds the root token"
    );
    for k in &secrets.keys_base64 {
        assert!(
            !status_text.contains(k.as_str()),
            "the status file never holds a key share"
        );
    }
    let init_text = String::from_utf8_lossy(&init_bytes).to_string();
    assert!(
        init_text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----")
            && !init_text.contains(&secrets.root_token)
    );
    assert_eq!(lab.nomad.as_ref().unwrap().successful_bootstraps(), 1);

    // 2. A rerun finds every step done and does none of them again.
    let second = rt.block_on(bootstrap::run(lab.options())).unwrap();
    for (name, state) in states(&second) {
        assert_eq!(
            state,
            StepState::AlreadyDone,
            "{name} on a rerun: {}",
            lab.status_text()
        );
    }
    assert_eq!(
        std::fs::read(lab.init_file()).unwrap(),
        init_bytes,
        "no second init"
    );
    assert_eq!(
        lab.nomad.as_ref().unwrap().successful_bootstraps(),
        1,
        "no second Nomad ACL bootstrap"
    );

    // 2b. Nomad's client node list, as `kindlingd nomad-nodes` reads it:
    //     over mutual TLS, with the management token the bootstrap keeps in
    //     Vault (read with the bootstrap's Vault token).
    let listed = rt
        .block_on(kindling_stack::nomad_nodes::list_as_bootstrap(&lab.layout))
        .unwrap();
    assert_eq!(listed, vec![], "no client has registered yet");
    let double = &lab.nomad.as_ref().unwrap().double;
    let id = double.register_node("node-dev-1", "kstest");
    double.set_node_status(&id, "down");
    let listed = rt
        .block_on(kindling_stack::nomad_nodes::list_as_bootstrap(&lab.layout))
        .unwrap();
    assert_eq!(
        (
            listed[0].name.as_str(),
            listed[0].id.as_str(),
            listed[0].status.as_str()
        ),
        ("node-dev-1", id.as_str(), "down")
    );
    let nomad_url = lab.nomad.as_ref().unwrap().url();
    let anonymous = rt
        .block_on(
            kindling_stack::nomad::NomadApi::appliance(&lab.layout)
                .unwrap()
                .nodes(),
        )
        .unwrap_err();
    assert!(
        anonymous.to_string().contains("HTTP 403"),
        "{nomad_url}: without the management token: {anonymous}"
    );

    // 3. Vault killed -9 and restarted comes back sealed; the stored local keys
    //    unseal it, nothing else is redone.
    lab.kill9("vault");
    lab.start("vault");
    let third = rt
        .block_on(bootstrap::run(lab.options()))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.status_text()));
    for (name, state) in states(&third) {
        let want = if name == Step::VaultUnseal.name() {
            StepState::Done
        } else {
            StepState::AlreadyDone
        };
        assert_eq!(
            state,
            want,
            "{name} after a Vault restart: {}",
            lab.status_text()
        );
    }
    assert_eq!(std::fs::read(lab.init_file()).unwrap(), init_bytes);

    // 4. Consul killed -9 and restarted: its ACL state survived, nothing redone.
    lab.kill9("consul");
    lab.start("consul");
    let fourth = rt
        .block_on(bootstrap::run(lab.options()))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.status_text()));
    for (name, state) in states(&fourth) {
        assert_eq!(
            state,
            StepState::AlreadyDone,
            "{name} after a Consul restart: {}",
            lab.status_text()
        );
    }

    // 5. Node enrollment, from the node's side: unwrap, log in, read its own
    //    Consul token (which Consul accepts), not another node's; the wrapped
    //    secret-id works once.
    let enroller = Enroller::new(&lab.site, &lab.layout).unwrap();
    // The node is this test process: its connections to Vault come from
    // 127.0.0.1, the address the grant is bound to.
    let grant = rt
        .block_on(enroller.issue(&kindling_stack::enroll::GrantRequest {
            mac: "52:54:00:6b:00:10",
            profile: "dev",
            hostname: "node-dev-1",
            address: std::net::Ipv4Addr::LOCALHOST,
        }))
        .unwrap();
    assert!(
        grant.vault_addr.starts_with("https://127.0.0.2:"),
        "{}",
        grant.vault_addr
    );
    assert!(
        !format!("{grant:?}").contains(&grant.wrapped_secret_id),
        "Debug hides the wrapping token"
    );
    // The node keeps the CA from its user-data in a file (cloud-init writes it).
    let ca_file = lab.dir.path().join("node-ca.pem");
    std::fs::write(&ca_file, grant.ca_pem.clone().unwrap()).unwrap();
    let consul_url = lab.layout.consul_local_url();
    let node_result: Result<(), String> = rt.block_on(async {
        // The node talks to the LAN listener over TLS, trusting only the appliance CA.
        let node =
            VaultApi::new(&grant.vault_addr, None, Some(&ca_file)).map_err(|e| e.to_string())?;
        let unwrapped = node
            .unwrap(&grant.wrapped_secret_id)
            .await
            .map_err(|e| e.to_string())?;
        let secret_id = unwrapped["secret_id"]
            .as_str()
            .ok_or("no secret_id in the unwrapped answer")?
            .to_string();
        let token = node
            .approle_login("approle", &grant.role_id, &secret_id)
            .await
            .map_err(|e| e.to_string())?;
        let me = node.with_token(&token);
        let consul_token = me
            .kv_read("kindling", "nodes/52-54-00-6b-00-10/consul")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the node's Consul token is missing")?;
        let secret = consul_token["secret_id"].as_str().ok_or("no secret_id")?;
        let consul = kindling_stack::consul::ConsulApi::new(&consul_url, Some(secret.to_string()));
        if !consul.token_valid().await.map_err(|e| e.to_string())? {
            return Err("Consul rejects the node's token".into());
        }
        let gossip = me
            .kv_read("kindling", "stack/consul/gossip")
            .await
            .map_err(|e| e.to_string())?;
        if gossip.and_then(|g| g.get("key").cloned()).is_none() {
            return Err("the node cannot read the gossip key".into());
        }
        let meta = me
            .kv_read("kindling", "nodes/52-54-00-6b-00-10/meta")
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the node's meta (profile tags) is missing")?;
        if meta["tags"]["env"] != "development" || meta["hostname"] != "node-dev-1" {
            return Err(format!("unexpected node meta {meta}"));
        }
        // A client certificate from the intermediate CA, for its own name.
        let cert = me
            .call(
                "issue a client cert",
                reqwest::Method::POST,
                "pki_int/issue/node",
                Some(&serde_json::json!({"common_name": "node-dev-1", "alt_names": "client.kstest.consul", "ttl": "1h"})),
            )
            .await
            .map_err(|e| e.to_string())?;
        if !cert["data"]["certificate"]
            .as_str()
            .unwrap_or("")
            .starts_with("-----BEGIN CERTIFICATE-----")
        {
            return Err("no client certificate issued".into());
        }
        match me
            .kv_read("kindling", "nodes/52-54-00-6b-00-20/consul")
            .await
        {
            Err(e) if e.to_string().contains("403") => {}
            other => {
                return Err(format!(
                    "reading another node's token must be denied, got {other:?}"
                ))
            }
        }
        match node.unwrap(&grant.wrapped_secret_id).await {
            Err(e) if e.to_string().contains("HTTP 400") => {}
            other => return Err(format!("a second unwrap must fail with 400, got {other:?}")),
        }
        // A second login with the (single-use) secret-id fails too.
        if node
            .approle_login("approle", &grant.role_id, &secret_id)
            .await
            .is_ok()
        {
            return Err("the secret-id was usable twice".into());
        }
        Ok(())
    });
    node_result.unwrap();

    // 6. Profiles and MAC assignments in Consul KV, read with the real CLI.
    let mgmt: Value = rt
        .block_on(async {
            let token =
                std::fs::read_to_string(lab.layout.state_dir().join("appliance-token")).unwrap();
            VaultApi::new(&lab.layout.vault_local_url(), Some(token), None)
                .unwrap()
                .kv_read("kindling", "stack/consul/management")
                .await
        })
        .unwrap()
        .unwrap();
    let out = std::process::Command::new(tools.join("consul"))
        .args(["kv", "get", "kindling/nodes/52:54:00:6b:00:20"])
        .env("CONSUL_HTTP_ADDR", &consul_url)
        .env("CONSUL_HTTP_TOKEN", mgmt["secret_id"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(node["profile"], "prod");
    assert_eq!(node["hostname"], "node-prod-1");
    let out = std::process::Command::new(tools.join("consul"))
        .args(["kv", "get", "kindling/profiles/dev"])
        .env("CONSUL_HTTP_ADDR", &consul_url)
        .env("CONSUL_HTTP_TOKEN", mgmt["secret_id"].as_str().unwrap())
        .output()
        .unwrap();
    let profile: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(profile["tags"]["env"], "development");

    // 6a. The SSH CA's key is ed25519 (quick to make, trusted by OpenSSH).
    let (status, ca) = rt
        .block_on(async {
            let token =
                std::fs::read_to_string(lab.layout.state_dir().join("appliance-token")).unwrap();
            VaultApi::new(&lab.layout.vault_local_url(), Some(token), None)
                .unwrap()
                .raw(reqwest::Method::GET, "ssh/config/ca", None, None)
                .await
        })
        .unwrap();
    assert_eq!(status, 200, "{ca}");
    let ca_key = ca["data"]["public_key"].as_str().unwrap_or_default();
    assert!(ca_key.starts_with("ssh-ed25519 "), "SSH CA key: {ca_key}");

    // 6b. The assignments sync's token (copied to the data partition, the
    //     same as recorded in Vault) writes runtime assignments, nothing else.
    let sync_token = kindling_stack::secrets::SecretStore::new(&lab.layout.state_dir())
        .read_consul_assignments_token()
        .unwrap()
        .expect("the bootstrap leaves the assignments token on the data partition");
    let recorded: Value = rt
        .block_on(async {
            let token =
                std::fs::read_to_string(lab.layout.state_dir().join("appliance-token")).unwrap();
            VaultApi::new(&lab.layout.vault_local_url(), Some(token), None)
                .unwrap()
                .kv_read("kindling", "stack/consul/assignments")
                .await
        })
        .unwrap()
        .unwrap();
    assert_eq!(recorded["secret_id"].as_str(), Some(sync_token.as_str()));
    let kv_put_as = |token: &str, key: &str| {
        std::process::Command::new(tools.join("consul"))
            .args(["kv", "put", key, "dev"])
            .env("CONSUL_HTTP_ADDR", &consul_url)
            .env("CONSUL_HTTP_TOKEN", token)
            .output()
            .unwrap()
    };
    let out = kv_put_as(&sync_token, "kindling/assignments/52:54:00:6b:00:30");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for key in [
        "kindling/profiles/dev",
        "kindling/nodes/52:54:00:6b:00:10",
        "vault/x",
    ] {
        let out = kv_put_as(&sync_token, key);
        assert!(
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("403"),
            "the assignments token must not write {key}"
        );
    }

    // 7. Connect's CA is Vault (stack.consul.connect_vault_ca), with roots in Vault's PKI.
    let provider = rt
        .block_on(
            kindling_stack::consul::ConsulApi::new(
                &consul_url,
                Some(mgmt["secret_id"].as_str().unwrap().to_string()),
            )
            .connect_ca_provider(),
        )
        .unwrap();
    assert_eq!(provider, "vault");
}
