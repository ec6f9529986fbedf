//! Ctrl-C (SIGINT) and SIGTERM: the run stops at once, as a kill would (the store is made for
//! that: every write is committed whole or not at all), after one line on the screen and in
//! the run log saying that nothing is lost. The signals are read by a thread of their own
//! (signal-hook), so nothing but setting a flag runs in the signal handler itself.

use std::sync::Once;

/// What an interrupted run says.
pub const INTERRUPTED: &str = "interrupted: run the same command again to resume (nothing is lost)";

/// From now on, SIGINT and SIGTERM print [`INTERRUPTED`], log it, and exit with 128 plus the
/// signal's number (130, 143). Called once the password prompts are over: during a prompt the
/// terminal's echo is off, and a signal's default action leaves it to the shell to restore.
pub fn watch() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
            return;
        };
        std::thread::spawn(move || {
            if let Some(signal) = signals.forever().next() {
                imapferry::runlog::write(INTERRUPTED);
                imapferry::ui::stopped(INTERRUPTED);
                std::process::exit(128 + signal);
            }
        });
    });
}
