//! `imapferry import`: bring a local Maildir tree or an mbox file into a store, as folders and
//! messages `push` can send like pulled mail.
//!
//! - Maildir: every directory under the root holding `cur/` and `new/` is a folder. The root is
//!   INBOX; Maildir++ subdirectories (`.Archive.2024`) are decoded as in [`crate::maildir`];
//!   other nested maildirs (mbsync's `Archive/2024`) take their relative path. Flags come from
//!   the `:2,` info (keywords through the folder's `dovecot-keywords`); files in `new/` are
//!   unseen. INTERNALDATE is the file's mtime.
//! - mbox (mboxrd, see [`crate::mbox`]): one folder, named by `--folder` or the file name
//!   (`inbox` becomes INBOX). INTERNALDATE comes from the `From ` line; flags from the
//!   `Status:` (R → \Seen) and `X-Status:` (A \Answered, F \Flagged, T \Draft, D \Deleted)
//!   headers, which stay in the message.
//!
//! Line endings become CRLF (each bare LF gets a CR), the form IMAP servers serve and store;
//! files already in CRLF are kept byte for byte. A folder new to the store gets UIDVALIDITY =
//! the import's Unix time and UIDs from 1 in file order; importing into it again continues after
//! its highest UID. Deduplication is by content within a folder: a message whose bytes the
//! folder already holds (as many times) is skipped, so importing twice adds nothing.
//! Objects are shared with the rest of the store as always.
//!
//! A store that mirrors an account (made by `pull` or bundles) is refused: the next pull would
//! treat imported messages as deleted on the server. Import into a store of its own.
//!
//! The tree may be hostile (an unpacked archive, say). Import never leaves it: symbolic links
//! (a `cur/`, `new/`, message file, keywords file or folder directory) are not followed, and
//! only regular files are read (a FIFO would hang the run). Whatever cannot be imported (such a
//! link, an unreadable or oversized file, a bad keyword line, a folder name that does not
//! decode or two directories for one folder) is listed in `failures` with its path and reason,
//! and the rest is imported; the exit status is then 3. An mbox streams: one message at a time.

use std::collections::BTreeMap;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::bundle::format::MAX_OBJECT;
use crate::clock::now;
use crate::mailtime::{parse_asctime, InternalDate};
use crate::names::utf7;
use crate::store::rules::folder_path_problem;
use crate::store::{FolderRow, FolderState, HeaderFacts, NewMessage, Store};
use crate::ui::{self, human_bytes, printable};
use crate::{maildir, mbox};

/// The largest message imported: what a bundle can carry, so whatever is imported can be
/// bundled.
const MAX_MESSAGE: u64 = MAX_OBJECT;
/// A `dovecot-keywords` file holds at most 26 short lines.
const MAX_KEYWORDS_FILE: u64 = 64 << 10;
/// Why a symbolic link is passed over.
const LINK: &str = "a symbolic link, not followed (import stays inside the tree it is given)";

/// Where the mail comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Maildir(PathBuf),
    Mbox(PathBuf),
}

/// What to import.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub store: PathBuf,
    pub source: Source,
    /// Maildir: the folder the root becomes (subfolders go below it). mbox: the folder.
    pub folder: Option<String>,
}

/// Counts of one folder.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderImport {
    pub folder: String,
    pub added: u64,
    /// Already in the folder (same bytes).
    pub skipped: u64,
}

/// A file, directory, keyword or mbox message that was not imported, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Skipped {
    /// The folder it was for, when known.
    pub folder: Option<String>,
    /// Always null (a message gets its UID when it is imported); the field keeps the shape of
    /// pull's and push's failures.
    pub uid: Option<u32>,
    /// The file or directory (an mbox message: the mbox, with the message's number in `reason`).
    pub path: String,
    pub reason: String,
}

/// The outcome of an import.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub folders: u64,
    pub added: u64,
    /// Messages already in their folder.
    pub skipped: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Peak resident memory of the process (an mbox streams: one message at a time).
    pub peak_rss_bytes: Option<u64>,
    pub per_folder: Vec<FolderImport>,
    /// What was not imported (exit status 3 when there is any).
    pub failures: Vec<Skipped>,
    pub warnings: Vec<String>,
}

impl ImportReport {
    /// List `path` as not imported (for `folder`, when known).
    fn skip(&mut self, folder: Option<&str>, path: &Path, reason: impl Into<String>) {
        self.failures.push(Skipped {
            folder: folder.map(String::from),
            uid: None,
            path: path.display().to_string(),
            reason: reason.into(),
        });
    }
}

