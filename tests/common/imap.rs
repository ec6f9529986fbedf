//! IMAP helpers on top of the crate's own client: connect to any [`TestServer`] (a [`Dovecot`]
//! account included), seed it with a [`Corpus`], and read everything back as the reference for
//! byte-for-byte comparisons.

use std::collections::BTreeMap;
use std::time::Duration;

use imapferry::imap::{AppendMessage, AppendOutcome, Client, Endpoint, MailboxInfo};
use imapferry::imap::{Secret, TlsMode};
use imapferry::names::Namespace;

use super::corpus::{Corpus, CorpusMessage};
use super::dovecot::Dovecot;
use super::server::TestServer;

/// An [`Endpoint`] for `user` on `d`: 127.0.0.1, the imaps port for [`TlsMode::Imaps`] (the imap
/// port otherwise), the instance's CA file when it has TLS, password auth, 30 s timeout.
pub fn endpoint(d: &Dovecot, user: &str, tls: TlsMode) -> Endpoint {
    let port = match tls {
        TlsMode::Imaps => d.imaps_port(),
        TlsMode::StartTls | TlsMode::None => d.port(),
    };
    let ca_file = match d.config().tls {
        super::dovecot::TlsSetup::SelfSigned => Some(d.ca_file().to_path_buf()),
        super::dovecot::TlsSetup::None => None,
    };
    Endpoint {
        host: "127.0.0.1".to_string(),
        port,
        tls,
        insecure: false,
        ca_file,
        user: user.to_string(),
        authuser: None,
        secret: Secret::Password(d.password(user).to_string()),
        timeout: Duration::from_secs(30),
        compress: true,
        rate_limit: None,
        provider: None,
        pause: Default::default(),
    }
}

/// A plaintext [`Endpoint`] for `server`'s account (127.0.0.1, password auth, 30 s timeout).
pub fn endpoint_of(server: &dyn TestServer) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".to_string(),
        port: server.port(),
        tls: TlsMode::None,
        insecure: false,
        ca_file: None,
        user: server.user().to_string(),
        authuser: None,
        secret: Secret::Password(server.password().to_string()),
        timeout: Duration::from_secs(30),
        compress: true,
        rate_limit: None,
        provider: None,
        pause: Default::default(),
    }
}

/// A logged-in plaintext [`Client`] for `user` on `d`; panics (with the server log) on failure.
pub fn imap_client(d: &Dovecot, user: &str) -> Client {
    client_of(&d.account(user))
}

/// A logged-in plaintext [`Client`] for `server`'s account; panics (with the server log) on
/// failure.
pub fn client_of(server: &dyn TestServer) -> Client {
    Client::connect(&endpoint_of(server)).unwrap_or_else(|e| {
        panic!(
            "cannot log in as {} on {} at 127.0.0.1:{}: {e:#}\n--- server log ---\n{}",
            server.user(),
            server.name(),
            server.port(),
            server.log()
        )
    })
}

/// The server's mailbox name for a corpus folder path (`/`-separated, UTF-8): `INBOX` stays
/// `INBOX`; anything else gets the namespace prefix, the server's separator, and modified UTF-7.
pub fn server_mailbox_name(ns: &Namespace, path: &str) -> String {
    imapferry::names::utf7::encode(&imapferry::names::server_name(path, ns))
}

/// The corpus folder path (UTF-8, `/`-separated, prefix stripped) of a LISTed mailbox.
pub fn folder_path(ns: &Namespace, info: &MailboxInfo) -> String {
    imapferry::names::store_path(&info.name, info.separator, ns)
}

/// Put `corpus` into `user`'s account on `d` (see [`seed_server`]).
pub fn seed(d: &Dovecot, user: &str, corpus: &Corpus) {
    seed_server(&d.account(user), corpus)
}

/// Put `corpus` into `server`'s account: CREATE and SUBSCRIBE every folder (and its ancestors;
/// existing ones are kept, never created again), then APPEND each folder's messages in corpus
/// order with their flags and INTERNALDATE. Panics unless every APPEND succeeds.
pub fn seed_server(server: &dyn TestServer, corpus: &Corpus) {
    let mut client = client_of(server);
    let ns = client.namespace().expect("NAMESPACE");
    let mut existing: Vec<String> = client
        .list()
        .expect("LIST")
        .iter()
        .filter(|m| !m.noselect)
        .map(|m| folder_path(&ns, m))
        .collect();
    for folder in &corpus.folders {
        let parts: Vec<&str> = folder.split('/').collect();
        for depth in 1..=parts.len() {
            let path = parts[..depth].join("/");
            if existing.contains(&path) {
                continue;
            }
            let raw = server_mailbox_name(&ns, &path);
            client
                .create(&raw)
                .unwrap_or_else(|e| panic!("CREATE {raw:?} ({path}): {e:#}"));
            client
                .subscribe(&raw)
                .unwrap_or_else(|e| panic!("SUBSCRIBE {raw:?} ({path}): {e:#}"));
            existing.push(path);
        }
    }
    for (folder, msgs) in corpus.by_folder() {
        let raw = server_mailbox_name(&ns, &folder);
        let appends: Vec<AppendMessage<'_>> = msgs
            .iter()
            .map(|m| AppendMessage {
                flags: &m.flags,
                internaldate: Some(m.internaldate.parse().unwrap()),
                synchronizing: false,
                bytes: &m.bytes,
            })
            .collect();
        let outcomes = client
            .append_many(&raw, &appends)
            .unwrap_or_else(|e| panic!("APPEND to {raw:?} ({folder}): {e:#}"));
        assert_eq!(
            outcomes.len(),
            appends.len(),
            "one outcome per APPEND to {folder}"
        );
        for (i, outcome) in outcomes.iter().enumerate() {
            assert!(
                matches!(outcome, AppendOutcome::Ok { .. }),
                "APPEND #{i} to {folder}: {outcome:?}"
            );
        }
    }
    client.logout().expect("LOGOUT");
}

