//! `imapferry bundle apply`: check bundles completely, then merge them into a store.
//!
//! Nothing from a bundle is trusted until it is checked. The first pass reads every bundle
//! given to its end before the target is touched: the framing, every object's zstd frame
//! inflated as it streams (bounded by the size the frame declares, at most
//! [`MAX_OBJECT`](super::format::MAX_OBJECT)) and hashed, the checksum, and then every record
//! against the rules of a store (see [`super::validate`]). A new store is only made once every
//! bundle given is known to fit it, and removed again if applying still fails. The second pass
//! copies the frames into the store as they are, checking them again on the way, and one
//! transaction merges the facts, giving the rows the target's own change numbers. Memory is the
//! records' facts plus one zstd window; an object is never held whole.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use super::format::{
    self, BundleReader, Counts, ExpungeFacts, FolderFacts, Header, MessageFacts, Record, MAX_OBJECT,
};
use super::validate::{
    describe_message, expunge_problem, folder_problem, header_problem, message_record_problem,
};
use crate::clock::now;
use crate::store::bundles::BundleApplied;
use crate::store::frame::{self, FrameError};
use crate::store::{
    Batch, FolderRow, FolderState, Hash, HeaderFacts, HeaderSection, NewMessage, Store, INDEX_FILE,
};
use crate::ui::printable;

/// What applying one bundle did.
#[derive(Debug, Serialize)]
pub struct ApplyReport {
    pub bundle: String,
    pub source_store: String,
    pub seq: i64,
    pub base_change: i64,
    pub change: i64,
    /// False when the store had it already (nothing changed).
    pub applied: bool,
    pub folders: u64,
    pub messages: u64,
    pub expunges: u64,
    /// Objects new to the store.
    pub objects_added: u64,
    pub seconds: f64,
}

impl ApplyReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        if !self.applied {
            return format!(
                "{}: bundle #{} (changes {}–{}) of store {} is applied already; nothing changed",
                self.bundle,
                self.seq,
                self.base_change + 1,
                self.change,
                self.source_store
            );
        }
        format!(
            "{}: applied bundle #{} (changes {}–{}) of store {}: {} folders, {} messages, {} expunged, {} new objects; now at its change {} ({:.1} s)",
            self.bundle,
            self.seq,
            self.base_change + 1,
            self.change,
            self.source_store,
            self.folders,
            self.messages,
            self.expunges,
            self.objects_added,
            self.change,
            self.seconds
        )
    }
}

/// A bundle read to its end and checked in the first pass: its facts, and the size of every
/// object it carries (the object bytes themselves are not kept).
struct Checked {
    files: Vec<PathBuf>,
    /// The bundle's name in messages (its first file, escaped for a terminal).
    name: String,
    header: Header,
    folders: Vec<FolderFacts>,
    messages: Vec<MessageFacts>,
    expunges: Vec<ExpungeFacts>,
    objects: BTreeMap<Hash, u64>,
    /// The trailer: the second pass must read these very bytes.
    checksum: [u8; 32],
}

/// An object the second pass put into the store.
struct NewObject {
    hash: Hash,
    size: u64,
    stored: u64,
    facts: HeaderFacts,
}

/// Apply the bundles made of `files` (see [`format::resolve`]) to the store at `store_dir`,
/// creating it when missing, oldest first. Every bundle is checked completely before anything
/// changes; a store that did not exist is only created for bundles that fit it.
pub fn apply(store_dir: &Path, files: &[PathBuf]) -> Result<Vec<ApplyReport>> {
    let mut bundles = Vec::new();
    for files in format::resolve(files)? {
        bundles.push(check(&files)?);
    }
    bundles.sort_by_key(|c| (c.header.change, c.header.base_change()));
    if store_dir.join(INDEX_FILE).exists() {
        let mut store = Store::open_existing(store_dir)?;
        return bundles.iter().map(|c| apply_one(&mut store, c)).collect();
    }
    let target = printable(&store_dir.display().to_string()).into_owned();
    fits_new_store(&bundles, &target)?;
    let before = Before::note(store_dir);
    let mut store = match Store::open_or_create(store_dir) {
        Ok(s) => s,
        Err(e) => {
            before.undo();
            return Err(e);
        }
    };
    let mut reports: Vec<ApplyReport> = Vec::new();
    for c in &bundles {
        match apply_one(&mut store, c) {
            Ok(r) => reports.push(r),
            Err(e) => {
                if reports.iter().all(|r| !r.applied) {
                    drop(store);
                    before.undo();
                }
                return Err(e);
            }
        }
    }
    Ok(reports)
}

