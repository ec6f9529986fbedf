//! `imapferry push`: replay the store into host2, exactly once per message.
//!
//! - [`prepare`]: the host2 folders that are missing, created (and subscribed) first;
//! - [`folder`]: one host2 mailbox: compare it with the store ([`crate::compare`]), record what
//!   is there, remove the doubles our own interrupted pushes left, APPEND what is missing,
//!   update flags, and with `--delete2` remove what the store no longer holds;
//! - [`settle`]: the last look, once host2 is quiet, at mailboxes with unanswered APPENDs.
//!
//! Exactly once, across crashes, late arrivals and retries: before each APPEND batch one
//! *intent* per message is committed; an answered APPEND turns its intent into a mapping (store
//! message → host2 UID), a refused one drops it, and an unanswered one (the link dropped, the
//! process was killed) keeps it. A later push compares host2's messages at or above a kept
//! intent's UID bound with the intent's message, byte for byte: a copy that landed is recorded,
//! one that landed next to a copy already recorded (it arrived after the push that resent it
//! looked) is a double, and only such doubles are ever removed without `--delete2`. Mail host2
//! holds that the state does not explain is recognised by its bytes, never by headers alone.
//! Messages are sent with the exact stored bytes.

pub mod folder;
mod gmail;
mod prepare;
pub mod rewrite;
mod settle;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

use crate::budget::{Account, Allowance, Budget, BudgetSpent};
use crate::compare::targets::{MapRules, Target};
use crate::folders::Selection;
use crate::imap::Endpoint;
use crate::mailbox::{Cap, Mailbox};
use crate::provider::Provider;
use crate::run::{self, Connector, Failure, Retry};
use crate::store::{Index, MailboxFacts, RunCounts, Store};
use crate::text::count;
use crate::ui::{self, human_bytes, Direction, Progress};

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
    /// Create the folders only; send no message (`--justfolders`).
    pub just_folders: bool,
    /// Connections (and folders in parallel).
    pub jobs: usize,
    /// Most message bytes per APPEND batch (one intent transaction each).
    pub batch_bytes: u64,
    /// Most messages per APPEND batch.
    pub batch_messages: usize,
    /// Consecutive transient failures to retry (see [`crate::run::Retry`]).
    pub retries: u32,
    /// How long the mailboxes with unanswered APPENDs must stay unchanged before the last look
    /// (see [`settle`]), at least, in seconds.
    pub settle_secs: u64,
    /// Most message bytes uploaded to this host2 account in any 24 hours, across runs (the
    /// store's transfer log): past it the run stops cleanly, [`PushReport::budget_spent`] says
    /// until when (see [`crate::budget`]).
    pub max_bytes_per_day: Option<u64>,
    /// The largest message host2 takes (`--max-message-size2`): larger ones are listed, not
    /// sent. `None`: host2's APPENDLIMIT, or its provider's limit (35 MB on Microsoft 365).
    pub max_message_size: Option<u64>,
    /// Break the lines longer than host2 takes instead of listing the message unsent
    /// (`--rewrap-long-lines`); reported per message.
    pub rewrap_long_lines: bool,
    /// Send messages without `Disposition-Notification-To` (renamed) and `$MDNSent`
    /// (`--disarm-read-receipts`); reported per message.
    pub disarm_read_receipts: bool,
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
            just_folders: false,
            jobs: 4,
            batch_bytes: 8 << 20,
            batch_messages: 500,
            retries: 20,
            settle_secs: 2,
            max_bytes_per_day: None,
            max_message_size: None,
            rewrap_long_lines: false,
            disarm_read_receipts: false,
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
    /// Second copies our interrupted pushes had left, removed (with `--dry-run`: would be).
    pub doubles_removed: u64,
    pub failed: u64,
    /// Message bytes appended (with `--dry-run`: would be).
    pub bytes: u64,
    pub flags_updated: u64,
    /// Gmail: messages given this mailbox's label instead of a second APPEND.
    pub labelled: u64,
    pub deleted: u64,
    /// Keywords host2 would not store, left off.
    pub dropped_keywords: Vec<String>,
    pub seconds: f64,
    /// After a complete push: what host2 should report for the mailbox if nobody else touched
    /// it meanwhile (checked against LIST-STATUS before it is recorded for the fast path).
    #[serde(skip)]
    pub expect: Option<HostState>,
    /// Messages host2 stores altered (listed in the run's warnings).
    #[serde(skip)]
    pub warnings: Vec<Failure>,
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
        self.messages
            .saturating_sub(self.sent + self.already + self.labelled)
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
    pub doubles_removed: u64,
    pub failed: u64,
    pub bytes: u64,
    pub flags_updated: u64,
    /// Gmail: messages given a label instead of a second APPEND.
    pub labelled: u64,
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
    /// Messages host2 holds with other bytes than the store's (it rewrote them: same text,
    /// other line endings): present, but not byte for byte. Not failures: pushing again cannot
    /// change what host2 does.
    pub warnings: Vec<Failure>,
    /// The run stopped early for a daily upload budget (its own, or host2's quota): not a
    /// failure; the next run after `resume_at` continues.
    pub budget_spent: Option<BudgetSpent>,
    pub per_folder: Vec<FolderReport>,
    /// The run's log (in the store's `logs/`).
    pub log: Option<PathBuf>,
}

