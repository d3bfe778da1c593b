//! The console: one timestamped line per event, as `[    1.234567] kindling: <subject>: <message>`.
//!
//! Owns where init's lines go (`/dev/console` on the appliance, stdout in tests)
//! and the timestamp format (CLOCK_BOOTTIME, like the kernel's printk clock). It
//! must never block init on anything but the write itself and never panic: a
//! failed write is dropped, since there is nowhere else to report it.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

static SINK: Mutex<Option<Box<dyn Write + Send>>> = Mutex::new(None);

/// Time since the kernel started (CLOCK_BOOTTIME), the clock printk uses.
pub fn boottime() -> Duration {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => Duration::new(
            ts.tv_sec().max(0) as u64,
            ts.tv_nsec().clamp(0, 999_999_999) as u32,
        ),
        Err(_) => Duration::ZERO,
    }
}

/// `[    1.234567]` for a given time, the printk layout.
pub fn stamp(t: Duration) -> String {
    format!("[{:5}.{:06}]", t.as_secs(), t.subsec_micros())
}

/// Sends lines to `path` (opened for writing, e.g. `/dev/console`); `None` or an
/// open failure means stdout. Returns the open error, if any, so it can be logged.
pub fn open(path: Option<&Path>) -> Option<std::io::Error> {
    let (sink, error): (Box<dyn Write + Send>, _) = match path {
        // O_NOCTTY: the console must never become init's controlling terminal
        // (a ctrl-C there would otherwise signal PID 1).
        Some(path) => match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOCTTY)
            .open(path)
        {
            Ok(file) => (Box::new(file), None),
            Err(e) => (Box::new(std::io::stdout()), Some(e)),
        },
        None => (Box::new(std::io::stdout()), None),
    };
    let mut guard = SINK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *guard = Some(sink);
    error
}

/// Writes one already formatted line (without newline) with the current stamp.
pub fn write_line(line: fmt::Arguments<'_>) {
    let text = format!("{} {}\n", stamp(boottime()), line);
    let mut guard = SINK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    match guard.as_mut() {
        Some(sink) => {
            let _ = sink.write_all(text.as_bytes());
            let _ = sink.flush();
        }
        None => {
            let _ = std::io::stdout().write_all(text.as_bytes());
        }
    }
}

/// `kindling: <subject>: <message>`.
pub fn say(subject: &str, message: fmt::Arguments<'_>) {
    write_line(format_args!("kindling: {subject}: {message}"));
}

/// `kindling: <message>` (the overall ready/degraded lines).
pub fn announce(message: fmt::Arguments<'_>) {
    write_line(format_args!("kindling: {message}"));
}

/// One line a service wrote: `<service>| <line>`, so it cannot be mistaken for
/// one of init's own `kindling:` lines.
pub fn service_output(service: &str, line: &str) {
    write_line(format_args!("{service}| {line}"));
}

/// `say!(BootPhase::Early, "mounted {}", path)`, `say!(name, "started")`: the
/// subject is anything that reads as a string (a boot phase, a service name).
#[macro_export]
macro_rules! say {
    ($subject:expr, $($arg:tt)*) => {
        $crate::console::say(::std::convert::AsRef::<str>::as_ref(&$subject), format_args!($($arg)*))
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_matches_printk_layout() {
        assert_eq!(stamp(Duration::new(1, 234_567_000)), "[    1.234567]");
        assert_eq!(stamp(Duration::new(12345, 5_000)), "[12345.000005]");
    }

    #[test]
    fn boottime_advances() {
        let a = boottime();
        std::thread::sleep(Duration::from_millis(2));
        assert!(boottime() > a);
    }
}
