//! The status page in a real headless Chromium (Debian's package), against
//! a real `kindlingd api` on loopback fed by a real inventory file: the
//! browser trusts the appliance's CA (added to its NSS database, no
//! certificate errors ignored), logs in with the read-only token through
//! the page's form, shows the node's state change without a reload, logs
//! no console error and requests nothing but the appliance. A screenshot
//! is kept under `target/test-artifacts/`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::appliance::{apply, start_api, Root};
use common::cdp::Browser;
use common::{lab_tokens, SERVER_NAME};
use kindling_inventory::inventory::Inventory;
use kindling_inventory::policy::ProfilePolicy;
use kindling_site::MacAddr;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NODE: &str = "52:54:00:6b:00:42";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An NSS database under `home` that trusts the appliance's CA for TLS
/// servers, where Chromium on Linux looks for it.
fn trust_ca(home: &Path, ca_pem: &Path) {
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).unwrap();
    let db = format!("sql:{}", db.display());
    for args in [
        vec!["-N", "-d", &db, "--empty-password"],
        vec![
            "-A",
            "-d",
            &db,
            "-n",
            "kindling appliance CA (test)",
            "-t",
            "C,,",
            "-i",
            ca_pem.to_str().unwrap(),
        ],
    ] {
        let out = Command::new("certutil")
            .args(&args)
            .output()
            .expect("certutil (libnss3-tools, from tests/install-deps) runs");
        assert!(
            out.status.success(),
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir.canonicalize().unwrap()
}

#[test]
fn the_status_page_logs_in_and_follows_a_node_live_in_chromium() {
    let root = Root::new();
    apply(&root);
    let site = kindling_site::effective::load(&root.path("run/kindling/site.json")).unwrap();
    let (inventory, _) = Inventory::open(
        &root.path("var/lib/kindling"),
        ProfilePolicy::from_site(&site),
    );
    let mac: MacAddr = NODE.parse().unwrap();
    inventory.observe_dhcp(
        mac,
        Some("10.77.0.42".parse().unwrap()),
        None,
        kindling_api::nodes::Firmware::None,
        now(),
    );
    inventory.observe_boot_script(mac, "dev", now());
    inventory.flush_if_dirty().unwrap();
    let api = start_api(&root);
    let port = api.addr.rsplit(':').next().unwrap();
    let origin = format!("https://{SERVER_NAME}:{port}");

    let home = tempfile::tempdir().unwrap();
    trust_ca(home.path(), &api.run_dir.join("api-tls/ca.pem"));
    let mut browser = Browser::launch(home.path(), SERVER_NAME, "127.0.0.1", None);
    let page = browser.open_page();
    browser.call(
        Some(&page),
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
    );

    // Without a session: sent to the login form (over TLS the browser trusts).
    browser.call(
        Some(&page),
        "Page.navigate",
        json!({"url": format!("{origin}/")}),
    );
    browser.wait_loads(1);
    let form = browser.eval(
        &page,
        "!!document.querySelector('form[action=\"/ui/login\"]')",
    );
    assert_eq!(form, json!(true), "no login form at {origin}/");
    assert_eq!(browser.eval(&page, "location.pathname"), json!("/ui/login"));
    let security = browser.eval(&page, "location.protocol + ' ' + window.isSecureContext");
    assert_eq!(security, json!("https: true"));

    // The read-only operator logs in by the form, as a person would.
    let token = lab_tokens().read;
    browser.eval(
        &page,
        &format!(
            "document.querySelector('input[name=token]').value = {}; \
             document.querySelector('form').submit(); true",
            json!(token.expose())
        ),
    );
    browser.wait_loads(2);
    let state_of =
        format!("(document.querySelector('.node-state[data-mac=\"{NODE}\"]') || {{}}).textContent");
    assert_eq!(browser.eval(&page, "location.pathname"), json!("/"));
    assert_eq!(browser.eval(&page, &state_of), json!("booting"));
    assert_eq!(
        browser.eval(
            &page,
            "document.querySelectorAll('button[data-path]').length"
        ),
        json!(0),
        "the read role is offered actions"
    );
    browser.eval(&page, "window.kindlingMarker = 42; true");

    // The node installs: the page shows it without being reloaded.
    inventory
        .record_event(mac, "installed", serde_json::Value::Null, now())
        .unwrap();
    inventory.flush_if_dirty().unwrap();
    let changed = Instant::now();
    let deadline = changed + Duration::from_secs(15);
    loop {
        if browser.eval(&page, &state_of) == json!("installed") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the page never showed `installed`"
        );
        browser.pump(Duration::from_millis(200));
    }
    let shown_after = changed.elapsed();
    assert_eq!(
        browser.eval(&page, "window.kindlingMarker"),
        json!(42),
        "the page was reloaded"
    );
    assert_eq!(browser.count("Page.loadEventFired"), 2, "a reload happened");

    let shot = browser.call(
        Some(&page),
        "Page.captureScreenshot",
        json!({"format": "png", "captureBeyondViewport": true}),
    );
    use base64::Engine as _;
    let png = base64::engine::general_purpose::STANDARD
        .decode(shot["data"].as_str().unwrap())
        .unwrap();
    let path = artifacts().join("status-page.png");
    std::fs::write(&path, &png).unwrap();
    browser.pump(Duration::from_millis(500));

    // No console error, no uncaught exception, no CSP violation.
    let errors: Vec<_> = browser
        .events
        .iter()
        .filter(|e| {
            e["method"] == "Runtime.exceptionThrown"
                || (e["method"] == "Runtime.consoleAPICalled"
                    && matches!(e["params"]["type"].as_str(), Some("error" | "assert")))
                || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["level"] == "error")
        })
        .collect();
    assert!(errors.is_empty(), "console errors: {errors:#?}");

    // Every request went to the appliance; the page polled its fragment.
    let requests: Vec<String> = browser
        .events
        .iter()
        .filter(|e| e["method"] == "Network.requestWillBeSent")
        .map(|e| e["params"]["request"]["url"].as_str().unwrap().to_string())
        .collect();
    let foreign: Vec<_> = requests
        .iter()
        .filter(|u| !u.starts_with(&format!("{origin}/")))
        .collect();
    assert!(foreign.is_empty(), "requests elsewhere: {foreign:?}");
    let polls = requests
        .iter()
        .filter(|u| u.ends_with("/ui/fragment"))
        .count();
    assert!(polls >= 1, "no live refresh: {requests:?}");

    // The page's transfer size: the document after login (it loads nothing else).
    let page_request = browser
        .events
        .iter()
        .filter(|e| e["method"] == "Network.requestWillBeSent")
        .filter(|e| e["params"]["request"]["url"] == format!("{origin}/"))
        .rfind(|e| e["params"]["request"]["method"] == "GET")
        .map(|e| e["params"]["requestId"].clone())
        .unwrap();
    let transferred = browser
        .events
        .iter()
        .find(|e| {
            e["method"] == "Network.loadingFinished" && e["params"]["requestId"] == page_request
        })
        .and_then(|e| e["params"]["encodedDataLength"].as_f64())
        .unwrap();
    eprintln!(
        "status page in chromium: state change shown {shown_after:.1?} after the inventory \
         changed, {} requests (all to the appliance, {polls} fragment polls), page transfer \
         {transferred} bytes, screenshot {}",
        requests.len(),
        path.display()
    );
}
