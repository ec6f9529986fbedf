//! `imapferry pull`: mirror host1's account into the store.
//!
//! - [`list`]: host1's folders into the store's folder rows;
//! - [`plan`]: the decisions (what changed, what is new, expunged, flagged otherwise), pure;
//! - [`folder`]: one folder through a [`Mailbox`]: ask, decide, record;
//! - [`bodies`]: the new messages' bodies, checked against what host1 declared.
//!
//! Folders LIST-STATUS shows unchanged cost no command; the others are spread over `--jobs`
//! connections ([`crate::run::pool`]), each retried after a dropped link
//! ([`crate::run::retrying`]). Index rows are committed in batches after their objects are
//! durable, so a kill loses at most the batch in flight and nothing committed is fetched again.

mod bodies;
mod folder;
mod list;
pub mod plan;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::budget::{is_budget_spent, Account, Allowance, Budget, BudgetSpent};
use crate::folders::Selection;
use crate::imap::{Endpoint, MailboxStatus};
use crate::mailbox::Mailbox;
use crate::provider::{gmail_holds_bodies, Provider};
use crate::run::{self, Connector, Done, Failure, Retry};
use crate::store::partial::Partials;
use crate::store::{FolderRow, Index, Objects, RunCounts, Store, INDEX_FILE};
use crate::text::count;
use crate::ui::{self, human_bytes, Direction, Progress};
use bodies::Carry;
use folder::{pull_folder, Job};

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
    /// Consecutive transient failures to retry (see [`crate::run::Retry`]).
    pub retries: u32,
    /// Re-hash every object the pulled folders' messages use and fetch the damaged or missing
    /// ones again (what `verify` lists).
    pub repair: bool,
    /// Take a store that mirrors the same user under another host name (see `check_account`).
    pub rebind: bool,
    /// Which new messages to take (all by default).
    pub filter: plan::MessageFilter,
    /// And of those, only the ones host1 finds with these SEARCH criteria (`--search`).
    pub search: Option<crate::imap::SearchKey>,
    /// Record the folder list only; take no message (`sync --justfolders`).
    pub just_folders: bool,
    /// Say what would be fetched, changed and expunged; change nothing (the run works on a
    /// scratch copy of the index).
    pub dry_run: bool,
    /// Most message bytes downloaded from host1 in any 24 hours, across runs (the store's
    /// transfer log): past it the run stops cleanly, [`PullReport::budget_spent`] says until
    /// when (see [`crate::budget`]).
    pub max_bytes_per_day: Option<u64>,
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
            repair: false,
            rebind: false,
            filter: plan::MessageFilter::default(),
            search: None,
            just_folders: false,
            dry_run: false,
            max_bytes_per_day: None,
        }
    }
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
    /// Messages whose damaged or missing object was fetched again (`--repair`).
    pub repaired: u64,
    pub expunged: u64,
    pub failed: u64,
    /// New messages the message filter left out (taken by a later pull without it).
    pub left_out: u64,
    /// Message bytes downloaded.
    pub bytes: u64,
    /// Counted for a dry run: `new` and `bytes` are what would be fetched.
    #[serde(skip)]
    pub dry_run: bool,
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
    pub dry_run: bool,
    pub folders: u64,
    pub new: u64,
    pub reused: u64,
    pub updated: u64,
    /// Messages whose damaged or missing object was fetched again (`--repair`).
    pub repaired: u64,
    pub expunged: u64,
    /// New messages the message filter left out (taken by a later pull without it).
    pub left_out: u64,
    /// Messages and folders that could not be pulled (`failures` lists them), as in push.
    pub failed: u64,
    /// True when every selected message is in the store (the filter selects), as in push.
    pub complete: bool,
    pub bytes: u64,
    pub seconds: f64,
    /// Peak resident memory of the process, for benchmarks and the large-message test.
    pub peak_rss_bytes: Option<u64>,
    pub failures: Vec<Failure>,
    /// Messages stored as host1 serves them although something about them was odd (a length
    /// other than its RFC822.SIZE, served the same twice): listed, not failures.
    pub warnings: Vec<Failure>,
    /// The run stopped early for a daily download budget (its own, or host1's quota): not a
    /// failure; the next run after `resume_at` continues.
    pub budget_spent: Option<BudgetSpent>,
    pub per_folder: Vec<FolderReport>,
    /// The run's log (in the store's `logs/`); none for a dry run.
    pub log: Option<std::path::PathBuf>,
}

