//! Holder checks: whether a RELEASE, DECLINE or REQUEST comes from the
//! client its lease or offer belongs to. DHCP has no authentication, so
//! "the client" is what the packet says: chaddr and client identifier
//! (option 61) must both match what the lease or offer recorded, and the
//! address the message names must be the one held.
//!
//! - RELEASE: the MAC's bound lease, same client id, ciaddr = its address.
//! - DECLINE: the MAC's bound lease, same client id, requested address
//!   (option 50) = its address.
//! - REQUEST (RFC 2131 4.3.2), by state:
//!   - SELECTING (server identifier present): our identifier, and an
//!     unexpired offer to this MAC and client id of the requested address;
//!   - INIT-REBOOT (no server identifier, requested address, ciaddr 0) and
//!     RENEWING/REBINDING (ciaddr set): the address is the MAC's lease with
//!     the same client id, or the MAC's reservation from the site.
//!
//! A RELEASE or DECLINE naming another server is not ours to judge. Pure
//! decisions on plain data; the responder applies them to the store.

use crate::leases::{Lease, Offer};
use kindling_site::MacAddr;
use std::net::Ipv4Addr;

/// What a message claims about its sender.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub mac: MacAddr,
    pub client_id: Option<&'a [u8]>,
    pub ciaddr: Ipv4Addr,
    pub requested: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
}

/// What the server holds for the claimed MAC.
#[derive(Debug, Clone, Copy, Default)]
pub struct Held<'a> {
    /// The MAC's bound lease (possibly expired).
    pub lease: Option<&'a Lease>,
    pub offer: Option<&'a Offer>,
    /// The MAC's reserved address from the site's `[[nodes]]`.
    pub reserved: Option<Ipv4Addr>,
}

/// Why a message is not from the holder (or not for us).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// It names another server: not ours to answer.
    OtherServer,
    /// The MAC holds no lease here (or, SELECTING, no offer).
    NothingHeld,
    /// The client identifier differs from the one recorded.
    ClientIdDiffers,
    /// The address named is not the one held.
    WrongAddress,
    /// The offer it answers has expired.
    OfferExpired,
    /// A field the message needs is missing (requested address).
    Incomplete,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::OtherServer => "names another server",
            Refusal::NothingHeld => "holds no lease or offer here",
            Refusal::ClientIdDiffers => "client identifier differs from the lease's",
            Refusal::WrongAddress => "names an address it does not hold",
            Refusal::OfferExpired => "answers an expired offer",
            Refusal::Incomplete => "lacks the requested address",
        }
    }
}

/// The REQUEST's state, from which fields are set (RFC 2131 table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    Selecting,
    InitReboot,
    /// RENEWING or REBINDING: the same check applies to both.
    Renewing,
}

pub fn request_state(claim: &Claim<'_>) -> RequestState {
    if claim.server_id.is_some() {
        RequestState::Selecting
    } else if claim.ciaddr.is_unspecified() {
        RequestState::InitReboot
    } else {
        RequestState::Renewing
    }
}

fn same_client(recorded: Option<&crate::leases::ClientId>, claimed: Option<&[u8]>) -> bool {
    recorded.map(|c| c.as_bytes()) == claimed
}

fn not_other_server(claim: &Claim<'_>, ours: Ipv4Addr) -> Result<(), Refusal> {
    match claim.server_id {
        Some(id) if id != ours => Err(Refusal::OtherServer),
        _ => Ok(()),
    }
}

/// The holder's lease, if `claim` comes from it and names `address`.
fn holder_lease(
    claim: &Claim<'_>,
    held: &Held<'_>,
    address: Ipv4Addr,
) -> Result<Ipv4Addr, Refusal> {
    let lease = held.lease.ok_or(Refusal::NothingHeld)?;
    if !same_client(lease.client_id.as_ref(), claim.client_id) {
        return Err(Refusal::ClientIdDiffers);
    }
    if lease.ip != address {
        return Err(Refusal::WrongAddress);
    }
    Ok(lease.ip)
}

/// The address a RELEASE may free.
pub fn release(claim: &Claim<'_>, held: &Held<'_>, ours: Ipv4Addr) -> Result<Ipv4Addr, Refusal> {
    not_other_server(claim, ours)?;
    holder_lease(claim, held, claim.ciaddr)
}

/// The address a DECLINE may quarantine.
pub fn decline(claim: &Claim<'_>, held: &Held<'_>, ours: Ipv4Addr) -> Result<Ipv4Addr, Refusal> {
    not_other_server(claim, ours)?;
    let address = claim.requested.ok_or(Refusal::Incomplete)?;
    holder_lease(claim, held, address)
}

