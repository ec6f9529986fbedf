//! What a store row must look like to be taken in: the rules `bundle apply` enforces on every
//! record before it changes anything, `bundle create` on every record it writes (so it never
//! writes a bundle that cannot be applied), `import` on the folders it makes, and `verify` on
//! the rows a store already holds (one damaged by an older bundle, say).

use crate::flags::is_flag;
use crate::mailtime::InternalDate;

/// Why `path` cannot be a store folder path: empty, a NUL, a leading or trailing `/`, or an
/// empty level (`a//b`). Levels are separated by `/`; anything else (spaces, UTF-8, even control
/// characters, which are escaped wherever they are printed) is a name a server may have.
pub fn folder_path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        Some("an empty folder path")
    } else if path.contains('\0') {
        Some("a NUL in a folder path")
    } else if path.starts_with('/') || path.ends_with('/') {
        Some("a folder path starting or ending with /")
    } else if path.contains("//") {
        Some("an empty level (//) in a folder path")
    } else {
        None
    }
}

/// Why a message row with these facts cannot be in a store: UIDVALIDITY or UID 0, or an
/// INTERNALDATE that is not an RFC 3501 date-time. (Flags are the bundle's business: a server
/// may send a keyword that is no IMAP atom, such as Gmail's `OIB-Seen-[Gmail]/All`, and pull
/// keeps it; see [`flag_problem`].)
pub fn message_problem(uidvalidity: u32, uid: u32, internaldate: &str) -> Option<String> {
    if uidvalidity == 0 {
        return Some("UIDVALIDITY 0 (UIDVALIDITY is a non-zero number)".into());
    }
    if uid == 0 {
        return Some("UID 0 (UIDs start at 1)".into());
    }
    if InternalDate::parse(internaldate).is_none() {
        return Some(format!(
            "INTERNALDATE \"{}\" is not an IMAP date-time (DD-Mon-YYYY HH:MM:SS +HHMM)",
            crate::text::printable(internaldate)
        ));
    }
    None
}

/// Why `flag` cannot travel in a bundle: it is not an IMAP flag (an atom, optionally after
/// `\`), so no command could carry it (push leaves such flags out too).
pub fn flag_problem(flag: &str) -> Option<String> {
    (!is_flag(flag)).then(|| {
        format!(
            "flag \"{}\" is not an IMAP flag (an atom, optionally after \\)",
            crate::text::printable(flag)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_paths() {
        for ok in [
            "INBOX",
            "Archive/2024",
            "Entwürfe",
            "a b/c",
            "..",
            "\u{1b}[31m",
        ] {
            assert_eq!(folder_path_problem(ok), None, "{ok:?}");
        }
        for bad in ["", "/x", "x/", "a//b", "/", "a\0b"] {
            assert!(folder_path_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn messages() {
        let date = "05-Mar-2021 14:03:07 +0100";
        assert_eq!(message_problem(7, 1, date), None);
        assert!(message_problem(0, 1, date)
            .unwrap()
            .contains("UIDVALIDITY 0"));
        assert!(message_problem(7, 0, date).unwrap().contains("UID 0"));
        assert!(message_problem(7, 1, "yesterday")
            .unwrap()
            .contains("INTERNALDATE"));
        assert_eq!(flag_problem("$Work"), None);
        assert!(flag_problem("two words").unwrap().contains("flag"));
    }
}
