//! `imapferry push`: replay the store into host2, exactly once per message.
//!
//! - [`targets`]: which host2 mailbox each store folder goes to (namespace, `--folder-map`,
//!   `--dest-root`, special-use automap).
//! - [`survey`]: what a host2 mailbox holds compared with the store (push state, then identity).
//! - [`identity`]: the identity of messages the push state does not explain.
//! - [`folder`]: pushing one mailbox: reconcile intents, APPEND what is missing, flags, deletes.
//!
//! Crash safety: before each APPEND batch, one intent per message is committed to the index;
//! after the replies, the mapping (store message → host2 UID) replaces them in one transaction.
//! A run that finds intents left by a killed run looks at host2's messages above the UIDNEXT
//! recorded with them, hashes their bytes and records those that match; the rest are sent
//! again. Messages host2 holds that the state does not explain are matched by identity, so a
//! message is never appended twice. Messages are sent with the exact stored bytes.

pub mod folder;
pub mod identity;
pub mod survey;
pub mod targets;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Mutex, RwLock};
use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::folders::Selection;
use crate::imap::{is_transient, Client, Endpoint, Namespace};
use crate::pull::Failure;
use crate::retry::Retry;
use crate::store::{FolderRow, Index, MailboxFacts, RunCounts, Store, INDEX_FILE};
use crate::ui::{self, human_bytes, Progress};
use targets::{MapRules, Target};

/// What a push is asked to do.
#[derive(Debug)]
pub struct PushOptions {
    pub endpoint: Endpoint,
    pub store: PathBuf,
    pub selection: Selection,
    pub rules: MapRules,
    /// Delete on host2 what the store's folder no longer holds.
    pub delete2: bool,
    /// Print the plan; change nothing on host2 or in the store.
    pub dry_run: bool,
    /// Connections (and folders in parallel).
    pub jobs: usize,
    /// Most message bytes per APPEND batch (one intent transaction each).
    pub batch_bytes: u64,
    /// Most messages per APPEND batch.
    pub batch_messages: usize,
    /// Consecutive transient failures to retry (see [`crate::retry`]).
    pub retries: u32,
}

impl PushOptions {
    pub fn new(endpoint: Endpoint, store: PathBuf, selection: Selection) -> PushOptions {
        PushOptions {
            endpoint,
            store,
            selection,
            rules: MapRules::default(),
            delete2: false,
            dry_run: false,
            jobs: 4,
            batch_bytes: 8 << 20,
            batch_messages: 500,
            retries: 20,
        }
    }
}

/// Counts of one host2 mailbox.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderReport {
    /// "Sent → Sent Items", or the path when unchanged.
    pub folder: String,
    /// The host2 path (UTF-8, `/`).
    pub mailbox: String,
    pub created: bool,
    /// Live store messages that go there.
    pub messages: u64,
    /// Appended by this run (with `--dry-run`: would be).
    pub sent: u64,
    /// Already on host2 before this run.
    pub already: u64,
    /// Of `already`: messages an interrupted run had appended, found through its intents.
    pub recovered: u64,
    pub failed: u64,
    /// Message bytes appended (with `--dry-run`: would be).
    pub bytes: u64,
    pub flags_updated: u64,
    pub deleted: u64,
    /// Keywords host2 would not store, left off.
    pub dropped_keywords: Vec<String>,
    pub seconds: f64,
    /// After a complete push: what host2 should report for the mailbox if nobody else touched
    /// it meanwhile (checked against LIST-STATUS before it is recorded for the fast path).
    #[serde(skip)]
    pub expect: Option<HostState>,
}

/// A host2 mailbox's UIDVALIDITY, UIDNEXT and MESSAGES.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostState {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: u32,
}

impl FolderReport {
    /// Store messages host2 lacks after the run.
    pub fn missing(&self) -> u64 {
        self.messages.saturating_sub(self.sent + self.already)
    }
}

