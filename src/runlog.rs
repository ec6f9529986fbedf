//! The run log: every line a run shows, and its `-v` detail whatever the verbosity, with the
//! time, in a file of the store (`logs/`, see docs/store-format.md), like imapsync's
//! `LOG_imapsync/`. Written by [`crate::ui`]; passwords never reach it (no message carries one).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

/// The open log: its store directory, its path and the file.
static LOG: Mutex<Option<(PathBuf, PathBuf, File)>> = Mutex::new(None);

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
    guard.as_ref().map(|(_, path, _)| path.clone())
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
            .filter(|(d, _, _)| d == dir)
            .map(|(_, p, _)| p.clone())
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
    *LOG.lock().unwrap_or_else(|e| e.into_inner()) = Some((dir.to_path_buf(), path.clone(), file));
    write(&format!("imapferry {} {first}", env!("CARGO_PKG_VERSION")));
    if first != command {
        write(&format!("imapferry {command}"));
    }
    Ok(path)
}

/// Append one line (already made printable by the caller), with the time.
pub fn write(line: &str) {
    let mut guard = LOG.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, f)) = guard.as_mut() {
        let t = crate::mailtime::format_utc(crate::clock::now());
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
