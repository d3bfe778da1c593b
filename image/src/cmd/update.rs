//! `kindling update build|verify|push|poll|status|publish|promote|check`: signed A/B update bundles
//! (`.kupd`, see `kindling_update`) from an image build's UKI, signed with
//! the same minisign keys as overlays, checked the way an appliance checks
//! them, pushed to an appliance (`POST /v1/update`, then following the
//! update agent in `GET /v1/update` until it armed or refused the bundle)
//! and the appliance's slot, version, floor and last result; asking the
//! appliance to poll its channel now (`poll`, following the download); and
//! signed channel indexes (`publish`, `promote`, `check`, see docs/updates.md).

use anyhow::Context;
use clap::{Args, Subcommand};
use kindling_update::{BuildRequest, StageRequest, Version};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum Command {
    /// Bundle an image build's UKI, signed, for appliances to update to.
    ///
    /// Example: kindling update build --image build/image --version 1.4 --key keys/kindling.key --out kindling-1.4.kupd
    Build(BuildArgs),
    /// Check a bundle's signature, expiry and image hash, and whether an
    /// appliance running --running (at version floor --floor) would take it.
    ///
    /// Example: kindling update verify kindling-1.4.kupd --pubkey keys/kindling.pub --running 1.3
    Verify(VerifyArgs),
    /// Add a bundle to a channel's signed index in a directory served to
    /// appliances (no bundle: re-sign, so the index does not go stale).
    ///
    /// Example: kindling update publish kindling-1.4.kupd --channel dev --dir site-updates/ --key keys/kindling.key
    Publish(super::update_channel::PublishArgs),
    /// Offer a version on the next channel once it was blessed on the
    /// first (an appliance on prod takes only what passed dev).
    ///
    /// Example: kindling update promote 1.4 --from dev --to prod --dir site-updates/ --key keys/kindling.key
    Promote(super::update_channel::PromoteArgs),
    /// What a channel's index offers an appliance running --running, after
    /// the checks the appliance makes (signature, channel, expiry, sequence).
    ///
    /// Example: kindling update check --channel prod --dir site-updates/ --pubkey keys/kindling.pub --running 1.3 --requires-blessing-on dev
    Check(super::update_channel::CheckArgs),
    /// Send a bundle to an appliance (admin role) and wait until its update
    /// agent armed it (the appliance then reboots into it) or refused it,
    /// or the appliance came back on its old version, the bundle rolled back.
    ///
    /// Example: kindling update push kindling-1.4.kupd --context lab
    Push(PushArgs),
    /// Ask the appliance to check its channel now (admin role) and follow
    /// the check: what the channel offers, the download, and whether it was
    /// armed, waits for the maintenance window or was refused.
    ///
    /// Example: kindling update poll --apply-now --context lab
    Poll(super::update_poll::PollArgs),
    /// The appliance's running slot, version, version floor, the last
    /// update result and its channel poll.
    ///
    /// Example: kindling update status --context lab
    Status(StatusArgs),
}

#[derive(Args)]
pub struct PushArgs {
    pub bundle: PathBuf,
    #[command(flatten)]
    pub target: super::client::Target,
    /// How long to wait for the update agent's verdict.
    #[arg(long, default_value = "10m")]
    pub wait: humantime::Duration,
}

