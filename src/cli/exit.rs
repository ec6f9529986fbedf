//! The one place that decides the exit status, from what a command ended with:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | everything asked for was done |
//! | 1 | an error stopped the run (printed) |
//! | 2 | bad usage: the command line or an option's value (printed, with the fix) |
//! | 3 | the run finished, but something could not be done; each item is listed |
//! | 4 | stopped by a daily byte budget (`--max-bytes-per-day1/2`, or the server's own quota, such as Gmail's `BYE Session expired`); nothing is wrong: run again after the time printed (`resume_at` in `--json`) |
//!
//! A reader of stdout or stderr that goes away changes none of these (see `imapferry::stdio`).

use std::process::ExitCode;

use imapferry::budget::{budget_spent, BudgetSpent};
use imapferry::run::stop::StopKind;
use imapferry::run::Failure;
use imapferry::ui;

/// How a command ended, when it ended without an error.
#[derive(Debug)]
pub enum Outcome {
    /// Everything was done.
    Done,
    /// The run finished; some messages, folders or files could not be done (already listed).
    Incomplete,
    /// The run stopped cleanly at a daily byte budget (said in its summary); the next run
    /// after `resume_at` continues.
    /// `None` for a fleet, whose accounts each say when.
    Budget(Option<BudgetSpent>),
}

/// Exit status of a run stopped by a daily byte budget.
pub const BUDGET_STATUS: u8 = 4;

/// The command line or an option's value is wrong (found after parsing: a regex, a file):
/// exit 2. The message says which option fixes it.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// A [`Usage`] error.
pub fn usage(msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(msg.into()))
}

/// An error that stopped the run, with advice: what to change (printed as `hint:`).
#[derive(Debug)]
pub struct Advised {
    pub error: anyhow::Error,
    pub hint: String,
}

impl std::fmt::Display for Advised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for Advised {}

/// The error line, the hint if any, and the exit status of an error that stopped a run.
fn explain(e: &anyhow::Error) -> (String, Option<String>, u8) {
    let text = format!("{e:#}");
    let raw_folder = e
        .chain()
        .any(|c| c.is::<imapferry::folders::RawFolderName>());
    if e.downcast_ref::<Usage>().is_some() || raw_folder {
        return (text, None, 2);
    }
    if budget_spent(e).is_some() {
        return (text, None, BUDGET_STATUS);
    }
    let hint = e.downcast_ref::<Advised>().map(|a| a.hint.clone());
    (text, hint, 1)
}

/// The kind of error that stopped a run (`error_kind` in `--json`).
fn stop_kind(e: &anyhow::Error) -> StopKind {
    if e.downcast_ref::<Usage>().is_some() {
        return StopKind::Usage;
    }
    // Advice wraps the error it advises on (its chain ends there).
    if let Some(a) = e.downcast_ref::<Advised>() {
        return stop_kind(&a.error);
    }
    StopKind::of(e)
}

/// The JSON document of a run that an error stopped (`--json` always prints one).
pub fn error_json(e: &anyhow::Error) -> serde_json::Value {
    let (error, hint, status) = explain(e);
    let kind = stop_kind(e).name();
    // Typed, for scripts and `fleet run`: a problem such as `refused` or `login` is a mistake
    // to fix, not a link to retry; so is an error of kind `usage` or `login`.
    let advised = e.downcast_ref::<Advised>().map(|a| &a.error);
    let problem = imapferry::imap::connect_problem(advised.unwrap_or(e));
    let mut v = serde_json::json!({
        "error": error, "error_kind": kind, "hint": hint, "problem": problem,
        "exit_status": status, "complete": false
    });
    if let Some(b) = budget_spent(e) {
        with_budget(&mut v, b);
    }
    v
}

/// A run's JSON document, with `exit_status` and `resume_at` (and the whole `budget_spent`)
/// when a daily byte budget stopped it.
pub fn with_budget(v: &mut serde_json::Value, b: &BudgetSpent) {
    if let Some(o) = v.as_object_mut() {
        o.insert("exit_status".into(), BUDGET_STATUS.into());
        o.insert("resume_at".into(), b.resume_at_text.clone().into());
        o.insert(
            "budget_spent".into(),
            serde_json::to_value(b).unwrap_or_default(),
        );
    }
}

impl Outcome {
    /// [`Outcome::Incomplete`] when something failed (that comes first: it wants a fix),
    /// else [`Outcome::Budget`] when a daily budget stopped the run, else
    /// [`Outcome::from_complete`].
    pub fn with_budget(failed: bool, budget: Option<BudgetSpent>, complete: bool) -> Outcome {
        match budget {
            Some(b) if !failed => Outcome::Budget(Some(b)),
            _ => Outcome::from_complete(complete && !failed),
        }
    }

