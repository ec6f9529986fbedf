//! `imapferry pull`: mirror host1's account into the store.
//!
//! Per folder: EXAMINE, then fetch only what the store lacks (new UIDs above the recorded UIDNEXT,
//! or a UID SEARCH when counts disagree), refresh flags (CONDSTORE `CHANGEDSINCE` when offered),
//! record expunges, and stream missing bodies into objects. Index rows are committed in batches
//! after their objects are durable, so a kill loses at most the batch in flight and nothing
//! committed is fetched again. An unchanged folder costs one EXAMINE.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

mod bodies;

use bodies::{Bodies, Carry};

use crate::folders::Selection;
use crate::imap::uidset::compact as uid_set;
use crate::imap::{
    is_transient, without_recent, Client, Endpoint, Fetched, MailboxInfo, MailboxStatus, Namespace,
};
use crate::names::store_path;
use crate::retry::Retry;
use crate::store::partial::Partials;
use crate::store::{
    FolderRow, FolderState, HeaderFacts, Index, MessageRow, NewMessage, Objects, RunCounts, Store,
    INDEX_FILE,
};
use crate::ui::{self, human_bytes, Progress};

/// What a pull is asked to do.
#[derive(Debug)]
pub struct PullOptions {
    pub endpoint: Endpoint,
    pub store: PathBuf,
    pub selection: Selection,
    /// Upper bound of the message bytes one UID FETCH command asks for.
    pub batch_bytes: u64,
    /// UID FETCH commands kept in flight.
    pub depth: usize,
    /// Commit the index after this many bytes of new messages (or `commit_messages` messages).
    pub commit_bytes: u64,
    pub commit_messages: usize,
    /// Connections to host1, each pulling one folder at a time.
    pub jobs: usize,
    /// Messages larger than this are fetched in chunks of `chunk_bytes`
    /// (`BODY.PEEK[]<offset.length>`), each kept on disk as it arrives.
    pub chunk_threshold: u64,
    pub chunk_bytes: u64,
    /// Consecutive transient failures to retry (see [`crate::retry`]).
    pub retries: u32,
}

impl PullOptions {
    pub fn new(endpoint: Endpoint, store: PathBuf, selection: Selection) -> PullOptions {
        PullOptions {
            endpoint,
            store,
            selection,
            batch_bytes: 4 << 20,
            depth: 4,
            commit_bytes: 16 << 20,
            commit_messages: 1000,
            jobs: 4,
            chunk_threshold: 8 << 20,
            chunk_bytes: 1 << 20,
            retries: 20,
        }
    }
}

/// A message (or a whole folder, `uid: None`) that could not be mirrored.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub folder: String,
    pub uid: Option<u32>,
    pub reason: String,
}

/// Counts of one folder.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderReport {
    pub folder: String,
    /// Messages added to the store's index for this folder.
    pub new: u64,
    /// Of `new`, those whose bytes were already in the store (no download).
    pub reused: u64,
    /// Messages whose flags changed.
    pub updated: u64,
    pub expunged: u64,
    pub failed: u64,
    /// Message bytes downloaded.
    pub bytes: u64,
    /// True when one EXAMINE showed nothing changed.
    pub unchanged: bool,
    /// Bytes of large messages received in chunks (progress even before a message completes).
    #[serde(skip)]
    pub chunk_bytes: u64,
    /// Messages stored after a second look (see [`PullReport::warnings`]).
    #[serde(skip)]
    pub warnings: Vec<Failure>,
}

/// The outcome of a pull.
#[derive(Debug, Default, Serialize)]
pub struct PullReport {
    pub folders: u64,
    pub new: u64,
    pub reused: u64,
    pub updated: u64,
    pub expunged: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Peak resident memory of the process, for benchmarks and the large-message test.
    pub peak_rss_bytes: Option<u64>,
    pub failures: Vec<Failure>,
    /// Messages stored as host1 serves them although something about them was odd (a length
    /// other than its RFC822.SIZE, served the same twice): listed, not failures.
    pub warnings: Vec<Failure>,
    pub per_folder: Vec<FolderReport>,
}

