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
use kindling_stack::render::ServiceSpec;
use kindling_stack::status::StepState;
use std::io::{BufRead, Write};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Stands in for kindling-init's control socket (docs/contracts.md): owns
/// the Vault process and restarts it on request. Kills it on drop.
struct FakeInit {
    socket: PathBuf,
    stop: Arc<AtomicBool>,
    restarts: Arc<AtomicUsize>,
    vault: Arc<Mutex<Option<Child>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

fn spawn(spec: &ServiceSpec, log: &std::path::Path) -> Child {
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
        .unwrap()
}

impl FakeInit {
    fn start(lab: &Lab) -> Self {
        let socket = lab.dir.path().join("init.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let spec = lab.spec("vault");
        let log = lab.dir.path().join("vault.log");
        let vault = Arc::new(Mutex::new(Some(spawn(&spec, &log))));
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
                        let mut guard = vault.lock().unwrap();
                        if let Some(mut old) = guard.take() {
                            let _ = old.kill();
                            let _ = old.wait();
                        }
                        *guard = Some(spawn(&spec, &log));
                        restarts.fetch_add(1, Ordering::Relaxed);
                        serde_json::json!({"ok": true})
                    } else {
                        serde_json::json!({"ok": false, "error": "this stand-in only restarts vault"})
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
