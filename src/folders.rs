//! Folder names: the store's namespace-neutral UTF-8 paths (`Archive/2024`) versus a server's
//! names (`INBOX.Archive.2024`), and which folders a run covers (`--folder`, `--exclude`).

use anyhow::{Context, Result};
use regex::Regex;

use crate::imap::Namespace;

/// The store path of a server mailbox: UTF-8 `name` (already decoded from modified UTF-7) with the
/// personal-namespace prefix removed and levels joined by `/`. INBOX is always `INBOX`. A `/`
/// inside a level name (a server separating levels with another character) becomes `_`, so that
/// `a/b` (one level) and `a.b` (two levels) on a `.` server do not share the path `a/b`.
pub fn store_path(name: &str, separator: Option<char>, ns: &Namespace) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_string();
    }
    let rest = match name.get(..ns.prefix.len()) {
        Some(head) if !ns.prefix.is_empty() && head.eq_ignore_ascii_case(&ns.prefix) => {
            &name[ns.prefix.len()..]
        }
        _ => name,
    };
    match separator {
        Some(sep) if sep != '/' => rest.replace('/', "_").replace(sep, "/"),
        _ => rest.to_string(),
    }
}

/// The UTF-8 server name of a store path on a server with namespace `ns` (the inverse of
/// [`store_path`]); encode it with modified UTF-7 before sending it.
pub fn server_name(path: &str, ns: &Namespace) -> String {
    if path.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_string();
    }
    let joined = match ns.separator {
        Some(sep) if sep != '/' => path.replace('/', &sep.to_string()),
        _ => path.to_string(),
    };
    format!("{}{}", ns.prefix, joined)
}

/// Which folders a run covers.
#[derive(Debug, Default)]
pub struct Selection {
    only: Vec<String>,
    excludes: Vec<Regex>,
}

impl Selection {
    /// `only` lists exact store paths (empty: all); `excludes` are regular expressions matched
    /// against store paths.
    pub fn new(only: &[String], excludes: &[String]) -> Result<Selection> {
        let excludes = excludes
            .iter()
            .map(|re| {
                Regex::new(re)
                    .with_context(|| format!("--exclude {re:?} is not a valid regular expression"))
            })
            .collect::<Result<_>>()?;
        let only = only
            .iter()
            .map(|p| {
                if p.eq_ignore_ascii_case("INBOX") {
                    "INBOX".to_string()
                } else {
                    p.trim_matches('/').to_string()
                }
            })
            .collect();
        Ok(Selection { only, excludes })
    }

    pub fn includes(&self, path: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|p| p == path))
            && !self.excludes.iter().any(|re| re.is_match(path))
    }

    /// `--folder` names that matched none of `paths`, to report as errors.
    pub fn unmatched<'a>(&'a self, paths: &[String]) -> Vec<&'a str> {
        self.only
            .iter()
            .filter(|p| !paths.contains(p))
            .map(String::as_str)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(prefix: &str, sep: char) -> Namespace {
        Namespace {
            prefix: prefix.into(),
            separator: Some(sep),
        }
    }

    #[test]
    fn inbox_dot_names_lose_their_prefix_and_use_slashes() {
        let n = ns("INBOX.", '.');
        assert_eq!(
            store_path("INBOX.Archive.2024", Some('.'), &n),
            "Archive/2024"
        );
        assert_eq!(store_path("INBOX", Some('.'), &n), "INBOX");
        assert_eq!(store_path("inbox", Some('.'), &n), "INBOX");
        assert_eq!(store_path("INBOX.a/b.c", Some('.'), &n), "a_b/c");
        assert_eq!(server_name("Archive/2024", &n), "INBOX.Archive.2024");
        assert_eq!(server_name("INBOX", &n), "INBOX");
    }

    #[test]
    fn slash_names_are_kept() {
        let n = ns("", '/');
        assert_eq!(store_path("A & B/日本語", Some('/'), &n), "A & B/日本語");
        assert_eq!(server_name("A & B/日本語", &n), "A & B/日本語");
    }

    #[test]
    fn selection_takes_exact_paths_and_excludes_by_regex() {
        let s = Selection::new(&["Archive/2024".into(), "inbox".into()], &[]).unwrap();
        assert!(s.includes("Archive/2024") && s.includes("INBOX"));
        assert!(!s.includes("Archive"));
        let s = Selection::new(&[], &["^Trash$".into(), "^Lists/".into()]).unwrap();
        assert!(!s.includes("Trash") && !s.includes("Lists/rust"));
        assert!(s.includes("Trash2"));
        assert!(Selection::new(&[], &["(".into()]).is_err());
    }
}
