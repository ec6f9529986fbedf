//! The bundle container (spec: `docs/bundle-format.md`): an 8-byte magic and a format version,
//! then typed, length-prefixed records (header, folders, objects, messages, expunges) and a
//! trailer holding the SHA-256 of every byte before it. Optionally split into volumes
//! `FILE.001`, `FILE.002`, … whose concatenation is the bundle.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::Hash;

/// First bytes of every bundle.
pub const MAGIC: &[u8; 8] = b"IMFYBNDL";
/// The container version this code writes and reads.
pub const VERSION: u32 = 1;
/// Largest JSON record written or accepted (a folder or message is a few hundred bytes).
pub const MAX_JSON: u64 = 1 << 20;
/// The largest message a bundle carries, uncompressed: the store's own bound (2 GiB, far beyond
/// any server's limit). `bundle create` refuses a bigger one and `apply` a frame that declares
/// more, so every bundle that can be written can be applied.
pub use crate::store::objects::MAX_OBJECT;

/// The largest object record written or accepted: the hash and the frame of a
/// [`MAX_OBJECT`]-byte message that did not compress at all.
pub fn max_object_record() -> u64 {
    32 + zstd::zstd_safe::compress_bound(MAX_OBJECT as usize) as u64
}

/// Record types.
pub mod kind {
    pub const HEADER: u8 = b'H';
    pub const FOLDER: u8 = b'F';
    pub const OBJECT: u8 = b'O';
    pub const MESSAGE: u8 = b'M';
    pub const EXPUNGE: u8 = b'X';
    pub const TRAILER: u8 = b'T';
}

/// The bundle this one continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Base {
    pub seq: i64,
    pub bundle_id: String,
    pub change: i64,
}

/// The account the source store mirrors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub host: String,
    pub user: String,
}

/// How many records of each kind follow the header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub folders: u64,
    pub objects: u64,
    pub messages: u64,
    pub expunges: u64,
}

/// The first record: what the bundle is and where it fits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Always `imapferry-bundle`.
    pub format: String,
    pub bundle_id: String,
    pub source_store: String,
    /// This bundle's number among those the source store made (1, 2, …).
    pub seq: i64,
    /// `None` for a full bundle.
    pub base: Option<Base>,
    /// The source store's change number when the bundle was made.
    pub change: i64,
    pub created_at: i64,
    pub account: Option<Account>,
    pub counts: Counts,
}

impl Header {
    /// Changes after this number are in the bundle.
    pub fn base_change(&self) -> i64 {
        self.base.as_ref().map_or(0, |b| b.change)
    }

    /// `#3 (changes 121–240) of store 5f2a…`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "bundle #{} ({}, changes {}–{}) of store {}",
            self.seq,
            if self.base.is_none() {
                "full"
            } else {
                "incremental"
            },
            self.base_change() + 1,
            self.change,
            self.source_store
        )
    }
}

/// A folder row as the source store has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderFacts {
    pub path: String,
    /// A string, or the array of its bytes when the server's name is not UTF-8.
    pub raw_name: crate::names::MailboxName,
    pub separator: Option<String>,
    pub role: Option<String>,
    pub subscribed: bool,
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub highestmodseq: Option<u64>,
    pub last_pull: Option<i64>,
    pub gone: bool,
}

/// A live message row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageFacts {
    pub folder: String,
    pub uidvalidity: u32,
    pub uid: u32,
    pub hash: String,
    pub size: u64,
    pub flags: Vec<String>,
    pub internaldate: String,
}

/// A message row marked expunged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpungeFacts {
    pub folder: String,
    pub uidvalidity: u32,
    pub uid: u32,
}

/// One record read back.
#[derive(Debug)]
pub enum Record {
    Header(Box<Header>),
    Folder(FolderFacts),
    /// An object's hash; its zstd frame is read with [`BundleReader::object_frame`] (or
    /// skipped by the next [`BundleReader::next_record`]), never held whole.
    Object(Hash),
    Message(MessageFacts),
    Expunge(ExpungeFacts),
    /// The trailer matched the checksum and nothing follows it.
    End,
}

