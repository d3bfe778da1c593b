//! Runtime MAC → profile assignments between `kindlingd api`, the real
//! Consul 1.8.7 (ACLs on, default deny, as the stack renders it) and the PXE
//! service's inventory (opened in this process on the same data dir, the way
//! `kindlingd pxe` reads it). One Consul for the whole scenario, in order:
//! assign through the API → in KV; `consul kv put` → the inventory follows
//! within seconds; bad KV entries refused, reported, last good kept; Consul
//! down → assignments kept locally, pushed once it is back.
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

#[test]
fn assignments_follow_consul_kv_both_ways_and_survive_consul_outages() {
    let Some(tools) = tools() else { return };
    let started = Instant::now();
    let site = site();
    let dir = tempfile::Builder::new().prefix("kd-kv-").tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let bin = root.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(tools.join("consul"), bin.join("consul")).unwrap();
    let mut seed = u64::from(std::process::id()) ^ started.elapsed().as_nanos() as u64;
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
    let after_consul = started.elapsed();

    // The token writes assignments and nothing else.
    let (ok, out) = lab.consul_cli_as(&sync_token, &["kv", "put", "kindling/profiles/x", "y"]);
    assert!(!ok && out.contains("403"), "{out}");

    // The appliance: site.json for the API, the API itself.
    std::fs::create_dir_all(lab.run_dir()).unwrap();
    std::fs::write(
        lab.run_dir().join("site.json"),
        serde_json::to_vec(&site).unwrap(),
    )
    .unwrap();
    issue_api_certificate(&lab.layout.data_dir, &lab.run_dir());
    let api_port = common::free_port();
    let api_log_file = std::fs::File::create(root.join("api.log")).unwrap();
    let api = Proc(
        Command::new(KINDLINGD)
            .args(["api", "--listen", &format!("127.0.0.1:{api_port}")])
            .env("KINDLING_RUN_DIR", lab.run_dir())
            .env("KINDLING_STATE_DIR", &lab.layout.data_dir)
            .env("KINDLING_SITE_JSON", lab.run_dir().join("site.json"))
            .env("KINDLING_CONSUL_URL", lab.layout.consul_local_url())
            .stdout(api_log_file.try_clone().unwrap())
            .stderr(api_log_file)
            .spawn()
            .unwrap(),
    );
    let addr = format!("127.0.0.1:{api_port}");
    within(Duration::from_secs(10), "the API listens", || {
        std::net::TcpStream::connect(("127.0.0.1", api_port)).is_ok()
    });
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
    let settings = PxeSettings::from_site(
        &site,
        PxePaths {
            state_dir: lab.layout.data_dir.clone(),
            ..PxePaths::default()
        },
    )
    .unwrap();
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
