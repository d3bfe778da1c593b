//! Console output of the network service: one plain line per event on
//! stderr (`net: …`, `net: error: …`); kindling-init adds the timestamp and
//! service prefix. `RUST_LOG` can raise or lower the level.
//!
//! Owns the subscriber setup only; never used by library code directly.

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

struct PlainLine;

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
        let tag = if level == Level::ERROR {
            "net: error: "
        } else if level == Level::WARN {
            "net: warning: "
        } else {
            "net: "
        };
        writer.write_str(tag)?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Installs the console subscriber (a second call is a no-op).
pub fn init() {
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
        .event_format(PlainLine)
        .try_init();
}
