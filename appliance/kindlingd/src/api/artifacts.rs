//! Handlers for the artifact store (`kindling_artifacts`): `POST
//! /v1/artifacts?name=NAME[&sha256=HEX]` (admin; the file as the body,
//! streamed to the data partition, never held whole), `GET /v1/artifacts`
//! (read) and `DELETE /v1/artifacts/sha256/HEX` (admin).
//!
//! The API only writes the store; the PXE HTTP service serves it to the
//! LAN at `/by-hash/sha256/HEX`. What is refused before a byte of the body
//! is read: a bad query, a declared length over the limit, a data
//! partition without the room to keep free, more than two uploads at
//! once. The file's writes and its sync run on the blocking pool, fed
//! chunk by chunk, so a large upload never stalls the runtime's other
//! requests.

use super::logs::percent_decode;
use super::{ApiPaths, Reply};
use http_body_util::BodyExt;
use hyper::body::{Body as _, Bytes, Incoming};
use kindling_api::artifacts::{ArtifactDeleted, ArtifactInfo, ArtifactList, ArtifactPushed};
use kindling_api::ErrorKind;
use kindling_artifacts::{
    Artifact, ArtifactStore, Receiver, Sha256Hex, StoreError, Stored, UploadRequest,
};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Longest wait for the next part of the upload.
const BODY_STALL: Duration = Duration::from_secs(30);
/// Uploads at once: each holds one of the API's four blocking threads for
/// as long as it streams, and the other handlers need the rest.
const MAX_UPLOADS: usize = 2;

static UPLOADS: AtomicUsize = AtomicUsize::new(0);

/// One upload's place among [`MAX_UPLOADS`]; dropping it frees it.
struct UploadSlot;

impl UploadSlot {
    fn take() -> Option<Self> {
        UPLOADS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_UPLOADS).then_some(n + 1)
            })
            .ok()
            .map(|_| Self)
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        UPLOADS.fetch_sub(1, Ordering::AcqRel);
    }
}
/// Chunks in flight between the connection and the writer.
const CHUNKS_IN_FLIGHT: usize = 16;

fn store(paths: &ApiPaths) -> ArtifactStore {
    ArtifactStore::new(&paths.state_dir)
}

fn info(a: Artifact) -> ArtifactInfo {
    ArtifactInfo {
        path: format!("/by-hash/sha256/{}", a.sha256),
        uploaded: kindling_clock::rfc3339(a.uploaded_unix),
        sha256: a.sha256,
        name: a.name,
        bytes: a.bytes,
        uploaded_by: a.uploaded_by,
    }
}

fn failure(e: &StoreError) -> Reply {
    Reply::failure(e)
}

/// `GET /v1/artifacts`.
pub fn list(paths: &ApiPaths) -> Reply {
    let store = store(paths);
    match store.list() {
        Ok(artifacts) => Reply::body(&ArtifactList {
            artifacts: artifacts.into_iter().map(info).collect(),
            max_bytes: store.limits.max_bytes,
            keep_free_bytes: store.limits.keep_free,
        }),
        Err(e) => failure(&e),
    }
}

/// `DELETE /v1/artifacts/sha256/HEX`.
pub fn delete(paths: &ApiPaths, hex: &str) -> Reply {
    let deleted = hex
        .parse::<Sha256Hex>()
        .and_then(|digest| store(paths).delete(&digest));
    match deleted {
        Ok(artifact) => Reply::body(&ArtifactDeleted {
            deleted: info(artifact),
        }),
        Err(e) => failure(&e),
    }
}

/// The push's query: `name` (required), `sha256` (optional).
#[derive(Debug, PartialEq)]
struct PushQuery {
    name: String,
    expected: Option<Sha256Hex>,
}

fn parse_query(query: &str) -> Result<PushQuery, Reply> {
    let bad = |m: String| Reply::failed(ErrorKind::BadRequest, m);
    let (mut name, mut expected) = (None, None);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(raw).ok_or_else(|| bad(format!("{key}: bad %-escape")))?;
        match key {
            "name" => name = Some(value),
            "sha256" => expected = Some(value.parse::<Sha256Hex>().map_err(|e| failure(&e))?),
            other => return Err(bad(format!("unknown parameter {other:?} (name, sha256)"))),
        }
    }
    let name = name.ok_or_else(|| {
        bad("name=FILE is required: the file name the artifact is listed under".into())
    })?;
    Ok(PushQuery { name, expected })
}

/// What the connection hands the writer.
enum Chunk {
    Data(Bytes),
    End,
}

