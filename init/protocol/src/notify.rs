//! The readiness notification a service sends to init.
//!
//! Owns the child's side of `readiness: {"kind": "notify"}`: init passes a pipe's
//! write end and names it in `KINDLING_NOTIFY_FD`; the service writes one line
//! there once it is ready (docs/contracts.md). Run by hand, without the
//! variable, every call here is a no-op. It never reads or waits for anything.

use std::fs::File;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};

/// Environment variable naming the readiness fd.
pub const NOTIFY_ENV: &str = "KINDLING_NOTIFY_FD";

/// The line a ready service writes.
pub const READY_LINE: &[u8] = b"ready\n";

/// Why the readiness pipe could not be used.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{NOTIFY_ENV}={value:?} is not a file descriptor number")]
    ParseFd { value: String },
    #[error("{NOTIFY_ENV}={fd} would be a standard stream")]
    StandardStream { fd: i32 },
    #[error("{NOTIFY_ENV}={fd} is not open: {source}")]
    CheckFd { fd: i32, source: std::io::Error },
    #[error("telling init we are ready (fd {fd}): {source}")]
    Write { fd: i32, source: std::io::Error },
}

/// The readiness pipe init passed, if any. Takes it once: the variable is
/// removed, so a second call (or a child process) finds nothing. Keep the
/// returned file and write `READY_LINE` when ready, or use `notify_ready`.
pub fn take_notify_pipe() -> Result<Option<NotifyPipe>, NotifyError> {
    let Some(value) = std::env::var_os(NOTIFY_ENV) else {
        return Ok(None);
    };
    std::env::remove_var(NOTIFY_ENV);
    let text = value.to_string_lossy();
    let fd: i32 = text.trim().parse().map_err(|_| NotifyError::ParseFd {
        value: text.to_string(),
    })?;
    if fd < 3 {
        return Err(NotifyError::StandardStream { fd });
    }
    // Refuse an fd that is not open, rather than adopting a number that a
    // later open() could reuse.
    std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map_err(|source| NotifyError::CheckFd { fd, source })?;
    // SAFETY: init gave this process the descriptor for this purpose, it is open
    // (checked above), and removing the variable above means nothing else in
    // this process adopts it, so taking ownership once here is sound.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(Some(NotifyPipe {
        fd,
        file: File::from(owned),
    }))
}

/// The write end of init's readiness pipe.
#[derive(Debug)]
pub struct NotifyPipe {
    fd: i32,
    file: File,
}

impl NotifyPipe {
    /// Writes the ready line; the pipe closes when `self` is dropped.
    pub fn ready(mut self) -> Result<(), NotifyError> {
        let fd = self.fd;
        self.file
            .write_all(READY_LINE)
            .map_err(|source| NotifyError::Write { fd, source })
    }
}

/// Tells init this service is ready: takes the pipe and writes the ready line.
/// `Ok` without doing anything when init passed no pipe (run by hand).
pub fn notify_ready() -> Result<(), NotifyError> {
    match take_notify_pipe()? {
        Some(pipe) => pipe.ready(),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::Read;
    use std::os::fd::IntoRawFd;

    /// The variable is process-wide, so every case runs in this one test.
    #[test]
    fn notify_through_an_inherited_pipe() {
        // No variable: nothing to do.
        std::env::remove_var(NOTIFY_ENV);
        notify_ready().unwrap();

        // A real pipe: the line arrives and the variable is consumed.
        let (mut reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = OwnedFd::from(writer).into_raw_fd();
        std::env::set_var(NOTIFY_ENV, fd.to_string());
        notify_ready().unwrap();
        assert!(std::env::var_os(NOTIFY_ENV).is_none());
        let mut got = Vec::new();
        reader.read_to_end(&mut got).unwrap();
        assert_eq!(got, READY_LINE);

        // Garbage and standard streams are refused, naming the variable.
        std::env::set_var(NOTIFY_ENV, "three");
        let err = notify_ready().unwrap_err().to_string();
        assert!(err.contains(NOTIFY_ENV) && err.contains("three"), "{err}");
        std::env::set_var(NOTIFY_ENV, "1");
        assert!(matches!(
            take_notify_pipe(),
            Err(NotifyError::StandardStream { fd: 1 })
        ));
        // A number that is not open is refused rather than adopted.
        std::env::set_var(NOTIFY_ENV, "100000");
        assert!(matches!(
            take_notify_pipe(),
            Err(NotifyError::CheckFd { fd: 100000, .. })
        ));
    }
}
