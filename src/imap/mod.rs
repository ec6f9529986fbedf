//! The IMAP wire layer: connection (plain, STARTTLS, implicit TLS), authentication, pipelined
//! commands, response framing and parsing, modified UTF-7 and mailbox-name quoting.
//!
//! We own this layer (instead of using the `imap` crate) because imapferry needs pipelining,
//! non-synchronizing literals (LITERAL+), COMPRESS=DEFLATE, a rate cap and errors that tell
//! transient failures from permanent ones ([`is_transient`]). Responses are framed
//! here (lines plus literals, one response at a time so memory does not grow with a batch) and
//! parsed with `imap-proto`.

use std::sync::atomic::{AtomicU8, Ordering};

/// How much the wire layer logs: 0 nothing, 1 server alerts and skipped responses, 2 and up
/// also every command sent and every response head. Set by the program (`-v`, `-vv`).
static LOG_LEVEL: AtomicU8 = AtomicU8::new(0);

/// Set what the wire layer logs (see [`LOG_LEVEL`]).
pub fn set_log_level(level: u8) {
    LOG_LEVEL.store(level, Ordering::Relaxed);
}

/// What the wire layer logs now.
pub fn log_level() -> u8 {
    LOG_LEVEL.load(Ordering::Relaxed)
}

/// Print to stderr (through [`crate::ui::trace`], escaped) when the log level asks for it:
/// level 1 (server alerts, skipped responses) with `-v`, level 2 (every command sent and every
/// response head) with `-vv`. Callers must never pass secrets.
macro_rules! wire_log {
    ($lvl:expr, $($arg:tt)*) => {
        if $crate::imap::log_level() > $lvl {
            $crate::ui::trace(&format!($($arg)*));
        }
    };
}

mod auth;
pub mod client;
pub mod conn;
mod deflate;
pub mod error;
#[cfg(test)]
mod fuzz;
pub mod oauth2;
pub mod quote;
pub mod ratelimit;
pub mod response;
pub mod slowdown;
pub mod uidset;

pub use client::{
    body_margin, offers_starttls, AppendMessage, AppendOutcome, Client, ConnectOptions, Fetched,
    FlagOp, MailboxInfo, Refusal, SearchKey, Selected,
};
pub use conn::{Endpoint, Secret, TlsMode, Traffic};
pub use error::{
    connect_problem, is_protocol, is_session_expired, is_transient, ConnectProblem, ErrorKind,
    WireError,
};
pub use ratelimit::RateLimit;
pub use response::MailboxStatus;

/// Hears of bytes as they arrive (see [`Client::set_literal_meter`]).
pub type ByteMeter = std::sync::Arc<dyn Fn(u64) + Send + Sync>;

/// Flags without `\Recent`: a session flag, never stored or copied.
pub fn without_recent(flags: &[String]) -> Vec<String> {
    flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .cloned()
        .collect()
}
