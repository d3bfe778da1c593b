//! Writes a served file's bytes (a whole file or one Range) to an HTTP
//! connection.
//!
//! Bodies of at least `MAP_MIN` bytes from regular files are memory-mapped
//! once and written to the connection straight from the mapping, `PIECE`
//! bytes per `write()`: the kernel copies page cache → socket once instead
//! of page cache → user buffer → socket (tiny_http never exposes the
//! socket, so `sendfile` is out of reach). Each piece's pages are dropped
//! from the mapping (`MADV_DONTNEED`) once written, so the mapped pages a
//! connection holds — they count in RSS — stay at about one piece. Smaller
//! bodies and anything that is not a regular file covering the whole range
//! take the plain read path.
//!
//! SIGBUS: touching a mapped page past the end of a file truncated after it
//! was mapped kills the process. Served files are immutable artifacts the
//! appliance itself owns (on its image or data partition; updates replace
//! them by rename, never rewrite them in place), and the file's length is
//! checked before every piece is written, so a file that shrinks anyway ends
//! the response early (the client sees a short body) except in the window
//! between that check and the copy.
//!
//! Owns body bytes only: it never writes headers and never reads a whole
//! file into memory.

use std::fs::File;
use std::io::{Read, Seek, Write};

/// Bytes per `write()` to the connection (both paths), and so the most
/// mapped pages one connection holds at a time.
const PIECE: usize = 256 * 1024;

/// Bodies shorter than this are read, not mapped: below one piece a mapping
/// costs more syscalls than the copy it saves.
const MAP_MIN: u64 = PIECE as u64;

/// Writes `len` bytes of `file`, from its current position, to `out`.
pub fn write_body(out: &mut dyn Write, mut file: File, len: u64) -> std::io::Result<()> {
    if len >= MAP_MIN {
        let start = file.stream_position()?;
        let meta = file.metadata()?;
        if meta.is_file() && meta.len() >= start.saturating_add(len) {
            if let Ok(size) = usize::try_from(len) {
                return write_mapped(out, &file, start, size);
            }
        }
    }
    write_read(out, &mut file, len)
}

fn write_mapped(out: &mut dyn Write, file: &File, start: u64, size: usize) -> std::io::Result<()> {
    let mut options = memmap2::MmapOptions::new();
    options.offset(start).len(size);
    // SAFETY: a shared read-only mapping of a regular file whose length
    // covers `start..start + size` (checked by the caller). Served files are
    // immutable artifacts the appliance owns, so the bytes under the slices
    // below do not change and no page lies past EOF; the length is also
    // re-checked before each piece (see the module doc on SIGBUS).
    let map = unsafe { options.map(file) }?;
    // Only a readahead hint for a cold file; serving works without it.
    let _ = map.advise(memmap2::Advice::Sequential);
    let mut done = 0usize;
    while done < size {
        let n = PIECE.min(size - done);
        let needed = start.saturating_add((done + n) as u64);
        if file.metadata()?.len() < needed {
            return Err(shrunk());
        }
        out.write_all(&map[done..done + n])?;
        // SAFETY: MADV_DONTNEED on a shared file mapping only drops these
        // pages' table entries; touching them again faults the same page
        // cache bytes back in, so the mapping's contents never change. No
        // slice into the range is alive any more (the write returned).
        // Failure only means the pages stay mapped until `map` drops.
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, done, n) };
        done += n;
    }
    Ok(())
}

fn write_read(out: &mut dyn Write, file: &mut File, len: u64) -> std::io::Result<()> {
    let mut buf = vec![0u8; usize::try_from(len).map_or(PIECE, |l| l.min(PIECE))];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(shrunk());
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}

fn shrunk() -> std::io::Error {
    // The client sees a body shorter than its Content-Length.
    std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "file shrank while serving",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::io::SeekFrom;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(bytes).unwrap();
        let file = File::open(tmp.path()).unwrap();
        (tmp, file)
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 4099) as u8).collect()
    }

    #[test]
    fn mapped_body_is_the_file_range() {
        // Several pieces plus a tail, from an offset that is not page aligned.
        let data = pattern(3 * PIECE + 12345);
        let (_tmp, mut file) = file_with(&data);
        let start = 777usize;
        file.seek(SeekFrom::Start(start as u64)).unwrap();
        let len = data.len() - start - 100;
        let mut out = Vec::new();
        write_body(&mut out, file, len as u64).unwrap();
        assert_eq!(out, &data[start..start + len]);
    }

    #[test]
    fn small_body_is_read() {
        let data = pattern(5000);
        let (_tmp, mut file) = file_with(&data);
        file.seek(SeekFrom::Start(10)).unwrap();
        let mut out = Vec::new();
        write_body(&mut out, file, 100).unwrap();
        assert_eq!(out, &data[10..110]);
    }

    #[test]
    fn file_shorter_than_promised_is_an_error_not_a_mapping() {
        let data = pattern(PIECE + 10);
        let (_tmp, file) = file_with(&data);
        let mut out = Vec::new();
        let err = write_body(&mut out, file, 2 * PIECE as u64).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        assert_eq!(out, data, "what the file has is sent before the error");
    }
}
