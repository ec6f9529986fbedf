//! One writer per store: an exclusive lock on `<store>/lock`.
//!
//! The lock is a kernel `flock` on an open file description, so it is released whenever the
//! holding process ends, `kill -9` included; a stale `lock` file on disk means nothing.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::objects::FILE_MODE;

/// How long a held lock is waited for before the store is reported in use.
const RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Held for as long as the store is open; dropping it releases the lock.
pub struct StoreLock {
    /// `None` for a reader of a store without a `lock` file (see [`StoreLock::acquire_shared`]).
    _file: Option<File>,
    path: PathBuf,
}

impl StoreLock {
    /// Take the lock without waiting; the error says which process-wide lock is held and what to do.
    pub fn acquire(store_root: &Path) -> Result<StoreLock> {
        let path = store_root.join("lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            // A link is never followed (and chmodded): see `layout`.
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        wait_for(store_root, &path, &file, || file.try_lock())?;
        // Mode 0600 whatever the umask at creation; only once we own the lock.
        if file
            .metadata()
            .map(|m| m.permissions().mode() & 0o777 != FILE_MODE)?
        {
            fs::set_permissions(&path, fs::Permissions::from_mode(FILE_MODE))
                .with_context(|| format!("cannot chmod {}", path.display()))?;
        }
        // Who holds it, for the error another process shows: only said, never relied on (the
        // flock is the lock).
        let _ = file
            .set_len(0)
            .and_then(|()| (&file).write_all(format!("{}\n", std::process::id()).as_bytes()));
        Ok(StoreLock {
            _file: Some(file),
            path,
        })
    }

    /// A reader's lock: shared (readers do not exclude each other, a writer excludes them),
    /// taken on the existing `lock` file opened read-only, so a store on read-only media can
    /// be read. Nothing is created or changed: a store without a `lock` file (no writer ever
    /// opened it, or it was copied without one) is read unlocked.
    pub fn acquire_shared(store_root: &Path) -> Result<StoreLock> {
        let path = store_root.join("lock");
        let file = match OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StoreLock { _file: None, path })
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open lock file {}", path.display()))
            }
        };
        wait_for(store_root, &path, &file, || file.try_lock_shared())?;
        Ok(StoreLock {
            _file: Some(file),
            path,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Take a lock with `try_lock`, waiting a moment for a holder that is going away (a process
/// exiting, or a copy of the descriptor in a child between fork and exec), no longer.
fn wait_for(
    store_root: &Path,
    path: &Path,
    file: &File,
    try_lock: impl Fn() -> Result<(), TryLockError>,
) -> Result<()> {
    let started = std::time::Instant::now();
    loop {
        match try_lock() {
            Ok(()) => return Ok(()),
            Err(TryLockError::WouldBlock) if started.elapsed() < RELEASE_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(TryLockError::WouldBlock) => anyhow::bail!(
                "store {} is in use by another imapferry process{} (lock {}); wait for it to \
                 finish",
                store_root.display(),
                holder(file)
                    .map(|pid| format!(" (PID {pid})"))
                    .unwrap_or_default(),
                path.display()
            ),
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

/// The process id the holder wrote into the lock file, if it did (read through the descriptor
/// already open, so no link is followed).
fn holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 24];
    let n = file.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_until_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = StoreLock::acquire(dir.path()).unwrap();
        let err = StoreLock::acquire(dir.path())
            .err()
            .expect("second lock must fail");
        let msg = err.to_string();
        assert!(msg.contains("in use by another imapferry process"), "{msg}");
        assert!(msg.contains(&first.path().display().to_string()), "{msg}");
        assert!(
            msg.contains(&format!("(PID {})", std::process::id())),
            "the holder is named: {msg}"
        );
        assert_eq!(
            fs::metadata(first.path()).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(first);
        StoreLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn readers_share_the_lock_a_writer_excludes_them_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let unlocked = StoreLock::acquire_shared(dir.path()).unwrap();
        assert!(
            !dir.path().join("lock").exists(),
            "a reader creates nothing"
        );
        drop(unlocked);
        drop(StoreLock::acquire(dir.path()).unwrap());
        let a = StoreLock::acquire_shared(dir.path()).unwrap();
        let _b = StoreLock::acquire_shared(dir.path()).unwrap();
        assert!(
            StoreLock::acquire(dir.path()).is_err(),
            "a writer waits for readers"
        );
        drop(a);
        drop(_b);
        let w = StoreLock::acquire(dir.path()).unwrap();
        assert!(StoreLock::acquire_shared(dir.path()).is_err());
        drop(w);
    }
}
