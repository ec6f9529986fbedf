//! `imapferry bundle create|apply`: carry a store to another machine in files (sneakernet).
//!
//! A bundle holds the index facts another store needs (folders, live messages, expunges) and
//! the objects it lacks. The first bundle of a store is full; each later one holds what changed
//! since the previous one (the index's change numbers), and only the objects no bundle since the
//! last full one carried. Applying ([`apply`]) checks the whole bundle, every object and every
//! record, before changing anything, refuses a bundle whose predecessor the target has not
//! applied, and merges the facts in one transaction, giving the rows the target's own change
//! numbers, so the target can `push` as if it had pulled. Both sides check records by the same
//! rules ([`validate`]), so `create` never writes a bundle `apply` would refuse. The format is
//! in `docs/bundle-format.md`.

mod apply;
pub mod format;
mod validate;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::clock::now;
use crate::flags::is_flag;
use crate::store::bundles::BundleMade;
use crate::store::frame::{self, FrameError};
use crate::store::objects::ZSTD_LEVEL;
use crate::store::{FolderRow, Hash, MessageRow, Store};
use crate::ui::{self, human_bytes, printable};
pub use apply::{apply, ApplyReport};
use format::{
    kind, max_object_record, Account, Base, BundleWriter, Counts, ExpungeFacts, FolderFacts,
    Header, MessageFacts, MAX_OBJECT,
};
use validate::{describe_message, expunge_problem, folder_problem, message_record_problem};

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
    /// Flags left out because they are no IMAP flags (`apply` would refuse them; push leaves
    /// them out too), one line per message.
    pub warnings: Vec<String>,
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
    let warnings = check_records(&store, &folders, &rows, &by_id)?;
    let objects = objects_to_carry(&store, &rows, chain_start)?;
    let live = rows.iter().filter(|m| m.expunged_at.is_none()).count() as u64;
    let counts = Counts {
        folders: folders.len() as u64,
        objects: objects.len() as u64,
        messages: live,
        expunges: rows.len() as u64 - live,
    };
    let header = header(&store, last.as_ref(), base.as_ref(), change, counts)?;

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
    let carried: Vec<Hash> = objects.iter().map(|(h, _)| *h).collect();
    store.index.record_bundle_made(&made, &carried)?;
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
        warnings,
    })
}

/// The objects of the live `rows` that no bundle since `chain_start` (the chain's full bundle)
/// carried, each with the first row that names it (for messages about it).
fn objects_to_carry(
    store: &Store,
    rows: &[MessageRow],
    chain_start: Option<i64>,
) -> Result<Vec<(Hash, usize)>> {
    let mut objects = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, m) in rows.iter().enumerate() {
        if m.expunged_at.is_some() || !seen.insert(m.hash) {
            continue;
        }
        let carried = match chain_start {
            Some(start) => store.index.object_bundled_since(&m.hash, start)?,
            None => false,
        };
        if !carried {
            objects.push((m.hash, i));
        }
    }
    Ok(objects)
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

/// Refuse, before a byte is written, a store whose records `apply` would refuse: rows a store
/// should not hold (`imapferry verify` lists them) or a message larger than a bundle carries.
/// Flags that are no IMAP flags are left out of the bundle instead; the warnings say which.
fn check_records(
    store: &Store,
    folders: &[FolderRow],
    rows: &[MessageRow],
    by_id: &BTreeMap<i64, String>,
) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let refuse = |what: String| {
        anyhow!(
            "cannot bundle store {}: {what}; a bundle with it could not be applied (`imapferry \
             verify --store {}` lists such rows)",
            store.root.display(),
            store.root.display()
        )
    };
    for f in folders {
        if let Some(p) = folder_problem(&folder_facts(f)) {
            return Err(refuse(format!("folder \"{}\": {p}", printable(&f.path))));
        }
    }
    for m in rows {
        let folder = folder_path(by_id, m.folder_id)?;
        let who = describe_message(folder, m.uidvalidity, m.uid);
        if m.expunged_at.is_some() {
            if let Some(p) = expunge_problem(&expunge_facts(m, folder)) {
                return Err(refuse(format!("{who}: {p}")));
            }
            continue;
        }
        if let Some(p) = message_record_problem(&message_facts(m, folder)) {
            return Err(refuse(format!("{who}: {p}")));
        }
        let odd: Vec<&str> = m
            .flags
            .iter()
            .filter(|f| !is_flag(f))
            .map(String::as_str)
            .collect();
        if !odd.is_empty() {
            warnings.push(format!(
                "{who}: flags {} are no IMAP flags; left out of the bundle",
                printable(&odd.join(" "))
            ));
        }
        match store.index.object_size(&m.hash)? {
            Some(size) if size == m.size => {}
            Some(size) => {
                return Err(refuse(format!(
                    "{who}: it is {} bytes, but its object {} has {size}",
                    m.size, m.hash
                )))
            }
            None => return Err(refuse(format!("{who}: its object {} has no row", m.hash))),
        }
    }
    Ok(warnings)
}

fn folder_path(by_id: &BTreeMap<i64, String>, id: i64) -> Result<&str> {
    by_id
        .get(&id)
        .map(String::as_str)
        .with_context(|| format!("a message names folder id {id}, which does not exist"))
}

