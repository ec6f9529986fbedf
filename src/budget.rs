//! Daily byte budgets: a provider's limit on the message bytes one account may download
//! (`--max-bytes-per-day1`) or upload (`--max-bytes-per-day2`) in a rolling 24 hours, handled
//! as a schedule, not a failure. Gmail, for instance, allows about 2 500 MB downloaded and
//! 500 MB uploaded per account and day over IMAP (Google Workspace Admin Help, "Gmail
//! bandwidth limits"), and past them ends sessions with `* BYE Session expired, please login
//! again.`
//!
//! - [`Budget`]: a limit for one account and direction, read against the store's transfer log
//!   ([`crate::store::transfer_log`]): what was spent in the last 24 hours, what remains, and
//!   when the window frees enough for a message.
//! - [`Allowance`]: a budget shared by the workers of one run: each takes the bytes of a batch
//!   before starting it; the first batch that does not fit stops the run, cleanly.
//! - [`BudgetSpent`]: the typed error a run stops with ([`is_budget_spent`]); the command line
//!   turns it into its own exit status. Nothing is wrong: the next run after
//!   [`BudgetSpent::resume_at`] goes on where this one stopped.
//!
//! A message larger than the whole limit is taken only when nothing was moved in the window
//! (it then has the day to itself), so it never blocks the account for good.

use std::fmt;
use std::sync::Mutex;

use anyhow::Result;
use serde::Serialize;

use crate::mailtime::format_rfc3339;
pub use crate::store::transfer_log::{Account, Way, WINDOW_SECS};
use crate::store::Index;

/// A daily limit of one account and direction; `limit: None` is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub account: Account,
    pub limit: Option<u64>,
}

impl Budget {
    pub fn new(account: Account, limit: Option<u64>) -> Budget {
        Budget { account, limit }
    }

    /// Bytes moved in the 24 hours before `now`, as the store's transfer log says.
    pub fn spent_last_24h(&self, index: &Index, now: i64) -> Result<u64> {
        Ok(window(index, self.account, now)?.iter().map(|r| r.1).sum())
    }

    /// What may still be moved now; `None` without a limit.
    pub fn remaining(&self, index: &Index, now: i64) -> Result<Option<u64>> {
        let spent = self.spent_last_24h(index, now)?;
        Ok(self.limit.map(|l| l.saturating_sub(spent)))
    }

    /// When a message of `next` bytes fits (`now` when it does already).
    pub fn resume_at(&self, index: &Index, now: i64, next: u64) -> Result<i64> {
        let rows = window(index, self.account, now)?;
        Ok(match self.limit {
            None => now,
            Some(limit) => resume_at(&rows, limit, now, next),
        })
    }
}

/// The transfer log rows of `account` still in the window at `now`.
fn window(index: &Index, account: Account, now: i64) -> Result<Vec<(i64, u64)>> {
    index.transfers_since(account, now - WINDOW_SECS)
}

/// When `next` more bytes fit under `limit`, given the window's rows (oldest first): the moment
/// enough of the oldest rows leave the window. A message larger than the limit waits until the
/// window is empty.
pub fn resume_at(rows: &[(i64, u64)], limit: u64, now: i64, next: u64) -> i64 {
    let spent: u64 = rows.iter().map(|r| r.1).sum();
    if spent.saturating_add(next) <= limit || (spent == 0) {
        return now;
    }
    // Bytes that must leave the window; all of them for a message larger than the limit.
    let excess = if next > limit {
        spent
    } else {
        spent + next - limit
    };
    let mut freed = 0;
    for &(at, bytes) in rows {
        freed += bytes;
        if freed >= excess {
            return (at + WINDOW_SECS).max(now);
        }
    }
    now + WINDOW_SECS
}

/// A run stopped by a daily byte budget (its own, or the server's). Not a failure: everything
/// moved until then is committed, and a run after `resume_at` continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BudgetSpent {
    /// `down` (from host1) or `up` (to host2).
    pub direction: Way,
    /// Bytes moved in the window, as far as the store knows.
    pub spent: u64,
    /// The limit, when one was given (`None`: the server said its own quota was reached).
    pub limit: Option<u64>,
    /// Unix time from which the next run can move messages again.
    #[serde(skip)]
    pub resume_at: i64,
    /// `resume_at` in RFC 3339, UTC.
    #[serde(rename = "resume_at")]
    pub resume_at_text: String,
    /// True when the server ended the session over its quota (Gmail's `BYE Session expired`).
    pub by_server: bool,
}

impl BudgetSpent {
    fn new(
        direction: Way,
        spent: u64,
        limit: Option<u64>,
        resume_at: i64,
        by_server: bool,
    ) -> Self {
        BudgetSpent {
            direction,
            spent,
            limit,
            resume_at,
            resume_at_text: format_rfc3339(resume_at),
            by_server,
        }
    }

