//! The client side of kindling's control API, shared by the operator's CLI,
//! the QEMU lab and the tests: TLS (rustls, ring) that trusts only the
//! appliance CA the operator pinned ([`pin`]), the operator's bearer token
//! on every request, one request per connection ([`http`]).
//!
//! Owns the transport only. Bodies are `kindling-api` types the caller
//! encodes and decodes; where the address, the pin and the token come from
//! (a config file, the environment, a lab's console) is the caller's
//! business. It never sends a byte to a server whose certificate did not
//! verify, and never puts a token anywhere but the `Authorization` header.

pub mod endpoint;
pub mod http;
pub mod pin;

pub use endpoint::{Endpoint, EndpointError, DEFAULT_PORT};
pub use http::Response;
pub use kindling_api::auth::Token;
pub use kindling_pki::Fingerprint;
pub use pin::{PinnedCa, Presented, TrustAnchor};

use rustls::{ClientConfig, ClientConnection, StreamOwned};
use rustls_pki_types::CertificateDer;
use std::io;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Opens the TCP connection to `host:port` (e.g. from inside a network
/// namespace); the default dials from this process.
pub type Connector = Arc<dyn Fn(&str, Duration) -> io::Result<TcpStream> + Send + Sync>;

/// How long connecting, and each read or write, may take by default. An
/// overlay push carries tens of MB over a slow management link.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {endpoint}: {source}")]
    Connect { endpoint: String, source: io::Error },
    #[error("TLS with {endpoint}: {reason}")]
    Tls { endpoint: String, reason: String },
    #[error("{method} {endpoint}{path}: {source}")]
    Exchange {
        method: String,
        endpoint: String,
        path: String,
        source: http::ExchangeError,
    },
}

/// A client for one appliance.
#[derive(Clone)]
pub struct ApiClient {
    endpoint: Endpoint,
    pin: Arc<PinnedCa>,
    tls: Arc<ClientConfig>,
    token: Option<Token>,
    timeout: Duration,
    connector: Connector,
}

fn dial(address: &str, timeout: Duration) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
}

fn client_config(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
) -> Result<ClientConfig, rustls::Error> {
    let mut config = ClientConfig::builder_with_provider(pin::provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Why a handshake failed, from the I/O error rustls wraps it in.
fn tls_reason(e: &io::Error) -> String {
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(c)) => format!(
            "the appliance's certificate does not verify against the pinned CA ({c:?}); \
             if you dialled an address the certificate does not name, set the server name \
             to the appliance's host name"
        ),
        Some(other) => other.to_string(),
        None if e.kind() == io::ErrorKind::UnexpectedEof => {
            "the server closed the connection during the handshake (not a kindling API?)".into()
        }
        None => e.to_string(),
    }
}

impl ApiClient {
    pub fn new(
        endpoint: Endpoint,
        anchor: TrustAnchor,
        token: Option<Token>,
    ) -> Result<Self, ClientError> {
        let pin = Arc::new(PinnedCa::new(anchor));
        let tls = client_config(pin.clone()).map_err(|e| ClientError::Tls {
            endpoint: endpoint.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            endpoint,
            pin,
            tls: Arc::new(tls),
            token,
            timeout: DEFAULT_TIMEOUT,
            connector: Arc::new(dial),
        })
    }

    pub fn with_connector(mut self, connector: Connector) -> Self {
        self.connector = connector;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same appliance and pin with another (or no) token.
    pub fn with_token(mut self, token: Option<Token>) -> Self {
        self.token = token;
        self
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The CA certificate the last successful handshake chained to: what
    /// `kindling login` saves after pinning by fingerprint.
    pub fn matched_ca(&self) -> Option<CertificateDer<'static>> {
        self.pin.matched_ca()
    }

    fn connect(&self) -> Result<StreamOwned<ClientConnection, TcpStream>, ClientError> {
        let endpoint = || self.endpoint.to_string();
        let tcp =
            (self.connector)(&self.endpoint.dial_address(), self.timeout).map_err(|source| {
                ClientError::Connect {
                    endpoint: endpoint(),
                    source,
                }
            })?;
        handshake(
            tcp,
            self.tls.clone(),
            &self.endpoint,
            self.timeout,
            &endpoint(),
        )
    }

    /// One request: `body` is JSON (sent with its length). Any HTTP status
    /// is an answer; only transport failures are errors.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<Response, ClientError> {
        let exchange = |source| ClientError::Exchange {
            method: method.to_string(),
            endpoint: self.endpoint.to_string(),
            path: path.to_string(),
            source,
        };
        let mut stream = self.connect()?;
        let host = self.endpoint.dial_address();
        let request = http::Request {
            method,
            path,
            host: &host,
            authorization: self.token.as_ref().map(Token::expose),
            body,
        };
        http::write_request(&mut stream, &request)
            .map_err(|e| exchange(http::ExchangeError::Io(e)))?;
        let response = http::read_response(&mut stream).map_err(exchange)?;
        stream.conn.send_close_notify();
        let _ = stream.flush_close();
        Ok(response)
    }
}

