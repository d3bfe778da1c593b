//! Node endpoints over loopback (no root needed), with clients bound to
//! different loopback addresses: 127.0.0.2 holds the dev node's lease,
//! 127.0.0.3 the prod node's, 127.0.0.1 nothing (a hostile LAN host).
//! Grants come from a recording stand-in for Vault (the real OpenBao path
//! is `kindling-stack`'s `enrollment_grants` test): what matters here is
//! what the PXE service serves, refuses, mints, records and counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{lab_site, Dirs};
use kindling_inventory::{AlertKind, Firmware, GrantState, NodeState, ReprovisionStore};
use kindling_pxe::enroll::{
    EnrollError, Enrollment, EnrollmentSource, GrantLookup, GrantRequest, GrantTicket,
};
use kindling_pxe::grants::GrantKeeper;
use kindling_pxe::holder::FixedHolders;
use kindling_pxe::http::connection::Limits;
use kindling_pxe::http::handler::{NodeGate, PxeHttp};
use kindling_pxe::status::Stats;
use kindling_pxe::{Inventory, MacAddr, PxeSettings};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEV: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);
const PROD: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x20]);
const STRANGER_A: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x91]);
const STRANGER_B: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x92]);
const HOSTILE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const DEV_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const PROD_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const A_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const B_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

/// Stands in for Vault: records every grant minted and withdrawn, and
/// answers lookups as the test sets them.
#[derive(Default)]
struct RecordingVault {
    minted: Mutex<Vec<(MacAddr, Ipv4Addr, String)>>,
    withdrawn: Mutex<Vec<String>>,
    unwrapped: AtomicBool,
    logged_in: AtomicBool,
}

impl RecordingVault {
    fn minted(&self) -> usize {
        self.minted.lock().unwrap().len()
    }
}

impl EnrollmentSource for RecordingVault {
    fn active(&self) -> bool {
        true
    }
    fn enroll(&self, r: &GrantRequest<'_>) -> Result<Option<Enrollment>, EnrollError> {
        let mut minted = self.minted.lock().unwrap();
        let n = minted.len();
        minted.push((r.mac, r.address, format!("sid-{n}")));
        Ok(Some(Enrollment {
            vault_addr: "https://192.168.100.1:8200".into(),
            role_id: format!("role-{}", r.profile),
            wrapped_secret_id: format!("wrap-token-{n}"),
            ca_pem: None,
            ticket: GrantTicket {
                wrapping_accessor: format!("wrap-{n}"),
                secret_id_accessor: format!("sid-{n}"),
                ttl_secs: 300,
            },
        }))
    }
    fn lookup(&self, _: MacAddr, _: &str, _: &GrantTicket) -> Result<GrantLookup, EnrollError> {
        Ok(GrantLookup {
            wrapping_alive: !self.unwrapped.load(Ordering::SeqCst),
            secret_id_alive: !self.logged_in.load(Ordering::SeqCst),
        })
    }
    fn withdraw(&self, _: MacAddr, _: &str, t: &GrantTicket) -> Result<(), EnrollError> {
        self.withdrawn
            .lock()
            .unwrap()
            .push(t.secret_id_accessor.clone());
        Ok(())
    }
}

struct Node {
    addr: SocketAddr,
    stats: Arc<Stats>,
    inventory: Arc<Inventory>,
    grants: Arc<GrantKeeper>,
    vault: Arc<RecordingVault>,
}

/// The lab site's PXE HTTP service on 127.0.0.1 over `dirs`' state (so a
/// second one over the same dirs is the service after a restart).
fn serve(dirs: &Dirs, vault: Arc<RecordingVault>, unknown_macs: u32) -> Node {
    let mut site = lab_site();
    for profile in site.profiles.values_mut() {
        profile.enrollment.unknown_macs = unknown_macs;
    }
    serve_site(dirs, vault, &site)
}