impl PushReport {
    /// The final lines for humans.
    pub fn summary(&self) -> String {
        if self.dry_run {
            return format!(
                "push (dry run): {} ({} to create), {} messages: {} to send ({}), {} \
                 already there; {} flag updates, {} to delete, {} doubles to remove\n{}",
                count(self.folders, "folder"),
                self.created.len(),
                self.messages,
                self.sent,
                human_bytes(self.bytes),
                self.already,
                self.flags_updated,
                self.deleted,
                self.doubles_removed,
                self.verdict
            );
        }
        let head = "push";
        let mut s = format!(
            "{head}: {} ({} created), {} messages: {} sent, {} already there, {} failed; \
             {} flag updates, {} deleted",
            count(self.folders, "folder"),
            self.created.len(),
            self.messages,
            self.sent,
            self.already,
            self.failed,
            self.flags_updated,
            self.deleted,
        );
        if self.doubles_removed > 0 {
            s += &format!(", {} doubles removed", self.doubles_removed);
        }
        if self.labelled > 0 {
            s += &format!(", {} labelled (Gmail: no second upload)", self.labelled);
        }
        s += &format!(
            "; {} in {:.1} s ({}/s)\n{}",
            human_bytes(self.bytes),
            self.seconds,
            human_bytes(self.rate as u64),
            self.verdict
        );
        s
    }
}

/// What every worker needs, shared read-only.
pub(crate) struct Ctx<'a> {
    pub opts: &'a PushOptions,
    pub destination: Option<i64>,
    pub objects: &'a crate::store::Objects,
    pub progress: &'a Progress,
    pub connector: &'a dyn Connector,
    pub index_path: PathBuf,
    /// Gmail as host2: each message's home target, and which targets are done.
    pub gmail: Option<gmail::Plan>,
    /// The run's daily upload budget: each APPEND batch is taken from it before it is sent.
    pub allowance: &'a Allowance,
}

/// Run a push. Errors that stop the whole run are returned; per-message and per-folder
/// problems are in [`PushReport::failures`].
pub fn run(opts: &PushOptions) -> Result<PushReport> {
    let mut store = Store::open_existing(&opts.store)?;
    let log = crate::runlog::start(&store.root, "push")?;
    let connector = run::Imap::new(&opts.endpoint, "host2");
    let mut report = run_with(opts, &mut store, &connector)?;
    report.log = Some(log);
    Ok(report)
}

