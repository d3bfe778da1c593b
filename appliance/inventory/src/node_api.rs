//! The node part of the appliance API (`GET /v1/nodes`,
//! `PUT /v1/nodes/MAC/profile`, `POST /v1/nodes/MAC/tags`,
//! `POST /v1/nodes/MAC/reprovision`) as plain
//! functions returning the contract types of `kindling_api::nodes` or a
//! [`NodeApiError`], so kindlingd's router only decodes, forwards and
//! encodes.
//!
//! Reads the inventory the PXE service persists and writes runtime
//! assignments and node tags through `AssignmentStore` (locked, atomic), then lets the
//! assignment sync push them to Consul KV when one is given; re-arm requests
//! go to `ReprovisionStore`. The PXE service picks both up on its next
//! request. It never moves or repairs
//! files: a corrupt inventory is reported as an error.

use crate::assignments::{change_tags, AssignmentStore, AssignmentsState};
use crate::error::InventoryError;
use crate::forget::ForgetStore;
use crate::inventory::read_nodes;
use crate::policy::{node_facts, ProfilePolicy};
use crate::reprovision::ReprovisionStore;
use crate::revocations::RevocationStore;
use crate::sync::AssignmentSync;
use kindling_api::nodes::{
    AssignReply, AssignRequest, Assignment, ForgetReply, KvStatus, NodeList, NodeRow,
    ProfileChoice, ReprovisionReply, Stored, TagReply, TagRequest,
};
use kindling_api::{ApiFailure, ErrorKind};
use kindling_site::{MacAddr, NodeFacts, ParseValueError, SiteConfig, TagError};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Why a node API call failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeApiError {
    #[error(transparent)]
    ParseMac(ParseValueError),
    #[error("body is not JSON: {0}")]
    ParseBody(serde_json::Error),
    #[error("body must be {{\"profile\": \"NAME\"}} or {{\"profile\": null}}")]
    ReadBody,
    #[error("profile {profile:?} is not defined; known profiles: {known}")]
    FindProfile { profile: String, known: String },
    #[error(transparent)]
    LoadAssignments(InventoryError),
    #[error(transparent)]
    LoadNodes(InventoryError),
    #[error(transparent)]
    WriteAssignment(InventoryError),
    #[error(
        "{0} was never seen by the PXE service, and neither the site nor an assignment names it"
    )]
    FindNode(MacAddr),
    #[error("the reprovision request takes no body (or `{{}}`)")]
    ReprovisionBody,
    #[error(transparent)]
    WriteReprovision(InventoryError),
    #[error("the forget request takes no body (or `{{}}`)")]
    ForgetBody,
    #[error("body must be {{\"set\": {{\"KEY\": \"VALUE\"}}, \"unset\": [\"KEY\"]}}: {0}")]
    ReadTagBody(serde_json::Error),
    #[error(transparent)]
    Tag(TagError),
    #[error(transparent)]
    WriteForget(InventoryError),
}

impl ApiFailure for NodeApiError {
    fn kind(&self) -> ErrorKind {
        match self {
            NodeApiError::ParseMac(_)
            | NodeApiError::ParseBody(_)
            | NodeApiError::ReadBody
            | NodeApiError::FindProfile { .. }
            | NodeApiError::ReprovisionBody
            | NodeApiError::ForgetBody
            | NodeApiError::ReadTagBody(_)
            | NodeApiError::Tag(_) => ErrorKind::BadRequest,
            NodeApiError::FindNode(_) => ErrorKind::NotFound,
            NodeApiError::LoadAssignments(_)
            | NodeApiError::LoadNodes(_)
            | NodeApiError::WriteAssignment(_)
            | NodeApiError::WriteReprovision(_)
            | NodeApiError::WriteForget(_) => ErrorKind::Internal,
        }
    }
}

/// The MAC of a `/v1/nodes/MAC/...` path, any accepted spelling.
pub fn parse_mac(text: &str) -> Result<MacAddr, NodeApiError> {
    text.parse().map_err(NodeApiError::ParseMac)
}

/// The body of `PUT /v1/nodes/MAC/profile`.
pub fn parse_assign_request(body: &[u8]) -> Result<AssignRequest, NodeApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => NodeApiError::ReadBody,
        _ => NodeApiError::ParseBody(e),
    })
}

