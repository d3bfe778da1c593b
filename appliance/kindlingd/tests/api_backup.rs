//! `POST /v1/backups`, `GET /v1/backups` and `GET /v1/backups/ID` over real
//! TLS on loopback: the admin queues a backup for the backup service and
//! downloads a kept one byte for byte; a caller without a token or with
//! the read role may list but neither queue nor download, and nothing is
//! written for them; unknown and malformed ids are 404. `POST
//! /v1/backups/restore` stages a checked backup of this site for the admin
//! only; a damaged one, one of another site and a second one stage nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::appliance::{apply, start_api, Root, Server};
use common::lab_tokens;
use kindling_backup::requests::RequestQueue;
use kindling_backup::{BackupId, BackupStore, StoreError};
use std::io::Write;

fn appliance() -> (Root, Server) {
    let root = Root::new();
    apply(&root);
    let api = start_api(&root);
    (root, api)
}

fn service_runs(root: &Root) {
    std::fs::create_dir_all(root.path("run/kindling/status")).unwrap();
    std::fs::write(
        root.path("run/kindling/status/backup.json"),
        r#"{"state":"idle","last":null,"next_unix":null,"kept":0}"#,
    )
    .unwrap();
}

fn store(root: &Root) -> BackupStore {
    BackupStore::in_data_dir(&root.path("var/lib/kindling"))
}

fn queued(root: &Root) -> Vec<BackupId> {
    RequestQueue::new(store(root).dir()).pending()
}

/// A kept backup of `size` bytes (contents stand in for the encrypted file).
fn kept(root: &Root, unix: u64, size: usize) -> (BackupId, Vec<u8>) {
    let id = BackupId::new(unix);
    let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    store(root)
        .write::<(), StoreError>(&id, |mut f| {
            f.write_all(&bytes).unwrap();
            Ok((f, ()))
        })
        .unwrap();
    (id, bytes)
}

fn download(api: &Server, token: Option<kindling_api_client::Token>, id: &str) -> (u16, Vec<u8>) {
    let mut got = Vec::new();
    let refused = api
        .client_with(token)
        .stream(&format!("/v1/backups/{id}"), |chunk| {
            got.extend_from_slice(chunk);
            true
        })
        .unwrap();
    match refused {
        None => (200, got),
        Some(reply) => (reply.status, reply.body),
    }
}

#[test]
fn only_the_admin_queues_a_backup_and_nothing_is_written_for_others() {
    let (root, api) = appliance();
    // No backup service on this appliance: 503, nothing queued.
    let (status, reply) = api.call("POST", "/v1/backups", Some(b"{}"));
    assert_eq!(status, 503, "{reply}");
    assert!(
        reply["error"]
            .as_str()
            .unwrap()
            .contains("no backup service"),
        "{reply}"
    );
    service_runs(&root);
    for (token, want) in [(None, 401), (Some(lab_tokens().read), 403)] {
        let reply = api
            .client_with(token)
            .request("POST", "/v1/backups", Some(b"{}"))
            .unwrap();
        assert_eq!(reply.status, want);
    }
    assert!(queued(&root).is_empty(), "{:?}", queued(&root));

    let (status, reply) = api.call("POST", "/v1/backups", Some(b"{}"));
    assert_eq!(status, 202, "{reply}");
    let id: BackupId = reply["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(queued(&root), vec![id.clone()]);

    // The read role lists: the queued one, and the service's status.
    let reply = api
        .client_with(Some(lab_tokens().read))
        .request("GET", "/v1/backups", None)
        .unwrap();
    assert_eq!(reply.status, 200);
    let list: kindling_api::backups::BackupList = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(list.pending, vec![id.to_string()]);
    assert!(list.backups.is_empty());
    assert_eq!(list.service.unwrap()["state"], "idle");

    // A bounded queue: a script in a loop cannot fill the disk.
    for _ in 1..kindling_backup::requests::MAX_PENDING {
        assert_eq!(api.call("POST", "/v1/backups", None).0, 202);
    }
    let (status, reply) = api.call("POST", "/v1/backups", None);
    assert_eq!(status, 409, "{reply}");
}

#[test]
fn the_admin_downloads_a_kept_backup_and_no_one_else_does() {
    let (root, api) = appliance();
    let (older, _) = kept(&root, 1_700_000_000, 10);
    let (id, bytes) = kept(&root, 1_700_086_400, 300_000);

    let (status, list) = api.call("GET", "/v1/backups", None);
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["backups"][0]["id"], older.as_str());
    assert_eq!(list["backups"][1]["id"], id.as_str());
    assert_eq!(list["backups"][1]["bytes"], 300_000);
    assert_eq!(list["backups"][1]["created"], "2023-11-15T22:13:20Z");

    assert_eq!(download(&api, None, id.as_str()).0, 401);
    assert_eq!(download(&api, Some(lab_tokens().read), id.as_str()).0, 403);
    let (status, got) = download(&api, Some(lab_tokens().admin), id.as_str());
    assert_eq!(status, 200);
    assert!(got == bytes, "the download is the kept file, byte for byte");

    let (status, body) = download(&api, Some(lab_tokens().admin), "20991231T000000Z-0000");
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&body));
    for bad in ["..%2F..%2Fsite.json", "nope", "20991231T000000Z-0000.kbak"] {
        let (status, body) = download(&api, Some(lab_tokens().admin), bad);
        assert_eq!(status, 404, "{bad}: {}", String::from_utf8_lossy(&body));
    }
}