/// The PXE HTTP service of `site` on 127.0.0.1 over `dirs`' state.
fn serve_site(dirs: &Dirs, vault: Arc<RecordingVault>, site: &kindling_site::SiteConfig) -> Node {
    std::fs::write(dirs.path("boot/undionly.kpxe"), b"ipxe").unwrap();
    let settings = Arc::new(PxeSettings::from_site(site, dirs.paths(&dirs.path("boot"))).unwrap());
    let (inventory, problem) =
        Inventory::open(&settings.paths.state_dir, settings.profile_policy());
    assert!(problem.is_none(), "{problem:?}");
    let inventory = Arc::new(inventory);
    // As the DHCP server would have: every node here took a lease.
    for (mac, ip) in [
        (DEV, DEV_IP),
        (PROD, PROD_IP),
        (STRANGER_A, A_IP),
        (STRANGER_B, B_IP),
    ] {
        inventory.observe_dhcp(mac, Some(ip), Some(0), Firmware::Bios, 1);
    }
    let stats = Arc::new(Stats::default());
    let grants = Arc::new(kindling_pxe::service::grant_keeper(
        &settings,
        inventory.clone(),
        vault.clone(),
        stats.clone(),
    ));
    let holders = FixedHolders(vec![
        (DEV, DEV_IP),
        (PROD, PROD_IP),
        (STRANGER_A, A_IP),
        (STRANGER_B, B_IP),
    ]);
    let gate = NodeGate {
        holders: Arc::new(holders),
        grants: grants.clone(),
    };
    let http = Arc::new(PxeHttp::new(
        settings,
        inventory.clone(),
        gate,
        stats.clone(),
    ));
    let listener = kindling_pxe::http::listener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let e = kindling_pxe::http::listener::serve(listener, http, 16, Limits::default());
        panic!("listener ended: {e}");
    });
    Node {
        addr,
        stats,
        inventory,
        grants,
        vault,
    }
}

impl Node {
    /// A TCP connection to the service from the LAN address `from`.
    fn connect(&self, from: Ipv4Addr, read_timeout: Duration) -> TcpStream {
        let fd = rustix::net::socket(
            rustix::net::AddressFamily::INET,
            rustix::net::SocketType::STREAM,
            None,
        )
        .unwrap();
        rustix::net::bind(&fd, &SocketAddr::from((from, 0))).unwrap();
        rustix::net::connect(&fd, &self.addr).unwrap();
        let s = TcpStream::from(fd);
        s.set_read_timeout(Some(read_timeout)).unwrap();
        s
    }