/// What a selector may ask of `mac`: its DHCP facts if the PXE service saw
/// it, and the operator's tags from `state`.
fn facts_of(state_dir: &Path, state: &AssignmentsState, mac: MacAddr) -> NodeFacts {
    let seen = read_nodes(&crate::nodes_file(state_dir))
        .ok()
        .and_then(|nodes| nodes.into_iter().find(|n| n.mac == mac));
    NodeFacts {
        tags: state.tags_of(&mac),
        ..seen.map_or(NodeFacts::mac_only(mac), |n| {
            node_facts(mac, n.seen.arch, n.seen.firmware)
        })
    }
}

/// A MAC's `assignment` object: the choice, plus for a runtime assignment
/// where it is stored: `kv` (in Consul KV and the local file) or `local`
/// (only in the local file: Consul is off or not reachable yet).
fn assignment(
    policy: &ProfilePolicy,
    state: &AssignmentsState,
    assignments: &BTreeMap<MacAddr, String>,
    node: &NodeFacts,
) -> Assignment {
    let mac = &node.mac;
    let choice = policy.resolve(assignments, node);
    let stored = match choice {
        ProfileChoice::Assigned(_) => {
            let in_kv = state.records.get(mac).is_some_and(|r| !r.pending);
            Some(if in_kv { Stored::Kv } else { Stored::Local })
        }
        _ => None,
    };
    Assignment { choice, stored }
}

/// `GET /v1/nodes`: every node seen, plus nodes the site or an assignment
/// names that have not booted yet (`state: null`).
pub fn list(site: &SiteConfig, state_dir: &Path) -> Result<NodeList, NodeApiError> {
    let policy = ProfilePolicy::from_site(site);
    let store = AssignmentStore::new(crate::assignments_file(state_dir));
    let state = store.load_state().map_err(NodeApiError::LoadAssignments)?;
    let assignments = state.effective();
    let seen = read_nodes(&crate::nodes_file(state_dir)).map_err(NodeApiError::LoadNodes)?;
    // What re-arms revoked is shown, never needed: an unreadable record
    // hides it rather than the inventory.
    let mut revoked = RevocationStore::in_state_dir(state_dir)
        .load()
        .unwrap_or_default();
    let mut rows: BTreeMap<MacAddr, NodeRow> = BTreeMap::new();
    for node in seen {
        let facts = NodeFacts {
            tags: state.tags_of(&node.mac),
            ..node_facts(node.mac, node.seen.arch, node.seen.firmware)
        };
        let row = NodeRow {
            mac: node.mac,
            state: Some(node.state),
            revoked: revoked.remove(&node.mac),
            tags: facts.tags.clone(),
            seen: Some(node.seen),
            assignment: assignment(&policy, &state, &assignments, &facts),
        };
        rows.insert(node.mac, row);
    }
    // Tagged before its first boot counts as expected too.
    let expected: Vec<MacAddr> = policy
        .reservations
        .keys()
        .chain(assignments.keys())
        .chain(state.tags.keys())
        .copied()
        .collect();
    for mac in expected {
        rows.entry(mac).or_insert_with(|| {
            let facts = NodeFacts {
                tags: state.tags_of(&mac),
                ..NodeFacts::mac_only(mac)
            };
            NodeRow {
                mac,
                state: None,
                seen: None,
                revoked: revoked.remove(&mac),
                assignment: assignment(&policy, &state, &assignments, &facts),
                tags: facts.tags,
            }
        });
    }
    Ok(NodeList {
        nodes: rows.into_values().collect(),
        kv: state.kv_status,
    })
}

/// `PUT /v1/nodes/MAC/profile`. The change is in the local file (in force)
/// before `sync` is asked to push it; the reply's `assignment.stored` says
/// whether it reached Consul KV, and `kv` why not.
pub fn assign(
    site: &SiteConfig,
    state_dir: &Path,
    mac: MacAddr,
    request: &AssignRequest,
    sync: Option<&AssignmentSync>,
) -> Result<AssignReply, NodeApiError> {
    let policy = ProfilePolicy::from_site(site);
    let profile = request.profile.as_deref();
    if let Some(p) = profile {
        if !policy.profiles.contains(p) {
            let known: Vec<&str> = policy.profiles.iter().map(String::as_str).collect();
            return Err(NodeApiError::FindProfile {
                profile: p.to_string(),
                known: known.join(", "),
            });
        }
    }
    let store = AssignmentStore::new(crate::assignments_file(state_dir));
    let previous = store.load().ok().and_then(|a| a.get(&mac).cloned());
    store
        .assign(mac, profile)
        .map_err(NodeApiError::WriteAssignment)?;
    if let Some(sync) = sync {
        let names: BTreeSet<String> = policy.profiles.clone();
        // A failure is recorded in the file's kv status and shown below: the
        // assignment itself is made (locally) either way.
        let _ = sync.sync_once(&names);
    }
    let state = store.load_state().unwrap_or_default();
    let assignments = state.effective();
    let kv = match &state.kv_status {
        Some(KvStatus::InUse) | None => None,
        Some(KvStatus::LocalOnly(why)) => Some(format!("kept locally only: {why}")),
        Some(KvStatus::Waiting(why)) => Some(format!(
            "kept locally, pushed to Consul KV when it can be: {why}"
        )),
    };
    let facts = facts_of(state_dir, &state, mac);
    Ok(AssignReply {
        mac,
        previous,
        assignment: assignment(&policy, &state, &assignments, &facts),
        kv,
    })
}

