//! Tests of the integration-test harness itself: Dovecot instances start, greet, speak TLS, and
//! a seeded corpus reads back byte for byte; every server kind starts, takes a login and is gone
//! once dropped.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use imapferry::imap::TlsMode;

fn greeting(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// A minimal line-based IMAP conversation (no literals), independent of the crate's client, to
/// check the server configuration itself.
struct Raw<S: Read + Write> {
    r: BufReader<S>,
    tag: u32,
}

impl<S: Read + Write> Raw<S> {
    fn new(stream: S) -> Self {
        Raw {
            r: BufReader::new(stream),
            tag: 0,
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.r.read_line(&mut line).expect("read line");
        assert!(!line.is_empty(), "connection closed");
        line
    }

    /// Send `cmd` with a fresh tag; return all lines up to and including the tagged one.
    fn cmd(&mut self, cmd: &str) -> Vec<String> {
        self.tag += 1;
        let tag = format!("t{}", self.tag);
        write!(self.r.get_mut(), "{tag} {cmd}\r\n").unwrap();
        self.r.get_mut().flush().unwrap();
        let mut lines = Vec::new();
        loop {
            let line = self.line();
            let done = line.starts_with(&format!("{tag} "));
            lines.push(line);
            if done {
                return lines;
            }
        }
    }

    /// Like [`Raw::cmd`], asserting a tagged OK.
    fn ok(&mut self, cmd: &str) -> Vec<String> {
        let lines = self.cmd(cmd);
        let last = lines.last().unwrap();
        assert!(last.contains(" OK"), "{cmd} -> {lines:?}");
        lines
    }
}

fn raw_plain(d: &Dovecot) -> Raw<TcpStream> {
    let stream = TcpStream::connect(("127.0.0.1", d.port())).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut raw = Raw::new(stream);
    let greeting = raw.line();
    assert!(greeting.starts_with("* OK"), "{greeting:?}");
    raw
}

fn tls_connector(d: &Dovecot) -> native_tls::TlsConnector {
    let pem = std::fs::read(d.ca_file()).expect("read CA file");
    native_tls::TlsConnector::builder()
        .add_root_certificate(native_tls::Certificate::from_pem(&pem).expect("PEM"))
        .build()
        .expect("TLS connector")
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
    let big = c
        .messages
        .iter()
        .filter(|m| m.bytes.len() > 2 << 20)
        .count();
    assert!(big >= 2, "{big} messages over 2 MB");
    let has = |needle: &[u8]| {
        c.messages
            .iter()
            .any(|m| m.bytes.windows(needle.len()).any(|w| w == needle))
    };
    assert!(has(b"\r\n)\r\n"));
    assert!(has(b"\r\n{5}\r\n"));
    assert!(has(b"\r\nA1 OK\r\n"));
    assert!(
        has("Jürgen".as_bytes()) || has("Müller".as_bytes()),
        "8-bit headers"
    );
    assert!(c
        .messages
        .iter()
        .any(|m| !m.bytes.windows(12).any(|w| w == b"Message-ID: ")));
    for m in &c.messages {
        assert!(
            !m.bytes.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
            "bare LF in a message of {}",
            m.folder
        );
        internaldate_to_unix(&m.internaldate);
    }
    let flags: Vec<&String> = c.messages.iter().flat_map(|m| &m.flags).collect();
    for f in [
        "\\Seen",
        "\\Answered",
        "\\Flagged",
        "\\Draft",
        "\\Deleted",
        "$Forwarded",
        "$Junk",
        "Work",
    ] {
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
    assert_eq!(
        internaldate_to_unix("05-Mar-2021 14:03:07 +0100"),
        1_614_949_387
    );
    assert_eq!(
        internaldate_to_unix(" 5-Mar-2021 06:03:07 -0700"),
        1_614_949_387
    );
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

#[test]
fn tls_instance_serves_implicit_tls_and_starttls_verifiable_with_its_ca_file() {
    let d = Dovecot::start(DovecotConfig::new().tls());
    assert_ne!(d.port(), d.imaps_port());
    let connector = tls_connector(&d);
    for host in ["127.0.0.1", "localhost"] {
        // Implicit TLS on the imaps port.
        let tcp = TcpStream::connect(("127.0.0.1", d.imaps_port())).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let tls = connector
            .connect(host, tcp)
            .unwrap_or_else(|e| panic!("imaps handshake as {host}: {e}"));
        let mut raw = Raw::new(tls);
        assert!(raw.line().starts_with("* OK"));
        raw.ok("LOGIN alice secret1");
        raw.ok("LOGOUT");
    }
    // STARTTLS on the imap port.
    let mut raw = raw_plain(&d);
    raw.ok("STARTTLS");
    let tcp = raw.r.into_inner();
    let tls = connector
        .connect("127.0.0.1", tcp)
        .expect("STARTTLS handshake");
    let mut raw = Raw::new(tls);
    raw.ok("LOGIN alice secret1");
    raw.ok("LOGOUT");
}

#[test]
fn namespace_special_use_and_capability_settings_reach_the_server() {
    let d = Dovecot::start(
        DovecotConfig::new()
            .namespace(NamespaceStyle::InboxDot)
            .special_use_auto("\\Sent", "Sent Items")
            .special_use("\\Drafts", "Drafts")
            .compress()
            .user("bob", "hunter2"),
    );
    let mut raw = raw_plain(&d);
    let login = raw.ok("LOGIN alice secret1").concat();
    let caps = raw.ok("CAPABILITY").concat();
    assert!(caps.contains("COMPRESS=DEFLATE"), "{login}{caps}");
    let ns = raw.ok("NAMESPACE").concat();
    assert!(ns.contains("((\"INBOX.\" \".\"))"), "{ns}");
    let list = raw
        .ok("LIST \"\" \"*\" RETURN (SPECIAL-USE SUBSCRIBED)")
        .concat();
    assert!(list.contains("\\Sent"), "{list}");
    assert!(list.contains("\"INBOX.Sent Items\""), "{list}");
    assert!(list.contains("\\Subscribed"), "{list}");
    raw.ok("LOGOUT");
    let mut bob = raw_plain(&d);
    bob.ok("LOGIN bob hunter2");
    bob.ok("LOGOUT");

    let d = Dovecot::start(DovecotConfig::new().imap_capability("IMAP4rev1 UIDPLUS"));
    let mut raw = raw_plain(&d);
    raw.ok("LOGIN alice secret1");
    let caps = raw.ok("CAPABILITY").concat();
    assert!(caps.contains("UIDPLUS"), "{caps}");
    assert!(
        !caps.contains("LITERAL+") && !caps.contains("MULTIAPPEND"),
        "{caps}"
    );
    raw.ok("LOGOUT");
}

#[test]
fn traffic_counts_each_logged_out_session() {
    let d = Dovecot::start_default();
    assert_eq!(d.traffic(), Traffic::default());
    for _ in 0..2 {
        let mut raw = raw_plain(&d);
        raw.ok("LOGIN alice secret1");
        raw.ok("SELECT INBOX");
        raw.ok("LOGOUT");
    }
    let t = d.traffic_settled();
    assert_eq!(t.sessions, 2, "{}", d.log_contents());
    assert!(t.bytes_in > 20 && t.bytes_out > 100, "{t:?}");
}

#[test]
fn doveadm_reaches_the_instance_and_drop_stops_it() {
    let d = Dovecot::start_default();
    let mut raw = raw_plain(&d);
    raw.ok("LOGIN alice secret1");
    raw.ok("CREATE Archive");
    raw.ok("LOGOUT");
    let out = d.doveadm(&["mailbox", "list", "-u", "alice"]);
    assert!(out.lines().any(|l| l == "Archive"), "{out}");
    assert!(d.maildir("alice").join(".Archive").is_dir());
    let port = d.port();
    let pid: u32 = std::fs::read_to_string(d.dir().join("run/master.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    drop(d);
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "still listening"
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        stat.is_empty() || stat.contains(") Z"),
        "master still running: {stat}"
    );
}

#[test]
fn imaps_client_connects_with_the_ca_file() {
    let d = Dovecot::start(DovecotConfig::new().tls());
    for mode in [TlsMode::Imaps, TlsMode::StartTls] {
        let mut c = imapferry::imap::Client::connect(&endpoint(&d, "alice", mode))
            .unwrap_or_else(|e| panic!("{mode:?}: {e:#}"));
        c.namespace().expect("NAMESPACE");
        c.logout().expect("LOGOUT");
    }
}

#[test]
fn seeded_small_corpus_reads_back_identically_in_both_namespace_styles() {
    for style in [NamespaceStyle::Slash, NamespaceStyle::InboxDot] {
        let d = Dovecot::start(DovecotConfig::new().namespace(style).standard_special_use());
        let corpus = Corpus::small();
        seed(&d, "alice", &corpus);
        assert_server_matches_corpus(&d, "alice", &corpus);
    }
}

#[test]
fn seeded_standard_corpus_reads_back_identically() {
    let d = Dovecot::start(DovecotConfig::new().special_use_auto("\\Sent", "Sent"));
    let corpus = Corpus::standard();
    seed(&d, "alice", &corpus);
    assert_server_matches_corpus(&d, "alice", &corpus);
    let server = server_messages(&d, "alice");
    assert!(server["Empty"].is_empty());
    assert_eq!(server.values().map(Vec::len).sum::<usize>(), corpus.len());
}

#[test]
fn every_server_kind_starts_takes_a_login_and_its_account_starts_empty() {
    for kind in ServerKind::ALL {
        let s = kind.start();
        assert_eq!(s.name(), kind.name());
        let mut c = client_of(&*s);
        let names: Vec<String> = c.list().unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(names, ["INBOX"], "{}", kind.name());
        assert_eq!(
            c.select("INBOX", true).unwrap().exists,
            0,
            "{}",
            kind.name()
        );
        c.logout().unwrap();
    }
}

/// True while `pid` exists as anything but a zombie.
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .map(|i| s[i + 1..].trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

#[test]
fn pymap_and_hoodiecrow_processes_are_gone_once_dropped() {
    let servers: Vec<(u32, Box<dyn TestServer>)> = vec![
        {
            let s = Pymap::start(PymapBackend::Dict);
            (s.pid(), Box::new(s))
        },
        {
            let s = Pymap::start(PymapBackend::Maildir);
            (s.pid(), Box::new(s))
        },
        {
            let s = Hoodiecrow::start();
            (s.pid(), Box::new(s))
        },
    ];
    for (pid, server) in servers {
        let name = server.name().to_string();
        assert!(running(pid), "{name} is not running");
        drop(server);
        assert!(!running(pid), "{name} (pid {pid}) outlived its handle");
    }
}
