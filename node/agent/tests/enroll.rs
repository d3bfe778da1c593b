//! The node agent against a real appliance stack on loopback (OpenBao and
//! Consul from `build/tools`, bootstrapped by the stack's own bootstrap, as
//! appliance/stack/tests do): grants are minted by the stack's enroller the
//! way the PXE service mints them, bound to 127.0.0.2 (the node's "leased"
//! address); the agent's library runs with `--root` in a temp dir and
//! reports its events to a small loopback receiver, which also serves the
//! client binaries.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../appliance/stack/tests/common/mod.rs"]
mod common;

use common::*;
use kindling_node::{run, Options, Report};
use kindling_stack::bootstrap;
use kindling_stack::enroll::{Enroller, EnrollmentGrant, GrantRequest};
use kindling_stack::status::OverallState;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NODE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const MAC: &str = "52:54:00:6b:00:10";
const CONSUL_BYTES: &[u8] = b"#!/bin/sh\necho not really consul\n";
const NOMAD_BYTES: &[u8] = b"#!/bin/sh\necho not really nomad\n";

/// Receives events (`POST /nodes/MAC/events`) and serves the client
/// binaries by hash (`/by-hash/sha256/HEX`), as the PXE service does.
struct Appliance {
    url: String,
    events: Arc<Mutex<Vec<Value>>>,
}

impl Appliance {
    fn start() -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", server.server_addr().to_ip().unwrap());
        let events = Arc::new(Mutex::new(Vec::new()));
        let seen = events.clone();
        std::thread::spawn(move || {
            for mut req in server.incoming_requests() {
                let path = req.url().to_string();
                let reply = match path.as_str() {
                    p if p == by_hash(CONSUL_BYTES) => {
                        tiny_http::Response::from_data(CONSUL_BYTES.to_vec())
                    }
                    p if p == by_hash(NOMAD_BYTES) => {
                        tiny_http::Response::from_data(NOMAD_BYTES.to_vec())
                    }
                    p if p == format!("/nodes/{MAC}/events") => {
                        let mut body = String::new();
                        std::io::Read::read_to_string(req.as_reader(), &mut body).unwrap();
                        seen.lock()
                            .unwrap()
                            .push(serde_json::from_str(&body).unwrap());
                        tiny_http::Response::from_data(b"{\"ok\":true}".to_vec())
                    }
                    _ => tiny_http::Response::from_data(Vec::new()).with_status_code(404),
                };
                let _ = req.respond(reply);
            }
        });
        Self { url, events }
    }

    fn take_events(&self) -> Vec<Value> {
        std::mem::take(&mut *self.events.lock().unwrap())
    }
}

