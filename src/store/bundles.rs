//! Bundle bookkeeping in the index (schema 3): the bundles this store made (`bundles_made`), the
//! objects they carried (`bundle_objects`), the bundles of another store applied here
//! (`bundles_applied`), and merging a bundle's folder facts. The bundle file format itself is in
//! `crate::bundle`; both are specified in `docs/bundle-format.md` and `docs/store-format.md`.

use anyhow::{Context, Result};
use rusqlite::{params, OptionalExtension, Row};

use super::index::{folder_at, next_change, Batch, FolderRow, Index};
use super::objects::Hash;
use crate::clock::now;

/// One bundle this store wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleMade {
    /// 1, 2, 3… in the order this store made them.
    pub seq: i64,
    /// 32 random hex digits.
    pub bundle_id: String,
    /// The bundle this one continues; `None` for a full bundle.
    pub base_seq: Option<i64>,
    /// Changes after this number are in the bundle (0 for a full bundle).
    pub base_change: i64,
    /// The store's `last_change` when the bundle was made.
    pub change: i64,
    pub created_at: i64,
    /// Size of the bundle (all volumes together).
    pub bytes: u64,
    pub objects: u64,
    pub messages: u64,
    /// Where it was written (as given on the command line).
    pub path: String,
}

/// One bundle of another store applied to this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleApplied {
    pub bundle_id: String,
    pub source_store: String,
    pub seq: i64,
    pub base_change: i64,
    pub change: i64,
    pub applied_at: i64,
}

fn made_from_row(r: &Row<'_>) -> rusqlite::Result<BundleMade> {
    Ok(BundleMade {
        seq: r.get(0)?,
        bundle_id: r.get(1)?,
        base_seq: r.get(2)?,
        base_change: r.get(3)?,
        change: r.get(4)?,
        created_at: r.get(5)?,
        bytes: r.get(6)?,
        objects: r.get(7)?,
        messages: r.get(8)?,
        path: r.get(9)?,
    })
}

const MADE_COLS: &str =
    "seq, bundle_id, base_seq, base_change, change, created_at, bytes, objects, messages, path";

fn applied_from_row(r: &Row<'_>) -> rusqlite::Result<BundleApplied> {
    Ok(BundleApplied {
        bundle_id: r.get(0)?,
        source_store: r.get(1)?,
        seq: r.get(2)?,
        base_change: r.get(3)?,
        change: r.get(4)?,
        applied_at: r.get(5)?,
    })
}

const APPLIED_COLS: &str = "bundle_id, source_store, seq, base_change, change, applied_at";

impl Index {
    /// The most recent bundle this store made, if any.
    pub fn last_bundle_made(&self) -> Result<Option<BundleMade>> {
        self.conn
            .query_row(
                &format!("SELECT {MADE_COLS} FROM bundles_made ORDER BY seq DESC LIMIT 1"),
                [],
                made_from_row,
            )
            .optional()
            .with_context(|| self.bundle_ctx())
    }

    /// The bundle this store made with number `seq`.
    pub fn bundle_made(&self, seq: i64) -> Result<Option<BundleMade>> {
        self.conn
            .query_row(
                &format!("SELECT {MADE_COLS} FROM bundles_made WHERE seq = ?1"),
                [seq],
                made_from_row,
            )
            .optional()
            .with_context(|| self.bundle_ctx())
    }

    /// Whether a bundle numbered `since_seq` or later carried the object (so a store that
    /// applied the chain from that bundle on has it).
    pub fn object_bundled_since(&self, hash: &Hash, since_seq: i64) -> Result<bool> {
        self.conn
            .prepare_cached("SELECT 1 FROM bundle_objects WHERE hash = ?1 AND seq >= ?2")
            .and_then(|mut st| st.exists(params![hash, since_seq]))
            .with_context(|| self.bundle_ctx())
    }

    /// Record a bundle written completely, and the objects it carried, in one transaction.
    pub fn record_bundle_made(&mut self, b: &BundleMade, carried: &[Hash]) -> Result<()> {
        let ctx = || {
            format!(
                "index {}: cannot record bundle #{}",
                self.path.display(),
                b.seq
            )
        };
        let tx = self.conn.transaction().with_context(ctx)?;
        tx.execute(
            &format!(
                "INSERT INTO bundles_made ({MADE_COLS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"
            ),
            params![
                b.seq,
                b.bundle_id,
                b.base_seq,
                b.base_change,
                b.change,
                b.created_at,
                b.bytes,
                b.objects,
                b.messages,
                b.path
            ],
        )
        .with_context(ctx)?;
        {
            let mut st = tx
                .prepare("INSERT OR REPLACE INTO bundle_objects (hash, seq) VALUES (?1, ?2)")
                .with_context(ctx)?;
            for h in carried {
                st.execute(params![h, b.seq]).with_context(ctx)?;
            }
        }
        tx.commit().with_context(ctx)
    }

    /// Every bundle applied to this store, oldest first.
    pub fn bundles_applied(&self) -> Result<Vec<BundleApplied>> {
        let run = || -> rusqlite::Result<Vec<BundleApplied>> {
            let mut st = self.conn.prepare(&format!(
                "SELECT {APPLIED_COLS} FROM bundles_applied ORDER BY applied_at, change"
            ))?;
            let rows = st.query_map([], applied_from_row)?;
            rows.collect()
        };
        run().with_context(|| self.bundle_ctx())
    }

