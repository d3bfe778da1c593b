//! Runtime MAC → profile assignments in Consul KV, next to the keys the
//! bootstrap mirrors from the overlay (`kindling/profiles/<name>`,
//! `kindling/nodes/<mac>`):
//!
//! - `kindling/assignments/<mac>` = a profile name, plain text, the MAC
//!   lower-case with colons (so `consul kv put
//!   kindling/assignments/52:54:00:6b:00:10 prod` works). The entry's Flags
//!   carry the writer's change time in Unix ms; 0 when the writer set none.
//! - `kindling/assignments-epoch` names this KV copy; it goes missing only
//!   if Consul's data was lost or replaced, and the sync then re-seeds KV.
//!
//! Owns that layout, the least-privilege Consul token that may write those
//! keys and read the catalog's node entries (made by the bootstrap,
//! recorded in Vault, with a 0600 copy on the data partition for `kindlingd
//! api`, which also runs the catalog check with it) and a blocking client
//! for them. The
//! merge rules live with the local copy (kindling-inventory `sync`).
//! Must never log or return the token.

use crate::consul::{AclToken, ConsulApi, ConsulError, KvPair};
use crate::secrets::{SecretStore, SecretsError};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

pub const PREFIX: &str = "kindling/assignments/";
pub const EPOCH_KEY: &str = "kindling/assignments-epoch";
/// The Consul ACL policy of the sync's token (rules in `bootstrap::policies`).
pub const POLICY: &str = "kindling-assignments";
/// Longest wait for one plain (non-blocking) Consul request: the API's
/// assign call waits on these, so Consul hanging must not hang it long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(Debug, thiserror::Error)]
pub enum AssignmentKvError {
    #[error(
        "no Consul token for assignments yet ({path} is missing; the stack bootstrap makes it)"
    )]
    NoToken { path: PathBuf },
    #[error("reading the assignments token: {0}")]
    TokenRead(#[from] SecretsError),
    #[error("starting an async runtime for Consul: {0}")]
    Runtime(std::io::Error),
    #[error("Consul at {url} did not answer within {secs} s ({action})")]
    Timeout {
        url: String,
        action: String,
        secs: u64,
    },
    #[error(transparent)]
    Consul(#[from] ConsulError),
}

/// Everything under [`PREFIX`] plus the epoch marker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KvListing {
    /// `X-Consul-Index` of the prefix: what a watch waits on.
    pub index: u64,
    pub epoch: Option<String>,
    pub entries: Vec<KvPair>,
}

/// Makes (or updates) the `kindling-assignments` policy and a token with
/// it, as an operator would by hand (the bootstrap uses `upsert_policy` and
/// keeps the token it recorded in Vault while Consul accepts it).
pub async fn create_token(management: &ConsulApi) -> Result<AclToken, ConsulError> {
    upsert_policy(management).await?;
    management
        .create_token("kindling assignments sync", &[POLICY], &[])
        .await
}

/// Writes (or rewrites) the assignments policy: its rules may change
/// between releases while the token stays.
pub async fn upsert_policy(management: &ConsulApi) -> Result<(), ConsulError> {
    management
        .upsert_policy(
            POLICY,
            crate::bootstrap::policies::CONSUL_ASSIGNMENTS_RULES,
            "kindling runtime MAC to profile assignments",
        )
        .await
        .map(|_| ())
}

/// A blocking client for the assignment keys, for callers without an async
/// runtime (the API's worker threads and its sync thread). Reads the token
/// file on each call, so a token the bootstrap makes later is picked up.
pub struct AssignmentKv {
    url: String,
    secrets: SecretStore,
    runtime: tokio::runtime::Runtime,
    /// The client for the token last read (reused: it keeps connections).
    client: Mutex<Option<(String, ConsulApi)>>,
}

impl std::fmt::Debug for AssignmentKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AssignmentKv {{ url: {} }}", self.url)
    }
}

