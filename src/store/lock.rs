//! One writer per store: an exclusive lock on `<store>/lock`.

use std::path::Path;

use anyhow::Result;

pub struct StoreLock {
    _file: std::fs::File,
}

impl StoreLock {
    /// Take the lock without waiting; the error says which process-wide lock is held and what to do.
    pub fn acquire(_store_root: &Path) -> Result<StoreLock> {
        todo!()
    }
}
