//! The engines run against memory mailboxes (`imapferry::mailbox::memory`): push's exactly-once
//! state model under faults a network makes hard to time, without any server. Each test builds
//! a store, pushes into a memory account through the push engine itself (`push::run_with`), and
//! looks at what the account holds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use imapferry::folders::Selection;
use imapferry::imap::{Endpoint, Secret, TlsMode};
use imapferry::mailbox::memory::{Memory, Server};
use imapferry::mailbox::Mailbox;
use imapferry::mailtime::InternalDate;
use imapferry::names::MailboxName;
use imapferry::push::{self, PushOptions, PushReport};
use imapferry::run::Connector;
use imapferry::store::{FolderState, HeaderFacts, NewMessage, Store};

struct Mem(Arc<Mutex<Server>>);

impl Connector for Mem {
    fn side(&self) -> &str {
        "host2"
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

/// A store with one folder, INBOX, holding `bodies` (UIDs from 1) with `flags` each.
fn store_with(dir: &std::path::Path, bodies: &[Vec<u8>], flags: &[&str]) -> Store {
    let mut store = Store::open_or_create(dir).unwrap();
    let id = store
        .index
        .upsert_folder("INBOX", "INBOX", Some('/'), None, true)
        .unwrap();
    let written: Vec<_> = bodies
        .iter()
        .map(|b| store.objects.write(b).unwrap())
        .collect();
    let mut batch = store.index.batch_after_sync(&store.objects).unwrap();
    for (i, (b, (hash, stored))) in bodies.iter().zip(&written).enumerate() {
        batch
            .add_object(hash, b.len() as u64, *stored, &HeaderFacts::parse(b))
            .unwrap();
        let m = NewMessage {
            uidvalidity: 7,
            uid: i as u32 + 1,
            hash: *hash,
            size: b.len() as u64,
            flags: flags.iter().map(|f| f.to_string()).collect(),
            internaldate: InternalDate::from_unix(1_700_000_000 + i as i64),
            gmail: None,
        };
        batch.add_message(id, &m).unwrap();
    }
    let state = FolderState {
        uidvalidity: Some(7),
        uidnext: Some(bodies.len() as u32 + 1),
        highestmodseq: None,
    };
    batch.set_folder_state(id, &state, 0).unwrap();
    batch.commit().unwrap();
    store
}

fn bodies(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("Subject: note {i}\r\n\r\nbody {i}\r\n").into_bytes())
        .collect()
}

fn options(store: &std::path::Path) -> PushOptions {
    let mut o = PushOptions::new(endpoint(), store.to_path_buf(), Selection::default());
    o.retries = 0;
    o.batch_messages = 4;
    o.settle_secs = 1;
    o
}

fn push(store: &mut Store, server: &Arc<Mutex<Server>>, opts: &PushOptions) -> Result<PushReport> {
    push::run_with(opts, store, &Mem(Arc::clone(server)))
}

/// The bytes of every message of INBOX, sorted.
fn inbox(server: &Arc<Mutex<Server>>) -> Vec<Vec<u8>> {
    let s = server.lock().unwrap();
    let mut v: Vec<Vec<u8>> = s.folders[&MailboxName::from("INBOX")]
        .messages
        .values()
        .map(|m| m.bytes.clone())
        .collect();
    v.sort();
    v
}

fn sorted(mut v: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    v.sort();
    v
}

/// Issue 11 item 1, without a network: a push dies with APPENDs on their way; a second push
/// sends them again before they land; they land; the third push finds each late copy doubled by
/// the one the second push sent, and removes exactly those.
#[test]
fn late_copies_of_a_dead_push_are_removed_when_they_double_a_resent_message() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = bodies(10);
    let mut store = store_with(dir.path(), &msgs, &["\\Seen"]);
    let server = Server::new();
    let opts = options(dir.path());

    server.lock().unwrap().faults.drop_after_appends = Some(3);
    let r = push(&mut store, &server, &opts);
    assert!(
        r.map(|r| !r.complete).unwrap_or(true),
        "the first push cannot complete"
    );
    let on_the_way = server.lock().unwrap().late.len();
    assert!(on_the_way > 0);

    // The second push runs before they land: it sends them again.
    server.lock().unwrap().faults.drop_after_appends = None;
    let r = push(&mut store, &server, &opts).unwrap();
    assert!(r.complete, "{}", r.summary());
    assert_eq!(inbox(&server), sorted(msgs.clone()));

