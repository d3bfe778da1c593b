//! Writes a served file's bytes (a whole file or one Range) to a client
//! socket with sendfile(2): page cache → socket inside the kernel, no user
//! buffer, so a connection streaming a 64 MiB initrd costs no memory of its
//! own and the file is never read into the process.
//!
//! A file that shrinks while it is served ends the body early (the client
//! sees fewer bytes than its Content-Length and the connection is closed);
//! nothing is mapped, so a truncation cannot fault the process.
//!
//! Owns body bytes only: it never writes headers.

use std::fs::File;
use std::io::{Error, ErrorKind};
use std::os::fd::AsFd;

/// Bytes per sendfile call: large enough to keep the socket full, small
/// enough that a send timeout is noticed between calls.
pub(crate) const CALL: usize = 8 * 1024 * 1024;

/// Sends `len` bytes of `file` starting at `start` to `socket`.
pub fn send_file(socket: impl AsFd, file: &File, start: u64, len: u64) -> std::io::Result<()> {
    let mut offset = start;
    let mut left = len;
    while left > 0 {
        let count = usize::try_from(left).map_or(CALL, |l| l.min(CALL));
        match rustix::fs::sendfile(&socket, file, Some(&mut offset), count) {
            Ok(0) => return Err(shrunk()),
            Ok(n) => left -= n as u64,
            Err(rustix::io::Errno::INTR) => continue,
            // The socket's send timeout ran out: the client stopped reading.
            Err(rustix::io::Errno::AGAIN) => {
                return Err(Error::new(ErrorKind::TimedOut, "client stopped reading"))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(crate) fn shrunk() -> Error {
    Error::new(ErrorKind::UnexpectedEof, "file shrank while serving")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    /// Sends through a real loopback socket and returns what arrived.
    fn received(data: &[u8], start: u64, len: u64) -> (std::io::Result<()>, Vec<u8>) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(data).unwrap();
        let file = File::open(tmp.path()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            let mut client = client;
            client.read_to_end(&mut got).unwrap();
            got
        });
        let result = send_file(&server, &file, start, len);
        drop(server);
        (result, reader.join().unwrap())
    }

    #[test]
    fn sends_the_requested_range() {
        let data = pattern(3 * 1024 * 1024 + 12345);
        let (start, len) = (777usize, data.len() - 777 - 100);
        let (result, got) = received(&data, start as u64, len as u64);
        result.unwrap();
        assert_eq!(got, &data[start..start + len]);
    }

    #[test]
    fn file_shorter_than_promised_is_an_error_after_what_it_has() {
        let data = pattern(5000);
        let (result, got) = received(&data, 0, 9000);
        assert_eq!(result.unwrap_err().kind(), ErrorKind::UnexpectedEof);
        assert_eq!(got, data);
    }
}
