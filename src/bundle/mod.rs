//! `imapferry bundle create|apply`: carry a store to another machine in files (sneakernet).
//!
//! A bundle holds the index facts another store needs (folders, live messages, expunges) and
//! the objects it lacks. The first bundle of a store is full; each later one holds what changed
//! since the previous one (the index's change numbers), and only the objects no bundle since the
//! last full one carried. Applying checks the whole bundle (every object's hash, the checksum)
//! before changing anything, refuses a bundle whose predecessor the target has not applied, and
//! merges the facts in one transaction, giving the rows the target's own change numbers, so the
//! target can `push` as if it had pulled. The format is in `docs/bundle-format.md`.

pub mod format;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::mailtime::InternalDate;
use crate::store::bundles::{BundleApplied, BundleMade};
use crate::store::index::now;
use crate::store::{FolderRow, FolderState, Hash, HeaderFacts, NewMessage, Store};
use crate::ui::{self, human_bytes};
use format::{
    kind, Account, Base, BundleReader, BundleWriter, Counts, ExpungeFacts, FolderFacts, Header,
    MessageFacts, Record,
};

/// What `bundle create` wrote.
#[derive(Debug, Serialize)]
pub struct CreateReport {
    pub seq: i64,
    pub bundle_id: String,
    pub full: bool,
    /// Changes after this number are in it.
    pub base_change: i64,
    pub change: i64,
    pub folders: u64,
    pub messages: u64,
    pub expunges: u64,
    pub objects: u64,
    /// Total size of the bundle (all volumes).
    pub bytes: u64,
    pub files: Vec<PathBuf>,
    pub seconds: f64,
}

impl CreateReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        format!(
            "bundle #{} ({}, changes {}–{}): {} folders, {} messages, {} expunged, {} objects; {} in {} file{} ({:.1} s)",
            self.seq,
            if self.full { "full" } else { "incremental" },
            self.base_change + 1,
            self.change,
            self.folders,
            self.messages,
            self.expunges,
            self.objects,
            human_bytes(self.bytes),
            self.files.len(),
            if self.files.len() == 1 { "" } else { "s" },
            self.seconds
        )
    }
}

