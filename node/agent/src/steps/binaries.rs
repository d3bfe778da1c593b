//! `binaries`: the Consul and Nomad client binaries node.json names (URL
//! and sha256, served by the appliance), checked before they are installed
//! in `/usr/local/bin`; one already installed with the same hash is left.

use super::Ctx;
use crate::error::StepError;
use crate::files::{paths, Root};
use crate::state::hex;
use sha2::{Digest, Sha256};

/// The binaries the agent knows how to install and run.
pub(super) const NAMES: &[&str] = &["consul", "nomad"];

pub(super) async fn run(ctx: &mut Ctx) -> Result<String, StepError> {
    if let Some(unknown) = ctx
        .node
        .binaries
        .keys()
        .find(|k| !NAMES.contains(&k.as_str()))
    {
        return Err(StepError::Config(format!(
            "{}: binaries.{unknown}: only {} are installed by kindling-node",
            Root::on_node(paths::NODE),
            NAMES.join(" and ")
        )));
    }
    let mut did = Vec::new();
    for name in NAMES {
        let Some(want) = ctx.node.binaries.get(*name).cloned() else {
            continue;
        };
        let want_hash = want.sha256.to_ascii_lowercase();
        let rel = format!("{}/{name}", paths::BIN_DIR);
        if let Some(have) = ctx.root.read(&rel)? {
            if hex(&Sha256::digest(&have)) == want_hash {
                did.push(format!("{name} already installed"));
                continue;
            }
        }
        let bytes = fetch(&ctx.http, &want.url).await?;
        let got = hex(&Sha256::digest(&bytes));
        if got != want_hash {
            return Err(StepError::Checksum {
                name: name.to_string(),
                url: want.url,
                got,
                want: want_hash,
            });
        }
        ctx.root.write(&rel, &bytes, 0o755)?;
        ctx.changed.insert(name);
        did.push(format!(
            "{name} installed ({} bytes, sha256 checked)",
            bytes.len()
        ));
    }
    Ok(if did.is_empty() {
        "node.json names none; using what is installed".into()
    } else {
        did.join("; ")
    })
}

async fn fetch(http: &reqwest::Client, url: &str) -> Result<Vec<u8>, StepError> {
    let fail = |e: &dyn std::error::Error| {
        StepError::Http(format!("GET {url}: {}", crate::vault::chain(e)))
    };
    let resp = http.get(url).send().await.map_err(|e| fail(&e))?;
    if !resp.status().is_success() {
        return Err(StepError::Http(format!(
            "GET {url}: HTTP {}",
            resp.status().as_u16()
        )));
    }
    Ok(resp.bytes().await.map_err(|e| fail(&e))?.to_vec())
}
