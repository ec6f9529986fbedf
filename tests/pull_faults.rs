//! `imapferry pull` over bad links (the in-repo fault proxy in front of a real Dovecot): it
//! reconnects, resumes where it stopped and ends with an exact store.

mod common;

use std::time::Duration;

use common::run::{assert_store_matches_server, pull_via, store_messages};
use common::*;

#[test]
fn pull_through_a_link_that_cuts_every_connection_after_300_kb_completes_exactly() {
    let server = Dovecot::start(DovecotConfig::new().standard_special_use());
    let corpus = Corpus::standard();
    seed(&server, "alice", &corpus);
    let proxy = Proxy::start(
        server.port(),
        Faults {
            cut_after: Some(300_000),
            seed: 7,
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let r = pull_via(proxy.port(), &server, "alice", &store, &[])
        .expect_code(0)
        .json();
    eprintln!(
        "{} connections, {} cut; {} messages",
        proxy.connections(),
        proxy.cuts(),
        r["new"]
    );
    assert!(
        proxy.cuts() >= 10,
        "the proxy should have cut the link many times"
    );
    assert_eq!(r["new"].as_u64().unwrap() as usize, corpus.len());
    assert_store_matches_server(&store, &server, "alice");
}

#[test]
fn a_20_mb_message_arrives_through_a_link_that_cuts_every_2_mb_and_partial_bytes_survive() {
    let server = Dovecot::start_default();
    let mut big = b"Subject: twenty megabytes\r\n\r\n".to_vec();
    let mut x: u32 = 12345;
    while big.len() < 20_000_000 {
        for _ in 0..76 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            big.push(b'A' + (x >> 16) as u8 % 26);
        }
        big.extend_from_slice(b"\r\n");
    }
    let mut c = imap_client(&server, "alice");
    let msg = imapferry::imap::AppendMessage {
        flags: &[],
        internaldate: None,
        synchronizing: false,
        bytes: &big,
    };
    c.append_many("INBOX", &[msg]).unwrap();
    c.logout().unwrap();

    let proxy = Proxy::start(
        server.port(),
        Faults {
            cut_after: Some(2_000_000),
            seed: 3,
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");

    // First with no retries at all: the run stops, but the chunks it got stay on disk.
    let first = pull_via(proxy.port(), &server, "alice", &store, &["--retries", "0"]);
    assert_ne!(first.code, 0, "a cut with --retries 0 must fail the run");
    let partial: u64 = std::fs::read_dir(store.join("partial"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    eprintln!("after the first cut: {partial} bytes kept in partial/");
    assert!(
        partial >= 1_000_000,
        "the chunks received before the cut are kept"
    );

    let r = pull_via(proxy.port(), &server, "alice", &store, &[])
        .expect_code(0)
        .json();
    eprintln!("{} connections, {} cuts", proxy.connections(), proxy.cuts());
    assert_eq!(r["new"].as_u64().unwrap(), 1);
    assert!(store_messages(&store)["INBOX"][0].bytes == big);
    assert_eq!(std::fs::read_dir(store.join("partial")).unwrap().count(), 0);
    let sent = proxy.bytes_to_client();
    assert!(
        sent < big.len() as u64 * 13 / 10,
        "resuming should not fetch the message again from the start ({sent} bytes sent)"
    );
}

#[test]
fn pull_through_a_link_that_stalls_some_connections_completes_after_timeouts() {
    let server = Dovecot::start_default();
    let corpus = Corpus::small();
    seed(&server, "alice", &corpus);
    let proxy = Proxy::start(
        server.port(),
        Faults {
            stall_after: Some(20_000),
            affects: Affects::FirstN(2),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let started = std::time::Instant::now();
    // One connection at a time, so the first two (which stall) carry enough to stall.
    let r = pull_via(
        proxy.port(),
        &server,
        "alice",
        &store,
        &["--timeout", "2", "--jobs", "1"],
    )
    .expect_code(0)
    .json();
    eprintln!("stalled twice; finished in {:?}", started.elapsed());
    assert!(proxy.stalls() >= 2);
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(r["new"].as_u64().unwrap() as usize, corpus.len());
    assert_store_matches_server(&store, &server, "alice");
}
