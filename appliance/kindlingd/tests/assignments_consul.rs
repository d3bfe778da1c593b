//! `kindlingd api`'s two Consul jobs against the real Consul 1.8.7 (ACLs
//! on, default deny, as the stack renders it), with the PXE service's
//! inventory opened in this process on the same data dir, the way
//! `kindlingd pxe` reads it. One Consul per scenario.
//!
//! Runtime MAC → profile assignments, in order: assign through the API → in
//! KV; `consul kv put` → the inventory follows within seconds; bad KV
//! entries refused, reported, last good kept; Consul down → assignments
//! kept locally, pushed once it is back.
//!
//! The catalog check: a node that says `joined` stays `installed` with the
//! reason until its own Consul token registers it with its profile's node
//! meta; wrong meta is named; deregistered it is `left`; a re-arm's token
//! replacement makes the old token fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{call, client, issue_api_certificate, lab_tokens};

use kindling_inventory::{Inventory, MacAddr, ProfileChoice};
use kindling_pxe::{PxePaths, PxeSettings};
use kindling_site::SiteConfig;
use kindling_stack::consul::ConsulApi;
use kindling_stack::{StackLayout, StackPorts};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const KINDLINGD: &str = env!("CARGO_BIN_EXE_kindlingd");

/// Where `tests/install-deps` puts consul; `None` (skip) if absent.
fn tools() -> Option<PathBuf> {
    let dir = std::env::var_os("KINDLING_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/tools"));
    if dir.join("consul").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPING: real consul not found in {} (run tests/install-deps)",
            dir.display()
        );
        None
    }
}

/// A port free for TCP and UDP on 127.0.0.1 and 127.0.0.2, below Linux's
/// ephemeral range, so it is still free when Consul restarts on it.
fn free_port(seed: &mut u64) -> u16 {
    loop {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let port = 20000 + ((*seed >> 33) % 12000) as u16;
        let free = ["127.0.0.1", "127.0.0.2"].iter().all(|ip| {
            std::net::TcpListener::bind((*ip, port)).is_ok()
                && std::net::UdpSocket::bind((*ip, port)).is_ok()
        });
        if free {
            return port;
        }
    }
}

/// The lab-stack overlay's site, with the LAN on a loopback alias so this
/// host's Consul can bind it.
fn site() -> SiteConfig {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlays/lab-stack");
    let mut site = kindling_site::SiteTree::read_dir(&dir)
        .unwrap()
        .to_config("lab")
        .unwrap()
        .config;
    site.network.lan.address = "127.0.0.2/8".parse().unwrap();
    site.pxe.range.start = "127.0.0.100".parse().unwrap();
    site.pxe.range.end = "127.0.0.200".parse().unwrap();
    for node in &mut site.nodes {
        node.ip = None;
    }
    site
}

/// A child killed (SIGKILL) and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Lab {
    dir: tempfile::TempDir,
    tools: PathBuf,
    layout: StackLayout,
    consul_spec: kindling_stack::ServiceEntry,
    consul: Option<Proc>,
    management: String,
}

impl Lab {
    fn run_dir(&self) -> PathBuf {
        self.dir.path().join("run/kindling")
    }

    fn start_consul(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("consul.log"))
            .unwrap();
        let spec = &self.consul_spec;
        let child = Command::new(&spec.argv[0])
            .args(&spec.argv[1..])
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.consul = Some(Proc(child));
        let url = self.layout.consul_local_url();
        kindling_stack::api::block_on(async move {
            ConsulApi::new(&url, None)
                .wait_for_leader(Duration::from_secs(30))
                .await
        })
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}\n{}", self.consul_log()));
    }

    fn consul_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("consul.log")).unwrap_or_default()
    }

    /// The real `consul` CLI, as an operator with the management token.
    fn consul_cli(&self, args: &[&str]) -> (bool, String) {
        self.consul_cli_as(&self.management, args)
    }

    fn consul_cli_as(&self, token: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(self.tools.join("consul"))
            .args(args)
            .env("CONSUL_HTTP_ADDR", self.layout.consul_local_url())
            .env("CONSUL_HTTP_TOKEN", token)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text.trim().to_string())
    }

    fn kv_get(&self, mac: &str) -> Option<String> {
        let (ok, out) = self.consul_cli(&["kv", "get", &format!("kindling/assignments/{mac}")]);
        ok.then_some(out)
    }
}

