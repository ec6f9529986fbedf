//! imapsync's options, answered. The tables of docs/imapsync.md are read from the document
//! itself (embedded at build time): what the command line answers and what the document says
//! are one source. Before clap sees a command line, [`answer`] goes through its long options:
//!
//! - an option the command takes is left to clap (imapsync's **same** ones among them);
//! - an imapsync option that is **not needed** is removed, with its value, and a note says so:
//!   imapsync users paste whole lines;
//! - one that imapferry spells otherwise (**different**) or cannot do (**not supported**) is
//!   refused with the table's note, every one of them in the same run;
//! - any other unknown option is refused too, with a tip only when a close option is safe to
//!   suggest: never one that deletes or lowers security (clap's own suggestions are off).
//!
//! imapsync has no positional arguments, so after one of its options, a next word that does
//! not start with `-` is that option's value.

use std::ffi::OsString;
use std::sync::OnceLock;

/// The document the tables are read from.
const DOC: &str = include_str!("../../docs/imapsync.md");

/// What imapferry does with an imapsync option (the second column of the tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Taken as it is.
    Same,
    /// Covered by another spelling or command, or it means something a little different.
    Different,
    /// imapferry always does this, or its store makes it unnecessary: removed with a note.
    NotNeeded,
    /// imapferry cannot do this.
    NotSupported,
}

/// One row of the tables.
#[derive(Debug)]
pub struct Row {
    /// The imapsync options the row answers, without their dashes.
    pub names: Vec<String>,
    pub verdict: Verdict,
    /// The notes column, as plain text.
    pub note: String,
}

/// Every row of docs/imapsync.md's option tables.
pub fn rows() -> &'static [Row] {
    static ROWS: OnceLock<Vec<Row>> = OnceLock::new();
    ROWS.get_or_init(|| parse(DOC))
}

/// The row answering imapsync's option `name` (without dashes).
pub fn lookup(name: &str) -> Option<&'static Row> {
    rows().iter().find(|r| r.names.iter().any(|n| n == name))
}

/// The table rows of `doc`: lines `| `--a`, `--b` (and `--noa`) | **verdict** | notes |`.
fn parse(doc: &str) -> Vec<Row> {
    doc.lines()
        .filter(|l| l.starts_with("| `--"))
        .filter_map(|l| {
            let cells = cells(l);
            let [names, verdict, note] = cells.as_slice() else {
                return None;
            };
            let verdict = match verdict.trim().trim_matches('*') {
                "same" => Verdict::Same,
                "different" => Verdict::Different,
                "not needed" => Verdict::NotNeeded,
                "not supported" => Verdict::NotSupported,
                _ => return None,
            };
            let names = names
                .split('`')
                .skip(1)
                .step_by(2)
                .filter_map(|n| n.strip_prefix("--"))
                .map(String::from)
                .collect();
            Some(Row {
                names,
                verdict,
                note: plain(note.trim()),
            })
        })
        .collect()
}

/// The cells of a table line, split at `|` not escaped as `\|`.
fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    let mut out = vec![String::new()];
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '|' => out.push(String::new()),
            c => {
                let c = if c == '\\' && chars.peek() == Some(&'|') {
                    chars.next().unwrap_or(c)
                } else {
                    c
                };
                if let Some(s) = out.last_mut() {
                    s.push(c);
                }
            }
        }
    }
    out
}

/// Markdown as text for a terminal: no backticks, no emphasis.
fn plain(md: &str) -> String {
    md.replace("**", "").replace('`', "")
}

/// A long option a command takes, as clap defines it.
#[derive(Debug, Clone)]
pub struct Known {
    pub name: String,
    pub takes_value: bool,
    /// The value may be left out (`--tls1` alone).
    pub optional: bool,
    pub hidden: bool,
}