impl ApiClient {
    /// A GET whose answer streams (`GET /v1/logs/SERVICE?follow=1`): a 200
    /// body goes to `each` as it arrives, with no read timeout, until the
    /// server ends it or `each` returns false (then `Ok(None)`). Any other
    /// status is returned whole, as [`request`](Self::request) would.
    pub fn stream(
        &self,
        path: &str,
        mut each: impl FnMut(&[u8]) -> bool,
    ) -> Result<Option<Response>, ClientError> {
        let exchange = |source| ClientError::Exchange {
            method: "GET".to_string(),
            endpoint: self.endpoint.to_string(),
            path: path.to_string(),
            source,
        };
        let mut stream = self.connect()?;
        let host = self.endpoint.dial_address();
        let request = http::Request {
            method: "GET",
            path,
            host: &host,
            authorization: self.token.as_ref().map(Token::expose),
            body: None,
        };
        http::write_request(&mut stream, &request)
            .map_err(|e| exchange(http::ExchangeError::Io(e)))?;
        let head = http::read_head(&mut stream).map_err(exchange)?;
        if head.status != 200 {
            let mut body = head.rest;
            let _ = io::Read::read_to_end(
                &mut io::Read::take(&mut stream, http::MAX_BODY as u64),
                &mut body,
            );
            let body = match head.chunked {
                true => dechunk(&body),
                false => body,
            };
            return Ok(Some(Response {
                status: head.status,
                body,
                www_authenticate: head.www_authenticate,
            }));
        }
        // A followed log may be quiet for long: only the server ends it.
        let _ = stream.sock.set_read_timeout(None);
        http::stream_body(&mut stream, head, &mut each).map_err(exchange)?;
        Ok(None)
    }
}

/// The data of a complete chunked body (an error answer, read whole).
fn dechunk(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut input = body;
    let head = http::Head {
        status: 0,
        length: None,
        chunked: true,
        www_authenticate: None,
        rest: Vec::new(),
    };
    let _ = http::stream_body(&mut input, head, &mut |c| {
        out.extend_from_slice(c);
        true
    });
    out
}

trait FlushClose {
    fn flush_close(&mut self) -> io::Result<()>;
}

impl FlushClose for StreamOwned<ClientConnection, TcpStream> {
    fn flush_close(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(&mut self.sock)?;
        }
        Ok(())
    }
}

fn handshake(
    tcp: TcpStream,
    tls: Arc<ClientConfig>,
    endpoint: &Endpoint,
    timeout: Duration,
    label: &str,
) -> Result<StreamOwned<ClientConnection, TcpStream>, ClientError> {
    let tls_error = |reason: String| ClientError::Tls {
        endpoint: label.to_string(),
        reason,
    };
    let _ = tcp.set_read_timeout(Some(timeout));
    let _ = tcp.set_write_timeout(Some(timeout));
    let _ = tcp.set_nodelay(true);
    let conn = ClientConnection::new(tls, endpoint.server_name().clone())
        .map_err(|e| tls_error(e.to_string()))?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| tls_error(tls_reason(&e)))?;
    }
    Ok(stream)
}

/// The certificate chain `endpoint` presents (its own certificate first),
/// without trusting it and without sending a request: the first step of
/// pinning on first use. The operator compares a fingerprint from it with
/// the appliance's console before anything is trusted.
pub fn presented_chain(
    endpoint: &Endpoint,
    connector: Option<Connector>,
    timeout: Duration,
) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let label = endpoint.to_string();
    let recorder = Arc::new(Presented::new());
    let tls = client_config(recorder.clone()).map_err(|e| ClientError::Tls {
        endpoint: label.clone(),
        reason: e.to_string(),
    })?;
    let connector = connector.unwrap_or_else(|| Arc::new(dial));
    let tcp =
        connector(&endpoint.dial_address(), timeout).map_err(|source| ClientError::Connect {
            endpoint: label.clone(),
            source,
        })?;
    // The recorder fails every handshake on purpose; the chain is what counts.
    let _ = handshake(tcp, Arc::new(tls), endpoint, timeout, &label);
    let chain = recorder.chain();
    if chain.is_empty() {
        return Err(ClientError::Tls {
            endpoint: label,
            reason: "the server presented no certificate (not a TLS server?)".into(),
        });
    }
    Ok(chain)
}
