//! `GET /v1/stack`: the HashiCorp stack bootstrap's progress, one entry per
//! step. Never holds a secret: details are fixed phrases and error messages.

use serde::{Deserialize, Serialize};

/// The bootstrap as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StackStatus {
    pub state: OverallState,
    pub steps: Vec<StepStatus>,
    /// Total time of this bootstrap run so far.
    pub elapsed_ms: u64,
    pub updated_unix: u64,
    /// Where the encrypted init secrets can be fetched, once they exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_secrets: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OverallState {
    Running,
    Waiting,
    Ready,
    Failed,
}

/// One bootstrap step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StepStatus {
    pub name: String,
    pub state: StepState,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Pending,
    Running,
    /// Did the work in this run.
    Done,
    /// Found the work already done (a resumed or warm boot).
    AlreadyDone,
    /// Needs something outside kindling (operator unseal shares).
    Waiting,
    Failed,
    /// The service this step is for is not enabled by the site.
    Skipped,
}