    server.lock().unwrap().deliver_late();
    assert_eq!(
        inbox(&server).len(),
        10 + on_the_way,
        "the late copies landed"
    );
    let r = push(&mut store, &server, &opts).unwrap();
    assert_eq!(r.doubles_removed as usize, on_the_way, "{}", r.summary());
    assert_eq!(r.sent, 0);
    assert_eq!(inbox(&server), sorted(msgs));
}

/// A server that tells no UIDNEXT: the bound of an APPEND's copies comes from the UIDs host2
/// listed, and late copies of a dead push are still recognised and removed as doubles.
#[test]
fn without_uidnext_late_copies_are_still_recognised_as_doubles() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = bodies(10);
    let mut store = store_with(dir.path(), &msgs, &[]);
    let server = Server::new();
    let opts = options(dir.path());
    {
        let mut s = server.lock().unwrap();
        s.faults.no_uidnext = true;
        s.faults.drop_after_appends = Some(3);
    }
    let _ = push(&mut store, &server, &opts);
    let on_the_way = server.lock().unwrap().late.len();
    assert!(on_the_way > 0);
    server.lock().unwrap().faults.drop_after_appends = None;
    let r = push(&mut store, &server, &opts).unwrap();
    assert!(r.complete, "{}", r.summary());
    server.lock().unwrap().deliver_late();
    let r = push(&mut store, &server, &opts).unwrap();
    assert_eq!(
        (r.doubles_removed as usize, r.sent),
        (on_the_way, 0),
        "{}",
        r.summary()
    );
    assert_eq!(inbox(&server), sorted(msgs));
}

/// The same when the late copies land before the next push looks: they are recorded as the
/// dead push's copies, nothing is sent twice and nothing removed.
#[test]
fn copies_that_landed_before_the_next_push_are_recovered_not_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = bodies(10);
    let mut store = store_with(dir.path(), &msgs, &[]);
    let server = Server::new();
    let opts = options(dir.path());
    server.lock().unwrap().faults.drop_after_appends = Some(5);
    let _ = push(&mut store, &server, &opts);
    {
        let mut s = server.lock().unwrap();
        s.faults.drop_after_appends = None;
        s.deliver_late();
    }
    let r = push(&mut store, &server, &opts).unwrap();
    assert!(r.complete, "{}", r.summary());
    // Batches of 4: the first went whole, the second had 1 stored and 3 on the way when the
    // link died, the third never left.
    assert_eq!(
        (r.recovered, r.sent, r.doubles_removed),
        (4, 2, 0),
        "{}",
        r.summary()
    );
    assert_eq!(inbox(&server), sorted(msgs));
}

/// Issue 11 item 3: a server that rewrites what it stores (every CRLF turned into LF, as
/// pymap's maildir backend does): a dead push's late copies are still recognised as ours, a
/// second copy of the store finds every message, nothing is doubled, and each altered message
/// is listed once.
#[test]
fn a_rewriting_server_never_gets_a_message_twice_and_the_changes_are_listed() {
    fn to_lf(b: &[u8]) -> Vec<u8> {
        String::from_utf8_lossy(b)
            .replace("\r\n", "\n")
            .into_bytes()
    }
    let dir = tempfile::tempdir().unwrap();
    let msgs = bodies(8);
    let mut store = store_with(dir.path(), &msgs, &["\\Seen"]);
    let server = Server::new();
    server.lock().unwrap().faults.rewrite = Some(to_lf);
    let opts = options(dir.path());
    server.lock().unwrap().faults.drop_after_appends = Some(3);
    let _ = push(&mut store, &server, &opts);
    {
        let mut s = server.lock().unwrap();
        s.faults.drop_after_appends = None;
        s.deliver_late();
    }
    let r = push(&mut store, &server, &opts).unwrap();
    assert!(r.complete, "{}", r.summary());
    let want: Vec<Vec<u8>> = sorted(msgs.iter().map(|m| to_lf(m)).collect());
    assert_eq!(inbox(&server), want);
    assert_eq!(r.warnings.len(), 8, "{}", r.summary());

    // A second copy of the store (another store id: no push state for this host2).
    let dir2 = tempfile::tempdir().unwrap();
    let mut copy = store_with(dir2.path(), &msgs, &["\\Seen"]);
    let r = push(&mut copy, &server, &options(dir2.path())).unwrap();
    assert_eq!((r.sent, r.already), (0, 8), "{}", r.summary());
    assert_eq!(r.warnings.len(), 8, "every altered message is listed");
    assert_eq!(inbox(&server), want);
}

