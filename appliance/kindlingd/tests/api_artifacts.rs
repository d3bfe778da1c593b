//! The artifact store's API over real TLS on loopback: an admin's push is
//! kept under its sha256 with who pushed it, the same bytes again are the
//! same artifact, a stated hash the bytes do not have keeps nothing; the
//! read role lists; only an admin pushes and deletes; a host without a
//! token gets 401 on every one of them and changes nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::appliance::{apply, start_api, Root, Server};
use common::{lab_tokens, raw, SERVER_NAME};
use kindling_api::artifacts::{ArtifactDeleted, ArtifactList, ArtifactPushed};
use sha2::{Digest, Sha256};
use std::os::unix::fs::MetadataExt;

fn appliance() -> (Root, Server) {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    (root, api)
}

/// Every name in the store's content directory (partial uploads included).
fn stored(root: &Root) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.path("var/lib/kindling/artifacts/sha256"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn push(
    api: &Server,
    token: Option<kindling_api_client::Token>,
    query: &str,
    body: &[u8],
) -> (u16, serde_json::Value) {
    let reply = api
        .client_with(token)
        .upload(
            &format!("/v1/artifacts?{query}"),
            body,
            body.len() as u64,
            |_| {},
        )
        .unwrap();
    let json = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
    (reply.status, json)
}

fn call(
    api: &Server,
    token: Option<kindling_api_client::Token>,
    method: &str,
    path: &str,
) -> (u16, serde_json::Value) {
    let reply = api.client_with(token).request(method, path, None).unwrap();
    let json = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
    (reply.status, json)
}

fn an_iso() -> Vec<u8> {
    (0..3_000_000u32).map(|i| (i % 253) as u8).collect()
}

#[test]
fn an_admin_pushes_lists_and_deletes_and_nobody_else_may() {
    let (root, api) = appliance();
    let body = an_iso();
    let hex = format!("{:x}", Sha256::digest(&body));
    let query = format!("name=debian%2012.iso&sha256={hex}");

    // Refused from the head, before a byte is kept: no token, the read role.
    let (status, reply) = push(&api, None, &query, &body);
    assert_eq!(status, 401, "{reply}");
    let (status, reply) = push(&api, Some(lab_tokens().read), &query, &body);
    assert_eq!(status, 403, "{reply}");
    assert!(stored(&root).is_empty(), "{:?}", stored(&root));
    let (status, reply) = call(&api, None, "GET", "/v1/artifacts");
    assert_eq!(
        status, 401,
        "a LAN host without a token lists nothing: {reply}"
    );

    // The admin's push: 201, kept under its hash, readable, not writable.
    let (status, reply) = push(&api, Some(lab_tokens().admin), &query, &body);
    assert_eq!(status, 201, "{reply}");
    let pushed: ArtifactPushed = serde_json::from_value(reply).unwrap();
    assert!(pushed.created);
    assert_eq!(pushed.artifact.sha256, hex);
    assert_eq!(pushed.artifact.name, "debian 12.iso");
    assert_eq!(pushed.artifact.bytes, body.len() as u64);
    assert_eq!(pushed.artifact.uploaded_by, "lab-admin");
    assert_eq!(pushed.artifact.path, format!("/by-hash/sha256/{hex}"));
    assert_eq!(stored(&root), std::slice::from_ref(&hex));
    let file = root.path(&format!("var/lib/kindling/artifacts/sha256/{hex}"));
    assert_eq!(std::fs::read(&file).unwrap(), body, "kept as sent");
    assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o777, 0o440);

    // The same bytes again (no hash stated, another name): 200, same record.
    let (status, reply) = push(&api, Some(lab_tokens().admin), "name=again.iso", &body);
    assert_eq!(status, 200, "{reply}");
    let again: ArtifactPushed = serde_json::from_value(reply).unwrap();
    assert!(!again.created);
    assert_eq!(again.artifact, pushed.artifact);
    assert_eq!(stored(&root), std::slice::from_ref(&hex));

    // The read role lists.
    let (status, reply) = call(&api, Some(lab_tokens().read), "GET", "/v1/artifacts");
    assert_eq!(status, 200, "{reply}");
    let list: ArtifactList = serde_json::from_value(reply).unwrap();
    assert_eq!(list.artifacts, std::slice::from_ref(&pushed.artifact));
    assert_eq!(list.max_bytes, kindling_artifacts::MAX_ARTIFACT);

    // Only an admin deletes; an unknown or malformed hash says so.
    let path = format!("/v1/artifacts/sha256/{hex}");
    let (status, reply) = call(&api, None, "DELETE", &path);
    assert_eq!(status, 401, "{reply}");
    let (status, reply) = call(&api, Some(lab_tokens().read), "DELETE", &path);
    assert_eq!(status, 403, "{reply}");
    assert_eq!(stored(&root), std::slice::from_ref(&hex));
    let (status, reply) = call(&api, Some(lab_tokens().admin), "DELETE", &path);
    assert_eq!(status, 200, "{reply}");
    let deleted: ArtifactDeleted = serde_json::from_value(reply).unwrap();
    assert_eq!(deleted.deleted, pushed.artifact);
    assert!(stored(&root).is_empty(), "{:?}", stored(&root));
    let (status, reply) = call(&api, Some(lab_tokens().admin), "DELETE", &path);
    assert_eq!(status, 404, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("no artifact"),
        "{reply}"
    );
    let (status, reply) = call(
        &api,
        Some(lab_tokens().admin),
        "DELETE",
        "/v1/artifacts/sha256/..%2f..%2fstate.json",
    );
    assert_eq!(status, 400, "{reply}");
}

