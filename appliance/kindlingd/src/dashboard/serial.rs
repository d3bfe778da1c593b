//! The dashboard on the serial console: boot lines and every service's
//! output keep streaming there (the lab and IPMI serial-over-LAN read
//! them), so the screen is not redrawn in place; instead an operator who
//! presses Enter gets one plain-text status screen between two rules,
//! without cursor moves, readable in any terminal or log.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// Where the kernel lists its active consoles.
pub const ACTIVE_CONSOLES: &str = "/sys/class/tty/console/active";

/// The serial consoles among the kernel's active consoles (`tty0 ttyS0`
/// → `/dev/ttyS0`): names of 8250/16550 ports and virtio/hypervisor
/// consoles; `tty0` and the other virtual terminals are not serial.
pub fn consoles(active: &str) -> Vec<PathBuf> {
    active
        .split_whitespace()
        .filter(|name| {
            ["ttyS", "ttyAMA", "hvc"].iter().any(|p| {
                name.strip_prefix(p)
                    .is_some_and(|n| n.parse::<u32>().is_ok())
            })
        })
        .map(|name| PathBuf::from("/dev").join(name))
        .collect()
}

/// The serial consoles of this boot (none when the kernel says nothing).
pub fn active_consoles() -> Vec<PathBuf> {
    std::fs::read_to_string(ACTIVE_CONSOLES)
        .map(|active| consoles(&active))
        .unwrap_or_default()
}

/// One screen for a serial line: a rule, the lines, a rule. Lines end in
/// `\n`; the port's line discipline sends CR LF ([`line_mode`]).
pub fn frame(lines: &[String], width: usize) -> Vec<u8> {
    let rule = "-".repeat(width);
    let mut out = format!("\n{rule}\n");
    for line in lines {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(&rule);
    out.push('\n');
    out.into_bytes()
}

/// Puts the port in the mode [`answer`] expects, whatever a previous user
/// left: input by lines (Enter ends one; CR counts as Enter) with echo, and
/// output with LF sent as CR LF. The line speed is left as it is.
pub fn line_mode(port: &impl std::os::fd::AsFd) -> nix::Result<()> {
    use nix::sys::termios::{tcgetattr, tcsetattr, InputFlags, LocalFlags, OutputFlags, SetArg};
    let mut mode = tcgetattr(port)?;
    mode.local_flags |= LocalFlags::ICANON | LocalFlags::ECHO;
    mode.input_flags |= InputFlags::ICRNL;
    mode.output_flags |= OutputFlags::OPOST | OutputFlags::ONLCR;
    tcsetattr(port, SetArg::TCSANOW, &mode)
}

/// Answers every line typed at `port` (the terminal's line discipline
/// hands over a line at Enter) with the newest screen. Returns when the
/// port fails; the caller reports it.
pub fn answer<P: Read + Write>(
    mut port: P,
    screen: &Arc<Mutex<Vec<String>>>,
    width: usize,
) -> std::io::Error {
    let mut buf = [0u8; 256];
    loop {
        match port.read(&mut buf) {
            // End of input (a hang-up or ^D): wait for the next line.
            Ok(0) => std::thread::sleep(std::time::Duration::from_millis(500)),
            Ok(n) if buf[..n].iter().any(|b| matches!(b, b'\n' | b'\r')) => {
                let lines = match screen.lock() {
                    Ok(lines) => lines.clone(),
                    Err(poisoned) => poisoned.into_inner().clone(),
                };
                if let Err(e) = port.write_all(&frame(&lines, width)) {
                    return e;
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_serial_consoles_are_answered() {
        assert_eq!(consoles("tty0 ttyS0\n"), [PathBuf::from("/dev/ttyS0")]);
        assert_eq!(
            consoles("ttyS1 hvc0 ttyAMA0"),
            ["/dev/ttyS1", "/dev/hvc0", "/dev/ttyAMA0"].map(PathBuf::from)
        );
        assert!(consoles("tty0 tty1 ttyS ttySx ../x").is_empty());
    }

    #[test]
    fn a_serial_frame_has_no_cursor_moves() {
        let bytes = frame(&["a  ".into(), "b".into()], 4);
        assert_eq!(bytes, b"\n----\na\nb\n----\n");
    }

    /// A real terminal: the port is a pseudo-terminal's slave side in its
    /// default (canonical) mode, the operator types at the master side.
    #[test]
    fn enter_on_the_console_prints_the_newest_screen() {
        use std::os::fd::AsFd;
        let pty = nix::pty::openpty(None, None).unwrap_or_else(|e| panic!("openpty: {e}"));
        let port = std::fs::File::from(pty.slave);
        line_mode(&port).unwrap_or_else(|e| panic!("line mode: {e}"));
        let mut operator = std::fs::File::from(pty.master);
        let screen = Arc::new(Mutex::new(vec!["Health  OK".to_string()]));
        let shared = Arc::clone(&screen);
        std::thread::spawn(move || answer(port, &shared, 10));
        // Typed without Enter: nothing yet. Then Enter.
        operator.write_all(b"x").unwrap_or_else(|e| panic!("{e}"));
        *screen.lock().unwrap_or_else(|e| panic!("{e}")) = vec!["Health  DEGRADED".into()];
        operator.write_all(b"\r").unwrap_or_else(|e| panic!("{e}"));
        let mut seen = Vec::new();
        let mut buf = [0u8; 512];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !String::from_utf8_lossy(&seen).ends_with("----------\r\n")
            || !String::from_utf8_lossy(&seen).contains("DEGRADED")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{:?}",
                String::from_utf8_lossy(&seen)
            );
            // Wait at most a second per read, so a missing answer fails
            // at the deadline instead of hanging.
            let mut ready = [nix::poll::PollFd::new(
                operator.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if nix::poll::poll(&mut ready, 1000u16).unwrap_or_else(|e| panic!("poll: {e}")) == 0 {
                continue;
            }
            let n = operator.read(&mut buf).unwrap_or_else(|e| panic!("{e}"));
            seen.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&seen);
        assert!(
            text.contains("----------\r\nHealth  DEGRADED\r\n----------\r\n"),
            "{text:?}"
        );
        assert!(!text.contains("Health  OK"), "{text:?}");
        assert!(!text.contains('\x1b'), "{text:?}");
    }
}
