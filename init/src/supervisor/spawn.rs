//! Starting one child: argv/env, pipes, cgroup, privileges.
//!
//! Owns the fork/exec path. Everything the child does between fork and exec is
//! computed in the parent first (`ChildSetup`), because the parent has threads:
//! after fork only async-signal-safe raw syscalls may run, no allocation, no
//! locks. It must never wait for the child or read its output.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use kindling_init_protocol::table::ServiceSpec;

/// The fd number children find their readiness pipe on (s6 uses 3 too; shells
/// can only redirect to single-digit fds).
pub const NOTIFY_FD: RawFd = 3;

static NOTIFY_FD_RESERVED: AtomicBool = AtomicBool::new(false);

/// What fd 3 holds between spawns: a read-only descriptor of `/`, which exists
/// before any filesystem is mounted (unlike /dev/null).
static PLACEHOLDER: OnceLock<OwnedFd> = OnceLock::new();

/// Keeps fd 3 occupied (by a close-on-exec placeholder) for the life of the
/// process, so no other descriptor can ever be given that number: at each
/// spawn the readiness pipe is swapped in atomically with `dup3` and swapped
/// back out after. Call once, before any other thread exists.
pub fn reserve_notify_fd() -> io::Result<()> {
    let root = OwnedFd::from(std::fs::File::open("/")?);
    let placeholder = if root.as_raw_fd() == NOTIFY_FD {
        // fd 3 was free and now holds `/`; keep it there and use a copy as the source.
        let copy = root.try_clone()?;
        std::mem::forget(root);
        copy
    } else {
        occupy_notify_fd(&root)?;
        root
    };
    let _ = PLACEHOLDER.set(placeholder);
    NOTIFY_FD_RESERVED.store(true, Ordering::Release);
    Ok(())
}

/// Puts `target` onto fd 3 (close-on-exec), replacing what is there.
fn occupy_notify_fd(target: &impl AsFd) -> io::Result<()> {
    // SAFETY: dup3 atomically replaces fd 3, which this process reserved for
    // exactly this purpose and no `OwnedFd` owns; `target` is a live descriptor.
    let res = unsafe { libc::dup3(target.as_fd().as_raw_fd(), NOTIFY_FD, libc::O_CLOEXEC) };
    if res < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// PATH given to every child.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
pub use kindling_init_protocol::notify::NOTIFY_ENV;

/// Why a child could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("program {0} does not exist")]
    NotInstalled(String),
    #[error("capabilities: {0}")]
    Capabilities(String),
    #[error("init is not root, so it cannot run a service as uid {uid} gid {gid}")]
    NotPrivileged { uid: u32, gid: u32 },
    #[error("creating the readiness pipe: {0}")]
    NotifyPipe(nix::Error),
    #[error("starting {program}: {source}")]
    Exec { program: String, source: io::Error },
}

/// A started child: its pid and the parent's ends of its pipes.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
    pub notify: Option<OwnedFd>,
}

/// `capset(2)` header, version 3 (64-bit sets).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// `capset(2)` data, one per 32-bit half.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// What the child does between fork and exec, all decided before fork.
struct ChildSetup {
    /// Capabilities to remove from the bounding set.
    drop_bounding: Vec<libc::c_ulong>,
    /// Capabilities kept (bit per capability number).
    keep: u64,
    /// Change uid/gid, capabilities and bounding set (init runs as root).
    privileged: bool,
    uid: libc::uid_t,
    gid: libc::gid_t,
    /// Supplementary groups (may be empty: then none).
    groups: Vec<libc::gid_t>,
    /// `cgroup.procs` of the service's cgroup, open for writing.
    cgroup_procs: Option<RawFd>,
    /// Write end of the readiness pipe, to be inherited across exec.
    notify: Option<RawFd>,
}

impl ChildSetup {
    /// Runs in the forked child. Only raw syscalls on precomputed data.
    fn apply(&self) -> io::Result<()> {
        // SAFETY: setsid has no memory-safety preconditions; a new session keeps
        // the service out of init's process group and controlling terminal.
        if unsafe { libc::setsid() } < 0 {
            return Err(io::Error::last_os_error());
        }
        if let Some(fd) = self.cgroup_procs {
            // Writing "0" moves the writing process itself.
            // SAFETY: fd is an open descriptor owned by the parent for the duration
            // of the spawn; the buffer is a static 1-byte slice.
            if unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) } != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        if let Some(fd) = self.notify {
            // SAFETY: clearing FD_CLOEXEC on an fd we own in this process.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: an empty, stack-allocated set; sigprocmask is async-signal-safe.
        unsafe {
            let mut empty: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut empty);
            libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        }
        if self.privileged {
            for &cap in &self.drop_bounding {
                // SAFETY: plain prctl; EINVAL for a capability this kernel lacks is fine.
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
            }
            if self.uid != 0 {
                // Keep permitted capabilities across setuid so the kept ones can
                // be made ambient below.
                // SAFETY: plain prctl.
                unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
            }
            let (count, list) = if self.groups.is_empty() {
                (0, std::ptr::null())
            } else {
                (self.groups.len(), self.groups.as_ptr())
            };
            // SAFETY: setgroups reads `count` gids from a vector built before
            // fork and not touched since; a null list of length 0 clears the
            // supplementary groups.
            if unsafe { libc::setgroups(count, list) } < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: plain setgid/setuid with ids computed before fork.
            if unsafe { libc::setgid(self.gid) } < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: as above.
            if unsafe { libc::setuid(self.uid) } < 0 {
                return Err(io::Error::last_os_error());
            }
            let header = CapHeader {
                version: CAP_VERSION_3,
                pid: 0,
            };
            let low = self.keep as u32;
            let high = (self.keep >> 32) as u32;
            let data = [
                CapData {
                    effective: low,
                    permitted: low,
                    inheritable: low,
                },
                CapData {
                    effective: high,
                    permitted: high,
                    inheritable: high,
                },
            ];
            // SAFETY: header and data are valid, correctly laid out v3 capset
            // arguments living on this stack frame.
            if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } < 0 {
                return Err(io::Error::last_os_error());
            }
            for cap in 0..64u64 {
                if self.keep & (1 << cap) != 0 {
                    // Ambient capabilities survive exec for a non-root uid.
                    // SAFETY: plain prctl; failure leaves the capability out, never more.
                    unsafe {
                        libc::prctl(
                            libc::PR_CAP_AMBIENT,
                            libc::PR_CAP_AMBIENT_RAISE,
                            cap as libc::c_ulong,
                            0,
                            0,
                        )
                    };
                }
            }
        }
        // SAFETY: plain prctl.
        if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Highest capability number this kernel knows.
