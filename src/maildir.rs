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

use anyhow::{bail, Result};

use crate::imap::utf7;

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
/// the name does not start with `.` or does not decode).
pub fn folder_path(dir_name: &str) -> Option<String> {
    let rest = dir_name.strip_prefix('.')?;
    if rest.is_empty() {
        return None;
    }
    let mut parts = Vec::new();
    for comp in rest.split('.') {
        if comp.is_empty() {
            return None;
        }
        parts.push(decode_component(comp).ok()?);
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
            if let Some(k) = keywords.get(usize::from(c as u8 - b'a')) {
                out.push(k.clone());
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

/// Parse a `dovecot-keywords` file into a list indexed by letter (`a` = 0); gaps are empty.
pub fn parse_keywords_file(text: &str) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let Some((idx, name)) = line.split_once(' ') else {
            bail!("line {}: expected `<index> <keyword>`", n + 1);
        };
        let idx: usize = match idx.parse() {
            Ok(i) if i < MAX_KEYWORDS => i,
            _ => bail!("line {}: bad keyword index {idx:?}", n + 1),
        };
        if out.len() <= idx {
            out.resize(idx + 1, String::new());
        }
        out[idx] = name.trim().to_string();
    }
    Ok(out)
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
        let back = parse_keywords_file(&text).unwrap();
        let mut got = flags_of(&format!("1.x.host,S=5:2,{letters}"), &back);
        got.sort();
        assert_eq!(got, s(&["$Forwarded", "Work", "\\Answered", "\\Seen"]));
        assert!(flags_of("1.x.host", &back).is_empty());
        assert!(parse_keywords_file("x y").is_err());
    }
}