/// The long options (and their aliases) of `cmd`, `--help` included.
pub fn known_options(cmd: &clap::Command) -> Vec<Known> {
    let mut out = vec![Known {
        name: "help".into(),
        takes_value: false,
        optional: false,
        hidden: false,
    }];
    for a in cmd.get_arguments() {
        let takes_value = a.get_action().takes_values();
        let optional = a.get_num_args().is_some_and(|n| n.min_values() == 0);
        let names = a
            .get_long()
            .into_iter()
            .chain(a.get_all_aliases().unwrap_or_default());
        out.extend(names.map(|n| Known {
            name: n.to_string(),
            takes_value,
            optional,
            hidden: a.is_hide_set(),
        }));
    }
    out
}

/// A command line after [`answer_options`]: the options to give clap, the notes to show, and
/// the options refused (each with its answer).
#[derive(Debug, Default)]
pub struct Answered {
    pub kept: Vec<String>,
    pub notes: Vec<String>,
    pub refused: Vec<String>,
}

/// Go through the options `tokens` given to command `cmd` (named `command` in messages).
pub fn answer_options(cmd: &clap::Command, command: &str, tokens: &[String]) -> Answered {
    let known = known_options(cmd);
    let mut out = Answered::default();
    let mut i = 0;
    while i < tokens.len() {
        let token = &tokens[i];
        i += 1;
        if token == "--" {
            out.kept.extend(tokens[i - 1..].iter().cloned());
            break;
        }
        let Some(option) = token.strip_prefix("--") else {
            out.kept.push(token.clone());
            continue;
        };
        let (name, inline) = match option.split_once('=') {
            Some((n, _)) => (n, true),
            None => (option, false),
        };
        let value_next = |i: usize| !inline && tokens.get(i).is_some_and(|v| !v.starts_with('-'));
        if let Some(k) = known.iter().find(|k| k.name == name) {
            out.kept.push(token.clone());
            // A value may start with `-` (`--regextrans2 's/-//'`); an optional one may not.
            let takes_next = k.takes_value
                && !inline
                && tokens
                    .get(i)
                    .is_some_and(|v| !(k.optional && v.starts_with('-')));
            if takes_next {
                out.kept.push(tokens[i].clone());
                i += 1;
            }
            continue;
        }
        let skip = usize::from(value_next(i));
        match lookup(name) {
            Some(row) if row.verdict == Verdict::NotNeeded => out.notes.push(format!(
                "--{name} is not needed, imapferry always does this (removed): {}",
                row.note
            )),
            Some(row) if row.verdict == Verdict::NotSupported => out
                .refused
                .push(format!("--{name}: not supported: {}", row.note)),
            Some(row) => out.refused.push(format!(
                "--{name}: imapsync's option; in imapferry {command}: {}",
                row.note
            )),
            None => {
                let tip = suggestion(name, &known)
                    .map(|s| format!("; did you mean --{s}?"))
                    .unwrap_or_default();
                out.refused.push(format!(
                    "--{name}: not an option of imapferry {command} (see imapferry {command} \
                     --help){tip}"
                ));
            }
        }
        i += skip;
    }
    out
}

/// Options never offered as a tip for a mistyped one: they delete, lower security, or handle
/// secrets. A person who wants one of them types it.
fn never_suggested(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "delete",
        "expunge",
        "notls",
        "nossl",
        "tls",
        "insecure",
        "password",
        "passfile",
        "showpasswords",
        "sslargs",
        "oauth",
        "rebind",
        "authuser",
        "ca-file",
    ];
    PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The option of `known` closest to the unknown `name`, when it is close and safe to suggest.
fn suggestion<'a>(name: &str, known: &'a [Known]) -> Option<&'a str> {
    known
        .iter()
        .filter(|k| !k.hidden && !never_suggested(&k.name))
        .map(|k| (strsim::normalized_damerau_levenshtein(name, &k.name), k))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.name.as_str())
}