/// The outcome of a push.
#[derive(Debug, Default, Serialize)]
pub struct PushReport {
    pub dry_run: bool,
    pub folders: u64,
    /// Folders created on host2 (with `--dry-run`: to create), host2 paths.
    pub created: Vec<String>,
    /// host2 paths whose level names held host2's separator, which became `_`: (as mapped, as
    /// used).
    pub renamed: Vec<(String, String)>,
    pub messages: u64,
    pub sent: u64,
    pub already: u64,
    /// Of `already`: appended by an interrupted run, found through its intents.
    pub recovered: u64,
    pub failed: u64,
    pub bytes: u64,
    pub flags_updated: u64,
    pub deleted: u64,
    pub seconds: f64,
    /// Bytes per second appended.
    pub rate: f64,
    /// Peak resident memory of the process, for benchmarks and the large-message test.
    pub peak_rss_bytes: Option<u64>,
    /// True when host2 holds every store message of the pushed folders.
    pub complete: bool,
    pub verdict: String,
    pub failures: Vec<Failure>,
    pub per_folder: Vec<FolderReport>,
}

impl PushReport {
    /// The final lines for humans.
    pub fn summary(&self) -> String {
        let head = if self.dry_run {
            "push (dry run)"
        } else {
            "push"
        };
        format!(
            "{head}: {} folders ({} created), {} messages: {} sent, {} already there, {} failed; \
             {} flag updates, {} deleted; {} in {:.1} s ({}/s)\n{}",
            self.folders,
            self.created.len(),
            self.messages,
            self.sent,
            self.already,
            self.failed,
            self.flags_updated,
            self.deleted,
            human_bytes(self.bytes),
            self.seconds,
            human_bytes(self.rate as u64),
            self.verdict
        )
    }
}

/// What every worker needs, shared read-only.
pub(crate) struct Ctx<'a> {
    pub opts: &'a PushOptions,
    pub destination: Option<i64>,
    pub objects: &'a crate::store::Objects,
    pub progress: &'a Progress,
    pub count: usize,
}

