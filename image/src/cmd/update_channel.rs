//! `kindling update publish|promote|check`: the signed channel indexes
//! (`kindling_update::channel`) in a directory the operator serves with any
//! static HTTP server: `DIR/CHANNEL.json`, its `.minisig`, and the bundles.
//! Every edit re-signs the index with a higher sequence and a fresh expiry,
//! so publishing with no bundle is how an index is kept from going stale.

use anyhow::{bail, Context};
use clap::Args;
use kindling_overlay::PublicKey;
use kindling_update::{ChannelIndex, ChannelPolicy, Release, StageRequest, Version};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct PublishArgs {
    /// A bundle (`kindling update build`) to add; none: only re-sign.
    pub bundle: Option<PathBuf>,
    /// The channel, e.g. dev.
    #[arg(long)]
    pub channel: String,
    /// The directory served to appliances (index and bundles).
    #[arg(long)]
    pub dir: PathBuf,
    /// Secret key (minisign format); its public key must verify the bundle.
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// How long the signed index stays fresh, e.g. 7d.
    #[arg(long, default_value = "7d")]
    pub valid_for: humantime::Duration,
}

#[derive(Args)]
pub struct PromoteArgs {
    /// The version to promote.
    pub version: Version,
    /// The channel it was blessed on, e.g. dev.
    #[arg(long)]
    pub from: String,
    /// The channel that offers it next, e.g. prod.
    #[arg(long)]
    pub to: String,
    #[arg(long)]
    pub dir: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    #[arg(long, default_value = "7d")]
    pub valid_for: humantime::Duration,
}

#[derive(Args)]
pub struct CheckArgs {
    #[arg(long)]
    pub channel: String,
    #[arg(long)]
    pub dir: PathBuf,
    /// Trusted public key (minisign format). Repeat for several.
    #[arg(long, required = true)]
    pub pubkey: Vec<PathBuf>,
    /// The appliance's running version.
    #[arg(long, default_value = "0")]
    pub running: Version,
    /// The appliance's version floor.
    #[arg(long, default_value = "0")]
    pub floor: Version,
    /// Take only releases blessed on this channel first (prod: dev).
    #[arg(long)]
    pub requires_blessing_on: Option<String>,
    /// The highest index sequence the appliance accepted before.
    #[arg(long, default_value_t = 0)]
    pub seen: u64,
}

fn index_paths(dir: &Path, channel: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let plain = !channel.is_empty()
        && channel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !plain {
        bail!("channel {channel:?}: letters, digits, - and _ only");
    }
    Ok((
        dir.join(format!("{channel}.json")),
        dir.join(format!("{channel}.json.minisig")),
    ))
}

/// The channel's index in `dir`, checked with `trusted` (a new, empty one
/// when there is none yet). Expiry does not matter to an edit.
fn load(dir: &Path, channel: &str, trusted: &[PublicKey]) -> anyhow::Result<ChannelIndex> {
    let (json, sig) = index_paths(dir, channel)?;
    let bytes = match std::fs::read(&json) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ChannelIndex::new(channel, kindling_clock::unix_now()))
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", json.display())),
    };
    let signature =
        std::fs::read_to_string(&sig).with_context(|| format!("reading {}", sig.display()))?;
    ChannelIndex::verify(&bytes, &signature, trusted, channel, 0, 0)
        .with_context(|| json.display().to_string())
}

/// Signs `index` and writes it (signature first: a reader between the two
/// writes sees a mismatch and refuses, never a forged pair).
fn save(
    dir: &Path,
    index: &mut ChannelIndex,
    key: &kindling_overlay::SecretKey,
    valid_for: humantime::Duration,
) -> anyhow::Result<()> {
    let (json, sig) = index_paths(dir, &index.channel)?;
    let (bytes, signature) = index.sign(key, kindling_clock::unix_now(), valid_for.as_secs())?;
    kindling_atomic_write::write_atomic(&sig, signature.as_bytes(), false)
        .with_context(|| format!("writing {}", sig.display()))?;
    kindling_atomic_write::write_atomic(&json, &bytes, false)
        .with_context(|| format!("writing {}", json.display()))?;
    println!(
        "{}: channel {} #{} with {} releases ({}), fresh until {}",
        json.display(),
        index.channel,
        index.sequence,
        index.releases.len(),
        index
            .releases
            .iter()
            .map(|r| match &r.blessed_on {
                Some(on) => format!("{} blessed on {on}", r.version),
                None => r.version.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", "),
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(index.expires)
        )
    );
    Ok(())
}

