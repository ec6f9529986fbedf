//! The one place that decides the exit status, from what a command ended with:
//!
//! | status | meaning |
//! |---|---|
//! | 0 | everything asked for was done |
//! | 1 | an error stopped the run (printed) |
//! | 2 | bad usage: the command line or an option's value (printed, with the fix) |
//! | 3 | the run finished, but something could not be done; each item is listed |

use std::process::ExitCode;

use imapferry::run::Failure;
use imapferry::ui;

/// How a command ended, when it ended without an error.
#[derive(Debug)]
pub enum Outcome {
    /// Everything was done.
    Done,
    /// The run finished; some messages, folders or files could not be done (already listed).
    Incomplete,
    /// The command line or an option's value is wrong: the message says which option fixes it.
    Usage(String),
}

impl Outcome {
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
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Incomplete) => ExitCode::from(3),
        Ok(Outcome::Usage(msg)) => {
            eprintln!("error: {}", ui::printable(&msg));
            ExitCode::from(2)
        }
        Err(e) => {
            // An error may quote a name a server, a bundle or a file chose.
            eprintln!("error: {}", ui::printable(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

/// Every message or folder that could not be moved, on stderr: nothing fails silently.
pub fn print_failures(failures: &[Failure]) {
    print_items("failed", failures);
}

/// Every message that was moved but with a remark (stored after a second look, or altered by
/// host2), on stderr, whether or not `--json` also lists them.
pub fn print_warnings(warnings: &[Failure]) {
    print_items("warning", warnings);
}

fn print_items(kind: &str, items: &[Failure]) {
    for f in items {
        let (folder, reason) = (ui::printable(&f.folder), ui::printable(&f.reason));
        match f.uid {
            Some(uid) => eprintln!("{kind}: {folder} UID {uid}: {reason}"),
            None => eprintln!("{kind}: {folder}: {reason}"),
        }
    }
}
