//! `kindling artifact push|import-iso|list|delete`: files kept on an appliance's data
//! partition for nodes (ISOs, kernels, images), content-addressed by
//! sha256 and served to the LAN by the PXE HTTP service at
//! `/by-hash/sha256/HEX`, through the API (`POST /v1/artifacts`, `GET
//! /v1/artifacts`, `DELETE /v1/artifacts/sha256/HEX`).
//!
//! `push` hashes the file here first and states the hash, so the
//! appliance keeps the bytes only if they arrived as they are on this
//! machine; then it streams the file with a progress bar (`artifact_push`,
//! which `import-iso`, in `artifact_iso`, pushes through as well).

use super::artifact_push::push_file;
use super::client::{Session, Target};
use super::exit::{Exit, Failure};
use super::table::Table;
use anyhow::Context;
use kindling_api::artifacts::{ArtifactDeleted, ArtifactInfo, ArtifactList};
use std::path::{Path, PathBuf};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Upload a file to the appliance (admin role), kept under its sha256
    /// and served to nodes at http://LAN-ADDRESS/by-hash/sha256/HEX.
    #[command(
        after_help = "Example:\n  kindling artifact push debian-12-netinst.iso --context lab"
    )]
    Push {
        file: PathBuf,
        /// The name it is listed under (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Push the kernel, initrd and (Ubuntu live server) squashfs layers of
    /// a Debian or Ubuntu installer ISO (admin role), then print them and a
    /// profile `[boot]` section that boots them.
    #[command(
        name = "import-iso",
        after_help = "Example:\n  kindling artifact import-iso debian-12.8.0-amd64-netinst.iso --context lab\n\nNeeds xorriso on this machine (Debian/Ubuntu package xorriso)."
    )]
    ImportIso {
        iso: PathBuf,
        /// What the pushed names start with, as PREFIX-vmlinuz (default:
        /// the ISO's file name without `.iso`).
        #[arg(long)]
        prefix: Option<String>,
        /// Push the ISO itself too (an Ubuntu autoinstall downloads the
        /// whole live ISO; its profile names it as `iso`).
        #[arg(long)]
        with_iso: bool,
        #[command(flatten)]
        target: Target,
    },
    /// The artifacts the appliance keeps: sha256, name, size, who pushed
    /// them and when.
    #[command(after_help = "Example:\n  kindling artifact list --json")]
    List {
        #[command(flatten)]
        target: Target,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove an artifact (admin role); nodes can no longer fetch it.
    #[command(after_help = "Example:\n  kindling artifact delete 3f5a…e9 --context lab")]
    Delete {
        /// Its sha256 (64 hex digits, as `kindling artifact list` shows).
        sha256: String,
        #[command(flatten)]
        target: Target,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Push { file, name, target } => push(&file, name, &target),
        Command::ImportIso {
            iso,
            prefix,
            with_iso,
            target,
        } => super::artifact_iso::import(&iso, prefix, with_iso, &target),
        Command::List { target, json } => list(&target, json),
        Command::Delete { sha256, target } => delete(&sha256, &target),
    }
}

fn push(file: &Path, name: Option<String>, target: &Target) -> anyhow::Result<()> {
    let name = match name {
        Some(n) => n,
        None => file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("{}: not a file name; pass --name", file.display()))?,
    };
    let session = Session::open(target)?;
    let pushed = push_file(&session, file, &name)?;
    let a = &pushed.reply.artifact;
    if pushed.reply.created {
        println!(
            "stored {} ({} bytes in {:.1} s) as sha256 {}",
            a.name, a.bytes, pushed.seconds, a.sha256
        );
    } else {
        println!(
            "already stored: sha256 {} ({}, pushed {} by {}); nothing changed",
            a.sha256,
            or_dash(&a.name),
            a.uploaded,
            or_dash(&a.uploaded_by)
        );
    }
    println!("nodes fetch it at http://LAN-ADDRESS{}", a.path);
    Ok(())
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() {
        "-"
    } else {
        text
    }
}

fn list(target: &Target, json: bool) -> anyhow::Result<()> {
    let session = Session::open(target)?;
    let view: ArtifactList = session.get_as("/v1/artifacts")?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    if view.artifacts.is_empty() {
        println!("no artifacts (push one with `kindling artifact push FILE`)");
        return Ok(());
    }
    let mut table = Table::new(&["SHA256", "NAME", "BYTES", "UPLOADED", "BY"]);
    for ArtifactInfo {
        sha256,
        name,
        bytes,
        uploaded,
        uploaded_by,
        ..
    } in &view.artifacts
    {
        table.row(vec![
            sha256.clone(),
            or_dash(name).to_string(),
            bytes.to_string(),
            uploaded.clone(),
            or_dash(uploaded_by).to_string(),
        ]);
    }
    print!("{}", table.render());
    Ok(())
}

fn delete(sha256: &str, target: &Target) -> anyhow::Result<()> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "{sha256:?} is not a sha256 (64 hex digits, as `kindling artifact list` shows)"
            ),
        )
        .into());
    }
    let session = Session::open(target)?;
    let reply: ArtifactDeleted = session.delete_as(&format!(
        "/v1/artifacts/sha256/{}",
        sha256.to_ascii_lowercase()
    ))?;
    let d = &reply.deleted;
    println!(
        "deleted sha256 {} ({}, {} bytes); nodes can no longer fetch it",
        d.sha256,
        or_dash(&d.name),
        d.bytes
    );
    Ok(())
}
