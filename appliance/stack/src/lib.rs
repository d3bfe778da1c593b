//! kindling's HashiCorp stack: Consul, Vault (or OpenBao) and Nomad as
//! supervised children of kindling-init, configured and bootstrapped by the
//! appliance itself.
//!
//! Owns: rendering each service's config file and service-table entry from the
//! `SiteConfig` ([`render()`]), the one-shot, resumable bootstrap
//! ([`bootstrap::run`]) and its status file, the encrypted init secrets,
//! issuing node enrollment grants ([`enroll`]) and the Consul KV keys of
//! runtime MAC → profile assignments ([`assignments`]).
//!
//! Must never: write an unseal key or root token in plain text anywhere but
//! the lab-only local unseal file, log a secret, re-initialise a Vault or
//! re-bootstrap an ACL system it did not start itself, or shell out to
//! `ip`/`iptables`/`mount`.

mod agent_http;
pub mod api;
pub mod assignments;
pub mod bootstrap;
pub mod consul;
pub mod enroll;
pub mod files;
pub mod held;
pub mod layout;
pub mod node_certs;
pub mod node_tokens;
pub mod nomad;
pub mod nomad_nodes;
pub mod patience;
pub mod render;
pub mod secrets;
pub mod snapshot_http;
pub mod status;
pub mod tls;
pub mod vault;

pub use layout::{StackLayout, StackPorts};
pub use render::{render, RenderError, RenderedStack, ServiceEntry};
