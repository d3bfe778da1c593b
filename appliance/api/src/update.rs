//! `POST /v1/update` and `GET /v1/update`: pushing a signed update bundle
//! (`.kupd`, the request body as is, `application/octet-stream`) and
//! following what the update agent did with it.
//!
//! The push is answered once the bundle is whole in the appliance's update
//! spool (202 with [`PushAccepted`]); the update agent then verifies,
//! stages and arms it, and reports in its status file, shown here as
//! `agent` (`push.upload` names the upload, `push.state` is `staging`,
//! `armed` or `refused` with `push.detail` saying why).
//!
//! `POST /v1/update/poll` asks the agent to check the site's channel now
//! (`{"apply_now": true}`: and apply what it offers at once, window or
//! not); its progress is the agent's `poll` (`state`, `detail`,
//! `downloaded` of `total` bytes, `window_opens`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `POST /v1/update` once the bundle is in the spool (HTTP 202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PushAccepted {
    /// The upload's id (the first 16 hex digits of its sha256): the
    /// agent's `push.upload` once it takes it.
    pub upload: String,
    pub bytes: u64,
    pub sha256: String,
}

/// `GET /v1/update`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct UpdateView {
    /// The update agent's status file (`status/update.json`): mode,
    /// booted entry, version, floor, refused versions, last result and the
    /// last push; absent when no agent runs on this boot (ISO, PXE).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<Value>,
    /// An upload waiting in the spool for the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// A poll request (`POST /v1/update/poll`) the agent has not taken yet.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub poll_requested: bool,
}

/// `POST /v1/update/poll` body (none, or `{}`, is a check).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PollRequestBody {
    /// Apply what the channel offers at once, outside the site's
    /// maintenance window too (the appliance reboots into it).
    #[serde(default)]
    pub apply_now: bool,
}

/// `POST /v1/update/poll` once the request is left for the agent (HTTP 202).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PollAccepted {
    /// The channel the site follows.
    pub channel: String,
    pub apply_now: bool,
}