impl PullReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        let rate = self.bytes as f64 / self.seconds.max(0.001);
        format!(
            "pull: {} folders, {} messages new ({} already in the store), {} updated, {} expunged, {} failed; {} in {:.1} s ({}/s)",
            self.folders,
            self.new,
            self.reused,
            self.updated,
            self.expunged,
            self.failures.len(),
            human_bytes(self.bytes),
            self.seconds,
            human_bytes(rate as u64)
        )
    }
}

/// Run a pull. Errors that stop the whole run (cannot open the store, cannot log in) are
/// returned; per-message and per-folder problems are in [`PullReport::failures`].
pub fn run(opts: &PullOptions) -> Result<PullReport> {
    let started = Instant::now();
    let mut store = Store::open_or_create(&opts.store)?;
    check_account(&mut store, &opts.endpoint)?;
    let mut retry = Retry::new(opts.retries);
    let mut client = retry.connect(&opts.endpoint, "host1")?;
    let run_id = store.index.start_run("pull")?;
    let mut report = PullReport::default();

    let folders = loop {
        let listed = client
            .namespace()
            .and_then(|ns| sync_folder_list(&mut client, &mut store, &ns, opts, &mut report));
        match listed {
            Ok(folders) => break folders,
            Err(e) if is_transient(&e) && retry.failed("host1, listing folders", &e) => {
                report.failures.clear();
                client = retry.connect(&opts.endpoint, "host1")?;
            }
            Err(e) => return Err(e),
        }
    };
    let progress = Progress::new();
    let count = folders.len();
    let mut results: Vec<Option<(FolderReport, Vec<Failure>)>> = vec![None; count];
    // Folders LIST-STATUS shows unchanged are settled here, without a command.
    let mut todo = VecDeque::new();
    let mut settled = Vec::new();
    for (i, (folder, status)) in folders.iter().enumerate() {
        match status {
            Some(st) if unchanged_by_status(&store.index, folder, st)? => settled.push(i),
            _ => todo.push_back(i),
        }
    }
    if !settled.is_empty() {
        let mut batch = store.index.batch()?;
        for &i in &settled {
            let folder = &folders[i].0;
            batch.set_folder_state(folder.id, &folder.state, now())?;
            let fr = FolderReport {
                folder: folder.path.clone(),
                unchanged: true,
                ..FolderReport::default()
            };
            results[i] = Some((fr, Vec::new()));
        }
        batch.commit()?;
    }
    // The rest over up to `jobs` connections, one folder at a time each.
    let queue = Mutex::new(todo);
    let results = Mutex::new(results);
    let workers = opts
        .jobs
        .clamp(1, queue.lock().map_or(1, |q| q.len().max(1)));
    let work = |client: Client| -> Result<()> {
        let mut local = Local::open(&store.root)?;
        let mut client = client;
        let mut retry = Retry::new(opts.retries);
        loop {
            let next = queue.lock().ok().and_then(|mut q| q.pop_front());
            let Some(i) = next else { break };
            let folder = &folders[i].0;
            let (fr, failures, lost) = pull_with_retries(
                &mut client,
                &mut retry,
                &mut local,
                folder,
                opts,
                &progress,
                (i, count),
            );
            if let Ok(mut r) = results.lock() {
                r[i] = Some((fr, failures));
            }
            if lost {
                // The connection may be unusable after an error mid-command: start afresh.
                client = retry.connect(&opts.endpoint, "host1")?;
            }
        }
        let _ = client.logout();
        Ok(())
    };
    let worker_errors: Vec<anyhow::Error> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..workers)
            .map(|_| {
                s.spawn(|| {
                    let client = Retry::new(opts.retries).connect(&opts.endpoint, "host1")?;
                    work(client)
                })
            })
            .collect();
        let mut errors: Vec<anyhow::Error> = work(client).err().into_iter().collect();
        for h in handles {
            match h.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => errors.push(e),
                Err(_) => errors.push(anyhow!("a pull worker thread panicked")),
            }
        }
        errors
    });
    for e in &worker_errors {
        ui::warn(&format!("a connection to host1 was given up: {e:#}"));
    }
    let results = results.into_inner().unwrap_or_default();
    for (r, (folder, _)) in results.into_iter().zip(&folders) {
        let (fr, failures) = r.unwrap_or_else(|| {
            let reason = match worker_errors.first() {
                Some(e) => format!("not pulled: {e:#}"),
                None => "not pulled".to_string(),
            };
            let fr = FolderReport {
                folder: folder.path.clone(),
                failed: 1,
                ..FolderReport::default()
            };
            (
                fr,
                vec![Failure {
                    folder: folder.path.clone(),
                    uid: None,
                    reason,
                }],
            )
        });
        report.failures.extend(failures);
        report.warnings.extend(fr.warnings.iter().cloned());
        report.folders += 1;
        report.new += fr.new;
        report.reused += fr.reused;
        report.updated += fr.updated;
        report.expunged += fr.expunged;
        report.bytes += fr.bytes;
        report.per_folder.push(fr);
    }
    progress.finish();
    report.seconds = started.elapsed().as_secs_f64();
    report.peak_rss_bytes = ui::peak_rss_bytes();
    let counts = RunCounts {
        folders: report.folders,
        new: report.new,
        updated: report.updated,
        expunged: report.expunged,
        failed: report.failures.len() as u64,
        bytes: report.bytes,
    };
    store
        .index
        .finish_run(run_id, &counts, report.failures.is_empty())?;
    Ok(report)
}

