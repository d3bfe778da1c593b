//! `[update]` in site.toml: which signed channel the appliance's update
//! agent follows, how often it looks, and when it may reboot into what it
//! found. No `channel`: no polling (updates come only by push).
//!
//! Owns these settings' shape, the maintenance-window syntax and the
//! check interval's syntax. Pure: never fetches, never reads a clock; the
//! agent (`kindling-update`) asks [`MaintenanceWindow`] about a given time.
//!
//! Window syntax (UTC), one of:
//!
//! - `always`: any time;
//! - `DAYS HH:MM-HH:MM`: DAYS is `daily`, a day (`Mon` … `Sun`), a range
//!   (`Mon-Fri`, `Fri-Mon` wraps) or a comma list of those (`Sat,Sun`).
//!   The window opens on each of those days at the first time and closes
//!   at the second; an end before the start closes on the next day
//!   (`Sun 23:00-01:00` is Sunday 23:00 to Monday 01:00). `24:00` may end
//!   a window.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `[update]` in site.toml.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateConfig {
    /// The channel to follow (`dev`, `prod`: letters, digits, '-', '_').
    /// Unset: the appliance does not poll; it takes only pushed bundles.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// Where the channel's signed index (`CHANNEL.json` and its
    /// `.minisig`) and bundles are served: an `http://` or `https://`
    /// directory URL. Required with `channel`. Only the signature is
    /// trusted (docs/security.md), not the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Take only releases promoted from this channel (prod: `dev`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires_blessing_on: Option<String>,
    /// How often the index is fetched: a number and a unit, `s`, `m`, `h`
    /// or `d` (`6h`), 1 minute to 30 days.
    #[serde(default = "default_check_every")]
    pub check_every: String,
    /// When an update found may be applied (the appliance reboots into
    /// it), in UTC: `always`, or `DAYS HH:MM-HH:MM` such as
    /// `Sun 02:00-04:00`, `Mon-Fri 22:00-02:00`, `daily 03:00-04:00`
    /// (docs/updates.md). Required with `channel`. An operator's
    /// `kindling update poll --apply-now` does not wait for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// How long an image on trial (just updated, not yet blessed) has to
    /// pass the health gate (every phase done, every required service
    /// ready) before the agent gives up on that try and reboots, so the
    /// firmware tries it again or falls back to the last good image:
    /// `30s` to `1h`. Also applies to pushed updates.
    #[serde(default = "default_gate_timeout")]
    pub gate_timeout: String,
}

fn default_check_every() -> String {
    "6h".into()
}

fn default_gate_timeout() -> String {
    "10m".into()
}

/// No channel: no polling, today's push-only behaviour.
impl Default for UpdateConfig {
    fn default() -> Self {
        Self {
            channel: None,
            url: None,
            requires_blessing_on: None,
            check_every: default_check_every(),
            window: None,
            gate_timeout: default_gate_timeout(),
        }
    }
}

/// The shortest and longest check intervals, in seconds.
pub const CHECK_EVERY_RANGE: std::ops::RangeInclusive<u64> = 60..=30 * 86_400;
/// The shortest and longest health-gate timeouts, in seconds: under half
/// a minute not even a healthy appliance is up; over an hour a bad image
/// keeps the LAN without its services too long.
pub const GATE_TIMEOUT_RANGE: std::ops::RangeInclusive<u64> = 30..=3600;

const MINUTES_PER_DAY: u32 = 24 * 60;
const MINUTES_PER_WEEK: u32 = 7 * MINUTES_PER_DAY;
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// When updates may be applied, in UTC minutes of the week (Monday 00:00 = 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaintenanceWindow {
    Always,
    /// Opens at each `starts` minute of the week, for `minutes`.
    Weekly {
        starts: Vec<u32>,
        minutes: u32,
    },
}

