//! Live counters of the PXE service and the `status/pxe.json` file built
//! from them (counters, leases in use, rogue DHCP servers, inventory summary).
//!
//! Owns counting and the status file format. It never decides anything from
//! the counters.

use crate::dhcp::client::{ClientFacts, Firmware};
use crate::dhcp::{Dropped, HolderMessage};
use dhcproto::v4::MessageType;
use kindling_atomic_write::write_atomic;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Clone, Serialize)]
pub struct RogueServer {
    pub server_id: Ipv4Addr,
    pub from: IpAddr,
    pub last_message: String,
    pub first_seen: u64,
    pub last_seen: u64,
    pub count: u64,
}

#[derive(Debug, Default)]
pub struct Stats {
    counters: Mutex<BTreeMap<&'static str, u64>>,
    rogues: Mutex<BTreeMap<Ipv4Addr, RogueServer>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters stay usable even if a holder panicked: they are plain numbers.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stats {
    pub fn bump(&self, name: &'static str) {
        self.add(name, 1);
    }

    pub fn add(&self, name: &'static str, n: u64) {
        *lock(&self.counters).entry(name).or_default() += n;
    }

    pub fn bump_dropped(&self, why: Dropped) {
        let name = match why {
            Dropped::Oversized => "dhcp_dropped_oversized",
            Dropped::Truncated => "dhcp_dropped_truncated",
            Dropped::Malformed => "dhcp_dropped_malformed",
            Dropped::NotRequest => "dhcp_dropped_not_request",
            Dropped::NoMessageType => "dhcp_dropped_no_message_type",
            Dropped::NotEthernet => "dhcp_dropped_not_ethernet",
            Dropped::Ignored => "dhcp_dropped_ignored",
            Dropped::OtherServer => "dhcp_dropped_other_server",
            Dropped::PoolExhausted => "dhcp_dropped_pool_exhausted",
            Dropped::NotPxe => "dhcp_dropped_not_pxe",
            Dropped::NotServed => "dhcp_dropped_not_served",
            Dropped::OwnProbe => "dhcp_dropped_own_probe",
            Dropped::RateLimited => "dhcp_dropped_rate_limited",
            Dropped::NotHolder(refused) => match refused.message {
                HolderMessage::Release => "dhcp_refused_release",
                HolderMessage::Decline => "dhcp_refused_decline",
            },
        };
        self.bump(name);
    }

    /// A DHCP reply that carried a boot file, by the boot path the client
    /// takes. Tells an operator (and the firmware tests) which paths are in
    /// use: a UEFI HTTP boot client and a UEFI PXE client look alike in the
    /// inventory once iPXE, which reports plain UEFI, has taken over.
    pub fn bump_boot_answer(&self, facts: &ClientFacts) {
        self.bump(boot_answer_counter(facts));
    }

    pub fn get(&self, name: &str) -> u64 {
        lock(&self.counters).get(name).copied().unwrap_or(0)
    }

    /// Records a reply from another server; true the first time it is seen.
    pub fn rogue_seen(&self, server_id: Ipv4Addr, from: IpAddr, kind: MessageType) -> bool {
        let now = kindling_clock::unix_now();
        let mut rogues = lock(&self.rogues);
        let entry = rogues.entry(server_id).or_insert_with(|| RogueServer {
            server_id,
            from,
            last_message: String::new(),
            first_seen: now,
            last_seen: now,
            count: 0,
        });
        entry.count += 1;
        entry.last_seen = now;
        entry.from = from;
        entry.last_message = format!("{kind:?}").to_lowercase();
        entry.count == 1
    }

    pub fn rogues(&self) -> Vec<RogueServer> {
        lock(&self.rogues).values().cloned().collect()
    }

    pub fn counters(&self) -> BTreeMap<&'static str, u64> {
        lock(&self.counters).clone()
    }
}

/// Mirrors `dhcp::boot::choose`: iPXE is recognised before the firmware.
fn boot_answer_counter(facts: &ClientFacts) -> &'static str {
    if facts.is_ipxe {
        return "dhcp_boot_ipxe";
    }
    match facts.firmware {
        Firmware::Bios => "dhcp_boot_bios",
        Firmware::Uefi => "dhcp_boot_uefi",
        Firmware::UefiHttp => "dhcp_boot_uefi_http",
        // `choose` gives these no boot file; counted rather than hidden
        // should that ever change.
        Firmware::Other | Firmware::None => "dhcp_boot_other",
    }
}

#[derive(Debug, Serialize)]
pub struct StatusFile<'a> {
    pub service: &'static str,
    pub ready: bool,
    pub mode: &'a str,
    pub interface: Option<&'a str>,
    pub listeners: Vec<String>,
    pub updated: u64,
    pub counters: BTreeMap<&'static str, u64>,
    pub leases_in_use: usize,
    /// The cap on discovered-only inventory records (`pxe.max_discovered`);
    /// `counters.inventory_evicted` counts the records it forgot.
    pub inventory_max_discovered: usize,
    pub rogue_dhcp_servers: Vec<RogueServer>,
    pub inventory: BTreeMap<String, usize>,
    pub problems: Vec<String>,
    /// Nodes that need an operator's eye (`grant-reused`, `grant-expired`,
    /// `grant-used-elsewhere`), one line each: `MAC kind: detail`.
    pub alerts: Vec<String>,
}

pub fn write_status(path: &Path, status: &StatusFile<'_>) -> std::io::Result<()> {
    let bytes = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    // Status is rebuilt every few seconds and lives on tmpfs: no fsync.
    write_atomic(path, &bytes, false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kindling_site::MacAddr;

    fn facts(firmware: Firmware, is_ipxe: bool) -> ClientFacts {
        ClientFacts {
            mac: MacAddr([0x52, 0x54, 0, 0x6b, 0, 1]),
            arch: None,
            firmware,
            is_ipxe,
            is_pxe: true,
            http_client: firmware == Firmware::UefiHttp,
            hostname: None,
        }
    }

    #[test]
    fn boot_answers_are_counted_by_boot_path() {
        let stats = Stats::default();
        stats.bump_boot_answer(&facts(Firmware::UefiHttp, false));
        stats.bump_boot_answer(&facts(Firmware::Uefi, false));
        stats.bump_boot_answer(&facts(Firmware::Uefi, true));
        stats.bump_boot_answer(&facts(Firmware::Bios, false));
        assert_eq!(stats.get("dhcp_boot_uefi_http"), 1);
        assert_eq!(stats.get("dhcp_boot_uefi"), 1);
        assert_eq!(
            stats.get("dhcp_boot_ipxe"),
            1,
            "iPXE wins over its firmware"
        );
        assert_eq!(stats.get("dhcp_boot_bios"), 1);
    }
}