/// One message as the server holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    pub uid: u32,
    pub bytes: Vec<u8>,
    /// Flags without `\Recent`, sorted.
    pub flags: Vec<String>,
    /// INTERNALDATE exactly as the server sent it (Dovecot reports it in its own time zone).
    pub internaldate: String,
}

/// Every selectable folder of `user` on `d` (see [`messages_of`]).
pub fn server_messages(d: &Dovecot, user: &str) -> BTreeMap<String, Vec<ServerMessage>> {
    messages_of(&d.account(user))
}

/// Every selectable folder of `server`'s account (UTF-8, `/`-joined, prefix stripped) with its
/// messages in UID order, read over IMAP (EXAMINE + `BODY.PEEK[]`, so nothing changes on the
/// server).
pub fn messages_of(server: &dyn TestServer) -> BTreeMap<String, Vec<ServerMessage>> {
    let mut client = client_of(server);
    let ns = client.namespace().expect("NAMESPACE");
    let mut out = BTreeMap::new();
    for mailbox in client.list().expect("LIST") {
        if mailbox.noselect {
            continue;
        }
        let path = folder_path(&ns, &mailbox);
        let selected = client
            .select(&mailbox.raw_name, true)
            .unwrap_or_else(|e| panic!("EXAMINE {:?}: {e:#}", mailbox.raw_name));
        let mut messages = Vec::new();
        if selected.exists > 0 {
            let mut meta: Vec<(u32, u64)> = Vec::new();
            client
                .uid_fetch_meta("1:*", None, &mut |f| {
                    meta.push((f.uid, f.size.unwrap_or(0)));
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("UID FETCH meta in {path}: {e:#}"));
            meta.sort_unstable();
            let uids: Vec<u32> = meta.iter().map(|m| m.0).collect();
            let sizes: Vec<u64> = meta.iter().map(|m| m.1).collect();
            client
                .uid_fetch_bodies(&uids, &sizes, 8 << 20, 4, &mut |f| {
                    let mut flags: Vec<String> = f
                        .flags
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|fl| !fl.eq_ignore_ascii_case("\\Recent"))
                        .collect();
                    flags.sort();
                    messages.push(ServerMessage {
                        uid: f.uid,
                        bytes: f.body.expect("BODY[] in FETCH response"),
                        flags,
                        internaldate: f
                            .internaldate
                            .expect("INTERNALDATE in FETCH response")
                            .expect("a valid INTERNALDATE")
                            .to_string(),
                    });
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("UID FETCH bodies in {path}: {e:#}"));
            messages.sort_by_key(|m| m.uid);
        }
        out.insert(path, messages);
    }
    client.logout().expect("LOGOUT");
    out
}

/// Seconds since the Unix epoch of an IMAP date-time such as `05-Mar-2021 14:03:07 +0100`
/// (also accepts a leading space instead of the day's first digit). Panics on malformed input.
pub fn internaldate_to_unix(s: &str) -> i64 {
    imapferry::mailtime::parse_internaldate(s)
        .unwrap_or_else(|| panic!("malformed INTERNALDATE {s:?}"))
}

/// Assert that `user`'s account on `d` holds exactly `corpus`: every corpus folder exists with
/// the same messages in the same order (bytes, flags, and INTERNALDATE as an instant), and
/// every other selectable folder on the server is empty.
pub fn assert_server_matches_corpus(d: &Dovecot, user: &str, corpus: &Corpus) {
    let server = server_messages(d, user);
    let expected = corpus.by_folder();
    for folder in &corpus.folders {
        assert!(
            server.contains_key(folder),
            "folder {folder:?} missing on the server; has {:?}",
            server.keys().collect::<Vec<_>>()
        );
    }
    for (folder, msgs) in &server {
        let want: &[&CorpusMessage] = expected.get(folder).map(|v| v.as_slice()).unwrap_or(&[]);
        assert_eq!(msgs.len(), want.len(), "message count in {folder:?}");
        for (i, (got, want)) in msgs.iter().zip(want).enumerate() {
            assert!(
                got.bytes == want.bytes,
                "{folder:?} #{i} (uid {}): bytes differ ({} vs {} expected)",
                got.uid,
                got.bytes.len(),
                want.bytes.len()
            );
            let mut want_flags = want.flags.clone();
            want_flags.sort();
            assert_eq!(
                got.flags, want_flags,
                "{folder:?} #{i} (uid {}): flags",
                got.uid
            );
            assert_eq!(
                internaldate_to_unix(&got.internaldate),
                internaldate_to_unix(&want.internaldate),
                "{folder:?} #{i} (uid {}): INTERNALDATE {:?} vs {:?}",
                got.uid,
                got.internaldate,
                want.internaldate
            );
        }
    }
}