    /// The earlier of two stops (the run can go on from the earlier one).
    pub fn earlier(self, other: BudgetSpent) -> BudgetSpent {
        if other.resume_at < self.resume_at {
            other
        } else {
            self
        }
    }
}

impl fmt::Display for BudgetSpent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, host) = match self.direction {
            Way::Down => ("download", "host1"),
            Way::Up => ("upload", "host2"),
        };
        let human = crate::ui::human_bytes;
        match (self.by_server, self.limit) {
            (true, _) => write!(
                f,
                "{host} ended the session over its daily {what} quota (BYE Session expired) \
                 after {} in the last 24 h",
                human(self.spent)
            )?,
            (false, Some(limit)) => write!(
                f,
                "stopped by the daily {what} budget: {} of {} in the last 24 h",
                human(self.spent),
                human(limit)
            )?,
            (false, None) => write!(f, "stopped by the daily {what} budget")?,
        }
        write!(
            f,
            "; nothing is wrong, run again after {}",
            self.resume_at_text
        )
    }
}

impl std::error::Error for BudgetSpent {}

/// True when `err` (anywhere in its chain) is a [`BudgetSpent`].
pub fn is_budget_spent(err: &anyhow::Error) -> bool {
    budget_spent(err).is_some()
}

/// The [`BudgetSpent`] in `err`'s chain, if any.
pub fn budget_spent(err: &anyhow::Error) -> Option<&BudgetSpent> {
    err.chain().find_map(|c| c.downcast_ref::<BudgetSpent>())
}

/// One run's share of a [`Budget`], for all its workers: batches are taken from it before they
/// start; once one does not fit, the run stops (and every later take gets nothing), so what
/// comes after is moved by the next run, in order.
///
/// The window is read once, when the run starts: a run that lasts longer than a day stops
/// earlier than it had to, never later.
#[derive(Debug)]
pub struct Allowance {
    budget: Budget,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The window's rows when the run started.
    rows: Vec<(i64, u64)>,
    /// Bytes taken by this run so far.
    taken: u64,
    /// Why the run stops, once it does.
    stop: Option<BudgetSpent>,
}

impl Allowance {
    /// The budget's share for a run starting at `now`.
    pub fn open(budget: Budget, index: &Index, now: i64) -> Result<Allowance> {
        let rows = window(index, budget.account, now)?;
        Ok(Allowance {
            budget,
            state: Mutex::new(State {
                rows,
                taken: 0,
                stop: None,
            }),
        })
    }

    /// No limit, no log read (dry runs, tests).
    pub fn unlimited(account: Account) -> Allowance {
        Allowance {
            budget: Budget::new(account, None),
            state: Mutex::new(State {
                rows: Vec::new(),
                taken: 0,
                stop: None,
            }),
        }
    }

