//! The table of bootstrap steps: each entry is a [`Step`] variant, the name
//! the status file, the console and the API use for it, the steps whose
//! results it needs, and the function that runs it. The table's order is the
//! order steps are shown in; a step starts as soon as the steps it needs are
//! done (`schedule.rs`), so the `after` lists are the whole truth about
//! order: a step that reads what another wrote, or must not overlap it,
//! names it there.
//!
//! Owns the list of steps and nothing else. Must never hold a step's logic
//! (that lives in the `*_steps` modules) nor spell a step's name anywhere
//! but here: everything else goes through [`Step::name`].

use super::error::StepError;
use super::{
    acl_steps, consul_token_steps, enroll_steps, restore_steps, setup_steps, storage_steps,
    tls_steps, token_steps, vault_steps, Outcome, Run,
};

/// Declares [`Step`] and its table in one place, so that a step is one line
/// here plus its function: the name, dependencies and dispatch cannot drift
/// apart or miss a variant.
macro_rules! steps {
    ($(
        $(#[doc = $doc:literal])*
        $variant:ident = $name:literal, after [$($dep:ident),*], run $run:path;
    )*) => {
        /// One step of the stack bootstrap.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Step {
            $($(#[doc = $doc])* $variant,)*
        }

        impl Step {
            /// Every step, in the order of a run.
            pub const ALL: &'static [Step] = &[$(Step::$variant),*];

            /// The step's name in the status file, on the console and in the API.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Step::$variant => $name,)*
                }
            }

            /// The steps whose results this one needs (or that must not run
            /// at the same time as it); each comes earlier in [`Step::ALL`].
            pub const fn after(self) -> &'static [Step] {
                match self {
                    $(Step::$variant => &[$(Step::$dep),*],)*
                }
            }

            pub(super) async fn run(self, run: &Run) -> Result<Outcome, StepError> {
                match self {
                    $(Step::$variant => $run(run).await,)*
                }
            }
        }
    };
}

steps! {
    /// Consul ACLs and Vault's storage token when Vault stores in Consul.
    VaultStorage = "vault-storage", after [], run storage_steps::vault_storage;
    /// Vault's API answers.
    VaultApi = "vault-api", after [VaultStorage], run vault_steps::api;
    /// A restored backup's Vault snapshot forced into the empty Vault
    /// (skipped without a restore).
    VaultRestore = "vault-restore", after [VaultApi], run restore_steps::vault_restore;
    /// Vault initialised once, its keys encrypted to the operators.
    VaultInit = "vault-init", after [VaultRestore], run vault_steps::init;
    /// Vault unsealed (this run's keys, local keys, or operator shares).
    VaultUnseal = "vault-unseal", after [VaultInit], run vault_steps::unseal;
    /// The bootstrap's own periodic Vault token.
    VaultToken = "vault-token", after [VaultUnseal], run token_steps::token;
    /// The root token from `sys/init` revoked (checked on every run).
    VaultRoot = "vault-root", after [VaultToken], run token_steps::root;
    /// Audit, KV, AppRole, PKI, policies and roles.
    VaultSetup = "vault-setup", after [VaultToken], run setup_steps::setup;
    /// The SSH CA and its client and host roles; no step needs it, so its
    /// slow key runs beside the rest.
    VaultSshCa = "vault-ssh-ca", after [VaultToken], run setup_steps::ssh_ca;
    /// Consul's leader elected and its ACL system out of legacy mode: needs
    /// nothing from Vault, so it is waited for while Vault comes up.
    ConsulApi = "consul-api", after [], run acl_steps::consul_api;
    /// A restored backup's Consul snapshot put into the empty Consul, once
    /// Vault (its Connect CA) is unsealed (skipped without a restore).
    ConsulRestore = "consul-restore", after [ConsulApi, VaultToken], run restore_steps::consul_restore;
    /// Consul's ACL system bootstrapped, its management token in Vault.
    ConsulAcl = "consul-acl", after [VaultStorage, VaultSetup, ConsulApi, ConsulRestore], run acl_steps::consul_acl;
    /// Vault's PKI root in the bundle Consul and Nomad check client
    /// certificates against; Consul reloaded when it changed.
    ServerTrust = "server-trust", after [VaultSetup, ConsulAcl], run tls_steps::server_trust;
    /// The gossip key, agent and assignments tokens. After `server-trust`:
    /// the agent token is not set while Consul reloads.
    ConsulTokens = "consul-tokens", after [ConsulAcl, ServerTrust], run consul_token_steps::consul_tokens;
    /// Connect's CA switched to Vault (`connect_vault_ca`); nothing needs
    /// it, so it runs beside the steps after it. After `server-trust`, as
    /// the other Consul changes.
    ConsulConnectCa = "consul-connect-ca", after [ConsulAcl, ServerTrust], run consul_token_steps::connect_ca;
    /// Nomad's ACL system bootstrapped, its management token in Vault.
    /// After `server-trust`, which may restart Nomad.
    NomadAcl = "nomad-acl", after [VaultSetup, ServerTrust], run acl_steps::nomad_acl;
    /// Nomad's Vault and Consul tokens in its config.
    NomadIntegration = "nomad-integration", after [ConsulAcl, NomadAcl], run acl_steps::nomad_integration;
    /// Profiles and nodes mirrored into Consul KV.
    KvMirror = "kv-mirror", after [ConsulAcl], run acl_steps::kv_mirror;
    /// The enrollment token and its policy, profile and node entries ahead
    /// of time, and the PKI and SSH roles nodes issue for their own name
    /// with (after `vault-ssh-ca`, which mounts the SSH engine).
    Enrollment = "enrollment", after [VaultSetup, VaultSshCa, ConsulTokens], run enroll_steps::enrollment;
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_status_file_safe() {
        let mut seen = HashSet::new();
        for step in Step::ALL {
            let name = step.name();
            assert!(seen.insert(name), "two steps are named {name}");
            assert!(
                !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{name:?} is not a lower-case, dash-separated name"
            );
        }
    }

    #[test]
    fn every_dependency_runs_earlier() {
        for (i, step) in Step::ALL.iter().enumerate() {
            for dep in step.after() {
                let at = Step::ALL.iter().position(|s| s == dep);
                assert!(
                    at.is_some_and(|at| at < i),
                    "{step} needs {dep}, which does not run before it"
                );
            }
        }
    }

    #[test]
    fn every_step_is_listed_once() {
        let unique: HashSet<Step> = Step::ALL.iter().copied().collect();
        assert_eq!(unique.len(), Step::ALL.len());
    }

    /// The run function of each step is bound by the table itself (`run`
    /// matches every variant); this pins the order the status file, the
    /// tests and operators see the steps in.
    #[test]
    fn the_order_of_a_run() {
        let names: Vec<&str> = Step::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                "vault-storage",
                "vault-api",
                "vault-restore",
                "vault-init",
                "vault-unseal",
                "vault-token",
                "vault-root",
                "vault-setup",
                "vault-ssh-ca",
                "consul-api",
                "consul-restore",
                "consul-acl",
                "server-trust",
                "consul-tokens",
                "consul-connect-ca",
                "nomad-acl",
                "nomad-integration",
                "kv-mirror",
                "enrollment",
            ]
        );
    }
}
