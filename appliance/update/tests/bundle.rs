//! Bundles built and staged for real: every refusal leaves the slot
//! directory empty, and the signature is the one Debian's `minisign`
//! verifies.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kindling_overlay::minisign::{PublicKey, SecretKey, SignatureError};
use kindling_update::bundle::{MANIFEST_ENTRY, SIGNATURE_ENTRY};
use kindling_update::{build, stage, BuildRequest, StageError, StageRequest, Version};
use std::path::{Path, PathBuf};

const NOW: u64 = 1_800_000_000;
const DAY: u64 = 86_400;

fn v(s: &str) -> Version {
    s.parse().unwrap()
}

struct Fixture {
    dir: tempfile::TempDir,
    key: SecretKey,
    image: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("slot-b")).unwrap();
        // Not a real UKI: the bundle treats the image as opaque bytes.
        let image: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(dir.path().join("kindling.efi"), &image).unwrap();
        Self {
            dir,
            key: SecretKey::generate().unwrap(),
            image,
        }
    }

    fn bundle(&self, version: &str, min_from: &str, now: u64) -> PathBuf {
        let out = self.dir.path().join(format!("kindling-{version}.kupd"));
        let request = BuildRequest {
            image: &self.dir.path().join("kindling.efi"),
            version: v(version),
            min_from: v(min_from),
            now,
            valid_secs: 30 * DAY,
            key: &self.key,
        };
        build(&request, &out).unwrap();
        out
    }

    fn slot(&self) -> PathBuf {
        self.dir.path().join("slot-b")
    }

    fn slot_files(&self) -> Vec<String> {
        std::fs::read_dir(self.slot())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn stage_bytes(
        &self,
        bytes: &[u8],
        running: &str,
        floor: &str,
        refused: &[Version],
        trusted: &[PublicKey],
    ) -> Result<kindling_update::Staged, StageError> {
        let running = v(running);
        let floor = v(floor);
        let slot = self.slot();
        let request = StageRequest {
            trusted,
            running: &running,
            floor: &floor,
            refused,
            now: NOW,
            slot_dir: &slot,
            file_name: "kindling.efi",
        };
        stage(bytes, &request)
    }

    fn stage(
        &self,
        bundle: &Path,
        running: &str,
        floor: &str,
    ) -> Result<kindling_update::Staged, StageError> {
        let bytes = std::fs::read(bundle).unwrap();
        self.stage_bytes(&bytes, running, floor, &[], &[self.key.public_key()])
    }
}

#[test]
fn a_good_bundle_lands_whole_in_the_slot() {
    let f = Fixture::new();
    let bundle = f.bundle("2", "1", NOW);
    let staged = f.stage(&bundle, "1", "1").unwrap();
    assert_eq!(staged.manifest.version, v("2"));
    assert_eq!(staged.manifest.expires, NOW + 30 * DAY);
    assert_eq!(staged.path, f.slot().join("kindling.efi"));
    assert_eq!(std::fs::read(&staged.path).unwrap(), f.image);
    assert_eq!(f.slot_files(), ["kindling.efi"], "no temporary file left");
}

#[test]
fn every_refusal_names_its_reason_and_writes_nothing() {
    let f = Fixture::new();
    let v2 = f.bundle("2", "1", NOW);
    let v1 = f.bundle("1", "1", NOW);
    let needs_15 = f.bundle("3", "1.5", NOW);
    let stale = f.bundle("4", "1", NOW - 31 * DAY);
    let ok = |r: Result<kindling_update::Staged, StageError>| r.unwrap_err();

    let e = ok(f.stage(&v1, "2", "2"));
    assert!(matches!(e, StageError::NotNewer { .. }), "{e}");
    assert_eq!(e.to_string(), "bundle 1 is not newer than the running 2");
    let e = ok(f.stage(&v2, "1", "3"));
    assert_eq!(
        e.to_string(),
        "bundle 2 is below this appliance's version floor 3"
    );
    let e = ok(f.stage(&needs_15, "1.4", "1"));
    assert_eq!(
        e.to_string(),
        "bundle 3 needs at least 1.5 running; this is 1.4"
    );
    let e = ok(f.stage(&stale, "1", "1"));
    assert!(matches!(e, StageError::Expired { .. }), "{e}");
    let bytes = std::fs::read(&v2).unwrap();
    let e = ok(f.stage_bytes(&bytes, "1", "1", &[v("2")], &[f.key.public_key()]));
    assert!(matches!(e, StageError::PreviouslyFailed(_)), "{e}");

    let other = SecretKey::generate().unwrap().public_key();
    let e = ok(f.stage_bytes(&bytes, "1", "1", &[], &[other]));
    assert!(
        matches!(e, StageError::Signature(SignatureError::UntrustedKey(_))),
        "{e}"
    );

    // One byte of the manifest changed (the version 2 → 9).
    let mut forged = bytes.clone();
    let at = find(&forged, b"\"version\": \"2\"").unwrap() + 12;
    forged[at] = b'9';
    let e = ok(f.stage_bytes(&forged, "1", "1", &[], &[f.key.public_key()]));
    assert!(
        matches!(e, StageError::Signature(SignatureError::Mismatch)),
        "{e}"
    );

    // One byte of the image changed: found while streaming, removed.
    let mut tampered = bytes.clone();
    let at = find(&tampered, &f.image[1000..1064]).unwrap();
    tampered[at] ^= 0xff;
    let e = ok(f.stage_bytes(&tampered, "1", "1", &[], &[f.key.public_key()]));
    assert!(matches!(e, StageError::ImageMismatch { .. }), "{e}");

    // Cut short in the middle of the image (a dropped download).
    let cut = &bytes[..bytes.len() / 2];
    let e = ok(f.stage_bytes(cut, "1", "1", &[], &[f.key.public_key()]));
    assert!(
        matches!(e, StageError::ImageMismatch { .. } | StageError::Io { .. }),
        "{e}"
    );
    let e = ok(f.stage_bytes(b"not a bundle at all", "1", "1", &[], &[f.key.public_key()]));
    assert!(matches!(e, StageError::Malformed(_)), "{e}");

    assert!(f.slot_files().is_empty(), "{:?}", f.slot_files());
}

#[test]
fn debian_minisign_verifies_the_manifest_signature() {
    let Ok(minisign) = which("minisign") else {
        panic!("minisign is not installed (tests/install-deps installs it)");
    };
    let f = Fixture::new();
    let bundle = f.bundle("2", "1", NOW);
    let out = f.dir.path().join("unpacked");
    std::fs::create_dir(&out).unwrap();
    tar::Archive::new(std::fs::File::open(&bundle).unwrap())
        .unpack(&out)
        .unwrap();
    let pubkey = f.dir.path().join("kindling.pub");
    std::fs::write(&pubkey, f.key.public_key().to_file_text()).unwrap();
    let run = std::process::Command::new(minisign)
        .arg("-V")
        .arg("-p")
        .arg(&pubkey)
        .arg("-m")
        .arg(out.join(MANIFEST_ENTRY))
        .arg("-x")
        .arg(out.join(SIGNATURE_ENTRY))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(said.contains("kindling update 2 (from 1 on)"), "{said}");
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn which(name: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or(())
}