/// [`run`] on an open store through any [`Connector`] (the engine tests use memory mailboxes).
pub fn run_with(
    opts: &PushOptions,
    store: &mut Store,
    connector: &dyn Connector,
) -> Result<PushReport> {
    let started = Instant::now();
    let mut report = PushReport {
        dry_run: opts.dry_run,
        ..PushReport::default()
    };
    let (conn, ns, plan) = look_at_host2(store, opts, connector, &mut report)?;
    // Nothing changes the store while we hold its lock: this bounds every change we push.
    let store_change = store.index.current_change()?;
    let (host, user) = (&opts.endpoint.host, &opts.endpoint.user);
    let destination = if opts.dry_run {
        store.index.find_destination(host, user)?
    } else {
        Some(store.index.destination_id(host, user)?)
    };
    let run_id = (!opts.dry_run)
        .then(|| store.index.start_run("push"))
        .transpose()?;
    let (mut todo, skipped, subscribe_only) =
        split_unchanged(&store.index, destination, plan, opts)?;
    let gmail = gmail::plan_for(conn.provider(), &store.index, &mut todo)?;

    let progress = Progress::new(Direction::Send, todo.len());
    if !opts.just_folders {
        expect(&progress, &store.index, destination, &todo)?;
    }
    let allowance = allowance(opts, &store.index, destination, conn.provider())?;
    let ctx = Ctx {
        allowance: &allowance,
        opts,
        destination,
        objects: &store.objects,
        progress: &progress,
        connector,
        index_path: store.index.path().to_path_buf(),
        gmail,
    };
    let mut created = Vec::new();
    let mut refused: Vec<Option<String>> = vec![None; todo.len()];
    let (results, kept) = run::pool(
        &todo,
        opts.jobs,
        connector,
        conn,
        |c| {
            let wanted = (&todo[..], &subscribe_only[..]);
            let go = prepare::mailboxes(c, &ctx, &ns, wanted, &mut created, &mut refused)?;
            if let Some(plan) = &ctx.gmail {
                plan.left_out(&go);
            }
            Ok(Some(go))
        },
        |c, i, t| folder::push_target(&ctx, c, t, i),
    )?;
    let (results, kept) = settle::last_looks(&ctx, kept, &todo, results, started);
    progress.finish();
    report.created = made(created, &todo, &refused);
    if let (Some(mut c), Some(d), false) = (kept, destination, opts.dry_run) {
        let done = (&todo[..], &results[..]);
        record_facts(c.as_mut(), &mut store.index, d, done, store_change, opts);
        c.logout();
    }
    add_up(&mut report, skipped, &todo, results, &refused);
    report.budget_spent = allowance.stop();
    finish(&mut report, started, opts);
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

/// What each target is expected to take, from the store alone, before any is surveyed: the
/// live messages of its folders that the store does not record on host2, with their bytes. The
/// bar starts with its total instead of growing as folders are surveyed; a survey corrects its
/// folder's numbers (a copy found there, one gone).
fn expect(
    progress: &Progress,
    index: &Index,
    destination: Option<i64>,
    todo: &[Target],
) -> Result<()> {
    for (i, t) in todo.iter().enumerate() {
        let mapped: std::collections::BTreeSet<(i64, u32, u32)> = match destination {
            Some(d) => index
                .mappings_to(d, &t.mailbox)?
                .iter()
                .map(|m| m.key())
                .collect(),
            None => Default::default(),
        };
        let (mut messages, mut bytes) = (0, 0);
        for m in crate::compare::load_store(index, t)? {
            if !mapped.contains(&m.key()) {
                messages += 1;
                bytes += m.row.size;
            }
        }
        progress.expect_bytes(i, messages, bytes);
    }
    Ok(())
}

/// The run's daily upload budget: `--max-bytes-per-day2`, else the provider's limit; none for
/// a dry run.
fn allowance(
    opts: &PushOptions,
    index: &Index,
    destination: Option<i64>,
    provider: Provider,
) -> Result<Allowance> {
    Ok(match (destination, opts.dry_run) {
        (Some(d), false) => {
            let limit = opts.max_bytes_per_day.or(provider.daily_upload_limit());
            let budget = Budget::new(Account::up(d), limit);
            Allowance::open(budget, index, crate::clock::now())?
        }
        _ => Allowance::unlimited(Account::up(destination.unwrap_or(0))),
    })
}

/// The store folders this run covers (a `--folder` the store lacks is a failure), host2's
/// namespace and folders, and where each store folder goes: (connection, namespace, plan).
fn look_at_host2(
    store: &Store,
    opts: &PushOptions,
    connector: &dyn Connector,
    report: &mut PushReport,
) -> Result<(Box<dyn Mailbox>, crate::names::Namespace, Vec<Target>)> {
    let folders = crate::compare::store_folders(store, &opts.selection)?;
    let paths: Vec<String> = folders.iter().map(|f| f.path.clone()).collect();
    let all = store.index.folders()?;
    for missing in opts.selection.unmatched(&paths) {
        if let Some(f) = all.iter().find(|f| f.raw_name == missing) {
            return Err(anyhow::Error::new(crate::folders::RawFolderName {
                given: missing.to_string(),
                path: f.path.clone(),
            }));
        }
        report.failures.push(Failure::folder(
            missing,
            "no such folder in the store (see `imapferry status`)",
        ));
    }
    let mut retry = Retry::new(opts.retries);
    let (conn, ns, plan) =
        crate::compare::plan_host2(&store.index, &folders, &opts.rules, connector, &mut retry)?;
    report_renames(&plan, &ns, report);
    for t in opts.rules.transforms.iter().filter(|t| !t.matched()) {
        ui::warn(&format!(
            "--regextrans2 {:?} matched no folder: it rewrites imapferry's host2 paths (UTF-8, \
             levels joined by /, no INBOX. prefix: Archive/2024), not host2's raw names; see \
             docs/imapsync.md",
            t.text()
        ));
    }
    Ok((conn, ns, plan))
}

/// The host2 paths created: a folder that could not be created is a failure, not a creation.
fn made(mut created: Vec<String>, todo: &[Target], refused: &[Option<String>]) -> Vec<String> {
    let refused: Vec<&str> = todo
        .iter()
        .zip(refused)
        .filter(|(_, r)| r.is_some())
        .map(|(t, _)| t.path.as_str())
        .collect();
    created.retain(|p| !refused.contains(&p.as_str()));
    created
}

/// One target's report and failures.
type Outcome = (FolderReport, Vec<Failure>);

/// Print and list the host2 paths whose level names held host2's separator.
fn report_renames(plan: &[Target], ns: &crate::names::Namespace, report: &mut PushReport) {
    for t in plan {
        let Some(from) = &t.escaped_from else {
            continue;
        };
        let why = match (&t.renamed_because, ns.separator) {
            (Some(why), _) => why.clone(),
            (None, Some(sep)) => format!("{sep:?} separates folder levels there"),
            (None, None) => continue,
        };
        ui::info(&format!("{from:?} is {:?} on host2: {why}", t.path));
        report.renamed.push((from.clone(), t.path.clone()));
        if t.folders.len() > 1 {
            let paths: Vec<&str> = t.folders.iter().map(|f| f.path.as_str()).collect();
            ui::warn(&format!(
                "store folders {} all go to {:?} on host2 (use --folder-map to keep them apart)",
                paths.join(", "),
                t.path
            ));
        }
    }
}

/// The targets to push, the outcomes of those that need nothing ([`unchanged`]), and the
/// unchanged mailboxes that still want a SUBSCRIBE.
fn split_unchanged(
    index: &Index,
    destination: Option<i64>,
    plan: Vec<Target>,
    opts: &PushOptions,
) -> Result<(Vec<Target>, Vec<Outcome>, Vec<crate::names::MailboxName>)> {
    let (mut todo, mut skipped, mut subscribe_only) = (Vec::new(), Vec::new(), Vec::new());
    for t in plan {
        let same = match destination {
            Some(d) => unchanged(index, d, &t, opts)?,
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
                skipped.push((fr, Vec::new()));
            }
            None => todo.push(t),
        }
    }
    Ok((todo, skipped, subscribe_only))
}

