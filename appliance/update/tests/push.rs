//! The push hand-off for real: a bundle goes into the spool the way the
//! API writes it, the agent (after its boot gate blessed the running slot)
//! takes it. A good bundle ends armed with three tries beside the running
//! entry; every refusal leaves the slot directory byte for byte as it was.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use kindling_overlay::minisign::{PublicKey, SecretKey};
use kindling_update::agent::{run_boot, AgentPaths, Gate, Mode, UpdateStatus, STATE_FILE};
use kindling_update::push::{self, PushState};
use kindling_update::spool::{self, Receiver};
use kindling_update::{build, BuildRequest, Version};
use std::path::{Path, PathBuf};
use std::time::Duration;

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

struct Appliance {
    dir: tempfile::TempDir,
    paths: AgentPaths,
    key: SecretKey,
    image: Vec<u8>,
}

impl Appliance {
    /// Booted from `kindling-1+2-1.efi` (on trial), with an older blessed
    /// fallback, and blessed by its gate.
    fn booted() -> (Self, UpdateStatus) {
        let dir = tempfile::tempdir().unwrap();
        let (paths, status) = common::blessed_appliance(dir.path(), &["systemd-bootx64.efi"]);
        let image: Vec<u8> = (0..200_000u32).map(|i| (i * 13 % 251) as u8).collect();
        std::fs::write(dir.path().join("kindling.efi"), &image).unwrap();
        let key = SecretKey::generate().unwrap();
        (
            Self {
                dir,
                paths,
                key,
                image,
            },
            status,
        )
    }

    fn bundle_bytes(&self, version: &str, now: u64, key: &SecretKey) -> Vec<u8> {
        let out = self.dir.path().join(format!("b-{version}-{now}.kupd"));
        build(
            &BuildRequest {
                image: &self.dir.path().join("kindling.efi"),
                version: version.parse().unwrap(),
                min_from: "0".parse().unwrap(),
                now,
                valid_secs: 30 * DAY,
                key,
            },
            &out,
        )
        .unwrap();
        std::fs::read(out).unwrap()
    }

    fn spool(&self) -> PathBuf {
        self.dir.path().join("spool")
    }

    /// Received as the API does: in chunks, then named.
    fn receive(&self, bytes: &[u8]) -> spool::Upload {
        let mut r = Receiver::begin(&self.spool()).unwrap();
        for chunk in bytes.chunks(64 * 1024) {
            r.write(chunk).unwrap();
        }
        r.finish().unwrap()
    }

    fn slots(&self) -> Vec<(String, Vec<u8>)> {
        common::slot_files(&self.paths)
    }

    fn take(&self, status: UpdateStatus, upload: &spool::Upload) -> UpdateStatus {
        let trusted = [self.key.public_key()];
        push::apply(
            &self.paths,
            status,
            upload,
            &trusted,
            Path::new("/nonexistent"),
            NOW,
        )
    }
}

