//! The JSON Schemas of the API's bodies, generated from the types so they
//! cannot drift; the shipped copies live in the repository's `schema/api/`
//! directory (a test checks they match). One entry per body type: a new
//! endpoint's types get a line in [`schema_files`].

use kindling_site::schema::{file_text, titled};
use schemars::JsonSchema;

fn schema_of<T: JsonSchema>(title: &str) -> String {
    file_text(&titled::<T>(title))
}

/// The shipped files: `(file name under schema/api/, pretty JSON with a
/// trailing newline)`.
pub fn schema_files() -> Vec<(&'static str, String)> {
    use crate::{
        artifacts, auth, backups, health, logs, nodes, overlays, stack, status, update, vault,
        ErrorBody,
    };
    vec![
        (
            "error.schema.json",
            schema_of::<ErrorBody>("kindling API error body"),
        ),
        (
            "healthz.schema.json",
            schema_of::<health::Health>("GET /healthz"),
        ),
        (
            "status.schema.json",
            schema_of::<status::Status>("GET /v1/status"),
        ),
        (
            "whoami.schema.json",
            schema_of::<auth::WhoAmI>("GET /v1/whoami"),
        ),
        (
            "services.schema.json",
            schema_of::<status::ServiceList>("GET /v1/services"),
        ),
        (
            "restart.schema.json",
            schema_of::<status::RestartAccepted>("POST /v1/services/NAME/restart"),
        ),
        (
            "update-push-reply.schema.json",
            schema_of::<update::PushAccepted>("POST /v1/update answer"),
        ),
        (
            "update-poll-request.schema.json",
            schema_of::<update::PollRequestBody>("POST /v1/update/poll body"),
        ),
        (
            "update-poll-reply.schema.json",
            schema_of::<update::PollAccepted>("POST /v1/update/poll answer"),
        ),
        (
            "backup-requested.schema.json",
            schema_of::<backups::BackupRequested>("POST /v1/backups answer"),
        ),
        (
            "backups.schema.json",
            schema_of::<backups::BackupList>("GET /v1/backups"),
        ),
        (
            "backup-restore-staged.schema.json",
            schema_of::<backups::RestoreStaged>("POST /v1/backups/restore answer"),
        ),
        (
            "artifacts.schema.json",
            schema_of::<artifacts::ArtifactList>("GET /v1/artifacts"),
        ),
        (
            "artifact-push-reply.schema.json",
            schema_of::<artifacts::ArtifactPushed>("POST /v1/artifacts answer"),
        ),
        (
            "artifact-delete-reply.schema.json",
            schema_of::<artifacts::ArtifactDeleted>("DELETE /v1/artifacts/sha256/HEX answer"),
        ),
        (
            "update.schema.json",
            schema_of::<update::UpdateView>("GET /v1/update"),
        ),
        (
            "config-report.schema.json",
            schema_of::<overlays::Report>("GET /v1/config/report"),
        ),
        (
            "config-effective.schema.json",
            schema_of::<overlays::Effective>("GET /v1/config/effective"),
        ),
        (
            "overlays.schema.json",
            schema_of::<overlays::OverlayList>("GET /v1/overlays"),
        ),
        (
            "overlay-push-request.schema.json",
            schema_of::<overlays::PushRequest>("POST /v1/overlays request"),
        ),
        (
            "overlay-push-reply.schema.json",
            schema_of::<overlays::PushReply>("POST /v1/overlays answer"),
        ),
        (
            "nodes.schema.json",
            schema_of::<nodes::NodeList>("GET /v1/nodes"),
        ),
        (
            "node-assign-request.schema.json",
            schema_of::<nodes::AssignRequest>("PUT /v1/nodes/MAC/profile request"),
        ),
        (
            "node-assign-reply.schema.json",
            schema_of::<nodes::AssignReply>("PUT /v1/nodes/MAC/profile answer"),
        ),
        (
            "node-reprovision-reply.schema.json",
            schema_of::<nodes::ReprovisionReply>("POST /v1/nodes/MAC/reprovision answer"),
        ),
        (
            "node.schema.json",
            schema_of::<nodes::NodeRow>("GET /v1/nodes/MAC"),
        ),
        (
            "node-tag-request.schema.json",
            schema_of::<nodes::TagRequest>("POST /v1/nodes/MAC/tags request"),
        ),
        (
            "node-tag-reply.schema.json",
            schema_of::<nodes::TagReply>("POST /v1/nodes/MAC/tags answer"),
        ),
        (
            "node-forget-reply.schema.json",
            schema_of::<nodes::ForgetReply>("POST /v1/nodes/MAC/forget answer"),
        ),
        (
            "logs.schema.json",
            schema_of::<logs::LogList>("GET /v1/logs"),
        ),
        (
            "log-lines.schema.json",
            schema_of::<logs::LogLines>("GET /v1/logs/SERVICE"),
        ),
        (
            "stack.schema.json",
            schema_of::<stack::StackStatus>("GET /v1/stack"),
        ),
        (
            "unseal-request.schema.json",
            schema_of::<vault::UnsealRequest>("POST /v1/vault/unseal request"),
        ),
        (
            "unseal-reply.schema.json",
            schema_of::<vault::UnsealProgress>("POST /v1/vault/unseal answer"),
        ),
        (
            "init-secrets.schema.json",
            schema_of::<vault::InitSecrets>("GET /v1/vault/init-secrets"),
        ),
    ]
}
