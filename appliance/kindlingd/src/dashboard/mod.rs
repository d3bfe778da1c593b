//! `kindlingd dashboard`: a live status screen on the console (tty1) for an
//! operator who has only an IPMI or VM console: addresses, health, the
//! API's CA fingerprint to compare with `kindling login`, node counts,
//! services and the last events, redrawn every two seconds with plain ANSI
//! cursor moves.
//!
//! Runs as its own account (`kl-console`), which init lets `list` and
//! nothing else; it reads what `GET /v1/status` reads (`snapshot`), needs
//! no API token, and writes only to the terminal the config phase gave it
//! (`prepare_tty`). On the serial consoles boot lines keep streaming; the
//! same screen is printed there, as plain text, when the operator presses
//! Enter (`serial`). `--once` prints one screen to stdout instead.

mod events;
mod screen;
pub mod serial;
mod snapshot;

pub use snapshot::PUBLIC_CA;

use events::EventLog;
use snapshot::Sources;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The console the dashboard draws on.
pub const TTY: &str = "/dev/tty1";
const WIDTH: usize = 80;
const HEIGHT: usize = 25;

#[derive(clap::Args)]
pub struct Args {
    /// The terminal to draw on.
    #[arg(long, default_value = TTY)]
    tty: PathBuf,
    /// Seconds between redraws.
    #[arg(long, default_value_t = 2)]
    interval: u64,
    /// Print one screen to stdout and exit.
    #[arg(long)]
    once: bool,
    /// A serial console to answer (repeatable; default: the kernel's
    /// active serial consoles).
    #[arg(long = "serial", value_name = "TTY")]
    serial: Vec<PathBuf>,
}

fn sources() -> Sources {
    Sources {
        run_dir: std::env::var_os("KINDLING_RUN_DIR")
            .map_or_else(|| "/run/kindling".into(), PathBuf::from),
        version_file: "/etc/kindling/version".into(),
    }
}

/// The screen as terminal bytes: cursor home, each line cleared to its
/// end, the rest of the screen cleared.
fn frame(lines: &[String]) -> Vec<u8> {
    let mut out = String::from("\x1b[H");
    for (i, line) in lines.iter().enumerate() {
        out.push_str(line);
        out.push_str("\x1b[K");
        if i + 1 < lines.len() {
            out.push_str("\r\n");
        }
    }
    out.push_str("\x1b[J");
    out.into_bytes()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::console::init("dashboard");
    let sources = sources();
    if args.once {
        let snapshot = sources.take(kindling_clock::unix_now());
        let mut log = EventLog::default();
        log.observe(None, &snapshot);
        println!(
            "{}",
            screen::render(&snapshot, &log, WIDTH, HEIGHT).join("\n")
        );
        return Ok(());
    }
    let screen = Arc::new(Mutex::new(Vec::new()));
    let serials = if args.serial.is_empty() {
        serial::active_consoles()
    } else {
        args.serial.clone()
    };
    let answering: Vec<String> = serials
        .iter()
        .filter_map(|path| answer_serial(path, &screen))
        .collect();
    let mut tty = open_console(&args.tty);
    let serial_note = if answering.is_empty() {
        String::new()
    } else {
        format!("; Enter on {} prints it", answering.join(", "))
    };
    match &mut tty {
        Ok(tty) => {
            // Clear, hide the cursor, and keep the console from blanking.
            let _ = tty.write_all(b"\x1b[2J\x1b[?25l\x1b[9;0]");
            tracing::info!(
                "drawing on {} every {} s ({WIDTH}x{HEIGHT}){serial_note}",
                args.tty.display(),
                args.interval
            );
        }
        // No console (a board without one): say so once and stay up for
        // the serial consoles, rather than restart in a loop.
        Err(e) => tracing::warn!(
            "no console at {}: {e}; not drawing there{serial_note}",
            args.tty.display()
        ),
    }
    crate::notify_ready();
    let mut log = EventLog::default();
    let mut previous = None;
    let mut failing = false;
    loop {
        let snapshot = sources.take(kindling_clock::unix_now());
        log.observe(previous.as_ref(), &snapshot);
        let lines = screen::render(&snapshot, &log, WIDTH, HEIGHT);
        if let Ok(tty) = &mut tty {
            match tty.write_all(&frame(&lines)) {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    tracing::warn!("writing {}: {e}", args.tty.display());
                    failing = true;
                }
                Err(_) => {}
            }
        }
        match screen.lock() {
            Ok(mut shown) => *shown = lines,
            Err(poisoned) => *poisoned.into_inner() = lines,
        }
        previous = Some(snapshot);
        std::thread::sleep(Duration::from_secs(args.interval.max(1)));
    }
}

/// Opens a terminal to write to. O_NOCTTY: it must not become this
/// process's controlling terminal, or a Ctrl-C typed at it would stop the
/// dashboard.
fn open_console(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits())
        .open(path)
}

/// Starts answering Enter on the serial console `path`; its name, or
/// `None` (reported) when it cannot be opened.
fn answer_serial(path: &Path, screen: &Arc<Mutex<Vec<String>>>) -> Option<String> {
    let port = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NOCTTY.bits())
        .open(path);
    let port = match port {
        Ok(port) => port,
        Err(e) => {
            tracing::warn!(
                "serial console {}: {e}; not answering there",
                path.display()
            );
            return None;
        }
    };
    if let Err(e) = serial::line_mode(&port) {
        tracing::warn!(
            "serial console {}: {e}; not answering there",
            path.display()
        );
        return None;
    }
    let name = path.display().to_string();
    let screen = Arc::clone(screen);
    let label = name.clone();
    std::thread::spawn(move || {
        let e = serial::answer(port, &screen, WIDTH);
        tracing::warn!("serial console {label}: {e}; no longer answering");
    });
    Some(name)
}

/// Run by the config phase (root): gives the console to the dashboard's
/// account, 0600, when it is a character device (never a symlink or a
/// file planted in its place). Without a console there is nothing to do.
pub fn prepare_tty(tty: &Path, uid: u32, gid: u32) -> Result<bool, std::io::Error> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let meta = match std::fs::symlink_metadata(tty) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_char_device() {
        return Err(std::io::Error::other(format!(
            "{} is not a character device",
            tty.display()
        )));
    }
    std::os::unix::fs::lchown(tty, Some(uid), Some(gid))?;
    std::fs::set_permissions(tty, std::fs::Permissions::from_mode(0o600))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_redraws_in_place() {
        let bytes = frame(&["a".into(), "b".into()]);
        assert_eq!(bytes, b"\x1b[Ha\x1b[K\r\nb\x1b[K\x1b[J");
    }

    #[test]
    fn only_a_character_device_is_given_away() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let planted = dir.path().join("tty1");
        std::fs::write(&planted, b"").unwrap_or_else(|e| panic!("{e}"));
        let e = prepare_tty(&planted, 405, 405).expect_err("a plain file was accepted");
        assert!(e.to_string().contains("not a character device"), "{e}");
        assert!(matches!(
            prepare_tty(&dir.path().join("none"), 405, 405),
            Ok(false)
        ));
    }
}