#[derive(Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: super::client::Target,
    /// Print the answer of GET /v1/update as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BuildArgs {
    /// An `kindling image build` output directory (its kindling.efi).
    #[arg(long, conflicts_with = "uki", required_unless_present = "uki")]
    pub image: Option<PathBuf>,
    /// The unified kernel image itself.
    #[arg(long)]
    pub uki: Option<PathBuf>,
    /// The version the image reports (dotted numbers, e.g. 1.4.2).
    #[arg(long)]
    pub version: Version,
    /// The oldest running version that may update to this one.
    #[arg(long, default_value = "0")]
    pub min_from: Version,
    /// How long the bundle may be applied, e.g. 30d.
    #[arg(long, default_value = "30d")]
    pub valid_for: humantime::Duration,
    /// Secret key (minisign format).
    #[arg(long)]
    pub key: PathBuf,
    /// Read the key's password from this file instead of prompting.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct VerifyArgs {
    pub bundle: PathBuf,
    /// Trusted public key (minisign format). Repeat for several.
    #[arg(long, required = true)]
    pub pubkey: Vec<PathBuf>,
    /// The appliance's running version.
    #[arg(long, default_value = "0")]
    pub running: Version,
    /// The appliance's version floor.
    #[arg(long, default_value = "0")]
    pub floor: Version,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Build(a) => build(a),
        Command::Verify(a) => verify(a),
        Command::Publish(a) => super::update_channel::publish(a),
        Command::Promote(a) => super::update_channel::promote(a),
        Command::Check(a) => super::update_channel::check(a),
        Command::Push(a) => push(a),
        Command::Poll(a) => super::update_poll::poll(a),
        Command::Status(a) => status(a),
    }
}

fn build(a: BuildArgs) -> anyhow::Result<()> {
    let image = match (&a.uki, &a.image) {
        (Some(uki), _) => uki.clone(),
        (None, Some(dir)) => dir.join("kindling.efi"),
        (None, None) => anyhow::bail!("--image or --uki is required"),
    };
    let key = super::keygen::load_secret_key(&a.key, a.password_file.as_deref())?;
    let request = BuildRequest {
        image: &image,
        version: a.version,
        min_from: a.min_from,
        now: kindling_clock::unix_now(),
        valid_secs: a.valid_for.as_secs(),
        key: &key,
    };
    let manifest = kindling_update::build(&request, &a.out)
        .with_context(|| format!("building {}", a.out.display()))?;
    println!(
        "wrote {}: kindling {} (from {} on), image {} bytes sha256 {}, expires {}, key {}",
        a.out.display(),
        manifest.version,
        manifest.min_from,
        manifest.image_size,
        manifest.image_sha256,
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(manifest.expires)
        ),
        key.id
    );
    Ok(())
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let trusted = super::keygen::load_public_keys(&a.pubkey)?;
    let bundle = std::fs::File::open(&a.bundle)
        .with_context(|| format!("reading {}", a.bundle.display()))?;
    // Staged into a scratch directory that goes away: the whole check, no slot.
    let scratch = tempfile::tempdir().context("a scratch directory")?;
    let request = StageRequest {
        trusted: &trusted,
        running: &a.running,
        floor: &a.floor,
        refused: &[],
        now: kindling_clock::unix_now(),
        slot_dir: scratch.path(),
        file_name: "kindling.efi",
    };
    let staged = kindling_update::stage(std::io::BufReader::new(bundle), &request)
        .with_context(|| a.bundle.display().to_string())?;
    println!(
        "{}: good: kindling {} (from {} on), image {} bytes sha256 {}",
        a.bundle.display(),
        staged.manifest.version,
        staged.manifest.min_from,
        staged.manifest.image_size,
        staged.manifest.image_sha256
    );
    Ok(())
}

