//! Every child's output kept in files: `<dir>/<service>.log`, rotated to
//! `.log.1` … `.log.<files - 1>` so one service never keeps more than
//! `files * file_bytes`. On the data partition when there is one (kept across
//! reboots), else in RAM (`/run/log`).
//!
//! Owns those files and where they live. It must never block init nor fail
//! it: a write that fails on the data partition (full disk, I/O error) moves
//! the logs to RAM for the rest of the boot, with the reason in init's
//! status; a failure in RAM stops file logging (the console keeps every
//! line). Lines are whole: each batch is one `write(2)` on an `O_APPEND` file.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kindling_init_protocol::accounts;
use kindling_init_protocol::control::{LogStorage, LogsStatus, SyslogStatus};
use kindling_init_protocol::table::OutputLogLimits;

use super::syslog::Forwarder;
use crate::console;

/// Smallest file bound init accepts (a smaller one would rotate on every line).
pub const MIN_FILE_BYTES: u64 = 4096;

/// Where the logs go and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub dir: PathBuf,
    pub storage: LogStorage,
    /// Why the logs are in RAM (none when they are on the data partition).
    pub reason: Option<String>,
}

/// The rotating per-service files.
pub struct ServiceLogs {
    place: Placement,
    /// The RAM directory a failing data partition falls back to.
    ram_dir: PathBuf,
    limits: OutputLogLimits,
    open: HashMap<String, (File, u64)>,
    /// File logging is off (RAM failed too); the console still has every line.
    off: bool,
    syslog: Option<Forwarder>,
}

impl ServiceLogs {
    /// Prepares `place` before any child runs (the API's group may write
    /// the data partition's top directory, so the directory is made or
    /// checked now, while nothing else can plant a link there); a place
    /// that is not init's own directory falls back to RAM.
    pub fn new(place: Placement, ram_dir: &Path, limits: OutputLogLimits) -> ServiceLogs {
        let place = match (place.storage, own_directory(&place.dir)) {
            (LogStorage::Data, Err(why)) => {
                crate::say!("log", "{why}; logs kept in RAM");
                Placement {
                    dir: ram_dir.to_path_buf(),
                    storage: LogStorage::Ram,
                    reason: Some(format!("{why}; logs kept in RAM")),
                }
            }
            _ => place,
        };
        ServiceLogs {
            place,
            ram_dir: ram_dir.to_path_buf(),
            limits: clamp(limits),
            open: HashMap::new(),
            off: false,
            syslog: None,
        }
    }

    /// A new bound (from the service table); applies from the next write.
    pub fn set_limits(&mut self, limits: OutputLogLimits) {
        self.limits = clamp(limits);
    }

    /// Forwards every line to `server` from now on (none: stops).
    pub fn set_syslog(&mut self, server: Option<std::net::SocketAddr>, hostname: &str) {
        if self.syslog.as_ref().map(Forwarder::server) == server {
            return;
        }
        self.syslog = server.and_then(|addr| match Forwarder::new(addr, hostname) {
            Ok(f) => Some(f),
            Err(e) => {
                crate::say!("log", "cannot forward to syslog {addr}: {e}");
                None
            }
        });
    }

    /// What init's status says about the logs.
    pub fn status(&self) -> LogsStatus {
        LogsStatus {
            dir: self.place.dir.display().to_string(),
            storage: self.place.storage,
            reason: self.place.reason.clone(),
            file_bytes: self.limits.file_bytes,
            files: self.limits.files,
            syslog: self.syslog.as_ref().map(|f| SyslogStatus {
                server: f.server().to_string(),
                sent: f.sent,
                dropped: f.dropped,
            }),
        }
    }

    /// Path of a service's current file.
    pub fn path(&self, service: &str) -> PathBuf {
        self.place.dir.join(format!("{service}.log"))
    }