/// The address a REQUEST may bind. The caller still checks that nobody
/// else bound it meanwhile (offers are soft).
pub fn request(
    claim: &Claim<'_>,
    held: &Held<'_>,
    ours: Ipv4Addr,
    now: u64,
) -> Result<Ipv4Addr, Refusal> {
    match request_state(claim) {
        RequestState::Selecting => {
            not_other_server(claim, ours)?;
            let address = claim.requested.ok_or(Refusal::Incomplete)?;
            let offer = held.offer.ok_or(Refusal::NothingHeld)?;
            if !same_client(offer.client_id.as_ref(), claim.client_id) {
                return Err(Refusal::ClientIdDiffers);
            }
            if offer.ip != address {
                return Err(Refusal::WrongAddress);
            }
            if offer.expires <= now {
                return Err(Refusal::OfferExpired);
            }
            Ok(address)
        }
        state => {
            let address = match state {
                RequestState::InitReboot => claim.requested.ok_or(Refusal::Incomplete)?,
                _ => claim.ciaddr,
            };
            if held.reserved == Some(address) {
                return Ok(address);
            }
            holder_lease(claim, held, address)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::{ClientId, LeaseState};

    const OURS: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 1);
    const OTHER_SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 254);
    const HELD_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 120);
    const OTHER_IP: Ipv4Addr = Ipv4Addr::new(192, 168, 100, 121);
    const ZERO: Ipv4Addr = Ipv4Addr::UNSPECIFIED;
    const HOLDER: MacAddr = MacAddr([0x52, 0x54, 0, 0x6b, 0, 0x10]);
    const CID: &[u8] = &[1, 0x52, 0x54, 0, 0x6b, 0, 0x10];
    const OTHER_CID: &[u8] = &[1, 2, 0, 0, 0, 0, 9];

    fn lease() -> Lease {
        Lease {
            mac: HOLDER,
            ip: HELD_IP,
            expires: 3600,
            state: LeaseState::Bound,
            hostname: None,
            client_id: Some(ClientId::new(CID)),
        }
    }

    fn offer() -> Offer {
        Offer {
            ip: HELD_IP,
            client_id: Some(ClientId::new(CID)),
            expires: 30,
        }
    }

    #[derive(Clone, Copy, Debug)]
    enum Kind {
        Release,
        Decline,
        Request,
    }

    struct Row {
        name: &'static str,
        kind: Kind,
        client_id: Option<&'static [u8]>,
        ciaddr: Ipv4Addr,
        requested: Option<Ipv4Addr>,
        server_id: Option<Ipv4Addr>,
        now: u64,
        expect: Result<Ipv4Addr, Refusal>,
    }

    impl Default for Row {
        fn default() -> Self {
            Row {
                name: "",
                kind: Kind::Release,
                client_id: Some(CID),
                ciaddr: ZERO,
                requested: None,
                server_id: None,
                now: 10,
                expect: Ok(HELD_IP),
            }
        }
    }

    /// Every row runs twice: from the holder's chaddr, with the expected
    /// verdict, and from another chaddr, which never holds anything.
    #[test]
    fn holder_checks_table() {
        use Kind::*;
        use Refusal::*;
        let rows = [
            // RELEASE
            Row {
                name: "release by holder",
                kind: Release,
                ciaddr: HELD_IP,
                ..Default::default()
            },
            Row {
                name: "release naming us",
                kind: Release,
                ciaddr: HELD_IP,
                server_id: Some(OURS),
                ..Default::default()
            },
            Row {
                name: "release, other client id",
                kind: Release,
                ciaddr: HELD_IP,
                client_id: Some(OTHER_CID),
                expect: Err(ClientIdDiffers),
                ..Default::default()
            },
            Row {
                name: "release, no client id",
                kind: Release,
                ciaddr: HELD_IP,
                client_id: None,
                expect: Err(ClientIdDiffers),
                ..Default::default()
            },
            Row {
                name: "release, other ciaddr",
                kind: Release,
                ciaddr: OTHER_IP,
                expect: Err(WrongAddress),
                ..Default::default()
            },
            Row {
                name: "release, ciaddr 0",
                kind: Release,
                expect: Err(WrongAddress),
                ..Default::default()
            },
            Row {
                name: "release for another server",
                kind: Release,
                ciaddr: HELD_IP,
                server_id: Some(OTHER_SERVER),
                expect: Err(OtherServer),
                ..Default::default()
            },
            // DECLINE
            Row {
                name: "decline by holder",
                kind: Decline,
                requested: Some(HELD_IP),
                server_id: Some(OURS),
                ..Default::default()
            },
            Row {
                name: "decline, other client id",
                kind: Decline,
                requested: Some(HELD_IP),
                client_id: Some(OTHER_CID),
                expect: Err(ClientIdDiffers),
                ..Default::default()
            },
            Row {
                name: "decline, other address",
                kind: Decline,
                requested: Some(OTHER_IP),
                expect: Err(WrongAddress),
                ..Default::default()
            },
            Row {
                name: "decline, no address",
                kind: Decline,
                expect: Err(Incomplete),
                ..Default::default()
            },
            Row {
                name: "decline for another server",
                kind: Decline,
                requested: Some(HELD_IP),
                server_id: Some(OTHER_SERVER),
                expect: Err(OtherServer),
                ..Default::default()
            },
            // REQUEST, SELECTING
            Row {
                name: "selecting our offer",
                kind: Request,
                requested: Some(HELD_IP),
                server_id: Some(OURS),
                ..Default::default()
            },
            Row {
                name: "selecting, other client id",
                kind: Request,
                requested: Some(HELD_IP),
                server_id: Some(OURS),
                client_id: Some(OTHER_CID),
                expect: Err(ClientIdDiffers),
                ..Default::default()
            },
            Row {
                name: "selecting, address not offered",
                kind: Request,
                requested: Some(OTHER_IP),
                server_id: Some(OURS),
                expect: Err(WrongAddress),
                ..Default::default()
            },
            Row {
                name: "selecting, no address",
                kind: Request,
                server_id: Some(OURS),
                expect: Err(Incomplete),
                ..Default::default()
            },
            Row {
                name: "selecting, offer expired",
                kind: Request,
                requested: Some(HELD_IP),
                server_id: Some(OURS),
                now: 30,
                expect: Err(OfferExpired),
                ..Default::default()
            },
            Row {
                name: "selecting another server",
                kind: Request,
                requested: Some(HELD_IP),
                server_id: Some(OTHER_SERVER),
                expect: Err(OtherServer),
                ..Default::default()
            },
            // REQUEST, INIT-REBOOT
            Row {
                name: "init-reboot, own lease",
                kind: Request,
                requested: Some(HELD_IP),
                ..Default::default()
            },
            Row {
                name: "init-reboot, other client id",
                kind: Request,
                requested: Some(HELD_IP),
                client_id: Some(OTHER_CID),
                expect: Err(ClientIdDiffers),
                ..Default::default()
            },
            Row {
                name: "init-reboot, not its address",
                kind: Request,
                requested: Some(OTHER_IP),
                expect: Err(WrongAddress),
                ..Default::default()
            },
            // REQUEST, RENEWING / REBINDING
            Row {
                name: "renewing own lease",
                kind: Request,
                ciaddr: HELD_IP,
                ..Default::default()
            },
            Row {
                name: "renewing, other client id",
                kind: Request,
                ciaddr: HELD_IP,
                client_id: Some(OTHER_CID),
                expect: Err(ClientIdDiffers),
                ..Default::default()
            },
            Row {
                name: "renewing another address",
                kind: Request,
                ciaddr: OTHER_IP,
                expect: Err(WrongAddress),
                ..Default::default()
            },
        ];
        let (lease, offer) = (lease(), offer());
        let holder = Held {
            lease: Some(&lease),
            offer: Some(&offer),
            reserved: None,
        };
        for row in &rows {
            for (mac, held, expect) in [
                (HOLDER, holder, row.expect),
                // Another MAC holds nothing; a message naming another
                // server is still not ours, whoever sends it.
                (
                    MacAddr([2, 0, 0, 0, 0, 0x66]),
                    Held::default(),
                    match row.expect {
                        Err(OtherServer) => Err(OtherServer),
                        Err(Incomplete) => Err(Incomplete),
                        _ => Err(NothingHeld),
                    },
                ),
            ] {
                let claim = Claim {
                    mac,
                    client_id: row.client_id,
                    ciaddr: row.ciaddr,
                    requested: row.requested,
                    server_id: row.server_id,
                };
                let got = match row.kind {
                    Release => release(&claim, &held, OURS),
                    Decline => decline(&claim, &held, OURS),
                    Request => request(&claim, &held, OURS, row.now),
                };
                assert_eq!(got, expect, "{} (from {mac})", row.name);
            }
        }
    }

    #[test]
    fn reservation_counts_as_held_for_init_reboot_and_renewal() {
        let held = Held {
            lease: None,
            offer: None,
            reserved: Some(HELD_IP),
        };
        let claim = |ciaddr, requested| Claim {
            mac: HOLDER,
            client_id: None,
            ciaddr,
            requested,
            server_id: None,
        };
        assert_eq!(
            request(&claim(ZERO, Some(HELD_IP)), &held, OURS, 0),
            Ok(HELD_IP)
        );
        assert_eq!(request(&claim(HELD_IP, None), &held, OURS, 0), Ok(HELD_IP));
        assert_eq!(
            request(&claim(ZERO, Some(OTHER_IP)), &held, OURS, 0),
            Err(Refusal::NothingHeld)
        );
        assert_eq!(
            release(&claim(HELD_IP, None), &held, OURS),
            Err(Refusal::NothingHeld),
            "a reservation is not a lease to release"
        );
    }

    #[test]
    fn states_follow_rfc2131_table_4() {
        let claim = |ciaddr, requested, server_id| Claim {
            mac: HOLDER,
            client_id: None,
            ciaddr,
            requested,
            server_id,
        };
        assert_eq!(
            request_state(&claim(ZERO, Some(HELD_IP), Some(OURS))),
            RequestState::Selecting
        );
        assert_eq!(
            request_state(&claim(ZERO, Some(HELD_IP), None)),
            RequestState::InitReboot
        );
        assert_eq!(
            request_state(&claim(HELD_IP, None, None)),
            RequestState::Renewing
        );
    }
}