fn by_hash(bytes: &[u8]) -> String {
    format!("/by-hash/sha256/{}", sha256(bytes))
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn mint(
    lab: &Lab,
    rt: &tokio::runtime::Runtime,
    mac: &str,
    host: &str,
    ip: Ipv4Addr,
) -> EnrollmentGrant {
    let enroller = Enroller::new(&lab.site, &lab.layout).unwrap();
    rt.block_on(enroller.issue(&GrantRequest {
        mac,
        profile: "dev",
        hostname: host,
        address: ip,
    }))
    .unwrap()
}

/// node.json as the PXE service renders it into a node's user-data (its
/// own renderer, not a copy of the format): for a node with a grant, the
/// stack's datacenter and the lab's Consul LAN gossip and Nomad RPC on the
/// LAN address, and both client binaries by hash.
fn rendered_node_json(
    lab: &Lab,
    appliance: &Appliance,
    grant: &EnrollmentGrant,
    mac: &str,
) -> String {
    use kindling_pxe::enroll::{Enrollment, GrantTicket};
    use kindling_pxe::render::{cloud_init, NodeContext};
    use kindling_pxe::settings::NodeStack;
    use std::net::SocketAddrV4;
    let site = &lab.site;
    let (profile_name, profile) = site
        .profiles
        .iter()
        .find(|(name, _)| name.as_str() == "dev")
        .unwrap();
    let lan = site.network.lan.address.addr();
    let p = &lab.layout.ports;
    let ctx = NodeContext {
        mac: mac.parse().unwrap(),
        hostname: "node-dev-1".into(),
        domain: site.site.domain.clone(),
        profile_name: profile_name.as_str(),
        profile,
        base_url: &appliance.url,
        enrollment: Some(Enrollment {
            vault_addr: grant.vault_addr.clone(),
            role_id: grant.role_id.clone(),
            wrapped_secret_id: grant.wrapped_secret_id.clone(),
            ca_pem: grant.ca_pem.clone(),
            ticket: GrantTicket {
                wrapping_accessor: String::new(),
                secret_id_accessor: String::new(),
                ttl_secs: 0,
            },
        }),
        agent_sha256: Some(sha256(b"the agent")),
        stack: Some(NodeStack {
            datacenter: site.stack.datacenter.clone(),
            consul_join: vec![SocketAddrV4::new(lan, p.consul_serf_lan)],
            nomad_servers: vec![SocketAddrV4::new(lan, p.nomad_rpc)],
        }),
        client_binaries: [
            ("consul".to_string(), sha256(CONSUL_BYTES)),
            ("nomad".to_string(), sha256(NOMAD_BYTES)),
        ]
        .into(),
    };
    cloud_init::node_json(&ctx).to_string()
}

/// A node's root as its user-data leaves it: node.json, the grant, the
/// appliance CA, and sshd's host key.
fn node_root(
    lab: &Lab,
    appliance: &Appliance,
    grant: &EnrollmentGrant,
    mac: &str,
) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("kn-root-")
        .tempdir()
        .unwrap();
    let root = dir.path();
    let write = |rel: &str, bytes: &[u8]| {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    };
    write(
        "etc/kindling/node.json",
        rendered_node_json(lab, appliance, grant, mac).as_bytes(),
    );
    let enrollment = json!({
        "vault_addr": grant.vault_addr,
        "role_id": grant.role_id,
        "wrapped_secret_id": grant.wrapped_secret_id,
    });
    write(
        "etc/kindling/enrollment.json",
        enrollment.to_string().as_bytes(),
    );
    write(
        "usr/local/share/ca-certificates/kindling-vault.crt",
        grant.ca_pem.as_deref().unwrap().as_bytes(),
    );
    write("etc/ssh/ssh_host_ed25519_key.pub", host_key().as_bytes());
    dir
}

/// An OpenSSH Ed25519 public key line (the CA signs the public half only).
fn host_key() -> String {
    use base64::Engine;
    let mut blob = Vec::new();
    put_string(&mut blob, b"ssh-ed25519");
    let key: [u8; 32] = rand::random();
    put_string(&mut blob, &key);
    format!(
        "ssh-ed25519 {} root@node-dev-1\n",
        base64::engine::general_purpose::STANDARD.encode(blob)
    )
}

fn put_string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap().to_be_bytes());
    out.extend_from_slice(s);
}

fn agent(root: &Path, from: Ipv4Addr, rt: &tokio::runtime::Runtime) -> Report {
    rt.block_on(run(&Options {
        root: root.to_path_buf(),
        source_address: Some(IpAddr::V4(from)),
    }))
}

fn ok_steps(report: &Report) -> Vec<&str> {
    report
        .steps
        .iter()
        .filter(|s| s.result.is_ok())
        .map(|s| s.step)
        .collect()
}

const ALL_STEPS: [&str; 9] = [
    "grant",
    "login",
    "consul-token",
    "tls",
    "ssh-host-cert",
    "binaries",
    "consul-config",
    "nomad-config",
    "units",
];

