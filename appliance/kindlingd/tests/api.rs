//! The status/control API over real HTTP: `kindlingd config apply` configures a
//! throw-away appliance root from the overlay crate's signed fixtures, then
//! `kindlingd api` serves it and is exercised as an operator's client would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::call;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const KINDLINGD: &str = env!("CARGO_BIN_EXE_kindlingd");

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../overlay/tests/data")
}

/// A temp appliance root: trust store, boot media, data partition and /run.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Self {
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
        std::fs::write(root.path("etc/overlays/order"), "lab.kovl\n").unwrap();
        root
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn command(&self, args: &[&str]) -> Command {
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
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_api(root: &Root) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = root.command(&["api", "--listen", &addr]).spawn().unwrap();
    let server = Server {
        child,
        base: format!("http://{addr}"),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(
            Instant::now() < deadline,
            "kindlingd api did not listen on {addr}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
}

fn push_body(scenario: &str) -> Vec<u8> {
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

fn apply(root: &Root) {
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

fn file(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn status_and_effective_config_come_from_the_applied_overlay() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);

    let (status, body) = call("GET", &format!("{}/v1/status", api.base), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["config"].is_object(),
        "status lacks the config report: {body}"
    );
    // No init runs here: the API says so instead of failing the whole request.
    assert!(
        body["init"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("init.sock")),
        "{body}"
    );

    let (status, body) = call("GET", &format!("{}/v1/config/effective", api.base), None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.to_string().contains("\"lab\""),
        "effective config does not name site lab: {body}"
    );

    let (status, body) = call("GET", &format!("{}/v1/nodes", api.base), None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn bad_pushes_are_refused_and_the_good_config_stays() {
    let root = Root::new();
    apply(&root);
    let before = file(&root.path("run/kindling/site.json"));
    let api = start_api(&root);
    let url = format!("{}/v1/overlays", api.base);

    let (status, body) = call("POST", &url, Some(&push_body("rollback")));
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("rollback refused"), "{body}");

    let (status, body) = call("POST", &url, Some(&push_body("wrong-key")));
    assert!(
        (400..500).contains(&status),
        "wrong key answered {status}: {body}"
    );
    assert!(body.to_string().contains("not trusted"), "{body}");

    let (status, body) = call("POST", &url, Some(b"this is not json"));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string(), "{body}");

    assert_eq!(
        file(&root.path("run/kindling/site.json")),
        before,
        "a refused push changed the site config"
    );
}

/// `/healthz` answers before any config exists and says nothing but "ok".
#[test]
fn healthz_is_up_without_config_and_reveals_nothing() {
    let root = Root::new();
    let api = start_api(&root);
    let (status, body) = call("GET", &format!("{}/healthz", api.base), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"status": "ok"}));
    let health: kindling_api::health::Health = serde_json::from_value(body).unwrap();
    assert_eq!(health, kindling_api::health::Health::ok());
}

/// Lab v4 with a longer lease, signed with the fixtures' TEST-ONLY key.
fn lab_v4_push_body() -> Vec<u8> {
    use base64::Engine;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
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
    let key_text = std::fs::read_to_string(fixtures().join("keys/TEST-ONLY-kindling.key")).unwrap();
    let key = kindling_overlay::SecretKey::from_file_text(&key_text, None).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let opts = kindling_overlay::BuildOptions {
        name: "lab".into(),
        version: 4,
        layer: kindling_overlay::LayerKind::Site,
        site_id: None,
        created: now - 100,
        expires: now + 86_400,
    };
    let built = kindling_overlay::build(tree.path(), &opts, &key).unwrap();
    serde_json::to_vec(&serde_json::json!({
        "kovl": base64::engine::general_purpose::STANDARD.encode(&built.kovl),
        "minisig": built.minisig,
    }))
    .unwrap()
}

#[test]
fn an_accepted_push_applies_pxe_changes_now_and_says_what_it_did() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let url = format!("{}/v1/overlays", api.base);

    let body = lab_v4_push_body();
    let (status, reply) = call("POST", &url, Some(&body));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["accepted"]["name"], "lab", "{reply}");
    assert_eq!(reply["accepted"]["version"], 4, "{reply}");
    assert_eq!(reply["applied_now"], serde_json::json!(["pxe"]), "{reply}");
    assert_eq!(
        reply["applies_at_next_boot"],
        serde_json::json!([]),
        "{reply}"
    );
    assert!(reply["report"]["ok"].as_bool().unwrap_or(false), "{reply}");
    // No init runs here: the live part is attempted and its failure reported.
    let actions = reply["actions"].to_string();
    assert!(actions.contains("services.json rewritten"), "{reply}");
    assert!(actions.contains("could not reach init"), "{reply}");
    assert_eq!(
        file(&root.path("run/kindling/site.json"))["pxe"]["lease_secs"],
        7200
    );

    // The same version again is idempotent: accepted, nothing changed, nothing done.
    let (status, reply) = call("POST", &url, Some(&body));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["applied_now"], serde_json::json!([]), "{reply}");
    assert!(reply.get("actions").is_none(), "{reply}");
    let (status, reply) = call("GET", &url, None);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["state"]["floors"]["lab"], 4, "{reply}");
    assert!(reply["report"]["accepted"].is_array(), "{reply}");
}

