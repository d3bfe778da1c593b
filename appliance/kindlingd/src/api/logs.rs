//! `GET /v1/logs` and `GET /v1/logs/SERVICE?since=&lines=&follow=1`: the
//! output init keeps of every supervised child (`NAME.log`, rotated to
//! `NAME.log.1` … by init, see `kindling_init::supervisor::service_logs`).
//!
//! Read-only: it never writes, rotates or deletes a log. Where the logs are
//! and which services exist come from init's `list` answer; when init does
//! not answer, from this boot's service table and the data partition's
//! `log/` directory. A name outside the table is refused before any path
//! is built from it.

use super::{ApiPaths, Reply};
use hyper::body::Bytes;
use kindling_api::logs::{LogLines, LogList, LogStorage, ServiceLog};
use kindling_api::{ApiFailure, ErrorKind};
use kindling_init_protocol::control::{self, Client, LogsStatus};
use kindling_init_protocol::table::ServiceTable;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// Lines returned when neither `lines` nor `since` is given.
pub const DEFAULT_LINES: usize = 200;
/// Most lines one answer carries.
pub const MAX_LINES: usize = 100_000;
/// How often a followed log is looked at for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);
/// Rotated files looked at, at most (init keeps 32 at most).
const MAX_FILES: u32 = 64;

#[derive(Debug, thiserror::Error)]
pub enum LogsError {
    #[error("no service {0:?} in the service table")]
    UnknownService(String),
    #[error("parameter {name}: {reason}")]
    BadParameter { name: String, reason: String },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("following a log needs the API's runtime")]
    NoRuntime,
}

impl ApiFailure for LogsError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::UnknownService(_) => ErrorKind::NotFound,
            Self::BadParameter { .. } => ErrorKind::BadRequest,
            Self::Read { .. } | Self::NoRuntime => ErrorKind::Internal,
        }
    }
}

/// Where the logs are and which services may have one.
struct Place {
    status: LogsStatus,
    services: Vec<String>,
}

/// The config phase's one-shot writes under this name, outside the table.
const CONFIG_SERVICE: &str = "config";

fn place(paths: &ApiPaths) -> Place {
    let answer = Client::new(paths.control_socket())
        .with_timeout(Duration::from_secs(3))
        .list();
    let mut services: Vec<String> = match &answer {
        Ok(list) => list.services.iter().map(|s| s.name.clone()).collect(),
        Err(_) => ServiceTable::load(&paths.run_dir.join("services.json"))
            .map(|t| t.services.into_iter().map(|s| s.name).collect())
            .unwrap_or_default(),
    };
    services.push(CONFIG_SERVICE.to_string());
    services.sort();
    services.dedup();
    let status = match answer {
        Ok(control::ListResponse {
            logs: Some(status), ..
        }) => status,
        Ok(_) => guessed(paths, "init does not say where the logs are".to_string()),
        Err(e) => guessed(paths, format!("init is not answering ({e})")),
    };
    Place { status, services }
}

/// Without init's word: the data partition's `log/` if it exists, else RAM.
fn guessed(paths: &ApiPaths, why: String) -> LogsStatus {
    let data = paths.state_dir.join("log");
    let (dir, storage) = if data.is_dir() {
        (data, control::LogStorage::Data)
    } else {
        (PathBuf::from("/run/log"), control::LogStorage::Ram)
    };
    LogsStatus {
        reason: Some(format!("{why}; reading {}", dir.display())),
        dir: dir.display().to_string(),
        storage,
        file_bytes: 0,
        files: 0,
        syslog: None,
    }
}

fn storage(s: control::LogStorage) -> LogStorage {
    match s {
        control::LogStorage::Data => LogStorage::Data,
        control::LogStorage::Ram => LogStorage::Ram,
    }
}

