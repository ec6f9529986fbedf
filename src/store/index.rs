//! `index.sqlite`: the account, its folders, one row per message per folder, header facts per
//! object, a log of runs. Every change carries a monotonically increasing change number.
//!
//! Change numbers: each change to a `folders` or `messages` row takes `meta.last_change + 1`
//! (in the same transaction) and stores it in the row's `change` column, so "what changed
//! since N" is `change > N`. Writes that change nothing take no number.

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, Type, ValueRef};
use rusqlite::{
    params, Connection, OptionalExtension, Row, ToSql, Transaction, TransactionBehavior,
};

use super::facts::HeaderFacts;
use super::objects::{Hash, FILE_MODE};
use super::schema;
use crate::flags::same_flags;
use crate::mailtime::InternalDate;
use crate::names::MailboxName;

/// A folder as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRow {
    pub id: i64,
    /// UTF-8 path, personal-namespace prefix removed, components joined with `/`
    /// (e.g. `INBOX`, `Archive/2024`, `Entwürfe`).
    pub path: String,
    /// The server's name exactly as LIST sent it (modified UTF-7, with prefix and separator).
    /// The name as host1's LIST sent it (see [`MailboxName`]).
    pub raw_name: MailboxName,
    pub separator: Option<char>,
    /// RFC 6154 role, e.g. `\Sent`.
    pub role: Option<String>,
    pub subscribed: bool,
    pub state: FolderState,
    /// Unix time of the last completed pull of this folder.
    pub last_pull: Option<i64>,
    /// Set when the folder was no longer listed by host1 (unix time).
    pub gone_at: Option<i64>,
    pub change: i64,
}

/// The server-side state recorded after a folder was last pulled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderState {
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub highestmodseq: Option<u64>,
}

/// One message in one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub folder_id: i64,
    pub uidvalidity: u32,
    pub uid: u32,
    pub hash: Hash,
    pub size: u64,
    /// Flags without `\Recent`, in the order the server sent them.
    pub flags: Vec<String>,
    /// INTERNALDATE as the store holds it (`DD-Mon-YYYY HH:MM:SS +HHMM` as written by this
    /// version; parse it with [`InternalDate::parse`] before use: a store may come from a disk).
    pub internaldate: String,
    pub first_seen: i64,
    pub expunged_at: Option<i64>,
    pub change: i64,
}

/// A message to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub uidvalidity: u32,
    pub uid: u32,
    pub hash: Hash,
    pub size: u64,
    pub flags: Vec<String>,
    /// Parsed, so the store only ever holds dates in the one form push can send.
    pub internaldate: InternalDate,
    /// Gmail's `X-GM-MSGID` and `X-GM-THRID`, when host1 is Gmail.
    pub gmail: Option<GmailIds>,
}

/// Gmail's ids of one message: the same in every label view it shows in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GmailIds {
    pub msgid: u64,
    pub thrid: Option<u64>,
}

/// Counts recorded for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub folders: u64,
    pub new: u64,
    pub updated: u64,
    pub expunged: u64,
    pub failed: u64,
    pub bytes: u64,
}

/// Per-folder totals for `imapferry status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSummary {
    pub path: String,
    /// Live (not expunged) messages.
    pub messages: u64,
    /// Sum of their sizes (uncompressed bytes).
    pub raw_bytes: u64,
    /// Sum of the on-disk sizes of their objects (an object shared by two messages of the
    /// folder counts twice).
    pub stored_bytes: u64,
    pub last_pull: Option<i64>,
    pub gone: bool,
}

/// `path` with its directory's links resolved (the store root may be a link; the file itself
/// is opened with SQLite's NOFOLLOW, which refuses a link anywhere in the path it is given).
fn real_path(path: &Path) -> Result<PathBuf> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let dir = dir.unwrap_or(Path::new("."));
    let real =
        fs::canonicalize(dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    Ok(real.join(path.file_name().unwrap_or_default()))
}

/// `file:PATH?immutable=1`, PATH percent-encoded where a URI needs it (SQLite's URI
/// filenames).
fn immutable_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri + "?immutable=1"
}

/// The open index database.
pub struct Index {
    /// Shared with the sibling modules that add tables (`push_state`).
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    /// The schema version of the file: [`schema::current_version`] unless opened read-only.
    pub(super) version: i64,
}

use crate::clock::now;

impl Index {
    /// Open (creating and migrating as needed) with WAL; file mode 0600.
    pub fn open(path: &Path) -> Result<Index> {
        // Create the file ourselves so its mode is 0600 whatever the umask; SQLite gives the
        // -wal and -shm files the mode of the database file.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(path)
        {
            Ok(f) => f
                .set_permissions(fs::Permissions::from_mode(FILE_MODE))
                .with_context(|| format!("cannot chmod {}", path.display()))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
        }
        let ctx = || format!("cannot open the index {}", path.display());
        // A link is never followed (see `layout`).
        let flags = rusqlite::OpenFlags::default() | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let mut conn = Connection::open_with_flags(real_path(path)?, flags).with_context(ctx)?;
        conn.busy_timeout(Duration::from_secs(30))
            .with_context(ctx)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .with_context(ctx)?;
        if !mode.eq_ignore_ascii_case("wal") {
            bail!(
                "{}: cannot switch to WAL journal mode (got {mode})",
                path.display()
            );
        }
        // Durability first: a commit is on disk when it returns.
        conn.pragma_update(None, "synchronous", "FULL")
            .with_context(ctx)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .with_context(ctx)?;
        schema::migrate(&mut conn, path)?;
        Ok(Index {
            conn,
            path: path.to_path_buf(),
            version: schema::current_version(),
        })
    }

