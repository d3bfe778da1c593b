//! `kindling context list|use|remove`: the named contexts of the CLI config
//! (`config`), each one appliance with its pinned CA and token. `kindling
//! login --context NAME` adds or refreshes one; tokens are never printed.

use super::config::{self, CliConfig};
use super::exit::{Exit, Failure};
use super::table::{cell, Table};
use serde::Serialize;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List the contexts: name, address, pinned CA, whether a token is saved.
    #[command(after_help = "Example:\n  kindling context list --json")]
    List {
        /// JSON instead of a table (tokens are never shown).
        #[arg(long)]
        json: bool,
    },
    /// Make NAME the context commands use when none is named.
    #[command(after_help = "Example:\n  kindling context use prod")]
    Use { name: String },
    /// Forget NAME, its pinned CA and its token.
    #[command(after_help = "Example:\n  kindling context remove old-lab")]
    Remove { name: String },
}

/// What `list --json` shows of one context.
#[derive(Serialize)]
struct Listed<'a> {
    name: &'a str,
    current: bool,
    appliance: &'a str,
    server_name: Option<&'a str>,
    ca_fingerprint: Option<String>,
    token_saved: bool,
}

/// The pinned CA's fingerprint: of the saved certificate when there is
/// one (what is really trusted), else the saved fingerprint.
fn pinned(c: &config::ApplianceContext) -> Option<String> {
    use kindling_api_client::{Fingerprint, TrustAnchor};
    match c.ca_pem.as_deref().map(TrustAnchor::from_pem) {
        Some(Ok(TrustAnchor::Ca(der))) => Some(Fingerprint::of_der(&der).to_string()),
        Some(_) => Some("unreadable ca_pem".into()),
        None => c.ca_fingerprint.clone(),
    }
}

fn missing(name: &str, path: &std::path::Path) -> anyhow::Error {
    Failure::new(
        Exit::NotFound,
        format!(
            "no context {name:?} in {} (kindling context list)",
            path.display()
        ),
    )
    .into()
}

pub fn run(command: Command) -> anyhow::Result<()> {
    let path = config::path()?;
    let mut file = CliConfig::load(&path)?;
    match command {
        Command::List { json } => {
            let listed: Vec<Listed> = file
                .contexts
                .iter()
                .map(|(name, c)| Listed {
                    name,
                    current: file.current.as_deref() == Some(name.as_str()),
                    appliance: &c.appliance,
                    server_name: c.server_name.as_deref(),
                    ca_fingerprint: pinned(c),
                    token_saved: c.token.is_some(),
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
                return Ok(());
            }
            let mut table = Table::new(&["CURRENT", "NAME", "APPLIANCE", "CA", "TOKEN"]);
            for l in &listed {
                table.row(vec![
                    if l.current { "*" } else { "" }.into(),
                    l.name.into(),
                    l.appliance.into(),
                    cell(l.ca_fingerprint.as_deref()),
                    if l.token_saved { "saved" } else { "-" }.into(),
                ]);
            }
            print!("{}", table.render());
            if table.is_empty() {
                eprintln!("no contexts in {}: kindling login", path.display());
            }
            Ok(())
        }
        Command::Use { name } => {
            if !file.contexts.contains_key(&name) {
                return Err(missing(&name, &path));
            }
            file.current = Some(name.clone());
            file.save(&path)?;
            println!("using context {name:?}");
            Ok(())
        }
        Command::Remove { name } => {
            if file.contexts.remove(&name).is_none() {
                return Err(missing(&name, &path));
            }
            if file.current.as_deref() == Some(name.as_str()) {
                file.current = None;
            }
            file.save(&path)?;
            println!(
                "context {name:?} and its token removed from {}",
                path.display()
            );
            Ok(())
        }
    }
}
