//! Gmail and Microsoft 365 through their emulation (`common::provider`, what it emulates and
//! what was never tried against the real services: docs/providers.md): each message
//! downloaded once from Gmail, appended once into Gmail with its labels, Microsoft 365's
//! refusals, throttling and lost `\Flagged` handled.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::provider::{
    LoginAlert, Place, Provider, ProviderConfig, QuotaAnswer, SeedMsg, WEBALERT_URL,
};
use common::raw::RawImap;
use common::run::{imapferry, store_messages, Run};
use common::*;
use imapferry::names::MailboxName;

const USER: &str = "alice@example.com";
const PW: &str = "secret";

fn gmail() -> Provider {
    Provider::gmail(ProviderConfig {
        password: Some(PW.into()),
        ..ProviderConfig::default()
    })
}

/// A message of about `len` bytes with its own Message-ID.
fn message(n: u32, len: usize) -> Vec<u8> {
    let mut b = format!(
        "From: Sender {n} <s{n}@example.org>\r\nTo: alice@example.com\r\nSubject: note {n}\r\n\
         Message-ID: <{n}.gmail-test@example.org>\r\nDate: Mon, 3 Mar 2025 10:00:00 +0000\r\n\r\n"
    )
    .into_bytes();
    let mut i = 0;
    while b.len() < len {
        b.extend_from_slice(
            format!("line {i} of message {n}, some words to fill it\r\n").as_bytes(),
        );
        i += 1;
    }
    b
}

/// A Gmail account of `n` messages with three labels each on average (\Inbox, \Sent,
/// \Important and five user labels, two of them nested), some starred, plus three in Spam and
/// two in Trash. Returns the account's size in bytes.
fn seed_labelled_account(g: &Provider, n: u32) -> u64 {
    const LABELS: &[&str] = &[
        "\\Inbox",
        "Work",
        "Work/Projects",
        "Receipts",
        "Travel",
        "\\Important",
        "\\Sent",
        "Family",
    ];
    let mut msgs = Vec::new();
    for i in 0..n {
        let count = [2, 3, 4][(i % 3) as usize];
        let labels: Vec<&str> = (0..count)
            .map(|k| LABELS[((i * 3 + k * 5) % LABELS.len() as u32) as usize])
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut m = SeedMsg::new(&message(i, 3_000 + (i as usize * 997) % 20_000)).labels(&labels);
        if i % 4 == 0 {
            m = m.flags(&["\\Seen", "\\Flagged"]);
        } else if i % 2 == 0 {
            m = m.flags(&["\\Seen"]);
        }
        msgs.push(m);
    }
    for i in n..n + 3 {
        msgs.push(SeedMsg::new(&message(i, 2_500)).place(Place::Spam));
    }
    for i in n + 3..n + 5 {
        msgs.push(SeedMsg::new(&message(i, 2_500)).place(Place::Trash));
    }
    let size = msgs.iter().map(|m| m.bytes.len() as u64).sum();
    g.seed(msgs);
    size
}

fn run_on(verb: &str, side: u8, port: u16, store: &std::path::Path, extra: &[&str]) -> Run {
    imapferry()
        .arg(verb)
        .arg(format!("--host{side}"))
        .arg("127.0.0.1")
        .arg(format!("--port{side}"))
        .arg(port.to_string())
        .arg(format!("--tls{side}"))
        .arg("none")
        .arg(format!("--user{side}"))
        .arg(USER)
        .arg("--store")
        .arg(store)
        .arg("--json")
        .args(extra)
        .env(format!("IMAPFERRY_PASSWORD{side}"), PW)
        .output()
        .expect("run imapferry")
        .into()
}

/// Each message's labels and flags on a Gmail account, by its bytes (Spam and Trash as
/// labels of their own).
fn labels_by_bytes(g: &Provider) -> BTreeMap<Vec<u8>, (BTreeSet<String>, BTreeSet<String>)> {
    g.messages()
        .into_iter()
        .map(|m| {
            let mut labels: BTreeSet<String> = m.labels.into_iter().collect();
            match m.place {
                Place::Spam => labels.insert("(Spam)".into()),
                Place::Trash => labels.insert("(Trash)".into()),
                Place::AllMail => false,
            };
            let flags = m.flags.into_iter().collect();
            (m.bytes, (labels, flags))
        })
        .collect()
}

/// Messages in label views: the downloads a folder-by-folder pull would make.
fn views(g: &Provider) -> u64 {
    g.folders()
        .iter()
        .filter_map(|f| g.folder_messages(f))
        .map(|v| v.iter().map(|m| m.bytes.len() as u64).sum::<u64>())
        .sum()
}

#[test]
fn a_gmail_pull_downloads_each_message_once_and_follows_label_changes() {
    let g = gmail();
    let size = seed_labelled_account(&g, 60);
    let in_views = views(&g);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = run_on("pull", 1, g.port(), &store, &[]).expect_code(0);
    let served = g.body_bytes_served();
    eprintln!(
        "account {size} bytes, {in_views} bytes in all folders; body bytes served {served}; {}",
        run.json()
    );
    assert_eq!(served, size, "each message's bytes once: {}", run.all());
    let stored = store_messages(&store);
    for (folder, label) in [("Work/Projects", "Work/Projects"), ("INBOX", "\\Inbox")] {
        let want: BTreeSet<Vec<u8>> = g
            .messages()
            .into_iter()
            .filter(|m| m.labels.iter().any(|l| l == label))
            .map(|m| m.bytes)
            .collect();
        let got: BTreeSet<Vec<u8>> = stored[folder].iter().map(|m| m.bytes.clone()).collect();
        assert_eq!(got, want, "{folder}");
    }
    assert_eq!(run.json()["bytes"].as_u64(), Some(size));

    // A label added to one message and taken from another: metadata only.
    let mut c = RawImap::login(g.port(), USER, PW);
    assert_eq!(c.command("SELECT \"[Gmail]/All Mail\"").status(), "OK");
    let a = c.command("UID STORE 2 +X-GM-LABELS.SILENT (Travel)");
    assert_eq!(a.status(), "OK", "{a:?}");
    let a = c.command("UID STORE 3 X-GM-LABELS.SILENT (Receipts)");
    assert_eq!(a.status(), "OK", "{a:?}");
    drop(c);
    let run = run_on("pull", 1, g.port(), &store, &[]).expect_code(0);
    assert_eq!(g.body_bytes_served(), served, "{}", run.all());
    let stored = store_messages(&store);
    let travel: BTreeSet<Vec<u8>> = stored["Travel"].iter().map(|m| m.bytes.clone()).collect();
    let receipts: BTreeSet<Vec<u8>> = stored["Receipts"].iter().map(|m| m.bytes.clone()).collect();
    let by_bytes = labels_by_bytes(&g);
    for (bytes, (labels, _)) in &by_bytes {
        assert_eq!(travel.contains(bytes), labels.contains("Travel"));
        assert_eq!(receipts.contains(bytes), labels.contains("Receipts"));
    }
}