/// Run a push. Errors that stop the whole run are returned; per-message and per-folder
/// problems are in [`PushReport::failures`].
pub fn run(opts: &PushOptions) -> Result<PushReport> {
    let started = Instant::now();
    let mut store = Store::open_existing(&opts.store)?;
    let folders = store_folders(&store, &opts.selection)?;
    let mut report = PushReport {
        dry_run: opts.dry_run,
        ..PushReport::default()
    };
    for missing in opts
        .selection
        .unmatched(&folders.iter().map(|f| f.path.clone()).collect::<Vec<_>>())
    {
        report.failures.push(Failure {
            folder: missing.to_string(),
            uid: None,
            reason: "no such folder in the store (see `imapferry status`)".to_string(),
        });
    }
    let mut retry = Retry::new(opts.retries);
    let mut client = retry.connect(&opts.endpoint, "host2")?;
    let (ns, listed) = loop {
        match client.namespace().and_then(|ns| Ok((ns, client.list()?))) {
            Ok(found) => break found,
            Err(e) if is_transient(&e) && retry.failed("host2, listing folders", &e) => {
                client = retry.connect(&opts.endpoint, "host2")?;
            }
            Err(e) => return Err(e),
        }
    };
    let plan = targets::plan(&folders, &opts.rules, &ns, &listed);
    for t in &plan {
        if let (Some(from), Some(sep)) = (&t.escaped_from, ns.separator) {
            ui::info(&format!(
                "{from:?} is {:?} on host2: {sep:?} separates folder levels there",
                t.path
            ));
            report.renamed.push((from.clone(), t.path.clone()));
            if t.folders.len() > 1 {
                let paths: Vec<&str> = t.folders.iter().map(|f| f.path.as_str()).collect();
                ui::warn(&format!(
                    "store folders {} all go to {:?} on host2 (use --folder-map to keep them \
                     apart)",
                    paths.join(", "),
                    t.path
                ));
            }
        }
    }
    // Nothing changes the store while we hold its lock: this bounds every change we push.
    let store_change = store.index.current_change()?;
    let destination = if opts.dry_run {
        store
            .index
            .find_destination(&opts.endpoint.host, &opts.endpoint.user)?
    } else {
        Some(
            store
                .index
                .destination_id(&opts.endpoint.host, &opts.endpoint.user)?,
        )
    };
    let run_id = if opts.dry_run {
        None
    } else {
        Some(store.index.start_run("push")?)
    };

    // Mailboxes host2 reports exactly as the last complete push left them, whose store folders
    // did not change since: nothing to do, not even a SELECT.
    let mut outcomes: Vec<(String, Outcome)> = Vec::new();
    let mut todo = Vec::with_capacity(plan.len());
    let mut subscribe_only = Vec::new();
    for t in plan {
        let same = match destination {
            Some(d) => unchanged(&store.index, d, &t, opts)?,
            None => None,
        };
        match same {
            Some(fr) => {
                ui::detail(&format!(
                    "{}: unchanged since the last push, not surveyed",
                    t.label()
                ));
                if t.want_subscribed && !t.subscribed {
                    subscribe_only.push(t.mailbox.clone());
                }
                outcomes.push((t.path.clone(), (fr, Vec::new())));
            }
            None => todo.push(t),
        }
    }
    let plan = todo;

    let progress = Progress::new();
    let ctx = Ctx {
        opts,
        destination,
        objects: &store.objects,
        progress: &progress,
        count: plan.len(),
    };
    let mut prepared = PushReport::default();
    let (results, client) = run_jobs(&ctx, client, &mut store.index, &plan, |client| {
        prepare_mailboxes(client, &ns, &plan, &subscribe_only, opts, &mut prepared)
    })?;
    progress.finish();
    report.created = prepared.created;
    report.failed += prepared.failed;
    report.failures.extend(prepared.failures);
    if let Some(mut client) = client {
        if let (Some(d), false) = (destination, opts.dry_run) {
            record_facts(
                &mut client,
                &mut store.index,
                d,
                &plan,
                &results,
                store_change,
                opts,
            );
        }
        let _ = client.logout();
    }
    outcomes.extend(results.into_iter().map(|(i, o)| (plan[i].path.clone(), o)));
    outcomes.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, (fr, failures)) in outcomes {
        report.folders += 1;
        report.messages += fr.messages;
        report.sent += fr.sent;
        report.already += fr.already;
        report.recovered += fr.recovered;
        report.failed += fr.failed;
        report.bytes += fr.bytes;
        report.flags_updated += fr.flags_updated;
        report.deleted += fr.deleted;
        report.failures.extend(failures);
        report.per_folder.push(fr);
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.rate = report.bytes as f64 / report.seconds.max(0.001);
    report.peak_rss_bytes = ui::peak_rss_bytes();
    let missing: u64 = report.per_folder.iter().map(FolderReport::missing).sum();
    report.complete = !opts.dry_run && missing == 0 && report.failures.is_empty();
    report.verdict = if opts.dry_run {
        format!(
            "dry run: would create {} folders and send {} messages ({}); nothing was changed",
            report.created.len(),
            report.sent,
            human_bytes(report.bytes)
        )
    } else if report.complete {
        format!(
            "host2 holds all {} messages of the store's {} folders",
            report.messages, report.folders
        )
    } else {
        format!(
            "host2 lacks {missing} of the store's {} messages ({} failures listed); run push again \
             after fixing the cause",
            report.messages,
            report.failures.len()
        )
    };
    if let Some(run_id) = run_id {
        let counts = RunCounts {
            folders: report.folders,
            new: report.sent,
            updated: report.flags_updated,
            expunged: report.deleted,
            failed: report.failures.len() as u64,
            bytes: report.bytes,
        };
        store.index.finish_run(run_id, &counts, report.complete)?;
    }
    Ok(report)
}

/// Connect to host2, labelled as such in errors, retrying transient failures up to `retries`
/// times in a row.
pub(crate) fn connect(ep: &Endpoint, retries: u32) -> Result<Client> {
    Retry::new(retries).connect(ep, "host2")
}

