//! Hostile input from a server (issue 9): a scripted host1 (tests/common/hostile.rs) sends what
//! a compromised or broken server could, and imapferry must neither run commands on host2, nor
//! grow without bound, nor hang, nor store something other than what was declared without a
//! word.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hostile::{body_of, fetch_response, inbox, Cmd, Folder, Hostile, Msg, Session};
use common::run::{imapferry, store_messages, Run};
use common::*;

/// `imapferry pull` from the scripted server into `store`, one connection, with `extra`.
fn pull_command(server: &Hostile, store: &Path, extra: &[&str]) -> Command {
    let mut c = imapferry();
    c.arg("pull")
        .args(["--host1", "127.0.0.1", "--port1"])
        .arg(server.port().to_string())
        .args(["--tls1", "none", "--user1", "mallory", "--store"])
        .arg(store)
        .args(["--json", "--jobs", "1"])
        .args(extra)
        .env("IMAPFERRY_PASSWORD1", "secret");
    c
}

fn pull(server: &Hostile, store: &Path, extra: &[&str]) -> Run {
    pull_command(server, store, extra)
        .output()
        .expect("run imapferry")
        .into()
}

/// Run `cmd` under an address-space cap of `mib` MiB (prlimit), returning what it did and its
/// wall time.
fn capped(cmd: Command, mib: u64) -> (Run, Duration) {
    let mut c = Command::new("prlimit");
    c.arg(format!("--as={}", mib << 20)).arg("--");
    c.arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    // One malloc arena: glibc reserves 64 MiB of address space per thread arena otherwise.
    c.env("MALLOC_ARENA_MAX", "1");
    c.stdin(std::process::Stdio::null());
    let t = Instant::now();
    let out = c.output().expect("run prlimit");
    (out.into(), t.elapsed())
}

