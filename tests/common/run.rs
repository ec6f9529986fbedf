//! Running the built `imapferry` binary against a test server (any [`TestServer`]), and reading
//! a store back.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use imapferry::store::Store;

use super::dovecot::Dovecot;
use super::server::TestServer;

/// What one run of the binary did.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The `--json` summary on stdout.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Everything the run printed, stdout (its summary) then stderr (progress, diagnostics).
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Panic with the output unless the exit status is `code`.
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit status {} (wanted {code})\nstdout:\n{}\nstderr:\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// The binary under test: `$IMAPFERRY_TEST_BIN` when set (to show a test failing against an
/// earlier build), else Cargo's for integration tests, else `$IMAPFERRY_BIN` (the examples).
pub fn binary() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("IMAPFERRY_TEST_BIN") {
        return p.into();
    }
    match option_env!("CARGO_BIN_EXE_imapferry") {
        Some(p) => p.into(),
        None => std::env::var_os("IMAPFERRY_BIN")
            .unwrap_or_else(|| "target/release/imapferry".into())
            .into(),
    }
}

/// The `imapferry` binary with no password variables inherited from the caller.
pub fn imapferry() -> Command {
    let mut c = Command::new(binary());
    c.env_remove("IMAPFERRY_PASSWORD1")
        .env_remove("IMAPFERRY_PASSWORD2")
        .stdin(std::process::Stdio::null());
    c
}

/// `imapferry pull` from `server` (plaintext on loopback) as `user` into `store`, with `--json`
/// and any `extra` arguments.
pub fn pull_command(server: &Dovecot, user: &str, store: &Path, extra: &[&str]) -> Command {
    pull_command_via(server.port(), server, user, store, extra)
}

/// Like [`pull_command`], connecting to 127.0.0.1:`port` (a proxy in front of `server`).
pub fn pull_command_via(
    port: u16,
    server: &Dovecot,
    user: &str,
    store: &Path,
    extra: &[&str],
) -> Command {
    let mut c = imapferry();
    c.arg("pull")
        .args(["--host1", "127.0.0.1", "--port1"])
        .arg(port.to_string())
        .args(["--tls1", "none", "--user1", user, "--store"])
        .arg(store)
        .arg("--json")
        .args(extra)
        .env("IMAPFERRY_PASSWORD1", server.password(user));
    c
}

/// Run a pull through 127.0.0.1:`port` and return what it did.
pub fn pull_via(port: u16, server: &Dovecot, user: &str, store: &Path, extra: &[&str]) -> Run {
    pull_command_via(port, server, user, store, extra)
        .output()
        .expect("run imapferry")
        .into()
}

/// Run a pull and return what it did.
pub fn pull(server: &Dovecot, user: &str, store: &Path, extra: &[&str]) -> Run {
    pull_command(server, user, store, extra)
        .output()
        .expect("run imapferry")
        .into()
}

/// `imapferry VERB` (`pull`, `push` or `check`) against `server`'s account (plaintext loopback),
/// with `store`, `--json` and any `extra` arguments: host1 options for `pull`, host2 options
/// otherwise.
pub fn command_for(verb: &str, server: &dyn TestServer, store: &Path, extra: &[&str]) -> Command {
    let n = if verb == "pull" { "1" } else { "2" };
    let mut c = imapferry();
    c.arg(verb)
        .args([
            format!("--host{n}"),
            "127.0.0.1".into(),
            format!("--port{n}"),
        ])
        .arg(server.port().to_string())
        .args([format!("--tls{n}"), "none".into(), format!("--user{n}")])
        .arg(server.user())
        .arg("--store")
        .arg(store)
        .arg("--json")
        .args(extra)
        .env(format!("IMAPFERRY_PASSWORD{n}"), server.password());
    c
}

/// Run [`command_for`] to completion.
pub fn run_against(verb: &str, server: &dyn TestServer, store: &Path, extra: &[&str]) -> Run {
    command_for(verb, server, store, extra)
        .output()
        .expect("run imapferry")
        .into()
}

/// A store in a new temporary directory, pulled from `server`'s `alice` (exit status 0). Keep
/// the directory alive as long as the store is used.
pub fn pulled_store(server: &Dovecot) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = dir.path().join("store");
    pull(server, "alice", &store, &[]).expect_code(0);
    (dir, store)
}

/// One message as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub uid: u32,
    pub bytes: Vec<u8>,
    pub flags: Vec<String>,
    pub internaldate: String,
}

/// Every live message of every folder not gone, by store path, ordered by UID; bodies read back
/// (and hash-verified) from the objects.
pub fn store_messages(dir: &Path) -> BTreeMap<String, Vec<StoredMessage>> {
    let store = Store::open_existing(dir).expect("open store");
    let mut out = BTreeMap::new();
    for folder in store.index.folders().expect("folders") {
        if folder.gone_at.is_some() {
            continue;
        }
        let Some(uv) = folder.state.uidvalidity else {
            out.insert(folder.path, Vec::new());
            continue;
        };
        let msgs = store
            .index
            .live_messages(folder.id, uv)
            .expect("messages")
            .into_iter()
            .map(|m| StoredMessage {
                uid: m.uid,
                bytes: store.objects.read(&m.hash, m.size).expect("object"),
                flags: m.flags,
                internaldate: m.internaldate,
            })
            .collect();
        out.insert(folder.path, msgs);
    }
    out
}

/// Assert the store holds exactly what `user` on `server` serves (see [`assert_store_matches`]).
pub fn assert_store_matches_server(store: &Path, server: &Dovecot, user: &str) {
    assert_store_matches(store, &server.account(user))
}

/// Assert the store holds exactly what `server`'s account serves: same folders, same UIDs,
/// identical bytes, same flags (as a set) and the same INTERNALDATE string.
pub fn assert_store_matches(store: &Path, server: &dyn TestServer) {
    let want = super::imap::messages_of(server);
    let got = store_messages(store);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "folders differ"
    );
    for (folder, msgs) in &want {
        let stored = &got[folder];
        assert_eq!(stored.len(), msgs.len(), "message count in {folder}");
        for (s, w) in stored.iter().zip(msgs) {
            assert_eq!(s.uid, w.uid, "UIDs in {folder}");
            assert!(
                s.bytes == w.bytes,
                "{folder} UID {}: stored bytes differ from the server's",
                s.uid
            );
            let mut flags = s.flags.clone();
            flags.sort();
            assert_eq!(flags, w.flags, "{folder} UID {} flags", s.uid);
            assert_eq!(
                s.internaldate, w.internaldate,
                "{folder} UID {} date",
                s.uid
            );
        }
    }
}

/// As if a day had passed for the store's daily budgets: every `transfer_log` row moves 24 hours
/// and a minute back.
pub fn a_day_later(store: &Path) {
    let conn = rusqlite::Connection::open(store.join("index.sqlite")).expect("open index");
    conn.execute(
        "UPDATE transfer_log SET at = at - ?1",
        [imapferry::budget::WINDOW_SECS + 60],
    )
    .expect("rewind transfer_log");
}

/// Run `cmd` to completion, or kill it after `limit` and panic naming what it printed so far: a
/// run that hangs fails its test instead of hanging the suite.
pub fn output_within(cmd: &mut Command, limit: std::time::Duration) -> Run {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("run imapferry");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    let run = Run {
        code: status.and_then(|s| s.code()).unwrap_or(-1),
        stdout: read(&out),
        stderr: read(&err),
    };
    assert!(
        status.is_some(),
        "still running after {limit:?} (killed)\nstdout:\n{}\nstderr:\n{}",
        run.stdout,
        run.stderr
    );
    run
}