/// Writes a bundle into one file, or volumes of fewer than `max_size` bytes each.
pub struct BundleWriter {
    base: PathBuf,
    max_size: Option<u64>,
    volumes: Vec<PathBuf>,
    current: Option<BufWriter<File>>,
    in_current: u64,
    total: u64,
    hasher: Sha256,
}

impl BundleWriter {
    /// Start a bundle at `path` (volumes `path.001`, … when `max_size` is given). Refuses to
    /// overwrite anything.
    pub fn create(path: &Path, max_size: Option<u64>) -> Result<BundleWriter> {
        for p in [path.to_path_buf(), volume_path(path, 1)] {
            if p.exists() {
                bail!(
                    "{} already exists; choose another name or remove the old bundle",
                    p.display()
                );
            }
        }
        let mut w = BundleWriter {
            base: path.to_path_buf(),
            max_size: max_size.map(|m| m.max(2)),
            volumes: Vec::new(),
            current: None,
            in_current: 0,
            total: 0,
            hasher: Sha256::new(),
        };
        w.write_all(MAGIC)?;
        w.write_all(&VERSION.to_be_bytes())?;
        Ok(w)
    }

    /// Append one record.
    pub fn record(&mut self, kind: u8, payload: &[&[u8]]) -> Result<()> {
        let len: usize = payload.iter().map(|p| p.len()).sum();
        self.write_all(&[kind])?;
        self.write_all(&(len as u64).to_be_bytes())?;
        for p in payload {
            self.write_all(p)?;
        }
        Ok(())
    }