#[test]
fn a_gmail_account_pushed_to_gmail_is_one_append_per_message_with_equal_labels() {
    let g1 = gmail();
    let size = seed_labelled_account(&g1, 45);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    run_on("pull", 1, g1.port(), &store, &[]).expect_code(0);

    let g2 = gmail();
    let run = run_on("push", 2, g2.port(), &store, &[]).expect_code(0);
    let messages = g1.messages().len() as u64;
    eprintln!(
        "{messages} messages, {size} bytes: {} APPENDs, {} bytes uploaded; {}",
        g2.appends(),
        g2.bytes_uploaded(),
        run.stdout
    );
    assert_eq!(g2.appends(), messages, "{}", run.all());
    assert_eq!(g2.bytes_uploaded(), size);
    assert_eq!(labels_by_bytes(&g2), labels_by_bytes(&g1), "{}", run.all());

    // Again: nothing to send, nothing labelled twice.
    let again = run_on("push", 2, g2.port(), &store, &[]).expect_code(0);
    assert_eq!(again.json()["sent"].as_u64(), Some(0), "{}", again.all());
    assert_eq!(g2.appends(), messages);
    assert_eq!(labels_by_bytes(&g2), labels_by_bytes(&g1));
}

/// The Message-ID header of a message, if it has one.
fn message_id(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let head = text.split("\r\n\r\n").next()?;
    head.split("\r\n")
        .find(|l| l.len() > 11 && l.as_bytes()[..11].eq_ignore_ascii_case(b"message-id:"))
        .map(|l| l[11..].trim().to_string())
}

#[test]
fn the_same_message_in_two_dovecot_folders_becomes_one_gmail_message_with_two_labels() {
    let host1 = Dovecot::start_default();
    let corpus = Corpus::small();
    seed(&host1, "alice", &corpus);
    let (_d, store) = common::run::pulled_store(&host1);
    let g = gmail();
    let distinct: BTreeSet<&[u8]> = corpus.messages.iter().map(|m| &m.bytes[..]).collect();
    // Gmail keeps one message per Message-ID: other bytes under a Message-ID already there
    // are answered, then dropped; each is found held as another copy, listed once.
    let mut ids = BTreeSet::new();
    let clashing = distinct
        .iter()
        .filter(|b| message_id(b).is_some_and(|id| !ids.insert(id)))
        .count();
    let run = run_on("push", 2, g.port(), &store, &[]);
    let held: Vec<serde_json::Value> = run.json()["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| {
            w["reason"]
                .as_str()
                .unwrap()
                .contains("held by Gmail as another copy")
        })
        .cloned()
        .collect();
    eprintln!(
        "{} distinct messages, {clashing} sharing a Message-ID: {held:?}",
        distinct.len()
    );
    assert_eq!(held.len(), clashing, "{}", run.all());
    let run = run.expect_code(0);
    assert_eq!(g.appends(), distinct.len() as u64, "{}", run.all());
    assert_eq!(g.messages().len(), distinct.len() - clashing);
    // A message flagged \Deleted in the store is appended without it: Gmail would trash it.
    assert!(corpus
        .messages
        .iter()
        .any(|m| m.flags.iter().any(|f| f == "\\Deleted")));
    assert!(g.messages().iter().all(|m| m.place == Place::AllMail));
    // Every store folder a message is in is a label of its one Gmail message.
    let by_bytes = labels_by_bytes(&g);
    for m in &corpus.messages {
        let Some((labels, _)) = by_bytes.get(&m.bytes) else {
            continue;
        };
        // Labels are named as mailboxes are, in modified UTF-7.
        let want = match m.folder.as_str() {
            "INBOX" => "\\Inbox".to_string(),
            other => String::from_utf8(MailboxName::encode(other).as_bytes().to_vec()).unwrap(),
        };
        assert!(
            labels
                .iter()
                .any(|l| l == &want || (want == "Sent" && l == "\\Sent")),
            "{} has {labels:?}, not {want}: {}",
            m.folder,
            run.all()
        );
    }
    // Again: nothing is sent, the held ones included.
    let again = run_on("push", 2, g.port(), &store, &[]).expect_code(0);
    assert_eq!(again.json()["sent"].as_u64(), Some(0), "{}", again.all());
    assert_eq!(g.appends(), distinct.len() as u64, "{}", again.all());
}

#[test]
fn a_message_gmail_holds_as_another_copy_is_labelled_recorded_once_and_never_sent_again() {
    let host1 = Dovecot::start_default();
    let (a, b) = (message(1, 2_000), message(1, 3_000));
    assert_eq!(message_id(&a), message_id(&b));
    let one = |folder: &str, bytes: &[u8]| CorpusMessage {
        folder: folder.into(),
        bytes: bytes.to_vec(),
        flags: vec![],
        internaldate: "05-Mar-2021 14:03:07 +0100".into(),
    };
    let corpus = Corpus {
        folders: vec!["INBOX".into(), "Work".into()],
        messages: vec![one("INBOX", &a), one("Work", &b)],
    };
    seed(&host1, "alice", &corpus);
    let (_d, store) = common::run::pulled_store(&host1);
    // A copy as pulled, for a second Gmail below.
    let store2 = store.with_file_name("store2");
    copy_dir(&store, &store2);
    let g = gmail();
    let run = run_on("push", 2, g.port(), &store, &[]);
    let json = run.json();
    let warnings = json["warnings"].as_array().cloned().unwrap_or_default();
    eprintln!(
        "exit {}: {} APPENDs, failures {}, warnings {warnings:?}",
        run.code,
        g.appends(),
        json["failures"]
    );
    let run = run.expect_code(0);
    assert_eq!(
        json["failures"].as_array().map(Vec::len),
        Some(0),
        "{}",
        run.all()
    );
    assert_eq!(warnings.len(), 1, "{}", run.all());
    assert!(warnings[0]["reason"]
        .as_str()
        .unwrap()
        .contains("held by Gmail as another copy"));
    // One message, with both folders' labels.
    let held = g.messages();
    assert_eq!(held.len(), 1);
    assert!(
        held[0].labels.iter().any(|l| l == "Work"),
        "{:?}",
        held[0].labels
    );
    assert!(
        held[0].labels.iter().any(|l| l == "\\Inbox"),
        "{:?}",
        held[0].labels
    );
    // Again: nothing sent, nothing listed.
    let appends = g.appends();
    let again = run_on("push", 2, g.port(), &store, &[]).expect_code(0);
    eprintln!(
        "again: {} APPENDs; {}",
        g.appends() - appends,
        again.json()["warnings"]
    );
    assert_eq!(g.appends(), appends, "{}", again.all());
    assert_eq!(
        again.json()["warnings"].as_array().map(Vec::len),
        Some(0),
        "{}",
        again.all()
    );
    let check = run_on("check", 2, g.port(), &store, &[]);
    assert_eq!(check.code, 0, "{}", check.all());

    // A Gmail that drops the copy without labelling the message it keeps: found in All Mail
    // and labelled there.
    let g = Provider::gmail(ProviderConfig {
        password: Some(PW.into()),
        duplicates_unlabelled: true,
        ..ProviderConfig::default()
    });
    let run = run_on("push", 2, g.port(), &store2, &[]).expect_code(0);
    assert_eq!(g.appends(), 2, "{}", run.all());
    let held = g.messages();
    assert_eq!(held.len(), 1);
    assert!(
        held[0].labels.iter().any(|l| l == "Work"),
        "{:?}",
        held[0].labels
    );
}