/// Pull one folder, reconnecting and resuming after transient failures. Returns its report,
/// its failures, and whether the connection should be replaced.
fn pull_with_retries(
    client: &mut Client,
    retry: &mut Retry,
    local: &mut Local,
    folder: &FolderRow,
    opts: &PullOptions,
    progress: &Progress,
    position: (usize, usize),
) -> (FolderReport, Vec<Failure>, bool) {
    let mut fr = FolderReport {
        folder: folder.path.clone(),
        ..FolderReport::default()
    };
    let mut failures = Vec::new();
    // What one attempt learnt about messages for the next (chunk sizes, messages to fetch whole).
    let mut carry = Carry::default();
    // Each attempt resumes where the last one stopped: what it committed is known.
    let result = loop {
        let done = |fr: &FolderReport| fr.new + fr.updated + fr.expunged + fr.chunk_bytes;
        let done_before = done(&fr);
        let attempt = pull_folder(
            client,
            local,
            folder,
            opts,
            progress,
            position,
            &mut fr,
            &mut failures,
            &mut carry,
        );
        let Err(e) = attempt else { break Ok(()) };
        if done(&fr) > done_before {
            retry.progress();
        }
        if !is_transient(&e) || !retry.failed(&format!("host1, folder {}", folder.path), &e) {
            break Err(e);
        }
        match retry.connect(&opts.endpoint, "host1") {
            Ok(c) => *client = c,
            Err(e) => break Err(e),
        }
    };
    let lost = match result {
        Ok(()) => {
            if !fr.unchanged || ui::verbosity() >= 2 {
                progress.line(&folder_line(&fr));
            }
            false
        }
        Err(e) => {
            let reason = format!("{e:#}");
            progress.line(&format!("{}: failed: {reason}", folder.path));
            failures.push(Failure {
                folder: folder.path.clone(),
                uid: None,
                reason,
            });
            fr.failed += 1;
            true
        }
    };
    (fr, failures, lost)
}

/// True when LIST-STATUS shows the folder exactly as the last pull left it: same UIDVALIDITY,
/// UIDNEXT and HIGHESTMODSEQ, and as many messages as the index holds.
fn unchanged_by_status(index: &Index, folder: &FolderRow, st: &MailboxStatus) -> Result<bool> {
    let old = &folder.state;
    let (Some(uv), Some(next), Some(modseq), Some(messages)) =
        (old.uidvalidity, old.uidnext, old.highestmodseq, st.messages)
    else {
        return Ok(false);
    };
    if st.uidvalidity != Some(uv) || st.uidnext != Some(next) || st.highestmodseq != Some(modseq) {
        return Ok(false);
    }
    Ok(index.live_count(folder.id, uv)? == u64::from(messages))
}

/// One worker's own handles on the shared store (the main thread holds the lock): SQLite
/// serialises the index writes, objects are content-addressed.
struct Local {
    index: Index,
    objects: Objects,
    partials: Partials,
}

impl Local {
    fn open(root: &Path) -> Result<Local> {
        Ok(Local {
            index: Index::open(&root.join(INDEX_FILE))?,
            objects: Objects::new(root),
            partials: Partials::open(root)?,
        })
    }
}

