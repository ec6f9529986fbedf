//! Partially downloaded large messages: `partial/<folder id>-<uidvalidity>-<uid>`, the first
//! bytes of one message as fetched so far in chunks (`BODY.PEEK[]<offset.length>`). Each chunk is
//! appended and fsynced, so a dropped link or a killed process resumes where it stopped instead
//! of fetching a 50 MB message from the start again.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::objects::{create_dir_0700, FILE_MODE};

/// The `partial/` directory of a store.
pub struct Partials {
    dir: PathBuf,
}

/// One message being assembled.
pub struct Partial {
    path: PathBuf,
    file: File,
    len: u64,
}

impl Partials {
    /// Make sure `<store>/partial` exists (mode 0700).
    pub fn open(store_root: &Path) -> Result<Partials> {
        let dir = store_root.join("partial");
        create_dir_0700(&dir)?;
        Ok(Partials { dir })
    }

    /// The `partial/` directory of a store opened read-only (not created).
    pub fn at(store_root: &Path) -> Partials {
        Partials {
            dir: store_root.join("partial"),
        }
    }

    /// Open (or start) the partial file of one message. A file longer than `size` cannot be a
    /// prefix of the message and is started afresh.
    pub fn begin(&self, folder_id: i64, uidvalidity: u32, uid: u32, size: u64) -> Result<Partial> {
        let path = self.dir.join(format!("{folder_id}-{uidvalidity}-{uid}"));
        let ctx = || format!("cannot open partial download {}", path.display());
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(FILE_MODE)
            // A link is never followed (see `layout`).
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .with_context(ctx)?;
        // Explicit, like every store file: the umask or an older file's mode does not count.
        file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
            .with_context(ctx)?;
        let mut len = file.metadata().with_context(ctx)?.len();
        if len > size {
            file.set_len(0).with_context(ctx)?;
            len = 0;
        }
        Ok(Partial { path, file, len })
    }
}

impl Partial {
    /// Bytes already on disk: the offset of the next chunk.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Append one chunk durably.
    pub fn append(&mut self, chunk: &[u8]) -> Result<()> {
        let ctx = || format!("cannot write partial download {}", self.path.display());
        self.file.write_all(chunk).with_context(ctx)?;
        self.file.sync_data().with_context(ctx)?;
        self.len += chunk.len() as u64;
        Ok(())
    }

    /// The assembled bytes; the file stays until [`Partial::remove`], which the caller runs once
    /// the message is safely in an object.
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let ctx = || format!("cannot read partial download {}", self.path.display());
        let mut f = OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&self.path)
            .with_context(ctx)?;
        let mut out = Vec::with_capacity(self.len as usize);
        io::Read::read_to_end(&mut f, &mut out).with_context(ctx)?;
        Ok(out)
    }

    pub fn remove(self) -> Result<()> {
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("cannot remove {}", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_survive_reopening_and_an_overlong_file_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let parts = Partials::open(dir.path()).unwrap();
        let mut p = parts.begin(1, 7, 42, 10).unwrap();
        assert_eq!(p.len(), 0);
        p.append(b"hello").unwrap();
        drop(p);
        let mut p = parts.begin(1, 7, 42, 10).unwrap();
        assert_eq!(p.len(), 5);
        p.append(b"world").unwrap();
        assert_eq!(p.read_all().unwrap(), b"helloworld");
        drop(p);
        // A different (smaller) size: the file cannot be a prefix; start again.
        let p = parts.begin(1, 7, 42, 4).unwrap();
        assert_eq!(p.len(), 0);
        p.remove().unwrap();
        assert_eq!(fs::read_dir(dir.path().join("partial")).unwrap().count(), 0);
    }
}
