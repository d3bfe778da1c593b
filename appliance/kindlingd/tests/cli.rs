//! The operator's CLI (`kindling`) against a real `kindlingd api` on
//! loopback: its tables, that `--json` is JSON, the named contexts of its
//! config file, and its documented exit codes (3 unreachable or wrong pin,
//! 4 no token or role too low, 5 unknown node).
//!
//! `kindling` is another package's binary: the test finds it beside
//! `kindlingd` in the same target directory (`cargo test --workspace`
//! builds both; alone, run `cargo build -p kindling-image` first).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::appliance::{apply, start_api, Root, Server, KINDLINGD};
use common::{lab_tokens, SERVER_NAME};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn kindling_bin() -> PathBuf {
    let bin = Path::new(KINDLINGD).with_file_name("kindling");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build -p kindling-image`",
        bin.display()
    );
    bin
}

/// One CLI run with only the environment given (nothing of the caller's).
fn kindling(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(kindling_bin());
    cmd.args(args).env_clear().env("PATH", "/usr/bin:/bin");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The environment of an operator of `api` with `token` (none: no token),
/// and a config file that does not exist.
fn operator(api: &Server, token: Option<String>, config: &Path) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("KINDLING_CONFIG", config.display().to_string()),
        ("KINDLING_APPLIANCE", api.addr.clone()),
        ("KINDLING_SERVER_NAME", SERVER_NAME.to_string()),
        (
            "KINDLING_CA_FILE",
            api.run_dir.join("api-tls/ca.pem").display().to_string(),
        ),
    ];
    if let Some(token) = token {
        env.push(("KINDLING_TOKEN", token));
    }
    env
}

/// A configured appliance with its API, a scratch directory, and the CLI's
/// environment as the lab's admin and read operators (no config file).
struct CliLab {
    root: Root,
    api: Server,
    dir: tempfile::TempDir,
    admin: Vec<(&'static str, String)>,
    read: Vec<(&'static str, String)>,
}

fn cli_lab() -> CliLab {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let tokens = lab_tokens();
    let dir = tempfile::tempdir().unwrap();
    let none = dir.path().join("absent.toml");
    let admin = operator(&api, Some(tokens.admin.expose().to_string()), &none);
    let read = operator(&api, Some(tokens.read.expose().to_string()), &none);
    CliLab {
        root,
        api,
        dir,
        admin,
        read,
    }
}

#[test]
fn tables_json_and_exit_codes_against_a_real_api() {
    let CliLab {
        root,
        api,
        dir,
        admin,
        read,
    } = cli_lab();

    // Tables by default.
    let out = kindling(&["node", "list"], &admin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["MAC", "IP", "STATE", "PROFILE", "SOURCE", "FIRMWARE", "TAGS", "GRANT", "REASON"]
    );
    let dev = lines
        .find(|l| l.starts_with("52:54:00:6b:00:10"))
        .unwrap_or_else(|| panic!("the lab's reservation is not listed:\n{table}"));
    assert_eq!(
        dev.split_whitespace().collect::<Vec<_>>(),
        [
            "52:54:00:6b:00:10",
            "-",
            "-",
            "dev",
            "overlay",
            "-",
            "-",
            "-",
            "-"
        ],
        "{table}"
    );

    let out = kindling(&["status"], &read);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let summary = String::from_utf8_lossy(&out.stdout);
    let pem = std::fs::read_to_string(api.run_dir.join("api-tls/ca.pem")).unwrap();
    let fingerprint = match kindling_api_client::TrustAnchor::from_pem(&pem).unwrap() {
        kindling_api_client::TrustAnchor::Ca(der) => {
            kindling_api_client::Fingerprint::of_der(&der).to_string()
        }
        other => panic!("{other:?}"),
    };
    assert!(
        summary.contains(&format!("api CA     {fingerprint}")),
        "{summary}"
    );
    // No init runs here: the summary says so.
    assert!(summary.contains("state      unknown:"), "{summary}");

    let out = kindling(&["overlay", "list"], &read);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let overlays = String::from_utf8_lossy(&out.stdout);
    assert!(
        overlays
            .lines()
            .any(|l| l.starts_with("lab ") && l.ends_with("accepted")),
        "{overlays}"
    );

    // --json on every read command is the API's JSON.
    for args in [
        &["node", "list", "--json"][..],
        &["node", "show", "52:54:00:6b:00:10", "--json"],
        &["status", "--json"],
        &["overlay", "list", "--json"],
        &["stack", "status", "--json"],
        &["whoami", "--json"],
    ] {
        let out = kindling(args, &read);
        if args[0] == "stack" && out.status.code() == Some(5) {
            continue; // no stack configured in this fixture: 404 is its answer
        }
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{args:?} --json is not JSON ({e}): {}", text(&out)));
        assert!(json.is_object(), "{args:?}: {json}");
    }

    // 5: an unknown node, to show and to forget; nothing is recorded.
    let stranger = "02:00:00:00:00:01";
    for args in [["node", "show", stranger], ["node", "forget", stranger]] {
        let out = kindling(&args, &admin);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {}", text(&out));
        assert!(text(&out).contains("404"), "{}", text(&out));
    }
    let forget_file = root.path("var/lib/kindling/inventory/forget.json");
    assert!(!forget_file.exists(), "a refused forget was recorded");

    // 4: no token; a read-only operator asking to forget.
    let anonymous = operator(&api, None, &dir.path().join("absent.toml"));
    let out = kindling(&["node", "list"], &anonymous);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("401"), "{}", text(&out));
    let out = kindling(&["node", "forget", "52:54:00:6b:00:10"], &read);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("403"), "{}", text(&out));
    assert!(!forget_file.exists(), "a forbidden forget was recorded");

    // 3: nothing listens there; something listens but with another CA.
    let mut nowhere = admin.clone();
    nowhere[1].1 = format!("127.0.0.1:{}", common::free_port());
    let out = kindling(&["status"], &nowhere);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let mut wrong_pin: Vec<(&str, String)> = admin
        .iter()
        .filter(|(k, _)| *k != "KINDLING_CA_FILE")
        .cloned()
        .collect();
    wrong_pin.push((
        "KINDLING_CA_FINGERPRINT",
        format!("sha256:{}", "00".repeat(32)),
    ));
    let out = kindling(&["status"], &wrong_pin);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));

    // 2: a malformed MAC never reaches the appliance.
    let out = kindling(&["node", "show", "not-a-mac"], &admin);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // Tags: set by the admin, shown by list and show, removed by untag;
    // refused for a read-only operator and for a bad key, naming it.
    let assignments = root.path("var/lib/kindling/inventory/assignments.json");
    let untouched = std::fs::read(&assignments).ok();
    let tagged = "52:54:00:6b:00:77";
    let out = kindling(&["node", "tag", tagged, "rack=r12"], &read);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(text(&out).contains("403"), "{}", text(&out));
    assert_eq!(
        std::fs::read(&assignments).ok(),
        untouched,
        "a forbidden tag was recorded"
    );
    let out = kindling(&["node", "tag", tagged, "Rack=r12"], &admin);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("400"), "{}", text(&out));
    assert!(text(&out).contains("tag key \"Rack\""), "{}", text(&out));
    let out = kindling(&["node", "tag", tagged, "rack"], &admin);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("KEY=VALUE"), "{}", text(&out));
    assert_eq!(
        std::fs::read(&assignments).ok(),
        untouched,
        "a refused tag was recorded"
    );
    let out = kindling(&["node", "tag", tagged, "rack=r12", "gpu=a100"], &admin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tags gpu=a100,rack=r12"),
        "{}",
        text(&out)
    );
    let out = kindling(&["node", "list"], &read);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    let row = listed
        .lines()
        .find(|l| l.starts_with(tagged))
        .unwrap_or_else(|| panic!("a tagged MAC is listed as expected:\n{listed}"));
    assert!(row.contains("gpu=a100,rack=r12"), "{listed}");
    let out = kindling(&["node", "untag", tagged, "gpu"], &admin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = kindling(&["node", "show", tagged], &read);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("tags") && l.ends_with("rack=r12")),
        "{shown}"
    );

    // The admin forgets a reserved node: recorded, and said to stay expected.
    let out = kindling(&["node", "forget", "52:54:00:6b:00:10"], &admin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("stays listed as expected"),
        "{}",
        text(&out)
    );
    let recorded: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&forget_file).unwrap()).unwrap();
    assert_eq!(recorded["requests"]["52:54:00:6b:00:10"]["count"], 1);
}

#[test]
fn named_contexts_choose_the_appliance() {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    let ca_pem = std::fs::read_to_string(api.run_dir.join("api-tls/ca.pem")).unwrap();
    let file = toml::toml! {
        current = "broken"
        [contexts.lab]
        appliance = (api.addr.clone())
        server_name = SERVER_NAME
        ca_pem = (ca_pem)
        token = (lab_tokens().read.expose().to_string())
        [contexts.broken]
        appliance = (format!("127.0.0.1:{}", common::free_port()))
        ca_fingerprint = (format!("sha256:{}", "ab".repeat(32)))
    };
    std::fs::write(&config, file.to_string()).unwrap();
    let env = [("KINDLING_CONFIG", config.display().to_string())];

    let out = kindling(&["context", "list"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let listed = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = listed
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[1][..2], ["*", "broken"], "{listed}");
    // The lab context holds only the CA certificate: its fingerprint is shown.
    assert_eq!(rows[2][0], "lab", "{listed}");
    assert!(rows[2][2].starts_with("sha256:"), "{listed}");
    assert!(!listed.contains("kt1_"), "a token was printed: {listed}");
    let out = kindling(&["context", "list", "--json"], &env);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2, "{json}");

    // The current context is unreachable; --context picks the other.
    assert_eq!(kindling(&["whoami"], &env).status.code(), Some(3));
    let out = kindling(&["whoami", "--context", "lab"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("(read)"));

    let out = kindling(&["context", "use", "lab"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        kindling(&["services", "--json"], &env).status.code(),
        Some(1)
    );
    assert_eq!(kindling(&["node", "list"], &env).status.code(), Some(0));
    assert_eq!(
        kindling(&["context", "remove", "nope"], &env).status.code(),
        Some(5)
    );
    assert_eq!(
        kindling(&["node", "list", "--context", "nope"], &env)
            .status
            .code(),
        Some(2)
    );
    let out = kindling(&["context", "remove", "broken"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let left: toml::Table = toml::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(left["current"].as_str(), Some("lab"));
    assert!(left["contexts"].get("broken").is_none(), "{left}");
}

/// `kindling update poll` asks the agent (here the test plays it: it takes
/// the request from the spool and writes its status as the agent does)
/// and ends with what the check found; `update status` shows the poll.
#[test]
fn update_poll_follows_the_agent_s_check() {
    let root = Root::new();
    apply(&root);
    let spool = root.path("var/lib/kindling/update-spool");
    std::fs::create_dir_all(&spool).unwrap();
    std::fs::create_dir_all(root.path("run/kindling/status")).unwrap();
    let status_file = root.path("run/kindling/status/update.json");
    std::fs::write(
        &status_file,
        r#"{"mode":"blessed","detail":"healthy","entry":"kindling-1.efi","version":"1","floor":"1","refused":[]}"#,
    )
    .unwrap();
    let site_json = root.path("run/kindling/site.json");
    let mut site: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&site_json).unwrap()).unwrap();
    site["update"] = serde_json::json!({
        "channel": "prod", "url": "http://127.0.0.1:9/", "check_every": "6h",
        "window": "Sun 02:00-04:00"
    });
    std::fs::write(&site_json, serde_json::to_vec(&site).unwrap()).unwrap();
    let api = start_api(&root);
    let dir = tempfile::tempdir().unwrap();
    let admin = operator(
        &api,
        Some(lab_tokens().admin.expose().to_string()),
        &dir.path().join("absent.toml"),
    );

    let agent = std::thread::spawn(move || {
        let request = spool.join("poll-request");
        for _ in 0..200 {
            if let Ok(word) = std::fs::read_to_string(&request) {
                std::fs::remove_file(&request).unwrap();
                let status = serde_json::json!({
                    "mode": "blessed", "detail": "healthy", "entry": "kindling-1.efi",
                    "version": "1", "floor": "1", "refused": [],
                    "poll": {
                        "channel": "prod", "url": "http://127.0.0.1:9/",
                        "window": "Sun 02:00-04:00", "state": "waiting",
                        "detail": "2 offered; waiting for the maintenance window Sun 02:00-04:00 (UTC), which opens at 2026-12-13T02:00:00Z",
                        "apply_now": false, "checked_at": 1_796_600_000u64,
                        "next_check": 1_796_621_600u64, "sequence": 4, "offered": "2",
                        "window_opens": 1_797_127_200u64
                    }
                });
                std::fs::write(&status_file, serde_json::to_vec(&status).unwrap()).unwrap();
                return word;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("no poll request came");
    });
    let out = kindling(&["update", "poll", "--wait", "30s"], &admin);
    assert_eq!(agent.join().unwrap(), "check");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("asked the update agent to check channel prod"),
        "{said}"
    );
    assert!(said.contains("waiting after"), "{said}");
    assert!(said.contains("opens at 2026-12-13T02:00:00Z"), "{said}");

    let out = kindling(&["update", "status"], &admin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("channel:     prod at http://127.0.0.1:9/ (window Sun 02:00-04:00 UTC)"),
        "{said}"
    );
    assert!(said.contains("poll:        waiting"), "{said}");
    assert!(said.contains("index #4"), "{said}");
}

/// `kindling artifact push|list|delete`: the admin pushes (the hash stated
/// from the file), pushing again changes nothing, the read role lists but
/// may not push or delete (exit 4), an unknown hash is exit 5.
/// `kindling artifact import-iso` on a small ISO laid out as Ubuntu's live
/// server (built here with xorriso, which the importer needs too): the
/// kernel, initrd and squashfs layers (and with `--with-iso` the ISO) are
/// pushed under the ISO's name, the profile section names them by hash,
/// and a file that is no ISO is refused naming it.
#[test]
fn artifact_import_iso_pushes_an_installers_boot_files() {
    if Command::new("xorriso").arg("-version").output().is_err() {
        eprintln!("skipped: xorriso is not installed (tests/install-deps installs it)");
        return;
    }
    let CliLab {
        root: _root,
        api: _api,
        dir,
        admin,
        read,
    } = cli_lab();
    let tree = dir.path().join("tree");
    let files = [
        "casper/vmlinuz",
        "casper/initrd",
        "casper/ubuntu-server-minimal.squashfs",
        "casper/ubuntu-server-minimal.ubuntu-server.squashfs",
        "casper/filesystem.manifest",
        "boot/grub/grub.cfg",
    ];
    for f in files {
        let path = tree.join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, format!("bytes of {f}")).unwrap();
    }
    let iso = dir.path().join("ubuntu-test-live-server.iso");
    let built = Command::new("xorriso")
        .args(["-as", "mkisofs", "-r", "-J", "-o"])
        .arg(&iso)
        .arg(&tree)
        .output()
        .unwrap();
    assert!(built.status.success(), "{built:?}");
    let hex = |f: &str| {
        format!(
            "{:x}",
            <sha2::Sha256 as sha2::Digest>::digest(format!("bytes of {f}"))
        )
    };
    let iso = iso.display().to_string();

    let out = kindling(&["artifact", "import-iso", &iso], &read);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let iso_hex = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(std::fs::read(&iso).unwrap())
    );
    let out = kindling(&["artifact", "import-iso", &iso, "--with-iso"], &admin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Ubuntu live server"), "{said}");
    for (name, file) in [
        ("ubuntu-test-live-server-vmlinuz", "casper/vmlinuz"),
        ("ubuntu-test-live-server-initrd", "casper/initrd"),
        (
            "ubuntu-test-live-server-ubuntu-server-minimal.squashfs",
            "casper/ubuntu-server-minimal.squashfs",
        ),
    ] {
        assert!(said.contains(name) && said.contains(&hex(file)), "{said}");
    }
    assert!(!said.contains("manifest"), "{said}");
    assert!(
        said.contains("kind = \"ubuntu-autoinstall\"")
            && said.contains(&format!("kernel = \"sha256/{}\"", hex("casper/vmlinuz")))
            && said.contains(&format!("initrd = \"sha256/{}\"", hex("casper/initrd")))
            && said.contains(&format!("iso = \"sha256/{iso_hex}\"")),
        "{said}"
    );

    let out = kindling(&["artifact", "list", "--json"], &read);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut names: Vec<&str> = json["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "ubuntu-test-live-server-initrd",
            "ubuntu-test-live-server-ubuntu-server-minimal.squashfs",
            "ubuntu-test-live-server-ubuntu-server-minimal.ubuntu-server.squashfs",
            "ubuntu-test-live-server-vmlinuz",
            "ubuntu-test-live-server.iso",
        ]
    );

    // Not an ISO: refused before anything is pushed, naming the file.
    let fake = dir.path().join("fake.iso");
    std::fs::write(&fake, vec![0x55u8; 100_000]).unwrap();
    let out = kindling(
        &["artifact", "import-iso", &fake.display().to_string()],
        &admin,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fake.iso: no file in it"),
        "{}",
        text(&out)
    );
}

#[test]
fn artifact_push_list_and_delete() {
    let CliLab {
        root: _root,
        api: _api,
        dir,
        admin,
        read,
    } = cli_lab();
    let file = dir.path().join("netinst 12.iso");
    std::fs::write(&file, vec![7u8; 300_000]).unwrap();
    let file = file.display().to_string();
    let hex = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(vec![7u8; 300_000])
    );

    let out = kindling(&["artifact", "push", &file], &read);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = kindling(&["artifact", "push", &file], &admin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("stored netinst 12.iso (300000 bytes") && said.contains(&hex),
        "{said}"
    );
    assert!(said.contains(&format!("/by-hash/sha256/{hex}")), "{said}");
    let out = kindling(&["artifact", "push", &file], &admin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("already stored"),
        "{}",
        text(&out)
    );

    let out = kindling(&["artifact", "list"], &read);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("SHA256"), "{table}");
    assert!(
        table.contains(&hex) && table.contains("netinst 12.iso") && table.contains("lab-admin"),
        "{table}"
    );
    let out = kindling(&["artifact", "list", "--json"], &read);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["artifacts"][0]["sha256"], hex.as_str());

    let out = kindling(&["artifact", "delete", &hex], &read);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    let out = kindling(&["artifact", "delete", &hex], &admin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted sha256"),
        "{}",
        text(&out)
    );
    let out = kindling(&["artifact", "delete", &hex], &admin);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let out = kindling(&["artifact", "delete", "nothex"], &admin);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = kindling(&["artifact", "list"], &admin);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("no artifacts"),
        "{}",
        text(&out)
    );
}

#[test]
fn overlay_build_pins_the_pushed_artifacts_profiles_name() {
    let CliLab {
        root: _root,
        api: _api,
        dir,
        admin,
        read,
    } = cli_lab();
    let lab = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../overlays/lab");
    let lab = lab.display().to_string();
    let kernel = dir.path().join("kernel-6.12");
    std::fs::write(&kernel, b"a kernel").unwrap();
    let hex = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(b"a kernel"));
    let kernel = kernel.display().to_string();
    let out = kindling(&["artifact", "push", &kernel, "--name", "vmlinuz"], &admin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));

    // Asked of the appliance.
    let kovl = dir.path().join("lab.kovl").display().to_string();
    let build = |extra: &[&str], env: &[(&str, String)]| {
        let mut args = vec![
            "overlay",
            "build",
            &lab,
            "--name",
            "lab",
            "--version",
            "9",
            "--unsigned",
            "--out",
            &kovl,
        ];
        args.extend_from_slice(extra);
        kindling(&args, env)
    };
    let out = build(&["--resolve-artifacts"], &read);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    for profile in ["dev", "prod"] {
        assert!(
            said.contains(&format!(
                "profile {profile}: kernel vmlinuz -> sha256/{hex}\n"
            )),
            "{said}"
        );
        assert!(
            said.contains(&format!(
                "profile {profile}: initrd[0] lab-node.cpio.zst is not a pushed artifact; it stays a file name"
            )),
            "{said}"
        );
    }
    let out = kindling(&["overlay", "show", &kovl], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        shown.contains(&format!(
            "boot artifacts:\n  profile dev: kernel sha256/{hex} (pinned: a pushed artifact)\n  profile dev: initrd[0] lab-node.cpio.zst (file name)\n"
        )),
        "{shown}"
    );

    // From a catalog file, as `artifact list --json` prints it.
    let out = kindling(&["artifact", "list", "--json"], &read);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let catalog = dir.path().join("artifacts.json");
    std::fs::write(&catalog, &out.stdout).unwrap();
    let catalog = catalog.display().to_string();
    let out = build(&["--artifacts", &catalog], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("profile dev: kernel vmlinuz -> sha256/{hex}\n")),
        "{}",
        text(&out)
    );

    // The same name pushed with other bytes: the build names both.
    let other = dir.path().join("kernel-6.13");
    std::fs::write(&other, b"another kernel").unwrap();
    let other_hex = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(b"another kernel")
    );
    let other = other.display().to_string();
    let out = kindling(&["artifact", "push", &other, "--name", "vmlinuz"], &admin);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = build(&["--resolve-artifacts"], &read);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("boot.kernel names \"vmlinuz\"")
            && err.contains(&format!("sha256/{hex}"))
            && err.contains(&format!("sha256/{other_hex}")),
        "{err}"
    );

    // Hostile input: a catalog that is not one, a target without the flag.
    std::fs::write(&catalog, b"{\"artifacts\": 3}").unwrap();
    let out = build(&["--artifacts", &catalog], &[]);
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("is not `kindling artifact list --json` output"),
        "{}",
        text(&out)
    );
    let out = build(&["--context", "lab"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