/// How many unwraps OpenBao's audit log shows (request entries).
fn unwraps_audited(lab: &Lab) -> usize {
    std::fs::read_to_string(lab.layout.vault_audit_log())
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            l.contains("\"type\":\"request\"") && l.contains("\"path\":\"sys/wrapping/unwrap\"")
        })
        .count()
}

#[test]
fn a_node_enrolls_once_converges_on_rerun_and_refuses_used_or_stolen_grants() {
    let Some(tools) = tools() else { return };
    let identity = new_identity();
    let site = site("local", false, &identity);
    let mut lab = Lab::new(&tools, site);
    lab.start("consul");
    lab.start("vault");
    let rt = rt();
    let status = rt
        .block_on(bootstrap::run(lab.options()))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.status_text()));
    assert_eq!(status.state, OverallState::Ready);
    let appliance = Appliance::start();
    let state = lab.layout.state_dir();

    // 1. First boot: every step succeeds and is reported.
    let grant = mint(&lab, &rt, MAC, "node-dev-1", NODE_IP);
    let node = node_root(&lab, &appliance, &grant, MAC);
    let root = node.path();
    let report = agent(root, NODE_IP, &rt);
    assert!(report.ok(), "{report:#?}");
    assert_eq!(ok_steps(&report), ALL_STEPS);
    let events = appliance.take_events();
    let reported: Vec<&str> = events.iter().map(|e| e["step"].as_str().unwrap()).collect();
    assert_eq!(reported, ALL_STEPS, "{events:#?}");
    assert!(
        events
            .iter()
            .all(|e| e["event"] == "enroll-step" && e["ok"] == true),
        "{events:#?}"
    );
    let text = serde_json::to_string(&events).unwrap();
    assert!(
        !text.contains(&grant.wrapped_secret_id),
        "no secret in events"
    );

    // The Consul token works, as the node's own identity.
    let token = std::fs::read_to_string(root.join("etc/kindling/secrets/consul-token")).unwrap();
    let me: Value = rt.block_on(async {
        reqwest::Client::new()
            .get(format!(
                "{}/v1/acl/token/self",
                lab.layout.consul_local_url()
            ))
            .header("X-Consul-Token", token.trim())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    });
    assert_eq!(me["NodeIdentities"][0]["NodeName"], "node-dev-1", "{me}");
    assert_mode(root, "etc/kindling/secrets/consul-token", 0o600);
    assert_mode(root, "etc/kindling/tls/node-key.pem", 0o600);
    assert_mode(root, "var/lib/kindling-node/state.json", 0o600);
    assert_mode(root, "etc/consul.d/kindling.json", 0o640);

    // The TLS certificate chains to what Consul and Nomad check clients
    // against, names the node, and Consul's mutual TLS accepts it.
    let chain = std::fs::read(root.join("etc/kindling/tls/node.pem")).unwrap();
    let key = std::fs::read(root.join("etc/kindling/tls/node-key.pem")).unwrap();
    let bundle = std::fs::read(kindling_stack::tls::trust_bundle_file(&state)).unwrap();
    assert_eq!(verify_cert(&chain, &bundle, "node-dev-1"), Ok(()));
    assert!(
        verify_cert(&chain, &bundle, "node-dev-2").is_err(),
        "only its own name"
    );
    assert_eq!(verify_cert(&chain, &bundle, "client.kstest.consul"), Ok(()));
    let mut identity_pem = key.clone();
    identity_pem.extend_from_slice(&chain);
    assert_eq!(consul_https(&lab, &rt, Some(&identity_pem)), Ok(200));
    assert_eq!(
        std::fs::read(root.join("etc/kindling/tls/ca.pem")).unwrap(),
        grant.ca_pem.as_deref().unwrap().as_bytes()
    );

    // The SSH host certificate: a host certificate of our key, signed by
    // the CA whose key sshd now trusts for users.
    let cert = std::fs::read_to_string(root.join("etc/ssh/ssh_host_ed25519_key-cert.pub")).unwrap();
    let user_ca = std::fs::read_to_string(root.join("etc/ssh/kindling-user-ca.pub")).unwrap();
    let host_pub = std::fs::read_to_string(root.join("etc/ssh/ssh_host_ed25519_key.pub")).unwrap();
    let parsed = SshCert::parse(&cert);
    assert_eq!(parsed.cert_type, 2, "a host certificate");
    assert_eq!(
        parsed.key,
        key_blob(&host_pub)[19..],
        "of the node's host key"
    );
    assert_eq!(
        parsed.principals,
        ["node-dev-1", "node-dev-1.test.kindling.internal"]
    );
    assert_eq!(parsed.signer, key_blob(&user_ca), "signed by the SSH CA");
    parsed.verify_signature();
    let drop_in =
        std::fs::read_to_string(root.join("etc/ssh/sshd_config.d/50-kindling.conf")).unwrap();
    assert!(drop_in.contains("HostCertificate /etc/ssh/ssh_host_ed25519_key-cert.pub"));
    assert!(drop_in.contains("TrustedUserCAKeys /etc/ssh/kindling-user-ca.pub"));

    // Configuration: Consul's with the profile's node metadata, Nomad's
    // checked against Nomad's documented parameters.
    let consul: Value =
        serde_json::from_slice(&std::fs::read(root.join("etc/consul.d/kindling.json")).unwrap())
            .unwrap();
    assert_eq!(consul["node_name"], "node-dev-1");
    assert_eq!(consul["datacenter"], "kstest");
    assert_eq!(
        consul["node_meta"],
        json!({"env": "development", "role": "worker", "kindling-profile": "dev"})
    );
    assert_eq!(consul["acl"]["tokens"]["agent"], token.trim());
    assert_eq!(consul["cert_file"], "/etc/kindling/tls/node.pem");
    nomad_config_is_documented(root);
    assert_eq!(
        std::fs::read(root.join("usr/local/bin/consul")).unwrap(),
        CONSUL_BYTES
    );
    assert_mode(root, "usr/local/bin/nomad", 0o755);
    assert!(root.join("etc/systemd/system/consul.service").is_file());
    assert!(root.join("etc/systemd/system/nomad.service").is_file());

    // The node's Consul agent, started from that config (its paths moved
    // under the root, its own loopback address and ports), joins the
    // appliance: the appliance's catalog shows it with its metadata.
    let (_consul_client, joined) = start_consul_client(&lab, &tools, root);
    // The key the appliance's own catalog check looks for.
    let profile_key = kindling_inventory::membership::PROFILE_META;
    assert_eq!(joined["Node"]["Meta"][profile_key], "dev", "{joined}");
    assert_eq!(joined["Node"]["Meta"]["env"], "development", "{joined}");

    // 2. Rerun: converges from disk, no second unwrap (a second unwrap of
    //    the single-use wrapping token would fail the grant step).
    let unwraps = unwraps_audited(&lab);
    assert_eq!(unwraps, 1, "the first run unwrapped once");
    let again = agent(root, NODE_IP, &rt);
    assert!(again.ok(), "{again:#?}");
    assert_eq!(ok_steps(&again), ALL_STEPS);
    assert!(
        again
            .get("grant")
            .unwrap()
            .as_ref()
            .unwrap()
            .contains("not unwrapping it again"),
        "{again:#?}"
    );
    assert_eq!(unwraps_audited(&lab), unwraps, "the rerun did not unwrap");
    assert_eq!(appliance.take_events().len(), ALL_STEPS.len());

    // A changed binary hash: refused before anything is installed.
    let node_json = root.join("etc/kindling/node.json");
    let good = std::fs::read_to_string(&node_json).unwrap();
    // The sha256 named, not the URL (which still serves the real bytes).
    let field = |hex: &str| format!("\"sha256\":\"{hex}\"");
    let wrong = good.replace(&field(&sha256(NOMAD_BYTES)), &field(&"0".repeat(64)));
    assert_ne!(wrong, good);
    std::fs::write(&node_json, wrong).unwrap();
    std::fs::remove_file(root.join("usr/local/bin/nomad")).unwrap();
    let bad = agent(root, NODE_IP, &rt);
    let err = bad.get("binaries").unwrap().clone().unwrap_err();
    assert!(
        err.contains("sha256") && err.contains("expected 0000"),
        "{err}"
    );
    assert!(
        !root.join("usr/local/bin/nomad").exists(),
        "nothing installed"
    );
    std::fs::write(&node_json, good).unwrap();
    appliance.take_events();

    // 3. The same (used) grant on a fresh root: refused, and said so.
    let fresh = node_root(&lab, &appliance, &grant, MAC);
    let used = agent(fresh.path(), NODE_IP, &rt);
    assert_eq!(used.steps.len(), 1, "{used:#?}");
    let err = used.get("grant").unwrap().clone().unwrap_err();
    assert!(err.starts_with("grant: already used"), "{err}");
    let events = appliance.take_events();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["event"], "grant-unwrap-failed");
    assert_eq!(events[0]["step"], "grant");
    assert_eq!(events[0]["ok"], false);
    assert!(events[0]["error"]
        .as_str()
        .unwrap()
        .starts_with("grant: already used"));

    // 4. A fresh grant redeemed from another address: it unwraps (the
    //    wrapping token is the secret), but the secret-id is bound to the
    //    leased address, so the login fails; and a rerun from the right
    //    address does not unwrap again either.
    let grant = mint(&lab, &rt, MAC, "node-dev-1", NODE_IP);
    let stolen = node_root(&lab, &appliance, &grant, MAC);
    let elsewhere = agent(stolen.path(), Ipv4Addr::new(127, 0, 0, 1), &rt);
    assert_eq!(ok_steps(&elsewhere), ["grant"], "{elsewhere:#?}");
    let err = elsewhere.get("login").unwrap().clone().unwrap_err();
    assert!(err.contains("CIDR"), "{err}");
    let retry = agent(stolen.path(), NODE_IP, &rt);
    assert!(retry.get("grant").unwrap().is_ok());
    let err = retry.get("login").unwrap().clone().unwrap_err();
    assert!(err.contains("re-provision"), "{err}");
    assert!(!stolen
        .path()
        .join("etc/kindling/secrets/consul-token")
        .exists());
    appliance.take_events();

    // 5. The static binary itself (when KINDLING_NODE_BIN names it, e.g.
    //    target/x86_64-unknown-linux-musl/release/kindling-node): a fresh
    //    grant on a fresh root, every step, exit 0.
    if let Some(bin) = std::env::var_os("KINDLING_NODE_BIN") {
        let grant = mint(&lab, &rt, MAC, "node-dev-1", NODE_IP);
        let fresh = node_root(&lab, &appliance, &grant, MAC);
        let out = std::process::Command::new(bin)
            .arg("--root")
            .arg(fresh.path())
            .args(["--source-address", "127.0.0.2"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("kindling-node: units: ok"), "{text}");
        assert!(fresh.path().join("etc/kindling/tls/node.pem").is_file());
        assert_eq!(appliance.take_events().len(), ALL_STEPS.len());
    }
}

