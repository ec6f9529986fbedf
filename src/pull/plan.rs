//! Pull's decisions, as pure functions of what the store recorded and what host1 answered:
//! whether a folder changed at all, which UIDs are new and which were expunged, which flags
//! changed, and the folder state to record. [`super::folder`] asks host1 and carries them out.

use std::collections::{BTreeMap, BTreeSet};

use crate::flags::same_flags;
use crate::imap::{MailboxStatus, Selected};
use crate::store::FolderState;

/// Which new messages a pull takes (`--maxage`, `--minage`, `--maxsize`, `--minsize`, with
/// imapsync's meaning): a staged migration copies part first. A folder from which some were
/// left out is recorded as not completely pulled, so the next pull compares UID lists and
/// takes the rest, and `push --delete2` leaves its mailbox alone meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageFilter {
    /// Only messages received (INTERNALDATE) less than this many days ago.
    pub max_age_days: Option<u32>,
    /// Only messages received more than this many days ago.
    pub min_age_days: Option<u32>,
    /// Leave out messages of this size or larger (bytes).
    pub max_size: Option<u64>,
    /// Leave out messages of this size or smaller (bytes).
    pub min_size: Option<u64>,
}

impl MessageFilter {
    pub fn is_empty(&self) -> bool {
        *self == MessageFilter::default()
    }

    /// Whether a message of `size` bytes received at `received` (Unix seconds) is taken at
    /// `now`. What host1 did not say is no reason to leave a message out.
    pub fn takes(&self, size: Option<u64>, received: Option<i64>, now: i64) -> bool {
        let days = |d: u32| i64::from(d) * 86_400;
        let young = |d| received.is_none_or(|r| r > now - days(d));
        let old = |d| received.is_none_or(|r| r <= now - days(d));
        self.max_age_days.is_none_or(young)
            && self.min_age_days.is_none_or(old)
            && self.max_size.is_none_or(|m| size.is_none_or(|s| s < m))
            && self.min_size.is_none_or(|m| size.is_none_or(|s| s > m))
    }
}

/// How to go about a folder after SELECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Exactly as the last pull left it (UIDNEXT, HIGHESTMODSEQ and the count agree): nothing
    /// to fetch.
    Unchanged,
    /// UIDVALIDITY changed: every UID is new; the old rows are expunged. Bodies are fetched
    /// again (the store keeps one copy of equal bytes): no message is attached to bytes host1 did
    /// not serve for it.
    Reindex,
    /// Known before: what is above the UIDNEXT of the last complete pull is new; a UID list is
    /// compared only when the counts do not add up.
    Incremental { from: u32 },
    /// Never completely pulled: compare the UID list.
    Full,
}

/// What SELECT says about a folder whose last recorded state is `old`, of which the store
/// holds `known` live messages under SELECT's UIDVALIDITY.
pub fn start(old: &FolderState, known: usize, sel: &Selected) -> Start {
    if old.uidvalidity.is_some_and(|v| v != sel.uidvalidity) {
        return Start::Reindex;
    }
    let Some(next) = old.uidnext else {
        return Start::Full;
    };
    if old.uidnext == sel.uidnext
        && sel.exists as usize == known
        && sel.highestmodseq.is_some()
        && old.highestmodseq == sel.highestmodseq
    {
        return Start::Unchanged;
    }
    Start::Incremental { from: next }
}

/// True when LIST-STATUS shows the folder exactly as the last pull left it (same UIDVALIDITY,
/// UIDNEXT and HIGHESTMODSEQ, and `live` messages in the store), so not even a SELECT is due.
pub fn unchanged_by_status(old: &FolderState, live: u64, st: &MailboxStatus) -> bool {
    let (Some(uv), Some(next), Some(modseq), Some(messages)) =
        (old.uidvalidity, old.uidnext, old.highestmodseq, st.messages)
    else {
        return false;
    };
    st.uidvalidity == Some(uv)
        && st.uidnext == Some(next)
        && st.highestmodseq == Some(modseq)
        && live == u64::from(messages)
}

/// The messages a pull of a folder is expected to fetch, from its LIST-STATUS MESSAGES and the
/// `live` messages the store holds under the same UIDVALIDITY (0 when it changed: all come
/// again). Exact unless messages were both expunged and added since the last pull.
pub fn expected_new(live: u64, st: &MailboxStatus) -> Option<u64> {
    st.messages.map(|m| u64::from(m).saturating_sub(live))
}

/// Whether known plus new messages account for every message host1 holds; when not, some
/// known ones were expunged (or new ones sit below the old UIDNEXT) and the UID list decides.
pub fn counts_add_up(known: usize, new: usize, exists: u32) -> bool {
    known + new == exists as usize
}

