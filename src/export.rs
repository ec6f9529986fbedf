//! `imapferry export`: write the store's live mail as a Maildir++ tree or as mboxrd files, for
//! any mail program to read. Messages are written byte for byte as the store holds them.
//!
//! - Maildir++ (see [`crate::maildir`]): INBOX at the root, `.Sub.Folder` directories, flags in
//!   the `:2,` info, keywords through `dovecot-keywords`, INTERNALDATE as the file's mtime. File
//!   names are `<INTERNALDATE unix>.P<pid>Q<n>.<host>,S=<size>:2,<flags>`, unique within the
//!   export; Dovecot numbers new files by that leading time.
//! - mbox: one mboxrd file per folder, `<out>/<folder path>.mbox` (`Archive/2024` is
//!   `Archive/2024.mbox`), see [`crate::mbox`]. An mbox has no place for flags outside the
//!   message, and the message is not altered, so flags are not exported in this format.
//!
//! Folder names come from servers and bundles, so they may be anything. No name makes an export
//! fail, write outside `out`, or share a file with another folder: mbox names are escaped
//! ([`mbox_file`]); Maildir++ names are modified UTF-7 with `.` written `&AC4-`, so they never
//! hold a `/` and are never `.` or `..`, and a folder with no Maildir++ name of its own (an
//! empty level, say, or a path too long for one file name) is listed as not exported (exit
//! status 3), as is an mbox file whose whole path would be longer than a path may be (4 095
//! bytes), or any name the file system refuses as too long: the other folders are written.
//!
//! The output directory must be new or empty, so an export never mixes with other files; it is
//! created private (0700, files 0600) because it holds mail.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::folders::Selection;
use crate::mailtime::parse_internaldate;
use crate::run::Failure;
use crate::store::rules::folder_path_problem;
use crate::store::{FolderRow, Store};
use crate::ui::{self, human_bytes, printable};
use crate::{maildir, mbox};

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Maildir++ (Dovecot, mbsync, mutt, …)
    Maildir,
    /// One mboxrd file per folder
    Mbox,
}

/// What to export.
#[derive(Debug)]
pub struct ExportOptions {
    pub store: PathBuf,
    pub format: Format,
    pub out: PathBuf,
    pub selection: Selection,
}

/// The outcome of an export.
#[derive(Debug, Default, Serialize)]
pub struct ExportReport {
    pub folders: u64,
    pub messages: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Things that could not be represented (flags beyond what the format holds).
    pub warnings: Vec<String>,
    /// Folders not exported (exit status 3): in Maildir++, a folder path no store should hold
    /// (empty, an empty level, a leading or trailing `/`, a NUL) has no name of its own; in
    /// either format, a name or path too long for the file system.
    pub failures: Vec<Failure>,
}

impl ExportReport {
    /// One line for humans.
    pub fn summary(&self, out: &Path) -> String {
        format!(
            "export: {} folders, {} messages ({}) written to {} in {:.1} s{}{}",
            self.folders,
            self.messages,
            human_bytes(self.bytes),
            printable(&out.display().to_string()),
            self.seconds,
            if self.failures.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} folders not exported (listed above)",
                    self.failures.len()
                )
            },
            if self.warnings.is_empty() {
                String::new()
            } else {
                format!("; {} warnings", self.warnings.len())
            }
        )
    }
}

/// Run an export.
pub fn run(opts: &ExportOptions) -> Result<ExportReport> {
    let started = Instant::now();
    let store = Store::open_to_read(&opts.store)?;
    let folders: Vec<FolderRow> = store
        .index
        .folders()?
        .into_iter()
        .filter(|f| f.gone_at.is_none())
        .collect();
    let paths: Vec<String> = folders.iter().map(|f| f.path.clone()).collect();
    let unmatched = opts.selection.unmatched(&paths);
    if !unmatched.is_empty() {
        bail!(
            "no folder {} in store {}; `imapferry status --store {}` lists them",
            printable(&unmatched.join(", ")),
            opts.store.display(),
            opts.store.display()
        );
    }
    prepare_out(&opts.out)?;
    let mut report = ExportReport::default();
    let host = hostname();
    for f in folders.iter().filter(|f| opts.selection.includes(&f.path)) {
        match writer_for(opts, &f.path, &host)? {
            Ok(w) => export_folder(&store, opts, f, w, &mut report)?,
            Err(reason) => report.failures.push(Failure {
                folder: f.path.clone(),
                uid: None,
                reason,
            }),
        }
    }
    for w in &report.warnings {
        ui::warn(&printable(w));
    }
    for f in &report.failures {
        ui::warn(&printable(&format!(
            "not exported: {}: {}",
            f.folder, f.reason
        )));
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The writer of folder `path`, or (`Ok(Err(reason))`) why it has no file of its own: the
/// folder is then listed as not exported and the others are written.
fn writer_for(opts: &ExportOptions, path: &str, host: &str) -> Result<Result<Writer, String>> {
    let problem = match opts.format {
        Format::Maildir => maildir_problem(path),
        Format::Mbox => mbox_problem(&opts.out, path),
    };
    if let Some(reason) = problem {
        return Ok(Err(reason));
    }
    let w = match opts.format {
        Format::Maildir => MaildirWriter::new(&opts.out, path, host).map(Writer::Maildir),
        Format::Mbox => MboxWriter::new(&opts.out, path).map(Writer::Mbox),
    };
    match w {
        Ok(w) => Ok(Ok(w)),
        // A file system whose names or paths are shorter than the usual 255 and 4 095 bytes.
        Err(e) if name_too_long(&e) => Ok(Err(
            "the file system refuses its file name as too long".into()
        )),
        Err(e) => Err(e),
    }
}

/// Whether `e` is the file system's "file name too long" (ENAMETOOLONG).
fn name_too_long(e: &anyhow::Error) -> bool {
    let errno = rustix::io::Errno::NAMETOOLONG.raw_os_error();
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.raw_os_error() == Some(errno))
    })
}