impl ImportReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        format!(
            "import: {} folders, {} messages added ({}), {} already there; {:.1} s{}{}",
            self.folders,
            self.added,
            human_bytes(self.bytes),
            self.skipped,
            self.seconds,
            if self.failures.is_empty() {
                String::new()
            } else {
                format!("; {} not imported (listed above)", self.failures.len())
            },
            if self.warnings.is_empty() {
                String::new()
            } else {
                format!("; {} warnings", self.warnings.len())
            }
        )
    }
}

/// One message to import, or something listed instead.
enum Item {
    /// A Maildir file, read when its turn comes.
    File {
        path: PathBuf,
        flags: Vec<String>,
        time: i64,
    },
    /// An mbox message, read already.
    Bytes {
        bytes: Vec<u8>,
        flags: Vec<String>,
        time: i64,
    },
    /// Not imported: listed with its reason.
    Skip(Skipped),
}

/// Commit the index at least this often (messages).
const COMMIT_EVERY: usize = 500;

/// Run an import.
pub fn run(opts: &ImportOptions) -> Result<ImportReport> {
    let started = Instant::now();
    let mut report = ImportReport::default();
    let under = opts.folder.as_deref().map(|f| f.trim_matches('/'));
    if let Some(p) = under.and_then(folder_path_problem) {
        bail!("--folder \"{}\": {p}", printable(under.unwrap_or_default()));
    }
    let mbox_folder = match &opts.source {
        Source::Mbox(file) => Some(mbox_folder(file, under)?),
        Source::Maildir(_) => None,
    };
    let mut store = Store::open_or_create(&opts.store)?;
    if let Some((host, user)) = store.index.account()? {
        bail!(
            "store {} mirrors {} on {}; a later pull would treat imported messages as deleted \
             there. Import into a store of its own (and push both)",
            opts.store.display(),
            printable(&user),
            printable(&host)
        );
    }
    let uidvalidity = (now().clamp(1, i64::from(u32::MAX))) as u32;
    match &opts.source {
        Source::Maildir(root) => {
            for (folder, dir) in maildirs(root, under, &mut report)? {
                let items = maildir_items(&dir, &folder, &mut report);
                let items = items.into_iter().map(Ok);
                import_folder(&mut store, &folder, uidvalidity, items, &mut report)?;
            }
        }
        Source::Mbox(file) => {
            let folder = mbox_folder.unwrap_or_default();
            import_mbox(&mut store, file, &folder, uidvalidity, &mut report)?;
        }
    }
    // Paths, names and reasons hold what the files held: escaped for the terminal.
    for f in &report.failures {
        ui::warn(&printable(&format!(
            "not imported: {}: {}",
            f.path, f.reason
        )));
    }
    for w in &report.warnings {
        ui::warn(&printable(w));
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.peak_rss_bytes = ui::peak_rss_bytes();
    Ok(report)
}

/// The folder an mbox goes to: `--folder`, or one named after the file.
fn mbox_folder(file: &Path, folder: Option<&str>) -> Result<String> {
    let folder = match folder {
        Some(f) => f.to_string(),
        None => mbox_folder_name(file),
    };
    if let Some(p) = folder_path_problem(&folder) {
        bail!(
            "{}: folder \"{}\": {p}; name one with --folder",
            printable(&file.display().to_string()),
            printable(&folder)
        );
    }
    Ok(folder)
}

/// An mbox, one message at a time: never more of it in memory than the message at hand.
fn import_mbox(
    store: &mut Store,
    file: &Path,
    folder: &str,
    uidvalidity: u32,
    report: &mut ImportReport,
) -> Result<()> {
    let f = File::open(file).with_context(|| format!("cannot open mbox {}", file.display()))?;
    let mut reader =
        mbox::MboxReader::new(BufReader::with_capacity(1 << 20, f)).with_limit(MAX_MESSAGE);
    let mut n = 0u64;
    let items = std::iter::from_fn(|| {
        let m = match reader.next_message() {
            Ok(Some(m)) => m,
            Ok(None) => return None,
            Err(e) => {
                let e = anyhow::Error::new(e);
                return Some(Err(
                    e.context(format!("cannot read mbox {}", file.display()))
                ));
            }
        };
        n += 1;
        Some(Ok(match m.too_long {
            Some(len) => Item::Skip(Skipped {
                folder: Some(folder.to_string()),
                uid: None,
                path: file.display().to_string(),
                reason: format!(
                    "message {n} (From {}): {len} bytes, more than the {MAX_MESSAGE} a store \
                     takes in one message",
                    printable(&m.from_line)
                ),
            }),
            None => Item::Bytes {
                time: m
                    .from_line
                    .split_once(' ')
                    .and_then(|(_, date)| parse_asctime(date))
                    .unwrap_or_else(now),
                flags: mbox_flags(&m.bytes),
                bytes: m.bytes,
            },
        }))
    });
    import_folder(store, folder, uidvalidity, items, report)?;
    if reader.skipped > 0 {
        report.warnings.push(format!(
            "{}: {} bytes before the first `From ` line were ignored (is it an mbox?)",
            printable(&file.display().to_string()),
            reader.skipped
        ));
    }
    Ok(())
}

/// `inbox`/`INBOX` (any case, `.mbox` stripped) becomes INBOX; else the file stem.
fn mbox_folder_name(file: &Path) -> String {
    let stem = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "INBOX".into());
    let stem = stem.strip_suffix(".mbox").unwrap_or(&stem).to_string();
    if stem.eq_ignore_ascii_case("inbox") || stem.is_empty() {
        "INBOX".into()
    } else {
        stem
    }
}

