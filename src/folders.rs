//! Which folders a run covers (`--folder`, `--exclude`), by store path (see [`crate::names`]).

use anyhow::{Context, Result};
use regex::Regex;

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
