//! Daily byte budgets over memory mailboxes (no server): a pull or push past its budget stops
//! cleanly with what it moved committed, says when to run again, and the next run continues
//! with nothing doubled and nothing lost; Gmail's `BYE Session expired` while message bytes
//! move stops a run the same way instead of being retried.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use imapferry::budget::{Way, WINDOW_SECS};
use imapferry::folders::Selection;
use imapferry::imap::{Endpoint, Secret, TlsMode};
use imapferry::mailbox::memory::{Memory, Msg, Server};
use imapferry::mailbox::Mailbox;
use imapferry::mailtime::InternalDate;
use imapferry::pull::{self, PullOptions, PullReport};
use imapferry::push::{self, PushOptions, PushReport};
use imapferry::run::Connector;
use imapferry::store::Store;

struct Mem(Arc<Mutex<Server>>, &'static str);

impl Connector for Mem {
    fn side(&self) -> &str {
        self.1
    }
    fn open(&self) -> Result<Box<dyn Mailbox>> {
        Ok(Box::new(Memory::connect(&self.0)))
    }
}

fn endpoint() -> Endpoint {
    Endpoint {
        host: "memory".into(),
        port: 1,
        tls: TlsMode::None,
        insecure: false,
        ca_file: None,
        user: "alice".into(),
        authuser: None,
        secret: Secret::Password("x".into()),
        timeout: Duration::from_secs(5),
        compress: false,
        rate_limit: None,
        provider: None,
        pause: Default::default(),
    }
}

/// Message `i` of a folder: about 1 000 bytes, each different.
fn body(folder: &str, i: usize) -> Vec<u8> {
    format!(
        "Subject: {folder} {i}\r\n\r\n{}\r\n",
        "x".repeat(980 + i % 7)
    )
    .into_bytes()
}

/// An account with `n` messages in INBOX and `n` in Archive.
fn host1(n: usize) -> Arc<Mutex<Server>> {
    let server = Server::new();
    {
        let mut s = server.lock().unwrap();
        for folder in ["INBOX", "Archive"] {
            for i in 0..n {
                s.put(
                    folder,
                    Msg {
                        flags: vec!["\\Seen".into()],
                        internaldate: InternalDate::from_unix(1_700_000_000 + i as i64),
                        bytes: body(folder, i),
                    },
                );
            }
        }
    }
    server
}

fn pull_options(store: &std::path::Path, limit: Option<u64>) -> PullOptions {
    let mut o = PullOptions::new(endpoint(), store.to_path_buf(), Selection::default());
    o.retries = 2;
    o.jobs = 2;
    o.batch_bytes = 4_000;
    o.commit_messages = 3;
    o.max_bytes_per_day = limit;
    o
}

fn pull(store: &mut Store, server: &Arc<Mutex<Server>>, o: &PullOptions) -> PullReport {
    pull::run_with(o, store, &Mem(Arc::clone(server), "host1"), None).unwrap()
}

fn push_options(store: &std::path::Path, limit: Option<u64>) -> PushOptions {
    let mut o = PushOptions::new(endpoint(), store.to_path_buf(), Selection::default());
    o.retries = 2;
    o.jobs = 2;
    o.batch_messages = 3;
    o.settle_secs = 1;
    o.max_bytes_per_day = limit;
    o
}

fn push(store: &mut Store, server: &Arc<Mutex<Server>>, o: &PushOptions) -> PushReport {
    push::run_with(o, store, &Mem(Arc::clone(server), "host2")).unwrap()
}

/// Every stored message's bytes per folder of an account, sorted.
fn account(server: &Arc<Mutex<Server>>) -> Vec<(String, Vec<Vec<u8>>)> {
    let s = server.lock().unwrap();
    s.folders
        .iter()
        .map(|(name, f)| {
            let mut v: Vec<Vec<u8>> = f.messages.values().map(|m| m.bytes.clone()).collect();
            v.sort();
            (name.to_string(), v)
        })
        .filter(|(_, v)| !v.is_empty())
        .collect()
}

/// Live messages per folder path in the store.
fn stored(store: &Store) -> Vec<(String, u64)> {
    store
        .index
        .summary()
        .unwrap()
        .into_iter()
        .map(|f| (f.path, f.messages))
        .collect()
}

/// Bytes of `direction` in the store's transfer log.
fn logged(store: &Store, direction: &str) -> u64 {
    let conn = rusqlite::Connection::open(store.root.join("index.sqlite")).unwrap();
    conn.query_row(
        "SELECT COALESCE(SUM(bytes), 0) FROM transfer_log WHERE direction = ?1",
        [direction],
        |r| r.get::<_, i64>(0),
    )
    .unwrap() as u64
}

/// As if a day had passed: every transfer log row moves 24 hours and a minute back.
fn a_day_later(store: &Store) {
    let conn = rusqlite::Connection::open(store.root.join("index.sqlite")).unwrap();
    conn.execute("UPDATE transfer_log SET at = at - ?1", [WINDOW_SECS + 60])
        .unwrap();
}

fn now() -> i64 {
    imapferry::clock::now()
}

#[test]
fn a_pull_past_its_daily_budget_stops_cleanly_and_the_next_run_continues() {
    let server = host1(15);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_or_create(dir.path()).unwrap();
    let limit = 10_000;
    let o = pull_options(dir.path(), Some(limit));

    let first = pull(&mut store, &server, &o);
    let stop = first.budget_spent.clone().expect("stopped by the budget");
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    assert!(!first.complete);
    assert_eq!(stop.direction, Way::Down);
    assert_eq!(stop.limit, Some(limit));
    assert!(first.new >= 8 && first.new <= 10, "{} new", first.new);
    assert!(first.bytes <= limit, "{} bytes", first.bytes);
    // The window frees a day after the first bytes of this run.
    assert!(stop.resume_at > now() + WINDOW_SECS - 120 && stop.resume_at <= now() + WINDOW_SECS);
    assert_eq!(logged(&store, "down"), first.bytes);
    assert!(first.summary().contains("run again after"));

    // Within the same day nothing more moves, and nothing is a failure.
    let again = pull(&mut store, &server, &o);
    assert_eq!(again.new, 0);
    assert!(again.budget_spent.is_some() && again.failures.is_empty());

    // A day later the rest comes, a budget's worth at a time, in order, never twice.
    let mut total = first.new;
    for _ in 0..4 {
        a_day_later(&store);
        let r = pull(&mut store, &server, &o);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert!(r.bytes <= limit);
        total += r.new;
        if r.complete {
            assert!(r.budget_spent.is_none());
            break;
        }
    }
    assert_eq!(total, 30);
    assert_eq!(
        stored(&store),
        vec![("Archive".to_string(), 15), ("INBOX".to_string(), 15)]
    );
    let last = pull(&mut store, &server, &pull_options(dir.path(), None));
    assert_eq!((last.new, last.failures.len()), (0, 0));
    assert!(last.complete);
}

#[test]
fn a_message_larger_than_the_whole_budget_waits_for_an_empty_window_then_goes_alone() {
    let server = host1(2);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_or_create(dir.path()).unwrap();
    // 500 bytes a day: smaller than every message.
    let o = pull_options(dir.path(), Some(500));
    let mut total = 0;
    for run in 0..4 {
        let r = pull(&mut store, &server, &o);
        assert!(r.failures.is_empty(), "run {run}: {:?}", r.failures);
        assert_eq!(r.new, 1, "run {run}: one message per empty window");
        total += r.new;
        a_day_later(&store);
    }
    assert_eq!(total, 4);
    let r = pull(&mut store, &server, &o);
    assert!(r.complete && r.budget_spent.is_none());
}

#[test]
fn a_session_expired_bye_while_fetching_stops_the_run_as_a_spent_budget() {
    let server = host1(10);
    server.lock().unwrap().faults.quota_bytes = Some(5_500);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_or_create(dir.path()).unwrap();
    let o = pull_options(dir.path(), None);

    let started = now();
    let first = pull(&mut store, &server, &o);
    let stop = first
        .budget_spent
        .clone()
        .expect("stopped by host1's quota");
    assert!(stop.by_server);
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    // Not retried: five messages fit under the quota, and they are kept.
    assert_eq!(first.new, 5);
    assert_eq!(logged(&store, "down"), first.bytes);
    // No local record older than this run: a day from now.
    assert!(stop.resume_at >= started + WINDOW_SECS && stop.resume_at <= now() + WINDOW_SECS);

    // The next day's run takes the rest.
    server.lock().unwrap().faults.quota_bytes = None;
    let second = pull(&mut store, &server, &o);
    assert!(second.complete, "{:?}", second.failures);
    assert_eq!(first.new + second.new, 20);
    assert_eq!(
        stored(&store),
        vec![("Archive".to_string(), 10), ("INBOX".to_string(), 10)]
    );
}

#[test]
fn with_the_servers_quota_already_spent_a_pull_records_the_folders_and_stops_at_the_first_body() {
    let server = host1(3);
    server.lock().unwrap().faults.quota_bytes = Some(0);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_or_create(dir.path()).unwrap();
    let r = pull(&mut store, &server, &pull_options(dir.path(), None));
    // Stopped at the first body, not at LIST, SELECT or FETCH of the sizes.
    assert_eq!(r.new, 0);
    assert!(r.budget_spent.is_some_and(|b| b.by_server));
    assert!(r.failures.is_empty());
}

/// A store with 2×`n` messages pulled from a memory host1.
fn pulled_store(dir: &std::path::Path, n: usize) -> Store {
    let mut store = Store::open_or_create(dir).unwrap();
    let r = pull(&mut store, &host1(n), &pull_options(dir, None));
    assert!(r.complete);
    store
}

#[test]
fn a_push_past_its_daily_budget_stops_cleanly_and_the_next_run_continues() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = pulled_store(dir.path(), 15);
    let host2 = Server::new();
    let limit = 10_000;
    let o = push_options(dir.path(), Some(limit));

    let first = push(&mut store, &host2, &o);
    let stop = first.budget_spent.clone().expect("stopped by the budget");
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    assert_eq!(stop.direction, Way::Up);
    assert!(first.sent >= 8 && first.sent <= 10, "{} sent", first.sent);
    assert!(first.bytes <= limit);
    assert_eq!(logged(&store, "up"), first.bytes);
    assert!(
        first.verdict.contains("run again after"),
        "{}",
        first.verdict
    );

    let again = push(&mut store, &host2, &o);
    assert_eq!(again.sent, 0);
    assert!(again.budget_spent.is_some() && again.failures.is_empty());

    let mut total = first.sent;
    for _ in 0..4 {
        a_day_later(&store);
        let r = push(&mut store, &host2, &o);
        assert!(r.failures.is_empty(), "{:?}", r.failures);
        assert!(r.bytes <= limit);
        total += r.sent;
        if r.complete {
            break;
        }
    }
    assert_eq!(total, 30);
    assert_eq!(account(&host2), account(&host1(15)));
}