    /// Appends lines, each stamped with wall-clock and boot time, in one
    /// write; rotates first when the batch would take the file past its bound.
    pub fn append(&mut self, service: &str, lines: &[&str]) {
        if lines.is_empty() {
            return;
        }
        let now = SystemTime::now();
        if let Some(forwarder) = self.syslog.as_mut() {
            let wall = rfc3339(now.duration_since(UNIX_EPOCH).unwrap_or_default());
            for line in lines {
                forwarder.send(service, &wall, line);
            }
        }
        if self.off {
            return;
        }
        let text = stamped(lines, now, console::boottime());
        if let Err(e) = self.write(service, text.as_bytes()) {
            self.fall_back(service, e, text.as_bytes());
        }
    }

    fn write(&mut self, service: &str, text: &[u8]) -> io::Result<()> {
        let len = text.len() as u64;
        if let Some((_, size)) = self.open.get(service) {
            if *size > 0 && size + len > self.limits.file_bytes {
                self.open.remove(service);
                rotate(&self.path(service), self.limits.files)?;
            }
        }
        let (file, size) = match self.open.get_mut(service) {
            Some(entry) => entry,
            None => {
                let entry = open_log(&self.place.dir, &self.path(service))?;
                self.open.entry(service.to_string()).or_insert(entry)
            }
        };
        // A short write on a full disk leaves a partial line: counted, and the
        // error moves the logs to RAM where the batch is written whole.
        match file.write_all(text) {
            Ok(()) => {
                *size += len;
                Ok(())
            }
            Err(e) => {
                *size += len;
                Err(e)
            }
        }
    }

    /// Moves the logs to RAM after a failed write on the data partition (and
    /// retries the batch there), or stops file logging if RAM failed.
    fn fall_back(&mut self, service: &str, error: io::Error, text: &[u8]) {
        self.open.clear();
        if self.place.storage == LogStorage::Ram {
            self.off = true;
            let reason = format!("writing {}: {error}", self.path(service).display());
            crate::say!("log", "{reason}; service output goes to the console only");
            self.place.reason = Some(format!("{reason}; file logging stopped"));
            return;
        }
        let reason = format!(
            "writing {} failed ({error}); logs kept in RAM until reboot",
            self.path(service).display()
        );
        crate::say!("log", "{reason}");
        self.place = Placement {
            dir: self.ram_dir.clone(),
            storage: LogStorage::Ram,
            reason: Some(reason),
        };
        if let Err(e) = self.write(service, text) {
            self.fall_back(service, e, text);
        }
    }
}

/// Makes `dir` or checks it is a real directory of init's own user (not a
/// link someone else put there).
fn own_directory(dir: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(dir)
                .map_err(|e| format!("creating {}: {e}", dir.display()))?;
            let _ = std::os::unix::fs::chown(dir, None, Some(accounts::API.gid));
            Ok(())
        }
        Err(e) => Err(format!("{}: {e}", dir.display())),
        Ok(meta) if !meta.is_dir() => Err(format!("{} is not a directory", dir.display())),
        Ok(meta) if meta.uid() != nix::unistd::geteuid().as_raw() => Err(format!(
            "{} belongs to uid {}, not init",
            dir.display(),
            meta.uid()
        )),
        Ok(_) => Ok(()),
    }
}

fn clamp(limits: OutputLogLimits) -> OutputLogLimits {
    OutputLogLimits {
        file_bytes: limits.file_bytes.max(MIN_FILE_BYTES),
        files: limits.files.max(1),
    }
}

fn open_log(dir: &Path, path: &Path) -> io::Result<(File, u64)> {
    // Output may say more than a service's status does: root writes, only
    // the API's group reads (`GET /v1/logs`). Giving the group away fails
    // when init is not root (tests), which changes nothing else.
    let reader = Some(accounts::API.gid);
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o750)
            .create(dir)?;
        let _ = std::os::unix::fs::chown(dir, None, reader);
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if meta.gid() != accounts::API.gid {
        let _ = std::os::unix::fs::fchown(&file, None, reader);
    }
    Ok((file, meta.len()))
}

fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// `NAME.log` becomes `NAME.log.1`, older copies move up, and the one past
/// `files - 1` is deleted; with `files == 1` the file is simply deleted.
fn rotate(path: &Path, files: u32) -> io::Result<()> {
    let missing_ok = |r: io::Result<()>| match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    };
    if files <= 1 {
        return missing_ok(std::fs::remove_file(path));
    }
    missing_ok(std::fs::remove_file(numbered(path, files - 1)))?;
    for n in (1..files - 1).rev() {
        missing_ok(std::fs::rename(numbered(path, n), numbered(path, n + 1)))?;
    }
    missing_ok(std::fs::rename(path, numbered(path, 1)))
}

/// `2026-12-05T16:21:17.123456Z [   12.345678] <line>\n` per line: wall
/// time to find lines across reboots, boot time as on the console.
fn stamped(lines: &[&str], wall: SystemTime, boot: Duration) -> String {
    let wall = rfc3339(wall.duration_since(UNIX_EPOCH).unwrap_or_default());
    let boot = console::stamp(boot);
    let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 44).sum());
    for line in lines {
        text.push_str(&wall);
        text.push(' ');
        text.push_str(&boot);
        text.push(' ');
        text.push_str(line);
        text.push('\n');
    }
    text
}

/// UTC RFC 3339 with microseconds, from time since the epoch.
pub fn rfc3339(since_epoch: Duration) -> String {
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_micros()
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ki-logs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn logs(dir: &Path, file_bytes: u64, files: u32) -> ServiceLogs {
        ServiceLogs::new(
            Placement {
                dir: dir.join("data"),
                storage: LogStorage::Data,
                reason: None,
            },
            &dir.join("ram"),
            OutputLogLimits { file_bytes, files },
        )
    }

    #[test]
    fn rotation_keeps_the_total_within_files_times_file_bytes() {
        let dir = temp_dir("bound");
        let mut logs = logs(&dir, 4096, 3);
        let line = "x".repeat(100);
        for i in 0..1000 {
            logs.append("svc", &[&format!("{i:04} {line}")]);
        }
        let data = dir.join("data");
        for name in ["svc.log", "svc.log.1", "svc.log.2"] {
            let size = std::fs::metadata(data.join(name)).unwrap().len();
            assert!(size <= 4096, "{name}: {size}");
            if name != "svc.log" {
                assert!(size > 4096 - 200, "a rotated file is nearly full: {size}");
            }
        }
        assert!(!data.join("svc.log.3").exists(), "a fourth file was kept");
        // The newest line is in the current file, the oldest kept one in .2.
        let current = std::fs::read_to_string(data.join("svc.log")).unwrap();
        assert!(current.trim_end().ends_with(&format!("0999 {line}")));
        let oldest = std::fs::read_to_string(data.join("svc.log.2")).unwrap();
        assert!(!oldest.contains(" 0000 "), "the first lines were dropped");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn one_file_per_service_starts_over() {
        let dir = temp_dir("single");
        let mut logs = logs(&dir, 4096, 1);
        for _ in 0..100 {
            logs.append("svc", &[&"y".repeat(200)]);
        }
        let size = std::fs::metadata(dir.join("data/svc.log")).unwrap().len();
        assert!(size <= 4096, "{size}");
        assert!(!dir.join("data/svc.log.1").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_batch_is_one_whole_write_with_stamps() {
        let dir = temp_dir("batch");
        let mut logs = logs(&dir, 1 << 20, 2);
        logs.append("svc", &["one", "two"]);
        let text = std::fs::read_to_string(dir.join("data/svc.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        for (line, want) in lines.iter().zip(["one", "two"]) {
            let (wall, rest) = line.split_once(' ').unwrap();
            assert!(wall.ends_with('Z') && wall.len() == 27, "{wall}");
            assert_eq!(rest.split_once("] ").unwrap().1, want);
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_failing_data_partition_moves_the_logs_to_ram_with_a_reason() {
        let dir = temp_dir("fallback");
        // A directory where the log file should be: its open fails, like
        // on a partition that went read-only.
        std::fs::create_dir_all(dir.join("data/svc.log")).unwrap();
        let mut logs = logs(&dir, 1 << 20, 2);
        logs.append("svc", &["kept anyway"]);
        let status = logs.status();
        assert_eq!(status.storage, LogStorage::Ram);
        assert_eq!(status.dir, dir.join("ram").display().to_string());
        let reason = status.reason.unwrap();
        assert!(
            reason.contains("svc.log") && reason.contains("RAM"),
            "{reason}"
        );
        let text = std::fs::read_to_string(dir.join("ram/svc.log")).unwrap();
        assert!(text.ends_with("] kept anyway\n"), "{text}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn ram_failing_too_stops_file_logging_without_panicking() {
        let dir = temp_dir("off");
        std::fs::write(dir.join("data"), b"x").unwrap();
        std::fs::write(dir.join("ram"), b"x").unwrap();
        let mut logs = logs(&dir, 1 << 20, 2);
        logs.append("svc", &["lost to files, on the console"]);
        logs.append("svc", &["again"]);
        let status = logs.status();
        assert!(status.reason.unwrap().contains("file logging stopped"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn full_disk_falls_back_to_ram() {
        // /dev/full fails every write with ENOSPC, as a full partition does.
        if !Path::new("/dev/full").exists() {
            return;
        }
        let dir = temp_dir("full");
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::os::unix::fs::symlink("/dev/full", dir.join("data/svc.log")).unwrap();
        let mut logs = logs(&dir, 1 << 20, 2);
        logs.append("svc", &["after the disk filled"]);
        let status = logs.status();
        assert_eq!(status.storage, LogStorage::Ram);
        assert!(status.reason.unwrap().contains("No space left"));
        let text = std::fs::read_to_string(dir.join("ram/svc.log")).unwrap();
        assert!(text.contains("after the disk filled"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_planted_link_is_not_followed() {
        let dir = temp_dir("link");
        std::fs::create_dir_all(dir.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(dir.join("elsewhere"), dir.join("data")).unwrap();
        let mut logs = logs(&dir, 1 << 20, 2);
        logs.append("svc", &["not through the link"]);
        let status = logs.status();
        assert_eq!(status.storage, LogStorage::Ram);
        assert!(status.reason.unwrap().contains("is not a directory"));
        assert!(!dir.join("elsewhere/svc.log").exists());
        assert!(dir.join("ram/svc.log").exists());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn every_line_is_forwarded_when_a_syslog_server_is_named() {
        let dir = temp_dir("syslog");
        let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        server
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut logs = logs(&dir, 1 << 20, 2);
        logs.set_syslog(Some(server.local_addr().unwrap()), "kindling-lab");
        logs.append("stack", &["one", "two"]);
        let mut buf = [0u8; 2048];
        for want in ["one", "two"] {
            let n = server.recv(&mut buf).unwrap();
            let got = std::str::from_utf8(&buf[..n]).unwrap();
            assert!(
                got.starts_with("<30>1 ")
                    && got.ends_with(&format!(" kindling-lab stack - - - {want}")),
                "{got}"
            );
        }
        let status = logs.status().syslog.unwrap();
        assert_eq!((status.sent, status.dropped), (2, 0));
        logs.set_syslog(None, "kindling-lab");
        assert!(logs.status().syslog.is_none());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn limits_are_clamped() {
        let dir = temp_dir("clamp");
        let logs = logs(&dir, 1, 0);
        assert_eq!(logs.status().file_bytes, MIN_FILE_BYTES);
        assert_eq!(logs.status().files, 1);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(Duration::new(1_700_000_000, 123_456_000)),
            "2023-11-14T22:13:20.123456Z"
        );
        // A leap day.
        assert_eq!(
            rfc3339(Duration::from_secs(1_709_208_000)),
            "2024-02-29T12:00:00.000000Z"
        );
    }
}
