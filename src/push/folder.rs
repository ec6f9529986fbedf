//! Pushing one host2 mailbox: reconcile the intents a killed run left, survey what host2 holds,
//! APPEND what it lacks in batches (intent first, mapping after), update flags, and with
//! `--delete2` remove what the store no longer holds.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;
use std::time::Instant;

use anyhow::{Context, Result};

use super::identity::match_equal;
use super::survey::{self, storable_flags, StoreMsg, Survey};
use super::targets::Target;
use super::{Ctx, FolderReport, HostState};
use crate::imap::uidset::compact;
use crate::imap::{is_transient, without_recent, AppendMessage, AppendOutcome, Client, Selected};
use crate::mailtime::InternalDate;
use crate::pull::Failure;
use crate::retry::Retry;
use crate::store::{Hash, Index, Mapping, NewIntent};
use crate::ui::{self, human_bytes};

/// Push one target. Returns its report, its failures, and whether the connection should be
/// replaced (after an error in the middle of a command).
pub(crate) fn push_target(
    ctx: &Ctx<'_>,
    client: &mut Client,
    index: &mut Index,
    target: &Target,
    position: usize,
) -> (FolderReport, Vec<Failure>, bool) {
    let started = Instant::now();
    let mut fr = FolderReport {
        folder: target.label(),
        mailbox: target.path.clone(),
        created: !target.exists,
        ..FolderReport::default()
    };
    let mut failures = Vec::new();
    // A dropped link: reconnect and run the folder again. The rerun reconciles the intents of
    // the batch that was in flight, so nothing is appended twice.
    let mut retry = Retry::new(ctx.opts.retries);
    // Accounting across attempts: what earlier attempts appended shows up in later ones as
    // already there (mapped, or recovered through intents); it was sent by this run.
    let mut sent_earlier = 0;
    let mut own_recovered = 0;
    let mut first_recovered = None;
    // Messages host2 answered BAD after their bytes were on the way: later attempts send them
    // with a synchronizing literal.
    let mut synchronizing = BTreeSet::new();
    let result = loop {
        // Messages an attempt got through before the cut are found by the next one as
        // recovered (`already`): that is progress too.
        let done = |fr: &FolderReport| fr.sent + fr.already + fr.flags_updated + fr.deleted;
        let done_before = done(&fr);
        fr.recovered = 0;
        let attempt = Pusher {
            ctx,
            client: &mut *client,
            index: &mut *index,
            target,
            fr: &mut fr,
            failures: &mut failures,
            synchronizing: &mut synchronizing,
        }
        .run(position);
        match first_recovered {
            None => first_recovered = Some(fr.recovered),
            Some(_) => own_recovered += fr.recovered,
        }
        let Err(e) = attempt else { break Ok(()) };
        if done(&fr) > done_before {
            retry.progress();
        }
        if !is_transient(&e) || !retry.failed(&format!("host2, folder {}", target.label()), &e) {
            break Err(e);
        }
        match retry.connect(&ctx.opts.endpoint, "host2") {
            Ok(c) => *client = c,
            Err(e) => break Err(e),
        }
        sent_earlier = fr.sent;
    };
    fr.already = fr.already.saturating_sub(sent_earlier + own_recovered);
    fr.sent += own_recovered;
    fr.recovered = first_recovered.unwrap_or(0);
    let reconnect = match result {
        Ok(()) => false,
        Err(e) => {
            let reason = format!("{e:#}");
            ctx.progress
                .line(&format!("{}: failed: {reason}", target.label()));
            failures.push(Failure {
                folder: target.label(),
                uid: None,
                reason,
            });
            true
        }
    };
    fr.seconds = started.elapsed().as_secs_f64();
    if !reconnect
        && (fr.sent + fr.flags_updated + fr.deleted + fr.failed > 0 || ui::verbosity() >= 2)
    {
        ctx.progress.line(&folder_line(&fr, ctx.opts.dry_run));
    }
    (fr, failures, reconnect)
}

fn folder_line(fr: &FolderReport, dry: bool) -> String {
    let verb = if dry { "to send" } else { "sent" };
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
    if !fr.dropped_keywords.is_empty() {
        s.push_str(&format!(
            "; keywords host2 does not store, left off: {}",
            fr.dropped_keywords.join(" ")
        ));
    }
    s
}

