//! The status page in a real headless Chromium on the lab's LAN (inside the
//! LAN namespace, like an operator's browser): it trusts the appliance's CA
//! (the one the console's fingerprint pins, added to Chromium's NSS
//! database), logs in with the read-only token through the page's form
//! before a node boots, and must then show that node's state change without
//! a reload, with no console error and no request anywhere but the
//! appliance. A screenshot is kept in `build/test-artifacts/`.

use crate::cdp::Browser;
use kindling_lab::api::{lab_token, LabOperator};
use kindling_lab::Lab;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The name the lab site's API certificate carries.
const SERVER_NAME: &str = "kindling-lab.lab.kindling.internal";
const LAN_ADDRESS: &str = "192.168.100.1";
const ORIGIN: &str = "https://kindling-lab.lab.kindling.internal:9000";

pub struct PageWatch {
    browser: Browser,
    page: String,
    state_of: String,
}

fn certutil(args: &[&str]) -> Result<(), String> {
    let out = Command::new("certutil")
        .args(args)
        .output()
        .map_err(|e| format!("certutil (libnss3-tools): {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "certutil {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// An NSS database under `home` that trusts the CA the lab's pinned client
/// matched on the appliance.
fn trust_appliance_ca(lab: &Lab, home: &Path) -> Result<(), String> {
    let reader = lab
        .api_client_from_lan(LabOperator::Read)
        .map_err(|e| e.to_string())?;
    let (code, _) =
        kindling_lab::api::call(&reader, "GET", "/v1/whoami", None).map_err(|e| e.to_string())?;
    if code != 200 {
        return Err(format!("GET /v1/whoami as the read operator: {code}"));
    }
    let ca = reader
        .matched_ca()
        .ok_or("the pinned client matched no CA")?;
    let der = home.join("appliance-ca.der");
    std::fs::write(&der, ca.as_ref()).map_err(|e| e.to_string())?;
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).map_err(|e| e.to_string())?;
    let db = format!("sql:{}", db.display());
    certutil(&["-N", "-d", &db, "--empty-password"])?;
    let der = der.display().to_string();
    certutil(&[
        "-A",
        "-d",
        &db,
        "-n",
        "kindling lab appliance CA",
        "-t",
        "C,,",
        "-i",
        &der,
    ])
}

impl PageWatch {
    /// Chromium in the LAN namespace, logged in as the read-only operator,
    /// showing `mac`'s row.
    pub fn start(lab: &Lab, mac: &str) -> Result<Self, String> {
        let home = lab.run_dir().join("chromium");
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        trust_appliance_ca(lab, &home)?;
        let mut browser = Browser::launch(&home, SERVER_NAME, LAN_ADDRESS, Some(&lab.names().lan));
        let page = browser.open_page();
        browser.call(
            Some(&page),
            "Emulation.setDeviceMetricsOverride",
            json!({"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": false}),
        );
        browser.call(
            Some(&page),
            "Page.navigate",
            json!({"url": format!("{ORIGIN}/")}),
        );
        browser.wait_loads(1);
        if browser.eval(&page, "location.pathname") != json!("/ui/login") {
            return Err("the page did not send a browser without a session to /ui/login".into());
        }
        let token = lab_token(LabOperator::Read);
        browser.eval(
            &page,
            &format!(
                "document.querySelector('input[name=token]').value = {}; \
                 document.querySelector('form').submit(); true",
                json!(token.expose())
            ),
        );
        browser.wait_loads(2);
        let state_of = format!(
            "(document.querySelector('.node-state[data-mac=\"{mac}\"]') || {{textContent: null}}).textContent"
        );
        let before = browser.eval(&page, &state_of);
        if before.is_null() {
            return Err(format!("the page after login has no row for {mac}"));
        }
        browser.eval(&page, "window.kindlingMarker = 42; true");
        eprintln!("[node_pxe] status page in chromium (LAN): {mac} shows {before} before it boots");
        Ok(Self {
            browser,
            page,
            state_of,
        })
    }

    /// Waits until the page shows `state` for the node, then checks that it
    /// was never reloaded, logged no error and asked nothing elsewhere;
    /// keeps a screenshot.
    pub fn expect_state(mut self, state: &str, limit: Duration) -> Result<PathBuf, String> {
        let deadline = Instant::now() + limit;
        while self.browser.eval(&self.page, &self.state_of) != json!(state) {
            if Instant::now() > deadline {
                let shown = self.browser.eval(&self.page, &self.state_of);
                return Err(format!("the status page still shows {shown}, not {state}"));
            }
            self.browser.pump(Duration::from_millis(250));
        }
        if self.browser.eval(&self.page, "window.kindlingMarker") != json!(42)
            || self.browser.count("Page.loadEventFired") != 2
        {
            return Err("the status page was reloaded".into());
        }
        let shot = self.browser.call(
            Some(&self.page),
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().unwrap_or_default())
            .map_err(|e| e.to_string())?;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/test-artifacts");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let path = dir.join("lab-status-page.png");
        std::fs::write(&path, png).map_err(|e| e.to_string())?;
        self.browser.pump(Duration::from_millis(300));
        let events = &self.browser.events;
        let errors: Vec<_> = events
            .iter()
            .filter(|e| {
                e["method"] == "Runtime.exceptionThrown"
                    || (e["method"] == "Runtime.consoleAPICalled"
                        && matches!(e["params"]["type"].as_str(), Some("error" | "assert")))
                    || (e["method"] == "Log.entryAdded" && e["params"]["entry"]["level"] == "error")
            })
            .collect();
        if !errors.is_empty() {
            return Err(format!("console errors on the status page: {errors:?}"));
        }
        let requests: Vec<&str> = events
            .iter()
            .filter(|e| e["method"] == "Network.requestWillBeSent")
            .filter_map(|e| e["params"]["request"]["url"].as_str())
            .collect();
        let foreign: Vec<_> = requests
            .iter()
            .filter(|u| !u.starts_with(&format!("{ORIGIN}/")))
            .collect();
        if !foreign.is_empty() {
            return Err(format!("the status page asked elsewhere: {foreign:?}"));
        }
        eprintln!(
            "[node_pxe] status page in chromium (LAN): shows {state} live ({} requests, all to the appliance); screenshot {}",
            requests.len(),
            path.display()
        );
        Ok(path)
    }
}
