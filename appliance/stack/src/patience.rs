//! Polling: how often the bootstrap asks a service "are you there yet?",
//! and believing a "no" only once it persisted (right after a restart
//! Consul and Nomad reject valid tokens until their ACL state is loaded).
//! Owns only the timing; the question asked is the caller's.
//!
//! Every wait starts with a quick second look and backs off to a gentle
//! pace: a service that is nearly ready costs tens of milliseconds, not a
//! whole fixed interval, and one that takes seconds is not hammered.

use std::future::Future;
use std::time::{Duration, Instant};

/// The pause before the first retry.
const FIRST_PAUSE: Duration = Duration::from_millis(20);
/// The longest pause between two polls of a service that is coming up.
pub const SLOW_PAUSE: Duration = Duration::from_millis(250);

/// Pauses that double from [`FIRST_PAUSE`] up to a ceiling.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    ceiling: Duration,
}

impl Backoff {
    /// From 20 ms up to `ceiling`.
    pub fn up_to(ceiling: Duration) -> Self {
        Self {
            next: FIRST_PAUSE.min(ceiling),
            ceiling,
        }
    }

    /// The next pause, without sleeping.
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.ceiling);
        pause
    }

    /// Sleeps for the next pause.
    pub async fn pause(&mut self) {
        tokio::time::sleep(self.next_pause()).await;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::up_to(SLOW_PAUSE)
    }
}

/// Asks `check` until it answers yes (`Ok(true)`) or `patience` has passed
/// (`Ok(false)`), backing off from 20 ms to 250 ms; an error ends the wait
/// at once.
pub async fn yes_within<E, F, Fut>(patience: Duration, mut check: F) -> Result<bool, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool, E>>,
{
    let start = Instant::now();
    let mut backoff = Backoff::default();
    loop {
        if check().await? {
            return Ok(true);
        }
        if start.elapsed() >= patience {
            return Ok(false);
        }
        backoff.pause().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_start_short_and_double_up_to_the_ceiling() {
        let mut b = Backoff::up_to(Duration::from_millis(100));
        let pauses: Vec<u128> = (0..6).map(|_| b.next_pause().as_millis()).collect();
        assert_eq!(pauses, [20, 40, 80, 100, 100, 100]);
    }

    #[test]
    fn a_ceiling_below_the_first_pause_wins() {
        let mut b = Backoff::up_to(Duration::from_millis(5));
        assert_eq!(b.next_pause(), Duration::from_millis(5));
        assert_eq!(b.next_pause(), Duration::from_millis(5));
    }
}