/// A store message on its way to host2.
#[derive(Clone)]
struct Outgoing<'s> {
    msg: &'s StoreMsg,
    flags: Vec<String>,
    /// Send it as a synchronizing literal (after host2 answered BAD to it).
    synchronizing: bool,
}

struct Pusher<'a, 'c> {
    ctx: &'a Ctx<'c>,
    client: &'a mut Client,
    index: &'a mut Index,
    target: &'a Target,
    fr: &'a mut FolderReport,
    failures: &'a mut Vec<Failure>,
    synchronizing: &'a mut BTreeSet<(i64, u32, u32)>,
}

impl Pusher<'_, '_> {
    fn run(&mut self, position: usize) -> Result<()> {
        let dry = self.ctx.opts.dry_run;
        if !self.target.exists && dry {
            // Nothing to look at on host2: everything would be sent.
            let store = survey::load_store(self.index, self.target)?;
            self.fr.messages = store.len() as u64;
            self.fr.sent = store.len() as u64;
            self.fr.bytes = store.iter().map(|m| m.row.size).sum();
            return Ok(());
        }
        if let (Some(dest), false) = (self.ctx.destination, dry) {
            // Until this push of the mailbox completes, the next run surveys it in full.
            self.index
                .forget_mailbox_facts(dest, &self.target.mailbox)?;
        }
        let sent_before = self.fr.sent;
        let sel = self.client.select(&self.target.mailbox, dry)?;
        if !dry {
            self.reconcile_intents(&sel)?;
        }
        let host = survey::list_host(self.client, sel.exists)?;
        let mappings = match self.ctx.destination {
            Some(d) => self.index.mappings_to(d, &self.target.mailbox)?,
            None => Vec::new(),
        };
        let sv = survey::survey(
            self.client,
            self.index,
            self.target,
            sel.uidvalidity,
            host,
            mappings,
        )?;
        self.fr.messages = sv.store.len() as u64;
        self.fr.already = sv.present.len() as u64;
        let bytes: u64 = sv.missing.iter().map(|&i| sv.store[i].row.size).sum();
        self.ctx.progress.folder(
            position,
            self.ctx.count,
            &self.target.label(),
            sv.missing.len() as u64,
            bytes,
        );
        if dry {
            self.fr.sent = sv.missing.len() as u64;
            self.fr.bytes = bytes;
            self.fr.flags_updated = self
                .flag_groups(&sv, &sel)
                .values()
                .map(|v| v.len() as u64)
                .sum();
            if self.ctx.opts.delete2 {
                self.fr.deleted = sv.extras.len() as u64;
            }
            return Ok(());
        }
        let Some(dest) = self.ctx.destination else {
            anyhow::bail!("internal error: no destination id outside a dry run");
        };
        // Record what was recognised and forget what no longer holds, before anything is sent.
        let found: Vec<Mapping> = sv
            .found_now
            .iter()
            .map(|&i| sv.present[i].1.clone())
            .collect();
        if !found.is_empty() || !sv.stale.is_empty() {
            self.index.record_push(dest, &[], &found, &sv.stale)?;
        }
        let uidnext = self.append_missing(dest, &sv, &sel)?;
        self.update_flags(dest, &sv, &sel)?;
        let mut deleted = 0;
        if self.ctx.opts.delete2 {
            self.delete_extras(dest, &sv)?;
            deleted = sv.extras.len() as u64;
        }
        // What host2 holds now if nobody else touched the mailbox: checked against LIST-STATUS
        // before it is recorded for the unchanged fast path.
        let appended = self.fr.sent - sent_before;
        let messages = (u64::from(sel.exists) + appended).checked_sub(deleted);
        if let (Some(uidnext), Some(messages)) = (uidnext, messages) {
            self.fr.expect = u32::try_from(messages).ok().map(|messages| HostState {
                uidvalidity: sel.uidvalidity,
                uidnext,
                messages,
            });
        }
        Ok(())
    }

