//! kindling-init: the appliance's PID 1.
//!
//! The library holds everything; `main.rs` is a thin wrapper. `table` (service
//! table types) and `control` (control-socket client) are the parts other crates
//! use; the rest is init's own machinery.

pub mod backoff;
pub mod boot_config;
pub mod console;
pub mod control;
pub mod control_server;
pub mod early;
pub mod events;
pub mod graph;
pub mod phases;
pub mod pid1;
pub mod run;
pub mod shutdown;
pub mod state;
pub mod supervisor;
pub mod table;
