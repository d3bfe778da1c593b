//! Byte windows of files: a boot file's bytes inside the ISO medium, and
//! one partition of the disk being written, as a positioned writer
//! ([`Window`]) or a stream ([`Slice`], for `fatfs`' reading back). Never
//! reaches outside its window.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use crate::iso::Extent;

/// A boot file to copy: where its bytes are in which file (the ISO
/// medium, or a plain file).
#[derive(Debug, Clone, Copy)]
pub struct BootFile<'a> {
    pub file: &'a File,
    pub extent: Extent,
}

impl<'a> BootFile<'a> {
    /// All of a plain file.
    pub fn whole(file: &'a File) -> io::Result<BootFile<'a>> {
        Ok(BootFile {
            file,
            extent: Extent {
                offset: 0,
                size: file.metadata()?.len(),
            },
        })
    }
}

/// A partition of the disk, for writes at offsets inside it only.
#[derive(Debug, Clone, Copy)]
pub struct Window<'a> {
    file: &'a File,
    start: u64,
    len: u64,
}

impl<'a> Window<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Window<'a> {
        Window { file, start, len }
    }

    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> io::Result<()> {
        if offset + bytes.len() as u64 > self.len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "write past the end of the partition",
            ));
        }
        self.file.write_all_at(bytes, self.start + offset)
    }
}

/// A window of a file (one partition of the disk) as a stream.
#[derive(Debug)]
pub struct Slice<'a> {
    file: &'a File,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a> Slice<'a> {
    pub fn new(file: &'a File, start: u64, len: u64) -> Slice<'a> {
        Slice {
            file,
            start,
            len,
            pos: 0,
        }
    }
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for Slice<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let n = (buf.len() as u64).min(left) as usize;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end of the partition",
            ));
        }
        let n = self.file.write_at(&buf[..n], self.start + self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for Slice<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match target {
            Some(n) if n <= self.len => {
                self.pos = n;
                Ok(n)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek outside the partition",
            )),
        }
    }
}