/// The body of `POST /v1/nodes/MAC/tags`.
pub fn parse_tag_request(body: &[u8]) -> Result<TagRequest, NodeApiError> {
    serde_json::from_slice(body).map_err(NodeApiError::ReadTagBody)
}

/// `POST /v1/nodes/MAC/tags`: sets and removes the operator's tags on a
/// node, in the assignments file (in force for the PXE service's next
/// request). Any MAC may be tagged, seen or not: a rack is known before
/// the node's first boot.
pub fn tag(
    site: &SiteConfig,
    state_dir: &Path,
    mac: MacAddr,
    request: &TagRequest,
) -> Result<TagReply, NodeApiError> {
    let store = AssignmentStore::new(crate::assignments_file(state_dir));
    let (previous, tags) = store
        .update(|state| change_tags(state, mac, &request.set, &request.unset))
        .map_err(NodeApiError::WriteAssignment)?
        .map_err(NodeApiError::Tag)?;
    let state = store.load_state().map_err(NodeApiError::LoadAssignments)?;
    let policy = ProfilePolicy::from_site(site);
    let facts = facts_of(state_dir, &state, mac);
    Ok(TagReply {
        mac,
        previous,
        tags,
        assignment: assignment(&policy, &state, &state.effective(), &facts),
    })
}

/// The body of `POST /v1/nodes/MAC/reprovision`: none, or `{}`.
pub fn parse_reprovision_request(body: &[u8]) -> Result<(), NodeApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Object(map)) if map.is_empty() => Ok(()),
        _ => Err(NodeApiError::ReprovisionBody),
    }
}

/// `POST /v1/nodes/MAC/reprovision`: re-arms the node's enrollment grant.
/// The request is recorded in `inventory/reprovision.json`; the PXE
/// service applies it before the node's next user-data fetch, which then
/// mints a fresh grant. The reply shows the grant and alerts of the cycle
/// that ends, as the PXE service last recorded them.
pub fn reprovision(
    site: &SiteConfig,
    state_dir: &Path,
    mac: MacAddr,
) -> Result<ReprovisionReply, NodeApiError> {
    let seen = read_nodes(&crate::nodes_file(state_dir)).map_err(NodeApiError::LoadNodes)?;
    let node = seen.into_iter().find(|n| n.mac == mac);
    if node.is_none() {
        let policy = ProfilePolicy::from_site(site);
        let assigned = AssignmentStore::new(crate::assignments_file(state_dir))
            .load()
            .map_err(NodeApiError::LoadAssignments)?;
        if !policy.reservations.contains_key(&mac) && !assigned.contains_key(&mac) {
            return Err(NodeApiError::FindNode(mac));
        }
    }
    let rearm = ReprovisionStore::in_state_dir(state_dir)
        .request(mac, kindling_clock::unix_ms())
        .map_err(NodeApiError::WriteReprovision)?;
    let (previous, alerts) = node.map_or((None, Vec::new()), |n| (n.seen.grant, n.seen.alerts));
    Ok(ReprovisionReply {
        mac,
        generation: rearm.generation,
        previous,
        alerts,
    })
}

/// `GET /v1/nodes/MAC`: the node's row of [`list`], or not found.
pub fn show(site: &SiteConfig, state_dir: &Path, mac: MacAddr) -> Result<NodeRow, NodeApiError> {
    list(site, state_dir)?
        .nodes
        .into_iter()
        .find(|row| row.mac == mac)
        .ok_or(NodeApiError::FindNode(mac))
}

/// The body of `POST /v1/nodes/MAC/forget`: none, or `{}`.
pub fn parse_forget_request(body: &[u8]) -> Result<(), NodeApiError> {
    parse_reprovision_request(body).map_err(|_| NodeApiError::ForgetBody)
}

