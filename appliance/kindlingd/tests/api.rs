//! The status/control API over real TLS: `kindlingd config apply` configures
//! a throw-away appliance root from the overlay crate's signed fixtures (plus
//! a per-appliance overlay with the lab's TEST-ONLY operators) and issues
//! the API's certificate, then `kindlingd api` serves it and is exercised as
//! an operator's client would, with the admin token, pinned to the CA.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::appliance::{apply, fixtures, lab_v4_push_body, push_body, start_api, Root, KINDLINGD};
use common::lab_tokens;

use std::path::{Path, PathBuf};
use std::process::Command;

fn file(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn status_and_effective_config_come_from_the_applied_overlay() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);

    let (status, body) = api.call("GET", "/v1/status", None);
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

    let (status, body) = api.call("GET", "/v1/config/effective", None);
    assert_eq!(status, 200, "{body}");
    assert!(
        body.to_string().contains("\"lab\""),
        "effective config does not name site lab: {body}"
    );

    let (status, body) = api.call("GET", "/v1/nodes", None);
    assert_eq!(status, 200, "{body}");
}

#[test]
fn bad_pushes_are_refused_and_the_good_config_stays() {
    let root = Root::new();
    apply(&root);
    let before = file(&root.path("run/kindling/site.json"));
    let api = start_api(&root);
    let url = "/v1/overlays";

    let (status, body) = api.call("POST", url, Some(&push_body("rollback")));
    assert_eq!(status, 422, "{body}");
    assert!(body.to_string().contains("rollback refused"), "{body}");

    let (status, body) = api.call("POST", url, Some(&push_body("wrong-key")));
    assert!(
        (400..500).contains(&status),
        "wrong key answered {status}: {body}"
    );
    assert!(body.to_string().contains("not trusted"), "{body}");

    let (status, body) = api.call("POST", url, Some(b"this is not json"));
    assert_eq!(status, 400, "{body}");
    assert!(body["error"].is_string(), "{body}");

    assert_eq!(
        file(&root.path("run/kindling/site.json")),
        before,
        "a refused push changed the site config"
    );
}

/// `/healthz` answers anyone, without credentials, and says nothing but
/// "ok". (It no longer answers before the config phase: the API's TLS
/// certificate is issued there.)
#[test]
fn healthz_answers_without_credentials_and_reveals_nothing() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let anonymous = api.client_with(None);
    let (status, body) = common::call(&anonymous, "GET", "/healthz", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, serde_json::json!({"status": "ok"}));
    let health: kindling_api::health::Health = serde_json::from_value(body).unwrap();
    assert_eq!(health, kindling_api::health::Health::ok());
}

/// `GET /metrics` for a read-only operator: OpenMetrics text that a real
/// parser (Python's prometheus_client, from tests/install-deps) accepts,
/// carrying the PXE service's counters from its status file. Without a
/// token it is 401 like every read (tests/api_hostile.rs).
#[test]
fn metrics_are_openmetrics_for_a_read_only_operator() {
    let root = Root::new();
    apply(&root);
    let status_dir = root.path("run/kindling/status");
    std::fs::create_dir_all(&status_dir).unwrap();
    std::fs::write(
        status_dir.join("pxe.json"),
        r#"{"ready": true, "counters": {"dhcp_acks": 3, "dhcp_received": 7}, "leases_in_use": 3}"#,
    )
    .unwrap();
    std::fs::write(
        status_dir.join("update.json"),
        r#"{"mode": "blessed", "entry": "kindling-0.1.0.efi", "floor": "0.1.0"}"#,
    )
    .unwrap();
    let api = start_api(&root);
    let reader = api.client_with(Some(lab_tokens().read));
    let reply = reader.request("GET", "/metrics", None).unwrap();
    let text = String::from_utf8(reply.body).unwrap();
    assert_eq!(reply.status, 200, "{text}");
    for line in [
        "kindling_pxe_dhcp_acks_total 3",
        "kindling_pxe_dhcp_received_total 7",
        "kindling_pxe_leases_in_use 3",
        "kindling_update_mode{mode=\"blessed\"} 1",
        "# EOF",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} missing:\n{text}");
    }
    let parser = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse\n\
        families = {f.name: f for f in parse(sys.stdin.read())}\n\
        acks = families['kindling_pxe_dhcp_acks']\n\
        assert acks.type == 'counter', acks.type\n\
        assert families['kindling_update_mode'].samples[0].labels == {'mode': 'blessed'}\n\
        print(len(families), acks.samples[0].value)\n";
    // Debian's python3, which the apt package is for (not a pyenv one on PATH).
    let mut python = Command::new("/usr/bin/python3")
        .args(["-c", parser])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut python.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let out = python.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("No module named 'prometheus_client'") {
        eprintln!("SKIP the parser check: python3-prometheus-client missing (tests/install-deps installs it)");
        return;
    }
    assert!(
        out.status.success(),
        "the OpenMetrics parser refused it: {stderr}\n{text}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let acks = stdout
        .split_whitespace()
        .last()
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(acks, Some(3.0), "{stdout}");
}

