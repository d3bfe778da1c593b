//! The lab as an operator on the bootstrap LAN calls the appliance's API:
//! TLS pinned to the CA fingerprint the appliance printed on its serial
//! console (`api: CA sha256:…`), one of the lab's TEST-ONLY operator tokens,
//! connections opened inside the lab's LAN namespace (from 192.168.100.2).
//!
//! The tokens are compiled in from `tests/data/lab-TEST-ONLY-api-tokens.toml`;
//! the lab overlays list their digests. They protect nothing and must never
//! reach a real site.

use crate::error::{LabError, Result};
use kindling_api_client::{ApiClient, Connector, Endpoint, Fingerprint, Token, TrustAnchor};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The appliance's API on the lab LAN.
pub const API_ADDRESS: &str = "192.168.100.1:9000";

const TOKENS: &str = include_str!("../../tests/data/lab-TEST-ONLY-api-tokens.toml");

/// Which of the lab's operators calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabOperator {
    Admin,
    Read,
}

/// The TEST-ONLY token of `who` (`admin = "kt1_…"` in the tokens file).
pub fn lab_token(who: LabOperator) -> Token {
    let key = match who {
        LabOperator::Admin => "admin",
        LabOperator::Read => "read",
    };
    TOKENS
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .and_then(|(_, v)| Token::parse(v.trim().trim_matches('"')).ok())
        // The file is compiled in and checked by this module's test.
        .unwrap_or_else(|| Token::from_random([0; 32]))
}

/// The last CA fingerprint the appliance printed on its console.
pub fn console_ca_fingerprint(serial_log: &Path) -> Option<Fingerprint> {
    let text = std::fs::read(serial_log).ok()?;
    let text = String::from_utf8_lossy(&text);
    text.match_indices("api: CA sha256:")
        .filter_map(|(at, _)| {
            let hex = text.get(at + "api: CA ".len()..at + "api: CA sha256:".len() + 64)?;
            hex.parse().ok()
        })
        .last()
}

/// Opens TCP connections from inside network namespace `ns`: a short-lived
/// thread joins the namespace (setns), connects and hands the socket back;
/// the socket stays in that namespace, this process does not.
pub fn netns_connector(ns: &str) -> Connector {
    let path = Path::new("/run/netns").join(ns);
    Arc::new(move |address: &str, timeout: Duration| {
        let (path, address) = (path.clone(), address.to_string());
        std::thread::spawn(move || -> std::io::Result<TcpStream> {
            let ns = std::fs::File::open(&path)?;
            nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            let addr = address
                .parse()
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
            TcpStream::connect_timeout(&addr, timeout)
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the netns connect thread panicked")))
    })
}

/// A client for the appliance whose console is `serial_log`, from `ns`, at
/// its LAN address.
pub fn client_from(ns: &str, serial_log: &Path, who: LabOperator) -> Result<ApiClient> {
    let endpoint = Endpoint::parse(API_ADDRESS).map_err(|e| LabError::Api(e.to_string()))?;
    client_at(ns, serial_log, who, endpoint)
}

/// The same at another address (e.g. the uplink's DHCP lease, with the
/// site's host name as the server name the certificate carries).
pub fn client_at(
    ns: &str,
    serial_log: &Path,
    who: LabOperator,
    endpoint: Endpoint,
) -> Result<ApiClient> {
    let fingerprint = console_ca_fingerprint(serial_log).ok_or_else(|| {
        LabError::Api(format!(
            "no `api: CA sha256:…` line on the appliance's console ({}) to pin",
            serial_log.display()
        ))
    })?;
    let client = ApiClient::new(
        endpoint,
        TrustAnchor::Fingerprint(fingerprint),
        Some(lab_token(who)),
    )
    .map_err(|e| LabError::Api(e.to_string()))?;
    Ok(client
        .with_connector(netns_connector(ns))
        .with_timeout(Duration::from_secs(10)))
}

/// One request: (status, body). A transport failure (refused, TLS) is an
/// error naming the request.
pub fn call(
    client: &ApiClient,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String)> {
    let reply = client
        .request(method, path, body.map(str::as_bytes))
        .map_err(|e| LabError::Api(format!("{method} {path}: {e}")))?;
    Ok((
        reply.status,
        String::from_utf8_lossy(&reply.body).into_owned(),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The compiled-in tokens are the ones the lab overlays list.
    #[test]
    fn lab_tokens_match_the_lab_overlays() {
        for overlay in ["lab", "lab-stack"] {
            let site = std::fs::read_to_string(format!(
                "{}/../overlays/{overlay}/site.toml",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap();
            for (who, name) in [
                (LabOperator::Admin, "lab-admin"),
                (LabOperator::Read, "lab-read"),
            ] {
                let digest = lab_token(who).sha256().to_string();
                let block = site
                    .split("[[api.operators]]")
                    .find(|b| b.contains(&format!("name = \"{name}\"")))
                    .unwrap();
                assert!(block.contains(&digest), "{overlay}: {name}");
            }
        }
        assert_ne!(lab_token(LabOperator::Admin), lab_token(LabOperator::Read));
    }

    #[test]
    fn the_last_console_fingerprint_wins() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("serial.log");
        let (a, b) = ("ab".repeat(32), "cd".repeat(32));
        std::fs::write(
            &log,
            format!(
                "\x1b[0m[  3.1] api| api: CA sha256:{a} (pin this in the CLI)\r\n\
                 [  9.0] reboot\r\n[  4.2] api| api: CA sha256:{b} (pin this)\r\n"
            ),
        )
        .unwrap();
        assert_eq!(
            console_ca_fingerprint(&log).unwrap().to_string(),
            format!("sha256:{b}")
        );
        std::fs::write(&log, "api: CA sha256:short\n").unwrap();
        assert!(console_ca_fingerprint(&log).is_none());
    }
}
