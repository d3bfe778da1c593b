//! Kernel knobs under `/proc/sys/net` the network phase sets: IPv4 forwarding
//! and IPv6 router advertisements (SLAAC) on the uplink.
//!
//! Owns the paths and values. It never shells out to `sysctl`. The files
//! belong to the network namespace of the calling thread.

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[error("set {key} = {value}: {source}")]
pub struct SysctlWriteError {
    pub key: String,
    pub value: String,
    pub source: io::Error,
}

/// Writes `/proc/sys/<parts…>`; parts are path components, so an interface
/// name containing '.' (a VLAN like `eth1.100`) stays one component.
pub fn write(parts: &[&str], value: &str) -> Result<(), SysctlWriteError> {
    let mut path = PathBuf::from("/proc/sys");
    path.extend(parts);
    std::fs::write(&path, value).map_err(|source| SysctlWriteError {
        key: parts.join("."),
        value: value.into(),
        source,
    })
}

pub fn read(parts: &[&str]) -> Option<String> {
    let mut path = PathBuf::from("/proc/sys");
    path.extend(parts);
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

/// IPv4 forwarding on (NAT needs it).
pub fn enable_ipv4_forwarding() -> Result<(), SysctlWriteError> {
    write(&["net", "ipv4", "ip_forward"], "1")
}

/// SLAAC on the uplink: accept RAs although forwarding is on (`2`), and
/// autoconfigure an address from them.
pub fn accept_router_advertisements(device: &str) -> Result<(), SysctlWriteError> {
    write(&["net", "ipv6", "conf", device, "accept_ra"], "2")?;
    write(&["net", "ipv6", "conf", device, "autoconf"], "1")
}
