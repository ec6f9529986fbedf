//! The IMAP wire layer: connection (plain, STARTTLS, implicit TLS), authentication, pipelined
//! commands, response framing and parsing, modified UTF-7 and mailbox-name quoting.
//!
//! We own this layer (instead of using the `imap` crate) because imapferry needs pipelining,
//! non-synchronizing literals (LITERAL+), MULTIAPPEND and, later, COMPRESS. Responses are framed
//! here (lines plus literals, one response at a time so memory does not grow with a batch) and
//! parsed with `imap-proto`.

use std::sync::atomic::{AtomicU8, Ordering};

/// Wire-level verbosity: 0 quiet, 1 info, 2 every command sent and every untagged line head,
/// 3 also unparseable responses in full. Set once from the CLI (`-v`).
pub static VERBOSE: AtomicU8 = AtomicU8::new(0);

/// Set the wire-level verbosity (see [`VERBOSE`]).
pub fn set_verbosity(level: u8) {
    VERBOSE.store(level, Ordering::Relaxed);
}

/// Current wire-level verbosity.
pub fn verbosity() -> u8 {
    VERBOSE.load(Ordering::Relaxed)
}

/// Print to stderr when the verbosity is at least `$lvl`. Callers must never pass secrets.
macro_rules! wire_log {
    ($lvl:expr, $($arg:tt)*) => {
        if $crate::imap::verbosity() >= $lvl {
            eprintln!("imap: {}", format_args!($($arg)*));
        }
    };
}

mod auth;
pub mod client;
pub mod conn;
pub mod quote;
pub mod response;
pub mod uidset;
pub mod utf7;

pub use client::{AppendMessage, AppendOutcome, Client, Fetched, MailboxInfo, Namespace, Selected};
pub use conn::{Endpoint, Secret, TlsMode};