fn folder_line(fr: &FolderReport) -> String {
    if fr.unchanged {
        return format!("{}: unchanged", fr.folder);
    }
    let mut line = format!("{}: {} new", fr.folder, fr.new);
    if fr.reused > 0 {
        line += &format!(" ({} already in the store)", fr.reused);
    }
    line += &format!(
        ", {} flags changed, {} expunged, {}",
        fr.updated,
        fr.expunged,
        human_bytes(fr.bytes)
    );
    if fr.failed > 0 {
        line += &format!(", {} FAILED", fr.failed);
    }
    line
}

/// A store mirrors one account; pulling another into it would mix two mailboxes.
fn check_account(store: &mut Store, ep: &Endpoint) -> Result<()> {
    match store.index.account()? {
        None => store.index.set_account(&ep.host, &ep.user),
        Some((host, user)) if host.eq_ignore_ascii_case(&ep.host) && user == ep.user => Ok(()),
        Some((host, user)) => bail!(
            "store {} mirrors {user} on {host}, not {} on {}: use another --store for this account",
            store.root.display(),
            ep.user,
            ep.host
        ),
    }
}

/// LIST host1, record its folders in the index, mark vanished ones gone, and return the
/// selectable folders this run covers.
fn sync_folder_list(
    client: &mut Client,
    store: &mut Store,
    ns: &Namespace,
    opts: &PullOptions,
    report: &mut PullReport,
) -> Result<Vec<(FolderRow, Option<MailboxStatus>)>> {
    let mailboxes = client.list()?;
    // Selectable mailboxes by store path, in LIST order. Containers are left out: push
    // recreates them implicitly with their children.
    let mut by_path: BTreeMap<String, Vec<&MailboxInfo>> = BTreeMap::new();
    for mb in mailboxes.iter().filter(|mb| !mb.noselect) {
        by_path
            .entry(store_path(&mb.name, mb.separator, ns))
            .or_default()
            .push(mb);
    }
    let known: HashMap<String, crate::names::MailboxName> = store
        .index
        .folders()?
        .into_iter()
        .map(|f| (f.path, f.raw_name))
        .collect();
    let mut listed: BTreeMap<String, Option<MailboxStatus>> = BTreeMap::new();
    for (path, mbs) in by_path {
        if !opts.selection.includes(&path) {
            listed.insert(path, None);
            continue;
        }
        // A name like `a..b` on a `.` server has an empty level: no path of the store can
        // hold it (nor a bundle, nor host2), so it is reported instead of stored.
        if let Some(why) = crate::store::rules::folder_path_problem(&path) {
            for mb in &mbs {
                report.failures.push(Failure {
                    folder: mb.name.clone(),
                    uid: None,
                    reason: format!("not pulled: its store path {path:?} has {why}"),
                });
            }
            continue;
        }
        // Two mailboxes, one store path (`x/y` and `x_y` on a `.` server): merging them would
        // mix two UID spaces. The one the store already holds there keeps it, else the one
        // whose name needed no `_`; the other is reported.
        let keep = mbs
            .iter()
            .position(|mb| known.get(&path).is_some_and(|k| *k == mb.raw_name))
            .or_else(|| mbs.iter().position(|mb| !escaped_slash(mb)))
            .unwrap_or(0);
        for (_, mb) in mbs.iter().enumerate().filter(|(i, _)| *i != keep) {
            report.failures.push(Failure {
                folder: mb.name.clone(),
                uid: None,
                reason: format!(
                    "not pulled: its store path {path:?} is host1's folder {:?} \
                     (rename one of them on host1)",
                    mbs[keep].name
                ),
            });
        }
        let mb = mbs[keep];
        listed.insert(path.clone(), mb.status.clone());
        store.index.upsert_folder(
            &path,
            &mb.raw_name,
            mb.separator,
            mb.special_use.as_deref(),
            mb.subscribed,
        )?;
    }
    let paths: Vec<String> = listed.keys().cloned().collect();
    for missing in opts.selection.unmatched(&paths) {
        report.failures.push(Failure {
            folder: missing.to_string(),
            uid: None,
            reason: "no such folder on host1 (--folder names a store path like Archive/2024)"
                .to_string(),
        });
    }
    let mut covered = Vec::new();
    for folder in store.index.folders()? {
        if !opts.selection.includes(&folder.path) {
            continue;
        }
        if let Some(status) = listed.remove(&folder.path) {
            covered.push((folder, status));
        } else if folder.gone_at.is_none() {
            ui::info(&format!(
                "{}: no longer on host1; kept in the store, marked gone",
                folder.path
            ));
            store.index.mark_folder_gone(folder.id)?;
        }
    }
    Ok(covered)
}

