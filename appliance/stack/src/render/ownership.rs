//! Who owns each file and directory of the stack: the account that may read
//! a key or a config, and the group a directory hands to what is written in
//! it later. Rendering runs as root in the config phase; the plan is applied
//! there too (`kindlingd config apply`), so every service finds its files
//! owned by its own account, even those an older build or a crash left
//! owned by root.
//!
//! Owns the plan only ([`plan`]): the caller chowns. Must never give a
//! private key to any account but its service's.

use crate::layout::StackLayout;
use crate::render::keys::{gossip_key_file, GossipPool};
use crate::secrets::SecretStore;
use crate::tls::{self, Leaf};
use kindling_init_protocol::accounts::{self, Account};
use kindling_site::SiteConfig;
use std::path::PathBuf;

/// One path's owner and mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned {
    pub path: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// Mode of `path` itself (a setgid directory passes its group on).
    pub mode: u32,
    /// Also give everything below `path` to the same owner (modes unchanged).
    pub recursive: bool,
}

fn own(path: PathBuf, a: Account, gid: u32, mode: u32) -> Owned {
    Owned {
        path,
        uid: a.uid,
        gid,
        mode,
        recursive: false,
    }
}

fn own_tree(path: PathBuf, a: Account, mode: u32) -> Owned {
    Owned {
        recursive: true,
        ..own(path, a, a.gid, mode)
    }
}

/// The stack's ownership plan for `site`, in the order to apply it (a later
/// entry overrides an earlier recursive one). Paths that do not exist are
/// skipped by the caller.
pub fn plan(site: &SiteConfig, layout: &StackLayout) -> Vec<Owned> {
    use accounts::{CONSUL, NOMAD, STACK, VAULT};
    let st = &site.stack;
    if !st.any_enabled() {
        return Vec::new();
    }
    let state = layout.state_dir();
    let root = Account {
        name: "root",
        uid: 0,
        gid: 0,
    };
    let mut out = vec![
        // The bootstrap's own state; others only pass through (0711) to
        // the files meant for them.
        own_tree(state.clone(), STACK, 0o711),
        own(
            SecretStore::new(&state).init_file(),
            STACK,
            STACK.gid,
            0o644,
        ),
        own(tls::trust_bundle_file(&state), STACK, STACK.gid, 0o644),
        own(tls::vault_pki_ca(&state), STACK, STACK.gid, 0o644),
        // Drop boxes: what the bootstrap writes here takes the reader's group.
        Owned {
            recursive: true,
            ..own(
                SecretStore::new(&state).for_api_dir(),
                STACK,
                accounts::API.gid,
                0o2750,
            )
        },
        Owned {
            recursive: true,
            ..own(
                SecretStore::new(&state).for_pxe_dir(),
                STACK,
                accounts::PXE.gid,
                0o2750,
            )
        },
        // The appliance CA: root's, its key never leaves root.
        own_tree(tls::tls_dir(&state), root, 0o755),
        own(tls::tls_dir(&state).join("ca-key.pem"), root, 0, 0o600),
        own(layout.config_dir.clone(), STACK, STACK.gid, 0o755),
    ];
    let key = |leaf: Leaf, a: Account| own(tls::leaf_files(&state, leaf).key, a, a.gid, 0o600);
    if st.consul.enabled {
        out.extend([
            // The bootstrap (in Consul's group) writes the ACL reset file here.
            own_tree(layout.consul_data(), CONSUL, 0o2770),
            own(layout.consul_config(), STACK, CONSUL.gid, 0o640),
            key(Leaf::Consul, CONSUL),
            own(
                gossip_key_file(&state, GossipPool::Consul),
                STACK,
                STACK.gid,
                0o600,
            ),
        ]);
    }
    if st.vault.enabled {
        out.extend([
            own_tree(layout.vault_data(), VAULT, 0o700),
            own_tree(layout.vault_audit_dir(), VAULT, 0o700),
            own(layout.vault_config(), STACK, VAULT.gid, 0o640),
            key(Leaf::Vault, VAULT),
        ]);
    }
    if st.nomad.enabled {
        out.extend([
            own_tree(layout.nomad_data(), NOMAD, 0o2770),
            own(layout.nomad_data().join("server"), NOMAD, NOMAD.gid, 0o2770),
            // The bootstrap adds its tokens file here; Nomad reads the group's files.
            Owned {
                recursive: true,
                ..own(layout.nomad_config_dir(), STACK, NOMAD.gid, 0o2750)
            },
            key(Leaf::Nomad, NOMAD),
            key(Leaf::StackClient, STACK),
            own(
                gossip_key_file(&state, GossipPool::Nomad),
                STACK,
                STACK.gid,
                0o600,
            ),
        ]);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn site() -> SiteConfig {
        serde_json::from_value(serde_json::json!({
            "site": {"id": "lab", "hostname": "kindling-lab", "domain": "lab.kindling.internal"},
            "stack": {
                "consul": {"enabled": true},
                "vault": {"enabled": true, "recipients": ["age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"]},
                "nomad": {"enabled": true}
            }
        }))
        .unwrap()
    }

    fn owner(plan: &[Owned], path: &std::path::Path) -> (u32, u32, u32) {
        // The last entry for a path wins, as when applied in order.
        plan.iter()
            .rev()
            .find(|o| o.path == path)
            .map(|o| (o.uid, o.gid, o.mode))
            .unwrap()
    }

    #[test]
    fn every_key_belongs_to_its_service_alone() {
        let layout = StackLayout::appliance();
        let plan = plan(&site(), &layout);
        let state = layout.state_dir();
        for (leaf, a) in [
            (Leaf::Vault, accounts::VAULT),
            (Leaf::Consul, accounts::CONSUL),
            (Leaf::Nomad, accounts::NOMAD),
            (Leaf::StackClient, accounts::STACK),
        ] {
            assert_eq!(
                owner(&plan, &tls::leaf_files(&state, leaf).key),
                (a.uid, a.gid, 0o600),
                "{leaf:?}"
            );
        }
        assert_eq!(owner(&plan, &state.join("tls/ca-key.pem")), (0, 0, 0o600));
        // Configs carrying a gossip key or a token: the bootstrap writes,
        // only the service's group reads.
        assert_eq!(
            owner(&plan, &layout.consul_config()),
            (accounts::STACK.uid, accounts::CONSUL.gid, 0o640)
        );
        assert_eq!(
            owner(&plan, &layout.vault_config()),
            (accounts::STACK.uid, accounts::VAULT.gid, 0o640)
        );
        assert_eq!(owner(&plan, &layout.vault_data()).2, 0o700);
    }

    #[test]
    fn a_site_without_the_stack_owns_nothing() {
        let mut s = site();
        s.stack.consul.enabled = false;
        s.stack.vault.enabled = false;
        s.stack.nomad.enabled = false;
        assert!(plan(&s, &StackLayout::appliance()).is_empty());
    }
}
