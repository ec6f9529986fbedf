//! Message objects: `objects/<2 hex>/<64 hex>.zst`, the zstd-compressed bytes of one message,
//! named by the SHA-256 of the uncompressed bytes. Written once: into a temp file, made durable
//! together with the other objects of a batch, then renamed into place (see [`Objects`]).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::frame;

/// zstd level for new objects: fast, and most of the gain of higher levels on mail.
pub const ZSTD_LEVEL: i32 = 3;

/// Mode of every directory the store creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file the store creates.
pub(crate) const FILE_MODE: u32 = 0o600;

pub use super::hash::Hash;

/// The largest message an object may hold (2 GiB): what a bundle carries, what any server
/// takes; a frame declaring more is refused when read.
pub const MAX_OBJECT: u64 = 2 << 30;

/// Why an object cannot be read. Callers branch on it (verify reports missing and corrupt
/// objects apart; pull fetches both again).
#[derive(Debug)]
pub enum ObjectError {
    /// No file under its name.
    Missing { path: PathBuf },
    /// The file does not decompress, or to bytes of another hash.
    Corrupt { path: PathBuf, why: String },
    /// The file could not be read.
    Io { path: PathBuf, source: io::Error },
}

impl ObjectError {
    pub fn is_missing(&self) -> bool {
        matches!(self, ObjectError::Missing { .. })
    }

    pub fn is_corrupt(&self) -> bool {
        matches!(self, ObjectError::Corrupt { .. })
    }

    /// What is wrong, without the path.
    pub fn reason(&self) -> String {
        match self {
            ObjectError::Missing { .. } => "the object file is missing".into(),
            ObjectError::Corrupt { why, .. } => format!("the object is corrupt: {why}"),
            ObjectError::Io { source, .. } => format!("cannot read the object file: {source}"),
        }
    }
}

impl fmt::Display for ObjectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = match self {
            ObjectError::Missing { path }
            | ObjectError::Corrupt { path, .. }
            | ObjectError::Io { path, .. } => path,
        };
        write!(f, "object {}: {}", path.display(), self.reason())
    }
}

impl std::error::Error for ObjectError {}

/// Objects written since the last [`Objects::sync`]: their bytes are in `tmp/`, not yet durable
/// and not yet under their names in `objects/`.
#[derive(Default)]
struct Pending {
    /// Hash → (the counter in its temp file's name, compressed size).
    objects: HashMap<Hash, (u64, u64)>,
    /// `objects/<2 hex>` directories whose entries the next sync must make durable: renames a
    /// failed sync left behind, and objects a write found in place (another `Objects` of this
    /// process, i.e. another pull worker, may have renamed it there without its flush yet).
    renamed_dirs: BTreeSet<PathBuf>,
    /// `objects/` itself needs it too (a subdirectory may be new).
    new_subdir: bool,
    /// An open descriptor of `objects/`, for `syncfs(2)`. Opened before the first temp file is
    /// written and kept: the kernel reports a writeback error to a descriptor only if the error
    /// happened after the descriptor was opened (or nobody saw it yet).
    #[cfg(target_os = "linux")]
    dir_fd: Option<File>,
}

/// The object directory of a store.
///
/// Writes are batched for durability: [`Objects::write`] leaves the compressed bytes in a temp
/// file without fsyncing; [`Objects::sync`] makes everything written since the previous call
/// durable at once and only then moves it under its name in `objects/`. So a file in
/// `objects/` is always complete, and one `syncfs(2)` replaces an fsync per object. Pending
/// objects are visible to [`Objects::contains`] and [`Objects::read`], not at
/// [`Objects::path`]. If the process ends without a sync, the pending objects are lost
/// (`Store::open` clears `tmp/`); no index row names them because rows are committed only
/// after a sync ([`Index::batch_after_sync`](super::index::Index::batch_after_sync)).
pub struct Objects {
    /// `<store>/objects`
    dir: PathBuf,
    /// `<store>/tmp`, on the same file system so rename is atomic.
    tmp: PathBuf,
    pending: Mutex<Pending>,
}

