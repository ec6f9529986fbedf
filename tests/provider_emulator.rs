//! The Gmail and Microsoft 365 emulator (`common::provider`): each documented rule pinned
//! through raw IMAP, then the real binary end to end (pull from Gmail, push to Microsoft 365
//! with an OAuth2 token file). What the rules rest on: docs/providers-emulation.md.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::provider::{self, Place, Provider, ProviderConfig, SeedMsg};
use common::raw::{Answer, RawImap};
use common::run::{imapferry, pulled_store, Run};
use common::*;

const USER: &str = "alice@example.com";
const PW: &str = "secret";

fn gmail_cfg() -> ProviderConfig {
    ProviderConfig {
        password: Some(PW.into()),
        ..ProviderConfig::default()
    }
}

fn msg(n: u32, len: usize) -> Vec<u8> {
    common::hostile::body_of(len, n)
}

fn gmail_login(g: &Provider) -> RawImap {
    RawImap::login(g.port(), USER, PW)
}

/// Log in with XOAUTH2 (SASL-IR), panicking unless OK.
fn oauth_login(port: u16, token: &str) -> RawImap {
    let mut c = RawImap::connect(port);
    let a = c.command(&format!(
        "AUTHENTICATE XOAUTH2 {}",
        provider::xoauth2(USER, token)
    ));
    assert_eq!(a.status(), "OK", "{a:?}");
    c
}

/// The one value of `item` (a number) in each FETCH line.
fn numbers(a: &Answer, item: &str) -> Vec<u64> {
    a.lines("* ")
        .iter()
        .filter_map(|l| {
            let rest = l.split(&format!("{item} ")).nth(1)?;
            rest.split([' ', ')']).next()?.parse().ok()
        })
        .collect()
}

fn select(c: &mut RawImap, name: &str) -> Answer {
    let a = c.command(&format!("SELECT \"{name}\""));
    assert_eq!(a.status(), "OK", "SELECT {name}: {a:?}");
    a
}

#[test]
fn gmail_a_message_with_three_labels_shows_in_three_label_folders_and_all_mail() {
    let g = Provider::gmail(gmail_cfg());
    let ids = g.seed(vec![
        SeedMsg::new(&msg(1, 300)).labels(&["Work", "Work/Projects", "Travel"]),
        SeedMsg::new(&msg(2, 300)).labels(&["\\Inbox"]),
    ]);
    let mut c = gmail_login(&g);
    let list = c.command("LIST \"\" \"*\"");
    let work = list
        .lines("* LIST")
        .into_iter()
        .find(|l| l.ends_with("\"Work\""));
    assert_eq!(
        work,
        Some("* LIST (\\HasChildren) \"/\" \"Work\""),
        "{list:?}"
    );
    assert!(list
        .untagged
        .contains(&"* LIST (\\HasChildren \\Noselect) \"/\" \"[Gmail]\"".to_string()));
    assert!(list
        .untagged
        .contains(&"* LIST (\\All \\HasNoChildren) \"/\" \"[Gmail]/All Mail\"".to_string()));
    for folder in ["Work", "Work/Projects", "Travel"] {
        select(&mut c, folder);
        let a = c.command("UID FETCH 1:* (X-GM-MSGID X-GM-LABELS)");
        assert_eq!(numbers(&a, "X-GM-MSGID"), vec![ids[0]], "{folder}: {a:?}");
        assert!(a.untagged[0].contains("X-GM-LABELS (\"Travel\" \"Work\" \"Work/Projects\")"));
    }
    select(&mut c, "[Gmail]/All Mail");
    let a = c.command("UID FETCH 1:* (X-GM-MSGID)");
    assert_eq!(numbers(&a, "X-GM-MSGID"), ids);
    select(&mut c, "INBOX");
    let a = c.command("UID FETCH 1:* (X-GM-MSGID X-GM-LABELS)");
    assert_eq!(numbers(&a, "X-GM-MSGID"), vec![ids[1]]);
    assert!(
        a.untagged[0].contains("X-GM-LABELS (\"\\\\Inbox\")"),
        "{a:?}"
    );
    // Each view numbers its own UIDs; UID SEARCH X-GM-MSGID finds a message in a view.
    select(&mut c, "[Gmail]/All Mail");
    let a = c.command(&format!("UID SEARCH X-GM-MSGID {}", ids[1]));
    assert_eq!(a.untagged, vec!["* SEARCH 2".to_string()]);
    assert_ne!(g.uidvalidity("INBOX"), g.uidvalidity("[Gmail]/All Mail"));
}

