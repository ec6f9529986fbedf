//! Bringing the bodies of one folder's new messages into the store, checked against what host1
//! declared for them: each body's length against its RFC822.SIZE, each UID once, each
//! INTERNALDATE a date.
//!
//! Small messages come in pipelined batches; large ones (and any a broken link cut off) in
//! chunks kept in `partial/` across runs. A body whose length differs from its RFC822.SIZE, or
//! a large message whose chunks broke the protocol (a piece longer than asked, at an offset not
//! asked, no end within the size), is fetched whole once more: stored when the answers agree
//! (and reported), failed when they do not. Nothing is ever stored short or long without a
//! word; a UID host1 sends twice in one answer is failed, neither copy kept.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};

use super::folder::Job;
use super::{FolderReport, Local, PullOptions, UidSize, MIN_CHUNK};
use crate::budget::Allowance;
use crate::clock::now;
use crate::imap::error::{is_bandwidth_quota, is_server_quota, is_session_expired};
use crate::imap::{body_margin, is_protocol, without_recent, Fetched};
use crate::mailbox::Mailbox;
use crate::mailtime::InternalDate;
use crate::store::transfer_log::Account;
use crate::store::{FolderRow, GmailIds, Hash, HeaderFacts, Index, NewMessage, Objects};
use crate::ui::Progress;

/// What is odd about a message whose first answer could not be stored as it came.
enum Suspect {
    /// Its body's length differed from RFC822.SIZE: what came the first time.
    Length { hash: Hash, len: u64 },
    /// Its chunks broke the protocol, and why.
    Chunks(String),
}

/// What one attempt at a folder learnt about its messages, for the next attempt.
#[derive(Debug, Default)]
pub(super) struct Carry {
    /// UIDs a broken link cut off, with the chunk size to fetch them in.
    pub chunked: BTreeMap<u32, u64>,
    /// UIDs whose chunks broke the protocol, with why: fetched whole from now on.
    pub whole: BTreeMap<u32, String>,
    /// What the folder had brought in ([`Bodies::moved`]) when host1 last ended a session with
    /// `BYE Session expired`.
    pub expired_at: Option<u64>,
}

/// Messages on their way into the index, committed together once their objects are durable.
struct Pending {
    rows: Vec<(NewMessage, HeaderFacts, u64)>,
    bytes: u64,
}

/// The body phase of one folder's pull.
pub(super) struct Bodies<'a> {
    pub folder: &'a FolderRow,
    pub uv: u32,
    /// What `UID FETCH (UID FLAGS INTERNALDATE RFC822.SIZE)` said of each new message.
    pub meta: &'a BTreeMap<u32, Fetched>,
    pub opts: &'a PullOptions,
    /// The run's daily download budget: each batch is taken from it before it starts.
    pub allowance: &'a Allowance,
    pub progress: &'a Progress,
    /// This folder's place on the progress display.
    pub slot: usize,
    pub fr: &'a mut FolderReport,
    /// Kept across attempts.
    pub carry: &'a mut Carry,
    pending: Pending,
    /// UIDs whose answer was handled: stored, or failed with a reason.
    settled: BTreeSet<u32>,
    /// UIDs committed to the index in this attempt.
    committed: BTreeSet<u32>,
    suspects: BTreeMap<u32, Suspect>,
    /// (UID, reason) of messages that cannot be stored.
    pub failed: Vec<(u32, String)>,
    /// (UID, what happened) of messages stored after a second look.
    pub notices: Vec<(u32, String)>,
    /// Known messages fetched again to replace a damaged object (counted as repaired).
    pub repairs: BTreeSet<u32>,
    /// Whether host1's RFC822.SIZE is the length of what it serves (not on Microsoft 365).
    exact_sizes: bool,
}

/// Which answer for a message this is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Pass {
    First,
    /// The whole body, asked for again.
    Second,
}

