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

/// A run under an address-space cap, and what it took.
pub struct Capped {
    pub run: Run,
    pub seconds: f64,
    /// The highest resident size (VmHWM) seen while it ran, sampled every 2 ms.
    pub peak_rss: u64,
}

/// `imapferry ARGS…` under `prlimit --as=CAP` (the whole address space, so a run that tries to
/// hold more than CAP fails instead of growing).
pub fn run_capped(cap: u64, args: &[&str]) -> Capped {
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, err) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let started = std::time::Instant::now();
    let mut child = std::process::Command::new("prlimit")
        .arg(format!("--as={cap}"))
        .arg("--")
        .arg(super::run::binary())
        .args(args)
        .env_remove("IMAPFERRY_PASSWORD1")
        .env_remove("IMAPFERRY_PASSWORD2")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out).expect("stdout file"))
        .stderr(std::fs::File::create(&err).expect("stderr file"))
        .spawn()
        .expect("run prlimit (util-linux)");
    let mut peak_rss = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        // prlimit execs imapferry: same pid. VmHWM only grows, so the last sample is close.
        if let Some(kb) = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .ok()
            .and_then(|s| {
                let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_string();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
        {
            peak_rss = peak_rss.max(kb * 1024);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Capped {
        run: Run {
            code: status.code().unwrap_or(-1),
            stdout: read(&out),
            stderr: read(&err),
        },
        seconds: started.elapsed().as_secs_f64(),
        peak_rss,
    }
}

/// Copy `from` into `to` (which must not exist), preserving mtimes.
pub fn copy_tree(from: &Path, to: &Path) {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}
