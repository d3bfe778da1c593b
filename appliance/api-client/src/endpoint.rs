//! Where an appliance's API is: the host and port to dial and the name its
//! certificate must carry (the same host, unless the operator says which
//! name to expect, e.g. the site host name when dialling a DHCP uplink
//! address the certificate cannot know).

use rustls_pki_types::ServerName;
use std::fmt;

/// The API's port unless the site sets `api.port`.
pub const DEFAULT_PORT: u16 = 9000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("{0:?}: the API is TLS only; give the address (192.168.100.1 or 192.168.100.1:9000) or an https:// URL")]
    PlainHttp(String),
    #[error("{input:?} is not an appliance address: {reason}")]
    Invalid { input: String, reason: &'static str },
    #[error("{0:?} is not a host name or IP address a certificate can name")]
    ServerName(String),
}

fn server_name(host: &str) -> Result<ServerName<'static>, EndpointError> {
    ServerName::try_from(host.to_string()).map_err(|_| EndpointError::ServerName(host.into()))
}

impl Endpoint {
    /// `HOST`, `HOST:PORT`, `[V6]:PORT` or `https://HOST[:PORT][/]`.
    pub fn parse(input: &str) -> Result<Self, EndpointError> {
        let invalid = |reason| EndpointError::Invalid {
            input: input.chars().take(200).collect(),
            reason,
        };
        let text = input.trim();
        if text
            .get(..7)
            .is_some_and(|p| p.eq_ignore_ascii_case("http://"))
        {
            return Err(EndpointError::PlainHttp(input.into()));
        }
        let text = match text.get(..8) {
            Some(p) if p.eq_ignore_ascii_case("https://") => &text[8..],
            _ => text,
        };
        let text = text.trim_end_matches('/');
        if text.is_empty() {
            return Err(invalid("it is empty"));
        }
        if text.contains('/') || text.contains('@') || text.contains('?') {
            return Err(invalid("expected only a host and a port"));
        }
        let (host, port) = if let Some(v6) = text.strip_prefix('[') {
            let (host, rest) = v6.split_once(']').ok_or_else(|| invalid("unclosed '['"))?;
            let port = match rest.strip_prefix(':') {
                Some(p) => Some(p),
                None if rest.is_empty() => None,
                None => return Err(invalid("expected ':PORT' after ']'")),
            };
            (host, port)
        } else if text.matches(':').count() > 1 {
            // A bare IPv6 address.
            (text, None)
        } else {
            match text.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (text, None),
            }
        };
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?,
        };
        if host.is_empty() {
            return Err(invalid("the host is empty"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
            server_name: server_name(host)?,
        })
    }

    /// Expect `name` in the certificate instead of the dialled host.
    pub fn with_server_name(mut self, name: &str) -> Result<Self, EndpointError> {
        self.server_name = server_name(name.trim())?;
        Ok(self)
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }

    /// `host:port` to dial (`[v6]:port` for IPv6).
    pub fn dial_address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "https://{}", self.dial_address())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_operators_write() {
        for (input, dial) in [
            ("192.168.100.1", "192.168.100.1:9000"),
            ("192.168.100.1:9443", "192.168.100.1:9443"),
            ("https://192.168.100.1:9000/", "192.168.100.1:9000"),
            ("HTTPS://kindling.lab", "kindling.lab:9000"),
            ("[fd00::1]:9001", "[fd00::1]:9001"),
            ("fd00::1", "[fd00::1]:9000"),
        ] {
            assert_eq!(
                Endpoint::parse(input).unwrap().dial_address(),
                dial,
                "{input}"
            );
        }
        let e = Endpoint::parse("10.0.0.5")
            .unwrap()
            .with_server_name("kindling.lab.internal")
            .unwrap();
        assert_eq!(e.dial_address(), "10.0.0.5:9000");
        assert_eq!(e.server_name().to_str(), "kindling.lab.internal");
    }

    #[test]
    fn plain_http_and_junk_are_refused_with_a_reason() {
        assert!(matches!(
            Endpoint::parse("http://192.168.100.1:9000"),
            Err(EndpointError::PlainHttp(_))
        ));
        for bad in [
            "",
            "host:0",
            "host:99999",
            "host:x",
            "h/v1",
            "u@h",
            "[::1",
            ":9000",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
