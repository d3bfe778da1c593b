//! Console output of kindlingd's long-running services: one plain line per
//! event on stderr (`pxe: …`, `pxe: error: …`), no colour codes and no
//! timestamp: kindling-init stamps each line and writes it to the console
//! and log files. `RUST_LOG` can raise or lower the level.
//!
//! Owns the subscriber setup only; library code just emits `tracing` events.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

struct PlainLine {
    service: &'static str,
}

impl<S, N> FormatEvent<S, N> for PlainLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        write!(writer, "{}: ", self.service)?;
        if level == Level::ERROR {
            writer.write_str("error: ")?;
        } else if level == Level::WARN {
            writer.write_str("warning: ")?;
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the console subscriber for `service` (a second call is a no-op).
pub fn init(service: &'static str) {
    let from_env = std::env::var("RUST_LOG").unwrap_or_default();
    let mut filter = EnvFilter::try_new(&from_env).unwrap_or_else(|_| EnvFilter::new("info"));
    if from_env.trim().is_empty() {
        filter = EnvFilter::new("info");
    }
    // rustables logs every netlink attribute it does not model at info level
    // when counters are read; keep that off the console unless asked for.
    if !from_env.contains("rustables") {
        if let Ok(quiet) = "rustables=error".parse() {
            filter = filter.add_directive(quiet);
        }
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // The field formatter italicises names unless told not to.
        .with_ansi(false)
        .event_format(PlainLine { service })
        .try_init();
}