    /// Open an existing index without changing it: no file created, no journal mode set, no
    /// migration (an older schema is read as it is: see [`Index::schema_version`]). On
    /// read-only media SQLite cannot make the `-shm` file a WAL database is read with; when no
    /// `-wal` file holds commits still to be read either, the file is opened as immutable
    /// (nothing can change it there), which needs neither.
    pub fn open_read_only(path: &Path) -> Result<Index> {
        let ctx = || format!("cannot open the index {}", path.display());
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
            | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX
            | rusqlite::OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let dir = path.parent().unwrap_or(Path::new("."));
        let wal = path.with_file_name(format!(
            "{}-wal",
            path.file_name().unwrap_or_default().to_string_lossy()
        ));
        let read_only_media = rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).is_err();
        let real = real_path(path)?;
        let conn = if read_only_media && !wal.exists() {
            Connection::open_with_flags(
                immutable_uri(&real),
                flags | rusqlite::OpenFlags::SQLITE_OPEN_URI,
            )
        } else {
            Connection::open_with_flags(real, flags)
        }
        .with_context(ctx)?;
        conn.busy_timeout(Duration::from_secs(30))
            .with_context(ctx)?;
        let version = schema::read_version(&conn, path)?;
        Ok(Index {
            conn,
            path: path.to_path_buf(),
            version,
        })
    }

    /// The schema version of the file (older than this binary's only when opened read-only).
    pub fn schema_version(&self) -> i64 {
        self.version
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write a consistent copy of the database to `path` (which must not exist): what a dry
    /// run works on, so the store itself is never changed.
    pub fn copy_to(&self, path: &Path) -> Result<()> {
        let target = path
            .to_str()
            .with_context(|| format!("{} is not UTF-8", path.display()))?;
        self.conn
            .execute("VACUUM INTO ?1", [target])
            .with_context(|| format!("copying {} to {target}", self.path.display()))?;
        Ok(())
    }

    /// The random identity given to the store at creation (32 hex digits).
    pub fn store_id(&self) -> Result<String> {
        meta_get(&self.conn, "store_id")
            .and_then(|v| v.context("meta.store_id is missing"))
            .with_context(|| self.ctx())
    }

    /// (host, user) of the account this store mirrors, once set.
    pub fn account(&self) -> Result<Option<(String, String)>> {
        let get = |k| meta_get(&self.conn, k).with_context(|| self.ctx());
        Ok(match (get("account_host")?, get("account_user")?) {
            (Some(h), Some(u)) => Some((h, u)),
            _ => None,
        })
    }

    /// Record the account this store mirrors.
    pub fn set_account(&mut self, host: &str, user: &str) -> Result<()> {
        let ctx = ctx_of(&self.path);
        let tx = write_tx(&mut self.conn, &self.path)?;
        let mut st = tx
            .prepare("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")
            .with_context(ctx)?;
        st.execute(["account_host", host]).with_context(ctx)?;
        st.execute(["account_user", user]).with_context(ctx)?;
        drop(st);
        tx.commit().with_context(ctx)
    }

    /// All folders, gone ones included, ordered by path.
    pub fn folders(&self) -> Result<Vec<FolderRow>> {
        folder_rows(&self.conn, "ORDER BY path", []).with_context(|| self.ctx())
    }

    /// Folders whose row changed after change number `n`, by change number.
    pub fn folders_changed_since(&self, n: i64) -> Result<Vec<FolderRow>> {
        folder_rows(&self.conn, "WHERE change > ?1 ORDER BY change", [n])
            .with_context(|| self.ctx())
    }

    /// Insert or update a folder by `path`; clears `gone_at`. Bumps the change number only
    /// when something changed. Returns its id.
    pub fn upsert_folder(
        &mut self,
        path: &str,
        raw_name: impl Into<MailboxName>,
        separator: Option<char>,
        role: Option<&str>,
        subscribed: bool,
    ) -> Result<i64> {
        let raw_name = &raw_name.into();
        let ctx = ctx_of(&self.path);
        let tx = write_tx(&mut self.conn, &self.path)?;
        let sep = separator.map(String::from);
        let existing = folder_at(&tx, path).with_context(ctx)?;
        let id = match existing {
            None => {
                let change = next_change(&tx).with_context(ctx)?;
                tx.execute(
                    "INSERT INTO folders (path, raw_name, separator, role, subscribed, change)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![path, raw_name, sep, role, subscribed, change],
                )
                .with_context(ctx)?;
                tx.last_insert_rowid()
            }
            Some(old) => {
                let id = old.id;
                let same = old.raw_name == *raw_name
                    && old.separator == separator
                    && old.role.as_deref() == role
                    && old.subscribed == subscribed
                    && old.gone_at.is_none();
                if !same {
                    let change = next_change(&tx).with_context(ctx)?;
                    tx.execute(
                        "UPDATE folders SET raw_name = ?2, separator = ?3, role = ?4,
                         subscribed = ?5, gone_at = NULL, change = ?6 WHERE id = ?1",
                        params![id, raw_name, sep, role, subscribed, change],
                    )
                    .with_context(ctx)?;
                }
                id
            }
        };
        tx.commit().with_context(ctx)?;
        Ok(id)
    }

    /// Mark a folder as no longer listed by the server (no-op when already marked).
    pub fn mark_folder_gone(&mut self, folder_id: i64) -> Result<()> {
        let ctx = ctx_of(&self.path);
        let tx = write_tx(&mut self.conn, &self.path)?;
        let gone_at: Option<Option<i64>> = tx
            .query_row(
                "SELECT gone_at FROM folders WHERE id = ?1",
                [folder_id],
                |r| r.get(0),
            )
            .optional()
            .with_context(ctx)?;
        match gone_at {
            None => bail!("{}: no folder with id {folder_id}", self.path.display()),
            Some(Some(_)) => return Ok(()),
            Some(None) => {}
        }
        let change = next_change(&tx).with_context(ctx)?;
        tx.execute(
            "UPDATE folders SET gone_at = ?2, change = ?3 WHERE id = ?1",
            params![folder_id, now(), change],
        )
        .with_context(ctx)?;
        tx.commit().with_context(ctx)
    }

    /// Messages of the folder under `uidvalidity` not marked expunged, by UID.
    pub fn live_messages(&self, folder_id: i64, uidvalidity: u32) -> Result<Vec<MessageRow>> {
        live_messages(&self.conn, folder_id, uidvalidity).with_context(|| self.ctx())
    }

    /// How many messages [`Index::live_messages`] would return, without loading them (an
    /// unchanged folder is recognised from counts alone).
    pub fn live_count(&self, folder_id: i64, uidvalidity: u32) -> Result<u64> {
        self.conn
            .prepare_cached(
                "SELECT COUNT(*) FROM messages
                 WHERE folder_id = ?1 AND uidvalidity = ?2 AND expunged_at IS NULL",
            )
            .and_then(|mut st| st.query_row(params![folder_id, uidvalidity], |r| r.get(0)))
            .with_context(|| self.ctx())
    }

    /// The object and size of a message the index holds with Gmail's id `msgid` (in any
    /// folder, expunged or not): the same message as every other row with that id.
    pub fn object_of_gmail_message(&self, msgid: u64) -> Result<Option<(Hash, u64)>> {
        self.conn
            .prepare_cached("SELECT hash, size FROM messages WHERE gm_msgid = ?1 LIMIT 1")
            .and_then(|mut st| {
                st.query_row(params![msgid as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            })
            .with_context(|| self.ctx())
    }

    /// One message row (expunged or not), if the index has it.
    pub fn message(
        &self,
        folder_id: i64,
        uidvalidity: u32,
        uid: u32,
    ) -> Result<Option<MessageRow>> {
        message(&self.conn, folder_id, uidvalidity, uid).with_context(|| self.ctx())
    }

    /// Message rows (expunged ones included) changed after change number `n`, by change number.
    pub fn messages_changed_since(&self, n: i64) -> Result<Vec<MessageRow>> {
        message_rows(&self.conn, "WHERE change > ?1 ORDER BY change", [n])
            .with_context(|| self.ctx())
    }

    /// Objects whose size and header facts equal these (for UIDVALIDITY re-indexing).
    /// `None` facts match only `NULL` columns. Sorted by hash.
    pub fn find_objects(&self, size: u64, facts: &HeaderFacts) -> Result<Vec<Hash>> {
        let run = || -> rusqlite::Result<Vec<Hash>> {
            let mut st = self.conn.prepare_cached(
                "SELECT hash FROM objects WHERE size = ?1 AND message_id IS ?2 AND date IS ?3
                 AND from_addr IS ?4 AND subject IS ?5 ORDER BY hash",
            )?;
            let rows = st.query_map(
                params![
                    size,
                    facts.message_id,
                    facts.date,
                    facts.from,
                    facts.subject
                ],
                |r| r.get(0),
            )?;
            rows.collect()
        };
        run().with_context(|| self.ctx())
    }

    /// Whether the index has a row for this object.
    pub fn object_known(&self, hash: &Hash) -> Result<bool> {
        object_known(&self.conn, hash).with_context(|| self.ctx())
    }

    /// The uncompressed size the index records for this object, if it has a row for it.
    pub fn object_size(&self, hash: &Hash) -> Result<Option<u64>> {
        self.conn
            .prepare_cached("SELECT size FROM objects WHERE hash = ?1")
            .and_then(|mut st| st.query_row([hash], |r| r.get(0)).optional())
            .with_context(|| self.ctx())
    }

    /// Start a transaction; nothing is visible to other readers until [`Batch::commit`].
    pub fn batch(&mut self) -> Result<Batch<'_>> {
        // Other workers of this process write the same index: past the busy timeout, wait
        // and try again a few times before giving up (a folder must not fail over a lock).
        // The probe takes and drops the lock; the transaction right after finds it free.
        for waited in 1..=BUSY_RETRIES {
            match self.conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK") {
                Err(e) if is_busy(&e) => std::thread::sleep(Duration::from_millis(200 * waited)),
                _ => break,
            }
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(ctx_of(&self.path))?;
        Ok(Batch {
            tx,
            path: &self.path,
        })
    }

    /// A write transaction for rows that name objects written since the last sync: the
    /// objects are made durable and put in place first ([`Objects::sync`]), outside any
    /// transaction, so a slow flush of the file system never holds the index's write lock
    /// while other workers wait for it. Then the rows, then the commit.
    pub fn batch_after_sync(&mut self, objects: &super::objects::Objects) -> Result<Batch<'_>> {
        objects.sync()?;
        self.batch()
    }

    /// Log the start of a run (`pull`, `push`, ...); returns its id.
    pub fn start_run(&mut self, kind: &str) -> Result<i64> {
        self.conn
            .execute(
                "INSERT INTO runs (kind, started_at) VALUES (?1, ?2)",
                params![kind, now()],
            )
            .with_context(ctx_of(&self.path))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Log the end of a run with its counts.
    pub fn finish_run(&mut self, run_id: i64, counts: &RunCounts, ok: bool) -> Result<()> {
        let n = self
            .conn
            .execute(
                "UPDATE runs SET finished_at = ?2, ok = ?3, folders = ?4, new = ?5, updated = ?6,
                 expunged = ?7, failed = ?8, bytes = ?9 WHERE id = ?1",
                params![
                    run_id,
                    now(),
                    ok,
                    counts.folders,
                    counts.new,
                    counts.updated,
                    counts.expunged,
                    counts.failed,
                    counts.bytes
                ],
            )
            .with_context(ctx_of(&self.path))?;
        if n == 0 {
            bail!("{}: no run with id {run_id}", self.path.display());
        }
        Ok(())
    }

    /// Totals per folder (gone ones included, flagged), ordered by path.
    pub fn summary(&self) -> Result<Vec<FolderSummary>> {
        let run = || -> rusqlite::Result<Vec<FolderSummary>> {
            let mut st = self.conn.prepare(
                "SELECT f.path, count(m.uid), coalesce(sum(m.size), 0),
                        coalesce(sum(o.stored_size), 0), f.last_pull, f.gone_at IS NOT NULL
                 FROM folders f
                 LEFT JOIN messages m ON m.folder_id = f.id AND m.expunged_at IS NULL
                 LEFT JOIN objects o ON o.hash = m.hash
                 GROUP BY f.id ORDER BY f.path",
            )?;
            let rows = st.query_map([], |r| {
                Ok(FolderSummary {
                    path: r.get(0)?,
                    messages: r.get(1)?,
                    raw_bytes: r.get(2)?,
                    stored_bytes: r.get(3)?,
                    last_pull: r.get(4)?,
                    gone: r.get(5)?,
                })
            })?;
            rows.collect()
        };
        run().with_context(|| self.ctx())
    }

    /// The highest change number handed out so far.
    pub fn current_change(&self) -> Result<i64> {
        last_change(&self.conn).with_context(|| self.ctx())
    }

    fn ctx(&self) -> String {
        ctx_of(&self.path)()
    }
}

/// A group of index changes committed atomically.
pub struct Batch<'a> {
    pub(super) tx: Transaction<'a>,
    pub(super) path: &'a Path,
}

