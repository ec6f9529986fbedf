//! `imapferry verify` and `imapferry gc`: check a store at rest, and free what nothing uses.
//!
//! verify re-reads every object (or a random sample), decompresses it and compares its SHA-256
//! with its name and its sizes with the index; checks that every message names an object that
//! is there, that SQLite finds its database sound, and that `objects/` holds nothing else; and
//! that no row is one `bundle apply` would refuse (a store damaged by an older apply). Each
//! problem is reported with the folders and UIDs it affects. Objects nothing refers to are not a
//! problem (a killed pull may leave some, see the store spec); they are counted for `gc`.
//!
//! gc removes objects that no message row (live or expunged) and no push intent names, rows
//! first and files after, so a crash in between leaves only more unreferenced files.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::store::audit::ObjectRow;
use crate::store::rules::{folder_path_problem, message_problem};
use crate::store::{FolderRow, Hash, MessageRow, Store};
use crate::ui::{human_bytes, printable};

/// One message affected by a problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MessageRef {
    pub folder: String,
    pub uidvalidity: u32,
    pub uid: u32,
    /// The message is marked expunged (only history is affected).
    pub expunged: bool,
}

/// Something wrong in the store.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// `missing`, `corrupt`, `stray` (an unexpected file under `objects/`), `index`, or
    /// `invalid` (a row `bundle apply` would refuse: UID or UIDVALIDITY 0, a bad INTERNALDATE, a
    /// size other than its object's, a folder path with an empty level).
    pub kind: String,
    /// The object's hash, when the problem is about one.
    pub object: Option<String>,
    /// The file concerned.
    pub path: Option<String>,
    pub detail: String,
    /// Messages whose bytes are affected.
    pub messages: Vec<MessageRef>,
}

/// What verify found.
#[derive(Debug, Default, Serialize)]
pub struct VerifyReport {
    /// The index's schema version, as found (verify does not upgrade it).
    pub schema: i64,
    /// Rows in `objects`.
    pub objects: u64,
    /// Objects decompressed and re-hashed.
    pub rehashed: u64,
    /// Uncompressed bytes re-hashed.
    pub rehashed_bytes: u64,
    /// Message rows (live and expunged).
    pub messages: u64,
    pub folders: u64,
    /// Objects `gc` would remove, and their size on disk.
    pub unreferenced: u64,
    pub unreferenced_bytes: u64,
    pub seconds: f64,
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// The report for humans: one line per affected message, then a summary.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for p in &self.problems {
            let what = match (&p.path, &p.object) {
                (Some(path), _) => format!("{path}: {}", p.detail),
                (None, Some(o)) if p.kind != "invalid" => format!("object {o}: {}", p.detail),
                _ => p.detail.clone(),
            };
            // Names and details may hold what a server, a bundle or a file chose: one escaped
            // line each.
            if p.messages.is_empty() {
                out.push_str(&printable(&format!("{}: {what}", p.kind)));
                out.push('\n');
            }
            for m in &p.messages {
                out.push_str(&printable(&format!(
                    "{}: {} UID {} (uidvalidity {}{}): {what}",
                    p.kind,
                    m.folder,
                    m.uid,
                    m.uidvalidity,
                    if m.expunged { ", expunged" } else { "" }
                )));
                out.push('\n');
            }
        }
        out.push_str(&format!(
            "verify: {} objects ({} of them re-hashed, {}), {} messages in {} folders: {}",
            self.objects,
            self.rehashed,
            human_bytes(self.rehashed_bytes),
            self.messages,
            self.folders,
            match self.problems.len() {
                0 => "no problems".to_string(),
                1 => "1 problem".to_string(),
                n => format!("{n} problems"),
            }
        ));
        if self.schema < crate::store::schema::current_version() {
            out.push_str(&format!(
                "\nnote: the index is schema {} (this imapferry writes {}); verify read it as it \
                 is, the next pull or push upgrades it",
                self.schema,
                crate::store::schema::current_version()
            ));
        }
        if self.unreferenced > 0 {
            out.push_str(&format!(
                "; {} unreferenced objects ({}) that `imapferry gc --yes` would remove",
                self.unreferenced,
                human_bytes(self.unreferenced_bytes)
            ));
        }
        if self.problems.iter().any(|p| p.kind != "invalid") {
            out.push_str(
                "\nThe messages listed cannot be pushed or exported as they are: \
                 `imapferry pull --repair` fetches them again from host1 and replaces the \
                 damaged objects (or restore the named files from a backup).",
            );
        }
        if self.problems.iter().any(|p| p.kind == "invalid") {
            out.push_str(
                "\nRows listed as invalid are ones no store should hold (an older `bundle apply` \
                 took them in): a bundle cannot carry them and a push may misplace them; make \
                 the store again from its source (pull, or a full bundle of a sound store).",
            );
        }
        out
    }
}

