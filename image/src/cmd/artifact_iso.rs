//! `kindling artifact import-iso ISO`: finds the boot files of a Debian or
//! Ubuntu installer ISO, pushes each through the one push path of
//! `artifact push`, and prints them with a profile `[boot]` section.
//!
//! The layouts recognised (paths inside the ISO, Rock Ridge names):
//!
//! | layout                         | kernel               | initrd                  | also                  |
//! |--------------------------------|----------------------|-------------------------|-----------------------|
//! | Debian installer (netinst, DVD)| `/install.amd/vmlinuz` | `/install.amd/initrd.gz` |                     |
//! | Ubuntu live server (subiquity) | `/casper/vmlinuz`    | `/casper/initrd`        | every `/casper/*.squashfs` |
//! | Debian netboot `mini.iso`      | `/linux`             | `/initrd.gz`            |                       |
//!
//! checked in that order (`/install.amd/gtk/`, the graphical installer, is
//! not taken). Anything else is refused naming the ISO and what was looked
//! for. Each file is pushed as `PREFIX-BASENAME` (the store takes a file
//! name, not a path; PREFIX defaults to the ISO's name without `.iso`).
//!
//! Reading the ISO: with `xorriso`, run here on the operator's machine
//! (the appliance never runs it). The Rust ISO 9660 crates were weighed and
//! not taken: `cdfs` pulls a FUSE binary's dependencies (fuser, clap,
//! simple_logger) into every user, `iso9660` calls itself incomplete and
//! is unmaintained, `hadris-iso`'s current line is a release candidate.
//! xorriso is what the image builder already needs (grub-mkrescue), reads
//! Rock Ridge and Joliet names as the ISOs' makers wrote them, and
//! extracts one file at a time to a temporary directory: a multi-GB
//! squashfs is never held in memory, the disk holds one file at a time,
//! and the push hashes it before it streams it.

use super::artifact_push::{push_file, Pushed};
use super::client::{Session, Target};
use super::exit::{Exit, Failure};
use super::table::Table;
use anyhow::Context;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

const XORRISO: &str = "xorriso";

/// Which installer an ISO is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    DebianInstaller,
    UbuntuLive,
    DebianMini,
}

impl Layout {
    fn describe(self) -> &'static str {
        match self {
            Layout::DebianInstaller => "Debian installer",
            Layout::UbuntuLive => "Ubuntu live server",
            Layout::DebianMini => "Debian netboot mini.iso",
        }
    }
}

/// What was found in an ISO: its layout and the paths to push.
#[derive(Debug, PartialEq)]
struct Found {
    layout: Layout,
    kernel: String,
    initrd: String,
    /// Ubuntu's squashfs layers, sorted.
    squashfs: Vec<String>,
}

impl Found {
    fn paths(&self) -> impl Iterator<Item = &str> {
        [self.kernel.as_str(), self.initrd.as_str()]
            .into_iter()
            .chain(self.squashfs.iter().map(String::as_str))
    }
}

/// Picks the layout from the ISO's file paths (`/dir/file`).
fn recognise(iso: &Path, files: &BTreeSet<String>) -> anyhow::Result<Found> {
    // xorriso reads a file without an ISO 9660 volume as an empty one.
    if files.is_empty() {
        anyhow::bail!(
            "{}: no file in it: not an ISO 9660 image (or an empty one)",
            iso.display()
        );
    }
    let both = |kernel: &str, initrd: &str| files.contains(kernel) && files.contains(initrd);
    let found = |layout, kernel: &str, initrd: &str, squashfs| Found {
        layout,
        kernel: kernel.to_string(),
        initrd: initrd.to_string(),
        squashfs,
    };
    if both("/install.amd/vmlinuz", "/install.amd/initrd.gz") {
        return Ok(found(
            Layout::DebianInstaller,
            "/install.amd/vmlinuz",
            "/install.amd/initrd.gz",
            Vec::new(),
        ));
    }
    if both("/casper/vmlinuz", "/casper/initrd") {
        let squashfs = files
            .iter()
            .filter(|f| {
                f.strip_prefix("/casper/")
                    .is_some_and(|name| !name.contains('/') && name.ends_with(".squashfs"))
            })
            .cloned()
            .collect();
        return Ok(found(
            Layout::UbuntuLive,
            "/casper/vmlinuz",
            "/casper/initrd",
            squashfs,
        ));
    }
    if both("/linux", "/initrd.gz") {
        return Ok(found(
            Layout::DebianMini,
            "/linux",
            "/initrd.gz",
            Vec::new(),
        ));
    }
    let top: BTreeSet<&str> = files
        .iter()
        .filter_map(|f| f.strip_prefix('/'))
        .map(|f| f.split('/').next().unwrap_or(f))
        .collect();
    Err(anyhow::anyhow!(
        "{}: not a Debian or Ubuntu installer ISO: looked for /install.amd/vmlinuz + \
         /install.amd/initrd.gz (Debian installer), /casper/vmlinuz + /casper/initrd \
         (Ubuntu live server) and /linux + /initrd.gz (Debian netboot mini.iso); \
         its top level holds: {}",
        iso.display(),
        top.into_iter().collect::<Vec<_>>().join(" ")
    ))
}