fn folder_facts(f: &FolderRow) -> FolderFacts {
    FolderFacts {
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
    }
}

/// The message record of a live row; flags that are no IMAP flags are left out.
fn message_facts(m: &MessageRow, folder: &str) -> MessageFacts {
    MessageFacts {
        folder: folder.to_string(),
        uidvalidity: m.uidvalidity,
        uid: m.uid,
        hash: m.hash.to_hex(),
        size: m.size,
        flags: m.flags.iter().filter(|f| is_flag(f)).cloned().collect(),
        internaldate: m.internaldate.clone(),
    }
}

fn expunge_facts(m: &MessageRow, folder: &str) -> ExpungeFacts {
    ExpungeFacts {
        folder: folder.to_string(),
        uidvalidity: m.uidvalidity,
        uid: m.uid,
    }
}

fn write_records(
    store: &Store,
    w: &mut BundleWriter,
    header: &Header,
    folders: &[FolderRow],
    rows: &[MessageRow],
    objects: &[(Hash, usize)],
    by_id: &BTreeMap<i64, String>,
) -> Result<()> {
    w.json(kind::HEADER, header)?;
    for f in folders {
        w.json(kind::FOLDER, &folder_facts(f))?;
    }
    for (h, i) in objects {
        let m = &rows[*i];
        let who = describe_message(folder_path(by_id, m.folder_id)?, m.uidvalidity, m.uid);
        write_object(store, w, h, m.size, &who)?;
    }
    for m in rows.iter().filter(|m| m.expunged_at.is_none()) {
        w.json(
            kind::MESSAGE,
            &message_facts(m, folder_path(by_id, m.folder_id)?),
        )?;
    }
    for m in rows.iter().filter(|m| m.expunged_at.is_some()) {
        w.json(
            kind::EXPUNGE,
            &expunge_facts(m, folder_path(by_id, m.folder_id)?),
        )?;
    }
    Ok(())
}

/// Copy one object's frame into the bundle, checked first as `apply` will check it (the file is
/// read twice rather than held). A frame without its size in its header (another zstd
/// writer's) is compressed again, since `apply` needs that size.
fn write_object(store: &Store, w: &mut BundleWriter, h: &Hash, size: u64, who: &str) -> Result<()> {
    let path = store.objects.path(h);
    let open =
        || File::open(&path).with_context(|| format!("cannot read object {}", path.display()));
    let corrupt = |why: String| {
        anyhow!(
            "{who}: object {} is corrupt ({why}); run `imapferry verify --store {}` and repair \
             the store before making a bundle",
            path.display(),
            store.root.display()
        )
    };
    match frame::inflate(BufReader::new(open()?), MAX_OBJECT, &mut |_| Ok(())) {
        Ok(got) if got.hash == *h && got.size == size => {
            let file = open()?;
            let len = file.metadata()?.len();
            if 32 + len > max_object_record() {
                return Err(corrupt(format!("its frame is {len} bytes")));
            }
            w.record_stream(kind::OBJECT, &h.0, len, &mut BufReader::new(file))
        }
        Ok(got) => Err(corrupt(format!(
            "it inflates to {} bytes hashing to {}",
            got.size, got.hash
        ))),
        Err(FrameError::NoDeclaredSize) => {
            let bytes = store.objects.read(h, size)?;
            if bytes.len() as u64 != size {
                return Err(corrupt(format!("it inflates to {} bytes", bytes.len())));
            }
            let zst = zstd::bulk::compress(&bytes, ZSTD_LEVEL)
                .with_context(|| format!("cannot compress object {h}"))?;
            w.record(kind::OBJECT, &[&h.0, &zst])
        }
        Err(e) => Err(corrupt(e.to_string())),
    }
}

/// The bundle's first record: what it is, what it continues, whose account.
fn header(
    store: &Store,
    last: Option<&BundleMade>,
    base: Option<&BundleMade>,
    change: i64,
    counts: Counts,
) -> Result<Header> {
    let idx = &store.index;
    Ok(Header {
        format: "imapferry-bundle".into(),
        bundle_id: crate::clock::random_hex(16)?,
        source_store: idx.store_id()?,
        seq: last.map_or(1, |l| l.seq + 1),
        base: base.map(|b| Base {
            seq: b.seq,
            bundle_id: b.bundle_id.clone(),
            change: b.change,
        }),
        change,
        created_at: now(),
        account: idx.account()?.map(|(host, user)| Account { host, user }),
        counts,
    })
}

/// `imapferry bundle list`-style lines: what the store made and applied.
pub fn describe_store(store_dir: &Path) -> Result<Vec<String>> {
    let store = Store::open_to_read(store_dir)?;
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
            printable(&b.path)
        ));
        seq += 1;
    }
    for a in store.index.bundles_applied()? {
        out.push(format!(
            "applied #{} of store {} (changes {}–{})",
            a.seq,
            printable(&a.source_store),
            a.base_change + 1,
            a.change
        ));
    }
    if out.is_empty() {
        ui::info("no bundles made or applied");
    }
    Ok(out)
}