    /// One HTTP/1.0 request from `from`: (status, body).
    fn call(&self, from: Ipv4Addr, method: &str, path: &str, body: &str) -> (u16, String) {
        let mut s = self.connect(from, Duration::from_secs(10));
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    /// One HTTP/1.0 request with extra header lines, from `from`:
    /// (status, response head, body bytes).
    fn fetch(&self, from: Ipv4Addr, head: &str) -> (u16, String, Vec<u8>) {
        let mut s = self.connect(from, Duration::from_secs(30));
        write!(s, "{head}\r\n").unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        common::split_reply(&raw)
    }

    /// node.json as the user-data served to `from` for `mac` writes it.
    fn node_json(&self, from: Ipv4Addr, mac: MacAddr) -> String {
        let (status, user_data) = self.call(from, "GET", &format!("/nocloud/{mac}/user-data"), "");
        assert_eq!(status, 200, "{user_data}");
        node_json_of(&user_data)
    }

    fn event(&self, from: Ipv4Addr, mac: MacAddr, event: &str) -> (u16, String) {
        let body = format!(r#"{{"event":"{event}"}}"#);
        self.call(from, "POST", &format!("/nodes/{mac}/events"), &body)
    }

    fn record(&self, mac: MacAddr) -> serde_json::Value {
        serde_json::to_value(self.inventory.node(&mac).unwrap()).unwrap()
    }
}

/// Every node endpoint of a MAC, as (method, path, body).
fn node_endpoints(mac: MacAddr) -> Vec<(&'static str, String, &'static str)> {
    let mut out: Vec<_> = ["meta-data", "user-data", "vendor-data", "network-config"]
        .into_iter()
        .map(|doc| ("GET", format!("/nocloud/{mac}/{doc}"), ""))
        .collect();
    out.push(("GET", format!("/preseed/{mac}.cfg"), ""));
    out.push((
        "POST",
        format!("/nodes/{mac}/events"),
        r#"{"event":"booted"}"#,
    ));
    out
}

#[test]
fn a_host_without_the_lease_gets_403_on_every_node_endpoint_and_changes_nothing() {
    let dirs = Dirs::new();
    let node = serve(&dirs, Arc::default(), 0);
    let before = (node.record(DEV), node.record(PROD));
    let mut refused = 0;
    for (from, mac) in [(HOSTILE, DEV), (PROD_IP, DEV), (DEV_IP, PROD)] {
        for (method, path, body) in node_endpoints(mac) {
            let (status, reply) = node.call(from, method, &path, body);
            assert_eq!(status, 403, "{method} {path} from {from}: {reply}");
            assert!(reply.contains("DHCP lease"), "the reason is given: {reply}");
            refused += 1;
        }
    }
    assert_eq!(node.stats.get("http_refused_not_lease_holder"), refused);
    assert_eq!(node.vault.minted(), 0, "nothing minted");
    assert_eq!(
        (node.record(DEV), node.record(PROD)),
        before,
        "nothing changed"
    );

    // What any PXE client needs stays anonymous; a script fetched by
    // someone else does not count as the node booting.
    for path in [
        format!("/boot/{DEV}.ipxe"),
        "/boot/undionly.kpxe".to_string(),
        "/begin.sh".to_string(),
    ] {
        assert_eq!(node.call(HOSTILE, "GET", &path, "").0, 200, "{path}");
    }
    assert_eq!(
        node.inventory.node(&DEV).unwrap().state,
        NodeState::Discovered
    );
    assert_eq!(
        node.call(DEV_IP, "GET", &format!("/boot/{DEV}.ipxe"), "").0,
        200
    );
    assert_eq!(node.inventory.node(&DEV).unwrap().state, NodeState::Booting);
}

#[test]
fn one_grant_per_cycle_reuse_is_409_and_an_alert_until_reprovision_even_across_a_restart() {
    let dirs = Dirs::new();
    let node = serve(&dirs, Arc::default(), 0);
    let user_data = format!("/nocloud/{DEV}/user-data");

    let (status, first) = node.call(DEV_IP, "GET", &user_data, "");
    assert_eq!(status, 200, "{first}");
    assert!(first.contains("wrap-token-0"), "{first}");
    let minted = node.vault.minted.lock().unwrap().clone();
    assert_eq!(
        minted,
        [(DEV, DEV_IP, "sid-0".to_string())],
        "bound to the holder's address"
    );
    let grant = node.inventory.node(&DEV).unwrap().seen.grant.unwrap();
    assert_eq!((grant.state, grant.address), (GrantState::Issued, DEV_IP));
    let on_disk = std::fs::read_to_string(dirs.path("state/inventory/nodes.json")).unwrap();
    assert!(on_disk.contains("sid-0"), "recorded before it was served");
    assert!(
        !on_disk.contains("wrap-token-0"),
        "the wrapping token is never stored"
    );

    let (status, again) = node.call(DEV_IP, "GET", &user_data, "");
    assert_eq!(status, 409, "{again}");
    assert!(again.contains("kindling node reprovision"), "{again}");
    assert_eq!(node.vault.minted(), 1, "nothing minted");
    assert_eq!(node.stats.get("http_refused_grant_reused"), 1);
    let alerts = node.inventory.node(&DEV).unwrap().seen.alerts;
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].kind, AlertKind::GrantReused);
    assert!(alerts[0].detail.contains("127.0.0.2"), "{alerts:?}");
    // Documents without a grant are still served.
    assert_eq!(
        node.call(DEV_IP, "GET", &format!("/nocloud/{DEV}/meta-data"), "")
            .0,
        200
    );

    // The PXE service restarts: the grant is remembered.
    let restarted = serve(&dirs, node.vault.clone(), 0);
    assert_eq!(restarted.call(DEV_IP, "GET", &user_data, "").0, 409);
    assert_eq!(restarted.vault.minted(), 1);

    // The operator re-arms: the next fetch mints a fresh grant, the old
    // unredeemed secret-id is destroyed, the alert is gone.
    ReprovisionStore::in_state_dir(&dirs.path("state"))
        .request(DEV, 1)
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let (status, fresh) = restarted.call(DEV_IP, "GET", &user_data, "");
    assert_eq!(status, 200, "{fresh}");
    assert!(fresh.contains("wrap-token-1"), "{fresh}");
    assert_eq!(restarted.vault.minted(), 2);
    assert_eq!(*restarted.vault.withdrawn.lock().unwrap(), ["sid-0"]);
    let record = restarted.inventory.node(&DEV).unwrap().seen;
    assert!(record.alerts.is_empty());
    assert_eq!(record.rearmed, 1);
    assert_eq!(restarted.call(DEV_IP, "GET", &user_data, "").0, 409);
}

