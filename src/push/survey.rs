//! What a host2 mailbox holds compared with the store folders that go there: which store
//! messages are present (by the push state first, then by [`Identity`]), which are missing, and
//! which host2 messages match no live store message. Shared by `push` and `check`.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use anyhow::Result;

use super::identity::{match_identities, Identity};
use super::targets::Target;
use crate::imap::atom::is_flag;
use crate::imap::uidset::compact;
use crate::imap::{without_recent, Client};
use crate::store::{HeaderFacts, Index, Mapping, MessageRow};

/// One live store message of a target. Its [`Identity`] is read only when host2 holds messages
/// the push state does not explain: a 10,000-message folder going to a new mailbox never needs
/// it, and holding it for every message of every connection cost megabytes.
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
#[derive(Debug, Clone, Default)]
pub struct HostMsg {
    /// Flags without `\Recent`.
    pub flags: Vec<String>,
    pub size: Option<u64>,
}

/// The comparison of one target.
#[derive(Debug, Default)]
pub struct Survey {
    pub uidvalidity: u32,
    pub host: BTreeMap<u32, HostMsg>,
    pub store: Vec<StoreMsg>,
    /// Store messages present on host2: (index into `store`, where). Mappings recognised in this
    /// survey have `found == true` and `change == 0`, and are also listed in `found_now`.
    pub present: Vec<(usize, Mapping)>,
    /// Indexes into `present` of mappings recognised by identity in this survey (not yet
    /// recorded).
    pub found_now: Vec<usize>,
    /// Indexes into `store` of messages host2 lacks, in store order.
    pub missing: Vec<usize>,
    /// host2 UIDs that match no live store message.
    pub extras: Vec<u32>,
    /// Recorded mappings that no longer hold (host2 UID gone, UIDVALIDITY changed).
    pub stale: Vec<(i64, u32, u32)>,
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
                .map(|row| StoreMsg {
                    folder: Arc::clone(&folder),
                    folder_id: f.id,
                    row,
                }),
        );
    }
    Ok(out)
}

/// The identities of `store[i]` for each `i` of `wanted`, in that order.
fn identities(
    index: &Index,
    store: &[StoreMsg],
    wanted: &[usize],
) -> Result<Vec<(usize, Identity)>> {
    let mut facts: BTreeMap<(i64, u32), _> = BTreeMap::new();
    let mut out = Vec::with_capacity(wanted.len());
    for &i in wanted {
        let row = &store[i].row;
        let key = (row.folder_id, row.uidvalidity);
        if let Entry::Vacant(e) = facts.entry(key) {
            e.insert(index.live_facts(row.folder_id, row.uidvalidity)?);
        }
        let identity = match facts[&key].get(&row.uid) {
            Some((size, facts)) => Identity::new(*size, facts),
            None => Identity::new(row.size, &HeaderFacts::default()),
        };
        out.push((i, identity));
    }
    Ok(out)
}

