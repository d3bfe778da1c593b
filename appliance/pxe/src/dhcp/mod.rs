//! DHCPv4 for the LAN: request inspection (`client`), boot file choice
//! (`boot`), the network options a lease carries (`options`), the protocol
//! state machine (`responder`), the UDP sockets
//! (`socket`) and rogue-server detection (`rogue`).

pub mod boot;
pub mod client;
pub mod options;
pub mod responder;
pub mod rogue;
pub mod socket;
pub mod wire;

pub use responder::{DhcpResponder, Dropped, Handled, NodePolicy, Port};