/// Logins of one AppRole role share an identity entity and alias (named
/// after the role-id), whose metadata is the latest login's, and the node
/// policy is templated on it. A node the site names therefore has a role of
/// its own: another node of its profile logging in (here a runtime node on
/// the profile's role) changes nothing for it.
#[test]
fn a_node_issues_only_for_its_own_name_while_another_logs_in() {
    let Some(tools) = tools() else { return };
    let identity = new_identity();
    let mut lab = Lab::new(&tools, site("local", false, &identity));
    lab.start("consul");
    lab.start("vault");
    let rt = rt();
    rt.block_on(bootstrap::run(lab.options()))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.status_text()));
    // Another dev node (a runtime node) cannot issue for node-dev-1's
    // name, nor read its entries; and node-dev-1's login, made before,
    // still cannot issue for node-dev-2's, and still reads its own entry.
    let first = raw_login(&lab, &rt, MAC, "node-dev-1", NODE_IP);
    let other_ip = Ipv4Addr::new(127, 0, 0, 3);
    let second = raw_login(&lab, &rt, "52:54:00:6b:00:11", "node-dev-2", other_ip);
    let issue = |from: Ipv4Addr, token: &str, name: &str| -> u16 {
        vault_post(
            &lab,
            &rt,
            from,
            token,
            "pki_int/issue/node",
            json!({"common_name": name, "ttl": "1h"}),
        )
        .0
    };
    assert_eq!(issue(other_ip, &second, "node-dev-2"), 200);
    assert_eq!(
        issue(other_ip, &second, "node-dev-1"),
        400,
        "not another node's name"
    );
    assert_eq!(
        issue(NODE_IP, &first, "node-dev-2"),
        400,
        "not even after node-dev-2 logged in"
    );
    assert_eq!(issue(NODE_IP, &first, "node-dev-1"), 200);
    assert_eq!(issue(NODE_IP, &first, "127.0.0.2"), 400, "no IP addresses");
    let (status, _) = vault_get(
        &lab,
        &rt,
        other_ip,
        &second,
        "kindling/data/nodes/52-54-00-6b-00-10/consul",
    );
    assert_eq!(status, 403, "not another node's Consul token");
    let (status, _) = vault_get(
        &lab,
        &rt,
        NODE_IP,
        &first,
        "kindling/data/nodes/52-54-00-6b-00-10/consul",
    );
    assert_eq!(status, 200, "its own, after node-dev-2 logged in");
}

