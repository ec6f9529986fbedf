//! The transfer log in the index (schema 6): the message bytes each committed batch moved,
//! per direction (`down` from host1, `up` to a destination), so a daily byte budget
//! ([`crate::budget`]) holds across runs and kills. Rows older than a day are pruned as new
//! ones are written. Specified in `docs/store-format.md`.

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use super::index::{Batch, Index};

/// How long a row is kept (and counts against a budget): the rolling window, in seconds.
pub const WINDOW_SECS: i64 = 24 * 3600;

/// Which way message bytes moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Way {
    /// Downloaded from host1 (pull).
    Down,
    /// Uploaded to host2 (push).
    Up,
}

impl Way {
    /// `down` or `up`, as the log stores it.
    pub fn as_str(self) -> &'static str {
        match self {
            Way::Down => "down",
            Way::Up => "up",
        }
    }
}

/// Whose bytes: the store's host1 account, or one destination (a `destinations` id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Account {
    pub way: Way,
    /// `None` for [`Way::Down`], the destination for [`Way::Up`].
    pub destination: Option<i64>,
}

impl Account {
    pub fn down() -> Account {
        Account {
            way: Way::Down,
            destination: None,
        }
    }

    pub fn up(destination: i64) -> Account {
        Account {
            way: Way::Up,
            destination: Some(destination),
        }
    }
}

impl Index {
    /// The rows of `account` newer than `now - WINDOW_SECS`: (unix time, bytes), oldest first.
    pub fn transfers_since(&self, account: Account, since: i64) -> Result<Vec<(i64, u64)>> {
        transfers(&self.conn, account, since).with_context(|| self.path.display().to_string())
    }

    /// Total bytes of each direction (all destinations together for `up`) since `since`.
    pub fn transfer_totals_since(&self, since: i64) -> Result<(u64, u64)> {
        let sum = |way: &str| -> rusqlite::Result<u64> {
            self.conn.query_row(
                "SELECT COALESCE(SUM(bytes), 0) FROM transfer_log WHERE direction = ?1 AND at > ?2",
                params![way, since],
                |r| r.get::<_, i64>(0).map(|n| n.max(0) as u64),
            )
        };
        let both = || -> rusqlite::Result<(u64, u64)> { Ok((sum("down")?, sum("up")?)) };
        both().with_context(|| self.path.display().to_string())
    }

    /// Log `bytes` moved for `account` at `at` (in its own transaction), pruning old rows.
    pub fn log_transfer(&mut self, account: Account, at: i64, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        let path = self.path.clone();
        let mut batch = self.batch()?;
        batch.log_transfer(account, at, bytes)?;
        batch.commit().with_context(|| path.display().to_string())
    }
}

impl Batch<'_> {
    /// Log `bytes` moved for `account` at `at` with the rest of this batch, pruning rows that
    /// left the window.
    pub fn log_transfer(&mut self, account: Account, at: i64, bytes: u64) -> Result<()> {
        if bytes == 0 {
            return Ok(());
        }
        let path = self.path;
        (|| -> rusqlite::Result<()> {
            self.tx.execute(
                "INSERT INTO transfer_log (direction, destination_id, at, bytes)
                 VALUES (?1, ?2, ?3, ?4)",
                params![account.way.as_str(), account.destination, at, bytes as i64],
            )?;
            self.tx.execute(
                "DELETE FROM transfer_log WHERE at <= ?1",
                params![at - WINDOW_SECS],
            )?;
            Ok(())
        })()
        .with_context(|| path.display().to_string())
    }
}

fn transfers(conn: &Connection, account: Account, since: i64) -> rusqlite::Result<Vec<(i64, u64)>> {
    let mut st = conn.prepare_cached(
        "SELECT at, bytes FROM transfer_log
         WHERE direction = ?1 AND destination_id IS ?2 AND at > ?3 ORDER BY at",
    )?;
    let rows = st.query_map(
        params![account.way.as_str(), account.destination, since],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64)),
    )?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_kept_per_account_and_pruned_after_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let mut index = Index::open(&dir.path().join("index.sqlite")).unwrap();
        let dest = index.destination_id("h2", "u").unwrap();
        index.log_transfer(Account::down(), 1_000, 10).unwrap();
        index.log_transfer(Account::down(), 2_000, 20).unwrap();
        index.log_transfer(Account::up(dest), 2_000, 5).unwrap();
        let down = index.transfers_since(Account::down(), 0).unwrap();
        assert_eq!(down, vec![(1_000, 10), (2_000, 20)]);
        assert_eq!(
            index.transfers_since(Account::up(dest), 0).unwrap(),
            vec![(2_000, 5)]
        );
        assert_eq!(index.transfer_totals_since(1_500).unwrap(), (20, 5));
        // A row a day later prunes those that left the window.
        index
            .log_transfer(Account::down(), 1_000 + WINDOW_SECS, 1)
            .unwrap();
        let down = index.transfers_since(Account::down(), 0).unwrap();
        assert_eq!(down, vec![(2_000, 20), (1_000 + WINDOW_SECS, 1)]);
    }
}