#[test]
fn gmail_store_x_gm_labels_adds_and_removes_views_and_a_missing_label_is_refused() {
    let g = Provider::gmail(gmail_cfg());
    let ids = g.seed(vec![SeedMsg::new(&msg(1, 200))]);
    let mut c = gmail_login(&g);
    assert_eq!(c.command("CREATE \"Receipts\"").status(), "OK");
    select(&mut c, "[Gmail]/All Mail");
    let a = c.command("UID STORE 1 +X-GM-LABELS (Receipts \\Inbox)");
    assert_eq!(a.status(), "OK", "{a:?}");
    assert!(
        a.untagged[0].contains("X-GM-LABELS (\"Receipts\" \"\\\\Inbox\")"),
        "{a:?}"
    );
    let r = g.folder_messages("Receipts").unwrap();
    assert_eq!((r[0].uid, r[0].msgid), (1, ids[0]));
    assert_eq!(g.folder_messages("INBOX").unwrap().len(), 1);

    // Leaving the view loses the UID; coming back gets a new one.
    let a = c.command("UID STORE 1 -X-GM-LABELS.SILENT (Receipts)");
    assert_eq!((a.status(), a.untagged.len()), ("OK", 0));
    assert!(g.folder_messages("Receipts").unwrap().is_empty());
    c.command("UID STORE 1 +X-GM-LABELS.SILENT (Receipts)");
    assert_eq!(g.folder_messages("Receipts").unwrap()[0].uid, 2);

    // Replacing the set; a label with no folder.
    c.command("UID STORE 1 X-GM-LABELS.SILENT (\\Important)");
    assert_eq!(g.messages()[0].labels, vec!["\\Important".to_string()]);
    let a = c.command("UID STORE 1 +X-GM-LABELS (Nowhere)");
    assert_eq!(a.done, "NO [NONEXISTENT] No folder Nowhere (Failure)");
    assert!(g.labels().contains(&"Receipts".to_string()));
    assert!(!g.labels().contains(&"Nowhere".to_string()));

    // Starred is the \Flagged flag.
    c.command("UID STORE 1 +FLAGS.SILENT (\\Flagged)");
    assert_eq!(g.folder_messages("[Gmail]/Starred").unwrap().len(), 1);
}

#[test]
fn gmail_a_duplicate_append_is_answered_ok_but_only_labels_the_message_it_repeats() {
    let g = Provider::gmail(gmail_cfg());
    let mut c = gmail_login(&g);
    let m = msg(7, 500);
    let a = c.command_with_literal(
        "APPEND \"INBOX\" (\\Seen) \"05-Mar-2021 14:03:07 +0100\"",
        &m,
        false,
    );
    assert!(a.done.starts_with("OK [APPENDUID "), "{a:?}");
    assert!(a.done.ends_with("1] (Success)"), "{a:?}");
    c.command("CREATE \"Work\"");
    let a = c.command_with_literal("APPEND \"Work\" ()", &m, false);
    assert_eq!(a.status(), "OK");
    let answered: u32 = a
        .done
        .split(' ')
        .nth(3)
        .unwrap()
        .trim_end_matches(']')
        .parse()
        .unwrap();
    let all = g.messages();
    assert_eq!(all.len(), 1, "stored once");
    assert_eq!(
        all[0].labels,
        vec!["Work".to_string(), "\\Inbox".to_string()]
    );
    assert_eq!(all[0].flags, vec!["\\Seen".to_string()]);
    assert_eq!(all[0].internaldate, 1_614_949_387);
    let work = g.folder_messages("Work").unwrap();
    assert_eq!(work.len(), 1);
    assert_ne!(work[0].uid, answered, "the answered UID never shows");
    assert_eq!(g.appends(), 2);
    assert_eq!(g.bytes_uploaded(), 2 * m.len() as u64);
}

