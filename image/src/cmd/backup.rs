//! `kindling backup now|list|pull|inspect|restore`: encrypted backups of an
//! appliance (docs/backups.md). `now`, `list` and `pull` talk to the API
//! (`POST /v1/backups`, `GET /v1/backups`, `GET /v1/backups/ID`); `inspect`
//! and `restore` work on a pulled file on the operator's machine, decrypted
//! in memory with the operator's age identity and checked against its
//! manifest before anything is restored; `restore` then hands it to the
//! appliance (`POST /v1/backups/restore`) or to services it names.

use anyhow::Context;
use clap::{Args, Subcommand};
use kindling_api::backups::{BackupList, BackupRequested};
use kindling_backup::{restore, Endpoint, Opened};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum Command {
    /// Ask the appliance for a backup now (admin role) and wait until it is made.
    ///
    /// Example: kindling backup now --context lab
    Now(NowArgs),
    /// The backups the appliance keeps, and its backup service's last result.
    ///
    /// Example: kindling backup list --context lab
    List(ListArgs),
    /// Download one backup (admin role), still encrypted.
    ///
    /// Example: kindling backup pull 20260101T120000Z-0a1b -o lab.kbak --context lab
    Pull(PullArgs),
    /// Decrypt a backup with the operator's age identity, check every part
    /// against its manifest, and list what it holds. Nothing is written.
    ///
    /// Example: kindling backup inspect lab.kbak --identity ~/.age/key.txt
    Inspect(InspectArgs),
    /// Decrypt and check a backup, then restore it. Without --consul,
    /// --vault or --data-dir: onto the appliance (admin role), which
    /// reboots, puts the backed-up cluster in place of its own and waits
    /// for Vault's ORIGINAL key shares. With them: into those services
    /// and that directory directly.
    ///
    /// Example: kindling backup restore lab.kbak --identity ~/.age/key.txt --context lab --yes
    Restore(RestoreArgs),
}

#[derive(Args)]
pub struct NowArgs {
    #[command(flatten)]
    pub target: super::client::Target,
    /// How long to wait for the backup to be made (0s: do not wait).
    #[arg(long, default_value = "10m")]
    pub wait: humantime::Duration,
}

#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub target: super::client::Target,
    /// Print the answer of GET /v1/backups as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PullArgs {
    pub id: String,
    #[command(flatten)]
    pub target: super::client::Target,
    /// Where to write it (default: ID.kbak here). Replaced only when whole.
    #[arg(short = 'o', long)]
    pub out: Option<PathBuf>,
}

#[derive(Args)]
pub struct InspectArgs {
    pub file: PathBuf,
    /// File holding the `AGE-SECRET-KEY-1…` identity.
    #[arg(long)]
    pub identity: PathBuf,
    /// Print the manifest as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct RestoreArgs {
    pub file: PathBuf,
    /// File holding the `AGE-SECRET-KEY-1…` identity.
    #[arg(long)]
    pub identity: PathBuf,
    #[command(flatten)]
    pub target: super::client::Target,
    /// Onto the appliance: confirm that its Consul and Vault are replaced
    /// by the backup's (their data is kept aside on the data partition).
    #[arg(long)]
    pub yes: bool,
    /// Consul's HTTP address on the target.
    #[arg(long, value_name = "URL", requires = "consul_token_file")]
    pub consul: Option<String>,
    /// A Consul management token of the target.
    #[arg(long, value_name = "FILE")]
    pub consul_token_file: Option<PathBuf>,
    /// Vault's address on the target.
    #[arg(long, value_name = "URL", requires = "vault_token_file")]
    pub vault: Option<String>,
    /// A Vault token of the target with `sudo` on
    /// sys/storage/raft/snapshot-force (its root token).
    #[arg(long, value_name = "FILE")]
    pub vault_token_file: Option<PathBuf>,
    /// PEM of the CA Vault's (and Consul's) TLS certificate is issued by.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Write the backup's data files (leases, inventory, overlays) below
    /// this data directory.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Now(a) => now(a),
        Command::List(a) => list(a),
        Command::Pull(a) => pull(a),
        Command::Inspect(a) => inspect(a),
        Command::Restore(a) => restore_cmd(a),
    }
}

