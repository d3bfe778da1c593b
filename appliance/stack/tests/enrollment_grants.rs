//! Enrollment grants end to end against real OpenBao and Consul 1.8.7 on
//! loopback: the stack bootstrap makes the enrollment token, and the PXE
//! service's HTTP handler (in process) serves user-data with grants minted
//! by it. Clients bind 127.0.0.2 (the dev node's leased address) or
//! 127.0.0.1 (a LAN host without the lease); Vault sees those as the
//! requests' source addresses.
//!
//! Checked in Vault itself: the secret-id accessors of the dev node's own
//! role (`LIST auth/approle/role/node-mac-52-54-00-6b-00-10/secret-id`;
//! the site names it) before and after each
//! fetch, logins from the wrong address, second unwraps, and what the
//! enrollment token is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use kindling_inventory::{AlertKind, Firmware, GrantState, Inventory, ReprovisionStore};
use kindling_pxe::enroll::{
    EnrollError, Enrollment, EnrollmentSource, GrantLookup, GrantRequest, GrantTicket,
};
use kindling_pxe::holder::FixedHolders;
use kindling_pxe::http::handler::{NodeGate, PxeHttp};
use kindling_pxe::{MacAddr, PxePaths, PxeSettings};
use kindling_stack::bootstrap;
use kindling_stack::enroll::Enroller;
use kindling_stack::status::OverallState;
use kindling_stack::vault::VaultApi;
use reqwest::Method;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

const DEV: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);
const NODE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const OTHER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const GRANT_TTL: u32 = 30;

/// The PXE service's view of the stack's enroller, run on the test's
/// runtime from the HTTP handler's threads.
struct Minter {
    enroller: Enroller,
    rt: Arc<tokio::runtime::Runtime>,
}

fn enroll_error(mac: MacAddr, profile: &str, e: impl std::fmt::Display) -> EnrollError {
    EnrollError {
        mac,
        profile: profile.into(),
        reason: e.to_string(),
    }
}

impl EnrollmentSource for Minter {
    fn active(&self) -> bool {
        true
    }
    fn enroll(&self, r: &GrantRequest<'_>) -> Result<Option<Enrollment>, EnrollError> {
        let mac = r.mac.to_string();
        let request = kindling_stack::enroll::GrantRequest {
            mac: &mac,
            profile: r.profile,
            hostname: r.hostname,
            address: r.address,
        };
        let g = self
            .rt
            .block_on(self.enroller.issue(&request))
            .map_err(|e| enroll_error(r.mac, r.profile, e))?;
        Ok(Some(Enrollment {
            vault_addr: g.vault_addr,
            role_id: g.role_id,
            wrapped_secret_id: g.wrapped_secret_id,
            ca_pem: g.ca_pem,
            ticket: GrantTicket {
                wrapping_accessor: g.wrapping_accessor,
                secret_id_accessor: g.secret_id_accessor,
                ttl_secs: self.enroller.grant_ttl_secs(),
            },
        }))
    }
    fn lookup(&self, mac: MacAddr, p: &str, t: &GrantTicket) -> Result<GrantLookup, EnrollError> {
        let seen = self
            .rt
            .block_on(self.enroller.lookup(
                p,
                &mac.to_string(),
                &t.wrapping_accessor,
                &t.secret_id_accessor,
            ))
            .map_err(|e| enroll_error(mac, p, e))?;
        Ok(GrantLookup {
            wrapping_alive: seen.wrapping_alive,
            secret_id_alive: seen.secret_id_alive,
        })
    }
    fn withdraw(&self, mac: MacAddr, p: &str, t: &GrantTicket) -> Result<(), EnrollError> {
        self.rt
            .block_on(
                self.enroller
                    .withdraw(p, &mac.to_string(), &t.secret_id_accessor),
            )
            .map_err(|e| enroll_error(mac, p, e))
    }
}