#[test]
fn gmail_append_rules_deleted_goes_to_trash_too_big_and_literal_minus() {
    let g = Provider::gmail(ProviderConfig {
        max_message_size: 10_000,
        ..gmail_cfg()
    });
    let mut c = gmail_login(&g);
    let a = c.command_with_literal("APPEND \"INBOX\" (\\Deleted)", &msg(1, 300), true);
    assert_eq!(a.status(), "OK", "{a:?}");
    assert_eq!(g.messages()[0].place, Place::Trash);
    assert_eq!(g.folder_messages("[Gmail]/Trash").unwrap().len(), 1);
    assert!(g.folder_messages("INBOX").unwrap().is_empty());

    let a = c.command_with_literal("APPEND \"INBOX\"", &msg(2, 10_001), false);
    assert_eq!(a.done, "NO [TOOBIG] Message too large. (Failure)");
    let a = c.command_with_literal("APPEND \"Nope\"", &msg(3, 100), false);
    assert_eq!(a.done, "NO [TRYCREATE] Folder doesn't exist. (Failure)");

    // LITERAL-: a non-synchronizing literal over 4096 bytes is refused and the link closed.
    let a = c.command_with_literal("APPEND \"INBOX\"", &msg(4, 5000), true);
    assert!(a.done.starts_with("BAD"), "{a:?}");
    assert!(c.command("NOOP").closed);
    assert_eq!(g.messages().len(), 1);
}

#[test]
fn gmail_expunge_removes_a_label_in_a_label_view_moves_to_trash_from_all_mail_and_deletes_in_trash()
{
    let g = Provider::gmail(gmail_cfg());
    let ids = g.seed(vec![
        SeedMsg::new(&msg(1, 200)).labels(&["\\Inbox", "Work"]),
        SeedMsg::new(&msg(2, 200)).labels(&["Work"]),
    ]);
    let mut c = gmail_login(&g);
    select(&mut c, "Work");
    c.command("UID STORE 1 +FLAGS.SILENT (\\Deleted)");
    let a = c.command("UID EXPUNGE 1");
    assert_eq!(a.untagged, vec!["* 1 EXPUNGE".to_string()]);
    let m = g.messages();
    assert_eq!(
        m[0].labels,
        vec!["\\Inbox".to_string()],
        "only the label went"
    );
    assert!(!m[0].flags.iter().any(|f| f == "\\Deleted"));

    select(&mut c, "[Gmail]/All Mail");
    let a = c.command(&format!("UID SEARCH X-GM-MSGID {}", ids[1]));
    let uid = a.untagged[0].trim_start_matches("* SEARCH ").to_string();
    c.command(&format!("UID STORE {uid} +FLAGS.SILENT (\\Deleted)"));
    c.command("EXPUNGE");
    assert_eq!(g.messages()[1].place, Place::Trash);
    assert!(
        g.folder_messages("Work").unwrap().is_empty(),
        "Trash hides it from labels"
    );

    select(&mut c, "[Gmail]/Trash");
    c.command("UID STORE 1:* +FLAGS.SILENT (\\Deleted)");
    c.command("EXPUNGE");
    assert_eq!(g.messages().len(), 1);

    // A few SEARCH keys.
    select(&mut c, "INBOX");
    let a = c.command("UID SEARCH UNSEEN NOT DELETED SINCE 1-Jan-2024 LARGER 100");
    assert_eq!(a.untagged, vec!["* SEARCH 1".to_string()]);
    let a = c.command("UID SEARCH OR SEEN BEFORE 1-Jan-2024");
    assert_eq!(a.untagged, vec!["* SEARCH".to_string()]);
    let a = c.command("UID SEARCH HEADER Message-ID <1@hostile.test>");
    assert_eq!(a.untagged, vec!["* SEARCH 1".to_string()]);
    assert_eq!(
        c.command("UID SEARCH X-GM-RAW \"in:inbox\"").status(),
        "BAD"
    );
}

#[test]
fn gmail_create_refuses_excess_whitespace_and_carets() {
    let g = Provider::gmail(gmail_cfg());
    let mut c = gmail_login(&g);
    for bad in [" Lead", "Trail ", "Two  spaces", "a/ b"] {
        let a = c.command(&format!("CREATE \"{bad}\""));
        assert_eq!(
            a.done,
            "NO [CANNOT] Folder contains excess whitespace (Failure)"
        );
    }
    let a = c.command("CREATE \"a^b\"");
    assert_eq!(a.done, "NO [CANNOT] Invalid folder name");
    assert_eq!(c.command("CREATE \"Work/Projects\"").status(), "OK");
    let a = c.command("CREATE \"Work/Projects\"");
    assert!(a.done.starts_with("NO [ALREADYEXISTS]"), "{a:?}");
    assert_eq!(g.labels(), vec!["Work/Projects".to_string()]);
}