/// Makes temp names unique within this process, across all its `Objects` (pull's workers each
/// have their own on the same store); the store lock excludes other processes.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Objects {
    /// The objects of the store rooted at `store_root`; creates nothing.
    pub fn new(store_root: &Path) -> Objects {
        Objects {
            dir: store_root.join("objects"),
            tmp: store_root.join("tmp"),
            pending: Mutex::new(Pending::default()),
        }
    }

    /// `<store>/objects`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the object named `hash` lives (whether or not it exists). An object written but
    /// not yet synced is not there yet (see [`Objects::sync`]).
    pub fn path(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_hex();
        self.dir.join(&hex[..2]).join(format!("{hex}.zst"))
    }

    /// Where the pending object with temp counter `n` is.
    fn tmp_path(&self, hash: &Hash, n: u64) -> PathBuf {
        self.tmp.join(format!("{hash}.{}.{n}", std::process::id()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the object exists, synced or pending (its content is not checked).
    pub fn contains(&self, hash: &Hash) -> bool {
        self.lock().objects.contains_key(hash) || self.path(hash).is_file()
    }

    /// Compress `bytes` into a temp file unless the object exists (synced or pending). Returns
    /// the hash and the compressed size on disk. Nothing is fsynced here: the object becomes
    /// durable, and moves under [`Objects::path`], at the next [`Objects::sync`], which callers
    /// run before committing index rows that name it.
    pub fn write(&self, bytes: &[u8]) -> Result<(Hash, u64)> {
        let hash = Hash::of(bytes);
        if let Some(stored) = self.present(&hash, Some(bytes.len() as u64))? {
            return Ok((hash, stored));
        }
        self.open_dir_fd()?;
        let compressed = zstd::bulk::compress(bytes, ZSTD_LEVEL)
            .with_context(|| format!("cannot compress object {hash}"))?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp_path(&hash, n);
        if let Err(e) = write_new_file(&tmp, &compressed) {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok((
            hash,
            self.add_pending(&hash, n, compressed.len() as u64, &tmp),
        ))
    }

    /// Store the zstd frame that `src` holds as the object `hash` without compressing it
    /// again: the frame is copied into a temp file while [`frame::inflate`] checks it (one
    /// frame, declaring at most `max` bytes, inflating to exactly those, hashing to `hash`);
    /// `sink` sees the inflated bytes. A frame that fails the check leaves nothing behind. An
    /// object already present is not written again, but its frame is still checked. Pending,
    /// like [`Objects::write`], until the next [`Objects::sync`]. Returns the message size and
    /// the stored size.
    pub fn write_frame(
        &self,
        hash: &Hash,
        src: impl Read,
        max: u64,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(u64, u64)> {
        let wrong = |got: Hash| anyhow::anyhow!("its content hashes to {got}, not to its name");
        if let Some(stored) = self.present(hash, None)? {
            let got = frame::inflate(src, max, sink)?;
            return if got.hash == *hash {
                Ok((got.size, stored))
            } else {
                Err(wrong(got.hash))
            };
        }
        self.open_dir_fd()?;
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = self.tmp_path(hash, n);
        let copied = copy_frame(&tmp, src, max, sink).and_then(|(got, stored)| {
            if got.hash == *hash {
                Ok((got.size, stored))
            } else {
                Err(wrong(got.hash))
            }
        });
        match copied {
            Ok((size, stored)) => Ok((size, self.add_pending(hash, n, stored, &tmp))),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Forget the objects written since the last [`Objects::sync`] and delete their temp
    /// files: after a failure, so nothing of an abandoned batch stays behind.
    pub fn discard_pending(&self) {
        let mut p = self.lock();
        for (hash, (n, _)) in std::mem::take(&mut p.objects) {
            let _ = fs::remove_file(self.tmp_path(&hash, n));
        }
    }

    /// The stored size of the object when it exists (pending, or in place; an object in place
    /// gets its directory flushed by the next sync, see [`Pending::renamed_dirs`]). `size` is
    /// its message size when known; without it, a file in place counts only when its frame
    /// declares its size (a frame without, from another writer, is then replaced by the one
    /// being written: the same content).
    fn present(&self, hash: &Hash, size: Option<u64>) -> Result<Option<u64>> {
        if let Some(&(_, stored)) = self.lock().objects.get(hash) {
            return Ok(Some(stored));
        }
        let path = self.path(hash);
        // Objects are immutable: an existing file is the same content, never overwritten, and
        // complete (files get their names only after their bytes are durable). Unless it is
        // damaged: then it is written again (the new file replaces it at the rename), so a new
        // message never gets linked to a broken file.
        match fs::metadata(&path) {
            Ok(_) if self.inflate(hash, size, &mut |_| Ok(())).is_err() => Ok(None),
            Ok(meta) => {
                let mut p = self.lock();
                let subdir = path.parent().expect("object path has a parent");
                p.renamed_dirs.insert(subdir.to_path_buf());
                p.new_subdir = true;
                Ok(Some(meta.len()))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot stat object {}", path.display())),
        }
    }

    /// Open `objects/` for `syncfs(2)` before the first temp file of a batch is written.
    fn open_dir_fd(&self) -> Result<()> {
        #[cfg(target_os = "linux")]
        {
            let mut p = self.lock();
            if p.dir_fd.is_none() {
                let fd = File::open(&self.dir)
                    .with_context(|| format!("cannot open {}", self.dir.display()))?;
                p.dir_fd = Some(fd);
            }
        }
        Ok(())
    }

    /// Record the complete temp file `tmp` (counter `n`) as the pending object `hash`; the
    /// stored size to use (another thread's, when it wrote the same object meanwhile).
    fn add_pending(&self, hash: &Hash, n: u64, stored: u64, tmp: &Path) -> u64 {
        let mut p = self.lock();
        match p.objects.get(hash) {
            // Another thread wrote the same bytes meanwhile: one temp file is enough.
            Some(&(_, theirs)) => {
                drop(p);
                let _ = fs::remove_file(tmp);
                theirs
            }
            None => {
                p.objects.insert(*hash, (n, stored));
                stored
            }
        }
    }

    /// Make every object written since the last call durable and put it under its name:
    /// flush all their bytes (one `syncfs(2)` of the store's file system on Linux, an fsync per
    /// temp file elsewhere), rename each temp file into `objects/<2 hex>/`, then make the
    /// renames durable (a second `syncfs`, or an fsync of each directory that changed).
    ///
    /// If flushing the bytes fails, the pending objects are discarded (their temp files
    /// deleted) and the error returned: their bytes may be lost, and a retried flush could
    /// wrongly succeed, so they must be written again before any index row names them.
    pub fn sync(&self) -> Result<()> {
        let mut p = self.lock();
        if p.objects.is_empty() && p.renamed_dirs.is_empty() {
            return Ok(());
        }
        // `renamed_dirs` from before: their files' bytes are durable, their entries need a
        // flush, which step 3 gives them.
        let mut objects: Vec<(Hash, u64)> = p.objects.iter().map(|(h, &(n, _))| (*h, n)).collect();
        objects.sort_unstable();

        // 1. The bytes.
        if let Err(e) = self.flush_data(&p, &objects) {
            for (hash, n) in &objects {
                let _ = fs::remove_file(self.tmp_path(hash, *n));
            }
            p.objects.clear();
            return Err(e.context(format!(
                "{} object(s) written since the last sync were discarded",
                objects.len()
            )));
        }

        // 2. The names. Each object's bytes are durable now, so a renamed file is complete
        // even if the rename itself does not survive a crash.
        let mut made: BTreeSet<PathBuf> = BTreeSet::new();
        for (hash, n) in &objects {
            let path = self.path(hash);
            let subdir = path.parent().expect("object path has a parent");
            if !made.contains(subdir) {
                let new = create_dir_0700(subdir)?;
                p.new_subdir |= new;
                made.insert(subdir.to_path_buf());
            }
            let tmp = self.tmp_path(hash, *n);
            // Another `Objects` of this process may have put the same object there meanwhile;
            // the rename then replaces it with identical, equally durable bytes.
            fs::rename(&tmp, &path).with_context(|| {
                format!("cannot rename {} to {}", tmp.display(), path.display())
            })?;
            p.objects.remove(hash);
            p.renamed_dirs.insert(subdir.to_path_buf());
        }

        // 3. The names durable.
        self.flush_names(&p)?;
        p.renamed_dirs.clear();
        p.new_subdir = false;
        Ok(())
    }

    /// Step 1 of [`Objects::sync`]: the temp files' bytes durable.
    fn flush_data(&self, p: &Pending, objects: &[(Hash, u64)]) -> Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(done) = self.syncfs(p) {
            return done;
        }
        let _ = p;
        for (hash, n) in objects {
            let tmp = self.tmp_path(hash, *n);
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .with_context(|| format!("cannot fsync {}", tmp.display()))?;
        }
        Ok(())
    }

    /// Step 3 of [`Objects::sync`]: the renames durable.
    fn flush_names(&self, p: &Pending) -> Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(done) = self.syncfs(p) {
            return done;
        }
        for dir in &p.renamed_dirs {
            fsync_dir(dir)?;
        }
        if p.new_subdir {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// `syncfs(2)` of the file system holding the store; `None` where the kernel lacks it (or a
    /// sandbox forbids it), so the caller fsyncs file by file instead.
    #[cfg(target_os = "linux")]
    fn syncfs(&self, p: &Pending) -> Option<Result<()>> {
        let fd = p.dir_fd.as_ref()?;
        match rustix::fs::syncfs(fd) {
            Ok(()) => Some(Ok(())),
            Err(e) if e == rustix::io::Errno::NOSYS || e == rustix::io::Errno::PERM => None,
            Err(e) => {
                Some(Err(io::Error::from(e)).with_context(|| {
                    format!("cannot sync the file system of {}", self.dir.display())
                }))
            }
        }
    }

    /// The bytes of object `hash`, whose size the index records as `size`, decompressed (never
    /// past `size`: a frame without its content size is bounded by it, one with must declare
    /// it) and checked against the hash. A pending object is read from its temp file.
    pub fn read(&self, hash: &Hash, size: u64) -> Result<Vec<u8>, ObjectError> {
        let mut out = Vec::new();
        self.inflate(hash, Some(size), &mut |piece| {
            out.extend_from_slice(piece);
            Ok(())
        })?;
        Ok(out)
    }

    /// Check object `hash` (decompress and hash it) without keeping its bytes.
    pub fn verify(&self, hash: &Hash, size: u64) -> Result<(), ObjectError> {
        self.inflate(hash, Some(size), &mut |_| Ok(()))
    }

    /// Stream object `hash` through `sink`, checking its frame and hash, and its size against
    /// `size` (the index's) when given; without it, the frame must declare its size.
    fn inflate(
        &self,
        hash: &Hash,
        size: Option<u64>,
        sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
    ) -> Result<(), ObjectError> {
        let pending = self.lock().objects.get(hash).map(|&(n, _)| n);
        let mut path = self.path(hash);
        let mut file = None;
        if let Some(n) = pending {
            let tmp = self.tmp_path(hash, n);
            match open_no_follow(&tmp) {
                Ok(f) => {
                    file = Some(f);
                    path = tmp;
                }
                // A sync renamed it meanwhile: read it under its name.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(ObjectError::Io { path: tmp, source }),
            }
        }
        let file = match file.map_or_else(|| open_no_follow(&path), Ok) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ObjectError::Missing { path })
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
                return Err(ObjectError::Corrupt {
                    path,
                    why: "it is a symbolic link, which a store never holds: not read through"
                        .into(),
                })
            }
            Err(source) => return Err(ObjectError::Io { path, source }),
        };
        let corrupt = |why: String| ObjectError::Corrupt {
            path: path.clone(),
            why,
        };
        let src = io::BufReader::new(file);
        let got = match size {
            Some(size) => frame::inflate_known(src, size, sink),
            None => frame::inflate(src, MAX_OBJECT, sink),
        }
        .map_err(|e| corrupt(e.to_string()))?;
        if got.hash != *hash {
            return Err(corrupt(format!("its content hashes to {}", got.hash)));
        }
        Ok(())
    }

    /// Every synced object file's hash, sorted, from the names alone (content is not read).
    /// Files that do not fit the layout are yielded as errors naming them, for verify and gc.
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

/// Open an object file to read it, never through a symbolic link (see `store::layout`).
fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
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

/// Copy the frame `src` into the new file `tmp` (mode 0600, no fsync) while checking it; what
/// it inflated to and the file's size.
fn copy_frame(
    tmp: &Path,
    src: impl Read,
    max: u64,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<(frame::Inflated, u64)> {
    let ctx = || format!("cannot write {}", tmp.display());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(tmp)
        .with_context(ctx)?;
    file.set_permissions(fs::Permissions::from_mode(FILE_MODE))
        .with_context(ctx)?;
    let mut tee = Tee {
        src,
        out: io::BufWriter::with_capacity(1 << 20, file),
        written: 0,
        failed: None,
    };
    let got = frame::inflate(&mut tee, max, sink);
    if let Some(e) = tee.failed.take() {
        return Err(e).with_context(ctx);
    }
    let got = got?;
    tee.out.flush().with_context(ctx)?;
    Ok((got, tee.written))
}

/// Reads from `src` and writes what it read to `out`; a write error is kept apart (and the
/// read fails), so it is reported as the write error it is.
struct Tee<R, W> {
    src: R,
    out: W,
    written: u64,
    failed: Option<io::Error>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.src.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let copy = io::Error::new(e.kind(), e.to_string());
            self.failed = Some(e);
            return Err(copy);
        }
        self.written += n as u64;
        Ok(n)
    }
}

/// Create `path` (which must not exist) with mode 0600 and write `data`; no fsync (the caller
/// makes it durable, see [`Objects::sync`]).
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
    f.write_all(data).with_context(ctx)
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
        let mut written = vec![];
        for bytes in cases {
            let (h, stored) = o.write(bytes).unwrap();
            assert_eq!(h, Hash::of(bytes));
            assert!(o.contains(&h));
            assert_eq!(o.read(&h, bytes.len() as u64).unwrap(), bytes);
            written.push((h, stored, bytes));
        }
        o.sync().unwrap();
        for (h, stored, bytes) in written {
            assert_eq!(stored, fs::metadata(o.path(&h)).unwrap().len());
            assert_eq!(o.read(&h, bytes.len() as u64).unwrap(), bytes);
        }
        assert_eq!(o.iter().collect::<Result<Vec<_>>>().unwrap().len(), 4);
    }

    #[test]
    fn same_bytes_twice_is_one_file_not_rewritten() {
        let (d, o) = objects();
        let (h1, s1) = o.write(b"hello").unwrap();
        o.sync().unwrap();
        let path = o.path(&h1);
        let old = filetime(&path);
        std::thread::sleep(std::time::Duration::from_millis(20));
        let (h2, s2) = o.write(b"hello").unwrap();
        o.sync().unwrap();
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
        o.sync().unwrap();
        let path = o.path(&h);
        // A valid zstd frame of other bytes under this name.
        fs::write(&path, zstd::bulk::compress(b"something else", 3).unwrap()).unwrap();
        let err = format!("{:#}", o.read(&h, 16).unwrap_err());
        assert!(
            err.contains("corrupt") && err.contains(&path.display().to_string()),
            "{err}"
        );
        // Not zstd at all.
        fs::write(&path, b"garbage").unwrap();
        let err = format!("{:#}", o.read(&h, 16).unwrap_err());
        assert!(
            err.contains("corrupt") && err.contains(&path.display().to_string()),
            "{err}"
        );

        let absent = Hash::of(b"never written");
        let err = format!("{:#}", o.read(&absent, 13).unwrap_err());
        assert!(err.contains("missing") && err.contains(&o.path(&absent).display().to_string()));
    }

    #[test]
    fn modes_are_0700_and_0600() {
        let (_d, o) = objects();
        let (h, _) = o.write(b"x").unwrap();
        o.sync().unwrap();
        assert_eq!(mode(&o.path(&h)), 0o600);
        assert_eq!(mode(o.path(&h).parent().unwrap()), 0o700);
    }

    #[test]
    fn iter_reports_stray_files() {
        let (_d, o) = objects();
        let (h, _) = o.write(b"x").unwrap();
        o.sync().unwrap();
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
        let p = o.lock();
        assert!(p.objects.is_empty() && p.renamed_dirs.is_empty() && !p.new_subdir);
    }

    fn entries(dir: &Path) -> usize {
        fs::read_dir(dir).unwrap().count()
    }

    #[test]
    fn pending_objects_are_visible_before_sync_and_in_place_after() {
        let (d, o) = objects();
        let (h, stored) = o.write(b"pending message").unwrap();
        // Not under its name yet, but there for contains and read.
        assert!(!o.path(&h).exists());
        assert_eq!(entries(o.dir()), 0, "no objects/xx before sync");
        assert!(o.contains(&h));
        assert_eq!(o.read(&h, 15).unwrap(), b"pending message");
        assert_eq!(o.write(b"pending message").unwrap(), (h, stored));
        assert_eq!(entries(&d.path().join("tmp")), 1);
        assert!(o.iter().next().is_none());

        o.sync().unwrap();
        assert_eq!(fs::metadata(o.path(&h)).unwrap().len(), stored);
        assert_eq!(mode(&o.path(&h)), 0o600);
        assert_eq!(mode(o.path(&h).parent().unwrap()), 0o700);
        assert_eq!(entries(&d.path().join("tmp")), 0);
        assert!(o.contains(&h));
        assert_eq!(o.read(&h, 15).unwrap(), b"pending message");
        assert_eq!(o.iter().collect::<Result<Vec<_>>>().unwrap(), [h]);
        // Nothing pending: a no-op.
        o.sync().unwrap();
    }

    #[test]
    fn same_bytes_twice_before_sync_is_one_file() {
        let (d, o) = objects();
        let a = o.write(b"twice").unwrap();
        let b = o.write(b"twice").unwrap();
        assert_eq!(a, b);
        assert_eq!(entries(&d.path().join("tmp")), 1);
        o.sync().unwrap();
        assert_eq!(entries(o.path(&a.0).parent().unwrap()), 1);
        assert_eq!(entries(o.dir()), 1);
        assert_eq!(entries(&d.path().join("tmp")), 0);
    }

    #[test]
    fn many_objects_one_sync() {
        let (d, o) = objects();
        let hashes: Vec<Hash> = (0..600)
            .map(|i| o.write(format!("message {i}").as_bytes()).unwrap().0)
            .collect();
        assert_eq!(entries(&d.path().join("tmp")), 600);
        o.sync().unwrap();
        assert_eq!(entries(&d.path().join("tmp")), 0);
        for (i, h) in hashes.iter().enumerate() {
            assert_eq!(
                fs::read(o.path(h))
                    .map(|z| zstd::stream::decode_all(&z[..]).unwrap())
                    .unwrap(),
                format!("message {i}").as_bytes()
            );
        }
        let mut sorted = hashes.clone();
        sorted.sort();
        assert_eq!(o.iter().collect::<Result<Vec<_>>>().unwrap(), sorted);
    }

    #[test]
    fn a_frame_is_stored_as_it_is_and_a_bad_one_leaves_nothing() {
        let (d, o) = objects();
        let none = &mut |_: &[u8]| Ok(());
        let msg = b"Subject: kept\r\n\r\nas sent\r\n";
        let z = zstd::bulk::compress(msg, 19).unwrap();
        let h = Hash::of(msg);
        let got = o.write_frame(&h, &z[..], 1 << 20, none).unwrap();
        assert_eq!(got, (msg.len() as u64, z.len() as u64));
        o.sync().unwrap();
        assert_eq!(fs::read(o.path(&h)).unwrap(), z, "the frame as it came");
        assert_eq!(o.read(&h, msg.len() as u64).unwrap(), msg);
        // Present already: the frame is still checked.
        assert!(o.write_frame(&h, &b"junk"[..], 1 << 20, none).is_err());
        // Another message's frame under this name; a frame declaring more than allowed.
        let other = Hash::of(b"other");
        let err = o.write_frame(&other, &z[..], 1 << 20, none).unwrap_err();
        assert!(format!("{err:#}").contains("hashes to"), "{err:#}");
        let oz = zstd::bulk::compress(b"other", 3).unwrap();
        assert!(o.write_frame(&other, &oz[..], 2, none).is_err());
        assert_eq!(entries(&d.path().join("tmp")), 0);
        assert!(!o.contains(&other));

        o.write(b"abandoned").unwrap();
        o.discard_pending();
        assert_eq!(entries(&d.path().join("tmp")), 0);
        assert!(!o.contains(&Hash::of(b"abandoned")));
    }

    #[test]
    fn crash_before_sync_leaves_no_object_and_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("store");
        let store = crate::store::Store::open_or_create(&root).unwrap();
        let (kept, _) = store.objects.write(b"synced").unwrap();
        store.objects.sync().unwrap();
        let (lost, _) = store.objects.write(b"never synced").unwrap();
        assert!(store.objects.contains(&lost));
        // The process dies here: no sync. (Dropping cleans nothing up, like a crash.)
        drop(store);
        assert_eq!(entries(&root.join("tmp")), 1);

        let store = crate::store::Store::open_existing(&root).unwrap();
        assert!(!store.objects.contains(&lost));
        assert!(!store.objects.path(&lost).exists());
        assert_eq!(entries(&root.join("tmp")), 0);
        assert_eq!(store.objects.read(&kept, 6).unwrap(), b"synced");
        assert_eq!(
            store.objects.iter().collect::<Result<Vec<_>>>().unwrap(),
            [kept]
        );
    }
}