/// Runs xorriso with `args` → its stdout; a failure names the ISO and
/// xorriso's last words.
fn xorriso(iso: &Path, doing: &str, args: &[&std::ffi::OsStr]) -> anyhow::Result<Vec<u8>> {
    let output = Command::new(XORRISO)
        .args(args)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow::anyhow!(
                "{XORRISO} not found: it reads the ISO; install it (Debian/Ubuntu package xorriso)"
            ),
            _ => anyhow::anyhow!("{XORRISO} could not start: {e}"),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last: Vec<&str> = stderr.trim().lines().rev().take(3).collect();
        anyhow::bail!(
            "{}: {doing} failed ({XORRISO} {}): {}",
            iso.display(),
            output.status,
            last.into_iter().rev().collect::<Vec<_>>().join(" / ")
        );
    }
    Ok(output.stdout)
}

/// Undoes xorriso's quoting of a path: `'a'"'"'b'` → `a'b`.
fn unquote(line: &str) -> String {
    let inner = line
        .strip_prefix('\'')
        .and_then(|l| l.strip_suffix('\''))
        .unwrap_or(line);
    inner.replace("'\"'\"'", "'")
}

/// Every regular file's path in the ISO.
fn list_files(iso: &Path) -> anyhow::Result<BTreeSet<String>> {
    let out = xorriso(
        iso,
        "listing its files",
        &[
            "-abort_on".as_ref(),
            "FAILURE".as_ref(),
            "-indev".as_ref(),
            iso.as_os_str(),
            "-find".as_ref(),
            "/".as_ref(),
            "-type".as_ref(),
            "f".as_ref(),
        ],
    )?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| l.starts_with("'/"))
        .map(unquote)
        .collect())
}

/// Copies the file at `path` in the ISO to `dest`.
fn extract(iso: &Path, path: &str, dest: &Path) -> anyhow::Result<()> {
    xorriso(
        iso,
        &format!("extracting {path}"),
        &[
            "-osirrox".as_ref(),
            "on".as_ref(),
            "-indev".as_ref(),
            iso.as_os_str(),
            "-extract".as_ref(),
            path.as_ref(),
            dest.as_os_str(),
        ],
    )?;
    Ok(())
}

/// The name a file of the ISO is pushed under.
fn pushed_name(prefix: &str, path: &str) -> String {
    format!("{prefix}-{}", path.rsplit('/').next().unwrap_or(path))
}

/// The prefix: given, or the ISO's file name without `.iso`; a file name
/// piece (the store takes no path, no control character).
fn prefix_of(iso: &Path, given: Option<String>) -> anyhow::Result<String> {
    let prefix = match given {
        Some(p) => p,
        None => iso
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .with_context(|| format!("{}: not a file name", iso.display()))?,
    };
    if prefix.is_empty() || prefix.contains('/') || prefix.chars().any(char::is_control) {
        return Err(Failure::new(
            Exit::Usage,
            format!(
                "--prefix {prefix:?}: a file name piece (not empty, no '/', no control character)"
            ),
        )
        .into());
    }
    Ok(prefix)
}

/// The `[boot]` section that boots what was pushed, as a profile names
/// pushed artifacts: `sha256/HEX` (served at `/artifacts/sha256/HEX`).
fn profile_snippet(layout: Layout, kernel: &str, initrd: &str, iso: Option<&str>) -> String {
    match layout {
        Layout::DebianInstaller | Layout::DebianMini => format!(
            "[boot]\nkind = \"debian-installer\"\nkernel = \"sha256/{kernel}\"\ninitrd = \"sha256/{initrd}\"\n"
        ),
        Layout::UbuntuLive => {
            let iso = match iso {
                Some(hex) => format!("iso = \"sha256/{hex}\"\n"),
                None => "# casper downloads the whole live ISO: push it (--with-iso) and name it here\n\
                         iso = \"sha256/HEX-OF-THE-ISO\"\n"
                    .to_string(),
            };
            format!(
                "[boot]\nkind = \"ubuntu-autoinstall\"\nkernel = \"sha256/{kernel}\"\ninitrd = \"sha256/{initrd}\"\n{iso}"
            )
        }
    }
}