/// Flags from `Status:` and `X-Status:` in the header section.
fn mbox_flags(msg: &[u8]) -> Vec<String> {
    let end = msg
        .windows(2)
        .position(|w| w == b"\n\n")
        .or_else(|| msg.windows(4).position(|w| w == b"\r\n\r\n"))
        .unwrap_or(msg.len());
    let mut flags = Vec::new();
    for line in msg[..end].split(|&b| b == b'\n') {
        let text = String::from_utf8_lossy(line);
        let Some((name, value)) = text.split_once(':') else {
            continue;
        };
        let value = value.trim();
        let map: &[(char, &str)] = if name.eq_ignore_ascii_case("Status") {
            &[('R', "\\Seen")]
        } else if name.eq_ignore_ascii_case("X-Status") {
            &[
                ('A', "\\Answered"),
                ('F', "\\Flagged"),
                ('T', "\\Draft"),
                ('D', "\\Deleted"),
            ]
        } else {
            continue;
        };
        for (c, flag) in map {
            if value.contains(*c) && !flags.iter().any(|f| f == flag) {
                flags.push(flag.to_string());
            }
        }
    }
    flags
}

/// The maildirs under `root` with their store folder paths, sorted by path. Symbolic links are
/// not followed; a directory that cannot become a folder is listed in the report.
fn maildirs(
    root: &Path,
    under: Option<&str>,
    report: &mut ImportReport,
) -> Result<Vec<(String, PathBuf)>> {
    if !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
    let walk = walkdir::WalkDir::new(root)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            e.depth() == 0
                || !(e.file_type().is_dir()
                    && matches!(e.file_name().to_str(), Some("cur" | "new" | "tmp")))
        });
    for entry in walk {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                let path = e.path().unwrap_or(root).to_path_buf();
                report.skip(None, &path, format!("cannot read it: {e}"));
                continue;
            }
        };
        let path = entry.path();
        if entry.file_type().is_symlink() {
            // A linked cur/ or new/ is listed with its maildir; other links to files are not
            // mail. A link to a directory might have been a folder.
            let in_maildir = matches!(entry.file_name().to_str(), Some("cur" | "new" | "tmp"))
                && path.parent().is_some_and(is_maildir);
            if !in_maildir && fs::metadata(path).is_ok_and(|m| m.is_dir()) {
                report.skip(None, path, LINK);
            }
            continue;
        }
        if !entry.file_type().is_dir() || !is_maildir(path) {
            continue;
        }
        let folder = match folder_of(root, path, under) {
            Ok(f) => f,
            Err(reason) => {
                report.skip(None, path, reason);
                continue;
            }
        };
        match out.get(&folder) {
            Some(prev) => {
                let reason = format!(
                    "it would also become folder \"{}\", which {} is already",
                    printable(&folder),
                    prev.display()
                );
                report.skip(Some(&folder), path, reason);
            }
            None => {
                out.insert(folder, path.to_path_buf());
            }
        }
    }
    if out.is_empty() {
        bail!(
            "no maildir under {} (a maildir is a directory with cur/ and new/)",
            root.display()
        );
    }
    Ok(out.into_iter().collect())
}

