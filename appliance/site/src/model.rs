//! `site.toml`: one appliance site's configuration. Secure values are the `Default`.
//!
//! This module owns the shape of the model (field names, defaults, the types
//! that validate themselves). Checks that need the whole config (a DHCP range
//! inside the LAN, profile references) live in `validate`; reading files lives in
//! `load`. It never reads files itself.

use crate::{Cidr, MacAddr, ProfileName};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// The effective configuration of one appliance, after overlays are merged.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Required in the merged result (some layer must set `site.id`), optional in
    /// any one overlay file so per-appliance overlays can be partial.
    #[serde(default)]
    pub site: SiteIdentity,
    #[serde(default)]
    pub network: NetworkConfig,
    #[serde(default)]
    pub dns: DnsConfig,
    #[serde(default)]
    pub pxe: PxeConfig,
    /// MAC → node assignments (profile, reserved address, hostname).
    #[serde(default)]
    pub nodes: Vec<NodeAssignment>,
    /// Profiles for nodes by MAC prefix, firmware, architecture or the
    /// operator's node tags, after runtime assignments and `[[nodes]]`,
    /// before `pxe.unknown`; the narrowest match wins, and two rules that
    /// can match one node with neither narrower are refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selectors: Vec<crate::ProfileSelector>,
    #[serde(default)]
    pub stack: StackConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub time: TimeConfig,
    /// How much of every service's output the appliance keeps.
    #[serde(default)]
    pub logs: LogsConfig,
    /// Enrollment grants: how long a node's grant lives.
    #[serde(default)]
    pub enrollment: crate::EnrollmentConfig,
    /// The signed update channel the appliance follows, and when it may
    /// apply what it finds. No `channel`: it does not poll.
    #[serde(default)]
    pub update: crate::UpdateConfig,
    /// Scheduled backups and how many are kept (docs/backups.md).
    #[serde(default)]
    pub backup: BackupConfig,
    /// Install the appliance to a local disk when it boots from its ISO or
    /// USB stick (docs/install.md). Absent: it runs from RAM.
    #[serde(default, skip_serializing_if = "InstallConfig::is_unset")]
    pub install: InstallConfig,
    /// Profiles by name; loaded from `profiles/*.toml` of the overlay tree (not
    /// written in site.toml, hence absent from site.toml's schema).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub profiles: BTreeMap<ProfileName, crate::Profile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SiteIdentity {
    /// Overlays signed for another site id are refused. Lower-case letters,
    /// digits and '-'.
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default = "default_hostname")]
    pub hostname: String,
    #[serde(default = "default_domain")]
    pub domain: String,
}

impl Default for SiteIdentity {
    fn default() -> Self {
        Self {
            id: String::new(),
            name: String::new(),
            hostname: default_hostname(),
            domain: default_domain(),
        }
    }
}

fn default_hostname() -> String {
    "kindling".into()
}
fn default_domain() -> String {
    "kindling.internal".into()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    #[serde(default = "UplinkConfig::default")]
    pub uplink: UplinkConfig,
    #[serde(default = "LanConfig::default")]
    pub lan: LanConfig,
}

/// How a NIC role is bound to a physical interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum NicMatch {
    /// The n-th physical NIC (1-based) in PCI/bus order.
    Order(u32),
    /// The NIC with this MAC address (`aa:bb:cc:dd:ee:ff`).
    Mac(MacAddr),
    /// The NIC at this PCI path, e.g. `0000:00:03.0`.
    PciPath(String),
    /// The first NIC that reports carrier and is not claimed by another role.
    FirstWithCarrier,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UplinkConfig {
    #[serde(rename = "match", default = "uplink_default_match")]
    pub nic: NicMatch,
    #[serde(default)]
    pub mode: UplinkMode,
    /// Static mode: address in CIDR form, e.g. `10.0.0.2/24`.
    #[serde(default)]
    pub address: Option<Cidr>,
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    #[serde(default)]
    pub dns: Vec<Ipv4Addr>,
    /// Services reachable from the uplink side (e.g. "api", "vault", "consul", "nomad").
    /// Nothing by default.
    #[serde(default)]
    pub expose: Vec<String>,
    #[serde(default)]
    pub mtu: Option<u32>,
}

