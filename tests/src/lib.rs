//! Shared fixtures of kindling's end-to-end tests: where the repository and the
//! release binaries are, the lab image and the node payload (each built once
//! per test run and reused by every scenario), and the root check.
//! Fixtures build into `build/e2e/`; they never modify the source tree.

pub mod scan;

use kindling_lab::payload::{self, Payload, PayloadInputs};
use kindling_lab::{Lab, LabOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn repo_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.to_path_buf())
}

/// Where a failed scenario's logs are kept: `build/e2e-logs/<scenario>/`.
pub fn logs_root() -> PathBuf {
    repo_root().join("build/e2e-logs")
}

fn work_dir() -> PathBuf {
    repo_root().join("build/e2e")
}

/// A release binary built by `tests/e2e` (`cargo build --release --workspace --bins`).
pub fn release_bin(name: &str) -> PathBuf {
    repo_root()
        .join("target/x86_64-unknown-linux-gnu/release")
        .join(name)
}

/// True (after printing why) when the scenario cannot run here: the lab
/// needs root for namespaces and taps.
pub fn skip_unless_root(scenario: &str) -> bool {
    if kindling_lab::cmd::require_root(scenario).is_ok() {
        return false;
    }
    eprintln!("skipped {scenario}: the QEMU lab needs root (network namespaces, taps); run tests/e2e as root");
    true
}

/// A lab for one scenario, logs under `build/e2e-logs/<scenario>/` (kept if
/// the scenario fails; the path is printed then).
pub fn lab_for(scenario: &str) -> Result<Lab, String> {
    eprintln!(
        "[{scenario}] lab logs: {}",
        logs_root().join(scenario).display()
    );
    Lab::up(LabOptions::for_test(scenario, &logs_root())).map_err(|e| e.to_string())
}

/// The lab node payload (`vmlinuz`, `lab-node.cpio.zst`), built once.
pub fn node_payload() -> Result<&'static Payload, String> {
    static PAYLOAD: OnceLock<Result<Payload, String>> = OnceLock::new();
    PAYLOAD
        .get_or_init(|| {
            let mut inputs = PayloadInputs::host_defaults().map_err(|e| e.to_string())?;
            // Nodes with a grant (the stack lab) run their first boot.
            inputs.first_boot = Some(release_bin("kindling-nocloud-double"));
            payload::build(&inputs, &work_dir().join("payload")).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The appliance image built from `overlays/lab` with the node payload as
/// artifacts. `KINDLING_E2E_IMAGE=DIR` reuses an image built beforehand (the
/// demo's `build/image`, say); otherwise it is built once per test run.
pub fn lab_image() -> Result<&'static Path, String> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| match std::env::var_os("KINDLING_E2E_IMAGE") {
            // Relative to the repository (cargo runs tests from tests/).
            Some(dir) => Ok(repo_root().join(dir)),
            None => build_lab_image(&work_dir()),
        })
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

fn run(step: &str, cmd: &mut Command) -> Result<(), String> {
    let line = format!("{cmd:?}");
    let out = cmd
        .current_dir(repo_root())
        .output()
        .map_err(|e| format!("{step}: cannot run {line}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{step} failed ({}): {line}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// Overlay versions only have to grow (the appliance refuses older ones).
fn overlay_version() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(1)
        .to_string()
}

/// The lab key (`build/e2e/lab-key/`), made once: the harness signs every
/// overlay it builds with it, and every image trusts it.
fn lab_key(kindling: &Path, work: &Path) -> Result<(PathBuf, PathBuf), String> {
    let key_dir = work.join("lab-key");
    let key = key_dir.join("kindling.key");
    let public = key_dir.join("kindling.pub");
    if !key.exists() {
        run(
            "keygen",
            Command::new(kindling)
                .args(["keygen", "--unencrypted", "--out"])
                .arg(&key_dir),
        )?;
    }
    Ok((key, public))
}

/// What one lab image is made of: the overlay directory signed as `name`,
/// the extra binaries (`NAME=PATH`, e.g. `vault=build/tools/bao`), the
/// hardware drivers list (`None`: the image builder's own) and the formats.
struct ImageRecipe<'a> {
    overlay_dir: PathBuf,
    name: &'a str,
    extra_bins: &'a [(&'a str, PathBuf)],
    /// Artifacts served besides the node payload (`NAME=PATH`).
    artifacts: &'a [(&'a str, PathBuf)],
    drivers_list: Option<PathBuf>,
    formats: Option<&'a str>,
    out: PathBuf,
}

/// `(NAME, build/tools/FILE)` for each `(NAME, FILE)`, or which one
/// `tests/install-deps` has not installed yet.
fn tool_bins<'a>(wanted: &[(&'a str, &str)]) -> Result<Vec<(&'a str, PathBuf)>, String> {
    let tools = repo_root().join("build/tools");
    wanted
        .iter()
        .map(|(name, file)| {
            let path = tools.join(file);
            if path.is_file() {
                Ok((*name, path))
            } else {
                Err(format!(
                    "{} missing: run tests/install-deps (it installs it there)",
                    path.display()
                ))
            }
        })
        .collect()
}

