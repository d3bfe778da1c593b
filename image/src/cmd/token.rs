//! `kindling token new --name NAME --role admin|read`: mints an operator
//! token for the control API. The token goes to stdout, once; the
//! `[[api.operators]]` entry with its SHA-256 (what the signed site overlay
//! lists) goes to stderr. Refuses to write the token into a file others can
//! read: redirect into a 0600 file (`umask 077`) or use a terminal.

use anyhow::bail;
use kindling_api::auth::Token;
use kindling_site::OperatorRole;
use rand::RngCore;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Mint a token; print it once, and the site.toml entry with its hash.
    #[command(
        after_help = "Example:\n  (umask 077; kindling token new --name alice --role admin > ~/alice.token)"
    )]
    New {
        /// The operator's name in the site config, logs and `whoami`.
        #[arg(long)]
        name: String,
        /// `admin` (change the appliance) or `read` (look only).
        #[arg(long, value_parser = parse_role)]
        role: OperatorRole,
    },
}

fn parse_role(s: &str) -> Result<OperatorRole, String> {
    s.parse()
}

pub fn run(command: Command) -> anyhow::Result<()> {
    let Command::New { name, role } = command;
    if !kindling_site::operator::is_operator_name(&name) {
        bail!("{name:?} is not an operator name: 1-64 characters of a-z, 0-9, '.', '_', '-'");
    }
    refuse_shared_stdout()?;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = Token::from_random(bytes);
    eprintln!(
        "kindling: a new API token for {name:?} ({role}), shown this once on stdout: keep it \
         (`kindling login` stores it 0600). Add to the site overlay's site.toml, sign and push:\n"
    );
    eprintln!("{}", operator_entry(&name, role, &token));
    println!("{}", token.expose());
    Ok(())
}

/// The `[[api.operators]]` entry for `token`.
fn operator_entry(name: &str, role: OperatorRole, token: &Token) -> String {
    format!(
        "[[api.operators]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n",
        token.sha256()
    )
}

/// Stdout redirected into a regular file that group or others may read
/// would leave the token there: refused before one is minted.
fn refuse_shared_stdout() -> anyhow::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Ok(meta) = std::fs::metadata("/proc/self/fd/1") else {
        return Ok(());
    };
    if meta.is_file() && meta.mode() & 0o077 != 0 {
        bail!(
            "stdout is a file readable by others (mode {:o}): the token must not land there; \
             use (umask 077; kindling token new … > FILE) or a terminal",
            meta.permissions().mode() & 0o777
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_entry_is_valid_site_config_and_lists_the_digest() {
        let token = Token::from_random([5; 32]);
        let entry = operator_entry("alice", OperatorRole::Admin, &token);
        let site: kindling_site::SiteConfig =
            toml::from_str(&format!("[site]\nid = \"x\"\n\n{entry}")).unwrap();
        let op = &site.api.operators[0];
        assert_eq!((op.name.as_str(), op.role), ("alice", OperatorRole::Admin));
        assert_eq!(op.token_sha256, token.sha256());
        assert!(
            !entry.contains(token.expose()),
            "the entry never holds the token"
        );
    }
}