fn uplink_default_match() -> NicMatch {
    NicMatch::Order(1)
}

impl Default for UplinkConfig {
    fn default() -> Self {
        Self {
            nic: uplink_default_match(),
            mode: UplinkMode::Dhcp,
            address: None,
            gateway: None,
            dns: Vec::new(),
            expose: Vec::new(),
            mtu: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UplinkMode {
    #[default]
    Dhcp,
    Static,
    /// No uplink: LAN services only, no NAT.
    None,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LanConfig {
    #[serde(rename = "match", default = "lan_default_match")]
    pub nic: NicMatch,
    /// The appliance's LAN address in CIDR form.
    #[serde(default = "lan_default_address")]
    pub address: Cidr,
    #[serde(default)]
    pub vlan: Option<u16>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Masquerade LAN traffic out of the uplink.
    #[serde(default = "yes")]
    pub nat: bool,
}

fn lan_default_match() -> NicMatch {
    NicMatch::Order(2)
}
fn lan_default_address() -> Cidr {
    // `Cidr::new` only fails for a prefix over 32; this one is /24.
    Cidr::new(Ipv4Addr::new(192, 168, 100, 1), 24).unwrap_or_else(|_| Cidr::any())
}
fn yes() -> bool {
    true
}

impl Default for LanConfig {
    fn default() -> Self {
        Self {
            nic: lan_default_match(),
            address: lan_default_address(),
            vlan: None,
            mtu: None,
            nat: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Run the LAN DNS forwarder on the LAN address.
    #[serde(default = "yes")]
    pub forwarder: bool,
    /// Queries under this domain go to Consul's DNS.
    #[serde(default = "consul_domain")]
    pub consul_domain: String,
    /// Upstream resolvers; empty means the ones learnt from the uplink lease.
    #[serde(default)]
    pub upstream: Vec<Ipv4Addr>,
}

fn consul_domain() -> String {
    "consul".into()
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            forwarder: true,
            consul_domain: consul_domain(),
            upstream: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PxeConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub mode: DhcpMode,
    #[serde(default = "default_range")]
    pub range: DhcpRange,
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u32,
    #[serde(default)]
    pub ntp: Vec<Ipv4Addr>,
    /// Profile for MACs with no assignment.
    #[serde(default)]
    pub default_profile: Option<ProfileName>,
    /// What an unknown MAC gets: the default profile, a menu, or nothing.
    #[serde(default)]
    pub unknown: UnknownMacPolicy,
    /// Send IPv6 router advertisements on the LAN (stops iPXE's IPv6 wait).
    #[serde(default = "yes")]
    pub router_advertisements: bool,
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// How many nodes seen only by DHCP (discovered, never provisioned) the
    /// inventory keeps. Past this, the oldest such record is forgotten and
    /// the eviction counted in status, so DHCP packets from made-up MACs
    /// cannot grow the inventory without bound. Nodes listed in `[[nodes]]`,
    /// nodes assigned a profile at runtime and nodes that got past
    /// discovery are never forgotten. At least 1.
    #[serde(default = "default_max_discovered")]
    pub max_discovered: u32,
}

fn default_range() -> DhcpRange {
    DhcpRange {
        start: Ipv4Addr::new(192, 168, 100, 100),
        end: Ipv4Addr::new(192, 168, 100, 200),
    }
}
fn default_lease_secs() -> u32 {
    3600
}
fn default_http_port() -> u16 {
    80
}
fn default_max_discovered() -> u32 {
    1024
}

impl Default for PxeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            mode: DhcpMode::Authoritative,
            range: default_range(),
            lease_secs: default_lease_secs(),
            ntp: Vec::new(),
            default_profile: None,
            unknown: UnknownMacPolicy::DefaultProfile,
            router_advertisements: true,
            http_port: default_http_port(),
            max_discovered: default_max_discovered(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DhcpMode {
    /// Hand out addresses from `range` and boot information.
    #[default]
    Authoritative,
    /// Another DHCP server owns addresses; answer with boot information only.
    Proxy,
}

/// An address range handed out by the DHCP server: `start <= end` holds by
/// construction; that it lies inside the LAN is checked with the whole config
/// (`SiteConfig::validate`), since it depends on `network.lan.address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, try_from = "RawDhcpRange")]
pub struct DhcpRange {
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
}

impl DhcpRange {
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }
    /// Number of addresses in the range.
    pub fn len(&self) -> u64 {
        u64::from(u32::from(self.end)) - u64::from(u32::from(self.start)) + 1
    }
    /// Never true: construction ensures `start <= end`; present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawDhcpRange {
    start: Ipv4Addr,
    end: Ipv4Addr,
}

impl TryFrom<RawDhcpRange> for DhcpRange {
    type Error = String;
    fn try_from(raw: RawDhcpRange) -> Result<Self, String> {
        if raw.start > raw.end {
            return Err(format!(
                "DHCP range start {} is after its end {}",
                raw.start, raw.end
            ));
        }
        Ok(Self {
            start: raw.start,
            end: raw.end,
        })
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnknownMacPolicy {
    #[default]
    DefaultProfile,
    Menu,
    Ignore,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeAssignment {
    pub mac: MacAddr,
    pub profile: ProfileName,
    #[serde(default)]
    pub ip: Option<Ipv4Addr>,
    #[serde(default)]
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    #[serde(default = "default_datacenter")]
    pub datacenter: String,
    #[serde(default)]
    pub consul: ConsulConfig,
    #[serde(default)]
    pub vault: VaultConfig,
    #[serde(default)]
    pub nomad: NomadConfig,
}

impl StackConfig {
    /// Consul, Vault or Nomad runs on this appliance.
    pub fn any_enabled(&self) -> bool {
        self.consul.enabled || self.vault.enabled || self.nomad.enabled
    }
}

fn default_datacenter() -> String {
    "dc1".into()
}

impl Default for StackConfig {
    fn default() -> Self {
        Self {
            datacenter: default_datacenter(),
            consul: ConsulConfig::default(),
            vault: VaultConfig::default(),
            nomad: NomadConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsulConfig {
    #[serde(default)]
    pub enabled: bool,
    /// Use Vault as Connect's CA provider.
    #[serde(default)]
    pub connect_vault_ca: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub storage: VaultStorage,
    #[serde(default = "default_key_shares")]
    pub key_shares: u8,
    #[serde(default = "default_key_threshold")]
    pub key_threshold: u8,
    #[serde(default)]
    pub unseal: UnsealMode,
    /// Operator public keys (age X25519 recipients, `age1…`) the unseal keys and
    /// root token are encrypted to. Required when Vault is enabled.
    #[serde(default)]
    pub recipients: Vec<String>,
}

fn default_key_shares() -> u8 {
    5
}
fn default_key_threshold() -> u8 {
    3
}

impl Default for VaultConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            storage: VaultStorage::Raft,
            key_shares: default_key_shares(),
            key_threshold: default_key_threshold(),
            unseal: UnsealMode::Manual,
            recipients: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum VaultStorage {
    #[default]
    Raft,
    Consul,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnsealMode {
    /// The operator submits key shares; the secure default.
    #[default]
    Manual,
    /// Lab only: one key share is kept on the data partition.
    Local,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NomadConfig {
    #[serde(default)]
    pub enabled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// TCP port of the control API (TLS only): on the LAN address, and on the
    /// uplink address only when `network.uplink.expose` has "api".
    #[serde(default = "default_api_port")]
    pub port: u16,
    /// Who may call the API. Empty (the default): nobody, every request but
    /// `GET /healthz` is refused. Each operator proves itself with a bearer
    /// token whose SHA-256 is listed here (`kindling token new`).
    #[serde(default)]
    pub operators: Vec<crate::ApiOperator>,
}

fn default_api_port() -> u16 {
    9000
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            port: default_api_port(),
            operators: Vec::new(),
        }
    }
}

/// The appliance's clock and the LAN's time service (ntpd-rs, a supervised
/// child, when the image includes `ntp-daemon`). Until the clock is
/// synchronised it never runs earlier than the image's build time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TimeConfig {
    /// Serve NTP on the LAN address (UDP 123, LAN subnet only, rate
    /// limited). Nodes are told the appliance's address in DHCP option 42.
    #[serde(default)]
    pub ntp_server: bool,
    /// Upstream NTP servers, reached over the uplink: an address or a host
    /// name, optionally `:port`. Empty: the clock is not synchronised and the
    /// LAN server answers as unsynchronised (stratum 16), which clients ignore.
    #[serde(default)]
    pub sources: Vec<String>,
    /// How many sources must agree before the clock is steered. Default:
    /// all of them, at most 3.
    #[serde(default)]
    pub minimum_agreeing_sources: Option<u8>,
    /// Shortest poll interval, as log2 seconds (4 = 16 s). Public pools ask
    /// for 6 or more; a server of the operator's own may allow less.
    #[serde(default = "default_min_poll")]
    pub min_poll: u8,
}

/// Every service's output is kept in files on the data partition (in RAM
/// when there is none), rotated: at most `files_per_service` files of
/// `file_kib` KiB per service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogsConfig {
    /// Largest size of one log file, in KiB (4 to 65536).
    #[serde(default = "default_log_file_kib")]
    pub file_kib: u32,
    /// Files kept per service, the current one included (1 to 32).
    #[serde(default = "default_log_files")]
    pub files_per_service: u32,
    /// A syslog server, `ADDR:PORT` (an IP address, no name), that gets
    /// every service line too, RFC 5424 over UDP from the appliance's
    /// address toward it (docs/security.md). Unset: lines stay on the
    /// appliance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<String>,
}

fn default_log_file_kib() -> u32 {
    1024
}

fn default_log_files() -> u32 {
    4
}

impl Default for LogsConfig {
    fn default() -> Self {
        Self {
            file_kib: default_log_file_kib(),
            files_per_service: default_log_files(),
            syslog: None,
        }
    }
}

/// `[install]`: on a boot from the ISO or a USB stick, write the raw A/B
/// disk layout to `disk`, copy the running state onto it and reboot into
/// it (docs/install.md). The kernel argument `kindling.install=<disk>`
/// overrides it. Boots from a disk's slots never install.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InstallConfig {
    /// The disk to install to: `/dev/disk/by-id/…` (matched by its serial,
    /// the appliance has no udev), a device path (`/dev/sda`) or a kernel
    /// name (`nvme0n1`). Unset: no install.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    /// Erase a disk that already holds a partition table or a filesystem.
    /// Without it such a disk is refused, and the refusal says what it holds.
    #[serde(default)]
    pub wipe: bool,
}

impl InstallConfig {
    /// Nothing asked: the default, left out of the effective config.
    pub fn is_unset(&self) -> bool {
        *self == InstallConfig::default()
    }
}

/// Backups of Consul, Vault, leases, inventory and accepted overlays,
/// encrypted to `stack.vault.recipients`, kept in `backups/` on the data
/// partition (docs/backups.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupConfig {
    /// Hours between scheduled backups (1 to 8760); 0: on demand only
    /// (`kindling backup now`).
    #[serde(default = "default_backup_every_hours")]
    pub every_hours: u32,
    /// Backups kept, the newest first (1 to 1000); older ones are removed
    /// after each new backup.
    #[serde(default = "default_backup_keep")]
    pub keep: u32,
    /// Most MiB all kept backups may take together (at least 1); the newest
    /// is kept even when it alone is larger.
    #[serde(default = "default_backup_max_mib")]
    pub max_mib: u32,
}

fn default_backup_every_hours() -> u32 {
    24
}

fn default_backup_keep() -> u32 {
    7
}

fn default_backup_max_mib() -> u32 {
    4096
}

impl Default for BackupConfig {
    fn default() -> Self {
        Self {
            every_hours: default_backup_every_hours(),
            keep: default_backup_keep(),
            max_mib: default_backup_max_mib(),
        }
    }
}

fn default_min_poll() -> u8 {
    4
}

impl Default for TimeConfig {
    fn default() -> Self {
        Self {
            ntp_server: false,
            sources: Vec::new(),
            minimum_agreeing_sources: None,
            min_poll: default_min_poll(),
        }
    }
}

impl TimeConfig {
    /// The agreement the clock waits for: the site's, else every configured
    /// source, at most 3 (ntpd-rs' own default).
    pub fn agreeing_sources(&self) -> usize {
        match self.minimum_agreeing_sources {
            Some(n) => usize::from(n),
            None => self.sources.len().clamp(1, 3),
        }
    }
}