#[test]
fn unknown_endpoints_and_methods_are_404_with_a_reason() {
    let root = Root::new();
    let api = start_api(&root);
    for path in ["/v1/nope", "/", "/v1/services/../../etc/passwd"] {
        let (status, body) = call("GET", &format!("{}{path}", api.base), None);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    // Without a control socket, a restart cannot be done: 503, not a hang.
    let (status, body) = call(
        "POST",
        &format!("{}/v1/services/pxe/restart", api.base),
        None,
    );
    assert_eq!(status, 503, "{body}");
}

/// The operator's `kindling` binary, built beside kindlingd by
/// `cargo test --workspace` (it belongs to the kindling-image package).
fn kindling_cli() -> Option<PathBuf> {
    let path = Path::new(KINDLINGD).with_file_name("kindling");
    path.exists().then_some(path)
}

fn cli(args: &[&str]) -> (bool, String) {
    let Some(bin) = kindling_cli() else {
        unreachable!("checked by the caller")
    };
    let out = Command::new(bin).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_operator_cli_talks_to_the_api() {
    if kindling_cli().is_none() {
        eprintln!(
            "SKIP: the kindling CLI is not built beside kindlingd (run cargo test --workspace)"
        );
        return;
    }
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let base = api.base.as_str();

    let rollback = fixtures().join("rollback/lab.kovl");
    let (ok, out) = cli(&[
        "overlay",
        "push",
        rollback.to_str().unwrap(),
        "--appliance",
        base,
    ]);
    assert!(!ok, "a rollback push must fail: {out}");
    assert!(out.contains("rollback refused"), "{out}");

    let (ok, out) = cli(&[
        "node",
        "assign",
        "--appliance",
        base,
        "52:54:00:6b:00:99",
        "gpu",
    ]);
    assert!(!ok, "an undefined profile must be refused: {out}");
    assert!(out.contains("gpu"), "the refusal names the profile: {out}");

    let (ok, out) = cli(&[
        "node",
        "assign",
        "--appliance",
        base,
        "52:54:00:6b:00:99",
        "prod",
    ]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["node", "list", "--appliance", base, "--json"]);
    assert!(ok, "{out}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let node = list["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["mac"] == "52:54:00:6b:00:99"))
        .unwrap_or_else(|| panic!("assigned node missing from the list: {list}"));
    assert_eq!(node["assignment"]["profile"], "prod", "{node}");

    // Re-arming a node's grant: each request counts, the PXE service finds
    // it in the data partition; a MAC nobody knows is refused.
    for generation in ["request 1", "request 2"] {
        let (ok, out) = cli(&[
            "node",
            "reprovision",
            "--appliance",
            base,
            "52:54:00:6b:00:10",
        ]);
        assert!(ok, "{out}");
        assert!(out.contains(generation), "{out}");
    }
    let requests = file(&root.path("var/lib/kindling/inventory/reprovision.json"));
    assert_eq!(requests["requests"]["52:54:00:6b:00:10"]["generation"], 2);
    let (ok, out) = cli(&[
        "node",
        "reprovision",
        "--appliance",
        base,
        "02:00:00:00:00:77",
    ]);
    assert!(
        !ok && out.contains("404") && out.contains("never seen"),
        "{out}"
    );
}