/// A copy of directory `from` (a store) at `to`.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let dest = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A Dovecot account of `n` messages of about `len` bytes (distinct Message-IDs) in INBOX and
/// Archive, pulled into a store: (tempdir, store, the messages).
fn pulled_dovecot(n: u32, len: usize) -> (Dovecot, tempfile::TempDir, std::path::PathBuf, Corpus) {
    let host1 = Dovecot::start_default();
    let corpus = Corpus {
        folders: vec!["INBOX".into(), "Archive".into()],
        messages: (0..n)
            .map(|i| CorpusMessage {
                folder: if i % 2 == 0 { "INBOX" } else { "Archive" }.into(),
                bytes: message(1_000 + i, len),
                flags: vec!["\\Seen".into()],
                internaldate: "05-Mar-2021 14:03:07 +0100".into(),
            })
            .collect(),
    };
    seed(&host1, "alice", &corpus);
    let (dir, store) = common::run::pulled_store(&host1);
    (host1, dir, store, corpus)
}

#[test]
fn gmails_overquota_on_append_stops_the_push_with_exit_4_and_each_message_goes_once() {
    let (_host1, _dir, store, corpus) = pulled_dovecot(30, 2_000);
    let g = Provider::gmail(ProviderConfig {
        password: Some(PW.into()),
        upload_limit: Some(25_000),
        quota_answer: QuotaAnswer::OverQuota,
        ..ProviderConfig::default()
    });
    let total: u64 = corpus.messages.iter().map(|m| m.bytes.len() as u64).sum();
    let first = run_on("push", 2, g.port(), &store, &[]);
    let json = first.json();
    eprintln!(
        "exit {}: {} of {total} bytes taken, failures {}, resume_at {}",
        first.code,
        g.bytes_uploaded(),
        json["failures"],
        json["resume_at"]
    );
    let first = first.expect_code(4);
    assert_eq!(
        json["failures"].as_array().map(Vec::len),
        Some(0),
        "{}",
        first.all()
    );
    let mut days = 1;
    loop {
        g.reset_quotas();
        days += 1;
        let run = run_on("push", 2, g.port(), &store, &[]);
        assert_eq!(
            run.json()["failures"].as_array().map(Vec::len),
            Some(0),
            "{}",
            run.all()
        );
        if run.code == 0 || days > 10 {
            run.expect_code(0);
            break;
        }
        run.expect_code(4);
    }
    eprintln!("{days} days: {} bytes taken", g.bytes_uploaded());
    assert_eq!(g.messages().len(), 30);
    assert_eq!(g.bytes_uploaded(), total);
}

fn m365_token() -> Provider {
    Provider::m365(ProviderConfig {
        token_check: Some(std::sync::Arc::new(|t: &str| t == "token-1")),
        throttle_every: Some(25),
        backoff_ms: 700,
        ..ProviderConfig::default()
    })
}

/// `verb` against a Microsoft 365 emulation on `side`, logging in with an OAuth2 token file.
fn run_m365(verb: &str, side: u8, m: &Provider, store: &std::path::Path, extra: &[&str]) -> Run {
    let token = store.with_extension("token");
    std::fs::write(&token, "token-1\n").unwrap();
    imapferry()
        .arg(verb)
        .args([format!("--host{side}"), "127.0.0.1".into()])
        .args([format!("--port{side}"), m.port().to_string()])
        .args([format!("--tls{side}"), "none".into()])
        .args([format!("--user{side}"), USER.into()])
        .arg(format!("--oauth2-token-file{side}"))
        .arg(&token)
        .arg("--store")
        .arg(store)
        .arg("--json")
        .args(extra)
        .output()
        .expect("run imapferry")
        .into()
}

/// A Microsoft 365 mailbox with `n` messages in each of INBOX, Archive and Projects.
fn seeded_m365(cfg: ProviderConfig, n: u32) -> Provider {
    let m = Provider::m365(cfg);
    for (k, folder) in ["INBOX", "Archive", "Projects"].iter().enumerate() {
        let msgs = (0..n)
            .map(|i| SeedMsg::new(&message(100 * k as u32 + i, 1_500)))
            .collect();
        m.seed_folder(folder, msgs);
    }
    m
}

