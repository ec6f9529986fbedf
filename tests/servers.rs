//! imapferry against IMAP servers other than Dovecot: pymap with its in-memory (`dict`) and its
//! on-disk (`maildir`) backend, and a bare hoodiecrow (plain IMAP4rev1: no UIDPLUS, CONDSTORE,
//! LITERAL+, NAMESPACE or SPECIAL-USE). Real migrations meet servers that rewrite what they
//! store, close the connection on a command they dislike and lack the extensions Dovecot has.
//!
//! For each server this file records what it does differently, as assertions: what it announces
//! and answers ([`answers_of`]), what it serves back for what it was given ([`served_as`], with
//! Dovecot as the reference row), and then what imapferry does with it: `pull` from it, `push`
//! into it from a store pulled from Dovecot, `check` against it, a re-run push. The tests at the
//! end pin down what used to go wrong against these servers (issue 11): a CREATE answered with
//! BYE blocking every folder, a message rewritten by the server appended twice after a cut
//! link, `check` advising a push that could change nothing, a failed CREATE reported as made.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use common::raw::{Answer, RawImap};
use common::run::{command_for, pulled_store, run_against, store_messages, Run};
use common::*;

// ---------------------------------------------------------------------------------------------
// The test account and what each server makes of it

/// Header-only, CRLF-terminated, no blank line after the header: the message pymap rewrites
/// differently in each backend.
const NO_SEPARATOR: &[u8] =
    b"From: a@example.org\r\nSubject: no body separator\r\nMessage-ID: <odd3@x>\r\n";

/// `Corpus::small()` (non-ASCII `Entwürfe`, a hierarchy, flags and keywords, attachments,
/// duplicates) plus `日本語` and the messages servers tend to rewrite: no final CRLF, bare LF
/// line endings, no body separator, keywords, and an INTERNALDATE after 2038.
fn rough_corpus() -> Corpus {
    let mut c = Corpus::small();
    c.folders.push("日本語".to_string());
    let odd = |folder: &str, bytes: &[u8], flags: &[&str], date: &str| {
        let mut flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        flags.sort();
        CorpusMessage {
            folder: folder.to_string(),
            bytes: bytes.to_vec(),
            flags,
            internaldate: date.to_string(),
        }
    };
    c.messages.extend([
        odd(
            "INBOX",
            b"From: a@example.org\r\nSubject: no final CRLF\r\nMessage-ID: <odd1@x>\r\n\r\nbody without a final line break",
            &["\\Seen"],
            "05-Mar-2021 14:03:07 +0100",
        ),
        odd(
            "INBOX",
            b"From: a@example.org\nSubject: bare LF\nMessage-ID: <odd2@x>\n\nline one\nline two\n",
            &["\\Seen", "$Forwarded"],
            "06-Mar-2021 14:03:07 -0500",
        ),
        odd("INBOX", NO_SEPARATOR, &["Work"], "07-Mar-2021 23:59:59 +1345"),
        odd(
            "日本語",
            b"From: a@example.org\r\nSubject: keywords\r\nMessage-ID: <odd4@x>\r\n\r\nbody\r\n",
            &["\\Flagged", "$Junk", "Work"],
            "08-Mar-2021 00:00:00 +0000",
        ),
        odd(
            "日本語",
            b"From: a@example.org\r\nSubject: far future\r\nMessage-ID: <odd5@x>\r\n\r\nbody\r\n",
            &[],
            "31-Dec-2040 23:59:59 -1200",
        ),
    ]);
    c
}

/// What `kind` serves back (`BODY[]`) for a message APPENDed as `sent`: observed, and held to
/// for every message of [`rough_corpus`] in [`host1_test`].
fn served_as(kind: ServerKind, sent: &[u8]) -> Vec<u8> {
    match kind {
        // Stores LF and serves CRLF: a bare LF becomes CRLF.
        ServerKind::Dovecot => lf_to_crlf(sent),
        // A header ending in CRLF with no blank line after it loses its final LF (`…<odd3@x>\r`).
        ServerKind::PymapDict if !has_separator(sent) && sent.ends_with(b"\r\n") => {
            sent[..sent.len() - 1].to_vec()
        }
        ServerKind::PymapDict | ServerKind::Hoodiecrow => sent.to_vec(),
        // Python's mailbox module: every CRLF (and lone CR) becomes LF, and a header without a
        // blank line after it gets one (`…<odd3@x>\n\n`).
        ServerKind::PymapMaildir => {
            let mut out = crlf_to_lf(sent);
            if !has_separator(&out) {
                if !out.ends_with(b"\n") {
                    out.push(b'\n');
                }
                out.push(b'\n');
            }
            out
        }
    }
}

