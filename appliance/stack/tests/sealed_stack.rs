//! The stack's TLS, gossip and token story against real processes (Consul
//! 1.8.7, OpenBao as `vault`, the Nomad test double started from the
//! rendered config): Consul's HTTPS API asks every client for a certificate
//! and accepts the appliance's and an enrolled node's (Vault PKI) but no
//! other; gossip is encrypted and an agent without the key cannot join; the
//! root token from `sys/init` is dead after the bootstrap and a rerun needs
//! none; the bootstrap token cannot reach root-only paths; the operators
//! regenerate a root token with their key shares and the real `bao
//! operator generate-root`; Nomad's API refuses a client without a
//! certificate; Vault's audit log is reopened after rotation.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use kindling_stack::bootstrap::{self, Step};
use kindling_stack::consul::ConsulApi;
use kindling_stack::status::StepState;
use kindling_stack::tls::{self, Leaf};
use kindling_stack::vault::VaultApi;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn step_state(status: &kindling_stack::status::StackStatus, step: Step) -> StepState {
    status
        .steps
        .iter()
        .find(|s| s.name == step.name())
        .map(|s| s.state)
        .unwrap()
}

/// An HTTPS GET to Consul's API trusting the appliance CA, showing
/// `identity` (PEM: key then certificates) when given. `Err` when the TLS
/// handshake or the request fails.
fn consul_https(lab: &Lab, path: &str, identity: Option<Vec<u8>>) -> Result<u16, String> {
    let ca = std::fs::read(tls::ca_cert(&lab.layout.state_dir())).unwrap();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()]);
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(&pem).unwrap());
    }
    let client = builder.build().unwrap();
    let url = format!(
        "https://127.0.0.2:{}/v1/{path}",
        lab.layout.ports.consul_https
    );
    rt().block_on(async {
        client
            .get(&url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e:?}"))
    })
}

fn identity_pem(key: &str, certs: &[&str]) -> Vec<u8> {
    let mut pem = key.trim().to_string();
    for c in certs {
        pem.push('\n');
        pem.push_str(c.trim());
    }
    pem.push('\n');
    pem.into_bytes()
}

/// A throwaway Consul client agent on 127.0.0.1 that tries to join the
/// appliance's server; `key` is its gossip key (none: unencrypted).
struct Agent {
    _proc: Proc,
    http: u16,
}