impl MaintenanceWindow {
    /// Parses the syntax in the module documentation; the error says what
    /// is wrong with which part.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("always") {
            return Ok(Self::Always);
        }
        let (days, times) = text.split_once(' ').ok_or_else(|| {
            format!("{text:?} is not `always` or `DAYS HH:MM-HH:MM` (e.g. `Sun 02:00-04:00`)")
        })?;
        let days = parse_days(days.trim())?;
        let (from, to) = times.trim().split_once('-').ok_or_else(|| {
            format!("{times:?} is not a time range HH:MM-HH:MM (e.g. 02:00-04:00)")
        })?;
        let from = parse_time(from.trim(), false)?;
        let to = parse_time(to.trim(), true)?;
        if from == to {
            return Err(format!(
                "{times:?} opens and closes at the same time; for any time write `always`"
            ));
        }
        let minutes = if to > from {
            to - from
        } else {
            MINUTES_PER_DAY - from + to
        };
        let starts = days.iter().map(|d| d * MINUTES_PER_DAY + from).collect();
        Ok(Self::Weekly { starts, minutes })
    }

    /// Whether `unix` (seconds) is inside the window.
    pub fn contains(&self, unix: u64) -> bool {
        match self {
            Self::Always => true,
            Self::Weekly { starts, minutes } => {
                let now = minute_of_week(unix);
                starts
                    .iter()
                    .any(|s| (now + MINUTES_PER_WEEK - s) % MINUTES_PER_WEEK < *minutes)
            }
        }
    }

    /// The first time at or after `unix` that is inside the window.
    pub fn next_open(&self, unix: u64) -> u64 {
        if self.contains(unix) {
            return unix;
        }
        let Self::Weekly { starts, .. } = self else {
            return unix;
        };
        let now = minute_of_week(unix);
        let wait = starts
            .iter()
            .map(|s| (s + MINUTES_PER_WEEK - now) % MINUTES_PER_WEEK)
            .min()
            .unwrap_or(0);
        unix - unix % 60 + u64::from(wait) * 60
    }
}

/// Monday 00:00 UTC = 0. 1970-01-01 was a Thursday (3 days after Monday).
fn minute_of_week(unix: u64) -> u32 {
    let minutes = unix / 60 + 3 * u64::from(MINUTES_PER_DAY);
    // Less than a week of minutes: fits.
    (minutes % u64::from(MINUTES_PER_WEEK)) as u32
}

fn parse_day(text: &str) -> Result<u32, String> {
    DAYS.iter()
        .position(|d| d.eq_ignore_ascii_case(text))
        .map(|i| i as u32)
        .ok_or_else(|| format!("{text:?} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"))
}

