//! The client against a real rustls server whose certificate an appliance
//! CA (`kindling-pki`) issued: it trusts the pinned CA (by certificate or by
//! fingerprint) and nothing else, checks the name, and records what an
//! untrusted server presents without sending it a byte.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use kindling_api_client::{presented_chain, ApiClient, Endpoint, Fingerprint, Token, TrustAnchor};
use kindling_pki::{ApplianceCa, LeafRequest, Usage};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

struct Server {
    port: u16,
    /// Every request head the server read.
    seen: Arc<Mutex<Vec<String>>>,
}

/// A TLS server on 127.0.0.1 for `names`, signed by `ca`, presenting the CA
/// in its chain as kindlingd does; answers every request with 200 `{}`.
fn serve(ca: &ApplianceCa, names: &[&str]) -> Server {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let issued = ca
        .issue(&LeafRequest {
            common_name: "api",
            names: &names,
            usage: Usage::Server,
        })
        .unwrap();
    let chain = vec![
        CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).unwrap(),
        CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap(),
    ];
    let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(5)));
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match tls.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            if head.is_empty() {
                continue;
            }
            log.lock()
                .unwrap()
                .push(String::from_utf8_lossy(&head).into_owned());
            let _ = tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    Server { port, seen }
}

fn ca() -> (tempfile::TempDir, ApplianceCa) {
    let dir = tempfile::tempdir().unwrap();
    let ca = ApplianceCa::ensure(dir.path(), "test appliance CA").unwrap();
    (dir, ca)
}

fn endpoint(port: u16) -> Endpoint {
    Endpoint::parse(&format!("127.0.0.1:{port}")).unwrap()
}

#[test]
fn a_fingerprint_pin_trusts_that_ca_and_learns_its_certificate() {
    let (_dir, ca) = ca();
    let server = serve(&ca, &["127.0.0.1"]);
    let token = Token::from_random([9; 32]);
    let client = ApiClient::new(
        endpoint(server.port),
        TrustAnchor::Fingerprint(*ca.fingerprint()),
        Some(token.clone()),
    )
    .unwrap();
    let reply = client.request("GET", "/v1/status", None).unwrap();
    assert_eq!((reply.status, reply.body.as_slice()), (200, &b"{}"[..]));
    let learned = client.matched_ca().expect("the CA it chained to");
    assert_eq!(Fingerprint::of_der(&learned), *ca.fingerprint());
    let head = server.seen.lock().unwrap().join("");
    assert!(
        head.contains(&format!("Authorization: Bearer {}", token.expose())),
        "{head}"
    );

    // The learned certificate is a pin of its own.
    let by_cert = ApiClient::new(endpoint(server.port), TrustAnchor::Ca(learned), None).unwrap();
    assert_eq!(
        by_cert.request("GET", "/healthz", None).unwrap().status,
        200
    );
}

#[test]
fn another_ca_a_wrong_fingerprint_or_a_wrong_name_sends_nothing() {
    let (_dir, ca) = ca();
    let (_other_dir, other) = self::ca();
    let server = serve(&ca, &["kindling.lab"]);
    let token = Some(Token::from_random([1; 32]));
    let cases = [
        (
            "another CA's certificate",
            endpoint(server.port)
                .with_server_name("kindling.lab")
                .unwrap(),
            TrustAnchor::from_pem(other.cert_pem()).unwrap(),
            "does not verify",
        ),
        (
            "another CA's fingerprint",
            endpoint(server.port)
                .with_server_name("kindling.lab")
                .unwrap(),
            TrustAnchor::Fingerprint(*other.fingerprint()),
            "did not present the pinned CA",
        ),
        (
            "a name the certificate does not carry",
            endpoint(server.port),
            TrustAnchor::Fingerprint(*ca.fingerprint()),
            "does not verify",
        ),
    ];
    for (what, endpoint, anchor, want) in cases {
        let client = ApiClient::new(endpoint, anchor, token.clone()).unwrap();
        let err = client.request("GET", "/v1/status", None).unwrap_err();
        assert!(err.to_string().contains(want), "{what}: {err}");
    }
    assert!(
        server.seen.lock().unwrap().is_empty(),
        "a request reached an unverified server"
    );
    // With the right name, the same pin works.
    let client = ApiClient::new(
        endpoint(server.port)
            .with_server_name("kindling.lab")
            .unwrap(),
        TrustAnchor::Fingerprint(*ca.fingerprint()),
        None,
    )
    .unwrap();
    assert_eq!(client.request("GET", "/healthz", None).unwrap().status, 200);
}

#[test]
fn the_presented_chain_is_recorded_without_a_request() {
    let (_dir, ca) = ca();
    let server = serve(&ca, &["127.0.0.1"]);
    let chain = presented_chain(&endpoint(server.port), None, Duration::from_secs(5)).unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(Fingerprint::of_der(&chain[1]), *ca.fingerprint());
    assert!(server.seen.lock().unwrap().is_empty());

    // Not TLS at all: a clear error, not a hang.
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = plain.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = plain.accept() {
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
        }
    });
    let err = presented_chain(&endpoint(port), None, Duration::from_secs(5)).unwrap_err();
    assert!(err.to_string().contains("no certificate"), "{err}");
}
