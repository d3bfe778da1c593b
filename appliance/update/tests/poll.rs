//! The channel poll for real: channel directories signed with the same
//! code `kindling update publish|promote` runs, served over HTTP from a
//! loopback server, fetched by the agent's own client into a fake ESP and
//! spool. An offered release inside the window ends armed; everything
//! else ends waiting, up to date or refused with the slots byte for byte
//! as they were and nothing left in the spool.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use kindling_overlay::minisign::SecretKey;
use kindling_site::MaintenanceWindow;
use kindling_update::agent::{run_boot, AgentPaths, Gate, UpdateStatus, STATE_FILE};
use kindling_update::channel::{ChannelIndex, ChannelPolicy, Release};
use kindling_update::fetch::HttpSource;
use kindling_update::poll::{PollConfig, PollState, Poller};
use kindling_update::{build, BuildRequest};
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Friday 2027-01-15 08:00 UTC.
const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

/// A static file server on 127.0.0.1 for `dir`, one request per
/// connection; lives as long as the test process.
fn serve(dir: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                match reader.read_line(&mut header) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if header == "\r\n" => break,
                    Ok(_) => {}
                }
            }
            let name = line
                .split(' ')
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/')
                .to_string();
            let reply = match std::fs::read(dir.join(&name)) {
                Ok(body) if !name.contains('/') && !name.is_empty() => {
                    let mut out = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    out.extend(body);
                    out
                }
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&reply);
        }
    });
    format!("http://{addr}/")
}

struct Site {
    dir: tempfile::TempDir,
    paths: AgentPaths,
    key: SecretKey,
    image: Vec<u8>,
    url: String,
}

impl Site {
    /// An appliance booted from `kindling-1+2-1.efi` (blessed by its gate,
    /// with an older fallback), and an empty channel directory served.
    fn new() -> (Self, UpdateStatus) {
        let dir = tempfile::tempdir().unwrap();
        let (paths, status) = common::blessed_appliance(dir.path(), &[]);
        std::fs::create_dir_all(dir.path().join("site-updates")).unwrap();
        let image: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 253) as u8).collect();
        std::fs::write(dir.path().join("kindling.efi"), &image).unwrap();
        let url = serve(&dir.path().join("site-updates"));
        let site = Self {
            dir,
            paths,
            key: SecretKey::generate().unwrap(),
            image,
            url,
        };
        (site, status)
    }

    fn channel_dir(&self) -> PathBuf {
        self.dir.path().join("site-updates")
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// `kindling update build` then the release `publish` adds.
    fn bundle(&self, version: &str) -> Release {
        let name = format!("kindling-{version}.kupd");
        let out = self.channel_dir().join(&name);
        build(
            &BuildRequest {
                image: &self.dir.path().join("kindling.efi"),
                version: version.parse().unwrap(),
                min_from: "0".parse().unwrap(),
                now: NOW,
                valid_secs: 30 * DAY,
                key: &self.key,
            },
            &out,
        )
        .unwrap();
        let bytes = std::fs::read(&out).unwrap();
        Release {
            version: version.parse().unwrap(),
            bundle: name,
            size: bytes.len() as u64,
            sha256: Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            blessed_on: None,
        }
    }

    /// Signs `index` at `signed_at` and serves it (as `publish` saves it).
    fn sign(&self, index: &mut ChannelIndex, signed_at: u64) {
        let (bytes, sig) = index.sign(&self.key, signed_at, 7 * DAY).unwrap();
        let dir = self.channel_dir();
        std::fs::write(dir.join(format!("{}.json.minisig", index.channel)), sig).unwrap();
        std::fs::write(dir.join(format!("{}.json", index.channel)), bytes).unwrap();
    }

    fn config(&self, channel: &str, blessing: Option<&str>, window: &str) -> PollConfig {
        PollConfig {
            policy: ChannelPolicy {
                channel: channel.into(),
                requires_blessing_on: blessing.map(Into::into),
            },
            url: self.url.clone(),
            check_every_secs: 6 * 3600,
            window: MaintenanceWindow::parse(window).unwrap(),
            window_text: window.into(),
        }
    }

    fn check(
        &self,
        config: &PollConfig,
        status: UpdateStatus,
        now: u64,
        apply_now: bool,
    ) -> UpdateStatus {
        let source = HttpSource::new(&self.url);
        let trusted = [self.key.public_key()];
        Poller {
            paths: &self.paths,
            config,
            source: &source,
            trusted: &trusted,
            trust_dir: Path::new("/nonexistent"),
            spool: &self.spool(),
        }
        .check(status, now, apply_now)
    }

    fn slots(&self) -> Vec<(String, Vec<u8>)> {
        common::slot_files(&self.paths)
    }

    fn spool_is_empty(&self) -> bool {
        std::fs::read_dir(self.spool()).unwrap().next().is_none()
    }
}