fn assert_mode(root: &Path, rel: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(root.join(rel))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(m, mode, "{rel}: {m:o}");
}

/// Verifies `chain` (leaf, then its issuer) as a certificate for `name`
/// against the roots in `bundle`.
fn verify_cert(chain: &[u8], bundle: &[u8], name: &str) -> Result<(), String> {
    use rustls::client::danger::ServerCertVerifier;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(bundle) {
        roots.add(c.unwrap()).unwrap();
    }
    let certs: Vec<CertificateDer> = CertificateDer::pem_slice_iter(chain)
        .map(Result::unwrap)
        .collect();
    let verifier = rustls::client::WebPkiServerVerifier::builder(Arc::new(roots))
        .build()
        .unwrap();
    verifier
        .verify_server_cert(
            &certs[0],
            &certs[1..],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Consul's HTTPS API (mutual TLS) with `identity` as the client certificate.
fn consul_https(
    lab: &Lab,
    rt: &tokio::runtime::Runtime,
    identity: Option<&[u8]>,
) -> Result<u16, String> {
    let ca = std::fs::read(kindling_stack::tls::ca_cert(&lab.layout.state_dir())).unwrap();
    let mut builder = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()]);
    if let Some(pem) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(pem).unwrap());
    }
    let client = builder.build().unwrap();
    let url = format!(
        "https://127.0.0.2:{}/v1/status/leader",
        lab.layout.ports.consul_https
    );
    rt.block_on(async {
        client
            .get(&url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .map_err(|e| format!("{e:?}"))
    })
}

