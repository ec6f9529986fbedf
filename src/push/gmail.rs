//! Gmail as host2: one APPEND per message, then labels. Every Gmail folder other than All
//! Mail, Spam and Trash is a label view, so a message that the store holds in several folders
//! is appended once (into the first of them, its *home*) and given the other folders' labels
//! with `UID STORE … +X-GM-LABELS.SILENT`; its UID in each view is then read back through
//! X-GM-MSGID and recorded like any other mapping. Rules and sources: docs/providers.md.
//!
//! Targets are pushed in the order of [`order`] and a message's home is the first target that
//! holds it, so a target waiting for the homes of its messages ([`Plan::wait_for`]) only ever
//! waits for targets a worker already took: the pool cannot deadlock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Condvar, Mutex};

use anyhow::Result;

use super::folder::Pusher;
use crate::compare::survey::StoreMsg;
use crate::compare::targets::Target;
use crate::compare::{load_store, Comparison};
use crate::imap::uidset::compact;
use crate::imap::{without_recent, SearchKey, Selected};
use crate::names::MailboxName;
use crate::provider::{gmail_holds_bodies, gmail_label, Provider};
use crate::run::Failure;
use crate::store::{Hash, Index, Mapping};

/// Where each message goes first, and which targets are done.
pub(crate) struct Plan {
    /// The target (index into the run's targets) each message's bytes are appended to.
    home: HashMap<Hash, usize>,
    finished: Mutex<Vec<bool>>,
    changed: Condvar,
}

/// The targets in the order Gmail needs: All Mail, Spam and Trash first, then the label views,
/// each group in its own order (parents before children).
pub(crate) fn order(targets: Vec<Target>) -> Vec<Target> {
    let (mut first, rest): (Vec<Target>, Vec<Target>) = targets
        .into_iter()
        .partition(|t| gmail_holds_bodies(t.role.as_deref()));
    first.extend(rest);
    first
}

/// On Gmail: `targets` put in [`order`] and each message's home; elsewhere `None`.
pub(crate) fn plan_for(
    provider: Provider,
    index: &Index,
    targets: &mut Vec<Target>,
) -> Result<Option<Plan>> {
    if provider != Provider::Gmail {
        return Ok(None);
    }
    *targets = order(std::mem::take(targets));
    Plan::new(index, targets).map(Some)
}

impl Plan {
    /// The home of every store message of `targets` (already in [`order`]).
    pub(crate) fn new(index: &Index, targets: &[Target]) -> Result<Plan> {
        let mut home = HashMap::new();
        for (i, t) in targets.iter().enumerate() {
            for msg in load_store(index, t)? {
                home.entry(msg.row.hash).or_insert(i);
            }
        }
        Ok(Plan {
            home,
            finished: Mutex::new(vec![false; targets.len()]),
            changed: Condvar::new(),
        })
    }

    /// The target a message with these bytes is appended to.
    pub(crate) fn home(&self, hash: &Hash) -> Option<usize> {
        self.home.get(hash).copied()
    }

    /// Target `i` is done (pushed, failed or given up): the ones waiting for it go on.
    pub(crate) fn finish(&self, i: usize) {
        let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = f.get_mut(i) {
            *slot = true;
        }
        self.changed.notify_all();
    }

    /// The targets `go` leaves out (not pushed) are done: nobody waits for them.
    pub(crate) fn left_out(&self, go: &[bool]) {
        for (i, _) in go.iter().enumerate().filter(|(_, go)| !**go) {
            self.finish(i);
        }
    }

