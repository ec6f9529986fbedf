//! Which folders a run covers (`--folder`, `--include`, `--exclude`), by store path (see
//! [`crate::names`]).

use anyhow::{Context, Result};
use regex::Regex;

/// Which folders a run covers.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    only: Vec<String>,
    includes: Vec<Regex>,
    excludes: Vec<Regex>,
}

/// Compile the values of `option` (`--include`, `--exclude`).
fn patterns(option: &str, values: &[String]) -> Result<Vec<Regex>> {
    values
        .iter()
        .map(|re| {
            Regex::new(re)
                .with_context(|| format!("{option} {re:?} is not a valid regular expression"))
        })
        .collect()
}

impl Selection {
    /// Whether `path` is asked for by name (`--folder`) or by an `--include` pattern, not just
    /// covered because nothing was narrowed.
    pub fn asks_for(&self, path: &str) -> bool {
        self.only.iter().any(|p| p == path) || self.includes.iter().any(|r| r.is_match(path))
    }

    /// `only` lists exact store paths (empty: all); `includes` and `excludes` are regular
    /// expressions matched against store paths: a folder is covered when it is listed (or
    /// nothing is), matches an include (or none is given) and matches no exclude.
    pub fn new(only: &[String], includes: &[String], excludes: &[String]) -> Result<Selection> {
        let includes = patterns("--include", includes)?;
        let excludes = patterns("--exclude", excludes)?;
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
        Ok(Selection {
            only,
            includes,
            excludes,
        })
    }

    pub fn includes(&self, path: &str) -> bool {
        (self.only.is_empty() || self.only.iter().any(|p| p == path))
            && (self.includes.is_empty() || self.includes.iter().any(|re| re.is_match(path)))
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

/// `--folder` given as a server's raw name (imapsync's spelling, `INBOX.Archive.2024`) where
/// imapferry takes store paths (`Archive/2024`): a mistake in the command line, said with the
/// path to give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFolderName {
    pub given: String,
    pub path: String,
}

impl std::fmt::Display for RawFolderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "--folder {:?} is the server's raw name of a folder; imapferry takes its store \
             path (UTF-8, levels joined by /, no INBOX. prefix): --folder {:?}",
            self.given, self.path
        )
    }
}

impl std::error::Error for RawFolderName {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_takes_exact_paths_includes_and_excludes_by_regex() {
        let s = Selection::new(&["Archive/2024".into(), "inbox".into()], &[], &[]).unwrap();
        assert!(s.includes("Archive/2024") && s.includes("INBOX"));
        assert!(!s.includes("Archive"));
        let s = Selection::new(&[], &[], &["^Trash$".into(), "^Lists/".into()]).unwrap();
        assert!(!s.includes("Trash") && !s.includes("Lists/rust"));
        assert!(s.includes("Trash2"));
        let s = Selection::new(&[], &["^Lists".into()], &["dovecot".into()]).unwrap();
        assert!(s.includes("Lists/rust") && !s.includes("Lists/dovecot") && !s.includes("INBOX"));
        assert!(Selection::new(&[], &[], &["(".into()]).is_err());
        assert!(Selection::new(&[], &["(".into()], &[]).is_err());
    }
}