/// An HTTP client whose connections come from `from`.
fn client_from(from: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(from))
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A request with an optional Vault token and JSON body: (status, body text).
async fn send(
    client: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = client.request(Method::from_bytes(method.as_bytes()).unwrap(), url);
    if let Some(t) = token {
        req = req.header("X-Vault-Token", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

/// The enrollment a user-data document carries (`/etc/kindling/enrollment.json`).
fn enrollment_of(user_data: &str) -> Value {
    let mut lines = user_data.lines();
    lines
        .by_ref()
        .find(|l| l.contains("/etc/kindling/enrollment.json"))
        .unwrap_or_else(|| panic!("no enrollment in the user-data:\n{user_data}"));
    let content = lines
        .find_map(|l| l.trim().strip_prefix("content: "))
        .unwrap();
    let text: String = serde_json::from_str(content).unwrap();
    json(&text)
}

struct Pxe {
    addr: SocketAddr,
    inventory: Arc<Inventory>,
    grants: Arc<kindling_pxe::grants::GrantKeeper>,
    state: std::path::PathBuf,
}

/// The PXE HTTP service for `lab`'s site, minting with the stack's enroller;
/// the dev node's lease is held by 127.0.0.2.
fn start_pxe(lab: &Lab, rt: Arc<tokio::runtime::Runtime>) -> Pxe {
    let mut site = lab.site.clone();
    // The lab's LAN is loopback: the DHCP range must lie in it.
    site.pxe.range =
        serde_json::from_value(json!({"start": "127.0.0.100", "end": "127.0.0.200"})).unwrap();
    let root = lab.dir.path().join("pxe");
    let paths = PxePaths {
        boot_dir: root.join("boot"),
        artifact_dirs: vec![root.join("artifacts")],
        state_dir: root.join("state"),
        repo_dir: None,
        status_file: root.join("status/pxe.json"),
        node_agent: root.join("node/kindling-node"),
        consul_binary: root.join("node/consul"),
        nomad_binary: root.join("node/nomad"),
    };
    let settings = Arc::new(PxeSettings::from_site(&site, paths).unwrap());
    let inventory =
        Arc::new(Inventory::open(&settings.paths.state_dir, settings.profile_policy()).0);
    inventory.observe_dhcp(DEV, Some(NODE_IP), Some(0), Firmware::Bios, 1);
    let stats = Arc::new(kindling_pxe::status::Stats::default());
    let minter = Minter {
        enroller: Enroller::new(&lab.site, &lab.layout).unwrap(),
        rt,
    };
    let grants = Arc::new(kindling_pxe::service::grant_keeper(
        &settings,
        inventory.clone(),
        Arc::new(minter),
        stats.clone(),
    ));
    let gate = NodeGate {
        holders: Arc::new(FixedHolders(vec![(DEV, NODE_IP)])),
        grants: grants.clone(),
    };
    let http = Arc::new(PxeHttp::new(
        settings.clone(),
        inventory.clone(),
        gate,
        stats,
    ));
    let listener = kindling_pxe::http::listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        kindling_pxe::http::listener::serve(listener, http, 16, Default::default())
    });
    Pxe {
        addr,
        inventory,
        grants,
        state: settings.paths.state_dir.clone(),
    }
}

impl Pxe {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    fn grant(&self) -> kindling_inventory::Grant {
        self.inventory.node(&DEV).unwrap().seen.grant.unwrap()
    }
    fn rearm(&self) {
        ReprovisionStore::in_state_dir(&self.state)
            .request(DEV, kindling_clock::unix_ms())
            .unwrap();
        // The PXE service looks at the request file at most every 0.5 s.
        std::thread::sleep(Duration::from_millis(600));
    }
}

#[test]
fn grants_are_bound_to_the_lease_minted_once_and_their_fate_is_reported() {
    let Some(tools) = tools() else { return };
    let identity = new_identity();
    let mut site = site("local", false, &identity);
    site.enrollment.grant_ttl_secs = GRANT_TTL.try_into().unwrap();
    let mut lab = Lab::new(&tools, site);
    lab.start("consul");
    lab.start("vault");
    let rt = Arc::new(rt());
    let status = rt
        .block_on(bootstrap::run(lab.options()))
        .unwrap_or_else(|e| panic!("{e}\n{}", lab.status_text()));
    assert_eq!(status.state, OverallState::Ready);

    let vault = lab.layout.vault_local_url();
    let state = lab.layout.state_dir();
    let admin_token = std::fs::read_to_string(state.join("appliance-token")).unwrap();
    let enroll_token = std::fs::read_to_string(state.join("for-pxe/enroll-token")).unwrap();
    let admin = VaultApi::new(&vault, Some(admin_token.trim().into()), None).unwrap();
    let accessors = || -> usize {
        rt.block_on(admin.raw(
            Method::from_bytes(b"LIST").unwrap(),
            "auth/approle/role/node-mac-52-54-00-6b-00-10/secret-id",
            None,
            None,
        ))
        .map(|(status, body)| match status {
            404 => 0,
            200 => body["data"]["keys"].as_array().map_or(0, Vec::len),
            other => panic!("LIST secret-id accessors: {other} {body}"),
        })
        .unwrap()
    };
    assert_eq!(accessors(), 0);

    // The enrollment token can mint wrapped, bound secret-ids for node
    // roles and nothing else.
    let node = client_from(NODE_IP);
    let other = client_from(OTHER_IP);
    let v = |path: &str| format!("{vault}/v1/{path}");
    let token = Some(enroll_token.trim());
    rt.block_on(async {
        for (method, path, body, why) in [
            ("PUT", "sys/policies/acl/x", Some(json!({"policy": "path \"*\" {capabilities=[\"sudo\"]}"})), "write a policy"),
            ("POST", "auth/token/create", Some(json!({})), "create a token"),
            ("GET", "kindling/data/stack/consul/management", None, "read KV"),
            ("GET", "sys/mounts", None, "read mounts"),
            ("LIST", "auth/approle/role/node-dev/secret-id", None, "list secret-ids"),
            ("POST", "auth/approle/role/node-dev/secret-id", Some(json!({"metadata": "{}", "cidr_list": ["127.0.0.2/32"], "token_bound_cidrs": ["127.0.0.2/32"]})), "mint an unwrapped secret-id"),
            ("GET", "auth/approle/role/node-dev", None, "read a role"),
            ("POST", "auth/approle/role/node-dev", Some(json!({"token_policies": ["root"]})), "change a role"),
        ] {
            let (status, text) = send(&other, method, &v(path), token, body).await;
            assert_eq!(status, 403, "the enrollment token may not {why}: {text}");
        }
        let (status, text) = send(&other, "GET", &v("auth/token/lookup-self"), token, None).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(json(&text)["data"]["policies"], json!(["kindling-enroll"]), "no default policy");
        let wrapped = |wrap: &str, body: Value| {
            let (c, url, wrap) = (other.clone(), v("auth/approle/role/node-dev/secret-id"), wrap.to_string());
            let token = enroll_token.trim().to_string();
            async move {
                let resp = c.post(url).header("X-Vault-Token", token).header("X-Vault-Wrap-TTL", wrap).json(&body).send().await.unwrap();
                resp.status().as_u16()
            }
        };
        let bound = json!({"metadata": "{}", "cidr_list": ["127.0.0.2/32"], "token_bound_cidrs": ["127.0.0.2/32"]});
        assert_eq!(wrapped("3600s", bound.clone()).await, 403, "wrapped longer than the grant life");
        assert_eq!(wrapped("30s", json!({"metadata": "{}"})).await, 403, "not bound to an address");
        assert_eq!(wrapped("30s", json!({"metadata": "{}", "cidr_list": ["127.0.0.2/32"], "token_bound_cidrs": ["127.0.0.2/32"], "num_uses": 0})).await, 403, "unlimited uses");
    });
    assert_eq!(accessors(), 0, "nothing was minted by the refused calls");

    let pxe = start_pxe(&lab, rt.clone());
    let user_data = pxe.url(&format!("/nocloud/{DEV}/user-data"));

    // 1. A LAN host without the lease: 403, nothing minted.
    let (status, text) = rt.block_on(send(&other, "GET", &user_data, None, None));
    assert_eq!(status, 403, "{text}");
    assert_eq!(accessors(), 0, "no secret-id for a host without the lease");

    // 2. The lease holder: a grant, one new accessor in Vault.
    let (status, text) = rt.block_on(send(&node, "GET", &user_data, None, None));
    assert_eq!(status, 200, "{text}");
    let first = enrollment_of(&text);
    assert_eq!(accessors(), 1);
    assert_eq!(pxe.grant().state, GrantState::Issued);

    // 3. A second fetch: 409, nothing minted, the node marked grant-reused.
    let (status, text) = rt.block_on(send(&node, "GET", &user_data, None, None));
    assert_eq!(status, 409, "{text}");
    assert_eq!(accessors(), 1, "no second secret-id");
    let alerts = pxe.inventory.node(&DEV).unwrap().seen.alerts;
    assert_eq!(alerts[0].kind, AlertKind::GrantReused, "{alerts:?}");

    // 4. The node unwraps (from anywhere: the wrapping token is the
    //    secret), but the secret-id logs in only from its leased address,
    //    and the token it gives works only from there.
    let role_id = first["role_id"].as_str().unwrap().to_string();
    let wrap = first["wrapped_secret_id"].as_str().unwrap().to_string();
    let login = |client: reqwest::Client, secret_id: String| {
        let (url, role_id) = (v("auth/approle/login"), role_id.clone());
        async move {
            send(
                &client,
                "POST",
                &url,
                None,
                Some(json!({"role_id": role_id, "secret_id": secret_id})),
            )
            .await
        }
    };
    rt.block_on(async {
        let (status, text) =
            send(&node, "POST", &v("sys/wrapping/unwrap"), Some(&wrap), None).await;
        assert_eq!(status, 200, "{text}");
        let secret_id = json(&text)["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_string();
        let (status, text) = login(other.clone(), secret_id.clone()).await;
        assert!(
            matches!(status, 400 | 403),
            "login from another address: {status} {text}"
        );
        assert!(text.contains("CIDR"), "{text}");
        let (status, text) = login(node.clone(), secret_id.clone()).await;
        assert_eq!(status, 200, "login from the leased address: {text}");
        let node_token = json(&text)["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_string();
        let (status, _) = send(
            &other,
            "GET",
            &v("auth/token/lookup-self"),
            Some(&node_token),
            None,
        )
        .await;
        assert_eq!(
            status, 403,
            "the node's token is refused from another address"
        );
        let (status, text) = send(
            &node,
            "GET",
            &v("kindling/data/nodes/52-54-00-6b-00-10/meta"),
            Some(&node_token),
            None,
        )
        .await;
        assert_eq!(status, 200, "the node reads its own entry: {text}");
        // A second unwrap of the same grant fails.
        let (status, _) = send(&node, "POST", &v("sys/wrapping/unwrap"), Some(&wrap), None).await;
        assert_eq!(status, 400, "a wrapping token unwraps once");
    });
    assert_eq!(accessors(), 0, "the single-use secret-id is used up");
    let (status, text) = rt.block_on(send(
        &node,
        "POST",
        &pxe.url(&format!("/nodes/{DEV}/events")),
        None,
        Some(json!({"event": "booted"})),
    ));
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        pxe.grant().state,
        GrantState::Redeemed,
        "the event made the appliance look"
    );

    // 5. Re-armed: the next fetch mints again. Someone else unwraps the new
    //    grant first; the node's unwrap fails, it says so, and the appliance
    //    finds the grant used elsewhere and destroys its secret-id.
    pxe.rearm();
    let (status, text) = rt.block_on(send(&node, "GET", &user_data, None, None));
    assert_eq!(status, 200, "after reprovision: {text}");
    let second = enrollment_of(&text);
    assert_ne!(second["wrapped_secret_id"], first["wrapped_secret_id"]);
    assert_eq!(accessors(), 1);
    let wrap = second["wrapped_secret_id"].as_str().unwrap().to_string();
    let stolen = rt.block_on(async {
        let (status, text) =
            send(&other, "POST", &v("sys/wrapping/unwrap"), Some(&wrap), None).await;
        assert_eq!(status, 200, "{text}");
        let stolen = json(&text)["data"]["secret_id"]
            .as_str()
            .unwrap()
            .to_string();
        let (status, _) = login(other.clone(), stolen.clone()).await;
        assert!(
            matches!(status, 400 | 403),
            "the thief cannot log in from its address"
        );
        let (status, _) = send(&node, "POST", &v("sys/wrapping/unwrap"), Some(&wrap), None).await;
        assert_eq!(status, 400, "the node's own unwrap fails");
        stolen
    });
    let (status, text) = rt.block_on(send(
        &node,
        "POST",
        &pxe.url(&format!("/nodes/{DEV}/events")),
        None,
        Some(json!({"event": "grant-unwrap-failed"})),
    ));
    assert_eq!(status, 200, "{text}");
    let grant = pxe.grant();
    assert_eq!(grant.state, GrantState::UsedElsewhere, "{grant:?}");
    let alerts = pxe.inventory.node(&DEV).unwrap().seen.alerts;
    assert_eq!(alerts[0].kind, AlertKind::GrantUsedElsewhere, "{alerts:?}");
    assert_eq!(accessors(), 0, "the stolen secret-id was destroyed");
    let (status, _) = rt.block_on(login(node.clone(), stolen));
    assert!(
        matches!(status, 400 | 403),
        "not even from the leased address"
    );

    // 6. Re-armed again, and nobody redeems the grant: once its life is
    //    over it is expired, and its secret-id destroyed.
    pxe.rearm();
    let (status, text) = rt.block_on(send(&node, "GET", &user_data, None, None));
    assert_eq!(status, 200, "{text}");
    assert_eq!(accessors(), 1);
    let expires = pxe.grant().expires_at;
    while kindling_clock::unix_now() < expires {
        std::thread::sleep(Duration::from_millis(500));
    }
    pxe.grants.sweep(kindling_clock::unix_now());
    let grant = pxe.grant();
    assert_eq!(grant.state, GrantState::Expired, "{grant:?}");
    assert_eq!(accessors(), 0, "the unredeemed secret-id was destroyed");

    // 7. The re-arm's other half (`kindlingd node-tokens`): the Consul token
    //    the old install held is revoked, a fresh one recorded for the next.
    let record = || {
        rt.block_on(admin.kv_read("kindling", "nodes/52-54-00-6b-00-10/consul"))
            .unwrap()
            .unwrap()
    };
    let consul_url = lab.layout.consul_local_url();
    let token_self = |secret: &str| {
        let url = format!("{consul_url}/v1/acl/token/self");
        let secret = secret.to_string();
        rt.block_on(async move {
            reqwest::Client::new()
                .get(url)
                .header("X-Consul-Token", secret)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let old = record();
    let old_secret = old["secret_id"].as_str().unwrap().to_string();
    assert_eq!(token_self(&old_secret), 200, "the install's token works");
    // Certificates from `pki_int`: two naming the dev node (by common name;
    // by DNS name only) and one the prod node's, issued through a test role
    // that allows any name (the node role allows only the login's own).
    let issue = |cn: &str, alt: &str| -> String {
        rt.block_on(async {
            let role = json!({"allow_any_name": true, "enforce_hostnames": false, "max_ttl": "1h"});
            admin
                .call(
                    "test role",
                    Method::POST,
                    "pki_int/roles/test-any",
                    Some(&role),
                )
                .await
                .unwrap();
            let req = json!({"common_name": cn, "alt_names": alt, "ttl": "1h"});
            let issued = admin
                .call("issue", Method::POST, "pki_int/issue/test-any", Some(&req))
                .await
                .unwrap();
            issued["data"]["serial_number"]
                .as_str()
                .unwrap()
                .to_string()
        })
    };
    let dev_certs = [
        issue("node-dev-1", "localhost"),
        issue("client.kstest.consul", "node-dev-1"),
    ];
    let prod_cert = issue("node-prod-1", "localhost");
    let revoked = |serial: &str| {
        rt.block_on(admin.pki_cert("pki_int", serial))
            .unwrap()
            .unwrap()
            .revoked
    };
    assert!(!revoked(&dev_certs[0]));
    let replaced = rt
        .block_on(kindling_stack::node_tokens::replace_as_bootstrap(
            &lab.layout,
            &lab.site,
            &DEV,
        ))
        .unwrap()
        .unwrap();
    assert_eq!(replaced.revoked.as_deref(), old["accessor_id"].as_str());
    assert!(replaced.was_live);
    let mut got = replaced.certificates.clone();
    got.sort();
    let mut want = dev_certs.to_vec();
    want.sort();
    assert_eq!(got, want, "exactly the dev node's certificates are revoked");
    assert!(dev_certs.iter().all(|s| revoked(s)), "Vault says revoked");
    assert!(
        !revoked(&prod_cert),
        "another node's certificate stays good"
    );
    assert_eq!(
        token_self(&old_secret),
        403,
        "the re-armed node's old Consul token is revoked"
    );
    let new = record();
    assert_eq!(new["accessor_id"].as_str(), Some(replaced.made.as_str()));
    assert_eq!(token_self(new["secret_id"].as_str().unwrap()), 200);
    let again = rt
        .block_on(kindling_stack::node_tokens::replace_as_bootstrap(
            &lab.layout,
            &lab.site,
            &DEV,
        ))
        .unwrap()
        .unwrap();
    assert_eq!(
        again.certificates,
        Vec::<String>::new(),
        "a rerun revokes nothing twice"
    );
    let stranger: MacAddr = "02:00:00:00:00:01".parse().unwrap();
    let none = rt.block_on(kindling_stack::node_tokens::replace_as_bootstrap(
        &lab.layout,
        &lab.site,
        &stranger,
    ));
    assert_eq!(
        none.unwrap(),
        None,
        "a MAC the site does not name has no token"
    );
}
