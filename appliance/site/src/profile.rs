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

/// What the node boots. Artifact names refer to files the appliance serves from
/// its artifact directory (`/usr/share/kindling/artifacts` in the image,
/// `/var/lib/kindling/artifacts` on the data partition).
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
