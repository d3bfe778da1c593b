//! Regenerates the bad-input fixtures under `tests/data/<scenario>/`, signed
//! with the in-tree TEST-ONLY keys. Run from anywhere:
//! `cargo run -p kindling-overlay --example gen_fixtures`.
//!
//! Each scenario directory gets `lab.kovl`, `lab.kovl.minisig` and
//! `expect.txt` (a substring the refusal line must contain); some also carry
//! the state the appliance is in. The payloads are built by hand here (not via
//! `pack`) because most of them are deliberately invalid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use kindling_overlay::format::{sha256_hex, write_kovl};
use kindling_overlay::manifest::{LayerKind, Manifest, FORMAT};
use kindling_overlay::minisign::SecretKey;
use std::io::Read;
use std::path::PathBuf;

/// 2026-01-01, and 2100-01-01: fixtures stay valid for the life of the project.
const CREATED: u64 = 1_767_225_600;
const FAR_FUTURE: u64 = 4_102_444_800;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn key(name: &str) -> SecretKey {
    let text = std::fs::read_to_string(data().join(format!("keys/TEST-ONLY-{name}.key"))).unwrap();
    SecretKey::from_file_text(&text, None).unwrap()
}

/// A payload entry: path, contents, and a tar entry type.
enum Entry {
    File(&'static str, Vec<u8>),
    /// Written with a raw header name, bypassing the tar crate's path checks.
    RawFile(&'static str, Vec<u8>),
    Symlink(&'static str, &'static str),
    Zeros(&'static str, u64),
}

fn lab_files(site_toml: &str) -> Vec<Entry> {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../overlays/lab");
    vec![
        Entry::File(
            "profiles/dev.toml",
            std::fs::read(repo.join("profiles/dev.toml")).unwrap(),
        ),
        Entry::File(
            "profiles/prod.toml",
            std::fs::read(repo.join("profiles/prod.toml")).unwrap(),
        ),
        Entry::File("site.toml", site_toml.as_bytes().to_vec()),
    ]
}

fn lab_site() -> String {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../overlays/lab");
    std::fs::read_to_string(repo.join("site.toml")).unwrap()
}

fn payload(entries: &[Entry]) -> (Vec<u8>, Vec<String>, u64) {
    let enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    let mut tar = tar::Builder::new(enc);
    let mut files = Vec::new();
    let mut size = 0;
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_mtime(CREATED);
        match e {
            Entry::File(p, d) => {
                h.set_size(d.len() as u64);
                h.set_entry_type(tar::EntryType::Regular);
                tar.append_data(&mut h, p, d.as_slice()).unwrap();
                files.push(p.to_string());
                size += d.len() as u64;
            }
            Entry::RawFile(p, d) => {
                h.set_size(d.len() as u64);
                h.set_entry_type(tar::EntryType::Regular);
                let name = &mut h.as_old_mut().name;
                name[..p.len()].copy_from_slice(p.as_bytes());
                h.set_cksum();
                tar.append(&h, d.as_slice()).unwrap();
                files.push(p.to_string());
                size += d.len() as u64;
            }
            Entry::Symlink(p, target) => {
                h.set_size(0);
                h.set_entry_type(tar::EntryType::Symlink);
                tar.append_link(&mut h, p, target).unwrap();
                files.push(p.to_string());
            }
            Entry::Zeros(p, n) => {
                h.set_size(*n);
                h.set_entry_type(tar::EntryType::Regular);
                tar.append_data(&mut h, p, std::io::repeat(0).take(*n))
                    .unwrap();
                files.push(p.to_string());
                // The bomb's manifest lies: it claims a tiny unpacked size.
                size += 1;
            }
        }
    }
    let bytes = tar.into_inner().unwrap().finish().unwrap();
    files.sort();
    (bytes, files, size)
}

struct Spec {
    name: &'static str,
    version: u64,
    site: &'static str,
    expires: u64,
    layer: LayerKind,
    trusted_keys: Vec<String>,
}

impl Default for Spec {
    fn default() -> Self {
        Self {
            name: "lab",
            version: 4,
            site: "lab",
            expires: FAR_FUTURE,
            layer: LayerKind::Site,
            trusted_keys: vec![],
        }
    }
}

fn manifest(spec: &Spec, payload: &[u8], files: Vec<String>, unpacked: u64) -> Manifest {
    Manifest {
        format: FORMAT.into(),
        name: spec.name.into(),
        version: spec.version,
        layer: spec.layer,
        site_id: spec.site.into(),
        created: CREATED,
        expires: spec.expires,
        payload_sha256: sha256_hex(payload),
        payload_size: payload.len() as u64,
        unpacked_size: unpacked,
        files,
        trusted_keys: spec.trusted_keys.clone(),
    }
}

fn build(spec: &Spec, entries: &[Entry], signer: &SecretKey) -> (Vec<u8>, String) {
    let (p, files, size) = payload(entries);
    let m = manifest(spec, &p, files, size);
    let kovl = write_kovl(&m, &p).unwrap();
    let sig = signer.sign(&kovl, &m.trusted_comment()).unwrap();
    (kovl, sig)
}

fn write(scenario: &str, file: &str, kovl: &[u8], sig: &str, expect: &str) {
    let dir = data().join(scenario);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{file}.kovl")), kovl).unwrap();
    std::fs::write(dir.join(format!("{file}.kovl.minisig")), sig).unwrap();
    if !expect.is_empty() {
        std::fs::write(dir.join("expect.txt"), format!("{expect}\n")).unwrap();
    }
    println!("{scenario}/{file}.kovl ({} bytes)", kovl.len());
}

fn flip_sig_byte(sig: &str) -> String {
    let mut lines: Vec<String> = sig.lines().map(str::to_string).collect();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut raw = b64.decode(&lines[1]).unwrap();
    raw[40] ^= 0x01; // inside the Ed25519 signature, after algorithm and key id
    lines[1] = b64.encode(raw);
    lines.join("\n") + "\n"
}

fn main() {
    let test_key = key("kindling");
    let other = key("other");
    let rotated = key("rotated");
    let good_entries = || lab_files(&lab_site());
    let v = |version| Spec {
        version,
        ..Spec::default()
    };

    // The last good configuration the appliance already runs in every scenario.
    let (kovl, sig) = build(&v(3), &good_entries(), &test_key);
    write("good", "lab", &kovl, &sig, "");

    let (kovl, sig) = build(&v(4), &good_entries(), &other);
    write("wrong-key", "lab", &kovl, &sig, "which is not trusted");

    let (mut kovl, sig) = build(&v(4), &good_entries(), &test_key);
    // Inside payload.tar.zst: just after the zstd frame's magic number.
    let magic = [0x28, 0xb5, 0x2f, 0xfd];
    let at = kovl.windows(4).position(|w| w == magic).unwrap() + 20;
    kovl[at] ^= 0x01;
    write(
        "flipped-payload-byte",
        "lab",
        &kovl,
        &sig,
        "signature does not match the file",
    );

    let (kovl, sig) = build(&v(4), &good_entries(), &test_key);
    write(
        "flipped-signature-byte",
        "lab",
        &kovl,
        &flip_sig_byte(&sig),
        "signature does not match the file",
    );

    let (kovl, sig) = build(&v(4), &good_entries(), &test_key);
    write(
        "truncated",
        "lab",
        &kovl[..kovl.len() / 2 + 100],
        &sig,
        "truncated",
    );

    let expired = Spec {
        version: 4,
        expires: CREATED + 86_400,
        ..Spec::default()
    };
    let (kovl, sig) = build(&expired, &good_entries(), &test_key);
    write(
        "expired",
        "lab",
        &kovl,
        &sig,
        "expired at 2026-01-02T00:00:00Z",
    );

    let (kovl, sig) = build(&v(2), &good_entries(), &test_key);
    write(
        "rollback",
        "lab",
        &kovl,
        &sig,
        "version 2 is older than the accepted version 3 (rollback refused)",
    );

    let other_site = lab_site().replace("id = \"lab\"", "id = \"fra1\"");
    let spec = Spec {
        version: 4,
        site: "fra1",
        ..Spec::default()
    };
    let (kovl, sig) = build(&spec, &lab_files(&other_site), &test_key);
    write(
        "other-site",
        "lab",
        &kovl,
        &sig,
        "overlay is for site \"fra1\", this appliance is site \"lab\"",
    );

    let mut e = good_entries();
    e.push(Entry::RawFile("../escape.toml", b"x = 1\n".to_vec()));
    let (kovl, sig) = build(&v(4), &e, &test_key);
    write(
        "path-traversal",
        "lab",
        &kovl,
        &sig,
        "\"../escape.toml\" escapes the overlay directory (contains '..')",
    );

    let mut e = good_entries();
    e.push(Entry::RawFile("/etc/kindling-escape", b"x\n".to_vec()));
    let (kovl, sig) = build(&v(4), &e, &test_key);
    write(
        "absolute-path",
        "lab",
        &kovl,
        &sig,
        "escapes the overlay directory (absolute path)",
    );

    let mut e = good_entries();
    e.push(Entry::Symlink("files/passwd", "../../../../etc/passwd"));
    let (kovl, sig) = build(&v(4), &e, &test_key);
    write(
        "symlink-out",
        "lab",
        &kovl,
        &sig,
        "\"files/passwd\" is a symlink",
    );

    let mut e = good_entries();
    e.push(Entry::Zeros("files/bomb.bin", 512 * 1024 * 1024));
    let (kovl, sig) = build(&v(4), &e, &test_key);
    write(
        "zip-bomb",
        "lab",
        &kovl,
        &sig,
        "payload decompresses to more than",
    );

    // The broken table header goes after the lab site's last line, so the
    // refusal names the line that follows it.
    let broken = lab_site() + "\n[api\nport = 1\n";
    let header_line = broken.lines().position(|l| l == "[api").unwrap() + 1;
    let (kovl, sig) = build(&v(4), &lab_files(&broken), &test_key);
    write(
        "invalid-toml",
        "lab",
        &kovl,
        &sig,
        &format!(
            "invalid configuration: lab/site.toml:{header_line}: unclosed table, expected `]`"
        ),
    );

    let bad = lab_site().replace(
        "[dns]\nforwarder = true",
        "[dns]\nforwarder = true\nforwardr = false",
    );
    let (kovl, sig) = build(&v(4), &lab_files(&bad), &test_key);
    write(
        "unknown-key",
        "lab",
        &kovl,
        &sig,
        "invalid configuration: lab/site.toml:22: dns.forwardr: unknown field `forwardr`",
    );

    let bad = lab_site().replace(
        "start = \"192.168.100.100\", end = \"192.168.100.200\"",
        "start = \"10.9.0.100\", end = \"10.9.0.200\"",
    );
    let (kovl, sig) = build(&v(4), &lab_files(&bad), &test_key);
    write("dhcp-range-outside-lan", "lab", &kovl, &sig, "lab/site.toml:25: pxe.range: DHCP range 10.9.0.100-10.9.0.200 is outside the LAN 192.168.100.0/24");

    // Signed correctly, but the manifest's payload hash is wrong.
    let (p, files, size) = payload(&good_entries());
    let mut m = manifest(&v(4), &p, files, size);
    m.payload_sha256 = "00".repeat(32);
    let kovl = write_kovl(&m, &p).unwrap();
    let sig = test_key.sign(&kovl, &m.trusted_comment()).unwrap();
    write(
        "manifest-hash-mismatch",
        "lab",
        &kovl,
        &sig,
        "does not match the manifest's 0000",
    );

    // Signed correctly, but the trusted comment claims another version.
    let (p, files, size) = payload(&good_entries());
    let m = manifest(&v(4), &p, files, size);
    let kovl = write_kovl(&m, &p).unwrap();
    let sig = test_key
        .sign(
            &kovl,
            &m.trusted_comment().replace("version=4", "version=40"),
        )
        .unwrap();
    write(
        "trusted-comment-mismatch",
        "lab",
        &kovl,
        &sig,
        "trusted comment says version=40, manifest says 4",
    );

    // Key rotation: `rotate` (signed by the trusted key) introduces the rotated
    // key; `lab` v4 is signed by the rotated key only.
    let rot = Spec {
        name: "rotate",
        version: 1,
        trusted_keys: vec![rotated.public_key().to_base64()],
        ..Spec::default()
    };
    let (kovl, sig) = build(
        &rot,
        &[Entry::File(
            "trust/rotated.pub",
            rotated.public_key().to_file_text().into_bytes(),
        )],
        &test_key,
    );
    write("key-rotation", "rotate", &kovl, &sig, "");
    let (kovl, sig) = build(&v(4), &good_entries(), &rotated);
    write("key-rotation", "lab", &kovl, &sig, "");

    // A per-appliance overlay that only changes the hostname and lease time.
    let appl = Spec {
        name: "appliance-7",
        version: 1,
        layer: LayerKind::Appliance,
        ..Spec::default()
    };
    let (kovl, sig) = build(
        &appl,
        &[Entry::File(
            "site.toml",
            b"[site]\nhostname = \"kindling-7\"\n\n[pxe]\nlease_secs = 600\n".to_vec(),
        )],
        &test_key,
    );
    write("appliance-layer", "appliance-7", &kovl, &sig, "");
}
