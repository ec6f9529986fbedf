//! The run log: every line a run shows, and its `-v` detail whatever the verbosity, with the
//! time, in a file of the store (`logs/`, see docs/store-format.md), like imapsync's
//! `LOG_imapsync/`. Written by [`crate::ui`]; passwords never reach it (no message carries one).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

/// The open log.
static LOG: Mutex<Option<Log<File>>> = Mutex::new(None);

/// The command a log is named after when it is not the engine's own (`sync`, which is a pull
/// and a push in one log).
static COMMAND: Mutex<Option<&'static str>> = Mutex::new(None);

/// Name the logs this process starts after `command` (`sync`) rather than the engine.
pub fn set_command(command: &'static str) {
    *COMMAND.lock().unwrap_or_else(|e| e.into_inner()) = Some(command);
}

/// The path of the log being written, if any.
pub fn path() -> Option<PathBuf> {
    let guard = LOG.lock().unwrap_or_else(|e| e.into_inner());
    guard.as_ref().map(|log| log.path.clone())
}

/// The most one run log holds: past it the log says where it was cut and takes no more lines
/// (stderr still shows them, `--json` still lists every failure). A run of two million failing
/// messages wrote 242 MB before.
pub const CAP: u64 = 16 << 20;

/// A run log being written (its store directory and path), and how much of its cap it used.
struct Log<W> {
    dir: PathBuf,
    path: PathBuf,
    out: W,
    written: u64,
    cut: bool,
}

impl<W: Write> Log<W> {
    /// Append `line` (and its line end) if it fits under `cap`; else, once, the line saying
    /// the log was cut there.
    fn append(&mut self, line: &str, cap: u64) {
        if self.cut {
            return;
        }
        let len = line.len() as u64 + 1;
        // A full disk must not stop the run: the screen still shows everything.
        if self.written + len <= cap {
            if writeln!(self.out, "{line}").is_ok() {
                self.written += len;
            }
            return;
        }
        self.cut = true;
        let _ = writeln!(
            self.out,
            "run log cut here: it reached its cap of {} MiB; later lines are on stderr only (and \
             every failure in the --json report)",
            cap >> 20
        );
    }
}

/// Log files kept per store: the oldest beyond this are removed when a run starts.
const KEEP: usize = 100;

/// Start logging this run of `command` into `dir/logs/`; returns the file's path. A process
/// that already logs into this store's `logs/` (a `sync`: its pull, then its push) goes on in
/// the same file.
pub fn start(dir: &Path, command: &str) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let open_here = {
        let guard = LOG.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|log| log.dir == dir)
            .map(|log| log.path.clone())
    };
    if let Some(path) = open_here {
        write(&format!("imapferry {command}"));
        return Ok(path);
    }
    let named = *COMMAND.lock().unwrap_or_else(|e| e.into_inner());
    let first = named.unwrap_or(command);
    let logs = dir.join("logs");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&logs)
        .with_context(|| format!("cannot create {}", logs.display()))?;
    prune(&logs);
    let now = crate::clock::now();
    let digits: String = crate::mailtime::format_utc(now)
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let name = format!(
        "{}T{}Z-{first}-{}.log",
        &digits[..8],
        &digits[8..14],
        std::process::id()
    );
    let path = logs.join(name);
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    *LOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(Log {
        dir: dir.to_path_buf(),
        path: path.clone(),
        out: file,
        written: 0,
        cut: false,
    });
    write(&format!("imapferry {} {first}", env!("CARGO_PKG_VERSION")));
    if first != command {
        write(&format!("imapferry {command}"));
    }
    Ok(path)
}

/// Append `line` with the time, escaped ([`crate::text::printable_lines`]: the log is read on
/// a terminal too; a caller's line breaks are kept).
pub fn write(line: &str) {
    let mut guard = LOG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(log) = guard.as_mut() {
        let t = crate::mailtime::format_utc(crate::clock::now());
        let line = crate::text::printable_lines(line);
        log.append(&format!("{t} {line}"), CAP);
    }
}

/// Remove the oldest logs so that at most [`KEEP`] - 1 remain before a new one.
fn prune(logs: &Path) {
    let Ok(entries) = std::fs::read_dir(logs) else {
        return;
    };
    let mut names: Vec<PathBuf> = entries
        .flatten()
        // Only the store's own files (a link is never followed: see `store::layout`).
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    if names.len() < KEEP {
        return;
    }
    names.sort();
    for old in &names[..names.len() + 1 - KEEP] {
        let _ = std::fs::remove_file(old);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(count: usize, cap: u64) -> String {
        let mut log = Log {
            dir: PathBuf::new(),
            path: PathBuf::new(),
            out: Vec::new(),
            written: 0,
            cut: false,
        };
        for i in 0..count {
            log.append(&format!("line {i:04}"), cap);
        }
        String::from_utf8(log.out).unwrap()
    }

    #[test]
    fn a_log_past_its_cap_says_where_it_was_cut_and_takes_no_more() {
        // Ten lines of 10 bytes fit in 100.
        let text = written(1000, 100);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 11, "{text}");
        assert_eq!(lines[9], "line 0009");
        assert!(lines[10].starts_with("run log cut here"), "{text}");
        assert_eq!(written(1000, CAP).lines().count(), 1000);
    }
}
