//! Shared helpers for the stack's integration tests: a temp-dir "appliance"
//! with free loopback ports, the real `consul` and `bao` binaries started from
//! the service entries `render()` returns (killed by PID on drop), and the
//! Nomad test double.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use kindling_nomad_double::NomadAgent;
use kindling_site::SiteConfig;
use kindling_stack::render::{Readiness, ServiceSpec};
use kindling_stack::{StackLayout, StackPorts};
use std::io::{BufRead, Write};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A throwaway operator key for one test (age X25519); the test plays the
/// operator who decrypts the init secrets with it.
pub fn new_identity() -> age::x25519::Identity {
    age::x25519::Identity::generate()
}

/// Where `tests/install-deps` puts consul and bao; `None` (skip) if absent.
pub fn tools() -> Option<PathBuf> {
    let dir = std::env::var_os("KINDLING_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../build/tools"));
    if dir.join("consul").is_file() && dir.join("bao").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPING: real consul/bao not found in {} (run tests/install-deps)",
            dir.display()
        );
        None
    }
}

/// A loopback port free for TCP and UDP on 127.0.0.1 and 127.0.0.2,
/// outside the ephemeral range (Consul's
/// DNS and Serf ports use both protocols), and never handed out before in
/// this process: a lab asks for a dozen at once, before any is bound.
pub fn free_port() -> u16 {
    use rand::Rng;
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        // Below Linux's ephemeral range (32768+): a port there can be taken
        // as the source port of any outgoing connection before the service
        // binds it (or rebinds it after a kill -9).
        let port: u16 = rand::thread_rng().gen_range(20000..32000);
        let Ok(_tcp) = std::net::TcpListener::bind(("127.0.0.1", port)) else {
            continue;
        };
        let udp_free = ["127.0.0.1", "127.0.0.2"]
            .iter()
            .all(|ip| std::net::UdpSocket::bind((*ip, port)).is_ok());
        if udp_free
            && std::net::TcpListener::bind(("127.0.0.2", port)).is_ok()
            && GIVEN
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(port)
        {
            return port;
        }
    }
}

/// A site with the stack enabled. `lan` is a loopback alias (127.0.0.2) so
/// Vault's TLS listener and Consul's bind address are distinct from the
/// plain-HTTP loopback listener, as on the appliance.
pub fn site(unseal: &str, nomad: bool, identity: &age::x25519::Identity) -> SiteConfig {
    let recipient = identity.to_public().to_string();
    let json = serde_json::json!({
        "site": {"id": "kstest", "name": "stack test", "hostname": "kindling-test", "domain": "test.kindling.internal"},
        "network": {"lan": {"address": "127.0.0.2/8"}},
        "nodes": [
            {"mac": "52:54:00:6b:00:10", "profile": "dev", "hostname": "node-dev-1"},
            {"mac": "52:54:00:6b:00:20", "profile": "prod", "hostname": "node-prod-1"}
        ],
        "stack": {
            "datacenter": "kstest",
            "consul": {"enabled": true, "connect_vault_ca": true},
            "vault": {"enabled": true, "key_shares": 3, "key_threshold": 2, "unseal": unseal, "recipients": [recipient]},
            "nomad": {"enabled": nomad}
        },
        "profiles": {
            "dev": {"name": "dev", "tags": {"env": "development", "role": "worker"}, "boot": {"kind": "linux", "kernel": "vmlinuz"}},
            "prod": {"name": "prod", "tags": {"env": "production"}, "boot": {"kind": "linux", "kernel": "vmlinuz"}}
        }
    });
    serde_json::from_value(json).unwrap()
}

/// A process killed (SIGKILL) and reaped on drop.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One throwaway appliance: temp dirs, free ports, real processes.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub layout: StackLayout,
    pub site: SiteConfig,
    pub services: Vec<ServiceSpec>,
    pub procs: Vec<Proc>,
    pub nomad: Option<NomadAgent>,
}

