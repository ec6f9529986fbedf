//! Which store messages a host2 mailbox holds, decided as pure functions of what the store
//! recorded and what host2 answered; push acts on the result, check reports it.
//!
//! 1. [`explain`]: the recorded mappings (store message → host2 UID) that still hold explain
//!    their host2 messages; the rest of the store is *unmapped*, the rest of host2
//!    *unexplained*.
//! 2. [`candidates`]: which unexplained host2 messages must have their bytes compared: those
//!    at or above the UID bound of an APPEND intent left by an interrupted push (they may be its
//!    copy, landed late), and those whose header facts equal an unmapped store message's.
//! 3. [`settle`]: a host2 message is the store's message only when their text is the same
//!    ([`super::content`]): exactly (`exact`) or as host2 rewrote it (`altered`). A copy that
//!    matches an intent is ours; when its store message is already on host2 it is a *double*
//!    our pushes made, the only kind of message push ever deletes on its own. Nothing is
//!    concluded from headers alone.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use super::content::Content;
use crate::store::{HeaderFacts, Intent, Mapping, MessageRow};

/// How long an intent with no copy on host2 is kept: a copy landing later than this after its
/// APPEND was sent is not expected (and would be an extra, not a double).
pub const INTENT_LIFETIME_SECS: i64 = 24 * 3600;

/// One live store message of a target.
#[derive(Debug, Clone)]
pub struct StoreMsg {
    /// Store folder path (shared by the folder's messages).
    pub folder: Arc<str>,
    pub folder_id: i64,
    pub row: MessageRow,
}

impl StoreMsg {
    /// `(folder_id, uidvalidity, uid)`.
    pub fn key(&self) -> (i64, u32, u32) {
        (self.folder_id, self.row.uidvalidity, self.row.uid)
    }
}

/// One message host2 holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostMsg {
    /// Flags without `\Recent`.
    pub flags: Vec<String>,
    pub size: Option<u64>,
}

/// Step 1.
#[derive(Debug, Default)]
pub struct Explained {
    /// Store messages present by a mapping that holds: (index into the store, mapping).
    pub present: Vec<(usize, Mapping)>,
    /// Mappings that no longer hold (host2 UID gone, or another UIDVALIDITY).
    pub stale: Vec<(i64, u32, u32)>,
    /// Indexes of store messages no mapping explains.
    pub unmapped: Vec<usize>,
    /// host2 UIDs no mapping explains.
    pub unexplained: BTreeSet<u32>,
}

/// Explain host2's messages by the recorded mappings (valid only under `uidvalidity` and while
/// host2 still holds their UID; each host2 UID explains one store message at most).
pub fn explain(
    store: &[StoreMsg],
    host: &BTreeMap<u32, HostMsg>,
    mappings: Vec<Mapping>,
    uidvalidity: u32,
) -> Explained {
    let by_key: HashMap<(i64, u32, u32), usize> = store
        .iter()
        .enumerate()
        .map(|(i, m)| (m.key(), i))
        .collect();
    let mut out = Explained::default();
    let mut claimed: BTreeSet<u32> = BTreeSet::new();
    // host2 UIDs Gmail holds for a store message as well as for their own (`Mapping::held`).
    let mut shared: BTreeSet<u32> = BTreeSet::new();
    let mut mapped: BTreeSet<usize> = BTreeSet::new();
    for m in mappings {
        if m.dest_uidvalidity != uidvalidity || !host.contains_key(&m.dest_uid) {
            out.stale.push(m.key());
            continue;
        }
        // An expunged store message: its host2 copy is unexplained.
        let Some(&i) = by_key.get(&m.key()) else {
            continue;
        };
        if m.held && !mapped.contains(&i) {
            shared.insert(m.dest_uid);
            mapped.insert(i);
            out.present.push((i, m));
            continue;
        }
        if mapped.contains(&i) || !claimed.insert(m.dest_uid) {
            continue;
        }
        mapped.insert(i);
        out.present.push((i, m));
    }
    out.unmapped = (0..store.len()).filter(|i| !mapped.contains(i)).collect();
    out.unexplained = host
        .keys()
        .filter(|u| !claimed.contains(u) && !shared.contains(u))
        .copied()
        .collect();
    out
}

/// Intents that can still explain a copy on host2: same UIDVALIDITY, not expired at `now`.
pub fn live_intents(intents: &[Intent], uidvalidity: u32, now: i64) -> Vec<&Intent> {
    intents
        .iter()
        .filter(|i| i.intent.dest_uidvalidity == uidvalidity)
        .filter(|i| now - i.created_at <= INTENT_LIFETIME_SECS)
        .collect()
}

