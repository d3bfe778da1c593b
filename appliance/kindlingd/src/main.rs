//! `kindlingd`: one static binary, several roles, chosen by the first argument.
//! Each role lives in its own library crate; this file only dispatches.

use std::process::ExitCode;

mod api;
mod assignments;
mod config;
mod console;
mod enroll;
mod net;
mod pxe;
mod service_table;
mod site;
mod stack;

const USAGE: &str = "usage: kindlingd <config|net|pxe|api|stack-bootstrap> [args…]";

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let role = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let result = match role.as_str() {
        "config" => config::run(&rest),
        "net" => net::run(&rest),
        "pxe" => pxe::run(&rest),
        "api" => api::run(&rest),
        "stack-bootstrap" => stack::run(&rest),
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("kindlingd {role}: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Tells kindling-init this service is ready: one line on the inherited fd named
/// by `KINDLING_NOTIFY_FD` (see docs/contracts.md). A no-op when run by hand.
pub(crate) fn notify_ready() {
    use std::io::Write;
    use std::os::fd::FromRawFd;
    let Some(fd) = std::env::var("KINDLING_NOTIFY_FD")
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
    else {
        return;
    };
    std::env::remove_var("KINDLING_NOTIFY_FD");
    // SAFETY: init passed this fd for our exclusive use; we own it from here on
    // and the File closes it when dropped, so the pipe's write end is released.
    let mut pipe = unsafe { std::fs::File::from_raw_fd(fd) };
    if let Err(e) = pipe.write_all(b"ready\n") {
        eprintln!("could not tell init we are ready (fd {fd}): {e}");
    }
}