/// First pass: read the whole bundle, inflate and hash every object as it streams, check the
/// checksum, then every record.
fn check(files: &[PathBuf]) -> Result<Checked> {
    let mut r = BundleReader::open(files)?;
    let name = r.name.clone();
    let header = match r.next_record()? {
        Record::Header(h) => *h,
        _ => bail!("{name} is damaged: it does not start with a header; copy it again"),
    };
    let mut c = Checked {
        files: files.to_vec(),
        name,
        header,
        folders: Vec::new(),
        messages: Vec::new(),
        expunges: Vec::new(),
        objects: BTreeMap::new(),
        checksum: [0; 32],
    };
    loop {
        match r.next_record()? {
            Record::Header(_) => bail!("{} is damaged: a second header; copy it again", c.name),
            Record::Folder(f) => c.folders.push(f),
            Record::Object(hash) => {
                let size = check_object(&mut r, &hash)?;
                if c.objects.insert(hash, size).is_some() {
                    bail!("{} is damaged: object {hash} twice; copy it again", c.name);
                }
            }
            Record::Message(m) => c.messages.push(m),
            Record::Expunge(x) => c.expunges.push(x),
            Record::End => break,
        }
    }
    c.checksum = r.checksum().expect("the trailer was read");
    let got = Counts {
        folders: c.folders.len() as u64,
        objects: c.objects.len() as u64,
        messages: c.messages.len() as u64,
        expunges: c.expunges.len() as u64,
    };
    if got != c.header.counts {
        bail!(
            "{} is damaged: its header announces {:?} but it holds {got:?}",
            c.name,
            c.header.counts
        );
    }
    check_records(&c)?;
    Ok(c)
}

/// Inflate one object's frame as it streams (nothing kept) and check it against its hash; the
/// size it inflates to.
fn check_object(r: &mut BundleReader, hash: &Hash) -> Result<u64> {
    let name = r.name.clone();
    match frame::inflate(r.object_frame(), MAX_OBJECT, &mut |_| Ok(())) {
        Ok(got) if got.hash == *hash => Ok(got.size),
        Ok(_) => bail!("{name} is damaged: object {hash} does not match its hash; copy it again"),
        // The bundle's own read error (truncated, unreadable) names it already.
        Err(FrameError::Read(e)) => Err(anyhow!("{e}")),
        Err(e) => bail!("{name} is damaged: object {hash}: {e}; copy it again"),
    }
}

/// Every record against the rules of a store, once the checksum showed the bundle is what was
/// written. Sizes of carried objects are checked against the messages that name them here;
/// those of objects the target must have, in [`check_references`].
fn check_records(c: &Checked) -> Result<()> {
    let refuse = |what: String| anyhow!("{} is refused: {what}; nothing was changed", c.name);
    if let Some(p) = header_problem(&c.header) {
        return Err(refuse(format!("its header: {p}")));
    }
    let mut paths = BTreeSet::new();
    for f in &c.folders {
        let problem = folder_problem(f).or_else(|| {
            (!paths.insert(f.path.as_str())).then(|| "a second record of it".to_string())
        });
        if let Some(p) = problem {
            return Err(refuse(format!("folder \"{}\": {p}", printable(&f.path))));
        }
    }
    let mut named = BTreeSet::new();
    for m in &c.messages {
        let who = || describe_message(&m.folder, m.uidvalidity, m.uid);
        if let Some(p) = message_record_problem(m) {
            return Err(refuse(format!("message {}: {p}", who())));
        }
        let hash: Hash = m.hash.parse()?;
        match c.objects.get(&hash) {
            Some(&size) if size != m.size => {
                return Err(refuse(format!(
                    "message {}: it is {} bytes, but its object {hash} inflates to {size}",
                    who(),
                    m.size
                )))
            }
            _ => named.insert(hash),
        };
    }
    for x in &c.expunges {
        if let Some(p) = expunge_problem(x) {
            let who = describe_message(&x.folder, x.uidvalidity, x.uid);
            return Err(refuse(format!("expunge of {who}: {p}")));
        }
    }
    if let Some(h) = c.objects.keys().find(|h| !named.contains(h)) {
        return Err(refuse(format!(
            "it carries object {h}, which no message names"
        )));
    }
    Ok(())
}

