//! `POST /v1/update` over real TLS on loopback: the admin's push lands
//! whole in the update spool (the hand-off to the update agent) and is
//! answered 202 with its id; everyone else, and everything that is not a
//! bundle, is refused with a clear error and nothing is written.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::appliance::{apply, start_api, Root, Server};
use common::{lab_tokens, raw, SERVER_NAME};
use kindling_overlay::minisign::SecretKey;
use std::path::PathBuf;

/// An appliance whose update agent blessed its slot, with an empty spool.
fn blessed() -> (Root, Server) {
    let root = Root::new();
    apply(&root);
    std::fs::create_dir_all(root.path("var/lib/kindling/update-spool")).unwrap();
    agent_says(
        &root,
        r#"{"mode":"blessed","detail":"healthy","entry":"kindling-1.efi","version":"1","floor":"1","refused":[]}"#,
    );
    let api = start_api(&root);
    (root, api)
}

fn agent_says(root: &Root, json: &str) {
    std::fs::create_dir_all(root.path("run/kindling/status")).unwrap();
    std::fs::write(root.path("run/kindling/status/update.json"), json).unwrap();
}

fn spool(root: &Root) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.path("var/lib/kindling/update-spool"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn bundle(dir: &std::path::Path) -> Vec<u8> {
    let image: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let efi = dir.join("kindling.efi");
    std::fs::write(&efi, image).unwrap();
    let out = dir.join("kindling-2.kupd");
    kindling_update::build(
        &kindling_update::BuildRequest {
            image: &efi,
            version: "2".parse().unwrap(),
            min_from: "1".parse().unwrap(),
            now: kindling_clock::unix_now(),
            valid_secs: 86_400,
            key: &SecretKey::generate().unwrap(),
        },
        &out,
    )
    .unwrap();
    std::fs::read(out).unwrap()
}

fn upload(
    api: &Server,
    token: Option<kindling_api_client::Token>,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let reply = api
        .client_with(token)
        .upload("/v1/update", body, body.len() as u64, |_| {})
        .unwrap();
    let json = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
    (reply.status, json)
}

#[test]
fn the_admin_s_push_lands_whole_in_the_spool_and_one_waits_at_a_time() {
    let (root, api) = blessed();
    let tmp = tempfile::tempdir().unwrap();
    let body = bundle(tmp.path());

    // Refused before a byte is kept: no token, the read role.
    let (status, reply) = upload(&api, None, &body);
    assert_eq!(status, 401, "{reply}");
    let (status, reply) = upload(&api, Some(lab_tokens().read), &body);
    assert_eq!(status, 403, "{reply}");
    assert!(spool(&root).is_empty(), "{:?}", spool(&root));

    let mut seen = 0;
    let reply = api
        .admin
        .upload("/v1/update", &body[..], body.len() as u64, |n| seen = n)
        .unwrap();
    assert_eq!(seen, body.len() as u64);
    let accepted: kindling_api::update::PushAccepted = serde_json::from_slice(&reply.body)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&reply.body)));
    assert_eq!(reply.status, 202);
    assert_eq!(accepted.bytes, body.len() as u64);
    let file = format!("{}.kupd", accepted.upload);
    assert_eq!(spool(&root), std::slice::from_ref(&file));
    let kept: PathBuf = root.path("var/lib/kindling/update-spool").join(&file);
    assert_eq!(
        std::fs::read(kept).unwrap(),
        body,
        "the upload is kept as sent"
    );

    let (status, view) = api.call("GET", "/v1/update", None);
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["waiting"], accepted.upload.as_str());
    assert_eq!(view["agent"]["mode"], "blessed");

    let (status, reply) = upload(&api, Some(lab_tokens().admin), &body);
    assert_eq!(status, 409, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("still waiting"),
        "{reply}"
    );
    assert_eq!(spool(&root), [file]);
}