/// The longest path a system call takes (PATH_MAX, 4 096 bytes with the final NUL).
const MAX_PATH: usize = 4095;

/// Why folder `path` cannot be written as an mbox file under `out`: each level is a name of
/// its own ([`mbox_level`] keeps it short), but the whole path may be longer than a path may be.
fn mbox_problem(out: &Path, path: &str) -> Option<String> {
    let len = mbox_file(out, path).as_os_str().len();
    (len > MAX_PATH).then(|| {
        format!(
            "its mbox file's path would be {len} bytes, more than the {MAX_PATH} a path may have"
        )
    })
}

/// Why folder `path` cannot be written as a Maildir++ folder: a path no store should hold has
/// no name of its own (`a//b` would be `.a..b`, the empty path the root), and the whole path is
/// one directory name, which file systems limit to 255 bytes.
fn maildir_problem(path: &str) -> Option<String> {
    if let Some(p) = folder_path_problem(path) {
        return Some(format!("{p}: no Maildir++ name of its own"));
    }
    let len = maildir::folder_dir(path).len();
    (len > 255).then(|| {
        format!("its Maildir++ name would be {len} bytes, more than the 255 a file name may have")
    })
}

/// Write the live messages of folder `f` with `w`.
fn export_folder(
    store: &Store,
    opts: &ExportOptions,
    f: &FolderRow,
    mut w: Writer,
    report: &mut ExportReport,
) -> Result<()> {
    let messages = match f.state.uidvalidity {
        Some(uv) => store.index.live_messages(f.id, uv)?,
        None => Vec::new(),
    };
    let folder = printable(&f.path);
    for m in &messages {
        let bytes = store.objects.read(&m.hash, m.size).with_context(|| {
            format!(
                "{folder} UID {}: cannot export it; `imapferry verify --store {}` checks the store",
                m.uid,
                opts.store.display()
            )
        })?;
        let time = parse_internaldate(&m.internaldate).unwrap_or_else(|| {
            report.warnings.push(format!(
                "{folder} UID {}: unreadable INTERNALDATE \"{}\"; using the Unix epoch",
                m.uid,
                printable(&m.internaldate)
            ));
            0
        });
        let dropped = w.add(&bytes, &m.flags, time)?;
        if !dropped.is_empty() {
            report.warnings.push(format!(
                "{folder} UID {}: flags {} cannot be stored in this format",
                m.uid,
                printable(&dropped.join(" "))
            ));
        }
        report.messages += 1;
        report.bytes += bytes.len() as u64;
    }
    w.finish()?;
    ui::detail(&format!("{folder}: {} messages", messages.len()));
    report.folders += 1;
    Ok(())
}

/// Create `out` (0700) or accept it when it is an empty directory.
fn prepare_out(out: &Path) -> Result<()> {
    match fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} is not empty; export into a new or empty directory",
                    out.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create directory {}", parent.display()))?;
            }
            mkdir_private(out)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", out.display())),
    }
}

fn mkdir_private(dir: &Path) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot create directory {}", dir.display())),
    }
}

fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

/// The host part of Maildir file names (`/` and `:` are not allowed there).
fn hostname() -> String {
    let h = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let h = h.trim().replace('/', "\\057").replace(':', "\\072");
    if h.is_empty() {
        "localhost".into()
    } else {
        h
    }
}

enum Writer {
    Maildir(MaildirWriter),
    Mbox(MboxWriter),
}

impl Writer {
    /// Write one message; returns the flags the format could not hold.
    fn add(&mut self, bytes: &[u8], flags: &[String], time: i64) -> Result<Vec<String>> {
        match self {
            Writer::Maildir(w) => w.add(bytes, flags, time),
            Writer::Mbox(w) => w.add(bytes, time).map(|()| Vec::new()),
        }
    }

    fn finish(self) -> Result<()> {
        match self {
            Writer::Maildir(w) => w.finish(),
            Writer::Mbox(w) => w.finish(),
        }
    }
}

/// One Maildir++ folder being written.
struct MaildirWriter {
    dir: PathBuf,
    host: String,
    keywords: Vec<String>,
    n: u64,
}