/// `POST /v1/artifacts`: 201 with the record when new, 200 when the same
/// bytes were kept already; nothing is kept on any refusal.
pub async fn push(paths: &ApiPaths, mut body: Incoming, query: &str, operator: &str) -> Reply {
    let query = match parse_query(query) {
        Ok(q) => q,
        Err(reply) => return reply,
    };
    let Some(_slot) = UploadSlot::take() else {
        return Reply::failed(
            ErrorKind::Unavailable,
            format!("{MAX_UPLOADS} artifact uploads are running; push again when one is done"),
        );
    };
    let store = store(paths);
    let declared = body.size_hint().exact();
    let uploaded_by = operator.to_string();
    let begun = tokio::task::spawn_blocking(move || {
        Receiver::begin(
            &store,
            UploadRequest {
                name: &query.name,
                expected: query.expected.as_ref(),
                uploaded_by: &uploaded_by,
                declared,
            },
        )
    })
    .await;
    let receiver = match begun {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return failure(&e),
        Err(e) => return Reply::failed(ErrorKind::Internal, format!("starting the upload: {e}")),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(CHUNKS_IN_FLIGHT);
    let writer = tokio::task::spawn_blocking(move || write_all(receiver, rx));
    let refusal = feed(&mut body, &tx).await;
    drop(tx);
    let written = writer.await;
    if let Some(reply) = refusal {
        return reply;
    }
    match written {
        Ok(Some(Ok(Stored { artifact, created }))) => {
            let status = if created { 201 } else { 200 };
            Reply::body(&ArtifactPushed {
                artifact: info(artifact),
                created,
            })
            .with_status(status)
        }
        Ok(Some(Err(e))) => failure(&e),
        Ok(None) | Err(_) => Reply::failed(
            ErrorKind::Internal,
            "the upload's writer stopped; nothing was kept",
        ),
    }
}

/// Sends the body's chunks to the writer, then `End`; the refusal when the
/// body fails (the writer then sees the channel close and keeps nothing).
/// A writer that stopped (it refused) ends the feed: its error is the answer.
async fn feed(body: &mut Incoming, tx: &tokio::sync::mpsc::Sender<Chunk>) -> Option<Reply> {
    loop {
        let frame = match tokio::time::timeout(BODY_STALL, body.frame()).await {
            Err(_) => {
                return Some(Reply::failed(
                    ErrorKind::BadRequest,
                    format!("the upload stalled for {BODY_STALL:?}; nothing was kept"),
                ))
            }
            Ok(None) => {
                let _ = tx.send(Chunk::End).await;
                return None;
            }
            Ok(Some(Err(e))) => {
                return Some(Reply::failed(
                    ErrorKind::BadRequest,
                    format!("reading the upload: {e}; nothing was kept"),
                ))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if tx.send(Chunk::Data(data)).await.is_err() {
                return None;
            }
        }
    }
}

/// The writer's side: `None` when the body ended without `End` (refused
/// or gone), so the receiver is dropped and nothing is kept.
fn write_all(
    mut receiver: Receiver,
    mut rx: tokio::sync::mpsc::Receiver<Chunk>,
) -> Option<Result<Stored, StoreError>> {
    loop {
        match rx.blocking_recv()? {
            Chunk::Data(bytes) => {
                if let Err(e) = receiver.write(&bytes) {
                    return Some(Err(e));
                }
            }
            Chunk::End => return Some(receiver.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_two_uploads_run_at_once() {
        let (a, b) = (UploadSlot::take(), UploadSlot::take());
        assert!(a.is_some() && b.is_some());
        assert!(UploadSlot::take().is_none(), "a third waits");
        drop(a);
        assert!(UploadSlot::take().is_some(), "a place was freed");
    }

    #[test]
    fn the_query_names_the_file_and_may_state_its_hash() {
        let hex = "ab".repeat(32);
        let q = parse_query(&format!("name=debian%2012.iso&sha256={hex}")).unwrap_or_else(|r| {
            panic!("{}", r.body);
        });
        assert_eq!(q.name, "debian 12.iso");
        assert_eq!(q.expected.map(|d| d.to_string()), Some(hex));
        for (query, needle) in [
            ("", "name=FILE is required"),
            ("name=a&x=1", "unknown parameter"),
            ("name=a&sha256=abc", "not a sha256"),
            ("name=%zz", "bad %-escape"),
        ] {
            match parse_query(query) {
                Ok(q) => panic!("{query}: {q:?}"),
                Err(reply) => {
                    assert_eq!(reply.status, 400, "{query}");
                    let text = reply.body["error"].as_str().unwrap_or_default().to_string();
                    assert!(text.contains(needle), "{query}: {text}");
                }
            }
        }
    }
}