fn push(a: PushArgs) -> anyhow::Result<()> {
    use super::exit::{Exit, Failure};
    use kindling_api::update::{PushAccepted, UpdateView};
    let file = std::fs::File::open(&a.bundle)
        .with_context(|| format!("reading {}", a.bundle.display()))?;
    let length = file
        .metadata()
        .with_context(|| format!("reading {}", a.bundle.display()))?
        .len();
    let manifest = bundle_manifest(&a.bundle)?;
    let session = super::client::Session::open(&a.target)?;
    let started = std::time::Instant::now();
    let bar = super::progress::Bar::start(format!("pushing {}", a.bundle.display()), length);
    let accepted: PushAccepted = session
        .upload_as(
            "/v1/update",
            std::io::BufReader::new(file),
            length,
            |sent| bar.set(sent),
        )
        .inspect_err(|_| bar.finish())?;
    bar.finish();
    let sent = started.elapsed();
    println!(
        "sent {} bytes in {:.1} s as upload {}; waiting for the update agent",
        accepted.bytes,
        sent.as_secs_f64(),
        accepted.upload
    );
    let deadline = started + *a.wait;
    let version = manifest.version.to_string();
    let mut went_away = false;
    loop {
        // The agent arms the bundle and init reboots at once: the
        // appliance may be gone before the armed state is seen, so an
        // appliance that does not answer is waited for, and one that
        // answers running the bundle's version is the same success.
        let view = match session.get_as::<UpdateView>("/v1/update") {
            Ok(view) => Some(view),
            Err(e) if super::exit::code_of(&e) == Exit::Unreachable => {
                if !went_away {
                    println!("the appliance does not answer (rebooting?): {e:#}; waiting");
                    went_away = true;
                }
                None
            }
            Err(e) => return Err(e),
        };
        let agent = view.as_ref().and_then(|v| v.agent.as_ref());
        let secs = started.elapsed().as_secs_f64();
        match agent.and_then(|agent| push_verdict(agent, &accepted.upload, &version, went_away)) {
            Some(PushVerdict::Armed(detail)) => {
                println!("armed {secs:.1} s after the push began: {detail}");
                return Ok(());
            }
            Some(PushVerdict::Running(state)) => {
                println!(
                    "armed, rebooted and now running {version} ({state}), {secs:.1} s after the push began"
                );
                return Ok(());
            }
            Some(PushVerdict::Refused(detail)) => {
                return Err(Failure::new(
                    Exit::Error,
                    format!("the appliance refused {}: {detail}", a.bundle.display()),
                )
                .into())
            }
            Some(PushVerdict::RolledBack { running, result }) => {
                return Err(Failure::new(
                    Exit::Error,
                    format!(
                        "the appliance tried {version} and went back to {running} {secs:.1} s after the push began: {result}"
                    ),
                )
                .into())
            }
            None => {}
        }
        if std::time::Instant::now() > deadline {
            return Err(Failure::new(
                Exit::Error,
                format!(
                    "the update agent gave no verdict on upload {} within {}",
                    accepted.upload, a.wait
                ),
            )
            .into());
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// What the update agent's status says about a pushed upload.
#[derive(Debug, PartialEq)]
enum PushVerdict {
    /// It armed the upload (the detail says as what).
    Armed(String),
    /// It runs the bundle's version: armed and rebooted (mode and detail).
    Running(String),
    /// It refused the upload (why).
    Refused(String),
    /// After a reboot it runs another version and refuses this one: the
    /// bundle failed its health gate and the firmware went back.
    RolledBack { running: String, result: String },
}

/// `None` while undecided. `went_away`: the appliance stopped answering
/// since the push (it rebooted), so a refusal of `version` in its state
/// is this push's trial, not one from before.
fn push_verdict(
    agent: &serde_json::Value,
    upload: &str,
    version: &str,
    went_away: bool,
) -> Option<PushVerdict> {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    let push = &agent["push"];
    if push["upload"] == upload {
        return match push["state"].as_str() {
            Some("armed") => Some(PushVerdict::Armed(text(&push["detail"]))),
            Some("refused") => Some(PushVerdict::Refused(text(&push["detail"]))),
            _ => None,
        };
    }
    if agent["version"] == version {
        return Some(PushVerdict::Running(format!(
            "{}: {}",
            text(&agent["mode"]),
            text(&agent["detail"])
        )));
    }
    let refused = agent["refused"]
        .as_array()
        .is_some_and(|r| r.iter().any(|v| v == version));
    (went_away && refused).then(|| PushVerdict::RolledBack {
        running: text(&agent["version"]),
        result: text(&agent["last_result"]),
    })
}

/// The bundle's manifest as it claims (unverified: only to recognise the
/// version once the appliance runs it; the appliance verifies).
fn bundle_manifest(path: &std::path::Path) -> anyhow::Result<kindling_update::Manifest> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(file));
    let mut entry = archive
        .entries()?
        .next()
        .ok_or_else(|| anyhow::anyhow!("{}: not an update bundle (empty)", path.display()))??;
    if entry.path()?.as_os_str() != kindling_update::bundle::MANIFEST_ENTRY {
        anyhow::bail!(
            "{}: not an update bundle (its first entry is not {})",
            path.display(),
            kindling_update::bundle::MANIFEST_ENTRY
        );
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut entry, 64 * 1024), &mut bytes)?;
    kindling_update::Manifest::parse(&bytes).with_context(|| path.display().to_string())
}

