//! DHCPv4 for the LAN: request inspection (`client`), boot file choice
//! (`boot`), the network options a lease carries (`options`), the protocol
//! state machine (`responder`) and its holder checks (`holder`), the per-MAC
//! rate limit (`rate`), the UDP sockets (`socket`), ACKs that wait for their
//! lease to be on disk (`commit`) and rogue-server detection (`rogue`).

pub mod boot;
pub mod client;
pub mod commit;
pub mod holder;
pub mod options;
pub mod rate;
pub mod responder;
pub mod rogue;
pub mod socket;
pub mod wire;

pub use responder::{DhcpResponder, Dropped, Handled, HolderMessage, NodePolicy, NotHolder, Port};
