//! The IMAP wire layer: connection (plain, STARTTLS, implicit TLS), authentication, pipelined
//! commands, response framing and parsing, modified UTF-7 and mailbox-name quoting.
//!
//! We own this layer (instead of using the `imap` crate) because imapferry needs pipelining,
//! non-synchronizing literals (LITERAL+), MULTIAPPEND and, later, COMPRESS. Responses are framed
//! here (lines plus literals, one response at a time so memory does not grow with a batch) and
//! parsed with `imap-proto`.

pub mod client;
pub mod conn;
pub mod quote;
pub mod response;
pub mod utf7;

pub use client::{AppendMessage, AppendOutcome, Client, Fetched, MailboxInfo, Namespace, Selected};
pub use conn::{Endpoint, Secret, TlsMode};