#[test]
fn an_installed_node_is_sent_to_its_disk_until_the_operator_reprovisions_it() {
    let dirs = Dirs::new();
    let node = serve(&dirs, Arc::default(), 0);
    let script = format!("/boot/{DEV}.ipxe");
    let (status, first) = node.call(DEV_IP, "GET", &script, "");
    assert_eq!(status, 200, "{first}");
    assert!(first.contains("\nkernel "), "{first}");
    for event in ["booted", "nocloud", "installed"] {
        assert_eq!(node.event(DEV_IP, DEV, event).0, 200, "{event}");
    }

    let (status, disk) = node.call(DEV_IP, "GET", &script, "");
    assert_eq!(status, 200, "{disk}");
    assert!(
        disk.ends_with("\nexit\n") && !disk.contains("kernel "),
        "{disk}"
    );
    assert!(disk.contains(&format!("kindling node reprovision {DEV}")));
    assert_eq!(node.stats.get("http_scripts_local_disk"), 1);
    assert_eq!(
        node.inventory.node(&DEV).unwrap().state,
        NodeState::Installed,
        "booting its disk is not a new provisioning cycle"
    );

    ReprovisionStore::in_state_dir(&dirs.path("state"))
        .request(DEV, 1)
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let (status, again) = node.call(DEV_IP, "GET", &script, "");
    assert_eq!(status, 200, "{again}");
    assert!(again.contains("\nkernel "), "re-armed: {again}");
    let record = node.inventory.node(&DEV).unwrap();
    assert_eq!(record.state, NodeState::Booting);
    assert!(
        record.seen.events.iter().any(|e| e.event == "reprovision"),
        "{:?}",
        record.seen.events
    );
    assert_eq!(node.stats.get("http_scripts_local_disk"), 1);
}