/// Write the next bundle of the store at `store_dir` to `out` (volumes below `max_size` bytes
/// when given). `full` forces a full bundle.
pub fn create(
    store_dir: &Path,
    out: &Path,
    full: bool,
    max_size: Option<u64>,
) -> Result<CreateReport> {
    let started = Instant::now();
    let mut store = Store::open_existing(store_dir)?;
    let idx = &store.index;
    let last = idx.last_bundle_made()?;
    let base = match (&last, full) {
        (Some(l), false) => Some(l.clone()),
        _ => None,
    };
    let base_change = base.as_ref().map_or(0, |b| b.change);
    // Objects carried by the bundles from the last full one on are at the target already.
    let chain_start = match &base {
        None => None,
        Some(b) => Some(chain_start(&store, b)?),
    };
    let change = idx.current_change()?;
    let folders = idx.folders_changed_since(base_change)?;
    let by_id: BTreeMap<i64, String> = idx.folders()?.into_iter().map(|f| (f.id, f.path)).collect();
    let rows = idx.messages_changed_since(base_change)?;
    let mut objects: Vec<Hash> = Vec::new();
    let mut seen = BTreeSet::new();
    for m in rows.iter().filter(|m| m.expunged_at.is_none()) {
        if !seen.insert(m.hash) {
            continue;
        }
        let carried = match chain_start {
            Some(start) => idx.object_bundled_since(&m.hash, start)?,
            None => false,
        };
        if !carried {
            objects.push(m.hash);
        }
    }
    let live = rows.iter().filter(|m| m.expunged_at.is_none()).count() as u64;
    let header = Header {
        format: "imapferry-bundle".into(),
        bundle_id: random_id()?,
        source_store: idx.store_id()?,
        seq: last.as_ref().map_or(1, |l| l.seq + 1),
        base: base.as_ref().map(|b| Base {
            seq: b.seq,
            bundle_id: b.bundle_id.clone(),
            change: b.change,
        }),
        change,
        created_at: now(),
        account: idx.account()?.map(|(host, user)| Account { host, user }),
        counts: Counts {
            folders: folders.len() as u64,
            objects: objects.len() as u64,
            messages: live,
            expunges: rows.len() as u64 - live,
        },
    };

    let mut w = BundleWriter::create(out, max_size)?;
    let written = write_records(&store, &mut w, &header, &folders, &rows, &objects, &by_id);
    if let Err(e) = written {
        w.abandon();
        return Err(e);
    }
    let (files, bytes) = match w.finish() {
        Ok(x) => x,
        Err(e) => return Err(e.context(format!("bundle {} is incomplete", out.display()))),
    };
    let made = BundleMade {
        seq: header.seq,
        bundle_id: header.bundle_id.clone(),
        base_seq: base.as_ref().map(|b| b.seq),
        base_change,
        change,
        created_at: header.created_at,
        bytes,
        objects: header.counts.objects,
        messages: live,
        path: out.display().to_string(),
    };
    store.index.record_bundle_made(&made, &objects)?;
    Ok(CreateReport {
        seq: header.seq,
        bundle_id: header.bundle_id,
        full: header.base.is_none(),
        base_change,
        change,
        folders: header.counts.folders,
        messages: live,
        expunges: header.counts.expunges,
        objects: header.counts.objects,
        bytes,
        files,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The number of the full bundle the chain ending at `last` starts with.
fn chain_start(store: &Store, last: &BundleMade) -> Result<i64> {
    let mut b = last.clone();
    while let Some(prev) = b.base_seq {
        b = store.index.bundle_made(prev)?.with_context(|| {
            format!(
                "index {}: bundle #{} names bundle #{prev}, which is not recorded",
                store.index.path().display(),
                b.seq
            )
        })?;
    }
    Ok(b.seq)
}

fn write_records(
    store: &Store,
    w: &mut BundleWriter,
    header: &Header,
    folders: &[FolderRow],
    rows: &[crate::store::MessageRow],
    objects: &[Hash],
    by_id: &BTreeMap<i64, String>,
) -> Result<()> {
    w.json(kind::HEADER, header)?;
    for f in folders {
        w.json(
            kind::FOLDER,
            &FolderFacts {
                path: f.path.clone(),
                raw_name: f.raw_name.clone(),
                separator: f.separator.map(String::from),
                role: f.role.clone(),
                subscribed: f.subscribed,
                uidvalidity: f.state.uidvalidity,
                uidnext: f.state.uidnext,
                highestmodseq: f.state.highestmodseq,
                last_pull: f.last_pull,
                gone: f.gone_at.is_some(),
            },
        )?;
    }
    for h in objects {
        let path = store.objects.path(h);
        let zst = std::fs::read(&path)
            .with_context(|| format!("cannot read object {}", path.display()))?;
        // Never pass on damage: the target would refuse the whole bundle.
        let ok = zstd::stream::decode_all(&zst[..]).is_ok_and(|b| Hash::of(&b) == *h);
        if !ok {
            bail!(
                "object {} is corrupt; run `imapferry verify --store {}` and repair the store \
                 before making a bundle",
                path.display(),
                store.root.display()
            );
        }
        w.record(kind::OBJECT, &[&h.0, &zst])?;
    }
    let folder = |id: i64| -> Result<String> {
        by_id
            .get(&id)
            .cloned()
            .with_context(|| format!("a message names folder id {id}, which does not exist"))
    };
    for m in rows.iter().filter(|m| m.expunged_at.is_none()) {
        w.json(
            kind::MESSAGE,
            &MessageFacts {
                folder: folder(m.folder_id)?,
                uidvalidity: m.uidvalidity,
                uid: m.uid,
                hash: m.hash.to_hex(),
                size: m.size,
                flags: m.flags.clone(),
                internaldate: m.internaldate.clone(),
            },
        )?;
    }
    for m in rows.iter().filter(|m| m.expunged_at.is_some()) {
        w.json(
            kind::EXPUNGE,
            &ExpungeFacts {
                folder: folder(m.folder_id)?,
                uidvalidity: m.uidvalidity,
                uid: m.uid,
            },
        )?;
    }
    Ok(())
}

fn random_id() -> Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

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

/// Everything of a bundle but the object bytes, read and checked in the first pass.
struct Checked {
    header: Header,
    folders: Vec<FolderFacts>,
    messages: Vec<MessageFacts>,
    expunges: Vec<ExpungeFacts>,
    objects: BTreeSet<Hash>,
}

/// Apply the bundles made of `files` (see [`format::resolve`]) to the store at `store_dir`,
/// creating it when missing, oldest first.
pub fn apply(store_dir: &Path, files: &[PathBuf]) -> Result<Vec<ApplyReport>> {
    let bundles = format::resolve(files)?;
    // Read every header first so bundles given in any order are applied oldest first.
    let mut ordered = Vec::new();
    for files in bundles {
        let header = read_header(&files)?;
        ordered.push((header, files));
    }
    ordered.sort_by_key(|(h, _)| (h.change, h.base_change()));
    // A store that does not exist yet is created only for a bundle it can take, and only once
    // that bundle has been checked completely.
    if !store_dir.join(crate::store::INDEX_FILE).exists() {
        if let Some((h, files)) = ordered.first() {
            let name = files[0].display().to_string();
            check(files)?;
            place(h, None, false, &store_dir.display().to_string(), &name)?;
        }
    }
    let mut store = Store::open_or_create(store_dir)?;
    let mut reports = Vec::new();
    for (_, files) in ordered {
        reports.push(apply_one(&mut store, &files)?);
    }
    Ok(reports)
}

fn read_header(files: &[PathBuf]) -> Result<Header> {
    let mut r = BundleReader::open(files)?;
    match r.next_record()? {
        Record::Header(h) => Ok(*h),
        _ => bail!(
            "{} is damaged: it does not start with a header; copy it again",
            r.name
        ),
    }
}

fn apply_one(store: &mut Store, files: &[PathBuf]) -> Result<ApplyReport> {
    let started = Instant::now();
    let checked = check(files)?;
    let h = &checked.header;
    let name = files[0].display().to_string();
    let mut report = ApplyReport {
        bundle: name.clone(),
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
    let target = store.root.display().to_string();
    for a in store.index.bundles_applied()? {
        if a.source_store != h.source_store {
            bail!(
                "{name} comes from store {}, but store {target} follows store {}; apply it to \
                 another store",
                h.source_store,
                a.source_store
            );
        }
    }
    let position = store.index.bundle_position(&h.source_store)?;
    let has_mail = store.index.has_mail_rows()?;
    if !place(h, position.as_ref(), has_mail, &target, &name)? {
        return Ok(report);
    }
    check_references(store, &checked, &name)?;

    // Second pass: the bytes again (the file could have changed since), objects into the store.
    let mut reader = BundleReader::open(files)?;
    let mut new_objects: Vec<(Hash, u64, u64, HeaderFacts)> = Vec::new();
    loop {
        match reader.next_record()? {
            Record::Object(hash, zst) => {
                let bytes = decode_object(&name, &hash, &zst)?;
                if store.index.object_known(&hash)? && store.objects.contains(&hash) {
                    continue;
                }
                let (_, stored) = store.objects.write(&bytes)?;
                new_objects.push((hash, bytes.len() as u64, stored, HeaderFacts::parse(&bytes)));
            }
            Record::End => break,
            _ => {}
        }
    }
    report.objects_added = new_objects.len() as u64;

    let mut batch = store.index.batch()?;
    for (hash, size, stored, facts) in &new_objects {
        batch.add_object(hash, *size, *stored, facts)?;
    }
    for f in &checked.folders {
        batch.merge_folder(&folder_row(f, &name)?)?;
    }
    let mut ids: BTreeMap<String, i64> = BTreeMap::new();
    for m in &checked.messages {
        let id = folder_id(&batch, &mut ids, &m.folder, &name)?;
        let hash: Hash = m.hash.parse()?;
        let internaldate: InternalDate = m
            .internaldate
            .parse()
            .with_context(|| format!("{name}: message UID {} of {}", m.uid, m.folder))?;
        batch.add_message(
            id,
            &NewMessage {
                uidvalidity: m.uidvalidity,
                uid: m.uid,
                hash,
                size: m.size,
                flags: m.flags.clone(),
                internaldate,
            },
        )?;
    }
    for x in &checked.expunges {
        if let Some(id) = batch.folder_id(&x.folder)? {
            batch.mark_expunged(id, x.uidvalidity, x.uid)?;
        }
    }
    batch.record_bundle_applied(
        &BundleApplied {
            bundle_id: h.bundle_id.clone(),
            source_store: h.source_store.clone(),
            seq: h.seq,
            base_change: h.base_change(),
            change: h.change,
            applied_at: now(),
        },
        h.account
            .as_ref()
            .map(|a| (a.host.as_str(), a.user.as_str())),
    )?;
    batch.commit_after_sync(&store.objects)?;
    report.applied = true;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn folder_id(
    batch: &crate::store::Batch<'_>,
    cache: &mut BTreeMap<String, i64>,
    path: &str,
    name: &str,
) -> Result<i64> {
    if let Some(id) = cache.get(path) {
        return Ok(*id);
    }
    let id = batch.folder_id(path)?.with_context(|| {
        format!(
            "{name}: a message is in folder {path:?}, which neither the bundle nor the store has"
        )
    })?;
    cache.insert(path.to_string(), id);
    Ok(id)
}

fn folder_row(f: &FolderFacts, name: &str) -> Result<FolderRow> {
    let separator = match f.separator.as_deref() {
        None => None,
        Some(s) => {
            let mut c = s.chars();
            match (c.next(), c.next()) {
                (Some(ch), None) => Some(ch),
                _ => bail!("{name} is damaged: folder {:?} has separator {s:?}", f.path),
            }
        }
    };
    Ok(FolderRow {
        id: 0,
        path: f.path.clone(),
        raw_name: f.raw_name.clone(),
        separator,
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
    })
}

/// The uncompressed bytes of an object record, checked against its hash.
fn decode_object(name: &str, hash: &Hash, zst: &[u8]) -> Result<Vec<u8>> {
    let bytes = zstd::stream::decode_all(zst).map_err(|e| {
        anyhow::anyhow!("{name} is damaged: object {hash} is not valid zstd ({e}); copy it again")
    })?;
    if Hash::of(&bytes) != *hash {
        bail!("{name} is damaged: object {hash} does not match its hash; copy it again");
    }
    Ok(bytes)
}

/// First pass: read the whole bundle, check every object and the checksum, keep the facts.
fn check(files: &[PathBuf]) -> Result<Checked> {
    let mut r = BundleReader::open(files)?;
    let name = r.name.clone();
    let header = match r.next_record()? {
        Record::Header(h) => *h,
        _ => bail!("{name} is damaged: it does not start with a header; copy it again"),
    };
    if header.format != "imapferry-bundle" {
        bail!(
            "{name} is not an imapferry bundle (format {:?})",
            header.format
        );
    }
    let mut c = Checked {
        header,
        folders: Vec::new(),
        messages: Vec::new(),
        expunges: Vec::new(),
        objects: BTreeSet::new(),
    };
    loop {
        match r.next_record()? {
            Record::Header(_) => bail!("{name} is damaged: a second header; copy it again"),
            Record::Folder(f) => c.folders.push(f),
            Record::Object(hash, zst) => {
                decode_object(&name, &hash, &zst)?;
                c.objects.insert(hash);
            }
            Record::Message(m) => c.messages.push(m),
            Record::Expunge(x) => c.expunges.push(x),
            Record::End => break,
        }
    }
    let got = Counts {
        folders: c.folders.len() as u64,
        objects: c.objects.len() as u64,
        messages: c.messages.len() as u64,
        expunges: c.expunges.len() as u64,
    };
    if got != c.header.counts {
        bail!(
            "{name} is damaged: its header announces {:?} but it holds {got:?}",
            c.header.counts
        );
    }
    Ok(c)
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

/// Every message's object must be in the bundle or the store; every folder known.
fn check_references(store: &Store, c: &Checked, name: &str) -> Result<()> {
    let folders: BTreeSet<&str> = c.folders.iter().map(|f| f.path.as_str()).collect();
    let known: BTreeSet<String> = store.index.folders()?.into_iter().map(|f| f.path).collect();
    for m in &c.messages {
        let hash: Hash = m
            .hash
            .parse()
            .with_context(|| format!("{name} is damaged: message {} UID {}", m.folder, m.uid))?;
        let in_store = store.index.object_known(&hash)? && store.objects.contains(&hash);
        if !c.objects.contains(&hash) && !in_store {
            bail!(
                "{name}: {} UID {} needs object {hash}, which neither the bundle nor store {} \
                 has; make a full bundle with `imapferry bundle create --full`",
                m.folder,
                m.uid,
                store.root.display()
            );
        }
        if !folders.contains(m.folder.as_str()) && !known.contains(&m.folder) {
            bail!(
                "{name}: a message is in folder {:?}, which neither the bundle nor store {} has",
                m.folder,
                store.root.display()
            );
        }
    }
    Ok(())
}

/// `imapferry bundle list`-style lines: what the store made and applied.
pub fn describe_store(store_dir: &Path) -> Result<Vec<String>> {
    let store = Store::open_existing(store_dir)?;
    let mut out = Vec::new();
    let mut seq = 1;
    while let Some(b) = store.index.bundle_made(seq)? {
        out.push(format!(
            "made #{} ({}, changes {}–{}): {} messages, {} objects, {} → {}",
            b.seq,
            if b.base_seq.is_none() {
                "full"
            } else {
                "incremental"
            },
            b.base_change + 1,
            b.change,
            b.messages,
            b.objects,
            human_bytes(b.bytes),
            b.path
        ));
        seq += 1;
    }
    for a in store.index.bundles_applied()? {
        out.push(format!(
            "applied #{} of store {} (changes {}–{})",
            a.seq,
            a.source_store,
            a.base_change + 1,
            a.change
        ));
    }
    if out.is_empty() {
        ui::info("no bundles made or applied");
    }
    Ok(out)
}
