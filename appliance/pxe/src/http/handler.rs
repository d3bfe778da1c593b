//! `PxeHttp`: answers one routed request: iPXE scripts, artifacts and boot
//! files (streamed, with Content-Length and Range), NoCloud documents,
//! preseed, `/begin.sh`, `/repo.tar.gz` and phone-home events.
//!
//! Boot files, artifacts, iPXE scripts, `/begin.sh` and `/repo.tar.gz` carry
//! nothing node-secret and are answered to anyone. A MAC's own documents
//! (NoCloud, preseed) and its events are answered only to the address that
//! holds that MAC's DHCP lease (`holder`), else 403 with nothing minted or
//! changed; its user-data's grant is the `GrantKeeper`'s decision.
//!
//! Independent of the HTTP library so it is testable with plain values. It
//! never reads a served file into memory, never serves anything outside the
//! configured directories, and never panics on a request.

use super::range::{self, RangeAnswer};
use super::router::{self, Method, NoCloudDoc, Route, RouteError, SafePath};
use crate::grants::{Asker, GrantKeeper, GrantRefused};
use crate::holder::LeaseHolders;
use crate::local_boot::boots_from_disk;
use crate::node_files::{NodeFiles, AGENT};
use crate::render::{self, NodeContext};
use crate::settings::PxeSettings;
use crate::status::Stats;
use kindling_inventory::transitions::{TransitionError, GRANT_UNWRAP_FAILED};
use kindling_inventory::{Inventory, ProfileChoice};
use kindling_site::MacAddr;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Largest phone-home body accepted.
pub const MAX_EVENT_BODY: usize = 16 * 1024;

pub enum Body {
    Text(String),
    Bytes(Arc<Vec<u8>>),
    /// `len` bytes of `file` from byte `start`.
    File {
        file: File,
        start: u64,
        len: u64,
    },
}

pub struct HttpReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Body,
    pub headers: Vec<(&'static str, String)>,
}

