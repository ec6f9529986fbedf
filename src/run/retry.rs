//! The backoff policy of [`super::retrying`]: after a transient failure (a dropped
//! or stalled connection, a throttling answer) wait with exponential backoff, reconnect and go
//! on; give up after `max` consecutive failures. Any progress resets the count, so a link that
//! drops every few megabytes still gets a long run through.

use std::time::Duration;

use crate::imap::error::stated_wait;
use crate::ui;

/// Consecutive-failure budget with exponential backoff.
#[derive(Debug)]
pub struct Retry {
    max: u32,
    failures: u32,
    base: Duration,
    cap: Duration,
}

impl Retry {
    /// Allow `max` consecutive failures; the first wait is a quarter second, doubling up to a
    /// minute.
    pub fn new(max: u32) -> Retry {
        Retry {
            max,
            failures: 0,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(60),
        }
    }

    /// Something was achieved since the last failure: start counting afresh.
    pub fn progress(&mut self) {
        self.failures = 0;
    }

    /// Count a failure of `what`. When the budget allows another attempt, wait the backoff delay
    /// (or the time the server's answer asked for, when it stated one: see [`stated_wait`], up
    /// to a quarter of an hour) and return true; otherwise return false.
    pub fn failed(&mut self, what: &str, err: &anyhow::Error) -> bool {
        self.failures += 1;
        if self.failures > self.max {
            return false;
        }
        let asked = stated_wait(err).map(|d| d.min(MAX_STATED));
        let delay = asked.map_or_else(|| self.delay(), |a| a.max(self.delay()));
        ui::info(&format!(
            "{what}: {err:#}; retrying in {:.1} s (attempt {} of {})",
            delay.as_secs_f64(),
            self.failures,
            self.max
        ));
        let _shown = ui::waiting(
            format!("to retry {what}"),
            std::time::Instant::now() + delay,
        );
        std::thread::sleep(delay);
        true
    }

    /// The first wait (tests use zero).
    pub fn set_base_delay(&mut self, base: Duration) {
        self.base = base;
    }

    fn delay(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(16);
        (self.base * 2u32.pow(doublings)).min(self.cap)
    }
}

/// The longest wait a server's stated backoff gets.
const MAX_STATED: Duration = Duration::from_secs(15 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_progress_resets_them() {
        let mut r = Retry::new(30);
        r.cap = Duration::from_secs(2);
        let mut seen = Vec::new();
        for _ in 0..5 {
            r.failures += 1;
            seen.push(r.delay().as_millis());
        }
        assert_eq!(seen, vec![250, 500, 1000, 2000, 2000]);
        r.progress();
        r.failures += 1;
        assert_eq!(r.delay().as_millis(), 250);
    }

    #[test]
    fn the_budget_counts_consecutive_failures() {
        let mut r = Retry::new(2);
        r.base = Duration::ZERO;
        let e = anyhow::anyhow!("boom");
        assert!(r.failed("x", &e));
        assert!(r.failed("x", &e));
        assert!(!r.failed("x", &e));
        r.progress();
        assert!(r.failed("x", &e));
    }
}
