//! Which host2 mailbox each store folder goes to.
//!
//! A store path (`Archive/2024`) becomes a host2 path by, in order:
//! 1. `--folder-map FROM=TO`: the longest FROM equal to the path or one of its ancestors wins,
//!    and the rest of the path follows (`Lists=Old/Lists` sends `Lists/rust` to `Old/Lists/rust`);
//! 2. otherwise automap: a folder with a special-use role (`\Sent`, ...) goes to host2's folder
//!    with the same role, whatever its name, and its subfolders follow (off with `--no-automap`
//!    and with `--dest-root`, which asks for everything under one folder);
//! 3. otherwise the same path;
//! 4. then `--dest-root D` puts the result under `D`, INBOX included (`D/INBOX`), like imapsync's
//!    `--subfolder2`;
//! 5. then each `--regextrans2 's/PATTERN/REPLACEMENT/FLAGS'`, in order, on the path as it is
//!    now (UTF-8, levels joined by `/`, no namespace prefix: unlike imapsync, which rewrites
//!    host2's raw name);
//! 6. a level whose name holds host2's separator (`Dr. Jones` or `v1.2` on a server that
//!    separates levels with `.`) gets `_` in its place (`Dr_ Jones`), so it stays one folder
//!    instead of becoming a hierarchy (or an invalid name, for `Notes...`), unless host2
//!    already has a mailbox under the unescaped name (left by another tool or an earlier
//!    push), which then keeps receiving it. Each renamed folder is reported by the push;
//! 7. then the provider's naming rules (docs/providers.md): on Gmail a label level loses
//!    leading, trailing and repeated spaces and `^` becomes `_`; on Microsoft 365 a level named
//!    `Files` (reserved there) becomes `Files_`, and since names there ignore case a folder
//!    whose path differs from an earlier one only in case gets ` (2)`. Each is reported.
//!
//! The host2 path is then turned into host2's name with its separator and personal-namespace
//! prefix ([`crate::names::server_name`]) and encoded in modified UTF-7; a mailbox host2 already
//! lists under that path is used with the exact name it sent.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{bail, Result};

use crate::imap::{MailboxInfo, MailboxStatus};
use crate::names::Namespace;
use crate::names::{mailbox_for, server_name, store_path, MailboxName};
use crate::provider::{gmail_valid_level, Provider};
use crate::store::{FolderRow, Hash};

/// The folder-mapping options.
#[derive(Debug, Clone, Default)]
pub struct MapRules {
    /// (FROM, TO) store path → host2 path, normalised.
    pub folder_map: Vec<(String, String)>,
    pub dest_root: Option<String>,
    pub automap: bool,
    /// `--regextrans2` substitutions, applied in order.
    pub transforms: Vec<Transform>,
    /// host2's naming rules (step 7), from the connection.
    pub provider: Provider,
    /// What a store pulled from Gmail becomes on another server.
    pub gmail_labels: GmailLabels,
}

/// What a store pulled from Gmail (label views as folders) becomes on a server without labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GmailLabels {
    /// Each label folder a folder with its own copy of each message (imapsync's way).
    #[default]
    Copies,
    /// Each message only in the first of its folders: INBOX and the label folders in path
    /// order, then Sent, Drafts, Important and Starred, All Mail last.
    FirstFolder,
}

impl std::str::FromStr for GmailLabels {
    type Err = String;

    fn from_str(s: &str) -> Result<GmailLabels, String> {
        match s {
            "copies" => Ok(GmailLabels::Copies),
            "first-folder" => Ok(GmailLabels::FirstFolder),
            _ => Err(format!("{s:?}: give copies or first-folder")),
        }
    }
}

