//! imapferry: move whole IMAP mailboxes from one server to another in two resumable phases,
//! through a local, verifiable store.

pub mod imap;
pub mod store;
