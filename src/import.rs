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

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::{Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::imap::utf7;
use crate::mailtime::{parse_asctime, InternalDate};
use crate::store::index::now;
use crate::store::{FolderRow, FolderState, HeaderFacts, NewMessage, Store};
use crate::ui::{self, human_bytes};
use crate::{maildir, mbox};

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

/// The outcome of an import.
#[derive(Debug, Default, Serialize)]
pub struct ImportReport {
    pub folders: u64,
    pub added: u64,
    pub skipped: u64,
    pub bytes: u64,
    pub seconds: f64,
    pub per_folder: Vec<FolderImport>,
    pub warnings: Vec<String>,
}

impl ImportReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        format!(
            "import: {} folders, {} messages added ({}), {} already there; {:.1} s{}",
            self.folders,
            self.added,
            human_bytes(self.bytes),
            self.skipped,
            self.seconds,
            if self.warnings.is_empty() {
                String::new()
            } else {
                format!("; {} warnings", self.warnings.len())
            }
        )
    }
}

/// One message to import, its bytes read only when needed.
struct Item {
    /// The file (Maildir) or `None` (mbox: bytes given).
    path: Option<PathBuf>,
    bytes: Option<Vec<u8>>,
    flags: Vec<String>,
    time: i64,
}

/// Commit the index at least this often (messages).
const COMMIT_EVERY: usize = 500;