    /// Intents left by an interrupted run: the messages may or may not have reached host2.
    /// Hash host2's messages above the recorded UIDNEXT and record the ones that match; drop
    /// the rest (they are appended again below, as missing).
    fn reconcile_intents(&mut self, sel: &Selected) -> Result<()> {
        let Some(dest) = self.ctx.destination else {
            return Ok(());
        };
        let intents = self.index.intents_for(dest, &self.target.mailbox)?;
        if intents.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = intents.iter().map(|i| i.id).collect();
        let live: Vec<_> = intents
            .iter()
            .filter(|i| i.intent.dest_uidvalidity == sel.uidvalidity)
            .collect();
        let mut mappings = Vec::new();
        if let Some(lower) = live.iter().map(|i| i.intent.dest_uidnext).min() {
            let claimed: BTreeSet<u32> = self
                .index
                .mappings_to(dest, &self.target.mailbox)?
                .iter()
                .filter(|m| m.dest_uidvalidity == sel.uidvalidity)
                .map(|m| m.dest_uid)
                .collect();
            let sizes: BTreeSet<u64> = live.iter().map(|i| i.intent.size).collect();
            let bodies = self.hash_from(lower, &claimed, Some(&sizes))?;
            let wanted: Vec<(usize, Hash)> = live
                .iter()
                .enumerate()
                .map(|(k, i)| (k, i.intent.hash))
                .collect();
            let have: Vec<(u32, Hash)> = bodies.iter().map(|(u, (h, _))| (*u, *h)).collect();
            let (pairs, _) = match_equal(&wanted, &have);
            for (k, uid) in pairs {
                let i = &live[k].intent;
                mappings.push(Mapping {
                    folder_id: i.folder_id,
                    uidvalidity: i.uidvalidity,
                    uid: i.uid,
                    mailbox: self.target.mailbox.clone(),
                    dest_uidvalidity: sel.uidvalidity,
                    dest_uid: uid,
                    flags: bodies.get(&uid).map(|(_, f)| f.clone()).unwrap_or_default(),
                    change: 0,
                    found: false,
                });
            }
        }
        ui::detail(&format!(
            "{}: {} interrupted APPENDs from an earlier run: {} reached host2",
            self.target.label(),
            ids.len(),
            mappings.len()
        ));
        self.fr.recovered = mappings.len() as u64;
        self.index.record_push(dest, &ids, &mappings, &[])
    }

    /// SHA-256 and flags of the selected mailbox's messages with UID >= `lower` that are not in
    /// `claimed` (and, when given, whose size is in `sizes`), by UID.
    fn hash_from(
        &mut self,
        lower: u32,
        claimed: &BTreeSet<u32>,
        sizes: Option<&BTreeSet<u64>>,
    ) -> Result<BTreeMap<u32, (Hash, Vec<String>)>> {
        let mut candidates: Vec<(u32, u64)> = Vec::new();
        self.client
            .uid_fetch_meta(&format!("{}:*", lower.max(1)), None, &mut |f| {
                let size = f.size.unwrap_or(0);
                // `N:*` also returns the last message when N is above every UID.
                if f.uid >= lower
                    && !claimed.contains(&f.uid)
                    && sizes.is_none_or(|s| s.contains(&size))
                {
                    candidates.push((f.uid, size));
                }
                Ok(())
            })?;
        let mut out = BTreeMap::new();
        if candidates.is_empty() {
            return Ok(out);
        }
        candidates.sort_unstable();
        let uids: Vec<u32> = candidates.iter().map(|c| c.0).collect();
        let sizes: Vec<u64> = candidates.iter().map(|c| c.1).collect();
        self.client
            .uid_fetch_bodies(&uids, &sizes, 8 << 20, 2, &mut |f| {
                if let Some(body) = &f.body {
                    let flags = without_recent(f.flags.as_deref().unwrap_or_default());
                    out.insert(f.uid, (Hash::of(body), flags));
                }
                Ok(())
            })?;
        Ok(out)
    }

