//! Maildir++ conventions shared by `export` and `import`, as Dovecot (and mbsync's Maildir++
//! layout) read them:
//!
//! - INBOX is the root (`cur/`, `new/`, `tmp/`); folder `A/B` is the directory `.A.B` (with a
//!   `maildirfolder` file), each component in modified UTF-7 (Dovecot's default on disk). A `.`
//!   inside a component, which would read as a level separator, is written `&AC4-` (its UTF-16
//!   in modified UTF-7's base64) and read back as `.`.
//! - Flags are the letters after `:2,` in the file name: `D` \Draft, `F` \Flagged, `R`
//!   \Answered, `S` \Seen, `T` \Deleted; keywords are the letters `a`–`z`, mapped to names by the
//!   folder's `dovecot-keywords` file (`<index> <keyword>` per line, index 0 = `a`).

use anyhow::Result;

use crate::flags::is_keyword;
use crate::names::utf7;
use crate::ui::printable;

/// System flags and their info letters, in letter order.
pub const FLAG_LETTERS: [(char, &str); 5] = [
    ('D', "\\Draft"),
    ('F', "\\Flagged"),
    ('R', "\\Answered"),
    ('S', "\\Seen"),
    ('T', "\\Deleted"),
];

/// Dovecot allows 26 keywords per Maildir (`a`–`z`).
pub const MAX_KEYWORDS: usize = 26;

/// The directory name (relative to the Maildir++ root) of store folder `path`; empty for INBOX.
pub fn folder_dir(path: &str) -> String {
    if path == "INBOX" {
        return String::new();
    }
    let mut out = String::new();
    for comp in path.split('/') {
        out.push('.');
        out.push_str(&utf7::encode(comp).replace('.', "&AC4-"));
    }
    out
}

/// The store folder path of a Maildir++ subdirectory name such as `.Archive.2024` (`None` when
/// the name does not start with `.`, has an empty level, or a level that does not decode or
/// decodes to a `/` or NUL, which would change the folder's levels).
pub fn folder_path(dir_name: &str) -> Option<String> {
    let rest = dir_name.strip_prefix('.')?;
    if rest.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for comp in rest.split('.') {
        let part = decode_component(comp).ok()?;
        if part.is_empty() || part.contains(['/', '\0']) {
            return None;
        }
        parts.push(part);
    }
    Some(parts.join("/"))
}

/// Modified UTF-7 with our `&AC4-` for `.` (which a strict decoder may refuse as non-canonical).
fn decode_component(comp: &str) -> Result<String> {
    let pieces: Vec<&str> = comp.split("&AC4-").collect();
    let decoded: Result<Vec<String>> = pieces.iter().map(|p| utf7::decode(p)).collect();
    Ok(decoded?.join("."))
}

/// The info letters (`DFRST` and keyword letters, sorted) for `flags`, given the folder's
/// keyword list (extended with new keywords while there is room). Flags that cannot be
/// represented are returned separately.
pub fn info_letters(flags: &[String], keywords: &mut Vec<String>) -> (String, Vec<String>) {
    let mut letters = Vec::new();
    let mut dropped = Vec::new();
    for f in flags {
        if let Some((c, _)) = FLAG_LETTERS
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(f))
        {
            letters.push(*c);
        } else if f.starts_with('\\') {
            dropped.push(f.clone());
        } else if let Some(i) = keywords.iter().position(|k| k == f) {
            letters.push((b'a' + i as u8) as char);
        } else if keywords.len() < MAX_KEYWORDS {
            keywords.push(f.clone());
            letters.push((b'a' + (keywords.len() - 1) as u8) as char);
        } else {
            dropped.push(f.clone());
        }
    }
    letters.sort_unstable();
    letters.dedup();
    (letters.into_iter().collect(), dropped)
}

