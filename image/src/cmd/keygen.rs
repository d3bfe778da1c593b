//! `kindling keygen`: an Ed25519 key pair in minisign's formats
//! (`kindling.pub`, `kindling.key`). The secret key is password-protected with
//! scrypt like `minisign -G` unless `--unencrypted` (labs, CI).

use anyhow::{bail, Context};
use kindling_overlay::minisign::{SecretKey, DEFAULT_MEMLIMIT, DEFAULT_OPSLIMIT};
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct Args {
    /// Directory to write kindling.pub and kindling.key into.
    #[arg(long)]
    pub out: PathBuf,
    /// Write the secret key without a password (like `minisign -G -W`).
    #[arg(long)]
    pub unencrypted: bool,
    /// Read the new password from this file (first line) instead of prompting.
    #[arg(long, conflicts_with = "unencrypted")]
    pub password_file: Option<PathBuf>,
    /// Replace an existing key pair.
    #[arg(long)]
    pub force: bool,
    /// scrypt opslimit stored in the key (minisign's default unless testing).
    #[arg(long, hide = true, default_value_t = DEFAULT_OPSLIMIT)]
    pub kdf_opslimit: u64,
    /// scrypt memlimit stored in the key (minisign's default: 1 GiB).
    #[arg(long, hide = true, default_value_t = DEFAULT_MEMLIMIT)]
    pub kdf_memlimit: u64,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let pub_path = args.out.join("kindling.pub");
    let key_path = args.out.join("kindling.key");
    if !args.force && (pub_path.exists() || key_path.exists()) {
        bail!(
            "{} already holds a key pair (use --force to replace it)",
            args.out.display()
        );
    }
    let password = if args.unencrypted {
        None
    } else {
        Some(new_password(args.password_file.as_deref())?)
    };
    let key = SecretKey::generate();
    let secret_text =
        key.to_file_text(password.as_deref(), args.kdf_opslimit, args.kdf_memlimit)?;
    write_private(&key_path, secret_text.as_bytes())?;
    std::fs::write(&pub_path, key.public_key().to_file_text())
        .with_context(|| format!("writing {}", pub_path.display()))?;
    println!("key id {}", key.id);
    println!("public key: {}", pub_path.display());
    println!(
        "secret key: {}{}",
        key_path.display(),
        if password.is_none() {
            " (unencrypted)"
        } else {
            ""
        }
    );
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(data)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// A password for a new key: from a file, a terminal prompt (asked twice), or
/// one line of stdin when it is not a terminal (scripts, like minisign).
fn new_password(file: Option<&Path>) -> anyhow::Result<String> {
    let pw = if let Some(f) = file {
        read_password_file(f)?
    } else if std::io::stdin().is_terminal() {
        let a = rpassword::prompt_password("Password for the new secret key: ")?;
        let b = rpassword::prompt_password("Password (again): ")?;
        if a != b {
            bail!("the passwords differ");
        }
        a
    } else {
        read_stdin_line()?
    };
    if pw.is_empty() {
        bail!("empty password: use --unencrypted for a key without one");
    }
    Ok(pw)
}

pub fn read_password_file(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}

pub fn read_stdin_line() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Loads a secret key, asking for its password only when it is encrypted.
pub fn load_secret_key(path: &Path, password_file: Option<&Path>) -> anyhow::Result<SecretKey> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let password =
        if SecretKey::file_is_encrypted(&text).with_context(|| path.display().to_string())? {
            Some(if let Some(f) = password_file {
                read_password_file(f)?
            } else if std::io::stdin().is_terminal() {
                rpassword::prompt_password(format!("Password for {}: ", path.display()))?
            } else {
                read_stdin_line()?
            })
        } else {
            None
        };
    SecretKey::from_file_text(&text, password.as_deref())
        .with_context(|| path.display().to_string())
}
