//! `profiles/<name>.toml`: what a node assigned to a profile boots and how it is configured.

use crate::ProfileName;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Must equal the file's stem (`profiles/NAME.toml`).
    pub name: ProfileName,
    #[serde(default)]
    pub description: String,
    /// Tags flow into Consul node meta and Nomad client meta (e.g. env=development).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    pub boot: BootPayload,
    #[serde(default)]
    pub cloud_init: CloudInit,
    /// Enrollment grants for nodes of this profile the site does not name.
    #[serde(default)]
    pub enrollment: crate::ProfileEnrollment,
    /// What a node's later PXE boots get once it reported `installed`.
    #[serde(default)]
    pub after_install: AfterInstall,
}

/// A node's PXE boots after it was installed with a profile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum AfterInstall {
    /// Boot the local disk (no boot file in DHCP, iPXE `exit`) until
    /// `kindling node reprovision MAC` re-arms the node: install once.
    #[default]
    Disk,
    /// Boot the profile again every time (diskless and live nodes).
    Network,
}

/// What the node boots. Each artifact field (kernel, initrd, iso) is a file
/// name the appliance serves from its artifact directory
/// (`/usr/share/kindling/artifacts` in the image, `/var/lib/kindling/artifacts`
/// on the data partition), `sha256/HEX` (64 lower-case hex digits) for the
/// artifact pushed with `kindling artifact push` that has this content, or an
/// http(s) URL. `kindling overlay build --artifacts`/`--resolve-artifacts`
/// rewrites names of pushed artifacts to `sha256/HEX`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum BootPayload {
    Linux {
        kernel: String,
        #[serde(default)]
        initrd: Vec<String>,
        #[serde(default)]
        cmdline: String,
    },
    Iso {
        iso: String,
    },
    DebianInstaller {
        kernel: String,
        initrd: String,
        #[serde(default)]
        cmdline: String,
    },
    UbuntuAutoinstall {
        kernel: String,
        initrd: String,
        /// URL or artifact name of the live server ISO.
        iso: String,
        #[serde(default)]
        cmdline: String,
    },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloudInit {
    #[serde(default)]
    pub ssh_authorized_keys: Vec<String>,
    #[serde(default)]
    pub packages: Vec<String>,
    /// Extra cloud-config (YAML) merged into the rendered user-data.
    #[serde(default)]
    pub extra_user_data: String,
}

/// How a profile's boot field names what the node fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactRef<'a> {
    /// `sha256/HEX`: the pushed artifact with this content (`HEX` is 64
    /// lower-case hex digits). The store lives in the first artifact
    /// directory (`/var/lib/kindling/artifacts/sha256/HEX`), so it is
    /// served at `/artifacts/sha256/HEX` like any artifact (and at
    /// `/by-hash/sha256/HEX`).
    Pinned(&'a str),
    /// An http(s) URL, fetched as is.
    Url(&'a str),
    /// A file name in the artifact directories, served at `/artifacts/NAME`.
    Name(&'a str),
}

/// The prefix of a pinned artifact reference: the store's directory.
pub const PINNED_PREFIX: &str = "sha256/";

impl<'a> ArtifactRef<'a> {
    /// Reads one boot field. A value starting with `sha256/` (or the
    /// look-alike `sha256:`) must be a well-formed pin: a typo there would
    /// otherwise only show as a 404 when a node boots.
    pub fn parse(value: &'a str) -> Result<Self, String> {
        let pinned = value
            .strip_prefix(PINNED_PREFIX)
            .filter(|hex| hex.len() == 64)
            .filter(|hex| hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        if let Some(hex) = pinned {
            Ok(Self::Pinned(hex))
        } else if value.starts_with(PINNED_PREFIX) || value.starts_with("sha256:") {
            Err(format!(
                "{value:?} is not a pinned artifact: write sha256/ and 64 lower-case hex digits (as `kindling artifact list` shows)"
            ))
        } else if value.starts_with("http://") || value.starts_with("https://") {
            Ok(Self::Url(value))
        } else {
            Ok(Self::Name(value))
        }
    }
}

impl BootPayload {
    /// Every artifact field with its key under `boot` (`kernel`,
    /// `initrd[1]`, `iso`), in the order they are written.
    pub fn artifact_fields(&self) -> Vec<(String, &str)> {
        let mut out = Vec::new();
        match self {
            BootPayload::Linux { kernel, initrd, .. } => {
                out.push(("kernel".to_string(), kernel.as_str()));
                for (i, v) in initrd.iter().enumerate() {
                    out.push((format!("initrd[{i}]"), v.as_str()));
                }
            }
            BootPayload::Iso { iso } => out.push(("iso".to_string(), iso.as_str())),
            BootPayload::DebianInstaller { kernel, initrd, .. } => {
                out.push(("kernel".to_string(), kernel.as_str()));
                out.push(("initrd".to_string(), initrd.as_str()));
            }
            BootPayload::UbuntuAutoinstall {
                kernel,
                initrd,
                iso,
                ..
            } => {
                out.push(("kernel".to_string(), kernel.as_str()));
                out.push(("initrd".to_string(), initrd.as_str()));
                out.push(("iso".to_string(), iso.as_str()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn artifact_refs_are_pins_urls_or_names() {
        let hex = "ab".repeat(32);
        let pinned = format!("sha256/{hex}");
        assert_eq!(ArtifactRef::parse(&pinned), Ok(ArtifactRef::Pinned(&hex)));
        assert_eq!(
            ArtifactRef::parse("https://m.example/x.iso"),
            Ok(ArtifactRef::Url("https://m.example/x.iso"))
        );
        assert_eq!(
            ArtifactRef::parse("d-i/linux"),
            Ok(ArtifactRef::Name("d-i/linux"))
        );
        assert_eq!(
            ArtifactRef::parse("sha256-notes/x"),
            Ok(ArtifactRef::Name("sha256-notes/x"))
        );
        for bad in [
            "sha256/".to_string(),
            format!("sha256/{}", "a".repeat(63)),
            format!("sha256/{}", "a".repeat(65)),
            format!("sha256/{}", "AB".repeat(32)),
            format!("sha256/{}g", "a".repeat(63)),
            format!("sha256/{}/x", "a".repeat(64)),
            format!("sha256/.upload-{}", "a".repeat(57)),
            format!("sha256:{}", "a".repeat(64)),
        ] {
            let err = ArtifactRef::parse(&bad).unwrap_err();
            assert!(err.contains("64 lower-case hex digits"), "{bad}: {err}");
        }
    }
}