/// Step 2: the unexplained host2 UIDs whose bytes must be compared. `host_facts` are the
/// header facts of unexplained host2 messages, `store_facts` those of the unmapped store
/// messages (only needed when both sides have some).
pub fn candidates(
    ex: &Explained,
    intents: &[&Intent],
    host_facts: &BTreeMap<u32, HeaderFacts>,
    store_facts: &[HeaderFacts],
) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    if let Some(lower) = intents.iter().map(|i| i.intent.dest_uidnext).min() {
        out.extend(ex.unexplained.range(lower..).copied());
    }
    let wanted: BTreeSet<&HeaderFacts> = store_facts.iter().collect();
    out.extend(
        host_facts
            .iter()
            .filter(|(uid, f)| ex.unexplained.contains(uid) && wanted.contains(f))
            .map(|(uid, _)| *uid),
    );
    out
}

/// How a store message was found on host2 in this survey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// An interrupted push's copy (matched to its intent).
    Recovered,
    /// Already there (another tool, another copy of the store): matched by its text.
    Recognised,
}

/// One store message found on host2 by its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Match {
    /// Index into the store.
    pub store: usize,
    pub uid: u32,
    pub how: Found,
    /// host2 holds other bytes with the same text (it rewrote the message).
    pub altered: bool,
}

/// Step 3.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Settled {
    pub found: Vec<Match>,
    /// host2 UIDs that are second copies our own pushes made: safe to remove.
    pub doubles: Vec<u32>,
    /// Intents settled (a copy found, or expired): their rows go.
    pub resolved: Vec<i64>,
    /// Store messages host2 lacks (indexes, in store order).
    pub missing: Vec<usize>,
    /// host2 UIDs that are no store message's.
    pub extras: Vec<u32>,
}

/// Step 3: settle the unexplained with their bytes. `host` gives the content of the compared
/// host2 UIDs, `store` the content of store objects by exact hash (for the unmapped messages and
/// the intents' messages).
pub fn settle(
    store_msgs: &[StoreMsg],
    ex: &Explained,
    intents: &[&Intent],
    all_intents: &[Intent],
    host: &BTreeMap<u32, Content>,
    store: &HashMap<crate::store::Hash, Content>,
) -> Settled {
    let mut out = Settled::default();
    let mut free: BTreeSet<u32> = ex.unexplained.iter().copied().collect();
    let mut present: BTreeSet<usize> = ex.present.iter().map(|(i, _)| *i).collect();
    let by_key: HashMap<(i64, u32, u32), usize> = store_msgs
        .iter()
        .enumerate()
        .map(|(i, m)| (m.key(), i))
        .collect();
    let same = |uid: u32, hash: &crate::store::Hash| -> Option<bool> {
        let (h, s) = (host.get(&uid)?, store.get(hash)?);
        (h.text == s.text).then_some(h.exact != s.exact)
    };
    // Intents first: a copy of ours, found by its bytes above the intent's UID bound.
    for it in intents {
        let i = &it.intent;
        let uid = free
            .range(i.dest_uidnext..)
            .copied()
            .find(|&u| same(u, &i.hash).is_some());
        let Some(uid) = uid else { continue };
        free.remove(&uid);
        out.resolved.push(it.id);
        match by_key.get(&(i.folder_id, i.uidvalidity, i.uid)) {
            Some(&s) if present.contains(&s) => out.doubles.push(uid),
            Some(&s) => {
                present.insert(s);
                let altered = same(uid, &i.hash).unwrap_or(false);
                out.found.push(Match {
                    store: s,
                    uid,
                    how: Found::Recovered,
                    altered,
                });
            }
            // Its store message was expunged since: the copy is host2's like any other.
            None => {
                free.insert(uid);
            }
        }
    }
    // Expired intents go without a match.
    let live: BTreeSet<i64> = intents.iter().map(|i| i.id).collect();
    out.resolved.extend(
        all_intents
            .iter()
            .map(|i| i.id)
            .filter(|id| !live.contains(id)),
    );
    recognise(
        store_msgs,
        ex,
        &mut present,
        &mut free,
        host,
        store,
        &mut out,
    );
    out.missing = ex
        .unmapped
        .iter()
        .copied()
        .filter(|i| !present.contains(i))
        .collect();
    out.extras = free.into_iter().collect();
    out.doubles.sort_unstable();
    out
}