/// UID, flags and size of every message of the selected mailbox (`exists` from SELECT).
pub fn list_host(client: &mut Client, exists: u32) -> Result<BTreeMap<u32, HostMsg>> {
    let mut host = BTreeMap::new();
    if exists == 0 {
        return Ok(host);
    }
    client.uid_fetch_meta("1:*", None, &mut |f| {
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

/// Compare the selected host2 mailbox (UIDVALIDITY `uidvalidity`, listing `host`) with the
/// target's store messages, using `mappings` (the push state for this mailbox) first and the
/// identity of the rest. Reads headers of unexplained host2 messages only when some store
/// message is still unaccounted for.
pub fn survey(
    client: &mut Client,
    index: &Index,
    target: &Target,
    uidvalidity: u32,
    host: BTreeMap<u32, HostMsg>,
    mappings: Vec<Mapping>,
) -> Result<Survey> {
    let store = load_store(index, target)?;
    let mut sv = Survey {
        uidvalidity,
        host,
        ..Survey::default()
    };
    let by_key: BTreeMap<(i64, u32, u32), usize> = store
        .iter()
        .enumerate()
        .map(|(i, m)| (m.key(), i))
        .collect();
    let mut claimed: HashSet<u32> = HashSet::new();
    let mut mapped: HashSet<usize> = HashSet::new();
    for m in mappings {
        if m.dest_uidvalidity != uidvalidity || !sv.host.contains_key(&m.dest_uid) {
            sv.stale.push(m.key());
            continue;
        }
        let Some(&i) = by_key.get(&m.key()) else {
            continue; // an expunged store message: its host2 copy is unexplained
        };
        if mapped.contains(&i) || !claimed.insert(m.dest_uid) {
            continue;
        }
        mapped.insert(i);
        sv.present.push((i, m));
    }
    let unmapped: Vec<usize> = (0..store.len()).filter(|i| !mapped.contains(i)).collect();
    let unexplained: Vec<u32> = sv
        .host
        .keys()
        .filter(|u| !claimed.contains(u))
        .copied()
        .collect();
    if unmapped.is_empty() || unexplained.is_empty() {
        sv.missing = unmapped;
        sv.extras = unexplained;
    } else {
        let mut host_ids: Vec<(u32, Identity)> = Vec::new();
        client.uid_fetch_headers(&compact(&unexplained), &mut |f| {
            let size = f
                .size
                .or_else(|| sv.host.get(&f.uid).and_then(|h| h.size))
                .unwrap_or(0);
            if let Some(header) = &f.body {
                host_ids.push((f.uid, Identity::new(size, &HeaderFacts::parse(header))));
            }
            Ok(())
        })?;
        host_ids.sort_by_key(|(u, _)| *u);
        let seen: BTreeSet<u32> = host_ids.iter().map(|(u, _)| *u).collect();
        let wanted = identities(index, &store, &unmapped)?;
        let (pairs, missing, mut extras) = match_identities(&wanted, &host_ids);
        // Messages whose header could not be read are not ours to judge as matching.
        extras.extend(unexplained.iter().filter(|u| !seen.contains(u)));
        extras.sort_unstable();
        for (i, dest_uid) in pairs {
            let m = &store[i];
            sv.found_now.push(sv.present.len());
            sv.present.push((
                i,
                Mapping {
                    folder_id: m.folder_id,
                    uidvalidity: m.row.uidvalidity,
                    uid: m.row.uid,
                    mailbox: target.mailbox.clone(),
                    dest_uidvalidity: uidvalidity,
                    dest_uid,
                    flags: sv
                        .host
                        .get(&dest_uid)
                        .map(|h| h.flags.clone())
                        .unwrap_or_default(),
                    change: 0,
                    found: true,
                },
            ));
        }
        let mut missing = missing;
        missing.sort_unstable();
        sv.missing = missing;
        sv.extras = extras;
    }
    sv.store = store;
    Ok(sv)
}

/// The flags host2 can keep for good: all when PERMANENTFLAGS has `\*` or was not sent, else
/// those it lists (case-insensitively). Returns (kept, dropped).
pub fn storable_flags(flags: &[String], permanent: &[String]) -> (Vec<String>, Vec<String>) {
    let all = permanent.is_empty() || permanent.iter().any(|p| p == "\\*");
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    for f in without_recent(flags) {
        if all || permanent.iter().any(|p| p.eq_ignore_ascii_case(&f)) || !is_flag(&f) {
            if is_flag(&f) {
                kept.push(f);
            } else {
                dropped.push(f);
            }
        } else {
            dropped.push(f);
        }
    }
    (kept, dropped)
}

/// Flags compared as sets, ASCII case-insensitively (servers may change the case of system
/// flags).
pub fn same_flags(a: &[String], b: &[String]) -> bool {
    let set = |v: &[String]| -> BTreeSet<String> {
        v.iter()
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .map(|f| f.to_ascii_lowercase())
            .collect()
    };
    set(a) == set(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn storable_flags_follow_permanentflags() {
        let flags = s(&["\\Seen", "$Label1", "\\Recent", "odd]"]);
        let (k, d) = storable_flags(&flags, &s(&["\\Seen", "\\*"]));
        assert_eq!((k, d), (s(&["\\Seen", "$Label1"]), s(&["odd]"])));
        let (k, d) = storable_flags(&flags, &s(&["\\Seen", "\\Deleted"]));
        assert_eq!((k, d), (s(&["\\Seen"]), s(&["$Label1", "odd]"])));
        assert!(same_flags(
            &s(&["\\Seen", "a"]),
            &s(&["A", "\\SEEN", "\\Recent"])
        ));
    }
}