/// The whole command line (`args[0]` the program) with the options of the (sub)command it
/// names answered: (the command line for clap, the notes, the options refused). Only UTF-8
/// options are looked at.
pub fn answer(args: Vec<OsString>) -> (Vec<OsString>, Vec<String>, Vec<String>) {
    use clap::CommandFactory;
    let mut cmd = super::args::Cli::command();
    let mut i = 1;
    let mut path = Vec::new();
    while let Some(word) = args.get(i).and_then(|a| a.to_str()) {
        match cmd.find_subcommand(word) {
            Some(sub) => {
                path.push(word.to_string());
                cmd = sub.clone();
                i += 1;
            }
            None => break,
        }
    }
    let tokens = args[i..]
        .iter()
        .map(|a| a.to_str().map(String::from))
        .collect::<Option<Vec<String>>>();
    let (false, Some(tokens)) = (path.is_empty(), tokens) else {
        return (args, Vec::new(), Vec::new());
    };
    let answered = answer_options(&cmd, &path.join(" "), &tokens);
    let mut out: Vec<OsString> = args[..i].to_vec();
    out.extend(answered.kept.into_iter().map(OsString::from));
    (out, answered.notes, answered.refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn sync_command() -> clap::Command {
        let cli = super::super::args::Cli::command();
        cli.find_subcommand("sync").unwrap().clone()
    }

    fn strings(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn the_tables_of_the_document_are_read_whole() {
        let rows = rows();
        assert!(rows.len() > 150, "{} rows", rows.len());
        for r in rows {
            assert!(!r.names.is_empty() && !r.note.is_empty(), "{r:?}");
        }
        let row = lookup("exclude").unwrap();
        assert_eq!(row.verdict, Verdict::Different);
        assert!(row.note.contains("^Junk$|^Trash(/|$)"), "{}", row.note);
        assert_eq!(lookup("noautomap").unwrap().verdict, Verdict::Same);
        assert!(lookup("host3").is_none());
    }

    /// Every **same** option is one `sync` takes; every **not needed** and **not supported**
    /// one is not (else clap would take it and the answer would never be given).
    #[test]
    fn the_tables_agree_with_what_sync_takes() {
        let known = known_options(&sync_command());
        let takes = |n: &str| known.iter().any(|k| k.name == n);
        for r in rows() {
            for n in &r.names {
                match r.verdict {
                    Verdict::Same => assert!(takes(n), "--{n} is 'same' but sync does not take it"),
                    Verdict::NotNeeded | Verdict::NotSupported => {
                        assert!(!takes(n), "--{n} is {:?} but sync takes it", r.verdict)
                    }
                    Verdict::Different => {}
                }
            }
        }
    }

    #[test]
    fn not_needed_options_go_with_their_values_and_the_others_are_all_refused() {
        let tokens = strings(
            "--host1 a --useheader Message-Id --syncinternaldates --maxsleep 2 \
             --skipsize --folderlast x --dry --tls1 --user1 u --delete1",
        );
        let a = answer_options(&sync_command(), "sync", &tokens);
        assert_eq!(a.kept, strings("--host1 a --dry --tls1 --user1 u"));
        assert_eq!(a.notes.len(), 3, "{:?}", a.notes);
        assert_eq!(a.refused.len(), 3, "{:?}", a.refused);
        assert!(a.refused[0].starts_with("--maxsleep: not supported"));
    }

    #[test]
    fn no_tip_names_an_option_that_deletes_or_lowers_security() {
        let known = known_options(&sync_command());
        for typo in [
            "delete1",
            "delet2",
            "nolog",
            "notl2",
            "insecur1",
            "pidfile",
            "passfil1",
            "tls",
            "nossl",
            "tls2none",
            "paswword1",
            "justconnect",
        ] {
            if let Some(s) = suggestion(typo, &known) {
                assert!(!never_suggested(s), "{typo} -> {s}");
            }
        }
        assert_eq!(suggestion("exlude", &known), Some("exclude"));
        assert_eq!(suggestion("folderr", &known), Some("folder"));
    }
}
