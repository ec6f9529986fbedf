//! Comparing a host2 mailbox with the store folders that go there, shared by push (which acts
//! on it) and check (which reports it):
//!
//! - [`targets`]: which host2 mailbox each store folder goes to;
//! - [`content`]: what a message is (its exact bytes, its text as a rewriting server keeps it);
//! - [`survey`]: the decisions, pure: present, found, doubles, missing, extras;
//! - [`examine`] (here): asks host2 what the survey needs, through a [`Mailbox`].

pub mod content;
pub mod survey;
pub mod targets;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::{bail, Result};

use crate::flags::is_flag;
use crate::folders::Selection;
use crate::imap::uidset::compact;
use crate::imap::{without_recent, Selected};
use crate::mailbox::Mailbox;
use crate::names::MailboxName;
use crate::provider::Provider;
use crate::store::{FolderRow, Store};
use crate::store::{Hash, HeaderFacts, Index, Intent, Mapping, Objects};
use content::Content;
use survey::{Explained, HostMsg, Settled, StoreMsg};
use targets::Target;

/// What the store recorded about one host2 mailbox.
#[derive(Default)]
pub struct Ledger {
    pub mappings: Vec<Mapping>,
    pub intents: Vec<Intent>,
}

impl Ledger {
    /// The mappings and intents of `mailbox` on `destination` (nothing for a destination the
    /// store never pushed to).
    pub fn read(index: &Index, destination: Option<i64>, mailbox: &MailboxName) -> Result<Ledger> {
        let Some(d) = destination else {
            return Ok(Ledger::default());
        };
        Ok(Ledger {
            mappings: index.mappings_to(d, mailbox)?,
            intents: index.intents_for(d, mailbox)?,
        })
    }
}

/// One target compared with host2.
pub struct Comparison {
    pub uidvalidity: u32,
    pub host: BTreeMap<u32, HostMsg>,
    pub store: Vec<StoreMsg>,
    pub explained: Explained,
    pub settled: Settled,
    /// Content of what was compared, for saying what host2 changed.
    pub host_content: BTreeMap<u32, Content>,
    pub store_content: HashMap<Hash, Content>,
    /// Every intent of the mailbox as read (live or expired).
    pub intents: Vec<Intent>,
}

impl Comparison {
    /// What host2 changed in the copy `uid` of store message `store` (`None`: exact).
    pub fn change(&self, store: usize, uid: u32) -> Option<String> {
        let original = self.store_content.get(&self.store[store].row.hash)?;
        let stored = self.host_content.get(&uid)?;
        (original.exact != stored.exact)
            .then(|| content::describe_change(&original.shape, &stored.shape))
    }
}

/// The flags host2 is given, and expected to hold, for a message with `flags`: the one rule
/// push and check share. All when PERMANENTFLAGS has `\*` or was not sent, else those it
/// lists (case-insensitively); flags that are not IMAP atoms never; nor a flag the provider
/// does not keep ([`Provider::keeps_flag`]: Gmail's `\Deleted`), which is neither sent nor
/// reported. Returns (kept, dropped: what host2 cannot hold, to report).
pub fn storable_flags(
    provider: Provider,
    flags: &[String],
    permanent: &[String],
) -> (Vec<String>, Vec<String>) {
    let all = permanent.is_empty() || permanent.iter().any(|p| p == "\\*");
    let (mut kept, mut dropped) = (Vec::new(), Vec::new());
    for f in without_recent(flags) {
        if !provider.keeps_flag(&f) {
            continue;
        }
        let allowed = all || permanent.iter().any(|p| p.eq_ignore_ascii_case(&f));
        if allowed && is_flag(&f) {
            kept.push(f);
        } else {
            dropped.push(f);
        }
    }
    (kept, dropped)
}

