//! `kindlingd`: one static binary, several roles, chosen by the first argument.
//! Each role lives in its own library crate; this file only dispatches.

use std::process::ExitCode;

mod api;
mod config;
mod net;
mod pxe;
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
