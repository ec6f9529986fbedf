//! Every record of a bundle is checked before `apply` changes anything, and every record
//! `bundle create` writes is checked the same way first, so a bundle that can be written can be
//! applied: a record must describe rows a store can hold ([`crate::store::rules`]) and name
//! things as the format says (hex ids and hashes, one-character separators, system-flag roles).

use super::format::{ExpungeFacts, FolderFacts, Header, MessageFacts, MAX_OBJECT};
use crate::flags::is_flag;
use crate::store::rules::{flag_problem, folder_path_problem, message_problem};
use crate::store::Hash;
use crate::ui::printable;

/// Why the header cannot be taken.
pub fn header_problem(h: &Header) -> Option<String> {
    if h.format != "imapferry-bundle" {
        return Some(format!(
            "it is not an imapferry bundle (format \"{}\")",
            printable(&h.format)
        ));
    }
    let base_ok = h.base.as_ref().is_none_or(|b| {
        is_id(&b.bundle_id) && b.seq >= 1 && b.seq < h.seq && (0..=h.change).contains(&b.change)
    });
    let account_ok = h.account.as_ref().is_none_or(|a| {
        [&a.host, &a.user]
            .iter()
            .all(|s| !s.is_empty() && !s.chars().any(char::is_control))
    });
    if !is_id(&h.bundle_id) || !is_id(&h.source_store) {
        Some("its bundle or store id is not 32 lowercase hex digits".into())
    } else if h.seq < 1 || h.change < 0 || !base_ok {
        Some(format!(
            "its numbers do not fit together (seq {}, change {}, base {:?})",
            h.seq,
            h.change,
            h.base.as_ref().map(|b| (b.seq, b.change))
        ))
    } else if !account_ok {
        Some("its account has an empty host or user, or control characters in them".into())
    } else {
        None
    }
}

/// Why a folder record cannot be taken.
pub fn folder_problem(f: &FolderFacts) -> Option<String> {
    if let Some(p) = folder_path_problem(&f.path) {
        return Some(p.into());
    }
    let separator_ok = f.separator.as_deref().is_none_or(|s| {
        let mut c = s.chars();
        matches!((c.next(), c.next()), (Some(ch), None) if !ch.is_control())
    });
    let name = f.raw_name.as_bytes();
    if name.is_empty() || name.iter().any(|b| matches!(b, b'\0' | b'\r' | b'\n')) {
        Some("its server name is empty or holds NUL, CR or LF".into())
    } else if !separator_ok {
        Some(format!(
            "separator \"{}\" is not one character",
            printable(f.separator.as_deref().unwrap_or_default())
        ))
    } else if f
        .role
        .as_deref()
        .is_some_and(|r| !r.starts_with('\\') || !is_flag(r))
    {
        Some("its role is not a special-use attribute such as \\Sent".into())
    } else if f.uidvalidity == Some(0) {
        Some("UIDVALIDITY 0 (UIDVALIDITY is a non-zero number)".into())
    } else {
        None
    }
}

/// Why a message record cannot be taken (its size against its object is checked apart).
pub fn message_record_problem(m: &MessageFacts) -> Option<String> {
    if let Some(p) = folder_path_problem(&m.folder) {
        return Some(p.into());
    }
    if let Some(p) = message_problem(m.uidvalidity, m.uid, &m.internaldate) {
        return Some(p);
    }
    if let Some(p) = m.flags.iter().find_map(|f| flag_problem(f)) {
        return Some(p);
    }
    if m.hash.parse::<Hash>().is_err() {
        return Some(format!(
            "hash \"{}\" is not 64 lowercase hex digits",
            printable(&m.hash)
        ));
    }
    if m.size > MAX_OBJECT {
        return Some(format!(
            "a message of {} bytes; a bundle carries messages of at most {MAX_OBJECT} bytes \
             (2 GiB)",
            m.size
        ));
    }
    None
}

/// Why an expunge record cannot be taken.
pub fn expunge_problem(x: &ExpungeFacts) -> Option<String> {
    if let Some(p) = folder_path_problem(&x.folder) {
        Some(p.into())
    } else if x.uidvalidity == 0 || x.uid == 0 {
        Some("UIDVALIDITY or UID 0".into())
    } else {
        None
    }
}

/// `folder UID n (UIDVALIDITY v)`, for messages about a message or expunge record.
pub fn describe_message(folder: &str, uidvalidity: u32, uid: u32) -> String {
    format!(
        "{} UID {uid} (UIDVALIDITY {uidvalidity})",
        printable(folder)
    )
}

/// 32 lowercase hex digits (bundle and store ids).
fn is_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> MessageFacts {
        MessageFacts {
            folder: "INBOX".into(),
            uidvalidity: 7,
            uid: 1,
            hash: Hash::of(b"x").to_hex(),
            size: 1,
            flags: vec!["\\Seen".into()],
            internaldate: "05-Mar-2021 14:03:07 +0100".into(),
        }
    }

    #[test]
    fn message_records() {
        assert_eq!(message_record_problem(&message()), None);
        type Spoil = fn(&mut MessageFacts);
        let cases: [(&str, Spoil); 6] = [
            ("level", |m| m.folder = "a//b".into()),
            ("UID 0", |m| m.uid = 0),
            ("UIDVALIDITY 0", |m| m.uidvalidity = 0),
            ("INTERNALDATE", |m| m.internaldate = "soon".into()),
            ("hash", |m| m.hash = "AB".into()),
            ("at most", |m| m.size = MAX_OBJECT + 1),
        ];
        for (want, change) in cases {
            let mut m = message();
            change(&mut m);
            let got = message_record_problem(&m).unwrap_or_default();
            assert!(got.contains(want), "{want}: {got}");
        }
    }

    #[test]
    fn folder_records() {
        let ok = FolderFacts {
            path: "Archive/2024".into(),
            raw_name: "Archive.2024".into(),
            separator: Some(".".into()),
            role: Some("\\Archive".into()),
            subscribed: true,
            uidvalidity: Some(3),
            uidnext: Some(9),
            highestmodseq: None,
            last_pull: None,
            gone: false,
        };
        assert_eq!(folder_problem(&ok), None);
        for bad in [
            FolderFacts {
                path: "/x".into(),
                ..ok.clone()
            },
            FolderFacts {
                raw_name: "a\r\nb".into(),
                ..ok.clone()
            },
            FolderFacts {
                separator: Some("::".into()),
                ..ok.clone()
            },
            FolderFacts {
                role: Some("Sent".into()),
                ..ok.clone()
            },
            FolderFacts {
                uidvalidity: Some(0),
                ..ok.clone()
            },
        ] {
            assert!(folder_problem(&bad).is_some(), "{bad:?}");
        }
    }
}
