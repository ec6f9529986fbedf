//! The local store: content-addressed, zstd-compressed message objects plus a SQLite index.
//! The on-disk format is specified in `docs/store-format.md`; keep the two in step.

pub mod audit;
pub mod bundles;
pub mod facts;
pub mod frame;
pub mod hash;
pub mod index;
pub mod layout;
pub mod lock;
pub mod objects;
pub mod partial;
pub mod push_state;
pub mod rules;
pub mod schema;
pub mod transfer_log;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use facts::{HeaderFacts, HeaderSection};
pub use index::{
    Batch, FolderRow, FolderState, FolderSummary, GmailIds, Index, MessageRow, NewMessage,
    RunCounts,
};
pub use lock::StoreLock;
pub use objects::{Hash, Objects};
pub use push_state::{Intent, MailboxFacts, Mapping, NewIntent};

use objects::create_dir_0700;

/// Name of the index database inside a store.
pub const INDEX_FILE: &str = "index.sqlite";

/// Names a store directory may contain; anything else means "not (only) a store".
const STORE_ENTRIES: &[&str] = &[
    "objects",
    "partial",
    "tmp",
    "logs",
    "lock",
    INDEX_FILE,
    "index.sqlite-wal",
    "index.sqlite-shm",
    "index.sqlite-journal",
];

/// An open, locked store.
pub struct Store {
    pub root: PathBuf,
    pub objects: Objects,
    pub index: Index,
    /// Large messages downloaded in chunks, kept across runs until complete.
    pub partials: partial::Partials,
    _lock: StoreLock,
}

impl Store {
    /// Whether `dir` holds a store (its index file).
    pub fn exists(dir: &Path) -> bool {
        dir.join(INDEX_FILE).is_file()
    }

    /// Open the store at `dir`, creating it (mode 0700, files 0600) when it does not exist.
    /// Takes the store lock; fails with a clear error when another process holds it.
    /// Refuses an existing non-empty directory that is not a store.
    pub fn open_or_create(dir: &Path) -> Result<Store> {
        let is_store = dir.join(INDEX_FILE).exists();
        if !is_store {
            if dir.exists() {
                check_creatable(dir)?;
            } else if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                // Parents are the user's directories: ordinary modes.
                fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create directory {}", parent.display()))?;
            }
            create_dir_0700(dir)?;
            // A new store is private whatever the directory was made with.
            set_mode_0700(dir)?;
        }
        Self::open(dir)
    }

    /// Open an existing store to change it; a clear error when `dir` is not one, or cannot
    /// be written (read-only media).
    pub fn open_existing(dir: &Path) -> Result<Store> {
        if !dir.join(INDEX_FILE).is_file() {
            bail!(
                "{} is not an imapferry store (no {INDEX_FILE}); run `imapferry pull` to create one",
                dir.display()
            );
        }
        if let Err(e) = writable(dir) {
            bail!(
                "store {} is read-only ({e}): this command changes the store; `verify`, \
                 `status`, `export`, `bundle list` and `gc` without --yes read it as it is",
                dir.display()
            );
        }
        Self::open(dir)
    }

    /// Open an existing store for a command that only reads it (`status`, `export`, `bundle
    /// list`, `gc` without --yes): as [`Store::open_existing`] does when the store can be
    /// written, else (read-only media) as [`Store::open_read_only`] does, changing nothing.
    pub fn open_to_read(dir: &Path) -> Result<Store> {
        if dir.join(INDEX_FILE).is_file() && writable(dir).is_err() {
            return Self::open_read_only(dir);
        }
        Self::open_existing(dir)
    }

    /// Open an existing store to read it, changing nothing, so it works on read-only media: a
    /// shared lock is taken on the existing `lock` file (so no writer is half-way; see
    /// [`StoreLock::acquire_shared`]), but no file or directory is made, `tmp/` is not
    /// cleared and the index is neither migrated nor put in WAL mode. For `verify`, which must
    /// report what it finds.
    pub fn open_read_only(dir: &Path) -> Result<Store> {
        if !dir.join(INDEX_FILE).is_file() {
            bail!(
                "{} is not an imapferry store (no {INDEX_FILE}); run `imapferry pull` to create one",
                dir.display()
            );
        }
        layout::check(dir)?;
        let lock = StoreLock::acquire_shared(dir)?;
        let index = Index::open_read_only(&dir.join(INDEX_FILE))?;
        Ok(Store {
            root: dir.to_path_buf(),
            objects: Objects::new(dir),
            index,
            partials: partial::Partials::at(dir),
            _lock: lock,
        })
    }

    /// Lock first, then make the subdirectories, clear `tmp/` and open the index.
    fn open(dir: &Path) -> Result<Store> {
        layout::check(dir)?;
        let lock = StoreLock::acquire(dir)?;
        create_dir_0700(&dir.join("objects"))?;
        let tmp = dir.join("tmp");
        create_dir_0700(&tmp)?;
        clear_tmp(&tmp)?;
        let partials = partial::Partials::open(dir)?;
        // Make the directory entries just created (objects/, tmp/, lock) durable before any
        // object or index row relies on them.
        objects::fsync_dir(dir)?;
        let index = Index::open(&dir.join(INDEX_FILE))?;
        Ok(Store {
            root: dir.to_path_buf(),
            objects: Objects::new(dir),
            index,
            partials,
            _lock: lock,
        })
    }
}

