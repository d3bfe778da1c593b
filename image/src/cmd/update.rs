//! `kindling update build|verify`: signed A/B update bundles (`.kupd`, see
//! `kindling_update`) from an image build's UKI, signed with the same
//! minisign keys as overlays, and checked the way an appliance checks them.

use anyhow::Context;
use clap::{Args, Subcommand};
use kindling_overlay::PublicKey;
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
    let trusted = a
        .pubkey
        .iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            PublicKey::from_file_text(&text).with_context(|| p.display().to_string())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
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
