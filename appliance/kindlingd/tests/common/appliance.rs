//! A throw-away appliance for the API's tests: `kindlingd config apply` on
//! a temp root from the overlay crate's signed fixtures (plus a
//! per-appliance overlay with the lab's TEST-ONLY operators), which issues
//! the API's certificate; then `kindlingd api` on a loopback port, with the
//! lab's admin operator's client pinned to the CA.

use super::{lab_tokens, wait_listening};
use kindling_api_client::{ApiClient, Token};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

pub const KINDLINGD: &str = env!("CARGO_BIN_EXE_kindlingd");

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../overlay/tests/data")
}

/// A temp appliance root: trust store, boot media, data partition and /run.
pub struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("kd-api-")
            .tempdir()
            .unwrap();
        let root = Root { dir };
        for d in [
            "etc/trust",
            "etc/overlays",
            "var/lib/kindling",
            "run/kindling",
        ] {
            std::fs::create_dir_all(root.path(d)).unwrap();
        }
        std::fs::copy(
            fixtures().join("keys/TEST-ONLY-kindling.pub"),
            root.path("etc/trust/kindling.pub"),
        )
        .unwrap();
        for ext in ["kovl", "kovl.minisig"] {
            std::fs::copy(
                fixtures().join(format!("good/lab.{ext}")),
                root.path(&format!("etc/overlays/lab.{ext}")),
            )
            .unwrap();
        }
        root.add_operators_overlay();
        std::fs::write(
            root.path("etc/overlays/order"),
            "lab.kovl\noperators.kovl\n",
        )
        .unwrap();
        root
    }

    /// A per-appliance overlay naming the lab's TEST-ONLY operators, signed
    /// with the fixtures' TEST-ONLY key (the fixture site predates them).
    fn add_operators_overlay(&self) {
        let lab = std::fs::read_to_string(repo().join("overlays/lab/site.toml")).unwrap();
        let operators: String = lab
            .split("\n\n")
            .filter(|block| block.contains("[[api.operators]]"))
            .collect::<Vec<_>>()
            .join("\n\n");
        assert!(operators.contains("lab-admin"), "{operators}");
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("site.toml"), operators).unwrap();
        let built = build_overlay(
            tree.path(),
            "operators",
            1,
            kindling_overlay::LayerKind::Appliance,
        );
        std::fs::write(self.path("etc/overlays/operators.kovl"), &built.kovl).unwrap();
        std::fs::write(
            self.path("etc/overlays/operators.kovl.minisig"),
            &built.minisig,
        )
        .unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(KINDLINGD);
        cmd.args(args)
            .env("KINDLING_TRUST_DIR", self.path("etc/trust"))
            .env("KINDLING_BOOT_OVERLAYS", self.path("etc/overlays"))
            .env("KINDLING_STATE_DIR", self.path("var/lib/kindling"))
            .env("KINDLING_RUN_DIR", self.path("run/kindling"))
            .env("KINDLING_SITE_JSON", self.path("run/kindling/site.json"));
        cmd
    }
}

/// Kills the API server when the test ends, pass or fail.
pub struct Server {
    child: Child,
    pub addr: String,
    pub run_dir: PathBuf,
    /// The lab's admin operator, pinned to this appliance's CA.
    pub admin: ApiClient,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// A request as the admin operator.
    pub fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, serde_json::Value) {
        super::call(&self.admin, method, path, body)
    }

    /// The API process's id (for its memory use).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A client with another (or no) token.
    pub fn client_with(&self, token: Option<Token>) -> ApiClient {
        super::client(&self.addr, &self.run_dir, token)
    }
}

/// Starts `kindlingd api` and returns once it answers `GET /healthz` over
/// TLS (a bare TCP accept is not yet an answering API); a server that
/// exits meanwhile fails the test with its exit status.
pub fn start_api(root: &Root) -> Server {
    let addr = format!("127.0.0.1:{}", super::free_port());
    let mut child = root.command(&["api", "--listen", &addr]).spawn().unwrap();
    let run_dir = root.path("run/kindling");
    wait_listening(&addr);
    let admin = super::client(&addr, &run_dir, Some(lab_tokens().admin));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("kindlingd api on {addr} exited before it answered: {status}");
        }
        match admin.request("GET", "/healthz", None) {
            Ok(_) => break,
            Err(e) if std::time::Instant::now() >= deadline => {
                panic!("kindlingd api on {addr} does not answer: {e}")
            }
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    Server {
        child,
        admin,
        addr,
        run_dir,
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `dir` packed and signed with the fixtures' TEST-ONLY key.
pub fn build_overlay(
    dir: &Path,
    name: &str,
    version: u64,
    layer: kindling_overlay::LayerKind,
) -> kindling_overlay::Built {
    let key_text = std::fs::read_to_string(fixtures().join("keys/TEST-ONLY-kindling.key")).unwrap();
    let key = kindling_overlay::SecretKey::from_file_text(&key_text, None).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let opts = kindling_overlay::BuildOptions {
        name: name.into(),
        version,
        layer,
        site_id: Some("lab".into()),
        created: now - 100,
        expires: now + 86_400,
    };
    kindling_overlay::build(dir, &opts, &key).unwrap()
}

pub fn push_body(scenario: &str) -> Vec<u8> {
    use base64::Engine;
    let dir = fixtures().join(scenario);
    let kovl = std::fs::read(dir.join("lab.kovl")).unwrap();
    let minisig = std::fs::read_to_string(dir.join("lab.kovl.minisig")).unwrap();
    serde_json::to_vec(&serde_json::json!({
        "kovl": base64::engine::general_purpose::STANDARD.encode(kovl),
        "minisig": minisig,
    }))
    .unwrap()
}

pub fn apply(root: &Root) {
    let out = root.command(&["config", "apply"]).output().unwrap();
    assert!(
        out.status.success(),
        "config apply failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        root.path("run/kindling/services.json").exists(),
        "config apply wrote no service table"
    );
}

/// Lab v4 with a longer lease, signed with the fixtures' TEST-ONLY key.
pub fn lab_v4_push_body() -> Vec<u8> {
    use base64::Engine;
    let repo = repo();
    let tree = tempfile::Builder::new()
        .prefix("kd-tree-")
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(tree.path().join("profiles")).unwrap();
    for f in ["profiles/dev.toml", "profiles/prod.toml"] {
        std::fs::copy(repo.join("overlays/lab").join(f), tree.path().join(f)).unwrap();
    }
    let site = std::fs::read_to_string(repo.join("overlays/lab/site.toml")).unwrap();
    std::fs::write(
        tree.path().join("site.toml"),
        site.replace("lease_secs = 3600", "lease_secs = 7200"),
    )
    .unwrap();
    let built = build_overlay(tree.path(), "lab", 4, kindling_overlay::LayerKind::Site);
    serde_json::to_vec(&serde_json::json!({
        "kovl": base64::engine::general_purpose::STANDARD.encode(&built.kovl),
        "minisig": built.minisig,
    }))
    .unwrap()
}