fn written(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn poll_state(status: &UpdateStatus) -> (PollState, String) {
    let poll = status.poll.as_ref().unwrap();
    (poll.state, poll.detail.clone())
}

#[test]
fn offered_in_the_window_ends_armed_with_progress_shown() {
    let (site, status) = Site::new();
    let mut dev = ChannelIndex::new("dev", NOW);
    dev.publish(site.bundle("2")).unwrap();
    site.sign(&mut dev, NOW);
    let config = site.config("dev", None, "Fri 08:00-09:00");
    let status = site.check(&config, status, NOW, false);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::Armed, "{detail}");
    let poll = status.poll.clone().unwrap();
    assert_eq!(poll.armed.as_deref(), Some("kindling-2+3.efi"));
    assert_eq!(poll.sequence, Some(1));
    assert_eq!(poll.downloaded, poll.total);
    assert!(poll.total.unwrap() > site.image.len() as u64);
    let slots = site.slots();
    let names: Vec<&str> = slots.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["kindling-1.efi", "kindling-2+3.efi"]);
    assert_eq!(slots[1].1, site.image);
    assert!(site.spool_is_empty(), "the download is gone once staged");
    let file = written(&site.paths.status);
    assert_eq!(file["poll"]["state"], "armed");
    assert_eq!(file["poll"]["downloaded"], file["poll"]["total"]);
    let state = written(&site.paths.esp.join(STATE_FILE));
    assert_eq!(state["channel_seen"]["dev"], 1);
    assert!(state["last_result"]
        .as_str()
        .unwrap()
        .contains("update 2 from channel dev armed"));
}

#[test]
fn outside_the_window_it_waits_and_says_until_when_unless_asked_to_apply_now() {
    let (site, status) = Site::new();
    let before = site.slots();
    let mut dev = ChannelIndex::new("dev", NOW);
    dev.publish(site.bundle("2")).unwrap();
    site.sign(&mut dev, NOW);
    let config = site.config("dev", None, "Sun 02:00-04:00");
    let status = site.check(&config, status, NOW, false);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::Waiting, "{detail}");
    // Sunday 2027-01-17 02:00 UTC.
    let opens = NOW + 2 * DAY - 6 * 3600;
    assert_eq!(status.poll.as_ref().unwrap().window_opens, Some(opens));
    assert!(
        detail.contains("2 offered") && detail.contains("2027-01-17T02:00:00Z"),
        "{detail}"
    );
    assert_eq!(site.slots(), before);
    assert!(
        site.spool_is_empty(),
        "nothing is downloaded before the window"
    );
    assert!(status.poll.as_ref().unwrap().downloaded.is_none());

    let status = site.check(&config, status, NOW + 60, true);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::Armed, "{detail}");
    assert!(status.poll.as_ref().unwrap().apply_now);
    assert!(site.slots().iter().any(|(n, _)| n == "kindling-2+3.efi"));
}

#[test]
fn stale_and_replayed_indexes_are_refused_even_after_a_reboot() {
    let (site, status) = Site::new();
    let before = site.slots();
    let config = site.config("dev", None, "always");
    let mut dev = ChannelIndex::new("dev", NOW);
    dev.publish(site.bundle("2")).unwrap();

    site.sign(&mut dev, NOW - 8 * DAY);
    let status = site.check(&config, status, NOW, false);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::Refused, "{detail}");
    assert!(
        detail.contains("expired") && detail.contains("the mirror is stale"),
        "{detail}"
    );
    assert_eq!(site.slots(), before);

    // Accept #2 (nothing newer than 1 on it), then serve #1 again.
    dev.releases.clear();
    site.sign(&mut dev, NOW);
    let status = site.check(&config, status, NOW, false);
    assert_eq!(poll_state(&status).0, PollState::UpToDate, "{status:?}");
    // A replayed #1 that has not expired yet, offering 2.
    let mut old = ChannelIndex::new("dev", NOW);
    old.publish(site.bundle("2")).unwrap();
    site.sign(&mut old, NOW);
    let status = site.check(&config, status, NOW, false);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::Refused, "{detail}");
    assert!(detail.contains("dev #1 is older than #2"), "{detail}");

    // After a reboot, the sequence seen is still known (on the ESP).
    let rebooted = run_boot(&site.paths, Duration::ZERO, || Gate::Ready).status;
    assert_eq!(rebooted.state.channel_seen.get("dev"), Some(&2));
    let status = site.check(&config, rebooted, NOW, true);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::Refused, "{detail}");
    assert_eq!(site.slots(), before);
    assert!(site.spool_is_empty());
}