/// The bundle's version, from its manifest verified with `trusted` and its
/// image checked whole (staged into a scratch directory).
fn bundle_version(bundle: &Path, trusted: &[PublicKey]) -> anyhow::Result<Version> {
    let file =
        std::fs::File::open(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let scratch = tempfile::tempdir().context("a scratch directory")?;
    let zero: Version = "0".parse()?;
    let request = StageRequest {
        trusted,
        running: &zero,
        floor: &zero,
        refused: &[],
        now: kindling_clock::unix_now(),
        slot_dir: scratch.path(),
        file_name: "kindling.efi",
    };
    let staged = kindling_update::stage(std::io::BufReader::new(file), &request)
        .with_context(|| bundle.display().to_string())?;
    Ok(staged.manifest.version)
}

pub fn publish(a: PublishArgs) -> anyhow::Result<()> {
    let key = super::keygen::load_secret_key(&a.key, a.password_file.as_deref())?;
    let trusted = [key.public_key()];
    let mut index = load(&a.dir, &a.channel, &trusted)?;
    if let Some(bundle) = &a.bundle {
        let name = bundle
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".kupd"))
            .with_context(|| format!("{}: a bundle's name ends in .kupd", bundle.display()))?;
        let version = bundle_version(bundle, &trusted)?;
        let served = a.dir.join(&name);
        if std::fs::canonicalize(bundle).ok() != std::fs::canonicalize(&served).ok() {
            std::fs::copy(bundle, &served)
                .with_context(|| format!("copying {} to {}", bundle.display(), served.display()))?;
        }
        let (sha256, size) = super::artifact_push::sha256_of(&served)?;
        index.publish(Release {
            version,
            bundle: name,
            size,
            sha256,
            blessed_on: None,
        })?;
    }
    save(&a.dir, &mut index, &key, a.valid_for)
}

pub fn promote(a: PromoteArgs) -> anyhow::Result<()> {
    let key = super::keygen::load_secret_key(&a.key, a.password_file.as_deref())?;
    let trusted = [key.public_key()];
    let from = load(&a.dir, &a.from, &trusted)?;
    if from.releases.is_empty() {
        bail!("channel {} has no index in {}", a.from, a.dir.display());
    }
    let mut to = load(&a.dir, &a.to, &trusted)?;
    to.promote(&from, &a.version)?;
    save(&a.dir, &mut to, &key, a.valid_for)
}

pub fn check(a: CheckArgs) -> anyhow::Result<()> {
    let trusted = super::keygen::load_public_keys(&a.pubkey)?;
    let (json, sig) = index_paths(&a.dir, &a.channel)?;
    let bytes = std::fs::read(&json).with_context(|| format!("reading {}", json.display()))?;
    let signature =
        std::fs::read_to_string(&sig).with_context(|| format!("reading {}", sig.display()))?;
    let index = ChannelIndex::verify(
        &bytes,
        &signature,
        &trusted,
        &a.channel,
        a.seen,
        kindling_clock::unix_now(),
    )
    .with_context(|| json.display().to_string())?;
    let policy = ChannelPolicy {
        channel: a.channel.clone(),
        requires_blessing_on: a.requires_blessing_on.clone(),
    };
    match index.offer(&policy, &a.running, &a.floor, &[]) {
        Some(r) => println!(
            "{}: channel {} #{} offers {} ({}, {} bytes) to an appliance running {}",
            json.display(),
            index.channel,
            index.sequence,
            r.version,
            r.bundle,
            r.size,
            a.running
        ),
        None => println!(
            "{}: channel {} #{} offers nothing newer than {} (floor {})",
            json.display(),
            index.channel,
            index.sequence,
            a.running,
            a.floor
        ),
    }
    Ok(())
}
