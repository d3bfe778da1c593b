//! `kindling update poll [--apply-now]`: asks the appliance's update agent
//! to check its channel now (`POST /v1/update/poll`, admin) and follows
//! the check in `GET /v1/update` until it settles: up to date, waiting for
//! the maintenance window, armed (the appliance reboots into it), refused
//! or failed, with a bar while the bundle downloads. Also how `status`
//! prints the agent's `poll`.

use super::exit::{Exit, Failure};
use clap::Args;
use kindling_api::update::{PollAccepted, PollRequestBody, UpdateView};
use serde_json::Value;
use std::time::{Duration, Instant};

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| "-".to_string(), str::to_string)
}

fn when(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "-".to_string(), kindling_clock::rfc3339)
}

/// The `poll` lines of `kindling update status`.
pub fn print_status(poll: &Value) {
    println!(
        "channel:     {} at {} (window {} UTC)",
        text(&poll["channel"]),
        text(&poll["url"]),
        text(&poll["window"])
    );
    println!(
        "poll:        {} ({})",
        text(&poll["state"]),
        text(&poll["detail"])
    );
    println!(
        "checked:     {}, next {}; index #{}",
        when(&poll["checked_at"]),
        when(&poll["next_check"]),
        poll["sequence"]
            .as_u64()
            .map_or_else(|| "-".to_string(), |s| s.to_string())
    );
    if let (Some(got), Some(total)) = (poll["downloaded"].as_u64(), poll["total"].as_u64()) {
        println!("download:    {got} of {total} bytes");
    }
}

#[derive(Args)]
pub struct PollArgs {
    #[command(flatten)]
    pub target: super::client::Target,
    /// Apply what the channel offers at once, outside the site's
    /// maintenance window too (the appliance reboots into it).
    #[arg(long)]
    pub apply_now: bool,
    /// How long to follow the check.
    #[arg(long, default_value = "10m")]
    pub wait: humantime::Duration,
}

pub fn poll(a: PollArgs) -> anyhow::Result<()> {
    let session = super::client::Session::open(&a.target)?;
    let before: UpdateView = session.get_as("/v1/update")?;
    let checked_before = before
        .agent
        .as_ref()
        .map(|agent| agent["poll"]["checked_at"].clone())
        .unwrap_or(Value::Null);
    let accepted: PollAccepted = session.post_as(
        "/v1/update/poll",
        &PollRequestBody {
            apply_now: a.apply_now,
        },
    )?;
    println!(
        "asked the update agent to check channel {}{}",
        accepted.channel,
        if accepted.apply_now {
            " and apply what it offers now"
        } else {
            " (applied only inside the maintenance window)"
        }
    );
    let started = Instant::now();
    let deadline = started + *a.wait;
    let spinner = super::progress::Spinner::start(format!("checking {}", accepted.channel));
    let mut bar: Option<super::progress::Bar> = None;
    let finish = |bar: &Option<super::progress::Bar>| {
        spinner.finish();
        if let Some(bar) = bar {
            bar.finish();
        }
    };
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let view: UpdateView = session.get_as("/v1/update").inspect_err(|_| finish(&bar))?;
        let poll = view
            .agent
            .as_ref()
            .map(|agent| agent["poll"].clone())
            .unwrap_or(Value::Null);
        let taken = !view.poll_requested && poll["checked_at"] != checked_before;
        if taken {
            if let (Some("downloading"), Some(total)) =
                (poll["state"].as_str(), poll["total"].as_u64())
            {
                let bar = bar.get_or_insert_with(|| {
                    spinner.finish();
                    super::progress::Bar::start(
                        format!("downloading {}", text(&poll["offered"])),
                        total,
                    )
                });
                bar.set(poll["downloaded"].as_u64().unwrap_or(0));
            }
            let detail = text(&poll["detail"]);
            let settled = match poll["state"].as_str() {
                Some("up_to_date") | Some("waiting") => Some(Ok(())),
                Some("armed") => Some(Ok(())),
                Some("refused") => Some(Err(format!("the appliance refused the update: {detail}"))),
                Some("failed") => Some(Err(format!("the check failed: {detail}"))),
                _ => None,
            };
            if let Some(result) = settled {
                finish(&bar);
                return match result {
                    Ok(()) => {
                        println!(
                            "{} after {:.1} s: {detail}",
                            text(&poll["state"]),
                            started.elapsed().as_secs_f64()
                        );
                        Ok(())
                    }
                    Err(message) => Err(Failure::new(Exit::Error, message).into()),
                };
            }
        }
        if Instant::now() > deadline {
            finish(&bar);
            return Err(Failure::new(
                Exit::Error,
                format!(
                    "the update agent did not finish the check within {} (last: {})",
                    a.wait,
                    text(&poll["detail"])
                ),
            )
            .into());
        }
    }
}