    /// Append a JSON record (at most [`MAX_JSON`] bytes, what a reader takes).
    pub fn json<T: Serialize>(&mut self, kind: u8, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).context("cannot encode a bundle record")?;
        if bytes.len() as u64 > MAX_JSON {
            bail!(
                "a bundle record would be {} bytes, more than the {MAX_JSON} a reader takes",
                bytes.len()
            );
        }
        self.record(kind, &[&bytes])
    }

    /// Append a record of `head` followed by exactly `len` bytes read from `src`, copied
    /// through a small buffer (an object's frame, however large).
    pub fn record_stream(
        &mut self,
        kind: u8,
        head: &[u8],
        len: u64,
        src: &mut impl Read,
    ) -> Result<()> {
        self.write_all(&[kind])?;
        self.write_all(&(head.len() as u64 + len).to_be_bytes())?;
        self.write_all(head)?;
        let mut buf = vec![0u8; 64 << 10];
        let mut left = len;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = match src.read(&mut buf[..want]) {
                Ok(0) => bail!("the source ended {left} bytes early"),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("cannot read the source"),
            };
            self.write_all(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    }

    /// Write the trailer, flush and fsync every volume. Returns the volumes and the total size.
    pub fn finish(mut self) -> Result<(Vec<PathBuf>, u64)> {
        let sum: [u8; 32] = self.hasher.clone().finalize().into();
        self.record(kind::TRAILER, &[&sum])?;
        self.close_current()?;
        Ok((std::mem::take(&mut self.volumes), self.total))
    }

    /// Remove what was written (after a failure).
    pub fn abandon(mut self) {
        self.current = None;
        for v in &self.volumes {
            let _ = fs::remove_file(v);
        }
    }

    fn write_all(&mut self, mut data: &[u8]) -> Result<()> {
        self.hasher.update(data);
        while !data.is_empty() {
            if self.current.is_none() {
                self.open_next()?;
            }
            let room = match self.max_size {
                Some(m) => (m - 1 - self.in_current) as usize,
                None => usize::MAX,
            };
            if room == 0 {
                self.close_current()?;
                continue;
            }
            let n = room.min(data.len());
            let path = self.volumes.last().cloned().unwrap_or_default();
            self.current
                .as_mut()
                .expect("a volume is open")
                .write_all(&data[..n])
                .with_context(|| format!("cannot write {}", path.display()))?;
            self.in_current += n as u64;
            self.total += n as u64;
            data = &data[n..];
        }
        Ok(())
    }

    fn open_next(&mut self) -> Result<()> {
        let path = match self.max_size {
            None => self.base.clone(),
            Some(_) => volume_path(&self.base, self.volumes.len() + 1),
        };
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        self.volumes.push(path);
        self.current = Some(BufWriter::with_capacity(1 << 20, f));
        self.in_current = 0;
        Ok(())
    }

    fn close_current(&mut self) -> Result<()> {
        if let Some(w) = self.current.take() {
            let path = self.volumes.last().cloned().unwrap_or_default();
            let f = w
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("cannot write {}", path.display()))?;
            f.sync_all()
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// `FILE.001`, `FILE.002`, …
pub fn volume_path(base: &Path, n: usize) -> PathBuf {
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{n:03}"));
    PathBuf::from(s)
}

/// The bundles named on the command line, each as its list of files: `FILE` alone, or the
/// volumes `FILE.001`, `FILE.002`, … (found from `FILE`, `FILE.001` or any one volume).
pub fn resolve(args: &[PathBuf]) -> Result<Vec<Vec<PathBuf>>> {
    let mut out: Vec<Vec<PathBuf>> = Vec::new();
    for arg in args {
        let base = volume_base(arg);
        let files = match base {
            Some(base) => volumes_of(&base),
            None if arg.is_file() => vec![arg.clone()],
            None if volume_path(arg, 1).is_file() => volumes_of(arg),
            None => bail!(
                "no bundle {} (nor volumes {})",
                arg.display(),
                volume_path(arg, 1).display()
            ),
        };
        if files.is_empty() {
            bail!(
                "no bundle volume {}: the first volume is missing",
                volume_path(&volume_base(arg).unwrap_or_default(), 1).display()
            );
        }
        if !out.contains(&files) {
            out.push(files);
        }
    }
    Ok(out)
}

/// `FILE` for `FILE.NNN` (three digits).
fn volume_base(p: &Path) -> Option<PathBuf> {
    let s = p.to_str()?;
    let (base, ext) = s.rsplit_once('.')?;
    (ext.len() == 3 && ext.bytes().all(|b| b.is_ascii_digit())).then(|| PathBuf::from(base))
}

fn volumes_of(base: &Path) -> Vec<PathBuf> {
    (1..)
        .map(|n| volume_path(base, n))
        .take_while(|p| p.is_file())
        .collect()
}

/// Reads the concatenation of a bundle's files, hashing every byte.
pub struct BundleReader {
    files: Vec<PathBuf>,
    next_file: usize,
    current: Option<BufReader<File>>,
    offset: u64,
    hasher: Sha256,
    /// Bytes of the current object record's frame not read yet.
    left: u64,
    /// The trailer's checksum, once it matched.
    checksum: Option<[u8; 32]>,
    /// The bundle's name for messages (its first file, escaped for a terminal).
    pub name: String,
}

impl BundleReader {
    /// Open the bundle made of `files` (one file, or its volumes in order) and check the magic
    /// and version.
    pub fn open(files: &[PathBuf]) -> Result<BundleReader> {
        let name = files
            .first()
            .map(|p| crate::ui::printable(&p.display().to_string()).into_owned())
            .unwrap_or_default();
        let mut r = BundleReader {
            files: files.to_vec(),
            next_file: 0,
            current: None,
            offset: 0,
            hasher: Sha256::new(),
            left: 0,
            checksum: None,
            name,
        };
        let mut head = [0u8; 12];
        r.read_exact_or(&mut head, "the start of the bundle")?;
        if &head[..8] != MAGIC {
            bail!(
                "{} is not an imapferry bundle (it does not start with {:?})",
                r.name,
                String::from_utf8_lossy(MAGIC)
            );
        }
        let version = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        if version != VERSION {
            bail!(
                "{} is a bundle of format version {version}; this imapferry reads version \
                 {VERSION}: use a matching imapferry",
                r.name
            );
        }
        Ok(r)
    }

    /// The next record; errors name the bundle and say what is wrong with it. The unread rest
    /// of an object's frame is skipped first (and counted in the checksum).
    pub fn next_record(&mut self) -> Result<Record> {
        self.skip_frame()?;
        let before = self.hasher.clone();
        let mut head = [0u8; 9];
        self.read_exact_or(&mut head, "a record header")?;
        let kind = head[0];
        let len = u64::from_be_bytes(head[1..9].try_into().expect("8 bytes"));
        let limit = match kind {
            kind::OBJECT => max_object_record(),
            kind::TRAILER => 32,
            kind::HEADER | kind::FOLDER | kind::MESSAGE | kind::EXPUNGE => MAX_JSON,
            other => bail!(
                "{} is damaged: unknown record type 0x{other:02x} at byte {}; copy it again",
                self.name,
                self.offset - 9
            ),
        };
        if len > limit || (kind == kind::TRAILER && len != 32) || (kind == kind::OBJECT && len < 32)
        {
            bail!(
                "{} is damaged: a record of {len} bytes at byte {}; copy it again",
                self.name,
                self.offset - 9
            );
        }
        if kind == kind::OBJECT {
            let mut hash = [0u8; 32];
            self.read_exact_or(&mut hash, "an object record")?;
            self.left = len - 32;
            return Ok(Record::Object(Hash(hash)));
        }
        let mut payload = Vec::new();
        self.take(len, &mut payload)?;
        let json = |p: &[u8]| -> Result<serde_json::Value> {
            serde_json::from_slice(p).map_err(|e| {
                anyhow::anyhow!(
                    "{} is damaged: a record does not parse ({e}); copy it again",
                    self.name
                )
            })
        };
        let parse = |v: serde_json::Value| -> Result<Record> {
            let bad = |e: serde_json::Error| {
                anyhow::anyhow!(
                    "{} is damaged: a record is malformed ({e}); copy it again",
                    self.name
                )
            };
            Ok(match kind {
                kind::HEADER => Record::Header(Box::new(serde_json::from_value(v).map_err(bad)?)),
                kind::FOLDER => Record::Folder(serde_json::from_value(v).map_err(bad)?),
                kind::MESSAGE => Record::Message(serde_json::from_value(v).map_err(bad)?),
                _ => Record::Expunge(serde_json::from_value(v).map_err(bad)?),
            })
        };
        match kind {
            kind::TRAILER => {
                let want: [u8; 32] = before.finalize().into();
                if payload != want {
                    bail!(
                        "{} is damaged: its checksum does not match its content (it was changed \
                         or badly copied); copy it again from the source",
                        self.name
                    );
                }
                let mut extra = [0u8; 1];
                if self.read_some(&mut extra)? != 0 {
                    bail!(
                        "{} has data after its end at byte {}: a stray volume or a damaged copy",
                        self.name,
                        self.offset - 1
                    );
                }
                self.checksum = Some(want);
                Ok(Record::End)
            }
            _ => parse(json(&payload)?),
        }
    }

    /// The frame of the object record [`BundleReader::next_record`] just returned, to read to
    /// its end.
    pub fn object_frame(&mut self) -> ObjectFrame<'_> {
        ObjectFrame { r: self }
    }

    /// The bundle's checksum (its trailer), once [`Record::End`] was read: two reads that end
    /// with the same checksum read the same bytes.
    pub fn checksum(&self) -> Option<[u8; 32]> {
        self.checksum
    }

    /// Read past what is left of the current object's frame.
    fn skip_frame(&mut self) -> Result<()> {
        let mut buf = vec![0u8; 64 << 10];
        while self.left > 0 {
            let want = self.left.min(buf.len() as u64) as usize;
            self.read_exact_or(&mut buf[..want], "an object record")?;
            self.left -= want as u64;
        }
        Ok(())
    }

    /// Read `len` bytes into `out` without trusting `len` for the allocation.
    fn take(&mut self, len: u64, out: &mut Vec<u8>) -> Result<()> {
        let mut left = len;
        let mut buf = vec![0u8; 64 << 10];
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            self.read_exact_or(&mut buf[..want], "a record")?;
            out.extend_from_slice(&buf[..want]);
            left -= want as u64;
        }
        Ok(())
    }

    fn read_exact_or(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_some(&mut buf[done..])?;
            if n == 0 {
                let hint = if self.files.len() > 1 {
                    " (is a volume missing?)"
                } else {
                    ""
                };
                bail!(
                    "{} is truncated: it ends inside {what} at byte {}{hint}; copy it again",
                    self.name,
                    self.offset
                );
            }
            done += n;
        }
        Ok(())
    }

    /// Read from the current volume, moving to the next at its end; 0 at the very end.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<usize> {
        loop {
            if self.current.is_none() {
                let Some(path) = self.files.get(self.next_file) else {
                    return Ok(0);
                };
                let f = File::open(path)
                    .with_context(|| format!("cannot open bundle file {}", path.display()))?;
                self.current = Some(BufReader::with_capacity(1 << 20, f));
                self.next_file += 1;
            }
            let r = self.current.as_mut().expect("open");
            let n = match r.read(buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let path = &self.files[self.next_file - 1];
                    return Err(e).with_context(|| format!("cannot read {}", path.display()));
                }
            };
            if n == 0 {
                self.current = None;
                continue;
            }
            self.hasher.update(&buf[..n]);
            self.offset += n as u64;
            return Ok(n);
        }
    }
}

