//! Pushing one host2 mailbox through a [`Mailbox`]: compare host2 with the store
//! ([`crate::compare`]), record what is there, remove the doubles our own pushes left, APPEND
//! what is missing (intent first, mapping after), update flags, and with `--delete2` remove what
//! the store no longer holds; when APPENDs were left unanswered, the last look once host2 is
//! quiet (started by [`super::settle`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::time::Instant;

use anyhow::{bail, Result};

use super::{Ctx, FolderReport, HostState, Outcome};
use crate::budget::is_budget_spent;
use crate::clock::now;
use crate::compare::content::Content;
use crate::compare::survey::{Found, StoreMsg};
use crate::compare::targets::Target;
use crate::compare::{self, storable_flags, Comparison, Ledger};
use crate::flags::same_flags;
use crate::imap::{
    is_session_expired, without_recent, AppendMessage, AppendOutcome, FlagOp, Refusal, Selected,
};
use crate::mailbox::{Cap, Mailbox};
use crate::mailtime::InternalDate;
use crate::provider::Provider;
use crate::run::{self, Done, Failure, Retry};
use crate::store::{Index, Mapping, NewIntent};
use crate::ui::{self, human_bytes};

/// A store message's key `(folder_id, uidvalidity, uid)`.
type Key = (i64, u32, u32);

/// A message read back from host2: its UID, flags (without `\Recent`) and content.
type ReadBack = (u32, (Vec<String>, Content));

/// An intent this old whose message host2 holds is dropped: APPENDs still landing that long
/// after their connection died are not expected. Until then a late copy is recognised as ours
/// (and removed when it doubles one sent since), and each push looks at the mailbox in full;
/// a push waits for them only until they can have crossed the link
/// ([`super::settle::landing_deadline`]).
pub(super) const SETTLED_AFTER_SECS: i64 = 3600;

/// What the attempts at one target share.
#[derive(Default)]
pub(super) struct State {
    /// Messages this run wrote an APPEND for (answered or not).
    sent: BTreeSet<Key>,
    /// Messages host2 answered BAD after their bytes were on the way: sent synchronizing.
    synchronizing: BTreeSet<Key>,
    /// Keywords host2 would not store.
    dropped: BTreeSet<String>,
    failed: BTreeMap<Key, Failure>,
    /// Failures of the mailbox as a whole (doubles left, `--delete2` not applied), by what.
    folder_failed: BTreeMap<&'static str, Failure>,
    /// Warnings: messages host2 holds altered, or (Gmail) keeps as one with another.
    pub(super) altered: BTreeMap<Key, Failure>,
    /// After the last attempt: the store messages host2 holds.
    pub(super) present: BTreeSet<Key>,
    /// Some APPEND of this mailbox was left unanswered (in this run, or recently by an
    /// interrupted one): copies may still land, so the push ends with a last look for doubles.
    unsettled: bool,
    /// The bytes appended so far when host2 last ended a session with `BYE Session expired`.
    expired_at: Option<u64>,
    /// Found through intents of earlier runs.
    recovered: BTreeSet<Key>,
    /// Gmail: given this mailbox's label instead of a second APPEND.
    pub(super) labelled: BTreeSet<Key>,
}

/// What a pool job gives back for a target.
// One per target, moved a few times: the size of the unsettled variant does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Pushed {
    Done(Outcome),
    /// APPENDs into the mailbox were left unanswered (by this run or a recent interrupted one):
    /// copies may still land, so the target is finished by the account-wide last look
    /// ([`super::settle`]) once host2 is quiet.
    Unsettled(Unfinished),
}

/// A target waiting for the last look.
pub(crate) struct Unfinished {
    fr: FolderReport,
    state: State,
    started: Instant,
    /// Its place on the progress display.
    slot: usize,
}

/// Push one target, retrying after a dropped link (each attempt compares host2 afresh, so what
/// an earlier attempt sent is recognised, never sent twice).
pub(crate) fn push_target(
    ctx: &Ctx<'_>,
    conn: &mut Box<dyn Mailbox>,
    target: &Target,
    position: usize,
) -> Done<Pushed> {
    let started = Instant::now();
    let mut fr = FolderReport {
        folder: target.label(),
        mailbox: target.path.clone(),
        created: !target.exists,
        ..FolderReport::default()
    };
    if ctx.opts.just_folders {
        return Done {
            result: Pushed::Done((fr, Vec::new())),
            reconnect: false,
        };
    }
    let mut state = State::default();
    let mut retry = Retry::new(ctx.opts.retries);
    ctx.progress.start(position, &target.label());
    let result = Index::open(&ctx.index_path).and_then(|mut index| {
        run::retrying(
            conn,
            ctx.connector,
            &mut retry,
            &format!("folder {}", target.label()),
            |m, progressed| {
                // Messages that went (or were found) count as progress, even when cut short.
                let before = state.sent.len() + fr.flags_updated as usize;
                let mut p = Pusher {
                    ctx,
                    conn: m,
                    index: &mut index,
                    target,
                    fr: &mut fr,
                    state: &mut state,
                    slot: position,
                };
                let r = p.run();
                *progressed = state.sent.len() + fr.flags_updated as usize > before;
                r.map_err(|e| expired_is_quota(ctx, target, &mut state, fr.bytes, e))
            },
        )
    });
    if let Some(plan) = &ctx.gmail {
        plan.finish(position);
    }
    // A slow-down that never lifted, on any command: the day's quota, not a failure.
    let result = result.map_err(|e| {
        if crate::imap::error::is_slowed_down(&e) {
            ui::warn(&format!("{}: {e:#}", target.label()));
            anyhow::Error::new(ctx.allowance.server_quota(now()))
        } else {
            e
        }
    });
    if result.is_ok() && state.unsettled && !ctx.opts.dry_run {
        ctx.progress.done(position);
        return Done {
            result: Pushed::Unsettled(Unfinished {
                fr,
                state,
                started,
                slot: position,
            }),
            reconnect: false,
        };
    }
    fr.seconds = started.elapsed().as_secs_f64();
    let done = conclude(ctx, target, fr, state, result);
    ctx.progress.done(position);
    Done {
        result: Pushed::Done(done.result),
        reconnect: done.reconnect,
    }
}

/// `e` as the run's stop when it is host2's daily quota said with `BYE Session expired`. Gmail
/// also ends long sessions so: the first is answered by a new connection (`e`, transient); a
/// second before anything more was appended (`bytes`, the target's so far), or one when nine
/// tenths of the day's budget are spent, is the quota.
fn expired_is_quota(
    ctx: &Ctx<'_>,
    target: &Target,
    state: &mut State,
    bytes: u64,
    e: anyhow::Error,
) -> anyhow::Error {
    if !is_session_expired(&e) || is_budget_spent(&e) {
        return e;
    }
    if state.expired_at != Some(bytes) && !ctx.allowance.near_end() {
        state.expired_at = Some(bytes);
        ui::info(&format!(
            "{}: {e:#}: Gmail also ends long sessions so; going on over a new connection (a \
             second time at once is read as the daily quota)",
            target.label()
        ));
        return e;
    }
    ui::warn(&format!(
        "{}: {e:#}: host2's daily upload quota (Gmail suspends IMAP for the account for up to a \
         day once it is passed)",
        target.label()
    ));
    anyhow::Error::new(ctx.allowance.server_quota(now()))
}

/// Finish an unsettled target once host2 is quiet: the last look for copies that landed late
/// and doubles they made, then its report. `late` is a failure to add (host2 never went quiet).
pub(crate) fn finish_unsettled(
    ctx: &Ctx<'_>,
    conn: &mut Box<dyn Mailbox>,
    index: &mut Index,
    target: &Target,
    mut u: Unfinished,
    late: Option<Failure>,
) -> Outcome {
    let mut retry = Retry::new(ctx.opts.retries);
    let result = run::retrying(
        conn,
        ctx.connector,
        &mut retry,
        &format!("folder {}, last look for doubles", target.label()),
        |m, _| {
            Pusher {
                ctx,
                conn: m,
                index,
                target,
                fr: &mut u.fr,
                state: &mut u.state,
                slot: u.slot,
            }
            .last_look()
        },
    );
    if let Some(f) = late {
        u.state.folder_failed.insert("late", f);
    }
    u.fr.seconds = u.started.elapsed().as_secs_f64();
    conclude(ctx, target, u.fr, u.state, result).result
}