/// Verify the store at `dir`, re-hashing every object, or about `sample_percent` % of them
/// chosen at random (existence and sizes are checked for all).
pub fn verify(dir: &std::path::Path, sample_percent: Option<f64>) -> Result<VerifyReport> {
    let started = Instant::now();
    let store = Store::open_read_only(dir)?;
    let mut report = VerifyReport {
        schema: store.index.schema_version(),
        ..VerifyReport::default()
    };
    for line in store.index.sqlite_problems()? {
        report.problems.push(Problem {
            kind: "index".into(),
            object: None,
            path: Some(store.index.path().display().to_string()),
            detail: line,
            messages: vec![],
        });
    }

    let folder_rows = store.index.folders()?;
    report.problems.extend(invalid_folders(&folder_rows));
    let folders: BTreeMap<i64, String> = folder_rows.into_iter().map(|f| (f.id, f.path)).collect();
    report.folders = folders.len() as u64;
    let rows = store.index.object_rows()?;
    report.objects = rows.len() as u64;
    let sizes: BTreeMap<Hash, u64> = rows.iter().map(|r| (r.hash, r.size)).collect();
    let mut refs: BTreeMap<Hash, Vec<MessageRef>> = BTreeMap::new();
    for m in store.index.messages_changed_since(0)? {
        report.messages += 1;
        let r = MessageRef {
            folder: folders
                .get(&m.folder_id)
                .cloned()
                .unwrap_or_else(|| format!("(folder id {})", m.folder_id)),
            uidvalidity: m.uidvalidity,
            uid: m.uid,
            expunged: m.expunged_at.is_some(),
        };
        report.problems.extend(invalid_message(&m, &r, &sizes));
        refs.entry(m.hash).or_default().push(r);
    }

    let known: BTreeSet<Hash> = rows.iter().map(|r| r.hash).collect();
    for (hash, msgs) in &refs {
        if !known.contains(hash) {
            report.problems.push(Problem {
                kind: "missing".into(),
                object: Some(hash.to_hex()),
                path: Some(store.objects.path(hash).display().to_string()),
                detail: "the index has no objects row for it".into(),
                messages: msgs.clone(),
            });
        }
    }

    let on_disk = objects_on_disk(&store, &mut report);

    let seed = crate::clock::seed();
    for row in &rows {
        let sampled = match sample_percent {
            None => true,
            Some(p) => in_sample(&row.hash, seed, p),
        };
        if let Some(p) = check_object(&store, row, &on_disk, sampled, &mut report) {
            report.problems.push(Problem {
                messages: refs.get(&row.hash).cloned().unwrap_or_default(),
                ..p
            });
        }
    }

    for row in store.index.unreferenced_object_rows()? {
        report.unreferenced += 1;
        report.unreferenced_bytes += row.stored_size;
    }
    for h in on_disk.difference(&known) {
        report.unreferenced += 1;
        report.unreferenced_bytes += fs::metadata(store.objects.path(h)).map_or(0, |m| m.len());
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The object files under `objects/`; anything else there is a `stray` problem.
fn objects_on_disk(store: &Store, report: &mut VerifyReport) -> BTreeSet<Hash> {
    let mut on_disk = BTreeSet::new();
    for entry in store.objects.iter() {
        match entry {
            Ok(h) => {
                on_disk.insert(h);
            }
            Err(e) => report.problems.push(Problem {
                kind: "stray".into(),
                object: None,
                path: None,
                detail: format!("{e:#} (not part of the store format; move it away)"),
                messages: vec![],
            }),
        }
    }
    on_disk
}

/// Folder rows `bundle apply` would refuse (see [`crate::store::rules`]): a store written by an
/// older apply, or pulled from a server with such names, may hold them.
fn invalid_folders(folders: &[FolderRow]) -> Vec<Problem> {
    folders
        .iter()
        .filter_map(|f| {
            let detail = match folder_path_problem(&f.path) {
                Some(p) => p.to_string(),
                None if f.state.uidvalidity == Some(0) => "UIDVALIDITY 0".to_string(),
                None => return None,
            };
            Some(Problem {
                kind: "invalid".into(),
                object: None,
                path: None,
                detail: format!("folder \"{}\": {detail}", f.path),
                messages: vec![],
            })
        })
        .collect()
}

/// The message row's problem that `bundle apply` would refuse it for, if any: UID or
/// UIDVALIDITY 0, an INTERNALDATE that does not parse, or a size other than its object's. (A
/// flag that is no IMAP flag, which a server may send, is left out of bundles, not a problem.)
fn invalid_message(m: &MessageRow, r: &MessageRef, sizes: &BTreeMap<Hash, u64>) -> Option<Problem> {
    let detail = message_problem(m.uidvalidity, m.uid, &m.internaldate).or_else(|| match sizes
        .get(&m.hash)
    {
        Some(&size) if size != m.size => Some(format!(
            "the message is recorded as {} bytes, its object as {size}",
            m.size
        )),
        _ => None,
    })?;
    Some(Problem {
        kind: "invalid".into(),
        object: Some(m.hash.to_hex()),
        path: None,
        detail,
        messages: vec![r.clone()],
    })
}

/// The problem with one object row, if any.
fn check_object(
    store: &Store,
    row: &ObjectRow,
    on_disk: &BTreeSet<Hash>,
    rehash: bool,
    report: &mut VerifyReport,
) -> Option<Problem> {
    let path = store.objects.path(&row.hash);
    let problem = |kind: &str, detail: String| {
        Some(Problem {
            kind: kind.into(),
            object: Some(row.hash.to_hex()),
            path: Some(path.display().to_string()),
            detail,
            messages: vec![],
        })
    };
    if !on_disk.contains(&row.hash) {
        return problem("missing", "the object file is missing".into());
    }
    match fs::metadata(&path) {
        Ok(m) if m.len() != row.stored_size => {
            return problem(
                "corrupt",
                format!(
                    "the file has {} bytes, the index recorded {}",
                    m.len(),
                    row.stored_size
                ),
            )
        }
        Ok(_) => {}
        Err(e) => return problem("missing", format!("cannot stat the object file: {e}")),
    }
    if !rehash {
        return None;
    }
    match store.objects.read(&row.hash, row.size) {
        Ok(bytes) => {
            report.rehashed += 1;
            report.rehashed_bytes += bytes.len() as u64;
            if bytes.len() as u64 != row.size {
                return problem(
                    "corrupt",
                    format!(
                        "it decompresses to {} bytes, the index recorded {}",
                        bytes.len(),
                        row.size
                    ),
                );
            }
            None
        }
        Err(e) => {
            report.rehashed += 1;
            let kind = if e.is_missing() { "missing" } else { "corrupt" };
            problem(kind, e.reason())
        }
    }
}

/// Whether the object falls into a `percent` % sample drawn with `seed` (hashes are uniform,
/// so mixing in the seed picks a different random subset each run).
fn in_sample(hash: &Hash, seed: u64, percent: f64) -> bool {
    let mut b = [0u8; 8];
    b.copy_from_slice(&hash.0[..8]);
    let x = (u64::from_le_bytes(b) ^ seed).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    ((x >> 11) as f64 / (1u64 << 53) as f64) * 100.0 < percent
}

/// What gc found, and did when asked to.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    /// Unreferenced objects (rows and files without rows).
    pub objects: u64,
    /// Their size on disk.
    pub bytes: u64,
    /// True when they were removed (`--yes`).
    pub removed: bool,
    /// Object paths concerned (at most the first 20, for the report).
    pub examples: Vec<PathBuf>,
}

impl GcReport {
    /// One line for humans.
    pub fn text(&self) -> String {
        if self.objects == 0 {
            "gc: nothing to free: every object is referenced".into()
        } else if self.removed {
            format!(
                "gc: removed {} unreferenced objects, {} freed",
                self.objects,
                human_bytes(self.bytes)
            )
        } else {
            format!(
                "gc: {} unreferenced objects ({}) would be removed; run again with --yes to free them",
                self.objects,
                human_bytes(self.bytes)
            )
        }
    }
}

/// Find (and with `yes`, remove) the objects nothing refers to.
pub fn gc(dir: &std::path::Path, yes: bool) -> Result<GcReport> {
    let mut store = if yes {
        Store::open_existing(dir)?
    } else {
        Store::open_to_read(dir)?
    };
    let rows = store.index.unreferenced_object_rows()?;
    let known: BTreeSet<Hash> = store
        .index
        .object_rows()?
        .into_iter()
        .map(|r| r.hash)
        .collect();
    let mut victims: Vec<Hash> = rows.iter().map(|r| r.hash).collect();
    // Files without a row: debris of an interrupted write. Stray names are left alone.
    for h in store.objects.iter().flatten() {
        if !known.contains(&h) {
            victims.push(h);
        }
    }
    let mut report = GcReport::default();
    for h in &victims {
        let path = store.objects.path(h);
        report.objects += 1;
        report.bytes += fs::metadata(&path).map_or(0, |m| m.len());
        if report.examples.len() < 20 {
            report.examples.push(path);
        }
    }
    if !yes || victims.is_empty() {
        return Ok(report);
    }
    // Rows first: a row must never name a file that is gone.
    let row_hashes: Vec<Hash> = rows.iter().map(|r| r.hash).collect();
    store.index.delete_object_rows(&row_hashes)?;
    let still_known: BTreeSet<Hash> = store
        .index
        .object_rows()?
        .into_iter()
        .map(|r| r.hash)
        .collect();
    let mut dirs = BTreeSet::new();
    for h in &victims {
        if still_known.contains(h) {
            continue; // referenced again meanwhile (cannot happen under the lock; be safe)
        }
        let path = store.objects.path(h);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(anyhow::Error::new(e).context(format!(
                    "cannot remove unreferenced object {}",
                    path.display()
                )))
            }
        }
        if let Some(p) = path.parent() {
            dirs.insert(p.to_path_buf());
        }
    }
    for d in dirs {
        if let Ok(f) = fs::File::open(&d) {
            let _ = f.sync_all();
        }
    }
    report.removed = true;
    Ok(report)
}
