//! `kindlingd config apply`: kindling-init's config phase. Verifies and merges
//! the signed overlays (see `kindling_overlay::apply`), writes
//! `/run/kindling/{site.json,config-effective.json,config-report.json,services.json}`
//! and prints one line per accepted or refused overlay for the console log.
//!
//! A bad overlay never fails the boot: refusals are reported, the last good
//! overlay is used. On an update on trial (`kindling_update::trial`) the
//! image's own overlays are used but not recorded on the data partition;
//! the API records them once the update agent blesses the slot. The exit status is non-zero only when no valid
//! configuration exists at all (init then uses its fallback service table).
//!
//! Paths: flags, else env (`KINDLING_TRUST_DIR`, `KINDLING_BOOT_OVERLAYS`,
//! `KINDLING_STATE_DIR`, `KINDLING_RUN_DIR`), else the appliance's defaults.

use anyhow::{bail, Context};
use kindling_init_protocol::table::ServiceTable;
use kindling_overlay::{ApplyOptions, ApplyPaths};
use kindling_site::SiteConfig;
use std::path::{Path, PathBuf};

/// `kindlingd config apply [flags]`.
#[derive(clap::Parser)]
#[command(name = "kindlingd config")]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Verify and merge the overlays, write the effective config and service table.
    Apply(ApplyArgs),
}

/// Each flag overrides its environment variable (see [`paths_from_env`]).
#[derive(clap::Args)]
struct ApplyArgs {
    #[arg(long, value_name = "DIR")]
    trust_dir: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    boot_overlays: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// The time overlays are checked against, in unix seconds.
    #[arg(long, value_name = "UNIX_SECONDS")]
    now: Option<u64>,
}

