//! The local store: content-addressed, zstd-compressed message objects plus a SQLite index.
//! The on-disk format is specified in `docs/store-format.md`; keep the two in step.

pub mod facts;
pub mod index;
pub mod lock;
pub mod objects;
pub mod schema;

use std::path::{Path, PathBuf};

use anyhow::Result;

pub use facts::HeaderFacts;
pub use index::{FolderRow, FolderState, FolderSummary, Index, MessageRow, NewMessage, RunCounts};
pub use objects::{Hash, Objects};

/// An open, locked store.
pub struct Store {
    pub root: PathBuf,
    pub objects: Objects,
    pub index: Index,
    _lock: lock::StoreLock,
}

impl Store {
    /// Open the store at `dir`, creating it (mode 0700, files 0600) when it does not exist.
    /// Takes the store lock; fails with a clear error when another process holds it.
    pub fn open_or_create(_dir: &Path) -> Result<Store> {
        todo!()
    }

    /// Open an existing store; a clear error when `dir` is not one.
    pub fn open_existing(_dir: &Path) -> Result<Store> {
        todo!()
    }
}