    /// Wait until every target of `homes` is done.
    pub(crate) fn wait_for(&self, homes: &BTreeSet<usize>) {
        let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
        while homes.iter().any(|&h| !f.get(h).copied().unwrap_or(true)) {
            f = self.changed.wait(f).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl<'s> Pusher<'_, '_> {
    /// Take out of `missing` the messages this target does not append: those host2 already
    /// holds in another mailbox, and those whose home is another target (they get a label once
    /// it is done). Spam and Trash are not label views: everything there is appended.
    pub(super) fn not_here_first(
        &mut self,
        plan: &Plan,
        dest: i64,
        cmp: &Comparison,
        missing: &mut Vec<&'s StoreMsg>,
    ) -> Result<Vec<&'s StoreMsg>> {
        self.leave_twins(cmp, missing);
        let role = self.target.role.as_deref();
        if gmail_holds_bodies(role) && !is_all_mail(role) {
            return Ok(Vec::new());
        }
        let mut later = Vec::new();
        let mut own = Vec::new();
        for msg in missing.drain(..) {
            let elsewhere = plan.home(&msg.row.hash).is_some_and(|h| h != self.slot)
                || self
                    .index
                    .copy_elsewhere(dest, &msg.row.hash, &self.target.mailbox)?
                    .is_some();
            if elsewhere {
                later.push(msg);
            } else {
                own.push(msg);
            }
        }
        *missing = own;
        Ok(later)
    }

    /// Gmail keeps one message for identical bytes in one folder: a store message whose bytes
    /// this mailbox already holds (or that another missing message here has) is not sent; it
    /// is listed as a warning and counts as present.
    fn leave_twins(&mut self, cmp: &Comparison, missing: &mut Vec<&'s StoreMsg>) {
        let mut held: HashMap<Hash, String> = cmp
            .explained
            .present
            .iter()
            .map(|(i, _)| {
                let m = &cmp.store[*i];
                (m.row.hash, format!("{} UID {}", m.folder, m.row.uid))
            })
            .collect();
        missing.retain(|msg| match held.get(&msg.row.hash) {
            Some(first) => {
                let why = format!("the same bytes as {first}: Gmail keeps one message for both");
                let warning = Failure::message(&msg.folder, msg.row.uid, why);
                self.state.altered.insert(msg.key(), warning);
                self.state.present.insert(msg.key());
                false
            }
            None => {
                let first = format!("{} UID {}", msg.folder, msg.row.uid);
                held.insert(msg.row.hash, first);
                true
            }
        });
    }

    /// Once their homes are done, give `later` this target's label where host2 holds them, and
    /// record their UIDs in this view (read back by X-GM-MSGID). Returns the messages host2
    /// holds nowhere (to append here after all) and this mailbox selected anew.
    pub(super) fn label_elsewhere(
        &mut self,
        dest: i64,
        later: Vec<&'s StoreMsg>,
    ) -> Result<(Vec<&'s StoreMsg>, Selected)> {
        let ctx = self.ctx;
        if let Some(plan) = &ctx.gmail {
            let homes: BTreeSet<usize> = later
                .iter()
                .filter_map(|m| plan.home(&m.row.hash))
                .filter(|&h| h != self.slot)
                .collect();
            plan.wait_for(&homes);
        }
        let label = gmail_label(self.target.role.as_deref(), self.target.mailbox.as_bytes());
        let mut rest = Vec::new();
        let mut by_mailbox: BTreeMap<MailboxName, Vec<(&'s StoreMsg, u32, u32)>> = BTreeMap::new();
        for msg in later {
            match self
                .index
                .copy_elsewhere(dest, &msg.row.hash, &self.target.mailbox)?
            {
                Some((mailbox, uv, uid)) => {
                    by_mailbox.entry(mailbox).or_default().push((msg, uv, uid))
                }
                None => rest.push(msg),
            }
        }
        let mut wanted: HashMap<u64, Vec<&'s StoreMsg>> = HashMap::new();
        for (mailbox, copies) in by_mailbox {
            let ids = self.gmail_ids(&mailbox, &copies, label.is_none())?;
            let mut uids = Vec::new();
            for (msg, _, uid) in copies {
                match ids.get(&uid) {
                    Some(&id) => {
                        wanted.entry(id).or_default().push(msg);
                        uids.push(uid);
                    }
                    None => rest.push(msg),
                }
            }
            if let Some(label) = &label {
                self.conn.add_labels(&uids, std::slice::from_ref(label))?;
            }
        }
        let sel = self.conn.select(&self.target.mailbox, false)?;
        self.map_labelled(dest, &sel, wanted)?;
        Ok((rest, sel))
    }

    /// X-GM-MSGID of the copies (store message, UIDVALIDITY, UID) in `mailbox` that are still
    /// there, by UID.
    fn gmail_ids(
        &mut self,
        mailbox: &MailboxName,
        copies: &[(&StoreMsg, u32, u32)],
        readonly: bool,
    ) -> Result<HashMap<u32, u64>> {
        let s = self.conn.select(mailbox, readonly)?;
        let uids: Vec<u32> = copies
            .iter()
            .filter(|(_, uv, _)| *uv == s.uidvalidity)
            .map(|(_, _, uid)| *uid)
            .collect();
        let mut ids = HashMap::new();
        if !uids.is_empty() {
            self.conn.fetch_meta(&compact(&uids), None, &mut |f| {
                if let Some(id) = f.gm_msgid {
                    ids.insert(f.uid, id);
                }
                Ok(())
            })?;
        }
        Ok(ids)
    }

    /// Record where the `wanted` messages (by X-GM-MSGID) show in the selected view; those
    /// that do not show are failures.
    fn map_labelled(
        &mut self,
        dest: i64,
        sel: &Selected,
        mut wanted: HashMap<u64, Vec<&'s StoreMsg>>,
    ) -> Result<()> {
        let mut mappings = Vec::new();
        if !wanted.is_empty() && sel.exists > 0 {
            let mailbox = self.target.mailbox.clone();
            self.conn.fetch_meta("1:*", None, &mut |f| {
                let msgs = f.gm_msgid.and_then(|id| wanted.remove(&id));
                for msg in msgs.unwrap_or_default() {
                    mappings.push(Mapping {
                        folder_id: msg.folder_id,
                        uidvalidity: msg.row.uidvalidity,
                        uid: msg.row.uid,
                        mailbox: mailbox.clone(),
                        dest_uidvalidity: sel.uidvalidity,
                        dest_uid: f.uid,
                        flags: without_recent(f.flags.as_deref().unwrap_or_default()),
                        change: 0,
                        found: true,
                        altered: None,
                        held: false,
                    });
                }
                Ok(())
            })?;
        }
        for msg in wanted.into_values().flatten() {
            let why = "Gmail does not show it under this label after UID STORE +X-GM-LABELS";
            self.fail(msg, why.to_string());
        }
        for m in &mappings {
            self.state.labelled.insert(m.key());
            self.state.present.insert(m.key());
        }
        if !mappings.is_empty() {
            self.index.record_push(dest, &[], &mappings, &[])?;
        }
        Ok(())
    }
}

impl Pusher<'_, '_> {
    /// The UID, in this (selected) target, of the message Gmail holds under Message-ID `id`
    /// (without brackets), found with `X-GM-RAW "rfc822msgid:<id>"` here, else in All Mail and
    /// then given this target's label; the target is selected again after. `None` when there is
    /// none, or the id cannot be searched for.
    pub(super) fn gmail_copy(&mut self, id: Option<&str>) -> Result<Option<u32>> {
        // Gmail's search syntax has no escapes: an id with a quote or a backslash is not asked.
        let Some(id) = id.filter(|id| {
            !id.is_empty()
                && id.len() < 1000
                && id.bytes().all(|b| (0x21..0x7f).contains(&b))
                && !id.contains(['"', '\\'])
        }) else {
            return Ok(None);
        };
        let key = SearchKey::parse(&format!("X-GM-RAW \"rfc822msgid:<{id}>\""))?;
        if let Some(&uid) = self.conn.search(&key)?.first() {
            return Ok(Some(uid));
        }
        let label = gmail_label(self.target.role.as_deref(), self.target.mailbox.as_bytes());
        let all = self.conn.list()?.into_iter().find(|mb| {
            mb.special_use
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case("\\All"))
        });
        let (Some(label), Some(all)) = (label, all) else {
            return Ok(None);
        };
        self.conn.select(&all.raw_name, false)?;
        let found = self.conn.search(&key)?.first().copied();
        if let Some(uid) = found {
            self.conn.add_labels(&[uid], std::slice::from_ref(&label))?;
        }
        self.conn.select(&self.target.mailbox, false)?;
        if found.is_none() {
            return Ok(None);
        }
        Ok(self.conn.search(&key)?.first().copied())
    }
}

/// Whether the role is Gmail's All Mail (every message not in Spam or Trash shows there).
fn is_all_mail(role: Option<&str>) -> bool {
    role.is_some_and(|r| r.eq_ignore_ascii_case("\\All"))
}