/// One `s/PATTERN/REPLACEMENT/FLAGS` substitution (Perl's form, as imapsync takes it: any
/// delimiter, escaped with a backslash where the text holds it; flags `g` for every match and
/// `i` to ignore case; `$1` in the replacement).
#[derive(Debug, Clone)]
pub struct Transform {
    text: String,
    pattern: regex::Regex,
    replacement: String,
    global: bool,
    /// Whether the pattern matched some path it was applied to (shared by the clones a plan
    /// makes): an expression that matches no folder is said, not silently a no-op.
    matched: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Transform {
    pub fn parse(s: &str) -> Result<Transform> {
        let bad =
            || anyhow::anyhow!("--regextrans2 {s:?}: expected s/PATTERN/REPLACEMENT/ (flags g, i)");
        let rest = s.strip_prefix('s').ok_or_else(bad)?;
        let delim = rest
            .chars()
            .next()
            .filter(|c| !c.is_alphanumeric() && *c != '\\')
            .ok_or_else(bad)?;
        let parts = split_unescaped(&rest[delim.len_utf8()..], delim);
        let [pattern, replacement, flags] = &parts[..] else {
            return Err(bad());
        };
        if let Some(f) = flags.chars().find(|f| !matches!(f, 'g' | 'i')) {
            bail!("--regextrans2 {s:?}: unknown flag {f:?} (g and i are understood)");
        }
        // An escaped delimiter is the delimiter itself; one that is special in a regex stays
        // escaped in the pattern, so it still means itself there.
        let special = regex::escape(&delim.to_string()) != delim.to_string();
        let unescape = |t: &str, keep: bool| match keep {
            true => t.to_string(),
            false => t.replace(&format!("\\{delim}"), &delim.to_string()),
        };
        let pattern = regex::RegexBuilder::new(&unescape(pattern, special))
            .case_insensitive(flags.contains('i'))
            .build()
            .map_err(|e| anyhow::anyhow!("--regextrans2 {s:?}: {e}"))?;
        Ok(Transform {
            text: s.to_string(),
            pattern,
            replacement: unescape(replacement, false),
            global: flags.contains('g'),
            matched: Default::default(),
        })
    }

    pub fn apply(&self, path: &str) -> String {
        if self.pattern.is_match(path) {
            self.matched
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let limit = if self.global { 0 } else { 1 };
        self.pattern
            .replacen(path, limit, self.replacement.as_str())
            .into_owned()
    }

    /// The expression as given.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether it matched any path it was applied to.
    pub fn matched(&self) -> bool {
        self.matched.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// `s` cut at each `delim` not preceded by a backslash (escapes are left in the pieces).
fn split_unescaped(s: &str, delim: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut escaped = false;
    for c in s.chars() {
        if c == delim && !escaped {
            parts.push(String::new());
            continue;
        }
        escaped = c == '\\' && !escaped;
        if let Some(p) = parts.last_mut() {
            p.push(c);
        }
    }
    parts
}

/// Normalise a user-given path: `/` trimmed at the ends, INBOX in any case is `INBOX`.
fn norm(p: &str) -> String {
    let p = p.trim_matches('/');
    match p.split_once('/') {
        Some((head, rest)) if head.eq_ignore_ascii_case("INBOX") => format!("INBOX/{rest}"),
        None if p.eq_ignore_ascii_case("INBOX") => "INBOX".to_string(),
        _ => p.to_string(),
    }
}

impl MapRules {
    /// Parse `--folder-map FROM=TO` values, `--dest-root`, `--no-automap` and `--regextrans2`.
    pub fn parse(
        folder_map: &[String],
        dest_root: Option<&str>,
        no_automap: bool,
        regextrans: &[String],
    ) -> Result<MapRules> {
        let mut map = Vec::new();
        for m in folder_map {
            let Some((from, to)) = m.split_once('=') else {
                bail!("--folder-map {m:?}: expected FROM=TO, e.g. 'Sent=Sent Items'");
            };
            let (from, to) = (norm(from), norm(to));
            if from.is_empty() || to.is_empty() {
                bail!("--folder-map {m:?}: both sides must name a folder");
            }
            map.push((from, to));
        }
        let dest_root = match dest_root.map(norm) {
            Some(r) if r.is_empty() => bail!("--dest-root must name a folder, e.g. 'Imported'"),
            r => r,
        };
        Ok(MapRules {
            folder_map: map,
            automap: !no_automap && dest_root.is_none(),
            dest_root,
            transforms: regextrans
                .iter()
                .map(|s| Transform::parse(s))
                .collect::<Result<_>>()?,
            provider: Provider::Generic,
            gmail_labels: GmailLabels::Copies,
        })
    }

    /// The host2 path (UTF-8, `/`-joined, no prefix) of store folder `path` with special-use
    /// `role`; `roles` maps lower-cased roles to host2 paths.
    pub fn target_path(
        &self,
        path: &str,
        role: Option<&str>,
        roles: &HashMap<String, String>,
    ) -> String {
        let explicit = self
            .folder_map
            .iter()
            .filter_map(|(from, to)| subtree_rest(path, from).map(|rest| (from.len(), to, rest)))
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, to, rest)| format!("{to}{rest}"));
        let mapped = explicit
            .or_else(|| {
                if !self.automap {
                    return None;
                }
                // Subfolders of a role folder follow it; `plan` handles those.
                role.and_then(|r| roles.get(&r.to_ascii_lowercase()))
                    .map(|p| p.to_string())
            })
            .unwrap_or_else(|| path.to_string());
        match &self.dest_root {
            Some(root) => format!("{root}/{mapped}"),
            None => mapped,
        }
    }
}

/// `Some(rest)` when `path` is `root` (rest "") or below it (rest "/…").
fn subtree_rest<'a>(path: &'a str, root: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(root)?;
    (rest.is_empty() || rest.starts_with('/')).then_some(rest)
}

/// One host2 mailbox to push into, and the store folders that go there (usually one).
#[derive(Debug, Clone)]
pub struct Target {
    /// The host2 name for commands (modified UTF-7, prefix and separator included).
    pub mailbox: MailboxName,
    /// The host2 path, UTF-8 with `/`, for humans.
    pub path: String,
    /// host2 already lists it (selectable).
    pub exists: bool,
    /// host2 lists it as subscribed.
    pub subscribed: bool,
    /// Some store folder going there is subscribed on host1.
    pub want_subscribed: bool,
    /// The store folders, by path.
    pub folders: Vec<FolderRow>,
    /// host2's MESSAGES, UIDNEXT, UIDVALIDITY (HIGHESTMODSEQ) from LIST-STATUS, when offered.
    pub status: Option<MailboxStatus>,
    /// host2's special-use attribute of the mailbox (`\All`, `\Sent`), when it lists one.
    pub role: Option<String>,
    /// The host2 path before host2's separator was replaced in level names (step 6 above), or
    /// before host2's naming rules changed it (step 7), when one of them did.
    pub escaped_from: Option<String>,
    /// Why the path is not `escaped_from`, when the provider's rules changed it (step 7).
    pub renamed_because: Option<String>,
    /// Store messages (by their bytes) that go to another target instead of this one
    /// (`--gmail-labels first-folder`).
    pub elsewhere: BTreeSet<Hash>,
}

impl Target {
    /// The store folder ids going there, ascending, space-separated (recorded with the
    /// mailbox's facts: another set of folders means another push).
    pub fn folder_key(&self) -> String {
        let mut ids: Vec<i64> = self.folders.iter().map(|f| f.id).collect();
        ids.sort_unstable();
        ids.iter().map(i64::to_string).collect::<Vec<_>>().join(" ")
    }