#[test]
fn an_accepted_push_applies_pxe_changes_now_and_says_what_it_did() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let url = "/v1/overlays";

    let body = lab_v4_push_body();
    let (status, reply) = api.call("POST", url, Some(&body));
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
    let (status, reply) = api.call("POST", url, Some(&body));
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["applied_now"], serde_json::json!([]), "{reply}");
    assert!(reply.get("actions").is_none(), "{reply}");
    let (status, reply) = api.call("GET", url, None);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["state"]["floors"]["lab"], 4, "{reply}");
    assert!(reply["report"]["accepted"].is_array(), "{reply}");
}

#[test]
fn unknown_endpoints_and_methods_are_404_with_a_reason() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    // `/` is the status page (tests/api_page.rs); other paths outside /v1 are not.
    for path in [
        "/v1/nope",
        "/nope",
        "/ui/nope",
        "/v1/services/../../etc/passwd",
    ] {
        let (status, body) = api.call("GET", path, None);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"].is_string(), "{path}: {body}");
    }
    // Without a control socket, a restart cannot be done: 503, not a hang.
    let (status, body) = api.call("POST", "/v1/services/pxe/restart", None);
    assert_eq!(status, 503, "{body}");
}

/// The operator's `kindling` binary, built beside kindlingd by
/// `cargo test --workspace` (it belongs to the kindling-image package).
fn kindling_cli() -> Option<PathBuf> {
    let path = Path::new(KINDLINGD).with_file_name("kindling");
    path.exists().then_some(path)
}