    /// The account this allowance counts for.
    pub fn account(&self) -> Account {
        self.budget.account
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How many of the next messages (their sizes, in order) may be moved now; their bytes are
    /// taken. Fewer than all means the budget is spent: the run stops after moving those.
    pub fn take(&self, sizes: &[u64], now: i64) -> usize {
        let mut s = self.state();
        if s.stop.is_some() {
            return 0;
        }
        let Some(limit) = self.budget.limit else {
            s.taken += sizes.iter().sum::<u64>();
            return sizes.len();
        };
        let before: u64 = s.rows.iter().map(|r| r.1).sum::<u64>() + s.taken;
        let mut used = before;
        let mut n = 0;
        for &size in sizes {
            // Alone in an empty window, a message larger than the limit still goes.
            if used.saturating_add(size) > limit && !(used == 0 && n == 0) {
                break;
            }
            used = used.saturating_add(size);
            n += 1;
        }
        s.taken += used - before;
        if n < sizes.len() {
            let mut rows = s.rows.clone();
            if s.taken > 0 {
                rows.push((now, s.taken));
            }
            let at = resume_at(&rows, limit, now, sizes[n]);
            s.stop = Some(BudgetSpent::new(
                self.budget.account.way,
                used,
                Some(limit),
                at,
                false,
            ));
        }
        n
    }

    /// Bytes taken for messages that did not move after all (to be asked for again).
    pub fn give_back(&self, bytes: u64) {
        let mut s = self.state();
        s.taken = s.taken.saturating_sub(bytes);
    }

    /// The server ended the session over its own quota: the run stops. The next run may try
    /// when the oldest bytes of the window leave it, or a day from now when none are known.
    pub fn server_quota(&self, now: i64) -> BudgetSpent {
        let mut s = self.state();
        let oldest = s.rows.first().map_or(now, |r| r.0).min(now);
        let spent = s.rows.iter().map(|r| r.1).sum::<u64>() + s.taken;
        let stop = BudgetSpent::new(
            self.budget.account.way,
            spent,
            self.budget.limit,
            oldest + WINDOW_SECS,
            true,
        );
        let stop = match s.stop.take() {
            Some(old) => old.earlier(stop),
            None => stop,
        };
        s.stop = Some(stop.clone());
        stop
    }

    /// Whether at least nine tenths of the limit are spent in the window (this run's bytes
    /// counted): a `BYE Session expired` then is read as the server's quota, not as the end of
    /// a long session. False without a limit.
    pub fn near_end(&self) -> bool {
        let s = self.state();
        let Some(limit) = self.budget.limit else {
            return false;
        };
        let spent = s.rows.iter().map(|r| r.1).sum::<u64>() + s.taken;
        spent.saturating_mul(10) >= limit.saturating_mul(9)
    }

    /// Why the run stops, once it does.
    pub fn stop(&self) -> Option<BudgetSpent> {
        self.state().stop.clone()
    }

    /// The error that ends a worker's part once the budget is spent.
    pub fn spent_error(&self) -> anyhow::Error {
        match self.stop() {
            Some(b) => anyhow::Error::new(b),
            None => anyhow::anyhow!("the daily byte budget is spent"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowance(limit: u64, rows: Vec<(i64, u64)>) -> Allowance {
        Allowance {
            budget: Budget::new(Account::down(), Some(limit)),
            state: Mutex::new(State {
                rows,
                taken: 0,
                stop: None,
            }),
        }
    }

    #[test]
    fn the_window_frees_when_enough_old_bytes_leave_it() {
        let rows = [(100, 40), (200, 30), (300, 20)];
        // 90 spent of 100: 5 more fit now.
        assert_eq!(resume_at(&rows, 100, 1_000, 5), 1_000);
        // 30 more need 20 freed: the first row's expiry.
        assert_eq!(resume_at(&rows, 100, 1_000, 30), 100 + WINDOW_SECS);
        // 60 more need 50 freed: the second row's.
        assert_eq!(resume_at(&rows, 100, 1_000, 60), 200 + WINDOW_SECS);
        // Larger than the limit: when the window is empty.
        assert_eq!(resume_at(&rows, 100, 1_000, 500), 300 + WINDOW_SECS);
        assert_eq!(resume_at(&[], 100, 1_000, 500), 1_000);
    }

    #[test]
    fn takes_stop_at_the_first_message_that_does_not_fit_and_stay_stopped() {
        let a = allowance(100, vec![(10, 50)]);
        assert_eq!(a.take(&[20, 20, 20], 1_000), 2);
        let stop = a.stop().unwrap();
        assert_eq!((stop.spent, stop.limit), (90, Some(100)));
        // 20 more need 10 freed: the old row leaves first.
        assert_eq!(stop.resume_at, 10 + WINDOW_SECS);
        assert_eq!(a.take(&[1], 1_001), 0);
        let e = a.spent_error().context("pulling INBOX");
        assert!(is_budget_spent(&e));
        assert!(!is_budget_spent(&anyhow::anyhow!("other")));
    }

    #[test]
    fn a_message_larger_than_the_limit_goes_alone_into_an_empty_window() {
        let a = allowance(100, vec![]);
        assert_eq!(a.take(&[500, 1], 1_000), 1);
        assert_eq!(a.stop().unwrap().resume_at, 1_000 + WINDOW_SECS);
        let b = allowance(100, vec![(10, 1)]);
        assert_eq!(b.take(&[500], 1_000), 0);
        assert_eq!(b.stop().unwrap().resume_at, 10 + WINDOW_SECS);
    }

    #[test]
    fn without_a_limit_everything_is_taken_and_given_back_bytes_count_again() {
        let a = Allowance::unlimited(Account::down());
        assert_eq!(a.take(&[u64::MAX / 4, 10], 0), 2);
        assert!(a.stop().is_none());
        let b = allowance(100, vec![]);
        assert_eq!(b.take(&[60], 0), 1);
        b.give_back(60);
        assert_eq!(b.take(&[60], 0), 1);
    }

    #[test]
    fn the_budget_is_near_its_end_at_nine_tenths() {
        let a = allowance(1_000, vec![(10, 850)]);
        assert!(!a.near_end());
        assert_eq!(a.take(&[60], 20), 1);
        assert!(a.near_end());
        assert!(!Allowance::unlimited(Account::down()).near_end());
    }

    #[test]
    fn the_servers_quota_stops_the_run_until_the_oldest_bytes_leave_the_window() {
        let a = allowance(1_000, vec![(500, 10)]);
        let stop = a.server_quota(2_000);
        assert!(stop.by_server);
        assert_eq!(stop.resume_at, 500 + WINDOW_SECS);
        let b = Allowance::unlimited(Account::down());
        assert_eq!(b.server_quota(2_000).resume_at, 2_000 + WINDOW_SECS);
        assert_eq!(b.take(&[1], 2_001), 0);
        assert!(b.stop().unwrap().to_string().contains("run again after"));
    }
}
