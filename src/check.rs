//! `imapferry check`: compare host2 with the store, folder by folder, without changing either.
//!
//! Each store folder is mapped to its host2 mailbox exactly as `push` maps it, and compared as
//! push compares it ([`crate::compare`]): present through the push state, else found by its
//! bytes. What check reports, push acts on: missing messages (push sends them), doubles our
//! interrupted pushes left (push removes them), other flags (push sets them); messages host2
//! stores altered (same text, other line endings) are listed, and nothing can change them.
//! Flags are compared as sets, limited to what host2 can store.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::compare::targets::{MapRules, Target};
use crate::compare::{self, storable_flags, store_folders, Comparison, Ledger};
use crate::flags::same_flags;
use crate::folders::Selection;
use crate::imap::Endpoint;
use crate::mailbox::Mailbox;
use crate::run::{self, Connector, Failure, Retry};
use crate::store::{Index, Store};
use crate::ui;

/// What `check` compares.
#[derive(Debug)]
pub struct CheckOptions {
    pub endpoint: Endpoint,
    pub store: PathBuf,
    pub selection: Selection,
    pub rules: MapRules,
    /// Consecutive transient failures to retry (see [`crate::run::Retry`]).
    pub retries: u32,
}

/// The comparison of one host2 mailbox.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderCheck {
    pub folder: String,
    pub mailbox: String,
    /// host2 has the mailbox.
    pub exists: bool,
    /// Live store messages that go there.
    pub store: u64,
    /// Messages host2 holds there.
    pub host2: u64,
    pub present: u64,
    /// Store messages host2 lacks: (store folder, store UID).
    pub missing: Vec<(String, u32)>,
    /// host2 UIDs that match no store message (not an error: host2 may hold more).
    pub extra: Vec<u32>,
    /// host2 UIDs that are second copies our interrupted pushes left (push removes them).
    pub doubles: Vec<u32>,
    /// Present messages whose flags differ: (store folder, store UID, host2 UID).
    pub flag_differences: Vec<(String, u32, u32)>,
    /// Present messages host2 stores with other bytes: (store folder, store UID, host2 UID,
    /// what changed).
    pub altered: Vec<(String, u32, u32, String)>,
}

impl FolderCheck {
    fn ok(&self) -> bool {
        self.missing.is_empty() && self.flag_differences.is_empty() && self.doubles.is_empty()
    }
}

/// The outcome of `check`.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub folders: u64,
    pub messages: u64,
    pub present: u64,
    pub missing: u64,
    pub extra: u64,
    pub doubles: u64,
    pub flag_differences: u64,
    pub altered: u64,
    /// True when host2 holds every store message once, with its flags.
    pub ok: bool,
    pub verdict: String,
    /// Mailboxes that could not be compared.
    pub failures: Vec<Failure>,
    pub per_folder: Vec<FolderCheck>,
}

impl CheckReport {
    /// Lines for humans: one per folder that differs, then the verdict.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.per_folder {
            let clean = f.ok() && f.extra.is_empty() && f.altered.is_empty();
            if clean && ui::verbosity() < 2 {
                continue;
            }
            out.push_str(&format!(
                "{}: {} in the store, {} on host2{}: {} present, {} missing, {} extra, {} doubles, \
                 {} flag differences, {} stored altered\n",
                f.folder,
                f.store,
                f.host2,
                if f.exists { "" } else { " (no such mailbox)" },
                f.present,
                f.missing.len(),
                f.extra.len(),
                f.doubles.len(),
                f.flag_differences.len(),
                f.altered.len(),
            ));
            for (folder, uid) in f.missing.iter().take(20) {
                out.push_str(&format!("  missing: {folder} UID {uid}\n"));
            }
            for (folder, uid, uid2) in f.flag_differences.iter().take(20) {
                out.push_str(&format!(
                    "  flags differ: {folder} UID {uid} (host2 UID {uid2})\n"
                ));
            }
            for (folder, uid, uid2, what) in f.altered.iter().take(20) {
                out.push_str(&format!(
                    "  stored altered: {folder} UID {uid} (host2 UID {uid2}): {what}\n"
                ));
            }
        }
        out.push_str(&self.verdict);
        out
    }
}

/// Compare. Errors that stop the whole check are returned; differences are in the report.
pub fn run(opts: &CheckOptions) -> Result<CheckReport> {
    let store = Store::open_existing(&opts.store)?;
    let connector = run::Imap::new(&opts.endpoint, "host2");
    run_with(opts, &store, &connector)
}

/// [`run`] on an open store through any [`Connector`].
pub fn run_with(
    opts: &CheckOptions,
    store: &Store,
    connector: &dyn Connector,
) -> Result<CheckReport> {
    let folders = store_folders(store, &opts.selection)?;
    let mut retry = Retry::new(opts.retries);
    let (mut conn, _, plan) =
        crate::compare::plan_host2(&store.index, &folders, &opts.rules, connector, &mut retry)?;
    let destination = store
        .index
        .find_destination(&opts.endpoint.host, &opts.endpoint.user)?;
    let mut report = CheckReport::default();
    for t in &plan {
        let compared = run::retrying(
            &mut conn,
            connector,
            &mut retry,
            &format!("folder {}", t.label()),
            |m, _| check_target(m, &store.index, &store.objects, destination, t),
        );
        match compared {
            Ok(fc) => add(&mut report, fc),
            Err(e) => report
                .failures
                .push(Failure::folder(&t.label(), format!("not compared: {e:#}"))),
        }
    }
    conn.logout();
    report.ok = report.missing == 0
        && report.flag_differences == 0
        && report.doubles == 0
        && report.failures.is_empty();
    report.verdict = verdict(&report);
    Ok(report)
}