impl PullReport {
    /// One line for humans.
    pub fn summary(&self) -> String {
        if self.dry_run {
            return format!(
                "pull (dry run): {}, {} messages to fetch ({}), {} flags to change, {} \
                 expunged on host1, {} failed; nothing was changed",
                count(self.folders, "folder"),
                self.new,
                human_bytes(self.bytes),
                self.updated,
                self.expunged,
                self.failures.len()
            );
        }
        let rate = self.bytes as f64 / self.seconds.max(0.001);
        let left_out = if self.left_out > 0 {
            format!(", {} left out by the message filter", self.left_out)
        } else {
            String::new()
        };
        let budget = match &self.budget_spent {
            Some(b) => format!("; {b}"),
            None => String::new(),
        };
        format!(
            "pull: {}, {} messages new ({} already in the store), {} updated, {} expunged, {} failed{left_out}; {} in {:.1} s ({}/s){budget}",
            count(self.folders, "folder"),
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
    let connector = run::Imap::new(&opts.endpoint, "host1");
    if opts.dry_run {
        return dry_run(opts, &connector);
    }
    // An existing store is checked before connecting (another account's store fails at
    // once); a new one is made only after a login succeeded, so a mistyped host, user or
    // password leaves nothing behind.
    let existing = Store::exists(&opts.store);
    let mut store = existing
        .then(|| Store::open_existing(&opts.store))
        .transpose()?;
    if let Some(store) = &mut store {
        check_account(store, opts)?;
    }
    let conn = run::connect(&connector, &mut Retry::new(opts.retries))?;
    let mut store = match store {
        Some(store) => store,
        None => {
            let mut store = Store::open_or_create(&opts.store)?;
            check_account(&mut store, opts)?;
            store
        }
    };
    let log = crate::runlog::start(&store.root, "pull")?;
    let mut report = run_with(opts, &mut store, &connector, Some(conn))?;
    report.log = Some(log);
    Ok(report)
}

/// A dry run: the store's index copied into a scratch store (or an empty one), pulled there
/// without fetching a body, then thrown away.
fn dry_run(opts: &PullOptions, connector: &run::Imap<'_>) -> Result<PullReport> {
    let scratch = std::env::temp_dir().join(format!(
        "imapferry-dry-run-{}-{}",
        std::process::id(),
        crate::clock::now()
    ));
    std::fs::create_dir_all(&scratch)?;
    let result = (|| {
        if Store::exists(&opts.store) {
            let store = Store::open_existing(&opts.store)?;
            store
                .index
                .copy_to(&scratch.join(crate::store::INDEX_FILE))?;
        }
        let mut store = Store::open_or_create(&scratch)?;
        check_account(&mut store, opts)?;
        let conn = run::connect(connector, &mut Retry::new(opts.retries))?;
        run_with(opts, &mut store, connector, Some(conn))
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// [`run`] on an open store through any [`Connector`] (the engine tests use memory mailboxes),
/// on `first` when a connection is already open.
pub fn run_with(
    opts: &PullOptions,
    store: &mut Store,
    connector: &dyn Connector,
    first: Option<Box<dyn Mailbox>>,
) -> Result<PullReport> {
    let started = Instant::now();
    let mut retry = Retry::new(opts.retries);
    let mut conn = match first {
        Some(c) => c,
        None => run::connect(connector, &mut retry)?,
    };
    let run_id = store.index.start_run("pull")?;
    let mut report = PullReport::default();
    let folders = run::retrying(
        &mut conn,
        connector,
        &mut retry,
        "listing folders",
        |m, _| {
            report.failures.clear();
            report.warnings.clear();
            let ns = m.namespace()?;
            list::sync_folder_list(m, store, &ns, opts, &mut report)
        },
    )?;
    let (todo, mut results) = to_pull(store, &folders, opts)?;
    let count = folders.len();
    let progress = Progress::new(Direction::Fetch, count);
    progress.settled(count - todo.len());
    // What LIST-STATUS counts is known before any body moves: the total starts near its end
    // value instead of growing folder by folder.
    for (i, messages) in expected(store, &folders, &todo)? {
        progress.expect(i, messages);
    }
    let allowance = if opts.dry_run {
        Allowance::unlimited(Account::down())
    } else {
        let provider = conn.provider();
        let limit = opts.max_bytes_per_day.or(provider.daily_download_limit());
        let budget = Budget::new(Account::down(), limit);
        Allowance::open(budget, &store.index, crate::clock::now())?
    };
    let ctx = Shared {
        opts,
        allowance: &allowance,
        progress: &progress,
        connector,
    };
    pull_folders(
        &ctx,
        &store.root,
        conn,
        &folders,
        todo,
        &mut results,
        &mut retry,
    )?;
    progress.finish();
    add_up(&mut report, results, &folders);
    report.budget_spent = allowance.stop();
    finish(&mut report, started, opts);
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

/// What every folder's job shares.
struct Shared<'a> {
    opts: &'a PullOptions,
    /// The day's download budget.
    allowance: &'a Allowance,
    progress: &'a Progress,
    connector: &'a dyn Connector,
}

/// Pull the folders of `todo` over the job pool, phase by phase ([`phases`]), into their
/// result slots.
fn pull_folders(
    ctx: &Shared<'_>,
    root: &Path,
    conn: Box<dyn Mailbox>,
    folders: &[(FolderRow, Option<MailboxStatus>)],
    todo: Vec<usize>,
    results: &mut [Option<Outcome>],
    retry: &mut Retry,
) -> Result<()> {
    let Shared {
        opts,
        allowance,
        progress,
        connector,
    } = *ctx;
    let count = folders.len();
    let mut conn = Some(conn);
    for items in phases(conn.as_deref(), todo, folders) {
        let first = match conn.take() {
            Some(c) => c,
            None => run::connect(connector, retry)?,
        };
        let (done, kept) = run::pool(
            &items,
            opts.jobs,
            connector,
            first,
            |_| Ok(None),
            |conn, _, &i| {
                let job = Job {
                    folder: &folders[i].0,
                    opts,
                    allowance,
                    progress,
                    position: (i, count),
                };
                pull_one(conn, connector, root, &job)
            },
        )?;
        conn = kept;
        for (k, r) in done.into_iter().enumerate() {
            results[items[k]] = r;
        }
    }
    if let Some(mut c) = conn {
        c.logout();
    }
    Ok(())
}

/// The folders to pull, in the order they must go: on Gmail the folders that hold the messages
/// (All Mail, Spam, Trash) first, so every label view after them costs metadata only (its
/// messages are known by their X-GM-MSGID); elsewhere all at once.
fn phases(
    conn: Option<&dyn Mailbox>,
    todo: Vec<usize>,
    folders: &[(FolderRow, Option<MailboxStatus>)],
) -> Vec<Vec<usize>> {
    if conn.is_none_or(|c| c.provider() != Provider::Gmail) {
        return vec![todo];
    }
    let (bodies, views): (Vec<usize>, Vec<usize>) = todo
        .into_iter()
        .partition(|&i| gmail_holds_bodies(folders[i].0.role.as_deref()));
    vec![bodies, views]
}

/// One folder's outcome: its report and its failures.
type Outcome = (FolderReport, Vec<Failure>);

/// The folders to pull (indexes into `folders`) and a result slot per folder, those needing
/// nothing already filled.
fn to_pull(
    store: &mut Store,
    folders: &[(FolderRow, Option<MailboxStatus>)],
    opts: &PullOptions,
) -> Result<(Vec<usize>, Vec<Option<Outcome>>)> {
    if opts.just_folders {
        // The folder list is recorded; each folder counts as looked at, nothing is fetched.
        let seen = folders.iter().map(|(f, _)| {
            let fr = FolderReport {
                folder: f.path.clone(),
                ..FolderReport::default()
            };
            Some((fr, Vec::new()))
        });
        return Ok((Vec::new(), seen.collect()));
    }
    if opts.repair {
        // Every folder is looked at: an unchanged one may still hold a damaged object.
        return Ok(((0..folders.len()).collect(), vec![None; folders.len()]));
    }
    settle_unchanged(store, folders)
}

/// Time, memory and the run's verdict fields.
fn finish(report: &mut PullReport, started: Instant, opts: &PullOptions) {
    report.seconds = started.elapsed().as_secs_f64();
    report.peak_rss_bytes = ui::peak_rss_bytes();
    report.failed = report.failures.len() as u64;
    report.dry_run = opts.dry_run;
    report.complete = report.failures.is_empty() && report.budget_spent.is_none();
}

/// Folders LIST-STATUS shows exactly as the last pull left them are recorded as pulled now,
/// without a command. Returns the indexes of the others, and a result slot per folder.
fn settle_unchanged(
    store: &mut Store,
    folders: &[(FolderRow, Option<MailboxStatus>)],
) -> Result<(Vec<usize>, Vec<Option<Outcome>>)> {
    let mut results: Vec<Option<Outcome>> = vec![None; folders.len()];
    let mut todo = Vec::new();
    let mut settled = Vec::new();
    for (i, (folder, status)) in folders.iter().enumerate() {
        let same = match (status, folder.state.uidvalidity) {
            (Some(st), Some(uv)) => {
                plan::unchanged_by_status(&folder.state, store.index.live_count(folder.id, uv)?, st)
            }
            _ => false,
        };
        if same {
            settled.push(i);
        } else {
            todo.push(i);
        }
    }
    if !settled.is_empty() {
        let mut batch = store.index.batch()?;
        for &i in &settled {
            let folder = &folders[i].0;
            batch.set_folder_state(folder.id, &folder.state, crate::clock::now())?;
            let fr = FolderReport {
                folder: folder.path.clone(),
                unchanged: true,
                ..FolderReport::default()
            };
            results[i] = Some((fr, Vec::new()));
        }
        batch.commit()?;
    }
    Ok((todo, results))
}

/// For the folders of `todo` whose LIST-STATUS is known: the messages a pull is expected to
/// fetch there (see [`plan::expected_new`]).
fn expected(
    store: &Store,
    folders: &[(FolderRow, Option<MailboxStatus>)],
    todo: &[usize],
) -> Result<Vec<(usize, u64)>> {
    let mut out = Vec::new();
    for &i in todo {
        let (folder, Some(status)) = &folders[i] else {
            continue;
        };
        let live = match (folder.state.uidvalidity, status.uidvalidity) {
            (Some(old), Some(now)) if old == now => store.index.live_count(folder.id, old)?,
            _ => 0,
        };
        if let Some(n) = plan::expected_new(live, status) {
            out.push((i, n));
        }
    }
    Ok(out)
}

/// Pull one folder, reconnecting and resuming after transient failures.
fn pull_one(
    conn: &mut Box<dyn Mailbox>,
    connector: &dyn Connector,
    root: &Path,
    job: &Job<'_>,
) -> Done<Outcome> {
    let (folder, opts, progress, position) = (job.folder, job.opts, job.progress, job.position);
    let mut fr = FolderReport {
        folder: folder.path.clone(),
        ..FolderReport::default()
    };
    let mut failures = Vec::new();
    progress.start(position.0, &folder.path);
    let mut carry = Carry::default();
    let mut retry = Retry::new(opts.retries);
    let done = |fr: &FolderReport| fr.new + fr.updated + fr.expunged + fr.chunk_bytes;
    let result = Local::open(root).and_then(|mut local| {
        run::retrying(
            conn,
            connector,
            &mut retry,
            &format!("folder {}", folder.path),
            |m, progressed| {
                let before = done(&fr);
                let r = pull_folder(m, &mut local, job, &mut fr, &mut failures, &mut carry);
                *progressed = done(&fr) > before;
                r
            },
        )
    });
    // A slow-down that never lifted, on any command: the day's quota, not a failure.
    let result = result.map_err(|e| {
        if crate::imap::error::is_slowed_down(&e) {
            ui::warn(&format!("{}: {e:#}", folder.path));
            anyhow::Error::new(job.allowance.server_quota(crate::clock::now()))
        } else {
            e
        }
    });
    let reconnect = match result {
        Ok(()) => {
            if !fr.unchanged || ui::verbosity() >= 2 {
                progress.line(&folder_line(&fr));
            }
            false
        }
        // Not a failure: what came is committed, the rest waits for the next run.
        Err(e) if is_budget_spent(&e) => {
            progress.line(&format!(
                "{}: {} new, {}; the rest waits for the daily budget",
                folder.path,
                fr.new,
                human_bytes(fr.bytes)
            ));
            false
        }
        Err(e) => {
            let reason = format!("{e:#}");
            progress.line(&format!("{}: failed: {reason}", folder.path));
            failures.push(Failure::folder(&folder.path, reason));
            fr.failed += 1;
            true
        }
    };
    progress.done(position.0);
    Done {
        result: (fr, failures),
        reconnect,
    }
}

/// The run's totals from each folder's outcome (`None`: never pulled, every connection lost).
fn add_up(
    report: &mut PullReport,
    results: Vec<Option<Outcome>>,
    folders: &[(FolderRow, Option<MailboxStatus>)],
) {
    for (r, (folder, _)) in results.into_iter().zip(folders) {
        let (fr, failures) = r.unwrap_or_else(|| {
            let fr = FolderReport {
                folder: folder.path.clone(),
                failed: 1,
                ..FolderReport::default()
            };
            let why = "not pulled: every connection to host1 was lost";
            (fr, vec![Failure::folder(&folder.path, why)])
        });
        report.failures.extend(failures);
        report.warnings.extend(fr.warnings.iter().cloned());
        report.folders += 1;
        report.new += fr.new;
        report.reused += fr.reused;
        report.updated += fr.updated;
        report.repaired += fr.repaired;
        report.expunged += fr.expunged;
        report.left_out += fr.left_out;
        report.bytes += fr.bytes;
        report.per_folder.push(fr);
    }
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
    if fr.dry_run {
        return format!(
            "{}: {} to fetch ({}), {} flags to change, {} expunged on host1",
            fr.folder,
            fr.new,
            human_bytes(fr.bytes),
            fr.updated,
            fr.expunged
        );
    }
    let mut line = format!("{}: {} new", fr.folder, fr.new);
    if fr.reused > 0 {
        line += &format!(" ({} already in the store)", fr.reused);
    }
    if fr.repaired > 0 {
        line += &format!(", {} repaired", fr.repaired);
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

/// A store mirrors one account; pulling another into it would mix two mailboxes. The same
/// account under another host name (an alias, a new name at cutover) is taken with `rebind`.
fn check_account(store: &mut Store, opts: &PullOptions) -> Result<()> {
    let ep = &opts.endpoint;
    match store.index.account()? {
        None => store.index.set_account(&ep.host, &ep.user),
        Some((host, user)) if host.eq_ignore_ascii_case(&ep.host) && user == ep.user => Ok(()),
        Some((host, user)) if user == ep.user && opts.rebind => {
            ui::info(&format!(
                "store {} now mirrors {user} on {} (it mirrored {user} on {host}); folders whose \
                 UIDVALIDITY differs there are pulled again",
                store.root.display(),
                ep.host
            ));
            store.index.set_account(&ep.host, &ep.user)
        }
        Some((host, user)) if user == ep.user => bail!(
            "store {} mirrors {user} on {host}, not on {}: if {} is the same server under \
             another name, add --rebind; otherwise use another --store",
            store.root.display(),
            ep.host,
            ep.host
        ),
        Some((host, user)) => bail!(
            "store {} mirrors {user} on {host}, not {} on {}: use another --store for this account",
            store.root.display(),
            ep.user,
            ep.host
        ),
    }
}

/// A UID and its RFC822.SIZE.
type UidSize = (u32, u64);

/// The smallest chunk a large message is fetched in, however bad the link.
const MIN_CHUNK: u64 = 64 << 10;
