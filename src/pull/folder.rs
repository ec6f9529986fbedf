//! Pulling one folder through a [`Mailbox`]: ask host1 what [`super::plan`] needs, record
//! expunges and flag changes, then bring the new bodies in ([`super::bodies`]). Each attempt
//! resumes where the last stopped: what it committed is known to the next.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;

use super::bodies::{gmail_ids, Bodies, Carry};
use super::plan::{self, Start};
use super::{FolderReport, Local, PullOptions};
use crate::imap::uidset::compact;
use crate::imap::{without_recent, Fetched, Selected};
use crate::mailbox::Mailbox;
use crate::run::Failure;
use crate::store::{FolderRow, MessageRow, NewMessage};
use crate::ui::{self, Progress};

/// What one folder's pull works on.
pub(super) struct Job<'a> {
    pub folder: &'a FolderRow,
    pub opts: &'a PullOptions,
    /// The run's daily download budget.
    pub allowance: &'a crate::budget::Allowance,
    pub progress: &'a Progress,
    /// (index, count) of the folder in this run, for the progress display.
    pub position: (usize, usize),
}

/// One attempt at a folder: its counts go to `fr`, its per-message failures to `failures`.
pub(super) fn pull_folder(
    conn: &mut dyn Mailbox,
    local: &mut Local,
    job: &Job<'_>,
    fr: &mut FolderReport,
    failures: &mut Vec<Failure>,
    carry: &mut Carry,
) -> Result<()> {
    let folder = job.folder;
    let sel = conn.select(&folder.raw_name, true)?;
    if conn.provider() == crate::provider::Provider::Gmail {
        if let Some(why) = crate::provider::gmail_folder_limit(sel.exists) {
            if !fr.warnings.iter().any(|w| w.reason == why) {
                ui::warn(&format!("{}: {why}", folder.path));
                fr.warnings.push(Failure::folder(&folder.path, why));
            }
        }
    }
    let known: BTreeMap<u32, MessageRow> = local
        .index
        .live_messages(folder.id, sel.uidvalidity)?
        .into_iter()
        .map(|m| (m.uid, m))
        .collect();
    let start = plan::start(&folder.state, known.len(), &sel);
    let repairs = if job.opts.repair && start != Start::Reindex {
        damaged(local, &known)
    } else {
        BTreeSet::new()
    };
    if start == Start::Unchanged && repairs.is_empty() {
        fr.unchanged = true;
        return record_state(local, folder, &sel, true);
    }
    if start == Start::Reindex {
        ui::info(&format!(
            "{}: UIDVALIDITY changed ({} -> {}); every message is fetched again (bytes the store \
             already holds are not stored twice)",
            folder.path,
            folder.state.uidvalidity.unwrap_or(0),
            sel.uidvalidity
        ));
    }
    let (mut new_meta, expunged) = if start == Start::Unchanged {
        (BTreeMap::new(), Vec::new())
    } else {
        new_and_expunged(conn, &known, &sel, start)?
    };
    let left_out = to_take(conn, &mut new_meta, &repairs, job.opts)?;
    fr.left_out += left_out;
    let flag_changes = flag_changes(conn, folder, &known, &sel, start)?;
    record_changes(local, folder, &sel, start, &expunged, &flag_changes, fr)?;
    record_known_gmail(local, folder, &sel, &mut new_meta, &repairs, fr)?;

    let bytes = new_meta.values().map(|f| f.size.unwrap_or(0)).sum();
    if job.opts.dry_run {
        // The index is a scratch copy: the changes above were counted, nothing is fetched.
        fr.dry_run = true;
        fr.new += new_meta.len() as u64;
        fr.bytes = bytes;
        return Ok(());
    }
    job.progress
        .folder(job.position.0, new_meta.len() as u64, bytes);
    let mut bodies = Bodies::new(job, sel.uidvalidity, &new_meta, fr, carry);
    bodies.repairs = repairs;
    // An attempt cut short finds its failures again in the next one: only a whole one counts.
    if let Err(e) = bodies.run(conn, local) {
        if crate::budget::is_budget_spent(&e) {
            // Stopped for the day: the folder's UIDVALIDITY is recorded, so push can send what
            // came; without UIDNEXT the next pull compares UID lists and takes the rest.
            record_state(local, folder, &sel, false)?;
        }
        return Err(e);
    }
    let (failed, notices) = (bodies.failed, bodies.notices);
    let complete = failed.is_empty() && left_out == 0;
    list(folder, failed, notices, fr, failures);
    record_state(local, folder, &sel, complete)
}

