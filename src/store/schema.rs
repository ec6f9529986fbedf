//! Schema and migrations of index.sqlite.
//!
//! The schema version is `PRAGMA user_version`: the number of [`MIGRATIONS`] applied. Pending
//! steps run in one transaction, so a crash leaves the old version or the new one, never a mix.
//! `PRAGMA application_id` marks the file as ours. Steps are append-only: never edit a released
//! step, add a new one. Every column is documented in `docs/store-format.md`.

use std::path::Path;

use anyhow::{bail, Context, Result};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// `PRAGMA application_id` of an imapferry index: "IMFY" in ASCII.
pub const APPLICATION_ID: i32 = 0x494d_4659;

/// Ordered migration steps; step `i` takes the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE folders (
    id            INTEGER PRIMARY KEY,
    path          TEXT NOT NULL UNIQUE,
    raw_name      TEXT NOT NULL,
    separator     TEXT CHECK (separator IS NULL OR length(separator) = 1),
    role          TEXT,
    subscribed    INTEGER NOT NULL CHECK (subscribed IN (0, 1)),
    uidvalidity   INTEGER,
    uidnext       INTEGER,
    highestmodseq INTEGER,
    last_pull     INTEGER,
    gone_at       INTEGER,
    change        INTEGER NOT NULL
);

CREATE TABLE objects (
    hash        TEXT PRIMARY KEY NOT NULL CHECK (length(hash) = 64),
    size        INTEGER NOT NULL,
    stored_size INTEGER NOT NULL,
    message_id  TEXT,
    date        TEXT,
    from_addr   TEXT,
    subject     TEXT,
    added_at    INTEGER NOT NULL
);
CREATE INDEX objects_size_message_id ON objects (size, message_id);

CREATE TABLE messages (
    folder_id    INTEGER NOT NULL REFERENCES folders (id),
    uidvalidity  INTEGER NOT NULL,
    uid          INTEGER NOT NULL,
    hash         TEXT NOT NULL REFERENCES objects (hash),
    size         INTEGER NOT NULL,
    flags        TEXT NOT NULL,
    internaldate TEXT NOT NULL,
    first_seen   INTEGER NOT NULL,
    expunged_at  INTEGER,
    change       INTEGER NOT NULL,
    PRIMARY KEY (folder_id, uidvalidity, uid)
);
CREATE INDEX messages_change ON messages (change);
CREATE INDEX messages_hash ON messages (hash);

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY,
    kind        TEXT NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    ok          INTEGER CHECK (ok IS NULL OR ok IN (0, 1)),
    folders     INTEGER,
    new         INTEGER,
    updated     INTEGER,
    expunged    INTEGER,
    failed      INTEGER,
    bytes       INTEGER
);
"#,
    // 2: push state: destinations, where each store message went, and append intents.
    r#"
CREATE TABLE destinations (
    id         INTEGER PRIMARY KEY,
    host       TEXT NOT NULL,
    user_name  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (host, user_name)
);

CREATE TABLE pushed (
    destination_id   INTEGER NOT NULL REFERENCES destinations (id),
    folder_id        INTEGER NOT NULL REFERENCES folders (id),
    uidvalidity      INTEGER NOT NULL,
    uid              INTEGER NOT NULL,
    mailbox          TEXT NOT NULL,
    dest_uidvalidity INTEGER NOT NULL,
    dest_uid         INTEGER NOT NULL,
    flags            TEXT NOT NULL,
    change           INTEGER NOT NULL,
    how              TEXT NOT NULL CHECK (how IN ('appended', 'found')),
    pushed_at        INTEGER NOT NULL,
    PRIMARY KEY (destination_id, folder_id, uidvalidity, uid)
);
CREATE INDEX pushed_mailbox ON pushed (destination_id, mailbox);

CREATE TABLE push_intents (
    id               INTEGER PRIMARY KEY,
    destination_id   INTEGER NOT NULL REFERENCES destinations (id),
    folder_id        INTEGER NOT NULL REFERENCES folders (id),
    uidvalidity      INTEGER NOT NULL,
    uid              INTEGER NOT NULL,
    hash             TEXT NOT NULL REFERENCES objects (hash),
    size             INTEGER NOT NULL,
    mailbox          TEXT NOT NULL,
    dest_uidvalidity INTEGER NOT NULL,
    dest_uidnext     INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);