/// The store folders this run covers: selected, not gone.
pub fn store_folders(store: &Store, selection: &Selection) -> Result<Vec<FolderRow>> {
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

/// The live messages of the target's store folders, by folder then UID.
pub fn load_store(index: &Index, target: &Target) -> Result<Vec<StoreMsg>> {
    let mut out = Vec::new();
    for f in &target.folders {
        let Some(uv) = f.state.uidvalidity else {
            continue;
        };
        let folder: Arc<str> = Arc::from(f.path.as_str());
        out.extend(
            index
                .live_messages(f.id, uv)?
                .into_iter()
                .filter(|row| !target.elsewhere.contains(&row.hash))
                .map(|row| StoreMsg {
                    folder: Arc::clone(&folder),
                    folder_id: f.id,
                    row,
                }),
        );
    }
    Ok(out)
}

/// Connect to host2, read its namespace and folders, and plan where each of `folders` goes:
/// (connection, namespace, plan). The first step of push and of check.
pub fn plan_host2(
    index: &Index,
    folders: &[FolderRow],
    rules: &targets::MapRules,
    connector: &dyn crate::run::Connector,
    retry: &mut crate::run::Retry,
) -> Result<(Box<dyn Mailbox>, crate::names::Namespace, Vec<Target>)> {
    let mut conn = crate::run::connect(connector, retry)?;
    let (ns, listed) =
        crate::run::retrying(&mut conn, connector, retry, "listing folders", |m, _| {
            Ok((m.namespace()?, m.list()?))
        })?;
    let rules = targets::MapRules {
        provider: conn.provider(),
        ..rules.clone()
    };
    let mut plan = targets::plan(folders, &rules, &ns, &listed);
    if rules.gmail_labels == targets::GmailLabels::FirstFolder && rules.provider != Provider::Gmail
    {
        first_folders(index, &mut plan)?;
    }
    Ok((conn, ns, plan))
}

/// `--gmail-labels first-folder`: each message goes only to the first target holding it, in
/// the order INBOX, the other folders without a role (label folders) by path, the system
/// views (Sent, Drafts, Important, Starred), All Mail last; every other target leaves it out.
fn first_folders(index: &Index, plan: &mut [Target]) -> Result<()> {
    let rank = |t: &Target| {
        let role = t.folders.first().and_then(|f| f.role.as_deref());
        let inbox = t
            .folders
            .iter()
            .any(|f| f.path.eq_ignore_ascii_case("INBOX"));
        match role.map(str::to_ascii_lowercase).as_deref() {
            _ if inbox => 0,
            None | Some("\\junk") | Some("\\trash") => 1,
            Some("\\all") => 3,
            Some(_) => 2,
        }
    };
    let mut order: Vec<usize> = (0..plan.len()).collect();
    order.sort_by_key(|&i| (rank(&plan[i]), plan[i].path.clone()));
    let mut home: HashMap<Hash, usize> = HashMap::new();
    let mut held: Vec<Vec<Hash>> = vec![Vec::new(); plan.len()];
    for &i in &order {
        for msg in load_store(index, &plan[i])? {
            home.entry(msg.row.hash).or_insert(i);
            held[i].push(msg.row.hash);
        }
    }
    for (i, t) in plan.iter_mut().enumerate() {
        t.elsewhere = held[i]
            .iter()
            .filter(|h| home.get(h) != Some(&i))
            .copied()
            .collect();
    }
    Ok(())
}

/// UID, flags and size of every message of the selected mailbox (`exists` from SELECT).
pub fn list_host(conn: &mut dyn Mailbox, exists: u32) -> Result<BTreeMap<u32, HostMsg>> {
    let mut host = BTreeMap::new();
    if exists == 0 {
        return Ok(host);
    }
    conn.fetch_meta("1:*", None, &mut |f| {
        host.insert(
            f.uid,
            HostMsg {
                flags: without_recent(f.flags.as_deref().unwrap_or_default()),
                size: f.size,
            },
        );
        Ok(())
    })?;
    Ok(host)
}

/// Compare the selected host2 mailbox (`sel`) with the target's store messages: the recorded
/// mappings first; then, for what they leave, the bytes of the host2 messages the survey names
/// as candidates against the store's objects. `now` decides which intents still count.
pub fn examine(
    conn: &mut dyn Mailbox,
    index: &Index,
    objects: &Objects,
    target: &Target,
    sel: &Selected,
    ledger: Ledger,
    now: i64,
) -> Result<Comparison> {
    let host = list_host(conn, sel.exists)?;
    let store = load_store(index, target)?;
    let explained = survey::explain(&store, &host, ledger.mappings, sel.uidvalidity);
    let live = survey::live_intents(&ledger.intents, sel.uidvalidity, now);
    let mut host_content = BTreeMap::new();
    let mut store_content = HashMap::new();
    let open = !explained.unexplained.is_empty();
    if open && (!live.is_empty() || !explained.unmapped.is_empty()) {
        let store_facts = unmapped_facts(index, &store, &explained)?;
        let host_facts = if store_facts.is_empty() {
            BTreeMap::new()
        } else {
            header_facts(conn, &explained.unexplained)?
        };
        let facts: Vec<HeaderFacts> = store_facts.iter().map(|(_, f)| f.clone()).collect();
        let cands = survey::candidates(&explained, &live, &host_facts, &facts);
        if !cands.is_empty() {
            host_content = fetch_content(conn, &cands, &host)?;
            let wanted: BTreeSet<&HeaderFacts> = host_facts.values().collect::<BTreeSet<_>>();
            let mut hashes: BTreeMap<Hash, u64> = live
                .iter()
                .map(|i| (i.intent.hash, i.intent.size))
                .collect();
            hashes.extend(
                store_facts
                    .iter()
                    .filter(|(_, f)| wanted.contains(f))
                    .map(|(i, _)| (store[*i].row.hash, store[*i].row.size)),
            );
            store_content = read_content(objects, &hashes);
        }
    }
    let settled = survey::settle(
        &store,
        &explained,
        &live,
        &ledger.intents,
        &host_content,
        &store_content,
    );
    Ok(Comparison {
        uidvalidity: sel.uidvalidity,
        host,
        store,
        explained,
        settled,
        host_content,
        store_content,
        intents: ledger.intents,
    })
}

/// Header facts of the unmapped store messages: (index into the store, facts).
fn unmapped_facts(
    index: &Index,
    store: &[StoreMsg],
    ex: &Explained,
) -> Result<Vec<(usize, HeaderFacts)>> {
    let mut by_folder: HashMap<(i64, u32), HashMap<u32, (u64, HeaderFacts)>> = HashMap::new();
    let mut out = Vec::with_capacity(ex.unmapped.len());
    for &i in &ex.unmapped {
        let row = &store[i].row;
        let key = (row.folder_id, row.uidvalidity);
        if let std::collections::hash_map::Entry::Vacant(e) = by_folder.entry(key) {
            e.insert(index.live_facts(row.folder_id, row.uidvalidity)?);
        }
        let facts = by_folder[&key]
            .get(&row.uid)
            .map(|(_, f)| f.clone())
            .unwrap_or_default();
        out.push((i, facts));
    }
    Ok(out)
}

/// Header facts of host2's messages `uids`.
fn header_facts(
    conn: &mut dyn Mailbox,
    uids: &BTreeSet<u32>,
) -> Result<BTreeMap<u32, HeaderFacts>> {
    let list: Vec<u32> = uids.iter().copied().collect();
    let mut out = BTreeMap::new();
    conn.fetch_headers(&compact(&list), &mut |f| {
        if let Some(header) = &f.body {
            out.insert(f.uid, HeaderFacts::parse(header));
        }
        Ok(())
    })?;
    all_answered(uids, |u| out.contains_key(u), "its header")?;
    Ok(out)
}

/// Every one of `uids` (host2 just listed them) was answered, as `answered` says: a message
/// left out cannot be told from the store's, and taking it for "not there" would send the
/// store's copy again.
fn all_answered(uids: &BTreeSet<u32>, answered: impl Fn(&u32) -> bool, what: &str) -> Result<()> {
    let left: Vec<u32> = uids.iter().copied().filter(|u| !answered(u)).collect();
    match left.first() {
        None => Ok(()),
        Some(uid) => Err(crate::imap::error::protocol(format!(
            "host2 listed UID {uid} but did not send {what}{}; its messages cannot be compared \
             with the store's, so nothing is sent there",
            match left.len() {
                1 => String::new(),
                n => format!(" (nor for {} other UIDs)", n - 1),
            }
        ))),
    }
}

/// The content of host2's messages `uids`, fetched whole one at a time into a hash.
fn fetch_content(
    conn: &mut dyn Mailbox,
    uids: &BTreeSet<u32>,
    host: &BTreeMap<u32, HostMsg>,
) -> Result<BTreeMap<u32, Content>> {
    let list: Vec<u32> = uids.iter().copied().collect();
    let sizes: Vec<u64> = list
        .iter()
        .map(|u| host.get(u).and_then(|h| h.size).unwrap_or(0))
        .collect();
    let mut out = BTreeMap::new();
    let repeated = conn.fetch_bodies(&list, &sizes, 8 << 20, 2, &mut |f| {
        if let Some(body) = &f.body {
            out.insert(f.uid, Content::of(body));
        }
        Ok(())
    })?;
    // A UID sent twice cannot be trusted to be either copy: compared with nothing.
    for uid in repeated {
        out.remove(&uid);
    }
    all_answered(uids, |u| out.contains_key(u), "its bytes once")?;
    Ok(out)
}

/// The content of the store's objects `hashes` (with their sizes). An object that cannot be
/// read is left out: its messages are not recognised on host2, and push, which reads it to
/// send it, lists them.
fn read_content(objects: &Objects, hashes: &BTreeMap<Hash, u64>) -> HashMap<Hash, Content> {
    let mut out = HashMap::new();
    for (h, &size) in hashes {
        match objects.read(h, size) {
            Ok(bytes) => {
                out.insert(*h, Content::of(&bytes));
            }
            Err(e) => crate::ui::detail(&format!("not compared with host2: {e:#}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storable_flags_follow_permanentflags() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let flags = s(&["\\Seen", "$Label1", "\\Recent", "odd]"]);
        let (k, d) = storable_flags(Provider::Generic, &flags, &s(&["\\Seen", "\\*"]));
        assert_eq!((k, d), (s(&["\\Seen", "$Label1"]), s(&["odd]"])));
        let (k, d) = storable_flags(Provider::Generic, &flags, &s(&["\\Seen", "\\Deleted"]));
        assert_eq!((k, d), (s(&["\\Seen"]), s(&["$Label1", "odd]"])));
        // Gmail's \Deleted is neither given nor expected, nor reported as lost.
        let deleted = s(&["\\Deleted", "\\Seen"]);
        let (k, d) = storable_flags(Provider::Gmail, &deleted, &[]);
        assert_eq!((k, d), (s(&["\\Seen"]), s(&[])));
        let (k, _) = storable_flags(Provider::Generic, &deleted, &[]);
        assert_eq!(k, deleted);
    }
}