fn now(a: NowArgs) -> anyhow::Result<()> {
    let session = super::client::Session::open(&a.target)?;
    let requested: BackupRequested = session.post_as("/v1/backups", &serde_json::json!({}))?;
    println!("backup {} requested", requested.id);
    if a.wait.is_zero() {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + *a.wait;
    let spinner = super::progress::Spinner::start(format!("making backup {}", requested.id));
    loop {
        let view: BackupList = session.get_as("/v1/backups")?;
        if let Some(b) = view.backups.iter().find(|b| b.id == requested.id) {
            spinner.finish();
            println!("backup {} made: {} bytes", b.id, b.bytes);
            return Ok(());
        }
        let last = view.service.as_ref().map(|s| &s["last"]);
        if let Some(last) = last.filter(|l| l["id"] == requested.id.as_str()) {
            if last["ok"] == false {
                spinner.finish();
                anyhow::bail!(
                    "backup {} failed: {}",
                    requested.id,
                    last["error"].as_str().unwrap_or("no reason given")
                );
            }
        }
        if std::time::Instant::now() > deadline {
            spinner.finish();
            anyhow::bail!(
                "backup {} not made within {}; `kindling backup list` shows when it is",
                requested.id,
                a.wait
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

fn list(a: ListArgs) -> anyhow::Result<()> {
    let session = super::client::Session::open(&a.target)?;
    let view: BackupList = session.get_as("/v1/backups")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    let mut table = super::table::Table::new(&["ID", "CREATED", "BYTES"]);
    for b in &view.backups {
        table.row(vec![b.id.clone(), b.created.clone(), b.bytes.to_string()]);
    }
    for id in &view.pending {
        table.row(vec![id.clone(), "(queued)".into(), "-".into()]);
    }
    if table.is_empty() {
        println!("no backups");
    } else {
        print!("{}", table.render());
    }
    if let Some(p) = &view.restore_pending {
        println!(
            "restore of backup {} staged by {}: applied at the next boot",
            p["backup_id"].as_str().unwrap_or("?"),
            p["operator"].as_str().unwrap_or("?")
        );
    }
    if let Some(r) = &view.restore_last {
        let id = r["backup_id"].as_str().unwrap_or("?");
        match r["error"].as_str() {
            Some(e) => println!("last restore, of backup {id}, FAILED: {e}"),
            None => println!(
                "last restore: backup {id}, {} files; the appliance's own cluster data kept in {}",
                r["files"],
                r["replaced"].as_str().unwrap_or("(nothing replaced)")
            ),
        }
    }
    if let Some(last) = view.service.as_ref().map(|s| &s["last"]) {
        if last["ok"] == false {
            println!(
                "last backup {} FAILED: {}",
                last["id"].as_str().unwrap_or("?"),
                last["error"].as_str().unwrap_or("no reason given")
            );
        }
    }
    Ok(())
}

fn pull(a: PullArgs) -> anyhow::Result<()> {
    let id: kindling_backup::BackupId = a.id.parse()?;
    let out = a.out.unwrap_or_else(|| PathBuf::from(format!("{id}.kbak")));
    let session = super::client::Session::open(&a.target)?;
    // The size first, for the progress bar and to check the download is whole.
    let view: BackupList = session.get_as("/v1/backups")?;
    let total = view
        .backups
        .iter()
        .find(|b| b.id == id.as_str())
        .map(|b| b.bytes)
        .ok_or_else(|| {
            super::exit::Failure::new(
                super::exit::Exit::NotFound,
                format!("the appliance keeps no backup {id} (`kindling backup list`)"),
            )
        })?;
    let partial = out.with_extension("kbak.partial");
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("creating {}", partial.display()))?;
    let bar = super::progress::Bar::start(format!("pulling {id}"), total);
    let mut got: u64 = 0;
    let mut write_err = None;
    let result = session.stream(&format!("/v1/backups/{id}"), |chunk| {
        if let Err(e) = file.write_all(chunk) {
            write_err = Some(e);
            return false;
        }
        got += chunk.len() as u64;
        bar.set(got);
        true
    });
    bar.finish();
    let finish = || -> anyhow::Result<()> {
        result?;
        if let Some(e) = write_err {
            return Err(e).with_context(|| format!("writing {}", partial.display()));
        }
        anyhow::ensure!(
            got == total,
            "the download ended after {got} of {total} bytes; nothing kept"
        );
        file.sync_all()
            .with_context(|| format!("writing {}", partial.display()))?;
        std::fs::rename(&partial, &out)
            .with_context(|| format!("renaming {} to {}", partial.display(), out.display()))
    };
    if let Err(e) = finish() {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    println!("wrote {} ({total} bytes, encrypted)", out.display());
    Ok(())
}

/// `restore` onto the appliance: decrypts and checks here (the appliance
/// never sees the operator's identity), sends the checked archive over the
/// API's TLS (`POST /v1/backups/restore`), which checks it again, stages it
/// and reboots into it.
fn restore_onto_appliance(a: &RestoreArgs) -> anyhow::Result<()> {
    use std::io::Read;
    let identity = read_identity(&a.identity)?;
    let bytes = std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
    let mut plain = Vec::new();
    kindling_backup::archive::decrypting_reader(&bytes[..], &identity)
        .and_then(|mut r| {
            r.read_to_end(&mut plain)
                .map_err(|e| kindling_backup::OpenError::Damaged(e.to_string()))
        })
        .with_context(|| format!("{}", a.file.display()))?;
    let mut opened =
        kindling_backup::open_plain(&plain[..]).with_context(|| format!("{}", a.file.display()))?;
    let keys = kindling_backup::ca_keys::unseal(&mut opened, &identity)
        .with_context(|| format!("{}", a.file.display()))?;
    let plain = kindling_backup::pack_plain(&opened)?;
    let m = &opened.manifest;
    println!(
        "backup {} of {} (site {}), made {}, checked: {} parts, {keys} CA key(s) opened",
        m.id,
        m.appliance.hostname,
        m.appliance.site_id,
        m.created,
        opened.parts.len()
    );
    anyhow::ensure!(
        (plain.len() as u64) <= kindling_backup::staged::MAX_STAGED,
        "{}: {} bytes decrypted, more than the {} the appliance takes for a restore; restore it into the services directly (--consul, --vault, --data-dir)",
        a.file.display(),
        plain.len(),
        kindling_backup::staged::MAX_STAGED
    );
    if !a.yes {
        return Err(super::exit::Failure::new(
            super::exit::Exit::Usage,
            "this replaces the appliance's Consul, Vault, inventory, leases and overlays with the backup's (its own are kept aside on the data partition) and reboots it: add --yes",
        )
        .into());
    }
    let session = super::client::Session::open(&a.target)?;
    let staged: kindling_api::backups::RestoreStaged =
        session.post_raw_as("/v1/backups/restore", plain)?;
    println!("restore of backup {} staged; {}", staged.id, staged.next);
    Ok(())
}

/// The identity file's `AGE-SECRET-KEY-1…` line (identity files may carry
/// comment lines).
fn read_identity(path: &Path) -> anyhow::Result<age::x25519::Identity> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let key = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .with_context(|| format!("{}: no AGE-SECRET-KEY-1… line", path.display()))?;
    kindling_stack::secrets::parse_identity(key).with_context(|| format!("{}", path.display()))
}

/// Decrypts and checks `file`: every part against the manifest.
fn open_checked(file: &Path, identity: &Path) -> anyhow::Result<Opened> {
    let identity = read_identity(identity)?;
    let f = std::fs::File::open(file).with_context(|| format!("reading {}", file.display()))?;
    kindling_backup::open(std::io::BufReader::new(f), &identity)
        .with_context(|| format!("{}", file.display()))
}

fn inspect(a: InspectArgs) -> anyhow::Result<()> {
    let opened = open_checked(&a.file, &a.identity)?;
    let m = &opened.manifest;
    if a.json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(());
    }
    println!(
        "backup {} of {} (site {}, kindling {}), made {}",
        m.id, m.appliance.hostname, m.appliance.site_id, m.appliance.version, m.created
    );
    println!("vault storage: {}", m.vault_storage);
    for note in &m.notes {
        println!("note: {note}");
    }
    let mut table = super::table::Table::new(&["PART", "KIND", "BYTES", "SHA256"]);
    for e in &m.entries {
        table.row(vec![
            e.name.clone(),
            super::table::wire_name(&e.kind).unwrap_or_default(),
            e.bytes.to_string(),
            e.sha256.clone(),
        ]);
    }
    print!("{}", table.render());
    println!("every part matches its sha256 in the manifest");
    Ok(())
}

fn token(path: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .trim()
        .to_string())
}

fn restore_cmd(a: RestoreArgs) -> anyhow::Result<()> {
    if a.consul.is_none() && a.vault.is_none() && a.data_dir.is_none() {
        return restore_onto_appliance(&a);
    }
    if a.consul.is_some() && a.vault.is_some() {
        // Consul's snapshot names Vault as its Connect CA, with a token only
        // the restored Vault knows: Consul's restore fails until that Vault
        // is unsealed.
        return Err(super::exit::Failure::new(
            super::exit::Exit::Usage,
            "restore Vault first (--vault), restart it and unseal it with the ORIGINAL shares, then restore Consul (--consul)",
        )
        .into());
    }
    // Everything is read and checked before the first change.
    let mut opened = open_checked(&a.file, &a.identity)?;
    if a.data_dir.is_some() {
        kindling_backup::ca_keys::unseal(&mut opened, &read_identity(&a.identity)?)
            .with_context(|| format!("{}", a.file.display()))?;
    }
    let ca = match &a.ca {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let endpoint =
        |url: &Option<String>, tok: &Option<PathBuf>| -> anyhow::Result<Option<Endpoint>> {
            match (url, tok) {
                (Some(url), Some(t)) => Ok(Some(Endpoint {
                    url: url.clone(),
                    token: token(t)?,
                    ca_pem: ca.clone(),
                })),
                _ => Ok(None),
            }
        };
    let consul = endpoint(&a.consul, &a.consul_token_file)?;
    let vault = endpoint(&a.vault, &a.vault_token_file)?;
    for (wanted, part) in [
        (consul.is_some(), kindling_backup::manifest::CONSUL_SNAPSHOT),
        (vault.is_some(), kindling_backup::manifest::VAULT_SNAPSHOT),
    ] {
        anyhow::ensure!(
            !wanted || opened.part(part).is_some(),
            "{}: the backup has no {part} (vault storage: {}); nothing was restored",
            a.file.display(),
            opened.manifest.vault_storage
        );
    }
    println!(
        "backup {} of {} checked: {} parts",
        opened.manifest.id,
        opened.manifest.appliance.hostname,
        opened.parts.len()
    );
    let opened = std::sync::Arc::new(opened);
    let run = {
        let opened = opened.clone();
        async move {
            if let Some(c) = &consul {
                restore::consul(&opened, c).await?;
                println!("consul: snapshot restored into {}", c.url);
            }
            if let Some(v) = &vault {
                restore::vault(&opened, v).await?;
                println!(
                    "vault: raft snapshot restored into {}; it is now the backed-up Vault: unseal it with the ORIGINAL shares",
                    v.url
                );
            }
            Ok::<(), kindling_backup::restore::RestoreError>(())
        }
    };
    kindling_stack::api::block_on(run)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .context("restoring")?;
    if let Some(dir) = &a.data_dir {
        let written = restore::files(&opened, dir)?;
        println!(
            "data: {} files written below {}",
            written.len(),
            dir.display()
        );
    }
    Ok(())
}