#[test]
fn events_only_as_valid_transitions_and_a_refusal_changes_nothing() {
    let dirs = Dirs::new();
    let node = serve(&dirs, Arc::default(), 0);
    let before = node.record(DEV);
    let (status, reply) = node.event(DEV_IP, DEV, "installed");
    assert_eq!(status, 409, "{reply}");
    assert!(reply.contains("while the node is discovered"), "{reply}");
    assert_eq!(node.record(DEV), before, "a refused event changes nothing");

    for (event, status, state) in [
        ("booted", 200, NodeState::Booting),
        ("joined", 409, NodeState::Booting),
        ("nocloud", 200, NodeState::Booting),
        ("installed", 200, NodeState::Installed),
        ("booted", 409, NodeState::Installed),
        ("installed", 200, NodeState::Installed),
        // A claim: the appliance's catalog decides, and it has none here.
        ("joined", 200, NodeState::Installed),
        ("failed", 200, NodeState::Installed),
    ] {
        let (got, reply) = node.event(DEV_IP, DEV, event);
        assert_eq!(got, status, "{event}: {reply}");
        assert_eq!(
            node.inventory.node(&DEV).unwrap().state,
            state,
            "after {event}"
        );
        if event == "joined" && status == 200 {
            assert!(
                reply.contains(r#""state":"installed""#)
                    && reply.contains("it says joined")
                    && reply.contains("cannot be checked"),
                "the node hears it is not joined, and why: {reply}"
            );
        }
    }
    let failure = node.inventory.node(&DEV).unwrap().seen.failure.unwrap();
    assert_eq!(failure.kind, kindling_inventory::FailureKind::AgentFailed);
    assert_eq!(node.event(DEV_IP, DEV, "exploded").0, 400);
    assert_eq!(node.stats.get("http_refused_event_transition"), 3);
    let events: Vec<String> = node
        .inventory
        .node(&DEV)
        .unwrap()
        .seen
        .events
        .iter()
        .map(|e| e.event.clone())
        .collect();
    assert_eq!(
        events,
        [
            "booted",
            "nocloud",
            "installed",
            "installed",
            "joined",
            "failed"
        ]
    );
}

#[test]
fn unknown_macs_get_user_data_without_a_grant_unless_their_profile_allows_some() {
    let dirs = Dirs::new();
    let closed = serve(&dirs, Arc::default(), 0);
    let (status, ud) = closed.call(A_IP, "GET", &format!("/nocloud/{STRANGER_A}/user-data"), "");
    assert_eq!(status, 200, "{ud}");
    assert!(!ud.contains("enrollment.json"), "{ud}");
    assert_eq!(closed.vault.minted(), 0);

    let dirs = Dirs::new();
    let open = serve(&dirs, Arc::default(), 1);
    let (status, ud) = open.call(A_IP, "GET", &format!("/nocloud/{STRANGER_A}/user-data"), "");
    assert_eq!(status, 200);
    assert!(ud.contains("enrollment.json"), "within the allowance: {ud}");
    let (status, ud) = open.call(B_IP, "GET", &format!("/nocloud/{STRANGER_B}/user-data"), "");
    assert_eq!(status, 200);
    assert!(!ud.contains("enrollment.json"), "over the allowance: {ud}");
    assert_eq!(open.vault.minted(), 1);
    assert_eq!(open.stats.get("grants_skipped_unknown_mac"), 1);
    // A node the site names is not counted against the allowance.
    assert!(open
        .call(DEV_IP, "GET", &format!("/nocloud/{DEV}/user-data"), "")
        .1
        .contains("enrollment.json"));
}

#[test]
fn a_grant_unwrapped_by_someone_else_or_never_redeemed_is_reported_and_withdrawn() {
    let dirs = Dirs::new();
    let node = serve(&dirs, Arc::default(), 0);
    assert_eq!(
        node.call(DEV_IP, "GET", &format!("/nocloud/{DEV}/user-data"), "")
            .0,
        200
    );
    assert_eq!(
        node.call(PROD_IP, "GET", &format!("/nocloud/{PROD}/user-data"), "")
            .0,
        200
    );
    node.event(DEV_IP, DEV, "booted");

    // Someone unwrapped dev's grant; the node's own unwrap fails and it says so.
    node.vault.unwrapped.store(true, Ordering::SeqCst);
    let (status, reply) = node.event(DEV_IP, DEV, "grant-unwrap-failed");
    assert_eq!(status, 200, "{reply}");
    let dev = node.inventory.node(&DEV).unwrap().seen;
    let grant = dev.grant.unwrap();
    assert_eq!(grant.state, GrantState::UsedElsewhere, "{grant:?}");
    assert!(grant.reason.unwrap().contains("someone else unwrapped it"));
    assert_eq!(dev.alerts[0].kind, AlertKind::GrantUsedElsewhere);
    assert_eq!(*node.vault.withdrawn.lock().unwrap(), ["sid-0"]);

    // Prod's grant is never redeemed: once its life is over it is expired.
    node.vault.unwrapped.store(false, Ordering::SeqCst);
    let expires = node
        .inventory
        .node(&PROD)
        .unwrap()
        .seen
        .grant
        .unwrap()
        .expires_at;
    node.grants.sweep(expires - 1);
    assert_eq!(
        node.inventory
            .node(&PROD)
            .unwrap()
            .seen
            .grant
            .unwrap()
            .state,
        GrantState::Issued
    );
    node.grants.sweep(expires);
    let prod = node.inventory.node(&PROD).unwrap().seen;
    assert_eq!(prod.grant.unwrap().state, GrantState::Expired);
    assert_eq!(prod.alerts[0].kind, AlertKind::GrantExpired);
    assert_eq!(*node.vault.withdrawn.lock().unwrap(), ["sid-0", "sid-1"]);
    assert_eq!(node.stats.get("grants_used_elsewhere"), 1);
    assert_eq!(node.stats.get("grants_expired"), 1);
}

#[test]
fn a_grant_that_cannot_be_recorded_is_withdrawn_and_not_served() {
    let dirs = Dirs::new();
    let node = serve(&dirs, Arc::default(), 0);
    // nodes.json cannot be replaced: a non-empty directory stands in its way.
    let nodes_json = dirs.path("state/inventory/nodes.json");
    let _ = std::fs::remove_file(&nodes_json);
    std::fs::create_dir_all(nodes_json.join("blocker")).unwrap();
    let user_data = format!("/nocloud/{DEV}/user-data");
    let (status, reply) = node.call(DEV_IP, "GET", &user_data, "");
    assert_eq!(status, 503, "{reply}");
    assert!(reply.contains("could not be recorded"), "{reply}");
    assert!(!reply.contains("wrap-token"), "{reply}");
    assert_eq!(*node.vault.withdrawn.lock().unwrap(), ["sid-0"]);
    assert!(node.inventory.node(&DEV).unwrap().seen.grant.is_none());

    std::fs::remove_dir_all(&nodes_json).unwrap();
    let (status, reply) = node.call(DEV_IP, "GET", &user_data, "");
    assert_eq!(status, 200, "the node is not locked out: {reply}");
    assert!(reply.contains("wrap-token-1"), "{reply}");
}

/// The node agent by hash, as `/begin.sh` uses it on a node: named in the
/// user-data by the sha256 the service took at start, fetched with
/// Range/HEAD like any served file, run only when the bytes match. A
/// shell script stands in for `kindling-node` (what matters here is what
/// is served and run; the agent's own steps are `node/agent`'s tests).
#[test]
fn begin_sh_runs_the_agent_only_when_its_bytes_hash_to_the_served_sha256() {
    use sha2::{Digest, Sha256};
    let dirs = Dirs::new();
    let agent = dirs.path("node/kindling-node");
    std::fs::create_dir_all(agent.parent().unwrap()).unwrap();
    let script = b"#!/bin/sh\necho \"$@\" > \"$2/agent-ran\"\n";
    std::fs::write(&agent, script).unwrap();
    let digest = format!("{:x}", Sha256::digest(script));
    let node = serve(&dirs, Arc::new(RecordingVault::default()), 0);
    let url = format!("http://{}/", node.addr);

    let (status, user_data) = node.call(DEV_IP, "GET", &format!("/nocloud/{DEV}/user-data"), "");
    assert_eq!(status, 200, "{user_data}");
    assert!(
        user_data.contains(&format!("--agent-sha256 '{digest}'")),
        "{user_data}"
    );

    let by_hash = format!("/by-hash/sha256/{digest}");
    assert_eq!(node.call(HOSTILE, "GET", &by_hash, "").1.as_bytes(), script);
    assert_eq!(node.call(HOSTILE, "HEAD", &by_hash, "").0, 200);
    let range = std::process::Command::new("curl")
        .args(["-fsS", "-r", "0-3"])
        .arg(format!("{url}by-hash/sha256/{digest}"))
        .output()
        .unwrap();
    assert_eq!(range.stdout, b"#!/b", "a Range answers that range");
    let (status, _) = node.call(
        HOSTILE,
        "GET",
        &format!("/by-hash/sha256/{}", "0".repeat(64)),
        "",
    );
    assert_eq!(status, 404, "only the agent's hash names a file");

    let (_, begin) = node.call(HOSTILE, "GET", "/begin.sh", "");
    let work = tempfile::tempdir().unwrap();
    let begin_sh = work.path().join("begin.sh");
    std::fs::write(&begin_sh, begin).unwrap();
    let run = |root: &std::path::Path| {
        std::process::Command::new("sh")
            .arg(&begin_sh)
            .args(["--url", &url, "--mac", &DEV.to_string(), "--profile", "dev"])
            .args([
                "--tags",
                "env=development",
                "--agent-sha256",
                &digest,
                "--root",
            ])
            .arg(root)
            .output()
            .unwrap()
    };
    let good = work.path().join("good");
    let out = run(&good);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ran = std::fs::read_to_string(good.join("agent-ran")).unwrap();
    assert_eq!(ran.trim(), format!("--root {}", good.display()));
    let installed = good.join("usr/local/sbin/kindling-node");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        installed.metadata().unwrap().permissions().mode() & 0o777,
        0o755
    );

    // The file changed after the service hashed it (a swapped agent):
    // the node refuses to run it.
    std::fs::write(&agent, b"#!/bin/sh\ntouch \"$2/agent-ran\"\n# swapped\n").unwrap();
    let bad = work.path().join("bad");
    let out = run(&bad);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("not {digest}: refused")),
        "{stderr}"
    );
    assert!(!bad.join("agent-ran").exists() && !bad.join("usr/local/sbin/kindling-node").exists());
    assert!(!bad.join("usr/local/sbin/kindling-node.part").exists());

    // An agent that fails (it reports its step itself): the site's own
    // bootstrap still runs, and the script fails without claiming joined.
    let failing = b"#!/bin/sh