#[test]
fn a_pull_budget_does_not_limit_the_push_and_the_other_way_round() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = pulled_store(dir.path(), 5);
    let host2 = Server::new();
    // The download log holds the pull's bytes; the push has its own budget.
    assert!(logged(&store, "down") > 5_000);
    let r = push(&mut store, &host2, &push_options(dir.path(), Some(1 << 20)));
    assert!(r.complete && r.budget_spent.is_none());
    assert_eq!(logged(&store, "up"), r.bytes);
}

#[test]
fn a_session_expired_bye_while_appending_stops_the_push_and_nothing_is_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = pulled_store(dir.path(), 10);
    let host2 = Server::new();
    host2.lock().unwrap().faults.quota_bytes = Some(7_500);
    let o = push_options(dir.path(), None);

    let first = push(&mut store, &host2, &o);
    let stop = first
        .budget_spent
        .clone()
        .expect("stopped by host2's quota");
    assert!(stop.by_server && stop.direction == Way::Up);
    assert!(first.failures.is_empty(), "{:?}", first.failures);
    // The emulated quota counts every message byte moved, the read-back of what was
    // appended too: about half of 7 500 bytes of ~1 000-byte messages goes up.
    let landed: usize = account(&host2).iter().map(|(_, v)| v.len()).sum();
    assert!((3..=7).contains(&landed), "{landed} landed");
    assert!(logged(&store, "up") >= 1_000 * landed as u64);

    host2.lock().unwrap().faults.quota_bytes = None;
    let second = push(&mut store, &host2, &o);
    assert!(second.complete, "{:?}", second.failures);
    assert_eq!(account(&host2), account(&host1(10)));
}

#[test]
fn the_budget_survives_in_the_store_between_runs_of_different_limits() {
    let server = host1(10);
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open_or_create(dir.path()).unwrap();
    let r = pull(&mut store, &server, &pull_options(dir.path(), Some(5_000)));
    assert!(r.budget_spent.is_some());
    let spent = r.bytes;
    // A larger limit the same day: only what it adds.
    let r2 = pull(
        &mut store,
        &server,
        &pull_options(dir.path(), Some(spent + 3_000)),
    );
    assert!(r2.bytes <= 3_000 && r2.new >= 1, "{} bytes", r2.bytes);
    assert!(r2.budget_spent.is_some());
}
