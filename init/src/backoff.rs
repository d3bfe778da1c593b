//! Restart backoff: 100 ms doubling to 30 s, reset after 60 s of stable running.
//!
//! Pure arithmetic; owns no timers and never sleeps.

use std::time::Duration;

/// First delay after a failure.
pub const INITIAL: Duration = Duration::from_millis(100);
/// Longest delay.
pub const MAX: Duration = Duration::from_secs(30);
/// A process that ran this long counts as stable: the next failure starts over.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// Backoff state of one service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// Records an exit after `uptime` of running and returns the delay before the next start.
    pub fn next_delay(&mut self, uptime: Duration) -> Duration {
        if uptime >= STABLE_AFTER {
            self.failures = 0;
        }
        let delay = delay_for(self.failures);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Forgets earlier failures (manual restart).
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Consecutive quick exits so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

/// Delay after `failures` earlier consecutive failures: 100 ms · 2^failures, at most 30 s.
pub fn delay_for(failures: u32) -> Duration {
    let factor = 1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX);
    INITIAL.saturating_mul(factor).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_100ms_and_caps_at_30s() {
        let mut b = Backoff::default();
        let quick = Duration::from_millis(5);
        let delays: Vec<u128> = (0..12).map(|_| b.next_delay(quick).as_millis()).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000, 30000]
        );
        assert_eq!(b.failures(), 12);
    }

    #[test]
    fn stable_run_resets() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.next_delay(Duration::from_secs(1));
        }
        assert_eq!(
            b.next_delay(Duration::from_secs(59)),
            Duration::from_millis(3200)
        );
        assert_eq!(b.next_delay(STABLE_AFTER), INITIAL);
        assert_eq!(b.next_delay(Duration::ZERO), Duration::from_millis(200));
    }

    #[test]
    fn huge_failure_counts_do_not_overflow() {
        assert_eq!(delay_for(u32::MAX), MAX);
        assert_eq!(delay_for(40), MAX);
    }

    #[test]
    fn manual_reset() {
        let mut b = Backoff::default();
        b.next_delay(Duration::ZERO);
        b.next_delay(Duration::ZERO);
        b.reset();
        assert_eq!(b.next_delay(Duration::ZERO), INITIAL);
    }
}