fn last_cap() -> u64 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// Whether init can change ids and capabilities of its children.
pub fn init_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Starts `spec`'s program. `cgroup_procs` is the service cgroup's `cgroup.procs`
/// (opened by the caller), `notify` whether to pass a readiness pipe.
pub fn spawn(
    spec: &ServiceSpec,
    cgroup_procs: Option<&File>,
    notify: bool,
) -> Result<Spawned, SpawnError> {
    let program = spec.argv.first().cloned().unwrap_or_default();
    if !std::path::Path::new(&program).exists() {
        return Err(SpawnError::NotInstalled(program));
    }
    let kept = spec.kept_capabilities().map_err(SpawnError::Capabilities)?;
    let keep = kept.iter().fold(0u64, |acc, c| acc | (1u64 << c.index()));
    let privileged = init_is_root();
    if !privileged {
        let (uid, gid) = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        if spec.user != uid && spec.user != 0
            || spec.group != gid && spec.group != 0
            || !spec.groups.is_empty()
        {
            return Err(SpawnError::NotPrivileged {
                uid: spec.user,
                gid: spec.group,
            });
        }
    }
    let drop_bounding = (0..=last_cap())
        .filter(|c| *c < 64 && keep & (1 << c) == 0)
        .map(|c| c as libc::c_ulong)
        .collect();

    let pipe = if notify {
        Some(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(SpawnError::NotifyPipe)?)
    } else {
        None
    };
    // With fd 3 reserved, the child gets its pipe as fd 3; otherwise (library
    // use without the reservation) under whatever number the pipe has.
    let fixed_fd = pipe.is_some() && NOTIFY_FD_RESERVED.load(Ordering::Acquire);
    let notify_fd = match &pipe {
        Some(_) if fixed_fd => Some(NOTIFY_FD),
        Some((_, write)) => Some(write.as_raw_fd()),
        None => None,
    };
    let setup = ChildSetup {
        drop_bounding,
        keep,
        privileged,
        uid: spec.user,
        gid: spec.group,
        groups: spec.groups.clone(),
        cgroup_procs: cgroup_procs.map(|f| f.as_raw_fd()),
        notify: notify_fd,
    };

    let mut command = Command::new(&program);
    command
        .args(spec.argv.iter().skip(1))
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(child_env(&spec.env))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(fd) = notify_fd {
        command.env(NOTIFY_ENV, fd.to_string());
    }
    // SAFETY: `ChildSetup::apply` only issues raw, async-signal-safe syscalls
    // on data computed before fork, as required in a multithreaded parent.
    unsafe {
        command.pre_exec(move || setup.apply());
    }
    if let (true, Some((_, write))) = (fixed_fd, &pipe) {
        occupy_notify_fd(write).map_err(|e| {
            SpawnError::NotifyPipe(nix::Error::from_raw(
                e.raw_os_error().unwrap_or(libc::EBADF),
            ))
        })?;
    }
    let spawned = command.spawn();
    if fixed_fd {
        // Back to the placeholder, so the parent holds no extra reference to the pipe.
        if let Some(placeholder) = PLACEHOLDER.get() {
            let _ = occupy_notify_fd(placeholder);
        }
    }
    let mut child = spawned.map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => SpawnError::NotInstalled(program.clone()),
        _ => SpawnError::Exec {
            program: program.clone(),
            source,
        },
    })?;
    // The parent's copy of the write end must close, or EOF never comes.
    let notify = pipe.map(|(read, write)| {
        drop(write);
        read
    });
    let stdout = child.stdout.take().map(OwnedFd::from);
    let stderr = child.stderr.take().map(OwnedFd::from);
    let pid = child.id() as i32;
    // Dropping `Child` neither waits nor kills; init's reaper collects the exit.
    drop(child);
    Ok(Spawned {
        pid,
        stdout,
        stderr,
        notify,
    })
}

fn child_env(env: &BTreeMap<String, String>) -> impl Iterator<Item = (&String, &String)> {
    env.iter().filter(|(k, _)| k.as_str() != NOTIFY_ENV)
}