/// The flags of a Maildir file name (`…:2,<letters>`), keywords resolved through `keywords`
/// (letters without a name are ignored).
pub fn flags_of(file_name: &str, keywords: &[String]) -> Vec<String> {
    let Some((_, info)) = file_name.rsplit_once(":2,") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in info.chars() {
        if let Some((_, name)) = FLAG_LETTERS.iter().find(|(l, _)| *l == c) {
            out.push(name.to_string());
        } else if c.is_ascii_lowercase() {
            match keywords.get(usize::from(c as u8 - b'a')) {
                Some(k) if !k.is_empty() => out.push(k.clone()),
                _ => {}
            }
        }
    }
    out
}

/// The text of a `dovecot-keywords` file for `keywords` (index 0 = letter `a`).
pub fn keywords_file(keywords: &[String]) -> String {
    keywords
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{i} {k}\n"))
        .collect()
}

/// Parse a `dovecot-keywords` file into a list indexed by letter (`a` = 0; gaps are empty),
/// and the problems of the lines it skipped (a bad line or index, a name that is not an IMAP
/// keyword): one bad line costs only its keyword.
pub fn parse_keywords_file(text: &str) -> (Vec<String>, Vec<String>) {
    let mut out: Vec<String> = Vec::new();
    let mut problems = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((idx, name)) = line.split_once(' ') else {
            problems.push(format!("line {}: expected `<index> <keyword>`", n + 1));
            continue;
        };
        let idx: usize = match idx.parse() {
            Ok(i) if i < MAX_KEYWORDS => i,
            _ => {
                problems.push(format!(
                    "line {}: bad keyword index \"{}\"",
                    n + 1,
                    printable(idx)
                ));
                continue;
            }
        };
        let name = name.trim();
        if !is_keyword(name) {
            problems.push(format!(
                "line {}: \"{}\" is not an IMAP keyword",
                n + 1,
                printable(name)
            ));
            continue;
        }
        if out.len() <= idx {
            out.resize(idx + 1, String::new());
        }
        out[idx] = name.to_string();
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn folder_names_round_trip() {
        for (path, dir) in [
            ("INBOX", ""),
            ("Archive/2024", ".Archive.2024"),
            ("Entwürfe", ".Entw&APw-rfe"),
            ("A & B", ".A &- B"),
            ("v1.2/x", ".v1&AC4-2.x"),
            ("日本語", ".&ZeVnLIqe-"),
        ] {
            assert_eq!(folder_dir(path), dir, "{path}");
            if !dir.is_empty() {
                assert_eq!(folder_path(dir).as_deref(), Some(path), "{dir}");
            }
        }
        assert_eq!(folder_path("cur"), None);
        assert_eq!(folder_path(".a..b"), None);
        assert_eq!(folder_path(".&bad"), None);
        assert_eq!(folder_path(".a&AC8-b"), None, "a / inside a level");
        assert_eq!(folder_path(".a&AAA-b"), None, "a NUL");
    }

    #[test]
    fn flags_round_trip() {
        let mut kw = Vec::new();
        let flags = s(&["\\Seen", "$Forwarded", "\\Answered", "Work", "\\Recentish"]);
        let (letters, dropped) = info_letters(&flags, &mut kw);
        assert_eq!(letters, "RSab");
        assert_eq!(dropped, s(&["\\Recentish"]));
        assert_eq!(kw, s(&["$Forwarded", "Work"]));
        let text = keywords_file(&kw);
        assert_eq!(text, "0 $Forwarded\n1 Work\n");
        let (back, problems) = parse_keywords_file(&text);
        assert!(problems.is_empty());
        let mut got = flags_of(&format!("1.x.host,S=5:2,{letters}"), &back);
        got.sort();
        assert_eq!(got, s(&["$Forwarded", "Work", "\\Answered", "\\Seen"]));
        assert!(flags_of("1.x.host", &back).is_empty());
        let (kw, problems) =
            parse_keywords_file("x y\n0 good\n1 two words\n2 bad(\n30 far\n3 $ok\n");
        assert_eq!(kw, s(&["good", "", "", "$ok"]));
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert_eq!(flags_of("1:2,Sabcd", &kw), s(&["\\Seen", "good", "$ok"]));
    }
}