/// keygen → overlay build → image build, as the demo does it, with ntpd-rs
/// for the lab site's time service.
fn build_lab_image(work: &Path) -> Result<PathBuf, String> {
    build_image(
        work,
        &ImageRecipe {
            overlay_dir: repo_root().join("overlays/lab"),
            artifacts: &[],
            name: "lab",
            extra_bins: &tool_bins(&[("ntp-daemon", "ntp-daemon")])?,
            drivers_list: None,
            formats: None,
            out: work.join("image"),
        },
    )
}

/// The NIC driver the lab's VMs need (`-device virtio-net-pci`).
pub const LAB_NIC_DRIVER: &str = "virtio_net";

/// A broken update for the rollback scenario: the lab image's recipe
/// without [`LAB_NIC_DRIVER`] in its drivers list, so the appliance boots
/// but finds no NIC: its LAN never comes up and the required PXE service
/// never becomes ready.
/// Only the raw disk is built (its `kindling.efi` is what an update
/// bundles), once per test run into `build/e2e/image-no-nic`.
pub fn lab_image_without_nic_driver() -> Result<&'static Path, String> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let work = work_dir();
            let list = work.join("drivers-without-nic.list");
            std::fs::create_dir_all(&work)
                .and_then(|()| std::fs::write(&list, drivers_list_without(LAB_NIC_DRIVER)?))
                .map_err(|e| format!("writing {}: {e}", list.display()))?;
            build_image(
                &work,
                &ImageRecipe {
                    overlay_dir: repo_root().join("overlays/lab"),
                    artifacts: &[],
                    name: "lab",
                    extra_bins: &tool_bins(&[("ntp-daemon", "ntp-daemon")])?,
                    drivers_list: Some(list),
                    formats: Some("initramfs,disk"),
                    out: work.join("image-no-nic"),
                },
            )
        })
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

/// `kernel-config/drivers.list` without the line naming `driver`; an
/// error if no line named it (the list changed: the fault would not be one).
fn drivers_list_without(driver: &str) -> std::io::Result<String> {
    let path = repo_root().join("kernel-config/drivers.list");
    let text = std::fs::read_to_string(&path)?;
    let named = |line: &str| line.split('#').next().unwrap_or("").trim() == driver;
    if !text.lines().any(named) {
        return Err(std::io::Error::other(format!(
            "{} does not list {driver}",
            path.display()
        )));
    }
    Ok(text
        .lines()
        .filter(|line| !named(line))
        .map(|line| format!("{line}\n"))
        .collect())
}

/// The image of the stack scenario: `overlays/lab-stack` (Consul and
/// Vault on, lab-only local unseal, time served) with the real `bao` (as
/// `vault`), `consul` and `ntp-daemon` that `tests/install-deps` put in `build/tools/`. Built once into
/// `build/e2e/image-stack`; `KINDLING_E2E_STACK_IMAGE=DIR` reuses one built
/// beforehand. It is big (the initramfs carries both, ~70 MiB compressed).
pub fn lab_stack_image() -> Result<&'static Path, String> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| match std::env::var_os("KINDLING_E2E_STACK_IMAGE") {
            Some(dir) => Ok(repo_root().join(dir)),
            None => {
                let extra_bins = stack_bins()?;
                let work = work_dir();
                build_image(
                    &work,
                    &ImageRecipe {
                        overlay_dir: repo_root().join("overlays/lab-stack"),
                        artifacts: &[],
                        name: "lab-stack",
                        extra_bins: &extra_bins,
                        drivers_list: None,
                        formats: None,
                        out: work.join("image-stack"),
                    },
                )
            }
        })
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

/// The stack's binaries from `build/tools/`: the real `bao` (as `vault`),
/// `consul` and `ntp-daemon`.
fn stack_bins() -> Result<Vec<(&'static str, PathBuf)>, String> {
    tool_bins(&[
        ("vault", "bao"),
        ("consul", "consul"),
        ("ntp-daemon", "ntp-daemon"),
    ])
}

/// A Debian 12 node made from Debian's own packages (`tests/debian-node/`):
/// its root filesystem as a raw ext4 image, and the kernel and initrd
/// installed in it.
#[derive(Debug, Clone)]
pub struct DebianNode {
    pub rootfs: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// The artifact names the Debian profile boots (`tests/debian-node/profiles/`).
pub const DEBIAN_KERNEL_ARTIFACT: &str = "debian-vmlinuz";
pub const DEBIAN_INITRD_ARTIFACT: &str = "debian-initrd.img";

/// The Debian node, built once by `tests/debian-node/build-rootfs` into
/// `build/e2e/debian-node/<key>/` (mmdebstrap, .debs from deb.debian.org;
/// a rerun with the same package list reuses it).
pub fn debian_node() -> Result<&'static DebianNode, String> {
    static NODE: OnceLock<Result<DebianNode, String>> = OnceLock::new();
    NODE.get_or_init(|| {
        let script = repo_root().join("tests/debian-node/build-rootfs");
        let out = Command::new(&script)
            .arg(work_dir().join("debian-node"))
            .current_dir(repo_root())
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!("{} failed ({})", script.display(), out.status));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let dir = stdout
            .lines()
            .last()
            .map(|l| repo_root().join(l.trim()))
            .ok_or_else(|| format!("{} printed no directory", script.display()))?;
        let node = DebianNode {
            rootfs: dir.join("rootfs.ext4"),
            kernel: dir.join("vmlinuz"),
            initrd: dir.join("initrd.img"),
        };
        for f in [&node.rootfs, &node.kernel, &node.initrd] {
            if !f.is_file() {
                return Err(format!("{} did not make {}", script.display(), f.display()));
            }
        }
        Ok(node)
    })
    .as_ref()
    .map_err(Clone::clone)
}

