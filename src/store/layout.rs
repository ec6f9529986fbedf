//! What a store directory holds, checked without following a link before anything in it is
//! opened, created, read, chmodded or removed. The store never makes a symbolic link, so one
//! under it came from elsewhere (a store copied from a disk, restored from a backup) and
//! would lead a run outside the store: clearing `tmp/` would delete the files of the directory
//! it names, pruning `logs/` its oldest logs, a file in `partial/` would become a message's
//! first bytes, `lock` would be chmodded. Such a store is refused, naming the path. The store
//! root itself may be a link (a store kept on another disk). docs/store-format.md, "Layout".

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// The store's directories: each must be a directory where present.
const DIRS: &[&str] = &["objects", "tmp", "partial", "logs"];
/// Directories that hold regular files only.
const FILE_DIRS: &[&str] = &["tmp", "partial", "logs"];
/// The store's files: each must be a regular file where present.
const FILES: &[&str] = &[
    "lock",
    super::INDEX_FILE,
    "index.sqlite-wal",
    "index.sqlite-shm",
    "index.sqlite-journal",
];

/// An entry of the store that is not what the format says.
#[derive(Debug)]
pub struct LayoutError {
    pub path: PathBuf,
    /// What it is (`a symbolic link`, `a directory`, …).
    pub found: &'static str,
    /// What the format has there.
    pub want: &'static str,
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {}, where a store has {}: refusing to use the store, which nothing under it \
             may lead outside of; replace it with what the store format says (docs/store-format.md)",
            self.path.display(),
            self.found,
            self.want
        )
    }
}

impl std::error::Error for LayoutError {}

/// What an entry is, not following a link.
fn kind(t: fs::FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else {
        "a special file"
    }
}

/// Check the store at `root` (see the module comment). Objects' files are not listed here (a
/// store may hold millions): they are opened without following a link
/// ([`super::objects::Objects`]), and `verify` lists any that is not a regular file.
pub fn check(root: &Path) -> anyhow::Result<()> {
    let wrong = |path: PathBuf, t: fs::FileType, want| {
        anyhow::Error::new(LayoutError {
            path,
            found: kind(t),
            want,
        })
    };
    for name in FILES {
        let path = root.join(name);
        if let Some(t) = file_type(&path)? {
            if !t.is_file() {
                return Err(wrong(path, t, "a regular file"));
            }
        }
    }
    for name in DIRS {
        let path = root.join(name);
        let Some(t) = file_type(&path)? else {
            continue;
        };
        if !t.is_dir() {
            return Err(wrong(path, t, "a directory"));
        }
        let want_files = FILE_DIRS.contains(name);
        for entry in read_dir(&path)? {
            let entry = entry.map_err(|e| listing(&path, e))?;
            let t = entry.file_type().map_err(|e| listing(&path, e))?;
            if want_files && !t.is_file() {
                return Err(wrong(entry.path(), t, "a regular file"));
            }
            // objects/: its subdirectories (stray files are verify's to report).
            if !want_files && t.is_symlink() {
                return Err(wrong(entry.path(), t, "a directory"));
            }
        }
    }
    Ok(())
}

/// The type of `path` itself (a link is not followed); `None` when it does not exist.
fn file_type(path: &Path) -> anyhow::Result<Option<fs::FileType>> {
    match fs::symlink_metadata(path) {
        Ok(m) => Ok(Some(m.file_type())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(anyhow::Error::new(e).context(format!("cannot inspect {}", path.display()))),
    }
}

fn read_dir(path: &Path) -> anyhow::Result<fs::ReadDir> {
    fs::read_dir(path).map_err(|e| listing(path, e))
}

fn listing(path: &Path, e: io::Error) -> anyhow::Error {
    anyhow::Error::new(e).context(format!("cannot list {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_and_wrong_kinds_are_named_and_the_root_may_be_a_link() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("store");
        for dir in ["objects/ab", "tmp", "partial", "logs"] {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        fs::write(root.join("lock"), b"").unwrap();
        fs::write(root.join("logs/a.log"), b"").unwrap();
        check(&root).unwrap();
        let via = d.path().join("via");
        symlink(&root, &via).unwrap();
        check(&via).unwrap();

        let elsewhere = d.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, root.join("logs/b.log")).unwrap();
        let e = check(&root).unwrap_err().downcast::<LayoutError>().unwrap();
        assert_eq!(
            (e.path, e.found),
            (root.join("logs/b.log"), "a symbolic link")
        );
        fs::remove_file(root.join("logs/b.log")).unwrap();

        fs::remove_file(root.join("lock")).unwrap();
        fs::create_dir(root.join("lock")).unwrap();
        let e = check(&root).unwrap_err().downcast::<LayoutError>().unwrap();
        assert_eq!((e.path, e.found), (root.join("lock"), "a directory"));
        fs::remove_dir(root.join("lock")).unwrap();

        fs::remove_dir(root.join("objects/ab")).unwrap();
        symlink(&elsewhere, root.join("objects/ab")).unwrap();
        let e = check(&root).unwrap_err().downcast::<LayoutError>().unwrap();
        assert_eq!(e.path, root.join("objects/ab"));
    }
}