impl Batch<'_> {
    /// Record an object's facts (no-op when already known).
    pub fn add_object(
        &mut self,
        hash: &Hash,
        size: u64,
        stored_size: u64,
        facts: &HeaderFacts,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR IGNORE INTO objects
                 (hash, size, stored_size, message_id, date, from_addr, subject, added_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    hash,
                    size,
                    stored_size,
                    facts.message_id,
                    facts.date,
                    facts.from,
                    facts.subject,
                    now()
                ])
            })
            .with_context(self.ctx())?;
        Ok(())
    }

    /// Record a message (replacing a row with the same folder/uidvalidity/uid). `\Recent` is
    /// dropped from the flags. A replacement keeps `first_seen` and clears `expunged_at`;
    /// recording what is already there (flags compared as a set) takes no change number. The object's row must
    /// exist ([`Batch::add_object`] first).
    pub fn add_message(&mut self, folder_id: i64, m: &NewMessage) -> Result<()> {
        let flags = clean_flags(&m.flags)?;
        let joined = flags.join(" ");
        let internaldate = m.internaldate.to_string();
        let old = message(&self.tx, folder_id, m.uidvalidity, m.uid).with_context(self.ctx())?;
        if let Some(old) = old {
            if old.hash == m.hash
                && old.size == m.size
                && same_flags(&old.flags, &flags)
                && old.internaldate == internaldate
                && old.expunged_at.is_none()
            {
                return Ok(());
            }
        }
        let change = next_change(&self.tx).with_context(self.ctx())?;
        self.tx
            .prepare_cached(
                "INSERT INTO messages (folder_id, uidvalidity, uid, hash, size, flags,
                                       internaldate, first_seen, expunged_at, change,
                                       gm_msgid, gm_thrid)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, NULL, ?9, ?10, ?11)
                 ON CONFLICT (folder_id, uidvalidity, uid) DO UPDATE SET
                    hash = excluded.hash, size = excluded.size, flags = excluded.flags,
                    internaldate = excluded.internaldate, expunged_at = NULL,
                    change = excluded.change, gm_msgid = excluded.gm_msgid,
                    gm_thrid = excluded.gm_thrid",
            )
            .and_then(|mut st| {
                st.execute(params![
                    folder_id,
                    m.uidvalidity,
                    m.uid,
                    m.hash,
                    m.size,
                    joined,
                    internaldate,
                    now(),
                    change,
                    m.gmail.map(|g| g.msgid as i64),
                    m.gmail.and_then(|g| g.thrid).map(|t| t as i64)
                ])
            })
            .with_context(|| {
                format!(
                    "{}: cannot record message uid {} (uidvalidity {}) of folder {folder_id} \
                     with object {}",
                    self.path.display(),
                    m.uid,
                    m.uidvalidity,
                    m.hash
                )
            })?;
        Ok(())
    }

    /// Set flags; bumps the change number only when they differ from the stored ones.
    /// Returns whether they differed. `\Recent` is dropped; the comparison ignores order and
    /// ASCII case ([`same_flags`]), the stored order is the given one.
    pub fn set_flags(
        &mut self,
        folder_id: i64,
        uidvalidity: u32,
        uid: u32,
        flags: &[String],
    ) -> Result<bool> {
        let flags = clean_flags(flags)?;
        let Some(old) = message(&self.tx, folder_id, uidvalidity, uid).with_context(self.ctx())?
        else {
            bail!(
                "{}: no message uid {uid} (uidvalidity {uidvalidity}) in folder {folder_id}",
                self.path.display()
            );
        };
        if same_flags(&old.flags, &flags) {
            return Ok(false);
        }
        let change = next_change(&self.tx).with_context(self.ctx())?;
        self.tx
            .execute(
                "UPDATE messages SET flags = ?4, change = ?5
                 WHERE folder_id = ?1 AND uidvalidity = ?2 AND uid = ?3",
                params![folder_id, uidvalidity, uid, flags.join(" "), change],
            )
            .with_context(self.ctx())?;
        Ok(true)
    }

    /// Mark a message expunged (no-op when it is unknown or already expunged).
    pub fn mark_expunged(&mut self, folder_id: i64, uidvalidity: u32, uid: u32) -> Result<()> {
        let live = message(&self.tx, folder_id, uidvalidity, uid)
            .with_context(self.ctx())?
            .is_some_and(|m| m.expunged_at.is_none());
        if live {
            expunge(&self.tx, folder_id, uidvalidity, uid).with_context(self.ctx())?;
        }
        Ok(())
    }

    /// Take back a row this run added: host1 turned out to have sent the UID twice in one
    /// answer, so the bytes recorded for it cannot be trusted. The row is deleted (its object
    /// stays until `gc`); the next pull fetches the message again.
    pub fn withdraw_message(&mut self, folder_id: i64, uidvalidity: u32, uid: u32) -> Result<()> {
        self.tx
            .execute(
                "DELETE FROM messages WHERE folder_id = ?1 AND uidvalidity = ?2 AND uid = ?3",
                params![folder_id, uidvalidity, uid],
            )
            .with_context(self.ctx())?;
        Ok(())
    }

    /// Mark every live message of the folder under any UIDVALIDITY other than `keep` expunged.
    /// Returns how many.
    pub fn expunge_other_uidvalidities(&mut self, folder_id: i64, keep: u32) -> Result<u64> {
        let run = || -> Result<u64> {
            let keys: Vec<(u32, u32)> = {
                let mut st = self.tx.prepare(
                    "SELECT uidvalidity, uid FROM messages WHERE folder_id = ?1
                     AND uidvalidity != ?2 AND expunged_at IS NULL ORDER BY uidvalidity, uid",
                )?;
                let rows =
                    st.query_map(params![folder_id, keep], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            for &(uv, uid) in &keys {
                expunge(&self.tx, folder_id, uv, uid)?;
            }
            Ok(keys.len() as u64)
        };
        run().with_context(self.ctx())
    }

    /// Record the server state seen by a completed pull at `pulled_at` (unix time). Takes a
    /// change number only when UIDVALIDITY, UIDNEXT or HIGHESTMODSEQ differ from the stored
    /// ones; `last_pull` alone is bookkeeping, not a change.
    pub fn set_folder_state(
        &mut self,
        folder_id: i64,
        state: &FolderState,
        pulled_at: i64,
    ) -> Result<()> {
        let old = folder_rows(&self.tx, "WHERE id = ?1", [folder_id])
            .with_context(self.ctx())?
            .pop();
        let Some(old) = old else {
            bail!("{}: no folder with id {folder_id}", self.path.display());
        };
        let change = if old.state == *state {
            old.change
        } else {
            next_change(&self.tx).with_context(self.ctx())?
        };
        self.tx
            .execute(
                "UPDATE folders SET uidvalidity = ?2, uidnext = ?3, highestmodseq = ?4,
                 last_pull = ?5, change = ?6 WHERE id = ?1",
                params![
                    folder_id,
                    state.uidvalidity,
                    state.uidnext,
                    state.highestmodseq,
                    pulled_at,
                    change
                ],
            )
            .with_context(self.ctx())?;
        Ok(())
    }

    /// Messages of the folder under `uidvalidity` not marked expunged, by UID, as this batch
    /// sees them.
    pub fn live_messages(&self, folder_id: i64, uidvalidity: u32) -> Result<Vec<MessageRow>> {
        live_messages(&self.tx, folder_id, uidvalidity).with_context(self.ctx())
    }

    /// Whether the index (as this batch sees it) has a row for this object.
    pub fn object_known(&self, hash: &Hash) -> Result<bool> {
        object_known(&self.tx, hash).with_context(self.ctx())
    }

    /// Make every change of the batch durable and visible, atomically. Rows naming objects
    /// written since the last [`Objects::sync`](super::objects::Objects::sync) need that sync
    /// first; see [`Index::batch_after_sync`].
    pub fn commit(self) -> Result<()> {
        let ctx = ctx_of(self.path);
        self.tx.commit().with_context(ctx)
    }

    fn ctx(&self) -> impl Fn() -> String + Copy + '_ {
        ctx_of(self.path)
    }
}

