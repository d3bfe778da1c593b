//! Node inventory and runtime assignment bodies (`GET /v1/nodes`,
//! `PUT /v1/nodes/MAC/profile`,
//! `POST /v1/nodes/MAC/tags`), and the node facts they are made of.
//!
//! Describes the JSON only: which profile a MAC gets and where nodes stand is
//! decided by `kindling-inventory`.

use kindling_site::MacAddr;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
/// new PXE boot starts over at `booting`. `joined` and `left` are the
/// appliance's own verdict from its Consul catalog, never the node's word.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Discovered,
    Booting,
    /// The node reported its install finished; it is not (or not yet) in
    /// the appliance's Consul catalog with the expected node metadata
    /// (`reason` says which).
    Installed,
    /// In the appliance's Consul catalog under the name the site gives it,
    /// with its profile's node metadata (`consul` has its node ID).
    Joined,
    /// Was joined, and is no longer in the catalog as expected (it left,
    /// was reaped, or its metadata changed; `reason` says which). Back to
    /// `joined` when it is seen again.
    Left,
}

/// One phone-home event (`booted`, `nocloud`, `installed`, `joined`,
/// `failed`, `grant-unwrap-failed`), or one the appliance recorded itself
/// (`reprovision`, `catalog-joined`, `catalog-left`). A node's `joined` is
/// a claim: the appliance decides from its own Consul catalog. `failed`
/// carries `step` and `error` (the node agent's step that failed and why).
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
    /// A `[[selectors]]` rule of the site overlay (MAC prefix, firmware,
    /// architecture).
    Selected(String),
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
            ProfileChoice::Assigned(p)
            | ProfileChoice::Site(p)
            | ProfileChoice::Selected(p)
            | ProfileChoice::Default(p) => Some(p),
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
    /// The enrollment grant of this provisioning cycle; null while none was
    /// minted (or since `reprovision` re-armed the node).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<Grant>,
    /// Re-arm requests (`POST /v1/nodes/MAC/reprovision`) the PXE service
    /// has applied to this node so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rearmed: u64,
    /// What needs an operator's eye, one per kind, newest facts kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<NodeAlert>,
    /// Why the node is in its state and not further along (e.g. `installed`:
    /// "says joined, but is not in the appliance's Consul catalog as …").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The node as the appliance's Consul catalog last showed it (kept after
    /// it left, with `left_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consul: Option<ConsulMember>,
    /// The last failure of this provisioning cycle: a grant that expired or
    /// was used already, or the node agent failing at a step. Cleared by a
    /// re-arm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<NodeFailure>,
}

/// A node as the appliance's Consul catalog shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConsulMember {
    /// The catalog's node name (the hostname the site gives the MAC).
    pub node: String,
    /// Consul's node ID (a UUID the node's agent made).
    pub id: String,
    #[serde(default)]
    pub address: String,
    /// When the appliance first saw it joined in this cycle (Unix seconds).
    pub joined_at: u64,
    /// When it was last seen in the catalog as expected (Unix seconds).
    pub seen_at: u64,
    /// When the appliance saw it gone (Unix seconds); null while joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_at: Option<u64>,
}

/// What failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    /// The grant was not redeemed within its life.
    GrantExpired,
    /// User-data was asked for again after the cycle's grant was minted.
    GrantAlreadyUsed,
    /// The grant was unwrapped by someone other than the node.
    GrantUsedElsewhere,
    /// The node agent reported a step failing (`{"event": "failed", "step":
    /// …, "error": …}`).
    AgentFailed,
}

/// A node's last failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeFailure {
    pub kind: FailureKind,
    /// Unix seconds.
    pub at: u64,
    /// The node agent's step that failed (`agent-failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// The last error, as the node or the appliance said it.
    pub error: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Where a node's enrollment grant stands. The appliance mints one grant
/// (a response-wrapped, single-use AppRole secret-id bound to the node's
/// leased address) per provisioning cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum GrantState {
    /// Being minted now; a fetch meanwhile is refused like a second one.
    Minting,
    /// Minted and served; not yet seen redeemed.
    Issued,
    /// The secret-id was used to log in, which Vault allows only from the
    /// bound address.
    Redeemed,
    /// Not redeemed within its life; the secret-id was destroyed.
    Expired,
    /// Unwrapped by someone other than the node (the node reported its own
    /// unwrap failing while the grant was still alive); the secret-id was
    /// destroyed.
    UsedElsewhere,
}

/// A node's enrollment grant, as the appliance recorded it. Holds no
/// secret: accessors can neither unwrap nor log in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Grant {
    pub state: GrantState,
    /// The profile (and so the AppRole role `node-<profile>`) it is for.
    pub profile: String,
    /// The leased address the secret-id and its tokens are bound to (/32).
    pub address: Ipv4Addr,
    /// Unix seconds.
    pub issued_at: u64,
    /// When the wrapping token expires (Unix seconds).
    pub expires_at: u64,
    /// Minted under the profile's allowance for MACs the site does not
    /// name (`[enrollment] unknown_macs`), which counts it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub unknown_mac: bool,
    /// Vault's accessor of the response-wrapping token.
    #[serde(default)]
    pub wrapping_accessor: String,
    /// Vault's accessor of the secret-id inside it.
    #[serde(default)]
    pub secret_id_accessor: String,
    /// When the appliance last asked Vault about it (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<u64>,
    /// Why it is in its state, when that is not plain success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What an alert is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum AlertKind {
    /// User-data was fetched again after the cycle's grant was minted: no
    /// second grant was given. `kindling node reprovision MAC` re-arms.
    GrantReused,
    /// The grant was not redeemed within its life.
    GrantExpired,
    /// The grant was unwrapped by someone other than the node.
    GrantUsedElsewhere,
}