/// New and expunged UIDs from the full UID list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// On host1, not in the store (and not already described).
    pub new: Vec<u32>,
    /// In the store, no longer on host1.
    pub expunged: Vec<u32>,
}

/// Compare the store's live UIDs with host1's UID list; `described` are new UIDs whose
/// metadata is already in hand.
pub fn compare(
    known: &BTreeSet<u32>,
    on_server: &BTreeSet<u32>,
    described: &BTreeSet<u32>,
) -> Listing {
    Listing {
        new: on_server
            .iter()
            .filter(|u| !known.contains(u) && !described.contains(u))
            .copied()
            .collect(),
        expunged: known.difference(on_server).copied().collect(),
    }
}

/// How to learn flag changes of known messages: `None` not at all (HIGHESTMODSEQ unchanged),
/// `Some(Some(m))` those changed since modseq `m` (CONDSTORE), `Some(None)` every one.
pub fn flag_query(old: &FolderState, sel: &Selected, start: Start) -> Option<Option<u64>> {
    match (old.highestmodseq, sel.highestmodseq) {
        _ if start == Start::Reindex => Some(None),
        (Some(a), Some(b)) if a == b => None,
        (Some(a), Some(_)) => Some(Some(a)),
        _ => Some(None),
    }
}

/// The known messages whose flags host1 now reports otherwise: (UID, new flags).
pub fn flag_changes(
    known: &BTreeMap<u32, Vec<String>>,
    reported: impl IntoIterator<Item = (u32, Vec<String>)>,
) -> Vec<(u32, Vec<String>)> {
    reported
        .into_iter()
        .filter(|(uid, flags)| known.get(uid).is_some_and(|k| !same_flags(k, flags)))
        .collect()
}

