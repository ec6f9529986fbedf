//! Message objects: `objects/<2 hex>/<64 hex>.zst`, the zstd-compressed bytes of one message,
//! named by the SHA-256 of the uncompressed bytes. Written once (temp file, fsync, rename).

use std::collections::BTreeSet;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// zstd level for new objects: fast, and most of the gain of higher levels on mail.
pub const ZSTD_LEVEL: i32 = 3;

/// Mode of every directory the store creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file the store creates.
pub(crate) const FILE_MODE: u32 = 0o600;

/// SHA-256 of a message's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(Sha256::digest(bytes).into())
    }

    /// 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 0xf)] as char);
        }
        s
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl FromStr for Hash {
    type Err = anyhow::Error;

    /// Exactly 64 lowercase hex digits (the only spelling the store ever writes).
    fn from_str(s: &str) -> Result<Hash> {
        fn nibble(c: u8) -> Option<u8> {
            match c {
                b'0'..=b'9' => Some(c - b'0'),
                b'a'..=b'f' => Some(c - b'a' + 10),
                _ => None,
            }
        }
        let b = s.as_bytes();
        if b.len() != 64 {
            bail!("not a SHA-256 hash (want 64 lowercase hex digits): {s:?}");
        }
        let mut out = [0u8; 32];
        for (i, pair) in b.chunks_exact(2).enumerate() {
            match (nibble(pair[0]), nibble(pair[1])) {
                (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
                _ => bail!("not a SHA-256 hash (want 64 lowercase hex digits): {s:?}"),
            }
        }
        Ok(Hash(out))
    }
}

/// Directories whose entries changed since the last [`Objects::sync`].
#[derive(Default)]
struct Touched {
    dirs: BTreeSet<PathBuf>,
    /// A new `objects/<2 hex>` subdirectory was made, so `objects/` itself needs an fsync.
    objects_dir: bool,
}

/// The object directory of a store.
pub struct Objects {
    /// `<store>/objects`
    dir: PathBuf,
    /// `<store>/tmp`, on the same file system so rename is atomic.
    tmp: PathBuf,
    touched: Mutex<Touched>,
    /// Makes temp names unique within this process; the store lock excludes other processes.
    counter: AtomicU64,
}

impl Objects {
    /// The objects of the store rooted at `store_root`; creates nothing.
    pub fn new(store_root: &Path) -> Objects {
        Objects {
            dir: store_root.join("objects"),
            tmp: store_root.join("tmp"),
            touched: Mutex::new(Touched::default()),
            counter: AtomicU64::new(0),
        }
    }

    /// `<store>/objects`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the object named `hash` lives (whether or not it exists).
    pub fn path(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(format!("{hex}.zst"))
    }

    /// Whether the object file exists (its content is not checked).
    pub fn contains(&self, hash: &Hash) -> bool {
        self.path(hash).is_file()
    }

    /// Compress and write `bytes` durably (temp file, fsync, rename) unless the object exists.
    /// Returns the hash and the compressed size on disk. The rename is made durable by
    /// [`Objects::sync`], which callers run before committing index rows that name the object.
    pub fn write(&self, bytes: &[u8]) -> Result<(Hash, u64)> {
        let hash = Hash::of(bytes);
        let path = self.path(&hash);
        // Objects are immutable: an existing file is the same content (or damage for verify to
        // find), never something to overwrite.
        match fs::metadata(&path) {
            Ok(meta) => return Ok((hash, meta.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("cannot stat object {}", path.display()))
            }
        }
        let subdir = path.parent().expect("object path has a parent");
        let new_subdir = create_dir_0700(subdir)?;

        let compressed = zstd::bulk::compress(bytes, ZSTD_LEVEL)
            .with_context(|| format!("cannot compress object {hash}"))?;
        let tmp = self.tmp.join(format!(
            "{hash}.{}.{}",
            std::process::id(),
            self.counter.fetch_add(1, Ordering::Relaxed)
        ));
        let written = write_new_file(&tmp, &compressed).and_then(|()| {
            fs::rename(&tmp, &path)
                .with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))
        });
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }

        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        touched.dirs.insert(subdir.to_path_buf());
        touched.objects_dir |= new_subdir;
        Ok((hash, compressed.len() as u64))
    }

    /// fsync every object directory written to since the last call.
    pub fn sync(&self) -> Result<()> {
        let mut touched = self.touched.lock().unwrap_or_else(|p| p.into_inner());
        let pending = std::mem::take(&mut *touched);
        let mut result = Ok(());
        for dir in &pending.dirs {
            result = result.and_then(|()| fsync_dir(dir));
        }
        if pending.objects_dir {
            result = result.and_then(|()| fsync_dir(&self.dir));
        }
        if result.is_err() {
            // Keep them pending so a retry syncs them again.
            touched.dirs.extend(pending.dirs);
            touched.objects_dir |= pending.objects_dir;
        }
        result
    }

    /// Read, decompress and verify one object; an error names the object when it is missing
    /// or its content does not hash to its name.
    pub fn read(&self, hash: &Hash) -> Result<Vec<u8>> {
        let path = self.path(hash);
        let compressed = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                bail!("object {} is missing", path.display())
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read object {}", path.display()))
            }
        };
        let bytes = zstd::stream::decode_all(&compressed[..]).map_err(|e| {
            anyhow::anyhow!("object {} is corrupt: not valid zstd ({e})", path.display())
        })?;
        let actual = Hash::of(&bytes);
        if actual != *hash {
            bail!(
                "object {} is corrupt: its content hashes to {actual}",
                path.display()
            );
        }
        Ok(bytes)
    }

    /// Every object file's hash, sorted, from the names alone (content is not read). Files
    /// that do not fit the layout are yielded as errors naming them, for verify and gc.
    pub fn iter(&self) -> impl Iterator<Item = Result<Hash>> {
        walkdir::WalkDir::new(&self.dir)
            .min_depth(1)
            .max_depth(2)
            .sort_by_file_name()
            .into_iter()
            .filter_map(|entry| {
                let entry = match entry {
                    Ok(e) => e,
                    Err(e) => {
                        return Some(Err(anyhow::Error::new(e).context("cannot list objects")))
                    }
                };
                let ft = entry.file_type();
                if entry.depth() == 1 && ft.is_dir() {
                    return None;
                }
                Some(object_name(entry.path(), ft.is_file()))
            })
    }
}