/// The frame of one object record, read straight from the bundle (and hashed for its
/// checksum); it ends where the record ends. A truncated bundle is an error naming it.
pub struct ObjectFrame<'a> {
    r: &'a mut BundleReader,
}

impl Read for ObjectFrame<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.r.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = self.r.left.min(buf.len() as u64) as usize;
        let n = self
            .r
            .read_some(&mut buf[..want])
            .map_err(|e| io::Error::other(format!("{e:#}")))?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} is truncated: it ends inside an object record at byte {}; copy it again",
                    self.r.name, self.r.offset
                ),
            ));
        }
        self.r.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volumes_round_trip_and_damage_is_found() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("b.bundle");
        let mut w = BundleWriter::create(&base, Some(4096)).unwrap();
        let big: Vec<u8> = (0..20_000u32).map(|i| (i * 7) as u8).collect();
        w.record(kind::OBJECT, &[&[1u8; 32], &big]).unwrap();
        w.json(
            kind::EXPUNGE,
            &ExpungeFacts {
                folder: "INBOX".into(),
                uidvalidity: 1,
                uid: 2,
            },
        )
        .unwrap();
        let (vols, total) = w.finish().unwrap();
        assert_eq!(vols.len(), 5);
        assert!(vols.iter().all(|v| fs::metadata(v).unwrap().len() < 4096));
        assert_eq!(
            total,
            vols.iter()
                .map(|v| fs::metadata(v).unwrap().len())
                .sum::<u64>()
        );
        assert!(BundleWriter::create(&base, None).is_err());

        let read_all = |files: &[PathBuf]| -> Result<usize> {
            let mut r = BundleReader::open(files)?;
            let mut n = 0;
            loop {
                match r.next_record()? {
                    Record::End => return Ok(n),
                    _ => n += 1,
                }
            }
        };
        let files = resolve(&[vols[2].clone()]).unwrap();
        assert_eq!(files, std::slice::from_ref(&vols));
        assert_eq!(read_all(&vols).unwrap(), 2);
        // A missing last volume: truncated.
        let err = read_all(&vols[..4]).unwrap_err().to_string();
        assert!(err.contains("truncated"), "{err}");
        // A flipped byte: the checksum.
        let mut bytes = fs::read(&vols[1]).unwrap();
        bytes[100] ^= 1;
        fs::write(&vols[1], bytes).unwrap();
        let err = read_all(&vols).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
    }
}