#[test]
fn gmail_download_quota_ends_sessions_until_the_next_day() {
    let g = Provider::gmail(ProviderConfig {
        download_limit: Some(1000),
        ..gmail_cfg()
    });
    g.seed((1..=4).map(|n| SeedMsg::new(&msg(n, 600))).collect());
    let mut c = gmail_login(&g);
    select(&mut c, "[Gmail]/All Mail");
    assert_eq!(c.command("UID FETCH 1 (BODY.PEEK[])").status(), "OK");
    // Headers and metadata still flow; the next body does not.
    assert_eq!(c.command("UID FETCH 2 (BODY.PEEK[]<0.700>)").status(), "OK");
    assert_eq!(g.body_bytes_served(), 1200);
    let a = c.command("UID FETCH 3 (BODY.PEEK[])");
    assert_eq!(a.bye(), Some("* BYE Session expired, please login again."));
    assert!(a.closed);

    let mut c = gmail_login(&g);
    select(&mut c, "[Gmail]/All Mail");
    assert_eq!(
        c.command("UID FETCH 1:* (UID FLAGS RFC822.SIZE)").status(),
        "OK"
    );
    assert!(c.command("UID FETCH 3 (BODY.PEEK[])").closed);
    assert_eq!(g.quota_byes(), 2);

    g.reset_quotas();
    let mut c = gmail_login(&g);
    select(&mut c, "[Gmail]/All Mail");
    assert_eq!(c.command("UID FETCH 3 (BODY.PEEK[])").status(), "OK");
}

#[test]
fn gmail_upload_quota_and_connection_cap() {
    let g = Provider::gmail(ProviderConfig {
        upload_limit: Some(500),
        max_connections: 2,
        ..gmail_cfg()
    });
    let mut c = gmail_login(&g);
    assert_eq!(
        c.command_with_literal("APPEND \"INBOX\"", &msg(1, 600), false)
            .status(),
        "OK"
    );
    let a = c.command_with_literal("APPEND \"INBOX\"", &msg(2, 600), false);
    assert_eq!(a.bye(), Some("* BYE Session expired, please login again."));
    drop(c);
    std::thread::sleep(Duration::from_millis(100));

    // The cap is answered at LOGIN, not at connect.
    let _a = gmail_login(&g);
    let _b = gmail_login(&g);
    let mut third = RawImap::connect(g.port());
    assert!(
        third.greeting.starts_with("* OK Gimap ready"),
        "{}",
        third.greeting
    );
    let a = third.command(&format!("LOGIN {USER} {PW}"));
    assert_eq!(
        a.done,
        "NO [ALERT] Too many simultaneous connections. (Failure)"
    );
    assert_eq!(g.max_logged_in(), 2);
    assert_eq!(g.cap_refusals(), 1);
}

#[test]
fn gmail_other_clients_count_against_the_connection_cap() {
    let g = Provider::gmail(ProviderConfig {
        max_connections: 3,
        other_sessions: 2,
        ..gmail_cfg()
    });
    let _a = gmail_login(&g);
    let mut b = RawImap::connect(g.port());
    let a = b.command(&format!("LOGIN {USER} {PW}"));
    assert_eq!(a.status(), "NO", "{a:?}");
    // The phone goes away: room again.
    g.set_other_sessions(0);
    assert_eq!(b.command(&format!("LOGIN {USER} {PW}")).status(), "OK");
}

#[test]
fn gmail_overquota_is_answered_to_a_body_fetch_and_the_session_stays() {
    let g = Provider::gmail(ProviderConfig {
        download_limit: Some(500),
        quota_answer: provider::QuotaAnswer::OverQuota,
        upload_limit: Some(0),
        ..gmail_cfg()
    });
    g.seed(vec![SeedMsg::new(&msg(1, 600)), SeedMsg::new(&msg(2, 600))]);
    let mut c = gmail_login(&g);
    select(&mut c, "[Gmail]/All Mail");
    assert_eq!(c.command("UID FETCH 1 (BODY.PEEK[])").status(), "OK");
    let a = c.command("UID FETCH 2 (BODY.PEEK[])");
    assert_eq!(a.done, provider::OVERQUOTA);
    assert!(!a.closed);
    // Metadata still comes; the upload quota is answered the same way.
    assert_eq!(c.command("UID FETCH 1:* (UID RFC822.SIZE)").status(), "OK");
    let a = c.command_with_literal("APPEND \"INBOX\"", &msg(3, 300), false);
    assert_eq!(a.done, provider::OVERQUOTA);
}