/// Polls `check` every 50 ms for up to `limit`; the time it took.
fn within(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    start.elapsed()
}

fn mac(text: &str) -> MacAddr {
    text.parse().unwrap()
}

fn assigned(p: &str) -> ProfileChoice {
    ProfileChoice::Assigned(p.into())
}

/// A data dir with Consul running as the stack renders it (ACLs on),
/// bootstrapped the way the stack bootstrap does it for the API: the
/// management token, and the API's least-privilege token with its copy on
/// the data partition. The API's token, and how long Consul took.
fn lab_with_consul(prefix: &str) -> Option<(Lab, String, Duration)> {
    let tools = tools()?;
    let started = Instant::now();
    let site = site();
    let dir = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(tools.join("consul"), bin.join("consul")).unwrap();
    let mut seed = u64::from(std::process::id())
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64;
    let mut port = || free_port(&mut seed);
    let layout = StackLayout {
        config_dir: root.join("run/kindling/stack"),
        data_dir: root.join("data"),
        status_file: root.join("run/kindling/status/stack.json"),
        bin_dir: bin,
        kindlingd: KINDLINGD.into(),
        loopback: std::net::Ipv4Addr::LOCALHOST,
        ports: StackPorts {
            consul_http: port(),
            consul_https: port(),
            consul_dns: port(),
            consul_server: port(),
            consul_serf_lan: port(),
            consul_serf_wan: port(),
            ..StackPorts::default()
        },
    };
    let rendered = kindling_stack::render(&site, &layout).unwrap();
    let consul_spec = rendered
        .services
        .into_iter()
        .find(|s| s.name == "consul")
        .unwrap();
    let mut lab = Lab {
        dir,
        tools,
        layout,
        consul_spec,
        consul: None,
        management: String::new(),
    };
    lab.start_consul();

    // What the stack bootstrap does for this: ACLs, the least-privilege
    // token, its copy on the data partition.
    let url = lab.layout.consul_local_url();
    let (management, sync_token) = kindling_stack::api::block_on(async move {
        let anonymous = ConsulApi::new(&url, None);
        let mgmt = anonymous.acl_bootstrap(Duration::from_secs(30)).await?;
        let consul = anonymous.with_token(&mgmt.secret_id);
        let sync = kindling_stack::assignments::create_token(&consul).await?;
        Ok::<_, kindling_stack::consul::ConsulError>((mgmt.secret_id, sync.secret_id))
    })
    .unwrap()
    .unwrap();
    lab.management = management;
    kindling_stack::secrets::SecretStore::new(&lab.layout.state_dir())
        .write_consul_assignments_token(&sync_token)
        .unwrap();
    Some((lab, sync_token, started.elapsed()))
}

impl Lab {
    /// site.json for the API, and `kindlingd api` itself on a free port
    /// (with its assignment sync and catalog check); its address.
    fn start_api(&self) -> (Proc, String) {
        let root = self.dir.path();
        std::fs::create_dir_all(self.run_dir()).unwrap();
        std::fs::write(
            self.run_dir().join("site.json"),
            serde_json::to_vec(&site()).unwrap(),
        )
        .unwrap();
        issue_api_certificate(&self.layout.data_dir, &self.run_dir());
        let api_port = common::free_port();
        let api_log_file = std::fs::File::create(root.join("api.log")).unwrap();
        let api = Proc(
            Command::new(KINDLINGD)
                .args(["api", "--listen", &format!("127.0.0.1:{api_port}")])
                .env("KINDLING_RUN_DIR", self.run_dir())
                .env("KINDLING_STATE_DIR", &self.layout.data_dir)
                .env("KINDLING_SITE_JSON", self.run_dir().join("site.json"))
                .env("KINDLING_CONSUL_URL", self.layout.consul_local_url())
                .stdout(api_log_file.try_clone().unwrap())
                .stderr(api_log_file)
                .spawn()
                .unwrap(),
        );
        within(Duration::from_secs(10), "the API listens", || {
            std::net::TcpStream::connect(("127.0.0.1", api_port)).is_ok()
        });
        (api, format!("127.0.0.1:{api_port}"))
    }