/// The hash an object file at `path` is named after, checking it sits in the right subdir.
fn object_name(path: &Path, is_file: bool) -> Result<Hash> {
    let bad = || anyhow::anyhow!("unexpected entry in the object store: {}", path.display());
    if !is_file {
        return Err(bad());
    }
    let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(bad)?;
    let stem = name.strip_suffix(".zst").ok_or_else(bad)?;
    let hash: Hash = stem.parse().map_err(|_| bad())?;
    let parent = path
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str());
    if parent != Some(&stem[..2]) {
        return Err(bad());
    }
    Ok(hash)
}

/// Make `dir` with mode 0700 whatever the umask. Returns whether it was created.
pub(crate) fn create_dir_0700(dir: &Path) -> Result<bool> {
    match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
        Ok(()) => {
            fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
                .with_context(|| format!("cannot chmod {}", dir.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(false),
        Err(e) => Err(e).with_context(|| format!("cannot create directory {}", dir.display())),
    }
}

/// Create `path` (which must not exist) with mode 0600, write `data`, fsync.
fn write_new_file(path: &Path, data: &[u8]) -> Result<()> {
    let ctx = || format!("cannot write {}", path.display());
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
        .with_context(ctx)?;
    f.set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .with_context(ctx)?;
    f.write_all(data).with_context(ctx)?;
    f.sync_all().with_context(ctx)
}

/// fsync a directory so the entries created or renamed in it survive a crash.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects() -> (tempfile::TempDir, Objects) {
        let dir = tempfile::tempdir().unwrap();
        create_dir_0700(&dir.path().join("objects")).unwrap();
        create_dir_0700(&dir.path().join("tmp")).unwrap();
        let o = Objects::new(dir.path());
        (dir, o)
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn hash_hex_round_trip_and_validation() {
        let h = Hash::of(b"abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.to_hex().parse::<Hash>().unwrap(), h);
        assert!(h.to_hex().to_uppercase().parse::<Hash>().is_err());
        assert!(h.to_hex()[..63].parse::<Hash>().is_err());
        assert!(format!("{}0", h).parse::<Hash>().is_err());
        assert!("g".repeat(64).parse::<Hash>().is_err());
        assert!("é".repeat(32).parse::<Hash>().is_err());
    }

    #[test]
    fn round_trip_is_exact() {
        let (_d, o) = objects();
        let eight_bit: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let cases: [&[u8]; 4] = [
            b"",
            b"Subject: x\r\n\r\nbody\r\n",
            &eight_bit,
            b"\0\r\n.\r\n",
        ];
        for bytes in cases {
            let (h, stored) = o.write(bytes).unwrap();
            assert_eq!(h, Hash::of(bytes));
            assert_eq!(stored, fs::metadata(o.path(&h)).unwrap().len());
            assert!(o.contains(&h));
            assert_eq!(o.read(&h).unwrap(), bytes);
        }
        o.sync().unwrap();
        assert_eq!(o.iter().collect::<Result<Vec<_>>>().unwrap().len(), 4);
    }

    #[test]
    fn same_bytes_twice_is_one_file_not_rewritten() {
        let (d, o) = objects();
        let (h1, s1) = o.write(b"hello").unwrap();
        let path = o.path(&h1);
        let old = filetime(&path);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (h2, s2) = o.write(b"hello").unwrap();
        assert_eq!((h1, s1), (h2, s2));
        assert_eq!(filetime(&path), old);
        assert_eq!(fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);
        assert_eq!(fs::read_dir(d.path().join("tmp")).unwrap().count(), 0);
    }

    fn filetime(p: &Path) -> (std::time::SystemTime, u64) {
        use std::os::unix::fs::MetadataExt;
        let m = fs::metadata(p).unwrap();
        (m.modified().unwrap(), m.ino())
    }

    #[test]
    fn corrupt_and_missing_objects_are_named() {
        let (_d, o) = objects();
        let (h, _) = o.write(b"the real message").unwrap();
        let path = o.path(&h);
        // A valid zstd frame of other bytes under this name.
        fs::write(&path, zstd::bulk::compress(b"something else", 3).unwrap()).unwrap();
        let err = format!("{:#}", o.read(&h).unwrap_err());
        assert!(
            err.contains("corrupt") && err.contains(&path.display().to_string()),
            "{err}"
        );
        // Not zstd at all.
        fs::write(&path, b"garbage").unwrap();
        let err = format!("{:#}", o.read(&h).unwrap_err());
        assert!(
            err.contains("corrupt") && err.contains(&path.display().to_string()),
            "{err}"
        );

        let absent = Hash::of(b"never written");
        let err = format!("{:#}", o.read(&absent).unwrap_err());
        assert!(err.contains("missing") && err.contains(&o.path(&absent).display().to_string()));
    }

    #[test]
    fn modes_are_0700_and_0600() {
        let (_d, o) = objects();
        let (h, _) = o.write(b"x").unwrap();
        assert_eq!(mode(&o.path(&h)), 0o600);
        assert_eq!(mode(o.path(&h).parent().unwrap()), 0o700);
    }

    #[test]
    fn iter_reports_stray_files() {
        let (_d, o) = objects();
        let (h, _) = o.write(b"x").unwrap();
        fs::write(o.dir().join("stray"), b"").unwrap();
        let wrong_dir = o.dir().join("00");
        create_dir_0700(&wrong_dir).unwrap();
        fs::write(wrong_dir.join(format!("{h}.zst")), b"").unwrap();
        let got: Vec<_> = o.iter().collect();
        assert_eq!(got.iter().filter(|r| r.is_err()).count(), 2);
        assert_eq!(
            got.iter()
                .filter_map(|r| r.as_ref().ok())
                .collect::<Vec<_>>(),
            [&h]
        );
    }

    #[test]
    fn sync_clears_pending() {
        let (_d, o) = objects();
        o.write(b"a").unwrap();
        o.sync().unwrap();
        let t = o.touched.lock().unwrap();
        assert!(t.dirs.is_empty() && !t.objects_dir);
    }
}