/// Issue 11 item 7: throttling is an answer to wait out, not a refusal of the message: the
/// keywords are still sent, and the wait is the one the server asked for.
#[test]
fn a_throttling_answer_is_waited_out_and_the_keywords_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = bodies(3);
    let mut store = store_with(dir.path(), &msgs, &["\\Seen", "$Work"]);
    let server = Server::new();
    server.lock().unwrap().faults.throttle_appends = 2;
    let mut opts = options(dir.path());
    opts.retries = 3;
    let t = Instant::now();
    let r = push(&mut store, &server, &opts).unwrap();
    assert!(r.complete, "{}", r.summary());
    assert!(
        t.elapsed() >= Duration::from_millis(200),
        "waited {:?}",
        t.elapsed()
    );
    let s = server.lock().unwrap();
    for m in s.folders[&MailboxName::from("INBOX")].messages.values() {
        assert!(m.flags.iter().any(|f| f == "$Work"), "{:?}", m.flags);
    }
    assert_eq!(s.folders[&MailboxName::from("INBOX")].messages.len(), 3);
}

/// Issue 11 item 11, without a network: a server that drops the connection on CREATE costs one
/// retry per folder, never the whole push.
#[test]
fn a_create_that_drops_the_connection_fails_that_folder_alone() {
    let dir = tempfile::tempdir().unwrap();
    let msgs = bodies(2);
    let mut store = store_with(dir.path(), &msgs, &[]);
    store
        .index
        .upsert_folder("Archive", "Archive", Some('/'), None, false)
        .unwrap();
    let server = Server::new();
    server.lock().unwrap().faults.bye_on_create = true;
    let mut opts = options(dir.path());
    opts.retries = 2;
    let t = Instant::now();
    let r = push(&mut store, &server, &opts).unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(r.sent, 2, "INBOX still goes: {}", r.summary());
    assert!(
        r.failures
            .iter()
            .any(|f| f.folder == "Archive" && f.reason.contains("cannot create")),
        "{:?}",
        r.failures
    );
    assert!(r.created.is_empty(), "{:?}", r.created);
}

/// Issue 11 item 12: without UIDPLUS, `--delete2` could only EXPUNGE every message flagged
/// `\Deleted`; while a message it must keep is (a user marked it in a client that does not
/// expunge), nothing is removed, no message's flags are touched, and the mailbox is listed as a
/// failure; once none is, the extra goes and nothing else.
#[test]
fn delete2_without_uidplus_never_takes_or_touches_another_message() {
    use imapferry::mailbox::memory::Msg;
    let dir = tempfile::tempdir().unwrap();
    let msgs = bodies(3);
    let mut store = store_with(dir.path(), &msgs, &[]);
    let server = Server::new();
    server.lock().unwrap().caps = vec![imapferry::mailbox::Cap::ListStatus];
    let mut opts = options(dir.path());
    assert!(push(&mut store, &server, &opts).unwrap().complete);

    let inbox_name = MailboxName::from("INBOX");
    let flags = |f: &[&str]| f.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let (extra, kept) = {
        let mut s = server.lock().unwrap();
        let extra = s.put(
            "INBOX",
            Msg {
                flags: Vec::new(),
                internaldate: InternalDate::from_unix(1_700_000_000),
                bytes: b"Subject: extra\r\n\r\nextra\r\n".to_vec(),
            },
        );
        let folder = s.folders.get_mut(&inbox_name).unwrap();
        let kept = *folder.messages.keys().next().unwrap();
        folder.messages.get_mut(&kept).unwrap().flags = flags(&["\\Deleted"]);
        (extra, kept)
    };
    let flags_of = |uid: u32| {
        server.lock().unwrap().folders[&inbox_name].messages[&uid]
            .flags
            .clone()
    };
    opts.delete2 = true;
    let r = push(&mut store, &server, &opts).unwrap();
    assert_eq!(r.deleted, 0, "{}", r.summary());
    assert!(!r.complete);
    assert!(
        r.failures.iter().any(|f| f.reason.contains("UIDPLUS")),
        "{:?}",
        r.failures
    );
    assert_eq!(inbox(&server).len(), 4, "nothing removed");
    assert!(flags_of(extra).is_empty(), "the extra was left unflagged");
    assert_eq!(flags_of(kept), ["\\Deleted"]);

    // Unmarked again: now the extra goes alone.
    server
        .lock()
        .unwrap()
        .folders
        .get_mut(&inbox_name)
        .unwrap()
        .messages
        .get_mut(&kept)
        .unwrap()
        .flags
        .clear();
    let r = push(&mut store, &server, &opts).unwrap();
    assert_eq!(r.deleted, 1, "{}", r.summary());
    assert!(r.complete, "{}", r.summary());
    assert_eq!(inbox(&server), sorted(msgs));
}