/// The run's totals from the targets' outcomes (`None`: never pushed, every connection lost).
fn add_up(
    report: &mut PushReport,
    skipped: Vec<Outcome>,
    todo: &[Target],
    results: Vec<Option<Outcome>>,
    refused: &[Option<String>],
) {
    let mut outcomes = skipped;
    for ((t, r), why) in todo.iter().zip(results).zip(refused) {
        outcomes.push(r.unwrap_or_else(|| {
            let fr = FolderReport {
                folder: t.label(),
                mailbox: t.path.clone(),
                failed: t.folders.len() as u64,
                ..FolderReport::default()
            };
            let why = why
                .clone()
                .unwrap_or_else(|| "not pushed: every connection to host2 was lost".into());
            (fr, vec![Failure::folder(&t.label(), why)])
        }));
    }
    outcomes.sort_by(|a, b| a.0.mailbox.cmp(&b.0.mailbox));
    for (fr, failures) in outcomes {
        report.folders += 1;
        report.messages += fr.messages;
        report.sent += fr.sent;
        report.already += fr.already;
        report.recovered += fr.recovered;
        report.doubles_removed += fr.doubles_removed;
        report.failed += fr.failed;
        report.bytes += fr.bytes;
        report.flags_updated += fr.flags_updated;
        report.labelled += fr.labelled;
        report.deleted += fr.deleted;
        report.failures.extend(failures);
        report.warnings.extend(fr.warnings.iter().cloned());
        report.per_folder.push(fr);
    }
    // One count: every listed failure, a folder's (and a --folder the store lacks) included.
    report.failed = report.failures.len() as u64;
}