    /// "Sent → Sent Items" (or just the path when unchanged), for reports.
    pub fn label(&self) -> String {
        let from: Vec<&str> = self.folders.iter().map(|f| f.path.as_str()).collect();
        let from = from.join(" + ");
        if from == self.path {
            from
        } else {
            format!("{from} → {}", self.path)
        }
    }
}

/// Group `folders` (store folders to push) by their host2 mailbox, given host2's namespace and
/// LIST. Targets are ordered by host2 path, so parents come before children.
pub fn plan(
    folders: &[FolderRow],
    rules: &MapRules,
    ns: &Namespace,
    host2: &[MailboxInfo],
) -> Vec<Target> {
    let mut listed: HashMap<String, &MailboxInfo> = HashMap::new();
    let mut by_name: HashMap<&str, &MailboxInfo> = HashMap::new();
    let mut roles: HashMap<String, String> = HashMap::new();
    for mb in host2 {
        let p = store_path(&mb.name, mb.separator, ns);
        if let (Some(role), false) = (&mb.special_use, mb.noselect) {
            roles.entry(role.to_ascii_lowercase()).or_insert(p.clone());
        }
        listed.insert(p, mb);
        by_name.insert(&mb.name, mb);
    }
    // The exact name first: two host2 names can share a path (`x/y` and `x_y` on a `.` server).
    let lookup = |path: &str| {
        by_name
            .get(server_name(path, ns).as_str())
            .or_else(|| listed.get(path))
            .copied()
    };
    let selectable = |path: &str| lookup(path).is_some_and(|mb| !mb.noselect);
    // Store folders with a role whose subfolders should follow them under automap.
    let role_roots: Vec<(&str, &str)> = folders
        .iter()
        .filter_map(|f| f.role.as_deref().map(|r| (f.path.as_str(), r)))
        .collect();
    let mut targets: BTreeMap<String, Target> = BTreeMap::new();
    // Paths used so far, by their lower case (Microsoft 365 ignores case in names).
    let mut seen: HashMap<String, String> = HashMap::new();
    for f in folders {
        let path = host2_path(f, rules, &roles, &role_roots);
        let escaped = escape_separator(&path, ns.separator);
        // A mailbox host2 already has under the unescaped name (from another tool, or an
        // earlier push) keeps receiving the folder: a new one would get every message again.
        let keep_unescaped = selectable(&path) && !selectable(&escaped);
        let (path, escaped_from) = if escaped != path && !keep_unescaped {
            (escaped, Some(path))
        } else {
            (path, None)
        };
        let (path, escaped_from, because) = match provider_rules(&path, rules.provider, &seen) {
            Some((fixed, why)) if !selectable(&path) => {
                (fixed, escaped_from.or(Some(path)), Some(why))
            }
            _ => (path, escaped_from, None),
        };
        seen.entry(path.to_lowercase()).or_insert(path.clone());
        let entry = targets.entry(path.clone()).or_insert_with(|| {
            let existing = lookup(&path);
            Target {
                mailbox: match existing {
                    Some(mb) => mb.raw_name.clone(),
                    None => mailbox_for(&path, ns),
                },
                path: path.clone(),
                exists: existing.is_some_and(|mb| !mb.noselect),
                subscribed: existing.is_some_and(|mb| mb.subscribed),
                want_subscribed: false,
                folders: Vec::new(),
                status: existing
                    .filter(|mb| !mb.noselect)
                    .and_then(|mb| mb.status.clone()),
                role: existing.and_then(|mb| mb.special_use.clone()),
                escaped_from: None,
                renamed_because: None,
                elsewhere: BTreeSet::new(),
            }
        });
        entry.escaped_from = entry.escaped_from.take().or(escaped_from);
        entry.renamed_because = entry.renamed_because.take().or(because);
        entry.want_subscribed |= f.subscribed;
        entry.folders.push(f.clone());
    }
    targets.into_values().collect()
}

/// Step 7: `path` as host2's provider needs it, and why, when that differs.
fn provider_rules(
    path: &str,
    provider: Provider,
    seen: &HashMap<String, String>,
) -> Option<(String, String)> {
    match provider {
        Provider::Gmail if !path.starts_with("[Gmail]") => {
            let levels: Vec<String> = path
                .split('/')
                .map(|l| gmail_valid_level(l).unwrap_or_else(|| l.to_string()))
                .collect();
            let fixed = levels.join("/");
            (fixed != path).then(|| {
                let why = "Gmail refuses labels with leading, trailing or repeated spaces or ^";
                (fixed, why.to_string())
            })
        }
        Provider::M365 => {
            let reserved = Provider::M365.reserved_names();
            let levels: Vec<String> = path
                .split('/')
                .map(
                    |l| match reserved.iter().any(|r| r.eq_ignore_ascii_case(l)) {
                        true => format!("{l}_"),
                        false => l.to_string(),
                    },
                )
                .collect();
            let fixed = levels.join("/");
            if fixed != path {
                let why = format!("{path:?} is a reserved folder name on Microsoft 365");
                return Some((fixed, why));
            }
            match seen.get(&path.to_lowercase()) {
                Some(other) if other != path => Some((
                    format!("{path} (2)"),
                    format!("Microsoft 365 ignores case in names: {other:?} is the same folder"),
                )),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Where store folder `f` goes on host2 (steps 1 to 4 of the module's list): `rules`, and under
/// automap a subfolder of a role folder following its parent ("Sent/2023" → "Sent
/// Items/2023") unless an explicit map already moved it.
fn host2_path(
    f: &FolderRow,
    rules: &MapRules,
    roles: &HashMap<String, String>,
    role_roots: &[(&str, &str)],
) -> String {
    let path = mapped_path(f, rules, roles, role_roots);
    let path = rules.transforms.iter().fold(path, |p, t| t.apply(&p));
    norm(&path)
}

/// Steps 1 to 4 of the module's list.
fn mapped_path(
    f: &FolderRow,
    rules: &MapRules,
    roles: &HashMap<String, String>,
    role_roots: &[(&str, &str)],
) -> String {
    let path = rules.target_path(&f.path, f.role.as_deref(), roles);
    if f.role.is_some() || !rules.automap || path != f.path {
        return path;
    }
    let Some((root, role)) = role_roots
        .iter()
        .filter(|(root, _)| subtree_rest(&f.path, root).is_some_and(|r| !r.is_empty()))
        .max_by_key(|(root, _)| root.len())
    else {
        return path;
    };
    let explicit = rules
        .folder_map
        .iter()
        .any(|(from, _)| subtree_rest(&f.path, from).is_some());
    match (explicit, roles.get(&role.to_ascii_lowercase())) {
        (false, Some(dest)) => format!("{dest}{}", &f.path[root.len()..]),
        _ => path,
    }
}

/// `path` (levels joined by `/`) with host2's `separator` replaced by `_` inside level names.
fn escape_separator(path: &str, separator: Option<char>) -> String {
    match separator {
        Some(sep) if sep != '/' => path.replace(sep, "_"),
        _ => path.to_string(),
    }
}

/// The host2 names of the ancestors of `path` (outermost first), for servers that need parents
/// created before children.
pub fn ancestor_mailboxes(path: &str, ns: &Namespace) -> Vec<MailboxName> {
    let parts: Vec<&str> = path.split('/').collect();
    (1..parts.len())
        .map(|n| mailbox_for(&parts[..n].join("/"), ns))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FolderState;

    fn folder(path: &str, role: Option<&str>) -> FolderRow {
        FolderRow {
            id: 1,
            path: path.into(),
            raw_name: path.into(),
            separator: Some('/'),
            role: role.map(String::from),
            subscribed: true,
            state: FolderState::default(),
            last_pull: None,
            gone_at: None,
            change: 1,
        }
    }

    fn mb(name: &str, role: Option<&str>) -> MailboxInfo {
        MailboxInfo {
            raw_name: MailboxName::encode(name),
            name: name.into(),
            separator: Some('.'),
            attributes: vec![],
            special_use: role.map(String::from),
            noselect: false,
            subscribed: false,
            status: None,
        }
    }

    fn dot() -> Namespace {
        Namespace {
            prefix: "INBOX.".into(),
            separator: Some('.'),
        }
    }

    #[test]
    fn automap_sends_role_folders_and_their_children_to_host2s_role_folder() {
        let rules = MapRules::parse(&[], None, false, &[]).unwrap();
        let fs = [
            folder("INBOX", None),
            folder("Sent", Some("\\Sent")),
            folder("Sent/2023", None),
            folder("Entwürfe", None),
        ];
        let host2 = [mb("INBOX", None), mb("INBOX.Sent Items", Some("\\Sent"))];
        let t = plan(&fs, &rules, &dot(), &host2);
        let got: Vec<(&str, &str, bool)> = t
            .iter()
            .map(|t| (t.path.as_str(), t.mailbox.as_utf8().unwrap(), t.exists))
            .collect();
        assert_eq!(
            got,
            [
                ("Entwürfe", "INBOX.Entw&APw-rfe", false),
                ("INBOX", "INBOX", true),
                ("Sent Items", "INBOX.Sent Items", true),
                ("Sent Items/2023", "INBOX.Sent Items.2023", false),
            ]
        );
        let rules = MapRules::parse(&[], None, true, &[]).unwrap();
        let t = plan(&fs, &rules, &dot(), &host2);
        assert!(t.iter().any(|t| t.mailbox == "INBOX.Sent"));
    }

    #[test]
    fn regextrans2_substitutes_like_perl_with_any_delimiter_and_g_and_i_flags() {
        let t = |s: &str| Transform::parse(s).unwrap();
        assert_eq!(t("s/ /_/g").apply("A B C"), "A_B_C");
        assert_eq!(t("s/ /_/").apply("A B C"), "A_B C");
        assert_eq!(t("s,^inbox/(.*),Old/$1,i").apply("INBOX/x"), "Old/x");
        assert_eq!(t("s#^Sent$#Sent Items#").apply("Sent"), "Sent Items");
        for bad in ["y/a/b/", "s/a/b", "s/(/x/", "s/a/b/x", "s"] {
            assert!(Transform::parse(bad).is_err(), "{bad}");
        }
    }

    /// Issue 21, item 8: imapsync's own expressions, whose delimiter is escaped inside them.
    #[test]
    fn regextrans2_honours_a_delimiter_escaped_with_a_backslash() {
        let t = |s: &str| Transform::parse(s).unwrap();
        assert_eq!(t("s/\\./\\//g").apply("a.b.c"), "a/b/c");
        assert_eq!(
            t("s/Lists\\/dovecot/Lists\\/dc/").apply("Lists/dovecot/x"),
            "Lists/dc/x"
        );
        assert_eq!(t("s|a\\|b|x|").apply("a|b"), "x");
        assert_eq!(t("s,\\[Gmail\\].,,").apply("[Gmail]/Sent"), "Sent");
        let no_op = t("s/^INBOX\\.//");
        assert_eq!(no_op.apply("Archive/2024"), "Archive/2024");
        assert!(
            !no_op.matched(),
            "an expression that changed nothing says so"
        );
        let used = t("s/^Archive//");
        used.apply("Archive/2024");
        assert!(used.matched());
        assert_eq!(used.text(), "s/^Archive//");
    }

    #[test]
    fn folder_map_moves_subtrees_and_dest_root_takes_everything() {
        let rules = MapRules::parse(
            &["Lists=Old/Lists".into(), "Lists/rust=Rust".into()],
            None,
            false,
            &[],
        )
        .unwrap();
        let roles = HashMap::new();
        assert_eq!(
            rules.target_path("Lists/dovecot", None, &roles),
            "Old/Lists/dovecot"
        );
        assert_eq!(rules.target_path("Lists/rust/x", None, &roles), "Rust/x");
        assert_eq!(rules.target_path("Listsx", None, &roles), "Listsx");
        let rules = MapRules::parse(&[], Some("/Imported/"), false, &[]).unwrap();
        assert!(!rules.automap);
        assert_eq!(rules.target_path("INBOX", None, &roles), "Imported/INBOX");
        assert_eq!(
            rules.target_path("Sent", Some("\\Sent"), &roles),
            "Imported/Sent"
        );
        assert!(MapRules::parse(&["nope".into()], None, false, &[]).is_err());
        assert_eq!(
            ancestor_mailboxes("a/b/c", &dot()),
            [MailboxName::from("INBOX.a"), MailboxName::from("INBOX.a.b")]
        );
    }

    #[test]
    fn host2s_separator_inside_a_level_name_becomes_an_underscore() {
        let rules = MapRules::parse(&[], None, false, &[]).unwrap();
        let t = plan(
            &[folder("Archive/Dr. Jones", None), folder("Notes...", None)],
            &rules,
            &dot(),
            &[],
        );
        let got: Vec<(&str, &str, Option<&str>)> = t
            .iter()
            .map(|t| {
                (
                    t.path.as_str(),
                    t.mailbox.as_utf8().unwrap(),
                    t.escaped_from.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (
                    "Archive/Dr_ Jones",
                    "INBOX.Archive.Dr_ Jones",
                    Some("Archive/Dr. Jones")
                ),
                ("Notes___", "INBOX.Notes___", Some("Notes...")),
            ]
        );
        // host2 already has the two-level `Dr` / ` Jones` (another tool made it): used as is.
        // `x/y` and `x_y` share a path on host2; the store's `x_y` goes to the exact name.
        let mut slash = mb("INBOX.x/y", None);
        slash.raw_name = "INBOX.x/y".into();
        let host2 = [mb("INBOX.Dr. Jones", None), mb("INBOX.x_y", None), slash];
        let t = plan(
            &[folder("Dr. Jones", None), folder("x_y", None)],
            &rules,
            &dot(),
            &host2,
        );
        let got: Vec<(&str, &str, bool, Option<&str>)> = t
            .iter()
            .map(|t| {
                let from = t.escaped_from.as_deref();
                (
                    t.path.as_str(),
                    t.mailbox.as_utf8().unwrap(),
                    t.exists,
                    from,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("Dr. Jones", "INBOX.Dr. Jones", true, None),
                ("x_y", "INBOX.x_y", true, None)
            ]
        );
        // `a.b` and `a_b` meet on host2: one target, both folders, marked as renamed.
        let t = plan(
            &[folder("a.b", None), folder("a_b", None)],
            &rules,
            &dot(),
            &[],
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].folders.len(), 2);
        assert_eq!(t[0].escaped_from.as_deref(), Some("a.b"));
    }

    #[test]
    fn provider_rules_rename_reserved_case_twins_and_gmail_spaces_and_say_why() {
        let fs = [
            folder("Archive", None),
            folder("archive", None),
            folder("Files", None),
            folder(" Old  Mail ", None),
        ];
        let m365 = MapRules {
            provider: Provider::M365,
            ..MapRules::default()
        };
        let t = plan(&fs, &m365, &dot(), &[]);
        let paths: Vec<&str> = t.iter().map(|t| t.path.as_str()).collect();
        assert!(paths.contains(&"Files_"), "{paths:?}");
        assert!(paths.contains(&"archive (2)"), "{paths:?}");
        assert!(paths.contains(&"Archive"), "{paths:?}");
        let why = t.iter().find(|t| t.path == "Files_").unwrap();
        assert!(why.renamed_because.as_deref().unwrap().contains("reserved"));
        let gmail = MapRules {
            provider: Provider::Gmail,
            ..MapRules::default()
        };
        let t = plan(&fs, &gmail, &dot(), &[]);
        let old = t.iter().find(|t| t.path == "Old Mail").unwrap();
        assert_eq!(old.escaped_from.as_deref(), Some(" Old  Mail "));
    }
}
