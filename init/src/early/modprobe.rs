//! `/sbin/modprobe`: what the kernel runs when something needs a module
//! (`request_module()`: `fs-ext4` for a mount, `nft-expr-masq` for a ruleset,
//! `net-pf-16-proto-12` for a netlink socket, `crypto-crc32c` for a checksum).
//!
//! `kindling-init` is multi-call: started as `modprobe` (the image's
//! `/sbin/modprobe` is a symlink to `/init`) it runs only this. Owns the
//! command line and turning the requested name or alias into modules of the
//! image; which files to load and in what order stays with `modules`. It must
//! never do any of PID 1's work (mounts, console, reaping, signals): it runs as a
//! short-lived child of the kernel's usermode helper, possibly several at once.

use std::ffi::OsStr;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::modules::{module_name, Loader, ModuleError, ModuleIndex};
use crate::boot_config::BootConfig;

/// The file name that selects this mode.
pub const PROGRAM: &str = "modprobe";

/// Why a modprobe run failed.
#[derive(Debug, thiserror::Error)]
pub enum ModprobeError {
    #[error("unknown option {0} (this modprobe accepts -q, -v, --)")]
    UnknownOption(String),
    #[error("no module name given (usage: modprobe [-q] [-v] [--] <module or alias>)")]
    NoName,
    #[error("{name}: module parameters are not supported (got {parameters:?})")]
    Parameters {
        name: String,
        parameters: Vec<String>,
    },
    #[error("{0}: no module or alias of that name in this image")]
    NotFound(String),
    #[error("reading the kernel release (uname): {0}")]
    Uname(nix::Error),
    #[error("module index: {0}")]
    Index(ModuleError),
    #[error("{request}: {source}")]
    Load {
        request: String,
        source: ModuleError,
    },
}

/// One parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `-q`: a name nothing provides is not worth a message.
    pub quiet: bool,
    /// `-v`: say which modules were loaded.
    pub verbose: bool,
    /// The module name or alias, as given.
    pub name: String,
}

/// Whether `argv0` (a path or a bare name) selects modprobe mode.
pub fn is_modprobe(argv0: &OsStr) -> bool {
    Path::new(argv0).file_name() == Some(OsStr::new(PROGRAM))
}

/// Parses the arguments after argv[0]: `[-q] [-v] [--] <name>` (short options
/// may be combined, `-qv`). The kernel runs `modprobe -q -- <name>`.
pub fn parse_args(args: &[String]) -> Result<Request, ModprobeError> {
    let mut quiet = false;
    let mut verbose = false;
    let mut rest = args.iter();
    let mut name = None;
    for arg in rest.by_ref() {
        match arg.as_str() {
            "--" => {
                name = None;
                break;
            }
            "--quiet" => quiet = true,
            "--verbose" => verbose = true,
            flags if flags.starts_with('-') && flags.len() > 1 => {
                for flag in flags.chars().skip(1) {
                    match flag {
                        'q' => quiet = true,
                        'v' => verbose = true,
                        _ => return Err(ModprobeError::UnknownOption(arg.clone())),
                    }
                }
            }
            _ => {
                name = Some(arg.clone());
                break;
            }
        }
    }
    let name = match name {
        Some(name) => name,
        None => rest.next().cloned().ok_or(ModprobeError::NoName)?,
    };
    let parameters: Vec<String> = rest.cloned().collect();
    if !parameters.is_empty() {
        return Err(ModprobeError::Parameters { name, parameters });
    }
    Ok(Request {
        quiet,
        verbose,
        name,
    })
}

/// What a requested name stands for in this image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Built into the kernel: nothing to load.
    Builtin,
    /// These modules (one for a module name; every provider for an alias, as
    /// modprobe does: `crypto-crc32c` → `crc32c_intel`, `crc32c_generic`).
    Modules(Vec<String>),
}