exit 1
";
    std::fs::write(&agent, failing).unwrap();
    let node = serve(&dirs, Arc::new(RecordingVault::default()), 0);
    let url = format!("http://{}/", node.addr);
    let digest = format!("{:x}", Sha256::digest(failing));
    let root = work.path().join("failing");
    let out = std::process::Command::new("sh")
        .arg(&begin_sh)
        .args(["--url", &url, "--mac", &DEV.to_string(), "--profile", "dev"])
        .args(["--tags", "", "--agent-sha256", &digest, "--root"])
        .arg(&root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        root.join("opt/kindling-repo").is_dir(),
        "the repository step ran"
    );
}

/// The `content` of user-data's `/etc/kindling/node.json` entry: a YAML
/// double-quoted scalar, written with JSON's string syntax.
fn node_json_of(user_data: &str) -> String {
    let mut lines = user_data.lines();
    lines
        .find(|l| l.trim() == r#"- path: "/etc/kindling/node.json""#)
        .unwrap_or_else(|| panic!("no node.json in {user_data}"));
    let content = lines
        .take(2)
        .find_map(|l| l.trim().strip_prefix("content: "))
        .unwrap_or_else(|| panic!("node.json has no content in {user_data}"));
    serde_json::from_str(content).unwrap()
}

/// node.json as the node agent reads it: its own strict type (unknown or
/// missing keys are errors), so renderer and agent share one contract.
fn as_the_agent_reads(node_json: &str) -> kindling_node::inputs::NodeFile {
    serde_json::from_str(node_json).unwrap_or_else(|e| panic!("{e}: {node_json}"))
}

/// Bytes no text reading would pass through unharmed, larger than one read.
fn a_binary(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A node with a grant is told the stack it joins and the client binaries
/// to install, by URL and sha256, in a node.json the agent's own type
/// reads; the binary is served by that hash (Range and HEAD like any served
/// file) to whoever asks. Nothing else is served under /by-hash: an
/// unknown hash, a file on disk that is not in the table, a client the
/// site does not run and traversal are 404 (400 for an encoded `/`).
#[test]
fn a_node_with_a_grant_joins_the_stack_and_fetches_its_clients_by_hash() {
    use sha2::{Digest, Sha256};
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.path("node")).unwrap();
    std::fs::write(dirs.path("node/kindling-node"), b"#!/bin/sh\n").unwrap();
    let consul = a_binary(3 * 1024 * 1024 + 17);
    std::fs::write(dirs.path("node/consul"), &consul).unwrap();
    let consul_sha = format!("{:x}", Sha256::digest(&consul));
    // A file the service can read but does not hand out.
    let artifact = b"an artifact, served by its path only";
    std::fs::write(dirs.path("artifacts/other.bin"), artifact).unwrap();
    // Consul and Nomad run; the image has no Nomad: not offered.
    let mut site = lab_site();
    site.stack.consul.enabled = true;
    site.stack.nomad.enabled = true;
    for profile in site.profiles.values_mut() {
        profile.enrollment.unknown_macs = 0;
    }
    let node = serve_site(&dirs, Arc::new(RecordingVault::default()), &site);

    // DEV's profile allows its grant: stack and binaries.
    let node_json = node.node_json(DEV_IP, DEV);
    let file = as_the_agent_reads(&node_json);
    assert_eq!(file.mac, DEV.to_string());
    let stack = file.stack.expect("a node with a grant is told the stack");
    assert_eq!(stack.datacenter, "lab");
    assert_eq!(stack.consul_join, ["192.168.100.1:8301"]);
    assert_eq!(stack.nomad_servers, ["192.168.100.1:4647"]);
    assert_eq!(
        file.binaries.keys().collect::<Vec<_>>(),
        ["consul"],
        "no Nomad binary in the image: not offered ({node_json})"
    );
    let offered = &file.binaries["consul"];
    assert_eq!(offered.sha256, consul_sha);
    let path = format!("/by-hash/sha256/{consul_sha}");
    assert_eq!(offered.url, format!("http://192.168.100.1{path}"));

    // Served by its hash, to anyone (it holds no secret), byte for byte.
    let get = |head: &str| node.fetch(HOSTILE, head);
    let (status, head, body) = get(&format!("GET {path} HTTP/1.0\r\n"));
    assert_eq!(status, 200, "{head}");
    assert!(body == consul, "the bytes served are the file's");
    assert_eq!(format!("{:x}", Sha256::digest(&body)), offered.sha256);
    let (status, head, body) = get(&format!("HEAD {path} HTTP/1.0\r\n"));
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}", consul.len())),
        "{head}"
    );
    assert!(body.is_empty());
    let (status, head, body) = get(&format!(
        "GET {path} HTTP/1.0\r\nRange: bytes=1000-1999\r\n"
    ));
    assert_eq!(status, 206, "{head}");
    assert_eq!(body, consul[1000..2000]);
    assert!(
        head.contains(&format!("Content-Range: bytes 1000-1999/{}", consul.len())),
        "{head}"
    );
    assert!(node.stats.get("http_node_consul") >= 3);

    // Nothing else under /by-hash.
    let unknown = [
        format!("/by-hash/sha256/{}", "0".repeat(64)),
        format!("/by-hash/sha256/{:x}", Sha256::digest(artifact)),
        format!("/by-hash/sha256/{:x}", Sha256::digest(b"nomad")),
        format!("/by-hash/sha256/{}", consul_sha.to_uppercase()),
        format!("/by-hash/sha1/{consul_sha}"),
        format!("/by-hash/sha256/{consul_sha}/x"),
        "/by-hash/sha256/../../node/consul".to_string(),
        "/by-hash/sha256/../../../../etc/passwd".to_string(),
        "/by-hash/consul".to_string(),
        "/by-hash/".to_string(),
    ];
    for path in &unknown {
        let (status, head, body) = get(&format!("GET {path} HTTP/1.0\r\n"));
        assert_eq!(status, 404, "{path}: {head}");
        assert!(body.len() < 200, "{path}: nothing served");
    }
    let (status, _, _) = get("GET /by-hash/sha256/..%2f..%2fnode%2fconsul HTTP/1.0\r\n");
    assert_eq!(status, 400, "an encoded / is refused before any lookup");

    // A node without a grant (an unknown MAC, the lab allows none) is told
    // neither the stack nor the binaries, nor to run the agent.
    let (_, user_data) = node.call(A_IP, "GET", &format!("/nocloud/{STRANGER_A}/user-data"), "");
    assert!(!user_data.contains("--agent-sha256"), "{user_data}");
    let file = as_the_agent_reads(&node_json_of(&user_data));
    assert!(
        file.stack.is_none() && file.binaries.is_empty(),
        "{user_data}"
    );
    assert_eq!(node.vault.minted(), 1, "DEV's grant only");
}

