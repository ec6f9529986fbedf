//! A host2 that does not store or answer what it was asked to (tests/common/host2.rs): push
//! and check must notice by the bytes, list what they could not prove, and never append a
//! message a second time because an answer left something out.

mod common;

use std::path::Path;

use common::host2::{Host2, Quirks};
use common::hostile::{inbox, Hostile, Msg};
use common::run::{imapferry, Run};

/// `n` small messages; the last one has no final CRLF when `last_unterminated`.
fn messages(n: u32) -> Vec<Msg> {
    (1..=n)
        .map(|u| {
            Msg::new(
                u,
                format!("Subject: message {u}\r\nMessage-ID: <{u}@lying.test>\r\n\r\nbody {u}\r\n")
                    .as_bytes(),
            )
        })
        .collect()
}

/// A store pulled from a scripted host1 holding `msgs` in INBOX.
fn store_of(msgs: Vec<Msg>, store: &Path) {
    let host1 = Hostile::start(inbox(msgs), None);
    let run: Run = imapferry()
        .args(["pull", "--host1", "127.0.0.1", "--port1"])
        .arg(host1.port().to_string())
        .args(["--tls1", "none", "--user1", "u", "--store"])
        .arg(store)
        .args(["--json", "--jobs", "1"])
        .env("IMAPFERRY_PASSWORD1", "x")
        .output()
        .unwrap()
        .into();
    run.expect_code(0);
}

fn against(command: &str, host2: &Host2, store: &Path, extra: &[&str]) -> Run {
    imapferry()
        .arg(command)
        .args(["--host2", "127.0.0.1", "--port2"])
        .arg(host2.port().to_string())
        .args(["--tls2", "none", "--user2", "u", "--store"])
        .arg(store)
        .args(["--retries", "0"])
        .args(if command == "push" {
            &["--jobs", "1"][..]
        } else {
            &[]
        })
        .args(extra)
        .env("IMAPFERRY_PASSWORD2", "x")
        .output()
        .unwrap()
        .into()
}

/// Issue 19 item 2: host2 answers the header FETCH without BODY[HEADER] and every APPEND with
/// an APPENDUID that is not the message's. Three pushes of a 4-message store once gave 10
/// copies, each push saying "host2 holds all 4 messages" with exit 0. Now the wrong APPENDUIDs
/// are caught by the bytes read back, the messages are found where host2 put them, and no push
/// appends one twice; a push that must compare host2's messages by their headers (a second copy
/// of the store, without its push state) fails the folder (exit 3), naming the answer, and
/// appends nothing.
#[test]
fn an_answer_without_the_item_asked_for_never_leads_to_a_second_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    store_of(messages(4), &store);
    let always_1: fn(u32) -> u32 = |_| 1;
    let off_by_100: fn(u32) -> u32 = |u| u + 100;
    for (what, appenduid) in [("always 1", always_1), ("off by 100", off_by_100)] {
        let dir = tempfile::tempdir().unwrap();
        let (copy, fresh_copy) = (dir.path().join("store"), dir.path().join("copy"));
        copy_dir(&store, &copy);
        copy_dir(&store, &fresh_copy);
        let host2 = Host2::start(Quirks {
            appenduid: Some(appenduid),
            no_header_item: true,
            ..Quirks::default()
        });
        let mut seen = Vec::new();
        let mut first = String::new();
        for _ in 0..3 {
            let run = against("push", &host2, &copy, &[]);
            if first.is_empty() {
                first = run.stderr.clone();
            }
            let says_all = run.all().contains("host2 holds all 4 messages");
            seen.push((run.code, says_all, host2.bodies().len()));
            assert!(run.code == 0 || run.code == 3, "{}", run.all());
        }
        eprintln!(
            "APPENDUID {what}: 3 pushes (exit, says \"holds all 4\", copies): {seen:?}; {} APPENDs",
            host2.appends()
        );
        for (code, says_all, copies) in &seen {
            assert!(!says_all || *copies == 4, "says all 4 with {copies} copies");
            assert!(*code != 0 || *copies == 4, "exit 0 with {copies} copies");
        }
        assert!(
            first.contains("which does not hold it; found as UID"),
            "the wrong APPENDUIDs are said: {first}"
        );
        assert_eq!(host2.bodies().len(), 4, "each message once on host2");
        assert_eq!(host2.appends(), 4);

        // A second copy of the store knows nothing of the first one's pushes: host2's messages
        // must be compared, and their headers come back without the header.
        let run = against("push", &host2, &fresh_copy, &["--json"]);
        eprintln!("second copy: exit {}\n{}", run.code, run.stderr);
        assert_eq!(run.code, 3, "{}", run.all());
        assert!(run.stderr.contains("has no BODY[HEADER]"), "{}", run.stderr);
        assert!(!run.all().contains("host2 holds all"), "{}", run.all());
        assert_eq!(
            host2.appends(),
            4,
            "nothing appended on an unreadable answer"
        );
        let check = against("check", &host2, &fresh_copy, &["--json"]);
        assert_eq!(check.code, 3, "check lists it too: {}", check.all());
        assert!(
            check.stdout.contains("has no BODY[HEADER]"),
            "{}",
            check.stdout
        );
    }
}

/// Issue 19 item 9: host2 keeps a message lacking a final CRLF with one added (68 bytes in the
/// store, 70 on host2) and reports RFC822.SIZE as given. Push said "host2 holds all 1
/// messages", `check -v` "1 present, 0 altered by host2", both exit 0. The bytes read back
/// show the change: push lists the message as altered, saying what changed, and so does check.
#[test]
fn a_final_crlf_added_by_host2_is_reported_altered_by_push_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let body =
        b"Subject: no final line end\r\nMessage-ID: <crlf@lying.test>\r\n\r\nthe end".to_vec();
    assert_eq!(body.len(), 68);
    store_of(vec![Msg::new(1, &body)], &store);
    for size_as_given in [true, false] {
        let host2 = Host2::start(Quirks {
            stores: Some(|b| {
                let mut v = b.to_vec();
                if !v.ends_with(b"\r\n") {
                    v.extend_from_slice(b"\r\n");
                }
                v
            }),
            size_as_given,
            ..Quirks::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("store");
        copy_dir(&store, &copy);
        let push = against("push", &host2, &copy, &[]);
        eprintln!("push (size as given: {size_as_given}):\n{}", push.all());
        assert_eq!(host2.bodies(), vec![[&body[..], b"\r\n"].concat()]);
        assert!(
            push.stderr
                .contains("INBOX UID 1: host2 holds it altered: line ends added at the end (70 bytes stored for 68)"),
            "{}",
            push.all()
        );
        assert!(
            push.stdout.contains("stored altered by host2"),
            "{}",
            push.stdout
        );
        let check = against("check", &host2, &copy, &["-v"]);
        eprintln!("check -v:\n{}", check.all());
        assert!(
            check.stdout.contains(
                "1 present, 0 missing, 0 extra, 0 doubles, 0 flag differences, 1 stored altered"
            ),
            "{}",
            check.all()
        );
        assert!(
            check
                .stdout
                .contains("line ends added at the end (70 bytes stored for 68)"),
            "{}",
            check.stdout
        );
        // A second push changes nothing and still says so.
        let again = against("push", &host2, &copy, &["--json"]).expect_code(0);
        assert_eq!(again.json()["sent"], 0);
        assert_eq!(host2.appends(), 1);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}