/// How many times a write transaction is begun again after SQLITE_BUSY (each after the busy
/// timeout).
const BUSY_RETRIES: u64 = 5;

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// An IMMEDIATE transaction: takes the write lock up front, so it cannot fail half-way with
/// SQLITE_BUSY when upgrading from a read.
fn write_tx<'c>(conn: &'c mut Connection, path: &Path) -> Result<Transaction<'c>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .with_context(ctx_of(path))
}

/// Error context naming the index file.
fn ctx_of(path: &Path) -> impl Fn() -> String + Copy + '_ {
    move || format!("index {}", path.display())
}

/// Drop `\Recent` (a session flag, meaningless in a copy) and check each flag can be stored
/// space-separated.
fn clean_flags(flags: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::with_capacity(flags.len());
    for f in flags {
        if f.eq_ignore_ascii_case("\\Recent") {
            continue;
        }
        if f.is_empty() || f.chars().any(|c| c.is_whitespace() || c.is_control()) {
            bail!("invalid flag {f:?}: flags are non-empty atoms without spaces");
        }
        out.push(f.clone());
    }
    Ok(out)
}

fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

fn last_change(conn: &Connection) -> Result<i64> {
    let v = meta_get(conn, "last_change")?.context("meta.last_change is missing")?;
    v.parse()
        .with_context(|| format!("meta.last_change is not an integer: {v:?}"))
}