    /// APPEND the missing messages in batches: intents committed, APPENDs pipelined, mappings
    /// recorded from APPENDUID (or by hashing what appeared, without UIDPLUS). Messages host2
    /// rejects that carry keywords are tried once more without them.
    ///
    /// Returns host2's UIDNEXT after them, as far as the replies tell (`None` when unknown).
    fn append_missing(&mut self, dest: i64, sv: &Survey, sel: &Selected) -> Result<Option<u32>> {
        if sv.missing.is_empty() {
            return Ok(sel.uidnext);
        }
        let mut dropped: BTreeSet<String> = BTreeSet::new();
        let mut claimed: BTreeSet<u32> = sv.present.iter().map(|(_, m)| m.dest_uid).collect();
        let mut lower = sel.uidnext.unwrap_or(1);
        let (max_bytes, max_count) = (self.ctx.opts.batch_bytes, self.ctx.opts.batch_messages);
        let missing: Vec<&StoreMsg> = sv.missing.iter().map(|&i| &sv.store[i]).collect();
        let mut retry: Vec<Outgoing<'_>> = Vec::new();
        // Each batch is built when it is sent, so only one batch's flags and bytes are held.
        for range in batches(missing.iter().map(|m| m.row.size), max_bytes, max_count) {
            let batch = missing[range]
                .iter()
                .map(|&msg| {
                    let (flags, lost) = storable_flags(&msg.row.flags, &sel.permanent_flags);
                    dropped.extend(lost);
                    Outgoing {
                        msg,
                        flags,
                        synchronizing: self.synchronizing.contains(&msg.key()),
                    }
                })
                .collect();
            retry.extend(self.send_batch(dest, sel, batch, &mut lower, &mut claimed)?);
        }
        // Rejected with keywords: once more with system flags only; answered BAD: once more
        // alone with a synchronizing literal, so that a refusal comes before its bytes.
        for o in &mut retry {
            if o.synchronizing {
                continue;
            }
            let (system, keywords): (Vec<String>, Vec<String>) =
                o.flags.drain(..).partition(|f| f.starts_with('\\'));
            dropped.extend(keywords);
            o.flags = system;
        }
        for range in batches(retry.iter().map(|o| o.msg.row.size), max_bytes, max_count) {
            let batch = retry[range].to_vec();
            for o in self.send_batch(dest, sel, batch, &mut lower, &mut claimed)? {
                let why = if o.synchronizing {
                    "host2 answered BAD to its APPEND, twice"
                } else {
                    "host2 rejected it even without keywords"
                };
                self.fail(o.msg, why.to_string());
            }
        }
        self.fr.dropped_keywords = dropped.into_iter().collect();
        Ok(sel.uidnext.map(|_| lower))
    }