impl MaildirWriter {
    fn new(root: &Path, path: &str, host: &str) -> Result<MaildirWriter> {
        let dir = root.join(maildir::folder_dir(path));
        mkdir_private(&dir)?;
        for sub in ["cur", "new", "tmp"] {
            mkdir_private(&dir.join(sub))?;
        }
        if path != "INBOX" {
            // Maildir++ marks subfolders with this empty file.
            create_private(&dir.join("maildirfolder"))?;
        }
        Ok(MaildirWriter {
            dir,
            host: host.to_string(),
            keywords: Vec::new(),
            n: 0,
        })
    }

    fn add(&mut self, bytes: &[u8], flags: &[String], time: i64) -> Result<Vec<String>> {
        let (letters, dropped) = maildir::info_letters(flags, &mut self.keywords);
        self.n += 1;
        let base = format!(
            "{}.P{}Q{}.{},S={}",
            time.max(0),
            std::process::id(),
            self.n,
            self.host,
            bytes.len()
        );
        // The Maildir way: write in tmp/, then rename into cur/.
        let tmp = self.dir.join("tmp").join(&base);
        let mut f = create_private(&tmp)?;
        let mtime = UNIX_EPOCH + Duration::from_secs(time.max(0) as u64);
        f.write_all(bytes)
            .and_then(|()| {
                f.set_times(fs::FileTimes::new().set_modified(mtime).set_accessed(mtime))
            })
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(f);
        let dest = self.dir.join("cur").join(format!("{base}:2,{letters}"));
        fs::rename(&tmp, &dest)
            .with_context(|| format!("cannot move {} to {}", tmp.display(), dest.display()))?;
        Ok(dropped)
    }

    fn finish(self) -> Result<()> {
        if !self.keywords.is_empty() {
            let path = self.dir.join("dovecot-keywords");
            let mut f = create_private(&path)?;
            f.write_all(maildir::keywords_file(&self.keywords).as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }
}

/// One mbox file being written.
struct MboxWriter {
    path: PathBuf,
    w: BufWriter<File>,
}

/// Longest escaped level kept whole (file systems take 255 bytes per name, `.mbox` included).
const MAX_LEVEL: usize = 200;

/// One level of a folder path as a file name, the last one with `.mbox` appended. `%`, control
/// characters (NUL, ESC, DEL, …), a leading `.` and the `.` of a trailing `.mbox` are written
/// `%XX` (each byte in hex); an empty level (`a//b`, `/x`) is `%`. So no name is empty, `.`,
/// `..` or hidden, holds a control character, or ends in `.mbox` unless it is a folder's file,
/// and two folder paths never share a file. A level whose escaped name is longer than
/// [`MAX_LEVEL`] bytes keeps its start and ends in `%~` and 16 hex digits of its SHA-256.
fn mbox_level(level: &str, last: bool) -> String {
    let mut out = String::new();
    if level.is_empty() {
        out.push('%');
    }
    for (i, c) in level.char_indices() {
        if c == '%' || c.is_control() || (i == 0 && c == '.') {
            for b in c.encode_utf8(&mut [0; 4]).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    if out.ends_with(".mbox") {
        out.replace_range(out.len() - 5..out.len() - 4, "%2E");
    }
    if out.len() > MAX_LEVEL {
        let mut cut = MAX_LEVEL - 18;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        let digest = crate::store::Hash::of(level.as_bytes()).to_hex();
        out.truncate(cut);
        out.push_str("%~");
        out.push_str(&digest[..16]);
    }
    if last {
        out.push_str(".mbox");
    }
    out
}

/// `<out>/<folder path>.mbox`, each level escaped by [`mbox_level`]: `Archive/2024` is
/// `Archive/2024.mbox`; every folder gets its own file, inside `out`, whatever its name.
pub fn mbox_file(out: &Path, folder: &str) -> PathBuf {
    let levels: Vec<&str> = folder.split('/').collect();
    let mut p = out.to_path_buf();
    for (i, level) in levels.iter().enumerate() {
        p.push(mbox_level(level, i + 1 == levels.len()));
    }
    p
}

impl MboxWriter {
    fn new(root: &Path, folder: &str) -> Result<MboxWriter> {
        let path = mbox_file(root, folder);
        let mut dir = root.to_path_buf();
        if let Ok(rel) = path.parent().unwrap_or(root).strip_prefix(root) {
            for c in rel.components() {
                dir.push(c);
                mkdir_private(&dir)?;
            }
        }
        let f = create_private(&path)?;
        Ok(MboxWriter {
            path,
            w: BufWriter::new(f),
        })
    }

    fn add(&mut self, bytes: &[u8], time: i64) -> Result<()> {
        mbox::write_message(&mut self.w, bytes, time)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn finish(self) -> Result<()> {
        let path = self.path;
        let f = self
            .w
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", path.display()))?;
        f.sync_all()
            .with_context(|| format!("cannot write {}", path.display()))
    }
}