#[test]
fn gmail_ends_an_old_session_with_session_expired_without_any_quota() {
    let g = Provider::gmail(ProviderConfig {
        session_lifetime: Some(Duration::from_millis(300)),
        ..gmail_cfg()
    });
    let mut c = gmail_login(&g);
    assert_eq!(c.command("NOOP").status(), "OK");
    std::thread::sleep(Duration::from_millis(350));
    let a = c.command("NOOP");
    assert_eq!(a.bye(), Some("* BYE Session expired, please login again."));
    assert_eq!((g.expiry_byes(), g.quota_byes()), (1, 0));
    let mut c = gmail_login(&g);
    assert_eq!(c.command("NOOP").status(), "OK");
}

#[test]
fn gmail_slows_body_fetches_and_says_throttled_for_a_while() {
    let g = Provider::gmail(ProviderConfig {
        throttle_after: Some(1_000),
        throttle_rate: 20_000,
        throttle_for: Duration::from_millis(400),
        ..gmail_cfg()
    });
    g.seed((1..=3).map(|n| SeedMsg::new(&msg(n, 2_000))).collect());
    let mut c = gmail_login(&g);
    select(&mut c, "[Gmail]/All Mail");
    assert_eq!(c.command("UID FETCH 1 (BODY.PEEK[])").done, "OK Success");
    let started = std::time::Instant::now();
    assert_eq!(
        c.command("UID FETCH 2 (BODY.PEEK[])").done,
        "OK Success [THROTTLED]"
    );
    // 2 000 bytes at 20 000 a second.
    assert!(started.elapsed() >= Duration::from_millis(100));
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(c.command("UID FETCH 3 (BODY.PEEK[])").done, "OK Success");
    let s = g.slowdowns();
    assert_eq!(s.len(), 1);
    assert!(s[0].waited().unwrap() >= Duration::from_millis(400));
}

#[test]
fn gmail_login_alerts_for_app_passwords_and_web_login() {
    let g = Provider::gmail(ProviderConfig {
        login_alert: Some(provider::LoginAlert::AppPassword),
        ..gmail_cfg()
    });
    let mut c = RawImap::connect(g.port());
    let a = c.command(&format!("LOGIN {USER} {PW}"));
    assert!(a.done.starts_with("NO [ALERT] Application-specific password required: https://support.google.com/accounts/answer/185833"), "{a:?}");
    let g = Provider::gmail(ProviderConfig {
        login_alert: Some(provider::LoginAlert::WebLogin),
        ..gmail_cfg()
    });
    let mut c = RawImap::connect(g.port());
    let a = c.command(&format!("LOGIN {USER} {PW}"));
    assert_eq!(
        a.untagged,
        vec![format!(
            "* NO [WEBALERT {}] Web login required.",
            provider::WEBALERT_URL
        )]
    );
    assert!(
        a.done
            .starts_with("NO [ALERT] Please log in via your web browser"),
        "{a:?}"
    );
}

#[test]
fn gmail_hidden_all_mail_folder_limits_dates_and_rfc822msgid_search() {
    let g = Provider::gmail(ProviderConfig {
        hide_all_mail: true,
        max_folder_size: Some(2),
        ..gmail_cfg()
    });
    g.seed(
        (1..=3)
            .map(|n| SeedMsg::new(&msg(n, 300)).labels(&["\\Inbox"]))
            .collect(),
    );
    let mut c = gmail_login(&g);
    let list = c.command("LIST \"\" \"*\"");
    assert!(
        !list.untagged.iter().any(|l| l.contains("All Mail")),
        "{list:?}"
    );
    assert_eq!(c.command("SELECT \"[Gmail]/All Mail\"").status(), "NO");
    let a = c.command("STATUS INBOX (MESSAGES)");
    assert_eq!(
        a.untagged,
        vec!["* STATUS \"INBOX\" (MESSAGES 2)".to_string()]
    );
    let a = select(&mut c, "INBOX");
    assert!(a.untagged.contains(&"* 2 EXISTS".to_string()), "{a:?}");
    // The newest two show.
    let a = c.command("UID SEARCH ALL");
    assert_eq!(a.untagged, vec!["* SEARCH 2 3".to_string()]);
    let a = c.command("UID SEARCH X-GM-RAW \"rfc822msgid:<2@hostile.test>\"");
    assert_eq!(a.untagged, vec!["* SEARCH 2".to_string()]);

    // A date before 1970 or in the future becomes the time of the upload.
    let a = c.command_with_literal(
        "APPEND \"INBOX\" () \"01-Jan-1960 00:00:00 +0000\"",
        &msg(7, 300),
        false,
    );
    assert_eq!(a.status(), "OK");
    let a = c.command_with_literal(
        "APPEND \"INBOX\" () \"01-Jan-2090 00:00:00 +0000\"",
        &msg(8, 300),
        false,
    );
    assert_eq!(a.status(), "OK");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for m in g
        .messages()
        .iter()
        .filter(|m| m.bytes == msg(7, 300) || m.bytes == msg(8, 300))
    {
        assert!((now - m.internaldate).abs() < 60, "{}", m.internaldate);
    }
}