/// The store folders this run covers: selected, not gone.
pub(crate) fn store_folders(store: &Store, selection: &Selection) -> Result<Vec<FolderRow>> {
    let all = store.index.folders()?;
    if all.is_empty() {
        bail!(
            "the store {} holds no folders; run `imapferry pull` first",
            store.root.display()
        );
    }
    Ok(all
        .into_iter()
        .filter(|f| f.gone_at.is_none() && selection.includes(&f.path))
        .collect())
}

/// CREATE the targets host2 lacks and SUBSCRIBE those subscribed on host1 (and the unchanged
/// mailboxes in `subscribe_only`), all in one pipelined burst; a CREATE the server refuses is
/// tried again alone with its parents first (for servers that insist). A folder that cannot be
/// created is a failure and is left out: returns which targets to push.
fn prepare_mailboxes(
    client: &mut Client,
    ns: &Namespace,
    plan: &[Target],
    subscribe_only: &[String],
    opts: &PushOptions,
    report: &mut PushReport,
) -> Result<Vec<bool>> {
    let mut keep = vec![true; plan.len()];
    for t in plan.iter().filter(|t| !t.exists) {
        report.created.push(t.path.clone());
    }
    if opts.dry_run {
        return Ok(keep);
    }
    // (verb, mailbox) and, per command, (target index, is a CREATE).
    let mut cmds: Vec<(&str, crate::names::MailboxName)> = Vec::new();
    let mut owners: Vec<(Option<usize>, bool)> = Vec::new();
    for (i, t) in plan.iter().enumerate() {
        if !t.exists {
            cmds.push(("CREATE", t.mailbox.as_str().into()));
            owners.push((Some(i), true));
        }
        if t.want_subscribed && !t.subscribed {
            cmds.push(("SUBSCRIBE", t.mailbox.as_str().into()));
            owners.push((Some(i), false));
        }
    }
    for m in subscribe_only {
        cmds.push(("SUBSCRIBE", m.as_str().into()));
        owners.push((None, false));
    }
    if cmds.is_empty() {
        return Ok(keep);
    }
    // CREATE and SUBSCRIBE are idempotent: after a dropped link, send the burst again.
    let mut retry = Retry::new(opts.retries);
    let results = loop {
        let refs: Vec<(&str, &crate::names::MailboxName)> =
            cmds.iter().map(|(v, m)| (*v, m)).collect();
        match client.mailbox_commands(&refs) {
            Ok(r) => break r,
            Err(e) if is_transient(&e) && retry.failed("host2, creating folders", &e) => {
                *client = retry.connect(&opts.endpoint, "host2")?;
            }
            Err(e) => return Err(e),
        }
    };
    let mut created_late: Vec<bool> = vec![false; plan.len()];
    for (k, result) in results.into_iter().enumerate() {
        let (owner, is_create) = owners[k];
        let Some(i) = owner else {
            if let Err(e) = result {
                ui::warn(&format!("cannot subscribe {} on host2: {e:#}", cmds[k].1));
            }
            continue;
        };
        let t = &plan[i];
        if is_create {
            let outcome = match result {
                Ok(()) => Ok(()),
                Err(_) => create(client, ns, t).inspect(|()| created_late[i] = true),
            };
            match outcome {
                Ok(()) => ui::detail(&format!("created {} on host2", t.path)),
                Err(e) => {
                    report.failures.push(Failure {
                        folder: t.label(),
                        uid: None,
                        reason: format!("cannot create it on host2: {e:#}"),
                    });
                    report.failed += t.folders.len() as u64;
                    keep[i] = false;
                }
            }
        } else if !keep[i] {
            // Not created: nothing to subscribe.
        } else {
            // A SUBSCRIBE that came before its mailbox existed (created alone, late) is sent
            // again now.
            let result = if result.is_err() && created_late[i] {
                client.subscribe(&t.mailbox)
            } else {
                result
            };
            if let Err(e) = result {
                ui::warn(&format!("cannot subscribe {} on host2: {e:#}", t.path));
            }
        }
    }
    Ok(keep)
}

fn create(client: &mut Client, ns: &Namespace, t: &Target) -> Result<()> {
    if client.create(&t.mailbox).is_ok() {
        return Ok(());
    }
    // Some servers want the parents first.
    for parent in targets::ancestor_mailboxes(&t.path, ns) {
        let _ = client.create(&parent);
    }
    client.create(&t.mailbox)
}

