//! Nothing doubled, nothing lost, nothing silent (issue 11), against real servers: pushes killed
//! with SIGKILL through a link that keeps carrying their last APPENDs, an APPEND whose answer
//! was lost, a second copy of the store, look-alike messages, `--delete2` after an unfinished
//! first pull, answers the parser cannot read, and objects damaged in the store.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hostile::{fetch_response, inbox, Hostile, Msg};
use common::offline::{assert_same_contents, contents_of};
use common::run::{command_for, pulled_store, run_against, Run};
use common::*;

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// Messages on `server`, all folders together.
fn total(server: &dyn TestServer) -> usize {
    contents_of(server).values().map(Vec::len).sum()
}

/// host1 seeded with `corpus` and a store pulled from it.
fn source(corpus: &Corpus) -> (Dovecot, tempfile::TempDir, std::path::PathBuf) {
    let h1 = Dovecot::start_default();
    seed(&h1, "alice", corpus);
    let (dir, store) = pulled_store(&h1);
    (h1, dir, store)
}

/// Item 1: six pushes killed (SIGKILL) through a slow link that keeps delivering what they had
/// sent, each re-run at once; then a push to the end. host2 ends exact, without one duplicate.
#[test]
fn six_kills_through_a_buffering_link_leave_no_duplicate() {
    let corpus = Corpus::standard();
    let (h1, _dir, store) = source(&corpus);
    let h2 = Dovecot::start_default();
    let faults = Faults {
        bandwidth: Some(2_000_000),
        shared_bandwidth: true,
        buffering: true,
        latency: Duration::from_millis(20),
        ..Faults::default()
    };
    let proxy = Proxy::start(h2.port(), faults);
    let account = h2.account("alice");
    let via = Via(&account, proxy.port());
    let want = corpus.len();
    let mut killed_at = Vec::new();
    for k in 1..=6 {
        let mut child = command_for("push", &via, &store, &["--append-batch-messages", "25"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let threshold = k * want / 8;
        let deadline = Instant::now() + Duration::from_secs(60);
        while h2.stored_messages("alice") < threshold && Instant::now() < deadline {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the push was still running when killed"
        );
        child.kill().unwrap(); // SIGKILL, the binary itself
        child.wait().unwrap();
        killed_at.push(h2.stored_messages("alice"));
    }
    let r = run_against("push", &via, &store, &[]).expect_code(0).json();
    std::thread::sleep(Duration::from_secs(2));
    let on_host2 = total(&account);
    let count = |key: &str| r[key].as_u64().unwrap_or_default();
    eprintln!(
        "host2 messages at the kills {killed_at:?}; final push: {} sent, {} recovered, {} doubles \
         removed; duplicates left: {}",
        count("sent"),
        count("recovered"),
        count("doubles_removed"),
        on_host2 as i64 - want as i64
    );
    assert_same_contents(
        &contents_of(&account),
        &contents_of(&h1.account("alice")),
        "host2",
    );
    run_against("check", &account, &store, &[]).expect_code(0);
}

/// Item 2: a large APPEND whose answer never came back: the client timed out while the link
/// was still carrying the message's last megabytes, so the retry looked at host2 before the
/// message landed and sent it again; when the first copy lands it doubles the second, and the
/// push's last look removes it.
#[test]
fn an_append_that_timed_out_but_landed_is_not_left_twice() {
    let mut corpus = Corpus::small();
    let big = Corpus::one_large(6 << 20);
    corpus.messages.insert(0, big.messages[0].clone());
    let (h1, _dir, store) = source(&corpus);
    let h2 = Dovecot::start_default();
    let faults = Faults {
        bandwidth: Some(1_000_000),
        shared_bandwidth: true,
        buffering: true,
        mute_answers_after_upload: Some(1_000_000),
        affects: Affects::FirstN(1),
        ..Faults::default()
    };
    let proxy = Proxy::start(h2.port(), faults);
    let account = h2.account("alice");
    let via = Via(&account, proxy.port());
    let run = run_against("push", &via, &store, &["--jobs", "1", "--timeout", "3"]);
    let r = run.expect_code(0).json();
    eprintln!(
        "after a lost answer: {} sent, {} recovered, {} doubles removed",
        n(&r, "sent"),
        n(&r, "recovered"),
        r["doubles_removed"].as_u64().unwrap_or_default()
    );
    assert!(
        proxy.connections() >= 2,
        "the answer was lost, the push reconnected"
    );
    assert_same_contents(
        &contents_of(&account),
        &contents_of(&h1.account("alice")),
        "host2",
    );
}

/// Item 3: a second copy of the store (a bundle applied elsewhere) pushing into a host2 the
/// first copy filled sends nothing twice, on Dovecot and on pymap's maildir, which rewrites
/// every message (its copies are recognised by their text and listed as altered).
#[test]
fn a_second_copy_of_the_store_sends_nothing_twice() {
    let corpus = Corpus::small();
    let (h1, dir, store) = source(&corpus);
    let bundle = dir.path().join("all.bundle");
    let copy = dir.path().join("copy");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    offline::run(&[
        "bundle",
        "create",
        "--store",
        &path(&store),
        "--out",
        &path(&bundle),
    ])
    .expect_code(0);
    offline::run(&["bundle", "apply", "--store", &path(&copy), &path(&bundle)]).expect_code(0);
    for kind in [ServerKind::Dovecot, ServerKind::PymapMaildir] {
        let h2 = kind.start();
        let h2 = &*h2;
        run_against("push", h2, &store, &[]).expect_code(0);
        let before = contents_of(h2);
        let r = run_against("push", h2, &copy, &[]).expect_code(0).json();
        assert_eq!(
            (n(&r, "sent"), n(&r, "already")),
            (0, corpus.len() as u64),
            "{}: {r}",
            kind.name()
        );
        assert_same_contents(&contents_of(h2), &before, kind.name());
        let altered = r["warnings"].as_array().unwrap().len();
        eprintln!(
            "{}: second copy sent 0, {altered} listed as altered",
            kind.name()
        );
    }
    drop(h1);
}

/// Item 4: two different messages with the same size, From, Date and Subject and no Message-ID;
/// host2 already holds the first. Only bytes decide: the second is sent, the first is not
/// taken for it.
#[test]
fn look_alikes_without_message_id_are_told_apart_by_their_bytes() {
    let look_alike = |body: &str| {
        format!(
            "From: a@example.org\r\nSubject: same\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n\
             {body}\r\n"
        )
        .into_bytes()
    };
    let (first, second) = (look_alike("body one"), look_alike("body two"));
    assert_eq!(first.len(), second.len());
    let h1 = Dovecot::start_default();
    let h2 = Dovecot::start_default();
    // host2 holds the second: pairing by headers would take it for the first and send the
    // second again.
    for (server, msgs) in [(&h1, vec![&first, &second]), (&h2, vec![&second])] {
        let mut c = imap_client(server, "alice");
        let appends: Vec<imapferry::imap::AppendMessage<'_>> = msgs
            .iter()
            .map(|b| imapferry::imap::AppendMessage {
                flags: &[],
                internaldate: Some("01-Jan-2024 10:00:00 +0000".parse().unwrap()),
                bytes: b,
                synchronizing: false,
            })
            .collect();
        c.append_many("INBOX", &appends).unwrap();
        c.logout().unwrap();
    }
    let (_dir, store) = pulled_store(&h1);
    let account = h2.account("alice");
    let r = run_against("push", &account, &store, &[])
        .expect_code(0)
        .json();
    assert_eq!((n(&r, "sent"), n(&r, "already")), (1, 1), "{r}");
    assert_same_contents(
        &contents_of(&account),
        &contents_of(&h1.account("alice")),
        "host2",
    );
    let c = run_against("check", &account, &store, &[])
        .expect_code(0)
        .json();
    assert_eq!(n(&c, "present"), 2);
}

/// Item 6: host2 already holds the account (an earlier migration); a new store's first pull is
/// cut off, so some folders are not completely pulled. `push --delete2` must not take "not in
/// the store" for "deleted on host1": nothing is deleted, and the push says why.
#[test]
fn delete2_after_an_unfinished_first_pull_deletes_nothing() {
    let corpus = Corpus::standard();
    let (h1, _dir, full) = source(&corpus);
    let h2 = Dovecot::start_default();
    let account = h2.account("alice");
    run_against("push", &account, &full, &[]).expect_code(0);
    let before = contents_of(&account);

    let dir = tempfile::tempdir().unwrap();
    let partial = dir.path().join("partial");
    let proxy = Proxy::start(
        h1.port(),
        Faults {
            cut_after: Some(300_000),
            ..Faults::default()
        },
    );
    let h1_account = h1.account("alice");
    let via = Via(&h1_account, proxy.port());
    let pulled: Run = run_against("pull", &via, &partial, &["--retries", "0", "--jobs", "1"]);
    assert_ne!(pulled.code, 0, "the first pull was cut off");

    let run = run_against("push", &account, &partial, &["--delete2"]);
    let r = run.json();
    eprintln!(
        "push --delete2 after a cut first pull: exit {}, {} deleted, {} failures",
        run.code,
        n(&r, "deleted"),
        r["failures"].as_array().unwrap().len()
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(n(&r, "deleted"), 0);
    assert!(
        run.all().contains("not pulled completely"),
        "{}",
        run.stderr
    );
    assert_same_contents(&contents_of(&account), &before, "host2 after --delete2");
}

/// Item 8: an answer the parser cannot read is a failure of its command, never "nothing there":
/// an unreadable SEARCH marks nothing expunged in pull; an unreadable FETCH of host2's
/// messages makes push fail the folder, not append what it could not see.
#[test]
fn an_unreadable_answer_fails_its_command_in_pull_and_in_push() {
    let msgs = vec![
        Msg::new(1, b"Subject: 1\r\n\r\n1\r\n"),
        Msg::new(2, b"Subject: 2\r\n\r\n2\r\n"),
        Msg::new(3, b"Subject: 3\r\n\r\n3\r\n"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let pull = |server: &Hostile| -> Run {
        common::run::imapferry()
            .args(["pull", "--host1", "127.0.0.1", "--port1"])
            .arg(server.port().to_string())
            .args(["--tls1", "none", "--user1", "mallory", "--store"])
            .arg(&store)
            .args(["--json", "--jobs", "1"])
            .env("IMAPFERRY_PASSWORD1", "x")
            .output()
            .unwrap()
            .into()
    };
    pull(&Hostile::start(inbox(msgs.clone()), None)).expect_code(0);
    // Message 3 is gone (the counts no longer add up, so pull asks for the UID list), and the
    // UID list comes back unreadable.
    let garbled = Hostile::start(
        inbox(msgs[..2].to_vec()),
        Some(Arc::new(|cmd, s| {
            if cmd.verb() != "UID SEARCH" {
                return Ok(false);
            }
            s.send(b"* SEARCH 1 2 (three\r\n")?;
            s.ok(cmd)?;
            Ok(true)
        })),
    );
    let run = pull(&garbled).expect_code(3);
    assert!(run.stdout.contains("SEARCH"), "{}", run.stdout);
    assert_eq!(run.json()["expunged"], 0);
    assert_eq!(common::run::store_messages(&store)["INBOX"].len(), 3);

    // Push: host2's INBOX answers its message list unreadably.
    let host2 = Hostile::start(
        inbox(msgs.clone()),
        Some(Arc::new(|cmd, s| {
            if cmd.verb() != "UID FETCH" || !cmd.line.contains("1:*") {
                return Ok(false);
            }
            s.send(&fetch_response(1, &Msg::new(1, b"x"), "UID FLAGS"))?;
            s.send(b"* 2 FETCH (UID 2 FLAGS (\\Seen)) garbage (\r\n")?;
            s.ok(cmd)?;
            Ok(true)
        })),
    );
    let run: Run = common::run::imapferry()
        .args(["push", "--host2", "127.0.0.1", "--port2"])
        .arg(host2.port().to_string())
        .args(["--tls2", "none", "--user2", "mallory", "--store"])
        .arg(&store)
        .args(["--json", "--jobs", "1", "--retries", "0"])
        .env("IMAPFERRY_PASSWORD2", "x")
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let appended = host2
        .received()
        .iter()
        .filter(|c| c.verb() == "APPEND")
        .count();
    assert_eq!(
        appended, 0,
        "nothing is appended on an answer that could not be read"
    );
}

/// Item 10: a missing and a corrupt object: verify lists both and says how to mend them;
/// `pull --repair` fetches them again; verify is clean afterwards.
#[test]
fn a_damaged_store_is_repaired_by_pull() {
    let corpus = Corpus::small();
    let (h1, _dir, store) = source(&corpus);
    let objects: Vec<std::path::PathBuf> = walkdir::WalkDir::new(store.join("objects"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    std::fs::remove_file(&objects[0]).unwrap();
    let mut bytes = std::fs::read(&objects[1]).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&objects[1], &bytes).unwrap();
    let path = store.to_str().unwrap();
    let v = offline::run(&["verify", "--store", path]).expect_code(3);
    assert!(v.all().contains("pull --repair"), "{}", v.stderr);
    let r = common::run::pull(&h1, "alice", &store, &["--repair"])
        .expect_code(0)
        .json();
    assert!(n(&r, "repaired") >= 2, "{r}");
    offline::run(&["verify", "--store", path]).expect_code(0);
    common::run::assert_store_matches_server(&store, &h1, "alice");
}
