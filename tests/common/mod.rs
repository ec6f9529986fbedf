//! Shared integration-test harness: throwaway Dovecot servers ([`dovecot`]), a deterministic
//! test account ([`corpus`]), a TCP fault proxy ([`proxy`]) and helpers to seed a server and
//! read it back over IMAP.
//!
//! Use from a test file with `mod common;` and `use common::*;`.

// Each test binary uses a different subset of the harness.
#![allow(dead_code, unused_imports)]

pub mod bundle;
pub mod corpus;
pub mod dovecot;
pub mod hostile;
pub mod imap;
pub mod offline;
pub mod proxy;
pub mod run;

pub use corpus::{Corpus, CorpusMessage};
pub use dovecot::{Dovecot, DovecotConfig, NamespaceStyle, TlsSetup, Traffic};
pub use imap::{
    assert_server_matches_corpus, endpoint, imap_client, internaldate_to_unix, seed,
    server_messages, ServerMessage,
};
pub use proxy::{Affects, Faults, Proxy};
