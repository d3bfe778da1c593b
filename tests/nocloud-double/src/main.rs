//! `kindling-nocloud-double`: stands in for cloud-init on the lab's node
//! payload (a busybox initramfs with no Python), so a lab node's first boot
//! runs the user-data the appliance serves the way a cloud image would.
//!
//! It does what cloud-init's modules do with the keys the appliance renders
//! (`appliance/pxe/src/render/cloud_init.rs`), following cloud-init's
//! documented behaviour for each:
//! - `ssh` (always on in cloud images): an Ed25519 host key pair in
//!   `/etc/ssh` unless one is there;
//! - `write_files`: `path`, `content`, `permissions`, `owner`, `encoding`
//!   (`text/plain`, `b64`, `base64`), `append`, `defer`;
//! - `runcmd` (run by `scripts_user`): one `#!/bin/sh` script, list items
//!   shell-quoted, string items as they are; a failing command does not
//!   stop the ones after it (no `set -e`), and the script's status is the
//!   module's.
//!
//! Keys a busybox node cannot act on (`hostname` is the payload's own job;
//! `packages`, `ssh_authorized_keys` need a package manager and sshd) are
//! named on the console and skipped. Anything else, and any `write_files`
//! field or encoding outside the list, is an error: the double refuses
//! rather than silently doing less than cloud-init would. The documents
//! themselves are checked against real cloud-init's schema by the PXE
//! crate's tests.
//!
//! usage: kindling-nocloud-double USER-DATA [--root DIR]

mod host_key;
mod runcmd;
mod write_files;

use std::path::{Path, PathBuf};
use yaml_rust2::{Yaml, YamlLoader};

/// Keys the double acts on.
const HANDLED: &[&str] = &["write_files", "runcmd"];
/// Keys a busybox node has nothing to do with; named, then skipped.
const SKIPPED: &[&str] = &[
    "hostname",
    "fqdn",
    "prefer_fqdn_over_hostname",
    "packages",
    "ssh_authorized_keys",
];

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (user_data, root) = match args.as_slice() {
        [file] => (PathBuf::from(file), PathBuf::from("/")),
        [file, flag, dir] if flag == "--root" => (PathBuf::from(file), PathBuf::from(dir)),
        _ => {
            eprintln!("usage: kindling-nocloud-double USER-DATA [--root DIR]");
            return std::process::ExitCode::from(2);
        }
    };
    match first_boot(&user_data, &root) {
        Ok(0) => std::process::ExitCode::SUCCESS,
        Ok(status) => {
            say(&format!("runcmd: the script exited with {status}"));
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            say(&format!("error: {e}"));
            std::process::ExitCode::FAILURE
        }
    }
}

fn say(line: &str) {
    println!("nocloud-double: {line}");
}

/// The modules in cloud-init's order: host keys, files, then the script.
/// Returns the runcmd script's exit status.
fn first_boot(user_data: &Path, root: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(user_data)
        .map_err(|e| format!("reading {}: {e}", user_data.display()))?;
    if !text.starts_with("#cloud-config") {
        return Err(format!(
            "{} is not a #cloud-config document",
            user_data.display()
        ));
    }
    let docs = YamlLoader::load_from_str(&text)
        .map_err(|e| format!("{}: not YAML: {e}", user_data.display()))?;
    let config = match docs.as_slice() {
        [doc @ Yaml::Hash(_)] => doc,
        _ => return Err(format!("{}: not one YAML mapping", user_data.display())),
    };
    check_keys(config)?;
    say(&host_key::ensure(root)?);
    for written in write_files::apply(&config["write_files"], root)? {
        say(&format!("write_files: {written}"));
    }
    runcmd::run(&config["runcmd"], root)
}

fn check_keys(config: &Yaml) -> Result<(), String> {
    let Yaml::Hash(map) = config else {
        return Err("user-data is not a mapping".into());
    };
    for key in map.keys() {
        let key = key.as_str().ok_or("a top-level key is not a string")?;
        if SKIPPED.contains(&key) {
            say(&format!("{key}: skipped (the lab node has no use for it)"));
        } else if !HANDLED.contains(&key) {
            return Err(format!(
                "user-data key {key:?} is not one this double implements"
            ));
        }
    }
    Ok(())
}

/// `path` under `root` (`/` stays itself).
fn under(root: &Path, path: &str) -> Result<PathBuf, String> {
    let rel = path
        .strip_prefix('/')
        .ok_or_else(|| format!("{path:?} is not an absolute path"))?;
    if rel.split('/').any(|part| part == "..") {
        return Err(format!("{path:?} leaves the root"));
    }
    Ok(root.join(rel))
}
