//! `GET /v1/logs` and `GET /v1/logs/SERVICE` over real TLS against
//! `kindlingd api` on a throw-away appliance root. No init runs here, so
//! the API falls back to this boot's service table and the data
//! partition's `log/` directory, where the test writes lines the way init
//! does (`<RFC 3339> [<boot time>] <text>`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::appliance::{apply, start_api, Root};
use common::lab_tokens;
use std::io::Write;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

fn stored(at: SystemTime, text: &str) -> String {
    format!(
        "{} [    1.000000] {text}\n",
        humantime::format_rfc3339_micros(at)
    )
}

#[test]
fn logs_are_listed_read_since_and_followed() {
    let root = Root::new();
    apply(&root);
    let dir = root.path("var/lib/kindling/log");
    std::fs::create_dir_all(&dir).unwrap();
    let now = SystemTime::now();
    let hour_ago = now - Duration::from_secs(3600);
    std::fs::write(dir.join("api.log.1"), stored(hour_ago, "an hour ago")).unwrap();
    std::fs::write(dir.join("api.log"), stored(now, "just now")).unwrap();
    let api = start_api(&root);

    let (status, body) = api.call("GET", "/v1/logs", None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["storage"], "data", "{body}");
    assert!(body["reason"]
        .as_str()
        .unwrap()
        .contains("init is not answering"));
    let services = body["services"].as_array().unwrap();
    let api_log = services.iter().find(|s| s["service"] == "api").unwrap();
    assert_eq!(api_log["files"], 2, "{body}");
    let size = std::fs::metadata(dir.join("api.log")).unwrap().len()
        + std::fs::metadata(dir.join("api.log.1")).unwrap().len();
    assert_eq!(api_log["bytes"], size, "{body}");
    assert!(services
        .iter()
        .any(|s| s["service"] == "pxe" && s["files"] == 0));

    let (status, body) = api.call("GET", "/v1/logs/api", None);
    assert_eq!(status, 200, "{body}");
    let lines: Vec<&str> = body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{body}");
    assert!(lines[0].ends_with("an hour ago") && lines[1].ends_with("just now"));
    let (_, body) = api.call("GET", "/v1/logs/api?since=10m", None);
    assert_eq!(body["lines"].as_array().unwrap().len(), 1, "{body}");
    let (_, body) = api.call("GET", "/v1/logs/api?lines=1", None);
    assert_eq!(body["truncated"], true, "{body}");

    // Hostile: an unknown service, a name that walks out, a bad parameter.
    let (status, body) = api.call("GET", "/v1/logs/sshd", None);
    assert_eq!(status, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("\"sshd\""),
        "{body}"
    );
    let (status, body) = api.call("GET", "/v1/logs/..%2f..%2fetc", None);
    assert_eq!(status, 404, "{body}");
    let (status, body) = api.call("GET", "/v1/logs/api?since=yesterday", None);
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("parameter since:"),
        "{body}"
    );
    let reader = api.client_with(Some(lab_tokens().read));
    let (status, body) = common::call(&reader, "GET", "/v1/logs/api", None);
    assert_eq!(status, 200, "the read role reads logs: {body}");
    let anonymous = api.client_with(None);
    let (status, _) = common::call(&anonymous, "GET", "/v1/logs/api?follow=1", None);
    assert_eq!(status, 401);

    // Follow: the backlog, then a line appended after the stream began,
    // then one appended after init rotated the file.
    let (tx, rx) = mpsc::channel::<String>();
    let follower = api.client_with(Some(lab_tokens().read));
    std::thread::spawn(move || {
        let mut pending = String::new();
        let _ = follower.stream("/v1/logs/api?lines=1&follow=1", |chunk| {
            pending.push_str(&String::from_utf8_lossy(chunk));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                if tx.send(line.trim_end().to_string()).is_err() {
                    return false;
                }
            }
            true
        });
    });
    let next = |what: &str| {
        rx.recv_timeout(Duration::from_secs(10))
            .unwrap_or_else(|_| panic!("no line while waiting for {what}"))
    };
    assert!(next("the backlog").ends_with("just now"));
    let started = Instant::now();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("api.log"))
        .unwrap();
    file.write_all(stored(SystemTime::now(), "appended while followed").as_bytes())
        .unwrap();
    assert!(next("the appended line").ends_with("appended while followed"));
    let latency = started.elapsed();
    std::fs::rename(dir.join("api.log"), dir.join("api.log.1")).unwrap();
    std::fs::write(
        dir.join("api.log"),
        stored(SystemTime::now(), "after rotation"),
    )
    .unwrap();
    assert!(next("the line after rotation").ends_with("after rotation"));
    eprintln!(
        "a followed line arrived {} ms after it was written",
        latency.as_millis()
    );
}
