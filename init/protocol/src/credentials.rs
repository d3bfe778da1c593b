//! What a running process really holds: its ids and capability sets, read
//! from `/proc/PID/status`, so status shows the truth about a child rather
//! than what its spec asked for.
//!
//! Owns the parsing of that file's `Uid`, `Gid`, `Groups`, `CapEff`,
//! `CapPrm`, `CapBnd` and `NoNewPrivs` lines. Never changes a process.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// A process's credentials as the kernel reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessCredentials {
    /// Effective uid.
    pub uid: u32,
    /// Effective gid.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// Effective capabilities, by name (`CAP_NET_ADMIN`).
    pub effective: Vec<String>,
    /// Permitted capabilities.
    pub permitted: Vec<String>,
    /// The bounding set: what the process could ever regain.
    pub bounding: Vec<String>,
    /// `no_new_privs`: exec cannot add privileges (setuid, file capabilities).
    pub no_new_privs: bool,
}

impl ProcessCredentials {
    /// Reads `/proc/PID/status`; `None` when the process is gone.
    pub fn of_pid(pid: u32) -> Option<Self> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Self::parse(&text)
    }

    /// Parses the text of a `/proc/PID/status` file.
    pub fn parse(text: &str) -> Option<Self> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        // Real, effective, saved, filesystem: the second is the effective id.
        let second =
            |name: &str| -> Option<u32> { field(name)?.split_whitespace().nth(1)?.parse().ok() };
        let set = |name: &str| -> Option<Vec<String>> {
            Some(capability_names(
                u64::from_str_radix(field(name)?, 16).ok()?,
            ))
        };
        Some(Self {
            uid: second("Uid")?,
            gid: second("Gid")?,
            groups: field("Groups")?
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect(),
            effective: set("CapEff")?,
            permitted: set("CapPrm")?,
            bounding: set("CapBnd")?,
            no_new_privs: field("NoNewPrivs") == Some("1"),
        })
    }
}

/// The names of the capabilities set in `mask`, in number order; a bit this
/// build does not know shows as `CAP_<n>`.
pub fn capability_names(mask: u64) -> Vec<String> {
    (0..64u8)
        .filter(|bit| mask & (1u64 << bit) != 0)
        .map(|bit| {
            caps::all()
                .into_iter()
                .find(|c| c.index() == bit)
                .map(|c| c.to_string())
                .unwrap_or_else(|| format!("CAP_{bit}"))
        })
        .collect()
}

/// The bit mask of the named capabilities (`CAP_NET_ADMIN`, ...).
pub fn capability_mask(names: &[String]) -> Result<u64, String> {
    names.iter().try_fold(0u64, |mask, name| {
        caps::Capability::from_str(name)
            .map(|c| mask | (1u64 << c.index()))
            .map_err(|_| format!("unknown capability {name:?}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tkindlingd\nUmask:\t0022\nState:\tS (sleeping)\n\
        Uid:\t401\t401\t401\t401\nGid:\t401\t401\t401\t401\nGroups:\t420 421 \n\
        CapInh:\t0000000000003000\nCapPrm:\t0000000000003400\nCapEff:\t0000000000003400\n\
        CapBnd:\t0000000000003400\nCapAmb:\t0000000000003400\nNoNewPrivs:\t1\n";

    #[test]
    fn parses_ids_groups_and_sets() {
        let c = ProcessCredentials::parse(STATUS).unwrap();
        assert_eq!((c.uid, c.gid), (401, 401));
        assert_eq!(c.groups, [420, 421]);
        // 0x3400: NET_BIND_SERVICE (10), NET_ADMIN (12), NET_RAW (13).
        assert_eq!(
            c.effective,
            ["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN", "CAP_NET_RAW"]
        );
        assert_eq!(c.bounding, c.effective);
        assert!(c.no_new_privs);
    }

    #[test]
    fn masks_round_trip() {
        let names = vec!["CAP_NET_RAW".to_string(), "CAP_SYS_TIME".to_string()];
        let mask = capability_mask(&names).unwrap();
        assert_eq!(capability_names(mask), ["CAP_NET_RAW", "CAP_SYS_TIME"]);
        assert!(capability_mask(&["CAP_BOGUS".to_string()]).is_err());
        assert_eq!(capability_names(1 << 63), ["CAP_63"]);
    }

    #[test]
    fn a_truncated_file_is_none() {
        assert_eq!(
            ProcessCredentials::parse("Name:\tx\nUid:\t1\t1\t1\t1\n"),
            None
        );
    }
}
