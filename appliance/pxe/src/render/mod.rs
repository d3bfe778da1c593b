//! Text payloads rendered per node: iPXE scripts (`ipxe`), cloud-init NoCloud
//! documents (`cloud_init`), Debian preseed (`preseed`) and the bootstrap
//! shell script (`begin`).
//!
//! Renderers are pure functions of a `NodeContext`; they never read files or
//! the network, so every output is unit-testable.

pub mod begin;
pub mod cloud_init;
pub mod ipxe;
pub mod preseed;

use crate::enroll::Enrollment;
use crate::settings::NodeStack;
use kindling_site::MacAddr;
use kindling_site::Profile;
use std::collections::BTreeMap;

/// Everything a renderer may know about one node.
#[derive(Debug, Clone)]
pub struct NodeContext<'a> {
    pub mac: MacAddr,
    pub hostname: String,
    pub domain: String,
    pub profile_name: &'a str,
    pub profile: &'a Profile,
    /// `http://<lan-addr>[:port]/`
    pub base_url: &'a str,
    pub enrollment: Option<Enrollment>,
    /// The sha256 of the node agent the appliance serves, which `/begin.sh`
    /// fetches, checks and runs (`None`: there is none to run).
    pub agent_sha256: Option<String>,
    /// The stack a node with a grant joins (node.json's `stack`); `None`
    /// when the site runs none.
    pub stack: Option<NodeStack>,
    /// The client binaries (`consul`, `nomad`) the appliance serves by
    /// hash: name → sha256. Told only to a node with a grant.
    pub client_binaries: BTreeMap<String, String>,
}

/// The hostname a node gets when the site names none: stable and derived
/// from its MAC (`node-6b0010`).
pub fn default_hostname(mac: &MacAddr) -> String {
    mac.default_hostname()
}

/// `key=value,key=value` of the profile's tags, for command lines.
pub fn tags_arg(profile: &Profile) -> String {
    profile
        .tags
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Quotes `s` for a POSIX shell (single quotes, `'` escaped).
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A YAML double-quoted scalar. JSON string syntax is a subset of YAML's
/// double-quoted style, so serde_json's escaping is exactly right.
pub fn yaml_str(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    pub fn context<'a>(profile: &'a Profile, name: &'a str) -> NodeContext<'a> {
        NodeContext {
            mac: MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]),
            hostname: "node-dev-1".into(),
            domain: "lab.kindling.internal".into(),
            profile_name: name,
            profile,
            base_url: "http://192.168.100.1/",
            enrollment: None,
            agent_sha256: None,
            stack: None,
            client_binaries: BTreeMap::new(),
        }
    }

    #[test]
    fn quoting_is_safe() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(yaml_str("a\"b\n"), r#""a\"b\n""#);
    }
}