/// A bare connection for conversations RawImap cannot hold (continuations mid-command).
struct Bare(BufReader<TcpStream>);

impl Bare {
    fn connect(port: u16) -> Bare {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut b = Bare(BufReader::new(s));
        b.line();
        b
    }
    fn send(&mut self, s: &str) {
        self.0.get_mut().write_all(s.as_bytes()).unwrap();
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.0.read_line(&mut l).unwrap_or(0);
        l.trim_end().to_string()
    }
}

#[test]
fn oauth2_failures_as_each_service_answers_them_and_basic_auth_off_on_m365() {
    let check: provider::TokenCheck = Arc::new(|t: &str| t == "good");
    let g = Provider::gmail(ProviderConfig {
        token_check: Some(check.clone()),
        ..gmail_cfg()
    });
    let mut b = Bare::connect(g.port());
    b.send(&format!(
        "a1 AUTHENTICATE XOAUTH2 {}\r\n",
        provider::xoauth2(USER, "bad")
    ));
    let challenge = b.line();
    assert!(
        challenge.starts_with("+ eyJzdGF0dXMiOiI0MDAi"),
        "{challenge}"
    );
    b.send("\r\n");
    assert_eq!(
        b.line(),
        "a1 NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)"
    );
    // Without SASL-IR: the mechanism first, the response after the continuation.
    b.send("a2 AUTHENTICATE XOAUTH2\r\n");
    assert!(b.line().starts_with('+'));
    b.send(&format!("{}\r\n", provider::xoauth2(USER, "good")));
    assert!(b.line().starts_with("a2 OK"));
    let mut c = RawImap::connect(g.port());
    let a = c.command(&format!("AUTHENTICATE PLAIN {}", provider::plain(USER, PW)));
    assert_eq!(a.status(), "OK");

    let m = Provider::m365(ProviderConfig {
        token_check: Some(check),
        ..ProviderConfig::default()
    });
    let mut c = RawImap::connect(m.port());
    assert!(c
        .greeting
        .starts_with("* OK The Microsoft Exchange IMAP4 service is ready."));
    assert_eq!(
        c.command(&format!("LOGIN {USER} pw")).done,
        "NO LOGIN failed."
    );
    let a = c.command(&format!(
        "AUTHENTICATE PLAIN {}",
        provider::plain(USER, "pw")
    ));
    assert_eq!(a.done, "NO LOGIN failed.");
    let a = c.command(&format!(
        "AUTHENTICATE XOAUTH2 {}",
        provider::xoauth2(USER, "bad")
    ));
    assert_eq!(a.done, "NO AUTHENTICATE failed.");
    drop(c);
    oauth_login(m.port(), "good");
}

#[test]
fn a_token_that_expires_ends_the_session_at_the_next_command() {
    let valid = Arc::new(AtomicBool::new(true));
    let v = valid.clone();
    for mode in ["gmail", "m365"] {
        valid.store(true, Ordering::SeqCst);
        let v = v.clone();
        let cfg = ProviderConfig {
            token_check: Some(Arc::new(move |_t: &str| v.load(Ordering::SeqCst))),
            ..ProviderConfig::default()
        };
        let p = if mode == "gmail" {
            Provider::gmail(cfg)
        } else {
            Provider::m365(cfg)
        };
        let mut c = oauth_login(p.port(), "tok");
        assert_eq!(c.command("NOOP").status(), "OK");
        valid.store(false, Ordering::SeqCst);
        let a = c.command("NOOP");
        assert_eq!(
            a.bye(),
            Some("* BYE Session invalidated - AccessTokenExpired"),
            "{mode}"
        );
        assert!(a.closed);
    }
}

