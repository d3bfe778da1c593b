//! Who owns the appliance's shared directories, applied by the config phase
//! (root) before any child starts: each service finds what it writes owned
//! by its own account, whatever an older build or a crash left behind.
//!
//! Owns the appliance-level plan ([`plan`]: the run and data directories,
//! status, inventory, leases, overlays, the update spool, the artifact store)
//! and applying any plan ([`apply`]),
//! the stack's included (`kindling_stack::render::ownership`). Must never
//! follow a symlink out of the directory it was asked to own, nor give any
//! path to root that was not root's.

use kindling_init_protocol::accounts::{self, Account};
use kindling_stack::render::Owned;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn own(path: PathBuf, uid: u32, gid: u32, mode: u32, recursive: bool) -> Owned {
    Owned {
        path,
        uid,
        gid,
        mode,
        recursive,
    }
}

fn mine(path: PathBuf, a: Account, mode: u32) -> Owned {
    own(path, a.uid, a.gid, mode, true)
}

/// The appliance's own directories (the stack's are its renderer's).
pub fn plan(run_dir: &Path, data_dir: &Path) -> Vec<Owned> {
    let api = accounts::API;
    let store = kindling_artifacts::ArtifactStore::new(data_dir);
    vec![
        // The API replaces the config report, site.json and services.json
        // when an overlay is pushed; sticky, so it can replace only its own.
        own(run_dir.to_path_buf(), 0, api.gid, 0o1775, false),
        own(
            run_dir.join("status"),
            0,
            accounts::STATUS.gid,
            0o1775,
            false,
        ),
        mine(run_dir.join("site.json"), api, 0o644),
        mine(run_dir.join("config-effective.json"), api, 0o644),
        mine(run_dir.join("config-report.json"), api, 0o644),
        mine(run_dir.join("services.json"), api, 0o644),
        mine(run_dir.join("overlays"), api, 0o755),
        // The data partition: the API keeps overlay floors and pushed
        // overlays; PXE its leases; both the inventory.
        own(data_dir.to_path_buf(), 0, api.gid, 0o1775, false),
        mine(data_dir.join("state.json"), api, 0o644),
        mine(data_dir.join("overlays"), api, 0o755),
        own(
            data_dir.join("inventory"),
            accounts::PXE.uid,
            accounts::INVENTORY.gid,
            0o2770,
            true,
        ),
        mine(data_dir.join("leases"), accounts::PXE, 0o750),
        // Pushed update bundles: the API writes them (as a member of the
        // spool group; setgid keeps the group), the update agent owns the
        // directory, so it reads and removes them; sticky, so the API can
        // replace or remove only what it wrote itself.
        own(
            data_dir.join(kindling_update::spool::SPOOL_DIR),
            accounts::UPDATE.uid,
            accounts::UPDATE_SPOOL.gid,
            0o3770,
            false,
        ),
        // Artifacts pushed by operators: the API writes and deletes the
        // bytes, the PXE service (the group; setgid keeps it on new files)
        // only reads them to serve the LAN; the records (who pushed what)
        // are the API's alone. The store names both: kindling_artifacts.
        own(
            store.content_dir(),
            api.uid,
            accounts::PXE.gid,
            0o2750,
            true,
        ),
        mine(store.meta_dir(), api, 0o700),
        // Backups: the backup service (kl-stack) writes them, the API
        // (the group) lists and hands them out; the API queues requests
        // in `requests/` (sticky: only its own), the service takes them.
        own(
            data_dir.join(kindling_backup::store::BACKUPS_DIR),
            accounts::STACK.uid,
            api.gid,
            0o2750,
            false,
        ),
        own(
            data_dir
                .join(kindling_backup::store::BACKUPS_DIR)
                .join(kindling_backup::requests::REQUESTS_DIR),
            accounts::STACK.uid,
            api.gid,
            0o3770,
            false,
        ),
        // A restore the API staged for the next boot: the API's alone
        // (it holds a decrypted backup until the config phase, root,
        // applies and removes it).
        mine(kindling_backup::staged::restore_dir(data_dir), api, 0o700),
    ]
}

/// Directories of [`plan`] that must exist before their owners start.
pub fn directories(run_dir: &Path, data_dir: &Path) -> Vec<PathBuf> {
    vec![
        run_dir.join("status"),
        data_dir.join("inventory"),
        data_dir.join("leases"),
        data_dir.join("overlays"),
        data_dir.join(kindling_update::spool::SPOOL_DIR),
        kindling_artifacts::ArtifactStore::new(data_dir).content_dir(),
        kindling_artifacts::ArtifactStore::new(data_dir).meta_dir(),
        data_dir
            .join(kindling_backup::store::BACKUPS_DIR)
            .join(kindling_backup::requests::REQUESTS_DIR),
        kindling_backup::staged::restore_dir(data_dir),
    ]
}