CREATE INDEX push_intents_mailbox ON push_intents (destination_id, mailbox);
"#,
    // 3: bundles: those this store made, the objects they carried, those it applied.
    r#"
CREATE TABLE bundles_made (
    seq         INTEGER PRIMARY KEY,
    bundle_id   TEXT NOT NULL UNIQUE,
    base_seq    INTEGER,
    base_change INTEGER NOT NULL,
    change      INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    objects     INTEGER NOT NULL,
    messages    INTEGER NOT NULL,
    path        TEXT NOT NULL
);

CREATE TABLE bundle_objects (
    hash TEXT PRIMARY KEY NOT NULL CHECK (length(hash) = 64),
    seq  INTEGER NOT NULL
);

CREATE TABLE bundles_applied (
    bundle_id    TEXT PRIMARY KEY NOT NULL,
    source_store TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    base_change  INTEGER NOT NULL,
    change       INTEGER NOT NULL,
    applied_at   INTEGER NOT NULL
);
"#,
    // 4: push: what each host2 mailbox looked like after its last complete push, so an unchanged
    // one is recognised from LIST-STATUS alone.
    r#"
CREATE TABLE push_mailboxes (
    destination_id     INTEGER NOT NULL REFERENCES destinations (id),
    mailbox            TEXT NOT NULL,
    folders            TEXT NOT NULL,
    store_change       INTEGER NOT NULL,
    store_messages     INTEGER NOT NULL,
    delete2            INTEGER NOT NULL CHECK (delete2 IN (0, 1)),
    dest_uidvalidity   INTEGER NOT NULL,
    dest_uidnext       INTEGER NOT NULL,
    dest_messages      INTEGER NOT NULL,
    dest_highestmodseq INTEGER,
    pushed_at          INTEGER NOT NULL,
    PRIMARY KEY (destination_id, mailbox)
);
"#,
    // 5: push: what host2 changed in a message it stores rewritten (same text, other bytes).
    r#"
ALTER TABLE pushed ADD COLUMN altered TEXT;
"#,
    // 6: Gmail: the ids that tell one message in many label views, so pull downloads it once;
    // daily byte budgets: the message bytes each committed batch moved, per direction.
    r#"
ALTER TABLE messages ADD COLUMN gm_msgid INTEGER;
ALTER TABLE messages ADD COLUMN gm_thrid INTEGER;
CREATE INDEX messages_gm_msgid ON messages (gm_msgid) WHERE gm_msgid IS NOT NULL;
CREATE TABLE transfer_log (
    direction      TEXT NOT NULL CHECK (direction IN ('down', 'up')),
    destination_id INTEGER REFERENCES destinations (id),
    at             INTEGER NOT NULL,
    bytes          INTEGER NOT NULL CHECK (bytes >= 0),
    CHECK ((direction = 'down') = (destination_id IS NULL))
);
CREATE INDEX transfer_log_at ON transfer_log (direction, destination_id, at);
"#,
    // 7: push: a store message Gmail holds as another copy (same Message-ID, other bytes): its
    // mapping names that message's UID, which it shares with the store message sent.
    r#"
ALTER TABLE pushed ADD COLUMN held INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1));
"#,
];

/// The schema version this binary writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}

/// What the file says it is: (user_version, application_id, number of tables).
fn identity(conn: &Connection) -> rusqlite::Result<(i64, i32, i64)> {
    let version = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let app_id = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let tables = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
        [],
        |r| r.get(0),
    )?;
    Ok((version, app_id, tables))
}

/// Refuse a foreign database (an empty one is ours to create only when `may_create`) and one
/// written by a newer imapferry.
fn check_identity(id: (i64, i32, i64), may_create: bool, path: &Path) -> Result<()> {
    let (version, app_id, tables) = id;
    let empty = app_id == 0 && version == 0 && tables == 0;
    if (app_id != APPLICATION_ID && !(may_create && empty)) || version < 0 {
        bail!(
            "{} is not an imapferry index (application_id {app_id:#x}, user_version {version})",
            path.display()
        );
    }
    if version > current_version() {
        bail!(
            "this store was written by a newer imapferry (schema {version}); upgrade \
             (this binary knows schema {}; index {})",
            current_version(),
            path.display()
        );
    }
    Ok(())
}