/// The state to record at the end: SELECT's, except that an incomplete pull (something could
/// not be fetched) forgets UIDNEXT, so the next one compares UID lists instead of trusting
/// counts.
pub fn final_state(sel: &Selected, complete: bool) -> FolderState {
    FolderState {
        uidvalidity: Some(sel.uidvalidity),
        uidnext: if complete { sel.uidnext } else { None },
        highestmodseq: sel.highestmodseq,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_filter_means_what_imapsync_means() {
        let now = 100 * 86_400;
        let day = |d: i64| Some(now - d * 86_400);
        let f = MessageFilter {
            max_age_days: Some(30),
            ..MessageFilter::default()
        };
        assert!(f.takes(Some(1), day(29), now) && !f.takes(Some(1), day(31), now));
        assert!(
            f.takes(Some(1), None, now),
            "an unknown date is no reason to leave out"
        );
        let f = MessageFilter {
            min_age_days: Some(30),
            ..MessageFilter::default()
        };
        assert!(!f.takes(Some(1), day(29), now) && f.takes(Some(1), day(31), now));
        let f = MessageFilter {
            max_size: Some(1000),
            min_size: Some(10),
            ..MessageFilter::default()
        };
        assert!(f.takes(Some(999), None, now) && !f.takes(Some(1000), None, now));
        assert!(f.takes(Some(11), None, now) && !f.takes(Some(10), None, now));
        assert!(MessageFilter::default().is_empty() && !f.is_empty());
    }
    use proptest::prelude::*;

    fn sel(exists: u32, uv: u32, next: u32, modseq: Option<u64>) -> Selected {
        Selected {
            exists,
            uidvalidity: uv,
            uidnext: Some(next),
            highestmodseq: modseq,
            permanent_flags: Vec::new(),
        }
    }

    fn state(uv: u32, next: Option<u32>, modseq: Option<u64>) -> FolderState {
        FolderState {
            uidvalidity: Some(uv),
            uidnext: next,
            highestmodseq: modseq,
        }
    }

    #[test]
    fn a_folder_is_unchanged_only_when_uidnext_modseq_and_count_agree() {
        let old = state(7, Some(10), Some(50));
        assert_eq!(start(&old, 9, &sel(9, 7, 10, Some(50))), Start::Unchanged);
        assert_eq!(
            start(&old, 9, &sel(8, 7, 10, Some(50))),
            Start::Incremental { from: 10 }
        );
        assert_eq!(
            start(&old, 9, &sel(9, 7, 10, Some(51))),
            Start::Incremental { from: 10 }
        );
        // Without CONDSTORE a flag change is invisible to SELECT: never "unchanged".
        let old = state(7, Some(10), None);
        assert_eq!(
            start(&old, 9, &sel(9, 7, 10, None)),
            Start::Incremental { from: 10 }
        );
        assert_eq!(start(&old, 9, &sel(9, 8, 10, None)), Start::Reindex);
        assert_eq!(
            start(&state(7, None, None), 0, &sel(3, 7, 4, None)),
            Start::Full
        );
        assert_eq!(
            start(&FolderState::default(), 0, &sel(3, 7, 4, None)),
            Start::Full
        );
    }

    #[test]
    fn list_status_settles_a_folder_only_with_all_four_values_equal() {
        let old = state(7, Some(10), Some(50));
        let st = |m, uv, next, ms| MailboxStatus {
            messages: Some(m),
            uidvalidity: Some(uv),
            uidnext: Some(next),
            highestmodseq: ms,
        };
        assert!(unchanged_by_status(&old, 9, &st(9, 7, 10, Some(50))));
        assert!(!unchanged_by_status(&old, 8, &st(9, 7, 10, Some(50))));
        assert!(!unchanged_by_status(&old, 9, &st(9, 7, 10, None)));
        assert!(!unchanged_by_status(
            &state(7, None, Some(50)),
            9,
            &st(9, 7, 10, Some(50))
        ));
    }

    #[test]
    fn list_status_counts_what_the_store_lacks_as_expected_work() {
        let st = |m| MailboxStatus {
            messages: m,
            ..MailboxStatus::default()
        };
        assert_eq!(expected_new(0, &st(Some(120))), Some(120));
        assert_eq!(expected_new(100, &st(Some(120))), Some(20));
        // More in the store than on host1 (expunges): nothing to fetch, not an underflow.
        assert_eq!(expected_new(130, &st(Some(120))), Some(0));
        assert_eq!(expected_new(0, &st(None)), None);
    }

    #[test]
    fn the_flag_query_follows_highestmodseq() {
        let old = state(7, Some(10), Some(50));
        assert_eq!(
            flag_query(&old, &sel(9, 7, 10, Some(50)), Start::Unchanged),
            None
        );
        assert_eq!(
            flag_query(
                &old,
                &sel(9, 7, 10, Some(60)),
                Start::Incremental { from: 10 }
            ),
            Some(Some(50))
        );
        assert_eq!(
            flag_query(&old, &sel(9, 7, 10, Some(60)), Start::Reindex),
            Some(None)
        );
        assert_eq!(
            flag_query(&state(7, Some(10), None), &sel(9, 7, 10, None), Start::Full),
            Some(None)
        );
    }

    #[test]
    fn flags_compare_as_sets_without_recent_and_case() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(same_flags(
            &s(&["\\Seen", "a"]),
            &s(&["A", "\\SEEN", "\\Recent"])
        ));
        let known: BTreeMap<u32, Vec<String>> =
            [(1, s(&["\\Seen"])), (2, s(&[]))].into_iter().collect();
        let changes = flag_changes(
            &known,
            [(1, s(&["\\seen"])), (2, s(&["\\Flagged"])), (3, s(&["x"]))],
        );
        assert_eq!(changes, [(2, s(&["\\Flagged"]))]);
    }

    #[test]
    fn an_incomplete_pull_forgets_uidnext() {
        let s = sel(3, 7, 4, Some(9));
        assert_eq!(final_state(&s, true).uidnext, Some(4));
        assert_eq!(final_state(&s, false).uidnext, None);
        assert_eq!(final_state(&s, false).uidvalidity, Some(7));
    }

    proptest! {
        /// For any store and any UID list: a UID on host1 is never taken as expunged, a UID in
        /// the store is never fetched again, and every UID is exactly one of known-and-kept,
        /// new, or expunged.
        #[test]
        fn comparing_uid_lists_partitions_them(
            known in proptest::collection::btree_set(1u32..200, 0..60),
            server in proptest::collection::btree_set(1u32..200, 0..60),
        ) {
            let l = compare(&known, &server, &BTreeSet::new());
            for u in &l.expunged {
                prop_assert!(!server.contains(u));
                prop_assert!(known.contains(u));
            }
            for u in &l.new {
                prop_assert!(!known.contains(u));
                prop_assert!(server.contains(u));
            }
            let kept = known.intersection(&server).count();
            prop_assert_eq!(kept + l.new.len(), server.len());
            prop_assert_eq!(kept + l.expunged.len(), known.len());
        }

        /// Counts add up exactly when nothing known vanished, given new UIDs above the old
        /// UIDNEXT.
        #[test]
        fn counts_add_up_only_without_expunges(
            known in 0usize..100, new in 0usize..100, gone in 0usize..5,
        ) {
            let gone = gone.min(known);
            let exists = (known - gone + new) as u32;
            prop_assert_eq!(counts_add_up(known, new, exists), gone == 0);
        }
    }
}
