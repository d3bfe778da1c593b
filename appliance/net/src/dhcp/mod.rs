//! DHCPv4 client for the uplink: wire format (`packet`), sockets (`socket`),
//! protocol timing (`client`).

pub mod client;
pub mod packet;
pub mod socket;

pub use client::{
    DhcpClient, DhcpClientError, DhcpCounterSnapshot, DhcpCounters, DhcpTiming, LeaseEvent,
};
pub use packet::{ClientIdentity, LeaseOffer};