/// Time, rate, memory, completeness and the verdict line.
fn finish(report: &mut PushReport, started: Instant, opts: &PushOptions) {
    report.seconds = started.elapsed().as_secs_f64();
    report.rate = report.bytes as f64 / report.seconds.max(0.001);
    report.peak_rss_bytes = ui::peak_rss_bytes();
    let missing: u64 = report.per_folder.iter().map(FolderReport::missing).sum();
    report.complete =
        !opts.dry_run && (missing == 0 || opts.just_folders) && report.failures.is_empty();
    let altered = if report.warnings.is_empty() {
        String::new()
    } else {
        format!(
            "; {} of them stored altered by host2 (listed as warnings)",
            report.warnings.len()
        )
    };
    report.verdict = if opts.just_folders {
        format!(
            "folders only (--justfolders): {} {}, no message sent",
            report.created.len(),
            if opts.dry_run { "to create" } else { "created" }
        )
    } else if opts.dry_run {
        let creates = if report.created.is_empty() {
            String::new()
        } else {
            format!(" ({})", report.created.join(", "))
        };
        format!(
            "dry run: would create {} folders{creates}, send {} messages ({}), update flags of \
             {}, remove {} doubles and delete {}; nothing was changed",
            report.created.len(),
            report.sent,
            human_bytes(report.bytes),
            report.flags_updated,
            report.doubles_removed,
            report.deleted
        )
    } else if report.complete {
        format!(
            "host2 holds all {} of the store's {}{altered}",
            count(report.messages, "message"),
            count(report.folders, "folder")
        )
    } else if let (Some(b), true) = (&report.budget_spent, report.failures.is_empty()) {
        format!(
            "host2 lacks {missing} of the store's {} messages: {b}",
            report.messages
        )
    } else {
        let budget = match &report.budget_spent {
            Some(b) => format!("; {b}"),
            None => String::new(),
        };
        format!(
            "host2 lacks {missing} of the store's {} messages ({} failures listed); run push again \
             after fixing the cause{budget}",
            report.messages,
            report.failures.len()
        )
    };
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
    conn: &mut dyn Mailbox,
    index: &mut Index,
    destination: i64,
    (plan, results): (&[Target], &[Option<Outcome>]),
    store_change: i64,
    opts: &PushOptions,
) {
    let done: Vec<(usize, &FolderReport, HostState)> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|o| (i, o)))
        .filter(|(_, (fr, failures))| failures.is_empty() && fr.failed == 0 && fr.missing() == 0)
        .filter_map(|(i, (fr, _))| fr.expect.map(|e| (i, fr, e)))
        .collect();
    if done.is_empty() || !conn.has(Cap::ListStatus) {
        return;
    }
    let listed = match conn.list() {
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
            .find(|mb| mb.raw_name == t.mailbox && !mb.noselect)
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