fn status(a: StatusArgs) -> anyhow::Result<()> {
    use kindling_api::update::UpdateView;
    let session = super::client::Session::open(&a.target)?;
    let view: UpdateView = session.get_as("/v1/update")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    let Some(agent) = view.agent else {
        println!("no update agent on this boot (not started from a disk's A/B slots)");
        return Ok(());
    };
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
    println!(
        "mode:        {} ({})",
        text(&agent["mode"]),
        text(&agent["detail"])
    );
    println!("slot:        {}", text(&agent["entry"]));
    println!("version:     {}", text(&agent["version"]));
    println!("floor:       {}", text(&agent["floor"]));
    let refused: Vec<String> = agent["refused"]
        .as_array()
        .map(|r| r.iter().map(text).collect())
        .unwrap_or_default();
    if !refused.is_empty() {
        println!("refused:     {}", refused.join(", "));
    }
    println!("last result: {}", text(&agent["last_result"]));
    if agent["poll"].is_object() {
        super::update_poll::print_status(&agent["poll"]);
    }
    if agent["push"].is_object() {
        println!(
            "last push:   {} {} ({})",
            text(&agent["push"]["upload"]),
            text(&agent["push"]["state"]),
            text(&agent["push"]["detail"])
        );
    }
    if let Some(waiting) = view.waiting {
        println!("waiting:     upload {waiting}");
    }
    if view.poll_requested {
        println!("asked:       a channel check, not taken by the agent yet");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{push_verdict, PushVerdict};
    use serde_json::json;

    #[test]
    fn an_upload_armed_refused_or_running_is_decided() {
        let armed = json!({"version": "1", "push": {"upload": "u1", "state": "armed", "detail": "2 armed as kindling-2+3.efi"}});
        assert_eq!(
            push_verdict(&armed, "u1", "2", false),
            Some(PushVerdict::Armed("2 armed as kindling-2+3.efi".into()))
        );
        let refused = json!({"version": "1", "push": {"upload": "u1", "state": "refused", "detail": "expired"}});
        assert_eq!(
            push_verdict(&refused, "u1", "2", false),
            Some(PushVerdict::Refused("expired".into()))
        );
        let staging = json!({"version": "1", "push": {"upload": "u1", "state": "staging"}});
        assert_eq!(push_verdict(&staging, "u1", "2", false), None);
        let running = json!({"version": "2", "mode": "gating", "detail": "waiting"});
        assert_eq!(
            push_verdict(&running, "u1", "2", true),
            Some(PushVerdict::Running("gating: waiting".into()))
        );
    }

    /// Back on the old version with the pushed one refused: rolled back,
    /// said at once instead of waiting out `--wait`.
    #[test]
    fn a_rollback_after_the_reboot_is_a_failure_with_the_reason() {
        let back = json!({
            "version": "1", "mode": "blessed", "refused": ["2"],
            "last_result": "update 2 failed its health gate (pxe: started but not ready); the firmware went back to 1"
        });
        assert_eq!(
            push_verdict(&back, "u1", "2", true),
            Some(PushVerdict::RolledBack {
                running: "1".into(),
                result: "update 2 failed its health gate (pxe: started but not ready); the firmware went back to 1".into()
            })
        );
        // Before any reboot the same state is an earlier failure: the
        // agent's verdict on this upload (refused) is waited for.
        assert_eq!(push_verdict(&back, "u1", "2", false), None);
    }
}
