//! Writes a `RootFs` as a reproducible newc cpio archive, the format the
//! kernel unpacks as its initramfs.
//!
//! Reproducible means: entries in the tree's sorted order, inode numbers
//! assigned by that order, every mtime set to the build's epoch
//! (SOURCE_DATE_EPOCH), owner root:root, no host device numbers. It must
//! never let host metadata (mtime, owner, inode) leak into the archive.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cpio::newc::{Builder, ModeFileType};

use super::error::BuildError;
use super::rootfs::{Content, Node, RootFs};

/// Streams `fs` into `out` and returns `out` after the trailer.
pub fn write_archive<W: Write>(
    fs: &RootFs,
    mtime: u32,
    mut out: W,
    archive: &Path,
) -> Result<W, BuildError> {
    let write_err = |source: io::Error| BuildError::Io {
        action: "write initramfs archive",
        path: archive.to_path_buf(),
        source,
    };
    // Inode 0 is avoided: some cpio readers treat it as "no inode".
    for (index, (path, node)) in fs.entries().enumerate() {
        let ino = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let base = Builder::new(path).ino(ino).uid(0).gid(0).mtime(mtime);
        out = match node {
            Node::Dir { mode } => {
                let entry = base
                    .mode(*mode)
                    .nlink(2)
                    .set_mode_file_type(ModeFileType::Directory);
                entry.write(out, 0).finish().map_err(write_err)?
            }
            Node::Symlink { target } => {
                let entry = base.mode(0o777).set_mode_file_type(ModeFileType::Symlink);
                let size = u32::try_from(target.len()).unwrap_or(u32::MAX);
                let mut writer = entry.write(out, size);
                writer.write_all(target.as_bytes()).map_err(write_err)?;
                writer.finish().map_err(write_err)?
            }
            Node::CharDevice { major, minor, mode } => {
                let entry = base
                    .mode(*mode)
                    .rdev_major(*major)
                    .rdev_minor(*minor)
                    .set_mode_file_type(ModeFileType::Char);
                entry.write(out, 0).finish().map_err(write_err)?
            }
            Node::File { content, mode } => {
                let entry = base.mode(*mode).set_mode_file_type(ModeFileType::Regular);
                match content {
                    Content::Bytes(bytes) => {
                        let size = entry_size(bytes.len() as u64, Path::new(path))?;
                        let mut writer = entry.write(out, size);
                        writer.write_all(bytes).map_err(write_err)?;
                        writer.finish().map_err(write_err)?
                    }
                    Content::HostFile(source) => copy_host_file(entry, out, source, archive)?,
                }
            }
        };
    }
    cpio::newc::trailer(out).map_err(write_err)
}

fn copy_host_file<W: Write>(
    entry: Builder,
    out: W,
    source: &Path,
    archive: &Path,
) -> Result<W, BuildError> {
    let mut file = File::open(source).map_err(BuildError::io("read", source))?;
    let len = file
        .metadata()
        .map_err(BuildError::io("read", source))?
        .len();
    let size = entry_size(len, source)?;
    let mut writer = entry.write(out, size);
    let copied = io::copy(&mut file, &mut writer).map_err(|source_err| BuildError::Io {
        action: "copy into the initramfs",
        path: source.to_path_buf(),
        source: source_err,
    })?;
    if copied != len {
        // The cpio writer pads only a complete entry; a file that shrank
        // while being copied would corrupt every entry after it.
        return Err(BuildError::Io {
            action: "copy into the initramfs (file changed during the build)",
            path: source.to_path_buf(),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("expected {len} bytes, read {copied}"),
            ),
        });
    }
    writer.finish().map_err(|e| BuildError::Io {
        action: "write initramfs archive",
        path: archive.to_path_buf(),
        source: e,
    })
}

fn entry_size(len: u64, path: &Path) -> Result<u32, BuildError> {
    u32::try_from(len).map_err(|_| BuildError::FileTooLarge {
        path: PathBuf::from(path),
        size: len,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::build::rootfs::{MODE_EXEC, MODE_FILE};
    use std::io::Read;

    fn list(archive: &[u8]) -> Vec<(String, u32, u32, Vec<u8>)> {
        let mut rest = archive;
        let mut out = Vec::new();
        loop {
            let mut reader = cpio::NewcReader::new(rest).unwrap();
            if reader.entry().is_trailer() {
                break;
            }
            let entry = reader.entry();
            let (name, mode, mtime) = (entry.name().to_string(), entry.mode(), entry.mtime());
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            out.push((name, mode, mtime, data));
            rest = reader.finish().unwrap();
        }
        out
    }

    #[test]
    fn archive_round_trips_through_a_reader_with_fixed_metadata() {
        let mut fs = RootFs::new();
        fs.file("/init", Content::Bytes(b"#!init".to_vec()), MODE_EXEC);
        fs.file(
            "/etc/kindling/version",
            Content::Bytes(b"1.2.3\n".to_vec()),
            MODE_FILE,
        );
        fs.symlink("/bin/sh", "/bin/busybox");
        fs.char_device("/dev/console", 5, 1, 0o600);
        let bytes = write_archive(&fs, 1234, Vec::new(), Path::new("test")).unwrap();
        let entries = list(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/sh",
                "dev",
                "dev/console",
                "etc",
                "etc/kindling",
                "etc/kindling/version",
                "init"
            ]
        );
        assert!(entries.iter().all(|e| e.2 == 1234));
        let init = entries.iter().find(|e| e.0 == "init").unwrap();
        assert_eq!(init.1, 0o100755);
        assert_eq!(init.3, b"#!init");
        let sh = entries.iter().find(|e| e.0 == "bin/sh").unwrap();
        assert_eq!(sh.1, 0o120777);
        assert_eq!(sh.3, b"/bin/busybox");
        let console = entries.iter().find(|e| e.0 == "dev/console").unwrap();
        assert_eq!(console.1, 0o020600);
    }
}