/// `daily`, `Mon`, `Mon-Fri`, `Sat,Sun`: the days, Monday = 0.
fn parse_days(text: &str) -> Result<Vec<u32>, String> {
    if text.eq_ignore_ascii_case("daily") {
        return Ok((0..7).collect());
    }
    let mut out = Vec::new();
    for part in text.split(',') {
        let part = part.trim();
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (parse_day(first)?, parse_day(last)?);
                let mut d = first;
                loop {
                    out.push(d);
                    if d == last {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => out.push(parse_day(part)?),
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `HH:MM` as minutes of the day; `24:00` only as an end.
fn parse_time(text: &str, end: bool) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a time HH:MM (00:00 to 23:59)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u32 = h.parse().map_err(|_| bad())?;
    let m: u32 = m.parse().map_err(|_| bad())?;
    if end && h == 24 && m == 0 {
        return Ok(MINUTES_PER_DAY);
    }
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// `check_every`: `90s`, `30m`, `6h`, `1d` as seconds, within
/// [`CHECK_EVERY_RANGE`].
pub fn parse_interval(text: &str) -> Result<u64, String> {
    parse_seconds(text, CHECK_EVERY_RANGE, "1m to 30d")
}

/// `gate_timeout`: as [`parse_interval`], within [`GATE_TIMEOUT_RANGE`].
pub fn parse_gate_timeout(text: &str) -> Result<u64, String> {
    parse_seconds(text, GATE_TIMEOUT_RANGE, "30s to 1h")
}

/// A number and a unit (`s`, `m`, `h`, `d`) as seconds within `range`
/// (`range_text` says it in words for the error).
fn parse_seconds(
    text: &str,
    range: std::ops::RangeInclusive<u64>,
    range_text: &str,
) -> Result<u64, String> {
    let bad = || format!("{text:?} is not a number and a unit s, m, h or d (e.g. 6h)");
    let text = text.trim();
    let unit = text.chars().last().ok_or_else(bad)?;
    let scale = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return Err(bad()),
    };
    let n: u64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
    let secs = n.saturating_mul(scale);
    if !range.contains(&secs) {
        return Err(format!("{text:?} is outside {range_text}"));
    }
    Ok(secs)
}

/// A channel name as the index files name it.
pub fn is_channel_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl UpdateConfig {
    /// Every problem, as `(key under [update], reason)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Err(e) = parse_interval(&self.check_every) {
            out.push(("check_every", e));
        }
        if let Err(e) = parse_gate_timeout(&self.gate_timeout) {
            out.push(("gate_timeout", e));
        }
        if let Some(window) = &self.window {
            if let Err(e) = MaintenanceWindow::parse(window) {
                out.push(("window", e));
            }
        }
        for (key, name) in [
            ("channel", &self.channel),
            ("requires_blessing_on", &self.requires_blessing_on),
        ] {
            if let Some(name) = name.as_deref().filter(|n| !is_channel_name(n)) {
                out.push((
                    key,
                    format!("{name:?} is not a channel name (letters, digits, '-', '_')"),
                ));
            }
        }
        if let Some(url) = &self.url {
            if let Err(e) = check_url(url) {
                out.push(("url", e));
            }
        }
        if self.channel.is_some() {
            if self.url.is_none() {
                out.push((
                    "url",
                    "missing: a channel needs the URL it is served at".into(),
                ));
            }
            if self.window.is_none() {
                out.push((
                    "window",
                    "missing: a channel needs a maintenance window (`always` for any time)".into(),
                ));
            }
        } else if self.url.is_some() || self.requires_blessing_on.is_some() {
            out.push((
                "channel",
                "missing: url and requires_blessing_on are for a channel".into(),
            ));
        }
        out
    }
}

/// An `http://` or `https://` URL with a host and no query, fragment,
/// credentials or whitespace: the index and bundles are its files.
fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} is not an http:// or https:// URL"))?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || host.contains('@') {
        return Err(format!("{url:?} has no host (or carries credentials)"));
    }
    if url.contains(['?', '#']) || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{url:?}: a directory URL has no query, fragment or spaces"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// 2026-12-06 is a Sunday.
    fn at(day_of_month: u64, hh: u64, mm: u64) -> u64 {
        const SUN_2026_12_06: u64 = 1_796_515_200;
        SUN_2026_12_06 + (day_of_month - 6) * 86_400 + hh * 3600 + mm * 60
    }

    #[test]
    fn the_reference_sunday_is_a_sunday() {
        // 1_796_515_200 / 86400 = 20_793 days; (20_793 + 3) % 7 = 6 = Sun.
        assert_eq!(minute_of_week(at(6, 0, 0)), 6 * MINUTES_PER_DAY);
    }

    #[test]
    fn a_weekly_window_contains_its_hours_and_says_when_it_opens() {
        let w = MaintenanceWindow::parse("Sun 02:00-04:00").unwrap();
        assert!(w.contains(at(6, 2, 0)));
        assert!(w.contains(at(6, 3, 59)));
        assert!(!w.contains(at(6, 4, 0)));
        assert!(!w.contains(at(6, 1, 59)));
        assert!(!w.contains(at(7, 2, 30)), "Monday");
        assert_eq!(w.next_open(at(6, 1, 0)), at(6, 2, 0));
        assert_eq!(w.next_open(at(6, 3, 0)), at(6, 3, 0));
        assert_eq!(w.next_open(at(6, 5, 0)), at(13, 2, 0));
        assert_eq!(w.next_open(at(6, 1, 0) + 17), at(6, 2, 0));
    }

    #[test]
    fn windows_wrap_past_midnight_and_over_the_week_end() {
        let w = MaintenanceWindow::parse("sun 23:00-01:00").unwrap();
        assert!(w.contains(at(6, 23, 30)));
        assert!(w.contains(at(7, 0, 30)), "Monday 00:30 is still Sunday's");
        assert!(!w.contains(at(7, 23, 30)));
        let w = MaintenanceWindow::parse("Fri-Mon 22:00-24:00").unwrap();
        assert!(w.contains(at(7, 22, 0)), "Mon");
        assert!(!w.contains(at(8, 22, 0)), "Tue");
        assert!(w.contains(at(11, 23, 59)), "Fri");
        let w = MaintenanceWindow::parse("Sat,Tue 10:00-11:00").unwrap();
        assert_eq!(w.next_open(at(6, 12, 0)), at(8, 10, 0));
        let daily = MaintenanceWindow::parse("daily 03:00-04:00").unwrap();
        assert_eq!(daily.next_open(at(8, 5, 0)), at(9, 3, 0));
        let always = MaintenanceWindow::parse("always").unwrap();
        assert!(always.contains(at(8, 5, 0)));
        assert_eq!(always.next_open(42), 42);
    }

    #[test]
    fn bad_windows_say_what_is_wrong() {
        for (text, says) in [
            ("Sunday 02:00-04:00", "is not a day"),
            ("Sun", "is not `always`"),
            ("Sun 02:00", "is not a time range"),
            ("Sun 2:00-04:00", "is not a time HH:MM"),
            ("Sun 02:00-25:00", "is not a time HH:MM"),
            ("Sun 24:00-01:00", "is not a time HH:MM"),
            ("Sun 02:00-02:00", "same time"),
            ("Mon,Xyz 01:00-02:00", "\"Xyz\" is not a day"),
        ] {
            let e = MaintenanceWindow::parse(text).unwrap_err();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn intervals_and_the_section_checks() {
        assert_eq!(parse_interval("6h"), Ok(6 * 3600));
        assert_eq!(parse_interval("90s"), Ok(90));
        assert!(parse_interval("30s").unwrap_err().contains("outside"));
        assert!(parse_interval("6 hours").is_err());
        assert!(parse_interval("").is_err());
        assert_eq!(parse_gate_timeout("30s"), Ok(30));
        assert_eq!(parse_gate_timeout("1h"), Ok(3600));
        assert!(parse_gate_timeout("10s").unwrap_err().contains("30s to 1h"));
        assert!(parse_gate_timeout("2h").unwrap_err().contains("30s to 1h"));
        assert!(UpdateConfig::default().problems().is_empty());
        let c = UpdateConfig {
            gate_timeout: "5s".into(),
            ..Default::default()
        };
        let keys: Vec<&str> = c.problems().iter().map(|p| p.0).collect();
        assert_eq!(keys, ["gate_timeout"]);
        let c = UpdateConfig {
            channel: Some("prod".into()),
            ..Default::default()
        };
        let keys: Vec<&str> = c.problems().iter().map(|p| p.0).collect();
        assert_eq!(keys, ["url", "window"]);
        let c = UpdateConfig {
            channel: Some("prod".into()),
            url: Some("ftp://x/".into()),
            window: Some("Sun 02:00-04:00".into()),
            requires_blessing_on: Some("de v".into()),
            ..Default::default()
        };
        let keys: Vec<&str> = c.problems().iter().map(|p| p.0).collect();
        assert_eq!(keys, ["requires_blessing_on", "url"]);
        let c = UpdateConfig {
            channel: Some("prod".into()),
            url: Some("http://10.0.0.5:8080/site-updates/".into()),
            window: Some("always".into()),
            ..Default::default()
        };
        assert!(c.problems().is_empty());
    }
}
