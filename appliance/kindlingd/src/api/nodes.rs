//! Handlers for `GET /v1/nodes`, `GET /v1/nodes/MAC`,
//! `PUT /v1/nodes/MAC/profile`, `POST /v1/nodes/MAC/tags`,
//! `POST /v1/nodes/MAC/reprovision` and `POST /v1/nodes/MAC/forget`. The logic
//! lives in `kindling_inventory::node_api`, which returns the contract types
//! of `kindling_api::nodes` or an error with its kind; this file only finds
//! the effective site config (`run_dir/site.json`) and the data partition
//! (`state_dir`), decodes the request and turns the result into a [`Reply`].
//!
//! An assignment is written to `state_dir/inventory/assignments.json` (the
//! running PXE service applies it to the node's next request, no restart),
//! then pushed to Consul KV by the API's assignment sync when the stack's
//! Consul is in use. A re-arm is written to
//! `state_dir/inventory/reprovision.json`; the PXE service applies it before
//! the node's next user-data fetch. A forget request is written to
//! `state_dir/inventory/forget.json`; the PXE service drops the node's
//! record within a second.

use super::Reply;
use kindling_api::ErrorKind;
use kindling_inventory::{node_api, AssignmentSync};
use kindling_site::{MacAddr, SiteConfig};
use std::path::Path;

pub(super) fn site(run_dir: &Path) -> Result<SiteConfig, Reply> {
    use kindling_site::effective::{in_run_dir, load, LoadEffectiveError};
    load(&in_run_dir(run_dir)).map_err(|e| match e {
        LoadEffectiveError::Read { .. } => Reply::failed(
            ErrorKind::Unavailable,
            format!("{e} (config not applied yet?)"),
        ),
        LoadEffectiveError::Parse { .. } => Reply::failed(ErrorKind::Internal, e),
    })
}

/// The MAC of a `/v1/nodes/MAC/…` path and the effective site config.
fn mac_and_site(run_dir: &Path, mac: &str) -> Result<(MacAddr, SiteConfig), Reply> {
    let mac = node_api::parse_mac(mac).map_err(|e| Reply::failure(&e))?;
    Ok((mac, site(run_dir)?))
}

/// `GET /v1/nodes`.
pub fn list(run_dir: &Path, state_dir: &Path) -> Reply {
    let site = match site(run_dir) {
        Ok(site) => site,
        Err(reply) => return reply,
    };
    match node_api::list(&site, state_dir) {
        Ok(body) => Reply::body(&body),
        Err(e) => Reply::failure(&e),
    }
}

/// `PUT /v1/nodes/MAC/profile` with body `{"profile": "NAME"}` or `{"profile": null}`.
pub fn assign(
    run_dir: &Path,
    state_dir: &Path,
    mac: &str,
    body: &[u8],
    sync: Option<&AssignmentSync>,
) -> Reply {
    let (mac, site) = match mac_and_site(run_dir, mac) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let reply = node_api::parse_assign_request(body)
        .and_then(|request| node_api::assign(&site, state_dir, mac, &request, sync));
    match reply {
        Ok(body) => Reply::body(&body),
        Err(e) => Reply::failure(&e),
    }
}

/// `POST /v1/nodes/MAC/tags` with body `{"set": {"KEY": "VALUE"}, "unset":
/// ["KEY"]}`: changes the operator's tags on the node, kept in
/// `state_dir/inventory/assignments.json` beside the assignments (the PXE
/// service's next request sees them); logged with the operator.
pub fn tag(run_dir: &Path, state_dir: &Path, mac: &str, body: &[u8], operator: &str) -> Reply {
    let (mac, site) = match mac_and_site(run_dir, mac) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let result = node_api::parse_tag_request(body)
        .and_then(|request| node_api::tag(&site, state_dir, mac, &request));
    if let Ok(reply) = &result {
        tracing::info!(
            %mac,
            operator,
            tags = %kindling_site::tags::display(&reply.tags),
            "node tags changed"
        );
    }
    Reply::result(result)
}

/// `POST /v1/nodes/MAC/reprovision` (no body, or `{}`): re-arms the node's
/// enrollment grant.
pub fn reprovision(run_dir: &Path, state_dir: &Path, mac: &str, body: &[u8]) -> Reply {
    let (mac, site) = match mac_and_site(run_dir, mac) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    Reply::result(
        node_api::parse_reprovision_request(body)
            .and_then(|()| node_api::reprovision(&site, state_dir, mac)),
    )
}

/// `GET /v1/nodes/MAC`: one row of the list, 404 for a MAC nothing names.
pub fn show(run_dir: &Path, state_dir: &Path, mac: &str) -> Reply {
    let (mac, site) = match mac_and_site(run_dir, mac) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    Reply::result(node_api::show(&site, state_dir, mac))
}

/// `POST /v1/nodes/MAC/forget` (no body, or `{}`): drops the node's
/// runtime assignment and tags and records the request; logged with the operator.
pub fn forget(
    run_dir: &Path,
    state_dir: &Path,
    mac: &str,
    body: &[u8],
    sync: Option<&AssignmentSync>,
    operator: &str,
) -> Reply {
    let (mac, site) = match mac_and_site(run_dir, mac) {
        Ok(found) => found,
        Err(reply) => return reply,
    };
    let result = node_api::parse_forget_request(body)
        .and_then(|()| node_api::forget(&site, state_dir, mac, sync));
    if let Ok(reply) = &result {
        tracing::info!(
            %mac,
            operator,
            dropped_assignment = reply.dropped_assignment.as_deref().unwrap_or("-"),
            "node forgotten"
        );
    }
    Reply::result(result)
}