#[test]
fn m365_throttles_every_nth_command_and_records_the_wait() {
    let m = Provider::m365(ProviderConfig {
        throttle_every: Some(3),
        backoff_ms: 150,
        ..ProviderConfig::default()
    });
    let mut c = oauth_login(m.port(), "t");
    assert_eq!(c.command("NOOP").status(), "OK");
    assert_eq!(c.command("NOOP").status(), "OK");
    let a = c.command("SELECT INBOX");
    assert_eq!(
        a.done,
        "NO Request is throttled. Suggested Backoff Time: 150 milliseconds"
    );
    assert!(c.command("NOOP").closed);
    std::thread::sleep(Duration::from_millis(200));
    let _c = oauth_login(m.port(), "t");
    let t = m.throttles();
    assert_eq!(t.len(), 1);
    assert!(t[0].waited().unwrap() >= Duration::from_millis(150));
}

#[test]
fn m365_flags_folders_and_refusals() {
    let m = Provider::m365(ProviderConfig {
        max_message_size: 20_000,
        ..ProviderConfig::default()
    });
    let mut c = oauth_login(m.port(), "t");
    let a = c.command_with_literal(
        "APPEND \"inbox\" (\\Seen \\Flagged $Forwarded $MDNSent)",
        &msg(1, 300),
        false,
    );
    assert_eq!(a.status(), "OK", "{a:?}");
    assert!(a.done.ends_with("APPEND completed."));
    let inbox = m.folder_messages("INBOX").unwrap();
    assert_eq!(
        inbox[0].flags,
        vec!["\\Seen".to_string(), "$MDNSent".to_string()]
    );
    let a = select(&mut c, "Inbox");
    assert!(a
        .untagged
        .contains(&"* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)] Flags permitted.".to_string()));
    c.command("UID STORE 1 +FLAGS.SILENT (\\Flagged $Custom)");
    assert_eq!(
        m.folder_messages("INBOX").unwrap()[0].flags,
        vec!["\\Seen", "$MDNSent", "\\Flagged"]
    );

    let list = c.command("LIST \"\" \"*\"");
    assert!(list
        .untagged
        .contains(&"* LIST (\\Sent \\HasNoChildren) \"/\" \"Sent Items\"".to_string()));
    let a = c.command("CREATE \"files\"");
    assert_eq!(a.done, "NO Folder name is reserved");
    let a = c.command("CREATE \"archive\"");
    assert_eq!(a.done, "NO [ALREADYEXISTS] Mailbox already exists");
    select(&mut c, "ARCHIVE");

    let a = c.command_with_literal("APPEND \"INBOX\"", &msg(2, 20_001), false);
    assert_eq!(
        a.done,
        "NO Maximum size of appendable message has been exceeded"
    );
    let mut long = b"Subject: long\r\n\r\n".to_vec();
    long.extend(std::iter::repeat_n(b'x', 10_501));
    long.extend_from_slice(b"\r\n");
    let a = c.command_with_literal("APPEND \"INBOX\"", &long, false);
    assert_eq!(a.done, "BAD Command Error. 10");
    assert_eq!(m.folder_messages("INBOX").unwrap().len(), 1);
}

#[test]
fn m365_stored_sizes_unavailable_and_not_connected() {
    let m = Provider::m365(ProviderConfig {
        stored_sizes: true,
        unavailable_every: Some(2),
        ..ProviderConfig::default()
    });
    m.seed_folder("INBOX", vec![SeedMsg::new(&msg(1, 1_000))]);
    let mut c = oauth_login(m.port(), "t");
    select(&mut c, "INBOX");
    assert_eq!(c.command("SELECT INBOX").done, "NO Server Unavailable. 15");
    select(&mut c, "INBOX");
    let a = c.command("UID FETCH 1 (RFC822.SIZE)");
    assert_eq!(numbers(&a, "RFC822.SIZE"), vec![1_000 + 50 + 7]);

    let m = Provider::m365(ProviderConfig {
        not_connected: true,
        ..ProviderConfig::default()
    });
    let mut c = oauth_login(m.port(), "t");
    assert_eq!(
        c.command("NAMESPACE").done,
        "BAD User is authenticated but not connected."
    );
    let a = c.command("LIST \"\" \"INBOX\"");
    assert_eq!(a.done, "BAD User is authenticated but not connected.");
    // The BYE follows the second answer.
    let a = c.command("NOOP");
    assert!(a.closed);
    assert_eq!(a.bye(), Some("* BYE Connection closed. 14"));
}