#[test]
fn garbage_and_oversized_uploads_are_refused_with_nothing_kept() {
    let (root, api) = blessed();
    let (status, reply) = upload(&api, Some(lab_tokens().admin), &[b'x'; 4096]);
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .starts_with("not an update bundle"),
        "{reply}"
    );
    let (status, reply) = upload(&api, Some(lab_tokens().admin), b"{}");
    assert_eq!(status, 400, "{reply}");
    assert!(spool(&root).is_empty(), "{:?}", spool(&root));

    // A length over the bound is refused from the head alone.
    let config = raw::tls_config(&api.run_dir);
    let head = format!(
        "POST /v1/update HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        lab_tokens().admin.expose(),
        300u64 << 20
    );
    let answer = raw::send(&api.addr, &config, &head, &[0; 1024]);
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(
        answer.body.contains("more than an update bundle"),
        "{}",
        answer.body
    );
    assert!(spool(&root).is_empty(), "{:?}", spool(&root));
}

#[test]
fn no_agent_or_an_unblessed_slot_takes_no_push() {
    let (root, api) = blessed();
    let tmp = tempfile::tempdir().unwrap();
    let body = bundle(tmp.path());
    agent_says(
        &root,
        r#"{"mode":"gating","detail":"waiting for every phase and required service"}"#,
    );
    let (status, reply) = upload(&api, Some(lab_tokens().admin), &body);
    assert_eq!(status, 409, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("gating"),
        "{reply}"
    );
    std::fs::remove_file(root.path("run/kindling/status/update.json")).unwrap();
    let (status, reply) = upload(&api, Some(lab_tokens().admin), &body);
    assert_eq!(status, 503, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("no update agent"),
        "{reply}"
    );
    assert!(spool(&root).is_empty(), "{:?}", spool(&root));
}

fn ask_poll(
    api: &Server,
    token: kindling_api_client::Token,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let reply = api
        .client_with(Some(token))
        .request("POST", "/v1/update/poll", Some(body))
        .unwrap();
    let json = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
    (reply.status, json)
}

/// `POST /v1/update/poll`: only an admin may ask, only when the site
/// names a channel; the request is one word in the spool for the agent.
#[test]
fn an_admin_may_ask_the_agent_to_poll_its_channel_now() {
    let (root, api) = blessed();
    let (status, reply) = ask_poll(&api, lab_tokens().read, b"{}");
    assert_eq!(status, 403, "{reply}");
    let (status, reply) = ask_poll(&api, lab_tokens().admin, b"{}");
    assert_eq!(status, 409, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("no update channel"),
        "{reply}"
    );
    assert!(spool(&root).is_empty(), "{:?}", spool(&root));

    // The site (as the config phase wrote it) now follows dev.
    let site_json = root.path("run/kindling/site.json");
    let mut site: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&site_json).unwrap()).unwrap();
    site["update"] = serde_json::json!({
        "channel": "dev",
        "url": "http://127.0.0.1:9/",
        "check_every": "6h",
        "window": "Sun 02:00-04:00"
    });
    std::fs::write(&site_json, serde_json::to_vec(&site).unwrap()).unwrap();
    let (status, reply) = ask_poll(&api, lab_tokens().admin, b"{\"apply_now\": 1}");
    assert_eq!(status, 400, "{reply}");
    let (status, reply) = ask_poll(&api, lab_tokens().admin, b"{\"apply_now\": true}");
    assert_eq!(status, 202, "{reply}");
    assert_eq!(
        reply,
        serde_json::json!({"channel": "dev", "apply_now": true})
    );
    assert_eq!(spool(&root), ["poll-request"]);
    assert_eq!(
        std::fs::read_to_string(root.path("var/lib/kindling/update-spool/poll-request")).unwrap(),
        "apply-now"
    );
    let view = api
        .client_with(Some(lab_tokens().read))
        .request("GET", "/v1/update", None)
        .unwrap();
    let view: serde_json::Value = serde_json::from_slice(&view.body).unwrap();
    assert_eq!(view["poll_requested"], true, "{view}");
}