    /// [`Outcome::Done`] when `complete`, else [`Outcome::Incomplete`].
    pub fn from_complete(complete: bool) -> Outcome {
        if complete {
            Outcome::Done
        } else {
            Outcome::Incomplete
        }
    }
}

/// The exit status of a command's result (printing the error or the usage message).
pub fn status(result: anyhow::Result<Outcome>) -> ExitCode {
    // A result that could not be written (not a reader that went away: that is no error).
    let result = match (result, imapferry::stdio::out_error()) {
        (Ok(_), Some(e)) => Err(anyhow::anyhow!(e)),
        (r, _) => r,
    };
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Incomplete) => ExitCode::from(3),
        Ok(Outcome::Budget(b)) => {
            // Also on stderr (and in the run log), for `--json` runs and their logs.
            if let Some(b) = b {
                let line = format!("note: {}", ui::printable(&b.to_string()));
                imapferry::runlog::write(&line);
                imapferry::stdio::err(&line);
            }
            ExitCode::from(BUDGET_STATUS)
        }
        Err(e) => {
            let (text, hint, status) = explain(&e);
            // An error may quote a name a server, a bundle or a file chose.
            // A usage error is ours and the command line's (a regex error points under the
            // pattern on its own lines); anything else may quote a server, in one line.
            let shown = match status {
                2 => ui::printable_lines(&text),
                _ => ui::printable(&text).into_owned(),
            };
            let mut lines = vec![format!("error: {shown}")];
            lines.extend(hint.map(|h| format!("hint: {}", ui::printable(&h))));
            for line in lines {
                imapferry::runlog::write(&line);
                imapferry::stdio::err(&line);
            }
            ExitCode::from(status)
        }
    }
}

/// Options the command line cannot take as they are (see [`super::imapsync`]): all of them,
/// each with its answer, and exit 2 before anything is done.
pub fn refused(answers: &[String], json: bool) -> ExitCode {
    let n = answers.len();
    let head = format!(
        "{n} option{} of this command line cannot be taken as {}; nothing was done \
         (docs/imapsync.md answers every imapsync option)",
        if n == 1 { "" } else { "s" },
        if n == 1 { "it is" } else { "they are" }
    );
    imapferry::stdio::err(&format!("error: {head}:"));
    for a in answers {
        imapferry::stdio::err(&format!("  {}", ui::printable(a)));
    }
    if json {
        let text = format!("{head}: {}", answers.join("; "));
        let doc = error_json(&usage(text));
        let _ = imapferry::ui::print_json(&doc);
    }
    ExitCode::from(2)
}

/// A command's final summary, on stdout (progress and diagnostics went to stderr), so that
/// `imapferry verify > report.txt` keeps the result; also in the run log.
pub fn print_summary(text: &str) {
    let text = ui::printable_lines(text);
    imapferry::runlog::write(&text);
    imapferry::stdio::out(&text);
}

/// Failures (or warnings) of one folder listed one by one on stderr and in the run log; the
/// rest of that folder's are counted on one line (`--json` lists every one). A folder of two
/// million failing messages must not write two million lines.
pub const LISTED_PER_FOLDER: usize = 20;

/// Every message or folder that could not be moved, on stderr: nothing fails silently (the
/// first [`LISTED_PER_FOLDER`] of each folder one by one, a count of the rest).
pub fn print_failures(failures: &[Failure]) {
    print_items("failed", "failures", failures);
}

/// Every message that was moved but with a remark (stored after a second look, or altered by
/// host2), on stderr, whether or not `--json` also lists them; as [`print_failures`] does.
pub fn print_warnings(warnings: &[Failure]) {
    print_items("warning", "warnings", warnings);
}

fn print_items(kind: &str, plural: &str, items: &[Failure]) {
    let mut per_folder: std::collections::HashMap<&str, usize> = Default::default();
    let mut folders = Vec::new();
    let say = |line: String| {
        imapferry::runlog::write(&line);
        imapferry::stdio::err(&line);
    };
    for f in items {
        let n = per_folder.entry(&f.folder).or_insert_with(|| {
            folders.push(f.folder.as_str());
            0
        });
        *n += 1;
        if *n > LISTED_PER_FOLDER {
            continue;
        }
        let (folder, reason) = (ui::printable(&f.folder), ui::printable(&f.reason));
        say(match f.uid {
            Some(uid) => format!("{kind}: {folder} UID {uid}: {reason}"),
            None => format!("{kind}: {folder}: {reason}"),
        });
    }
    for folder in folders {
        let n = per_folder[folder];
        if n > LISTED_PER_FOLDER {
            say(format!(
                "{kind}: {}: {} more {plural} not listed here ({n} in this folder; --json lists \
                 every one)",
                ui::printable(folder),
                n - LISTED_PER_FOLDER
            ));
        }
    }
}
