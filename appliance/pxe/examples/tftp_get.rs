//! The benchmark's TFTP client (tests/bench): fetches one file with the
//! given blksize and, optionally, an RFC 7440 window, and prints
//! `<seconds> <bytes> <window agreed> <acks sent>` on one line.
//!
//!   tftp_get SERVER:PORT FILE BLKSIZE [WINDOWSIZE|-] [ACK_DELAY_MS]
//!
//! ACK_DELAY_MS holds every ACK that long: an added round-trip time.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/tftp_client.rs"]
mod tftp_client;

use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: tftp_get SERVER:PORT FILE BLKSIZE [WINDOWSIZE|-] [ACK_DELAY_MS]");
        std::process::exit(2);
    }
    let server = args[1].parse().expect("SERVER:PORT");
    let req = tftp_client::Request {
        file: args[2].clone(),
        blksize: args[3].parse().expect("BLKSIZE"),
        windowsize: args
            .get(4)
            .filter(|w| *w != "-")
            .map(|w| w.parse().expect("WINDOWSIZE")),
        silence: Duration::from_millis(200),
        give_up: Duration::from_secs(30),
        server_timeout: None,
        ack_delay: Duration::from_secs_f64(
            args.get(5)
                .map_or(0.0, |ms| ms.parse::<f64>().expect("ACK_DELAY_MS"))
                / 1000.0,
        ),
    };
    match tftp_client::get(server, &req) {
        Ok(t) => println!(
            "{:.4} {} {} {}",
            t.elapsed.as_secs_f64(),
            t.data.len(),
            t.window,
            t.acks_sent
        ),
        Err(e) => {
            eprintln!("tftp_get: {e}");
            std::process::exit(1);
        }
    }
}
