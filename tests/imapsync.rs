//! An imapsync user's command lines (issue 21, item 2): every imapsync option of
//! docs/imapsync.md answered in one run (not needed ones removed with a note, the others
//! refused together with what to use), a real line from imapsync's documentation taken once
//! its refused options are dropped as told, and no tip that names an option that deletes or
//! lowers security.

mod common;

use std::time::{Duration, Instant};

use common::offline::{assert_same_contents, contents_of};
use common::run::{imapferry, Run};
use common::*;

fn run(args: &[&str]) -> (Run, Duration) {
    let started = Instant::now();
    let run: Run = imapferry().args(args).output().unwrap().into();
    (run, started.elapsed())
}

/// imapsync's FAQ.d/FAQ.Gmail.txt, "from Gmail to another server" (16 options), with the test
/// servers' addresses and ports, host1's CA trusted and host2 in plain on loopback.
fn faq_gmail_line(p1: &str, p2: &str) -> Vec<String> {
    let line = format!(
        "--host1 127.0.0.1 --port1 {p1} --ssl1 --user1 alice --password1 secret1 \
         --host2 127.0.0.1 --port2 {p2} --notls2 --user2 alice --password2 secret1 \
         --maxbytespersecond 40_000 --maxbytesafter 3_000_000_000 --automap --maxsleep 2 \
         --skipcrossduplicates --useheader=X-Gmail-Received --useheader Message-Id"
    );
    let mut v: Vec<String> = line.split_whitespace().map(String::from).collect();
    v.extend(
        [
            "--regextrans2",
            "s,\\[Gmail\\].,,",
            "--folderlast",
            "[Gmail]/All Mail",
        ]
        .map(String::from),
    );
    v
}

#[test]
fn a_real_imapsync_line_is_answered_in_one_run_and_runs_once_told() {
    let h1 = Dovecot::start(DovecotConfig::new().tls());
    let h2 = Dovecot::start_default();
    seed(&h1, "alice", &Corpus::small());
    let home = tempfile::tempdir().unwrap();
    let (p1, p2) = (h1.imaps_port().to_string(), h2.port().to_string());
    let line = faq_gmail_line(&p1, &p2);
    let options = line.iter().filter(|w| w.starts_with("--")).count();
    assert!(options >= 16, "{options} options");
    let sync = |args: &[String]| {
        let mut c = imapferry();
        c.arg("sync")
            .args(args)
            .env("HOME", home.path())
            .env_remove("XDG_DATA_HOME")
            .env("SSL_CERT_FILE", h1.ca_file());
        let started = Instant::now();
        let run: Run = c.output().unwrap().into();
        (run, started.elapsed())
    };
    let (first, took) = sync(&line);
    eprintln!("first run, {took:.1?}:\n{}", first.stderr);
    assert_eq!(first.code, 2, "{}", first.stderr);
    assert!(took < Duration::from_secs(2), "{took:?}");
    for refused in [
        "--maxbytesafter",
        "--maxsleep",
        "--skipcrossduplicates",
        "--folderlast",
    ] {
        assert!(
            first.stderr.lines().any(|l| l
                .trim_start()
                .starts_with(&format!("{refused}: not supported"))),
            "{refused} not answered:\n{}",
            first.stderr
        );
    }
    let notes = first
        .stderr
        .matches("note: --useheader is not needed")
        .count();
    assert_eq!(notes, 2, "{}", first.stderr);
    assert!(
        !home.path().join(".local").exists(),
        "a refused line made a store"
    );

    // Dropped as told, with their values: the rest of the line works.
    let drop = [
        ("--maxbytesafter", 1),
        ("--maxsleep", 1),
        ("--skipcrossduplicates", 0),
        ("--folderlast", 1),
    ];
    let mut told = Vec::new();
    let mut words = line.iter();
    while let Some(w) = words.next() {
        match drop.iter().find(|(d, _)| d == w) {
            Some((_, values)) => {
                for _ in 0..*values {
                    words.next();
                }
            }
            None => told.push(w.clone()),
        }
    }
    let (second, took) = sync(&told);
    eprintln!(
        "second run, {took:.1?}:\n{}{}",
        second.stderr, second.stdout
    );
    let second = second.expect_code(0);
    assert!(
        second.stderr.contains("note: --useheader"),
        "{}",
        second.stderr
    );
    assert!(
        second.stderr.contains("--regextrans2") && second.stderr.contains("matched no folder"),
        "the Gmail-only transform changed nothing, and says so:\n{}",
        second.stderr
    );
    assert_same_contents(
        &contents_of(&h2.account("alice")),
        &contents_of(&h1.account("alice")),
        "host2",
    );
}