impl AssignmentKv {
    /// `consul_url` e.g. `http://127.0.0.1:8500`; `stack_state_dir` is
    /// `StackLayout::state_dir()` (where the token copy lives).
    pub fn new(consul_url: &str, stack_state_dir: &Path) -> Result<Self, AssignmentKvError> {
        // One worker drives the I/O; callers on any thread block on it.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("consul-kv")
            .enable_all()
            .build()
            .map_err(AssignmentKvError::Runtime)?;
        Ok(Self {
            url: consul_url.trim_end_matches('/').to_string(),
            secrets: SecretStore::new(stack_state_dir),
            runtime,
            client: Mutex::new(None),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn consul(&self) -> Result<ConsulApi, AssignmentKvError> {
        let token = self
            .secrets
            .read_consul_assignments_token()?
            .ok_or_else(|| AssignmentKvError::NoToken {
                path: self.secrets.consul_assignments_token_file(),
            })?;
        let mut cached = self
            .client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match cached.as_ref() {
            Some((t, client)) if *t == token => Ok(client.clone()),
            _ => {
                let client = ConsulApi::new(&self.url, Some(token.clone()));
                *cached = Some((token, client.clone()));
                Ok(client)
            }
        }
    }

    fn run<T>(
        &self,
        action: &str,
        limit: Duration,
        future: impl Future<Output = Result<T, ConsulError>>,
    ) -> Result<T, AssignmentKvError> {
        match self
            .runtime
            .block_on(async { tokio::time::timeout(limit, future).await })
        {
            Ok(result) => Ok(result?),
            Err(_) => Err(AssignmentKvError::Timeout {
                url: self.url.clone(),
                action: action.into(),
                secs: limit.as_secs(),
            }),
        }
    }

    /// Everything under the prefix and the epoch marker.
    pub fn list(&self) -> Result<KvListing, AssignmentKvError> {
        let consul = self.consul()?;
        self.run("list assignments", REQUEST_TIMEOUT, async {
            let (index, entries) = consul.kv_list(PREFIX, None).await?;
            let epoch = consul
                .kv_get(EPOCH_KEY)
                .await?
                .map(|e| e.trim().to_string());
            Ok(KvListing {
                index,
                epoch,
                entries,
            })
        })
    }

    /// A blocking query on the prefix: returns once it changed after
    /// `index` (or after about `wait`), with the new index.
    pub fn wait_for_change(&self, index: u64, wait: Duration) -> Result<u64, AssignmentKvError> {
        let consul = self.consul()?;
        // Consul adds up to wait/16 of jitter; the rest is slack.
        let limit = wait + wait / 8 + REQUEST_TIMEOUT;
        self.run("watch assignments", limit, async {
            consul
                .kv_list(PREFIX, Some((index, wait)))
                .await
                .map(|(i, _)| i)
        })
    }

    /// Writes `kindling/assignments/<mac>` = `profile` with `flags`, if its
    /// ModifyIndex is still `cas` (0: if absent).
    pub fn put(
        &self,
        mac: &str,
        profile: &str,
        flags: u64,
        cas: u64,
    ) -> Result<bool, AssignmentKvError> {
        let consul = self.consul()?;
        let key = format!("{PREFIX}{mac}");
        self.run("write an assignment", REQUEST_TIMEOUT, async {
            consul.kv_put_cas(&key, profile, flags, cas).await
        })
    }

    /// Deletes `kindling/assignments/<mac>` if its ModifyIndex is still `cas`.
    pub fn delete(&self, mac: &str, cas: u64) -> Result<bool, AssignmentKvError> {
        let consul = self.consul()?;
        let key = format!("{PREFIX}{mac}");
        self.run("delete an assignment", REQUEST_TIMEOUT, async {
            consul.kv_delete_cas(&key, cas).await
        })
    }

    /// Every node of the catalog, once it changed after `index` (a blocking
    /// query of about `wait`), with the new index. The same token: it may
    /// read node entries (`node_prefix "" read`) for the catalog check that
    /// decides `joined`, and nothing else of the catalog.
    pub fn catalog_nodes(
        &self,
        index: u64,
        wait: Duration,
    ) -> Result<(u64, Vec<crate::consul::CatalogEntry>), AssignmentKvError> {
        let consul = self.consul()?;
        let limit = wait + wait / 8 + REQUEST_TIMEOUT;
        self.run("list the catalog's nodes", limit, async {
            consul.catalog_nodes(Some((index, wait))).await
        })
    }

    /// Sets the epoch marker unless one is set.
    pub fn claim_epoch(&self, epoch: &str) -> Result<bool, AssignmentKvError> {
        let consul = self.consul()?;
        self.run("claim the assignments epoch", REQUEST_TIMEOUT, async {
            consul.kv_put_cas(EPOCH_KEY, epoch, 0, 0).await
        })
    }
}