/// A maildir: a directory with `cur` and `new` entries (links among them are listed later).
fn is_maildir(d: &Path) -> bool {
    fs::symlink_metadata(d.join("cur")).is_ok() && fs::symlink_metadata(d.join("new")).is_ok()
}

/// The store folder of the maildir `dir` under `root`: INBOX for the root, a Maildir++ name
/// (`.Archive.2024`) decoded, or a nested path (`Archive/2024`, each level modified UTF-7 or
/// as it is); below `under` when given. An error says why the name cannot be a folder.
fn folder_of(root: &Path, dir: &Path, under: Option<&str>) -> Result<String, String> {
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let comps: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let name = match comps.as_slice() {
        [] => None,
        [one] if one.starts_with('.') => Some(maildir::folder_path(one).ok_or(
            "not a Maildir++ folder name that decodes to a folder (an empty level, bad \
             modified UTF-7, or a / or NUL inside a level)",
        )?),
        _ => {
            let mut levels = Vec::new();
            for c in &comps {
                let level = utf7::decode(c).unwrap_or_else(|_| c.clone());
                if level.contains(['/', '\0']) {
                    return Err("its name decodes to a / or NUL inside a level".into());
                }
                levels.push(level);
            }
            Some(levels.join("/"))
        }
    };
    let folder = match (under, name) {
        (None, None) => "INBOX".to_string(),
        (None, Some(n)) if n.eq_ignore_ascii_case("inbox") => "INBOX".to_string(),
        (None, Some(n)) => n,
        (Some(u), None) => u.to_string(),
        (Some(u), Some(n)) => format!("{u}/{n}"),
    };
    match folder_path_problem(&folder) {
        Some(p) => Err(format!("folder \"{}\": {p}", printable(&folder))),
        None => Ok(folder),
    }
}

/// The messages of one maildir, `new/` then `cur/`, each by file name. Only regular files are
/// taken; links and anything else are listed.
fn maildir_items(dir: &Path, folder: &str, report: &mut ImportReport) -> Vec<Item> {
    let keywords = read_keywords(dir, folder, report);
    let mut items = Vec::new();
    for sub in ["new", "cur"] {
        let d = dir.join(sub);
        match fs::symlink_metadata(&d) {
            Err(_) => continue,
            Ok(m) if m.file_type().is_symlink() => {
                report.skip(Some(folder), &d, LINK);
                continue;
            }
            Ok(m) if !m.is_dir() => {
                report.skip(Some(folder), &d, "not a directory");
                continue;
            }
            Ok(_) => {}
        }
        let mut names: Vec<(String, PathBuf, Metadata)> = Vec::new();
        let entries = match fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                report.skip(Some(folder), &d, format!("cannot read it: {e}"));
                continue;
            }
        };
        for e in entries {
            let e = match e {
                Ok(e) => e,
                Err(err) => {
                    report.skip(Some(folder), &d, format!("cannot list it: {err}"));
                    break;
                }
            };
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            // DirEntry::metadata does not follow a link.
            match e.metadata() {
                Ok(m) if m.is_file() => names.push((name, e.path(), m)),
                Ok(m) => report.skip(Some(folder), &e.path(), not_a_file(&m)),
                Err(err) => report.skip(Some(folder), &e.path(), format!("cannot stat it: {err}")),
            }
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, path, meta) in names {
            let flags = if sub == "cur" {
                maildir::flags_of(&name, &keywords)
            } else {
                Vec::new()
            };
            let time = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or_else(now, |d| d.as_secs() as i64);
            items.push(Item::File { path, flags, time });
        }
    }
    items
}

/// Why a directory entry that is not a regular file is not read.
fn not_a_file(m: &Metadata) -> &'static str {
    if m.file_type().is_symlink() {
        LINK
    } else if m.is_dir() {
        "a directory where messages are files"
    } else {
        "not a regular file (a FIFO, socket or device would hang or mislead the import)"
    }
}

/// The maildir's `dovecot-keywords` (letter `a` = index 0); a bad line is listed and costs only
/// its keyword, a bad file only the keywords.
fn read_keywords(dir: &Path, folder: &str, report: &mut ImportReport) -> Vec<String> {
    let path = dir.join("dovecot-keywords");
    if fs::symlink_metadata(&path).is_err() {
        return Vec::new();
    }
    let text = match read_regular_file(&path, MAX_KEYWORDS_FILE).map(String::from_utf8) {
        Ok(Ok(text)) => text,
        Ok(Err(_)) => {
            report.skip(Some(folder), &path, "not UTF-8; keywords ignored");
            return Vec::new();
        }
        Err(reason) => {
            report.skip(Some(folder), &path, format!("{reason}; keywords ignored"));
            return Vec::new();
        }
    };
    let (keywords, problems) = maildir::parse_keywords_file(&text);
    for p in problems {
        report.skip(
            Some(folder),
            &path,
            format!("{p}; that keyword is left out"),
        );
    }
    keywords
}