fn add(report: &mut CheckReport, fc: FolderCheck) {
    report.folders += 1;
    report.messages += fc.store;
    report.present += fc.present;
    report.missing += fc.missing.len() as u64;
    report.extra += fc.extra.len() as u64;
    report.doubles += fc.doubles.len() as u64;
    report.flag_differences += fc.flag_differences.len() as u64;
    report.altered += fc.altered.len() as u64;
    report.per_folder.push(fc);
}

/// Compare one target.
fn check_target(
    conn: &mut dyn Mailbox,
    index: &Index,
    objects: &crate::store::Objects,
    destination: Option<i64>,
    t: &Target,
) -> Result<FolderCheck> {
    let mut fc = FolderCheck {
        folder: t.label(),
        mailbox: t.path.clone(),
        exists: t.exists,
        ..FolderCheck::default()
    };
    if !t.exists {
        let msgs = compare::load_store(index, t)?;
        fc.store = msgs.len() as u64;
        fc.missing = msgs
            .iter()
            .map(|m| (m.folder.to_string(), m.row.uid))
            .collect();
        return Ok(fc);
    }
    // SELECT, not EXAMINE: servers state PERMANENTFLAGS (which keywords host2 keeps, so which
    // flags can differ at all) only for a mailbox opened read-write. Nothing is changed.
    let sel = conn.select(&t.mailbox, false)?;
    let ledger = Ledger::read(index, destination, &t.mailbox)?;
    let cmp = compare::examine(conn, index, objects, t, &sel, ledger, crate::clock::now())?;
    describe(&cmp, &sel, conn.provider(), &mut fc);
    Ok(fc)
}

/// Fill `fc` from a comparison.
fn describe(
    cmp: &Comparison,
    sel: &crate::imap::Selected,
    provider: crate::provider::Provider,
    fc: &mut FolderCheck,
) {
    let s = &cmp.settled;
    fc.store = cmp.store.len() as u64;
    fc.host2 = cmp.host.len() as u64;
    fc.present = (cmp.explained.present.len() + s.found.len()) as u64;
    fc.missing = s
        .missing
        .iter()
        .map(|&i| (cmp.store[i].folder.to_string(), cmp.store[i].row.uid))
        .collect();
    fc.extra = s.extras.clone();
    fc.doubles = s.doubles.clone();
    let present = cmp
        .explained
        .present
        .iter()
        .map(|(i, m)| (*i, m.dest_uid, m.altered.clone(), m.held))
        .chain(
            s.found
                .iter()
                .map(|m| (m.store, m.uid, cmp.change(m.store, m.uid), false)),
        );
    for (i, uid, altered, held) in present {
        let msg = &cmp.store[i];
        if let Some(what) = &altered {
            fc.altered
                .push((msg.folder.to_string(), msg.row.uid, uid, what.clone()));
        }
        // Gmail's one message for two store messages has the flags of one of them.
        let Some(h) = cmp.host.get(&uid).filter(|_| !held) else {
            continue;
        };
        // What push gives host2 (the same rule): a flag the provider drops is no difference.
        let (mut want, _) = storable_flags(provider, &msg.row.flags, &sel.permanent_flags);
        // Left off by push, as asked (`--disarm-read-receipts`), and recorded so.
        if altered
            .as_deref()
            .is_some_and(crate::push::rewrite::left_off_mdnsent)
        {
            want.retain(|f| !f.eq_ignore_ascii_case("$MDNSent"));
        }
        if !same_flags(&want, &h.flags) {
            fc.flag_differences
                .push((msg.folder.to_string(), msg.row.uid, uid));
        }
    }
}

/// The verdict line, with the advice that fits what was found.
fn verdict(r: &CheckReport) -> String {
    let altered = if r.altered > 0 {
        format!(
            "; {} are stored altered (host2 rewrote them, or push changed them as asked: each \
             is listed with what changed; a push cannot undo either)",
            r.altered
        )
    } else {
        String::new()
    };
    if r.ok {
        let extra = if r.extra > 0 {
            format!(" (and {} more of its own)", r.extra)
        } else {
            String::new()
        };
        return format!(
            "host2 holds all {} of the store's {}{extra}{altered}",
            crate::text::count(r.messages, "message"),
            crate::text::count(r.folders, "folder")
        );
    }
    let mut what = Vec::new();
    if r.missing > 0 {
        what.push(format!("{} of {} messages missing", r.missing, r.messages));
    }
    if r.doubles > 0 {
        what.push(format!(
            "{} second copies an interrupted push left",
            r.doubles
        ));
    }
    if r.flag_differences > 0 {
        what.push(format!("{} with other flags", r.flag_differences));
    }
    if !r.failures.is_empty() {
        what.push(format!("{} folders not compared", r.failures.len()));
    }
    format!(
        "host2 differs from the store: {}{altered}; run `imapferry push` to send what is \
         missing, remove the second copies and set the flags",
        what.join(", ")
    )
}