/// Whether this process may write in `dir` (a file system mounted read-only, or a directory
/// of someone else's, may not).
fn writable(dir: &Path) -> std::io::Result<()> {
    rustix::fs::access(dir, rustix::fs::Access::WRITE_OK).map_err(std::io::Error::from)
}

/// Refuse to turn a directory holding anything but (a partial) store into a store.
fn check_creatable(dir: &Path) -> Result<()> {
    let entries =
        fs::read_dir(dir).with_context(|| format!("cannot read directory {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read directory {}", dir.display()))?;
        let name = entry.file_name();
        if !STORE_ENTRIES.iter().any(|s| name == *s) {
            bail!(
                "{} is not empty and is not an imapferry store (it contains {:?}); \
                 choose a new or empty directory",
                dir.display(),
                name
            );
        }
    }
    Ok(())
}

fn set_mode_0700(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(objects::DIR_MODE))
        .with_context(|| format!("cannot chmod {}", dir.display()))
}

/// Remove temp files left by a crashed writer. Safe because we hold the lock, so no one else
/// is writing there.
fn clear_tmp(tmp: &Path) -> Result<()> {
    let ctx = || format!("cannot clean {}", tmp.display());
    for entry in fs::read_dir(tmp).with_context(ctx)? {
        let entry = entry.with_context(ctx)?;
        let path = entry.path();
        // The entry itself: a link (which `layout::check` refused anyway) is never followed.
        if entry.file_type().with_context(ctx)?.is_file() {
            fs::remove_file(&path)
                .with_context(|| format!("cannot remove stale temp file {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn create_then_reopen() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("a/b/store");
        let store = Store::open_or_create(&root).unwrap();
        for sub in ["", "objects", "partial", "tmp"] {
            assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
        }
        for f in ["lock", INDEX_FILE] {
            assert_eq!(mode(&root.join(f)), 0o600, "{f}");
        }
        let mut store = store;
        let (h, stored) = store.objects.write(b"hi").unwrap();
        let f = store
            .index
            .upsert_folder("INBOX", "INBOX", None, None, true)
            .unwrap();
        let mut b = store.index.batch_after_sync(&store.objects).unwrap();
        b.add_object(&h, 2, stored, &HeaderFacts::default())
            .unwrap();
        let m = NewMessage {
            uidvalidity: 1,
            uid: 1,
            hash: h,
            size: 2,
            flags: vec![],
            internaldate: "01-Jan-2025 00:00:00 +0000".parse().unwrap(),
            gmail: None,
        };
        b.add_message(f, &m).unwrap();
        b.commit().unwrap();
        assert_eq!(mode(store.objects.path(&h).parent().unwrap()), 0o700);
        let id = store.index.store_id().unwrap();
        assert_eq!(mode(&root.join("index.sqlite-wal")), 0o600);
        // Locked while open.
        let err = Store::open_existing(&root).err().unwrap().to_string();
        assert!(err.contains("in use by another imapferry process"), "{err}");
        drop(store);
        fs::write(root.join("tmp/stale"), b"x").unwrap();
        let store = Store::open_existing(&root).unwrap();
        assert_eq!(store.index.store_id().unwrap(), id);
        assert_eq!(store.objects.read(&h, 2).unwrap(), b"hi");
        assert_eq!(store.index.live_messages(1, 1).unwrap()[0].hash, h);
        assert!(!root.join("tmp/stale").exists());
        drop(store);
        Store::open_or_create(&root).unwrap();
    }

    #[test]
    fn refuses_foreign_directories() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("notes.txt"), b"mine").unwrap();
        let err = Store::open_or_create(d.path()).err().unwrap().to_string();
        assert!(err.contains("not an imapferry store"), "{err}");
        assert!(!d.path().join("lock").exists());

        let err = Store::open_existing(d.path()).err().unwrap().to_string();
        assert!(
            err.contains("no index.sqlite") && err.contains("imapferry pull"),
            "{err}"
        );

        // Garbage where the index should be: a clear error naming it.
        let bad = d.path().join("bad");
        fs::create_dir(&bad).unwrap();
        fs::write(bad.join(INDEX_FILE), vec![0xa5; 4096]).unwrap();
        let err = format!("{:#}", Store::open_existing(&bad).err().unwrap());
        assert!(
            err.contains(&bad.join(INDEX_FILE).display().to_string()),
            "{err}"
        );

        // An empty existing directory becomes a store.
        let empty = d.path().join("empty");
        fs::create_dir(&empty).unwrap();
        Store::open_or_create(&empty).unwrap();
        assert_eq!(mode(&empty), 0o700);
    }
}