/// The report of a target that needs nothing: host2 reports UIDVALIDITY, UIDNEXT, MESSAGES (and
/// HIGHESTMODSEQ) exactly as the last complete push into it left them, it goes to the same store
/// folders, none of which (nor any of their message rows) changed since, no APPEND intent is
/// pending, and `--delete2` is not newly asked for. `None`: push it in full.
fn unchanged(
    index: &Index,
    destination: i64,
    t: &Target,
    opts: &PushOptions,
) -> Result<Option<FolderReport>> {
    let (true, Some(st)) = (t.exists, &t.status) else {
        return Ok(None);
    };
    let Some(f) = index.mailbox_facts(destination, &t.mailbox)? else {
        return Ok(None);
    };
    let same_host = st.uidvalidity == Some(f.dest_uidvalidity)
        && st.uidnext == Some(f.dest_uidnext)
        && st.messages == Some(f.dest_messages)
        && st.highestmodseq == f.dest_highestmodseq;
    if !same_host || f.folders != t.folder_key() || (opts.delete2 && !f.delete2) {
        return Ok(None);
    }
    for folder in &t.folders {
        if folder.change > f.store_change
            || index.folder_messages_changed_since(folder.id, f.store_change)?
        {
            return Ok(None);
        }
    }
    if !index.intents_for(destination, &t.mailbox)?.is_empty() {
        return Ok(None);
    }
    Ok(Some(FolderReport {
        folder: t.label(),
        mailbox: t.path.clone(),
        messages: f.store_messages,
        already: f.store_messages,
        ..FolderReport::default()
    }))
}

/// After the pushes: one LIST-STATUS round trip, and for every mailbox pushed completely whose
/// state host2 reports exactly as expected (nobody else changed it meanwhile), record the facts
/// that let the next push skip it. Without LIST-STATUS nothing is recorded.
fn record_facts(
    client: &mut Client,
    index: &mut Index,
    destination: i64,
    plan: &[Target],
    results: &[(usize, Outcome)],
    store_change: i64,
    opts: &PushOptions,
) {
    let done: Vec<(usize, &FolderReport, HostState)> = results
        .iter()
        .filter(|(_, (fr, failures))| failures.is_empty() && fr.failed == 0 && fr.missing() == 0)
        .filter_map(|(i, (fr, _))| fr.expect.map(|e| (*i, fr, e)))
        .collect();
    if done.is_empty() || !client.has_capability("LIST-STATUS") {
        return;
    }
    let listed = match client.list() {
        Ok(l) => l,
        Err(e) => {
            ui::detail(&format!("host2: LIST after the push failed: {e:#}"));
            return;
        }
    };
    for (i, fr, want) in done {
        let t = &plan[i];
        let Some(st) = listed
            .iter()
            .find(|mb| mb.raw_name.as_bytes() == t.mailbox.as_bytes() && !mb.noselect)
            .and_then(|mb| mb.status.as_ref())
        else {
            continue;
        };
        let seen = (st.uidvalidity, st.uidnext, st.messages);
        if seen
            != (
                Some(want.uidvalidity),
                Some(want.uidnext),
                Some(want.messages),
            )
        {
            ui::detail(&format!(
                "{}: host2 changed during the push; it will be surveyed again next time",
                t.label()
            ));
            continue;
        }
        let facts = MailboxFacts {
            folders: t.folder_key(),
            store_change,
            store_messages: fr.messages,
            delete2: opts.delete2,
            dest_uidvalidity: want.uidvalidity,
            dest_uidnext: want.uidnext,
            dest_messages: want.messages,
            dest_highestmodseq: st.highestmodseq,
        };
        if let Err(e) = index.set_mailbox_facts(destination, &t.mailbox, &facts) {
            ui::warn(&format!("{}: {e:#}", t.label()));
        }
    }
}

/// One target's report and failures.
type Outcome = (FolderReport, Vec<Failure>);