/// Take the next change number; must run inside the transaction making the change.
pub(super) fn next_change(conn: &Connection) -> Result<i64> {
    let n = last_change(conn)? + 1;
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'last_change'",
        [n.to_string()],
    )?;
    Ok(n)
}

/// Mark one message expunged now, with a new change number.
fn expunge(conn: &Connection, folder_id: i64, uidvalidity: u32, uid: u32) -> Result<()> {
    let change = next_change(conn)?;
    conn.execute(
        "UPDATE messages SET expunged_at = ?4, change = ?5
         WHERE folder_id = ?1 AND uidvalidity = ?2 AND uid = ?3",
        params![folder_id, uidvalidity, uid, now(), change],
    )?;
    Ok(())
}

fn object_known(conn: &Connection, hash: &Hash) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM objects WHERE hash = ?1")?
        .exists([hash])
}

const FOLDER_COLS: &str = "id, path, raw_name, separator, role, subscribed, uidvalidity, \
                           uidnext, highestmodseq, last_pull, gone_at, change";

fn folder_rows<P: rusqlite::Params>(
    conn: &Connection,
    tail: &str,
    params: P,
) -> rusqlite::Result<Vec<FolderRow>> {
    let mut st = conn.prepare_cached(&format!("SELECT {FOLDER_COLS} FROM folders {tail}"))?;
    let rows = st.query_map(params, folder_from_row)?;
    rows.collect()
}

