//! The appliance's fixed user and group ids: one account per child service,
//! plus the groups that share a directory or a socket between services.
//!
//! Owns the numbers and names only. The service table (kindlingd) puts them
//! in each `ServiceSpec`, the config phase owns state directories by them,
//! the image builder writes `/etc/passwd` and `/etc/group` from them and init
//! gives its control socket to [`CONTROL`]. Fixed numbers (like Android's
//! AIDs) rather than names looked up at run time: the image has no user
//! database a service could change, and a number in a spec means the same on
//! every appliance. Must never hold uid 0: root is init's alone.

/// A service's own account: its uid and its primary group of the same number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub name: &'static str,
    pub uid: u32,
    /// The primary group; equal to `uid` for every service account.
    pub gid: u32,
}

/// A group that is not any service's primary group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    pub name: &'static str,
    pub gid: u32,
}

const fn account(name: &'static str, id: u32) -> Account {
    Account {
        name,
        uid: id,
        gid: id,
    }
}

/// `kindlingd net`: links, addresses, nftables, uplink DHCP, LAN DNS.
pub const NET: Account = account("kl-net", 401);
/// `kindlingd pxe`: DHCP, TFTP, HTTP boot, enrollment grants.
pub const PXE: Account = account("kl-pxe", 402);
/// `kindlingd api`: the control API.
pub const API: Account = account("kl-api", 403);
/// ntpd-rs serving the LAN.
pub const NTP: Account = account("kl-ntp", 404);
/// `kindlingd dashboard`: the live status screen on the console (tty1).
pub const CONSOLE: Account = account("kl-console", 405);
/// `kindlingd update`: the A/B slots on the EFI system partition.
pub const UPDATE: Account = account("kl-update", 406);
/// Consul.
pub const CONSUL: Account = account("kl-consul", 410);
/// Vault (or OpenBao).
pub const VAULT: Account = account("kl-vault", 411);
/// Nomad.
pub const NOMAD: Account = account("kl-nomad", 412);
/// `kindlingd stack-bootstrap`: configures Consul, Vault and Nomad and holds
/// their management tokens.
pub const STACK: Account = account("kl-stack", 413);

/// Every service writes its status file into `/run/kindling/status`
/// (sticky: each replaces only its own file).
pub const STATUS: Group = Group {
    name: "kl-status",
    gid: 420,
};
/// May talk to init's control socket: the API (anything), the stack
/// bootstrap (list, restart its services), the console dashboard (list).
pub const CONTROL: Group = Group {
    name: "kl-control",
    gid: 421,
};
/// PXE records what nodes do, the API records operators' assignments: both
/// write `/var/lib/kindling/inventory`.
pub const INVENTORY: Group = Group {
    name: "kl-inventory",
    gid: 422,
};

/// Every service account, in table order.
pub const ALL: &[Account] = &[
    NET, PXE, API, NTP, CONSOLE, UPDATE, CONSUL, VAULT, NOMAD, STACK,
];
/// Every shared group.
pub const GROUPS: &[Group] = &[STATUS, CONTROL, INVENTORY];

/// Who holds each shared group. The stack bootstrap also holds Consul's,
/// Vault's and Nomad's primary groups: it writes their ACL reset files and
/// rewrites Vault's config, and gives those files to the service's group.
pub const MEMBERS: &[(Group, &[Account])] = &[
    (STATUS, &[NET, PXE, API, UPDATE, STACK]),
    (CONTROL, &[API, STACK, CONSOLE, UPDATE]),
    (INVENTORY, &[PXE, API]),
];

/// The supplementary groups of `account` (see [`MEMBERS`]).
pub fn supplementary_groups(account: Account) -> Vec<u32> {
    let mut out: Vec<u32> = MEMBERS
        .iter()
        .filter(|(_, members)| members.contains(&account))
        .map(|(g, _)| g.gid)
        .collect();
    if account == STACK {
        out.extend([CONSUL.gid, VAULT.gid, NOMAD.gid]);
    }
    out
}

/// The account with this uid, if it is one of ours.
pub fn by_uid(uid: u32) -> Option<Account> {
    ALL.iter().copied().find(|a| a.uid == uid)
}

/// `/etc/passwd` for the image: root plus one line per service account (no
/// login shell, no home).
pub fn passwd() -> String {
    let mut out = String::from("root:x:0:0:root:/:/bin/false\n");
    for a in ALL {
        out.push_str(&format!(
            "{}:x:{}:{}:kindling {}:/nonexistent:/bin/false\n",
            a.name, a.uid, a.gid, a.name
        ));
    }
    out
}

/// `/etc/group` for the image, from [`MEMBERS`] (what each service's spec
/// carries as `groups`; this file only lets tools show names).
pub fn group() -> String {
    let members = MEMBERS;
    let mut out = String::from("root:x:0:\n");
    for a in ALL {
        let extra = if [CONSUL, VAULT, NOMAD].contains(a) {
            STACK.name
        } else {
            ""
        };
        out.push_str(&format!("{}:x:{}:{extra}\n", a.name, a.gid));
    }
    for g in GROUPS {
        let names: Vec<&str> = members
            .iter()
            .filter(|(m, _)| m == g)
            .flat_map(|(_, accounts)| accounts.iter().map(|a| a.name))
            .collect();
        out.push_str(&format!("{}:x:{}:{}\n", g.name, g.gid, names.join(",")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn ids_are_unique_and_never_root() {
        let mut ids = BTreeSet::new();
        for a in ALL {
            assert_ne!(a.uid, 0, "{} must not be root", a.name);
            assert_eq!(a.uid, a.gid, "{}: primary group = uid", a.name);
            assert!(ids.insert(a.uid), "{} reuses id {}", a.name, a.uid);
        }
        for g in GROUPS {
            assert!(ids.insert(g.gid), "{} reuses id {}", g.name, g.gid);
        }
        let names: BTreeSet<&str> = ALL
            .iter()
            .map(|a| a.name)
            .chain(GROUPS.iter().map(|g| g.name))
            .collect();
        assert_eq!(names.len(), ALL.len() + GROUPS.len());
    }

    #[test]
    fn passwd_and_group_lines() {
        let passwd = passwd();
        assert!(passwd.contains("kl-vault:x:411:411:"), "{passwd}");
        assert_eq!(passwd.lines().count(), ALL.len() + 1);
        let group = group();
        assert!(
            group.contains("kl-control:x:421:kl-api,kl-stack,kl-console,kl-update\n"),
            "{group}"
        );
        assert!(group.contains("kl-vault:x:411:kl-stack\n"), "{group}");
        assert!(group.contains("kl-net:x:401:\n"), "{group}");
        assert_eq!(supplementary_groups(NET), [STATUS.gid]);
        assert_eq!(
            supplementary_groups(STACK),
            [STATUS.gid, CONTROL.gid, CONSUL.gid, VAULT.gid, NOMAD.gid]
        );
        assert!(supplementary_groups(VAULT).is_empty());
        assert_eq!(by_uid(411), Some(VAULT));
        assert_eq!(by_uid(0), None);
    }
}