impl Lab {
    pub fn new(tools: &Path, site: SiteConfig) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("ks-stack-")
            .tempdir()
            .unwrap();
        let root = dir.path();
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(tools.join("consul"), bin.join("consul")).unwrap();
        // OpenBao installed as `vault`, the way the image carries it.
        std::os::unix::fs::symlink(tools.join("bao"), bin.join("vault")).unwrap();
        let ports = StackPorts {
            consul_http: free_port(),
            consul_https: free_port(),
            consul_dns: free_port(),
            consul_server: free_port(),
            consul_serf_lan: free_port(),
            consul_serf_wan: free_port(),
            vault_api: free_port(),
            vault_cluster: free_port(),
            vault_local: free_port(),
            nomad_http: free_port(),
            nomad_rpc: free_port(),
            nomad_serf: free_port(),
        };
        let layout = StackLayout {
            config_dir: root.join("run/stack"),
            data_dir: root.join("data"),
            status_file: root.join("run/status/stack.json"),
            bin_dir: bin,
            kindlingd: root.join("bin/kindlingd"),
            loopback: std::net::Ipv4Addr::LOCALHOST,
            ports,
        };
        let rendered = kindling_stack::render(&site, &layout).unwrap();
        Lab {
            dir,
            layout,
            site,
            services: rendered.services,
            procs: Vec::new(),
            nomad: None,
        }
    }

    pub fn spec(&self, name: &str) -> ServiceSpec {
        self.services
            .iter()
            .find(|s| s.name == name)
            .cloned()
            .unwrap()
    }

    /// Starts a service from its rendered entry and waits for its readiness.
    pub fn start(&mut self, name: &str) {
        if name == "nomad" {
            self.start_nomad_double();
            return;
        }
        let spec = self.spec(name);
        let child = spawn_logged(&spec, &self.dir.path().join(format!("{name}.log")));
        self.procs.retain(|p| p.name != name);
        self.procs.push(Proc {
            name: name.to_string(),
            child,
        });
        self.wait_ready(&spec);
    }

    /// The Nomad test double, started from the rendered `nomad.d` the way
    /// `nomad agent -config` would start Nomad (config checked against the
    /// documented parameters, mutual TLS from its `tls` block).
    fn start_nomad_double(&mut self) {
        self.nomad = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match NomadAgent::start(
                &self.layout.nomad_config_dir(),
                Some(self.layout.nomad_data()),
            ) {
                Ok(d) => {
                    self.nomad = Some(d);
                    return;
                }
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    pub fn wait_ready(&self, spec: &ServiceSpec) {
        let Readiness::Http { url, ok } = &spec.readiness else {
            return;
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(code) = http_status(url) {
                if ok.contains(&code) {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{} not ready at {url}; log:\n{}",
            spec.name,
            self.log(&spec.name)
        );
    }

    pub fn kill9(&mut self, name: &str) {
        if name == "nomad" {
            self.nomad = None;
            return;
        }
        if let Some(p) = self.procs.iter_mut().find(|p| p.name == name) {
            p.kill9();
        }
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    pub fn options(&self) -> kindling_stack::bootstrap::BootstrapOptions {
        kindling_stack::bootstrap::BootstrapOptions {
            site: self.site.clone(),
            layout: self.layout.clone(),
            service_timeout: Duration::from_secs(60),
            unseal_timeout: Some(Duration::from_secs(60)),
            control_socket: None,
            console: true,
        }
    }

    pub fn status_text(&self) -> String {
        std::fs::read_to_string(&self.layout.status_file).unwrap_or_default()
    }

    pub fn init_file(&self) -> PathBuf {
        self.layout.state_dir().join("vault-init.age")
    }

    /// The operator's view: decrypt the init secrets with the test identity.
    pub fn init_secrets(
        &self,
        identity: &age::x25519::Identity,
    ) -> kindling_stack::secrets::InitSecrets {
        use age::secrecy::ExposeSecret;
        let bytes = std::fs::read(self.init_file()).unwrap();
        kindling_stack::secrets::decrypt_init(&bytes, identity.to_string().expose_secret()).unwrap()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for name in ["consul", "vault"] {
                let log = self.log(name);
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                eprintln!("---- last lines of {name}.log ----");
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// Status code of a plain-HTTP GET, `None` if nothing answers.
pub fn http_status(url: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = rest
        .split_once('/')
        .map(|(a, p)| (a, format!("/{p}")))
        .unwrap_or((rest, "/".into()));
    let mut s = std::net::TcpStream::connect(authority).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").ok()?;
    let mut head = [0u8; 64];
    let n = s.read(&mut head).ok()?;
    String::from_utf8_lossy(&head[..n])
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Stands in for kindling-init's control socket (docs/contracts.md): owns
/// the Vault process, lists it and restarts it on request (answering
/// before the restart, as init does). Kills it on drop.
pub struct FakeInit {
    pub socket: PathBuf,
    stop: Arc<AtomicBool>,
    pub restarts: Arc<AtomicUsize>,
    vault: Arc<Mutex<Option<Child>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a service from its rendered entry, its output appended to `log`.
fn spawn_logged(spec: &ServiceSpec, log: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(&spec.argv[0])
        .args(&spec.argv[1..])
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", spec.name))
}

impl FakeInit {
    pub fn start(lab: &Lab) -> Self {
        let socket = lab.dir.path().join("init.sock");
        let _ = std::fs::remove_file(&socket); // an earlier stand-in's
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let spec = lab.spec("vault");
        let log = lab.dir.path().join("vault.log");
        let vault = Arc::new(Mutex::new(Some(spawn_logged(&spec, &log))));
        let (stop, restarts) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicUsize::new(0)),
        );
        let thread = {
            let (vault, stop, restarts) = (vault.clone(), stop.clone(), restarts.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((stream, _)) = listener.accept() else {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        continue;
                    };
                    stream.set_nonblocking(false).unwrap();
                    let mut line = String::new();
                    std::io::BufReader::new(&stream)
                        .read_line(&mut line)
                        .unwrap();
                    let req: serde_json::Value = serde_json::from_str(&line).unwrap();
                    let answer = if req["cmd"] == "restart" && req["name"] == "vault" {
                        // Like init: answer first, stop and start afterwards.
                        let (vault, restarts, spec, log) =
                            (vault.clone(), restarts.clone(), spec.clone(), log.clone());
                        std::thread::spawn(move || {
                            std::thread::sleep(std::time::Duration::from_millis(300));
                            let mut guard = vault.lock().unwrap();
                            if let Some(mut old) = guard.take() {
                                let _ = old.kill();
                                let _ = old.wait();
                            }
                            *guard = Some(spawn_logged(&spec, &log));
                            restarts.fetch_add(1, Ordering::Relaxed);
                        });
                        serde_json::json!({"ok": true})
                    } else if req["cmd"] == "list" {
                        let guard = vault.lock().unwrap();
                        serde_json::json!({
                            "phases": [], "ready": true, "degraded": [],
                            "services": [{
                                "name": "vault", "state": "running",
                                "pid": guard.as_ref().map(Child::id),
                                "restarts": restarts.load(Ordering::Relaxed),
                                "uptime_ms": null, "ready": guard.is_some(), "reason": null,
                            }],
                        })
                    } else {
                        serde_json::json!({"ok": false, "error": "this stand-in only lists and restarts vault"})
                    };
                    writeln!(&stream, "{answer}").unwrap();
                }
            })
        };
        Self {
            socket,
            stop,
            restarts,
            vault,
            thread: Some(thread),
        }
    }
}

impl Drop for FakeInit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Ok(mut guard) = self.vault.lock() {
            if let Some(mut child) = guard.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
