//! Artifacts an operator pushed (the store the API writes,
//! `kindling_artifacts`) are served by the PXE HTTP listener at
//! `/by-hash/sha256/HEX` over loopback like the node files: whole, HEAD
//! and Range, from the moment they are stored until they are deleted. An
//! unknown hash, a link planted in the store, an upload still being
//! written and the records of who pushed what are never served.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::Dirs;
use kindling_artifacts::{ArtifactStore, Receiver, Sha256Hex, UploadRequest};
use kindling_pxe::http::connection::Limits;
use kindling_pxe::status::Stats;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// The lab site's PXE HTTP service on 127.0.0.1 over `dirs`.
fn serve(dirs: &Dirs) -> (SocketAddr, Arc<Stats>) {
    common::serve_lab_http(dirs, Vec::new(), 16, Limits::default())
}

/// One HTTP/1.0 request (`head` without its final empty line):
/// (status, response head, body bytes).
fn fetch(addr: SocketAddr, head: &str) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "{head}\r\n").unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    common::split_reply(&raw)
}

/// Pushes `bytes` into the store as the API does; its sha256.
fn push(store: &ArtifactStore, name: &str, bytes: &[u8]) -> Sha256Hex {
    let mut receiver = Receiver::begin(
        store,
        UploadRequest {
            name,
            expected: None,
            uploaded_by: "lab-admin",
            declared: Some(bytes.len() as u64),
        },
    )
    .unwrap();
    for chunk in bytes.chunks(64 * 1024) {
        receiver.write(chunk).unwrap();
    }
    let stored = receiver.finish().unwrap();
    stored.artifact.sha256.parse().unwrap()
}

#[test]
fn a_pushed_artifact_is_served_by_hash_with_head_and_range_until_deleted() {
    let dirs = Dirs::new();
    let store = ArtifactStore::new(&dirs.path("state"));
    let iso: Vec<u8> = (0..2 * 1024 * 1024 + 33)
        .map(|i: usize| (i * 13 + i / 509) as u8)
        .collect();
    let (addr, stats) = serve(&dirs);

    // Pushed after the service started: looked up per request.
    let digest = push(&store, "installer.iso", &iso);
    let path = format!("/by-hash/sha256/{digest}");
    let (status, head, body) = fetch(addr, &format!("GET {path} HTTP/1.0\r\n"));
    assert_eq!(status, 200, "{head}");
    assert!(body == iso, "the bytes served are the pushed ones");
    assert!(head.contains("Accept-Ranges: bytes"), "{head}");

    let (status, head, body) = fetch(addr, &format!("HEAD {path} HTTP/1.0\r\n"));
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}", iso.len())),
        "{head}"
    );
    assert!(body.is_empty());

    let (status, head, body) = fetch(
        addr,
        &format!("GET {path} HTTP/1.0\r\nRange: bytes=1000000-1000999\r\n"),
    );
    assert_eq!(status, 206, "{head}");
    assert_eq!(body, iso[1_000_000..1_001_000]);
    assert!(
        head.contains(&format!(
            "Content-Range: bytes 1000000-1000999/{}",
            iso.len()
        )),
        "{head}"
    );
    let (status, head, _) = fetch(
        addr,
        &format!(
            "GET {path} HTTP/1.0\r\nRange: bytes={}-\r\n",
            iso.len() + 10
        ),
    );
    assert_eq!(status, 416, "{head}");
    assert!(stats.get("http_artifacts_by_hash") >= 3);

    // Deleted: gone at once.
    store.delete(&digest).unwrap();
    let (status, _, _) = fetch(addr, &format!("GET {path} HTTP/1.0\r\n"));
    assert_eq!(status, 404);
}

#[test]
fn nothing_but_stored_bytes_is_served_from_the_store() {
    let dirs = Dirs::new();
    let store = ArtifactStore::new(&dirs.path("state"));
    let (addr, _) = serve(&dirs);
    let kept = push(&store, "kept.bin", b"kept bytes");

    // A link planted under a hash's name, to a file the service could read.
    let secret = dirs.path("state/secret");
    std::fs::write(&secret, b"not an artifact").unwrap();
    let planted = format!(
        "{:x}",
        <sha2::Sha256 as sha2::Digest>::digest(b"not an artifact")
    );
    std::os::unix::fs::symlink(&secret, store.content_dir().join(&planted)).unwrap();
    // An upload still being written.
    let mut receiver = Receiver::begin(
        &store,
        UploadRequest {
            name: "half.iso",
            expected: None,
            uploaded_by: "lab-admin",
            declared: None,
        },
    )
    .unwrap();
    receiver.write(b"half").unwrap();
    let partial = std::fs::read_dir(store.content_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with('.'))
        .unwrap();

    for (target, want) in [
        (format!("/by-hash/sha256/{planted}"), 404),
        (format!("/by-hash/sha256/{}", "0".repeat(64)), 404),
        (
            format!("/by-hash/sha256/{}", kept.as_str().to_uppercase()),
            404,
        ),
        (format!("/artifacts/sha256/{partial}"), 400),
        (format!("/artifacts/.meta/{kept}.json"), 400),
    ] {
        let (status, head, body) = fetch(addr, &format!("GET {target} HTTP/1.0\r\n"));
        assert_eq!(status, want, "{target}: {head}");
        assert!(body.len() < 200, "{target}: nothing served");
    }
    let (status, _, body) = fetch(addr, &format!("GET /by-hash/sha256/{kept} HTTP/1.0\r\n"));
    assert_eq!(status, 200);
    assert_eq!(body, b"kept bytes");
    drop(receiver);
}