    /// How far this store has got in the bundles of `source_store`: the applied bundle with the
    /// highest change number.
    pub fn bundle_position(&self, source_store: &str) -> Result<Option<BundleApplied>> {
        self.conn
            .query_row(
                &format!(
                    "SELECT {APPLIED_COLS} FROM bundles_applied WHERE source_store = ?1
                     ORDER BY change DESC LIMIT 1"
                ),
                [source_store],
                applied_from_row,
            )
            .optional()
            .with_context(|| self.bundle_ctx())
    }

    /// Whether the store holds any folder or message row.
    pub fn has_mail_rows(&self) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM folders) OR EXISTS (SELECT 1 FROM messages)",
                [],
                |r| r.get(0),
            )
            .with_context(|| self.bundle_ctx())
    }

    fn bundle_ctx(&self) -> String {
        format!("index {}", self.path.display())
    }
}

impl Batch<'_> {
    /// Make the folder row at `f.path` say what `f` says (`raw_name`, `separator`, `role`,
    /// `subscribed`, the server state, gone or not), taking a change number only when something
    /// differs; `last_pull` is copied without one. `f.id` and `f.change` are ignored; a gone
    /// folder's `gone_at` is the time it was first marked gone *here*. Returns the folder's id.
    pub fn merge_folder(&mut self, f: &FolderRow) -> Result<i64> {
        let path = self.path;
        let ctx = || format!("index {}: folder {:?}", path.display(), f.path);
        let sep = f.separator.map(String::from);
        let existing = folder_at(&self.tx, &f.path).with_context(ctx)?;
        let gone = f.gone_at.is_some();
        match existing {
            None => {
                let change = next_change(&self.tx).with_context(ctx)?;
                self.tx
                    .execute(
                        "INSERT INTO folders (path, raw_name, separator, role, subscribed,
                             uidvalidity, uidnext, highestmodseq, last_pull, gone_at, change)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                        params![
                            f.path,
                            f.raw_name,
                            sep,
                            f.role,
                            f.subscribed,
                            f.state.uidvalidity,
                            f.state.uidnext,
                            f.state.highestmodseq,
                            f.last_pull,
                            gone.then(now),
                            change
                        ],
                    )
                    .with_context(ctx)?;
                Ok(self.tx.last_insert_rowid())
            }
            Some(old) => {
                let (id, gone_at) = (old.id, old.gone_at);
                let same = old.raw_name == f.raw_name
                    && old.separator == f.separator
                    && old.role == f.role
                    && old.subscribed == f.subscribed
                    && old.state == f.state
                    && gone_at.is_some() == gone;
                if same {
                    self.tx
                        .execute(
                            "UPDATE folders SET last_pull = ?2 WHERE id = ?1",
                            params![id, f.last_pull],
                        )
                        .with_context(ctx)?;
                    return Ok(id);
                }
                let change = next_change(&self.tx).with_context(ctx)?;
                let gone_at = if gone { gone_at.or(Some(now())) } else { None };
                self.tx
                    .execute(
                        "UPDATE folders SET raw_name = ?2, separator = ?3, role = ?4,
                             subscribed = ?5, uidvalidity = ?6, uidnext = ?7, highestmodseq = ?8,
                             last_pull = ?9, gone_at = ?10, change = ?11
                         WHERE id = ?1",
                        params![
                            id,
                            f.raw_name,
                            sep,
                            f.role,
                            f.subscribed,
                            f.state.uidvalidity,
                            f.state.uidnext,
                            f.state.highestmodseq,
                            f.last_pull,
                            gone_at,
                            change
                        ],
                    )
                    .with_context(ctx)?;
                Ok(id)
            }
        }
    }

    /// The id of the folder at `path`, as this batch sees it.
    pub fn folder_id(&self, path: &str) -> Result<Option<i64>> {
        self.tx
            .query_row("SELECT id FROM folders WHERE path = ?1", [path], |r| {
                r.get(0)
            })
            .optional()
            .with_context(|| format!("index {}", self.path.display()))
    }

    /// Record that a bundle of `a.source_store` was applied (part of the same transaction as
    /// the facts it brought), and set the account when the store has none yet.
    pub fn record_bundle_applied(
        &mut self,
        a: &BundleApplied,
        account: Option<(&str, &str)>,
    ) -> Result<()> {
        let ctx = || format!("index {}: cannot record bundle", self.path.display());
        self.tx
            .execute(
                &format!(
                    "INSERT OR REPLACE INTO bundles_applied ({APPLIED_COLS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
                ),
                params![
                    a.bundle_id,
                    a.source_store,
                    a.seq,
                    a.base_change,
                    a.change,
                    a.applied_at
                ],
            )
            .with_context(ctx)?;
        if let Some((host, user)) = account {
            let mut st = self
                .tx
                .prepare("INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)")
                .with_context(ctx)?;
            st.execute(["account_host", host]).with_context(ctx)?;
            st.execute(["account_user", user]).with_context(ctx)?;
        }
        Ok(())
    }
}