/// The stack image with the Debian node's profile: `overlays/lab-stack`
/// plus `tests/debian-node/profiles/` and the site lines of
/// `tests/debian-node/site-nodes.toml` (the node's MAC pinned to it), with
/// the Debian kernel and initrd as artifacts. Built once into
/// `build/e2e/image-stack-debian`.
pub fn lab_stack_debian_image(node: &DebianNode) -> Result<&'static Path, String> {
    static IMAGE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let work = work_dir();
            let overlay = work.join("overlay-lab-stack-debian");
            compose_overlay(
                &repo_root().join("overlays/lab-stack"),
                &repo_root().join("tests/debian-node"),
                &overlay,
            )?;
            build_image(
                &work,
                &ImageRecipe {
                    overlay_dir: overlay,
                    name: "lab-stack",
                    extra_bins: &stack_bins()?,
                    artifacts: &[
                        (DEBIAN_KERNEL_ARTIFACT, node.kernel.clone()),
                        (DEBIAN_INITRD_ARTIFACT, node.initrd.clone()),
                    ],
                    drivers_list: None,
                    formats: Some("initramfs,disk"),
                    out: work.join("image-stack-debian"),
                },
            )
        })
        .as_ref()
        .map(PathBuf::as_path)
        .map_err(Clone::clone)
}

/// `base`'s site and profiles, with `extra/profiles/*.toml` added and
/// `extra/site-nodes.toml` appended to the site, written fresh into `out`.
fn compose_overlay(base: &Path, extra: &Path, out: &Path) -> Result<(), String> {
    let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out.join("profiles")).map_err(|e| io("creating", out, e))?;
    let mut site = std::fs::read_to_string(base.join("site.toml"))
        .map_err(|e| io("reading", &base.join("site.toml"), e))?;
    let nodes = extra.join("site-nodes.toml");
    site.push('\n');
    site.push_str(&std::fs::read_to_string(&nodes).map_err(|e| io("reading", &nodes, e))?);
    std::fs::write(out.join("site.toml"), site).map_err(|e| io("writing", out, e))?;
    for dir in [base.join("profiles"), extra.join("profiles")] {
        let entries = std::fs::read_dir(&dir).map_err(|e| io("reading", &dir, e))?;
        for entry in entries {
            let path = entry.map_err(|e| io("reading", &dir, e))?.path();
            if let Some(name) = path.file_name() {
                std::fs::copy(&path, out.join("profiles").join(name))
                    .map_err(|e| io("copying", &path, e))?;
            }
        }
    }
    Ok(())
}

fn build_image(work: &Path, recipe: &ImageRecipe) -> Result<PathBuf, String> {
    let kindling = release_bin("kindling");
    if !kindling.exists() {
        return Err(format!(
            "{} missing: run `cargo build --release --workspace --bins` (tests/e2e does)",
            kindling.display()
        ));
    }
    let payload = node_payload()?;
    let (key, public) = lab_key(&kindling, work)?;
    let overlay = work.join(format!("{}.kovl", recipe.name));
    run(
        "overlay build",
        Command::new(&kindling)
            .args(["overlay", "build"])
            .arg(&recipe.overlay_dir)
            .args([
                "--name",
                recipe.name,
                "--version",
                &overlay_version(),
                "--key",
            ])
            .arg(&key)
            .arg("--out")
            .arg(&overlay),
    )?;
    let mut image = Command::new(&kindling);
    image
        .args(["image", "build", "--site"])
        .arg(&overlay)
        .arg("--trust-key")
        .arg(&public)
        .arg("--artifact")
        .arg(format!("vmlinuz={}", payload.kernel.display()))
        .arg("--artifact")
        .arg(format!("lab-node.cpio.zst={}", payload.initrd.display()));
    for (name, path) in recipe.artifacts {
        image
            .arg("--artifact")
            .arg(format!("{name}={}", path.display()));
    }
    for (name, path) in recipe.extra_bins {
        image
            .arg("--extra-bin")
            .arg(format!("{name}={}", path.display()));
    }
    if let Some(list) = &recipe.drivers_list {
        image.arg("--drivers-list").arg(list);
    }
    if let Some(formats) = recipe.formats {
        image.args(["--formats", formats]);
    }
    run("image build", image.arg("--out").arg(&recipe.out))?;
    Ok(recipe.out.clone())
}
