//! `kindlingd backup`: the backup service. Makes a backup when the API
//! queued one (`backups/requests/`) and every `backup.every_hours`, keeps
//! `backup.keep` / `backup.max_mib`, and reports in
//! `/run/kindling/status/backup.json`.
//!
//! Runs as kl-stack, the account that already holds the tokens a backup
//! needs (the bootstrap's Vault token, and through it Consul's management
//! token): no other process gains them. Owns the schedule and the status
//! file; the backup itself is `kindling_backup`. Must never exit on a
//! failed backup: it is reported and tried again later.

use kindling_backup::manifest::Appliance;
use kindling_backup::requests::RequestQueue;
use kindling_backup::{BackupId, BackupStore, Job, Retention, Sources};
use kindling_site::SiteConfig;
use kindling_stack::StackLayout;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::Duration;

/// After a failed scheduled backup, the next try waits this long (not a
/// second: a sealed Vault would otherwise be asked every second).
const RETRY_AFTER: u64 = 15 * 60;

#[derive(clap::Args)]
pub struct Args {
    /// Effective config (default $KINDLING_SITE_JSON or /run/kindling/site.json).
    #[arg(long, value_name = "FILE")]
    site: Option<PathBuf>,
    /// Make one backup now, print its id and exit.
    #[arg(long)]
    once: bool,
}

struct Service {
    site: SiteConfig,
    layout: StackLayout,
    store: BackupStore,
    queue: RequestQueue,
    status_file: PathBuf,
    last: Value,
    failed_at: Option<u64>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::console::init("backup");
    let site_path = args.site.unwrap_or_else(crate::site::effective_path);
    let site = kindling_site::effective::load(&site_path)?;
    let layout = crate::stack::appliance_layout();
    let mut run_dir = PathBuf::from("/run/kindling");
    // The same overrides as `kindlingd api` and `stack-bootstrap`.
    if let Some(dir) = std::env::var_os("KINDLING_RUN_DIR") {
        run_dir = dir.into();
    }
    let store = BackupStore::in_data_dir(&layout.data_dir);
    let mut service = Service {
        queue: RequestQueue::new(store.dir()),
        store,
        status_file: run_dir.join("status").join("backup.json"),
        site,
        layout,
        last: Value::Null,
        failed_at: None,
    };
    if args.once {
        let id = BackupId::new(kindling_clock::unix_now());
        service.make(&id)?;
        println!("{id}");
        return Ok(());
    }
    crate::notify_ready();
    loop {
        service.tick();
        std::thread::sleep(Duration::from_secs(1));
    }
}

impl Service {
    fn retention(&self) -> Retention {
        Retention {
            keep: self.site.backup.keep as usize,
            max_bytes: u64::from(self.site.backup.max_mib) << 20,
        }
    }

    /// When the next scheduled backup is due (Unix seconds), if scheduled.
    fn next_due(&self) -> Option<u64> {
        let every = u64::from(self.site.backup.every_hours) * 3600;
        if every == 0 {
            return None;
        }
        let newest = self
            .store
            .list()
            .ok()
            .and_then(|l| l.last().map(|b| b.path.clone()))
            .and_then(|p| std::fs::metadata(p).ok())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
        let due = newest.map_or(0, |t| t + every);
        Some(match self.failed_at {
            Some(f) => due.max(f + RETRY_AFTER.min(every)),
            None => due,
        })
    }

    fn tick(&mut self) {
        for id in self.queue.pending() {
            if let Err(e) = self.make(&id) {
                tracing::warn!("requested backup {id} failed: {e:#}");
            }
            if let Err(e) = self.queue.take(&id) {
                tracing::warn!("{e}");
            }
        }
        if let Some(due) = self.next_due() {
            let now = kindling_clock::unix_now();
            if now >= due {
                let id = BackupId::new(now);
                match self.make(&id) {
                    Ok(()) => self.failed_at = None,
                    Err(e) => {
                        tracing::warn!("scheduled backup {id} failed: {e:#}");
                        self.failed_at = Some(now);
                    }
                }
            }
        }
        self.write_status("idle");
    }

    fn make(&mut self, id: &BackupId) -> anyhow::Result<()> {
        self.write_status("running");
        let started = kindling_clock::unix_ms();
        let result = self.make_inner(id);
        let finished_unix = kindling_clock::unix_now();
        self.last = match &result {
            Ok((bytes, pruned)) => {
                tracing::info!(
                    "backup {id}: {bytes} bytes in {} ms{}",
                    kindling_clock::unix_ms().saturating_sub(started),
                    if pruned.is_empty() {
                        String::new()
                    } else {
                        format!("; removed {}", pruned.join(", "))
                    }
                );
                json!({"id": id.as_str(), "ok": true, "bytes": bytes, "pruned": pruned, "finished_unix": finished_unix})
            }
            Err(e) => {
                json!({"id": id.as_str(), "ok": false, "error": format!("{e:#}"), "finished_unix": finished_unix})
            }
        };
        self.write_status("idle");
        result.map(|_| ())
    }

    fn make_inner(&self, id: &BackupId) -> anyhow::Result<(u64, Vec<String>)> {
        let recipients =
            kindling_stack::secrets::parse_recipients(&self.site.stack.vault.recipients)?;
        let job = Job {
            recipients,
            appliance: Appliance {
                site_id: self.site.site.id.to_string(),
                hostname: self.site.site.hostname.clone(),
                version: std::fs::read_to_string("/etc/kindling/version")
                    .map(|v| v.trim().to_string())
                    .unwrap_or_else(|_| "unknown".into()),
            },
            retention: self.retention(),
        };
        let (site, layout, store, id) = (
            self.site.clone(),
            self.layout.clone(),
            self.store.clone(),
            id.clone(),
        );
        let made = kindling_stack::api::block_on(async move {
            let sources = Sources::for_appliance(&site, &layout).await?;
            kindling_backup::make(&sources, &job, &store, &id, kindling_clock::unix_now())
                .await
                .map_err(anyhow::Error::from)
        })??;
        Ok((
            made.stored.bytes,
            made.pruned.iter().map(ToString::to_string).collect(),
        ))
    }

    fn write_status(&self, state: &str) {
        let body = json!({
            "state": state,
            "last": self.last,
            "next_unix": self.next_due(),
            "kept": self.store.list().map(|l| l.len()).unwrap_or(0),
            "every_hours": self.site.backup.every_hours,
            "keep": self.site.backup.keep,
        });
        if let Err(e) = kindling_atomic_write::write_atomic(
            &self.status_file,
            body.to_string().as_bytes(),
            false,
        ) {
            tracing::warn!("writing {}: {e}", self.status_file.display());
        }
    }
}