/// Refuse, before a new store is made for them, bundles that could not all be applied to it:
/// they must form a chain of one source store from a full bundle on, and each message must find
/// its folder and its object (of the right size) in its bundle or an earlier one.
fn fits_new_store(bundles: &[Checked], target: &str) -> Result<()> {
    let mut at: Option<BundleApplied> = None;
    let mut objects: BTreeMap<Hash, u64> = BTreeMap::new();
    let mut folders: BTreeSet<&str> = BTreeSet::new();
    for c in bundles {
        if let Some(a) = &at {
            same_source(c, &a.source_store, target)?;
        }
        if !place(&c.header, at.as_ref(), false, target, &c.name)? {
            continue;
        }
        check_references(
            c,
            target,
            |h| Ok(objects.get(h).copied()),
            |p| folders.contains(p),
        )?;
        objects.extend(c.objects.iter().map(|(h, s)| (*h, *s)));
        folders.extend(c.folders.iter().map(|f| f.path.as_str()));
        at = Some(applied_row(&c.header));
    }
    Ok(())
}

/// Apply one checked bundle to the store (or find it applied already).
fn apply_one(store: &mut Store, c: &Checked) -> Result<ApplyReport> {
    let started = Instant::now();
    let h = &c.header;
    let mut report = ApplyReport {
        bundle: c.name.clone(),
        source_store: h.source_store.clone(),
        seq: h.seq,
        base_change: h.base_change(),
        change: h.change,
        applied: false,
        folders: h.counts.folders,
        messages: h.counts.messages,
        expunges: h.counts.expunges,
        objects_added: 0,
        seconds: 0.0,
    };
    let target = printable(&store.root.display().to_string()).into_owned();
    for a in store.index.bundles_applied()? {
        same_source(c, &a.source_store, &target)?;
    }
    let position = store.index.bundle_position(&h.source_store)?;
    let has_mail = store.index.has_mail_rows()?;
    if !place(h, position.as_ref(), has_mail, &target, &c.name)? {
        return Ok(report);
    }
    let folders: BTreeSet<String> = store.index.folders()?.into_iter().map(|f| f.path).collect();
    check_references(
        c,
        &target,
        |hash| {
            if store.objects.contains(hash) {
                store.index.object_size(hash)
            } else {
                Ok(None)
            }
        },
        |p| folders.contains(p),
    )?;
    let written = copy_objects(store, c).and_then(|new| {
        report.objects_added = new.len() as u64;
        commit(store, c, &new)
    });
    if let Err(e) = written {
        // Nothing of this bundle stays: its objects were never named by a committed row.
        store.objects.discard_pending();
        return Err(e);
    }
    report.applied = true;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn same_source(c: &Checked, follows: &str, target: &str) -> Result<()> {
    if c.header.source_store != follows {
        bail!(
            "{} comes from store {}, but store {target} follows store {follows}; apply it to \
             another store",
            c.name,
            c.header.source_store
        );
    }
    Ok(())
}

/// The `bundles_applied` row of a bundle applied now.
fn applied_row(h: &Header) -> BundleApplied {
    BundleApplied {
        bundle_id: h.bundle_id.clone(),
        source_store: h.source_store.clone(),
        seq: h.seq,
        base_change: h.base_change(),
        change: h.change,
        applied_at: now(),
    }
}

/// Second pass: every object the store lacks, its frame copied into the store as it is and
/// checked again on the way. The bundle must end with the checksum the first pass read, so
/// these are the bytes that were checked.
fn copy_objects(store: &Store, c: &Checked) -> Result<Vec<NewObject>> {
    let mut r = BundleReader::open(&c.files)?;
    let mut out = Vec::new();
    loop {
        match r.next_record()? {
            Record::Object(hash) => {
                if store.index.object_known(&hash)? && store.objects.contains(&hash) {
                    continue;
                }
                let mut header = HeaderSection::default();
                let (size, stored) = store
                    .objects
                    .write_frame(&hash, r.object_frame(), MAX_OBJECT, &mut |b| {
                        header.feed(b);
                        Ok(())
                    })
                    .map_err(|e| anyhow!("{}: object {hash}: {e:#}", c.name))?;
                out.push(NewObject {
                    hash,
                    size,
                    stored,
                    facts: header.facts(),
                });
            }
            Record::End => break,
            _ => {}
        }
    }
    if r.checksum() != Some(c.checksum) {
        bail!(
            "{} changed while it was being applied; nothing was changed: apply it again",
            c.name
        );
    }
    Ok(out)
}

/// One transaction: the new objects' rows, folders merged by path, messages, expunges and the
/// `bundles_applied` row, committed after the objects are durable.
fn commit(store: &mut Store, c: &Checked, new: &[NewObject]) -> Result<()> {
    let h = &c.header;
    let mut batch = store.index.batch_after_sync(&store.objects)?;
    for o in new {
        batch.add_object(&o.hash, o.size, o.stored, &o.facts)?;
    }
    for f in &c.folders {
        batch.merge_folder(&folder_row(f))?;
    }
    let mut ids: BTreeMap<&str, i64> = BTreeMap::new();
    for m in &c.messages {
        let id = folder_id(&batch, &mut ids, &m.folder, &c.name)?;
        let message = NewMessage {
            uidvalidity: m.uidvalidity,
            uid: m.uid,
            hash: m.hash.parse()?,
            size: m.size,
            flags: m.flags.clone(),
            internaldate: m.internaldate.parse()?,
            gmail: None,
        };
        batch.add_message(id, &message)?;
    }
    for x in &c.expunges {
        if let Some(id) = batch.folder_id(&x.folder)? {
            batch.mark_expunged(id, x.uidvalidity, x.uid)?;
        }
    }
    let account = h
        .account
        .as_ref()
        .map(|a| (a.host.as_str(), a.user.as_str()));
    batch.record_bundle_applied(&applied_row(h), account)?;
    batch.commit()
}

fn folder_id<'a>(
    batch: &Batch<'_>,
    cache: &mut BTreeMap<&'a str, i64>,
    path: &'a str,
    name: &str,
) -> Result<i64> {
    if let Some(id) = cache.get(path) {
        return Ok(*id);
    }
    let Some(id) = batch.folder_id(path)? else {
        bail!(
            "{name}: a message is in folder \"{}\", which neither the bundle nor the store has",
            printable(path)
        );
    };
    cache.insert(path, id);
    Ok(id)
}