/// The report of an unsettled target whose last look could not be made.
pub(crate) fn abandon_unsettled(
    ctx: &Ctx<'_>,
    target: &Target,
    mut u: Unfinished,
    why: String,
) -> Outcome {
    u.fr.seconds = u.started.elapsed().as_secs_f64();
    let why = format!("last look for doubles after an interrupted push: {why}");
    conclude(ctx, target, u.fr, u.state, Err(anyhow::anyhow!(why))).result
}

impl Unfinished {
    /// Message bytes appended so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.fr.bytes
    }
}

/// The target's report from what the attempts left in `state`, and its line on the screen.
fn conclude(
    ctx: &Ctx<'_>,
    target: &Target,
    mut fr: FolderReport,
    state: State,
    result: Result<()>,
) -> Done<Outcome> {
    let mut failures: Vec<Failure> = state.failed.values().cloned().collect();
    failures.extend(state.folder_failed.values().cloned());
    fr.failed = failures.len() as u64;
    fr.sent = state.present.intersection(&state.sent).count() as u64;
    fr.labelled = state.present.intersection(&state.labelled).count() as u64;
    fr.already = state.present.len() as u64 - fr.sent - fr.labelled;
    fr.recovered = state.recovered.difference(&state.sent).count() as u64;
    fr.dropped_keywords = state.dropped.into_iter().collect();
    fr.warnings = state.altered.into_values().collect();
    let reconnect = match result {
        Ok(()) => {
            if fr.sent + fr.flags_updated + fr.deleted + fr.failed + fr.doubles_removed > 0
                || ctx.opts.dry_run
                || ui::verbosity() >= 2
            {
                ctx.progress.line(&folder_line(&fr, ctx.opts.dry_run));
            }
            false
        }
        // Not a failure: what went is recorded, the rest waits for the next run.
        Err(e) if is_budget_spent(&e) => {
            ctx.progress.line(&format!(
                "{}: {} sent, {}; the rest waits for the daily budget",
                target.label(),
                fr.sent,
                human_bytes(fr.bytes)
            ));
            false
        }
        Err(e) => {
            let reason = format!("{e:#}");
            ctx.progress
                .line(&format!("{}: failed: {reason}", target.label()));
            failures.push(Failure::folder(&target.label(), reason));
            true
        }
    };
    fr.failed = failures.len() as u64;
    Done {
        result: (fr, failures),
        reconnect,
    }
}

fn folder_line(fr: &FolderReport, dry: bool) -> String {
    if dry {
        return dry_line(fr);
    }
    let verb = "sent";
    let mut s = format!(
        "{}: {} {verb} ({}), {} already there, {} failed, {} flag updates, {} deleted",
        fr.folder,
        fr.sent,
        human_bytes(fr.bytes),
        fr.already,
        fr.failed,
        fr.flags_updated,
        fr.deleted
    );
    if fr.doubles_removed > 0 {
        s += &format!(", {} doubles removed", fr.doubles_removed);
    }
    if !fr.dropped_keywords.is_empty() {
        s += &format!(
            "; keywords host2 does not store, left off: {}",
            fr.dropped_keywords.join(" ")
        );
    }
    s
}

/// What a dry run would do in one mailbox: where the store folder goes, whether it is created.
fn dry_line(fr: &FolderReport) -> String {
    let place = if fr.folder.contains(" → ") || fr.folder == fr.mailbox {
        fr.folder.clone()
    } else {
        format!("{} → {}", fr.folder, fr.mailbox)
    };
    let create = if fr.created { " (to create)" } else { "" };
    let mut s = format!(
        "{place}{create}: {} to send ({}), {} already there, {} flag updates, {} to delete",
        fr.sent,
        human_bytes(fr.bytes),
        fr.already,
        fr.flags_updated,
        fr.deleted
    );
    if fr.doubles_removed > 0 {
        s += &format!(", {} doubles to remove", fr.doubles_removed);
    }
    s
}

/// A store message on its way to host2.
#[derive(Clone)]
struct Outgoing<'s> {
    msg: &'s StoreMsg,
    flags: Vec<String>,
    synchronizing: bool,
    /// What was changed in its bytes or flags on the user's request (`--rewrap-long-lines`,
    /// `--disarm-read-receipts`): recorded with its mapping, reported.
    changed: Option<String>,
}

pub(super) struct Pusher<'a, 'c> {
    pub(super) ctx: &'a Ctx<'c>,
    pub(super) conn: &'a mut dyn Mailbox,
    pub(super) index: &'a mut Index,
    pub(super) target: &'a Target,
    pub(super) fr: &'a mut FolderReport,
    pub(super) state: &'a mut State,
    /// The target's place on the progress display (and in the run's targets).
    pub(super) slot: usize,
}

impl Pusher<'_, '_> {
    fn run(&mut self) -> Result<()> {
        let dry = self.ctx.opts.dry_run;
        if !self.target.exists && dry {
            // Nothing to look at on host2: everything would be sent.
            let store = compare::load_store(self.index, self.target)?;
            self.fr.messages = store.len() as u64;
            self.fr.bytes = store.iter().map(|m| m.row.size).sum();
            self.state.sent = store.iter().map(StoreMsg::key).collect();
            self.state.present = self.state.sent.clone();
            return Ok(());
        }
        let dest = self.ctx.destination;
        if let (Some(d), false) = (dest, dry) {
            // Until this push of the mailbox completes, the next run surveys it in full.
            self.index.forget_mailbox_facts(d, &self.target.mailbox)?;
        }
        let mut sel = self.conn.select(&self.target.mailbox, dry)?;
        let ledger = Ledger::read(self.index, dest, &self.target.mailbox)?;
        let now = crate::clock::now();
        // Pending APPENDs into this mailbox that may still land (their bytes may not all have
        // crossed the link yet): the push ends with a last look for them.
        if let (false, Some(d)) = (ledger.intents.is_empty(), dest) {
            self.state.unsettled |=
                super::settle::landing_deadline(self.index, d, None)?.is_some_and(|t| t > now);
        }
        let cmp = self.examine(&sel, ledger, now)?;
        self.fr.messages = cmp.store.len() as u64;
        let bytes: u64 = cmp
            .settled
            .missing
            .iter()
            .map(|&i| cmp.store[i].row.size)
            .sum();
        self.ctx
            .progress
            .folder(self.slot, cmp.settled.missing.len() as u64, bytes);
        if dry {
            return self.dry_run(&cmp, &sel);
        }
        let Some(dest) = dest else {
            bail!("internal error: no destination id outside a dry run");
        };
        self.record_found(dest, &cmp)?;
        let removed = self.remove_doubles(dest, &cmp)?;
        self.retire_intents(dest, &cmp, SETTLED_AFTER_SECS)?;
        let uidnext = self.append_missing(dest, &cmp, &mut sel)?;
        self.update_flags(dest, &cmp, &sel)?;
        let deleted = self.delete_extras(dest, &cmp)?;
        self.expect(&sel, uidnext, removed + deleted);
        Ok(())
    }

    /// Compare the selected mailbox with the store ([`compare::examine`]).
    fn examine(&mut self, sel: &Selected, ledger: Ledger, now: i64) -> Result<Comparison> {
        compare::examine(
            self.conn,
            self.index,
            self.ctx.objects,
            self.target,
            sel,
            ledger,
            now,
        )
    }

    /// After the pushes, when APPENDs into the mailbox were left unanswered and host2 has been
    /// quiet (they may have been still landing): compare again, record the copies that landed
    /// and remove those that doubled a copy sent since.
    fn last_look(&mut self) -> Result<()> {
        let Some(dest) = self.ctx.destination else {
            return Ok(());
        };
        let sel = self.conn.select(&self.target.mailbox, false)?;
        let ledger = Ledger::read(self.index, Some(dest), &self.target.mailbox)?;
        let cmp = self.examine(&sel, ledger, crate::clock::now())?;
        let sent = self.state.sent.clone();
        self.record_found(dest, &cmp)?;
        self.state.sent = sent;
        let removed = self.remove_doubles(dest, &cmp)?;
        self.retire_intents(dest, &cmp, SETTLED_AFTER_SECS)?;
        if let Some(e) = &mut self.fr.expect {
            e.messages = (u64::from(sel.exists).saturating_sub(removed)) as u32;
            e.uidnext = sel.uidnext.unwrap_or(e.uidnext);
        }
        Ok(())
    }

