//! `kindling vault …`: the operator's side of the appliance's Vault.
//! - `unseal [--appliance ADDR]`: submits unseal key shares (from stdin, one per
//!   line, or prompted without echo) through `POST /v1/vault/unseal`.
//! - `init-secrets [--appliance ADDR] --out FILE`: downloads the init secrets,
//!   still encrypted to the site's age recipients.
//! - `decrypt-init --identity FILE [--in FILE]`: decrypts them on the
//!   operator's machine with the age identity (`AGE-SECRET-KEY-1…`).
//!
//! Must never print a key share it submits; only `decrypt-init`, asked
//! explicitly, prints secrets (to stdout, for the operator to store away).

use super::client::{Session, Target};
use anyhow::{bail, Context};
use kindling_api::vault::{InitSecrets, UnsealProgress, UnsealRequest};
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::str::FromStr;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Submit unseal key shares until Vault is unsealed.
    #[command(after_help = "Example:\n  kindling vault unseal --context lab")]
    Unseal {
        #[command(flatten)]
        target: Target,
    },
    /// Download the age-encrypted unseal keys and root token.
    #[command(after_help = "Example:\n  kindling vault init-secrets --out vault-init.age")]
    InitSecrets {
        #[command(flatten)]
        target: Target,
        /// Where to write the armored age file (mode 0600).
        #[arg(long)]
        out: PathBuf,
    },
    /// Decrypt downloaded init secrets with the operator's age identity.
    #[command(
        after_help = "Example:\n  kindling vault decrypt-init --identity ~/.age/key.txt --in vault-init.age"
    )]
    DecryptInit {
        /// File holding the `AGE-SECRET-KEY-1…` identity.
        #[arg(long)]
        identity: PathBuf,
        /// The armored age file (default: stdin).
        #[arg(long = "in")]
        input: Option<PathBuf>,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Unseal { target } => unseal(&target),
        Command::InitSecrets { target, out } => init_secrets(&target, &out),
        Command::DecryptInit { identity, input } => decrypt_init(&identity, input.as_ref()),
    }
}

fn unseal(target: &Target) -> anyhow::Result<()> {
    let session = Session::open(target)?;
    let interactive = std::io::stdin().is_terminal();
    let mut lines = std::io::stdin().lock().lines();
    let mut n = 0;
    loop {
        let share = if interactive {
            rpassword::prompt_password(format!("unseal key share {} (hidden): ", n + 1))
                .context("reading a key share")?
        } else {
            match lines.next() {
                Some(line) => line.context("reading key shares from stdin")?,
                None => bail!("stdin ended after {n} share(s) and Vault is still sealed"),
            }
        };
        let share = share.trim().to_string();
        if share.is_empty() {
            continue;
        }
        n += 1;
        let reply: UnsealProgress = session
            .post_as("/v1/vault/unseal", &UnsealRequest { key: share })
            .with_context(|| format!("share {n}"))?;
        if !reply.sealed {
            println!("vault: unsealed after {n} share(s)");
            return Ok(());
        }
        println!(
            "vault: sealed, {} of {} shares accepted",
            reply.progress, reply.threshold
        );
    }
}

fn init_secrets(target: &Target, out: &PathBuf) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let body: InitSecrets = Session::open(target)?.get_as("/v1/vault/init-secrets")?;
    let armored = body.ciphertext;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out)
        .with_context(|| format!("creating {} (it must not exist yet)", out.display()))?;
    f.write_all(armored.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    println!(
        "wrote {} (encrypted to the site's age recipients)",
        out.display()
    );
    Ok(())
}

fn decrypt_init(identity_file: &PathBuf, input: Option<&PathBuf>) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(identity_file)
        .with_context(|| format!("reading {}", identity_file.display()))?;
    let mut armored = Vec::new();
    match input {
        Some(p) => {
            armored = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?
        }
        None => {
            std::io::stdin()
                .read_to_end(&mut armored)
                .context("reading stdin")?;
        }
    }
    let secrets = decrypt_with(&text, &armored)
        .with_context(|| format!("with the identity in {}", identity_file.display()))?;
    eprintln!("kindling: printing Vault's unseal keys and root token; store them offline");
    println!("{}", serde_json::to_string_pretty(&secrets)?);
    Ok(())
}

/// Decrypts armored init secrets with the identity file's text (age identity
/// files may carry comment lines).
fn decrypt_with(identity_text: &str, armored: &[u8]) -> anyhow::Result<serde_json::Value> {
    let key = identity_text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .context("no AGE-SECRET-KEY-1… line")?;
    let identity = age::x25519::Identity::from_str(key).map_err(|e| anyhow::anyhow!("{e}"))?;
    let plain = age::decrypt(&identity, armored)
        .map_err(|e| anyhow::anyhow!("decrypting the init secrets: {e}"))?;
    serde_json::from_slice(&plain).context("the decrypted file is not kindling's init secrets")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use age::secrecy::ExposeSecret;

    #[test]
    fn decrypts_with_the_right_identity_only() {
        let id = age::x25519::Identity::generate();
        let armored = age::encrypt_and_armor(
            &id.to_public(),
            br#"{"root_token":"s.x","keys_base64":["k"]}"#,
        )
        .unwrap();
        let file = format!(
            "# created: today\n# public key: {}\n{}\n",
            id.to_public(),
            id.to_string().expose_secret()
        );
        let v = decrypt_with(&file, armored.as_bytes()).unwrap();
        assert_eq!(v["root_token"], "s.x");
        let other = age::x25519::Identity::generate();
        let err = decrypt_with(other.to_string().expose_secret(), armored.as_bytes()).unwrap_err();
        assert!(
            err.to_string().starts_with("decrypting the init secrets"),
            "{err}"
        );
        assert!(decrypt_with("nothing here", armored.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("no AGE-SECRET-KEY-1"));
    }
}
