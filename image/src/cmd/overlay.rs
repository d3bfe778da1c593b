//! `kindling overlay build|verify|show|push|schema`: the operator side of
//! signed site overlays. Thin over `kindling_overlay`; prints human text, or
//! JSON where a flag asks for it.

use super::exit::{Exit, Failure};
use anyhow::{bail, Context};
use base64::Engine;
use kindling_api::artifacts::ArtifactList;
use kindling_clock::{rfc3339, unix_now};
use kindling_overlay::format::read_kovl;
use kindling_overlay::minisign;
use kindling_overlay::verify::verify_authentic;
use kindling_overlay::Catalog;
use kindling_overlay::{BuildOptions, LayerKind, Limits};
use kindling_site::{merge_layers, ArtifactRef, Layer, Profile, SiteTree};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Validate a directory tree, pack it and sign it: NAME.kovl + NAME.kovl.minisig.
    #[command(
        after_help = "Example:\n  kindling overlay build overlays/lab --name lab --version 2 --key keys/kindling.key"
    )]
    Build(BuildArgs),
    /// Sign an existing (e.g. `build --unsigned`) overlay: writes FILE.minisig.
    #[command(after_help = "Example:\n  kindling overlay sign lab.kovl --key keys/kindling.key")]
    Sign(SignArgs),
    /// Verify an overlay's signature, trusted comment and payload hash.
    #[command(
        after_help = "Example:\n  kindling overlay verify lab.kovl --pubkey keys/kindling.pub"
    )]
    Verify(VerifyArgs),
    /// Show an overlay's manifest, files and effective configuration.
    #[command(after_help = "Example:\n  kindling overlay show lab.kovl --effective --provenance")]
    Show(ShowArgs),
    /// Send a signed overlay to a running appliance (POST /v1/overlays).
    #[command(after_help = "Example:\n  kindling overlay push lab-v2.kovl --context lab")]
    Push(PushArgs),
    /// The overlays a running appliance uses and refused (GET /v1/overlays).
    #[command(after_help = "Example:\n  kindling overlay list --json")]
    List(super::overlay_list::ListArgs),
    /// Write the JSON Schemas of site.toml and profiles/*.toml.
    #[command(after_help = "Example:\n  kindling overlay schema --out schema")]
    Schema(SchemaArgs),
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LayerArg {
    Site,
    Appliance,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The overlay tree (site.toml, profiles/*.toml, files/…, trust/*.pub).
    pub dir: PathBuf,
    #[arg(long)]
    pub name: String,
    /// Monotonic version; the appliance refuses anything older than what it accepted.
    #[arg(long)]
    pub version: u64,
    /// Validity period from now, e.g. 90d, 12h, "1year".
    #[arg(long, default_value = "90d")]
    pub expires: humantime::Duration,
    #[arg(long, value_enum, default_value = "site")]
    pub layer: LayerArg,
    /// The site id; required when site.toml does not set site.id.
    #[arg(long)]
    pub site_id: Option<String>,
    /// Secret key (minisign format). Omit with --unsigned.
    #[arg(long, required_unless_present = "unsigned")]
    pub key: Option<PathBuf>,
    /// Read the key's password from this file instead of prompting.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
    /// Write only NAME.kovl and print the `minisign -S` command that signs it.
    #[arg(long, conflicts_with = "key")]
    pub unsigned: bool,
    /// Output file (default NAME.kovl in the current directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Pin each profile boot field (kernel, initrd, iso) that names a pushed
    /// artifact to sha256/HEX, by this catalog: the JSON `kindling artifact
    /// list --json` prints (`-`: standard input). Names not in it stay file
    /// names (artifacts baked into the image).
    #[arg(long, value_name = "CATALOG", conflicts_with = "resolve_artifacts")]
    pub artifacts: Option<PathBuf>,
    /// As --artifacts, with the catalog asked of the appliance (GET
    /// /v1/artifacts, read role): --appliance/--context, else the current
    /// context.
    #[arg(long)]
    pub resolve_artifacts: bool,
    #[command(flatten)]
    pub target: super::client::Target,
}

#[derive(clap::Args)]
pub struct SignArgs {
    pub file: PathBuf,
    /// Secret key (minisign format).
    #[arg(long)]
    pub key: PathBuf,
    /// Read the key's password from this file instead of prompting.
    #[arg(long)]
    pub password_file: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct VerifyArgs {
    pub file: PathBuf,
    /// Trusted public key (minisign format). Repeat for several.
    #[arg(long, required = true)]
    pub pubkey: Vec<PathBuf>,
    /// Signature file (default FILE.minisig).
    #[arg(long)]
    pub sig: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Toml,
    Json,
}

#[derive(clap::Args)]
pub struct ShowArgs {
    pub file: PathBuf,
    /// Print the effective configuration (image defaults + this overlay).
    #[arg(long)]
    pub effective: bool,
    /// With --effective, print where each value came from.
    #[arg(long, requires = "effective")]
    pub provenance: bool,
    #[arg(long, value_enum, default_value = "toml")]
    pub format: FormatArg,
}

#[derive(clap::Args)]
pub struct PushArgs {
    pub file: PathBuf,
    #[command(flatten)]
    pub target: super::client::Target,
    /// Signature file (default FILE.minisig).
    #[arg(long)]
    pub sig: Option<PathBuf>,
    /// Print the appliance's JSON answer instead of a summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct SchemaArgs {
    /// Directory to write site.schema.json and profile.schema.json into.
    #[arg(long, default_value = "schema")]
    pub out: PathBuf,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Build(a) => build(a),
        Command::Sign(a) => sign(a),
        Command::Verify(a) => verify(a),
        Command::Show(a) => show(a),
        Command::Push(a) => push(a),
        Command::List(a) => super::overlay_list::list(a),
        Command::Schema(a) => schema(a),
    }
}

fn sig_path(file: &Path, sig: Option<&PathBuf>) -> PathBuf {
    sig.cloned()
        .unwrap_or_else(|| PathBuf::from(format!("{}.minisig", file.display())))
}

/// The catalog of pushed artifacts `build` pins names by, if asked for.
fn artifact_catalog(a: &BuildArgs) -> anyhow::Result<Option<Catalog>> {
    if !a.resolve_artifacts && (a.target.appliance.is_some() || a.target.context.is_some()) {
        return Err(Failure::new(
            Exit::Usage,
            "--appliance and --context choose where --resolve-artifacts asks; pass it too",
        )
        .into());
    }
    if a.resolve_artifacts {
        let session = super::client::Session::open(&a.target)?;
        let list: ArtifactList = session.get_as("/v1/artifacts")?;
        return Ok(Some(Catalog::from_list(&list)?));
    }
    let Some(path) = &a.artifacts else {
        return Ok(None);
    };
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the catalog from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let catalog = Catalog::from_json(&text).with_context(|| path.display().to_string())?;
    Ok(Some(catalog))
}

fn build(a: BuildArgs) -> anyhow::Result<()> {
    let catalog = artifact_catalog(&a)?;
    let now = unix_now();
    let opts = BuildOptions {
        name: a.name.clone(),
        version: a.version,
        layer: match a.layer {
            LayerArg::Site => LayerKind::Site,
            LayerArg::Appliance => LayerKind::Appliance,
        },
        site_id: a.site_id.clone(),
        created: now,
        expires: now.saturating_add(a.expires.as_secs()),
    };
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}.kovl", a.name)));
    let (packed, resolutions) = kindling_overlay::pack_pinned(&a.dir, &opts, catalog.as_ref())?;
    for r in &resolutions {
        println!("{r}");
    }
    std::fs::write(&out, &packed.kovl).with_context(|| format!("writing {}", out.display()))?;
    let comment = packed.manifest.trusted_comment();
    if a.unsigned {
        println!("wrote {} (unsigned); sign it with:", out.display());
        println!("  minisign -S -s KEY -m {} -t '{comment}'", out.display());
        return Ok(());
    }
    let Some(key_path) = a.key.as_deref() else {
        bail!("--key is required unless --unsigned")
    };
    let key = super::keygen::load_secret_key(key_path, a.password_file.as_deref())?;
    let sig = key.sign(&packed.kovl, &comment)?;
    let sig_out = sig_path(&out, None);
    std::fs::write(&sig_out, sig).with_context(|| format!("writing {}", sig_out.display()))?;
    let m = &packed.manifest;
    println!(
        "wrote {} and {}: {} v{} for site {}, {} files, expires {}, key {}",
        out.display(),
        sig_out.display(),
        m.name,
        m.version,
        m.site_id,
        m.files.len(),
        rfc3339(m.expires),
        key.id
    );
    Ok(())
}

fn sign(a: SignArgs) -> anyhow::Result<()> {
    let kovl = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let parts =
        read_kovl(&kovl, &Limits::default()).with_context(|| a.file.display().to_string())?;
    let key = super::keygen::load_secret_key(&a.key, a.password_file.as_deref())?;
    let sig_out = sig_path(&a.file, None);
    std::fs::write(
        &sig_out,
        key.sign(&kovl, &parts.manifest.trusted_comment())?,
    )
    .with_context(|| format!("writing {}", sig_out.display()))?;
    println!("wrote {} (key {})", sig_out.display(), key.id);
    Ok(())
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let keys = super::keygen::load_public_keys(&a.pubkey)?;
    let kovl = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let sp = sig_path(&a.file, a.sig.as_ref());
    let sig = std::fs::read_to_string(&sp).with_context(|| format!("reading {}", sp.display()))?;
    let v = verify_authentic(&kovl, &sig, &keys, &Limits::default())
        .map_err(|e| anyhow::anyhow!("{}: refused: {e}", a.file.display()))?;
    let m = &v.manifest;
    let expired = unix_now() > m.expires;
    println!(
        "{}: signature ok (key {}): {} v{} {} layer, site {}, expires {}{}",
        a.file.display(),
        v.key_id,
        m.name,
        m.version,
        m.layer.as_str(),
        m.site_id,
        rfc3339(m.expires),
        if expired {
            " (EXPIRED: an appliance will refuse it)"
        } else {
            ""
        }
    );
    if expired {
        bail!("{}: expired at {}", a.file.display(), rfc3339(m.expires));
    }
    Ok(())
}

fn show(a: ShowArgs) -> anyhow::Result<()> {
    let kovl = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let limits = Limits::default();
    let parts = read_kovl(&kovl, &limits).with_context(|| a.file.display().to_string())?;
    let m = &parts.manifest;
    if !a.effective {
        let sig = std::fs::read_to_string(sig_path(&a.file, None)).ok();
        let signer = sig.as_deref().map(minisign::signature_key_id);
        match a.format {
            FormatArg::Json => println!("{}", serde_json::to_string_pretty(m)?),
            FormatArg::Toml => {
                println!("name      = {}", m.name);
                println!("version   = {}", m.version);
                println!("layer     = {}", m.layer.as_str());
                println!("site_id   = {}", m.site_id);
                println!("created   = {}", rfc3339(m.created));
                println!("expires   = {}", rfc3339(m.expires));
                println!(
                    "payload   = {} bytes, sha256 {}",
                    m.payload_size, m.payload_sha256
                );
                match signer {
                    Some(Ok(id)) => {
                        println!("signed by = key {id} (not verified here: use `overlay verify`)")
                    }
                    Some(Err(e)) => println!("signature = unreadable: {e}"),
                    None => println!("signature = none found"),
                }
                for k in &m.trusted_keys {
                    println!("trusts    = {k}");
                }
                println!("files:");
                for f in &m.files {
                    println!("  {f}");
                }
                print_boot_artifacts(&parts.payload, &limits);
            }
        }
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("tree");
    kindling_overlay::unpack::unpack_payload(&parts.payload, &dir, &limits)?;
    let tree = SiteTree::read_dir(&dir)?;
    let eff = merge_layers(&[Layer {
        label: m.name.clone(),
        tree,
    }])
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    match (a.format, a.provenance) {
        (FormatArg::Json, true) => println!("{}", serde_json::to_string_pretty(&eff)?),
        (FormatArg::Json, false) => println!("{}", serde_json::to_string_pretty(&eff.config)?),
        (FormatArg::Toml, prov) => {
            print!("{}", toml::to_string_pretty(&eff.config)?);
            if prov {
                println!("\n# provenance (values not listed are image defaults)");
                for (k, o) in &eff.provenance {
                    println!("# {k} = {}:{}", o.layer, o.file);
                }
            }
        }
    }
    Ok(())
}

/// Each profile's boot artifacts as packed: pinned hashes, file names, URLs.
fn print_boot_artifacts(payload: &[u8], limits: &Limits) {
    let profiles = (|| -> anyhow::Result<Vec<(String, Profile)>> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("tree");
        kindling_overlay::unpack::unpack_payload(payload, &dir, limits)?;
        let tree = SiteTree::read_dir(&dir)?;
        let mut out = Vec::new();
        for (name, doc) in tree.profiles {
            let profile: Profile = toml::Value::Table(doc.table).try_into()?;
            out.push((name.to_string(), profile));
        }
        Ok(out)
    })();
    match profiles {
        Ok(profiles) if profiles.is_empty() => {}
        Ok(profiles) => {
            println!("boot artifacts:");
            for (name, profile) in &profiles {
                for (field, value) in profile.boot.artifact_fields() {
                    let form = match ArtifactRef::parse(value) {
                        Ok(ArtifactRef::Pinned(_)) => "pinned: a pushed artifact",
                        Ok(ArtifactRef::Url(_)) => "URL",
                        Ok(ArtifactRef::Name(_)) => "file name",
                        Err(_) => "malformed pin",
                    };
                    println!("  profile {name}: {field} {value} ({form})");
                }
            }
        }
        Err(e) => println!("boot artifacts: unreadable: {e:#}"),
    }
}

fn push(a: PushArgs) -> anyhow::Result<()> {
    let kovl = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let sp = sig_path(&a.file, a.sig.as_ref());
    let minisig =
        std::fs::read_to_string(&sp).with_context(|| format!("reading {}", sp.display()))?;
    let body = kindling_api::overlays::PushRequest {
        kovl: base64::engine::general_purpose::STANDARD.encode(&kovl),
        minisig,
    };
    let session = super::client::Session::open(&a.target)?;
    let body = serde_json::to_vec(&body)?;
    let bar = super::progress::Spinner::start(format!(
        "pushing {} ({} KiB)",
        a.file.display(),
        body.len().div_ceil(1024)
    ));
    let answer: anyhow::Result<serde_json::Value> = session.post_raw_as("/v1/overlays", body);
    bar.finish();
    let answer = answer?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(());
    }
    let reply: kindling_api::overlays::PushReply = serde_json::from_value(answer)
        .map_err(|e| anyhow::anyhow!("POST /v1/overlays: unexpected reply: {e}"))?;
    let acc = &reply.accepted;
    println!(
        "accepted {} v{} ({} layer, key {}, expires {})",
        acc.name,
        acc.version,
        acc.layer.as_str(),
        acc.key_id,
        acc.expires
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(", ")
        }
    };
    println!("applied now:          {}", list(&reply.applied_now));
    println!(
        "applies at next boot: {}",
        list(&reply.applies_at_next_boot)
    );
    for action in reply.actions.iter().flatten() {
        println!("  {action}");
    }
    Ok(())
}

fn schema(a: SchemaArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    for (name, text) in kindling_site::schema::schema_files() {
        let path = a.out.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
