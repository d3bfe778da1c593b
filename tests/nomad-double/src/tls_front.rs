//! The double's HTTPS front: terminates TLS with the agent config's
//! `tls.cert_file`/`key_file` and, with `verify_https_client`, refuses every
//! client whose certificate does not chain to `tls.ca_file` — what Nomad
//! does with `tls { http = true, verify_https_client = true }`. Each
//! request is passed to the plain double on loopback and its answer back
//! (one request per connection, `Connection: close`).

use crate::agent_config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// A running front; stops when dropped.
pub struct TlsFront {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

fn server_config(tls: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .and_then(|i| i.collect::<Result<_, _>>())
        .map_err(|e| format!("{}: {e}", tls.cert_file.display()))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| format!("{}: {e}", tls.key_file.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.verify_https_client {
        let mut roots = rustls::RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(&tls.ca_file)
            .map_err(|e| format!("{}: {e}", tls.ca_file.display()))?
        {
            let ca = ca.map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
            roots.add(ca).map_err(|e| e.to_string())?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .map_err(|e| e.to_string())?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    builder
        .with_single_cert(certs, key)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

impl TlsFront {
    /// Listens on `listen` and passes requests to `inner`.
    pub fn start(listen: &str, inner: SocketAddr, tls: &TlsConfig) -> Result<Self, String> {
        let config = server_config(tls)?;
        let listener = TcpListener::bind(listen).map_err(|e| format!("bind {listen}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, refused) = (Arc::clone(&stop), Arc::clone(&refused));
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let (config, refused) = (Arc::clone(&config), Arc::clone(&refused));
                    std::thread::spawn(move || {
                        if serve(conn, config, inner).is_err() {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    });
                }
            })
        };
        Ok(Self {
            addr,
            stop,
            refused,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections that ended without an answer (failed handshakes: no or
    /// a foreign client certificate).
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    inner: SocketAddr,
) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let conn = rustls::ServerConnection::new(config).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The request head, with `Connection: close` so the plain double ends
    // the answer by closing.
    let mut head = Vec::new();
    let mut length = 0usize;
    {
        let mut reader = BufReader::new(&mut tls);
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if line == "\r\n" {
                head.extend_from_slice(b"Connection: close\r\n\r\n");
                break;
            }
            if !lower.starts_with("connection:") {
                head.extend_from_slice(line.as_bytes());
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        head.extend_from_slice(&body);
    }
    let mut plain = TcpStream::connect(inner)?;
    plain.write_all(&head)?;
    let mut answer = Vec::new();
    plain.read_to_end(&mut answer)?;
    tls.write_all(&answer)?;
    tls.conn.send_close_notify();
    tls.flush()
}
