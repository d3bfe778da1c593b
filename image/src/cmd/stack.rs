//! `kindling stack status --appliance URL`: the HashiCorp stack's bootstrap
//! status on a running appliance (`GET /v1/stack`), one line per step.
//!
//! Owns the client side only; the appliance's status file never holds a
//! secret, so printing it is safe.

use serde_json::Value;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Each bootstrap step's state, duration and error.
    Status {
        /// The appliance's API base URL, e.g. http://192.168.100.1:9000
        #[arg(long)]
        appliance: String,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Status { appliance, json } => {
            let url = format!("{}/v1/stack", appliance.trim_end_matches('/'));
            let body = super::client::get(&url)?;
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
fn table(body: &Value) -> String {
    let mut out = format!("{:<18} {:<13} {:>8}  {}\n", "STEP", "STATE", "MS", "DETAIL");
    for s in body["steps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let text = match s["error"].as_str() {
            Some(e) => format!("ERROR: {e}"),
            None => s["detail"].as_str().unwrap_or("").to_string(),
        };
        out.push_str(&format!(
            "{:<18} {:<13} {:>8}  {}\n",
            s["name"].as_str().unwrap_or("?"),
            s["state"].as_str().unwrap_or("?"),
            s["duration_ms"].as_u64().unwrap_or(0),
            text
        ));
    }
    out.push_str(&format!(
        "stack: {} ({} ms)\n",
        body["state"].as_str().unwrap_or("unknown"),
        body["elapsed_ms"].as_u64().unwrap_or(0)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_shows_each_step_and_errors() {
        let body = serde_json::json!({
            "state": "failed", "elapsed_ms": 1500,
            "steps": [
                {"name": "vault-init", "state": "already_done", "duration_ms": 4, "detail": "initialised earlier"},
                {"name": "consul-acl", "state": "failed", "duration_ms": 52, "error": "bootstrapped by someone else"}
            ]
        });
        let t = table(&body);
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
