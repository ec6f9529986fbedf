//! imapferry: move whole IMAP mailboxes from one server to another in two resumable phases,
//! through a local, verifiable store.
//!
//! - [`imap`]: the wire protocol (connection, TLS, auth, pipelining, parsing, modified UTF-7).
//! - [`store`]: content-addressed objects and the SQLite index (spec: `docs/store-format.md`).
//! - [`pull`]: host1 → store.
//! - [`push`]: store → host2; [`check`]: host2 compared with the store.
//! - [`cli`], [`endpoint`], [`folders`], [`ui`], [`status`]: the command line around them.
//! - Offline ([`cli_offline`]): [`bundle`] (store → files → store), [`export`] and [`import`]
//!   (Maildir, mbox; helpers [`maildir`], [`mbox`], [`mailtime`]), [`verify`] (and gc).

pub mod bundle;
pub mod check;
pub mod cli;
pub mod cli_offline;
pub mod clock;
pub mod compare;
pub mod endpoint;
pub mod export;
pub mod folders;
pub mod imap;
pub mod import;
pub mod mailbox;
pub mod maildir;
pub mod mailtime;
pub mod mbox;
pub mod names;
pub mod pull;
pub mod push;
pub mod run;
pub mod status;
pub mod store;
pub mod ui;
pub mod verify;
