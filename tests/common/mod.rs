//! Shared integration-test harness: throwaway Dovecot servers ([`dovecot`]) and, as other IMAP
//! implementations, pymap ([`pymap`]) and hoodiecrow ([`hoodiecrow`]), all behind one trait
//! ([`server::TestServer`]); a deterministic test account ([`corpus`]), a TCP fault proxy
//! ([`proxy`]) and helpers to seed a server and read it back over IMAP.
//!
//! Use from a test file with `mod common;` and `use common::*;`.

// Each test binary uses a different subset of the harness.
#![allow(dead_code, unused_imports)]

pub mod bundle;
pub mod corpus;
pub mod dovecot;
pub mod fleet;
pub mod hoodiecrow;
pub mod host2;
pub mod hostile;
pub mod imap;
pub mod oauth;
pub mod offline;
pub mod provider;
pub mod proxy;
pub mod pymap;
pub mod raw;
pub mod run;
pub mod server;

pub use corpus::{Corpus, CorpusMessage};
pub use dovecot::{Dovecot, DovecotConfig, NamespaceStyle, TlsSetup, Traffic};
pub use hoodiecrow::Hoodiecrow;
pub use imap::{
    assert_server_matches_corpus, client_of, endpoint, endpoint_of, imap_client,
    internaldate_to_unix, messages_of, seed, seed_server, server_messages, ServerMessage,
};
pub use proxy::{Affects, Faults, Proxy};
pub use pymap::{Pymap, PymapBackend};
pub use server::{ServerKind, TestServer, Via};

/// Panic unless `program` runs (`program ARG` exits 0): a tool scripts/test installs is part of
/// the suite, so a test that needs it fails when it is missing instead of passing without
/// having run.
pub fn require_tool(program: &str, arg: &str, package: &str) {
    let runs = std::process::Command::new(program)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        runs,
        "{program} is not installed: scripts/test installs it (apt-get install {package})"
    );
}