/// The failures of a `--json` report as (folder, uid, reason).
fn failures(run: &Run) -> Vec<(String, Option<u64>, String)> {
    run.json()["failures"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| {
            (
                f["folder"].as_str().unwrap_or("").to_string(),
                f["uid"].as_u64(),
                f["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn hook(
    f: impl Fn(&Cmd, &mut Session) -> std::io::Result<bool> + Send + Sync + 'static,
) -> Option<common::hostile::Override> {
    Some(Arc::new(f))
}

/// Item 1: INTERNALDATE with a line break and a command after it; INTERNALDATE NIL with a
/// command line in the body (which LITERAL+ would send after a BAD); a store row with such a
/// date (an old store, or a bundle). Pull refuses the dates (listed, exit 3), push sends only
/// dates it rendered itself, and host2 runs none of the injected commands.
#[test]
fn a_hostile_host1_cannot_run_commands_on_host2() {
    let injected =
        b"{59}\r\n01-Jan-2025 00:00:00 +0000\r\nX1 DELETE INBOX.Victim\r\nX2 NOOP".to_vec();
    let mut m1 = Msg::new(1, b"Subject: one\r\n\r\nbody one\r\n");
    m1.internaldate = injected;
    let mut m2 = Msg::new(
        2,
        b"Subject: two\r\n\r\nzz9 CREATE INBOX.INJECTED\r\nmore\r\n",
    );
    m2.internaldate = b"NIL".to_vec();
    let m3 = Msg::new(
        3,
        b"Subject: three\r\n\r\nzz8 CREATE INBOX.INJECTED3\r\nzz7 DELETE INBOX.Victim\r\n",
    );
    let server = Hostile::start(inbox(vec![m1, m2, m3]), None);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = pull(&server, &store, &[]).expect_code(3);
    let f = failures(&run);
    assert_eq!(f.len(), 2, "{f:?}");
    assert!(
        f.iter()
            .all(|(folder, _, why)| folder == "INBOX" && why.contains("INTERNALDATE")),
        "{f:?}"
    );
    let uids: Vec<u64> = f.iter().filter_map(|x| x.1).collect();
    assert_eq!(uids, [1, 2]);

    // A store that holds such dates anyway (written by an earlier version, or a hand-made
    // bundle): push must not send them.
    {
        let conn = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
        conn.execute(
            "INSERT INTO messages (folder_id, uidvalidity, uid, hash, size, flags, internaldate,
                                   first_seen, expunged_at, change)
             SELECT folder_id, uidvalidity, 4, hash, size, flags,
                    '01-Jan-2025 00:00:00 +0000\" {0+}' || char(13, 10) || 'X3 DELETE INBOX.Victim',
                    first_seen, NULL, change + 1000 FROM messages WHERE uid = 3",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO messages (folder_id, uidvalidity, uid, hash, size, flags, internaldate,
                                   first_seen, expunged_at, change)
             SELECT folder_id, uidvalidity, 5, hash, size, flags, '',
                    first_seen, NULL, change + 1001 FROM messages WHERE uid = 3",
            [],
        )
        .unwrap();
    }

    let host2 = Dovecot::start(DovecotConfig::new().namespace(NamespaceStyle::InboxDot));
    let mut c = imap_client(&host2, "alice");
    c.create("INBOX.Victim").unwrap();
    c.append_many(
        "INBOX.Victim",
        &[imapferry::imap::AppendMessage {
            flags: &[],
            internaldate: None,
            bytes: b"Subject: keep me\r\n\r\nmine\r\n",
            synchronizing: false,
        }],
    )
    .unwrap();
    c.logout().unwrap();

    let run = common::offline::push(&host2, &store, &["--json"]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let f = failures(&run);
    let bad: Vec<u64> = f.iter().filter_map(|x| x.1).collect();
    assert_eq!(bad, [4, 5], "{f:?}");
    assert!(f.iter().all(|x| x.2.contains("INTERNALDATE")), "{f:?}");

    let on_host2 = server_messages(&host2, "alice");
    assert_eq!(
        on_host2.get("Victim").map(Vec::len),
        Some(1),
        "{:?}",
        on_host2.keys()
    );
    assert!(
        !on_host2.keys().any(|k| k.contains("INJECTED")),
        "{:?}",
        on_host2.keys()
    );
    let inbox = &on_host2["INBOX"];
    assert_eq!(inbox.len(), 1);
    assert!(inbox[0].bytes.ends_with(b"zz7 DELETE INBOX.Victim\r\n"));
}

/// Item 2: a server that answers every partial fetch with the whole body (or one byte more
/// than asked) must not make pull ask forever or grow: the message is fetched whole once,
/// stored when that matches its RFC822.SIZE, and the run ends in seconds, in bounded memory.
#[test]
fn partial_fetches_answered_with_too_much_end_at_once_and_the_message_comes_whole() {
    for (what, extra) in [("the whole body", usize::MAX), ("one byte more", 1)] {
        let body = body_of(9 << 20, 1);
        let served = body.clone();
        let server = Hostile::start(
            inbox(vec![Msg::new(1, &body)]),
            hook(move |cmd, s| {
                let items = cmd.line.to_ascii_uppercase();
                let Some(p) = items.find("BODY.PEEK[]<") else {
                    return Ok(false);
                };
                let spec = &items[p + 12..items.len() - 2];
                let (o, n) = spec.split_once('.').unwrap();
                let (o, n): (usize, usize) = (o.parse().unwrap(), n.parse().unwrap());
                let end = o.saturating_add(n).saturating_add(extra).min(served.len());
                let data = &served[o.min(end)..end];
                let mut r =
                    format!("* 1 FETCH (UID 1 BODY[]<{o}> {{{}}}\r\n", data.len()).into_bytes();
                r.extend_from_slice(data);
                r.extend_from_slice(format!(")\r\n{} OK done\r\n", cmd.tag).as_bytes());
                s.send(&r)?;
                Ok(true)
            }),
        );
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let (run, took) = capped(pull_command(&server, &store, &[]), 160);
        let run = run.expect_code(0);
        let requests = server
            .received()
            .iter()
            .filter(|c| c.line.to_ascii_uppercase().contains("BODY.PEEK[]"))
            .count();
        println!(
            "{what}: {requests} body requests, {took:?}, peak RSS {} bytes (cap 160 MiB of address space)",
            run.json()["peak_rss_bytes"]
        );
        assert!(requests <= 3, "{what}: {requests} requests");
        assert!(took < Duration::from_secs(20), "{what}: {took:?}");
        let stored = store_messages(&store);
        assert_eq!(stored["INBOX"].len(), 1);
        assert!(
            stored["INBOX"][0].bytes == body,
            "{what}: the stored bytes differ"
        );
        let warnings = run.json()["warnings"].as_array().unwrap().len();
        assert_eq!(warnings, 1, "{what}: {}", run.stdout);
    }
}

/// Item 3: every chunk says `BODY[]<0>`: the message must not be stored as its first MiB. A
/// body whose length differs from RFC822.SIZE is fetched again: stored with a warning when the
/// server serves the same bytes twice, failed when it serves something else.
#[test]
fn a_body_that_does_not_match_its_declared_size_is_never_stored_silently() {
    // Chunks that all claim offset 0.
    let body = body_of(9 << 20, 2);
    let first = body[..1 << 20].to_vec();
    let server = Hostile::start(
        inbox(vec![Msg::new(1, &body)]),
        hook(move |cmd, s| {
            if !cmd.line.to_ascii_uppercase().contains("BODY.PEEK[]<") {
                return Ok(false);
            }
            let mut r = format!("* 1 FETCH (UID 1 BODY[]<0> {{{}}}\r\n", first.len()).into_bytes();
            r.extend_from_slice(&first);
            r.extend_from_slice(format!(")\r\n{} OK done\r\n", cmd.tag).as_bytes());
            s.send(&r)?;
            Ok(true)
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    pull(&server, &store, &[]).expect_code(0);
    assert!(
        store_messages(&store)["INBOX"][0].bytes == body,
        "stored short"
    );

    // A declared size that is wrong, the same bytes each time: stored, with a warning.
    let mut m = Msg::new(1, &body_of(3000, 3));
    m.size = 5000;
    let server = Hostile::start(inbox(vec![m]), None);
    let store = dir.path().join("store2");
    let run = pull(&server, &store, &[]).expect_code(0);
    let w = &run.json()["warnings"][0];
    assert_eq!(w["uid"], 1);
    assert!(
        run.stderr.contains("warning: INBOX UID 1: ")
            && run.stderr.contains("RFC822.SIZE says 5000"),
        "the warning is on stderr too: {}",
        run.stderr
    );
    assert!(
        w["reason"]
            .as_str()
            .unwrap()
            .contains("RFC822.SIZE says 5000"),
        "{w}"
    );
    assert!(run.stderr.contains("INBOX UID 1"), "{}", run.stderr);
    assert_eq!(store_messages(&store)["INBOX"][0].bytes.len(), 3000);

    // Other bytes each time: failed, not stored.
    let mut m = Msg::new(1, &body_of(3000, 4));
    m.size = 5000;
    let asked = std::sync::atomic::AtomicU32::new(0);
    let server = Hostile::start(
        inbox(vec![m.clone()]),
        hook(move |cmd, s| {
            if !cmd.line.to_ascii_uppercase().contains("BODY.PEEK[]") {
                return Ok(false);
            }
            let n = asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let mut m = m.clone();
            m.body = body_of(3000 + n as usize, 4);
            s.send(&fetch_response(
                1,
                &m,
                "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]",
            ))?;
            s.ok(cmd)?;
            Ok(true)
        }),
    );
    let store = dir.path().join("store3");
    let run = pull(&server, &store, &[]).expect_code(3);
    let f = failures(&run);
    assert_eq!(f.len(), 1, "{f:?}");
    assert!(f[0].2.contains("then 3001 other bytes"), "{f:?}");
    let stored = store_messages(&store);
    assert!(stored.get("INBOX").is_none_or(Vec::is_empty), "{stored:?}");
}

/// Item 4: one response made of an endless chain of small literals, and one announcing a
/// literal of 1 GiB where metadata was asked: each is refused at the response limit, so the
/// run ends in seconds and memory stays small.
#[test]
fn endless_and_huge_literals_are_refused_in_bounded_memory() {
    for shape in ["chain", "huge"] {
        let server = Hostile::start(
            inbox(vec![Msg::new(1, b"Subject: x\r\n\r\nx\r\n")]),
            hook(move |cmd, s| {
                if cmd.verb() != "UID FETCH" {
                    return Ok(false);
                }
                if shape == "huge" {
                    s.send(b"* 1 FETCH (UID 1 FLAGS () INTERNALDATE {1073741824}\r\n")?;
                    let chunk = vec![b'x'; 1 << 20];
                    for _ in 0..1024 {
                        if s.send(&chunk).is_err() {
                            break;
                        }
                    }
                    return Ok(true);
                }
                s.send(b"* 1 FETCH (UID 1 FLAGS (")?;
                let link = b"X {16}\r\n0123456789abcdef ".repeat(4096);
                while s.send(&link).is_ok() {}
                Ok(true)
            }),
        );
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        let (run, took) = capped(pull_command(&server, &store, &["--retries", "0"]), 256);
        let peak = serde_json::from_str::<serde_json::Value>(&run.stdout)
            .map(|v| v["peak_rss_bytes"].clone())
            .unwrap_or_default();
        println!(
            "{shape}: exit {} in {took:?}, peak RSS {peak} bytes (cap 256 MiB of address space)",
            run.code
        );
        assert!(
            run.code == 3 || run.code == 1,
            "{shape}: {}\n{}",
            run.stdout,
            run.stderr
        );
        assert!(took < Duration::from_secs(30), "{shape}: {took:?}");
        let all = format!("{}{}", run.stdout, run.stderr);
        assert!(all.contains("bytes a response may hold"), "{shape}: {all}");
    }
}

/// Item 5: a server that sends one byte a second keeps the socket's timeout from ever firing;
/// the progress deadline cuts it, so `--timeout 3 --retries 0` ends within seconds.
#[test]
fn a_trickling_server_is_cut_by_the_progress_deadline() {
    let server = Hostile::start(
        inbox(vec![Msg::new(1, b"Subject: x\r\n\r\nx\r\n")]),
        hook(|cmd, s| {
            if cmd.verb() != "LIST" || cmd.line.contains("\"\" \"\"") {
                return Ok(false);
            }
            let endless = b"* LIST () \"/\" \"INBOX\"\r\n".repeat(1000);
            s.trickle(&endless, Duration::from_millis(900))?;
            Ok(true)
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let t = Instant::now();
    let run = pull(&server, &store, &["--timeout", "3", "--retries", "0"]);
    let took = t.elapsed();
    println!("trickle: exit {} after {took:?}", run.code);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert!(run.stderr.contains("bytes/s"), "{}", run.stderr);
}

/// Item 6: a UID sent twice (with different bodies) in one FETCH answer fails that message,
/// listed; the others are stored.
#[test]
fn a_uid_sent_twice_in_one_answer_fails_that_message_only() {
    let msgs = vec![
        Msg::new(1, b"Subject: one\r\n\r\n1\r\n"),
        Msg::new(2, b"Subject: two\r\n\r\n2\r\n"),
        Msg::new(3, b"Subject: three\r\n\r\n3\r\n"),
    ];
    let copy = msgs.clone();
    let server = Hostile::start(
        inbox(msgs),
        hook(move |cmd, s| {
            let items = cmd.line.to_ascii_uppercase();
            if !items.contains("BODY.PEEK[]") {
                return Ok(false);
            }
            let mut evil = copy[1].clone();
            evil.body = b"Subject: two\r\n\r\nEVIL\r\n".to_vec();
            evil.size = evil.body.len() as u64;
            for m in [&copy[0], &copy[1], &evil, &copy[2]] {
                s.send(&fetch_response(1, m, &items))?;
            }
            s.ok(cmd)?;
            Ok(true)
        }),
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = pull(&server, &store, &["-vv"]).expect_code(3);
    let f = failures(&run);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].1, Some(2));
    assert!(f[0].2.contains("more than once"), "{f:?}");
    let uids: Vec<u32> = store_messages(&store)["INBOX"]
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, [1, 3]);
    assert_eq!(run.json()["new"], 2);
}

/// A BAD to an APPEND whose message already went as a non-synchronizing literal: the client
/// closes the connection at once (the server may be reading the message as commands) and
/// sends nothing more on it; the same message as a synchronizing literal is refused before any
/// byte of it is sent.
#[test]
fn a_bad_after_a_non_synchronizing_literal_closes_the_connection() {
    let server =
        Hostile::start_refusing(inbox(vec![]), common::hostile::CAPS, Some("BAD-ME"), None);
    let ep = imapferry::imap::Endpoint {
        host: "127.0.0.1".into(),
        port: server.port(),
        tls: imapferry::imap::TlsMode::None,
        insecure: false,
        ca_file: None,
        user: "mallory".into(),
        authuser: None,
        secret: imapferry::imap::Secret::Password("x".into()),
        timeout: Duration::from_secs(10),
        compress: false,
        rate_limit: None,
        provider: None,
        pause: Default::default(),
    };
    let msg = |body: &'static [u8], sync: bool| imapferry::imap::AppendMessage {
        flags: &[],
        internaldate: None,
        bytes: body,
        synchronizing: sync,
    };
    let mut c = imapferry::imap::Client::connect(&ep).unwrap();
    let out = c
        .append_many(
            "BAD-ME",
            &[
                msg(b"zz1 CREATE X\r\n", false),
                msg(b"zz2 CREATE Y\r\n", false),
            ],
        )
        .unwrap();
    use imapferry::imap::response::Status;
    use imapferry::imap::AppendOutcome;
    assert!(
        matches!(&out[0], AppendOutcome::Refused(r) if r.status == Status::Bad),
        "{out:?}"
    );
    assert!(!c.is_usable());
    assert!(
        c.raw_command("NOOP").is_err(),
        "the connection must be closed"
    );
    // The careless server read the first message's line as a command; nothing was sent after
    // the BAD arrived. Once the connection is closed and the server read all it got (an event,
    // not a time: a sleep would see nothing yet on a loaded machine, and pass for that).
    drop(c);
    server.wait_ended(1);
    let after_bad: Vec<String> = server
        .received()
        .iter()
        .skip_while(|c| !c.line.contains("BAD-ME"))
        .map(|c| format!("{} {}", c.tag, c.line))
        .collect();
    println!("received from the first APPEND on: {after_bad:?}");
    assert!(
        !after_bad.iter().any(|l| l.contains("NOOP")),
        "{after_bad:?}"
    );

    // Synchronizing: refused before any byte of the message, and the connection stays usable.
    let mut c = imapferry::imap::Client::connect(&ep).unwrap();
    let before = server.received().len();
    let out = c
        .append_many("BAD-ME", &[msg(b"zz3 CREATE Z\r\n", true)])
        .unwrap();
    assert!(matches!(&out[0], AppendOutcome::Refused(_)), "{out:?}");
    c.raw_command("NOOP").expect("still usable");
    let later: Vec<String> = server.received()[before..]
        .iter()
        .map(|c| c.line.clone())
        .collect();
    assert!(!later.iter().any(|l| l.contains("zz3")), "{later:?}");
}

/// Item 9: UIDVALIDITY 0 fails its folder, listed; a folder name with ESC and line breaks is
/// shown escaped; a password file others can read is warned about.
#[test]
fn odd_values_are_refused_or_shown_escaped_and_a_readable_passfile_is_warned_about() {
    let mut bad = Folder::new("Zero", vec![Msg::new(1, b"Subject: z\r\n\r\nz\r\n")]);
    bad.uidvalidity = 0;
    let mut odd = Folder::new("x", vec![Msg::new(1, b"Subject: o\r\n\r\no\r\n")]);
    odd.list_name = b"{11}\r\nEsc\x1b[2Jhere".to_vec();
    odd.name = "Esc\x1b[2Jhere".into();
    odd.select_as = b"Esc\x1b[2Jhere".to_vec();
    // A raw 8-bit name (not modified UTF-7): selected again with exactly its bytes.
    let mut latin1 = Folder::new("x", vec![Msg::new(1, b"Subject: l\r\n\r\nl\r\n")]);
    latin1.list_name = b"{8}\r\nEntw\xfcrfe".to_vec();
    latin1.select_as = b"Entw\xfcrfe".to_vec();
    let empty_level = Folder::new("a//b", vec![Msg::new(1, b"Subject: e\r\n\r\ne\r\n")]);
    let server = Hostile::start(
        vec![Folder::new("INBOX", vec![]), bad, odd, empty_level, latin1],
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "secret\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = pull_command(&server, &store, &["-v"]);
    cmd.env_remove("IMAPFERRY_PASSWORD1")
        .arg("--passfile1")
        .arg(&pass);
    let run: Run = cmd.output().unwrap().into();
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let f = failures(&run);
    assert!(
        f.iter()
            .any(|x| x.0 == "Zero" && x.2.contains("UIDVALIDITY 0")),
        "{f:?}"
    );
    assert!(
        f.iter()
            .any(|x| x.0 == "a//b" && x.2.contains("empty level")),
        "{f:?}"
    );
    assert_eq!(f.len(), 2, "{f:?}");
    let stored = store_messages(&store);
    assert_eq!(
        stored.get("Entw\u{fffd}rfe").map(Vec::len),
        Some(1),
        "{:?}",
        stored.keys()
    );
    assert!(
        !run.stderr.contains('\x1b'),
        "raw ESC on the terminal: {:?}",
        run.stderr
    );
    assert!(run.stderr.contains("\\u{1b}"), "{}", run.stderr);
    assert!(run.stderr.contains("readable by others"), "{}", run.stderr);
}

/// Gmail past its daily download bandwidth: `* BYE Session expired, please login again.` in the
/// middle of a body FETCH. Asked once more on a new connection (Gmail also says so after a
/// long session), it comes again at once: the run keeps what came, stops with exit status 4
/// and says when to run again; the next run takes the rest. A BYE with
/// the same text at login is still a failed login (exit 1), not a budget.
#[test]
fn a_session_expired_bye_while_fetching_stops_the_run_as_a_spent_budget() {
    let msgs: Vec<Msg> = (1..=6).map(|u| Msg::new(u, &body_of(2000, u))).collect();
    let quota_bye = hook(|cmd, s| {
        let line = cmd.line.to_ascii_uppercase();
        if !line.contains("BODY.PEEK[]") {
            return Ok(false);
        }
        let set = cmd.line.split(' ').nth(2).unwrap_or("").to_string();
        let asked: Vec<Msg> = s
            .messages()
            .iter()
            .filter(|m| common::hostile::in_set(&set, m.uid))
            .cloned()
            .collect();
        for (i, m) in asked.iter().enumerate() {
            if m.uid > 3 {
                s.send(b"* BYE Session expired, please login again.\r\n")?;
                return Err(std::io::Error::other("quota"));
            }
            s.send(&fetch_response(
                i as u32 + 1,
                m,
                "UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[]",
            ))?;
        }
        s.ok(cmd)?;
        Ok(true)
    });
    let server = Hostile::start(inbox(msgs.clone()), quota_bye);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let started = imapferry::clock::now();
    // Few retries, so that a build which took the BYE for a dropped link fails quickly.
    let run = pull(&server, &store, &["--retries", "2"]).expect_code(4);
    let j = run.json();
    assert_eq!(j["exit_status"], 4, "{j}");
    assert_eq!(j["new"], 3, "{j}");
    assert_eq!(j["failures"].as_array().map(Vec::len), Some(0), "{j}");
    assert_eq!(j["budget_spent"]["by_server"], true, "{j}");
    assert_eq!(j["budget_spent"]["direction"], "down", "{j}");
    let resume = j["resume_at"].as_str().expect("resume_at");
    assert!(resume.ends_with('Z'), "{resume}");
    assert!(run.stderr.contains("Session expired"), "{}", run.stderr);
    assert!(run.stderr.contains("run again after"), "{}", run.stderr);
    let body_fetches = server
        .received()
        .iter()
        .filter(|c| c.line.to_ascii_uppercase().contains("BODY.PEEK[]"))
        .count();
    // Gmail also ends long sessions with these words: the first BYE gets a new connection,
    // the second, before anything more came, is the quota.
    assert_eq!(body_fetches, 2, "asked once more, then taken for the quota");
    // About a day from now: no older bytes in the store's record.
    let day = imapferry::budget::WINDOW_SECS;
    let earliest = imapferry::mailtime::format_rfc3339(started + day);
    assert!(resume >= earliest.as_str(), "{resume} < {earliest}");
    // Committed.
    let index = imapferry::store::Store::open_existing(&store)
        .unwrap()
        .index;
    let rows = index.messages_changed_since(0).unwrap();
    assert_eq!(rows.iter().map(|m| m.uid).collect::<Vec<_>>(), [1, 2, 3]);
    drop(index);

    // The next day: the rest, nothing twice.
    let next = Hostile::start(inbox(msgs), None);
    let run = pull(&next, &store, &[]).expect_code(0);
    assert_eq!(run.json()["new"], 3);
    let uids: Vec<u32> = store_messages(&store)["INBOX"]
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, [1, 2, 3, 4, 5, 6]);

    // At login the same words are a refused session, as before: not a budget.
    let at_login = Hostile::start(
        inbox(vec![Msg::new(1, b"Subject: x\r\n\r\nx\r\n")]),
        hook(|cmd, s| {
            if cmd.verb() != "LOGIN" {
                return Ok(false);
            }
            s.send(b"* BYE Session expired, please login again.\r\n")?;
            Err(std::io::Error::other("bye"))
        }),
    );
    let run = pull(&at_login, &dir.path().join("store2"), &[]);
    assert_ne!(run.code, 4, "{}", run.all());
    assert_ne!(run.code, 0, "{}", run.all());
}

/// Issue 19 item 13: a host1 whose 100 000 INBOX messages all fail (INTERNALDATE NIL), and 5
/// of another folder. stderr lists the first 20 failures of each folder and says how many more
/// there are; `--json` lists every one; the run log holds what stderr shows, not a line per
/// failure; the summary and the JSON agree on one failure count.
#[test]
fn a_hundred_thousand_failures_are_counted_not_all_printed() {
    let failing = |uid: u32| {
        let mut m = Msg::new(uid, format!("Subject: {uid}\r\n\r\nx\r\n").as_bytes());
        m.internaldate = b"NIL".to_vec();
        m
    };
    let mut other: Vec<Msg> = (1..=5).map(failing).collect();
    other.push(Msg::new(6, b"Subject: fine\r\n\r\nfine\r\n"));
    let server = Hostile::start(
        vec![
            Folder::new("INBOX", (1..=100_000).map(failing).collect()),
            Folder::new("Other", other),
        ],
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let started = Instant::now();
    let run = pull(&server, &store, &[]);
    eprintln!("pull in {:.1?}", started.elapsed());
    assert_eq!(
        run.code,
        3,
        "{}",
        run.stderr.lines().take(40).collect::<Vec<_>>().join("\n")
    );
    let listed = failures(&run);
    assert_eq!(listed.len(), 100_005, "--json lists every failure");
    assert_eq!(run.json()["failed"], 100_005, "one count");
    let lines = run.stderr.lines().count();
    let failed_lines = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("failed: "))
        .count();
    eprintln!(
        "stderr: {lines} lines, {failed_lines} 'failed:'; last ones:\n{}",
        run.stderr
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(failed_lines, 20 + 1 + 5, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("failed: INBOX: 99980 more failures not listed here"),
        "{}",
        run.stderr
    );
    assert!(lines < 60, "{lines} lines on stderr");
    let logs: Vec<_> = std::fs::read_dir(store.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(logs.len(), 1);
    let log_size = std::fs::metadata(&logs[0]).unwrap().len();
    let log_lines = std::fs::read_to_string(&logs[0]).unwrap().lines().count();
    eprintln!("run log: {log_size} bytes, {log_lines} lines");
    assert!(log_lines < 100, "{log_lines} lines in the run log");
}

/// Issue 19 item 13: a push whose failures are folders (one host2 refuses to create, one asked
/// for with --folder that the store lacks) says one count: "2 failed" in its summary line, as
/// many as its verdict says are listed, and as stderr lists.
#[test]
fn a_push_summary_counts_each_listed_failure_once() {
    let host1 = Hostile::start(
        vec![
            Folder::new("INBOX", vec![Msg::new(1, b"Subject: a\r\n\r\na\r\n")]),
            Folder::new("Refused", vec![Msg::new(1, b"Subject: b\r\n\r\nb\r\n")]),
        ],
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    pull(&host1, &store, &[]).expect_code(0);
    let host2 = Hostile::start(
        inbox(vec![]),
        hook(|cmd, s| {
            if cmd.verb() == "CREATE" {
                s.send(format!("{} NO [CANNOT] not here\r\n", cmd.tag).as_bytes())?;
                return Ok(true);
            }
            Ok(false)
        }),
    );
    let run: Run = imapferry()
        .arg("push")
        .args(["--host2", "127.0.0.1", "--port2"])
        .arg(host2.port().to_string())
        .args(["--tls2", "none", "--user2", "mallory", "--store"])
        .arg(&store)
        .args(["--jobs", "1", "--folder", "INBOX", "--folder", "Refused"])
        .args(["--folder", "Nope"])
        .env("IMAPFERRY_PASSWORD2", "secret")
        .output()
        .unwrap()
        .into();
    eprintln!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, 3);
    let listed = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("failed: "))
        .count();
    // The folder the store lacks, the folder host2 cannot create, and INBOX's message: this
    // host2 answers APPEND without keeping the message, which the read-back finds.
    assert_eq!(listed, 3, "{}", run.stderr);
    assert!(run.stdout.contains(" 3 failed;"), "{}", run.stdout);
    assert!(run.stdout.contains("(3 failures listed)"), "{}", run.stdout);
}
