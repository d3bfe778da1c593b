//! Following a channel: on the site's schedule (or when an operator asks)
//! fetch the channel's signed index, verify it, pick the release it offers
//! this appliance, and, inside the maintenance window or when asked to
//! apply now, download its bundle into the spool and hand it to the same
//! verify → prepare → stage → arm path a pushed bundle takes.
//!
//! Owns the schedule decision, the order of those steps and the `poll`
//! part of the status file. A refused index or bundle (signature, channel,
//! expiry, replayed sequence, size, hash, and everything `push` refuses)
//! leaves the slots as they were: nothing is written to a slot before the
//! whole bundle was checked. Never reboots itself.

use crate::channel::{ChannelIndex, ChannelPolicy, Release, MAX_INDEX};
use crate::fetch::{FetchError, Source};
use crate::push;
use crate::report::{save_state, write_status, AgentPaths, Mode, UpdateStatus, STATE_FILE};
pub use crate::report::{PollState, PollStatus};
use crate::spool::{self, Upload, MAX_UPLOAD};
use crate::version::Version;
use kindling_overlay::minisign::PublicKey;
use kindling_site::MaintenanceWindow;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A signature file larger than this is refused unread.
const MAX_SIGNATURE: u64 = 4 * 1024;
/// How often download progress is written to the status file.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

/// What the site asks of the poll (`[update]` in site.toml, parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollConfig {
    pub policy: ChannelPolicy,
    /// The directory URL, for the status.
    pub url: String,
    pub check_every_secs: u64,
    pub window: MaintenanceWindow,
    /// The window as the site wrote it, for the status.
    pub window_text: String,
}

impl PollConfig {
    /// From the site's `[update]`; `None` when it names no channel (or is
    /// invalid, which overlay verification refuses before it gets here).
    pub fn from_site(update: &kindling_site::UpdateConfig) -> Option<Self> {
        let channel = update.channel.clone()?;
        let url = update.url.clone()?;
        let window_text = update.window.clone()?;
        let window = MaintenanceWindow::parse(&window_text).ok()?;
        let check_every_secs = kindling_site::update::parse_interval(&update.check_every).ok()?;
        Some(Self {
            policy: ChannelPolicy {
                channel,
                requires_blessing_on: update.requires_blessing_on.clone(),
            },
            url,
            check_every_secs,
            window,
            window_text,
        })
    }
}

/// Whether the agent should check the channel now: a first check, the
/// interval gone by (or the clock stepped back past the last check), an
/// operator's request, or a release waiting whose window just opened.
pub fn due(config: &PollConfig, last: Option<&PollStatus>, requested: bool, now: u64) -> bool {
    let Some(last) = last else {
        return true;
    };
    requested
        || now >= last.next_check
        || now < last.checked_at
        || (last.state == PollState::Waiting && config.window.contains(now))
}

/// Whether a release found at `now` may be applied.
pub fn may_apply(window: &MaintenanceWindow, now: u64, apply_now: bool) -> bool {
    apply_now || window.contains(now)
}

/// The files and keys one check uses.
pub struct Poller<'a> {
    pub paths: &'a AgentPaths,
    pub config: &'a PollConfig,
    pub source: &'a dyn Source,
    pub trusted: &'a [PublicKey],
    pub trust_dir: &'a Path,
    pub spool: &'a Path,
}

/// Why a check ended without arming; `refused` decides the state.
struct Stop {
    refused: bool,
    detail: String,
}

impl Stop {
    fn refused(detail: impl Into<String>) -> Self {
        Self {
            refused: true,
            detail: detail.into(),
        }
    }
    fn failed(detail: impl Into<String>) -> Self {
        Self {
            refused: false,
            detail: detail.into(),
        }
    }
}

/// What a check found short of arming.
enum Found {
    UpToDate(String),
    Waiting { detail: String, opens: u64 },
    Armed { version: Version, armed: String },
}