/// Whether `mb`'s store path has `_` for a `/` inside a level name.
fn escaped_slash(mb: &MailboxInfo) -> bool {
    mb.separator.is_some_and(|sep| sep != '/') && mb.name.contains('/')
}

/// A UID and its RFC822.SIZE.
type UidSize = (u32, u64);

/// The smallest chunk a large message is fetched in, however bad the link.
const MIN_CHUNK: u64 = 64 << 10;

#[allow(clippy::too_many_arguments)]
fn pull_folder(
    client: &mut Client,
    local: &mut Local,
    folder: &FolderRow,
    opts: &PullOptions,
    progress: &Progress,
    (index, count): (usize, usize),
    fr: &mut FolderReport,
    failures: &mut Vec<Failure>,
    carry: &mut Carry,
) -> Result<()> {
    let sel = client.select(&folder.raw_name, true)?;
    let uv = sel.uidvalidity;
    let old = &folder.state;
    let reindex = old.uidvalidity.is_some_and(|v| v != uv);
    let known: BTreeMap<u32, MessageRow> = local
        .index
        .live_messages(folder.id, uv)?
        .into_iter()
        .map(|m| (m.uid, m))
        .collect();
    let state = FolderState {
        uidvalidity: Some(uv),
        uidnext: sel.uidnext,
        highestmodseq: sel.highestmodseq,
    };

    if !reindex
        && old.uidnext.is_some()
        && old.uidnext == sel.uidnext
        && sel.exists as usize == known.len()
        && sel.highestmodseq.is_some()
        && old.highestmodseq == sel.highestmodseq
    {
        fr.unchanged = true;
        let mut batch = local.index.batch()?;
        batch.set_folder_state(folder.id, &state, now())?;
        return batch.commit();
    }
    if reindex {
        ui::info(&format!(
            "{}: UIDVALIDITY changed ({} -> {uv}); re-indexing, reusing stored bodies",
            folder.path,
            old.uidvalidity.unwrap_or(0)
        ));
    }

    // 1. Which UIDs does host1 have that the index lacks, and which did it expunge?
    let mut new_meta: BTreeMap<u32, Fetched> = BTreeMap::new();
    let mut expunged: Vec<u32> = Vec::new();
    let cheap = match (reindex, old.uidnext) {
        (false, Some(next)) => {
            if sel.uidnext != Some(next) {
                client.uid_fetch_meta(&format!("{next}:*"), None, &mut |f| {
                    // `N:*` also returns the highest message when N is above every UID.
                    if f.uid >= next && !known.contains_key(&f.uid) {
                        new_meta.insert(f.uid, f);
                    }
                    Ok(())
                })?;
            }
            known.len() + new_meta.len() == sel.exists as usize
        }
        _ => false,
    };
    if !cheap {
        let on_server: BTreeSet<u32> = client.uid_search_all()?.into_iter().collect();
        expunged = known
            .keys()
            .filter(|u| !on_server.contains(u))
            .copied()
            .collect();
        let missing: Vec<u32> = on_server
            .iter()
            .filter(|u| !known.contains_key(u) && !new_meta.contains_key(u))
            .copied()
            .collect();
        if !missing.is_empty() {
            client.uid_fetch_meta(&uid_set(&missing), None, &mut |f| {
                if !known.contains_key(&f.uid) {
                    new_meta.insert(f.uid, f);
                }
                Ok(())
            })?;
            // Listed by SEARCH but not described: still asked for, so that a message host1
            // stays silent about is a listed failure, never simply absent.
            for &uid in &missing {
                new_meta.entry(uid).or_insert_with(|| Fetched {
                    uid,
                    ..Fetched::default()
                });
            }
        }
    }

    // 2. Flags of messages already known.
    let mut flag_changes: Vec<(u32, Vec<String>)> = Vec::new();
    if let Some(&max_known) = known.keys().next_back() {
        let changedsince = match (old.highestmodseq, sel.highestmodseq) {
            (Some(a), Some(b)) if !reindex && a == b => None,
            (Some(a), Some(_)) if !reindex => Some(Some(a)),
            _ => Some(None),
        };
        if let Some(since) = changedsince {
            client.uid_fetch_meta(&format!("1:{max_known}"), since, &mut |f| {
                if let (Some(row), Some(flags)) = (known.get(&f.uid), &f.flags) {
                    let flags = without_recent(flags);
                    if !same_flags(&row.flags, &flags) {
                        flag_changes.push((f.uid, flags));
                    }
                }
                Ok(())
            })?;
        }
    }

    // 3. After a UIDVALIDITY change, recognise bodies the store already holds.
    let mut reused: Vec<NewMessage> = Vec::new();
    if reindex && !new_meta.is_empty() {
        let uids: Vec<u32> = new_meta.keys().copied().collect();
        let mut found = Vec::new();
        client.uid_fetch_headers(&uid_set(&uids), &mut |f| {
            found.push(f);
            Ok(())
        })?;
        for f in found {
            let (Some(header), Some(meta)) = (&f.body, new_meta.get(&f.uid)) else {
                continue;
            };
            let (Some(size), Some(Ok(internaldate))) =
                (meta.size.or(f.size), meta.internaldate.clone())
            else {
                continue;
            };
            let facts = HeaderFacts::parse(header);
            let candidates = local.index.find_objects(size, &facts)?;
            if let Some(hash) = candidates.into_iter().find(|h| local.objects.contains(h)) {
                reused.push(NewMessage {
                    uidvalidity: uv,
                    uid: f.uid,
                    hash,
                    size,
                    flags: without_recent(meta.flags.as_deref().unwrap_or_default()),
                    internaldate,
                });
            }
        }
        for m in &reused {
            new_meta.remove(&m.uid);
        }
    }

    // Everything but the bodies goes in now, in one transaction.
    {
        let mut batch = local.index.batch()?;
        if reindex {
            fr.expunged += batch.expunge_other_uidvalidities(folder.id, uv)?;
        }
        for uid in &expunged {
            batch.mark_expunged(folder.id, uv, *uid)?;
        }
        fr.expunged += expunged.len() as u64;
        for (uid, flags) in &flag_changes {
            if batch.set_flags(folder.id, uv, *uid, flags)? {
                fr.updated += 1;
            }
        }
        for m in &reused {
            batch.add_message(folder.id, m)?;
        }
        fr.new += reused.len() as u64;
        fr.reused += reused.len() as u64;
        batch.commit()?;
    }

    // 4. Bodies (see [`bodies`]).
    progress.folder(
        index,
        count,
        &folder.path,
        new_meta.len() as u64,
        new_meta.values().map(|f| f.size.unwrap_or(0)).sum(),
    );
    let mut bodies = Bodies::new(folder, uv, &new_meta, opts, progress, fr, carry);
    // An attempt cut short finds its failures again in the next one: only a whole one counts.
    bodies.run(client, local)?;
    let (failed, notices) = (bodies.failed, bodies.notices);
    for (uid, reason) in notices {
        ui::warn(&format!(
            "{} UID {uid}: {reason}",
            ui::printable(&folder.path)
        ));
        fr.warnings.push(Failure {
            folder: folder.path.clone(),
            uid: Some(uid),
            reason,
        });
    }
    let complete = failed.is_empty();
    for (uid, reason) in failed {
        fr.failed += 1;
        failures.push(Failure {
            folder: folder.path.clone(),
            uid: Some(uid),
            reason,
        });
    }

    // Record the server state last; when something is missing, forget UIDNEXT so the next run
    // compares UID lists instead of trusting counts.
    let state = FolderState {
        uidnext: if complete { state.uidnext } else { None },
        ..state
    };
    let mut batch = local.index.batch()?;
    batch.set_folder_state(folder.id, &state, now())?;
    batch.commit()
}

fn same_flags(a: &[String], b: &[String]) -> bool {
    let a: BTreeSet<&str> = a.iter().map(String::as_str).collect();
    let b: BTreeSet<&str> = b.iter().map(String::as_str).collect();
    a == b
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