/// The rendered Nomad config against Nomad's documented parameters (the
/// double's list); its TLS files are checked under the root instead.
fn nomad_config_is_documented(root: &Path) {
    match kindling_nomad_double::agent_config::AgentConfig::load(&root.join("etc/nomad.d")) {
        Ok(c) => panic!("the TLS files are at node paths, not on this host: {c:?}"),
        Err(problems) => {
            let rest: Vec<&String> = problems
                .iter()
                .filter(|p| {
                    let Some((_, path)) = p.split_once(": ") else {
                        return true;
                    };
                    let Some(path) = path.strip_suffix(" does not exist") else {
                        return true;
                    };
                    !root.join(path.trim_start_matches('/')).is_file()
                })
                .collect();
            assert!(rest.is_empty(), "{rest:#?}");
        }
    }
}

/// A real Consul client agent from the node's config, with its paths moved
/// under `root`, on 127.0.0.3 with ports of its own. Returns it (killed on
/// drop) and the appliance catalog's entry for the node once it is there.
fn start_consul_client(lab: &Lab, tools: &Path, root: &Path) -> (Proc, Value) {
    let text = std::fs::read_to_string(root.join("etc/consul.d/kindling.json")).unwrap();
    let under = |p: &str| root.join(p.trim_start_matches('/')).display().to_string();
    let mut config: Value = serde_json::from_str(&text).unwrap();
    for key in ["data_dir", "ca_file", "cert_file", "key_file"] {
        config[key] = json!(under(config[key].as_str().unwrap()));
    }
    let dir = root.join("test-consul.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kindling.json"), config.to_string()).unwrap();
    std::fs::write(
        dir.join("zz-test.json"),
        json!({
            "bind_addr": "127.0.0.3",
            "client_addr": "127.0.0.3",
            "ports": {"http": free_port(), "dns": -1, "serf_lan": free_port(), "serf_wan": -1, "server": free_port()},
        })
        .to_string(),
    )
    .unwrap();
    let log = std::fs::File::create(root.join("consul-client.log")).unwrap();
    let child = std::process::Command::new(tools.join("consul"))
        .args(["agent", &format!("-config-dir={}", dir.display())])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let proc = Proc {
        name: "consul-client".into(),
        child,
    };
    let mgmt = std::fs::read_to_string(lab.layout.state_dir().join("appliance-token")).unwrap();
    let admin = kindling_stack::vault::VaultApi::new(
        &lab.layout.vault_local_url(),
        Some(mgmt.trim().into()),
        None,
    )
    .unwrap();
    let rt = rt();
    let management = rt
        .block_on(admin.kv_read("kindling", "stack/consul/management"))
        .unwrap()
        .unwrap();
    let secret = management["secret_id"].as_str().unwrap().to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let entry: Value = rt.block_on(async {
            reqwest::Client::new()
                .get(format!(
                    "{}/v1/catalog/node/node-dev-1",
                    lab.layout.consul_local_url()
                ))
                .header("X-Consul-Token", &secret)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or(Value::Null)
        });
        // The leader registers a serf member at once; its metadata comes
        // with the agent's own sync, which its token must allow.
        if !entry["Node"]["Meta"].is_null() {
            return (proc, entry);
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "the node never joined; its log:\n{}",
                std::fs::read_to_string(root.join("consul-client.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A node's own login from `ip` (a grant minted, unwrapped and redeemed by
/// hand): its Vault token.
fn raw_login(
    lab: &Lab,
    rt: &tokio::runtime::Runtime,
    mac: &str,
    host: &str,
    ip: Ipv4Addr,
) -> String {
    let grant = mint(lab, rt, mac, host, ip);
    let (status, body) = vault_post(
        lab,
        rt,
        ip,
        &grant.wrapped_secret_id,
        "sys/wrapping/unwrap",
        json!({}),
    );
    assert_eq!(status, 200, "{body}");
    let secret_id = body["data"]["secret_id"].as_str().unwrap().to_string();
    let (status, body) = vault_post(
        lab,
        rt,
        ip,
        "",
        "auth/approle/login",
        json!({"role_id": grant.role_id, "secret_id": secret_id}),
    );
    assert_eq!(status, 200, "{body}");
    body["auth"]["client_token"].as_str().unwrap().to_string()
}

fn vault_client(lab: &Lab, from: Ipv4Addr) -> reqwest::Client {
    let ca = std::fs::read(kindling_stack::tls::ca_cert(&lab.layout.state_dir())).unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .local_address(IpAddr::V4(from))
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap()
}

fn vault_url(lab: &Lab, path: &str) -> String {
    format!("https://127.0.0.2:{}/v1/{path}", lab.layout.ports.vault_api)
}

fn vault_post(
    lab: &Lab,
    rt: &tokio::runtime::Runtime,
    from: Ipv4Addr,
    token: &str,
    path: &str,
    body: Value,
) -> (u16, Value) {
    rt.block_on(async {
        let mut req = vault_client(lab, from)
            .post(vault_url(lab, path))
            .json(&body);
        if !token.is_empty() {
            req = req.header("X-Vault-Token", token);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

fn vault_get(
    lab: &Lab,
    rt: &tokio::runtime::Runtime,
    from: Ipv4Addr,
    token: &str,
    path: &str,
) -> (u16, Value) {
    rt.block_on(async {
        let resp = vault_client(lab, from)
            .get(vault_url(lab, path))
            .header("X-Vault-Token", token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

/// The wire blob of an OpenSSH public key line.
fn key_blob(line: &str) -> Vec<u8> {
    use base64::Engine;
    let b64 = line.split_whitespace().nth(1).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

/// The fields of an `ssh-ed25519-cert-v01@openssh.com` certificate the
/// test checks (PROTOCOL.certkeys).
struct SshCert {
    key: Vec<u8>,
    cert_type: u32,
    principals: Vec<String>,
    signer: Vec<u8>,
    signed: Vec<u8>,
    signature: Vec<u8>,
}

impl SshCert {
    fn parse(line: &str) -> Self {
        let blob = key_blob(line);
        let mut r = Reader(&blob, 0);
        assert_eq!(r.string(), b"ssh-ed25519-cert-v01@openssh.com");
        let _nonce = r.string();
        let key = r.string().to_vec();
        let _serial = r.u64();
        let cert_type = r.u32();
        let _key_id = r.string();
        let principals_blob = r.string().to_vec();
        let mut p = Reader(&principals_blob, 0);
        let mut principals = Vec::new();
        while p.1 < principals_blob.len() {
            principals.push(String::from_utf8(p.string().to_vec()).unwrap());
        }
        let _after = r.u64();
        let _before = r.u64();
        let _critical = r.string();
        let _extensions = r.string();
        let _reserved = r.string();
        let signer = r.string().to_vec();
        let signed = blob[..r.1].to_vec();
        let signature = r.string().to_vec();
        SshCert {
            key,
            cert_type,
            principals,
            signer,
            signed,
            signature,
        }
    }

    /// The CA's Ed25519 signature over the certificate.
    fn verify_signature(&self) {
        let mut s = Reader(&self.signature, 0);
        assert_eq!(s.string(), b"ssh-ed25519");
        let sig = s.string().to_vec();
        let mut k = Reader(&self.signer, 0);
        assert_eq!(k.string(), b"ssh-ed25519");
        let ca_key = k.string().to_vec();
        let provider = rustls::crypto::ring::default_provider();
        let ed25519 = provider
            .signature_verification_algorithms
            .all
            .iter()
            .find(|a| a.public_key_alg_id() == rustls_pki_types::alg_id::ED25519)
            .unwrap();
        ed25519
            .verify_signature(&ca_key, &self.signed, &sig)
            .expect("the CA's signature verifies");
    }
}

struct Reader<'a>(&'a [u8], usize);

impl Reader<'_> {
    fn u32(&mut self) -> u32 {
        let v = u32::from_be_bytes(self.0[self.1..self.1 + 4].try_into().unwrap());
        self.1 += 4;
        v
    }
    fn u64(&mut self) -> u64 {
        let v = u64::from_be_bytes(self.0[self.1..self.1 + 8].try_into().unwrap());
        self.1 += 8;
        v
    }
    fn string(&mut self) -> &[u8] {
        let n = self.u32() as usize;
        let s = &self.0[self.1..self.1 + n];
        self.1 += n;
        s
    }
}
