//! Helpers for the offline commands (bundle, export, import, verify, gc) and for comparing
//! mail independently of UIDs: a folder's messages as a sorted multiset of (bytes, sorted
//! flags, INTERNALDATE instant).

use std::collections::BTreeMap;
use std::path::Path;

use super::dovecot::Dovecot;
use super::imap::{internaldate_to_unix, messages_of};
use super::run::{imapferry, store_messages, Run};
use super::server::TestServer;

/// Folder → sorted (bytes, sorted flags, INTERNALDATE as Unix time).
pub type Contents = BTreeMap<String, Vec<(Vec<u8>, Vec<String>, i64)>>;

/// `imapferry ARGS…` run to completion.
pub fn run(args: &[&str]) -> Run {
    imapferry()
        .args(args)
        .output()
        .expect("run imapferry")
        .into()
}

/// What `user` on `server` holds, as [`Contents`].
pub fn server_contents(server: &Dovecot, user: &str) -> Contents {
    contents_of(&server.account(user))
}

/// What `server`'s account holds, as [`Contents`].
pub fn contents_of(server: &dyn TestServer) -> Contents {
    messages_of(server)
        .into_iter()
        .map(|(folder, msgs)| {
            let mut v: Vec<_> = msgs
                .into_iter()
                .map(|m| (m.bytes, m.flags, internaldate_to_unix(&m.internaldate)))
                .collect();
            v.sort();
            (folder, v)
        })
        .collect()
}

/// What the store at `dir` holds (live messages of folders not gone), as [`Contents`].
pub fn store_contents(dir: &Path) -> Contents {
    store_messages(dir)
        .into_iter()
        .map(|(folder, msgs)| {
            let mut v: Vec<_> = msgs
                .into_iter()
                .map(|m| {
                    let mut flags = m.flags;
                    flags.sort();
                    (m.bytes, flags, internaldate_to_unix(&m.internaldate))
                })
                .collect();
            v.sort();
            (folder, v)
        })
        .collect()
}

/// Assert two [`Contents`] are equal, naming the first folder that differs.
pub fn assert_same_contents(got: &Contents, want: &Contents, what: &str) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "{what}: folders differ"
    );
    for (folder, w) in want {
        let g = &got[folder];
        assert_eq!(g.len(), w.len(), "{what}: message count in {folder}");
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert!(a.0 == b.0, "{what}: {folder} #{i}: bytes differ");
            assert_eq!(a.1, b.1, "{what}: {folder} #{i}: flags");
            assert_eq!(a.2, b.2, "{what}: {folder} #{i}: INTERNALDATE");
        }
    }
}

/// `imapferry push` of `store` to `host2` as alice (plaintext loopback), with `extra` options.
pub fn push(host2: &Dovecot, store: &Path, extra: &[&str]) -> Run {
    imapferry()
        .arg("push")
        .args(["--host2", "127.0.0.1", "--port2"])
        .arg(host2.port().to_string())
        .args(["--tls2", "none", "--user2", "alice", "--store"])
        .arg(store)
        .args(extra)
        .env("IMAPFERRY_PASSWORD2", host2.password("alice"))
        .output()
        .expect("run imapferry")
        .into()
}

/// Total size of the files whose names start with `name` in `dir` (a bundle and its volumes).
pub fn bundle_size(path: &Path) -> u64 {
    let dir = path.parent().expect("parent");
    let name = path
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(&name))
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}