fn written(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn a_good_bundle_ends_armed_beside_the_running_entry() {
    let (app, status) = Appliance::booted();
    let bytes = app.bundle_bytes("2", NOW, &app.key);
    let upload = app.receive(&bytes);
    assert_eq!(spool::pending(&app.spool()).unwrap().id, upload.id);
    let status = app.take(status, &upload);
    let push = status.push.clone().unwrap();
    assert_eq!(push.state, PushState::Armed, "{}", push.detail);
    assert_eq!(push.armed.as_deref(), Some("kindling-2+3.efi"));
    assert_eq!(push.version, Some("2".parse::<Version>().unwrap()));
    let slots = app.slots();
    let names: Vec<&str> = slots.iter().map(|(n, _)| n.as_str()).collect();
    // The older fallback made room; the running (blessed) entry stays.
    assert_eq!(
        names,
        ["kindling-1.efi", "kindling-2+3.efi", "systemd-bootx64.efi"]
    );
    assert_eq!(slots[1].1, app.image, "the armed image is the bundle's");
    let file = written(&app.paths.status);
    assert_eq!(file["mode"], "blessed");
    assert_eq!(file["push"]["state"], "armed");
    assert_eq!(file["push"]["upload"], upload.id.as_str());
    let state = written(&app.paths.esp.join(STATE_FILE));
    assert!(
        state["last_result"]
            .as_str()
            .unwrap()
            .contains("update 2 pushed and armed as kindling-2+3.efi"),
        "{state}"
    );
}

#[test]
fn every_refusal_leaves_the_slots_as_they_were() {
    let (app, mut status) = Appliance::booted();
    let before = app.slots();
    let other = SecretKey::generate().unwrap();
    let mut tampered = app.bundle_bytes("3", NOW, &app.key);
    let last = tampered.len() - 2048;
    tampered[last] ^= 0xff;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "untrusted key",
            app.bundle_bytes("2", NOW, &other),
            "manifest signature",
        ),
        (
            "downgrade",
            app.bundle_bytes("1", NOW, &app.key),
            "bundle 1 is not newer than the running 1",
        ),
        (
            "expired",
            app.bundle_bytes("2", NOW - 31 * DAY, &app.key),
            "expired",
        ),
        ("tampered image", tampered, "kindling.efi"),
    ];
    for (what, bytes, reason) in cases {
        let upload = app.receive(&bytes);
        status = app.take(status, &upload);
        std::fs::remove_file(&upload.path).unwrap();
        let push = status.push.clone().unwrap();
        assert_eq!(push.state, PushState::Refused, "{what}: {}", push.detail);
        assert!(push.detail.contains(reason), "{what}: {}", push.detail);
        assert_eq!(app.slots(), before, "{what}: the slots changed");
        let file = written(&app.paths.status);
        assert_eq!(file["push"]["state"], "refused", "{what}");
    }
    // The last refusal is what the state on the ESP remembers.
    let state = written(&app.paths.esp.join(STATE_FILE));
    assert!(
        state["last_result"].as_str().unwrap().contains("refused"),
        "{state}"
    );
}

#[test]
fn a_boot_that_is_not_blessed_takes_no_update() {
    let (app, mut status) = Appliance::booted();
    let before = app.slots();
    status.mode = Mode::GateFailed;
    let upload = app.receive(&app.bundle_bytes("2", NOW, &app.key));
    let status = app.take(status, &upload);
    let push = status.push.unwrap();
    assert_eq!(push.state, PushState::Refused);
    assert!(push.detail.contains("GateFailed"), "{}", push.detail);
    assert_eq!(app.slots(), before);
}

#[test]
fn the_image_trust_keys_are_read_from_their_directory() {
    let dir = tempfile::tempdir().unwrap();
    let key = SecretKey::generate().unwrap();
    std::fs::write(dir.path().join("site.pub"), key.public_key().to_file_text()).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a key").unwrap();
    let keys: Vec<PublicKey> = push::trusted_keys(dir.path());
    assert_eq!(keys, [key.public_key()]);
    assert!(push::trusted_keys(&dir.path().join("missing")).is_empty());
}

/// systemd-boot booting `entry` next: counts a try by renaming it and
/// reports the name it found, as `common::blessed_appliance` fakes it.
fn reboot_into(paths: &AgentPaths, armed: &str, tried: &str) {
    let linux = paths.esp.join("EFI/Linux");
    std::fs::rename(linux.join(armed), linux.join(tried)).unwrap();
    let mut var = vec![6, 0, 0, 0];
    for u in armed.encode_utf16().chain([0]) {
        var.extend(u.to_le_bytes());
    }
    std::fs::write(&paths.loader_entry, var).unwrap();
}