impl Poller<'_> {
    /// One check at `now`: writes the status as it goes and returns it
    /// (its `poll.state` is `Armed` when the caller should reboot).
    pub fn check(&self, mut status: UpdateStatus, now: u64, apply_now: bool) -> UpdateStatus {
        let channel = self.config.policy.channel.clone();
        status.poll = Some(PollStatus {
            channel: channel.clone(),
            url: self.config.url.clone(),
            window: self.config.window_text.clone(),
            state: PollState::Checking,
            detail: format!("fetching {}", self.index_name()),
            apply_now,
            checked_at: now,
            next_check: now.saturating_add(self.config.check_every_secs),
            sequence: status.state.channel_seen.get(&channel).copied(),
            offered: None,
            window_opens: None,
            downloaded: None,
            total: None,
            armed: None,
        });
        write_status(self.paths, &status);
        let outcome = self.run(&mut status, now, apply_now);
        let Some(poll) = status.poll.as_mut() else {
            return status;
        };
        match outcome {
            Ok(Found::UpToDate(detail)) => {
                poll.state = PollState::UpToDate;
                poll.detail = detail;
            }
            Ok(Found::Waiting { detail, opens }) => {
                poll.state = PollState::Waiting;
                poll.detail = detail;
                poll.window_opens = Some(opens);
            }
            Ok(Found::Armed { version, armed }) => {
                poll.state = PollState::Armed;
                poll.detail = format!("{version} armed as {armed}; rebooting into it");
                poll.armed = Some(armed.clone());
                status.state.last_result = Some(format!(
                    "update {version} from channel {channel} armed as {armed}"
                ));
            }
            Err(stop) => {
                poll.state = if stop.refused {
                    PollState::Refused
                } else {
                    PollState::Failed
                };
                poll.detail = stop.detail.clone();
                if stop.refused {
                    status.state.last_result =
                        Some(format!("channel {channel}: refused: {}", stop.detail));
                }
            }
        }
        save_state(&self.paths.esp.join(STATE_FILE), &status.state);
        if let Some(poll) = &status.poll {
            println!(
                "update: channel {}: {:?}: {}",
                poll.channel, poll.state, poll.detail
            );
        }
        write_status(self.paths, &status);
        status
    }

    fn index_name(&self) -> String {
        format!("{}.json", self.config.policy.channel)
    }

    fn run(&self, status: &mut UpdateStatus, now: u64, apply_now: bool) -> Result<Found, Stop> {
        let (Mode::Blessed, Some(running)) = (status.mode, status.version.clone()) else {
            return Err(Stop::failed(format!(
                "this boot cannot take an update: the running slot is {:?} ({})",
                status.mode, status.detail
            )));
        };
        if self.trusted.is_empty() {
            return Err(Stop::failed(format!(
                "no trusted update key in {}",
                self.trust_dir.display()
            )));
        }
        let index = self.fetch_index(status, now)?;
        let floor = status
            .state
            .floor
            .clone()
            .unwrap_or_else(|| running.clone());
        let Some(release) = index
            .offer(&self.config.policy, &running, &floor, &status.state.refused)
            .cloned()
        else {
            let blessing = match &self.config.policy.requires_blessing_on {
                Some(on) => format!(", blessed on {on}"),
                None => String::new(),
            };
            return Ok(Found::UpToDate(format!(
                "channel {} #{} offers nothing newer than {running} (floor {floor}{blessing}, not refused here)",
                index.channel, index.sequence
            )));
        };
        if let Some(poll) = status.poll.as_mut() {
            poll.offered = Some(release.version.clone());
        }
        if !may_apply(&self.config.window, now, apply_now) {
            let opens = self.config.window.next_open(now);
            return Ok(Found::Waiting {
                detail: format!(
                    "{} offered; waiting for the maintenance window {} (UTC), which opens at {}",
                    release.version,
                    self.config.window_text,
                    kindling_clock::rfc3339(opens)
                ),
                opens,
            });
        }
        if let Some(waiting) = spool::pending(self.spool) {
            return Err(Stop::failed(format!(
                "{} offered, but pushed upload {} is waiting in the spool; checking again later",
                release.version, waiting.id
            )));
        }
        let upload = self.download(status, &release)?;
        if let Some(poll) = status.poll.as_mut() {
            poll.state = PollState::Staging;
            poll.detail = format!("verifying and staging {}", release.version);
        }
        write_status(self.paths, status);
        let staged = push::stage_and_arm(
            self.paths,
            status,
            &upload,
            self.trusted,
            self.trust_dir,
            now,
            None,
        );
        remove(&upload.path);
        match staged {
            Ok((version, armed)) => Ok(Found::Armed { version, armed }),
            Err(e) => Err(Stop::refused(format!(
                "bundle {} ({}): {e}",
                release.bundle, release.version
            ))),
        }
    }

    /// The index, verified; its sequence is remembered once accepted.
    fn fetch_index(&self, status: &mut UpdateStatus, now: u64) -> Result<ChannelIndex, Stop> {
        let name = self.index_name();
        let bytes = self.fetch_small(&name, MAX_INDEX)?;
        let signature = self.fetch_small(&format!("{name}.minisig"), MAX_SIGNATURE)?;
        let signature = String::from_utf8(signature).map_err(|_| {
            Stop::refused(format!(
                "{}: not a minisign signature (not text)",
                self.source.location(&format!("{name}.minisig"))
            ))
        })?;
        let channel = &self.config.policy.channel;
        let seen = status.state.channel_seen.get(channel).copied().unwrap_or(0);
        let index = ChannelIndex::verify(&bytes, &signature, self.trusted, channel, seen, now)
            .map_err(|e| Stop::refused(format!("{}: {e}", self.source.location(&name))))?;
        status
            .state
            .channel_seen
            .insert(channel.clone(), index.sequence);
        save_state(&self.paths.esp.join(STATE_FILE), &status.state);
        if let Some(poll) = status.poll.as_mut() {
            poll.sequence = Some(index.sequence);
        }
        Ok(index)
    }

    fn fetch_small(&self, name: &str, limit: u64) -> Result<Vec<u8>, Stop> {
        let fetched = self.source.get(name, limit).map_err(fetch_failed)?;
        let mut bytes = Vec::new();
        fetched
            .body
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Stop::failed(format!("{}: {e}", self.source.location(name))))?;
        if bytes.len() as u64 > limit {
            return Err(Stop::refused(format!(
                "{}: more than {limit} bytes",
                self.source.location(name)
            )));
        }
        Ok(bytes)
    }

    /// Streams the release's bundle into a hidden file in the spool (not a
    /// `*.kupd` name, so neither the API nor the push path sees it),
    /// bounded by the index's size and checked against its sha256. Any
    /// failure removes the file.
    fn download(&self, status: &mut UpdateStatus, release: &Release) -> Result<Upload, Stop> {
        let path = self
            .spool
            .join(format!(".poll-{}.partial", release.version));
        remove(&path);
        let result = self.download_to(status, release, &path);
        if result.is_err() {
            remove(&path);
        }
        result
    }

    fn download_to(
        &self,
        status: &mut UpdateStatus,
        release: &Release,
        path: &PathBuf,
    ) -> Result<Upload, Stop> {
        let url = self.source.location(&release.bundle);
        if release.size > MAX_UPLOAD {
            return Err(Stop::refused(format!(
                "{url}: the index says {} bytes, more than a bundle may be ({MAX_UPLOAD})",
                release.size
            )));
        }
        let fetched = self
            .source
            .get(&release.bundle, release.size)
            .map_err(|e| match e {
                FetchError::TooLarge { .. } => {
                    Stop::refused(format!("{e} (the index says {} bytes)", release.size))
                }
                e => fetch_failed(e),
            })?;
        if let Some(length) = fetched.length.filter(|l| *l != release.size) {
            return Err(Stop::refused(format!(
                "{url}: the server declares {length} bytes, the index says {}",
                release.size
            )));
        }
        let io = |e: std::io::Error| Stop::failed(format!("{}: {e}", path.display()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(io)?;
        let mut hasher = Sha256::new();
        let mut got: u64 = 0;
        let mut body = fetched.body;
        let mut buf = vec![0u8; 256 * 1024];
        let mut said = Instant::now();
        self.progress(status, release, 0);
        loop {
            let n = body
                .read(&mut buf)
                .map_err(|e| Stop::failed(format!("{url}: after {got} bytes: {e}")))?;
            if n == 0 {
                break;
            }
            got += n as u64;
            if got > release.size {
                return Err(Stop::refused(format!(
                    "{url}: more than the {} bytes the index says",
                    release.size
                )));
            }
            let chunk = &buf[..n];
            hasher.update(chunk);
            file.write_all(chunk).map_err(io)?;
            if said.elapsed() >= PROGRESS_EVERY {
                self.progress(status, release, got);
                said = Instant::now();
            }
        }
        self.progress(status, release, got);
        if got != release.size {
            return Err(Stop::refused(format!(
                "{url}: {got} bytes, the index says {}",
                release.size
            )));
        }
        let sha256: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if sha256 != release.sha256 {
            return Err(Stop::refused(format!(
                "{url}: sha256 {sha256}, the index says {}: the mirror's bundle is not the one signed for",
                release.sha256
            )));
        }
        file.sync_all().map_err(io)?;
        Ok(Upload {
            id: sha256[..16].to_string(),
            path: path.clone(),
            bytes: got,
            sha256,
        })
    }

    fn progress(&self, status: &mut UpdateStatus, release: &Release, got: u64) {
        if let Some(poll) = status.poll.as_mut() {
            poll.state = PollState::Downloading;
            poll.detail = format!(
                "downloading {} ({got} of {} bytes)",
                release.bundle, release.size
            );
            poll.downloaded = Some(got);
            poll.total = Some(release.size);
        }
        write_status(self.paths, status);
    }
}

fn fetch_failed(e: FetchError) -> Stop {
    match e {
        FetchError::TooLarge { .. } => Stop::refused(e.to_string()),
        FetchError::Status { .. } | FetchError::Transport { .. } => Stop::failed(e.to_string()),
    }
}

fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => eprintln!("update: removing {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn config(window: &str) -> PollConfig {
        PollConfig {
            policy: ChannelPolicy {
                channel: "dev".into(),
                requires_blessing_on: None,
            },
            url: "http://mirror/".into(),
            check_every_secs: 3600,
            window: MaintenanceWindow::parse(window).unwrap(),
            window_text: window.into(),
        }
    }

    fn last(state: PollState, checked_at: u64) -> PollStatus {
        PollStatus {
            channel: "dev".into(),
            url: String::new(),
            window: String::new(),
            state,
            detail: String::new(),
            apply_now: false,
            checked_at,
            next_check: checked_at + 3600,
            sequence: None,
            offered: None,
            window_opens: None,
            downloaded: None,
            total: None,
            armed: None,
        }
    }

    /// Sunday 2026-12-06 00:00 UTC.
    const SUN: u64 = 1_796_515_200;
    const H: u64 = 3600;

    #[test]
    fn the_schedule_checks_first_on_interval_on_request_and_when_the_window_opens() {
        let c = config("Sun 02:00-04:00");
        assert!(due(&c, None, false, SUN), "the first check");
        let up = last(PollState::UpToDate, SUN);
        assert!(!due(&c, Some(&up), false, SUN + H - 1));
        assert!(due(&c, Some(&up), false, SUN + H));
        assert!(due(&c, Some(&up), true, SUN + 1), "asked");
        assert!(
            due(&c, Some(&up), false, SUN - 10),
            "the clock stepped back"
        );
        let waiting = last(PollState::Waiting, SUN + H / 2);
        assert!(!due(&c, Some(&waiting), false, SUN + H - 1));
        assert!(due(&c, Some(&waiting), false, SUN + 2 * H), "window opened");
        // Up to date inside the window: no reason to look before the interval.
        let up_in = last(PollState::UpToDate, SUN + 2 * H);
        assert!(!due(&c, Some(&up_in), false, SUN + 2 * H + 60));
    }

    #[test]
    fn a_release_is_applied_only_in_the_window_unless_asked() {
        let w = MaintenanceWindow::parse("Sun 02:00-04:00").unwrap();
        assert!(!may_apply(&w, SUN + H, false));
        assert!(may_apply(&w, SUN + H, true));
        assert!(may_apply(&w, SUN + 3 * H, false));
        assert!(may_apply(&MaintenanceWindow::Always, SUN, false));
    }
}
