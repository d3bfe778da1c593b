//! Errors of `kindling image build`, one variant per action that failed.
//!
//! Every message is one line that names what is wrong, where, and how to fix
//! it: the operator sees exactly this text (`kindling: error: …`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("no kernel found ({searched}): install Debian's kernel with `apt-get install linux-image-amd64` or pass --kernel PATH")]
    KernelNotFound { searched: String },

    #[error("kernel {path} does not exist: pass --kernel with the path of a bzImage (e.g. /boot/vmlinuz-<version>)")]
    KernelMissing { path: PathBuf },

    #[error("cannot tell the version of kernel {path} (no bzImage version string, no vmlinuz-<version> file name): pass --kernel-version")]
    KernelVersionUnknown { path: PathBuf },

    #[error("modules of kernel {version} not found at {path}: install the matching modules or pass --modules-dir DIR")]
    ModulesDirMissing { version: String, path: PathBuf },

    #[error("{file}:{line}: {reason}")]
    ModuleIndexParse {
        file: PathBuf,
        line: usize,
        reason: String,
    },

    #[error("{what} not found at {path}: {fix}")]
    BinaryMissing {
        what: String,
        path: PathBuf,
        fix: String,
    },

    #[error("{what} at {path} is not an x86-64 Linux ELF executable ({reason}): pass a binary built for x86_64-unknown-linux-gnu")]
    BinaryNotElf {
        what: String,
        path: PathBuf,
        reason: String,
    },

    #[error("{what} at {path} needs shared library {library}, which was not found in {searched}: install it on the build machine or pass a statically linked binary")]
    SharedLibraryMissing {
        what: String,
        path: PathBuf,
        library: String,
        searched: String,
    },

    #[error("--extra-bin {arg:?} is not NAME=PATH with NAME a plain file name (e.g. --extra-bin vault=/usr/bin/bao)")]
    ExtraBinSyntax { arg: String },

    #[error("--extra-bin {name} is given twice or collides with a file the image already has at /bin/{name}")]
    ExtraBinDuplicate { name: String },

    #[error("--artifact {arg:?} is not NAME=PATH with NAME a plain file name (e.g. --artifact debian-netboot.tar.gz=./netboot.tar.gz)")]
    ArtifactSyntax { arg: String },

    #[error("--artifact {name} is given twice: each artifact name must be unique")]
    ArtifactDuplicate { name: String },

    #[error("overlay {path} does not exist: build and sign it with `kindling overlay build` (or pass the right path to --site)")]
    OverlayMissing { path: PathBuf },

    #[error("--site {path} is a directory: pack and sign it first with `kindling overlay build {path} …` and pass the resulting .kovl")]
    OverlayIsDirectory { path: PathBuf },

    #[error("overlay {path} is not a .kovl file: pass a signed overlay NAME.kovl built by `kindling overlay build`")]
    OverlayNotKovl { path: PathBuf },

    #[error("overlay {path} is unsigned: {signature} is missing; sign it with `kindling overlay sign` or `minisign -Sm {path}`")]
    OverlayUnsigned { path: PathBuf, signature: PathBuf },

    #[error("overlay {path}: signature {signature} is unreadable ({reason}): re-sign the overlay")]
    OverlaySignatureInvalid {
        path: PathBuf,
        signature: PathBuf,
        reason: String,
    },

    #[error("overlay {path} is not signed by any --trust-key ({keys}): {reason}; sign it with a trusted key or add its public key with --trust-key")]
    OverlayUntrusted {
        path: PathBuf,
        keys: String,
        reason: String,
    },

    #[error("overlay {path} is invalid ({reason}): rebuild it with `kindling overlay build`")]
    OverlayInvalid { path: PathBuf, reason: String },

    #[error("overlay {path} holds overlay {name:?}, and the appliance accepts it only as {name}.kovl: pass it under that file name")]
    OverlayRenamed { path: PathBuf, name: String },

    #[error("overlay {path} expired at {expires}: the appliance would refuse it; rebuild it with a later --expires")]
    OverlayExpired { path: PathBuf, expires: String },

    #[error("overlay name {name} is given twice (--site {first} and --site {second}): each overlay name may appear once")]
    OverlayDuplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },

    #[error("no --trust-key given: the image could never accept its overlays; pass the public key that signed them (kindling.pub)")]
    TrustKeyNone,

    #[error("trust key {path} is unusable ({reason}): pass a minisign public key file (as written by `kindling keygen` or `minisign -G`)")]
    TrustKeyInvalid { path: PathBuf, reason: String },

    #[error("--version {version:?} is not usable: {reason}")]
    VersionInvalid { version: String, reason: String },

    #[error(
        "--formats {value:?}: unknown format {format:?}; choose from initramfs, iso, disk, pxe"
    )]
    FormatUnknown { value: String, format: String },

    #[error("output directory {path} is not writable ({reason}): choose another --out or fix its permissions")]
    OutDirUnwritable { path: PathBuf, reason: String },

    #[error("{tool} is not installed: install it with `apt-get install {package}`")]
    ToolMissing { tool: String, package: String },

    #[error("{tool} failed ({status}) while {action}: {stderr}")]
    ToolFailed {
        tool: String,
        action: String,
        status: String,
        stderr: String,
    },

    #[error("{input} {path} is missing: {fix}")]
    HostFileMissing {
        input: String,
        path: PathBuf,
        fix: String,
    },

    #[error("UKI stub {path} is not a PE image ({reason}): reinstall systemd-boot-efi")]
    StubInvalid { path: PathBuf, reason: String },

    #[error("the UKI {path} cannot be split for the ISO ({reason}): the installer could not rebuild it from the ISO's kernel and initramfs; report this with the systemd stub's version (systemd-boot-efi)")]
    UkiSplit { path: PathBuf, reason: String },

    #[error("{path} is {size} bytes, too large for an initramfs entry (newc holds at most 4 GiB per file)")]
    FileTooLarge { path: PathBuf, size: u64 },

    // The cause is printed by the caller's error chain (`{err:#}`), not here,
    // so it does not appear twice.
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// Wraps an I/O error with the action and the path it concerned.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| BuildError::Io {
            action,
            path,
            source,
        }
    }
}
