//! Lays out the initramfs as docs/contracts.md ("Files in the image") fixes
//! it, and writes it as `initramfs.cpio.zst`.
//!
//! It decides paths only from resolved inputs; it never checks inputs (that
//! is `inputs`) and never adds a shell or package manager unless the build
//! asked for the debug shell.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::error::BuildError;
use super::inputs::{Binary, HostCopy, Overlay, TrustKey};
use super::modules::ModuleSelection;
use super::rootfs::{Content, RootFs, MODE_DIR, MODE_EXEC, MODE_FILE};
use super::services;

/// Everything that goes into the image, already checked.
#[derive(Debug, Default)]
pub struct ImageContents {
    pub version: String,
    pub kernel_version: String,
    pub init: Option<Binary>,
    pub binaries: Vec<Binary>,
    /// Loader and libraries of dynamically linked extra binaries.
    pub libraries: Vec<HostCopy>,
    pub overlays: Vec<Overlay>,
    pub trust_keys: Vec<TrustKey>,
    pub modules_dir: Option<std::path::PathBuf>,
    pub modules: ModuleSelection,
    /// (file name, contents) of the filtered module index files.
    pub module_indexes: Vec<(String, Vec<u8>)>,
    /// (name under /lib/firmware, host path).
    pub firmware: Vec<(String, std::path::PathBuf)>,
    /// Firmware the modules name that the build machine does not have.
    pub firmware_missing: Vec<String>,
    pub ca_bundle: Option<std::path::PathBuf>,
    /// (file name, host path) for /usr/share/kindling/boot/.
    pub ipxe: Vec<(String, std::path::PathBuf)>,
    /// (name, host path) for /usr/share/kindling/artifacts/.
    pub artifacts: Vec<(String, std::path::PathBuf)>,
    /// Busybox and its applet paths (e.g. "bin/sh"), with --debug-shell.
    pub busybox: Option<(std::path::PathBuf, Vec<String>)>,
}