/// The rest of the unmapped store messages against the rest of the unexplained host2 messages,
/// by their bytes: exact copies first, then copies host2 rewrote; each host2 message serves one
/// store message at most, so two equal store messages need two copies.
fn recognise(
    store_msgs: &[StoreMsg],
    ex: &Explained,
    present: &mut BTreeSet<usize>,
    free: &mut BTreeSet<u32>,
    host: &BTreeMap<u32, Content>,
    store: &HashMap<crate::store::Hash, Content>,
    out: &mut Settled,
) {
    for exact_pass in [true, false] {
        let mut by_key: HashMap<crate::store::Hash, VecDeque<u32>> = HashMap::new();
        for &uid in free.iter() {
            if let Some(c) = host.get(&uid) {
                let key = if exact_pass { c.exact } else { c.text };
                by_key.entry(key).or_default().push_back(uid);
            }
        }
        for &i in &ex.unmapped {
            if present.contains(&i) {
                continue;
            }
            let Some(c) = store.get(&store_msgs[i].row.hash) else {
                continue;
            };
            let key = if exact_pass { c.exact } else { c.text };
            let Some(uid) = by_key.get_mut(&key).and_then(VecDeque::pop_front) else {
                continue;
            };
            free.remove(&uid);
            present.insert(i);
            out.found.push(Match {
                store: i,
                uid,
                how: Found::Recognised,
                altered: !exact_pass,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::MailboxName;
    use crate::store::{Hash, NewIntent};
    use proptest::prelude::*;

    fn msg(uid: u32, hash: Hash) -> StoreMsg {
        StoreMsg {
            folder: Arc::from("INBOX"),
            folder_id: 1,
            row: MessageRow {
                folder_id: 1,
                uidvalidity: 7,
                uid,
                hash,
                size: 10,
                flags: Vec::new(),
                internaldate: "01-Jan-2025 00:00:00 +0000".into(),
                first_seen: 0,
                expunged_at: None,
                change: 1,
            },
        }
    }

    fn mapping(uid: u32, dest_uid: u32) -> Mapping {
        Mapping {
            folder_id: 1,
            uidvalidity: 7,
            uid,
            mailbox: MailboxName::from("INBOX"),
            dest_uidvalidity: 9,
            dest_uid,
            flags: Vec::new(),
            change: 1,
            found: false,
            altered: None,
            held: false,
        }
    }

    fn intent(id: i64, uid: u32, hash: Hash, dest_uidnext: u32, created_at: i64) -> Intent {
        Intent {
            id,
            intent: NewIntent {
                folder_id: 1,
                uidvalidity: 7,
                uid,
                hash,
                size: 10,
                mailbox: MailboxName::from("INBOX"),
                dest_uidvalidity: 9,
                dest_uidnext,
            },
            created_at,
        }
    }

    fn text(n: u8) -> (Vec<u8>, Vec<u8>) {
        let crlf = format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes();
        let lf = format!("Subject: {n}\n\nbody {n}\n").into_bytes();
        (crlf, lf)
    }

    /// A late copy of an interrupted APPEND whose message was appended again meanwhile is a
    /// double, and the only thing deleted; an exact copy without an intent is recognised; a
    /// rewritten copy is recognised as altered; a look-alike is not taken for the message.
    #[test]
    fn late_copies_are_doubles_and_only_bytes_decide() {
        let (a, a_lf) = text(1);
        let (b, _) = text(2);
        let (c, c_lf) = text(3);
        let look_alike = b"Subject: 4\r\n\r\nbody 4, other\r\n".to_vec();
        let d = b"Subject: 4\r\n\r\nbody 4\r\n".to_vec();
        let store = vec![
            msg(1, Hash::of(&a)),
            msg(2, Hash::of(&b)),
            msg(3, Hash::of(&c)),
            msg(4, Hash::of(&d)),
        ];
        let host: BTreeMap<u32, HostMsg> = (10..=14).map(|u| (u, HostMsg::default())).collect();
        // Store 1 was appended again as 10; 13 is the late copy of its interrupted APPEND.
        let ex = explain(&store, &host, vec![mapping(1, 10)], 9);
        let intents = vec![intent(5, 1, Hash::of(&a), 12, 100)];
        let live = live_intents(&intents, 9, 200);
        let host_content: BTreeMap<u32, Content> = [
            (11, Content::of(&b)),
            (12, Content::of(&c_lf)),
            (13, Content::of(&a_lf)),
            (14, Content::of(&look_alike)),
        ]
        .into_iter()
        .collect();
        let store_content: HashMap<Hash, Content> = [&a, &b, &c, &d]
            .iter()
            .map(|m| (Hash::of(m), Content::of(m)))
            .collect();
        let s = settle(&store, &ex, &live, &intents, &host_content, &store_content);
        assert_eq!(s.doubles, [13]);
        assert_eq!(s.resolved, [5]);
        assert_eq!(s.missing, [3], "the look-alike is not store message 4");
        assert_eq!(s.extras, [14]);
        let found: Vec<(usize, u32, bool)> = s
            .found
            .iter()
            .map(|m| (m.store, m.uid, m.altered))
            .collect();
        assert_eq!(found, [(1, 11, false), (2, 12, true)]);
    }

    #[test]
    fn an_expired_intent_is_dropped_and_explains_nothing() {
        let (a, _) = text(1);
        let store = vec![msg(1, Hash::of(&a))];
        let host: BTreeMap<u32, HostMsg> = [(10, HostMsg::default())].into_iter().collect();
        let ex = explain(&store, &host, Vec::new(), 9);
        let intents = vec![intent(5, 1, Hash::of(&a), 1, 0)];
        let live = live_intents(&intents, 9, INTENT_LIFETIME_SECS + 1);
        assert!(live.is_empty());
        let s = settle(
            &store,
            &ex,
            &live,
            &intents,
            &BTreeMap::new(),
            &HashMap::new(),
        );
        assert_eq!(s.resolved, [5]);
        assert_eq!(
            (s.missing.as_slice(), s.extras.as_slice()),
            (&[0][..], &[10][..])
        );
    }

    proptest! {
        /// For any store, host2 mailbox, mappings and intents: a store message is either present
        /// or missing, never both; no host2 UID serves two store messages; a double is never a
        /// UID a store message is mapped or matched to; only intent matches become doubles.
        #[test]
        fn the_survey_never_doubles_nor_deletes_what_the_store_holds(
            store_texts in proptest::collection::vec(0u8..6, 0..12),
            host_texts in proptest::collection::vec((0u8..8, any::<bool>()), 0..16),
            maps in proptest::collection::vec((0usize..12, 0usize..16), 0..8),
            intents_at in proptest::collection::vec((0usize..12, 0u32..20), 0..6),
        ) {
            let body = |n: u8| format!("Subject: {n}\r\n\r\nbody {n}\r\n").into_bytes();
            let store: Vec<StoreMsg> = store_texts
                .iter()
                .enumerate()
                .map(|(i, &n)| msg(i as u32 + 1, Hash::of(&body(n))))
                .collect();
            let host: BTreeMap<u32, HostMsg> =
                (0..host_texts.len() as u32).map(|u| (u + 1, HostMsg::default())).collect();
            let host_content: BTreeMap<u32, Content> = host_texts
                .iter()
                .enumerate()
                .map(|(u, &(n, lf))| {
                    let b = body(n);
                    let b = if lf { String::from_utf8(b).unwrap().replace("\r\n", "\n").into_bytes() } else { b };
                    (u as u32 + 1, Content::of(&b))
                })
                .collect();
            // One mapping per store message at most, as the `pushed` primary key ensures.
            let mut seen = BTreeSet::new();
            let mappings: Vec<Mapping> = maps
                .iter()
                .filter(|(s, h)| *s < store.len() && *h < host.len() && seen.insert(*s))
                .map(|&(s, h)| mapping(s as u32 + 1, h as u32 + 1))
                .collect();
            let mapped_uids: BTreeSet<u32> = mappings.iter().map(|m| m.dest_uid).collect();
            let intents: Vec<Intent> = intents_at
                .iter()
                .enumerate()
                .filter(|(_, (s, _))| *s < store.len())
                .map(|(k, &(s, lower))| intent(k as i64, s as u32 + 1, store[s].row.hash, lower, 0))
                .collect();
            let store_content: HashMap<Hash, Content> =
                (0u8..6).map(|n| (Hash::of(&body(n)), Content::of(&body(n)))).collect();
            let ex = explain(&store, &host, mappings, 9);
            let live = live_intents(&intents, 9, 0);
            let s = settle(&store, &ex, &live, &intents, &host_content, &store_content);

            let mut present: BTreeSet<usize> = ex.present.iter().map(|(i, _)| *i).collect();
            let mut used: BTreeSet<u32> = ex.present.iter().map(|(_, m)| m.dest_uid).collect();
            for m in &s.found {
                prop_assert!(present.insert(m.store), "store message found twice");
                prop_assert!(used.insert(m.uid), "host2 UID used twice");
            }
            for i in &s.missing {
                prop_assert!(!present.contains(i));
            }
            prop_assert_eq!(present.len() + s.missing.len(), store.len());
            for d in &s.doubles {
                prop_assert!(!used.contains(d), "a double is a UID the store is on");
                prop_assert!(!mapped_uids.contains(d));
                prop_assert!(!s.extras.contains(d));
                // Every double is a copy of an intent's message, at or above its bound.
                prop_assert!(intents.iter().any(|i| *d >= i.intent.dest_uidnext
                    && host_content[d].text == store_content[&i.intent.hash].text));
            }
            // A missing message never has an unexplained exact or rewritten copy left over.
            for i in &s.missing {
                let t = store_content[&store[*i].row.hash].text;
                prop_assert!(!s.extras.iter().any(|u| host_content[u].text == t));
            }
        }
    }
}
