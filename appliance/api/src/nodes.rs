//! Node inventory and runtime assignment bodies (`GET /v1/nodes`,
//! `PUT /v1/nodes/MAC/profile`), and the node facts they are made of.
//!
//! Describes the JSON only: which profile a MAC gets and where nodes stand is
//! decided by `kindling-inventory`.

use kindling_site::MacAddr;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// Firmware family a node booted with, from DHCP option 93 / vendor class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Firmware {
    Bios,
    Uefi,
    UefiHttp,
    /// A PXE architecture the appliance has no boot file for (e.g. arm64).
    Other,
    /// An ordinary DHCP client (an installed OS), not network booting.
    None,
}

/// Where a node stands in provisioning; it only moves forward, except that a
/// new PXE boot starts over at `booting`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Discovered,
    Booting,
    Installed,
    Joined,
}

/// One phone-home event (`booted`, `nocloud`, `installed`, `joined`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeEvent {
    /// Unix seconds.
    pub at: u64,
    pub event: String,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub detail: serde_json::Value,
}

/// Where a node's profile comes from, and the profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "source", content = "profile", rename_all = "snake_case")]
pub enum ProfileChoice {
    /// `kindling node assign` (runtime assignment).
    Assigned(String),
    /// `[[nodes]]` in the site overlay.
    Site(String),
    /// Unknown MAC, `unknown = "default_profile"`.
    Default(String),
    /// Unknown MAC, `unknown = "menu"`.
    Menu,
    /// Unknown MAC, `unknown = "ignore"` (or no default profile).
    NotServed,
}

impl ProfileChoice {
    pub fn profile(&self) -> Option<&str> {
        match self {
            ProfileChoice::Assigned(p) | ProfileChoice::Site(p) | ProfileChoice::Default(p) => {
                Some(p)
            }
            ProfileChoice::Menu | ProfileChoice::NotServed => None,
        }
    }
}

/// Where a runtime assignment is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stored {
    /// In Consul KV and the appliance's local file.
    Kv,
    /// Only in the local file: Consul is off or not reachable yet.
    Local,
}

/// A node's `assignment` object: the choice, plus for a runtime assignment
/// where it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Assignment {
    #[serde(flatten)]
    pub choice: ProfileChoice,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored: Option<Stored>,
}

/// How the shared (Consul KV) copy of the assignments stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum KvStatus {
    /// Reachable: listed and merged (writes it asked for follow at once).
    InUse,
    /// The site keeps no shared copy (e.g. `stack.consul.enabled = false`).
    LocalOnly(String),
    /// The shared copy is meant to be used but cannot be now.
    Waiting(String),
}

/// What the appliance recorded about a node it has seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SeenNode {
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    /// DHCP option 93 (client architecture).
    #[serde(default)]
    pub arch: Option<u16>,
    #[serde(default)]
    pub firmware: Option<Firmware>,
    /// The profile the node was last served (None: not served).
    #[serde(default)]
    pub profile: Option<String>,
    /// Unix seconds.
    pub first_seen: u64,
    pub last_seen: u64,
    pub state_changed: u64,
    #[serde(default)]
    pub events: Vec<NodeEvent>,
}

/// One row of `GET /v1/nodes`: a node seen (with its facts), or one the site
/// or an assignment names that has not booted yet (`state: null`, no facts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeRow {
    pub mac: MacAddr,
    pub state: Option<NodeState>,
    #[serde(flatten)]
    pub seen: Option<SeenNode>,
    pub assignment: Assignment,
}

/// `GET /v1/nodes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NodeList {
    pub nodes: Vec<NodeRow>,
    /// How the Consul KV copy stands; null before the first sync.
    pub kv: Option<KvStatus>,
}

/// `PUT /v1/nodes/MAC/profile`: `{"profile": "NAME"}`, or `{"profile": null}`
/// to drop the runtime assignment. The key is required.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AssignRequest {
    #[serde(deserialize_with = "Option::deserialize")]
    pub profile: Option<String>,
}

/// The reply to `PUT /v1/nodes/MAC/profile`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AssignReply {
    pub mac: MacAddr,
    /// The runtime assignment before this change.
    pub previous: Option<String>,
    /// What the MAC gets now.
    pub assignment: Assignment,
    /// Why the change is not (yet) in Consul KV; null when it is.
    pub kv: Option<String>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use serde_json::json;

    const MAC: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);

    #[test]
    fn rows_keep_their_json() {
        let unseen = NodeRow {
            mac: MAC,
            state: None,
            seen: None,
            assignment: Assignment {
                choice: ProfileChoice::Assigned("prod".into()),
                stored: Some(Stored::Kv),
            },
        };
        let value = serde_json::to_value(&unseen).unwrap();
        assert_eq!(
            value,
            json!({"mac": "52:54:00:6b:00:10", "state": null,
                   "assignment": {"source": "assigned", "profile": "prod", "stored": "kv"}})
        );
        assert_eq!(serde_json::from_value::<NodeRow>(value).unwrap(), unseen);

        let seen = NodeRow {
            state: Some(NodeState::Booting),
            seen: Some(SeenNode {
                ip: None,
                arch: Some(7),
                firmware: Some(Firmware::Uefi),
                profile: Some("dev".into()),
                first_seen: 1,
                last_seen: 2,
                state_changed: 2,
                events: vec![],
            }),
            assignment: Assignment {
                choice: ProfileChoice::Menu,
                stored: None,
            },
            ..unseen
        };
        let value = serde_json::to_value(&seen).unwrap();
        assert_eq!(value["ip"], json!(null));
        assert_eq!(value["firmware"], "uefi");
        assert_eq!(value["assignment"], json!({"source": "menu"}));
        assert_eq!(serde_json::from_value::<NodeRow>(value).unwrap(), seen);
    }

    #[test]
    fn assign_request_needs_the_profile_key() {
        let parse = |v: serde_json::Value| serde_json::from_value::<AssignRequest>(v);
        assert_eq!(
            parse(json!({"profile": "dev"})).unwrap().profile.as_deref(),
            Some("dev")
        );
        assert_eq!(parse(json!({"profile": null})).unwrap().profile, None);
        assert!(parse(json!({})).is_err());
        assert!(parse(json!({"profile": 3})).is_err());
    }

    #[test]
    fn kv_status_is_tagged() {
        assert_eq!(
            serde_json::to_value(KvStatus::Waiting("down".into())).unwrap(),
            json!({"state": "waiting", "detail": "down"})
        );
        assert_eq!(
            serde_json::to_value(KvStatus::InUse).unwrap(),
            json!({"state": "in_use"})
        );
    }
}