/// The folder at `path`, if any.
pub(super) fn folder_at(conn: &Connection, path: &str) -> rusqlite::Result<Option<FolderRow>> {
    Ok(folder_rows(conn, "WHERE path = ?1", [path])?.pop())
}

fn folder_from_row(r: &Row<'_>) -> rusqlite::Result<FolderRow> {
    let separator = match r.get::<_, Option<String>>(3)? {
        None => None,
        Some(s) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => {
                    return Err(rusqlite::Error::FromSqlConversionFailure(
                        3,
                        Type::Text,
                        format!("folders.separator must be one character, found {s:?}").into(),
                    ))
                }
            }
        }
    };
    Ok(FolderRow {
        id: r.get(0)?,
        path: r.get(1)?,
        raw_name: r.get(2)?,
        separator,
        role: r.get(4)?,
        subscribed: r.get(5)?,
        state: FolderState {
            uidvalidity: r.get(6)?,
            uidnext: r.get(7)?,
            highestmodseq: r.get(8)?,
        },
        last_pull: r.get(9)?,
        gone_at: r.get(10)?,
        change: r.get(11)?,
    })
}

const MESSAGE_COLS: &str = "folder_id, uidvalidity, uid, hash, size, flags, internaldate, \
                            first_seen, expunged_at, change";

fn message_rows<P: rusqlite::Params>(
    conn: &Connection,
    tail: &str,
    params: P,
) -> rusqlite::Result<Vec<MessageRow>> {
    let mut st = conn.prepare_cached(&format!("SELECT {MESSAGE_COLS} FROM messages {tail}"))?;
    let rows = st.query_map(params, |r| {
        Ok(MessageRow {
            folder_id: r.get(0)?,
            uidvalidity: r.get(1)?,
            uid: r.get(2)?,
            hash: r.get(3)?,
            size: r.get(4)?,
            flags: r
                .get::<_, String>(5)?
                .split_ascii_whitespace()
                .map(String::from)
                .collect(),
            internaldate: r.get(6)?,
            first_seen: r.get(7)?,
            expunged_at: r.get(8)?,
            change: r.get(9)?,
        })
    })?;
    rows.collect()
}

fn live_messages(
    conn: &Connection,
    folder_id: i64,
    uidvalidity: u32,
) -> rusqlite::Result<Vec<MessageRow>> {
    message_rows(
        conn,
        "WHERE folder_id = ?1 AND uidvalidity = ?2 AND expunged_at IS NULL ORDER BY uid",
        params![folder_id, uidvalidity],
    )
}

fn message(
    conn: &Connection,
    folder_id: i64,
    uidvalidity: u32,
    uid: u32,
) -> rusqlite::Result<Option<MessageRow>> {
    Ok(message_rows(
        conn,
        "WHERE folder_id = ?1 AND uidvalidity = ?2 AND uid = ?3",
        params![folder_id, uidvalidity, uid],
    )?
    .pop())
}

/// A server's mailbox name is stored as TEXT when it is UTF-8 (nearly always: modified UTF-7 is
/// ASCII), else as a BLOB of its bytes: never made lossy.
impl ToSql for MailboxName {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.as_utf8() {
            Some(s) => ToSqlOutput::from(s),
            None => ToSqlOutput::from(self.as_bytes()),
        })
    }
}

impl FromSql for MailboxName {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Text(b) | ValueRef::Blob(b) => Ok(MailboxName::from_server(b)),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// Hashes are stored as 64 lowercase hex digits.
impl ToSql for Hash {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.to_hex()))
    }
}

impl FromSql for Hash {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value
            .as_str()?
            .parse()
            .map_err(|e: anyhow::Error| FromSqlError::Other(e.into()))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_immutable_uri_escapes_what_a_uri_would_read() {
        assert_eq!(
            immutable_uri(Path::new("/m/a b/x?y%#/index.sqlite")),
            "file:/m/a%20b/x%3Fy%25%23/index.sqlite?immutable=1"
        );
    }

    use super::*;

    /// Issue 11 item 9: a writer that finds the index locked past the busy timeout waits and
    /// tries again instead of failing its folder.
    #[test]
    fn a_busy_index_is_waited_for_not_failed() {
        let (dir, _) = index();
        let path = dir.path().join("index.sqlite");
        let mut b = Index::open(&path).unwrap();
        b.conn
            .busy_timeout(std::time::Duration::from_millis(100))
            .unwrap();
        let (locked, ready) = std::sync::mpsc::channel();
        let held = std::thread::spawn(move || {
            let mut a = Index::open(&path).unwrap();
            let batch = a.batch().unwrap();
            locked.send(()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(600));
            batch.commit().unwrap();
        });
        ready.recv().unwrap();
        let t = std::time::Instant::now();
        let mut other = b.batch().expect("waits for the lock, then gets it");
        other.set_folder_state(1, &FolderState::default(), 0).ok();
        other.commit().unwrap();
        assert!(t.elapsed() >= std::time::Duration::from_millis(500));
        held.join().unwrap();
    }

    fn index() -> (tempfile::TempDir, Index) {
        let dir = tempfile::tempdir().unwrap();
        let idx = Index::open(&dir.path().join("index.sqlite")).unwrap();
        (dir, idx)
    }