/// `POST /v1/nodes/MAC/forget`: drops the node's runtime assignment (and
/// its Consul KV copy through `sync`) and its tags, and records the request in
/// `inventory/forget.json`, which the PXE service applies to its record
/// within a second. A MAC no list row names is not found.
pub fn forget(
    site: &SiteConfig,
    state_dir: &Path,
    mac: MacAddr,
    sync: Option<&AssignmentSync>,
) -> Result<ForgetReply, NodeApiError> {
    let row = show(site, state_dir, mac)?;
    let dropped_assignment = match &row.assignment.choice {
        ProfileChoice::Assigned(profile) => {
            let profile = profile.clone();
            assign(site, state_dir, mac, &AssignRequest { profile: None }, sync)?;
            Some(profile)
        }
        _ => None,
    };
    let dropped_tags = AssignmentStore::new(crate::assignments_file(state_dir))
        .update(|state| state.tags.remove(&mac))
        .map_err(NodeApiError::WriteAssignment)?
        .unwrap_or_default();
    let request = ForgetStore::in_state_dir(state_dir)
        .request(mac, kindling_clock::unix_ms())
        .map_err(NodeApiError::WriteForget)?;
    Ok(ForgetReply {
        mac,
        requested_ms: request.requested_ms,
        had_record: row.state.is_some(),
        dropped_assignment,
        dropped_tags,
        reserved_by_site: ProfilePolicy::from_site(site)
            .reservations
            .contains_key(&mac),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::testing::lab_site;
    use serde_json::json;

    /// Decodes and assigns the way kindlingd's handler does.
    fn put(
        site: &SiteConfig,
        dir: &Path,
        mac: &str,
        body: &[u8],
    ) -> Result<AssignReply, NodeApiError> {
        let mac = parse_mac(mac)?;
        let request = parse_assign_request(body)?;
        assign(site, dir, mac, &request, None)
    }

    #[test]
    fn assign_then_list() {
        let dir = tempfile::tempdir().unwrap();
        let site = lab_site();
        let body = list(&site, dir.path()).unwrap();
        assert_eq!(body.nodes.len(), 2, "the two lab reservations: {body:?}");

        let body = put(
            &site,
            dir.path(),
            "52-54-00-6B-00-99",
            br#"{"profile":"prod"}"#,
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&body.assignment).unwrap(),
            json!({"source": "assigned", "profile": "prod", "stored": "local"})
        );
        let body = serde_json::to_value(list(&site, dir.path()).unwrap()).unwrap();
        let row = body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["mac"] == "52:54:00:6b:00:99")
            .cloned()
            .unwrap();
        assert_eq!(row["assignment"]["profile"], "prod");

        let body = put(
            &site,
            dir.path(),
            "52:54:00:6b:00:99",
            br#"{"profile":null}"#,
        )
        .unwrap();
        let body = serde_json::to_value(body).unwrap();
        assert_eq!(body["previous"], "prod");
        assert_eq!(body["assignment"]["source"], "default");
    }

    fn tag(
        site: &SiteConfig,
        dir: &Path,
        mac: &str,
        body: &[u8],
    ) -> Result<TagReply, NodeApiError> {
        let mac = parse_mac(mac)?;
        let request = parse_tag_request(body)?;
        super::tag(site, dir, mac, &request)
    }

    #[test]
    fn tags_are_set_listed_shown_and_refused_when_bad() {
        let dir = tempfile::tempdir().unwrap();
        let site = lab_site();
        let reply = tag(
            &site,
            dir.path(),
            "52-54-00-6B-00-99",
            br#"{"set": {"rack": "r12", "gpu": "a100"}}"#,
        )
        .unwrap();
        assert!(reply.previous.is_empty());
        assert_eq!(reply.tags.len(), 2);
        let mac = parse_mac("52:54:00:6b:00:99").unwrap();
        // Tagged before its first boot: listed as expected, with its tags.
        let row = show(&site, dir.path(), mac).unwrap();
        assert_eq!(row.state, None);
        assert_eq!(row.tags["rack"], "r12");
        let value = serde_json::to_value(&row).unwrap();
        assert_eq!(value["tags"], json!({"gpu": "a100", "rack": "r12"}));

        let reply = tag(
            &site,
            dir.path(),
            "52:54:00:6b:00:99",
            br#"{"unset": ["gpu"]}"#,
        )
        .unwrap();
        assert_eq!(reply.previous.len(), 2);
        assert_eq!(
            serde_json::to_value(&reply.tags).unwrap(),
            json!({"rack": "r12"})
        );

        for (body, named) in [
            (&br#"{"set": {"Rack": "r1"}}"#[..], "tag key \"Rack\""),
            (br#"{"set": {"os": "a b"}}"#, "tag \"os\": value \"a b\""),
            (br#"{"unset": ["-x"]}"#, "tag key \"-x\""),
            (br#"{"tags": {}}"#, "unknown field"),
            (b"[", "body must be"),
        ] {
            let e = tag(&site, dir.path(), "52:54:00:6b:00:99", body).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::BadRequest, "{e}");
            assert!(e.to_string().contains(named), "{named}: {e}");
        }
        let e = tag(&site, dir.path(), "nope", br#"{"set": {}}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest);
        // Refused requests changed nothing.
        assert_eq!(
            serde_json::to_value(show(&site, dir.path(), mac).unwrap().tags).unwrap(),
            json!({"rack": "r12"})
        );
        // Forget drops them; nothing names the MAC any more.
        let reply = forget(&site, dir.path(), mac, None).unwrap();
        assert_eq!(
            serde_json::to_value(&reply.dropped_tags).unwrap(),
            json!({"rack": "r12"})
        );
        assert_eq!(
            show(&site, dir.path(), mac).unwrap_err().kind(),
            ErrorKind::NotFound
        );
    }

    #[test]
    fn reprovision_counts_requests_for_nodes_it_knows() {
        let dir = tempfile::tempdir().unwrap();
        let site = lab_site();
        let dev = parse_mac("52:54:00:6b:00:10").unwrap();
        assert_eq!(reprovision(&site, dir.path(), dev).unwrap().generation, 1);
        let reply = reprovision(&site, dir.path(), dev).unwrap();
        assert_eq!((reply.generation, reply.previous), (2, None));
        let stranger = parse_mac("02:00:00:00:00:01").unwrap();
        let e = reprovision(&site, dir.path(), stranger).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("never seen"), "{e}");
        assert!(parse_reprovision_request(b"").is_ok());
        assert!(parse_reprovision_request(b" {} ").is_ok());
        let e = parse_reprovision_request(br#"{"force": true}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest);
    }

    #[test]
    fn bad_input_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let site = lab_site();
        let e = put(&site, dir.path(), "nope", br#"{"profile":"dev"}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest);
        assert!(e.to_string().contains("invalid MAC"), "{e}");
        let e = put(
            &site,
            dir.path(),
            "52:54:00:6b:00:99",
            br#"{"profile":"gpu"}"#,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest);
        assert!(e.to_string().contains("known profiles: dev, prod"), "{e}");
        let e = put(&site, dir.path(), "52:54:00:6b:00:99", b"{").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest);
        let e = put(&site, dir.path(), "52:54:00:6b:00:99", br#"{"profile":3}"#).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BadRequest);
    }

    #[test]
    fn forget_drops_the_assignment_records_the_request_and_refuses_strangers() {
        let dir = tempfile::tempdir().unwrap();
        let site = lab_site();
        let mac = parse_mac("52:54:00:6b:00:99").unwrap();
        put(
            &site,
            dir.path(),
            "52:54:00:6b:00:99",
            br#"{"profile":"prod"}"#,
        )
        .unwrap();
        assert_eq!(show(&site, dir.path(), mac).unwrap().mac, mac);
        let reply = forget(&site, dir.path(), mac, None).unwrap();
        assert_eq!(reply.dropped_assignment.as_deref(), Some("prod"));
        assert!(!reply.had_record && !reply.reserved_by_site, "{reply:?}");
        let recorded = ForgetStore::in_state_dir(dir.path()).load().unwrap();
        assert_eq!(recorded[&mac].requested_ms, reply.requested_ms);
        // Nothing names it any more: not found, and nothing written.
        assert_eq!(
            show(&site, dir.path(), mac).unwrap_err().kind(),
            ErrorKind::NotFound
        );
        let e = forget(&site, dir.path(), mac, None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(
            ForgetStore::in_state_dir(dir.path()).load().unwrap()[&mac].count,
            1
        );
        // A site reservation stays listed as expected.
        let dev = parse_mac("52:54:00:6b:00:10").unwrap();
        assert!(
            forget(&site, dir.path(), dev, None)
                .unwrap()
                .reserved_by_site
        );
        assert!(parse_forget_request(b"{}").is_ok());
        assert_eq!(
            parse_forget_request(br#"{"all": true}"#)
                .unwrap_err()
                .kind(),
            ErrorKind::BadRequest
        );
    }
}
