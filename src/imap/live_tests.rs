//! Checks against a real IMAP server, skipped unless asked for (`cargo test -- --ignored`)
//! and configured through the environment:
//! `IMAPWIRE_PORT` (plain/STARTTLS port on 127.0.0.1), `IMAPWIRE_USER`, `IMAPWIRE_PASS`,
//! optionally `IMAPWIRE_TLS_PORT` and `IMAPWIRE_CA` (PEM of the server's self-signed cert).
//! Only ever connects to 127.0.0.1. The mailboxes it creates are named `imapwire-*`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::*;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|s| !s.is_empty())
}

fn endpoint(tls: TlsMode, port: u16, ca: bool) -> Endpoint {
    if let Some(v) = env("IMAPWIRE_VERBOSE") {
        crate::ui::set_verbosity(v.parse::<u8>().unwrap_or(2) + 1);
    }
    Endpoint {
        host: "127.0.0.1".into(),
        port,
        tls,
        insecure: false,
        ca_file: if ca {
            env("IMAPWIRE_CA").map(PathBuf::from)
        } else {
            None
        },
        user: env("IMAPWIRE_USER").expect("IMAPWIRE_USER"),
        secret: Secret::Password(env("IMAPWIRE_PASS").expect("IMAPWIRE_PASS")),
        timeout: Duration::from_secs(20),
    }
}

fn port(var: &str) -> u16 {
    env(var).expect(var).parse().expect("port")
}

/// Messages that are hard to carry byte-exactly.
fn corpus() -> Vec<Vec<u8>> {
    let mut v = vec![
        b"From: a@example.org\r\nSubject: plain\r\n\r\nhello\r\n".to_vec(),
        "From: a@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n8-bit: \u{e4}\u{f6}\u{fc} \u{65e5}\u{672c}\r\n"
            .as_bytes()
            .to_vec(),
        b"Subject: tricky\r\n\r\ntext ) and {5}\r\nA1 OK fake\r\n* 1 FETCH (UID 1)\r\n{5}\r\n".to_vec(),
    ];
    let mut bin = b"Subject: binary\r\nContent-Transfer-Encoding: 8bit\r\n\r\n".to_vec();
    for i in 0..4000u32 {
        let b = (i % 255 + 1) as u8;
        if b != b'\r' && b != b'\n' {
            bin.push(b);
        }
        if i % 70 == 69 {
            bin.extend_from_slice(b"\r\n");
        }
    }
    bin.extend_from_slice(b"\r\n");
    v.push(bin);
    // A big one, bigger than any batch: several MB.
    let mut big = b"Subject: big\r\n\r\n".to_vec();
    while big.len() < 5 << 20 {
        big.extend_from_slice(b"0123456789abcdefghijklmnopqrstuvwxyz ) {12} \"q\" \\ \xe4\xf6\r\n");
    }
    v.push(big);
    for i in 0..300 {
        v.push(format!("Subject: small {i}\r\n\r\nbody {i}\r\n").into_bytes());
    }
    v
}

