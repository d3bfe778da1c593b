//! `GET /healthz`: whether `kindlingd api` is up. Public by design, so it
//! must never carry a secret, the inventory or anything about the site.

use serde::{Deserialize, Serialize};

/// The whole answer: `{"status": "ok"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Health {
    pub status: HealthState,
}

/// Only `ok` today: a process that answers at all is up. A failing
/// dependency belongs in `/v1/status`, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthState {
    Ok,
}

impl Health {
    pub fn ok() -> Self {
        Self {
            status: HealthState::Ok,
        }
    }
}
