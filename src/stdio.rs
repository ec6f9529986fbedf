//! stdout and stderr, written one way by every command (`print!` and `eprint!` are refused by
//! clippy everywhere else: they panic when the reader has gone, and they print what they are
//! given as it is).
//!
//! Everything written here is shown through [`crate::text::printable`] first, line by line
//! (line breaks kept): a name or a text a server, a bundle or a file chose reaches no terminal
//! raw, whatever the caller did (escaping twice changes nothing). JSON is escaped before, as
//! JSON (`crate::ui::print_json`), so it stays valid.
//!
//! A reader that goes away early (`imapferry status | head`, `imapferry push … 2>&1 | head`) is
//! not an error. What was meant for it is dropped without a word (the run log keeps every line
//! of a pull or push) and the command finishes with the exit status it would have had: 0 when
//! all was done, as ripgrep exits when its reader leaves, but never a 0 for a run that failed,
//! and a migration is never cut short by a closed terminal pipe. Any other failure to write
//! the result (a full disk under `> result.json`) ends the run with exit status 1, naming it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// stdout's reader has gone: nothing more is written there.
static OUT_GONE: AtomicBool = AtomicBool::new(false);
/// stderr's reader has gone (or stderr cannot be written at all).
static ERR_GONE: AtomicBool = AtomicBool::new(false);
/// The first error writing to stdout other than a closed pipe.
static OUT_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// `text` with every line [`crate::text::printable`] (its line breaks kept).
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c != '\n' && crate::text::needs_escape(c))
    {
        return std::borrow::Cow::Borrowed(text);
    }
    let lines: Vec<_> = text.split('\n').map(crate::text::printable).collect();
    std::borrow::Cow::Owned(lines.join("\n"))
}

/// `text` and a line end on stdout (a command's result).
pub fn out(text: &str) {
    write_out(text, "\n");
}

/// `text` on stdout as it is (it ends its own lines).
pub fn out_raw(text: &str) {
    write_out(text, "");
}

/// `text` and a line end on stderr (progress and diagnostics).
pub fn err(text: &str) {
    if ERR_GONE.load(Ordering::Relaxed) {
        return;
    }
    let text = shown(text);
    let mut e = std::io::stderr().lock();
    if e.write_all(text.as_bytes())
        .and_then(|()| e.write_all(b"\n"))
        .is_err()
    {
        // A closed pipe or worse: nothing can be said about it there, and the run log has it.
        ERR_GONE.store(true, Ordering::Relaxed);
    }
}

fn write_out(text: &str, end: &str) {
    if OUT_GONE.load(Ordering::Relaxed) {
        return;
    }
    let text = shown(text);
    let mut o = std::io::stdout().lock();
    let written = o
        .write_all(text.as_bytes())
        .and_then(|()| o.write_all(end.as_bytes()))
        .and_then(|()| o.flush());
    if let Err(e) = written {
        OUT_GONE.store(true, Ordering::Relaxed);
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            let mut first = OUT_ERROR.lock().unwrap_or_else(|e| e.into_inner());
            first.get_or_insert_with(|| format!("cannot write the result to stdout: {e}"));
        }
    }
}

/// Why the result could not be written to stdout, when it was not its reader going away.
pub fn out_error() -> Option<String> {
    OUT_ERROR.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