pub fn import(
    iso: &Path,
    prefix: Option<String>,
    with_iso: bool,
    target: &Target,
) -> anyhow::Result<()> {
    if !iso.is_file() {
        return Err(Failure::new(Exit::Usage, format!("{}: no such file", iso.display())).into());
    }
    let prefix = prefix_of(iso, prefix)?;
    let found = recognise(iso, &list_files(iso)?)?;
    println!("{}: {}", iso.display(), found.layout.describe());
    let session = Session::open(target)?;
    let scratch = tempfile::tempdir().context("creating a temporary directory")?;
    let mut pushed: Vec<(String, Pushed)> = Vec::new();
    for path in found.paths() {
        let name = pushed_name(&prefix, path);
        let file: PathBuf = scratch.path().join(&name);
        extract(iso, path, &file)?;
        let result = push_file(&session, &file, &name);
        // One file on disk at a time: a squashfs can be GBs.
        let _ = std::fs::remove_file(&file);
        pushed.push((path.to_string(), result?));
    }
    if with_iso {
        let name = iso
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| format!("{prefix}.iso"));
        pushed.push(("(the ISO)".to_string(), push_file(&session, iso, &name)?));
    }

    let mut table = Table::new(&["NAME", "BYTES", "SHA256", "FROM", "STORED"]);
    for (path, p) in &pushed {
        let a = &p.reply.artifact;
        table.row(vec![
            a.name.clone(),
            a.bytes.to_string(),
            a.sha256.clone(),
            path.clone(),
            if p.reply.created { "new" } else { "already" }.to_string(),
        ]);
    }
    print!("{}", table.render());
    let hex = |i: usize| pushed.get(i).map(|(_, p)| p.reply.artifact.sha256.as_str());
    let (Some(kernel), Some(initrd)) = (hex(0), hex(1)) else {
        anyhow::bail!("{}: kernel and initrd were not pushed", iso.display());
    };
    let iso_hex = with_iso.then(|| hex(pushed.len() - 1)).flatten();
    println!(
        "\nA profile that boots them (profiles/NAME.toml):\n\n{}",
        profile_snippet(found.layout, kernel, initrd, iso_hex)
    );
    if !found.squashfs.is_empty() {
        println!(
            "The squashfs layers are served at http://LAN-ADDRESS/by-hash/sha256/HEX for a profile \
             whose cmdline fetches them."
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn set(paths: &[&str]) -> BTreeSet<String> {
        paths.iter().map(|p| p.to_string()).collect()
    }

    /// Builds an ISO (Rock Ridge + Joliet, as the installers are) holding
    /// `files` with tiny contents; None when xorriso is missing.
    fn build_iso(dir: &Path, files: &[&str]) -> Option<PathBuf> {
        if Command::new(XORRISO).arg("-version").output().is_err() {
            eprintln!("skipped: {XORRISO} is not installed (tests/install-deps installs it)");
            return None;
        }
        let root = dir.join("tree");
        for f in files {
            let path = root.join(f.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("contents of {f}")).unwrap();
        }
        std::fs::create_dir_all(&root).unwrap();
        let iso = dir.join("test-installer.iso");
        let out = Command::new(XORRISO)
            .args(["-as", "mkisofs", "-r", "-J", "-V", "TEST", "-o"])
            .arg(&iso)
            .arg(&root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        Some(iso)
    }

    fn found_in(files: &[&str]) -> Option<anyhow::Result<Found>> {
        let dir = tempfile::tempdir().unwrap();
        let iso = build_iso(dir.path(), files)?;
        Some(list_files(&iso).and_then(|listed| recognise(&iso, &listed)))
    }

    #[test]
    fn a_debian_installer_iso_gives_its_text_installer() {
        let Some(found) = found_in(&[
            "/install.amd/vmlinuz",
            "/install.amd/initrd.gz",
            "/install.amd/gtk/vmlinuz",
            "/install.amd/gtk/initrd.gz",
            "/isolinux/isolinux.cfg",
            "/pool/main/x/x.deb",
        ]) else {
            return;
        };
        let found = found.unwrap();
        assert_eq!(found.layout, Layout::DebianInstaller);
        assert_eq!(
            found.paths().collect::<Vec<_>>(),
            ["/install.amd/vmlinuz", "/install.amd/initrd.gz"]
        );
    }

    #[test]
    fn an_ubuntu_live_server_iso_gives_kernel_initrd_and_every_squashfs() {
        let Some(found) = found_in(&[
            "/casper/vmlinuz",
            "/casper/initrd",
            "/casper/ubuntu-server-minimal.squashfs",
            "/casper/ubuntu-server-minimal.ubuntu-server.squashfs",
            "/casper/ubuntu-server-minimal.squashfs.gpg",
            "/casper/ubuntu-server-minimal.manifest",
            "/casper/extras/other.squashfs",
            "/boot/grub/grub.cfg",
        ]) else {
            return;
        };
        let found = found.unwrap();
        assert_eq!(found.layout, Layout::UbuntuLive);
        assert_eq!(
            found.paths().collect::<Vec<_>>(),
            [
                "/casper/vmlinuz",
                "/casper/initrd",
                "/casper/ubuntu-server-minimal.squashfs",
                "/casper/ubuntu-server-minimal.ubuntu-server.squashfs",
            ]
        );
    }

    #[test]
    fn a_debian_mini_iso_gives_linux_and_initrd() {
        let Some(found) = found_in(&["/linux", "/initrd.gz", "/boot/grub/grub.cfg"]) else {
            return;
        };
        let found = found.unwrap();
        assert_eq!(found.layout, Layout::DebianMini);
        assert_eq!(found.paths().collect::<Vec<_>>(), ["/linux", "/initrd.gz"]);
    }

    #[test]
    fn an_iso_of_neither_layout_is_refused_saying_what_was_looked_for() {
        // A kernel without its initrd is no layout either.
        let Some(found) = found_in(&["/install.amd/vmlinuz", "/docs/README.txt"]) else {
            return;
        };
        let err = found.unwrap_err().to_string();
        assert!(
            err.contains("test-installer.iso: not a Debian or Ubuntu installer ISO"),
            "{err}"
        );
        assert!(
            err.contains("/install.amd/initrd.gz") && err.contains("/casper/initrd"),
            "{err}"
        );
        assert!(err.contains("holds: docs install.amd"), "{err}");
    }

    #[test]
    fn a_file_that_is_no_iso_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        if build_iso(dir.path(), &["/x"]).is_none() {
            return;
        }
        let fake = dir.path().join("fake.iso");
        std::fs::write(&fake, vec![0x55u8; 100_000]).unwrap();
        let err = list_files(&fake)
            .and_then(|listed| recognise(&fake, &listed))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fake.iso: no file in it: not an ISO 9660"),
            "{err}"
        );
    }

    #[test]
    fn extraction_copies_the_file_as_it_is_in_the_iso() {
        let dir = tempfile::tempdir().unwrap();
        let Some(iso) = build_iso(dir.path(), &["/casper/vmlinuz", "/casper/initrd"]) else {
            return;
        };
        let dest = dir.path().join("out");
        extract(&iso, "/casper/initrd", &dest).unwrap();
        assert_eq!(
            std::fs::read_to_string(&dest).unwrap(),
            "contents of /casper/initrd"
        );
        let err = extract(&iso, "/casper/absent", &dir.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("extracting /casper/absent"), "{err}");
    }

    /// Debian's own netboot mini.iso, when its package is installed.
    #[test]
    fn the_real_debian_mini_iso_is_recognised() {
        let iso = Path::new("/usr/lib/debian-installer/images/12/amd64/text/mini.iso");
        if !iso.is_file() {
            eprintln!(
                "skipped: {} is absent (package debian-installer-12-netboot-amd64)",
                iso.display()
            );
            return;
        }
        if Command::new(XORRISO).arg("-version").output().is_err() {
            eprintln!("skipped: {XORRISO} is not installed");
            return;
        }
        let found = recognise(iso, &list_files(iso).unwrap()).unwrap();
        assert_eq!(found.layout, Layout::DebianMini);
    }

    #[test]
    fn names_and_quoting() {
        assert_eq!(unquote("'/boot/it'\"'\"'s x'"), "/boot/it's x");
        assert_eq!(
            pushed_name("debian-12-netinst", "/install.amd/initrd.gz"),
            "debian-12-netinst-initrd.gz"
        );
        assert_eq!(
            prefix_of(Path::new("/x/ubuntu-24.04-live-server-amd64.iso"), None).unwrap(),
            "ubuntu-24.04-live-server-amd64"
        );
        assert!(prefix_of(Path::new("a.iso"), Some("a/b".into())).is_err());
        assert!(prefix_of(Path::new("a.iso"), Some(String::new())).is_err());
        let listed = set(&["/linux", "/initrd.gz"]);
        assert!(recognise(Path::new("m.iso"), &listed).is_ok());
    }
}
