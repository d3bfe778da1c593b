//! kindling-init: the appliance's PID 1.
//!
//! The library holds everything; `main.rs` is a thin wrapper. `table` (service
//! table types) and `control` (control-socket client) are the parts other crates
//! use; the rest is init's own machinery.

pub mod control;
pub mod graph;
pub mod table;
pub mod backoff;
pub mod boot_config;
pub mod console;
pub mod events;
pub mod supervisor;
pub mod control_server;
pub mod phases;
pub mod run;
pub mod shutdown;
pub mod early;
pub mod pid1;
pub mod state;
