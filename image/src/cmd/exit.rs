//! The CLI's exit codes, defined once: what each means, how a failure is
//! classified into one, and the text `kindling --help` and the README show.
//!
//! A command fails with an `anyhow::Error`; [`code_of`] looks through its
//! chain for a [`Failure`] (raised where the meaning is known, e.g. an HTTP
//! status from the appliance) or a transport error of the API client.

use kindling_api_client::{ClientError, EndpointError};

/// Why the CLI stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Anything else that went wrong (a refused push, a bad file, a 5xx).
    Error = 1,
    /// The command line or the CLI config is wrong (clap uses 2 as well).
    Usage = 2,
    /// The appliance could not be reached, or its TLS did not match the pin.
    Unreachable = 3,
    /// The appliance refused the credential: no token, unknown token, or
    /// the operator's role is too low (401, 403).
    Auth = 4,
    /// What was asked for does not exist (404: unknown node, service).
    NotFound = 5,
}

/// The exit codes as `kindling --help` prints them.
pub const HELP: &str = "\
Exit codes:
  0  ok
  1  error (anything not listed below)
  2  usage: bad arguments, or no appliance/CA configured
  3  appliance unreachable, or its TLS certificate does not match the pinned CA
  4  authentication refused: no token, unknown token, or role too low (401/403)
  5  not found: unknown node, service or endpoint (404)";

/// A failure whose exit code is known where it is raised.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl Failure {
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }
}

/// The exit code for an HTTP error status from the appliance.
pub fn for_status(status: u16) -> Exit {
    match status {
        401 | 403 => Exit::Auth,
        404 => Exit::NotFound,
        _ => Exit::Error,
    }
}

/// The exit code of a command's error: the first classified cause wins.
pub fn code_of(err: &anyhow::Error) -> Exit {
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            return f.exit;
        }
        if cause.downcast_ref::<ClientError>().is_some() {
            return Exit::Unreachable;
        }
        if cause.downcast_ref::<EndpointError>().is_some() {
            return Exit::Usage;
        }
    }
    Exit::Error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classified_causes_decide_and_the_rest_is_an_error() {
        let e = anyhow::Error::new(Failure::new(Exit::NotFound, "no such node"))
            .context("kindling node show");
        assert_eq!(code_of(&e), Exit::NotFound);
        assert_eq!(code_of(&anyhow::anyhow!("disk full")), Exit::Error);
        assert_eq!(for_status(401), Exit::Auth);
        assert_eq!(for_status(403), Exit::Auth);
        assert_eq!(for_status(404), Exit::NotFound);
        assert_eq!(for_status(409), Exit::Error);
        // Every code is listed in the help text.
        for exit in [
            Exit::Ok,
            Exit::Error,
            Exit::Usage,
            Exit::Unreachable,
            Exit::Auth,
            Exit::NotFound,
        ] {
            assert!(HELP.contains(&format!("  {}  ", exit as u8)), "{exit:?}");
        }
    }
}
