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

/// `now + ms`, saturating at a day ahead: durations come from config files and
/// an absurd value must not overflow `Instant` (which would panic).
pub fn after_ms(now: std::time::Instant, ms: u64) -> std::time::Instant {
    let capped = std::time::Duration::from_millis(ms.min(86_400_000));
    now.checked_add(capped).unwrap_or(now)
}