/// The bytes of the regular file at `path`, at most `max` of them, or why not. A link put in its
/// place since it was listed is not followed: the file opened must be the one `lstat` saw (same
/// device and inode), and on Linux it is opened with `O_NOFOLLOW` and `O_NONBLOCK` (a FIFO
/// swapped in cannot block the run).
fn read_regular_file(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    let listed = fs::symlink_metadata(path).map_err(|e| format!("cannot read it: {e}"))?;
    if !listed.is_file() {
        return Err(not_a_file(&listed).into());
    }
    let too_big = |n: u64| format!("{n} bytes, more than the {max} taken from such a file");
    if listed.len() > max {
        return Err(too_big(listed.len()));
    }
    let mut open = OpenOptions::new();
    open.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK;
        open.custom_flags(flags.bits() as i32);
    }
    let f = open
        .open(path)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("cannot read it: {e}"))?;
    if !meta.is_file() || (meta.dev(), meta.ino()) != (listed.dev(), listed.ino()) {
        return Err("it was replaced while the import ran".into());
    }
    let mut bytes = Vec::with_capacity(meta.len().min(max) as usize);
    f.take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read it: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(too_big(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Every bare LF becomes CRLF; anything else is kept.
pub fn to_crlf(bytes: Vec<u8>) -> Vec<u8> {
    let bare = bytes
        .iter()
        .enumerate()
        .filter(|&(i, &b)| b == b'\n' && (i == 0 || bytes[i - 1] != b'\r'))
        .count();
    if bare == 0 {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len() + bare);
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' && (i == 0 || bytes[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

/// Well-known folder names to special-use roles, so push puts them in host2's folder of that
/// role (its "Sent Items", say).
fn guess_role(path: &str) -> Option<&'static str> {
    match path.to_ascii_lowercase().as_str() {
        "sent" | "sent items" | "sent messages" => Some("\\Sent"),
        "drafts" => Some("\\Drafts"),
        "trash" | "deleted items" => Some("\\Trash"),
        "junk" | "spam" => Some("\\Junk"),
        "archive" => Some("\\Archive"),
        _ => None,
    }
}

/// Import `items` into `folder` (made when new) one at a time; what cannot be read is listed.
/// An error from `items` (the mbox cannot be read) ends the import after committing what came
/// before it.
fn import_folder(
    store: &mut Store,
    folder: &str,
    new_uidvalidity: u32,
    items: impl Iterator<Item = Result<Item>>,
    report: &mut ImportReport,
) -> Result<()> {
    let (folder_id, uidvalidity) = folder_for_import(store, folder, new_uidvalidity)?;
    let mut have = copies_held(store, folder_id, uidvalidity)?;
    let mut next_uid = u64::from(store.index.max_uid(folder_id, uidvalidity)?.unwrap_or(0)) + 1;
    let mut fr = FolderImport {
        folder: folder.to_string(),
        ..Default::default()
    };
    let mut pending: Vec<(NewMessage, u64, HeaderFacts)> = Vec::new();
    for item in items {
        let (raw, flags, time) = match item.map(|i| message_of(i, folder, report)) {
            Ok(Some(m)) => m,
            Ok(None) => continue,
            Err(e) => {
                commit(store, folder_id, &mut pending, uidvalidity, next_uid)?;
                return Err(e);
            }
        };
        let bytes = to_crlf(raw);
        let hash = crate::store::Hash::of(&bytes);
        if let Some(n) = have.get_mut(&hash).filter(|n| **n > 0) {
            *n -= 1;
            fr.skipped += 1;
            continue;
        }
        // UIDs are below 2^32, and UIDNEXT must fit too.
        let uid = match u32::try_from(next_uid) {
            Ok(uid) if uid < u32::MAX => uid,
            _ => {
                report.warnings.push(format!(
                    "{}: no UIDs left under UIDVALIDITY {uidvalidity}; the rest was not imported",
                    printable(folder)
                ));
                break;
            }
        };
        let (hash, stored) = store.objects.write(&bytes)?;
        let facts = HeaderFacts::parse(&bytes);
        pending.push((
            NewMessage {
                uidvalidity,
                uid,
                hash,
                size: bytes.len() as u64,
                flags,
                internaldate: InternalDate::from_unix(time),
                gmail: None,
            },
            stored,
            facts,
        ));
        next_uid += 1;
        fr.added += 1;
        report.bytes += bytes.len() as u64;
        if pending.len() >= COMMIT_EVERY {
            commit(store, folder_id, &mut pending, uidvalidity, next_uid)?;
        }
    }
    commit(store, folder_id, &mut pending, uidvalidity, next_uid)?;
    ui::detail(&format!(
        "{}: {} added, {} already there",
        printable(folder),
        fr.added,
        fr.skipped
    ));
    report.folders += 1;
    report.added += fr.added;
    report.skipped += fr.skipped;
    report.per_folder.push(fr);
    Ok(())
}

/// How many copies of each content the folder holds already.
fn copies_held(
    store: &Store,
    folder_id: i64,
    uidvalidity: u32,
) -> Result<BTreeMap<crate::store::Hash, usize>> {
    let mut have = BTreeMap::new();
    for m in store.index.live_messages(folder_id, uidvalidity)? {
        *have.entry(m.hash).or_default() += 1;
    }
    Ok(have)
}

/// The bytes, flags and time of an item, or `None` when it is listed instead (in `report`).
fn message_of(
    item: Item,
    folder: &str,
    report: &mut ImportReport,
) -> Option<(Vec<u8>, Vec<String>, i64)> {
    match item {
        Item::Bytes { bytes, flags, time } => Some((bytes, flags, time)),
        Item::File { path, flags, time } => match read_regular_file(&path, MAX_MESSAGE) {
            Ok(bytes) => Some((bytes, flags, time)),
            Err(reason) => {
                report.skip(Some(folder), &path, reason);
                None
            }
        },
        Item::Skip(s) => {
            report.failures.push(s);
            None
        }
    }
}

/// The folder's id and UIDVALIDITY: the existing folder of that path, or a new one.
fn folder_for_import(store: &mut Store, folder: &str, new_uidvalidity: u32) -> Result<(i64, u32)> {
    let existing = store
        .index
        .folders()?
        .into_iter()
        .find(|f| f.path == folder);
    if let Some(FolderRow {
        id,
        state: FolderState {
            uidvalidity: Some(uv),
            ..
        },
        gone_at: None,
        ..
    }) = existing
    {
        return Ok((id, uv));
    }
    let mut b = store.index.batch()?;
    let id = b.merge_folder(&FolderRow {
        id: 0,
        path: folder.to_string(),
        raw_name: crate::names::MailboxName::encode(folder),
        separator: Some('/'),
        role: guess_role(folder).map(String::from),
        subscribed: true,
        state: FolderState {
            uidvalidity: Some(new_uidvalidity),
            uidnext: Some(1),
            highestmodseq: None,
        },
        last_pull: None,
        gone_at: None,
        change: 0,
    })?;
    b.commit()?;
    Ok((id, new_uidvalidity))
}

/// Objects are durable first (the store's write protocol), then the rows and UIDNEXT commit.
fn commit(
    store: &mut Store,
    folder_id: i64,
    pending: &mut Vec<(NewMessage, u64, HeaderFacts)>,
    uidvalidity: u32,
    uidnext: u64,
) -> Result<()> {
    let uidnext = u32::try_from(uidnext).unwrap_or(u32::MAX);
    let mut b = store.index.batch_after_sync(&store.objects)?;
    for (m, stored, facts) in pending.drain(..) {
        b.add_object(&m.hash, m.size, stored, &facts)?;
        b.add_message(folder_id, &m)?;
    }
    b.set_folder_state(
        folder_id,
        &FolderState {
            uidvalidity: Some(uidvalidity),
            uidnext: Some(uidnext),
            highestmodseq: None,
        },
        now(),
    )?;
    b.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_and_flags() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n".to_vec()), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_crlf(b"\n".to_vec()), b"\r\n");
        assert_eq!(to_crlf(b"x\r\n".to_vec()), b"x\r\n");
        let f = mbox_flags(b"Subject: x\nStatus: RO\nX-Status: AF\n\nStatus: D\n");
        assert_eq!(f, ["\\Seen", "\\Answered", "\\Flagged"]);
        assert_eq!(mbox_folder_name(Path::new("/x/Inbox.mbox")), "INBOX");
        assert_eq!(mbox_folder_name(Path::new("/x/Archive")), "Archive");
    }
}