/// A site without a stack: nodes with a grant are told no stack and no
/// binaries (there is nothing to join), and the Consul binary the image
/// carries is not served.
#[test]
fn without_a_stack_nodes_are_told_none_and_no_client_is_served() {
    use sha2::{Digest, Sha256};
    let dirs = Dirs::new();
    std::fs::create_dir_all(dirs.path("node")).unwrap();
    std::fs::write(dirs.path("node/kindling-node"), b"#!/bin/sh\n").unwrap();
    let consul = a_binary(4096);
    std::fs::write(dirs.path("node/consul"), &consul).unwrap();
    let mut site = lab_site();
    site.stack.consul.enabled = false;
    let node = serve_site(&dirs, Arc::new(RecordingVault::default()), &site);

    let (status, user_data) = node.call(DEV_IP, "GET", &format!("/nocloud/{DEV}/user-data"), "");
    assert_eq!(status, 200, "{user_data}");
    assert!(user_data.contains("--agent-sha256"), "a grant: {user_data}");
    let file = as_the_agent_reads(&node_json_of(&user_data));
    assert!(
        file.stack.is_none() && file.binaries.is_empty(),
        "{user_data}"
    );
    let path = format!("/by-hash/sha256/{:x}", Sha256::digest(&consul));
    let (status, _, _) = node.fetch(HOSTILE, &format!("GET {path} HTTP/1.0\r\n"));
    assert_eq!(status, 404);
}
