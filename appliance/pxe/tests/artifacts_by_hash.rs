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

/// A profile pins pushed artifacts as `sha256/HEX`; the iPXE script names
/// them under `/artifacts/`, which reaches the store because it is the
/// first artifact directory (`/var/lib/kindling/artifacts`, as on the
/// appliance), next to a baked artifact named by its file name.
#[test]
fn a_profile_pinning_a_pushed_artifact_boots_it_from_the_store() {
    let dirs = Dirs::new();
    let store = ArtifactStore::new(&dirs.path("state"));
    let mut paths = dirs.paths(&dirs.path("boot"));
    paths.artifact_dirs = vec![
        store.content_dir().parent().unwrap().into(),
        dirs.path("artifacts"),
    ];
    let (addr, stats) = common::serve_lab_http_paths(paths, Vec::new(), 16, Limits::default());
    let kernel: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let digest = push(&store, "vmlinuz", &kernel);
    std::fs::write(dirs.path("artifacts/baked.cpio"), b"baked initrd").unwrap();

    let profile = kindling_site::Profile {
        name: "dev".parse().unwrap(),
        description: String::new(),
        tags: Default::default(),
        boot: kindling_site::BootPayload::Linux {
            kernel: format!("sha256/{digest}"),
            initrd: vec!["baked.cpio".into()],
            cmdline: String::new(),
        },
        cloud_init: Default::default(),
        enrollment: Default::default(),
        after_install: Default::default(),
    };
    let base = format!("http://{addr}/");
    let script = kindling_pxe::render::ipxe::render(&kindling_pxe::render::NodeContext {
        mac: kindling_site::MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]),
        hostname: "node-dev-1".into(),
        domain: "lab.kindling.internal".into(),
        profile_name: "dev",
        profile: &profile,
        base_url: &base,
        enrollment: None,
        agent_sha256: None,
        stack: None,
        client_binaries: Default::default(),
    });
    let url_after = |word: &str| {
        let line = script.lines().find(|l| l.starts_with(word)).unwrap();
        line.split(' ').nth(1).unwrap().to_string()
    };
    let kernel_url = url_after("kernel ");
    assert_eq!(
        kernel_url,
        format!("{base}artifacts/sha256/{digest}"),
        "{script}"
    );
    assert_eq!(url_after("initrd "), format!("{base}artifacts/baked.cpio"));

    let path = kernel_url.strip_prefix(&base[..base.len() - 1]).unwrap();
    let (status, head, body) = fetch(addr, &format!("GET {path} HTTP/1.0\r\n"));
    assert_eq!(status, 200, "{head}");
    assert!(body == kernel, "the pushed bytes");
    let (status, head, body) = fetch(addr, &format!("HEAD {path} HTTP/1.0\r\n"));
    assert_eq!(status, 200, "{head}");
    assert!(
        head.contains(&format!("Content-Length: {}", kernel.len())),
        "{head}"
    );
    assert!(body.is_empty());
    let (status, head, body) = fetch(
        addr,
        &format!("GET {path} HTTP/1.0\r\nRange: bytes=100000-100099\r\n"),
    );
    assert_eq!(status, 206, "{head}");
    assert_eq!(body, kernel[100_000..100_100]);
    assert!(
        head.contains(&format!(
            "Content-Range: bytes 100000-100099/{}",
            kernel.len()
        )),
        "{head}"
    );
    // The same bytes by hash, for clients that name only the hash.
    let (status, _, body) = fetch(addr, &format!("GET /by-hash/sha256/{digest} HTTP/1.0\r\n"));
    assert_eq!(status, 200);
    assert!(body == kernel);
    let (status, _, body) = fetch(addr, "GET /artifacts/baked.cpio HTTP/1.0\r\n");
    assert_eq!((status, body.as_slice()), (200, &b"baked initrd"[..]));
    assert!(stats.get("artifacts") >= 4);

    // Deleted: the pinned name is gone at once (a node fails to boot
    // rather than boot something else).
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
