//! Handlers for `POST /v1/update` (a bundle pushed as the request body)
//! and `GET /v1/update` (what the update agent did with it).
//!
//! The API never writes the EFI system partition: it streams the body into
//! the update spool on the data partition (`kindling_update::spool`, kl-api
//! may write there as a member of kl-upspool) and answers 202 once the
//! bundle is whole there; the update agent (kl-update) verifies, stages,
//! arms and asks init to reboot. What is refused before a byte is written:
//! no agent on this boot, a running slot that is not blessed, a push still
//! in progress, a declared length over the bound.
//!
//! `POST /v1/update/poll` (admin) leaves a request for the agent to check
//! the site's channel now, and with `apply_now` to apply what it offers
//! outside the maintenance window too: one word in a file in the same
//! spool, never a fetch or a slot write by the API itself.

use super::{ApiPaths, Reply};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Incoming};
use kindling_api::update::{PollAccepted, PollRequestBody, PushAccepted, UpdateView};
use kindling_api::ErrorKind;
use kindling_update::spool::{self, PollRequest, Receiver, SpoolError, MAX_UPLOAD};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// Longest wait for the next part of the upload.
const BODY_STALL: Duration = Duration::from_secs(30);

fn spool_dir(paths: &ApiPaths) -> PathBuf {
    paths.state_dir.join(spool::SPOOL_DIR)
}

fn agent_status(paths: &ApiPaths) -> Option<Value> {
    let bytes = std::fs::read(paths.run_dir.join("status/update.json")).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `GET /v1/update`.
pub fn view(paths: &ApiPaths) -> Reply {
    Reply::body(&UpdateView {
        agent: agent_status(paths),
        waiting: spool::pending(&spool_dir(paths)).map(|u| u.id),
        poll_requested: spool::poll_requested(&spool_dir(paths)),
    })
}

/// `POST /v1/update/poll`: refused when no agent runs or the site names
/// no channel; otherwise the request is left in the spool (202).
pub fn request_poll(paths: &ApiPaths, body: &[u8]) -> Reply {
    let request: PollRequestBody = if body.iter().all(u8::is_ascii_whitespace) {
        PollRequestBody::default()
    } else {
        match serde_json::from_slice(body) {
            Ok(request) => request,
            Err(e) => {
                return Reply::failed(
                    ErrorKind::BadRequest,
                    format!("the body is not {{\"apply_now\": true|false}}: {e}"),
                )
            }
        }
    };
    if agent_status(paths).is_none() {
        return Reply::failed(ErrorKind::Unavailable, NO_AGENT);
    }
    let site =
        kindling_site::effective::load(&kindling_site::effective::in_run_dir(&paths.run_dir));
    let Some(channel) = site.ok().and_then(|s| s.update.channel) else {
        return Reply::failed(
            ErrorKind::Conflict,
            "the site names no update channel ([update] channel, url and window in site.toml): there is nothing to poll; push a bundle instead",
        );
    };
    let word = if request.apply_now {
        PollRequest::ApplyNow
    } else {
        PollRequest::Check
    };
    match spool::request_poll(&spool_dir(paths), word) {
        Ok(()) => Reply::body(&PollAccepted {
            channel,
            apply_now: request.apply_now,
        })
        .with_status(202),
        Err(e) => spool_failure(&e),
    }
}

const NO_AGENT: &str = "no update agent runs on this boot: the appliance did not start from a disk's A/B slots (ISO, PXE or a direct kernel), so there is no slot to update";

/// Whether the agent can take a push now; the refusal otherwise.
fn ready(paths: &ApiPaths) -> Result<(), Reply> {
    let Some(agent) = agent_status(paths) else {
        return Err(Reply::failed(ErrorKind::Unavailable, NO_AGENT));
    };
    let mode = agent["mode"].as_str().unwrap_or("unknown");
    if mode != "blessed" {
        return Err(Reply::failed(
            ErrorKind::Conflict,
            format!(
                "the running slot is {mode} ({}): an update is taken only once the running slot passed its health gate",
                agent["detail"].as_str().unwrap_or_default()
            ),
        ));
    }
    if agent["push"]["state"] == "staging" || agent["push"]["state"] == "armed" {
        return Err(Reply::failed(
            ErrorKind::Conflict,
            format!(
                "update {} is {} already",
                agent["push"]["upload"].as_str().unwrap_or_default(),
                agent["push"]["state"].as_str().unwrap_or_default()
            ),
        ));
    }
    Ok(())
}

fn spool_failure(e: &SpoolError) -> Reply {
    let kind = match e {
        SpoolError::Busy(_) => ErrorKind::Conflict,
        SpoolError::TooLarge => ErrorKind::TooLarge,
        SpoolError::NotABundle(_) | SpoolError::Empty => ErrorKind::BadRequest,
        SpoolError::Io { .. } => ErrorKind::Internal,
    };
    Reply::failed(kind, e)
}

/// `POST /v1/update`: the body streamed into the spool, never held whole.
/// Writes are small and go to the page cache; the one sync at the end
/// runs on the blocking pool.
pub async fn push(paths: &ApiPaths, mut body: Incoming) -> Reply {
    if let Err(refusal) = ready(paths) {
        return refusal;
    }
    if body.size_hint().lower() > MAX_UPLOAD {
        return spool_failure(&SpoolError::TooLarge);
    }
    let mut receiver = match Receiver::begin(&spool_dir(paths)) {
        Ok(r) => r,
        Err(e) => return spool_failure(&e),
    };
    loop {
        let frame = match tokio::time::timeout(BODY_STALL, body.frame()).await {
            Err(_) => {
                return Reply::failed(
                    ErrorKind::BadRequest,
                    format!("the upload stalled for {BODY_STALL:?}; nothing was kept"),
                )
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Reply::failed(
                    ErrorKind::BadRequest,
                    format!("reading the upload: {e}; nothing was kept"),
                )
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if let Err(e) = receiver.write(&data) {
                return spool_failure(&e);
            }
        }
    }
    match tokio::task::spawn_blocking(move || receiver.finish()).await {
        Ok(Ok(upload)) => Reply::body(&PushAccepted {
            upload: upload.id,
            bytes: upload.bytes,
            sha256: upload.sha256,
        })
        .with_status(202),
        Ok(Err(e)) => spool_failure(&e),
        Err(e) => Reply::failed(ErrorKind::Internal, format!("finishing the upload: {e}")),
    }
}