#[test]
fn a_wrong_stated_hash_an_oversized_or_nameless_push_keeps_nothing() {
    let (root, api) = appliance();
    let body = an_iso();
    let actual = format!("{:x}", Sha256::digest(&body));
    let stated = "0".repeat(64);
    let admin = || Some(lab_tokens().admin);

    let (status, reply) = push(&api, admin(), &format!("name=x.iso&sha256={stated}"), &body);
    assert_eq!(status, 422, "{reply}");
    let error = reply["error"].as_str().unwrap();
    assert!(
        error.contains(&stated) && error.contains(&actual),
        "names both hashes: {error}"
    );
    assert!(stored(&root).is_empty(), "{:?}", stored(&root));

    let (status, reply) = push(&api, admin(), "sha256=", &body);
    assert_eq!(status, 400, "{reply}");
    let (status, reply) = push(&api, admin(), "name=a%2Fb", &body);
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("not a path"),
        "{reply}"
    );
    let (status, reply) = push(&api, admin(), "name=empty", b"");
    assert_eq!(status, 400, "{reply}");
    assert!(stored(&root).is_empty(), "{:?}", stored(&root));

    // A length over the limit is refused from the head alone.
    let config = raw::tls_config(&api.run_dir);
    let head = format!(
        "POST /v1/artifacts?name=huge.iso HTTP/1.1\r\nHost: {SERVER_NAME}\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Length: {}\r\n\r\n",
        lab_tokens().admin.expose(),
        kindling_artifacts::MAX_ARTIFACT + 1
    );
    let answer = raw::send(&api.addr, &config, &head, &[0; 1024]);
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert!(
        answer.body.contains("the most an artifact may be"),
        "{}",
        answer.body
    );
    assert!(stored(&root).is_empty(), "{:?}", stored(&root));
}

/// As the config phase owns the store (run as root) and the API pushes,
/// the PXE service's account (kl-pxe) can read an artifact but can neither
/// change it, add one, nor read who pushed it. Needs root to take that
/// account; skipped otherwise.
#[test]
fn the_pxe_account_reads_artifacts_and_cannot_write_them() {
    use kindling_init_protocol::accounts::PXE;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root to run a check as kl-pxe");
        return;
    }
    let (root, api) = appliance();
    let body = an_iso();
    let (status, reply) = push(&api, Some(lab_tokens().admin), "name=x.iso", &body);
    assert_eq!(status, 201, "{reply}");
    let hex = reply["artifact"]["sha256"].as_str().unwrap().to_string();
    // The appliance's root is / on the appliance; the test's is a 0700
    // temp dir: open the path down to the data partition.
    std::fs::set_permissions(root.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = root.path("var/lib/kindling/artifacts");
    let file = store.join("sha256").join(&hex);
    // std drops root's supplementary groups when it changes the uid:
    // the shell runs as kl-pxe with its own group only.
    let as_pxe = |script: &str| {
        std::process::Command::new("/bin/sh")
            .args(["-c", script])
            .uid(PXE.uid)
            .gid(PXE.gid)
            .status()
            .unwrap()
            .success()
    };
    let f = file.display();
    let dir = store.join("sha256");
    let d = dir.display();
    let meta = store.join(".meta");
    let m = meta.display();
    assert!(
        as_pxe(&format!("cat '{f}' >/dev/null")),
        "kl-pxe reads the bytes"
    );
    assert!(
        !as_pxe(&format!("echo x >> '{f}'")),
        "kl-pxe cannot change them"
    );
    assert!(!as_pxe(&format!("echo x > '{d}/new'")), "nor add a file");
    assert!(
        !as_pxe(&format!("rm -f '{f}' && test ! -e '{f}'")),
        "nor remove one"
    );
    assert!(!as_pxe(&format!("ls '{m}'")), "nor read the records");
    assert_eq!(std::fs::read(&file).unwrap(), body);
}