/// A module name first (`-` and `_` alike), else the `modules.alias` patterns.
pub fn resolve(index: &ModuleIndex, request: &str) -> Result<Resolved, ModprobeError> {
    let as_module = module_name(request);
    if index.has(&as_module) {
        return Ok(Resolved::Modules(vec![as_module]));
    }
    if index.is_builtin(&as_module) {
        return Ok(Resolved::Builtin);
    }
    let providers = index.modules_for_request(request);
    if providers.is_empty() {
        return Err(ModprobeError::NotFound(request.to_string()));
    }
    Ok(Resolved::Modules(providers))
}

/// Loads what `request` names from the modules under `dir`
/// (`<modules_dir>/<release>`); returns the modules newly put into the kernel.
/// Already loaded counts as success. With several providers, one that loads
/// is enough; the first error is returned only if none did.
pub fn load(request: &Request, dir: &Path) -> Result<Vec<String>, ModprobeError> {
    let index = ModuleIndex::load(dir).map_err(ModprobeError::Index)?;
    let modules = match resolve(&index, &request.name)? {
        Resolved::Builtin => return Ok(Vec::new()),
        Resolved::Modules(modules) => modules,
    };
    let mut loader = Loader::new(&index, dir).with_subject(PROGRAM);
    let mut first_error = None;
    let mut any_ok = false;
    for module in &modules {
        match loader.load(module) {
            Ok(_) => any_ok = true,
            Err(source) => {
                first_error.get_or_insert(ModprobeError::Load {
                    request: request.name.clone(),
                    source,
                });
            }
        }
    }
    match first_error {
        Some(error) if !any_ok => Err(error),
        _ => Ok(loader.loaded_names().to_vec()),
    }
}

/// `<modules_dir>/<running kernel release>`.
fn release_dir(modules_dir: &Path) -> Result<PathBuf, ModprobeError> {
    let uname = nix::sys::utsname::uname().map_err(ModprobeError::Uname)?;
    Ok(modules_dir.join(uname.release()))
}

/// modprobe mode's entry point; returns the exit status (0 loaded or already
/// there, 1 not found or failed).
pub fn main(args: impl Iterator<Item = std::ffi::OsString>) -> i32 {
    open_standard_fds();
    let args: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let request = match parse_args(&args) {
        Ok(request) => request,
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            return 1;
        }
    };
    // The same init.json as PID 1 (modules_dir), defaults if unreadable.
    let config = BootConfig::load_from_env()
        .map(|(config, _)| config)
        .unwrap_or_default();
    let result = release_dir(&config.modules_dir).and_then(|dir| load(&request, &dir));
    match result {
        Ok(loaded) => {
            if !loaded.is_empty() {
                let line = format!("{}: loaded {}", request.name, loaded.join(" "));
                if request.verbose {
                    println!("{PROGRAM}: {line}");
                }
                kernel_log(5, &line);
            }
            0
        }
        Err(ModprobeError::NotFound(_)) if request.quiet => 1,
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            kernel_log(4, &e.to_string());
            1
        }
    }
}

/// One line in the kernel log (and so on the serial console): the usermode
/// helper gives us no stdout, and what was loaded on demand belongs next to
/// the kernel lines that asked for it. A failed write is dropped.
fn kernel_log(level: u8, line: &str) {
    if let Ok(mut kmsg) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = kmsg.write_all(format!("<{level}>kindling-modprobe: {line}\n").as_bytes());
    }
}

