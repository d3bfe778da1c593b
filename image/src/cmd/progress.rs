//! A spinner on stderr for one slow network call (an overlay push): what is
//! being sent, how big, and for how long; a bar for an upload whose size is
//! known (an update bundle). indicatif draws nothing when
//! stderr is not a terminal, so scripts and logs see only the result.

use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

pub struct Spinner {
    bar: ProgressBar,
}

impl Spinner {
    pub fn start(message: String) -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Bytes sent of a known total, on stderr.
pub struct Bar {
    bar: ProgressBar,
}

impl Bar {
    pub fn start(message: String, total: u64) -> Self {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message(message);
        Self { bar }
    }

    pub fn set(&self, sent: u64) {
        self.bar.set_position(sent);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