#[test]
fn microsoft_365s_server_unavailable_is_waited_out_not_failed() {
    let m = seeded_m365(
        ProviderConfig {
            unavailable_every: Some(2),
            ..ProviderConfig::default()
        },
        5,
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = run_m365("pull", 1, &m, &store, &["--jobs", "1"]);
    eprintln!("exit {}: failures {}", run.code, run.json()["failures"]);
    let run = run.expect_code(0);
    let stored = store_messages(&store);
    for f in ["INBOX", "Archive", "Projects"] {
        assert_eq!(stored[f].len(), 5, "{f}: {}", run.all());
    }
}

#[test]
fn microsoft_365_as_host1_its_stored_sizes_are_expected_and_files_is_left_out() {
    let m = seeded_m365(
        ProviderConfig {
            stored_sizes: true,
            ..ProviderConfig::default()
        },
        5,
    );
    m.seed_folder(
        "Files",
        vec![SeedMsg::new(b"Content-Type: application/pdf\r\n\r\nx\r\n")],
    );
    let size: u64 = ["INBOX", "Archive", "Projects"]
        .iter()
        .flat_map(|f| m.folder_messages(f).unwrap())
        .map(|x| x.bytes.len() as u64)
        .sum();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = run_m365("pull", 1, &m, &store, &[]);
    let json = run.json();
    eprintln!(
        "exit {}: {} of {size} bytes served, {} warnings, folders {:?}",
        run.code,
        m.body_bytes_served(),
        json["warnings"].as_array().map_or(0, Vec::len),
        store_messages(&store).keys().collect::<Vec<_>>()
    );
    let run = run.expect_code(0);
    assert_eq!(m.body_bytes_served(), size, "each body once: {}", run.all());
    assert_eq!(
        json["warnings"].as_array().map(Vec::len),
        Some(0),
        "{}",
        run.all()
    );
    let stored = store_messages(&store);
    assert!(!stored.contains_key("Files"), "{}", run.all());
    assert!(run.stderr.contains("--folder Files"), "{}", run.stderr);
    for f in ["INBOX", "Archive", "Projects"] {
        assert_eq!(stored[f].len(), 5);
    }
    // Asked for by name, it comes.
    run_m365("pull", 1, &m, &store, &["--folder", "Files"]).expect_code(0);
    assert_eq!(store_messages(&store)["Files"].len(), 1);
}

#[test]
fn microsoft_365s_authenticated_but_not_connected_names_scope_licence_and_permission() {
    let m = seeded_m365(
        ProviderConfig {
            not_connected: true,
            ..ProviderConfig::default()
        },
        1,
    );
    let dir = tempfile::tempdir().unwrap();
    let run = run_m365("pull", 1, &m, &dir.path().join("store"), &[]);
    eprintln!("exit {}: {}", run.code, run.stderr);
    assert_ne!(run.code, 0);
    let hint = run
        .stderr
        .lines()
        .find(|l| l.starts_with("hint:"))
        .unwrap_or("");
    for what in ["IMAP.AccessAsUser.All", "licen", "FullAccess"] {
        assert!(hint.contains(what), "{what}: {}", run.stderr);
    }
}

#[test]
fn microsoft_365s_size_refusals_are_named_and_never_reach_its_tenth_error() {
    // A tenant whose limit is lower than the 35 MB imapferry assumes.
    let host1 = Dovecot::start_default();
    let corpus = Corpus {
        folders: vec!["INBOX".into()],
        messages: (0..22u32)
            .map(|i| CorpusMessage {
                folder: "INBOX".into(),
                bytes: message(2_000 + i, if i % 2 == 0 && i < 24 { 6_000 } else { 1_500 }),
                flags: vec![],
                internaldate: "05-Mar-2021 14:03:07 +0100".into(),
            })
            .collect(),
    };
    seed(&host1, "alice", &corpus);
    let (dir, store) = common::run::pulled_store(&host1);
    let m = Provider::m365(ProviderConfig {
        max_message_size: 5_000,
        ..ProviderConfig::default()
    });
    let run = run_m365("push", 2, &m, &store, &[]);
    let failures = run.json()["failures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    eprintln!(
        "exit {}: {} failures, {} sessions closed for ten errors; {:?}",
        run.code,
        failures.len(),
        m.strike_byes(),
        failures.first()
    );
    let run = run.expect_code(3);
    assert_eq!(failures.len(), 11, "{}", run.all());
    for f in &failures {
        let why = f["reason"].as_str().unwrap();
        assert!(why.contains("--max-message-size2"), "{why}");
    }
    assert_eq!(m.strike_byes(), 0, "{}", run.all());
    assert_eq!(m.folder_messages("INBOX").unwrap().len(), 11);
    // Told the tenant's limit, the push lists them before a byte of them is sent.
    let appends = m.appends();
    let again = run_m365("push", 2, &m, &store, &["--max-message-size2", "5000"]).expect_code(3);
    assert_eq!(m.appends(), appends, "{}", again.all());
    let failures = again.json()["failures"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(failures.len(), 11, "{}", again.all());
    drop(dir);
}

#[test]
fn microsoft_365_gets_long_lines_broken_and_read_receipts_disarmed_only_when_asked() {
    let host1 = Dovecot::start_default();
    let mut long = message(3_000, 1_000);
    long.extend_from_slice(&[b'y'; 25_000]);
    long.extend_from_slice(b"\r\n");
    let receipt = String::from_utf8(message(3_001, 1_000))
        .unwrap()
        .replacen(
            "Subject:",
            "Disposition-Notification-To: s@example.org\r\nSubject:",
            1,
        )
        .into_bytes();
    let msg = |bytes: &[u8], flags: &[&str]| CorpusMessage {
        folder: "INBOX".into(),
        bytes: bytes.to_vec(),
        flags: flags.iter().map(|f| f.to_string()).collect(),
        internaldate: "05-Mar-2021 14:03:07 +0100".into(),
    };
    let corpus = Corpus {
        folders: vec!["INBOX".into()],
        messages: vec![
            msg(&long, &[]),
            msg(&receipt, &["$MDNSent", "\\Seen"]),
            msg(&message(3_002, 1_000), &[]),
        ],
    };
    seed(&host1, "alice", &corpus);
    let (_dir, store) = common::run::pulled_store(&host1);

    // Not asked: the long one is listed with the option that sends it; nothing is changed.
    let m = Provider::m365(ProviderConfig::default());
    let run = run_m365("push", 2, &m, &store, &[]).expect_code(3);
    let failures = run.json()["failures"].as_array().cloned().unwrap();
    assert_eq!(failures.len(), 1, "{}", run.all());
    assert!(failures[0]["reason"]
        .as_str()
        .unwrap()
        .contains("--rewrap-long-lines"));
    let inbox = m.folder_messages("INBOX").unwrap();
    assert!(inbox
        .iter()
        .any(|x| x.bytes == receipt && x.flags.iter().any(|f| f == "$MDNSent")));

    // Asked: everything goes, each change reported, the store unchanged.
    let m = Provider::m365(ProviderConfig::default());
    let asked = ["--rewrap-long-lines", "--disarm-read-receipts"];
    let run = run_m365("push", 2, &m, &store, &asked);
    let warnings = run.json()["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    eprintln!("exit {}: warnings {warnings:?}", run.code);
    let run = run.expect_code(0);
    assert_eq!(warnings.len(), 2, "{}", run.all());
    assert!(warnings
        .iter()
        .all(|w| w["reason"].as_str().unwrap().contains("sent changed")));
    let inbox = m.folder_messages("INBOX").unwrap();
    assert_eq!(inbox.len(), 3);
    let rewrapped = inbox.iter().find(|x| x.bytes.len() > 20_000).unwrap();
    let longest = rewrapped
        .bytes
        .split(|b| *b == b'\n')
        .map(|l| l.len())
        .max()
        .unwrap();
    assert!(longest <= 10_501, "{longest}");
    assert_eq!(
        rewrapped.bytes.iter().filter(|b| **b == b'y').count(),
        25_000,
        "nothing lost"
    );
    let disarmed = inbox
        .iter()
        .find(|x| x.bytes.len() < 2_000 && x.bytes != message(3_002, 1_000))
        .unwrap();
    assert!(
        String::from_utf8_lossy(&disarmed.bytes).contains("\r\nX-Disposition-Notification-To: s@")
    );
    assert!(
        !disarmed.flags.iter().any(|f| f == "$MDNSent"),
        "{:?}",
        disarmed.flags
    );
    let stored: BTreeSet<Vec<u8>> = store_messages(&store)["INBOX"]
        .iter()
        .map(|x| x.bytes.clone())
        .collect();
    assert!(stored.contains(&long) && stored.contains(&receipt));
    // Again: nothing sent twice; check agrees host2 holds everything.
    let again = run_m365("push", 2, &m, &store, &asked).expect_code(0);
    assert_eq!(again.json()["sent"].as_u64(), Some(0), "{}", again.all());
    assert_eq!(m.folder_messages("INBOX").unwrap().len(), 3);
    let check = run_m365("check", 2, &m, &store, &[]);
    assert_eq!(check.code, 0, "{}", check.all());
}

#[test]
fn a_push_into_microsoft_365_waits_out_throttling_and_keeps_what_exchange_would_lose() {
    let host1 = Dovecot::start_default();
    let mut long = message(900, 1_000);
    long.extend_from_slice(&[b'x'; 12_000]);
    long.extend_from_slice(b"\r\n");
    let msg = |folder: &str, bytes: Vec<u8>, flags: &[&str]| CorpusMessage {
        folder: folder.into(),
        bytes,
        flags: flags.iter().map(|f| f.to_string()).collect(),
        internaldate: "05-Mar-2021 14:03:07 +0100".into(),
    };
    let mut messages = vec![msg("INBOX", long, &[])];
    for i in 0..24u32 {
        let folder = ["INBOX", "Files", "Archive", "archive"][(i % 4) as usize];
        let flags: &[&str] = match i % 3 {
            0 => &["\\Flagged", "\\Seen"],
            1 => &["$Label1"],
            _ => &[],
        };
        messages.push(msg(folder, message(i, 1_500 + i as usize * 100), flags));
    }
    let corpus = Corpus {
        folders: ["INBOX", "Files", "Archive", "archive"]
            .map(String::from)
            .to_vec(),
        messages,
    };
    seed(&host1, "alice", &corpus);
    let (dir, store) = common::run::pulled_store(&host1);
    let m = m365_token();
    let token = dir.path().join("token");
    std::fs::write(&token, "token-1\n").unwrap();
    let token = token.to_str().unwrap().to_string();
    let push = || -> Run {
        imapferry()
            .args([
                "push",
                "--host2",
                "127.0.0.1",
                "--tls2",
                "none",
                "--user2",
                USER,
            ])
            .args([
                "--port2",
                &m.port().to_string(),
                "--oauth2-token-file2",
                &token,
            ])
            // One connection: then "the next command" is ours, not one another connection had
            // already sent when the throttle came (the wait holds every connection of the run,
            // but one sent before the answer arrived cannot be called back).
            .args(["--jobs", "1"])
            .arg("--store")
            .arg(&store)
            .arg("--json")
            .output()
            .unwrap()
            .into()
    };
    let run = push().expect_code(3);
    let json = run.json();
    let failures = json["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{}", run.all());
    assert!(failures[0]["reason"]
        .as_str()
        .unwrap()
        .contains("refuses lines over 10500"));
    // Throttled, and each time the stated backoff was waited out before the next command.
    let throttles = m.throttles();
    assert!(!throttles.is_empty(), "{}", run.all());
    for t in &throttles {
        if let Some(w) = t.waited() {
            assert!(
                w >= t.backoff,
                "waited {w:?} of {:?}: {}",
                t.backoff,
                run.stderr
            );
        }
    }
    // The reserved name and the case twin were renamed and said so.
    let folders = m.folders();
    for f in ["Files_", "archive (2)", "Archive"] {
        assert!(folders.iter().any(|x| x == f), "{f} not in {folders:?}");
    }
    assert!(
        run.stderr.contains("reserved folder name"),
        "{}",
        run.stderr
    );
    // Every other message is there with its bytes; \Flagged set again after APPEND; keywords
    // Exchange cannot keep are listed.
    let on_m365: Vec<_> = folders
        .iter()
        .filter_map(|f| m.folder_messages(f))
        .flatten()
        .collect();
    assert_eq!(on_m365.len(), 24);
    for c in corpus.messages.iter().skip(1) {
        let there = on_m365.iter().find(|x| x.bytes == c.bytes).expect("pushed");
        let flagged = c.flags.iter().any(|f| f == "\\Flagged");
        assert_eq!(there.flags.iter().any(|f| f == "\\Flagged"), flagged);
    }
    assert!(run.all().contains("$Label1"), "{}", run.all());
    eprintln!(
        "{} throttles; {}",
        throttles.len(),
        run.stdout.lines().last().unwrap_or("")
    );
    // Again: nothing sent twice.
    let again = push().expect_code(3);
    assert_eq!(again.json()["sent"].as_u64(), Some(0), "{}", again.all());
}

#[test]
fn gmails_quota_bye_stops_the_pull_with_exit_4_and_the_next_day_it_completes() {
    let g = Provider::gmail(ProviderConfig {
        password: Some(PW.into()),
        download_limit: Some(150_000),
        ..ProviderConfig::default()
    });
    let size = seed_labelled_account(&g, 40);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // Small batches, so the quota is passed between two of them.
    let small = ["--batch-bytes", "40000"];
    let started = std::time::Instant::now();
    let first = run_on("pull", 1, g.port(), &store, &small).expect_code(4);
    let took = started.elapsed();
    let json = first.json();
    eprintln!(
        "quota stop after {took:?}: {} bytes served, resume_at {}; {}",
        g.body_bytes_served(),
        json["resume_at"],
        first.stderr.lines().last().unwrap_or("")
    );
    assert!(took.as_secs() < 20, "stopped, not retried: {}", first.all());
    assert!(json["resume_at"].is_string(), "{}", first.all());
    // Still the same day: the server says so again, at once.
    run_on("pull", 1, g.port(), &store, &small).expect_code(4);
    // Each next day a part more, until everything is there.
    let mut days = 1;
    let last = loop {
        g.reset_quotas();
        days += 1;
        let run = run_on("pull", 1, g.port(), &store, &small);
        if run.code == 0 || days > 10 {
            break run.expect_code(0);
        }
        run.expect_code(4);
    };
    let stored = store_messages(&store);
    let all_mail: BTreeSet<Vec<u8>> = stored["[Gmail]/All Mail"]
        .iter()
        .map(|m| m.bytes.clone())
        .collect();
    assert_eq!(stored["[Gmail]/All Mail"].len(), 40, "{}", last.all());
    assert_eq!(all_mail.len(), 40);
    let served = g.body_bytes_served();
    eprintln!("account {size} bytes over {days} days; body bytes served {served}");
    assert!(days >= 3);
    // What a cut batch had received is fetched again, nothing else.
    assert!(served < size + days as u64 * 40_000, "{served} for {size}");
}

#[test]
fn gmails_overquota_on_a_body_fetch_stops_the_pull_with_exit_4_and_nothing_failed() {
    let g = Provider::gmail(ProviderConfig {
        password: Some(PW.into()),
        download_limit: Some(150_000),
        quota_answer: QuotaAnswer::OverQuota,
        ..ProviderConfig::default()
    });
    let size = seed_labelled_account(&g, 40);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let small = ["--batch-bytes", "40000"];
    let first = run_on("pull", 1, g.port(), &store, &small);
    let json = first.json();
    eprintln!(
        "exit {}: {} bytes served, failures {}, resume_at {}",
        first.code,
        g.body_bytes_served(),
        json["failures"],
        json["resume_at"]
    );
    let first = first.expect_code(4);
    assert_eq!(
        json["failures"].as_array().map(Vec::len),
        Some(0),
        "{}",
        first.all()
    );
    assert!(json["resume_at"].is_string(), "{}", first.all());
    assert!(first.stderr.contains("OVERQUOTA"), "{}", first.stderr);
    let mut days = 1;
    let last = loop {
        g.reset_quotas();
        days += 1;
        let run = run_on("pull", 1, g.port(), &store, &small);
        if run.code == 0 || days > 10 {
            break run.expect_code(0);
        }
        assert_eq!(run.json()["failures"].as_array().map(Vec::len), Some(0));
        run.expect_code(4);
    };
    assert_eq!(
        store_messages(&store)["[Gmail]/All Mail"].len(),
        40,
        "{}",
        last.all()
    );
    // Every body fetched once over the days: a refused FETCH serves nothing.
    eprintln!(
        "account {size} bytes over {days} days: {} served",
        g.body_bytes_served()
    );
    assert_eq!(g.body_bytes_served(), size);
}

#[test]
fn gmails_default_download_budget_keeps_a_fifth_of_googles_limit_for_the_users_other_clients() {
    let g = gmail();
    seed_labelled_account(&g, 5);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    run_on("pull", 1, g.port(), &store, &[]).expect_code(0);
    // 2.1 GB came down in the last hour: under Google's 2 500 MB, over the margin.
    let mut index = imapferry::store::Index::open(&store.join("index.sqlite")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let down = imapferry::budget::Account::down();
    index
        .log_transfer(down, now - 3_600, 2_100_000_000)
        .unwrap();
    drop(index);
    g.seed(vec![SeedMsg::new(&message(900, 5_000))]);
    let run = run_on("pull", 1, g.port(), &store, &[]);
    let json = run.json();
    eprintln!("exit {}: budget_spent {}", run.code, json["budget_spent"]);
    let run = run.expect_code(4);
    assert_eq!(
        json["budget_spent"]["limit"].as_u64(),
        Some(2_000_000_000),
        "{}",
        run.all()
    );
    let help = imapferry().args(["pull", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("2000 MB, 80 %"), "{help}");
}

#[test]
fn gmail_mail_out_of_reach_of_imap_is_said_with_the_setting_that_shows_it() {
    // "Show in IMAP" unticked for All Mail; "Folder size limits" at 1000.
    let g = Provider::gmail(ProviderConfig {
        password: Some(PW.into()),
        hide_all_mail: true,
        max_folder_size: Some(1_000),
        ..ProviderConfig::default()
    });
    let mut msgs: Vec<SeedMsg> = (0..1_003)
        .map(|i| SeedMsg::new(&message(10_000 + i, 300)).labels(&["\\Inbox"]))
        .collect();
    msgs.extend((0..5).map(|i| SeedMsg::new(&message(20_000 + i, 300))));
    g.seed(msgs);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = run_on("pull", 1, g.port(), &store, &[]);
    let warnings = run.json()["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    eprintln!("exit {}: warnings {warnings:?}", run.code);
    let run = run.expect_code(0);
    let said = |what: &str| {
        warnings
            .iter()
            .any(|w| w["reason"].as_str().unwrap().contains(what))
    };
    assert!(said("Show in IMAP"), "{}", run.all());
    assert!(said("Folder size limits"), "{}", run.all());
    assert!(run.stderr.contains("Show in IMAP"), "{}", run.stderr);
}

#[test]
fn gmail_putting_the_upload_time_for_dates_before_1970_or_ahead_is_said_and_check_agrees() {
    // From a Gmail-like host1 that keeps any date (Dovecot wraps a date before 1970).
    let g1 = gmail();
    let dated = |n: u32, t: i64| {
        let mut m = SeedMsg::new(&message(n, 1_000)).labels(&["\\Inbox"]);
        m.internaldate = t;
        m
    };
    g1.seed(vec![
        dated(4_000, -157_766_400),  // 1965
        dated(4_001, 3_818_000_000), // 2090
        dated(4_002, 1_614_949_387), // 2021
    ]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    run_on("pull", 1, g1.port(), &store, &[]).expect_code(0);
    let g = gmail();
    let run = run_on("push", 2, g.port(), &store, &[]);
    let warnings = run.json()["warnings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    eprintln!("exit {}: warnings {warnings:?}", run.code);
    let run = run.expect_code(0);
    assert_eq!(warnings.len(), 2, "{}", run.all());
    assert!(warnings.iter().all(|w| w["reason"]
        .as_str()
        .unwrap()
        .contains("before 1970 or in the future")));
    let check = run_on("check", 2, g.port(), &store, &[]);
    assert_eq!(check.code, 0, "{}", check.all());
}

#[test]
fn a_session_gmail_ends_for_its_age_is_replaced_and_the_pull_completes() {
    // `BYE Session expired` with no quota involved: Gmail's answer to a long session.
    let g = Provider::gmail(ProviderConfig {
        password: Some(PW.into()),
        session_lifetime: Some(std::time::Duration::from_millis(700)),
        ..ProviderConfig::default()
    });
    let size = seed_labelled_account(&g, 40);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // About 3.5 s at this rate: sessions expire several times on the way.
    let slow = ["--batch-bytes", "40000", "--max-bytes-per-second", "150k"];
    let run = run_on("pull", 1, g.port(), &store, &slow);
    let served = g.body_bytes_served();
    eprintln!(
        "exit {}: {} sessions expired, {served} of {size} bytes served; {}",
        run.code,
        g.expiry_byes(),
        run.stderr
    );
    let run = run.expect_code(0);
    assert!(g.expiry_byes() >= 2, "{}", run.all());
    assert_eq!(store_messages(&store)["[Gmail]/All Mail"].len(), 40);
    assert!(served < size + 80_000, "{served} for {size}");
}

#[test]
fn gmails_throttled_slow_down_is_waited_out_before_the_next_body_fetch() {
    let g = Provider::gmail(ProviderConfig {
        password: Some(PW.into()),
        throttle_after: Some(150_000),
        throttle_rate: 100_000,
        throttle_for: std::time::Duration::from_secs(3),
        ..ProviderConfig::default()
    });
    let size = seed_labelled_account(&g, 40);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    // One connection, one command at a time: each FETCH reaches the server when it is sent,
    // so the time before it is the client's wait.
    let one = ["--batch-bytes", "40000", "--jobs", "1", "--depth", "1"];
    let run = run_on("pull", 1, g.port(), &store, &one);
    let slowdowns = g.slowdowns();
    let longest = slowdowns.iter().filter_map(|t| t.waited()).max();
    eprintln!(
        "exit {}: {} [THROTTLED] answers, longest wait before the next body FETCH {longest:?}; \
         {} of {size} bytes served; {}",
        run.code,
        slowdowns.len(),
        g.body_bytes_served(),
        run.stderr
    );
    let run = run.expect_code(0);
    assert!(!slowdowns.is_empty());
    assert!(
        longest.is_some_and(|w| w >= std::time::Duration::from_millis(1_900)),
        "{}",
        run.all()
    );
    assert!(run.stderr.contains("[THROTTLED]"), "{}", run.stderr);
    assert_eq!(store_messages(&store)["[Gmail]/All Mail"].len(), 40);
    assert_eq!(g.body_bytes_served(), size);
}

#[test]
fn gmails_connection_cap_at_login_leaves_the_run_going_on_the_sessions_it_allows() {
    // The user's phone and desktop hold 13 of the account's 15 sessions.
    let g = Provider::gmail(ProviderConfig {
        password: Some(PW.into()),
        other_sessions: 13,
        ..ProviderConfig::default()
    });
    seed_labelled_account(&g, 40);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run = run_on("pull", 1, g.port(), &store, &["--jobs", "4"]);
    eprintln!(
        "exit {}: {} sessions at most, {} logins refused; {}",
        run.code,
        g.max_logged_in(),
        g.cap_refusals(),
        run.stderr
    );
    let run = run.expect_code(0);
    assert!(g.cap_refusals() > 0);
    assert_eq!(g.max_logged_in(), 2);
    let said = "Gmail allows 15 sessions for the account (phones and other clients count): \
                continuing with ";
    assert!(run.stderr.contains(said), "{}", run.stderr);
    assert!(!run.stderr.contains("cannot log in"), "{}", run.stderr);
    assert_eq!(store_messages(&store)["[Gmail]/All Mail"].len(), 40);
}

#[test]
fn a_gmail_account_whose_sessions_are_all_taken_is_asked_again_then_named_for_what_it_is() {
    let g = Provider::gmail(ProviderConfig {
        password: Some(PW.into()),
        other_sessions: 15,
        ..ProviderConfig::default()
    });
    seed_labelled_account(&g, 3);
    let dir = tempfile::tempdir().unwrap();
    let run = run_on(
        "pull",
        1,
        g.port(),
        &dir.path().join("store"),
        &["--retries", "2"],
    );
    eprintln!(
        "exit {}, {} logins refused: {}",
        run.code,
        g.cap_refusals(),
        run.stderr
    );
    assert_ne!(run.code, 0);
    assert_eq!(g.cap_refusals(), 3, "asked again: {}", run.stderr);
    assert!(
        run.stderr
            .contains("Gmail allows 15 simultaneous IMAP sessions"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("and the password"), "{}", run.stderr);
}

#[test]
fn gmails_login_alerts_get_their_remedy_not_a_bare_failed_login() {
    for (alert, want) in [
        (
            LoginAlert::AppPassword,
            "https://myaccount.google.com/apppasswords",
        ),
        (LoginAlert::WebLogin, WEBALERT_URL),
    ] {
        let g = Provider::gmail(ProviderConfig {
            password: Some(PW.into()),
            login_alert: Some(alert),
            ..ProviderConfig::default()
        });
        let dir = tempfile::tempdir().unwrap();
        let run = run_on("pull", 1, g.port(), &dir.path().join("store"), &[]);
        eprintln!("{alert:?}: exit {}: {}", run.code, run.stderr);
        assert_ne!(run.code, 0);
        let hint = run
            .stderr
            .lines()
            .find(|l| l.starts_with("hint:"))
            .unwrap_or("");
        assert!(hint.contains(want), "{}", run.stderr);
        assert!(hint.contains("--oauth2-refresh1"), "{}", run.stderr);
    }
}

#[test]
fn an_oauth2_token_that_expires_mid_pull_is_refreshed_and_the_pull_completes() {
    let endpoint =
        std::sync::Arc::new(common::oauth::TokenEndpoint::start("imapferry-test", "r-1"));
    endpoint.set_expires_in(2);
    let g = Provider::gmail(ProviderConfig {
        token_check: Some(endpoint.checker()),
        ..ProviderConfig::default()
    });
    seed_labelled_account(&g, 40);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let config = dir.path().join("refresh.conf");
    endpoint.write_config(&config);
    let started = std::time::Instant::now();
    let run: Run = imapferry()
        .args([
            "pull",
            "--host1",
            "127.0.0.1",
            "--tls1",
            "none",
            "--user1",
            USER,
        ])
        .args(["--port1", &g.port().to_string(), "--oauth2-refresh1"])
        .arg(&config)
        // About 6 s at this rate: the 2-second tokens expire several times.
        .args([
            "--max-bytes-per-second",
            "100k",
            "--jobs",
            "2",
            "--json",
            "--store",
        ])
        .arg(&store)
        .output()
        .unwrap()
        .into();
    let run = run.expect_code(0);
    eprintln!(
        "pull in {:?}: {} tokens granted, {} AUTHENTICATE",
        started.elapsed(),
        endpoint.granted(),
        g.commands("AUTHENTICATE")
    );
    // A token was fetched again after the first expired, and sessions logged in again with
    // it (two connections log in once each without an expiry).
    assert!(endpoint.granted() >= 2, "{}", run.all());
    assert!(g.commands("AUTHENTICATE") > 2, "{}", run.all());
    assert_eq!(store_messages(&store)["[Gmail]/All Mail"].len(), 40);
}

/// An RSA key pair made with openssl: (private key PEM, PKCS#8 as Google gives it; public
/// key PEM).
fn rsa_keypair(dir: &std::path::Path) -> (String, String) {
    let key = dir.join("sa-key.pem");
    let public = dir.join("sa-pub.pem");
    let ok = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl genpkey");
    let ok = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .output()
        .unwrap()
        .status
        .success();
    assert!(ok, "openssl pkey -pubout");
    (
        std::fs::read_to_string(key).unwrap(),
        std::fs::read_to_string(public).unwrap(),
    )
}

/// A pull from `port` as `user` with `--oauth2-refresh1 config`.
fn pull_oauth(port: u16, user: &str, config: &std::path::Path, store: &std::path::Path) -> Run {
    imapferry()
        .args([
            "pull",
            "--host1",
            "127.0.0.1",
            "--tls1",
            "none",
            "--user1",
            user,
        ])
        .args(["--port1", &port.to_string(), "--oauth2-refresh1"])
        .arg(config)
        .arg("--json")
        .arg("--store")
        .arg(store)
        .output()
        .unwrap()
        .into()
}

#[test]
fn a_google_service_account_acts_for_each_mailbox_of_a_fleet_with_one_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (private_pem, public_pem) = rsa_keypair(dir.path());
    let email = "migrator@project-7.iam.gserviceaccount.com";
    let endpoint = std::sync::Arc::new(common::oauth::TokenEndpoint::start("unused", "unused"));
    endpoint.accept_service_account(&public_pem, email);
    let key_file = dir.path().join("service-account.json");
    let key = serde_json::json!({
        "type": "service_account",
        "client_email": email,
        "private_key": private_pem,
        "token_uri": endpoint.url(),
    });
    std::fs::write(&key_file, key.to_string()).unwrap();
    let config = dir.path().join("workspace.conf");
    std::fs::write(
        &config,
        format!(
            "grant = jwt-bearer\nservice_account_key = {}\nscope = https://mail.google.com/\n",
            key_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    // Two accounts of the domain, one key file: each pull acts for its own --user1.
    for user in ["alice@example.com", "bob@example.com"] {
        let g = Provider::gmail(ProviderConfig {
            token_check: Some(endpoint.checker()),
            ..ProviderConfig::default()
        });
        seed_labelled_account(&g, 3);
        let store = dir.path().join(user);
        let run = pull_oauth(g.port(), user, &config, &store);
        eprintln!("{user}: exit {}: {}", run.code, run.stderr);
        let run = run.expect_code(0);
        assert_eq!(
            store_messages(&store)["[Gmail]/All Mail"].len(),
            3,
            "{}",
            run.all()
        );
        assert!(!run.all().contains("BEGIN PRIVATE KEY"));
    }
    assert_eq!(
        endpoint.subjects(),
        vec!["alice@example.com", "bob@example.com"]
    );
}

#[test]
fn microsoft_365_app_only_access_uses_the_client_credentials_grant() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let endpoint = std::sync::Arc::new(common::oauth::TokenEndpoint::start_with(
        "app-7f3e",
        Some("cs-app-secret-42"),
        "unused",
    ));
    endpoint.accept_client_credentials("https://outlook.office365.com/.default");
    let config = dir.path().join("tenant.conf");
    std::fs::write(
        &config,
        format!(
            "grant = client_credentials\ntoken_endpoint = {}\nclient_id = app-7f3e\n\
             client_secret = cs-app-secret-42\nscope = https://outlook.office365.com/.default\n",
            endpoint.url()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let m = seeded_m365(
        ProviderConfig {
            token_check: Some(endpoint.checker()),
            ..ProviderConfig::default()
        },
        2,
    );
    let store = dir.path().join("store");
    let run = pull_oauth(m.port(), USER, &config, &store);
    eprintln!("exit {}: {}", run.code, run.stderr);
    let run = run.expect_code(0);
    assert_eq!(store_messages(&store)["Archive"].len(), 2, "{}", run.all());
    assert!(!run.all().contains("cs-app-secret-42"));
}

#[test]
fn a_refresh_token_of_a_google_app_in_testing_says_when_it_expires() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let endpoint =
        std::sync::Arc::new(common::oauth::TokenEndpoint::start("imapferry-test", "r-1"));
    let config = dir.path().join("refresh.conf");
    endpoint.write_config(&config);
    // Issued six and a half days ago: half a day left.
    let issued = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        - 6 * 86_400
        - 43_200;
    let day = imapferry::mailtime::format_rfc3339(issued as i64);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text += &format!("app_status = testing\nissued_at = {day}\n");
    std::fs::write(&config, text).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let g = Provider::gmail(ProviderConfig {
        token_check: Some(endpoint.checker()),
        ..ProviderConfig::default()
    });
    seed_labelled_account(&g, 2);
    let run = pull_oauth(g.port(), USER, &config, &dir.path().join("store"));
    eprintln!("exit {}: {}", run.code, run.stderr);
    let run = run.expect_code(0);
    assert!(
        run.stderr.contains("in \"Testing\" expires at"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("in 11 h") || run.stderr.contains("in 12 h"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_gmail_store_pushed_to_dovecot_gets_a_copy_per_label_folder_without_a_second_download() {
    let g = gmail();
    seed_labelled_account(&g, 20);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    run_on("pull", 1, g.port(), &store, &[]).expect_code(0);
    let served = g.body_bytes_served();
    let host2 = Dovecot::start_default();
    let account = host2.account("alice");
    let run = common::run::run_against("push", &account, &store, &[]).expect_code(0);
    assert_eq!(g.body_bytes_served(), served, "{}", run.all());
    let on_host2 = messages_of(&account);
    let work: BTreeSet<Vec<u8>> = on_host2["Work"].iter().map(|m| m.bytes.clone()).collect();
    let want: BTreeSet<Vec<u8>> = g
        .folder_messages("Work")
        .unwrap()
        .into_iter()
        .map(|m| m.bytes)
        .collect();
    assert_eq!(work, want);
    assert_eq!(on_host2["[Gmail]/All Mail"].len(), 20);
}

#[test]
fn gmail_labels_first_folder_puts_each_message_in_one_dovecot_folder_and_check_agrees() {
    let g = gmail();
    seed_labelled_account(&g, 20);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    run_on("pull", 1, g.port(), &store, &[]).expect_code(0);
    let host2 = Dovecot::start_default();
    let account = host2.account("alice");
    let policy = ["--gmail-labels", "first-folder"];
    let run = common::run::run_against("push", &account, &store, &policy).expect_code(0);
    let on_host2 = messages_of(&account);
    let mut seen: BTreeMap<Vec<u8>, Vec<String>> = BTreeMap::new();
    for (folder, msgs) in &on_host2 {
        for m in msgs {
            seen.entry(m.bytes.clone())
                .or_default()
                .push(folder.clone());
        }
    }
    // Every message once; a labelled one in INBOX or a label folder, never in All Mail.
    assert_eq!(seen.len(), g.messages().len(), "{}", run.all());
    for snap in g.messages() {
        let folders = &seen[&snap.bytes];
        assert_eq!(folders.len(), 1, "{folders:?}");
        if snap
            .labels
            .iter()
            .any(|l| !l.starts_with('\\') || l == "\\Inbox")
        {
            assert_ne!(folders[0], "[Gmail]/All Mail", "{:?}", snap.labels);
        }
    }
    let check = common::run::run_against("check", &account, &store, &policy);
    assert_eq!(check.code, 0, "{}", check.all());
}

/// Issue 19 item 7: push never gives Gmail a `\Deleted` (Gmail would trash the message), so
/// check must not count its absence as a flag difference either: one rule, the provider's, for
/// both. After a push of a store holding a `\Deleted` message, check exits 0 with no flag
/// difference and advises no push.
#[test]
fn a_flag_gmail_drops_is_no_difference_for_check_after_a_push() {
    let host1 = Dovecot::start_default();
    let corpus = Corpus {
        folders: vec!["INBOX".into()],
        messages: (0..3)
            .map(|n| CorpusMessage {
                folder: "INBOX".into(),
                bytes: message(n, 1_000),
                flags: if n == 1 {
                    vec!["\\Deleted".into(), "\\Seen".into()]
                } else {
                    vec!["\\Seen".into()]
                },
                internaldate: "05-Mar-2021 14:03:07 +0100".into(),
            })
            .collect(),
    };
    seed(&host1, "alice", &corpus);
    let (_d, store) = common::run::pulled_store(&host1);
    let g = gmail();
    run_on("push", 2, g.port(), &store, &[]).expect_code(0);
    assert_eq!(g.messages().len(), 3);
    assert!(g
        .messages()
        .iter()
        .all(|m| !m.flags.iter().any(|f| f.eq_ignore_ascii_case("\\Deleted"))));
    let check = run_on("check", 2, g.port(), &store, &[]);
    eprintln!("{}", check.all());
    assert_eq!(check.json()["flag_differences"], 0, "{}", check.all());
    assert_eq!(check.code, 0, "{}", check.all());
    let again = run_on("push", 2, g.port(), &store, &[]).expect_code(0);
    assert_eq!(again.json()["sent"], 0, "{}", again.all());
}
