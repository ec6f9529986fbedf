//! The IMAP wire layer: connection (plain, STARTTLS, implicit TLS), authentication, pipelined
//! commands, response framing and parsing, modified UTF-7 and mailbox-name quoting.
//!
//! We own this layer (instead of using the `imap` crate) because imapferry needs pipelining,
//! non-synchronizing literals (LITERAL+), COMPRESS=DEFLATE, a rate cap and errors that tell
//! transient failures from permanent ones ([`is_transient`]). Responses are framed
//! here (lines plus literals, one response at a time so memory does not grow with a batch) and
//! parsed with `imap-proto`.

/// Print to stderr when the user asked for detail: level 1 (server alerts, skipped responses)
/// with `-v`, level 2 (every command sent and every response head) with `-vv`. Callers must
/// never pass secrets.
macro_rules! wire_log {
    ($lvl:expr, $($arg:tt)*) => {
        if $crate::ui::verbosity() > $lvl {
            eprintln!("imap: {}", format_args!($($arg)*));
        }
    };
}

pub mod atom;
mod auth;
pub mod client;
pub mod conn;
mod deflate;
pub mod error;
pub mod quote;
pub mod ratelimit;
pub mod response;
pub mod uidset;
pub mod utf7;

pub use client::{
    body_margin, AppendMessage, AppendOutcome, Client, ConnectOptions, Fetched, FlagOp,
    MailboxInfo, Namespace, Refusal, Selected,
};
pub use conn::{Endpoint, Secret, TlsMode, Traffic};
pub use error::{is_protocol, is_transient, ErrorKind, WireError};
pub use ratelimit::RateLimit;
pub use response::MailboxStatus;

/// Flags without `\Recent`: a session flag, never stored or copied.
pub fn without_recent(flags: &[String]) -> Vec<String> {
    flags
        .iter()
        .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
        .cloned()
        .collect()
}
