//! `kindling stack status [--appliance ADDR]`: the HashiCorp stack's bootstrap
//! status on a running appliance (`GET /v1/stack`), one line per step.
//!
//! Owns the client side only; the appliance's status file never holds a
//! secret, so printing it is safe.

use super::client::{Session, Target};
use kindling_api::stack::StackStatus;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Each bootstrap step's state, duration and error.
    #[command(after_help = "Example:\n  kindling stack status --json")]
    Status {
        #[command(flatten)]
        target: Target,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Status { target, json } => {
            let body: StackStatus = Session::open(&target)?.get_as("/v1/stack")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(());
            }
            print!("{}", table(&body));
            Ok(())
        }
    }
}

/// The status as a table plus a summary line.
fn table(body: &StackStatus) -> String {
    let mut out = format!("{:<18} {:<13} {:>8}  {}\n", "STEP", "STATE", "MS", "DETAIL");
    for s in &body.steps {
        let text = match &s.error {
            Some(e) => format!("ERROR: {e}"),
            None => s.detail.clone(),
        };
        out.push_str(&format!(
            "{:<18} {:<13} {:>8}  {}\n",
            s.name,
            name_of(&s.state),
            s.duration_ms,
            text
        ));
    }
    out.push_str(&format!(
        "stack: {} ({} ms)\n",
        name_of(&body.state),
        body.elapsed_ms
    ));
    out
}

/// A state as it is spelled on the wire (`already_done`).
fn name_of<T: serde::Serialize>(state: &T) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(name)) => name,
        _ => "?".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn table_shows_each_step_and_errors() {
        let body = serde_json::json!({
            "state": "failed", "elapsed_ms": 1500, "updated_unix": 0,
            "steps": [
                {"name": "vault-init", "state": "already_done", "duration_ms": 4, "detail": "initialised earlier"},
                {"name": "consul-acl", "state": "failed", "duration_ms": 52, "error": "bootstrapped by someone else"}
            ]
        });
        let t = table(&serde_json::from_value(body).unwrap());
        assert!(
            t.contains("vault-init         already_done         4  initialised earlier"),
            "{t}"
        );
        assert!(
            t.contains(
                "consul-acl         failed              52  ERROR: bootstrapped by someone else"
            ),
            "{t}"
        );
        assert!(t.ends_with("stack: failed (1500 ms)\n"), "{t}");
    }
}