/// Each pushed target's outcome (by index into the plan), and the first connection when it is
/// still usable.
type Pushed = (Vec<(usize, Outcome)>, Option<Client>);

/// Push every target, over `opts.jobs` connections: the given client and index serve the first
/// worker; the others open their own connection and their own handle on the index (SQLite
/// serialises the writes; the store lock stays with this process). The extra connections are
/// opened while the first one runs `prepare` (creating folders), which says which targets to
/// push. Returns each pushed target's outcome (by index into `plan`) and the first connection
/// when it is still usable.
fn run_jobs<P>(
    ctx: &Ctx<'_>,
    client: Client,
    index: &mut Index,
    plan: &[Target],
    prepare: P,
) -> Result<Pushed>
where
    P: FnOnce(&mut Client) -> Result<Vec<bool>>,
{
    let queue: Mutex<VecDeque<usize>> = Mutex::new(VecDeque::new());
    let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; plan.len()]);
    let jobs = ctx.opts.jobs.clamp(1, plan.len().max(1));
    let index_path = ctx.opts.store.join(INDEX_FILE);
    let gate = RwLock::new(());
    let work = |mut client: Client, index: &mut Index| -> Option<Client> {
        loop {
            let next = queue.lock().ok().and_then(|mut q| q.pop_front());
            let Some(i) = next else { break };
            let (fr, failures, reconnect) =
                folder::push_target(ctx, &mut client, index, &plan[i], i);
            if let Ok(mut r) = results.lock() {
                r[i] = Some((fr, failures));
            }
            if reconnect {
                match connect(&ctx.opts.endpoint, ctx.opts.retries) {
                    Ok(c) => client = c,
                    Err(e) => {
                        // The folders left are reported as not pushed.
                        ui::warn(&format!("reconnecting to host2 failed: {e:#}"));
                        return None;
                    }
                }
            }
        }
        Some(client)
    };
    let mut keep = vec![false; plan.len()];
    let mut prepare_error = None;
    let mut client = Some(client);
    std::thread::scope(|s| {
        let guard = gate.write().unwrap_or_else(|e| e.into_inner());
        for _ in 1..jobs {
            let work = &work;
            let gate = &gate;
            let endpoint = &ctx.opts.endpoint;
            let retries = ctx.opts.retries;
            let index_path = &index_path;
            s.spawn(move || {
                let conn =
                    connect(endpoint, retries).and_then(|c| Ok((c, Index::open(index_path)?)));
                // Wait for the folders to exist and the queue to be filled.
                drop(gate.read().unwrap_or_else(|e| e.into_inner()));
                match conn {
                    Ok((c, mut idx)) => {
                        if let Some(c) = work(c, &mut idx) {
                            let _ = c.logout();
                        }
                    }
                    // Fewer connections are still correct; the others take the folders.
                    Err(e) => ui::warn(&format!("an extra connection to host2 failed: {e:#}")),
                }
            });
        }
        let mut c = client.take().expect("the first connection");
        match prepare(&mut c) {
            Ok(k) => {
                if let Ok(mut q) = queue.lock() {
                    q.extend((0..plan.len()).filter(|&i| k[i]));
                }
                keep = k;
            }
            Err(e) => prepare_error = Some(e),
        }
        drop(guard);
        client = if prepare_error.is_none() {
            work(c, index)
        } else {
            Some(c)
        };
    });
    if let Some(e) = prepare_error {
        return Err(e);
    }
    let results = results.into_inner().unwrap_or_default();
    let outcomes = results
        .into_iter()
        .enumerate()
        .filter(|(i, _)| keep[*i])
        .map(|(i, r)| {
            let t = &plan[i];
            let o = r.unwrap_or_else(|| {
                (
                    FolderReport {
                        folder: t.label(),
                        mailbox: t.path.clone(),
                        ..FolderReport::default()
                    },
                    vec![Failure {
                        folder: t.label(),
                        uid: None,
                        reason: "not pushed: the connection to host2 was lost".to_string(),
                    }],
                )
            });
            (i, o)
        })
        .collect();
    Ok((outcomes, client))
}