    fn strs(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn msg(uv: u32, uid: u32, body: &[u8], flags: &[&str]) -> NewMessage {
        NewMessage {
            uidvalidity: uv,
            uid,
            hash: Hash::of(body),
            size: body.len() as u64,
            flags: strs(flags),
            internaldate: "01-Apr-2025 10:00:00 +0200".parse().unwrap(),
            gmail: None,
        }
    }

    /// A folder plus objects for bodies `a`, `b`, `c`.
    fn setup(idx: &mut Index) -> i64 {
        let f = idx
            .upsert_folder("INBOX", "INBOX", Some('/'), None, true)
            .unwrap();
        let mut b = idx.batch().unwrap();
        for body in [b"a", b"b", b"c"] {
            b.add_object(&Hash::of(body), 1, 10, &HeaderFacts::default())
                .unwrap();
        }
        b.commit().unwrap();
        f
    }

    #[test]
    fn file_mode_and_meta() {
        let (d, idx) = index();
        let mode = fs::metadata(d.path().join("index.sqlite"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(idx.store_id().unwrap().len(), 32);
        assert_eq!(idx.current_change().unwrap(), 0);
        assert_eq!(idx.account().unwrap(), None);
        let (_d2, mut idx) = index();
        idx.set_account("imap.example.org", "ann").unwrap();
        assert_eq!(
            idx.account().unwrap(),
            Some(("imap.example.org".into(), "ann".into()))
        );
    }

    #[test]
    fn change_numbers_strictly_increase_and_noops_take_none() {
        let (_d, mut idx) = index();
        let f = setup(&mut idx);
        let c0 = idx.current_change().unwrap();
        assert_eq!(c0, 1); // the folder insert

        let mut b = idx.batch().unwrap();
        b.add_message(f, &msg(7, 1, b"a", &["\\Seen", "\\Recent"]))
            .unwrap();
        b.add_message(f, &msg(7, 2, b"b", &[])).unwrap();
        // Same again: no change.
        b.add_message(f, &msg(7, 2, b"b", &["\\Recent"])).unwrap();
        assert!(!b.set_flags(f, 7, 1, &strs(&["\\Seen"])).unwrap());
        assert!(b
            .set_flags(f, 7, 1, &strs(&["\\Flagged", "\\Seen", "\\Recent"]))
            .unwrap());
        // Same set, other order: unchanged.
        assert!(!b
            .set_flags(f, 7, 1, &strs(&["\\Seen", "\\Flagged"]))
            .unwrap());
        b.mark_expunged(f, 7, 2).unwrap();
        b.mark_expunged(f, 7, 2).unwrap(); // already expunged: no change
        b.mark_expunged(f, 7, 99).unwrap(); // unknown: no-op
        b.commit().unwrap();

        assert_eq!(idx.current_change().unwrap(), c0 + 4);
        let changed = idx.messages_changed_since(c0).unwrap();
        let changes: Vec<i64> = changed.iter().map(|m| m.change).collect();
        assert_eq!(changes, [c0 + 3, c0 + 4]); // uid 1's flags, uid 2's expunge
        assert_eq!(changed[0].flags, strs(&["\\Flagged", "\\Seen"]));
        assert!(changed[1].expunged_at.is_some());

        let live = idx.live_messages(f, 7).unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].uid, 1);
        assert_eq!(idx.message(f, 7, 2).unwrap().unwrap().uid, 2);
    }

    #[test]
    fn add_message_replaces_and_keeps_first_seen() {
        let (_d, mut idx) = index();
        let f = setup(&mut idx);
        let mut b = idx.batch().unwrap();
        b.add_message(f, &msg(7, 1, b"a", &[])).unwrap();
        b.mark_expunged(f, 7, 1).unwrap();
        b.add_message(f, &msg(7, 1, b"b", &["\\Seen"])).unwrap();
        let live = b.live_messages(f, 7).unwrap();
        b.commit().unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].hash, Hash::of(b"b"));
        assert_eq!(live[0].flags, strs(&["\\Seen"]));
        assert_eq!(live[0].change, idx.current_change().unwrap());
    }

    #[test]
    fn live_messages_are_ordered_by_uid() {
        let (_d, mut idx) = index();
        let f = setup(&mut idx);
        let mut b = idx.batch().unwrap();
        for uid in [30, 4, 200, 1] {
            b.add_message(f, &msg(7, uid, b"a", &[])).unwrap();
        }
        b.commit().unwrap();
        let uids: Vec<u32> = idx
            .live_messages(f, 7)
            .unwrap()
            .iter()
            .map(|m| m.uid)
            .collect();
        assert_eq!(uids, [1, 4, 30, 200]);
    }

    #[test]
    fn expunge_other_uidvalidities() {
        let (_d, mut idx) = index();
        let f = setup(&mut idx);
        let mut b = idx.batch().unwrap();
        b.add_message(f, &msg(1, 1, b"a", &[])).unwrap();
        b.add_message(f, &msg(1, 2, b"b", &[])).unwrap();
        b.add_message(f, &msg(2, 1, b"c", &[])).unwrap();
        b.add_message(f, &msg(3, 5, b"c", &[])).unwrap();
        b.mark_expunged(f, 1, 2).unwrap();
        let before = b.tx.query_row("SELECT max(change) FROM messages", [], |r| {
            r.get::<_, i64>(0)
        });
        assert_eq!(b.expunge_other_uidvalidities(f, 3).unwrap(), 2);
        assert_eq!(b.expunge_other_uidvalidities(f, 3).unwrap(), 0);
        b.commit().unwrap();
        assert!(idx.live_messages(f, 1).unwrap().is_empty());
        assert!(idx.live_messages(f, 2).unwrap().is_empty());
        assert_eq!(idx.live_messages(f, 3).unwrap().len(), 1);
        let since = idx.messages_changed_since(before.unwrap()).unwrap();
        assert_eq!(since.len(), 2);
        assert!(since[0].change < since[1].change);
    }

    #[test]
    fn folders_change_only_when_they_change() {
        let (_d, mut idx) = index();
        let f = idx
            .upsert_folder("Sent", "INBOX.Sent", Some('.'), Some("\\Sent"), true)
            .unwrap();
        let c = idx.current_change().unwrap();
        assert_eq!(
            idx.upsert_folder("Sent", "INBOX.Sent", Some('.'), Some("\\Sent"), true)
                .unwrap(),
            f
        );
        assert_eq!(idx.current_change().unwrap(), c);
        idx.upsert_folder("Sent", "INBOX.Sent", Some('.'), Some("\\Sent"), false)
            .unwrap();
        assert_eq!(idx.current_change().unwrap(), c + 1);

        idx.mark_folder_gone(f).unwrap();
        idx.mark_folder_gone(f).unwrap();
        assert_eq!(idx.current_change().unwrap(), c + 2);
        assert!(idx.folders().unwrap()[0].gone_at.is_some());
        idx.upsert_folder("Sent", "INBOX.Sent", Some('.'), Some("\\Sent"), false)
            .unwrap();
        assert_eq!(idx.current_change().unwrap(), c + 3);
        assert!(idx.folders().unwrap()[0].gone_at.is_none());
        assert!(idx.mark_folder_gone(999).is_err());

        let state = FolderState {
            uidvalidity: Some(9),
            uidnext: Some(100),
            highestmodseq: Some(u64::from(u32::MAX) + 5),
        };
        let mut b = idx.batch().unwrap();
        b.set_folder_state(f, &state, 1000).unwrap();
        b.set_folder_state(f, &state, 2000).unwrap(); // only last_pull: no change number
        b.commit().unwrap();
        assert_eq!(idx.current_change().unwrap(), c + 4);
        let row = &idx.folders_changed_since(c + 3).unwrap()[0];
        assert_eq!(row.state, state);
        assert_eq!(row.last_pull, Some(2000));
        assert_eq!(row.separator, Some('.'));
        assert_eq!(row.role.as_deref(), Some("\\Sent"));
    }

    #[test]
    fn summary_find_objects_and_runs() {
        let (_d, mut idx) = index();
        let f = setup(&mut idx);
        let g = idx.upsert_folder("Old", "Old", None, None, false).unwrap();
        idx.mark_folder_gone(g).unwrap();
        let facts = HeaderFacts {
            message_id: Some("x@y".into()),
            ..Default::default()
        };
        let mut b = idx.batch().unwrap();
        b.add_object(&Hash::of(b"dd"), 2, 7, &facts).unwrap();
        b.add_message(f, &msg(7, 1, b"a", &[])).unwrap();
        b.add_message(f, &msg(7, 2, b"dd", &[])).unwrap();
        b.add_message(f, &msg(7, 3, b"b", &[])).unwrap();
        b.mark_expunged(f, 7, 3).unwrap();
        b.commit().unwrap();
        let s = idx.summary().unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].path.as_str(), s[0].messages, s[0].stored_bytes),
            ("INBOX", 2, 17)
        );
        assert_eq!(s[0].raw_bytes, 1 + 2); // msg() sizes are body lengths
        assert!(!s[0].gone);
        assert_eq!(
            (s[1].path.as_str(), s[1].messages, s[1].gone),
            ("Old", 0, true)
        );

        assert_eq!(idx.find_objects(2, &facts).unwrap(), [Hash::of(b"dd")]);
        assert!(idx.find_objects(3, &facts).unwrap().is_empty());
        assert_eq!(
            idx.find_objects(1, &HeaderFacts::default()).unwrap().len(),
            3
        );
        assert!(idx.object_known(&Hash::of(b"dd")).unwrap());
        assert!(!idx.object_known(&Hash::of(b"zz")).unwrap());

        let r = idx.start_run("pull").unwrap();
        idx.finish_run(
            r,
            &RunCounts {
                new: 3,
                ..Default::default()
            },
            true,
        )
        .unwrap();
        assert!(idx.finish_run(r + 1, &RunCounts::default(), true).is_err());
    }

    #[test]
    fn messages_need_their_object_row_and_valid_flags() {
        let (_d, mut idx) = index();
        let f = setup(&mut idx);
        let mut b = idx.batch().unwrap();
        assert!(b
            .add_message(f, &msg(7, 1, b"no such object", &[]))
            .is_err());
        assert!(b.add_message(f, &msg(7, 1, b"a", &["two words"])).is_err());
        assert!(b.set_flags(f, 7, 42, &[]).is_err());
    }

    #[test]
    fn corrupt_rows_give_errors_naming_the_file() {
        let (d, mut idx) = index();
        let f = setup(&mut idx);
        let mut b = idx.batch().unwrap();
        b.add_message(f, &msg(7, 1, b"a", &[])).unwrap();
        b.commit().unwrap();
        idx.conn
            .execute_batch("PRAGMA foreign_keys = OFF; PRAGMA ignore_check_constraints = ON")
            .unwrap();
        idx.conn
            .execute("UPDATE messages SET hash = 'not-a-hash'", [])
            .unwrap();
        idx.conn
            .execute("UPDATE folders SET separator = 'xy'", [])
            .unwrap();
        let err = format!("{:#}", idx.live_messages(f, 7).unwrap_err());
        assert!(
            err.contains(&d.path().join("index.sqlite").display().to_string()),
            "{err}"
        );
        assert!(err.contains("not-a-hash"), "{err}");
        let err = format!("{:#}", idx.folders().unwrap_err());
        assert!(err.contains("separator"), "{err}");
        idx.conn
            .execute("UPDATE meta SET value = 'x' WHERE key = 'last_change'", [])
            .unwrap();
        assert!(idx.current_change().is_err());
    }
}