/// A decrypted backup archive of site `site_id`, as `kindling backup
/// restore` sends it: packed and encrypted the backup service's way, then
/// decrypted with the operator's identity.
fn decrypted_backup(site_id: &str) -> Vec<u8> {
    use kindling_backup::manifest::{Appliance, EntryKind, Manifest, FORMAT};
    use std::io::Read;
    let identity = age::x25519::Identity::generate();
    let manifest = Manifest {
        format: FORMAT,
        id: "20261207T050000Z-0a1b".into(),
        created: "2026-12-07T05:00:00Z".into(),
        created_unix: 1_796_619_600,
        appliance: Appliance {
            site_id: site_id.into(),
            hostname: "kindling".into(),
            version: "test".into(),
        },
        vault_storage: "raft".into(),
        notes: Vec::new(),
        entries: Vec::new(),
    };
    let parts = [kindling_backup::Part {
        name: "data/inventory/nodes.json".into(),
        kind: EntryKind::Inventory,
        bytes: br#"{"nodes":{}}"#.to_vec(),
    }];
    let (file, _) =
        kindling_backup::pack(Vec::new(), &[identity.to_public()], manifest, &parts).unwrap();
    let mut plain = Vec::new();
    kindling_backup::archive::decrypting_reader(&file[..], &identity)
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    plain
}

#[test]
fn only_the_admin_stages_a_restore_of_this_site() {
    let (root, api) = appliance();
    let site: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.path("run/kindling/site.json")).unwrap())
            .unwrap();
    let site_id = site["site"]["id"].as_str().unwrap().to_string();
    let data = root.path("var/lib/kindling");
    let good = decrypted_backup(&site_id);
    let staged = || kindling_backup::staged::pending(&data);

    // Hostile and wrong callers: nothing staged.
    for (token, want) in [(None, 401), (Some(lab_tokens().read), 403)] {
        let reply = api
            .client_with(token)
            .request("POST", "/v1/backups/restore", Some(&good))
            .unwrap();
        assert_eq!(reply.status, want);
    }
    let mut damaged = good.clone();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x40;
    for (body, want, says) in [
        (b"not an archive".to_vec(), 400, "damaged"),
        (damaged, 400, ""),
        (decrypted_backup("another-site"), 422, "another-site"),
    ] {
        let (status, reply) = api.call("POST", "/v1/backups/restore", Some(&body));
        assert_eq!(status, want, "{reply}");
        assert!(reply["error"].as_str().unwrap().contains(says), "{reply}");
    }
    assert_eq!(staged(), None);

    // The admin's: staged for the next boot (no init here to reboot).
    let (status, reply) = api.call("POST", "/v1/backups/restore", Some(&good));
    assert_eq!(status, 202, "{reply}");
    assert_eq!(reply["id"], "20261207T050000Z-0a1b");
    assert_eq!(reply["rebooting"], false, "{reply}");
    assert!(
        reply["next"].as_str().unwrap().contains("next boot"),
        "{reply}"
    );
    let pending = staged().unwrap();
    assert_eq!(pending.backup_id, "20261207T050000Z-0a1b");
    assert_eq!(pending.operator, "lab-admin");
    let (_, list) = api.call("GET", "/v1/backups", None);
    assert_eq!(
        list["restore_pending"]["backup_id"],
        "20261207T050000Z-0a1b"
    );
    let (status, reply) = api.call("POST", "/v1/backups/restore", Some(&good));
    assert_eq!(status, 409, "{reply}");
}