/// True when a blank line ends the header (CRLF or LF style).
fn has_separator(m: &[u8]) -> bool {
    m.windows(4).any(|w| w == b"\r\n\r\n")
        || m.windows(2).any(|w| w == b"\n\n")
        || m.starts_with(b"\r\n")
        || m.starts_with(b"\n")
}

fn lf_to_crlf(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + m.len() / 20);
    for (i, &b) in m.iter().enumerate() {
        if b == b'\n' && (i == 0 || m[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn crlf_to_lf(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len());
    for (i, &b) in m.iter().enumerate() {
        match b {
            b'\r' if m.get(i + 1) == Some(&b'\n') => {}
            b'\r' => out.push(b'\n'),
            _ => out.push(b),
        }
    }
    out
}

/// The flags `kind` keeps of an APPEND's `flags` (sorted): pymap's maildir backend keeps only
/// system flags; the others keep keywords too.
fn kept_on_append(kind: ServerKind, flags: &[String]) -> Vec<String> {
    let mut kept: Vec<String> = flags
        .iter()
        .filter(|f| kind != ServerKind::PymapMaildir || f.starts_with('\\'))
        .cloned()
        .collect();
    kept.sort();
    kept
}

/// How `kind` reports an APPENDed INTERNALDATE `sent` when reading it back as `got`; panics
/// naming the difference.
fn assert_date_as_expected(kind: ServerKind, sent: &str, got: &str, what: &str) {
    let (s, g) = (internaldate_to_unix(sent), internaldate_to_unix(got));
    match kind {
        // Dovecot 2.3 ignores an APPEND date past 2038 and keeps the time of the APPEND.
        ServerKind::Dovecot if s > i64::from(i32::MAX) => {
            assert_ne!(g, s, "{what}: Dovecot kept {sent}");
        }
        ServerKind::Dovecot => assert_eq!(g, s, "{what}: {sent} served as {got}"),
        // The instant, written in UTC.
        ServerKind::PymapMaildir => {
            assert_eq!(g, s, "{what}: {sent} served as {got}");
            assert!(got.ends_with(" +0000"), "{what}: {got}");
        }
        // The very string given.
        ServerKind::PymapDict | ServerKind::Hoodiecrow => {
            assert_eq!(got, sent, "{what}: INTERNALDATE")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What each server announces and answers

/// What a server answers to the commands where servers differ, recorded over a raw connection.
#[derive(Debug, PartialEq, Eq)]
struct Answers {
    greeting: String,
    /// CAPABILITY after login.
    capability: String,
    namespace: String,
    permanent_flags: String,
    /// APPEND's completion (APPENDUID or not).
    append: String,
    /// CREATE of a folder that exists: the completion, or the BYE and "closed".
    create_existing: String,
    /// The LIST line of `Missing` after `CREATE Missing/Child`.
    missing_parent: String,
    /// LIST lines after `CREATE "Dr. Jones"` (a `.` inside a name on a `/` server).
    dotted: Vec<String>,
    /// The LIST line after `CREATE "with \"quotes\""`.
    quoted: String,
    /// APPEND to a folder that does not exist.
    append_missing: String,
    /// A keyword added by STORE, as FETCH FLAGS shows the message afterwards.
    store_keyword: String,
    /// APPEND of a message holding a NUL byte.
    nul_byte: String,
    /// APPEND with a non-synchronizing literal (`{N+}`), whether announced or not.
    literal_plus: String,
}

/// Ask `server` everything [`Answers`] records, on fresh connections where one may close.
fn answers_of(server: &dyn TestServer) -> Answers {
    let login = || RawImap::login(server.port(), server.user(), server.password());
    let mut c = login();
    let greeting = c.greeting.clone();
    let capability = c.command("CAPABILITY").lines("* CAPABILITY")[0].to_string();
    let namespace = c.command("NAMESPACE").done;
    let select = c.command("SELECT INBOX");
    let permanent_flags = select.lines("* OK [PERMANENTFLAGS")[0].to_string();
    let msg = b"From: a@example.org\r\nSubject: probe\r\n\r\nbody\r\n";
    let append = c
        .command_with_literal("APPEND INBOX (\\Seen)", msg, false)
        .done;
    c.command("STORE 1 +FLAGS (Work)");
    let store_keyword = c.command("FETCH 1 (FLAGS)").lines("* 1 FETCH")[0].to_string();
    let nul_byte = c
        .command_with_literal("APPEND INBOX", b"Subject: nul\r\n\r\na\0b\r\n", false)
        .done;
    let literal_plus = c.command_with_literal("APPEND INBOX", msg, true).done;
    let append_missing = c.command_with_literal("APPEND Nowhere", msg, false).done;
    c.command("CREATE Archive");
    let create_existing = outcome(&c.command("CREATE Archive"));
    let mut c = login();
    c.command("CREATE Missing/Child");
    c.command("CREATE \"Dr. Jones\"");
    c.command("CREATE \"with \\\"quotes\\\"\"");
    let list: Vec<String> = c
        .command("LIST \"\" \"*\"")
        .lines("* LIST")
        .into_iter()
        .map(String::from)
        .collect();
    let named = |prefix: &str| -> Vec<String> {
        let (bare, quoted) = (format!("\"/\" {prefix}"), format!("\"/\" \"{prefix}"));
        list.iter()
            .filter(|l| l.contains(&bare) || l.contains(&quoted))
            .cloned()
            .collect()
    };
    Answers {
        greeting,
        capability,
        namespace,
        permanent_flags,
        append: without_numbers(&append),
        create_existing,
        missing_parent: named("Missing").first().cloned().unwrap_or_default(),
        dotted: named("Dr"),
        quoted: named("with").first().cloned().unwrap_or_default(),
        append_missing,
        store_keyword,
        nul_byte: without_numbers(&nul_byte),
        literal_plus: without_numbers(&literal_plus),
    }
}

/// The completion, or the BYE line and "(closed)".
fn outcome(a: &Answer) -> String {
    match (a.bye(), a.closed) {
        (Some(bye), true) => format!("{bye} (closed)"),
        _ => a.done.clone(),
    }
}

/// `OK [APPENDUID 1404934082 1] …` with the numbers (random UIDVALIDITY) as `N`.
fn without_numbers(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let digits = w.trim_end_matches(']');
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                w.replacen(digits, "N", 1)
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const PYMAP_CAPABILITY: &str = "* CAPABILITY IMAP4rev1 LITERAL+ ID BINARY UIDPLUS MOVE CHILDREN \
                                APPENDLIMIT=1000000000 IDLE OBJECTID MULTIAPPEND";

/// The answers both pymap backends share; the differences are set by the callers.
fn pymap_answers() -> Answers {
    Answers {
        greeting: "* OK [CAPABILITY IMAP4rev1 LITERAL+ ID AUTH=PLAIN AUTH=LOGIN] Server ready \
                   localhost"
            .into(),
        capability: PYMAP_CAPABILITY.into(),
        namespace: "BAD NAMESPACE: Unknown command.".into(),
        // No \*: a keyword cannot be STOREd (imapferry leaves keywords off for that).
        permanent_flags: "* OK [PERMANENTFLAGS (\\Answered \\Deleted \\Draft \\Flagged \\Seen)] \
                          Flags permitted."
            .into(),
        append: "OK [APPENDUID N N] APPEND completed.".into(),
        create_existing: "NO [ALREADYEXISTS] Mailbox already exists.".into(),
        missing_parent: "* LIST (\\Noselect \\HasChildren) \"/\" Missing".into(),
        dotted: vec!["* LIST (\\HasNoChildren) \"/\" \"Dr. Jones\"".into()],
        quoted: "* LIST (\\HasNoChildren) \"/\" \"with \\\"quotes\\\"\"".into(),
        append_missing: "NO [TRYCREATE] Mailbox does not exist.".into(),
        // The STORE is answered OK, the keyword silently dropped.
        store_keyword: "* 1 FETCH (FLAGS (\\Recent \\Seen))".into(),
        nul_byte: "OK [APPENDUID N N] APPEND completed.".into(),
        literal_plus: "OK [APPENDUID N N] APPEND completed.".into(),
    }
}

fn expected_answers(kind: ServerKind) -> Answers {
    match kind {
        ServerKind::PymapDict => pymap_answers(),
        ServerKind::PymapMaildir => Answers {
            // An exception in the handler: the connection is closed.
            create_existing: "* BYE [SERVERBUG] Unhandled server error. (closed)".into(),
            // Maildir++ joins levels with `.`: the name becomes two levels.
            dotted: vec![
                "* LIST (\\Noselect \\HasChildren) \"/\" Dr".into(),
                "* LIST (\\HasNoChildren) \"/\" \"Dr/ Jones\"".into(),
            ],
            ..pymap_answers()
        },
        ServerKind::Hoodiecrow => Answers {
            greeting: "* OK Hoodiecrow ready for rumble".into(),
            capability: "* CAPABILITY IMAP4rev1".into(),
            namespace: "BAD Invalid command NAMESPACE".into(),
            permanent_flags: "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Draft \\Deleted \\Seen \
                              \\*)]"
                .into(),
            append: "OK APPEND Completed".into(),
            create_existing: "NO Mailbox already exists".into(),
            // The missing parent is created as a real, selectable folder.
            missing_parent: "* LIST (\\HasChildren) \"/\" \"Missing\"".into(),
            dotted: vec!["* LIST (\\HasNoChildren) \"/\" \"Dr. Jones\"".into()],
            // LIST writes the name `with \quotes\`: the double quotes are lost.
            quoted: "* LIST (\\HasNoChildren) \"/\" \"with \\\\quotes\\\\\"".into(),
            append_missing: "BAD Invalid mailbox argument".into(),
            store_keyword: "* 1 FETCH (FLAGS (\\Seen Work))".into(),
            nul_byte: "BAD Error parsing command".into(),
            literal_plus: "BAD Error parsing command".into(),
        },
        ServerKind::Dovecot => unreachable!("Dovecot's answers are the other tests' business"),
    }
}

#[test]
fn pymap_dict_answers() {
    let s = Pymap::start(PymapBackend::Dict);
    assert_eq!(answers_of(&s), expected_answers(ServerKind::PymapDict));
}

#[test]
fn pymap_maildir_answers_and_closes_the_connection_on_create_of_an_existing_folder() {
    let s = Pymap::start(PymapBackend::Maildir);
    assert_eq!(answers_of(&s), expected_answers(ServerKind::PymapMaildir));
}

#[test]
fn hoodiecrow_answers_as_plain_imap4rev1() {
    let s = Hoodiecrow::start();
    assert_eq!(answers_of(&s), expected_answers(ServerKind::Hoodiecrow));
}

// ---------------------------------------------------------------------------------------------
// As host1: seed, read back, pull

/// Seed `kind` with [`rough_corpus`]; every message must come back as [`served_as`] says, with
/// the flags [`kept_on_append`] says and the date [`assert_date_as_expected`] says. Then pull:
/// the store holds exactly what the server serves, and a second pull fetches nothing.
fn host1_test(kind: ServerKind) {
    let corpus = rough_corpus();
    let server = kind.start();
    let server = &*server;
    seed_server(server, &corpus);
    let got = messages_of(server);
    let mut rewritten = 0;
    for (folder, sent) in corpus.by_folder() {
        let served = &got[&folder];
        assert_eq!(served.len(), sent.len(), "{}: {folder}", kind.name());
        for (i, (g, w)) in served.iter().zip(&sent).enumerate() {
            let what = format!("{} {folder} #{i}", kind.name());
            assert!(
                g.bytes == served_as(kind, &w.bytes),
                "{what}: sent {:?}\nserved {:?}",
                String::from_utf8_lossy(&w.bytes),
                String::from_utf8_lossy(&g.bytes)
            );
            rewritten += usize::from(g.bytes != w.bytes);
            assert_eq!(g.flags, kept_on_append(kind, &w.flags), "{what}: flags");
            assert_date_as_expected(kind, &w.internaldate, &g.internaldate, &what);
        }
    }
    eprintln!(
        "{}: {rewritten} of {} messages served otherwise than appended",
        kind.name(),
        corpus.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let r = run_against("pull", server, &store, &[])
        .expect_code(0)
        .json();
    let pulled = r["new"].as_u64().unwrap() + r["reused"].as_u64().unwrap();
    assert_eq!(pulled, corpus.len() as u64, "{}: {r}", kind.name());
    run::assert_store_matches(&store, server);
    let r = run_against("pull", server, &store, &[])
        .expect_code(0)
        .json();
    assert_eq!(r["new"], 0, "{}: a second pull: {r}", kind.name());
    run::assert_store_matches(&store, server);
}

#[test]
fn dovecot_as_host1_the_reference() {
    host1_test(ServerKind::Dovecot);
}

#[test]
fn pymap_dict_as_host1() {
    host1_test(ServerKind::PymapDict);
}

#[test]
fn pymap_maildir_as_host1() {
    host1_test(ServerKind::PymapMaildir);
}

#[test]
fn hoodiecrow_as_host1() {
    host1_test(ServerKind::Hoodiecrow);
}

// ---------------------------------------------------------------------------------------------
// As host2: push from a store pulled from Dovecot, check, push again

/// A Dovecot seeded with [`rough_corpus`] and a store pulled from it.
fn dovecot_store() -> (Dovecot, tempfile::TempDir, std::path::PathBuf) {
    let h1 = Dovecot::start_default();
    seed(&h1, "alice", &rough_corpus());
    let (dir, store) = pulled_store(&h1);
    (h1, dir, store)
}

/// Whether `kind` stores keywords pushed to it: imapferry sends them only where SELECT's
/// PERMANENTFLAGS has `\*`, which pymap's lack.
fn takes_keywords(kind: ServerKind) -> bool {
    matches!(kind, ServerKind::Dovecot | ServerKind::Hoodiecrow)
}

/// Per folder, sorted: (bytes, flags, INTERNALDATE instant) as `kind` should hold the store
/// after a push: bytes as [`served_as`], keywords only where [`takes_keywords`].
fn expected_on_host2(kind: ServerKind, store: &Path) -> offline::Contents {
    let mut out = offline::Contents::new();
    for (folder, msgs) in store_messages(store) {
        let mut v: Vec<_> = msgs
            .into_iter()
            .map(|m| {
                let mut flags: Vec<String> = m
                    .flags
                    .into_iter()
                    .filter(|f| takes_keywords(kind) || f.starts_with('\\'))
                    .collect();
                flags.sort();
                let date = internaldate_to_unix(&m.internaldate);
                (served_as(kind, &m.bytes), flags, date)
            })
            .collect();
        v.sort();
        out.insert(folder, v);
    }
    out
}

/// How many store messages `kind` serves otherwise than pushed, and how many lose keywords.
fn expected_differences(kind: ServerKind, store: &Path) -> (u64, u64) {
    let msgs: Vec<_> = store_messages(store).into_values().flatten().collect();
    let sizes = msgs
        .iter()
        .filter(|m| served_as(kind, &m.bytes).len() != m.bytes.len())
        .count();
    let flags = msgs
        .iter()
        .filter(|m| !takes_keywords(kind) && m.flags.iter().any(|f| !f.starts_with('\\')))
        .count();
    (sizes as u64, flags as u64)
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("no {key} in {v}"))
}

/// Push the Dovecot store into `kind`: every message arrives once, as [`expected_on_host2`];
/// `check` reports exactly the rewritten sizes and the dropped keywords; a second push sends
/// nothing and changes nothing, and `check` says the same again.
fn host2_test(kind: ServerKind) {
    let (_h1, _dir, store) = dovecot_store();
    let total = store_messages(&store).values().map(Vec::len).sum::<usize>() as u64;
    let host2 = kind.start();
    let host2 = &*host2;
    let name = kind.name();

    let pushed = run_against("push", host2, &store, &[]).expect_code(0);
    let r = pushed.json();
    assert_eq!((n(&r, "sent"), n(&r, "failed")), (total, 0), "{name}: {r}");
    let altered_on_stderr = pushed.stderr.matches("holds it altered").count() as u64;
    let want = expected_on_host2(kind, &store);
    offline::assert_same_contents(&offline::contents_of(host2), &want, name);
    let stored = store_messages(&store);
    for f in r["per_folder"].as_array().unwrap() {
        let folder = f["folder"].as_str().unwrap();
        let dropped: BTreeSet<&str> = f["dropped_keywords"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k.as_str().unwrap())
            .collect();
        let keywords: BTreeSet<&str> = stored[folder]
            .iter()
            .flat_map(|m| m.flags.iter().map(String::as_str))
            .filter(|f| !f.starts_with('\\') && !takes_keywords(kind))
            .collect();
        assert_eq!(dropped, keywords, "{name}: keywords left off in {folder}");
    }

    // Rewritten messages are present, listed as altered (push's warnings, check's `altered`),
    // and not a failure: pushing again cannot change what host2 stores. Keywords host2 does
    // not keep (PERMANENTFLAGS without `\*`) are left off by push and not counted as flag
    // differences by check.
    let (sizes, _keywords_dropped) = expected_differences(kind, &store);
    assert_eq!(
        r["warnings"].as_array().unwrap().len() as u64,
        sizes,
        "{name}: push lists every altered message: {r}"
    );
    assert_eq!(altered_on_stderr, sizes, "{name}: and says so on stderr");
    let c = run_against("check", host2, &store, &[])
        .expect_code(0)
        .json();
    let counts = |c: &serde_json::Value| {
        let keys = [
            "present",
            "missing",
            "extra",
            "doubles",
            "altered",
            "flag_differences",
        ];
        keys.map(|k| n(c, k))
    };
    assert_eq!(counts(&c), [total, 0, 0, 0, sizes, 0], "{name}: check {c}");
    eprintln!(
        "{name}: push sent {total}; check: {sizes} altered by host2; {}",
        c["verdict"]
    );

    let r = run_against("push", host2, &store, &[])
        .expect_code(0)
        .json();
    assert_eq!((n(&r, "sent"), n(&r, "already")), (0, total), "{name}: {r}");
    offline::assert_same_contents(&offline::contents_of(host2), &want, name);
    let again = run_against("check", host2, &store, &[]).json();
    assert_eq!(
        counts(&again),
        counts(&c),
        "{name}: check after the re-push"
    );
}

#[test]
fn pymap_dict_as_host2() {
    host2_test(ServerKind::PymapDict);
}

#[test]
fn pymap_maildir_as_host2() {
    host2_test(ServerKind::PymapMaildir);
}

#[test]
fn hoodiecrow_as_host2() {
    host2_test(ServerKind::Hoodiecrow);
}

// ---------------------------------------------------------------------------------------------
// What used to go wrong

/// Messages on `server` per folder.
fn counts(server: &dyn TestServer) -> BTreeMap<String, usize> {
    messages_of(server)
        .into_iter()
        .map(|(f, m)| (f, m.len()))
        .collect()
}

/// A small message for `folder`, told apart by `n`.
fn note(folder: &str, n: u32) -> CorpusMessage {
    CorpusMessage {
        folder: folder.to_string(),
        bytes: format!(
            "From: a@example.org\r\nSubject: note {n}\r\nMessage-ID: <note{n}@x>\r\n\r\nnote {n}\r\n"
        )
        .into_bytes(),
        flags: vec!["\\Seen".to_string()],
        internaldate: "05-Mar-2021 14:03:07 +0100".to_string(),
    }
}

/// A Dovecot (`LAYOUT=fs`, so a name may hold `.`) holding one note in INBOX and in `folder`,
/// and a store pulled from it.
fn dovecot_with_folder(folder: &str) -> (Dovecot, tempfile::TempDir, std::path::PathBuf) {
    let h1 = Dovecot::start(DovecotConfig::new().fs_layout());
    let corpus = Corpus {
        folders: vec!["INBOX".to_string(), folder.to_string()],
        messages: vec![note("INBOX", 1), note(folder, 2)],
    };
    seed(&h1, "alice", &corpus);
    let (dir, store) = pulled_store(&h1);
    (h1, dir, store)
}

/// Add note 3 to INBOX on `h1` and pull it into `store`.
fn one_more_in_inbox(h1: &Dovecot, store: &Path) {
    let corpus = Corpus {
        folders: vec!["INBOX".to_string()],
        messages: vec![note("INBOX", 3)],
    };
    seed(h1, "alice", &corpus);
    run::pull(h1, "alice", store, &[]).expect_code(0);
}

/// Run `cmd` for at most `limit`; None when it had to be killed.
fn run_for(mut cmd: std::process::Command, limit: Duration) -> Option<(Run, Duration)> {
    let t = Instant::now();
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run imapferry");
    while t.elapsed() < limit {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return Some((out.into(), t.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

#[test]
fn a_dotted_folder_pushed_into_pymap_maildir_becomes_two_levels_and_a_bounded_repush_ends() {
    let (h1, _dir, store) = dovecot_with_folder("Dr. Jones");
    let host2 = Pymap::start(PymapBackend::Maildir);
    run_against("push", &host2, &store, &[]).expect_code(0);
    let want = BTreeMap::from([("INBOX".to_string(), 1), ("Dr/ Jones".to_string(), 1)]);
    let folders = |c: BTreeMap<String, usize>| -> BTreeMap<String, usize> {
        c.into_iter().filter(|(_, n)| *n > 0).collect()
    };
    assert_eq!(
        folders(counts(&host2)),
        want,
        "pymap-maildir splits the name at the dot"
    );

    // The re-push no longer sees "Dr. Jones" and CREATEs it again: pymap closes the connection
    // (BYE [SERVERBUG]). With retries bounded the push ends; what it did is the ignored test's.
    one_more_in_inbox(&h1, &store);
    let cmd = command_for("push", &host2, &store, &["--retries", "1"]);
    let (r, took) = run_for(cmd, Duration::from_secs(30)).expect("a bounded re-push ends");
    eprintln!(
        "re-push with --retries 1: exit {} after {took:?}:\n{}",
        r.code, r.stderr
    );
    assert!(r.stderr.contains("BYE [SERVERBUG]"), "{}", r.stderr);
    assert_eq!(counts(&host2)["Dr/ Jones"], 1, "the pushed note stays once");
}

/// Shows: one folder whose CREATE makes the server close the connection (pymap-maildir, "Dr.
/// Jones" pushed before, now listed as `Dr/ Jones`) makes every later push send the whole
/// CREATE burst again after each BYE, 20 times with backoff (0.2 s doubling to 60 s: about 13
/// minutes of waiting) before giving up, and no folder is pushed meanwhile: a new INBOX message
/// does not arrive. Fails today: the push is still retrying after 90 s, INBOX holds 1 of 2.
#[test]
fn a_repush_after_a_dotted_folder_into_pymap_maildir_ends_promptly_and_delivers_the_rest() {
    let (h1, _dir, store) = dovecot_with_folder("Dr. Jones");
    let host2 = Pymap::start(PymapBackend::Maildir);
    run_against("push", &host2, &store, &[]).expect_code(0);
    one_more_in_inbox(&h1, &store);
    let cmd = command_for("push", &host2, &store, &[]);
    let ended = run_for(cmd, Duration::from_secs(90)).map(|(r, took)| (r.code, took));
    let inbox = counts(&host2)["INBOX"];
    assert!(
        ended.is_some() && inbox == 2,
        "re-push: {} (exit status, time); INBOX holds {inbox} of 2 messages",
        ended.map_or("still running after 90 s".to_string(), |e| format!("{e:?}"))
    );
}

/// Push the Dovecot store into `kind` through a proxy that cuts the first connection after
/// about 60 kB, in the middle of the APPENDs; returns the push report and the messages per
/// folder in the store and on host2.
fn push_cut_mid_append(
    kind: ServerKind,
) -> (
    serde_json::Value,
    BTreeMap<String, usize>,
    BTreeMap<String, usize>,
) {
    let (_h1, _dir, store) = dovecot_store();
    let host2 = kind.start();
    let proxy = Proxy::start(
        host2.port(),
        Faults {
            cut_after: Some(60_000),
            affects: Affects::FirstN(1),
            seed: 3,
            ..Faults::default()
        },
    );
    let via = Via(&*host2, proxy.port());
    let r = run_against("push", &via, &store, &["--jobs", "1"]).expect_code(0);
    assert_eq!(proxy.cuts(), 1, "the link was cut once");
    let stored = store_messages(&store)
        .into_iter()
        .map(|(f, m)| (f, m.len()))
        .collect();
    (r.json(), stored, counts(&*host2))
}

#[test]
fn a_push_into_pymap_maildir_cut_mid_append_ends_and_delivers_every_message() {
    let (r, stored, got) = push_cut_mid_append(ServerKind::PymapMaildir);
    eprintln!(
        "sent {}, recovered {}; host2 {got:?}",
        r["sent"], r["recovered"]
    );
    for (folder, n) in &stored {
        assert!(
            got[folder] >= *n,
            "{folder}: {} of {n} arrived",
            got[folder]
        );
    }
}

/// Shows: after a cut between APPENDs and their answers, the next connection looks for the
/// messages in flight among host2's new ones by size and SHA-256; pymap's maildir backend
/// rewrote them (CRLF to LF), so none is recognised and each that had arrived is appended again.
/// Fails today: with `cut_after` 60 kB and seed 3, 6 APPENDs to Archive/2024 are in flight,
/// `-v` says "0 reached host2", and Archive/2024 ends with 7 messages for the store's 6. The
/// same cut into pymap-dict says "1 reached host2" and leaves no duplicate (the test below).
#[test]
fn a_push_into_pymap_maildir_cut_mid_append_sends_no_message_twice() {
    let (r, stored, got) = push_cut_mid_append(ServerKind::PymapMaildir);
    assert_eq!(got, stored, "host2 against the store (sent {})", r["sent"]);
}

#[test]
fn a_push_into_pymap_dict_cut_mid_append_recovers_without_duplicates() {
    let (r, stored, got) = push_cut_mid_append(ServerKind::PymapDict);
    assert_eq!(got, stored, "host2 against the store: {r}");
}

/// Shows: after a complete push into pymap-maildir, `check` exits 3 and ends "run `imapferry
/// push` to fix", but what it found (36 of 36 messages with another size: CRLF became LF; 7
/// with other flags: keywords PERMANENTFLAGS does not allow, which push reported as left off)
/// is nothing a push can change: the push it advises sends nothing, and `check` says the same
/// again, forever. Fails today.
#[test]
fn check_on_pymap_maildir_does_not_advise_a_push_that_changes_nothing() {
    let (_h1, _dir, store) = dovecot_store();
    let host2 = Pymap::start(PymapBackend::Maildir);
    run_against("push", &host2, &store, &[]).expect_code(0);
    let first = run_against("check", &host2, &store, &[]);
    let r = run_against("push", &host2, &store, &[])
        .expect_code(0)
        .json();
    let again = run_against("check", &host2, &store, &[]);
    let verdict = again.json()["verdict"].as_str().unwrap_or("").to_string();
    assert!(
        again.code == 0 || !verdict.contains("run `imapferry push`"),
        "check exit {} then {} after a push that sent {}: {verdict}",
        first.code,
        again.code,
        r["sent"]
    );
}

#[test]
fn a_folder_named_with_double_quotes_comes_back_from_hoodiecrow_renamed_and_a_repush_ends() {
    let (_h1, _dir, store) = dovecot_with_folder("with \"quotes\"");
    let host2 = Hoodiecrow::start();
    run_against("push", &host2, &store, &[]).expect_code(0);
    // Its LIST sends `"with \\quotes\\"`: the name `with \quotes\`.
    let want = BTreeMap::from([("INBOX".to_string(), 1), ("with \\quotes\\".to_string(), 1)]);
    assert_eq!(counts(&host2), want);
    let r = run_against("push", &host2, &store, &[]);
    eprintln!("re-push: exit {}\n{}", r.code, r.stderr);
    assert_eq!(counts(&host2), want, "the re-push appends nothing twice");
}

/// Shows: a push whose CREATE of a folder fails lists the folder both under `failures` ("cannot
/// create it on host2") and under `created` ("1 created" in the summary line): hoodiecrow lists
/// `with "quotes"` as `with \quotes\`, so the re-push CREATEs it again and is answered `NO
/// Mailbox already exists`. Fails today.
#[test]
fn a_folder_whose_create_failed_is_not_reported_as_created() {
    let (_h1, _dir, store) = dovecot_with_folder("with \"quotes\"");
    let host2 = Hoodiecrow::start();
    run_against("push", &host2, &store, &[]).expect_code(0);
    let r = run_against("push", &host2, &store, &[]).json();
    let failed: Vec<&str> = r["failures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["folder"].as_str())
        .collect();
    let created: Vec<&str> = r["created"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert!(
        created.iter().all(|c| !failed.contains(c)),
        "created {created:?}, failed {failed:?}"
    );
}
