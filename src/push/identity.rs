//! The identity of a message that host2 holds but the push state does not explain (an earlier
//! tool's copy, or an APPEND whose reply was lost): its size plus four header facts. Two
//! messages with the same identity are treated as the same message; matching is count-aware, so
//! two identical store messages against one copy on host2 still leave one to append.
//!
//! Why these fields: size alone collides often; Message-ID alone is missing in drafts and sent
//! mail and is reused by some tools; together with Date, From, Subject and the exact size, a
//! false match needs two different messages with identical headers *and* byte length. Nothing is
//! ever added to a message to find it again.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use crate::store::HeaderFacts;

/// Size plus header facts, as compared by [`match_identities`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub size: u64,
    pub message_id: Option<String>,
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
}

impl Identity {
    /// The identity of a message of `size` bytes whose header gave `facts`.
    pub fn new(size: u64, facts: &HeaderFacts) -> Identity {
        Identity {
            size,
            message_id: facts.message_id.clone(),
            date: facts.date.clone(),
            from: facts.from.clone(),
            subject: facts.subject.clone(),
        }
    }
}

/// Pair store messages with host2 messages of equal identity, each used at most once, in the
/// given orders. Returns the pairs, the store keys left unpaired and the host2 UIDs left unpaired.
pub fn match_identities<K: Clone>(
    store: &[(K, Identity)],
    host: &[(u32, Identity)],
) -> (Vec<(K, u32)>, Vec<K>, Vec<u32>) {
    let mut available: HashMap<&Identity, VecDeque<u32>> = HashMap::new();
    for (uid, id) in host {
        available.entry(id).or_default().push_back(*uid);
    }
    let mut pairs = Vec::new();
    let mut unpaired = Vec::new();
    for (key, id) in store {
        match available.get_mut(id).and_then(VecDeque::pop_front) {
            Some(uid) => pairs.push((key.clone(), uid)),
            None => unpaired.push(key.clone()),
        }
    }
    let mut left: Vec<u32> = available.into_values().flatten().collect();
    left.sort_unstable();
    (pairs, unpaired, left)
}

/// Count-aware matching of equal values (used for content hashes).
pub fn match_equal<K: Clone, V: Eq + Hash>(
    wanted: &[(K, V)],
    have: &[(u32, V)],
) -> (Vec<(K, u32)>, Vec<K>) {
    let mut available: HashMap<&V, VecDeque<u32>> = HashMap::new();
    for (uid, v) in have {
        available.entry(v).or_default().push_back(*uid);
    }
    let mut pairs = Vec::new();
    let mut unpaired = Vec::new();
    for (key, v) in wanted {
        match available.get_mut(v).and_then(VecDeque::pop_front) {
            Some(uid) => pairs.push((key.clone(), uid)),
            None => unpaired.push(key.clone()),
        }
    }
    (pairs, unpaired)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(size: u64, mid: &str) -> Identity {
        Identity {
            size,
            message_id: Some(mid.into()),
            date: None,
            from: None,
            subject: None,
        }
    }

    #[test]
    fn matching_counts_duplicates() {
        let store = vec![(1, id(10, "a")), (2, id(10, "a")), (3, id(20, "b"))];
        let host = vec![(7, id(10, "a")), (8, id(21, "b")), (9, id(5, "z"))];
        let (pairs, unpaired, left) = match_identities(&store, &host);
        assert_eq!(pairs, vec![(1, 7)]);
        assert_eq!(unpaired, vec![2, 3]);
        assert_eq!(left, vec![8, 9]);
    }

    #[test]
    fn size_is_part_of_the_identity() {
        let (pairs, _, _) = match_identities(&[(1, id(10, "a"))], &[(1, id(11, "a"))]);
        assert!(pairs.is_empty());
    }

    #[test]
    fn equal_values_pair_once_each() {
        let (pairs, unpaired) = match_equal(&[("x", 1), ("y", 1), ("z", 2)], &[(5, 1), (6, 3)]);
        assert_eq!(pairs, vec![("x", 5)]);
        assert_eq!(unpaired, vec!["y", "z"]);
    }
}
