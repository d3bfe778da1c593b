//! Install once: a node that reported `installed` (or `joined`) with a
//! profile whose `after_install` is `disk` gets no boot program on its
//! later PXE boots (DHCP answers without a boot file; an iPXE that asks
//! for its script anyway is told to `exit`), so the firmware moves on to
//! the local disk. `kindling node reprovision MAC` re-arms it: from that
//! request on it boots its profile again.
//!
//! Owns that decision only; applying the re-arm is the grant keeper's.

use crate::grants::GrantKeeper;
use crate::settings::PxeSettings;
use kindling_inventory::Inventory;
use kindling_site::{AfterInstall, MacAddr};

/// Whether `mac` is to boot its local disk. A re-arm the operator asked
/// for counts at once, even before the PXE service applied it (that
/// happens on the HTTP path, which may call Vault; DHCP never waits).
pub fn boots_from_disk(
    inventory: &Inventory,
    grants: &GrantKeeper,
    settings: &PxeSettings,
    mac: &MacAddr,
) -> bool {
    let Some(node) = inventory.installed(mac) else {
        return false;
    };
    if grants.rearm_requests(mac) > node.rearmed {
        return false;
    }
    // A profile the site has since removed: the disk holds what it installed.
    node.profile
        .as_deref()
        .and_then(|name| settings.profiles.get(name))
        .is_none_or(|profile| profile.after_install == AfterInstall::Disk)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::settings::PxePaths;
    use crate::status::Stats;
    use kindling_inventory::testing::lab_site;
    use kindling_inventory::{Firmware, ReprovisionStore};
    use std::sync::Arc;

    const DEV: MacAddr = MacAddr([0x52, 0x54, 0x00, 0x6b, 0x00, 0x10]);

    struct Appliance {
        _dir: tempfile::TempDir,
        settings: PxeSettings,
        inventory: Arc<Inventory>,
        grants: GrantKeeper,
    }

    impl Appliance {
        fn new(after_install: AfterInstall) -> Self {
            let dir = tempfile::tempdir().unwrap();
            let mut site = lab_site();
            for profile in site.profiles.values_mut() {
                profile.after_install = after_install;
            }
            let paths = PxePaths {
                state_dir: dir.path().to_path_buf(),
                ..PxePaths::default()
            };
            let settings = PxeSettings::from_site(&site, paths).unwrap();
            let (inventory, problem) = Inventory::open(dir.path(), settings.profile_policy());
            assert!(problem.is_none(), "{problem:?}");
            let inventory = Arc::new(inventory);
            let grants = crate::service::grant_keeper(
                &settings,
                inventory.clone(),
                Arc::new(crate::enroll::NoEnrollment),
                Arc::new(Stats::default()),
            );
            Self {
                _dir: dir,
                settings,
                inventory,
                grants,
            }
        }

        fn install(&self) {
            self.inventory
                .observe_dhcp(DEV, None, Some(0), Firmware::Bios, 1);
            self.inventory.observe_boot_script(DEV, "dev", 2);
            assert!(!self.boots_disk(), "booting, not installed yet");
            self.inventory
                .record_event(DEV, "installed", serde_json::Value::Null, 3)
                .unwrap();
        }

        fn boots_disk(&self) -> bool {
            boots_from_disk(&self.inventory, &self.grants, &self.settings, &DEV)
        }
    }

    #[test]
    fn installed_nodes_boot_their_disk_until_the_operator_re_arms_them() {
        let appliance = Appliance::new(AfterInstall::Disk);
        assert!(
            !appliance.boots_disk(),
            "a node never seen boots its profile"
        );
        appliance.install();
        assert!(appliance.boots_disk());

        ReprovisionStore::in_state_dir(appliance.settings.paths.state_dir.as_path())
            .request(DEV, 10)
            .unwrap();
        // The watch re-reads the file at most every 500 ms.
        std::thread::sleep(std::time::Duration::from_millis(600));
        assert!(
            !appliance.boots_disk(),
            "a requested re-arm counts before it is applied"
        );
        appliance.grants.apply_rearm(DEV);
        assert!(!appliance.boots_disk(), "applied: discovered again");
        appliance.install();
        assert!(appliance.boots_disk(), "installed again: its disk again");
    }

    #[test]
    fn diskless_profiles_boot_the_network_every_time() {
        let appliance = Appliance::new(AfterInstall::Network);
        appliance.install();
        assert!(!appliance.boots_disk());
    }
}