/// `NAME.log`, `NAME.log.1`, …: newest first, only those that exist.
fn files_of(dir: &Path, service: &str) -> Vec<PathBuf> {
    let current = dir.join(format!("{service}.log"));
    let mut files = Vec::new();
    if current.is_file() {
        files.push(current.clone());
    }
    for n in 1..MAX_FILES {
        let path = dir.join(format!("{service}.log.{n}"));
        if !path.is_file() {
            break;
        }
        files.push(path);
    }
    files
}

/// `GET /v1/logs`.
pub fn list(paths: &ApiPaths) -> Result<LogList, LogsError> {
    let place = place(paths);
    let dir = PathBuf::from(&place.status.dir);
    let services = place
        .services
        .iter()
        .map(|service| {
            let files = files_of(&dir, service);
            ServiceLog {
                service: service.clone(),
                bytes: files
                    .iter()
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum(),
                files: files.len() as u32,
            }
        })
        .collect();
    Ok(LogList {
        storage: storage(place.status.storage),
        reason: place.status.reason,
        file_bytes: place.status.file_bytes,
        files_per_service: place.status.files,
        services,
    })
}

/// What the query asks for.
#[derive(Debug, PartialEq)]
pub struct Query {
    pub since: Option<SystemTime>,
    pub lines: usize,
    pub follow: bool,
}

fn bad(name: &str, reason: impl Into<String>) -> LogsError {
    LogsError::BadParameter {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// `since=10m|RFC3339&lines=N&follow=1`; an unknown parameter is refused.
pub fn parse_query(query: &str, now: SystemTime) -> Result<Query, LogsError> {
    let (mut since, mut lines, mut follow) = (None, None, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(raw).ok_or_else(|| bad(name, "bad %-escape"))?;
        match name {
            "since" => since = Some(parse_since(&value, now).map_err(|e| bad("since", e))?),
            "lines" => {
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LINES).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "lines",
                            format!("{value:?} is not a number from 1 to {MAX_LINES}"),
                        )
                    })?;
                lines = Some(n);
            }
            "follow" => {
                follow = match value.as_str() {
                    "1" | "true" => true,
                    "0" | "false" => false,
                    _ => return Err(bad("follow", format!("{value:?} is not 1 or 0"))),
                }
            }
            other => return Err(bad(other, "unknown (since, lines, follow)")),
        }
    }
    let lines = lines.unwrap_or(if since.is_some() {
        MAX_LINES
    } else {
        DEFAULT_LINES
    });
    Ok(Query {
        since,
        lines,
        follow,
    })
}

pub(super) fn percent_decode(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `10m`, `2h 30m` (before `now`), or an RFC 3339 time with `Z` or an offset.
pub fn parse_since(value: &str, now: SystemTime) -> Result<SystemTime, String> {
    if let Ok(ago) = humantime::parse_duration(value) {
        return now
            .checked_sub(ago)
            .ok_or_else(|| format!("{value:?} reaches before 1970"));
    }
    parse_rfc3339(value).ok_or_else(|| {
        format!(
            "{value:?} is neither a duration (10m, 2h) nor an RFC 3339 time (2026-12-05T16:00:00Z)"
        )
    })
}

/// humantime reads `…Z`; an offset (`+01:00`) is folded into UTC here.
fn parse_rfc3339(value: &str) -> Option<SystemTime> {
    if value.ends_with(['Z', 'z']) {
        return humantime::parse_rfc3339_weak(value).ok();
    }
    let cut = value.len().checked_sub(6)?;
    let (base, offset) = (value.get(..cut)?, value.get(cut..)?);
    let sign = offset.as_bytes()[0];
    let (hours, minutes) = offset.get(1..)?.split_once(':')?;
    let shift =
        Duration::from_secs(hours.parse::<u64>().ok()? * 3600 + minutes.parse::<u64>().ok()? * 60);
    let local = humantime::parse_rfc3339_weak(&format!("{base}Z")).ok()?;
    match sign {
        b'+' => local.checked_sub(shift),
        b'-' => local.checked_add(shift),
        _ => None,
    }
}

/// The wall time a stored line starts with.
fn line_time(line: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339(line.split(' ').next()?).ok()
}

/// The newest `limit` lines at or after `since` from `texts` (newest file
/// first), oldest first; and whether more matched.
fn newest_lines(
    texts: impl IntoIterator<Item = Result<String, LogsError>>,
    since: Option<SystemTime>,
    limit: usize,
) -> Result<(Vec<String>, bool), LogsError> {
    let mut out = Vec::new();
    'files: for text in texts {
        for line in text?.lines().rev() {
            if let Some(since) = since {
                match line_time(line) {
                    // Files are in time order: nothing older can match.
                    Some(t) if t < since => break 'files,
                    Some(_) => {}
                    None => continue,
                }
            }
            if out.len() == limit {
                out.reverse();
                return Ok((out, true));
            }
            out.push(line.to_string());
        }
    }
    out.reverse();
    Ok((out, false))
}

