//! imapferry: move whole IMAP mailboxes from one server to another in two resumable phases,
//! through a local, verifiable store.
//!
//! - [`imap`]: the wire protocol (connection, TLS, auth, pipelining, parsing, modified UTF-7).
//! - [`store`]: content-addressed objects and the SQLite index (spec: `docs/store-format.md`).
//! - [`pull`]: host1 → store.
//! - [`push`]: store → host2; [`check`]: host2 compared with the store.
//! - [`compare`]: a host2 mailbox compared with the store, for push and check.
//! - [`mailbox`]: the seam between the engines and a server (network or memory); [`run`]: the
//!   connector, the retry loop, the job pool and failures, shared by the engines.
//! - [`names`], [`mailtime`], [`folders`]: typed names, dates and folder selection.
//! - Offline: [`bundle`] (store → files → store), [`export`] and [`import`] (Maildir, mbox;
//!   helpers [`maildir`], [`mbox`]), [`verify`] (and gc), [`status`].
//! - [`budget`]: daily byte budgets (a provider's quota as a schedule, not a failure).
//! - [`ui`], [`text`], [`clock`]: what people see, and the clock; [`secret`]: password and
//!   token files.
//!
//! [`stdio`] writes stdout and stderr (a reader that goes away is not an error).
//!
//! The command line (clap's definitions, exit statuses) is the program's, not the library's:
//! the library takes typed options and returns reports.

// stdout and stderr only through `stdio`, which escapes what it writes (a name or a text a
// server, a bundle or a file chose reaches no terminal raw) and survives a reader that went
// away: the print macros do neither.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod budget;
pub mod bundle;
pub mod check;
pub mod clock;
pub mod compare;
pub mod export;
pub mod flags;
pub mod folders;
pub mod imap;
pub mod import;
pub mod mailbox;
pub mod maildir;
pub mod mailtime;
pub mod mbox;
pub mod names;
pub mod provider;
pub mod pull;
pub mod push;
pub mod run;
pub mod runlog;
pub mod secret;
pub mod status;
pub mod stdio;
pub mod store;
pub mod text;
pub mod ui;
pub mod verify;
