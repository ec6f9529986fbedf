//! What the user sees while a run goes: warnings, info lines, and progress (an indicatif bar on a
//! terminal, plain lines otherwise). Everything goes to stderr so `--json` output on stdout stays
//! clean.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

pub use crate::text::{printable, printable_lines};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// 0 = quiet, 1 = normal, 2 = verbose, 3 = protocol trace.
static VERBOSITY: AtomicU8 = AtomicU8::new(1);

pub fn set_verbosity(level: u8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

pub fn verbosity() -> u8 {
    VERBOSITY.load(Ordering::Relaxed)
}

// Every sink below shows its message through [`printable`]: messages carry folder names and
// server texts, and a terminal must never act on bytes a server chose. A message is one line.

/// Always shown.
pub fn warn(msg: &str) {
    let line = format!("warning: {}", printable(msg));
    crate::runlog::write(&line);
    eprintln!("{line}");
}

/// Shown unless `-q`.
pub fn info(msg: &str) {
    crate::runlog::write(&printable(msg));
    if verbosity() >= 1 {
        eprintln!("{}", printable(msg));
    }
}

/// Shown with `-v`.
pub fn detail(msg: &str) {
    crate::runlog::write(&printable(msg));
    if verbosity() >= 2 {
        eprintln!("{}", printable(msg));
    }
}

/// Progress of one run over several folders.
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar when stderr is a terminal and not quiet; otherwise plain lines from [`Progress::line`].
    pub fn new() -> Progress {
        let bar = (verbosity() >= 1 && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} {wide_msg}\n[{elapsed_precise}] {bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress { bar }
    }

    /// A folder starts: `bytes` more are expected.
    pub fn folder(&self, index: usize, count: usize, path: &str, messages: u64, bytes: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(format!("[{}/{}]", index + 1, count));
                bar.set_message(format!("{}: {messages} messages to fetch", printable(path)));
                bar.inc_length(bytes);
            }
            None if messages > 0 => detail(&format!(
                "[{}/{}] {path}: fetching {messages} messages ({})",
                index + 1,
                count,
                human_bytes(bytes)
            )),
            None => {}
        }
    }

    /// `bytes` more arrived.
    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    /// A line that stays (a finished folder, a failure).
    pub fn line(&self, msg: &str) {
        match &self.bar {
            Some(bar) => {
                crate::runlog::write(&printable(msg));
                bar.println(printable(msg))
            }
            None => info(msg),
        }
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

/// This process's peak resident memory (VmHWM) in bytes, where the OS reports it (Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// `1.5 MB`-style sizes for humans (powers of 1000, like the rates).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_decimal_units() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bytes(52_400_000), "52.4 MB");
    }
}
