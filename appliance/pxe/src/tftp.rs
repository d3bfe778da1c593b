//! Read-only TFTP for the iPXE binaries (async-tftp): rooted at the boot
//! directory, with blksize/tsize/timeout/windowsize negotiation.
//!
//! Owns the TFTP listener. It never writes (write requests are refused),
//! never follows a path out of the boot directory (`..`, absolute paths and
//! symlinks leading outside are refused), and counts every transfer and
//! refusal.

use crate::status::Stats;
use async_tftp::packet;
use async_tftp::server::{Handler, TftpServerBuilder};
use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
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

/// A served file, read directly on the TFTP executor. Boot files come from
/// the page cache or the initramfs: a read takes microseconds, much less
/// than async-tftp's default hop to a blocking thread pool and back for
/// every 1.4 KB block (that hop made transfers 3x slower than tftpd-hpa).
pub struct DirectFile {
    file: File,
    /// Counts what is read for sending (`tftp_sent_bytes`; a block sent
    /// again after a loss is read once).
    stats: Arc<Stats>,
}

impl futures_lite::AsyncRead for DirectFile {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let read = this.file.read(buf);
        if let Ok(n) = read {
            this.stats.add("tftp_sent_bytes", n as u64);
        }
        Poll::Ready(read)
    }
}

/// Read-only handler rooted at the boot directory, with counters.
pub struct BootDirHandler {
    root: PathBuf,
    stats: Arc<Stats>,
}

impl BootDirHandler {
    pub fn new(root: &Path, stats: Arc<Stats>) -> Result<Self, TftpError> {
        let root = root.canonicalize().map_err(|e| TftpError::Root {
            path: root.into(),
            source: e.into(),
        })?;
        if !root.is_dir() {
            return Err(TftpError::Root {
                path: root.clone(),
                source: async_tftp::Error::NotDir(root),
            });
        }
        Ok(Self { root, stats })
    }

    /// The file a request names, if it is a regular file inside the root
    /// (after resolving symlinks); `..`, absolute paths and anything
    /// outside are refused.
    pub fn resolve(&self, requested: &Path) -> Result<PathBuf, packet::Error> {
        let rel = requested
            .strip_prefix("/")
            .or_else(|_| requested.strip_prefix("./"))
            .unwrap_or(requested);
        if rel.as_os_str().is_empty()
            || !rel.components().all(|c| matches!(c, Component::Normal(_)))
        {
            return Err(packet::Error::PermissionDenied);
        }
        let real = self
            .root
            .join(rel)
            .canonicalize()
            .map_err(|_| packet::Error::FileNotFound)?;
        if !real.starts_with(&self.root) {
            return Err(packet::Error::PermissionDenied);
        }
        if !real.is_file() {
            return Err(packet::Error::FileNotFound);
        }
        Ok(real)
    }
}

impl Handler for BootDirHandler {
    type Reader = DirectFile;
    type Writer = futures_lite::io::Sink;

    async fn read_req_open(
        &mut self,
        client: &SocketAddr,
        path: &Path,
    ) -> Result<(Self::Reader, Option<u64>), packet::Error> {
        self.stats.bump("tftp_requests");
        let opened = self.resolve(path).and_then(|real| {
            let file = File::open(&real).map_err(|_| packet::Error::FileNotFound)?;
            let len = file.metadata().ok().map(|m| m.len());
            let stats = Arc::clone(&self.stats);
            Ok((DirectFile { file, stats }, len))
        });
        match &opened {
            Ok(_) => {
                self.stats.bump("tftp_transfers");
                tracing::info!(%client, path = %path.display(), "tftp: sending");
            }
            Err(packet::Error::PermissionDenied) => {
                self.stats.bump("tftp_refused");
                tracing::warn!(%client, path = %path.display(), "tftp: refused path outside the boot directory");
            }
            Err(e) => {
                self.stats.bump("tftp_errors");
                tracing::info!(%client, path = %path.display(), error = ?e, "tftp: not served");
            }
        }
        opened
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
    // async-io's block_on makes this thread poll the I/O reactor itself
    // while it waits; a plain block_on parks it and leaves readiness to
    // async-io's background thread, a cross-thread wake-up per block.
    async_io::block_on(async move {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn resolve_stays_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("undionly.kpxe"), b"x").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("escape")).unwrap();
        let h = BootDirHandler::new(dir.path(), Arc::new(Stats::default())).unwrap();
        assert!(h.resolve(Path::new("undionly.kpxe")).is_ok());
        assert!(h.resolve(Path::new("/undionly.kpxe")).is_ok());
        assert!(h.resolve(Path::new("./undionly.kpxe")).is_ok());
        for bad in ["../etc/passwd", "sub/../../etc/passwd", "escape"] {
            assert!(
                matches!(
                    h.resolve(Path::new(bad)),
                    Err(packet::Error::PermissionDenied)
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            h.resolve(Path::new("sub")),
            Err(packet::Error::FileNotFound)
        ));
        assert!(matches!(
            h.resolve(Path::new("missing")),
            Err(packet::Error::FileNotFound)
        ));
        // Absolute paths are taken relative to the root, like a chroot.
        assert!(matches!(
            h.resolve(Path::new("//etc/passwd")),
            Err(packet::Error::FileNotFound)
        ));
    }
}