    /// Drop the intents older than `age` seconds whose message host2 now holds: a copy of their
    /// APPEND still on its way after that long is not expected (and would be an extra, listed
    /// by check, not a double).
    fn retire_intents(&mut self, dest: i64, cmp: &Comparison, age: i64) -> Result<()> {
        let now = crate::clock::now();
        let resolved: BTreeSet<i64> = cmp.settled.resolved.iter().copied().collect();
        let done: Vec<i64> = cmp
            .intents
            .iter()
            .filter(|i| !resolved.contains(&i.id) && now - i.created_at >= age)
            .filter(|i| {
                let key = (i.intent.folder_id, i.intent.uidvalidity, i.intent.uid);
                self.state.present.contains(&key)
            })
            .map(|i| i.id)
            .collect();
        if done.is_empty() {
            return Ok(());
        }
        self.index.record_push(dest, &done, &[], &[])
    }

    /// With `--dry-run`: count what would be done.
    fn dry_run(&mut self, cmp: &Comparison, sel: &Selected) -> Result<()> {
        let s = &cmp.settled;
        self.state.present = cmp
            .explained
            .present
            .iter()
            .map(|(i, _)| cmp.store[*i].key())
            .collect();
        self.state
            .present
            .extend(s.found.iter().map(|m| cmp.store[m.store].key()));
        for &i in &s.missing {
            self.state.sent.insert(cmp.store[i].key());
            self.state.present.insert(cmp.store[i].key());
        }
        self.fr.bytes = s.missing.iter().map(|&i| cmp.store[i].row.size).sum();
        self.fr.doubles_removed = s.doubles.len() as u64;
        self.fr.flags_updated = flag_groups(
            cmp,
            sel,
            self.conn.provider(),
            self.ctx.opts.disarm_read_receipts,
        )
        .values()
        .map(|v| v.len() as u64)
        .sum();
        if self.ctx.opts.delete2 && fully_pulled(self.target) {
            self.fr.deleted = s.extras.len() as u64;
        }
        Ok(())
    }

    /// Record what the comparison found (copies that landed, messages already there), forget
    /// mappings that no longer hold, drop settled intents; one transaction, before any change on
    /// host2.
    fn record_found(&mut self, dest: i64, cmp: &Comparison) -> Result<()> {
        let mut mappings = Vec::new();
        self.state.present = cmp
            .explained
            .present
            .iter()
            .map(|(i, _)| cmp.store[*i].key())
            .collect();
        for m in &cmp.settled.found {
            let msg = &cmp.store[m.store];
            let altered = cmp.change(m.store, m.uid);
            if let Some(what) = &altered {
                self.note_altered(msg, what);
            }
            if m.how == Found::Recovered {
                self.state.recovered.insert(msg.key());
            }
            self.state.present.insert(msg.key());
            mappings.push(Mapping {
                folder_id: msg.folder_id,
                uidvalidity: msg.row.uidvalidity,
                uid: msg.row.uid,
                mailbox: self.target.mailbox.clone(),
                dest_uidvalidity: cmp.uidvalidity,
                dest_uid: m.uid,
                flags: cmp
                    .host
                    .get(&m.uid)
                    .map(|h| h.flags.clone())
                    .unwrap_or_default(),
                change: 0,
                found: m.how == Found::Recognised,
                altered,
                held: false,
            });
        }
        // Held by Gmail as another copy: said once, when it was found (recorded since).
        for (i, m) in cmp.explained.present.iter().filter(|(_, m)| !m.held) {
            if let Some(what) = &m.altered {
                self.note_altered(&cmp.store[*i], what);
            }
        }
        if mappings.is_empty() && cmp.explained.stale.is_empty() && cmp.settled.resolved.is_empty()
        {
            return Ok(());
        }
        self.index
            .record_push(dest, &cmp.settled.resolved, &mappings, &cmp.explained.stale)
    }

    /// Remove the second copies our own interrupted pushes left (see [`crate::compare::survey`]).
    fn remove_doubles(&mut self, _dest: i64, cmp: &Comparison) -> Result<u64> {
        let doubles = &cmp.settled.doubles;
        if doubles.is_empty() {
            return Ok(0);
        }
        match remove(self.conn, doubles) {
            Ok(()) => {
                ui::info(&format!(
                    "{}: removed {} second copies an interrupted push had left",
                    self.target.label(),
                    doubles.len()
                ));
                self.fr.doubles_removed += doubles.len() as u64;
                Ok(doubles.len() as u64)
            }
            Err(e) => {
                let why = format!(
                    "{} second copies an interrupted push left are still there: {e:#}",
                    doubles.len()
                );
                self.state
                    .folder_failed
                    .insert("doubles", Failure::folder(&self.target.label(), why));
                Ok(0)
            }
        }
    }

    /// APPEND the missing messages in batches. Returns host2's UIDNEXT after them, as far as the
    /// answers tell (`None` when unknown).
    fn append_missing(
        &mut self,
        dest: i64,
        cmp: &Comparison,
        sel: &mut Selected,
    ) -> Result<Option<u32>> {
        let mut missing: Vec<&StoreMsg> =
            cmp.settled.missing.iter().map(|&i| &cmp.store[i]).collect();
        // What host2 refused earlier in this run is not sent again by a later attempt.
        missing.retain(|m| !self.state.failed.contains_key(&m.key()));
        self.refuse_unfit(&mut missing);
        let ctx = self.ctx;
        let later = match &ctx.gmail {
            Some(plan) => self.not_here_first(plan, dest, cmp, &mut missing)?,
            None => Vec::new(),
        };
        let reflag = self.conn.provider().loses_flagged_on_append();
        let flagged: Vec<&StoreMsg> = missing
            .iter()
            .copied()
            .filter(|m| reflag && has_flag(&m.row.flags, "\\Flagged"))
            .collect();
        let mut uidnext = self.append_these(dest, cmp, sel, missing)?;
        if !later.is_empty() {
            let (rest, now) = self.label_elsewhere(dest, later)?;
            *sel = now;
            uidnext = self.append_these(dest, cmp, sel, rest)?;
        }
        self.flag_again(dest, &flagged)?;
        Ok(uidnext)
    }

    /// Take out (as failures) the messages host2 would refuse for their size, before a byte of
    /// them is sent: larger than its APPENDLIMIT (or its provider's size limit). Lines longer
    /// than the provider takes are found in [`Self::ready`], which reads the bytes anyway.
    fn refuse_unfit(&mut self, missing: &mut Vec<&StoreMsg>) {
        let provider = self.conn.provider();
        let given = self.ctx.opts.max_message_size;
        let limit = match (
            self.conn.append_limit(),
            given,
            provider.default_message_limit(),
        ) {
            (Some(a), Some(g), _) if g < a => Some((g, format!("--max-message-size2 {g}"))),
            (Some(a), ..) => Some((a, format!("APPENDLIMIT={a}"))),
            (None, Some(g), _) => Some((g, format!("--max-message-size2 {g}"))),
            (None, None, Some(n)) => Some((
                n,
                format!(
                    "{provider} takes at most {n} bytes unless the mailbox's limit was changed: \
                     --max-message-size2 gives it"
                ),
            )),
            (None, None, None) => None,
        };
        if let Some((limit, said)) = limit {
            for msg in missing.iter().filter(|m| m.row.size > limit) {
                let why = format!("{} bytes, larger than host2 takes ({said})", msg.row.size);
                self.fail(msg, why);
            }
            missing.retain(|m| m.row.size <= limit);
        }
    }

    /// Set `\Flagged` again with STORE on the messages just appended with it (Microsoft 365
    /// drops it from APPEND).
    fn flag_again(&mut self, dest: i64, flagged: &[&StoreMsg]) -> Result<()> {
        if flagged.is_empty() {
            return Ok(());
        }
        let keys: BTreeSet<Key> = flagged.iter().map(|m| m.key()).collect();
        let uids: Vec<u32> = self
            .index
            .mappings_to(dest, &self.target.mailbox)?
            .into_iter()
            .filter(|m| keys.contains(&m.key()) && self.state.sent.contains(&m.key()))
            .map(|m| m.dest_uid)
            .collect();
        let flag = ["\\Flagged".to_string()];
        self.conn.store_flags(&uids, FlagOp::Add, &flag)
    }

