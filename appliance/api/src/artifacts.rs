//! `POST /v1/artifacts?name=NAME[&sha256=HEX]` (the file as the request
//! body, `application/octet-stream`), `GET /v1/artifacts` and `DELETE
//! /v1/artifacts/sha256/HEX`: files an operator keeps on the appliance's
//! data partition for nodes, content-addressed by sha256 and served to the
//! LAN at `/by-hash/sha256/HEX` by the PXE HTTP service (Range and HEAD).
//!
//! A push stating `sha256` whose bytes hash otherwise is refused (422,
//! naming both) with nothing kept; the same bytes pushed again are 200
//! with the first push's record, a new artifact is 201.

use serde::{Deserialize, Serialize};

/// One stored artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArtifactInfo {
    /// Lowercase hex: the artifact's name on the wire.
    pub sha256: String,
    /// The file name it was first pushed as (empty when its record is lost).
    pub name: String,
    pub bytes: u64,
    /// When it was first pushed, RFC 3339.
    pub uploaded: String,
    /// The operator who first pushed it (empty when its record is lost).
    pub uploaded_by: String,
    /// Where nodes fetch it on the PXE HTTP service: `/by-hash/sha256/HEX`.
    pub path: String,
}

/// `POST /v1/artifacts` answer: 201 when new, 200 when the same bytes
/// were already kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArtifactPushed {
    pub artifact: ArtifactInfo,
    /// False when the same bytes were already kept (the first record stands).
    pub created: bool,
}

/// `GET /v1/artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArtifactList {
    /// Oldest push first.
    pub artifacts: Vec<ArtifactInfo>,
    /// The largest artifact the appliance takes.
    pub max_bytes: u64,
    /// Free space a push must leave on the data partition.
    pub keep_free_bytes: u64,
}

/// `DELETE /v1/artifacts/sha256/HEX` answer: what was removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ArtifactDeleted {
    pub deleted: ArtifactInfo,
}
