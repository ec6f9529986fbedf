//! `--max-bytes-per-second`: a token bucket per direction, shared by every connection made from
//! the same [`Endpoint`](super::Endpoint) (clones share it), so parallel connections together
//! stay under the cap.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Which way bytes flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    In,
    Out,
}

/// A cap on the bytes per second in each direction. Cloning shares the budget.
#[derive(Clone)]
pub struct RateLimit {
    rate: u64,
    buckets: Arc<Mutex<[Bucket; 2]>>,
}

struct Bucket {
    /// May go negative: a debt paid by sleeping, so reads of any size keep the average exact.
    tokens: f64,
    last: Instant,
}

impl RateLimit {
    /// At most `bytes_per_second` (at least 1) in each direction.
    pub fn new(bytes_per_second: u64) -> RateLimit {
        let rate = bytes_per_second.max(1);
        let now = Instant::now();
        let full = || Bucket {
            tokens: Self::burst_of(rate) as f64,
            last: now,
        };
        RateLimit {
            rate,
            buckets: Arc::new(Mutex::new([full(), full()])),
        }
    }

    /// The cap.
    pub fn bytes_per_second(&self) -> u64 {
        self.rate
    }

    /// 50 ms worth of bytes: small enough that the average holds over a second, big enough
    /// for efficient reads.
    fn burst_of(rate: u64) -> u64 {
        (rate / 20).max(512)
    }

    /// Largest read or write to attempt at once, so no single sleep is long.
    pub(crate) fn chunk(&self) -> usize {
        usize::try_from(Self::burst_of(self.rate)).unwrap_or(usize::MAX)
    }

    /// Account for `n` bytes that just moved in `dir`, sleeping as long as needed to keep the
    /// average at the cap.
    pub(crate) fn pace(&self, dir: Direction, n: usize) {
        // Sleep outside the lock: other connections account their own bytes meanwhile and
        // queue up behind the debt.
        if let Some(w) = self.debit(dir, n, Instant::now()) {
            std::thread::sleep(w);
        }
    }

    /// Take `n` bytes from `dir`'s bucket at `now`; the wait that pays the debt, if any.
    fn debit(&self, dir: Direction, n: usize, now: Instant) -> Option<Duration> {
        if n == 0 {
            return None;
        }
        let rate = self.rate as f64;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = &mut buckets[dir as usize];
        let refill = now.saturating_duration_since(b.last).as_secs_f64() * rate;
        b.tokens = (b.tokens + refill).min(Self::burst_of(self.rate) as f64);
        b.last = b.last.max(now);
        b.tokens -= n as f64;
        (b.tokens < 0.0).then(|| Duration::from_secs_f64(-b.tokens / rate))
    }
}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RateLimit({} B/s)", self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a clock the test moves (no scheduler in the result): the waits asked for add up to
    /// the time the bytes take at the cap, beyond the first burst.
    #[test]
    fn average_rate_holds_the_cap() {
        let l = RateLimit::new(200_000);
        let mut now = l.buckets.lock().unwrap()[0].last;
        // 110 kB in 2 kB pieces, each waited out before the next: 100 kB beyond the 10 kB
        // burst take 0.5 s.
        let mut waited = Duration::ZERO;
        for _ in 0..55 {
            if let Some(w) = l.debit(Direction::In, 2000, now) {
                waited += w;
                now += w;
            }
        }
        let secs = waited.as_secs_f64();
        assert!((0.49..0.51).contains(&secs), "{secs}");
    }

    #[test]
    fn directions_and_clones_share_correctly() {
        let l = RateLimit::new(100_000);
        let l2 = l.clone();
        let now = l.buckets.lock().unwrap()[0].last;
        // Each direction has its own budget: 5 kB burst each, no wait.
        assert_eq!(l.debit(Direction::In, 5000, now), None);
        assert_eq!(l2.debit(Direction::Out, 5000, now), None);
        // A clone shares the inbound budget: now 10 kB in debt, 0.1 s at 100 kB/s.
        let w = l2.debit(Direction::In, 10_000, now).unwrap();
        assert!((w.as_secs_f64() - 0.1).abs() < 1e-9, "{w:?}");
    }

    #[test]
    fn pace_sleeps_off_the_debt() {
        let l = RateLimit::new(100_000);
        let t = Instant::now();
        l.pace(Direction::Out, 5000 + 5000);
        assert!(t.elapsed() >= Duration::from_millis(45));
    }
}
