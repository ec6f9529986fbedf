//! imapferry against IMAP servers other than Dovecot: pymap with its in-memory (`dict`) and its
//! on-disk (`maildir`) backend, and a bare hoodiecrow (plain IMAP4rev1: no UIDPLUS, CONDSTORE,
//! LITERAL+, NAMESPACE or SPECIAL-USE). Real migrations meet servers that rewrite what they
//! store, close the connection on a command they dislike and lack the extensions Dovecot has.
//!
//! For each server this file records what it does differently, as assertions: what it announces
//! and answers ([`answers_of`]), what it serves back for what it was given ([`served_as`], with
//! Dovecot as the reference row), and then what imapferry does with it: `pull` from it, `push`
//! into it from a store pulled from Dovecot, `check` against it, a re-run push. The assertions
//! are today's facts that should stay true.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::raw::{Answer, RawImap};
use common::run::{pulled_store, run_against, store_messages};
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

    let r = run_against("push", host2, &store, &[])
        .expect_code(0)
        .json();
    assert_eq!((n(&r, "sent"), n(&r, "failed")), (total, 0), "{name}: {r}");
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

    let (sizes, flags) = expected_differences(kind, &store);
    let clean = sizes == 0 && flags == 0;
    let c = run_against("check", host2, &store, &[]).expect_code(if clean { 0 } else { 3 });
    let c = c.json();
    let counts = |c: &serde_json::Value| {
        let keys = ["present", "missing", "extra", "size_differences"];
        keys.map(|k| n(c, k))
    };
    assert_eq!(counts(&c), [total, 0, 0, sizes], "{name}: check {c}");
    assert_eq!(n(&c, "flag_differences"), flags, "{name}: check {c}");
    eprintln!(
        "{name}: push sent {total}; check: {sizes} sizes and {flags} flags differ; {}",
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
