//! `kindling login | logout | whoami`: pinning an appliance's CA on first
//! use and keeping the operator's token for it in the CLI config.
//!
//! Login shows the CA fingerprint the appliance presents and trusts it only
//! when the operator confirms it matches the console line (`api: CA
//! sha256:…`) or passes the same value with `--fingerprint`; then it proves
//! the token with `GET /v1/whoami` over a fully verified connection and
//! saves the CA certificate, so later commands trust that CA alone. The
//! token is read from `$KINDLING_TOKEN`, stdin or a hidden prompt, never
//! from the command line.

use super::client::{Session, Target};
use super::config::{self, ApplianceContext, CliConfig};
use anyhow::{bail, Context as _};
use kindling_api::auth::WhoAmI;
use kindling_api_client::{presented_chain, ApiClient, Fingerprint, Token, TrustAnchor};
use std::io::{BufRead, IsTerminal, Write};
use std::time::Duration;

#[derive(clap::Args)]
pub struct LoginArgs {
    #[command(flatten)]
    pub target: Target,
    /// The name the API's certificate carries, when ADDR is one it does not
    /// list (a DHCP uplink address): the site's HOSTNAME.DOMAIN.
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// The CA fingerprint the appliance prints on its console (`api: CA
    /// sha256:…`). Without it the fingerprint is shown and you are asked.
    #[arg(long, value_name = "sha256:HEX")]
    pub fingerprint: Option<String>,
}

#[derive(clap::Args)]
pub struct LogoutArgs {
    /// The context to forget (default: the current one).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

fn pem_of(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The operator's token: `$KINDLING_TOKEN`, else a hidden prompt on a
/// terminal, else the first line of stdin.
fn read_token() -> anyhow::Result<Token> {
    if let Ok(t) = std::env::var("KINDLING_TOKEN") {
        return Token::parse(&t).context("KINDLING_TOKEN");
    }
    let text = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("operator token (hidden): ").context("reading the token")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the token from stdin")?;
        line
    };
    Token::parse(&text).context("the operator token")
}

/// Asks whether the operator trusts `fp`; only on a terminal.
fn confirm(fp: &Fingerprint) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "not a terminal, so nobody can compare the fingerprint: pass \
             --fingerprint {fp} if it is the one on the appliance's console"
        );
    }
    eprint!(
        "Compare it with the appliance's console line `api: CA sha256:…`.\n\
         Trust this CA for this appliance? [y/N] "
    );
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub fn login(args: LoginArgs) -> anyhow::Result<()> {
    let path = config::path()?;
    let mut file = CliConfig::load(&path)?;
    let existing = file.context(args.target.context.as_deref()).ok().flatten();
    let name = args
        .target
        .context
        .clone()
        .or_else(|| existing.map(|(n, _)| n.to_string()))
        .unwrap_or_else(|| "default".into());
    let mut endpoint =
        config::endpoint(args.target.appliance.as_deref(), existing.map(|(_, c)| c))?;
    if let Some(server_name) = &args.server_name {
        endpoint = endpoint.with_server_name(server_name)?;
    }

    // 1. What the appliance presents; nothing is trusted or sent yet.
    let chain = presented_chain(&endpoint, None, Duration::from_secs(15))?;
    let offered: Vec<Fingerprint> = chain
        .iter()
        .skip(1)
        .map(|c| Fingerprint::of_der(c))
        .collect();
    if offered.is_empty() {
        bail!("{endpoint} presented no CA certificate: not a kindling appliance?");
    }
    for fp in &offered {
        eprintln!("{endpoint} presents the CA {fp}");
    }
    let pinned = match &args.fingerprint {
        Some(given) => {
            let given: Fingerprint = given.parse()?;
            if !offered.contains(&given) {
                bail!(
                    "{endpoint} does not present the CA {given}: do not trust it \
                     (another machine may answer at this address)"
                );
            }
            given
        }
        None => {
            let fp = offered[0];
            if !confirm(&fp)? {
                bail!("not trusted; nothing saved");
            }
            fp
        }
    };

    // 2. The token, proven over a verified connection.
    let token = read_token()?;
    let client = ApiClient::new(
        endpoint.clone(),
        TrustAnchor::Fingerprint(pinned),
        Some(token.clone()),
    )?;
    let reply = client.request("GET", "/v1/whoami", None)?;
    if reply.status != 200 {
        bail!(
            "{endpoint}: {}: the appliance refused the token: {}",
            reply.status,
            String::from_utf8_lossy(&reply.body).trim()
        );
    }
    let me: WhoAmI = serde_json::from_slice(&reply.body).context("GET /v1/whoami")?;
    let ca = client
        .matched_ca()
        .context("the verified connection did not record its CA")?;

    // 3. Saved: later commands trust this CA alone.
    file.contexts.insert(
        name.clone(),
        ApplianceContext {
            appliance: endpoint.dial_address(),
            server_name: args
                .server_name
                .clone()
                .or_else(|| existing.and_then(|(_, c)| c.server_name.clone())),
            ca_fingerprint: Some(pinned.to_string()),
            ca_pem: Some(pem_of(&ca)),
            token: Some(token.expose().to_string()),
        },
    );
    file.current = Some(name.clone());
    file.save(&path)?;
    println!(
        "logged in to {endpoint} as {} ({}); context {name:?} saved in {}",
        me.name,
        me.role,
        path.display()
    );
    Ok(())
}

pub fn logout(args: LogoutArgs) -> anyhow::Result<()> {
    let path = config::path()?;
    let mut file = CliConfig::load(&path)?;
    let Some((name, _)) = file.context(args.context.as_deref())? else {
        bail!("no context to log out of in {}", path.display());
    };
    let name = name.to_string();
    file.contexts.remove(&name);
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

pub fn whoami(args: super::status::Args) -> anyhow::Result<()> {
    let me: WhoAmI = Session::open(&args.target)?.get_as("/v1/whoami")?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&me)?);
        return Ok(());
    }
    println!("{} ({})", me.name, me.role);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_wraps_base64_at_64_columns() {
        let pem = pem_of(&[0u8; 100]);
        let lines: Vec<&str> = pem.lines().collect();
        assert_eq!(lines[0], "-----BEGIN CERTIFICATE-----");
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines.last().copied(), Some("-----END CERTIFICATE-----"));
        // What the CLI saves is what it reads back as the pin.
        let der = b"certificate bytes".to_vec();
        assert_eq!(
            TrustAnchor::from_pem(&pem_of(&der)),
            Ok(TrustAnchor::Ca(der.into()))
        );
    }
}