/// Run an import.
pub fn run(opts: &ImportOptions) -> Result<ImportReport> {
    let started = Instant::now();
    let mut report = ImportReport::default();
    let mut store = Store::open_or_create(&opts.store)?;
    if let Some((host, user)) = store.index.account()? {
        bail!(
            "store {} mirrors {user} on {host}; a later pull would treat imported messages as \
             deleted there. Import into a store of its own (and push both)",
            opts.store.display()
        );
    }
    let uidvalidity = (now().clamp(1, i64::from(u32::MAX))) as u32;
    match &opts.source {
        Source::Maildir(root) => {
            for (folder, dir) in maildirs(root, opts.folder.as_deref(), &mut report)? {
                let items = maildir_items(&dir, &mut report)?;
                import_folder(&mut store, &folder, uidvalidity, items, &mut report)?;
            }
        }
        Source::Mbox(file) => {
            let folder = match &opts.folder {
                Some(f) => f.trim_matches('/').to_string(),
                None => mbox_folder_name(file),
            };
            let f =
                File::open(file).with_context(|| format!("cannot open mbox {}", file.display()))?;
            let mut reader = mbox::MboxReader::new(BufReader::with_capacity(1 << 20, f));
            let mut items = Vec::new();
            while let Some(m) = reader
                .next_message()
                .with_context(|| format!("cannot read mbox {}", file.display()))?
            {
                let time = m
                    .from_line
                    .split_once(' ')
                    .and_then(|(_, date)| parse_asctime(date))
                    .unwrap_or_else(now);
                items.push(Item {
                    path: None,
                    flags: mbox_flags(&m.bytes),
                    bytes: Some(m.bytes),
                    time,
                });
            }
            if reader.skipped > 0 {
                report.warnings.push(format!(
                    "{}: {} bytes before the first `From ` line were ignored (is it an mbox?)",
                    file.display(),
                    reader.skipped
                ));
            }
            import_folder(&mut store, &folder, uidvalidity, items, &mut report)?;
        }
    }
    for w in &report.warnings {
        ui::warn(w);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
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

/// The maildirs under `root` with their store folder paths, sorted by path.
fn maildirs(
    root: &Path,
    under: Option<&str>,
    report: &mut ImportReport,
) -> Result<Vec<(String, PathBuf)>> {
    if !root.join("cur").is_dir() && !root.is_dir() {
        bail!("{} is not a directory", root.display());
    }
    let is_maildir = |d: &Path| d.join("cur").is_dir() && d.join("new").is_dir();
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
        let entry = entry.with_context(|| format!("cannot walk {}", root.display()))?;
        if !entry.file_type().is_dir() || !is_maildir(entry.path()) {
            continue;
        }
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let name = if rel.as_os_str().is_empty() {
            None
        } else {
            let comps: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if comps.len() == 1 && comps[0].starts_with('.') {
                match maildir::folder_path(&comps[0]) {
                    Some(p) => Some(p),
                    None => {
                        report.warnings.push(format!(
                            "{}: not a Maildir++ folder name I can decode; skipped",
                            entry.path().display()
                        ));
                        continue;
                    }
                }
            } else {
                Some(
                    comps
                        .iter()
                        .map(|c| utf7::decode(c).unwrap_or_else(|_| c.clone()))
                        .collect::<Vec<_>>()
                        .join("/"),
                )
            }
        };
        let folder = match (under.map(|u| u.trim_matches('/')), name) {
            (None, None) => "INBOX".to_string(),
            (None, Some(n)) if n.eq_ignore_ascii_case("inbox") => "INBOX".to_string(),
            (None, Some(n)) => n,
            (Some(u), None) => u.to_string(),
            (Some(u), Some(n)) => format!("{u}/{n}"),
        };
        if let Some(prev) = out.insert(folder.clone(), entry.path().to_path_buf()) {
            bail!(
                "{} and {} would both become folder {folder:?}",
                prev.display(),
                entry.path().display()
            );
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

/// The messages of one maildir, `new/` then `cur/`, each by file name.
fn maildir_items(dir: &Path, report: &mut ImportReport) -> Result<Vec<Item>> {
    let keywords = match fs::read_to_string(dir.join("dovecot-keywords")) {
        Ok(text) => maildir::parse_keywords_file(&text).unwrap_or_else(|e| {
            report.warnings.push(format!(
                "{}: {e:#}; keywords ignored",
                dir.join("dovecot-keywords").display()
            ));
            Vec::new()
        }),
        Err(_) => Vec::new(),
    };
    let mut items = Vec::new();
    for sub in ["new", "cur"] {
        let d = dir.join(sub);
        let mut names: Vec<(String, PathBuf)> = Vec::new();
        for e in fs::read_dir(&d).with_context(|| format!("cannot read {}", d.display()))? {
            let e = e.with_context(|| format!("cannot read {}", d.display()))?;
            if !e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                continue;
            }
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                continue;
            }
            names.push((name, e.path()));
        }
        names.sort();
        for (name, path) in names {
            let flags = if sub == "cur" {
                maildir::flags_of(&name, &keywords)
            } else {
                Vec::new()
            };
            let time = fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or_else(now, |d| d.as_secs() as i64);
            items.push(Item {
                path: Some(path),
                bytes: None,
                flags,
                time,
            });
        }
    }
    Ok(items)
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

fn import_folder(
    store: &mut Store,
    folder: &str,
    new_uidvalidity: u32,
    items: Vec<Item>,
    report: &mut ImportReport,
) -> Result<()> {
    let existing = store
        .index
        .folders()?
        .into_iter()
        .find(|f| f.path == folder);
    let (folder_id, uidvalidity) = match existing {
        Some(FolderRow {
            id,
            state:
                FolderState {
                    uidvalidity: Some(uv),
                    ..
                },
            gone_at: None,
            ..
        }) => (id, uv),
        _ => {
            let mut b = store.index.batch()?;
            let id = b.merge_folder(&FolderRow {
                id: 0,
                path: folder.to_string(),
                raw_name: utf7::encode(folder),
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
            (id, new_uidvalidity)
        }
    };
    // How many copies of each content the folder holds already.
    let mut have: BTreeMap<crate::store::Hash, usize> = BTreeMap::new();
    for m in store.index.live_messages(folder_id, uidvalidity)? {
        *have.entry(m.hash).or_default() += 1;
    }
    let mut next_uid = store.index.max_uid(folder_id, uidvalidity)?.unwrap_or(0) + 1;
    let mut fr = FolderImport {
        folder: folder.to_string(),
        ..Default::default()
    };
    let mut pending: Vec<(NewMessage, u64, HeaderFacts)> = Vec::new();
    for item in items {
        let raw = match (item.bytes, &item.path) {
            (Some(b), _) => b,
            (None, Some(p)) => {
                fs::read(p).with_context(|| format!("cannot read {}", p.display()))?
            }
            (None, None) => continue,
        };
        let bytes = to_crlf(raw);
        let hash = crate::store::Hash::of(&bytes);
        if let Some(n) = have.get_mut(&hash).filter(|n| **n > 0) {
            *n -= 1;
            fr.skipped += 1;
            continue;
        }
        let (hash, stored) = store.objects.write(&bytes)?;
        let facts = HeaderFacts::parse(&bytes);
        pending.push((
            NewMessage {
                uidvalidity,
                uid: next_uid,
                hash,
                size: bytes.len() as u64,
                flags: item.flags,
                internaldate: InternalDate::from_unix(item.time),
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
        "{folder}: {} added, {} already there",
        fr.added, fr.skipped
    ));
    report.folders += 1;
    report.added += fr.added;
    report.skipped += fr.skipped;
    report.per_folder.push(fr);
    Ok(())
}

/// Objects are durable first (the store's write protocol), then the rows and UIDNEXT commit.
fn commit(
    store: &mut Store,
    folder_id: i64,
    pending: &mut Vec<(NewMessage, u64, HeaderFacts)>,
    uidvalidity: u32,
    uidnext: u32,
) -> Result<()> {
    let mut b = store.index.batch()?;
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
    b.commit_after_sync(&store.objects)
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
