//! The network options a lease carries, as one table: a full answer puts in
//! every option that has a value, a proxy answer (boot information only)
//! takes every one of them out, so the two can never disagree. Adding a DHCP
//! option is one row here (plus its field in `PxeSettings` when the site
//! chooses the value).
//!
//! Owns which network options exist and their values. Must never decide
//! whether to answer, which address to give or which boot file: that is the
//! responder's and `boot`'s.

use super::client;
use crate::settings::PxeSettings;
use dhcproto::v4::{DhcpOption, OptionCode};

/// One network option: its code and its value under these settings (`None`:
/// not sent, e.g. no DNS server configured).
struct NetworkOption {
    code: OptionCode,
    value: fn(&PxeSettings) -> Option<DhcpOption>,
}

fn listed<T>(v: &[T], option: fn(Vec<T>) -> DhcpOption) -> Option<DhcpOption>
where
    T: Clone,
{
    (!v.is_empty()).then(|| option(v.to_vec()))
}

const NETWORK_OPTIONS: &[NetworkOption] = &[
    NetworkOption {
        code: OptionCode::AddressLeaseTime,
        value: |s| Some(DhcpOption::AddressLeaseTime(s.lease_secs)),
    },
    NetworkOption {
        code: OptionCode::Renewal,
        value: |s| Some(DhcpOption::Renewal(s.lease_secs / 2)),
    },
    NetworkOption {
        code: OptionCode::Rebinding,
        value: |s| Some(DhcpOption::Rebinding(s.lease_secs / 8 * 7)),
    },
    NetworkOption {
        code: OptionCode::SubnetMask,
        value: |s| Some(DhcpOption::SubnetMask(s.netmask())),
    },
    NetworkOption {
        code: OptionCode::BroadcastAddr,
        value: |s| Some(DhcpOption::BroadcastAddr(s.broadcast())),
    },
    NetworkOption {
        code: OptionCode::Router,
        value: |s| Some(DhcpOption::Router(vec![s.lan_addr])),
    },
    NetworkOption {
        code: OptionCode::DomainNameServer,
        value: |s| listed(&s.dns, DhcpOption::DomainNameServer),
    },
    NetworkOption {
        code: OptionCode::DomainName,
        value: |s| (!s.domain.is_empty()).then(|| DhcpOption::DomainName(s.domain.clone())),
    },
    NetworkOption {
        code: OptionCode::NtpServers,
        value: |s| listed(&s.ntp, DhcpOption::NtpServers),
    },
];

/// The network options a full answer carries under `settings`.
pub fn network_options(settings: &PxeSettings) -> impl Iterator<Item = DhcpOption> + '_ {
    NETWORK_OPTIONS.iter().filter_map(|o| (o.value)(settings))
}

/// The codes of every network option, whatever the settings: what a proxy
/// answer must not carry.
pub fn network_option_codes() -> impl Iterator<Item = OptionCode> {
    NETWORK_OPTIONS.iter().map(|o| o.code)
}

/// The host name option, when the name is one a client may safely take.
pub fn hostname(name: Option<&str>) -> Option<DhcpOption> {
    name.filter(|h| client::is_clean_hostname(h))
        .map(|h| DhcpOption::Hostname(h.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn every_value_set() -> PxeSettings {
        let site = crate::settings::tests::lab_site();
        let paths = crate::settings::PxePaths::default();
        let mut s = PxeSettings::from_site(&site, paths).expect("the lab site translates");
        s.dns = vec![Ipv4Addr::new(192, 168, 100, 1)];
        s.ntp = vec![Ipv4Addr::new(192, 168, 100, 1)];
        s.domain = "lab.example".into();
        s
    }

    #[test]
    fn each_row_produces_the_option_it_names() {
        let s = every_value_set();
        for row in NETWORK_OPTIONS {
            let value = (row.value)(&s).expect("every value is set");
            assert_eq!(OptionCode::from(&value), row.code, "{value:?}");
        }
        assert_eq!(network_options(&s).count(), NETWORK_OPTIONS.len());
    }

    #[test]
    fn options_without_a_value_are_left_out() {
        let mut s = every_value_set();
        s.dns.clear();
        s.ntp.clear();
        s.domain.clear();
        let codes: Vec<OptionCode> = network_options(&s).map(|o| OptionCode::from(&o)).collect();
        for absent in [
            OptionCode::DomainNameServer,
            OptionCode::NtpServers,
            OptionCode::DomainName,
        ] {
            assert!(!codes.contains(&absent), "{absent:?} in {codes:?}");
        }
        assert!(codes.contains(&OptionCode::Router));
    }

    #[test]
    fn lease_times_follow_the_lease() {
        let mut s = every_value_set();
        s.lease_secs = 3600;
        let opts: Vec<DhcpOption> = network_options(&s).collect();
        assert!(opts.contains(&DhcpOption::AddressLeaseTime(3600)));
        assert!(opts.contains(&DhcpOption::Renewal(1800)));
        assert!(opts.contains(&DhcpOption::Rebinding(3150)));
    }

    #[test]
    fn unclean_host_names_are_not_sent() {
        assert_eq!(
            hostname(Some("node-1")),
            Some(DhcpOption::Hostname("node-1".into()))
        );
        assert_eq!(hostname(Some("bad name;")), None);
        assert_eq!(hostname(None), None);
    }
}
