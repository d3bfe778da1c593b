//! What a DHCP request says about its client: MAC, architecture, firmware,
//! whether it already runs iPXE. Read defensively: any field may be missing or
//! malformed, and a malformed one is treated as absent.
//!
//! Owns request inspection only; it never decides an answer.

use dhcproto::v4::{DhcpOption, HType, Message, OptionCode};
use kindling_site::MacAddr;

/// Firmware family, from option 93 / vendor class (a node fact the
/// inventory records).
pub use kindling_inventory::Firmware;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFacts {
    pub mac: MacAddr,
    /// Option 93, when present.
    pub arch: Option<u16>,
    pub firmware: Firmware,
    /// Already running iPXE (user class "iPXE" or iPXE's option 175).
    pub is_ipxe: bool,
    /// Vendor class starts with "PXEClient" or "HTTPClient".
    pub is_pxe: bool,
    pub http_client: bool,
    pub hostname: Option<String>,
}

/// The MAC the rogue-server probes (`rogue`) carry: a request from it is our
/// own, and the responder ignores it.
pub const PROBE_MAC: MacAddr = MacAddr([0x02, 0x6b, 0x69, 0x6e, 0x64, 0x6c]);

/// RFC 4578 / IANA processor architecture numbers we boot.
pub const ARCH_BIOS: u16 = 0;
pub const ARCH_EFI_IA32: u16 = 6;
pub const ARCH_EFI_X64: u16 = 7;
pub const ARCH_EFI_BC: u16 = 9;
pub const ARCH_EFI_X64_HTTP: u16 = 16;

/// The client's MAC, if the header describes an Ethernet address. Checking
/// `hlen` first matters: dhcproto's `chaddr()` slices by `hlen` and would
/// panic on a forged `hlen` above 16.
pub fn ethernet_mac(msg: &Message) -> Option<MacAddr> {
    if msg.htype() != HType::Eth || msg.hlen() != 6 {
        return None;
    }
    MacAddr::from_slice(msg.chaddr())
}

fn bytes_of(msg: &Message, code: OptionCode) -> Option<&[u8]> {
    match msg.opts().get(code)? {
        DhcpOption::ClassIdentifier(v) | DhcpOption::UserClass(v) => Some(v),
        DhcpOption::Unknown(u) => Some(u.data()),
        _ => None,
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub fn inspect(msg: &Message) -> Option<ClientFacts> {
    let mac = ethernet_mac(msg)?;
    let arch = match msg.opts().get(OptionCode::ClientSystemArchitecture) {
        Some(DhcpOption::ClientSystemArchitecture(a)) => Some(a.0),
        _ => None,
    };
    let vendor = bytes_of(msg, OptionCode::ClassIdentifier).unwrap_or_default();
    let http_client = vendor.starts_with(b"HTTPClient") || arch == Some(ARCH_EFI_X64_HTTP);
    let is_pxe = vendor.starts_with(b"PXEClient") || http_client;
    // iPXE sends user class "iPXE" (raw, not RFC 3004 framed) and its own
    // encapsulated option 175.
    let user_class = bytes_of(msg, OptionCode::UserClass).unwrap_or_default();
    let is_ipxe =
        contains(user_class, b"iPXE") || msg.opts().get(OptionCode::Unknown(175)).is_some();
    let firmware = match (arch, is_pxe || is_ipxe) {
        (_, _) if http_client => Firmware::UefiHttp,
        (Some(ARCH_BIOS), true) => Firmware::Bios,
        (Some(ARCH_EFI_X64 | ARCH_EFI_BC | ARCH_EFI_IA32), true) => Firmware::Uefi,
        (None, true) => Firmware::Bios,
        (Some(_), true) => Firmware::Other,
        (_, false) => Firmware::None,
    };
    let hostname = match msg.opts().get(OptionCode::Hostname) {
        Some(DhcpOption::Hostname(h)) if is_clean_hostname(h) => Some(h.clone()),
        _ => None,
    };
    Some(ClientFacts {
        mac,
        arch,
        firmware,
        is_ipxe,
        is_pxe,
        http_client,
        hostname,
    })
}

/// RFC 1123 label characters only, so a hostname a client sends can never
/// smuggle anything into files or scripts.
pub fn is_clean_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
}