    fn api_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("api.log")).unwrap_or_default()
    }

    /// The PXE service's view of the same data partition.
    fn pxe_settings(&self) -> PxeSettings {
        PxeSettings::from_site(
            &site(),
            PxePaths {
                state_dir: self.layout.data_dir.clone(),
                ..PxePaths::default()
            },
        )
        .unwrap()
    }
}

#[test]
fn assignments_follow_consul_kv_both_ways_and_survive_consul_outages() {
    let started = Instant::now();
    let Some((lab, sync_token, after_consul)) = lab_with_consul("kd-kv-") else {
        return;
    };
    let mut lab = lab;
    let root = lab.dir.path().to_path_buf();

    // The token writes assignments and nothing else.
    let (ok, out) = lab.consul_cli_as(&sync_token, &["kv", "put", "kindling/profiles/x", "y"]);
    assert!(!ok && out.contains("403"), "{out}");

    let (api, addr) = lab.start_api();
    let admin = client(&addr, &lab.run_dir(), Some(lab_tokens().admin));
    let api_log = || std::fs::read_to_string(root.join("api.log")).unwrap_or_default();
    let put = |m: &str, body: &str| {
        call(
            &admin,
            "PUT",
            &format!("/v1/nodes/{m}/profile"),
            Some(body.as_bytes()),
        )
    };

    // The PXE service's view of the same data partition.
    let settings = lab.pxe_settings();
    let (inventory, _) = Inventory::open(&settings.paths.state_dir, settings.profile_policy());

    // 1. Assigned through the API while Consul is up: in KV and in force.
    let (status, body) = put("52:54:00:6b:00:99", r#"{"profile":"prod"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["assignment"]["stored"], "kv", "{body}\n{}", api_log());
    assert_eq!(lab.kv_get("52:54:00:6b:00:99").as_deref(), Some("prod"));
    assert_eq!(
        inventory.profile_for(&mac("52:54:00:6b:00:99")),
        assigned("prod")
    );

    // Node tags live in the same file, local to the appliance: every sync
    // round below (merges, the outage, the re-push) must keep them.
    let (status, body) = call(
        &admin,
        "POST",
        "/v1/nodes/52:54:00:6b:00:20/tags",
        Some(br#"{"set": {"rack": "r12"}}"#),
    );
    assert_eq!(status, 200, "{body}");
    let rack: kindling_site::NodeTags = [("rack".to_string(), "r12".to_string())].into();

    // 2. An operator's `consul kv put` reaches the PXE inventory in seconds.
    let dev_node = mac("52:54:00:6b:00:10");
    assert_eq!(
        inventory.profile_for(&dev_node),
        ProfileChoice::Site("dev".into())
    );
    let (ok, out) = lab.consul_cli(&[
        "kv",
        "put",
        "kindling/assignments/52:54:00:6b:00:10",
        "prod",
    ]);
    assert!(ok, "{out}");
    let took = within(
        Duration::from_secs(5),
        "kv put reaches the inventory",
        || inventory.profile_for(&dev_node) == assigned("prod"),
    );
    eprintln!("consul kv put → PXE inventory: {took:?}");
    let (_, nodes) = call(&admin, "GET", "/v1/nodes", None);
    let row = |m: &str| {
        nodes["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["mac"] == m)
            .cloned()
            .unwrap_or_else(|| panic!("{m} missing: {nodes}"))
    };
    assert_eq!(
        row("52:54:00:6b:00:10")["assignment"],
        serde_json::json!({"source": "assigned", "profile": "prod", "stored": "kv"})
    );
    assert_eq!(row("52:54:00:6b:00:20")["assignment"]["source"], "site");
    // The operator's CLI says where each profile comes from (when built
    // beside kindlingd, as `cargo test --workspace` does).
    let cli = Path::new(KINDLINGD).with_file_name("kindling");
    if cli.exists() {
        let out = Command::new(&cli)
            .args(["node", "list", "--appliance", &addr])
            .env("KINDLING_CONFIG", root.join("no-cli-config.toml"))
            .env("KINDLING_SERVER_NAME", common::SERVER_NAME)
            .env("KINDLING_CA_FILE", lab.run_dir().join("api-tls/ca.pem"))
            .env("KINDLING_TOKEN", lab_tokens().read.expose())
            .output()
            .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        let line = |m: &str| {
            table
                .lines()
                .find(|l| l.starts_with(m))
                .unwrap_or_else(|| panic!("{m} missing:\n{table}"))
                .to_string()
        };
        assert!(
            line("52:54:00:6b:00:10").contains("assignment (kv)"),
            "{table}"
        );
        assert!(line("52:54:00:6b:00:20").contains("overlay"), "{table}");
    } else {
        eprintln!("SKIP (CLI part): the kindling CLI is not built beside kindlingd");
    }

    // 3. Bad KV entries: refused with a reason, reported, last good kept.
    for (key, value) in [
        ("kindling/assignments/52:54:00:6b:00:10", "gpu"),
        ("kindling/assignments/not-a-mac", "dev"),
    ] {
        let (ok, out) = lab.consul_cli(&["kv", "put", key, value]);
        assert!(ok, "{out}");
    }
    within(Duration::from_secs(5), "refusals reported", || {
        let p = inventory.assignment_problems().join("\n");
        p.contains("52:54:00:6b:00:10 = \"gpu\" refused: profile \"gpu\" is not defined")
            && p.contains("kindling/assignments/not-a-mac refused: invalid MAC address")
    });
    assert_eq!(
        inventory.profile_for(&dev_node),
        assigned("prod"),
        "last good kept"
    );
    assert!(
        api_log().contains("refused"),
        "refusals are logged:\n{}",
        api_log()
    );
    // Fixed by the operator: taken, the problems clear.
    lab.consul_cli(&["kv", "delete", "kindling/assignments/not-a-mac"]);
    lab.consul_cli(&["kv", "delete", "kindling/assignments/52:54:00:6b:00:10"]);
    within(Duration::from_secs(5), "a KV delete unassigns", || {
        inventory.profile_for(&dev_node) == ProfileChoice::Site("dev".into())
            && inventory.assignment_problems().is_empty()
    });

    // 4. Consul down: assignments and unassignments are kept locally and in
    //    force at once; pushed once Consul is back.
    let outage = Instant::now();
    lab.consul = None;
    let (status, body) = put("52:54:00:6b:00:77", r#"{"profile":"dev"}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["assignment"]["stored"], "local", "{body}");
    assert!(
        body["kv"]
            .as_str()
            .unwrap_or("")
            .contains("pushed to Consul KV when it can be"),
        "{body}"
    );
    let (status, body) = put("52:54:00:6b:00:99", r#"{"profile":null}"#);
    assert_eq!(
        (status, body["previous"].as_str()),
        (200, Some("prod")),
        "{body}"
    );
    // The PXE service re-reads the file within 0.5 s.
    within(Duration::from_secs(2), "local changes in force", || {
        inventory.profile_for(&mac("52:54:00:6b:00:77")) == assigned("dev")
            && inventory.profile_for(&mac("52:54:00:6b:00:99"))
                == ProfileChoice::Default("dev".into())
    });
    within(Duration::from_secs(3), "held-back changes reported", || {
        inventory
            .assignment_problems()
            .iter()
            .any(|p| p.contains("2 assignment change(s) kept locally"))
    });
    lab.start_consul();
    let took = within(
        Duration::from_secs(20),
        "pushed once Consul is back",
        || {
            lab.kv_get("52:54:00:6b:00:77").as_deref() == Some("dev")
                && lab.kv_get("52:54:00:6b:00:99").is_none()
        },
    );
    eprintln!("Consul back → local changes in KV: {took:?}");
    within(Duration::from_secs(5), "problems clear", || {
        inventory.assignment_problems().is_empty()
    });
    let (_, nodes) = call(&admin, "GET", "/v1/nodes", None);
    let stored: Vec<_> = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["mac"] == "52:54:00:6b:00:77")
        .map(|n| n["assignment"]["stored"].clone())
        .collect();
    assert_eq!(stored, vec![serde_json::json!("kv")], "{nodes}");
    let tagged = nodes["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["mac"] == "52:54:00:6b:00:20")
        .map(|n| n["tags"].clone());
    assert_eq!(tagged, Some(serde_json::json!({"rack": "r12"})), "{nodes}");
    assert_eq!(inventory.tags(&mac("52:54:00:6b:00:20")), rack);
    eprintln!(
        "outage part {:?}; whole scenario {:?} (Consul + ACLs {after_consul:?})",
        outage.elapsed(),
        started.elapsed()
    );
    if std::env::var_os("KD_SHOW_API_LOG").is_some() {
        eprintln!("{}", api_log());
    }
    drop(api);
}

/// A site node's Consul token, made as the bootstrap's `enrollment` step
/// makes it (node identity = its hostname; policy `node-<profile>`).
fn node_token(lab: &Lab, mac: MacAddr) -> kindling_stack::consul::AclToken {
    let site = site();
    let node = site.nodes.iter().find(|n| n.mac == mac).cloned().unwrap();
    let consul = ConsulApi::new(&lab.layout.consul_local_url(), Some(lab.management.clone()));
    kindling_stack::api::block_on(async move {
        let profile = node.profile.to_string();
        consul
            .upsert_policy(
                &format!("node-{profile}"),
                &kindling_stack::bootstrap::policies::consul_node_rules(&profile),
                "test",
            )
            .await?;
        kindling_stack::node_tokens::make(&consul, &site, &node).await
    })
    .unwrap()
    .unwrap()
}

/// One request to Consul's HTTP API with `token` (a PUT when there is a
/// body); the status and the text.
fn consul_http(
    lab: &Lab,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("{}/v1/{path}", lab.layout.consul_local_url());
    let mut answer = match body {
        Some(b) => agent
            .put(&url)
            .header("X-Consul-Token", token)
            .send(b.to_string()),
        None => agent.get(&url).header("X-Consul-Token", token).call(),
    }
    .unwrap();
    let text = answer.body_mut().read_to_string().unwrap_or_default();
    (answer.status().as_u16(), text)
}

/// `PUT /v1/catalog/register` (or deregister) with `token`.
fn catalog_put(lab: &Lab, token: &str, what: &str, body: serde_json::Value) -> (u16, String) {
    consul_http(lab, &format!("catalog/{what}"), token, Some(body))
}

fn token_self_status(lab: &Lab, token: &str) -> u16 {
    consul_http(lab, "acl/token/self", token, None).0
}

#[test]
fn the_appliance_decides_joined_from_its_own_consul_catalog() {
    use kindling_inventory::{CatalogWatch, FailureKind, NodeState};
    let Some((lab, sync_token, _)) = lab_with_consul("kd-cat-") else {
        return;
    };
    // The API's token reads node entries and writes nothing there.
    let (status, _) = catalog_put(
        &lab,
        &sync_token,
        "register",
        serde_json::json!({"Node": "node-dev-1", "Address": "127.0.0.9"}),
    );
    assert_eq!(status, 403, "the API's token cannot register a node");

    let (api, addr) = lab.start_api();
    let admin = client(&addr, &lab.run_dir(), Some(lab_tokens().admin));
    let settings = lab.pxe_settings();
    let (inventory, _) = Inventory::open(&settings.paths.state_dir, settings.profile_policy());
    let inventory = inventory.with_membership(settings.membership.clone());
    // The PXE service's flush loop, as `kindlingd pxe` runs it each second.
    let mut catalog = CatalogWatch::new(&settings.paths.state_dir);
    let mut tick = || {
        if let Some(listing) = catalog.changed() {
            inventory.set_catalog(listing, kindling_clock::unix_now());
        }
        inventory.flush_if_dirty().unwrap();
    };
    let dev = mac("52:54:00:6b:00:10");
    inventory.observe_dhcp(dev, None, Some(0), kindling_inventory::Firmware::Bios, 1);
    inventory.observe_boot_script(dev, "dev", 2);
    inventory
        .record_event(dev, "installed", serde_json::Value::Null, 3)
        .unwrap();
    let node = |inv: &Inventory| inv.node(&dev).unwrap();

    // 1. The node says joined; the catalog does not list it: installed, and why.
    let listed = within(Duration::from_secs(10), "the API lists the catalog", || {
        tick();
        node(&inventory)
            .seen
            .reason
            .is_some_and(|r| !r.contains("has not listed"))
    });
    eprintln!("API start → catalog listed: {listed:?}");
    let state = inventory
        .record_event(dev, "joined", serde_json::json!({"event": "joined"}), 4)
        .unwrap();
    assert_eq!(state, NodeState::Installed);
    let reason = node(&inventory).seen.reason.unwrap();
    assert!(
        reason.contains("it says joined (at 4), but not in the appliance's Consul catalog as node-dev-1 with env=dev, kindling-profile=dev, role=worker"),
        "{reason}\n{}",
        lab.api_log()
    );

    // 2. Its own token registers its name, with a prod node's meta: still
    //    installed, and the reason names the wrong key.
    let token = node_token(&lab, dev);
    assert_eq!(token_self_status(&lab, &token.secret_id), 200);
    let id = "6f1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b";
    let register = |env: &str| {
        serde_json::json!({"Node": "node-dev-1", "ID": id, "Address": "127.0.0.10",
            "NodeMeta": {"env": env, "role": "worker", "kindling-profile": "dev"}})
    };
    let (status, text) = catalog_put(&lab, &token.secret_id, "register", register("prod"));
    assert_eq!(status, 200, "{text}");
    within(Duration::from_secs(10), "wrong meta is named", || {
        tick();
        node(&inventory)
            .seen
            .reason
            .is_some_and(|r| r.contains("env=prod (expected dev)"))
    });
    assert_eq!(node(&inventory).state, NodeState::Installed);

    // The node's token cannot pass itself off as another node.
    let (status, _) = catalog_put(
        &lab,
        &token.secret_id,
        "register",
        serde_json::json!({"Node": "node-prod-1", "Address": "127.0.0.10",
            "NodeMeta": {"env": "prod", "kindling-profile": "prod"}}),
    );
    assert_eq!(status, 403, "a node registers its own name only");

    // 3. With its profile's meta: joined, with its Consul node ID.
    let (status, text) = catalog_put(&lab, &token.secret_id, "register", register("dev"));
    assert_eq!(status, 200, "{text}");
    let took = within(Duration::from_secs(10), "joined", || {
        tick();
        node(&inventory).state == NodeState::Joined
    });
    eprintln!("catalog register → joined: {took:?}");
    let member = node(&inventory).seen.consul.unwrap();
    assert_eq!(
        (member.node.as_str(), member.id.as_str()),
        ("node-dev-1", id)
    );
    assert_eq!(node(&inventory).seen.reason, None);
    let (status, body) = call(&admin, "GET", "/v1/nodes/52:54:00:6b:00:10", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "joined", "{body}");
    assert_eq!(body["consul"]["id"], id, "{body}");
    // The operator's CLI shows the node ID (when built beside kindlingd).
    let cli = Path::new(KINDLINGD).with_file_name("kindling");
    if cli.exists() {
        let out = Command::new(&cli)
            .args(["node", "show", "52:54:00:6b:00:10", "--appliance", &addr])
            .env("KINDLING_CONFIG", lab.dir.path().join("no-cli-config.toml"))
            .env("KINDLING_SERVER_NAME", common::SERVER_NAME)
            .env("KINDLING_CA_FILE", lab.run_dir().join("api-tls/ca.pem"))
            .env("KINDLING_TOKEN", lab_tokens().read.expose())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(id) && text.contains("joined"), "{text}");
    }

    // 4. The agent reports a failed step: recorded with its step and error.
    inventory
        .record_event(
            dev,
            "failed",
            serde_json::json!({"event": "failed", "step": "nomad-join", "error": "no servers"}),
            5,
        )
        .unwrap();
    let failure = node(&inventory).seen.failure.unwrap();
    assert_eq!(failure.kind, FailureKind::AgentFailed);
    assert_eq!(failure.step.as_deref(), Some("nomad-join"));

    // 5. Deregistered: left, with when.
    let (status, text) = catalog_put(
        &lab,
        &token.secret_id,
        "deregister",
        serde_json::json!({"Node": "node-dev-1"}),
    );
    assert_eq!(status, 200, "{text}");
    within(Duration::from_secs(10), "left", || {
        tick();
        node(&inventory).state == NodeState::Left
    });
    assert!(node(&inventory).seen.consul.unwrap().left_at.is_some());

    // 6. Re-armed: the old install's token is revoked (deleted by accessor
    //    with the management token) and a fresh one made.
    let consul = ConsulApi::new(&lab.layout.consul_local_url(), Some(lab.management.clone()));
    let accessor = token.accessor_id.clone();
    let deleted =
        kindling_stack::api::block_on(async move { consul.delete_token(&accessor).await })
            .unwrap()
            .unwrap();
    assert!(deleted);
    assert_eq!(
        token_self_status(&lab, &token.secret_id),
        403,
        "the revoked token no longer works"
    );
    let (status, _) = catalog_put(&lab, &token.secret_id, "register", register("dev"));
    assert_eq!(status, 403, "nor registers the node");
    drop(api);
}