/// The store row of a checked folder record.
fn folder_row(f: &FolderFacts) -> FolderRow {
    FolderRow {
        id: 0,
        path: f.path.clone(),
        raw_name: f.raw_name.clone(),
        separator: f.separator.as_deref().and_then(|s| s.chars().next()),
        role: f.role.clone(),
        subscribed: f.subscribed,
        state: FolderState {
            uidvalidity: f.uidvalidity,
            uidnext: f.uidnext,
            highestmodseq: f.highestmodseq,
        },
        last_pull: f.last_pull,
        gone_at: f.gone.then_some(0),
        change: 0,
    }
}

/// Whether the bundle fits where the store is in the source's sequence (`position`: the last
/// bundle of that source it applied; `has_mail`: it holds rows at all): `Ok(true)` to apply,
/// `Ok(false)` when it is applied already, an error naming the missing bundle otherwise.
fn place(
    h: &Header,
    position: Option<&BundleApplied>,
    has_mail: bool,
    target: &str,
    name: &str,
) -> Result<bool> {
    if position.is_none() && has_mail {
        bail!(
            "store {target} holds mail that did not come from bundles (it was pulled or \
             imported); apply bundles to a new store"
        );
    }
    let at = position.as_ref().map_or(0, |p| p.change);
    if h.change <= at && position.is_some() {
        return Ok(false);
    }
    if h.base_change() > at {
        let base = h.base.as_ref().expect("a delta has a base");
        let have = match position {
            Some(p) => format!(
                "store {target} has its changes up to {} (bundle #{})",
                p.change, p.seq
            ),
            None => format!("store {target} has no bundle of it yet"),
        };
        bail!(
            "{name} is {}; it continues bundle #{} (changes up to {}), and {have}: apply bundle \
             #{} first, or make a full bundle with `imapferry bundle create --full`",
            h.describe(),
            base.seq,
            base.change,
            base.seq
        );
    }
    Ok(true)
}

