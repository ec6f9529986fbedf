//! The run log: every line a run shows, and its `-v` detail whatever the verbosity, with the
//! time, in a file of the store (`logs/`, see docs/store-format.md), like imapsync's
//! `LOG_imapsync/`. Written by [`crate::ui`]; passwords never reach it (no message carries one).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

static LOG: Mutex<Option<File>> = Mutex::new(None);

/// Log files kept per store: the oldest beyond this are removed when a run starts.
const KEEP: usize = 100;

/// Start logging this run of `command` into `dir/logs/`; returns the file's path.
pub fn start(dir: &Path, command: &str) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
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
        "{}T{}Z-{command}-{}.log",
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
    *LOG.lock().unwrap_or_else(|e| e.into_inner()) = Some(file);
    write(&format!(
        "imapferry {} {command}",
        env!("CARGO_PKG_VERSION")
    ));
    Ok(path)
}

/// Append `line` with the time, escaped ([`crate::text::printable_lines`]: the log is read on
/// a terminal too; a caller's line breaks are kept).
pub fn write(line: &str) {
    let mut guard = LOG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = guard.as_mut() {
        let t = crate::mailtime::format_utc(crate::clock::now());
        let line = crate::text::printable_lines(line);
        // A full disk must not stop the run: the screen still shows everything.
        let _ = writeln!(f, "{t} {line}");
    }
}

/// Remove the oldest logs so that at most [`KEEP`] - 1 remain before a new one.
fn prune(logs: &Path) {
    let Ok(entries) = std::fs::read_dir(logs) else {
        return;
    };
    let mut names: Vec<PathBuf> = entries
        .flatten()
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