/// Runs the CLI with only `env` from this test's environment choices
/// (every `KINDLING_*` variable of the caller is removed) and `stdin`.
fn cli(env: &[(&str, &str)], args: &[&str], stdin: &str) -> (bool, String) {
    use std::io::Write;
    let Some(bin) = kindling_cli() else {
        unreachable!("checked by the caller")
    };
    let mut command = Command::new(bin);
    for (k, _) in std::env::vars() {
        if k.starts_with("KINDLING_") {
            command.env_remove(k);
        }
    }
    let mut child = command
        .args(args)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(mut input) = child.stdin.take() {
        input.write_all(stdin.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The operator's whole path: pin the CA on first use (a wrong fingerprint
/// is refused and nothing saved), the token from stdin, then commands that
/// take everything from the saved 0600 config; and the environment alone
/// with a read-only token.
#[test]
fn the_operator_cli_logs_in_and_talks_to_the_api() {
    if kindling_cli().is_none() {
        eprintln!(
            "SKIP: the kindling CLI is not built beside kindlingd (run cargo test --workspace)"
        );
        return;
    }
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let tokens = lab_tokens();
    let ca_path = api.run_dir.join("api-tls/ca.pem");
    let fingerprint =
        kindling_pki::fingerprint_of_pem(&ca_path, &std::fs::read_to_string(&ca_path).unwrap())
            .unwrap()
            .to_string();
    let home = tempfile::tempdir().unwrap();
    let config = home.path().join("kindling/config.toml");
    let config = config.to_str().unwrap();
    let with_config = [("KINDLING_CONFIG", config)];
    let login = |fp: &str| {
        cli(
            &with_config,
            &[
                "login",
                "--appliance",
                &api.addr,
                "--server-name",
                common::SERVER_NAME,
                "--fingerprint",
                fp,
                "--context",
                "lab",
            ],
            &format!("{}\n", tokens.admin.expose()),
        )
    };

    let wrong = format!("sha256:{}", "00".repeat(32));
    let (ok, out) = login(&wrong);
    assert!(!ok, "a wrong fingerprint must be refused: {out}");
    assert!(out.contains("does not present the CA"), "{out}");
    assert!(!Path::new(config).exists(), "nothing saved on a refusal");

    let (ok, out) = login(&fingerprint);
    assert!(ok, "{out}");
    assert!(out.contains("as lab-admin (admin)"), "{out}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(config).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the CLI config holds a token");

    let (ok, out) = cli(&with_config, &["whoami"], "");
    assert!(ok && out.contains("lab-admin (admin)"), "{out}");

    let rollback = fixtures().join("rollback/lab.kovl");
    let (ok, out) = cli(
        &with_config,
        &["overlay", "push", rollback.to_str().unwrap()],
        "",
    );
    assert!(!ok, "a rollback push must fail: {out}");
    assert!(out.contains("rollback refused"), "{out}");

    let (ok, out) = cli(
        &with_config,
        &["node", "assign", "52:54:00:6b:00:99", "gpu"],
        "",
    );
    assert!(!ok, "an undefined profile must be refused: {out}");
    assert!(out.contains("gpu"), "the refusal names the profile: {out}");

    let (ok, out) = cli(
        &with_config,
        &["node", "assign", "52:54:00:6b:00:99", "prod"],
        "",
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&with_config, &["node", "list", "--json"], "");
    assert!(ok, "{out}");
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let node = list["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["mac"] == "52:54:00:6b:00:99"))
        .unwrap_or_else(|| panic!("assigned node missing from the list: {list}"));
    assert_eq!(node["assignment"]["profile"], "prod", "{node}");

    // The environment alone, a read-only operator: reads, cannot assign.
    let env = [
        ("KINDLING_CONFIG", "/nonexistent/kindling.toml"),
        ("KINDLING_APPLIANCE", api.addr.as_str()),
        ("KINDLING_SERVER_NAME", common::SERVER_NAME),
        ("KINDLING_CA_FINGERPRINT", fingerprint.as_str()),
        ("KINDLING_TOKEN", tokens.read.expose()),
    ];
    let (ok, out) = cli(&env, &["node", "list"], "");
    assert!(ok && out.contains("52:54:00:6b:00:99"), "{out}");
    let (ok, out) = cli(&env, &["node", "unassign", "52:54:00:6b:00:99"], "");
    assert!(!ok && out.contains("403"), "{out}");
    let (_, out) = cli(&with_config, &["node", "list", "--json"], "");
    assert!(
        out.contains("\"prod\""),
        "the read token changed nothing: {out}"
    );

    // Plain HTTP is not a way in, even for the CLI.
    let (ok, out) = cli(
        &with_config,
        &[
            "node",
            "list",
            "--appliance",
            &format!("http://{}", api.addr),
        ],
        "",
    );
    assert!(!ok && out.contains("TLS only"), "{out}");

    // Re-arming a node's grant: each request counts, the PXE service finds
    // it in the data partition; a MAC nobody knows is refused.
    for generation in ["request 1", "request 2"] {
        let (ok, out) = cli(
            &with_config,
            &["node", "reprovision", "52:54:00:6b:00:10"],
            "",
        );
        assert!(ok, "{out}");
        assert!(out.contains(generation), "{out}");
    }
    let requests = file(&root.path("var/lib/kindling/inventory/reprovision.json"));
    assert_eq!(requests["requests"]["52:54:00:6b:00:10"]["generation"], 2);
    let (ok, out) = cli(
        &with_config,
        &["node", "reprovision", "02:00:00:00:00:77"],
        "",
    );
    assert!(
        !ok && out.contains("404") && out.contains("never seen"),
        "{out}"
    );
}