/// Every message's folder and object must be in the bundle or the target (`object_size`: the
/// size the target records for an object it has; `has_folder`: whether it has a folder), and an
/// object the target has must be the size the message says.
fn check_references(
    c: &Checked,
    target: &str,
    object_size: impl Fn(&Hash) -> Result<Option<u64>>,
    has_folder: impl Fn(&str) -> bool,
) -> Result<()> {
    let own: BTreeSet<&str> = c.folders.iter().map(|f| f.path.as_str()).collect();
    for m in &c.messages {
        let who = describe_message(&m.folder, m.uidvalidity, m.uid);
        if !own.contains(m.folder.as_str()) && !has_folder(&m.folder) {
            bail!(
                "{}: message {who} is in a folder which neither the bundle nor store {target} has",
                c.name
            );
        }
        let hash: Hash = m.hash.parse()?;
        if c.objects.contains_key(&hash) {
            continue;
        }
        match object_size(&hash)? {
            None => bail!(
                "{}: {who} needs object {hash}, which neither the bundle nor store {target} \
                 has; make a full bundle with `imapferry bundle create --full`",
                c.name
            ),
            Some(size) if size != m.size => bail!(
                "{} is refused: message {who} is {} bytes, but its object {hash} in store \
                 {target} has {size}; nothing was changed",
                c.name,
                m.size
            ),
            Some(_) => {}
        }
    }
    Ok(())
}

/// A directory as it was before a new store was made in it, so that an apply that fails
/// leaves it so: missing (with the parents made for it), or empty but for what it held.
enum Before {
    Missing {
        dir: PathBuf,
        new_parents: Vec<PathBuf>,
    },
    Dir {
        dir: PathBuf,
        entries: BTreeSet<OsString>,
        mode: u32,
    },
    /// Not a directory we could read: nothing is ever removed from it.
    Other,
}

impl Before {
    fn note(dir: &Path) -> Before {
        if fs::symlink_metadata(dir).is_err() {
            let new_parents = dir
                .ancestors()
                .skip(1)
                .take_while(|p| !p.as_os_str().is_empty() && fs::symlink_metadata(p).is_err())
                .map(Path::to_path_buf)
                .collect();
            return Before::Missing {
                dir: dir.to_path_buf(),
                new_parents,
            };
        }
        let entries = fs::read_dir(dir).and_then(|rd| {
            rd.map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<BTreeSet<_>>>()
        });
        match (entries, fs::metadata(dir)) {
            (Ok(entries), Ok(meta)) => Before::Dir {
                dir: dir.to_path_buf(),
                entries,
                mode: meta.permissions().mode() & 0o7777,
            },
            _ => Before::Other,
        }
    }

    /// Remove what was made since [`Before::note`] (best effort: the error that led here is
    /// the one to report).
    fn undo(&self) {
        match self {
            Before::Missing { dir, new_parents } => {
                let _ = fs::remove_dir_all(dir);
                for p in new_parents {
                    let _ = fs::remove_dir(p);
                }
            }
            Before::Dir { dir, entries, mode } => {
                for e in fs::read_dir(dir).into_iter().flatten().flatten() {
                    if entries.contains(&e.file_name()) {
                        continue;
                    }
                    let _ = match e.file_type() {
                        Ok(t) if t.is_dir() => fs::remove_dir_all(e.path()),
                        _ => fs::remove_file(e.path()),
                    };
                }
                let _ = fs::set_permissions(dir, fs::Permissions::from_mode(*mode));
            }
            Before::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undo_leaves_a_directory_as_it_was() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("a/b/store");
        let before = Before::note(&missing);
        drop(Store::open_or_create(&missing).unwrap());
        before.undo();
        assert!(!d.path().join("a").exists());

        let empty = d.path().join("empty");
        fs::create_dir(&empty).unwrap();
        fs::set_permissions(&empty, fs::Permissions::from_mode(0o750)).unwrap();
        fs::write(empty.join("lock"), b"").unwrap();
        let before = Before::note(&empty);
        drop(Store::open_or_create(&empty).unwrap());
        before.undo();
        let left: Vec<_> = fs::read_dir(&empty)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["lock"]);
        let mode = fs::metadata(&empty).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o750);
    }
}