/// Add the messages to repair to `new_meta`, and drop the new ones the message filter and
/// `--search` leave out; how many were left out.
fn to_take(
    conn: &mut dyn Mailbox,
    new_meta: &mut BTreeMap<u32, Fetched>,
    repairs: &BTreeSet<u32>,
    opts: &PullOptions,
) -> Result<u64> {
    if !repairs.is_empty() {
        let set: Vec<u32> = repairs.iter().copied().collect();
        conn.fetch_meta(&compact(&set), None, &mut |f| {
            if repairs.contains(&f.uid) {
                new_meta.insert(f.uid, f);
            }
            Ok(())
        })?;
    }
    let mut left_out = leave_out(new_meta, repairs, &opts.filter);
    if let (Some(key), false) = (&opts.search, new_meta.is_empty()) {
        let found: BTreeSet<u32> = conn.search(key)?.into_iter().collect();
        let before = new_meta.len();
        new_meta.retain(|uid, _| found.contains(uid) || repairs.contains(uid));
        left_out += (before - new_meta.len()) as u64;
    }
    Ok(left_out)
}

/// New messages Gmail shows under an id the store already holds (the same message in another
/// label view): recorded with the bytes the store has, without a download. Taken out of
/// `new_meta`.
fn record_known_gmail(
    local: &mut Local,
    folder: &FolderRow,
    sel: &Selected,
    new_meta: &mut BTreeMap<u32, Fetched>,
    repairs: &BTreeSet<u32>,
    fr: &mut FolderReport,
) -> Result<()> {
    let mut rows = Vec::new();
    for (uid, f) in new_meta.iter() {
        let (Some(ids), Some(Ok(date))) = (gmail_ids(f), &f.internaldate) else {
            continue;
        };
        if repairs.contains(uid) {
            continue;
        }
        let Some((hash, size)) = local.index.object_of_gmail_message(ids.msgid)? else {
            continue;
        };
        // Only bytes of the size this view declares, and still in the store, are the same.
        if f.size != Some(size) || !local.objects.contains(&hash) {
            continue;
        }
        rows.push(NewMessage {
            uidvalidity: sel.uidvalidity,
            uid: *uid,
            hash,
            size,
            flags: without_recent(f.flags.as_deref().unwrap_or_default()),
            internaldate: *date,
            gmail: Some(ids),
        });
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut batch = local.index.batch()?;
    for m in &rows {
        batch.add_message(folder.id, m)?;
        new_meta.remove(&m.uid);
    }
    batch.commit()?;
    fr.new += rows.len() as u64;
    fr.reused += rows.len() as u64;
    Ok(())
}

/// Drop the new messages the filter does not take (never a repair); how many.
fn leave_out(
    new_meta: &mut BTreeMap<u32, Fetched>,
    repairs: &BTreeSet<u32>,
    filter: &plan::MessageFilter,
) -> u64 {
    if filter.is_empty() {
        return 0;
    }
    let now = crate::clock::now();
    let before = new_meta.len();
    new_meta.retain(|uid, f| {
        let received = f.internaldate.as_ref().and_then(|d| d.as_ref().ok());
        repairs.contains(uid) || filter.takes(f.size, received.map(|d| d.unix()), now)
    });
    (before - new_meta.len()) as u64
}

/// The messages that could not be stored (failures) and those stored after a second look
/// (warnings, shown at once).
fn list(
    folder: &FolderRow,
    failed: Vec<(u32, String)>,
    notices: Vec<(u32, String)>,
    fr: &mut FolderReport,
    failures: &mut Vec<Failure>,
) {
    for (uid, reason) in notices {
        ui::warn(&format!("{} UID {uid}: {reason}", folder.path));
        fr.warnings
            .push(Failure::message(&folder.path, uid, reason));
    }
    for (uid, reason) in failed {
        fr.failed += 1;
        failures.push(Failure::message(&folder.path, uid, reason));
    }
}

/// The new messages (UID → what FETCH said of them) and the UIDs host1 expunged.
fn new_and_expunged(
    conn: &mut dyn Mailbox,
    known: &BTreeMap<u32, MessageRow>,
    sel: &Selected,
    start: Start,
) -> Result<(BTreeMap<u32, Fetched>, Vec<u32>)> {
    let mut new_meta: BTreeMap<u32, Fetched> = BTreeMap::new();
    let known_uids: BTreeSet<u32> = known.keys().copied().collect();
    if let Start::Incremental { from } = start {
        if sel.uidnext != Some(from) {
            conn.fetch_meta(&format!("{from}:*"), None, &mut |f| {
                // `N:*` also returns the highest message when N is above every UID.
                if f.uid >= from && !known_uids.contains(&f.uid) {
                    new_meta.insert(f.uid, f);
                }
                Ok(())
            })?;
        }
        if plan::counts_add_up(known.len(), new_meta.len(), sel.exists) {
            return Ok((new_meta, Vec::new()));
        }
    }
    let on_server: BTreeSet<u32> = conn.search_all()?.into_iter().collect();
    let described: BTreeSet<u32> = new_meta.keys().copied().collect();
    let listing = plan::compare(&known_uids, &on_server, &described);
    if !listing.new.is_empty() {
        conn.fetch_meta(&compact(&listing.new), None, &mut |f| {
            if !known_uids.contains(&f.uid) {
                new_meta.insert(f.uid, f);
            }
            Ok(())
        })?;
        // Listed by SEARCH but not described: still asked for, so that a message host1 stays
        // silent about is a listed failure, never simply absent.
        for &uid in &listing.new {
            new_meta.entry(uid).or_insert_with(|| Fetched {
                uid,
                ..Fetched::default()
            });
        }
    }
    Ok((new_meta, listing.expunged))
}

/// Known messages whose object is missing or does not verify (`--repair`).
fn damaged(local: &Local, known: &BTreeMap<u32, MessageRow>) -> BTreeSet<u32> {
    let mut checked: BTreeMap<crate::store::Hash, bool> = BTreeMap::new();
    known
        .values()
        .filter(|m| {
            !*checked
                .entry(m.hash)
                .or_insert_with(|| local.objects.verify(&m.hash, m.size).is_ok())
        })
        .map(|m| m.uid)
        .collect()
}

/// Known messages whose flags host1 now reports otherwise.
fn flag_changes(
    conn: &mut dyn Mailbox,
    folder: &FolderRow,
    known: &BTreeMap<u32, MessageRow>,
    sel: &Selected,
    start: Start,
) -> Result<Vec<(u32, Vec<String>)>> {
    let Some(&max_known) = known.keys().next_back() else {
        return Ok(Vec::new());
    };
    let Some(since) = plan::flag_query(&folder.state, sel, start) else {
        return Ok(Vec::new());
    };
    let mut reported = Vec::new();
    conn.fetch_meta(&format!("1:{max_known}"), since, &mut |f| {
        if let Some(flags) = &f.flags {
            reported.push((f.uid, without_recent(flags)));
        }
        Ok(())
    })?;
    let known_flags: BTreeMap<u32, Vec<String>> =
        known.iter().map(|(u, m)| (*u, m.flags.clone())).collect();
    Ok(plan::flag_changes(&known_flags, reported))
}

/// Expunges, flag changes (and, after a UIDVALIDITY change, the old rows expunged) in one
/// transaction, before any body is fetched.
fn record_changes(
    local: &mut Local,
    folder: &FolderRow,
    sel: &Selected,
    start: Start,
    expunged: &[u32],
    flag_changes: &[(u32, Vec<String>)],
    fr: &mut FolderReport,
) -> Result<()> {
    let uv = sel.uidvalidity;
    let mut batch = local.index.batch()?;
    if start == Start::Reindex {
        fr.expunged += batch.expunge_other_uidvalidities(folder.id, uv)?;
    }
    for uid in expunged {
        batch.mark_expunged(folder.id, uv, *uid)?;
    }
    fr.expunged += expunged.len() as u64;
    for (uid, flags) in flag_changes {
        if batch.set_flags(folder.id, uv, *uid, flags)? {
            fr.updated += 1;
        }
    }
    batch.commit()
}

/// Record host1's state last (see [`plan::final_state`]).
fn record_state(
    local: &mut Local,
    folder: &FolderRow,
    sel: &Selected,
    complete: bool,
) -> Result<()> {
    let mut batch = local.index.batch()?;
    batch.set_folder_state(
        folder.id,
        &plan::final_state(sel, complete),
        crate::clock::now(),
    )?;
    batch.commit()
}
