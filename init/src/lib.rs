//! kindling-init: the appliance's PID 1.
//!
//! The library holds init's own machinery; `main.rs` is a thin wrapper. What
//! other programs share with init (the service table, the control socket, the
//! boot phase names, the readiness line) is in `kindling-init-protocol`; no
//! crate outside `init/` depends on this one.

pub mod backoff;
pub mod boot_config;
pub mod console;
pub mod control_server;
pub mod early;
pub mod esp;
pub mod events;
pub mod phases;
pub mod pid1;
pub mod run;
pub mod shutdown;
pub mod state;
pub mod supervisor;

/// `now + ms`, saturating at a day ahead: durations come from config files and
/// an absurd value must not overflow `Instant` (which would panic).
pub fn after_ms(now: std::time::Instant, ms: u64) -> std::time::Instant {
    let capped = std::time::Duration::from_millis(ms.min(86_400_000));
    now.checked_add(capped).unwrap_or(now)
}
