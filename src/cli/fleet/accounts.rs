//! The accounts file of `imapferry fleet run`: imapsync's format, one account pair a line,
//! `host1;user1;password1;host2;user2;password2;[extra options];`, `#` comments and blank
//! lines ignored. A password field is a literal password (accepted, warned about once),
//! `file:PATH` (its first line) or `env:NAME`. Extra options are those of `pull`, `push` and
//! `sync`, separated by spaces, quoted as in a shell (`--folder INBOX --exclude "^Trash$"`), and
//! imapsync's, answered as `sync` answers them (docs/imapsync.md).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::super::endpoint::{file_name_part, password_line};
use super::super::imapsync::{answer_options, known_options, Known};

/// Where a password comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Password {
    Literal(String),
    File(PathBuf),
    Env(String),
}

impl Password {
    fn parse(field: &str) -> Password {
        if let Some(p) = field.strip_prefix("file:") {
            Password::File(PathBuf::from(p))
        } else if let Some(v) = field.strip_prefix("env:") {
            Password::Env(v.to_string())
        } else {
            Password::Literal(field.to_string())
        }
    }

    /// The password itself, or why it cannot be had.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Password::Literal(p) => Ok(p.clone()),
            Password::Env(name) => {
                std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))
            }
            Password::File(path) => {
                let text = imapferry::secret::read(path)
                    .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
                password_line(&text)
                    .map(String::from)
                    .ok_or_else(|| format!("{} is empty", path.display()))
            }
        }
    }
}

/// One account pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// Line number in the file (from 1), for messages.
    pub line: usize,
    pub host1: String,
    pub user1: String,
    pub password1: Password,
    pub host2: String,
    pub user2: String,
    pub password2: Password,
    pub extra: Vec<String>,
    /// What was said about the line's options (imapsync's, removed as not needed).
    pub notes: Vec<String>,
}

impl Account {
    /// The name of its store under `--stores`: stable from host1, its port and user1 (the
    /// account a store mirrors), readable, and distinct even when two names differ only in
    /// characters that are replaced or in the port.
    pub fn name(&self) -> String {
        let safe = file_name_part(&format!(
            "{}@{}",
            self.user1,
            self.host1.to_ascii_lowercase()
        ));
        format!("{safe}-{}", &self.key_hash()[..8])
    }

    /// Which of `n` shards (0-based) the account belongs to: from host1, its port and user1
    /// only, so unrelated rows added, removed or reordered never move it.
    pub fn shard(&self, n: u32) -> u32 {
        let h = self.key_hash();
        let v = u64::from_str_radix(&h[..16], 16).unwrap_or(0);
        (v % u64::from(n.max(1))) as u32
    }

    /// `--port1` among the extra options, if given.
    fn port1(&self) -> &str {
        let at = self.extra.iter().position(|o| o == "--port1");
        at.and_then(|i| self.extra.get(i + 1))
            .map_or("", String::as_str)
    }

    fn key_hash(&self) -> String {
        let host = self.host1.to_ascii_lowercase();
        let d = Sha256::digest(format!("{host}\n{}\n{}", self.port1(), self.user1));
        d.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A line that could not be read as an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub line: usize,
    pub reason: String,
}

/// Every account of `text`, and the lines that are not one.
pub fn parse(text: &str) -> (Vec<Account>, Vec<Malformed>) {
    let (mut accounts, mut bad) = (Vec::new(), Vec::new());
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match parse_line(line) {
            Ok(mut a) => {
                a.line = i + 1;
                accounts.push(a);
            }
            Err(reason) => bad.push(Malformed {
                line: i + 1,
                reason,
            }),
        }
    }
    (accounts, bad)
}

fn parse_line(line: &str) -> Result<Account, String> {
    let fields: Vec<&str> = line.splitn(7, ';').collect();
    if fields.len() < 6 {
        return Err(format!(
            "{} fields where host1;user1;password1;host2;user2;password2; are needed",
            fields.len()
        ));
    }
    let [host1, user1, password1, host2, user2, password2] =
        [0, 1, 2, 3, 4, 5].map(|i| fields[i].trim());
    for (what, v) in [
        ("host1", host1),
        ("user1", user1),
        ("host2", host2),
        ("user2", user2),
    ] {
        if v.is_empty() {
            return Err(format!("{what} is empty"));
        }
    }
    let words = split_words(fields.get(6).copied().unwrap_or(""))?;
    if let Some(bad) = words
        .iter()
        .find(|o| FORBIDDEN.iter().any(|f| o.starts_with(f)))
    {
        return Err(format!(
            "extra option {bad} is set by the fleet itself (accounts, passwords and stores \
             come from the file and --stores)"
        ));
    }
    let answered = answer_options(&command("sync"), "sync", &words);
    if !answered.refused.is_empty() {
        return Err(answered.refused.join("; "));
    }
    Ok(Account {
        line: 0,
        host1: host1.to_string(),
        user1: user1.to_string(),
        password1: Password::parse(password1),
        host2: host2.to_string(),
        user2: user2.to_string(),
        password2: Password::parse(password2),
        extra: answered.kept,
        notes: answered.notes,
    })
}

