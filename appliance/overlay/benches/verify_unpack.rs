//! Benchmark: verify + unpack a ~5 MB overlay with kindling, next to the
//! same job done with the tools an operator would use today on the same file
//! in the same run: `minisign -V` + `tar -x` of the container + `tar --zstd -x`
//! of the payload. Prints a table of median and min times and the ratio.
//!
//! Run: `cargo bench -p kindling-overlay --bench verify_unpack`
//! (needs `minisign`, `tar` and `zstd` for the baseline; skipped otherwise).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use kindling_overlay::manifest::LayerKind;
use kindling_overlay::minisign::{PublicKey, SecretKey};
use kindling_overlay::unpack::{swap_into_place, unpack_payload};
use kindling_overlay::verify::verify_authentic;
use kindling_overlay::{BuildOptions, Limits};
use rand::RngCore;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ROUNDS: usize = 15;
const PAYLOAD_BYTES: usize = 5 * 1024 * 1024;

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// The lab tree plus ~5 MB of incompressible artifacts in files/ (worst case
/// for the hash and the decompressor: nothing shrinks).
fn make_tree(root: &Path) {
    let lab = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../overlays/lab");
    std::fs::create_dir_all(root.join("profiles")).unwrap();
    std::fs::create_dir_all(root.join("files/artifacts")).unwrap();
    for f in ["site.toml", "profiles/dev.toml", "profiles/prod.toml"] {
        std::fs::copy(lab.join(f), root.join(f)).unwrap();
    }
    let mut rng = rand::rngs::OsRng;
    for i in 0..20 {
        let mut buf = vec![0u8; PAYLOAD_BYTES / 20];
        rng.fill_bytes(&mut buf);
        std::fs::write(root.join(format!("files/artifacts/blob-{i:02}.bin")), buf).unwrap();
    }
}

fn time<F: FnMut()>(mut f: F) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    (ms(v[v.len() / 2]), ms(v[0]))
}

fn tool(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok()
        || Command::new(name).arg("-v").output().is_ok()
}

#[path = "../../../tests/bench-record.rs"]
mod bench_record;
use bench_record::record;

fn main() {
    let work = tempfile::Builder::new()
        .prefix("ko-bench-")
        .tempdir()
        .unwrap();
    let tree = work.path().join("tree");
    make_tree(&tree);
    let key_text = std::fs::read_to_string(data().join("keys/TEST-ONLY-kindling.key")).unwrap();
    let key = SecretKey::from_file_text(&key_text, None).unwrap();
    let pk: PublicKey = key.public_key();
    let opts = BuildOptions {
        name: "lab".into(),
        version: 1,
        layer: LayerKind::Site,
        site_id: None,
        created: 1_767_225_600,
        expires: 4_102_444_800,
    };
    let built = kindling_overlay::build(&tree, &opts, &key).unwrap();
    let kovl_path = work.path().join("lab.kovl");
    std::fs::write(&kovl_path, &built.kovl).unwrap();
    std::fs::write(work.path().join("lab.kovl.minisig"), &built.minisig).unwrap();
    let pub_path = work.path().join("kindling.pub");
    std::fs::write(&pub_path, pk.to_file_text()).unwrap();
    let limits = Limits::default();

    let mut ours = Vec::new();
    let mut base = Vec::new();
    let have_tools = tool("minisign") && tool("tar") && tool("zstd");
    for round in 0..ROUNDS {
        // kindling: read both files, verify, unpack into a fresh dir, swap in.
        let dest = work.path().join("ours");
        let fresh = work.path().join(format!("ours.new-{round}"));
        ours.push(time(|| {
            let kovl = std::fs::read(&kovl_path).unwrap();
            let sig = std::fs::read_to_string(work.path().join("lab.kovl.minisig")).unwrap();
            let v = verify_authentic(&kovl, &sig, std::slice::from_ref(&pk), &limits).unwrap();
            unpack_payload(&v.payload, &fresh, &limits).unwrap();
            swap_into_place(&fresh, &dest).unwrap();
        }));
        if have_tools {
            let out = work.path().join(format!("base-{round}"));
            std::fs::create_dir(&out).unwrap();
            base.push(time(|| {
                let ok = Command::new("minisign")
                    .args(["-V", "-q", "-p"])
                    .arg(&pub_path)
                    .arg("-m")
                    .arg(&kovl_path)
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "minisign -V failed");
                let ok = Command::new("sh")
                    .arg("-c")
                    .arg(format!(
                        "tar -xOf '{}' payload.tar.zst | tar --zstd -x -C '{}'",
                        kovl_path.display(),
                        out.display()
                    ))
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "tar failed");
            }));
            std::fs::remove_dir_all(&out).unwrap();
        }
    }
    for d in &ours {
        record(
            "overlay_verify_unpack",
            "kindling",
            d.as_secs_f64() * 1000.0,
        );
    }
    for d in &base {
        record(
            "overlay_verify_unpack",
            "baseline",
            d.as_secs_f64() * 1000.0,
        );
    }
    let (om, omin) = stats(ours);
    println!();
    println!(
        "verify + unpack one overlay: {} bytes (.kovl), {} files, {} rounds",
        built.kovl.len(),
        built.manifest.files.len(),
        ROUNDS
    );
    println!(
        "| case                                              | median ms | min ms | vs baseline |"
    );
    println!(
        "|---------------------------------------------------|-----------|--------|-------------|"
    );
    if have_tools {
        let (bm, bmin) = stats(base);
        println!("| baseline: minisign -V + tar -x + tar --zstd -x    | {bm:>9.1} | {bmin:>6.1} |       1.00x |");
        println!("| kindling: verify_authentic + unpack + swap        | {om:>9.1} | {omin:>6.1} | {:>10.2}x |", om / bm);
    } else {
        println!("| kindling: verify_authentic + unpack + swap        | {om:>9.1} | {omin:>6.1} |   (no tools) |");
        println!("baseline skipped: minisign, tar or zstd not installed");
    }
}
