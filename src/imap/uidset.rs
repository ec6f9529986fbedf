//! Compact UID sets for commands (`1:5,7,9:12`).

/// Format `uids` as a compact IMAP sequence set. Order and duplicates in the input do not
/// matter; an empty input gives an empty string (callers must not send that).
pub fn compact(uids: &[u32]) -> String {
    let mut v = uids.to_vec();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end.wrapping_add(1) {
            end = v[i + 1];
            i += 1;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// Whether `uid` is in the sequence set `set` as sent in a command (`1:5,7,9:*`; `*` is taken
/// as unbounded). A set that does not parse contains nothing.
pub fn contains(set: &str, uid: u32) -> bool {
    let num = |s: &str| -> Option<u32> {
        if s == "*" {
            Some(u32::MAX)
        } else {
            s.parse().ok()
        }
    };
    set.split(',').any(|part| match part.split_once(':') {
        Some((a, b)) => match (num(a), num(b)) {
            (Some(a), Some(b)) => (a.min(b)..=a.max(b)).contains(&uid),
            _ => false,
        },
        None => num(part) == Some(uid),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn membership_follows_the_set() {
        assert!(contains("1:5,7,9:*", 3));
        assert!(contains("1:5,7,9:*", 7));
        assert!(!contains("1:5,7,9:*", 8));
        assert!(contains("1:5,7,9:*", 4_000_000_000));
        assert!(contains("5:1", 2));
        assert!(!contains("x", 1));
    }

    #[test]
    fn compaction() {
        assert_eq!(compact(&[]), "");
        assert_eq!(compact(&[7]), "7");
        assert_eq!(compact(&[1, 2, 3, 4, 5, 7, 9, 10, 11, 12]), "1:5,7,9:12");
        assert_eq!(compact(&[12, 9, 11, 10, 7, 7, 1]), "1,7,9:12");
        assert_eq!(
            compact(&[u32::MAX - 1, u32::MAX]),
            format!("{}:{}", u32::MAX - 1, u32::MAX)
        );
    }
}