fn read_text(path: &Path, file: Option<&mut File>) -> Result<String, LogsError> {
    let err = |source| LogsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    match file {
        Some(f) => f.read_to_end(&mut bytes).map(drop).map_err(err)?,
        None => match File::open(path) {
            Ok(mut f) => f.read_to_end(&mut bytes).map(drop).map_err(err)?,
            // Rotated away meanwhile: nothing to show from it.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        },
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `GET /v1/logs/SERVICE`.
pub fn read(paths: &ApiPaths, service: &str, query: &str) -> Reply {
    match read_or_follow(paths, service, query) {
        Ok(reply) => reply,
        Err(e) => Reply::failure(&e),
    }
}

fn read_or_follow(paths: &ApiPaths, service: &str, query: &str) -> Result<Reply, LogsError> {
    let place = place(paths);
    if !place.services.iter().any(|s| s == service) {
        return Err(LogsError::UnknownService(service.to_string()));
    }
    let query = parse_query(query, SystemTime::now())?;
    let dir = PathBuf::from(&place.status.dir);
    let current_path = dir.join(format!("{service}.log"));
    // The current file is read through the handle a follow goes on with,
    // so no line falls between the backlog and the stream.
    let mut current = File::open(&current_path).ok();
    let texts = files_of(&dir, service).into_iter().map(|path| {
        if path == current_path {
            match current.as_mut() {
                Some(f) => read_text(&path, Some(f)),
                None => Ok(String::new()),
            }
        } else {
            read_text(&path, None)
        }
    });
    let (lines, truncated) = newest_lines(texts.collect::<Vec<_>>(), query.since, query.lines)?;
    if !query.follow {
        return Ok(Reply::body(&LogLines {
            service: service.to_string(),
            lines,
            truncated,
        }));
    }
    let runtime = tokio::runtime::Handle::try_current().map_err(|_| LogsError::NoRuntime)?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut backlog = lines.join("\n");
    if !backlog.is_empty() {
        backlog.push('\n');
        let _ = tx.try_send(Bytes::from(backlog));
    }
    runtime.spawn(follow(current_path, current, tx));
    Ok(Reply::stream("text/plain; charset=utf-8", rx))
}

/// Sends whole lines appended to `path` until the client goes away; moves
/// on to the new file when init rotates it.
async fn follow(path: PathBuf, mut file: Option<File>, tx: tokio::sync::mpsc::Sender<Bytes>) {
    use std::os::unix::fs::MetadataExt;
    let mut partial: Vec<u8> = Vec::new();
    let mut tick = tokio::time::interval(FOLLOW_EVERY);
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = tick.tick() => {}
        }
        if let Some(f) = file.as_mut() {
            // Regular files do not block; a read error ends the stream.
            if f.read_to_end(&mut partial).is_err() {
                return;
            }
        }
        if let Some(end) = partial.iter().rposition(|&b| b == b'\n') {
            let chunk: Vec<u8> = partial.drain(..=end).collect();
            if tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
        }
        let on_disk = std::fs::metadata(&path).ok().map(|m| m.ino());
        let open = file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.ino());
        if on_disk.is_some() && on_disk != open {
            // Rotated (or created): what the old file still had was read above.
            file = File::open(&path).ok();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> SystemTime {
        humantime::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn since_takes_a_duration_or_an_rfc3339_time() {
        let now = at("2026-12-05T16:30:00Z");
        assert_eq!(parse_since("10m", now), Ok(at("2026-12-05T16:20:00Z")));
        assert_eq!(parse_since("1h 30m", now), Ok(at("2026-12-05T15:00:00Z")));
        assert_eq!(
            parse_since("2026-12-05T16:00:00Z", now),
            Ok(at("2026-12-05T16:00:00Z"))
        );
        assert_eq!(
            parse_since("2026-12-05T17:00:00+01:00", now),
            Ok(at("2026-12-05T16:00:00Z"))
        );
        assert_eq!(
            parse_since("2026-12-05T11:00:00.5-05:00", now),
            Ok(at("2026-12-05T16:00:00.5Z"))
        );
        for bad in [
            "",
            "yesterday",
            "10",
            "2026-12-05",
            "2026-12-05T16:00:00*01:00",
        ] {
            let err = parse_since(bad, now).unwrap_err();
            assert!(err.contains("RFC 3339"), "{bad}: {err}");
        }
    }

    #[test]
    fn the_query_names_a_bad_parameter() {
        let now = at("2026-12-05T16:30:00Z");
        let q = parse_query("since=2026-12-05T17%3A00%3A00%2B01%3A00&follow=1", now).unwrap();
        assert_eq!(q.since, Some(at("2026-12-05T16:00:00Z")));
        assert_eq!(q.lines, MAX_LINES);
        assert!(q.follow);
        assert_eq!(parse_query("", now).unwrap().lines, DEFAULT_LINES);
        assert_eq!(parse_query("lines=5", now).unwrap().lines, 5);
        for (query, name) in [
            ("since=soon", "since"),
            ("lines=0", "lines"),
            ("lines=-3", "lines"),
            ("lines=100001", "lines"),
            ("follow=yes", "follow"),
            ("tail=5", "tail"),
            ("since=%zz", "since"),
        ] {
            let err = parse_query(query, now).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::BadRequest);
            assert!(
                err.to_string().starts_with(&format!("parameter {name}:")),
                "{query}: {err}"
            );
        }
    }

    fn stored(time: &str, text: &str) -> String {
        format!("{time} [    1.000000] {text}")
    }

    #[test]
    fn newest_lines_honour_since_and_the_limit_across_files() {
        let older = [
            stored("2026-12-05T16:00:00.000000Z", "a"),
            stored("2026-12-05T16:10:00.000000Z", "b"),
        ]
        .join("\n");
        let current = [
            stored("2026-12-05T16:20:00.000000Z", "c"),
            stored("2026-12-05T16:25:00.000000Z", "d"),
        ]
        .join("\n");
        let texts = || vec![Ok(current.clone()), Ok(older.clone())];
        let text_of = |lines: Vec<String>| -> Vec<String> {
            lines
                .iter()
                .map(|l| l.rsplit(' ').next().unwrap().to_string())
                .collect()
        };
        let (lines, truncated) = newest_lines(texts(), None, 10).unwrap();
        assert_eq!(
            (text_of(lines), truncated),
            (vec!["a".into(), "b".into(), "c".into(), "d".into()], false)
        );
        let (lines, truncated) = newest_lines(texts(), None, 3).unwrap();
        assert_eq!(
            (text_of(lines), truncated),
            (vec!["b".into(), "c".into(), "d".into()], true)
        );
        let since = Some(at("2026-12-05T16:10:00Z"));
        let (lines, truncated) = newest_lines(texts(), since, 10).unwrap();
        assert_eq!(
            (text_of(lines), truncated),
            (vec!["b".into(), "c".into(), "d".into()], false)
        );
        let since = Some(at("2026-12-05T16:30:00Z"));
        assert_eq!(newest_lines(texts(), since, 10).unwrap(), (vec![], false));
    }
}