/// One alert on a node; cleared when the node is re-armed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NodeAlert {
    pub kind: AlertKind,
    /// When it was last raised (Unix seconds).
    pub at: u64,
    /// How many times it was raised in this cycle.
    pub count: u64,
    pub detail: String,
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
    /// What the last re-arm revoked: the Consul token the node's old
    /// install held (null: no re-arm handled yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<TokenRevocation>,
    /// The operator's tags on the node (`kindling node tag`), which
    /// `[[selectors]]` may ask for; absent when it has none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A re-arm's revocation of a node's Consul token and client certificates,
/// as the stack recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokenRevocation {
    /// The re-arm request it answers (`ReprovisionReply::generation`).
    pub generation: u64,
    /// Unix seconds.
    pub at: u64,
    /// The accessor of the Consul token revoked (null: the node had none).
    #[serde(default)]
    pub accessor: Option<String>,
    /// Whether Consul still had it (false: it was gone already).
    #[serde(default)]
    pub was_live: bool,
    /// Serial numbers of the client certificates the old install issued
    /// (found in Vault's PKI by the node's hostname) revoked by this re-arm.
    #[serde(default)]
    pub certificates: Vec<String>,
    /// The accessor of the token made for the next install.
    #[serde(default)]
    pub made: Option<String>,
    /// Why it could not be done (it is retried).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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

/// `POST /v1/nodes/MAC/tags`: tags to set (added, or their value replaced)
/// and keys to remove, applied together; a key may not be in both. Keys are
/// 1 to 63 of `a-z 0-9 - _ .` starting with a letter or digit, values 1 to
/// 63 of `A-Z a-z 0-9 - _ .`, at most 16 tags per node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TagRequest {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

/// The reply to `POST /v1/nodes/MAC/tags`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TagReply {
    pub mac: MacAddr,
    /// The node's tags before this change.
    pub previous: BTreeMap<String, String>,
    /// The node's tags now.
    pub tags: BTreeMap<String, String>,
    /// What the MAC gets now (its next PXE boot): tags may change which
    /// selector decides.
    pub assignment: Assignment,
}

/// The reply to `POST /v1/nodes/MAC/reprovision` (no request body, or `{}`).
/// The stack then revokes the Consul token the node's old install held and
/// makes one for the next (shown as the node's `revoked` once done).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReprovisionReply {
    pub mac: MacAddr,
    /// Re-arm requests made for this MAC so far, this one included. The PXE
    /// service applies it before the node's next user-data fetch.
    pub generation: u64,
    /// The grant of the cycle that ends, as last recorded (null: none).
    pub previous: Option<Grant>,
    /// The alerts this clears.
    pub alerts: Vec<NodeAlert>,
}

/// The reply to `POST /v1/nodes/MAC/forget` (no request body, or `{}`):
/// the request is recorded and the PXE service drops the node's record
/// (state, facts, grant, alerts) within a second; a node that PXE-boots
/// again afterwards comes back as newly discovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ForgetReply {
    pub mac: MacAddr,
    /// When the request was recorded, Unix milliseconds: records last seen
    /// before it are dropped.
    pub requested_ms: u64,
    /// Whether the PXE service had a record of the node.
    pub had_record: bool,
    /// The runtime assignment this dropped (null: there was none).
    pub dropped_assignment: Option<String>,
    /// The node tags this dropped (absent: there were none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dropped_tags: BTreeMap<String, String>,
    /// The site's `[[nodes]]` names this MAC: it stays listed as expected
    /// (the signed overlay is not changed by the API).
    pub reserved_by_site: bool,
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
            revoked: None,
            tags: BTreeMap::new(),
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
                grant: None,
                rearmed: 0,
                alerts: vec![],
                reason: None,
                consul: None,
                failure: None,
            }),
            assignment: Assignment {
                choice: ProfileChoice::Menu,
                stored: None,
            },
            tags: [("rack".to_string(), "r12".to_string())].into(),
            ..unseen
        };
        let value = serde_json::to_value(&seen).unwrap();
        assert_eq!(value["ip"], json!(null));
        assert_eq!(value["firmware"], "uefi");
        assert_eq!(value["tags"], json!({"rack": "r12"}));
        assert_eq!(value["assignment"], json!({"source": "menu"}));
        assert_eq!(serde_json::from_value::<NodeRow>(value).unwrap(), seen);
    }

    #[test]
    fn tag_requests_set_and_unset_and_refuse_other_keys() {
        let parse = |v: serde_json::Value| serde_json::from_value::<TagRequest>(v);
        let r = parse(json!({"set": {"rack": "r12"}, "unset": ["gpu"]})).unwrap();
        assert_eq!(
            (r.set["rack"].as_str(), r.unset),
            ("r12", vec!["gpu".into()])
        );
        assert_eq!(parse(json!({})).unwrap(), TagRequest::default());
        assert!(parse(json!({"tags": {"rack": "r12"}})).is_err());
        assert!(parse(json!({"set": {"rack": 12}})).is_err());
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