/// Paths from the environment, falling back to the appliance's defaults.
pub fn paths_from_env() -> ApplyPaths {
    let d = ApplyPaths::default();
    let var = |k: &str, default: PathBuf| std::env::var_os(k).map(PathBuf::from).unwrap_or(default);
    ApplyPaths {
        trust_dir: var("KINDLING_TRUST_DIR", d.trust_dir),
        boot_overlays: var("KINDLING_BOOT_OVERLAYS", d.boot_overlays),
        data_dir: var("KINDLING_STATE_DIR", d.data_dir),
        run_dir: var("KINDLING_RUN_DIR", d.run_dir),
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let Command::Apply(flags) = args.command;
    let mut paths = paths_from_env();
    let overrides = [
        (flags.trust_dir, &mut paths.trust_dir),
        (flags.boot_overlays, &mut paths.boot_overlays),
        (flags.state_dir, &mut paths.data_dir),
        (flags.run_dir, &mut paths.run_dir),
    ];
    for (flag, path) in overrides {
        if let Some(dir) = flag {
            *path = dir;
        }
    }
    apply_staged_restore(&paths.data_dir);
    let image_on_trial = kindling_update::trial::image_on_trial(
        &kindling_update::trial::TrialPaths::in_run_dir(&paths.run_dir),
    );
    if image_on_trial {
        println!(
            "this image is an update on trial: its own overlays are used but recorded only once it is blessed"
        );
    }
    let opts = ApplyOptions {
        now: flags.now,
        image_on_trial,
        ..ApplyOptions::default()
    };
    let outcome = kindling_overlay::apply(&paths, &opts, None);
    for line in outcome.report.lines() {
        // init prefixes each line with the service name (`config| …`).
        println!("{line}");
    }
    let Some(effective) = outcome.effective else {
        bail!(
            "no valid site configuration ({} refused); see {}",
            outcome.report.refused.len(),
            paths.report_json().display()
        );
    };
    let table = write_boot_service_table(&paths.run_dir, &paths.data_dir, &effective.config)?;
    issue_api_certificate(&effective.config, &paths, &table);
    seal_ca_keys(&effective.config, &paths.data_dir);
    give_console_to_dashboard(&table);
    println!(
        "site {} configured: {} overlay(s) accepted, {} refused",
        effective.config.site.id,
        outcome.report.accepted.len(),
        outcome.report.refused.len()
    );
    Ok(())
}

/// Applies a restore the API staged (`kindling_backup::staged`), before
/// the overlays are read (the backup brings its own) and before any
/// service starts. A refusal or failure is reported and the boot goes on
/// with what the data partition holds.
fn apply_staged_restore(data_dir: &Path) {
    let layout = kindling_stack::StackLayout {
        data_dir: data_dir.to_path_buf(),
        ..kindling_stack::StackLayout::appliance()
    };
    let paths = kindling_backup::staged::ApplyPaths::for_stack(&layout);
    match kindling_backup::staged::apply(&paths, kindling_clock::unix_now()) {
        None => {}
        Some(Ok(done)) => {
            println!(
                "restore: backup {} (staged by {}) applied: {} files written, the fresh cluster's data moved to {}; the stack bootstrap restores Vault and Consul, then Vault waits for the ORIGINAL key shares",
                done.backup_id,
                done.operator,
                done.files,
                done.replaced.as_deref().unwrap_or("(nothing to move)")
            );
            for note in &done.notes {
                println!("restore: {note}");
            }
        }
        Some(Err(e)) => println!("restore: not applied: {e}"),
    }
}

/// Keeps each CA key's copy sealed to the site's age recipients beside it
/// (`kindling_backup::ca_keys`), for backups: the keys stay root's. Only
/// where Vault (whose recipients these are) is enabled.
fn seal_ca_keys(site: &SiteConfig, data_dir: &Path) {
    if !site.stack.vault.enabled {
        return;
    }
    let sealed = kindling_stack::secrets::parse_recipients(&site.stack.vault.recipients)
        .map_err(|e| e.to_string())
        .and_then(|r| kindling_backup::ca_keys::seal(data_dir, &r).map_err(|e| e.to_string()));
    if let Err(e) = sealed {
        println!("backup: the CA keys are not sealed for backups: {e}");
    }
}

/// The config phase's table: renders the stack's files, writes
/// `RUN_DIR/services.json`, then (as root) gives every service its own
/// files (`ownership`), so each child finds them owned by its account.
/// Returns the table written.
pub fn write_boot_service_table(
    run_dir: &Path,
    data_dir: &Path,
    site: &SiteConfig,
) -> anyhow::Result<ServiceTable> {
    use crate::service_table::{for_this_boot, StackFiles};
    let boot = for_this_boot(site, run_dir, data_dir, StackFiles::Render);
    write_table(run_dir, &boot.table)?;
    if rustix::process::geteuid().is_root() {
        for dir in crate::ownership::directories(run_dir, data_dir) {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let mut plan = crate::ownership::plan(run_dir, data_dir);
        plan.extend(boot.ownership);
        for problem in crate::ownership::apply(&plan).problems {
            println!("ownership: {problem}");
        }
    }
    Ok(boot.table)
}

/// Writes `RUN_DIR/services.json` for `site` (temp file + rename) without
/// touching the stack's files: what the API's live reload may do.
pub fn write_service_table(
    run_dir: &Path,
    data_dir: &Path,
    site: &SiteConfig,
) -> anyhow::Result<()> {
    use crate::service_table::{for_this_boot, StackFiles};
    write_table(
        run_dir,
        &for_this_boot(site, run_dir, data_dir, StackFiles::Describe).table,
    )
}

fn write_table(run_dir: &Path, table: &ServiceTable) -> anyhow::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(table)?;
    bytes.push(b'\n');
    let path = run_dir.join("services.json");
    kindling_atomic_write::write_atomic(&path, &bytes, false)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Gives tty1 and the serial consoles to the account the table runs the
/// dashboard as (the config phase runs as root; tests and a table without
/// it skip this). A failure is reported; the dashboard then says it cannot
/// draw or answer there.
fn give_console_to_dashboard(table: &ServiceTable) {
    let Some(spec) = table.get("dashboard") else {
        return;
    };
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let consoles = std::iter::once(std::path::PathBuf::from(crate::dashboard::TTY))
        .chain(crate::dashboard::serial::active_consoles());
    for tty in consoles {
        if let Err(e) = crate::dashboard::prepare_tty(&tty, spec.user, spec.group) {
            println!("dashboard: cannot use {}: {e}", tty.display());
        }
    }
}

/// Issues the API's certificate for this boot while the config phase still
/// runs as root (it needs the CA key), readable only by the uid the table
/// runs `api` as. A failure is reported; the API then refuses to start
/// without a certificate and the appliance says it is degraded.
fn issue_api_certificate(site: &SiteConfig, paths: &ApplyPaths, table: &ServiceTable) {
    let owner = table
        .get("api")
        .map_or(crate::api::tls::KeyOwner { uid: 0, gid: 0 }, |api| {
            crate::api::tls::KeyOwner {
                uid: api.user,
                gid: api.group,
            }
        });
    match crate::api::tls::issue(site, &paths.data_dir, &paths.run_dir, owner) {
        Ok(fingerprint) => println!(
            "api certificate issued for {} by the appliance CA {fingerprint}",
            crate::api::tls::names(site).join(", ")
        ),
        Err(e) => println!("degraded: api: no TLS certificate: {e}"),
    }
}
