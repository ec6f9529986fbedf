//! The IMAP wire layer against real Dovecot servers: byte-exact round trips of messages that
//! are hard to frame (8-bit, IMAP syntax inside bodies, 5 MB), with and without LITERAL+ and
//! COMPRESS, partial fetches, TLS verification, and errors that name what failed.

mod common;

use std::collections::HashMap;
use std::time::Instant;

use imapferry::imap::{
    is_transient, uidset, AppendMessage, AppendOutcome, Client, ConnectOptions, Secret, TlsMode,
};
use imapferry::names::utf7;

use common::{endpoint, Dovecot, DovecotConfig};

/// Messages that are hard to carry byte-exactly.
fn tricky_messages() -> Vec<Vec<u8>> {
    let mut v = vec![
        b"From: a@example.org\r\nSubject: plain\r\n\r\nhello\r\n".to_vec(),
        "From: a@example.org\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\n8-bit: \u{e4}\u{f6}\u{fc} \u{65e5}\u{672c}\r\n"
            .as_bytes()
            .to_vec(),
        b"Subject: tricky\r\n\r\ntext ) and {5}\r\nA1 OK fake\r\n* 1 FETCH (UID 1)\r\n{5}\r\n".to_vec(),
    ];
    // Every byte value but NUL, CR and LF, in lines.
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
    // Bigger than any batch.
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

/// APPEND the tricky messages to a new mailbox, read everything back (metadata, pipelined
/// bodies, headers, LIST) and compare byte for byte.
fn round_trip(c: &mut Client, mailbox_utf8: &str) {
    let raw = utf7::encode(mailbox_utf8);
    c.create(&raw).unwrap();
    c.create(&raw).unwrap(); // ALREADYEXISTS is fine
    c.subscribe(&raw).unwrap();
    let msgs = tricky_messages();
    let flags = vec![
        "\\Seen".to_string(),
        "\\Recent".to_string(),
        "$Forwarded".to_string(),
    ];
    let batch: Vec<AppendMessage<'_>> = msgs
        .iter()
        .map(|m| AppendMessage {
            flags: &flags,
            internaldate: Some("17-Jul-1996 09:44:25 +0000".parse().unwrap()),
            synchronizing: false,
            bytes: m,
        })
        .collect();
    let out = c.append_many(&raw, &batch).unwrap();
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
    assert_eq!(sel.exists, msgs.len() as u32);
    let uids = c.uid_search_all().unwrap();
    let mut meta = HashMap::new();
    c.uid_fetch_meta(&uidset::compact(&uids), None, &mut |f| {
        meta.insert(f.uid, f);
        Ok(())
    })
    .unwrap();
    let sizes: Vec<u64> = uids.iter().map(|u| meta[u].size.unwrap()).collect();
    let last = &meta[&uids[uids.len() - 1]];
    assert_eq!(
        last.internaldate.clone().map(|d| d.unwrap().to_string()),
        Some("17-Jul-1996 09:44:25 +0000".to_string())
    );
    let fl = last.flags.clone().unwrap();
    assert!(fl.contains(&"\\Seen".to_string()) && fl.contains(&"$Forwarded".to_string()));
    if c.has_capability("CONDSTORE") {
        assert!(last.modseq.is_some());
    }
    let mut seen = 0;
    c.uid_fetch_bodies(&uids, &sizes, 64 << 10, 4, &mut |f| {
        let i = uid_to_msg[&f.uid];
        assert!(
            f.body.as_deref() == Some(msgs[i].as_slice()),
            "body of UID {} differs",
            f.uid
        );
        assert_eq!(f.size, Some(msgs[i].len() as u64));
        seen += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, msgs.len());
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
}

const MAILBOX: &str = "wire/Entwürfe & 日本語 \"q\"";

#[test]
fn tricky_messages_round_trip_byte_exact_with_literal_plus_and_compress() {
    let d = Dovecot::start(DovecotConfig::new().compress());
    let mut c = Client::connect(&endpoint(&d, "alice", TlsMode::None)).unwrap();
    assert!(c.has_capability("LITERAL+"));
    assert!(c.is_compressed(), "COMPRESS=DEFLATE should be active");
    round_trip(&mut c, MAILBOX);
    let t = c.traffic();
    // The 5 MB message alone went up and down once each, compressed.
    assert!(t.imap_in > 5 << 20 && t.imap_out > 5 << 20, "{t:?}");
    assert!(t.wire_in * 3 < t.imap_in, "{t:?}");
    assert!(t.wire_out * 3 < t.imap_out, "{t:?}");
    c.logout().unwrap();
}

#[test]
fn tricky_messages_round_trip_with_login_and_synchronizing_literals() {
    let d = Dovecot::start(DovecotConfig::new());
    let opts = ConnectOptions {
        hide_capabilities: vec!["AUTH=PLAIN".into(), "LITERAL+".into()],
        ..ConnectOptions::default()
    };
    let mut c = Client::connect_with(&endpoint(&d, "alice", TlsMode::None), &opts).unwrap();
    assert!(!c.has_capability("LITERAL+") && !c.has_capability("AUTH=PLAIN"));
    assert!(!c.is_compressed());
    round_trip(&mut c, MAILBOX);
    c.logout().unwrap();
}

#[test]
fn tricky_messages_round_trip_with_a_server_that_lacks_literal_plus() {
    let d = Dovecot::start(DovecotConfig::new().imap_capability(
        "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE NAMESPACE UIDPLUS CONDSTORE \
         LIST-EXTENDED SPECIAL-USE",
    ));
    let mut c = Client::connect(&endpoint(&d, "alice", TlsMode::None)).unwrap();
    assert!(!c.has_capability("LITERAL+"), "{:?}", c.capabilities());
    assert!(c.has_capability("UIDPLUS"));
    round_trip(&mut c, MAILBOX);
    c.logout().unwrap();
}

#[test]
fn compress_is_not_used_when_the_endpoint_disables_it() {
    let d = Dovecot::start(DovecotConfig::new().compress());
    let mut ep = endpoint(&d, "alice", TlsMode::None);
    ep.compress = false;
    let mut c = Client::connect(&ep).unwrap();
    assert!(c.has_capability("COMPRESS=DEFLATE"));
    assert!(!c.is_compressed());
    c.select("INBOX", true).unwrap();
    let t = c.traffic();
    assert_eq!((t.wire_in, t.wire_out), (t.imap_in, t.imap_out));
    c.logout().unwrap();
}

#[test]
fn pipelined_partial_fetches_reassemble_exactly_end_on_a_short_piece_and_see_a_missing_uid() {
    let d = Dovecot::start(DovecotConfig::new().compress());
    let mut c = Client::connect(&endpoint(&d, "alice", TlsMode::None)).unwrap();
    let mut big = Vec::new();
    let mut i = 0u32;
    while big.len() < 3 << 20 {
        big.extend_from_slice(format!("line {i} ) {{5}} \u{e4}\r\n").as_bytes());
        i += 1;
    }
    let mut msg = b"Subject: pieces\r\n\r\n".to_vec();
    msg.extend_from_slice(&big);
    let flags = Vec::new();
    let out = c
        .append_many(
            "INBOX",
            &[AppendMessage {
                flags: &flags,
                internaldate: None,
                synchronizing: false,
                bytes: &msg,
            }],
        )
        .unwrap();
    let AppendOutcome::Ok { uid: Some(uid), .. } = out[0] else {
        panic!("{:?}", out[0]);
    };
    c.select("INBOX", true).unwrap();
    let size = msg.len() as u64;
    let fetch = |c: &mut Client, uid: u32, offset: u64, chunk: u64, hint: u64, depth: usize| {
        let mut pieces: Vec<Vec<u8>> = Vec::new();
        let seen = c
            .uid_fetch_partials(uid, offset, chunk, hint, depth, &mut |p| {
                pieces.push(p.to_vec());
                Ok(())
            })
            .unwrap();
        (seen, pieces)
    };
    // Four 1 MiB pieces in flight; the last one is short.
    let (seen, pieces) = fetch(&mut c, uid, 0, 1 << 20, size, 4);
    assert!(seen);
    assert!(pieces.iter().all(|p| p.len() as u64 <= 1 << 20));
    assert!(pieces.concat() == msg, "reassembled with depth 4");
    // A declared size far too small: pieces stop at the size plus its margin, and that is an
    // error the caller can tell apart (it fetches the message whole instead).
    let mut got = 0u64;
    let e = c
        .uid_fetch_partials(uid, 0, 1 << 20, 1000, 4, &mut |p| {
            got += p.len() as u64;
            Ok(())
        })
        .unwrap_err();
    assert!(imapferry::imap::is_protocol(&e), "{e:#}");
    assert!(got <= 1000 + imapferry::imap::body_margin(1000), "{got}");
    // From an offset: the tail only, in 10-byte pieces and a short last one.
    let (_, pieces) = fetch(&mut c, uid, size - 25, 10, size, 8);
    assert_eq!(pieces.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
    assert_eq!(pieces.concat(), msg[msg.len() - 25..].to_vec());
    // A length that is a multiple of the chunk ends with an empty piece.
    let (_, pieces) = fetch(&mut c, uid, size - 20, 10, size, 8);
    assert_eq!(pieces.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 0]);
    // No such message: nothing, and `false`.
    assert_eq!(fetch(&mut c, uid + 1000, 0, 10, 100, 4), (false, vec![]));
    c.logout().unwrap();
}

#[test]
fn tls_verifies_the_certificate_unless_insecure() {
    let d = Dovecot::start(DovecotConfig::new().tls());
    let c = Client::connect(&endpoint(&d, "alice", TlsMode::Imaps)).unwrap();
    assert!(c.has_capability("IMAP4REV1"));
    c.logout().unwrap();
    let c = Client::connect(&endpoint(&d, "alice", TlsMode::StartTls)).unwrap();
    // Capabilities come from after the handshake.
    assert!(!c.has_capability("STARTTLS"));
    c.logout().unwrap();
    for mode in [TlsMode::Imaps, TlsMode::StartTls] {
        let mut ep = endpoint(&d, "alice", mode);
        ep.ca_file = None;
        let e = Client::connect(&ep).err().expect("untrusted certificate");
        assert!(format!("{e:#}").contains("certificate"), "{mode:?}: {e:#}");
        assert!(!is_transient(&e), "{mode:?}: {e:#}");
        ep.insecure = true;
        Client::connect(&ep).unwrap().logout().unwrap();
    }
}

#[test]
fn a_missing_mailbox_is_named_and_not_transient() {
    let d = Dovecot::start(DovecotConfig::new());
    let mut c = Client::connect(&endpoint(&d, "alice", TlsMode::None)).unwrap();
    let e = c.select("wire-does-not-exist", false).unwrap_err();
    assert!(
        format!("{e:#}").contains("SELECT \"wire-does-not-exist\""),
        "{e:#}"
    );
    assert!(!is_transient(&e), "{e:#}");
    // The connection is still usable.
    c.select("INBOX", true).unwrap();
    c.logout().unwrap();
}

#[test]
fn a_wrong_password_is_not_transient() {
    let d = Dovecot::start(DovecotConfig::new());
    let mut ep = endpoint(&d, "alice", TlsMode::None);
    ep.secret = Secret::Password("wrong".into());
    let t = Instant::now();
    let e = Client::connect(&ep).err().expect("login must fail");
    assert!(
        format!("{e:#}").contains("authentication as alice failed"),
        "{e:#}"
    );
    assert!(!format!("{e:#}").contains("wrong"), "{e:#}");
    assert!(!is_transient(&e), "{e:#}");
    // Dovecot delays failed logins; make sure we are not waiting on anything else.
    assert!(t.elapsed().as_secs() < 10);
}

#[test]
fn compress_works_inside_tls() {
    let d = Dovecot::start(DovecotConfig::new().tls().compress());
    for mode in [TlsMode::Imaps, TlsMode::StartTls] {
        let mut c = Client::connect(&endpoint(&d, "alice", mode)).unwrap();
        assert!(c.is_compressed(), "{mode:?}");
        let name = format!("tls-{mode:?}");
        round_trip(&mut c, &name);
        c.logout().unwrap();
    }
}
