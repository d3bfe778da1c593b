//! Read-only TFTP for the iPXE binaries (async-tftp): rooted at the boot
//! directory, with blksize/tsize/timeout/windowsize negotiation.
//!
//! Owns the TFTP listener. It never writes (write requests are refused),
//! never follows a path out of the boot directory (`..` is refused by
//! async-tftp, and symlinks leading outside are refused here), and counts
//! every transfer and refusal.

use crate::status::Stats;
use async_tftp::packet;
use async_tftp::server::handlers::{DirHandler, DirHandlerMode};
use async_tftp::server::{Handler, TftpServerBuilder};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TftpError {
    #[error("TFTP root {path}: {source}")]
    Root {
        path: PathBuf,
        source: async_tftp::Error,
    },
    #[error("start TFTP server: {0}")]
    Start(async_tftp::Error),
    #[error("TFTP server stopped: {0}")]
    Serve(async_tftp::Error),
}

/// Wraps async-tftp's read-only directory handler with a symlink check and
/// counters.
pub struct BootDirHandler {
    root: PathBuf,
    inner: DirHandler,
    stats: Arc<Stats>,
}

impl BootDirHandler {
    pub fn new(root: &Path, stats: Arc<Stats>) -> Result<Self, TftpError> {
        let inner =
            DirHandler::new(root, DirHandlerMode::ReadOnly).map_err(|source| TftpError::Root {
                path: root.into(),
                source,
            })?;
        let root = root.canonicalize().map_err(|e| TftpError::Root {
            path: root.into(),
            source: e.into(),
        })?;
        Ok(Self { root, inner, stats })
    }

    /// The file a request names, if it stays inside the root after
    /// resolving symlinks.
    fn inside_root(&self, requested: &Path) -> bool {
        let rel: PathBuf = requested
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        if requested.components().any(|c| c == Component::ParentDir) {
            return false;
        }
        match self.root.join(rel).canonicalize() {
            Ok(real) => real.starts_with(&self.root),
            // Missing files are answered "not found" by the inner handler.
            Err(_) => true,
        }
    }
}

impl Handler for BootDirHandler {
    type Reader = <DirHandler as Handler>::Reader;
    type Writer = <DirHandler as Handler>::Writer;

    async fn read_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
    ) -> Result<(Self::Reader, Option<u64>), packet::Error> {
        self.stats.bump("tftp_requests");
        if !self.inside_root(path) {
            self.stats.bump("tftp_refused");
            tracing::warn!(%client, path = %path.display(), "tftp: refused path outside the boot directory");
            return Err(packet::Error::PermissionDenied);
        }
        match self.inner.read_req_open(client, path).await {
            Ok(ok) => {
                self.stats.bump("tftp_transfers");
                tracing::info!(%client, path = %path.display(), "tftp: sending");
                Ok(ok)
            }
            Err(e) => {
                self.stats.bump("tftp_errors");
                tracing::info!(%client, path = %path.display(), error = ?e, "tftp: refused");
                Err(e)
            }
        }
    }

    async fn write_req_open(
        &mut self,
        _client: &SocketAddr,
        _path: &Path,
        _size: Option<u64>,
    ) -> Result<Self::Writer, packet::Error> {
        self.stats.bump("tftp_refused");
        Err(packet::Error::IllegalOperation)
    }
}

/// Serves TFTP on `socket` (already bound, e.g. to the LAN interface) until
/// an unrecoverable error. Blocks the calling thread.
pub fn serve_blocking(socket: UdpSocket, root: &Path, stats: Arc<Stats>) -> TftpError {
    let handler = match BootDirHandler::new(root, stats) {
        Ok(h) => h,
        Err(e) => return e,
    };
    futures_lite::future::block_on(async move {
        let builder = match TftpServerBuilder::with_handler(handler).std_socket(socket) {
            Ok(b) => b,
            Err(e) => return TftpError::Start(e),
        };
        // iPXE's TFTP asks for blksize 1432 and no window; bigger windows
        // help other clients. Give up on a silent client after 3 s x retries.
        let server = match builder
            .timeout(Duration::from_secs(3))
            .window_size_limit(16)
            .build()
            .await
        {
            Ok(s) => s,
            Err(e) => return TftpError::Start(e),
        };
        match server.serve().await {
            Ok(()) => TftpError::Serve(async_tftp::Error::Io(std::io::Error::other(
                "server returned",
            ))),
            Err(e) => TftpError::Serve(e),
        }
    })
}
