//! `imapferry import` from hostile local files, no server needed: it never leaves the Maildir
//! tree it is given (linked `cur/`, `new/`, message files, keyword files and folder
//! directories are listed, not followed; a FIFO does not hang it); one bad keyword or file is
//! listed and the rest imported (exit 3); an mbox larger than the memory cap streams through
//! one message at a time.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::offline::{run_capped, store_contents};
use common::run::{imapferry, Run};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A maildir at `dir` (cur/, new/, tmp/) with `messages` in `cur/` as (file name, bytes).
fn maildir(dir: &Path, messages: &[(&str, &[u8])]) {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    for (name, bytes) in messages {
        fs::write(dir.join("cur").join(name), bytes).unwrap();
    }
}

/// `imapferry import --json ARGS…`, killed (and the test failed) if it runs over 20 s: a FIFO
/// opened for reading would block it for ever.
fn import(args: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = imapferry()
        .arg("import")
        .args(args)
        .arg("--json")
        .stdout(fs::File::create(&out).unwrap())
        .stderr(fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > Duration::from_secs(20) {
            child.kill().unwrap();
            panic!(
                "import hung: {}",
                fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code().unwrap_or(-1),
        stdout: fs::read_to_string(&out).unwrap(),
        stderr: fs::read_to_string(&err).unwrap(),
    }
}

/// The `failures` of an import's JSON report as (path relative to `root`, reason).
fn failures(r: &Run, root: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = r.json()["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let path = f["path"].as_str().unwrap();
            let rel = Path::new(path)
                .strip_prefix(root)
                .unwrap_or(Path::new(path));
            (
                rel.display().to_string(),
                f["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn subjects(store: &Path) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = store_contents(store)
        .into_iter()
        .flat_map(|(folder, msgs)| {
            msgs.into_iter()
                .map(move |(bytes, _, _)| (folder.clone(), String::from_utf8(bytes).unwrap()))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn import_stays_inside_the_maildir_it_is_given_and_lists_every_link_it_does_not_follow() {
    let dir = tempfile::tempdir().unwrap();
    let (root, outside) = (dir.path().join("root"), dir.path().join("outside"));
    maildir(
        &outside,
        &[("9.x:2,S", b"Subject: secret\r\n\r\nsecret\r\n")],
    );
    fs::write(outside.join("new/8.x"), b"Subject: secret new\r\n\r\ns\r\n").unwrap();
    fs::write(outside.join("kw"), b"0 Secret\n").unwrap();
    fs::write(outside.join("file"), b"Subject: secret file\r\n\r\nf\r\n").unwrap();

    maildir(&root, &[("1.x:2,Sa", b"Subject: one\r\n\r\n1\r\n")]);
    fs::remove_dir(root.join("new")).unwrap();
    symlink(outside.join("new"), root.join("new")).unwrap();
    symlink(outside.join("file"), root.join("cur/2.x:2,S")).unwrap();
    symlink(outside.join("kw"), root.join("dovecot-keywords")).unwrap();
    let fifo = root.join("cur/3.x:2,S");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    symlink(&outside, root.join(".Linked")).unwrap();
    let evil = root.join(".Evil");
    maildir(&evil, &[]);
    fs::write(evil.join("new/4.x"), b"Subject: evil new\r\n\r\n4\r\n").unwrap();
    fs::remove_dir(evil.join("cur")).unwrap();
    symlink(outside.join("cur"), evil.join("cur")).unwrap();
    fs::create_dir(root.join("Nested")).unwrap();
    symlink(&outside, root.join("Nested/Sub")).unwrap();

    let store = dir.path().join("store");
    let r = import(&["--store", s(&store), "--maildir", s(&root)]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let link = "a symbolic link, not followed";
    let got = failures(&r, &root);
    let want = [
        (".Evil/cur", link),
        (".Linked", link),
        ("Nested/Sub", link),
        ("cur/2.x:2,S", link),
        ("cur/3.x:2,S", "not a regular file"),
        ("dovecot-keywords", link),
        ("new", link),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((path, reason), (want_path, want_reason)) in got.iter().zip(want) {
        assert!(
            path == want_path && reason.contains(want_reason),
            "{path}: {reason} (wanted {want_path}: {want_reason})"
        );
    }
    assert_eq!(
        subjects(&store),
        [
            (
                "Evil".to_string(),
                "Subject: evil new\r\n\r\n4\r\n".to_string()
            ),
            ("INBOX".to_string(), "Subject: one\r\n\r\n1\r\n".to_string()),
        ]
    );
    assert!(
        r.all().contains("not imported: ") && r.all().contains("/root/.Linked"),
        "{}",
        r.stderr
    );
}

#[test]
fn one_bad_keyword_or_file_is_listed_and_the_rest_imported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    maildir(
        &root,
        &[
            ("1.x:2,Sa", b"Subject: 1\r\n\r\n1\r\n"),
            ("2.x:2,Sb", b"Subject: 2\r\n\r\n2\r\n"),
            ("3.x:2,Sd", b"Subject: 3\r\n\r\n3\r\n"),
        ],
    );
    fs::write(
        root.join("dovecot-keywords"),
        "0 $Work\n1 two words\n2 bad(\n3 Done\n",
    )
    .unwrap();
    // 3 GiB (sparse): more than a store takes in one message; never read.
    let big = fs::File::create(root.join("cur/4.x:2,S")).unwrap();
    big.set_len(3 << 30).unwrap();
    fs::create_dir(root.join("cur/5.x:2,S")).unwrap();
    // A Maildir++ name that does not decode, and two directories for one folder.
    maildir(
        &root.join(".a&bad"),
        &[("6.x:2,", b"Subject: 6\r\n\r\n6\r\n")],
    );
    maildir(
        &root.join(".Same"),
        &[("7.x:2,", b"Subject: 7\r\n\r\n7\r\n")],
    );
    maildir(
        &root.join("Same"),
        &[("8.x:2,", b"Subject: 8\r\n\r\n8\r\n")],
    );

    let store = dir.path().join("store");
    let r = import(&["--store", s(&store), "--maildir", s(&root)]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    let got = failures(&r, &root);
    let want = [
        (".a&bad", "not a Maildir++ folder name"),
        ("Same", "would also become folder \"Same\""),
        ("cur/4.x:2,S", "3221225472 bytes, more than"),
        ("cur/5.x:2,S", "a directory"),
        (
            "dovecot-keywords",
            "line 2: \"two words\" is not an IMAP keyword",
        ),
        (
            "dovecot-keywords",
            "line 3: \"bad(\" is not an IMAP keyword",
        ),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((path, reason), (want_path, want_reason)) in got.iter().zip(want) {
        assert!(
            path == want_path && reason.contains(want_reason),
            "{path}: {reason} (wanted {want_path}: {want_reason})"
        );
    }
    let json = r.json();
    assert_eq!(json["added"], 4, "{json}");
    assert_eq!(json["failures"][0]["uid"], serde_json::Value::Null);
    let contents = store_contents(&store);
    let flags: Vec<Vec<String>> = contents["INBOX"].iter().map(|m| m.1.clone()).collect();
    assert_eq!(
        flags,
        [
            vec!["$Work".to_string(), "\\Seen".to_string()],
            vec!["\\Seen".to_string()],
            vec!["Done".to_string(), "\\Seen".to_string()],
        ]
    );
    assert_eq!(contents["Same"].len(), 1);
}

#[test]
fn an_mbox_larger_than_the_memory_cap_is_imported_one_message_at_a_time() {
    use std::io::Write;
    const CAP: u64 = 200 << 20;
    const MESSAGES: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.mbox");
    let mut w = std::io::BufWriter::new(fs::File::create(&file).unwrap());
    for n in 0..MESSAGES {
        write!(
            w,
            "From sender@example.org Fri Mar  5 13:03:07 2021\nFrom: sender@example.org\n\
             Subject: message {n}\n\n"
        )
        .unwrap();
        // About 1 MB of lines that differ from message to message.
        for line in 0..18_000 {
            writeln!(
                w,
                "{n:04} {line:05} the quick brown fox jumps over the lazy dog {}",
                line * n % 9973
            )
            .unwrap();
        }
        writeln!(w).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let size = fs::metadata(&file).unwrap().len();
    let store = dir.path().join("store");
    let c = run_capped(
        CAP,
        &["import", "--store", s(&store), "--mbox", s(&file), "--json"],
    );
    assert_eq!(c.run.code, 0, "{}", c.run.stderr);
    let json = c.run.json();
    eprintln!(
        "mbox of {:.0} MB ({MESSAGES} messages of about 1 MB) imported in {:.1} s under a {} MB \
         address-space cap: peak RSS {:.1} MB (sampled), {:.1} MB (reported)",
        size as f64 / 1e6,
        c.seconds,
        CAP >> 20,
        c.peak_rss as f64 / 1e6,
        json["peak_rss_bytes"].as_f64().unwrap() / 1e6
    );
    assert_eq!(json["added"], MESSAGES);
    assert!(
        size > CAP + (CAP >> 1),
        "the mbox must be well over the cap"
    );
    assert!(
        json["peak_rss_bytes"].as_u64().unwrap() < 64 << 20,
        "{json}"
    );
}