/// Builds the tree. Later entries never silently replace earlier ones that
/// matter: extra binaries were checked against reserved names before.
pub fn layout(contents: &ImageContents) -> RootFs {
    let mut fs = RootFs::new();
    // Mount points init uses, and the console the kernel opens for /init's
    // stdio before any filesystem is mounted.
    for dir in [
        "proc",
        "sys",
        "dev",
        "run",
        "var/lib/kindling",
        "mnt",
        "etc/kindling/overlays",
        "etc/kindling/trust",
    ] {
        fs.dir(dir, MODE_DIR);
    }
    fs.dir("tmp", 0o1777);
    fs.char_device("dev/console", 5, 1, 0o600);

    if let Some(init) = &contents.init {
        fs.file(
            &init.image_path,
            Content::HostFile(init.source.clone()),
            MODE_EXEC,
        );
        // kindling-init is multi-call: as /sbin/modprobe (the kernel's
        // default modprobe path) it loads what request_module() asks for.
        fs.symlink(
            "sbin/modprobe",
            &format!("/{}", init.image_path.trim_start_matches('/')),
        );
    }
    for binary in &contents.binaries {
        let file = binary.installed.as_ref().unwrap_or(&binary.source);
        fs.file(
            &binary.image_path,
            Content::HostFile(file.clone()),
            MODE_EXEC,
        );
    }
    // The loader is reachable both as PT_INTERP (/lib64/…) and as a
    // library (/lib/x86_64-linux-gnu/…): one copy, the other a symlink.
    let mut first_copy: std::collections::HashMap<&Path, &str> = std::collections::HashMap::new();
    for library in &contents.libraries {
        match first_copy.get(library.source.as_path()) {
            Some(target) => fs.symlink(&library.image_path, target),
            None => {
                fs.file(
                    &library.image_path,
                    Content::HostFile(library.source.clone()),
                    MODE_EXEC,
                );
                first_copy.insert(&library.source, &library.image_path);
            }
        }
    }

    // Names for the fixed service accounts (init runs each child as its own
    // uid; nothing looks these up, they let `ps` and `ls -n` be read).
    fs.file(
        "etc/passwd",
        Content::Bytes(kindling_init_protocol::accounts::passwd().into_bytes()),
        MODE_FILE,
    );
    fs.file(
        "etc/group",
        Content::Bytes(kindling_init_protocol::accounts::group().into_bytes()),
        MODE_FILE,
    );
    fs.file(
        "etc/kindling/version",
        Content::Bytes(format!("{}\n", contents.version).into_bytes()),
        MODE_FILE,
    );
    let list: String = contents
        .modules
        .load
        .iter()
        .map(|m| format!("{m}\n"))
        .collect();
    fs.file(
        "etc/kindling/modules.list",
        Content::Bytes(list.into_bytes()),
        MODE_FILE,
    );
    fs.file(
        "etc/kindling/services.json",
        Content::Bytes(services::fallback_json()),
        MODE_FILE,
    );
    for key in &contents.trust_keys {
        fs.file(
            &format!("etc/kindling/trust/{}", key.file_name),
            Content::HostFile(key.path.clone()),
            MODE_FILE,
        );
    }
    let order: String = contents
        .overlays
        .iter()
        .map(|o| format!("{}\n", o.file_name))
        .collect();
    fs.file(
        "etc/kindling/overlays/order",
        Content::Bytes(order.into_bytes()),
        MODE_FILE,
    );
    for overlay in &contents.overlays {
        let base = format!("etc/kindling/overlays/{}", overlay.file_name);
        fs.file(&base, Content::HostFile(overlay.path.clone()), MODE_FILE);
        fs.file(
            &format!("{base}.minisig"),
            Content::HostFile(overlay.signature.clone()),
            MODE_FILE,
        );
    }
    if let Some(ca) = &contents.ca_bundle {
        fs.file(
            "etc/ssl/certs/ca-certificates.crt",
            Content::HostFile(ca.clone()),
            MODE_FILE,
        );
    }

    let kmod_root = format!("lib/modules/{}", contents.kernel_version);
    fs.dir(&kmod_root, MODE_DIR);
    if let Some(dir) = &contents.modules_dir {
        for rel in &contents.modules.files {
            fs.file(
                &format!("{kmod_root}/{rel}"),
                Content::HostFile(dir.join(rel)),
                MODE_FILE,
            );
        }
    }
    for (name, bytes) in &contents.module_indexes {
        fs.file(
            &format!("{kmod_root}/{name}"),
            Content::Bytes(bytes.clone()),
            MODE_FILE,
        );
    }
    for (name, source) in &contents.firmware {
        fs.file(
            &format!("lib/firmware/{name}"),
            Content::HostFile(source.clone()),
            MODE_FILE,
        );
    }

    for (name, source) in &contents.ipxe {
        fs.file(
            &format!("usr/share/kindling/boot/{name}"),
            Content::HostFile(source.clone()),
            MODE_FILE,
        );
    }
    fs.dir("usr/share/kindling/artifacts", MODE_DIR);
    for (name, source) in &contents.artifacts {
        fs.file(
            &format!("usr/share/kindling/artifacts/{name}"),
            Content::HostFile(source.clone()),
            MODE_FILE,
        );
    }

    if let Some((busybox, applets)) = &contents.busybox {
        fs.file("bin/busybox", Content::HostFile(busybox.clone()), MODE_EXEC);
        for applet in applets {
            // Applets never shadow a file the image already has (/init,
            // /bin/kindlingd, an extra binary).
            if !fs.contains(applet) {
                fs.symlink(applet, "/bin/busybox");
            }
        }
    }
    fs
}

/// Writes `fs` as a zstd-compressed newc archive at `path`. zstd at a fixed
/// level, single-threaded, is deterministic: same tree, same bytes.
pub fn write_compressed(
    fs: &RootFs,
    mtime: u32,
    level: i32,
    path: &Path,
) -> Result<(), BuildError> {
    let file = File::create(path).map_err(BuildError::io("create", path))?;
    let mut encoder = zstd::Encoder::new(BufWriter::new(file), level)
        .map_err(BuildError::io("compress", path))?;
    encoder
        .include_checksum(true)
        .map_err(BuildError::io("compress", path))?;
    let encoder =
        super::cpio::write_archive(fs, mtime, BufWriter::with_capacity(1 << 20, encoder), path)?;
    let encoder = encoder.into_inner().map_err(|err| BuildError::Io {
        action: "compress",
        path: path.to_path_buf(),
        source: err.into_error(),
    })?;
    let mut file = encoder.finish().map_err(BuildError::io("compress", path))?;
    file.flush().map_err(BuildError::io("write", path))?;
    file.into_inner()
        .map_err(|err| BuildError::Io {
            action: "write",
            path: path.to_path_buf(),
            source: err.into_error(),
        })?
        .sync_all()
        .map_err(BuildError::io("sync", path))
}
