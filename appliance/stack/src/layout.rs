//! Where the stack lives: config, data and state directories, binaries, ports
//! and the loopback address the appliance itself talks to. The appliance uses
//! [`StackLayout::appliance`]; tests point everything at temp dirs and free
//! ports. Owns no I/O.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// TCP ports of the three services. Defaults are the upstream defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackPorts {
    /// Consul's plain HTTP API, on loopback only (the appliance's own calls).
    pub consul_http: u16,
    /// Consul's HTTPS API (mutual TLS), on the LAN address.
    pub consul_https: u16,
    pub consul_dns: u16,
    pub consul_server: u16,
    pub consul_serf_lan: u16,
    pub consul_serf_wan: u16,
    /// Vault's TLS listener on the LAN address.
    pub vault_api: u16,
    pub vault_cluster: u16,
    /// Vault's plain-HTTP listener on loopback (the appliance's own calls):
    /// its own port, so the TLS listener can bind every address when Vault
    /// is exposed on the uplink.
    pub vault_local: u16,
    pub nomad_http: u16,
    pub nomad_rpc: u16,
    pub nomad_serf: u16,
}

impl Default for StackPorts {
    fn default() -> Self {
        Self {
            consul_http: 8500,
            consul_https: 8501,
            consul_dns: 8600,
            consul_server: 8300,
            consul_serf_lan: 8301,
            consul_serf_wan: 8302,
            vault_api: 8200,
            vault_cluster: 8201,
            vault_local: 8210,
            nomad_http: 4646,
            nomad_rpc: 4647,
            nomad_serf: 4648,
        }
    }
}

/// Everything about the stack that is a path or a port, not site policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackLayout {
    /// Rendered config files (tmpfs): `consul.json`, `vault.json`, `nomad.d/`.
    pub config_dir: PathBuf,
    /// The data partition: `consul/`, `vault/`, `nomad/` and `stack/` live here.
    pub data_dir: PathBuf,
    /// This service's status file (`/run/kindling/status/stack.json`).
    pub status_file: PathBuf,
    /// Directory holding `consul`, `vault` (or OpenBao's `bao` installed as
    /// `vault`) and `nomad`.
    pub bin_dir: PathBuf,
    /// The multi-call binary that runs `stack-bootstrap`.
    pub kindlingd: PathBuf,
    /// The address the appliance itself uses to reach the services. Plain
    /// HTTP is used only on this address; it never leaves the machine.
    pub loopback: std::net::Ipv4Addr,
    pub ports: StackPorts,
}

impl StackLayout {
    /// The layout inside the appliance image (docs/contracts.md "Runtime files").
    pub fn appliance() -> Self {
        Self {
            config_dir: PathBuf::from("/run/kindling/stack"),
            data_dir: PathBuf::from("/var/lib/kindling"),
            status_file: PathBuf::from("/run/kindling/status/stack.json"),
            bin_dir: PathBuf::from("/bin"),
            kindlingd: PathBuf::from("/bin/kindlingd"),
            loopback: std::net::Ipv4Addr::LOCALHOST,
            ports: StackPorts::default(),
        }
    }

    pub fn consul_data(&self) -> PathBuf {
        self.data_dir.join("consul")
    }
    pub fn vault_data(&self) -> PathBuf {
        self.data_dir.join("vault")
    }
    pub fn nomad_data(&self) -> PathBuf {
        self.data_dir.join("nomad")
    }
    /// kindling's own stack state on the data partition (encrypted init
    /// secrets, TLS CA, gossip key, bootstrap markers).
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("stack")
    }
    /// Snapshots a restore left for the bootstrap (`vault.snap`,
    /// `consul.snap`), each removed once it is in.
    pub fn restore_dir(&self) -> PathBuf {
        self.state_dir().join("restore")
    }
    pub fn restore_vault_snapshot(&self) -> PathBuf {
        self.restore_dir().join("vault.snap")
    }
    pub fn restore_consul_snapshot(&self) -> PathBuf {
        self.restore_dir().join("consul.snap")
    }
    /// Left once Vault's snapshot is in, until the restored Vault is open:
    /// a bootstrap run meanwhile (say, a reboot while the operator gathers
    /// the shares) reports the restore instead of "no restore".
    pub fn restore_vault_marker(&self) -> PathBuf {
        self.restore_dir().join("vault.restored")
    }
    pub fn consul_config(&self) -> PathBuf {
        self.config_dir.join("consul.json")
    }
    pub fn vault_config(&self) -> PathBuf {
        self.config_dir.join("vault.json")
    }
    /// Nomad reads every file of this directory; the bootstrap adds its
    /// token file here.
    pub fn nomad_config_dir(&self) -> PathBuf {
        self.config_dir.join("nomad.d")
    }
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
    /// `http://127.0.0.1:8210` (loopback listener, plain HTTP).
    pub fn vault_local_url(&self) -> String {
        format!("http://{}:{}", self.loopback, self.ports.vault_local)
    }
    pub fn consul_local_url(&self) -> String {
        format!("http://{}:{}", self.loopback, self.ports.consul_http)
    }
    /// `https://127.0.0.1:4646`: Nomad's API is TLS on every address (its
    /// `tls.http` has no per-listener switch), with client certificates.
    pub fn nomad_local_url(&self) -> String {
        format!("https://{}:{}", self.loopback, self.ports.nomad_http)
    }
    /// Where Vault's audit log lives (its own directory, owned by Vault;
    /// init keeps the file within a size bound).
    pub fn vault_audit_dir(&self) -> PathBuf {
        self.data_dir.join("vault-audit")
    }
    pub fn vault_audit_log(&self) -> PathBuf {
        self.vault_audit_dir().join("audit.log")
    }
}