/// FAQ.Gmail.txt's Gmail-to-Gmail line (18 options): every option imapferry does not take as
/// it is comes back in the one answer.
#[test]
fn the_gmail_to_gmail_line_of_imapsyncs_faq_is_answered_whole() {
    let line = "sync --host1 imap.gmail.com --ssl1 --user1 account1@gmail.com \
        --password1 gmailsecret1 --host2 imap.gmail.com --ssl2 --user2 account2@gmail.com \
        --password2 gmailsecret2 --maxbytespersecond 20_000 --maxbytesafter 1_000_000_000 \
        --automap --maxsleep 2 --useheader X-Gmail-Received --useheader Message-Id \
        --synclabels --resynclabels --exclude \\[Gmail\\]$ --folderlast [Gmail]/All_Mail";
    let args: Vec<&str> = line.split_whitespace().collect();
    let (r, took) = run(&args);
    eprintln!("{took:.1?}:\n{}", r.stderr);
    assert_eq!(r.code, 2);
    let answered: Vec<&str> = r
        .stderr
        .lines()
        .filter_map(|l| l.trim_start().split(':').next())
        .filter(|o| o.starts_with("--"))
        .collect();
    assert_eq!(
        answered,
        [
            "--maxbytesafter",
            "--maxsleep",
            "--resynclabels",
            "--folderlast"
        ],
        "{}",
        r.stderr
    );
    for note in ["--useheader", "--synclabels"] {
        assert!(
            r.stderr.contains(&format!("note: {note} is not needed")),
            "{}",
            r.stderr
        );
    }
    assert!(took < Duration::from_secs(2));
}

/// Options that delete (or expunge), that lower security, or that carry secrets.
fn dangerous_words(text: &str) -> Vec<String> {
    let re = regex::Regex::new(
        r"--(delete|expunge|notls|nossl|insecure|password|passfile|showpasswords)[a-z0-9_]*|--tls[12]? none",
    )
    .unwrap();
    re.find_iter(text).map(|m| m.as_str().to_string()).collect()
}

/// The subject an option belongs to, when it is one of those.
fn domain(option: &str) -> Option<&'static str> {
    let o = option.trim_start_matches('-');
    [
        ("deletion", &["delete", "expunge"][..]),
        ("tls", &["tls", "ssl", "insecure"][..]),
        ("secrets", &["password", "passfile", "oauth"][..]),
    ]
    .into_iter()
    .find(|(_, words)| words.iter().any(|w| o.contains(w)))
    .map(|(d, _)| d)
}

/// Every option of docs/imapsync.md's tables, each alone on `sync`'s command line, and
/// mistyped options near dangerous ones: an answer names an option that deletes or lowers
/// security only when asked about that very subject, and a "did you mean" tip never does.
#[test]
fn no_tip_ever_names_an_option_that_deletes_or_lowers_security() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/imapsync.md")).unwrap();
    let names: Vec<String> = doc
        .lines()
        .filter(|l| l.starts_with("| `--"))
        .flat_map(|l| {
            let first = l.split('|').nth(1).unwrap_or_default().to_string();
            first
                .split('`')
                .skip(1)
                .step_by(2)
                .filter(|n| n.starts_with("--"))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect();
    assert!(names.len() > 200, "{} names", names.len());
    let mut checked = 0;
    for name in names.iter().filter(|n| *n != "--help") {
        let (r, _) = run(&["sync", name]);
        for d in dangerous_words(&r.stderr).into_iter().filter(|d| d != name) {
            assert!(
                domain(name).is_some() && domain(name) == domain(&d),
                "the answer to {name} names {d}:\n{}",
                r.stderr
            );
        }
        checked += 1;
    }
    // The tips the issue saw, and typos next to every dangerous option.
    let typos = [
        "--delete1x",
        "--delet2",
        "--deletes2",
        "--nolog",
        "--pidfile2",
        "--justconect",
        "--notls",
        "--notl2",
        "--nossl",
        "--insecur2",
        "--tls2none",
        "--tlss2",
        "--pasword2",
        "--passfle1",
        "--showpassword",
        "--expung2",
        "--jsonn",
    ];
    for typo in typos {
        let (r, took) = run(&["sync", typo, "--host1", "h", "--user1", "u"]);
        assert_eq!(r.code, 2, "{typo}: {}", r.stderr);
        assert!(took < Duration::from_secs(2));
        let named: Vec<String> = dangerous_words(&r.stderr)
            .into_iter()
            .filter(|d| d != typo)
            .collect();
        assert!(
            named.is_empty(),
            "{typo} got a tip naming {named:?}:\n{}",
            r.stderr
        );
        checked += 1;
    }
    let (r, _) = run(&["sync", "--exlude", "x"]);
    assert!(r.stderr.contains("did you mean --exclude?"), "{}", r.stderr);
    eprintln!("{checked} command lines, no dangerous tip");
}
