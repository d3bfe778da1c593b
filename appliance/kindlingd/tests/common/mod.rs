//! Helpers shared by kindlingd's integration tests: the lab's TEST-ONLY
//! operator tokens, an operator's client pinned to a test appliance's CA,
//! and one request as such a client makes it.
#![allow(dead_code, clippy::unwrap_used, clippy::panic)]

pub mod appliance;
pub mod cdp;
pub mod raw;

use kindling_api_client::{ApiClient, Endpoint, Token, TrustAnchor};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The name the lab site's API certificate carries (`hostname.domain`);
/// tests dial 127.0.0.1 and expect this name, as an operator dialling an
/// address the certificate does not list would.
pub const SERVER_NAME: &str = "kindling-lab.lab.kindling.internal";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The lab's TEST-ONLY tokens (their digests are in overlays/lab*).
pub struct LabTokens {
    pub admin: Token,
    pub read: Token,
}

pub fn lab_tokens() -> LabTokens {
    let path = repo().join("tests/data/lab-TEST-ONLY-api-tokens.toml");
    let table: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let token = |role: &str| Token::parse(table[role].as_str().unwrap()).unwrap();
    LabTokens {
        admin: token("admin"),
        read: token("read"),
    }
}

/// An operator's client for the API at `addr`, trusting only the CA the
/// config phase copied to `run_dir/api-tls/ca.pem`.
pub fn client(addr: &str, run_dir: &Path, token: Option<Token>) -> ApiClient {
    let ca = std::fs::read_to_string(run_dir.join("api-tls/ca.pem")).unwrap();
    let endpoint = Endpoint::parse(addr)
        .unwrap()
        .with_server_name(SERVER_NAME)
        .unwrap();
    ApiClient::new(endpoint, TrustAnchor::from_pem(&ca).unwrap(), token)
        .unwrap()
        .with_timeout(Duration::from_secs(30))
}

/// One request: the status and the JSON body (any status is an answer,
/// not an error).
pub fn call(
    client: &ApiClient,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> (u16, serde_json::Value) {
    let reply = client
        .request(method, path, body)
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let text = String::from_utf8_lossy(&reply.body);
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
    (reply.status, json)
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What the config phase does for the API (`api::tls::issue`), for a test
/// that writes its own site.json instead of applying overlays: the CA in
/// `state_dir/tls`, the API's certificate for [`SERVER_NAME`] in
/// `run_dir/api-tls`.
pub fn issue_api_certificate(state_dir: &Path, run_dir: &Path) {
    let ca =
        kindling_pki::ApplianceCa::ensure(&state_dir.join("tls"), "test appliance CA").unwrap();
    let dir = run_dir.join("api-tls");
    std::fs::create_dir_all(&dir).unwrap();
    let names = vec![SERVER_NAME.to_string()];
    let leaf = kindling_pki::LeafRequest {
        common_name: SERVER_NAME,
        names: &names,
        usage: kindling_pki::Usage::Server,
    };
    ca.issue_to_files(
        &leaf,
        &dir.join("server.pem"),
        &dir.join("server-key.pem"),
        0o600,
    )
    .unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert_pem()).unwrap();
}