impl HttpReply {
    fn text(status: u16, content_type: &'static str, text: String) -> Self {
        Self {
            status,
            content_type,
            body: Body::Text(text),
            headers: Vec::new(),
        }
    }
    fn json(status: u16, value: serde_json::Value) -> Self {
        Self::text(status, "application/json", value.to_string())
    }
    fn error(status: u16, message: &str) -> Self {
        Self::json(status, serde_json::json!({ "error": message }))
    }
    pub fn len(&self) -> u64 {
        match &self.body {
            Body::Text(t) => t.len() as u64,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The body as bytes (tests; files are read here, never in serving).
    pub fn into_bytes(self) -> std::io::Result<Vec<u8>> {
        match self.body {
            Body::Text(t) => Ok(t.into_bytes()),
            Body::Bytes(b) => Ok(b.to_vec()),
            Body::File {
                mut file,
                start,
                len,
            } => {
                let mut out = Vec::new();
                file.seek(SeekFrom::Start(start))?;
                file.take(len).read_to_end(&mut out)?;
                Ok(out)
            }
        }
    }
}

/// What node endpoints need besides the files: who holds which lease, and
/// the grants.
#[derive(Clone)]
pub struct NodeGate {
    pub holders: Arc<dyn LeaseHolders>,
    pub grants: Arc<GrantKeeper>,
}

pub struct PxeHttp {
    settings: Arc<PxeSettings>,
    inventory: Arc<Inventory>,
    gate: NodeGate,
    stats: Arc<Stats>,
    repo: Mutex<Option<Arc<Vec<u8>>>>,
    base_url: String,
    /// What `/by-hash/` serves: hashed once, from here (the clients on a
    /// thread of their own).
    node_files: NodeFiles,
}

/// How long a user-data request waits for the client binaries' hashes
/// after the service started: reading tens of megabytes takes well under a
/// second on a sound disk, so running out means the disk is in trouble.
const CLIENT_HASH_WAIT: Duration = Duration::from_secs(60);

fn now() -> u64 {
    kindling_clock::unix_now()
}

impl PxeHttp {
    pub fn new(
        settings: Arc<PxeSettings>,
        inventory: Arc<Inventory>,
        gate: NodeGate,
        stats: Arc<Stats>,
    ) -> Self {
        let base_url = settings.base_url();
        let node_files = NodeFiles::load(&settings.paths, settings.stack.as_ref());
        Self {
            settings,
            inventory,
            gate,
            stats,
            repo: Mutex::new(None),
            base_url,
            node_files,
        }
    }

    /// Handles one request from `peer`. `body` is read only for POSTs the
    /// peer may make, at most `MAX_EVENT_BODY` bytes.
    pub fn handle(
        &self,
        method: Method,
        target: &str,
        range_header: Option<&str>,
        peer: IpAddr,
        body: &mut dyn Read,
    ) -> HttpReply {
        self.stats.bump("http_requests");
        let reply = match router::route(method, target) {
            Ok(route) => self.dispatch(route, range_header, peer, body),
            Err(e) => {
                self.stats.bump("http_refused");
                match e {
                    RouteError::NotFound => HttpReply::error(404, "not found"),
                    RouteError::MethodNotAllowed => HttpReply::error(405, "method not allowed"),
                    RouteError::BadPath(why) => {
                        HttpReply::error(400, &format!("malformed path: {why}"))
                    }
                    RouteError::BadMac(why) => HttpReply::error(400, &why),
                }
            }
        };
        if reply.status >= 400 {
            self.stats.bump("http_errors");
        }
        reply
    }

    /// A reply's body of `bytes` went out whole.
    pub fn sent(&self, bytes: u64) {
        self.stats.add("http_sent_bytes", bytes);
    }

    /// The reply to a request refused before routing (unparsable, too
    /// large, too many connections), counted like routed refusals plus
    /// under `counter`.
    pub fn refuse(&self, counter: &'static str, status: u16, message: &str) -> HttpReply {
        for name in ["http_requests", "http_refused", "http_errors", counter] {
            self.stats.bump(name);
        }
        HttpReply::error(status, message)
    }

    /// The leased address `peer` holds for `mac`, or the 403 to answer.
    fn lease_holder(&self, mac: MacAddr, peer: IpAddr) -> Result<Ipv4Addr, HttpReply> {
        self.gate.holders.check(&mac, peer, now()).map_err(|e| {
            self.stats.bump("http_refused_not_lease_holder");
            tracing::warn!(%mac, %peer, reason = %e, "http: not the lease holder; refused");
            HttpReply::error(
                403,
                &format!("{e}: a node's documents and events are answered only to the address holding its DHCP lease"),
            )
        })
    }

    fn dispatch(
        &self,
        route: Route,
        range_header: Option<&str>,
        peer: IpAddr,
        body: &mut dyn Read,
    ) -> HttpReply {
        match route {
            Route::Script { mac, chosen } => self.script(mac, chosen, peer),
            Route::BootFile(p) => self.file(
                std::slice::from_ref(&self.settings.paths.boot_dir),
                &p,
                range_header,
                "boot_files",
            ),
            Route::Artifact(p) => {
                let dirs = self.settings.paths.artifact_dirs.clone();
                self.file(&dirs, &p, range_header, "artifacts")
            }
            Route::NoCloud { mac, doc } => match self.lease_holder(mac, peer) {
                Ok(address) => self.nocloud(mac, doc, address),
                Err(reply) => reply,
            },
            Route::Preseed(mac) => match self
                .lease_holder(mac, peer)
                .and_then(|_| self.context(mac, None))
            {
                Ok(ctx) => {
                    self.stats.bump("http_preseeds");
                    HttpReply::text(200, "text/plain", render::preseed::render(&ctx))
                }
                Err(reply) => reply,
            },
            Route::BeginScript => {
                HttpReply::text(200, "text/x-shellscript", render::begin::render())
            }
            Route::RepoTarball => self.repo(),
            Route::ByHash(digest) => self.by_hash(&digest, range_header),
            Route::Event(mac) => match self.lease_holder(mac, peer) {
                Ok(_) => self.event(mac, body),
                Err(reply) => reply,
            },
        }
    }

    fn hostname(&self, mac: &MacAddr) -> String {
        self.settings
            .reservations
            .get(mac)
            .and_then(|r| r.hostname.clone())
            .unwrap_or_else(|| render::default_hostname(mac))
    }

    /// The render context for `mac`, or the reply explaining why there is none.
    fn context(&self, mac: MacAddr, chosen: Option<&str>) -> Result<NodeContext<'_>, HttpReply> {
        let choice = self.inventory.profile_for(&mac);
        let name = match (&choice, chosen) {
            (ProfileChoice::Menu, Some(c)) => c.to_string(),
            _ => match choice.profile() {
                Some(p) => p.to_string(),
                None => {
                    self.stats.bump("http_unknown_mac");
                    return Err(HttpReply::error(
                        404,
                        &format!("{mac} has no profile on this appliance"),
                    ));
                }
            },
        };
        let Some((profile_name, profile)) = self.settings.profiles.get_key_value(&name) else {
            return Err(HttpReply::error(
                404,
                &format!("profile {name:?} is not defined"),
            ));
        };
        Ok(NodeContext {
            mac,
            hostname: self.hostname(&mac),
            domain: self.settings.domain.clone(),
            profile_name,
            profile,
            base_url: self.base_url(),
            enrollment: None,
            agent_sha256: self.node_files.agent().map(|a| a.sha256.clone()),
            stack: self.settings.stack.clone(),
            // Filled only for user-data (`with_client_binaries`): nothing
            // else names them, so nothing else waits for their hashing.
            client_binaries: BTreeMap::new(),
        })
    }

    /// The client binaries' hashes in `ctx`, where its user-data may name
    /// them (a stack and an agent to run it), waiting for their hashing
    /// started with the service; the 503 to answer when that takes longer
    /// than `CLIENT_HASH_WAIT`, before any grant is minted, so cloud-init
    /// retries instead of the node booting without its clients.
    fn with_client_binaries(&self, ctx: &mut NodeContext<'_>) -> Result<(), HttpReply> {
        if ctx.stack.is_none() || ctx.agent_sha256.is_none() {
            return Ok(());
        }
        match self.node_files.client_binaries(CLIENT_HASH_WAIT) {
            Ok(list) => {
                ctx.client_binaries = list
                    .into_iter()
                    .map(|(name, sha256)| (name.to_string(), sha256))
                    .collect();
                Ok(())
            }
            Err(e) => {
                self.stats.bump("http_client_hashes_pending");
                tracing::warn!(mac = %ctx.mac, error = %e, "http: user-data refused (503) until the client binaries are hashed; the node retries");
                Err(HttpReply::error(503, &format!("{e}; retry shortly")))
            }
        }
    }

    fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The script carries nothing secret and is answered to anyone; only
    /// the lease holder's fetch counts as the node (re)provisioning.
    fn script(&self, mac: MacAddr, chosen: Option<String>, peer: IpAddr) -> HttpReply {
        self.gate.grants.apply_rearm(mac);
        if boots_from_disk(&self.inventory, &self.gate.grants, &self.settings, &mac) {
            self.stats.bump("http_scripts_local_disk");
            return HttpReply::text(200, "text/plain", render::ipxe::local_disk(&mac));
        }
        let choice = self.inventory.profile_for(&mac);
        if choice == ProfileChoice::Menu && chosen.is_none() {
            let names: Vec<&str> = self.settings.profiles.keys().map(String::as_str).collect();
            return HttpReply::text(
                200,
                "text/plain",
                render::ipxe::menu(&mac, &names, self.base_url()),
            );
        }
        if choice == ProfileChoice::NotServed {
            self.stats.bump("http_unknown_mac");
            return HttpReply::text(200, "text/plain", render::ipxe::not_served(&mac));
        }
        match self.context(mac, chosen.as_deref()) {
            Ok(ctx) => {
                if self.gate.holders.check(&mac, peer, now()).is_ok() {
                    self.inventory
                        .observe_boot_script(mac, ctx.profile_name, now());
                } else {
                    self.stats.bump("http_scripts_not_lease_holder");
                }
                self.stats.bump("http_scripts");
                HttpReply::text(200, "text/plain", render::ipxe::render(&ctx))
            }
            Err(reply) => reply,
        }
    }

    fn nocloud(&self, mac: MacAddr, doc: NoCloudDoc, address: Ipv4Addr) -> HttpReply {
        let mut ctx = match self.context(mac, None) {
            Ok(ctx) => ctx,
            Err(reply) => return reply,
        };
        self.stats.bump("http_nocloud");
        match doc {
            NoCloudDoc::MetaData => {
                HttpReply::text(200, "text/plain", render::cloud_init::meta_data(&ctx))
            }
            NoCloudDoc::VendorData => {
                HttpReply::text(200, "text/plain", render::cloud_init::vendor_data())
            }
            NoCloudDoc::NetworkConfig => {
                HttpReply::text(200, "text/plain", render::cloud_init::network_config(&ctx))
            }
            NoCloudDoc::UserData => {
                if let Err(reply) = self.with_client_binaries(&mut ctx) {
                    return reply;
                }
                // A profile whose user-data cannot be rendered fails here,
                // before a grant is minted for nothing.
                if let Err(e) = render::cloud_init::user_data(&ctx) {
                    return HttpReply::error(500, &e.to_string());
                }
                let choice = self.inventory.profile_for(&mac);
                let hostname = ctx.hostname.clone();
                let asker = Asker {
                    mac,
                    choice: &choice,
                    profile: ctx.profile_name,
                    hostname: &hostname,
                    address,
                };
                match self.gate.grants.for_user_data(&asker) {
                    Ok(e) => ctx.enrollment = e,
                    Err(e @ GrantRefused::Reused { .. }) => {
                        return HttpReply::error(409, &e.to_string())
                    }
                    Err(e) => {
                        // Without its credentials the node cannot join; fail
                        // loudly so cloud-init retries rather than boot half-done.
                        tracing::warn!(error = %e, "http: enrollment failed");
                        return HttpReply::error(503, &e.to_string());
                    }
                }
                match render::cloud_init::user_data(&ctx) {
                    Ok(text) => HttpReply::text(200, "text/cloud-config", text),
                    Err(e) => HttpReply::error(500, &e.to_string()),
                }
            }
        }
    }

    /// Opens `rel` under the first directory that has it as a regular file,
    /// refusing symlinks that lead outside that directory.
    fn open_under(dirs: &[PathBuf], rel: &SafePath) -> Option<(File, u64)> {
        for dir in dirs {
            let Ok(root) = dir.canonicalize() else {
                continue;
            };
            let candidate = root.join(rel.as_relative());
            let Ok(real) = candidate.canonicalize() else {
                continue;
            };
            if !real.starts_with(&root) {
                continue;
            }
            let Ok(file) = File::open(&real) else {
                continue;
            };
            match file.metadata() {
                Ok(meta) if meta.is_file() => return Some((file, meta.len())),
                _ => continue,
            }
        }
        None
    }

    fn file(
        &self,
        dirs: &[PathBuf],
        rel: &SafePath,
        range_header: Option<&str>,
        counter: &'static str,
    ) -> HttpReply {
        let Some((file, len)) = Self::open_under(dirs, rel) else {
            return HttpReply::error(404, &format!("{} not found", rel.as_str()));
        };
        self.stats.bump(counter);
        let content_type = content_type(Path::new(&rel.as_str()));
        self.file_reply(file, len, content_type, range_header)
    }

    /// The file named by `digest`, when it is in the table of files handed
    /// to nodes (`NodeFiles`), else an artifact an operator pushed; any
    /// other hash is 404. Public like the boot
    /// files: the agent and the stack's client binaries hold no secret.
    fn by_hash(&self, digest: &str, range_header: Option<&str>) -> HttpReply {
        let Some(handed) = self.node_files.by_hash(digest) else {
            return self.artifact_by_hash(digest, range_header);
        };
        let opened = File::open(&handed.path).and_then(|f| {
            let len = f.metadata()?.len();
            Ok((f, len))
        });
        match opened {
            Ok((file, len)) => {
                self.stats.bump(match handed.name {
                    AGENT => "http_node_agent",
                    "consul" => "http_node_consul",
                    _ => "http_node_nomad",
                });
                self.file_reply(file, len, "application/octet-stream", range_header)
            }
            Err(e) => HttpReply::error(500, &format!("{} is unreadable: {e}", handed.name)),
        }
    }

    /// An artifact an operator pushed (`kindling artifact push`), from the
    /// store on the data partition, looked up per request (pushes come at
    /// any time); any other hash is 404. Public like the boot files: the
    /// operator pushes what the LAN may fetch. Read only: kl-pxe is the
    /// store's group, never its owner.
    fn artifact_by_hash(&self, digest: &str, range_header: Option<&str>) -> HttpReply {
        let store = kindling_artifacts::ArtifactStore::new(&self.settings.paths.state_dir);
        let opened = digest
            .parse::<kindling_artifacts::Sha256Hex>()
            .ok()
            .and_then(|d| store.open(&d));
        let Some((file, len)) = opened else {
            return HttpReply::error(404, &format!("no file with sha256 {digest}"));
        };
        self.stats.bump("http_artifacts_by_hash");
        self.file_reply(file, len, "application/octet-stream", range_header)
    }

    /// A whole file, or the one range asked for.
    fn file_reply(
        &self,
        file: File,
        len: u64,
        content_type: &'static str,
        range_header: Option<&str>,
    ) -> HttpReply {
        let mut headers = vec![("Accept-Ranges", "bytes".to_string())];
        match range::evaluate(range_header, len) {
            RangeAnswer::Full => HttpReply {
                status: 200,
                content_type,
                body: Body::File {
                    file,
                    start: 0,
                    len,
                },
                headers,
            },
            RangeAnswer::Partial { start, end } => {
                headers.push(("Content-Range", format!("bytes {start}-{end}/{len}")));
                self.stats.bump("http_partial");
                HttpReply {
                    status: 206,
                    content_type,
                    body: Body::File {
                        file,
                        start,
                        len: end - start + 1,
                    },
                    headers,
                }
            }
            RangeAnswer::Unsatisfiable => {
                headers.push(("Content-Range", format!("bytes */{len}")));
                HttpReply {
                    status: 416,
                    content_type: "text/plain",
                    body: Body::Text(String::new()),
                    headers,
                }
            }
        }
    }

    fn repo(&self) -> HttpReply {
        let Some(dir) = self.settings.paths.repo_dir.clone().filter(|d| d.is_dir()) else {
            return HttpReply::error(404, "no repository configured");
        };
        let mut cached = self
            .repo
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.is_none() {
            match crate::repo::tarball(&dir) {
                Ok(bytes) => *cached = Some(Arc::new(bytes)),
                Err(e) => return HttpReply::error(500, &e.to_string()),
            }
        }
        match cached.as_ref() {
            Some(bytes) => HttpReply {
                status: 200,
                content_type: "application/gzip",
                body: Body::Bytes(bytes.clone()),
                headers: Vec::new(),
            },
            None => HttpReply::error(500, "repository tarball unavailable"),
        }
    }

    fn event(&self, mac: MacAddr, body: &mut dyn Read) -> HttpReply {
        let mut buf = Vec::new();
        if body
            .take(MAX_EVENT_BODY as u64 + 1)
            .read_to_end(&mut buf)
            .is_err()
        {
            return HttpReply::error(400, "could not read the request body");
        }
        if buf.len() > MAX_EVENT_BODY {
            return HttpReply::error(
                413,
                &format!("event body larger than {MAX_EVENT_BODY} bytes"),
            );
        }
        let value: serde_json::Value = match serde_json::from_slice(&buf) {
            Ok(v) => v,
            Err(e) => return HttpReply::error(400, &format!("event body is not JSON: {e}")),
        };
        let Some(event) = value
            .get("event")
            .and_then(|e| e.as_str())
            .map(str::to_string)
        else {
            return HttpReply::error(400, "event body needs a string field \"event\"");
        };
        match self.inventory.record_event(mac, &event, value, now()) {
            Ok(state) => {
                self.stats.bump("http_events");
                let reason = self.inventory.node(&mac).and_then(|n| n.seen.reason);
                tracing::info!(%mac, %event, ?state, reason = reason.as_deref().unwrap_or(""), "http: node event");
                self.gate
                    .grants
                    .after_event(mac, event == GRANT_UNWRAP_FAILED);
                // The state is the appliance's verdict: a node saying
                // `joined` hears `installed` and why, until its catalog
                // entry is seen.
                let mut reply = serde_json::json!({ "ok": true, "state": state });
                if let Some(reason) = reason {
                    reply["reason"] = reason.into();
                }
                HttpReply::json(200, reply)
            }
            Err(e @ TransitionError::UnknownEvent(_)) => HttpReply::error(400, &e.to_string()),
            Err(e @ TransitionError::NotNow { .. }) => {
                self.stats.bump("http_refused_event_transition");
                tracing::warn!(%mac, %event, reason = %e, "http: event refused");
                HttpReply::error(409, &e.to_string())
            }
        }
    }
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("ipxe" | "txt" | "cfg") => "text/plain",
        Some("iso") => "application/x-iso9660-image",
        Some("efi" | "kpxe" | "pxe") => "application/octet-stream",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}