#[test]
fn prod_takes_only_what_was_blessed_on_dev() {
    let (site, status) = Site::new();
    let config = site.config("prod", Some("dev"), "always");
    let mut dev = ChannelIndex::new("dev", NOW);
    dev.publish(site.bundle("2")).unwrap();
    dev.publish(site.bundle("3")).unwrap();
    site.sign(&mut dev, NOW);
    let mut prod = ChannelIndex::new("prod", NOW);
    // Copied into prod by hand, not promoted: skipped.
    prod.publish(dev.releases[1].clone()).unwrap();
    site.sign(&mut prod, NOW);
    let status = site.check(&config, status, NOW, false);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::UpToDate, "{detail}");
    assert!(detail.contains("blessed on dev"), "{detail}");
    assert!(status.poll.as_ref().unwrap().offered.is_none());

    let mut prod = ChannelIndex::new("prod", NOW);
    prod.promote(&dev, &"2".parse().unwrap()).unwrap();
    prod.sequence = 5;
    site.sign(&mut prod, NOW);
    let status = site.check(&config, status, NOW, false);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::Armed, "{detail}");
    assert_eq!(
        status.poll.as_ref().unwrap().offered,
        Some("2".parse().unwrap())
    );
}

#[test]
fn a_bundle_that_does_not_match_the_index_is_refused_and_removed() {
    let (site, status) = Site::new();
    let before = site.slots();
    let config = site.config("dev", None, "always");
    let release = site.bundle("2");
    let mut dev = ChannelIndex::new("dev", NOW);
    dev.publish(release.clone()).unwrap();
    site.sign(&mut dev, NOW);
    // The mirror serves other bytes of the same size.
    let path = site.channel_dir().join(&release.bundle);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 4096;
    bytes[at] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let status = site.check(&config, status, NOW, false);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::Refused, "{detail}");
    assert!(
        detail.contains("sha256") && detail.contains("the index says"),
        "{detail}"
    );
    assert_eq!(site.slots(), before);
    assert!(site.spool_is_empty(), "the download was removed");

    // Longer than the index says: refused too.
    bytes.extend([0u8; 512]);
    std::fs::write(&path, &bytes).unwrap();
    let status = site.check(&config, status, NOW, false);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::Refused, "{detail}");
    assert!(detail.contains("bytes"), "{detail}");
    assert_eq!(site.slots(), before);
    assert!(site.spool_is_empty());
}

#[test]
fn the_running_version_and_anything_below_the_floor_are_not_offered() {
    let (site, mut status) = Site::new();
    let before = site.slots();
    let config = site.config("dev", None, "always");
    let mut dev = ChannelIndex::new("dev", NOW);
    dev.publish(site.bundle("0.9")).unwrap();
    dev.publish(site.bundle("1")).unwrap();
    site.sign(&mut dev, NOW);
    status = site.check(&config, status, NOW, true);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::UpToDate, "{detail}");
    assert!(detail.contains("nothing newer than 1"), "{detail}");

    dev.publish(site.bundle("2")).unwrap();
    site.sign(&mut dev, NOW);
    status.state.floor = Some("3".parse().unwrap());
    status = site.check(&config, status, NOW, true);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::UpToDate, "{detail}");
    assert!(detail.contains("floor 3"), "{detail}");
    assert_eq!(site.slots(), before);
    assert!(site.spool_is_empty());
}

#[test]
fn a_mirror_that_does_not_answer_is_a_failure_to_retry_not_a_refusal() {
    let (mut site, status) = Site::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    site.url = format!("http://{}/", listener.local_addr().unwrap());
    drop(listener);
    let config = site.config("dev", None, "always");
    let status = site.check(&config, status, NOW, false);
    let (state, detail) = poll_state(&status);
    assert_eq!(state, PollState::Failed, "{detail}");
    assert!(detail.contains("dev.json"), "{detail}");
    let last = status.state.last_result.unwrap_or_default();
    assert!(!last.contains("refused"), "{last}");
}