#[test]
fn m365_closes_a_session_at_its_tenth_refusal() {
    let m = Provider::m365(ProviderConfig::default());
    let mut c = oauth_login(m.port(), "t");
    for _ in 0..9 {
        assert_eq!(c.command("SELECT \"Nowhere\"").done, "NO SELECT failed.");
    }
    assert_eq!(c.command("FROB").done, "BAD Command Error. 10");
    // The BYE follows the tenth answer; the connection is gone.
    let next = c.command("NOOP");
    assert!(next.closed, "{next:?}");
    assert_eq!(next.bye(), Some("* BYE Connection is closed. 13"));
}

#[test]
fn dropping_the_provider_closes_its_port() {
    let g = Provider::gmail(gmail_cfg());
    let port = g.port();
    let c = gmail_login(&g);
    drop(g);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    drop(c);
}

/// The real binary: pull from the Gmail emulator, push a Dovecot-seeded store into the
/// Microsoft 365 emulator with an OAuth2 token file.
#[test]
fn smoke_pull_from_gmail_and_push_to_m365_with_the_binary() {
    let g = Provider::gmail(gmail_cfg());
    g.seed(vec![
        SeedMsg::new(&msg(1, 2000)).labels(&["\\Inbox", "Work"]),
        SeedMsg::new(&msg(2, 70_000))
            .labels(&["\\Sent"])
            .flags(&["\\Seen"]),
        SeedMsg::new(&msg(3, 900))
            .labels(&["Work/Projects"])
            .flags(&["\\Flagged"]),
        SeedMsg::new(&msg(4, 900)).place(Place::Spam),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let run: Run = imapferry()
        .arg("pull")
        .args(["--host1", "127.0.0.1", "--port1"])
        .arg(g.port().to_string())
        .args(["--tls1", "none", "--user1", USER, "--store"])
        .arg(&store)
        .arg("--json")
        .env("IMAPFERRY_PASSWORD1", PW)
        .output()
        .unwrap()
        .into();
    let run = run.expect_code(0);
    let views: usize = g
        .folders()
        .iter()
        .filter_map(|f| g.folder_messages(f))
        .map(|v| v.len())
        .sum();
    assert_eq!(
        run.json()["new"].as_u64(),
        Some(views as u64),
        "{}",
        run.all()
    );
    let stored = common::run::store_messages(&store);
    assert_eq!(stored["[Gmail]/All Mail"].len(), 3);
    assert_eq!(stored["Work/Projects"][0].bytes, msg(3, 900));

    let host1 = Dovecot::start_default();
    let corpus = Corpus::small();
    seed(&host1, "alice", &corpus);
    let (_d, store) = pulled_store(&host1);
    let m = Provider::m365(ProviderConfig {
        token_check: Some(Arc::new(|t: &str| t == "access-token-1")),
        ..ProviderConfig::default()
    });
    let token = dir.path().join("token");
    std::fs::write(&token, "access-token-1\n").unwrap();
    let run: Run = imapferry()
        .arg("push")
        .args(["--host2", "127.0.0.1", "--port2"])
        .arg(m.port().to_string())
        .args(["--tls2", "none", "--user2", USER, "--oauth2-token-file2"])
        .arg(&token)
        .arg("--store")
        .arg(&store)
        .arg("--json")
        .output()
        .unwrap()
        .into();
    let run = run.expect_code(0);
    let pushed: usize = m
        .folders()
        .iter()
        .filter_map(|f| m.folder_messages(f))
        .map(|v| v.len())
        .sum();
    assert_eq!(pushed, corpus.len(), "{}", run.all());
    // Exchange keeps no \Flagged given in APPEND, nor keywords outside its permanent flags.
    let flagged = corpus
        .messages
        .iter()
        .filter(|c| c.flags.iter().any(|f| f == "\\Flagged"))
        .count();
    let kept = m
        .folders()
        .iter()
        .filter_map(|f| m.folder_messages(f))
        .flatten()
        .filter(|x| x.flags.iter().any(|f| f == "\\Flagged"))
        .count();
    eprintln!("corpus: {flagged} flagged; Microsoft 365 after push: {kept} flagged");
    assert_eq!(m.commands("LOGIN"), 0);
    assert!(m.commands("AUTHENTICATE") >= 1);
}