fn roundtrip(c: &mut Client, mailbox_utf8: &str) {
    let raw = utf7::encode(mailbox_utf8);
    c.create(&raw).unwrap();
    c.create(&raw).unwrap(); // ALREADYEXISTS is fine
    c.subscribe(&raw).unwrap();
    let sel = c.select(&raw, false).unwrap();
    let start_exists = sel.exists;
    let msgs = corpus();
    let flags = vec![
        "\\Seen".to_string(),
        "\\Recent".to_string(),
        "$Forwarded".to_string(),
    ];
    let batch: Vec<AppendMessage<'_>> = msgs
        .iter()
        .map(|m| AppendMessage {
            flags: &flags,
            internaldate: Some("17-Jul-1996 09:44:25 +0000"),
            bytes: m,
        })
        .collect();
    let t = Instant::now();
    let out = c.append_many(&raw, &batch).unwrap();
    eprintln!(
        "appended {} messages ({} bytes) in {:?}",
        out.len(),
        msgs.iter().map(Vec::len).sum::<usize>(),
        t.elapsed()
    );
    let mut uid_to_msg = HashMap::new();
    for (i, o) in out.iter().enumerate() {
        match o {
            AppendOutcome::Ok {
                uid: Some(u),
                uidvalidity: Some(_),
            } => {
                uid_to_msg.insert(*u, i);
            }
            other => panic!("append {i}: {other:?}"),
        }
    }
    let sel = c.select(&raw, true).unwrap();
    assert_eq!(sel.exists, start_exists + msgs.len() as u32);
    let uids = c.uid_search_all().unwrap();
    let mut sizes = Vec::new();
    let mut meta = HashMap::new();
    c.uid_fetch_meta(&uidset::compact(&uids), None, &mut |f| {
        meta.insert(f.uid, f);
        Ok(())
    })
    .unwrap();
    for u in &uids {
        sizes.push(meta[u].size.unwrap());
    }
    let m = &meta[&uids[uids.len() - 1]];
    assert_eq!(
        m.internaldate.as_deref(),
        Some("17-Jul-1996 09:44:25 +0000")
    );
    let fl = m.flags.clone().unwrap();
    assert!(fl.contains(&"\\Seen".to_string()) && fl.contains(&"$Forwarded".to_string()));
    if c.has_capability("CONDSTORE") {
        assert!(m.modseq.is_some());
    }
    let t = Instant::now();
    let mut seen = 0;
    c.uid_fetch_bodies(&uids, &sizes, 64 << 10, 4, &mut |f| {
        if let Some(&i) = uid_to_msg.get(&f.uid) {
            assert_eq!(
                f.body.as_deref(),
                Some(msgs[i].as_slice()),
                "body of UID {}",
                f.uid
            );
            assert_eq!(f.size, Some(msgs[i].len() as u64));
            seen += 1;
        }
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, msgs.len());
    eprintln!(
        "fetched {seen} bodies byte-exact in {:?} (64 KiB batches, depth 4)",
        t.elapsed()
    );
    // An error from the callback stops the pipeline and leaves the connection usable.
    let mut calls = 0;
    let err = c
        .uid_fetch_bodies(&uids, &sizes, 1024, 8, &mut |_| {
            calls += 1;
            if calls == 3 {
                anyhow::bail!("stop here")
            }
            Ok(())
        })
        .unwrap_err();
    assert_eq!(err.to_string(), "stop here");
    let mut headers = 0;
    c.uid_fetch_headers(&uidset::compact(&uids[..3]), &mut |f| {
        assert!(f.body.unwrap().ends_with(b"\r\n\r\n"));
        headers += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(headers, 3);
    let list = c.list().unwrap();
    let mine = list.iter().find(|m| m.raw_name == raw).expect("listed");
    assert_eq!(mine.name, mailbox_utf8);
    assert!(mine.subscribed);
    assert!(list.iter().any(|m| m.raw_name == "INBOX"));
    eprintln!(
        "list: {:?}",
        list.iter()
            .map(|m| (&m.name, &m.special_use, m.subscribed))
            .collect::<Vec<_>>()
    );
    // A NO names the command and the server's text.
    let e = c.select("imapwire-does-not-exist", false).unwrap_err();
    eprintln!("expected error: {e:#}");
    assert!(format!("{e:#}").contains("SELECT \"imapwire-does-not-exist\""));
}

#[test]
#[ignore]
fn live_plain_roundtrip() {
    // IMAPWIRE_HIDE="AUTH=PLAIN LITERAL+" exercises the fallbacks (LOGIN, synchronizing
    // literals) against a server that offers everything.
    let opts = ConnectOptions {
        hide_capabilities: env("IMAPWIRE_HIDE")
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default(),
    };
    let ep = endpoint(TlsMode::None, port("IMAPWIRE_PORT"), false);
    let mut c = Client::connect_with(&ep, &opts).unwrap();
    eprintln!("capabilities: {:?}", c.capabilities());
    eprintln!("namespace: {:?}", c.namespace().unwrap());
    let name = format!("imapwire-{}/Entwürfe & 日本語 \"q\"", std::process::id());
    roundtrip(&mut c, &name);
    c.logout().unwrap();
}

#[test]
#[ignore]
fn live_tls() {
    let Some(tls_port) = env("IMAPWIRE_TLS_PORT") else {
        return;
    };
    let tls_port: u16 = tls_port.parse().unwrap();
    let c = Client::connect(&endpoint(TlsMode::Imaps, tls_port, true)).unwrap();
    assert!(c.has_capability("imap4rev1"));
    c.logout().unwrap();
    let c = Client::connect(&endpoint(TlsMode::StartTls, port("IMAPWIRE_PORT"), true)).unwrap();
    assert!(!c.has_capability("STARTTLS"));
    c.logout().unwrap();
    let e = Client::connect(&endpoint(TlsMode::Imaps, tls_port, false))
        .err()
        .unwrap();
    eprintln!("without CA: {e:#}");
    assert!(format!("{e:#}").contains("certificate"));
    let e = Client::connect(&endpoint(TlsMode::StartTls, port("IMAPWIRE_PORT"), false))
        .err()
        .unwrap();
    assert!(format!("{e:#}").contains("certificate"));
    let mut ep = endpoint(TlsMode::Imaps, tls_port, false);
    ep.insecure = true;
    Client::connect(&ep).unwrap().logout().unwrap();
}

/// A server that accepts and then says nothing must give a timeout error, not a hang.
#[test]
fn silent_server_times_out() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let hold = std::thread::spawn(move || {
        let s = l.accept();
        // Keep the socket open (and silent) until the client gave up.
        let _ = done_rx.recv_timeout(Duration::from_secs(10));
        drop(s);
    });
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        insecure: false,
        ca_file: None,
        user: "u".into(),
        secret: Secret::Password("pw".into()),
        timeout: Duration::from_secs(1),
    };
    let t = Instant::now();
    let e = Client::connect(&ep).err().unwrap();
    done_tx.send(()).unwrap();
    assert!(t.elapsed() < Duration::from_secs(3));
    assert!(
        format!("{e:#}").contains("timed out after 1 s waiting for 127.0.0.1"),
        "{e:#}"
    );
    hold.join().unwrap();
}
