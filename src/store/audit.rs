//! Index queries for `verify`, `gc` and `import`: the object rows, which objects nothing refers
//! to, SQLite's own consistency checks, and removing object rows.

use anyhow::{Context, Result};
use rusqlite::params;

use super::index::Index;
use super::objects::Hash;

/// One `objects` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRow {
    pub hash: Hash,
    /// Uncompressed size.
    pub size: u64,
    /// Size of the `.zst` file.
    pub stored_size: u64,
}

impl Index {
    /// Every `objects` row, by hash.
    pub fn object_rows(&self) -> Result<Vec<ObjectRow>> {
        self.objects_where("")
    }

    /// `objects` rows that no `messages` row (live or expunged) and no `push_intents` row names:
    /// what `gc` may remove.
    pub fn unreferenced_object_rows(&self) -> Result<Vec<ObjectRow>> {
        // Schema 1 (read by verify without upgrading) has no push_intents.
        if self.version < 2 {
            return self.objects_where(
                "WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.hash = o.hash)",
            );
        }
        self.objects_where(
            "WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.hash = o.hash)
               AND NOT EXISTS (SELECT 1 FROM push_intents p WHERE p.hash = o.hash)",
        )
    }

    /// `objects` rows (table alias `o`) matching `filter`, by hash.
    fn objects_where(&self, filter: &str) -> Result<Vec<ObjectRow>> {
        let run = || -> rusqlite::Result<Vec<ObjectRow>> {
            let mut st = self.conn.prepare(&format!(
                "SELECT o.hash, o.size, o.stored_size FROM objects o {filter} ORDER BY o.hash"
            ))?;
            let rows = st.query_map([], |r| {
                Ok(ObjectRow {
                    hash: r.get(0)?,
                    size: r.get(1)?,
                    stored_size: r.get(2)?,
                })
            })?;
            rows.collect()
        };
        run().with_context(|| self.audit_ctx())
    }

    /// Delete these `objects` rows (and their `bundle_objects` rows, so a later bundle carries
    /// the object again should it come back) in one transaction. Rows something still refers
    /// to are kept. Returns how many were deleted.
    pub fn delete_object_rows(&mut self, hashes: &[Hash]) -> Result<u64> {
        let ctx = || format!("index {}: cannot delete object rows", self.path.display());
        let tx = self.conn.transaction().with_context(ctx)?;
        let mut n = 0;
        {
            let mut del = tx
                .prepare(
                    "DELETE FROM objects WHERE hash = ?1
                     AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.hash = ?1)
                     AND NOT EXISTS (SELECT 1 FROM push_intents p WHERE p.hash = ?1)",
                )
                .with_context(ctx)?;
            let mut del_b = tx
                .prepare("DELETE FROM bundle_objects WHERE hash = ?1")
                .with_context(ctx)?;
            for h in hashes {
                let k = del.execute(params![h]).with_context(ctx)?;
                if k > 0 {
                    del_b.execute(params![h]).with_context(ctx)?;
                }
                n += k as u64;
            }
        }
        tx.commit().with_context(ctx)?;
        Ok(n)
    }

    /// What `PRAGMA integrity_check` and `PRAGMA foreign_key_check` report, one line each;
    /// empty when the database is sound.
    pub fn sqlite_problems(&self) -> Result<Vec<String>> {
        let run = || -> rusqlite::Result<Vec<String>> {
            let mut out = Vec::new();
            let mut st = self.conn.prepare("PRAGMA integrity_check")?;
            for line in st.query_map([], |r| r.get::<_, String>(0))? {
                let line = line?;
                if line != "ok" {
                    out.push(format!("integrity_check: {line}"));
                }
            }
            let mut st = self.conn.prepare("PRAGMA foreign_key_check")?;
            let rows = st.query_map([], |r| {
                Ok(format!(
                    "foreign_key_check: a row of {} (rowid {:?}) names a missing row of {}",
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, String>(2)?
                ))
            })?;
            for row in rows {
                out.push(row?);
            }
            Ok(out)
        };
        run().with_context(|| self.audit_ctx())
    }

    /// The highest UID of the folder under `uidvalidity`, expunged rows included.
    pub fn max_uid(&self, folder_id: i64, uidvalidity: u32) -> Result<Option<u32>> {
        self.conn
            .query_row(
                "SELECT max(uid) FROM messages WHERE folder_id = ?1 AND uidvalidity = ?2",
                params![folder_id, uidvalidity],
                |r| r.get(0),
            )
            .with_context(|| self.audit_ctx())
    }

    fn audit_ctx(&self) -> String {
        format!("index {}", self.path.display())
    }
}
