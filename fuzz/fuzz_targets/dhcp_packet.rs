//! Fuzzes the DHCP packet handler: any datagram, on either port, in both
//! modes, against a persistent responder (so lease state evolves across
//! inputs). It must never panic; every reply it builds must encode.
#![no_main]

use kindling_pxe::dhcp::{DhcpResponder, NodePolicy, Port};
use kindling_pxe::leases::LeaseStore;
use kindling_pxe::{MacAddr, PxePaths, PxeSettings};
use libfuzzer_sys::fuzz_target;
use std::net::Ipv4Addr;
use std::sync::{Mutex, OnceLock};

struct Policy;
impl NodePolicy for Policy {
    fn may_boot(&self, mac: &MacAddr) -> bool {
        mac.0[5] & 1 == 0
    }
    fn reserved_ip(&self, mac: &MacAddr) -> Option<Ipv4Addr> {
        (mac.0[5] == 0x20).then_some(Ipv4Addr::new(192, 168, 100, 150))
    }
    fn hostname(&self, _: &MacAddr) -> Option<String> {
        Some("node-1".into())
    }
}

fn responder(proxy: bool) -> DhcpResponder {
    let mode = if proxy { "proxy" } else { "authoritative" };
    let site: kindling_site::SiteConfig = serde_json::from_str(&format!(
        r#"{{"site":{{"id":"fuzz"}},"pxe":{{"mode":"{mode}","range":{{"start":"192.168.100.100","end":"192.168.100.110"}}}}}}"#
    ))
    .expect("static fuzz site config parses");
    let settings = PxeSettings::from_site(&site, PxePaths::default()).expect("static settings are valid");
    let leases = LeaseStore::new(settings.range_start, settings.range_end, []);
    DhcpResponder::new(settings, Default::default(), leases)
}

static STATE: OnceLock<[Mutex<DhcpResponder>; 2]> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&selector, datagram)) = data.split_first() else { return };
    let state = STATE.get_or_init(|| [Mutex::new(responder(false)), Mutex::new(responder(true))]);
    let port = if selector & 1 == 0 { Port::Dhcp } else { Port::ProxyPxe };
    let Ok(mut r) = state[usize::from(selector >> 1 & 1)].lock() else { return };
    let now = u64::from(selector >> 2) * 7;
    if let Ok(handled) = r.handle(datagram, port, &Policy, now) {
        if let Some(reply) = handled.reply {
            reply.to_bytes().expect("a reply we built always encodes");
        }
    }
});