/// The extra options of a line as words, quoted as in a shell: `'…'` and `"…"` keep spaces
/// (and `;`), `\"` and `\\` inside double quotes stand for `"` and `\`. Outside quotes a space
/// or a `;` (imapsync's field separator) ends a word and a backslash is kept as it is, so a
/// regex such as `^\[Gmail\]` means what it says (a shell would drop those backslashes). A
/// quote left open is an error.
fn split_words(s: &str) -> Result<Vec<String>, String> {
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        None => return Err(format!("a {c} quote is not closed")),
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => match chars.next() {
                            Some(e @ ('"' | '\\')) => word.push(e),
                            Some(e) => {
                                word.push('\\');
                                word.push(e);
                            }
                            None => return Err(format!("a {c} quote is not closed")),
                        },
                        Some(q) => word.push(q),
                    }
                }
            }
            c if c.is_whitespace() || c == ';' => {
                if std::mem::take(&mut in_word) {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Options an account line may not carry: the fleet sets them, and a password must never be
/// put on a command line.
const FORBIDDEN: &[&str] = &[
    "--host1",
    "--host2",
    "--user1",
    "--user2",
    "--password1",
    "--password2",
    "--passfile1",
    "--passfile2",
    "--store",
    "--json",
];

/// The accounts file, after checking who may read it when it holds literal passwords.
pub fn read(path: &Path) -> anyhow::Result<(Vec<Account>, Vec<Malformed>, Option<String>)> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path)?;
    let (accounts, bad) = parse(&text);
    let literal = accounts.iter().any(|a| {
        matches!(a.password1, Password::Literal(_)) || matches!(a.password2, Password::Literal(_))
    });
    let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
    let warning = literal.then(|| {
        let mut w = format!(
            "{} holds passwords in clear; prefer file:PATH or env:NAME fields",
            path.display()
        );
        if mode & 0o077 != 0 {
            w += &format!(", and others may read it (mode {mode:o}): chmod 600 it");
        }
        w
    });
    Ok((accounts, bad, warning))
}

/// The extra options that `phase` (`pull` or `push`) takes, with their values: an account line
/// holds both sides' options (`--port1 993 --port2 143 --delete2`) and each phase gets its own,
/// as clap defines them for that command. `Err` names an option neither phase knows.
pub fn options_for(extra: &[String], phase: &str) -> Result<Vec<String>, String> {
    let mine = known_options(&command(phase));
    let other = known_options(&command(if phase == "pull" { "push" } else { "pull" }));
    let mut out = Vec::new();
    let mut i = 0;
    while i < extra.len() {
        let token = &extra[i];
        let name = token.trim_start_matches('-');
        let (name, inline) = match name.split_once('=') {
            Some((n, _)) => (n, true),
            None => (name, false),
        };
        let find = |list: &[Known]| list.iter().find(|k| k.name == name).cloned();
        let Some(Known {
            takes_value: takes,
            optional,
            ..
        }) = find(&mine).or_else(|| find(&other))
        else {
            return Err(format!("unknown option {token}"));
        };
        let with_value = takes
            && !inline
            && extra
                .get(i + 1)
                .is_some_and(|v| !(optional && v.starts_with("--")));
        let end = (i + if with_value { 2 } else { 1 }).min(extra.len());
        if find(&mine).is_some() {
            out.extend(extra[i..end].iter().cloned());
        }
        i = end;
    }
    Ok(out)
}

/// The command `name` of the command line, as clap defines it.
fn command(name: &str) -> clap::Command {
    use clap::CommandFactory;
    let cli = super::super::args::Cli::command();
    cli.find_subcommand(name)
        .cloned()
        .unwrap_or_else(|| clap::Command::new("none"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imapsync_lines_comments_and_malformed_lines() {
        let text = "# host1;user1;...\n\n\
            a.example;alice;pw1;b.example;alice2;file:/p2;\n\
            a.example;bob;env:BOB;b.example;bob;pw;--folder INBOX --exclude ^Trash;\n\
            broken;line\n\
            a.example;carol;x;b.example;carol;y;--password1 leak;\n";
        let (accounts, bad) = parse(text);
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[0].line, 3);
        assert_eq!(accounts[0].password2, Password::File("/p2".into()));
        assert_eq!(accounts[1].password1, Password::Env("BOB".into()));
        assert_eq!(
            accounts[1].extra,
            ["--folder", "INBOX", "--exclude", "^Trash"]
        );
        assert_eq!(bad.iter().map(|b| b.line).collect::<Vec<_>>(), [5, 6]);
    }

    #[test]
    fn each_phase_gets_its_own_options_with_their_values() {
        let extra: Vec<String> = "--port1 993 --tls1 --port2 143 --tls2 none --delete2 \
            --maxage 30 --exclude ^Trash"
            .split_whitespace()
            .map(String::from)
            .collect();
        assert_eq!(
            options_for(&extra, "pull").unwrap(),
            [
                "--port1",
                "993",
                "--tls1",
                "--maxage",
                "30",
                "--exclude",
                "^Trash"
            ]
        );
        assert_eq!(
            options_for(&extra, "push").unwrap(),
            [
                "--port2",
                "143",
                "--tls2",
                "none",
                "--delete2",
                "--exclude",
                "^Trash"
            ]
        );
        assert!(options_for(&["--nonsense".into()], "pull").is_err());
    }

    #[test]
    fn shards_depend_on_the_account_only_and_cover_every_row_once() {
        let text: String = (0..60)
            .map(|i| format!("h{};u{i};p;t;u;p;\n", i % 3))
            .collect();
        let (accounts, _) = parse(&text);
        let mut seen = vec![0; accounts.len()];
        for k in 0..3 {
            for (i, a) in accounts.iter().enumerate() {
                if a.shard(3) == k {
                    seen[i] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&n| n == 1));
        let (reordered, _) = parse(&text.lines().rev().collect::<Vec<_>>().join("\n"));
        let shard_of = |a: &Account| (a.user1.clone(), a.shard(3));
        let mut x: Vec<_> = accounts.iter().map(shard_of).collect();
        let mut y: Vec<_> = reordered.iter().map(shard_of).collect();
        x.sort();
        y.sort();
        assert_eq!(x, y);
        assert_ne!(accounts[0].name(), accounts[1].name());
    }
}