/// What applying a plan did not manage, one line per path.
#[derive(Debug, Default)]
pub struct Applied {
    pub problems: Vec<String>,
}

/// Applies `plan` in order: owner and mode of each path, and the owner of
/// everything below a recursive one (symlinks are changed themselves, never
/// followed). A path that does not exist is skipped.
pub fn apply(plan: &[Owned]) -> Applied {
    let mut out = Applied::default();
    for o in plan {
        let Ok(meta) = std::fs::symlink_metadata(&o.path) else {
            continue;
        };
        if meta.file_type().is_symlink() {
            out.problems
                .push(format!("{}: a symlink, left alone", o.path.display()));
            continue;
        }
        // Mode first: chown keeps a directory's setgid bit, and chmod sets
        // it only with CAP_FSETID or while the path is still in our group.
        if meta.mode() & 0o7777 != o.mode {
            if let Err(e) =
                std::fs::set_permissions(&o.path, std::fs::Permissions::from_mode(o.mode))
            {
                out.problems.push(format!("{}: {e}", o.path.display()));
            }
        }
        if let Err(e) = chown(&o.path, o.uid, o.gid) {
            out.problems.push(format!("{}: {e}", o.path.display()));
            continue;
        }
        if o.recursive && meta.is_dir() {
            chown_below(&o.path, o.uid, o.gid, &mut out);
        }
    }
    out
}

fn chown(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))
}

fn chown_below(dir: &Path, uid: u32, gid: u32, out: &mut Applied) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if let Err(e) = chown(&path, uid, gid) {
            out.problems.push(format!("{}: {e}", path.display()));
        }
        // file_type() does not follow symlinks: a link to a directory is
        // owned itself and never entered.
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            chown_below(&path, uid, gid, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_under_the_run_or_data_dir_and_nothing_goes_to_root_below() {
        let (run, data) = (Path::new("/run/kindling"), Path::new("/var/lib/kindling"));
        for o in plan(run, data) {
            assert!(o.path.starts_with(run) || o.path.starts_with(data), "{o:?}");
            if o.recursive {
                assert_ne!(o.uid, 0, "{o:?}: a tree given to root");
            }
        }
    }

    /// The artifact store: the API writes, the PXE service only reads
    /// (as the group, without write), the records are the API's alone.
    #[test]
    fn the_pxe_service_reads_artifacts_and_never_writes_them() {
        let (run, data) = (Path::new("/run/kindling"), Path::new("/var/lib/kindling"));
        let plan = plan(run, data);
        let of = |p: &str| {
            plan.iter()
                .find(|o| o.path == data.join(p))
                .unwrap_or_else(|| panic!("{p} is not in the plan"))
        };
        let bytes = of("artifacts/sha256");
        assert_eq!(
            (bytes.uid, bytes.gid, bytes.mode),
            (accounts::API.uid, accounts::PXE.gid, 0o2750)
        );
        let records = of("artifacts/.meta");
        assert_eq!(
            (records.uid, records.gid, records.mode),
            (accounts::API.uid, accounts::API.gid, 0o700)
        );
        let made = directories(run, data);
        assert!(made.contains(&data.join("artifacts/sha256")), "{made:?}");
        assert!(made.contains(&data.join("artifacts/.meta")), "{made:?}");
    }

    /// Run as an unprivileged user: chown to one's own ids works, modes are
    /// set, and a symlink is neither followed nor changed through.
    #[test]
    fn applies_modes_and_owners_without_following_links() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let me = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("sub")).unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(tree.join("sub/file"), b"x").unwrap_or_else(|e| panic!("{e}"));
        let outside = dir.path().join("outside");
        std::fs::write(&outside, b"y").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&outside, tree.join("link")).unwrap_or_else(|e| panic!("{e}"));
        let result = apply(&[
            own(tree.clone(), me.0, me.1, 0o2750, true),
            own(tree.join("link"), me.0, me.1, 0o600, false),
        ]);
        assert_eq!(result.problems.len(), 1, "{:?}", result.problems);
        assert!(
            result.problems[0].contains("a symlink"),
            "{:?}",
            result.problems
        );
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.mode() & 0o7777).unwrap_or(0);
        assert_eq!(mode(&tree), 0o2750);
        assert_ne!(mode(&outside), 0o600, "the link's target was not touched");
    }
}