fn start_agent(tools: &Path, dir: &Path, name: &str, key: Option<&str>, dc: &str) -> Agent {
    let http = free_port();
    let data = dir.join(name);
    std::fs::create_dir_all(&data).unwrap();
    let mut config = json!({
        "node_name": name,
        "datacenter": dc,
        "data_dir": data,
        "bind_addr": "127.0.0.1",
        "client_addr": "127.0.0.1",
        "ports": {"http": http, "dns": -1, "server": free_port(), "serf_lan": free_port(), "serf_wan": free_port()},
        "disable_update_check": true,
    });
    if let Some(k) = key {
        config["encrypt"] = json!(k);
    }
    let file = dir.join(format!("{name}.json"));
    std::fs::write(&file, config.to_string()).unwrap();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(tools.join("consul"))
        .arg("agent")
        .arg(format!("-config-file={}", file.display()))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_status(&format!("http://127.0.0.1:{http}/v1/agent/self")).is_none() {
        assert!(Instant::now() < deadline, "agent {name} did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    Agent {
        _proc: Proc {
            name: name.to_string(),
            child,
        },
        http,
    }
}

/// `consul join` from the agent to the appliance's serf LAN port.
fn join(tools: &Path, agent: &Agent, lab: &Lab) -> std::process::Output {
    Command::new(tools.join("consul"))
        .args([
            "join",
            &format!("-http-addr=http://127.0.0.1:{}", agent.http),
        ])
        .arg(format!("127.0.0.2:{}", lab.layout.ports.consul_serf_lan))
        .output()
        .unwrap()
}

fn bao(tools: &Path, args: &[&str], addr: &str, ca: &Path) -> Value {
    let out = Command::new(tools.join("bao"))
        .args(args)
        .env("BAO_ADDR", addr)
        .env("BAO_CACERT", ca)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bao {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

#[test]
fn tls_gossip_tokens_and_recovery() {
    let Some(tools) = tools() else { return };
    let identity = new_identity();
    let mut lab = Lab::new(&tools, site("manual", true, &identity));
    lab.start("consul");
    lab.start("vault");
    lab.start("nomad");
    let rt = rt();
    let cold = rt
        .block_on(bootstrap::run(lab.options()))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.status_text()));
    assert_eq!(step_state(&cold, Step::VaultRoot), StepState::Done);
    assert_eq!(step_state(&cold, Step::ServerTrust), StepState::Done);
    let state = lab.layout.state_dir();
    let secrets = lab.init_secrets(&identity);
    let local = lab.layout.vault_local_url();
    let bootstrap_token = std::fs::read_to_string(state.join("appliance-token")).unwrap();
    let ours = VaultApi::new(&local, Some(bootstrap_token.trim().to_string()), None).unwrap();

    // 1. The root token sys/init returned is dead; the rerun needs none.
    let root = VaultApi::new(&local, Some(secrets.root_token.clone()), None).unwrap();
    assert!(
        !rt.block_on(root.token_valid()).unwrap(),
        "the init's root token must not work after the bootstrap"
    );
    let warm = rt
        .block_on(bootstrap::run(lab.options()))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.status_text()));
    assert_eq!(step_state(&warm, Step::VaultRoot), StepState::AlreadyDone);
    assert_eq!(step_state(&warm, Step::VaultToken), StepState::AlreadyDone);
    assert_eq!(step_state(&warm, Step::ServerTrust), StepState::AlreadyDone);

    // 2. The bootstrap token reaches none of the root-only paths (generate-
    //    root and rekey need no token by design: the key shares are their
    //    lock), cannot
    //    widen its own policy and cannot mint tokens outside its roles.
    rt.block_on(async {
        for (method, path, body) in [
            (reqwest::Method::PUT, "sys/seal", json!({})),
            (reqwest::Method::PUT, "sys/step-down", json!({})),
            (
                reqwest::Method::POST,
                "sys/remount",
                json!({"from": "kindling", "to": "elsewhere"}),
            ),
            (
                reqwest::Method::PUT,
                "sys/policy/kindling-bootstrap",
                json!({"policy": "path \"*\" { capabilities = [\"sudo\"] }"}),
            ),
            (
                reqwest::Method::POST,
                "auth/token/create",
                json!({"policies": ["nomad-server"]}),
            ),
            (
                reqwest::Method::POST,
                "auth/token/create-orphan",
                json!({"policies": ["root"]}),
            ),
            (
                reqwest::Method::PUT,
                "sys/mounts/evil",
                json!({"type": "kv"}),
            ),
            (reqwest::Method::DELETE, "sys/audit/file", json!({})),
        ] {
            let (status, body) = ours
                .raw(method.clone(), path, Some(&body), None)
                .await
                .unwrap();
            assert_eq!(
                status, 403,
                "{method} {path} with the bootstrap token: {body}"
            );
        }
    });

    // 3. Consul's HTTPS API asks for a client certificate.
    let leader = consul_https(&lab, "status/leader", None);
    assert!(
        leader.is_err(),
        "no client certificate must be refused, got {leader:?}"
    );
    let foreign_dir = tempfile::tempdir().unwrap();
    let foreign = kindling_pki::ApplianceCa::ensure(foreign_dir.path(), "someone else").unwrap();
    let names = vec!["client.kstest.consul".to_string()];
    let theirs = foreign
        .issue(&kindling_pki::LeafRequest {
            common_name: "client.kstest.consul",
            names: &names,
            usage: kindling_pki::Usage::Client,
        })
        .unwrap();
    let refused = consul_https(
        &lab,
        "status/leader",
        Some(identity_pem(&theirs.key_pem, &[&theirs.cert_pem])),
    );
    assert!(
        refused.is_err(),
        "a foreign CA's certificate must be refused, got {refused:?}"
    );
    // The appliance's own client certificate (the stack bootstrap's).
    let client = tls::leaf_files(&state, Leaf::StackClient);
    let mine = identity_pem(
        &std::fs::read_to_string(&client.key).unwrap(),
        &[&std::fs::read_to_string(&client.cert).unwrap()],
    );
    assert_eq!(consul_https(&lab, "status/leader", Some(mine)), Ok(200));
    // An enrolled node's certificate from Vault's PKI (pki_int, chained to
    // Vault's root, which server-trust put in Consul's bundle).
    let issued = rt
        .block_on(ours.call(
            "issue a node certificate",
            reqwest::Method::POST,
            "pki_int/issue/consul-client",
            Some(&json!({"common_name": "client.kstest.consul", "ttl": "1h"})),
        ))
        .unwrap();
    let node = identity_pem(
        issued["data"]["private_key"].as_str().unwrap(),
        &[
            issued["data"]["certificate"].as_str().unwrap(),
            issued["data"]["issuing_ca"].as_str().unwrap(),
        ],
    );
    assert_eq!(consul_https(&lab, "status/leader", Some(node)), Ok(200));

    // 4. Gossip: the keyring holds the key from the data partition; an
    //    agent without it cannot join, one with it can.
    let mgmt = rt
        .block_on(ours.kv_read("kindling", "stack/consul/management"))
        .unwrap()
        .unwrap()["secret_id"]
        .as_str()
        .unwrap()
        .to_string();
    let consul = ConsulApi::new(&lab.layout.consul_local_url(), Some(mgmt));
    let key = std::fs::read_to_string(state.join("consul-gossip.key")).unwrap();
    assert_eq!(
        rt.block_on(consul.lan_gossip_keys()).unwrap(),
        [key.trim().to_string()]
    );
    let agents = tempfile::tempdir().unwrap();
    let intruder = start_agent(&tools, agents.path(), "intruder", None, "kstest");
    let out = join(&tools, &intruder, &lab);
    assert!(
        !out.status.success(),
        "an agent without the gossip key joined"
    );
    let friend = start_agent(&tools, agents.path(), "friend", Some(key.trim()), "kstest");
    let out = join(&tools, &friend, &lab);
    assert!(
        out.status.success(),
        "an agent with the key must join: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, members) = rt
        .block_on(consul.raw(reqwest::Method::GET, "agent/members", None))
        .unwrap();
    assert!(members.contains("\"friend\""), "{members}");
    assert!(!members.contains("\"intruder\""), "{members}");

    // 5. Nomad's API (the double, from the rendered tls block) refuses a
    //    client without a certificate; the bootstrap got in with its own.
    let nomad = lab.nomad.as_ref().unwrap();
    assert_eq!(nomad.successful_bootstraps(), 1);
    let before = nomad.front.as_ref().unwrap().refused();
    let ca = std::fs::read(tls::ca_cert(&state)).unwrap();
    let anonymous = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap();
    let answer = rt.block_on(
        anonymous
            .get(format!("{}/v1/status/leader", nomad.url()))
            .send(),
    );
    assert!(
        answer.is_err(),
        "Nomad answered a client without a certificate: {answer:?}"
    );
    assert!(nomad.front.as_ref().unwrap().refused() > before);
    assert!(
        nomad.config.gossip_key.is_some(),
        "Nomad's gossip is encrypted"
    );

    // 6. Recovery: the operators regenerate a root token with their key
    //    shares (decrypted from vault-init.age) and the real bao CLI, over
    //    Vault's TLS listener. OpenBao ≥ 2.6's `operator generate-root`
    //    calls the token-authenticated sys/generate-root-token/*, so the
    //    share-only routes are driven with `bao write` (docs/security/stack.md).
    let tls_addr = format!("https://127.0.0.2:{}", lab.layout.ports.vault_api);
    let ca_file = tls::ca_cert(&state);
    // Started without an OTP, Vault makes one and returns it once.
    let started = bao(
        &tools,
        &["write", "-format=json", "-f", "sys/generate-root/attempt"],
        &tls_addr,
        &ca_file,
    );
    let otp = started["data"]["otp"]
        .as_str()
        .or_else(|| started["otp"].as_str())
        .unwrap_or_else(|| panic!("no otp in {started}"))
        .to_string();
    let nonce = started["data"]["nonce"]
        .as_str()
        .or_else(|| started["nonce"].as_str())
        .unwrap_or_else(|| panic!("no nonce in {started}"))
        .to_string();
    let mut encoded = String::new();
    for share in secrets
        .keys_base64
        .iter()
        .take(usize::from(secrets.threshold))
    {
        let step = bao(
            &tools,
            &[
                "write",
                "-format=json",
                "sys/generate-root/update",
                &format!("key={share}"),
                &format!("nonce={nonce}"),
            ],
            &tls_addr,
            &ca_file,
        );
        let data = if step.get("data").is_some_and(|d| !d.is_null()) {
            &step["data"]
        } else {
            &step
        };
        if data["complete"] == true {
            encoded = data["encoded_token"]
                .as_str()
                .or_else(|| data["encoded_root_token"].as_str())
                .unwrap()
                .to_string();
        }
    }
    assert!(
        !encoded.is_empty(),
        "generate-root did not complete with the threshold of shares"
    );
    let decoded = bao(
        &tools,
        &[
            "write",
            "-format=json",
            "sys/decode-token",
            &format!("encoded_token={encoded}"),
            &format!("otp={otp}"),
        ],
        &tls_addr,
        &ca_file,
    );
    let token = decoded["data"]["token"].clone();
    let token = token.as_str().unwrap().to_string();
    let recovered = VaultApi::new(&local, Some(token.clone()), None).unwrap();
    let me = rt
        .block_on(recovered.call(
            "lookup-self",
            reqwest::Method::GET,
            "auth/token/lookup-self",
            None,
        ))
        .unwrap();
    assert_eq!(me["data"]["policies"], json!(["root"]), "{me}");
    assert_ne!(token, secrets.root_token);
    // What the procedure ends with: the recovered root token revoked.
    rt.block_on(recovered.revoke_self()).unwrap();
    assert!(!rt.block_on(recovered.token_valid()).unwrap());

    // 7. Vault's audit log is in Vault's own directory; after a rotation
    //    (rename, as init does) and SIGHUP, Vault writes a new file.
    let audit = lab.layout.vault_audit_log();
    assert!(
        std::fs::metadata(&audit).unwrap().len() > 0,
        "audit log empty"
    );
    let rotated = PathBuf::from(format!("{}.1", audit.display()));
    std::fs::rename(&audit, &rotated).unwrap();
    let vault_pid = lab
        .procs
        .iter()
        .find(|p| p.name == "vault")
        .unwrap()
        .child
        .id();
    Command::new("kill")
        .args(["-HUP", &vault_pid.to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // Each request is audited: keep asking until the new file appears.
        let _ = rt.block_on(ours.token_valid());
        if std::fs::metadata(&audit).is_ok_and(|m| m.len() > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Vault did not reopen its audit log after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