    /// APPEND `missing` in batches (see [`Self::append_missing`]).
    fn append_these(
        &mut self,
        dest: i64,
        cmp: &Comparison,
        sel: &Selected,
        missing: Vec<&StoreMsg>,
    ) -> Result<Option<u32>> {
        if missing.is_empty() {
            return Ok(sel.uidnext);
        }
        let mut claimed: BTreeSet<u32> = cmp.host.keys().copied().collect();
        // UIDs only grow: without UIDNEXT, one above the highest UID listed is still a bound
        // below which no copy of this run's APPENDs can land.
        let mut lower = sel.uidnext.unwrap_or_else(|| {
            cmp.host
                .keys()
                .next_back()
                .map_or(1, |u| u.saturating_add(1))
        });
        let (max_bytes, mut max_count) = (self.ctx.opts.batch_bytes, self.ctx.opts.batch_messages);
        // A server that closes a session at its tenth error (Microsoft 365): no batch may
        // bring it there, even if every message of it is refused.
        if let Some(n) = self.conn.provider().errors_per_session() {
            max_count = max_count.min(n.saturating_sub(1).max(1) as usize);
        }
        let mut again: Vec<Outgoing<'_>> = Vec::new();
        // Each batch is built when it is sent, so only one batch's flags and bytes are held.
        for range in batches(missing.iter().map(|m| m.row.size), max_bytes, max_count) {
            self.errors_allow(range.len())?;
            let (range, stopped) = self.allowed(range, |k| missing[k].row.size);
            let batch = missing[range]
                .iter()
                .map(|&msg| {
                    let provider = self.conn.provider();
                    let (flags, lost) =
                        storable_flags(provider, &msg.row.flags, &sel.permanent_flags);
                    self.state.dropped.extend(lost);
                    Outgoing {
                        msg,
                        flags,
                        synchronizing: self.state.synchronizing.contains(&msg.key()),
                        changed: None,
                    }
                })
                .collect();
            again.extend(self.send_batch(dest, sel, batch, &mut lower, &mut claimed)?);
            if stopped {
                return Err(self.ctx.allowance.spent_error());
            }
        }
        for range in batches(again.iter().map(|o| o.msg.row.size), max_bytes, max_count) {
            self.errors_allow(range.len())?;
            let (range, stopped) = self.allowed(range, |k| again[k].msg.row.size);
            if stopped && range.is_empty() {
                return Err(self.ctx.allowance.spent_error());
            }
            let batch = again[range].to_vec();
            for o in self.send_batch(dest, sel, batch, &mut lower, &mut claimed)? {
                let why = if o.synchronizing {
                    "host2 answered BAD to its APPEND, twice"
                } else {
                    "host2 refused it even without keywords"
                };
                self.fail(o.msg, why.to_string());
            }
            if stopped {
                return Err(self.ctx.allowance.spent_error());
            }
        }
        Ok(sel.uidnext.map(|_| lower))
    }

    /// Whether this session can take a batch of `n` APPENDs all refused without reaching the
    /// server's error limit (Microsoft 365 closes a session at its tenth error, in the middle
    /// of whatever is in flight): if not, a transient error, so the attempt goes on over a new
    /// session.
    fn errors_allow(&self, n: usize) -> Result<()> {
        match self.conn.errors_left() {
            Some(left) if left as usize <= n => {
                Err(anyhow::Error::new(crate::imap::error::transient(format!(
                    "host2 closes a session at its tenth error and this one has {left} left: \
                     going on over a new session"
                ))))
            }
            _ => Ok(()),
        }
    }

    /// The part of the batch `range` the daily budget lets go now (its bytes are taken), and
    /// whether the budget stops the run after it.
    fn allowed(&self, range: Range<usize>, size: impl Fn(usize) -> u64) -> (Range<usize>, bool) {
        let sizes: Vec<u64> = range.clone().map(size).collect();
        let n = self.ctx.allowance.take(&sizes, now());
        (range.start..range.start + n, n < sizes.len())
    }

