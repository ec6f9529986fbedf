//! Tests of the integration-test harness itself: Dovecot instances start, greet, speak TLS, and
//! a seeded corpus reads back byte for byte.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

fn greeting(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

#[test]
fn dovecot_starts_and_greets_in_both_namespace_styles() {
    for style in [NamespaceStyle::Slash, NamespaceStyle::InboxDot] {
        let d = Dovecot::start(DovecotConfig::new().namespace(style));
        let line = greeting(d.port());
        assert!(line.starts_with("* OK"), "{style:?}: {line:?}");
    }
}

#[test]
fn corpus_is_deterministic_and_covers_the_awkward_cases() {
    let c = Corpus::standard();
    assert_eq!(c, Corpus::standard(), "same seed, same bytes");
    assert!(c.len() >= 400, "{} messages", c.len());
    let folders = c.by_folder();
    assert!(c.folders.len() >= 12);
    for f in [
        "INBOX",
        "Sent",
        "Drafts",
        "Trash",
        "Archive",
        "Archive/2023",
        "Archive/2024",
        "Entwürfe",
        "日本語",
        "A & B",
        "with \"quotes\"",
        "L1/L2/L3/L4/L5",
        "Lists/rust",
    ] {
        assert!(folders.contains_key(f), "no messages in {f:?}");
    }
    let total = c.total_bytes();
    assert!(total < 40 << 20, "corpus is {total} bytes");
    let big = c.messages.iter().filter(|m| m.bytes.len() > 2 << 20).count();
    assert!(big >= 2, "{big} messages over 2 MB");
    let has = |needle: &[u8]| c.messages.iter().any(|m| m.bytes.windows(needle.len()).any(|w| w == needle));
    assert!(has(b"\r\n)\r\n"));
    assert!(has(b"\r\n{5}\r\n"));
    assert!(has(b"\r\nA1 OK\r\n"));
    assert!(has("Jürgen".as_bytes()) || has("Müller".as_bytes()), "8-bit headers");
    assert!(c.messages.iter().any(|m| !m.bytes.windows(12).any(|w| w == b"Message-ID: ")));
    for m in &c.messages {
        assert!(
            !m.bytes.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
            "bare LF in a message of {}",
            m.folder
        );
        internaldate_to_unix(&m.internaldate);
    }
    let flags: Vec<&String> = c.messages.iter().flat_map(|m| &m.flags).collect();
    for f in ["\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "$Forwarded", "$Junk", "Work"] {
        assert!(flags.iter().any(|x| *x == f), "no message with {f}");
    }
    // Exact duplicates, within one folder and across folders.
    let mut seen = std::collections::HashMap::new();
    let (mut same_folder, mut cross_folder) = (false, false);
    for m in &c.messages {
        if let Some(folder) = seen.insert(&m.bytes, &m.folder) {
            if *folder == m.folder {
                same_folder = true;
            } else {
                cross_folder = true;
            }
        }
    }
    assert!(same_folder && cross_folder);
    let small = Corpus::small();
    assert!((25..=40).contains(&small.len()));
    assert!(small.by_folder().contains_key("Entwürfe"));
}

#[test]
fn internaldate_parsing_honours_the_zone() {
    assert_eq!(internaldate_to_unix("05-Mar-2021 14:03:07 +0100"), 1_614_949_387);
    assert_eq!(internaldate_to_unix(" 5-Mar-2021 06:03:07 -0700"), 1_614_949_387);
}

#[test]
fn log_traffic_sums_disconnected_lines() {
    let log = "Mar 05 imap-login: Info: Login: user=<alice>, method=PLAIN\n\
               Mar 05 imap(alice)<1><x>: Info: Disconnected: Logged out in=120 out=3400 deleted=0\n\
               Mar 05 imap-login: Info: Disconnected (no auth attempts in 0 secs): user=<>\n\
               Mar 05 imap(alice)<2><y>: Info: Disconnected: Connection closed (IDLE running for 0.001 + waiting input for 0.001 secs, 2 B in + 10+0 B out, state=wait-input) in=5 out=6 deleted=0\n";
    let t = common::dovecot::parse_traffic(log);
    assert_eq!(
        t,
        Traffic {
            sessions: 2,
            bytes_in: 125,
            bytes_out: 3406
        }
    );
}
