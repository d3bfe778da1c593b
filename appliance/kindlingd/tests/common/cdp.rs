//! A headless Chromium driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: NUL-terminated JSON on fds 3 and 4), for
//! the status page's browser test. No websocket, no crate: the protocol's
//! few commands the test needs, and every event kept for the assertions.
//! Also used by the QEMU lab's node_pxe scenario (tests/scenarios).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

pub struct Browser {
    child: Child,
    to_browser: ChildStdin,
    from_browser: Receiver<Value>,
    next_id: u64,
    /// Every event received so far, in order.
    pub events: Vec<Value>,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Browser {
    /// Chromium, headless, with its profile and NSS database under `home`
    /// (whose `.pki/nssdb` trusts what the test put there), resolving
    /// `host` to `address` and no other name, inside network namespace
    /// `netns` when given.
    pub fn launch(home: &Path, host: &str, address: &str, netns: Option<&str>) -> Self {
        let profile = home.join("profile");
        std::fs::create_dir_all(&profile).unwrap();
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "sh"]);
                c
            }
            None => Command::new("sh"),
        };
        // fds 3 and 4 are the protocol's pipe: the shell moves stdin/stdout there.
        let mut child = command
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg("chromium")
            .args([
                "--headless=new",
                "--no-sandbox",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-default-apps",
                "--disable-sync",
                "--disable-extensions",
                "--disable-gpu",
                "--no-proxy-server",
                "--window-size=1280,1000",
                &format!("--host-resolver-rules=MAP {host} {address}, MAP * ~NOTFOUND"),
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .env("HOME", home)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(home.join("chromium.log")).unwrap())
            .spawn()
            .expect("chromium (Debian's package, from tests/install-deps) runs");
        let to_browser = child.stdin.take().unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = channel();
        std::thread::spawn(move || loop {
            let mut message = Vec::new();
            match reader.read_until(0, &mut message) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    message.pop();
                    if let Ok(value) = serde_json::from_slice::<Value>(&message) {
                        if tx.send(value).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Self {
            child,
            to_browser,
            from_browser: rx,
            next_id: 0,
            events: Vec::new(),
        }
    }

    /// Sends `method` (to the page session `session`, or the browser) and
    /// waits for its result, keeping the events that arrive meanwhile.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to_browser.write_all(&bytes).unwrap();
        self.to_browser.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(reply) if reply["id"] == id => {
                    if !reply["error"].is_null() {
                        panic!("{method}: {}", reply["error"]);
                    }
                    return reply["result"].clone();
                }
                Ok(event) => self.events.push(event),
                Err(RecvTimeoutError::Timeout) => panic!("{method}: no answer in 30 s"),
                Err(RecvTimeoutError::Disconnected) => panic!("{method}: chromium exited"),
            }
        }
    }

    /// Keeps events for `wait`.
    pub fn pump(&mut self, wait: Duration) {
        let deadline = Instant::now() + wait;
        while let Ok(event) = self
            .from_browser
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.events.push(event);
        }
    }

    /// A new page, attached: its session id.
    pub fn open_page(&mut self) -> String {
        let target = self.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let attached = self.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        let session = attached["sessionId"].as_str().unwrap().to_string();
        for domain in [
            "Page.enable",
            "Runtime.enable",
            "Log.enable",
            "Network.enable",
        ] {
            self.call(Some(&session), domain, json!({}));
        }
        session
    }

    /// Waits until the page's `load` event number `n` (counted from the
    /// start) has fired.
    pub fn wait_loads(&mut self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.count("Page.loadEventFired") < n {
            assert!(Instant::now() < deadline, "page load {n} did not happen");
            self.pump(Duration::from_millis(100));
        }
    }

    pub fn count(&self, method: &str) -> usize {
        self.events.iter().filter(|e| e["method"] == method).count()
    }

    /// `expression`'s value in the page (awaited if a promise).
    pub fn eval(&mut self, session: &str, expression: &str) -> Value {
        let result = self.call(
            Some(session),
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if !result["exceptionDetails"].is_null() {
            panic!("{expression}: {}", result["exceptionDetails"]);
        }
        result["result"]["value"].clone()
    }
}