    /// Send one batch; returns the messages to send once more (without keywords, or
    /// synchronizing).
    fn send_batch<'s>(
        &mut self,
        dest: i64,
        sel: &Selected,
        batch: Vec<Outgoing<'s>>,
        lower: &mut u32,
        claimed: &mut BTreeSet<u32>,
    ) -> Result<Vec<Outgoing<'s>>> {
        let items = self.ready(batch);
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let ids = self.intend(dest, sel, &items, *lower)?;
        let outcomes = self.append_items(&items)?;
        let mut answers = Answers::default();
        for (k, outcome) in outcomes.iter().enumerate() {
            self.answer(k, outcome, &items, sel, &mut answers);
        }
        let looked = self
            .read_back(&items, &mut answers, *lower, claimed)
            .and_then(|()| self.place_unknown(&items, &mut answers, sel, *lower, claimed));
        if let Err(e) = looked {
            // What host2 accepted went up all the same: counted against the daily budget.
            let took: u64 = outcomes
                .iter()
                .zip(&items)
                .filter(|(o, _)| matches!(o, AppendOutcome::Ok { .. }))
                .map(|(_, (_, b, _))| b.len() as u64)
                .sum();
            self.index
                .log_transfer(self.ctx.allowance.account(), now(), took)?;
            // A server that asked to wait and hung up: its words decide the wait. The batch's
            // intents stay; the next attempt reconciles them.
            return Err(answers.interrupted.take().unwrap_or(e));
        }
        for m in &answers.mappings {
            claimed.insert(m.dest_uid);
            *lower = (*lower).max(m.dest_uid.saturating_add(1));
        }
        let settled: Vec<i64> = ids
            .iter()
            .enumerate()
            .filter(|(k, _)| !answers.unanswered.contains(k))
            .map(|(_, id)| *id)
            .collect();
        self.index
            .record_push(dest, &settled, &answers.mappings, &[])?;
        let sent = self.count_sent(&items, &answers.mappings);
        // Counted against the daily budget: the bytes host2 took.
        self.index
            .log_transfer(self.ctx.allowance.account(), now(), sent)?;
        if let Some(stop) = answers.quota {
            return Err(anyhow::Error::new(stop));
        }
        if let Some(e) = answers.interrupted {
            return Err(e);
        }
        Ok(answers
            .again
            .into_iter()
            .map(|(k, how)| self.again(items[k].0.clone(), how))
            .collect())
    }

    /// Commit one intent per message of the batch (durable before the APPENDs go out); their
    /// ids, in order.
    fn intend(
        &mut self,
        dest: i64,
        sel: &Selected,
        items: &[(Outgoing<'_>, Vec<u8>, InternalDate)],
        lower: u32,
    ) -> Result<Vec<i64>> {
        self.keep_changed(items)?;
        let intents: Vec<NewIntent> = items
            .iter()
            .map(|(o, b, _)| NewIntent {
                folder_id: o.msg.folder_id,
                uidvalidity: o.msg.row.uidvalidity,
                uid: o.msg.row.uid,
                // What goes is what a copy found later must be: the changed bytes, if changed.
                hash: if o.changed.is_some() {
                    crate::store::Hash::of(b)
                } else {
                    o.msg.row.hash
                },
                size: b.len() as u64,
                mailbox: self.target.mailbox.clone(),
                dest_uidvalidity: sel.uidvalidity,
                dest_uidnext: lower,
            })
            .collect();
        let ids = self.index.add_intents(dest, &intents)?;
        self.state
            .sent
            .extend(items.iter().map(|(o, ..)| o.msg.key()));
        Ok(ids)
    }

    /// Keep the bytes of the batch's changed messages as objects (durable before their intents
    /// are), so that a copy an interrupted push left is recognised by them, as any other. `gc`
    /// removes them once no intent names them.
    fn keep_changed(&mut self, items: &[(Outgoing<'_>, Vec<u8>, InternalDate)]) -> Result<()> {
        let changed: Vec<&Vec<u8>> = items
            .iter()
            .filter(|(o, ..)| o.changed.is_some())
            .map(|(_, b, _)| b)
            .collect();
        if changed.is_empty() {
            return Ok(());
        }
        let mut written = Vec::new();
        for b in changed {
            let (hash, stored) = self.ctx.objects.write(b)?;
            written.push((
                hash,
                b.len() as u64,
                stored,
                crate::store::HeaderFacts::parse(b),
            ));
        }
        let mut batch = self.index.batch_after_sync(self.ctx.objects)?;
        for (hash, size, stored, facts) in &written {
            batch.add_object(hash, *size, *stored, facts)?;
        }
        batch.commit()
    }

    /// APPEND the batch's messages; one outcome each.
    fn append_items(
        &mut self,
        items: &[(Outgoing<'_>, Vec<u8>, InternalDate)],
    ) -> Result<Vec<AppendOutcome>> {
        let appends: Vec<AppendMessage<'_>> = items
            .iter()
            .map(|(o, b, date)| AppendMessage {
                flags: &o.flags,
                internaldate: Some(*date),
                bytes: b,
                synchronizing: o.synchronizing,
            })
            .collect();
        // Counted as they are written: the display moves during a 15 MB APPEND.
        self.conn
            .set_literal_meter(self.ctx.progress.meter(self.slot));
        let appended = self.conn.append(&self.target.mailbox, &appends);
        self.conn.set_literal_meter(None);
        // An error here leaves every intent of the batch: the next attempt reconciles them.
        match appended {
            Ok(o) => Ok(o),
            Err(e) if is_session_expired(&e) => {
                // The batch's bytes count as moved (some went), its intents are reconciled by
                // the next attempt or run.
                self.state.unsettled = true;
                let bytes = items.iter().map(|(_, b, _)| b.len() as u64).sum();
                self.index
                    .log_transfer(self.ctx.allowance.account(), now(), bytes)?;
                // Whether it is the quota is decided by the attempt ([`expired_is_quota`]).
                Err(e)
            }
            Err(e) => {
                self.state.unsettled = true;
                Err(e)
            }
        }
    }

    /// What the batch's recorded mappings moved: present now, bytes sent.
    fn count_sent(
        &mut self,
        items: &[(Outgoing<'_>, Vec<u8>, InternalDate)],
        mappings: &[Mapping],
    ) -> u64 {
        let sent_bytes: u64 = mappings
            .iter()
            .filter_map(|m| items.iter().find(|(o, ..)| o.msg.key() == m.key()))
            .map(|(_, b, _)| b.len() as u64)
            .sum();
        self.state.present.extend(mappings.iter().map(Mapping::key));
        self.fr.bytes += sent_bytes;
        // A meter counted the bytes as they were written.
        let uncounted = if self.ctx.progress.metered() {
            0
        } else {
            sent_bytes
        };
        self.ctx
            .progress
            .moved(self.slot, mappings.len() as u64, uncounted);
        sent_bytes
    }

    /// A message to send once more, as `how` says.
    fn again<'s>(&mut self, mut o: Outgoing<'s>, how: Again) -> Outgoing<'s> {
        match how {
            Again::Synchronizing => o.synchronizing = true,
            Again::WithoutKeywords => {
                let (system, keywords): (Vec<String>, Vec<String>) =
                    o.flags.into_iter().partition(|f| f.starts_with('\\'));
                self.state.dropped.extend(keywords);
                o.flags = system;
            }
        }
        o
    }

    /// Read (and verify) each message's bytes and parse its date: an unreadable object or a
    /// date that is not one is that message's failure, and nothing unparsed goes into a command.
    fn ready<'s>(
        &mut self,
        batch: Vec<Outgoing<'s>>,
    ) -> Vec<(Outgoing<'s>, Vec<u8>, InternalDate)> {
        let mut items = Vec::with_capacity(batch.len());
        for o in batch {
            let Some(date) = InternalDate::parse(&o.msg.row.internaldate) else {
                let why = format!(
                    "the store's INTERNALDATE {:?} is not an IMAP date-time (see `imapferry \
                     verify`); not sent",
                    ui::printable(&o.msg.row.internaldate)
                );
                self.fail(o.msg, why);
                continue;
            };
            self.gmail_date(&o, &date);
            match self.ctx.objects.read(&o.msg.row.hash, o.msg.row.size) {
                Ok(bytes) => {
                    let mut o = o;
                    let Some(bytes) = self.as_asked(&mut o, bytes) else {
                        continue;
                    };
                    items.push((o, bytes, date))
                }
                Err(e) => self.fail(
                    o.msg,
                    format!("cannot read it from the store: {e:#} (`imapferry pull --repair` fetches it again)"),
                ),
            }
        }
        items
    }

    /// Gmail puts the time of the upload for an APPEND date before 1970 or in the future: said
    /// per message (the store keeps the date; `check` does not compare dates).
    fn gmail_date(&mut self, o: &Outgoing<'_>, date: &InternalDate) {
        let t = date.unix();
        if self.conn.provider() != Provider::Gmail || (0..=now() + 86_400).contains(&t) {
            return;
        }
        let why = format!(
            "its INTERNALDATE {} is before 1970 or in the future: Gmail stores the time of the \
             upload instead (the store keeps the date)",
            ui::printable(&o.msg.row.internaldate)
        );
        let warning = Failure::message(&o.msg.folder, o.msg.row.uid, why);
        self.state.altered.entry(o.msg.key()).or_insert(warning);
    }

    /// The bytes (and flags) `o` goes to host2 with: as the store holds them, unless the user
    /// asked for a change ([`super::rewrite`]); `None` (failed, listed) when host2 would refuse
    /// them for a line too long and no change was asked for.
    fn as_asked(&mut self, o: &mut Outgoing<'_>, mut bytes: Vec<u8>) -> Option<Vec<u8>> {
        let opts = self.ctx.opts;
        let mut notes = Vec::new();
        if opts.disarm_read_receipts {
            if let Some(b) = super::rewrite::disarm_read_receipts(&bytes) {
                bytes = b;
                notes.push("Disposition-Notification-To renamed X-Disposition-Notification-To");
            }
            if has_flag(&o.flags, MDN_SENT) {
                o.flags.retain(|f| !f.eq_ignore_ascii_case(MDN_SENT));
                notes.push(super::rewrite::MDNSENT_LEFT_OFF);
            }
        }
        let provider = self.conn.provider();
        let mut broken = None;
        if let Some(why) = too_long_lines(provider, &bytes) {
            let max = provider.longest_line().unwrap_or(usize::MAX);
            match super::rewrite::rewrap(&bytes, max).filter(|_| opts.rewrap_long_lines) {
                Some((b, n)) => {
                    bytes = b;
                    broken = Some(format!(
                        "lines longer than {provider} takes broken at {max} characters ({n}) \
                         (--rewrap-long-lines)"
                    ));
                }
                None => {
                    self.fail(o.msg, why);
                    return None;
                }
            }
        }
        let mut notes: Vec<String> = notes.into_iter().map(String::from).collect();
        notes.extend(broken);
        if !notes.is_empty() {
            o.changed = Some(format!(
                "sent changed, as asked: {}; the store keeps it as host1 served it",
                notes.join(", ")
            ));
        }
        Some(bytes)
    }

    /// Sort one APPEND's answer into `answers`.
    fn answer(
        &mut self,
        k: usize,
        outcome: &AppendOutcome,
        items: &[(Outgoing<'_>, Vec<u8>, InternalDate)],
        sel: &Selected,
        answers: &mut Answers,
    ) {
        let o = &items[k].0;
        match outcome {
            AppendOutcome::Ok {
                uidvalidity: Some(uv),
                uid: Some(uid),
            } if self.conn.has(Cap::UidPlus) && *uv == sel.uidvalidity => {
                answers.mappings.push(self.mapping(o, sel, *uid, None));
                if let Some(what) = &o.changed {
                    self.state.altered.insert(
                        o.msg.key(),
                        Failure::message(&o.msg.folder, o.msg.row.uid, what.clone()),
                    );
                }
            }
            AppendOutcome::Ok { .. } => answers.unknown.push(k),
            AppendOutcome::Unanswered => {
                self.state.unsettled = true;
                answers.unanswered.insert(k);
                answers.interrupted.get_or_insert_with(|| {
                    anyhow::Error::new(std::io::Error::new(
                        std::io::ErrorKind::ConnectionAborted,
                        "the connection to host2 was closed before it answered every APPEND",
                    ))
                });
            }
            // Gmail's daily upload limit: not stored, not failed; the run stops for the day.
            AppendOutcome::Refused(r) if r.is_bandwidth_quota() => {
                if answers.quota.is_none() {
                    ui::warn(&format!(
                        "{}: host2 answered {r}: its daily upload quota (Gmail suspends IMAP for \
                         the account for up to a day once it is passed)",
                        self.target.label()
                    ));
                }
                answers.quota = Some(self.ctx.allowance.server_quota(now()));
            }
            // Not stored: waited out, then sent again (never with fewer flags).
            // The server's own words win over the closed connection that may follow them:
            // they may say how long to wait.
            AppendOutcome::Refused(r) if r.is_transient() => {
                answers.interrupted = Some(r.error(format!("host2 asks to wait: {r}")));
            }
            // Exchange answers BAD to a message it cannot take (not to the literal): another
            // try would only count as one more error of the session.
            AppendOutcome::Refused(r) if exchange_refuses_content(self.conn.provider(), r) => {
                let bytes = &items[k].1;
                let why = format!(
                    "host2 refused the APPEND: {r}; Microsoft 365 answers so to a message it \
                     cannot take, most often a line longer than it takes (this one's longest: {} \
                     characters; --rewrap-long-lines breaks such lines) or one over its size \
                     limit (this one: {} bytes; --max-message-size2 gives the limit)",
                    longest_line(bytes),
                    bytes.len()
                );
                self.fail(o.msg, why);
            }
            AppendOutcome::Refused(r) if too_large(r) => {
                let why = format!(
                    "host2 refused the APPEND: {r}; {} bytes is over this mailbox's limit \
                     (Microsoft 365: 35 MB unless a tenant raised it, up to 150 MB, or lowered \
                     it): give the limit with --max-message-size2 and such messages are listed \
                     before they are sent",
                    items[k].1.len()
                );
                self.fail(o.msg, why);
            }
            AppendOutcome::Refused(r)
                if r.status == crate::imap::response::Status::Bad && !o.synchronizing =>
            {
                self.state.synchronizing.insert(o.msg.key());
                answers.again.push((k, Again::Synchronizing));
            }
            AppendOutcome::Refused(r) if refuses_keywords(r) && has_keywords(&o.flags) => {
                answers.again.push((k, Again::WithoutKeywords));
            }
            AppendOutcome::Refused(r) => self.fail(o.msg, format!("host2 refused the APPEND: {r}")),
        }
    }

    /// Without APPENDUID (or with one that does not hold the message, see
    /// [`Self::read_back`]): find each accepted message among host2's new UIDs by its bytes.
    fn place_unknown(
        &mut self,
        items: &[(Outgoing<'_>, Vec<u8>, InternalDate)],
        answers: &mut Answers,
        sel: &Selected,
        lower: u32,
        claimed: &BTreeSet<u32>,
    ) -> Result<()> {
        if answers.unknown.is_empty() {
            return Ok(());
        }
        let confirmed: BTreeSet<u32> = answers.mappings.iter().map(|m| m.dest_uid).collect();
        let mut fresh: Vec<(u32, u64)> = Vec::new();
        self.conn
            .fetch_meta(&format!("{}:*", lower.max(1)), None, &mut |f| {
                if f.uid >= lower && !claimed.contains(&f.uid) && !confirmed.contains(&f.uid) {
                    fresh.push((f.uid, f.size.unwrap_or(0)));
                }
                Ok(())
            })?;
        let uids: Vec<u32> = fresh.iter().map(|x| x.0).collect();
        let sizes: Vec<u64> = fresh.iter().map(|x| x.1).collect();
        let mut seen = self.bodies_of(&uids, &sizes)?;
        for k in std::mem::take(&mut answers.unknown) {
            let (o, bytes, _) = &items[k];
            let want = Content::of(bytes);
            let pos = seen
                .iter()
                .position(|(_, (_, c))| c.exact == want.exact)
                .or_else(|| seen.iter().position(|(_, (_, c))| c.text == want.text));
            match pos {
                Some(p) => {
                    let (uid, (flags, c)) = seen.remove(p);
                    let altered = self.compare_copy(o.msg, &want, &c);
                    if let Some(stated) = answers.misstated.get(&k) {
                        // Not a failure (the message is where the bytes show), but said.
                        let why = format!(
                            "host2 answered its APPEND with UID {stated}, which does not hold \
                             it; found as UID {uid} by its bytes{}",
                            altered
                                .as_ref()
                                .map_or(String::new(), |a| format!(", altered: {a}"))
                        );
                        let msg = o.msg;
                        self.state
                            .altered
                            .insert(msg.key(), Failure::message(&msg.folder, msg.row.uid, why));
                    }
                    let mut m = self.mapping(o, sel, uid, altered);
                    m.flags = flags;
                    answers.mappings.push(m);
                }
                // The next run recognises it by its bytes if it is there after all.
                None => self.fail(
                    o.msg,
                    "host2 accepted the APPEND but the message was not found afterwards"
                        .to_string(),
                ),
            }
        }
        Ok(())
    }

    /// Read back what host2 keeps under each UID its APPENDUID answers stated, and compare it
    /// with what was sent, by the bytes: the same bytes confirm the UID (the flags recorded are
    /// host2's); the same text in other bytes is the message as host2 rewrote it (listed as
    /// altered, saying what changed). A UID that holds anything else or nothing, is stated
    /// twice, or is not one of the mailbox's new UIDs is not the message's: the message is
    /// looked for by its bytes ([`Self::place_unknown`]) rather than recorded where it is not,
    /// which would have the next push send it again.
    fn read_back(
        &mut self,
        items: &[(Outgoing<'_>, Vec<u8>, InternalDate)],
        answers: &mut Answers,
        lower: u32,
        claimed: &BTreeSet<u32>,
    ) -> Result<()> {
        if answers.mappings.is_empty() {
            return Ok(());
        }
        let item_of = |m: &Mapping| items.iter().position(|(o, ..)| o.msg.key() == m.key());
        let mut stated: BTreeMap<u32, usize> = BTreeMap::new();
        for m in &answers.mappings {
            *stated.entry(m.dest_uid).or_default() += 1;
        }
        let (mut plausible, doubtful): (Vec<Mapping>, Vec<Mapping>) =
            std::mem::take(&mut answers.mappings)
                .into_iter()
                .partition(|m| {
                    m.dest_uid >= lower
                        && !claimed.contains(&m.dest_uid)
                        && stated[&m.dest_uid] == 1
                });
        let (uids, sizes): (Vec<u32>, Vec<u64>) = plausible
            .iter()
            .filter_map(|m| Some((m.dest_uid, items[item_of(m)?].1.len() as u64)))
            .unzip();
        let back: BTreeMap<u32, (Vec<String>, Content)> =
            self.bodies_of(&uids, &sizes)?.into_iter().collect();
        if self.conn.provider() == Provider::Gmail {
            // Held by Gmail under another UID: recorded as found, not compared with the sent
            // bytes (Gmail keeps its own copy).
            let held = self.dropped_by_gmail(items, &mut plausible, &back)?;
            answers.mappings.extend(held);
        }
        for mut m in plausible.into_iter().chain(doubtful) {
            let Some(k) = item_of(&m) else { continue };
            let (o, bytes, _) = &items[k];
            let want = Content::of(bytes);
            match back.get(&m.dest_uid) {
                Some((flags, c)) if c.text == want.text => {
                    m.flags = flags.clone();
                    // A change push made as asked (recorded before the APPEND) stays
                    // recorded beside what host2 changed.
                    let by_host2 = self.compare_copy(o.msg, &want, c);
                    m.altered = match (m.altered.take(), by_host2) {
                        (Some(asked), Some(host2)) => Some(format!("{asked}; {host2}")),
                        (asked, host2) => asked.or(host2),
                    };
                    answers.mappings.push(m);
                }
                _ => {
                    answers.misstated.insert(k, m.dest_uid);
                    answers.unknown.push(k);
                }
            }
        }
        Ok(())
    }

    /// Flags (without `\Recent`) and content of host2's messages `uids` (`sizes`: what each is
    /// expected to hold), fetched whole; a UID sent twice is left out (neither copy can be
    /// trusted).
    fn bodies_of(&mut self, uids: &[u32], sizes: &[u64]) -> Result<Vec<ReadBack>> {
        let mut out: Vec<ReadBack> = Vec::new();
        if uids.is_empty() {
            return Ok(out);
        }
        let repeated = self.conn.fetch_bodies(uids, sizes, 8 << 20, 2, &mut |f| {
            if let Some(b) = &f.body {
                let flags = without_recent(f.flags.as_deref().unwrap_or_default());
                out.push((f.uid, (flags, Content::of(b))));
            }
            Ok(())
        })?;
        out.retain(|(u, _)| !repeated.contains(u));
        Ok(out)
    }

    /// What host2 changed in its copy `stored` of `msg`, whose bytes are `sent` (`None`: the
    /// same bytes); a change is listed as the message's warning.
    fn compare_copy(&mut self, msg: &StoreMsg, sent: &Content, stored: &Content) -> Option<String> {
        if stored.exact == sent.exact {
            return None;
        }
        let what = crate::compare::content::describe_change(&sent.shape, &stored.shape);
        self.note_altered(msg, &what);
        Some(what)
    }

    /// List `msg` as held altered by host2 (`what` changed): a warning of the run.
    fn note_altered(&mut self, msg: &StoreMsg, what: &str) {
        let reason = format!("host2 holds it altered: {what}");
        self.state.altered.insert(
            msg.key(),
            Failure::message(&msg.folder, msg.row.uid, reason),
        );
    }

    /// Gmail answers the APPEND of a message whose Message-ID it already holds and then drops
    /// it (imapsync FAQ.Gmail): a UID it answered that it does not show is found as the message
    /// Gmail kept (`X-GM-RAW "rfc822msgid:…"`), labelled for this mailbox and recorded as held
    /// by Gmail as another copy, so it is never sent again; a failure when it cannot be found.
    fn dropped_by_gmail(
        &mut self,
        items: &[(Outgoing<'_>, Vec<u8>, InternalDate)],
        mappings: &mut Vec<Mapping>,
        reported: &BTreeMap<u32, (Vec<String>, Content)>,
    ) -> Result<Vec<Mapping>> {
        let (kept, dropped): (Vec<Mapping>, Vec<Mapping>) = std::mem::take(mappings)
            .into_iter()
            .partition(|m| reported.contains_key(&m.dest_uid));
        *mappings = kept;
        let mut held = Vec::new();
        for mut m in dropped {
            let Some((o, bytes, _)) = items.iter().find(|(o, ..)| o.msg.key() == m.key()) else {
                continue;
            };
            let id = crate::store::HeaderFacts::parse(bytes).message_id;
            match self.gmail_copy(id.as_deref())? {
                Some(uid) => {
                    let why = format!(
                        "held by Gmail as another copy: Gmail keeps one message per Message-ID \
                         (<{}>) and holds one with other bytes, now labelled here (UID {uid}); \
                         recorded, not sent again",
                        crate::text::printable(id.as_deref().unwrap_or_default())
                    );
                    self.state.altered.insert(
                        o.msg.key(),
                        Failure::message(&o.msg.folder, o.msg.row.uid, why.clone()),
                    );
                    m.dest_uid = uid;
                    m.held = true;
                    m.altered = Some(why);
                    held.push(m);
                }
                None => {
                    let why = format!(
                        "Gmail answered its APPEND with UID {} but does not keep it: Gmail holds \
                         one message per Message-ID, and the one it holds under this one's was \
                         not found",
                        m.dest_uid
                    );
                    self.fail(o.msg, why);
                }
            }
        }
        Ok(held)
    }

    fn mapping(
        &self,
        o: &Outgoing<'_>,
        sel: &Selected,
        dest_uid: u32,
        altered: Option<String>,
    ) -> Mapping {
        Mapping {
            folder_id: o.msg.folder_id,
            uidvalidity: o.msg.row.uidvalidity,
            uid: o.msg.row.uid,
            mailbox: self.target.mailbox.clone(),
            dest_uidvalidity: sel.uidvalidity,
            dest_uid,
            flags: o.flags.clone(),
            change: o.msg.row.change,
            found: false,
            altered: altered.or_else(|| o.changed.clone()),
            held: false,
        }
    }

    /// `UID STORE set FLAGS.SILENT (...)`, one command per distinct flag set; the flags recorded
    /// are those host2 reports afterwards.
    fn update_flags(&mut self, dest: i64, cmp: &Comparison, sel: &Selected) -> Result<()> {
        let groups = flag_groups(
            cmp,
            sel,
            self.conn.provider(),
            self.ctx.opts.disarm_read_receipts,
        );
        if groups.is_empty() {
            return Ok(());
        }
        let mut updated: Vec<Mapping> = Vec::new();
        for (flags, members) in groups {
            let uids: Vec<u32> = members.iter().map(|m| m.dest_uid).collect();
            self.conn.store_flags(&uids, FlagOp::Set, &flags)?;
            updated.extend(members.into_iter().map(|mut m| {
                m.mailbox = self.target.mailbox.clone();
                m
            }));
        }
        let uids: Vec<u32> = updated.iter().map(|m| m.dest_uid).collect();
        let mut reported: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        self.conn
            .fetch_meta(&crate::imap::uidset::compact(&uids), None, &mut |f| {
                reported.insert(
                    f.uid,
                    without_recent(f.flags.as_deref().unwrap_or_default()),
                );
                Ok(())
            })?;
        for m in &mut updated {
            if let Some(f) = reported.get(&m.dest_uid) {
                m.flags = f.clone();
            }
        }
        self.fr.flags_updated += updated.len() as u64;
        self.index.record_push(dest, &[], &updated, &[])
    }

    /// `--delete2`: remove host2 messages that are no live store message's, unless a store
    /// folder of the target was never completely pulled (its store rows are not the whole of
    /// host1's folder, so "not in the store" proves nothing).
    fn delete_extras(&mut self, dest: i64, cmp: &Comparison) -> Result<u64> {
        let extras = &cmp.settled.extras;
        if !self.ctx.opts.delete2 || extras.is_empty() {
            return Ok(0);
        }
        if !fully_pulled(self.target) {
            let why = "--delete2 not applied here: a store folder that goes here was not pulled \
                       completely (run `imapferry pull` again); nothing was deleted";
            ui::warn(&format!("{}: {why}", self.target.label()));
            self.state
                .folder_failed
                .insert("delete2", Failure::folder(&self.target.label(), why));
            return Ok(0);
        }
        if let Err(e) = remove(self.conn, extras) {
            let why = format!("--delete2: {e:#}");
            self.state
                .folder_failed
                .insert("delete2", Failure::folder(&self.target.label(), why));
            return Ok(0);
        }
        // Mappings of expunged store messages pointed at what was just deleted.
        let gone: BTreeSet<u32> = extras.iter().copied().collect();
        let forget: Vec<Key> = self
            .index
            .mappings_to(dest, &self.target.mailbox)?
            .iter()
            .filter(|m| m.dest_uidvalidity == cmp.uidvalidity && gone.contains(&m.dest_uid))
            .map(Mapping::key)
            .collect();
        self.index.record_push(dest, &[], &[], &forget)?;
        self.fr.deleted += extras.len() as u64;
        Ok(extras.len() as u64)
    }

    /// What host2 should report for the mailbox now, if nobody else touched it.
    fn expect(&mut self, sel: &Selected, uidnext: Option<u32>, removed: u64) {
        if !self.state.labelled.is_empty() {
            // Labels put messages in with UIDs no answer told: the next run looks in full.
            return;
        }
        let appended = self.state.present.intersection(&self.state.sent).count() as u64;
        let messages = (u64::from(sel.exists) + appended).checked_sub(removed);
        let clean = self.state.failed.is_empty() && self.state.folder_failed.is_empty();
        if let (Some(uidnext), Some(messages), true) = (uidnext, messages, clean) {
            self.fr.expect = u32::try_from(messages).ok().map(|messages| HostState {
                uidvalidity: sel.uidvalidity,
                uidnext,
                messages,
            });
        }
    }

    pub(super) fn fail(&mut self, msg: &StoreMsg, reason: String) {
        self.ctx.progress.line(&format!(
            "{} UID {}: failed: {reason}",
            msg.folder, msg.row.uid
        ));
        self.state.failed.insert(
            msg.key(),
            Failure::message(&msg.folder, msg.row.uid, reason),
        );
    }
}

/// How a message is sent again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Again {
    /// As a synchronizing literal (host2 answered BAD after its bytes were on the way).
    Synchronizing,
    /// With its system flags only (host2 said its keywords were the trouble).
    WithoutKeywords,
}

/// The answers to one APPEND batch, sorted.
#[derive(Default)]
struct Answers {
    mappings: Vec<Mapping>,
    /// Accepted without APPENDUID, or with one that does not hold the message (indexes into
    /// the batch).
    unknown: Vec<usize>,
    /// The UIDs APPENDUID stated for messages it does not hold (by index into the batch).
    misstated: BTreeMap<usize, u32>,
    /// No answer: their intents stay.
    unanswered: BTreeSet<usize>,
    /// To send again: (index, how).
    again: Vec<(usize, Again)>,
    /// Ends the attempt after the batch is recorded (a dropped link, a server asking to wait).
    interrupted: Option<anyhow::Error>,
    /// The server said its daily quota is used up: ends the run after the batch is recorded.
    quota: Option<crate::budget::BudgetSpent>,
}

/// Remove exactly `uids` from the selected mailbox: flagged `\Deleted`, then `UID EXPUNGE`.
/// Without UIDPLUS, EXPUNGE would take every message flagged `\Deleted`: it is used only when
/// no other message is, and otherwise nothing is removed (the flags are put back).
fn remove(conn: &mut dyn Mailbox, uids: &[u32]) -> Result<()> {
    let deleted = vec!["\\Deleted".to_string()];
    if conn.has(Cap::UidPlus) {
        conn.store_flags(uids, FlagOp::Add, &deleted)?;
        return conn.expunge_uids(uids);
    }
    let ours: BTreeSet<u32> = uids.iter().copied().collect();
    let mut others = 0;
    conn.fetch_meta("1:*", None, &mut |f| {
        let flagged = f
            .flags
            .as_deref()
            .unwrap_or_default()
            .iter()
            .any(|x| x.eq_ignore_ascii_case("\\Deleted"));
        if flagged && !ours.contains(&f.uid) {
            others += 1;
        }
        Ok(())
    })?;
    if others > 0 {
        bail!(
            "host2 offers no UIDPLUS (no UID EXPUNGE), and {others} other messages are marked \
             \\Deleted there, which EXPUNGE would remove too: nothing removed"
        );
    }
    conn.store_flags(uids, FlagOp::Add, &deleted)?;
    conn.expunge_all()
}

/// Whether every store folder of the target was pulled completely (its last pull recorded
/// UIDVALIDITY and UIDNEXT).
fn fully_pulled(target: &Target) -> bool {
    target
        .folders
        .iter()
        .all(|f| f.state.uidvalidity.is_some() && f.state.uidnext.is_some())
}

/// Present messages whose store flags changed since they were pushed (or were found with
/// other flags), grouped by their new flag set: (flags, the mappings to update).
fn flag_groups(
    cmp: &Comparison,
    sel: &Selected,
    provider: Provider,
    disarm: bool,
) -> BTreeMap<Vec<String>, Vec<Mapping>> {
    let mut groups: BTreeMap<Vec<String>, Vec<Mapping>> = BTreeMap::new();
    let found = cmp.settled.found.iter().map(|m| {
        let flags = cmp
            .host
            .get(&m.uid)
            .map(|h| h.flags.clone())
            .unwrap_or_default();
        (m.store, m.uid, flags, 0)
    });
    // A message Gmail holds for two store messages keeps the flags of the one it is.
    let present = cmp
        .explained
        .present
        .iter()
        .filter(|(_, m)| !m.held)
        .map(|(i, m)| (*i, m.dest_uid, m.flags.clone(), m.change));
    for (i, dest_uid, host_flags, change) in present.chain(found) {
        let row = &cmp.store[i].row;
        if row.change <= change && change != 0 {
            continue;
        }
        let (mut want, _) = storable_flags(provider, &row.flags, &sel.permanent_flags);
        if disarm {
            want.retain(|f| !f.eq_ignore_ascii_case(MDN_SENT));
        }
        if same_flags(&want, &host_flags) {
            continue;
        }
        want.sort();
        let msg = &cmp.store[i];
        groups.entry(want.clone()).or_default().push(Mapping {
            folder_id: msg.folder_id,
            uidvalidity: row.uidvalidity,
            uid: row.uid,
            mailbox: Default::default(),
            dest_uidvalidity: cmp.uidvalidity,
            dest_uid,
            flags: want,
            change: row.change,
            found: change == 0,
            altered: None,
            held: false,
        });
    }
    groups
}

/// Whether `r` is Exchange's BAD to an APPEND whose message it cannot take (`BAD Command Error.
/// 10`, `BAD Command Argument Error. 11`).
fn exchange_refuses_content(provider: Provider, r: &Refusal) -> bool {
    provider == Provider::M365
        && r.status == crate::imap::response::Status::Bad
        && r.text.to_ascii_lowercase().contains("command")
        && r.text.to_ascii_lowercase().contains("error")
}

/// Whether `r` refuses a message for its size: `[TOOBIG]` (RFC 5530) or Exchange's `Maximum size
/// of appendable message has been exceeded`.
fn too_large(r: &Refusal) -> bool {
    r.code
        .as_deref()
        .is_some_and(|c| c.eq_ignore_ascii_case("TOOBIG"))
        || r.text
            .to_ascii_lowercase()
            .contains("maximum size of appendable message")
}

/// Whether a refusal says the trouble is the flags (only then is a message sent again without
/// its keywords).
fn refuses_keywords(r: &Refusal) -> bool {
    let t = r.text.to_ascii_lowercase();
    t.contains("keyword") || t.contains("flag")
}

fn has_keywords(flags: &[String]) -> bool {
    flags.iter().any(|f| !f.starts_with('\\'))
}

/// Split messages of these sizes into consecutive ranges of at most `max_bytes` (a larger
/// message alone) and `max_count` messages.
fn batches(
    sizes: impl Iterator<Item = u64>,
    max_bytes: u64,
    max_count: usize,
) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut end, mut bytes) = (0, 0, 0u64);
    for size in sizes {
        if end > start && (bytes + size > max_bytes || end - start >= max_count.max(1)) {
            out.push(start..end);
            (start, bytes) = (end, 0);
        }
        bytes += size;
        end += 1;
    }
    if end > start {
        out.push(start..end);
    }
    out
}

/// The flag Exchange turns into a category and a read receipt sent again (imapsync
/// FAQ.Office365): left off with `--disarm-read-receipts`.
const MDN_SENT: &str = "$MDNSent";

/// Whether `flags` holds `flag` (flags compare without case).
fn has_flag(flags: &[String], flag: &str) -> bool {
    flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
}

/// Why `provider` would refuse `bytes` for a line too long, if it would (the bytes are never
/// rewritten to fit).
fn too_long_lines(provider: Provider, bytes: &[u8]) -> Option<String> {
    let longest = provider.longest_line()?;
    let n = longest_line(bytes);
    (n > longest).then(|| {
        format!(
            "a line of {n} characters; {provider} refuses lines over {longest}: not sent \
             (--rewrap-long-lines sends it with such lines broken; the store keeps it as it is)"
        )
    })
}

/// The length of the longest line of `bytes`, without its line end.
fn longest_line(bytes: &[u8]) -> usize {
    bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_by_bytes_and_count_and_a_large_message_goes_alone() {
        let sizes = [3, 3, 3, 10, 1, 1, 1, 1, 1];
        assert_eq!(
            batches(sizes.into_iter(), 7, 3),
            [0..2, 2..3, 3..4, 4..7, 7..9]
        );
        assert!(batches(std::iter::empty(), 7, 3).is_empty());
        assert_eq!(batches([1, 1].into_iter(), 7, 0), [0..1, 1..2]);
    }
}