    /// Send one batch; returns the messages host2 rejected that had keywords (to retry).
    fn send_batch<'s>(
        &mut self,
        dest: i64,
        sel: &Selected,
        batch: Vec<Outgoing<'s>>,
        lower: &mut u32,
        claimed: &mut BTreeSet<u32>,
    ) -> Result<Vec<Outgoing<'s>>> {
        // Read (and verify) the bytes and the date first: an unreadable object or a date that
        // is not one is this message's failure, and nothing unparsed goes into a command.
        let mut items: Vec<(Outgoing<'s>, Vec<u8>, InternalDate)> = Vec::with_capacity(batch.len());
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
            match self.ctx.objects.read(&o.msg.row.hash) {
                Ok(bytes) => items.push((o, bytes, date)),
                Err(e) => self.fail(o.msg, format!("cannot read it from the store: {e:#}")),
            }
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let intents: Vec<NewIntent> = items
            .iter()
            .map(|(o, b, _)| NewIntent {
                folder_id: o.msg.folder_id,
                uidvalidity: o.msg.row.uidvalidity,
                uid: o.msg.row.uid,
                hash: o.msg.row.hash,
                size: b.len() as u64,
                mailbox: self.target.mailbox.clone(),
                dest_uidvalidity: sel.uidvalidity,
                dest_uidnext: *lower,
            })
            .collect();
        let ids = self.index.add_intents(dest, &intents)?;
        let appends: Vec<AppendMessage<'_>> = items
            .iter()
            .map(|(o, b, date)| AppendMessage {
                flags: &o.flags,
                internaldate: Some(*date),
                bytes: b,
                synchronizing: o.synchronizing,
            })
            .collect();
        let outcomes = self
            .client
            .append_many(&self.target.mailbox, &appends)
            .context("APPEND")?;
        let uidplus = self.client.has_capability("UIDPLUS");
        let mut mappings = Vec::new();
        let mut unknown_uid: Vec<usize> = Vec::new();
        let mut retry_idx = Vec::new();
        // Intents of APPENDs with no answer stay: the next attempt reconciles them.
        let mut unanswered: Vec<i64> = Vec::new();
        let mut interrupted: Option<anyhow::Error> = None;
        for (k, outcome) in outcomes.iter().enumerate() {
            let o = &items[k].0;
            match outcome {
                AppendOutcome::Ok {
                    uidvalidity: Some(uv),
                    uid: Some(uid),
                } if uidplus && *uv == sel.uidvalidity => {
                    mappings.push(self.mapping(o, sel, *uid));
                }
                AppendOutcome::Ok { .. } => unknown_uid.push(k),
                AppendOutcome::Unanswered => {
                    unanswered.push(ids[k]);
                    interrupted.get_or_insert_with(|| {
                        anyhow::Error::new(std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            "the connection to host2 was closed after a BAD",
                        ))
                    });
                }
                AppendOutcome::Refused(r) if r.is_transient() => {
                    unanswered.push(ids[k]);
                    interrupted.get_or_insert_with(|| {
                        anyhow::anyhow!(crate::imap::error::transient(format!(
                            "host2 asks to wait: {r}"
                        )))
                    });
                }
                AppendOutcome::Refused(r)
                    if r.status == crate::imap::response::Status::Bad && !o.synchronizing =>
                {
                    self.synchronizing.insert(o.msg.key());
                    retry_idx.push(k);
                }
                AppendOutcome::Refused(r) => {
                    if o.flags.iter().any(|f| !f.starts_with('\\')) {
                        retry_idx.push(k);
                    } else {
                        self.fail(o.msg, format!("host2 rejected the APPEND: {r}"));
                    }
                }
            }
        }
        for m in &mappings {
            claimed.insert(m.dest_uid);
        }
        if !unknown_uid.is_empty() {
            // No APPENDUID: find them among the new messages by their bytes.
            let bodies = self.hash_from(*lower, claimed, None)?;
            let wanted: Vec<(usize, Hash)> = unknown_uid
                .iter()
                .map(|&k| (k, items[k].0.msg.row.hash))
                .collect();
            let have: Vec<(u32, Hash)> = bodies.iter().map(|(u, (h, _))| (*u, *h)).collect();
            let (pairs, lost) = match_equal(&wanted, &have);
            for (k, uid) in pairs {
                claimed.insert(uid);
                mappings.push(self.mapping(&items[k].0, sel, uid));
            }
            for k in lost {
                // The next run recognises it by identity if it is there after all.
                self.fail(
                    items[k].0.msg,
                    "host2 accepted the APPEND but the message was not found afterwards"
                        .to_string(),
                );
            }
        }
        if let Some(max) = mappings.iter().map(|m| m.dest_uid).max() {
            *lower = (*lower).max(max.saturating_add(1));
        }
        let settled: Vec<i64> = ids
            .iter()
            .copied()
            .filter(|id| !unanswered.contains(id))
            .collect();
        self.index.record_push(dest, &settled, &mappings, &[])?;
        let sent_bytes: u64 = mappings
            .iter()
            .filter_map(|m| items.iter().find(|(o, ..)| o.msg.key() == m.key()))
            .map(|(_, b, _)| b.len() as u64)
            .sum();
        self.fr.sent += mappings.len() as u64;
        self.fr.bytes += sent_bytes;
        self.ctx.progress.advance(sent_bytes);
        if let Some(e) = interrupted {
            return Err(e);
        }
        let mut retry = Vec::new();
        let mut items: Vec<Option<(Outgoing<'s>, Vec<u8>, InternalDate)>> =
            items.into_iter().map(Some).collect();
        for k in retry_idx {
            let bad = matches!(
                &outcomes[k],
                AppendOutcome::Refused(r) if r.status == crate::imap::response::Status::Bad
            );
            if let Some((mut o, ..)) = items[k].take() {
                o.synchronizing |= bad;
                retry.push(o);
            }
        }
        Ok(retry)
    }

    fn mapping(&self, o: &Outgoing<'_>, sel: &Selected, dest_uid: u32) -> Mapping {
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
        }
    }

    /// Present messages whose store flags changed since they were pushed (or were recognised
    /// with other flags), grouped by their new flag set.
    fn flag_groups(&self, sv: &Survey, sel: &Selected) -> BTreeMap<Vec<String>, Vec<usize>> {
        let mut groups: BTreeMap<Vec<String>, Vec<usize>> = BTreeMap::new();
        for (p, (i, m)) in sv.present.iter().enumerate() {
            let row = &sv.store[*i].row;
            if row.change <= m.change && m.change != 0 {
                continue;
            }
            let (mut want, _) = storable_flags(&row.flags, &sel.permanent_flags);
            if survey::same_flags(&want, &m.flags) {
                continue;
            }
            want.sort();
            groups.entry(want).or_default().push(p);
        }
        groups
    }

    /// `UID STORE set FLAGS.SILENT (...)`, one command per distinct flag set.
    fn update_flags(&mut self, dest: i64, sv: &Survey, sel: &Selected) -> Result<()> {
        let groups = self.flag_groups(sv, sel);
        let mut updated = Vec::new();
        for (flags, members) in groups {
            let uids: Vec<u32> = members.iter().map(|&p| sv.present[p].1.dest_uid).collect();
            self.client.raw_command(&format!(
                "UID STORE {} FLAGS.SILENT ({})",
                compact(&uids),
                flags.join(" ")
            ))?;
            for p in members {
                let (i, m) = &sv.present[p];
                let mut m = m.clone();
                m.flags = flags.clone();
                m.change = sv.store[*i].row.change;
                updated.push(m);
            }
        }
        if !updated.is_empty() {
            self.fr.flags_updated = updated.len() as u64;
            self.index.record_push(dest, &[], &updated, &[])?;
        }
        Ok(())
    }

    /// `--delete2`: flag `\Deleted` and expunge host2 messages that match no live store message.
    /// Without UIDPLUS (no UID EXPUNGE), other messages flagged `\Deleted` are unflagged around
    /// the EXPUNGE so that it removes only ours.
    fn delete_extras(&mut self, dest: i64, sv: &Survey) -> Result<()> {
        if sv.extras.is_empty() {
            return Ok(());
        }
        let set = compact(&sv.extras);
        self.client
            .raw_command(&format!("UID STORE {set} +FLAGS.SILENT (\\Deleted)"))?;
        if self.client.has_capability("UIDPLUS") {
            self.client.raw_command(&format!("UID EXPUNGE {set}"))?;
        } else {
            let extras: BTreeSet<u32> = sv.extras.iter().copied().collect();
            let keep: Vec<u32> = sv
                .host
                .iter()
                .filter(|(u, h)| {
                    !extras.contains(u)
                        && h.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted"))
                })
                .map(|(u, _)| *u)
                .collect();
            if !keep.is_empty() {
                self.client.raw_command(&format!(
                    "UID STORE {} -FLAGS.SILENT (\\Deleted)",
                    compact(&keep)
                ))?;
            }
            self.client.raw_command("EXPUNGE")?;
            if !keep.is_empty() {
                self.client.raw_command(&format!(
                    "UID STORE {} +FLAGS.SILENT (\\Deleted)",
                    compact(&keep)
                ))?;
            }
        }
        // Mappings of expunged store messages pointed at what was just deleted.
        let gone: HashMap<u32, ()> = sv.extras.iter().map(|u| (*u, ())).collect();
        let forget: Vec<(i64, u32, u32)> = self
            .index
            .mappings_to(dest, &self.target.mailbox)?
            .iter()
            .filter(|m| m.dest_uidvalidity == sv.uidvalidity && gone.contains_key(&m.dest_uid))
            .map(Mapping::key)
            .collect();
        self.index.record_push(dest, &[], &[], &forget)?;
        self.fr.deleted = sv.extras.len() as u64;
        Ok(())
    }

    fn fail(&mut self, msg: &StoreMsg, reason: String) {
        self.fr.failed += 1;
        self.ctx.progress.line(&format!(
            "{} UID {}: failed: {reason}",
            msg.folder, msg.row.uid
        ));
        self.failures.push(Failure {
            folder: msg.folder.to_string(),
            uid: Some(msg.row.uid),
            reason,
        });
    }
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

#[cfg(test)]
mod tests {
    use super::batches;

    #[test]
    fn batches_are_bounded_by_bytes_and_count_and_a_large_message_goes_alone() {
        let sizes = [3, 3, 3, 10, 1, 1, 1, 1, 1];
        assert_eq!(
            batches(sizes.into_iter(), 7, 3),
            [0..2, 2..3, 3..4, 4..7, 7..9]
        );
        assert!(batches(std::iter::empty(), 7, 3).is_empty());
        // A count of 0 still moves one message per batch.
        assert_eq!(batches([1, 1].into_iter(), 7, 0), [0..1, 1..2]);
    }
}
