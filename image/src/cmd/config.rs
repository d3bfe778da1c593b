//! The CLI's own config file: named contexts, each one appliance with its
//! address, its pinned CA and the operator's token. `$KINDLING_CONFIG`, else
//! `$XDG_CONFIG_HOME/kindling/config.toml`, else
//! `~/.config/kindling/config.toml`; written by `kindling login`, always
//! mode 0600 in a 0700 directory (it holds tokens).
//!
//! ```toml
//! current = "lab"
//! [contexts.lab]
//! appliance = "192.168.100.1:9000"
//! server_name = "kindling-lab.lab.kindling.internal"   # optional
//! ca_fingerprint = "sha256:…"
//! ca_pem = "-----BEGIN CERTIFICATE-----…"
//! token = "kt1_…"
//! ```
//!
//! The environment overrides the file for one command (`KINDLING_CONTEXT`,
//! `KINDLING_APPLIANCE`, `KINDLING_SERVER_NAME`, `KINDLING_CA_FILE`,
//! `KINDLING_CA_FINGERPRINT`, `KINDLING_TOKEN`); an `--appliance` flag
//! overrides the address. A secret is never taken from a command line.

use anyhow::{bail, Context as _};
use kindling_api_client::{Endpoint, Fingerprint, Token, TrustAnchor};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CliConfig {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, ApplianceContext>,
}

/// One appliance as this operator reaches it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplianceContext {
    pub appliance: String,
    /// The name the certificate must carry, when not the address dialled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// The pinned CA's fingerprint (informational when `ca_pem` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_fingerprint: Option<String>,
    /// The pinned CA certificate, saved by `kindling login`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

/// Where the config file is.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("KINDLING_CONFIG") {
        return Ok(PathBuf::from(p));
    }
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("kindling/config.toml"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".config/kindling/config.toml")),
        None => bail!("no config file: set KINDLING_CONFIG, XDG_CONFIG_HOME or HOME"),
    }
}

impl CliConfig {
    /// The file at `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).with_context(|| format!("{}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// The file's text: named contexts, or one appliance's keys at the top
    /// level (a file written by hand for a single appliance), read as the
    /// context "default".
    fn parse(text: &str) -> anyhow::Result<Self> {
        let named = toml::from_str::<Self>(text);
        match named {
            Ok(config) => Ok(config),
            Err(named_error) => match toml::from_str::<ApplianceContext>(text) {
                Ok(single) => Ok(Self {
                    current: Some("default".into()),
                    contexts: BTreeMap::from([("default".into(), single)]),
                }),
                Err(_) => Err(named_error.into()),
            },
        }
    }

    /// Writes the file 0600 (its directory 0700 when created).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = toml::to_string_pretty(self).context("encoding the CLI config")?;
        kindling_atomic_write::write_atomic_with_mode(path, text.as_bytes(), 0o600)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The context to use: `name`, else `$KINDLING_CONTEXT`, else `current`.
    pub fn context(&self, name: Option<&str>) -> anyhow::Result<Option<(&str, &ApplianceContext)>> {
        let env = std::env::var("KINDLING_CONTEXT").ok();
        let wanted = name.or(env.as_deref()).or(self.current.as_deref());
        match wanted {
            None => Ok(None),
            Some(w) => match self.contexts.get_key_value(w) {
                Some((k, c)) => Ok(Some((k.as_str(), c))),
                None => bail!("no context {w:?} in the CLI config (kindling login --context {w})"),
            },
        }
    }
}