impl<'a> Bodies<'a> {
    pub fn new(
        job: &Job<'a>,
        uv: u32,
        meta: &'a BTreeMap<u32, Fetched>,
        fr: &'a mut FolderReport,
        carry: &'a mut Carry,
    ) -> Bodies<'a> {
        Bodies {
            folder: job.folder,
            uv,
            meta,
            opts: job.opts,
            allowance: job.allowance,
            progress: job.progress,
            slot: job.position.0,
            fr,
            carry,
            pending: Pending {
                rows: Vec::new(),
                bytes: 0,
            },
            settled: BTreeSet::new(),
            committed: BTreeSet::new(),
            suspects: BTreeMap::new(),
            failed: Vec::new(),
            notices: Vec::new(),
            repairs: BTreeSet::new(),
            exact_sizes: true,
        }
    }

    /// Fetch every message of `meta`. What host1 never answered for ends up in `failed`.
    pub fn run(&mut self, conn: &mut dyn Mailbox, local: &mut Local) -> Result<()> {
        // Bytes are counted as they arrive, so the display moves inside a large message too.
        conn.set_literal_meter(self.progress.meter(self.slot));
        self.exact_sizes = conn.provider().sizes_are_exact();
        let result = self.fetch_all(conn, local);
        conn.set_literal_meter(None);
        result
    }

    fn fetch_all(&mut self, conn: &mut dyn Mailbox, local: &mut Local) -> Result<()> {
        let all: Vec<UidSize> = self
            .meta
            .iter()
            .map(|(uid, f)| (*uid, f.size.unwrap_or(0)))
            .collect();
        let threshold = self.opts.chunk_threshold;
        let carry = &self.carry;
        let (large, small): (Vec<UidSize>, Vec<UidSize>) = all.iter().partition(|(uid, size)| {
            !carry.whole.contains_key(uid) && (*size > threshold || carry.chunked.contains_key(uid))
        });
        self.small(conn, local, &small)?;
        for &(uid, size) in &large {
            self.large(conn, local, uid, size)?;
        }
        self.second_look(conn, local)?;
        for (uid, _) in all {
            if !self.settled.contains(&uid) {
                self.failed.push((
                    uid,
                    "host1 sent no body for it (expunged meanwhile, or unreadable on the server)"
                        .to_string(),
                ));
            }
        }
        Ok(())
    }

    fn small(
        &mut self,
        conn: &mut dyn Mailbox,
        local: &mut Local,
        small: &[UidSize],
    ) -> Result<()> {
        if small.is_empty() {
            return Ok(());
        }
        // Only what the daily budget allows is asked for; the rest waits for the next run.
        let sizes: Vec<u64> = small.iter().map(|(_, s)| *s).collect();
        let allowed = self.allowance.take(&sizes, now());
        let stopped = allowed < small.len();
        let small = &small[..allowed];
        let uids: Vec<u32> = small.iter().map(|(u, _)| *u).collect();
        let sizes = &sizes[..allowed];
        let (batch, depth) = (self.opts.batch_bytes, self.opts.depth);
        let result = if uids.is_empty() {
            Ok(Vec::new())
        } else {
            conn.fetch_bodies(&uids, sizes, batch, depth, &mut |f| {
                self.accept(f, Pass::First, local)
            })
        };
        // Keep what arrived even when the stream broke off.
        self.flush(local)?;
        // What did not come is asked for again (by this run's next attempt, or the next run).
        let unsettled: u64 = small
            .iter()
            .filter(|(u, _)| !self.settled.contains(u) && !self.suspects.contains_key(u))
            .map(|(_, s)| s)
            .sum();
        self.allowance.give_back(unsettled);
        match result {
            Ok(repeated) => {
                self.repeated(&repeated, local)?;
                if stopped {
                    return Err(self.allowance.spent_error());
                }
                Ok(())
            }
            Err(e) if is_server_quota(&e) => Err(self.server_quota(e)),
            Err(e) => {
                // The message in flight when the link broke goes in chunks next time, so a
                // link that drops every few megabytes still brings it in.
                if let Some((uid, _)) = small.iter().find(|(u, size)| {
                    !self.settled.contains(u)
                        && !self.suspects.contains_key(u)
                        && !self.carry.whole.contains_key(u)
                        && *size > self.opts.chunk_bytes
                }) {
                    self.carry.chunked.insert(*uid, self.opts.chunk_bytes);
                }
                Err(e)
            }
        }
    }

    /// One large message in chunks, each kept in `partial/` as it comes, so a broken link loses
    /// at most the pieces in flight.
    fn large(
        &mut self,
        conn: &mut dyn Mailbox,
        local: &mut Local,
        uid: u32,
        size: u64,
    ) -> Result<()> {
        let chunk = *self
            .carry
            .chunked
            .entry(uid)
            .or_insert(self.opts.chunk_bytes);
        let mut part =
            local
                .partials
                .begin(self.folder.id, self.uv, uid, size + body_margin(size))?;
        let offset = part.len();
        let left = size.saturating_sub(offset);
        if self.allowance.take(&[left], now()) == 0 {
            // Its pieces so far stay in `partial/` for the next run.
            return Err(self.allowance.spent_error());
        }
        let fr = &mut *self.fr;
        let fetched = conn.fetch_partials(uid, offset, chunk, size, self.opts.depth, &mut |b| {
            part.append(b)?;
            fr.chunk_bytes += b.len() as u64;
            Ok(())
        });
        match fetched {
            Ok(true) => {
                let body = part.read_all()?;
                let f = Fetched {
                    uid,
                    body: Some(body),
                    ..Fetched::default()
                };
                self.accept(f, Pass::First, local)?;
                self.flush(local)?;
            }
            Ok(false) => {}
            Err(e) if is_protocol(&e) => {
                self.allowance.give_back(left);
                part.remove()?;
                self.carry.chunked.remove(&uid);
                if !conn.is_usable() {
                    // The answer broke the connection: whole, on the next connection.
                    let why = format!("{e:#}");
                    self.carry.whole.insert(uid, why.clone());
                    return Err(anyhow::Error::new(crate::imap::error::transient(format!(
                        "UID {uid}: {why}; fetching it whole on a new connection"
                    ))));
                }
                self.suspects.insert(uid, Suspect::Chunks(format!("{e:#}")));
                return Ok(());
            }
            Err(e) if is_server_quota(&e) => {
                self.allowance.give_back(left);
                return Err(self.server_quota(e));
            }
            Err(e) => {
                // Asked for again, from where the pieces kept end.
                self.allowance.give_back(left);
                // Smaller chunks next time, in case the link cannot carry this many bytes.
                self.carry.chunked.insert(uid, (chunk / 2).max(MIN_CHUNK));
                return Err(e);
            }
        }
        part.remove()?;
        self.carry.chunked.remove(&uid);
        Ok(())
    }

    /// Fetch the suspects whole, once, and settle each.
    fn second_look(&mut self, conn: &mut dyn Mailbox, local: &mut Local) -> Result<()> {
        if self.suspects.is_empty() {
            return Ok(());
        }
        let uids: Vec<u32> = self.suspects.keys().copied().collect();
        let sizes: Vec<u64> = uids
            .iter()
            .map(|u| {
                let declared = self.meta.get(u).and_then(|m| m.size).unwrap_or(0);
                match self.suspects.get(u) {
                    Some(Suspect::Length { len, .. }) => declared.max(*len),
                    _ => declared,
                }
            })
            .collect();
        // Not taken from the budget (rare, and already asked for once), but counted when stored.
        let result = conn.fetch_bodies(&uids, &sizes, 1, 1, &mut |f| {
            self.accept(f, Pass::Second, local)
        });
        self.flush(local)?;
        let repeated = match result {
            Ok(r) => r,
            Err(e) => return Err(self.server_quota(e)),
        };
        self.repeated(&repeated, local)?;
        for (uid, _) in std::mem::take(&mut self.suspects) {
            self.fail(
                uid,
                "host1 sent no body when asked for it a second time".into(),
            );
        }
        Ok(())
    }

    /// One answer for a message (its bytes were counted by the meter as they arrived).
    fn accept(&mut self, f: Fetched, pass: Pass, local: &mut Local) -> Result<()> {
        let uid = f.uid;
        let (Some(meta), Some(body)) = (self.meta.get(&uid), f.body) else {
            return Ok(());
        };
        if self.settled.contains(&uid) || (pass == Pass::First && self.suspects.contains_key(&uid))
        {
            return Ok(());
        }
        let date = match f.internaldate.clone().or_else(|| meta.internaldate.clone()) {
            Some(Ok(d)) => d,
            bad => {
                let sent = match bad {
                    Some(Err(v)) => v,
                    _ => "nothing".to_string(),
                };
                self.suspects.remove(&uid);
                self.fail(
                    uid,
                    format!(
                        "host1 sent {sent} as its INTERNALDATE, not an IMAP date-time; not stored"
                    ),
                );
                return Ok(());
            }
        };
        let len = body.len() as u64;
        let declared = meta.size;
        match (pass, declared) {
            (Pass::First, Some(size)) if size != len && self.exact_sizes => {
                let hash = Hash::of(&body);
                self.suspects.insert(uid, Suspect::Length { hash, len });
                return Ok(());
            }
            (Pass::First, _) if self.carry.whole.contains_key(&uid) => {
                let why = self.carry.whole.remove(&uid).unwrap_or_default();
                self.notices.push((
                    uid,
                    format!(
                        "its chunks could not be used ({why}); fetched whole instead ({len} bytes)"
                    ),
                ));
            }
            (Pass::Second, _) => {
                let Some(why) = self.second_answer(uid, &body, declared) else {
                    return Ok(());
                };
                self.notices.push((uid, why));
            }
            _ => {}
        }
        let flags = f
            .flags
            .as_deref()
            .or(meta.flags.as_deref())
            .unwrap_or_default();
        self.store(uid, &body, without_recent(flags), date, local)
    }

    /// Judge the second answer for a suspect: `Some(notice)` to store it, `None` when it was
    /// failed (or was no suspect).
    fn second_answer(&mut self, uid: u32, body: &[u8], declared: Option<u64>) -> Option<String> {
        let len = body.len() as u64;
        let size = declared.map_or("none".to_string(), |s| s.to_string());
        match self.suspects.remove(&uid)? {
            Suspect::Length { hash, len: first } if hash == Hash::of(body) => Some(format!(
                "RFC822.SIZE says {size} bytes, but host1 serves {first}, the same bytes twice; \
                 stored as served"
            )),
            Suspect::Length { len: first, .. } => {
                self.fail(
                    uid,
                    format!(
                        "host1 served {first} bytes, then {len} other bytes when asked again \
                         (RFC822.SIZE {size}); not stored"
                    ),
                );
                None
            }
            Suspect::Chunks(why) if declared.is_none_or(|s| s == len) => Some(format!(
                "its chunks could not be used ({why}); fetched whole instead ({len} bytes)"
            )),
            Suspect::Chunks(why) => {
                self.fail(
                    uid,
                    format!(
                        "its chunks could not be used ({why}), and whole it has {len} bytes, \
                         not RFC822.SIZE {size}; not stored"
                    ),
                );
                None
            }
        }
    }

    fn store(
        &mut self,
        uid: u32,
        body: &[u8],
        flags: Vec<String>,
        internaldate: InternalDate,
        local: &mut Local,
    ) -> Result<()> {
        let path = &self.folder.path;
        let (hash, stored) = local
            .objects
            .write(body)
            .with_context(|| format!("{path}: UID {uid}: cannot write to the store"))?;
        let len = body.len() as u64;
        self.pending.rows.push((
            NewMessage {
                uidvalidity: self.uv,
                uid,
                hash,
                size: len,
                flags,
                internaldate,
                gmail: self.meta.get(&uid).and_then(gmail_ids),
            },
            HeaderFacts::parse(body),
            stored,
        ));
        self.settled.insert(uid);
        self.pending.bytes += len;
        if self.repairs.contains(&uid) {
            self.fr.repaired += 1;
        } else {
            self.fr.new += 1;
        }
        self.fr.bytes += len;
        self.progress.moved(self.slot, 1, 0);
        if self.pending.bytes >= self.opts.commit_bytes
            || self.pending.rows.len() >= self.opts.commit_messages
        {
            self.flush(local)?;
        }
        Ok(())
    }

    /// UIDs host1 sent more than once in one answer: neither copy can be trusted.
    fn repeated(&mut self, uids: &[u32], local: &mut Local) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let mut batch = local.index.batch()?;
        for &uid in uids {
            self.suspects.remove(&uid);
            if let Some(pos) = self.pending.rows.iter().position(|(m, ..)| m.uid == uid) {
                let (m, ..) = self.pending.rows.remove(pos);
                self.pending.bytes -= m.size;
                self.fr.new -= 1;
                self.fr.bytes -= m.size;
            } else if self.committed.remove(&uid) {
                batch.withdraw_message(self.folder.id, self.uv, uid)?;
                self.fr.new -= 1;
            }
            self.settled.remove(&uid);
            self.fail(
                uid,
                "host1 sent this UID more than once in one answer; no copy stored".to_string(),
            );
        }
        batch.commit()
    }

    /// `e` as the run's stop when it is the server's daily quota cutting off message bytes:
    /// what arrived is committed, the run ends cleanly. Gmail's `[OVERQUOTA] … bandwidth
    /// limits` always is. Its `BYE Session expired` is also what it says to a session that
    /// merely lasted long: the first is answered by a new connection (`e` is transient), and
    /// only a second before anything more came in, or one with the day's budget nearly spent,
    /// is the quota.
    fn server_quota(&mut self, e: anyhow::Error) -> anyhow::Error {
        if !is_server_quota(&e) {
            return e;
        }
        let path = &self.folder.path;
        if is_session_expired(&e) {
            let moved = self.moved();
            let again = self.carry.expired_at == Some(moved);
            if !again && !self.allowance.near_end() {
                self.carry.expired_at = Some(moved);
                crate::ui::info(&format!(
                    "{path}: {e:#}: Gmail also ends long sessions so; going on over a new \
                     connection (a second time at once is read as the daily quota)"
                ));
                return e;
            }
        }
        let said = if is_bandwidth_quota(&e) {
            " [OVERQUOTA]"
        } else {
            ""
        };
        crate::ui::warn(&format!(
            "{path}: {e:#}:{said} host1's daily download quota (Gmail suspends IMAP for the \
             account for up to a day once it is passed)"
        ));
        anyhow::Error::new(self.allowance.server_quota(now()))
    }

    /// What this folder's pull has brought in so far (messages and pieces of large ones): an
    /// expiry that finds it unchanged came again at once.
    fn moved(&self) -> u64 {
        self.fr.new + self.fr.repaired + self.fr.chunk_bytes
    }

    fn fail(&mut self, uid: u32, reason: String) {
        self.settled.insert(uid);
        self.failed.push((uid, reason));
    }

    fn flush(&mut self, local: &mut Local) -> Result<()> {
        let uids = flush(
            &mut self.pending,
            self.folder.id,
            self.allowance.account(),
            &mut local.index,
            &local.objects,
        )?;
        self.committed.extend(uids);
        Ok(())
    }
}

/// Commit the pending rows (objects made durable first); returns their UIDs.
fn flush(
    pending: &mut Pending,
    folder_id: i64,
    account: Account,
    index: &mut Index,
    objects: &Objects,
) -> Result<Vec<u32>> {
    if pending.rows.is_empty() {
        return Ok(Vec::new());
    }
    // Objects first: an index row must never name bytes a crash could lose.
    let mut batch = index.batch_after_sync(objects)?;
    for (m, facts, stored) in &pending.rows {
        batch.add_object(&m.hash, m.size, *stored, facts)?;
        batch.add_message(folder_id, m)?;
    }
    // The bytes counted against the daily budget with the messages they brought.
    batch.log_transfer(account, now(), pending.bytes)?;
    batch.commit()?;
    pending.bytes = 0;
    Ok(pending.rows.drain(..).map(|(m, ..)| m.uid).collect())
}

/// Gmail's ids of a message, when host1 sent them.
pub(super) fn gmail_ids(f: &Fetched) -> Option<GmailIds> {
    f.gm_msgid.map(|msgid| GmailIds {
        msgid,
        thrid: f.gm_thrid,
    })
}