/// Bring the database at `path` (already opened as `conn`) to [`current_version`], creating the
/// schema and the initial `meta` rows on an empty database. Refuses newer or foreign databases.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let ctx = || format!("cannot migrate the index {}", path.display());
    // IMMEDIATE: take the write lock before reading the version so two openers cannot both
    // decide to run the same step.
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .with_context(ctx)?;
    let id = identity(&tx).with_context(ctx)?;
    check_identity(id, true, path)?;
    let version = id.0;
    for (i, step) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(step).with_context(|| {
            format!("migration to schema {} failed on {}", i + 1, path.display())
        })?;
    }
    if version == 0 {
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .with_context(ctx)?;
        init_meta(&tx).with_context(ctx)?;
    }
    if version != current_version() {
        tx.pragma_update(None, "user_version", current_version())
            .with_context(ctx)?;
    }
    tx.commit().with_context(ctx)
}

/// The schema version of a database opened read-only, without changing it: refuses a database
/// that is not an imapferry index (an empty one included) or was written by a newer imapferry.
/// An older version is returned as it is (later versions only add), for the caller to say so.
pub fn read_version(conn: &Connection, path: &Path) -> Result<i64> {
    let id = identity(conn).with_context(|| format!("cannot read the index {}", path.display()))?;
    check_identity(id, false, path)?;
    Ok(id.0)
}

/// The rows every store has from creation on.
fn init_meta(conn: &Connection) -> Result<()> {
    let existing: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'store_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    if existing.is_some() {
        return Ok(());
    }
    let now = crate::clock::now().to_string();
    let id = crate::clock::random_hex(16)?;
    let mut ins = conn.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)")?;
    ins.execute(["store_id", id.as_str()])?;
    ins.execute(["created_at", now.as_str()])?;
    ins.execute(["last_change", "0"])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec states the version this code writes, in its header and in its migrations
    /// section, and lists every step.
    #[test]
    fn the_format_document_describes_this_schema_version() {
        let doc = include_str!("../../docs/store-format.md");
        let v = current_version();
        assert!(
            doc.contains(&format!("version **schema {v}**")),
            "docs/store-format.md header must say schema {v}"
        );
        assert!(doc.contains(&format!("describes version {v}.")));
        for step in 2..=v {
            assert!(
                doc.contains(&format!("Step {step} adds")),
                "docs/store-format.md does not describe migration step {step}"
            );
        }
    }

    fn tables(conn: &Connection) -> Vec<String> {
        let mut st = conn
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap();
        st.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn migrates_an_empty_database_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        assert_eq!(
            tables(&conn),
            [
                "bundle_objects",
                "bundles_applied",
                "bundles_made",
                "destinations",
                "folders",
                "messages",
                "meta",
                "objects",
                "push_intents",
                "push_mailboxes",
                "pushed",
                "runs",
                "transfer_log"
            ]
        );
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, current_version());
        let id: String = conn
            .query_row("SELECT value FROM meta WHERE key='store_id'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(id.len(), 32);
        // Idempotent: a second open changes nothing.
        migrate(&mut conn, &path).unwrap();
        let id2: String = conn
            .query_row("SELECT value FROM meta WHERE key='store_id'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(id, id2);
    }

    #[test]
    fn refuses_newer_and_foreign_databases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, &path).unwrap();
        conn.pragma_update(None, "user_version", current_version() + 1)
            .unwrap();
        let err = migrate(&mut conn, &path).unwrap_err().to_string();
        assert!(
            err.contains("newer imapferry") && err.contains("upgrade"),
            "{err}"
        );

        let other = dir.path().join("other.sqlite");
        let mut conn = Connection::open(&other).unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        let err = migrate(&mut conn, &other).unwrap_err().to_string();
        assert!(err.contains("not an imapferry index"), "{err}");
    }
}