/// Everything one command needs to reach an appliance.
pub struct Resolved {
    pub endpoint: Endpoint,
    pub anchor: TrustAnchor,
    pub token: Option<Token>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The address: the flag, else `$KINDLING_APPLIANCE`, else the context's;
/// with the server name from `$KINDLING_SERVER_NAME` or the context.
pub fn endpoint(
    flag: Option<&str>,
    context: Option<&ApplianceContext>,
) -> anyhow::Result<Endpoint> {
    let address = flag
        .map(str::to_string)
        .or_else(|| env("KINDLING_APPLIANCE"))
        .or_else(|| context.map(|c| c.appliance.clone()))
        .context(
            "which appliance? pass --appliance ADDR, set KINDLING_APPLIANCE, or run kindling login",
        )?;
    let mut endpoint = Endpoint::parse(&address)?;
    let name = env("KINDLING_SERVER_NAME").or_else(|| context.and_then(|c| c.server_name.clone()));
    if let Some(name) = name {
        endpoint = endpoint.with_server_name(&name)?;
    }
    Ok(endpoint)
}

/// The pinned CA: `$KINDLING_CA_FILE`, else `$KINDLING_CA_FINGERPRINT`,
/// else the context's certificate, else its fingerprint.
pub fn anchor(context: Option<&ApplianceContext>) -> anyhow::Result<TrustAnchor> {
    if let Some(file) = env("KINDLING_CA_FILE") {
        let pem = std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?;
        return TrustAnchor::from_pem(&pem).map_err(|e| anyhow::anyhow!("{file}: {e}"));
    }
    if let Some(fp) = env("KINDLING_CA_FINGERPRINT") {
        return Ok(TrustAnchor::Fingerprint(
            fp.parse::<Fingerprint>()
                .context("KINDLING_CA_FINGERPRINT")?,
        ));
    }
    if let Some(c) = context {
        if let Some(pem) = &c.ca_pem {
            return TrustAnchor::from_pem(pem)
                .map_err(|e| anyhow::anyhow!("the CLI config's ca_pem: {e}"));
        }
        if let Some(fp) = &c.ca_fingerprint {
            return Ok(TrustAnchor::Fingerprint(fp.parse()?));
        }
    }
    bail!(
        "no pinned CA for this appliance: run `kindling login` (or set KINDLING_CA_FINGERPRINT \
         to the `api: CA sha256:…` the appliance prints on its console)"
    )
}

/// The token: `$KINDLING_TOKEN`, else the context's.
pub fn token(context: Option<&ApplianceContext>) -> anyhow::Result<Option<Token>> {
    let text = env("KINDLING_TOKEN").or_else(|| context.and_then(|c| c.token.clone()));
    text.map(|t| Token::parse(&t).context("the operator token"))
        .transpose()
}

/// Resolves a command's connection from the flags, the environment and the
/// config file. Nothing to dial or no pin is a usage error (exit 2).
pub fn resolve(appliance_flag: Option<&str>, context: Option<&str>) -> anyhow::Result<Resolved> {
    use super::exit::{Exit, Failure};
    let usage = |e: anyhow::Error| anyhow::Error::new(Failure::new(Exit::Usage, format!("{e:#}")));
    let config = CliConfig::load(&path()?).map_err(usage)?;
    let context = config.context(context).map_err(usage)?.map(|(_, c)| c);
    Ok(Resolved {
        endpoint: endpoint(appliance_flag, context).map_err(usage)?,
        anchor: anchor(context).map_err(usage)?,
        token: token(context).map_err(usage)?,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn saved_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conf/kindling/config.toml");
        let mut config = CliConfig::default();
        config.contexts.insert(
            "lab".into(),
            ApplianceContext {
                appliance: "192.168.100.1:9000".into(),
                token: Some("kt1_x".into()),
                ca_fingerprint: Some(format!("sha256:{}", "ab".repeat(32))),
                ..ApplianceContext::default()
            },
        );
        config.current = Some("lab".into());
        config.save(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let back = CliConfig::load(&path).unwrap();
        assert_eq!(back, config);
        let (name, lab) = back.context(Some("lab")).unwrap().unwrap();
        assert_eq!(name, "lab");
        assert_eq!(
            endpoint(None, Some(lab)).unwrap().dial_address(),
            "192.168.100.1:9000"
        );
        assert!(matches!(
            anchor(Some(lab)).unwrap(),
            TrustAnchor::Fingerprint(_)
        ));
        let err = back.context(Some("prod")).unwrap_err().to_string();
        assert!(err.contains("kindling login --context prod"), "{err}");
        assert!(CliConfig::load(&dir.path().join("none.toml"))
            .unwrap()
            .contexts
            .is_empty());
    }

    #[test]
    fn the_flag_wins_over_the_context_and_plain_http_is_refused() {
        let lab = ApplianceContext {
            appliance: "192.168.100.1".into(),
            server_name: Some("kindling-lab.lab".into()),
            ..ApplianceContext::default()
        };
        let e = endpoint(Some("10.0.0.9:9443"), Some(&lab)).unwrap();
        assert_eq!(e.dial_address(), "10.0.0.9:9443");
        assert_eq!(e.server_name().to_str(), "kindling-lab.lab");
        let err = endpoint(Some("http://192.168.100.1:9000"), None).unwrap_err();
        assert!(err.to_string().contains("TLS only"), "{err}");
        let err = anchor(Some(&lab)).unwrap_err().to_string();
        assert!(err.contains("kindling login"), "{err}");
    }

    #[test]
    fn a_single_appliance_file_reads_as_the_default_context() {
        let text = "appliance = \"10.0.0.9:9000\"\ntoken = \"kt1_x\"\n";
        let config = CliConfig::parse(text).unwrap();
        assert_eq!(config.current.as_deref(), Some("default"));
        assert_eq!(config.contexts["default"].appliance, "10.0.0.9:9000");
        // A key neither shape knows is still refused, naming the key.
        let err = CliConfig::parse("current = \"a\"\nbogus = 1\n").unwrap_err();
        assert!(format!("{err:#}").contains("bogus"), "{err:#}");
    }
}