/// The kernel's usermode helper starts us without fds 0–2; a file opened
/// later would take those numbers and receive our output. /dev/null fills them.
fn open_standard_fds() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD only queries the descriptor flags; no memory is involved.
        let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1;
        if open {
            continue;
        }
        // open() returns the lowest free number, which is `fd` (lower ones are open).
        if let Ok(null) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
        {
            // Kept open for the rest of the process on purpose.
            let _ = std::os::fd::IntoRawFd::into_raw_fd(null);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn argv0_selects_the_mode() {
        assert!(is_modprobe(OsStr::new("/sbin/modprobe")));
        assert!(is_modprobe(OsStr::new("modprobe")));
        assert!(!is_modprobe(OsStr::new("/init")));
        assert!(!is_modprobe(OsStr::new("/sbin/modprobe.d")));
    }

    #[test]
    fn the_kernels_command_line_parses() {
        let request = parse_args(&args(&["-q", "--", "nft-expr-masq"])).unwrap();
        assert_eq!(
            request,
            Request {
                quiet: true,
                verbose: false,
                name: "nft-expr-masq".to_string()
            }
        );
        let request = parse_args(&args(&["-qv", "ext4"])).unwrap();
        assert!(request.quiet && request.verbose);
        assert_eq!(request.name, "ext4");
        // After --, a name may start with a dash.
        assert_eq!(parse_args(&args(&["--", "-odd"])).unwrap().name, "-odd");
    }

    #[test]
    fn bad_command_lines_are_named() {
        let err = parse_args(&args(&["-r", "ext4"])).unwrap_err().to_string();
        assert!(err.contains("unknown option -r"), "{err}");
        let err = parse_args(&args(&["-q", "--"])).unwrap_err().to_string();
        assert!(err.contains("no module name"), "{err}");
        assert!(matches!(parse_args(&[]), Err(ModprobeError::NoName)));
        let err = parse_args(&args(&["loop", "max_loop=8"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("loop: module parameters"), "{err}");
    }

    const DEP: &str = "\
kernel/net/netfilter/nft_masq.ko.xz: kernel/net/netfilter/nf_tables.ko.xz
kernel/net/netfilter/nf_tables.ko.xz:
kernel/fs/ext4/ext4.ko.xz:
kernel/arch/x86/crypto/crc32c-intel.ko.xz:
kernel/crypto/crc32c_generic.ko.xz:
";
    const BUILTIN: &str = "kernel/drivers/block/loop.ko\n";
    const ALIAS: &str = "\
alias nft-expr-masq nft_masq
alias nfnetlink-subsys-10 nf_tables
alias fs-ext4 ext4
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias net-pf-16-proto-12 nfnetlink
alias nft_chain_*_nat nf_tables
";

    fn index() -> ModuleIndex {
        ModuleIndex::parse(DEP, BUILTIN, ALIAS)
    }

    #[test]
    fn names_aliases_and_builtins_resolve() {
        let modules = |list: &[&str]| Resolved::Modules(args(list));
        // A module name, with - and _ alike.
        assert_eq!(
            resolve(&index(), "nf-tables").unwrap(),
            modules(&["nf_tables"])
        );
        assert_eq!(
            resolve(&index(), "crc32c_intel").unwrap(),
            modules(&["crc32c_intel"])
        );
        // Aliases the kernel asks for.
        assert_eq!(
            resolve(&index(), "nft-expr-masq").unwrap(),
            modules(&["nft_masq"])
        );
        assert_eq!(resolve(&index(), "fs-ext4").unwrap(), modules(&["ext4"]));
        assert_eq!(
            resolve(&index(), "nfnetlink_subsys_10").unwrap(),
            modules(&["nf_tables"])
        );
        // Every provider, in modules.alias order.
        assert_eq!(
            resolve(&index(), "crypto-crc32c").unwrap(),
            modules(&["crc32c_intel", "crc32c_generic"])
        );
        // Glob patterns, with - and _ alike on both sides.
        assert_eq!(
            resolve(&index(), "nft-chain-2-nat").unwrap(),
            modules(&["nf_tables"])
        );
        assert_eq!(resolve(&index(), "loop").unwrap(), Resolved::Builtin);
    }

    #[test]
    fn unknown_names_and_aliases_of_absent_modules_are_not_found() {
        let err = resolve(&index(), "fs-btrfs").unwrap_err();
        assert!(matches!(err, ModprobeError::NotFound(ref n) if n == "fs-btrfs"));
        assert!(err.to_string().contains("fs-btrfs: no module or alias"));
        // The alias exists but nfnetlink is not in the image.
        assert!(matches!(
            resolve(&index(), "net-pf-16-proto-12"),
            Err(ModprobeError::NotFound(_))
        ));
    }
}