/// A power cut right after `Armed`, before the agent removed the upload:
/// the armed image's agent removes its own bundle at its start, refuses
/// nothing, and the next push is taken.
#[test]
fn the_bundle_an_image_was_armed_from_is_dropped_from_the_spool_at_its_start() {
    let (app, status) = Appliance::booted();
    let upload = app.receive(&app.bundle_bytes("2", NOW, &app.key));
    let status = app.take(status, &upload);
    assert_eq!(status.push.unwrap().state, PushState::Armed);
    let state = written(&app.paths.esp.join(STATE_FILE));
    assert_eq!(
        state["armed_upload"]["upload"],
        upload.id.as_str(),
        "{state}"
    );
    assert_eq!(state["armed_upload"]["version"], "2", "{state}");
    // The cut: no spool::discard, the upload is still there.
    assert_eq!(spool::pending(&app.spool()).unwrap().id, upload.id);

    reboot_into(&app.paths, "kindling-2+3.efi", "kindling-2+2-1.efi");
    let dropped = push::drop_armed_leftover(&app.paths, &app.spool()).unwrap();
    assert_eq!(dropped.id, upload.id);
    assert!(spool::pending(&app.spool()).is_none());
    assert!(!upload.path.exists());
    let state = written(&app.paths.esp.join(STATE_FILE));
    assert!(state.get("armed_upload").is_none(), "served once: {state}");
    assert!(push::drop_armed_leftover(&app.paths, &app.spool()).is_none());

    let status = run_boot(&app.paths, Duration::ZERO, || Gate::Ready).status;
    assert_eq!(status.mode, Mode::Blessed, "{}", status.detail);
    assert_eq!(status.entry.as_deref(), Some("kindling-2.efi"));
    assert!(
        status.state.refused.is_empty(),
        "{:?}",
        status.state.refused
    );
    let result = status.state.last_result.clone().unwrap_or_default();
    assert!(!result.contains("refused"), "{result}");

    // The API takes the next push (no 409: nothing waits), and so does
    // the agent.
    let next = app.receive(&app.bundle_bytes("3", NOW, &app.key));
    let status = app.take(status, &next);
    let push = status.push.unwrap();
    assert_eq!(push.state, PushState::Armed, "{}", push.detail);
    assert_eq!(push.armed.as_deref(), Some("kindling-3+3.efi"));
}

/// Anything but the armed image's own bundle stays for the agent: another
/// upload, or the same one when the image running is not the one armed
/// (a cut before arming, or the firmware fell back).
#[test]
fn any_other_leftover_stays_in_the_spool_as_before() {
    // Another upload waits: the record is dropped, the upload stays and
    // is refused as today (not newer than the running 2).
    let (app, status) = Appliance::booted();
    let upload = app.receive(&app.bundle_bytes("2", NOW, &app.key));
    let status = app.take(status, &upload);
    assert_eq!(status.push.clone().unwrap().state, PushState::Armed);
    spool::discard(&upload).unwrap();
    let other = app.receive(&app.bundle_bytes("1.5", NOW, &app.key));
    reboot_into(&app.paths, "kindling-2+3.efi", "kindling-2+2-1.efi");
    assert!(push::drop_armed_leftover(&app.paths, &app.spool()).is_none());
    assert_eq!(spool::pending(&app.spool()).unwrap().id, other.id);
    let state = written(&app.paths.esp.join(STATE_FILE));
    assert!(state.get("armed_upload").is_none(), "{state}");
    let status = run_boot(&app.paths, Duration::ZERO, || Gate::Ready).status;
    let status = app.take(status, &other);
    let push = status.push.unwrap();
    assert_eq!(push.state, PushState::Refused);
    assert!(push.detail.contains("not newer"), "{}", push.detail);

    // The same upload, but the image running is still 1: it is taken
    // again (the cut came before the entry was armed).
    let (app, status) = Appliance::booted();
    let upload = app.receive(&app.bundle_bytes("2", NOW, &app.key));
    let status = app.take(status, &upload);
    assert_eq!(status.push.clone().unwrap().state, PushState::Armed);
    assert!(push::drop_armed_leftover(&app.paths, &app.spool()).is_none());
    assert_eq!(spool::pending(&app.spool()).unwrap().id, upload.id);
}
