//! `imapferry bundle create|apply` against real Dovecot servers: a full bundle into an empty
//! store gives the same index facts and bytes, and that store pushes host1's mail exactly; an
//! incremental bundle is much smaller and brings the copy (and, with `push --delete2`, host2) to
//! host1's latest state; applying twice changes nothing; tampered, truncated, out-of-order and
//! foreign bundles are refused and leave the target as it was; volumes work. Hand-made hostile
//! bundles (`common::bundle`): an object that inflates past its declared size is refused at
//! once in bounded memory; records a store cannot hold are refused, naming the bundle and the
//! record, before anything changes and without creating a store; `create` refuses a message
//! larger than `apply` takes.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::offline::{assert_same_contents, bundle_size, push, run, server_contents};
use common::run::{pull, store_messages, Run};
use common::*;
use imapferry::imap::AppendMessage;
use imapferry::store::Store;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn create(store: &Path, out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "bundle",
        "create",
        "--store",
        s(store),
        "--out",
        s(out),
        "--json",
    ];
    args.extend_from_slice(extra);
    run(&args).expect_code(0).json()
}

fn apply(store: &Path, files: &[&Path]) -> Run {
    let mut args = vec!["bundle", "apply", "--store", s(store)];
    args.extend(files.iter().map(|f| s(f)));
    run(&args)
}

/// Folder facts (path, raw name, separator, role, subscribed, server state, gone) of a store.
type FolderFacts = Vec<(
    String,
    String,
    Option<char>,
    Option<String>,
    bool,
    String,
    bool,
)>;

fn folder_facts(dir: &Path) -> FolderFacts {
    let st = Store::open_existing(dir).unwrap();
    st.index
        .folders()
        .unwrap()
        .into_iter()
        .map(|f| {
            (
                f.path,
                f.raw_name.to_string(),
                f.separator,
                f.role,
                f.subscribed,
                format!("{:?}", f.state),
                f.gone_at.is_some(),
            )
        })
        .collect()
}

/// The copy has the same folders, UIDs, bytes, flags and INTERNALDATEs as the original.
fn assert_same_store(copy: &Path, original: &Path) {
    assert_eq!(
        folder_facts(copy),
        folder_facts(original),
        "folder rows differ"
    );
    let (a, b) = (store_messages(copy), store_messages(original));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (folder, msgs) in &b {
        assert!(
            a[folder] == *msgs,
            "{folder}: messages differ between the stores"
        );
    }
}

/// Everything a refused apply must leave alone.
fn snapshot(dir: &Path) -> (String, i64, Vec<PathBuf>) {
    let st = Store::open_existing(dir).unwrap();
    let change = st.index.current_change().unwrap();
    let applied = format!("{:?}", st.index.bundles_applied().unwrap());
    drop(st);
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir.join("objects"))
        .into_iter()
        .filter_map(Result::ok)
        .map(|e| e.path().to_path_buf())
        .collect();
    files.sort();
    (format!("{applied}{:?}", store_messages(dir)), change, files)
}

/// New mail in INBOX and a new folder, flags changed on two messages, one expunged.
fn change_account(server: &Dovecot, tag: &str) {
    let mut c = imap_client(server, "alice");
    let body =
        format!("From: a@example.org\r\nSubject: {tag}\r\n\r\nnew mail {tag}\r\n").into_bytes();
    let flags = vec!["\\Flagged".to_string()];
    c.append_many(
        "INBOX",
        &[AppendMessage {
            flags: &flags,
            internaldate: Some("01-Feb-2025 10:00:00 +0100".parse().unwrap()),
            synchronizing: false,
            bytes: &body,
        }],
    )
    .unwrap();
    let folder = format!("New {tag}");
    c.create(&folder).unwrap();
    c.append_many(
        &folder,
        &[AppendMessage {
            flags: &[],
            internaldate: None,
            synchronizing: false,
            bytes: format!("Subject: in {folder}\r\n\r\nx\r\n").as_bytes(),
        }],
    )
    .unwrap();
    c.select("INBOX", false).unwrap();
    c.raw_command("UID STORE 1,2 FLAGS (\\Answered $Forwarded)")
        .unwrap();
    c.raw_command("UID STORE 4 +FLAGS (\\Deleted)").unwrap();
    c.raw_command("UID EXPUNGE 4").unwrap();
    c.logout().unwrap();
}

#[test]
fn full_then_incremental_bundle_reproduce_the_store_and_push_exactly() {
    let config = || DovecotConfig::new().standard_special_use();
    let host1 = Dovecot::start(config());
    seed(&host1, "alice", &Corpus::standard());
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    pull(&host1, "alice", &a, &[]).expect_code(0);

    let full = dir.path().join("full.bundle");
    let r = create(&a, &full, &[]);
    assert_eq!(r["full"], true);
    let full_size = bundle_size(&full);
    assert_eq!(r["bytes"].as_u64(), Some(full_size));
    apply(&b, &[&full]).expect_code(0);
    assert_same_store(&b, &a);
    run(&["verify", "--store", s(&b)]).expect_code(0);

    let host2 = Dovecot::start(config());
    push(&host2, &b, &[]).expect_code(0);
    assert_same_contents(
        &server_contents(&host2, "alice"),
        &server_contents(&host1, "alice"),
        "host2 after the full bundle",
    );

    change_account(&host1, "one");
    pull(&host1, "alice", &a, &[]).expect_code(0);
    let delta = dir.path().join("delta.bundle");
    let r = create(&a, &delta, &[]);
    assert_eq!(r["full"], false);
    assert_eq!(r["objects"], 2, "only the two new messages' bytes: {r}");
    let delta_size = bundle_size(&delta);
    eprintln!(
        "Corpus::standard(): full bundle {full_size} bytes ({} objects); incremental bundle after \
         2 new messages, 2 flag changes, 1 expunge and a new folder: {delta_size} bytes",
        create_count(&a)
    );
    assert!(
        delta_size * 100 < full_size,
        "incremental {delta_size} vs full {full_size}"
    );
    let out = apply(&b, &[&delta]).expect_code(0);
    assert!(out.all().contains("applied bundle #2"), "{}", out.stderr);
    assert_same_store(&b, &a);

    // Twice: nothing changes.
    let before = snapshot(&b);
    let out = apply(&b, &[&delta, &full]).expect_code(0);
    assert!(out.all().contains("applied already"), "{}", out.stderr);
    assert_eq!(snapshot(&b), before);

    push(&host2, &b, &["--delete2"]).expect_code(0);
    assert_same_contents(
        &server_contents(&host2, "alice"),
        &server_contents(&host1, "alice"),
        "host2 after the incremental bundle",
    );
}

fn create_count(store: &Path) -> usize {
    Store::open_existing(store)
        .unwrap()
        .index
        .object_rows()
        .unwrap()
        .len()
}

fn flip_byte(path: &Path, at: usize) {
    let mut b = fs::read(path).unwrap();
    let at = at.min(b.len() - 1);
    b[at] ^= 0x01;
    fs::write(path, b).unwrap();
}

#[test]
fn tampered_truncated_out_of_order_and_foreign_bundles_are_refused_leaving_the_store_alone() {
    let host1 = Dovecot::start_default();
    seed(&host1, "alice", &Corpus::small());
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let a = p("a");
    pull(&host1, "alice", &a, &[]).expect_code(0);
    let f1 = p("f1.bundle");
    let r = create(&a, &f1, &["--max-size", "8K"]);
    let volumes = r["files"].as_array().unwrap().len();
    assert!(volumes > 3, "{r}");
    change_account(&host1, "one");
    pull(&host1, "alice", &a, &[]).expect_code(0);
    let f2 = p("f2.bundle");
    create(&a, &f2, &[]);
    change_account(&host1, "two");
    pull(&host1, "alice", &a, &[]).expect_code(0);
    let f3 = p("f3.bundle");
    create(&a, &f3, &[]);

    // A delta first, into a store that does not exist: refused, nothing created.
    let c = p("c");
    let r = apply(&c, &[&f2]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.all().contains("apply bundle #1 first"), "{}", r.stderr);
    assert!(!c.exists());

    // A flipped byte in the middle of a volume: refused before anything is written.
    let t = p("tampered");
    fs::create_dir(&t).unwrap();
    for i in 1..=volumes {
        let name = format!("f1.bundle.{i:03}");
        fs::copy(p(&name), t.join(&name)).unwrap();
    }
    flip_byte(&t.join("f1.bundle.002"), 3000);
    let r = apply(&c, &[&t.join("f1.bundle.001")]);
    assert_eq!(r.code, 1);
    assert!(r.all().contains("damaged"), "{}", r.stderr);
    assert!(!c.exists());
    // A missing last volume: truncated.
    fs::copy(p("f1.bundle.002"), t.join("f1.bundle.002")).unwrap();
    fs::remove_file(t.join(format!("f1.bundle.{volumes:03}"))).unwrap();
    let r = apply(&c, &[&t.join("f1.bundle")]);
    assert!(r.code == 1 && r.all().contains("truncated"), "{}", r.stderr);

    // The full bundle, named by its first volume.
    apply(&c, &[&p("f1.bundle.001")]).expect_code(0);
    let before = snapshot(&c);

    // Skipping #2: refused, naming it.
    let r = apply(&c, &[&f3]);
    assert_eq!(r.code, 1);
    assert!(
        r.all().contains("continues bundle #2") && r.all().contains("apply bundle #2 first"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot(&c), before);

    // Truncated, and a flipped byte anywhere in #2: refused, the store unchanged.
    let cut = p("cut.bundle");
    let bytes = fs::read(&f2).unwrap();
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = apply(&c, &[&cut]);
    assert!(r.code == 1 && r.all().contains("truncated"), "{}", r.stderr);
    assert_eq!(snapshot(&c), before);
    let bad = p("bad.bundle");
    for at in [20, bytes.len() / 3, bytes.len() - 40, bytes.len() - 5] {
        fs::write(&bad, &bytes).unwrap();
        flip_byte(&bad, at);
        let r = apply(&c, &[&bad]);
        assert_eq!(r.code, 1, "flip at {at}: {}", r.stderr);
        assert!(
            r.all().contains("damaged") || r.all().contains("truncated"),
            "{}",
            r.stderr
        );
        assert_eq!(snapshot(&c), before);
    }

    // Given together in the wrong order: applied oldest first.
    apply(&c, &[&f3, &f2]).expect_code(0);
    assert_same_store(&c, &a);

    // A bundle of another store: refused.
    let other = p("other");
    pull(&host1, "alice", &other, &[]).expect_code(0);
    let fo = p("other.bundle");
    create(&other, &fo, &[]);
    let before = snapshot(&c);
    let r = apply(&c, &[&fo]);
    assert!(
        r.code == 1 && r.all().contains("follows store"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot(&c), before);
    // And a store that was pulled does not take bundles.
    let r = apply(&other, &[&f1]);
    assert!(
        r.code == 1 && r.all().contains("did not come from bundles"),
        "{}",
        r.stderr
    );

    // --full starts a new chain the copy can take too.
    let f4 = p("f4.bundle");
    assert_eq!(create(&a, &f4, &["--full"])["full"], true);
    apply(&c, &[&f4]).expect_code(0);
    assert_same_store(&c, &a);
    // Refusing to overwrite.
    let r = run(&["bundle", "create", "--store", s(&a), "--out", s(&f4)]);
    assert!(
        r.code == 1 && r.all().contains("already exists"),
        "{}",
        r.stderr
    );
}

/// Address-space cap for the runs that must stay small: `bundle apply` of a one-message bundle
/// runs in 20 MB of address space (libraries, SQLite, buffers); holding an object of more than
/// about 40 MB fails under this cap.
const CAP: u64 = 64 << 20;

#[test]
fn a_bundle_whose_object_inflates_past_its_declared_size_is_refused_in_bounded_memory() {
    use common::bundle::{hex, rle_frame, sha256, Spec};
    use common::offline::run_capped;
    let dir = tempfile::tempdir().unwrap();
    // A 1 MiB message of `x`, as the records say.
    let declared: u64 = 1 << 20;
    let content = vec![b'x'; declared as usize];
    let h = sha256(&content);
    // Each object is 8 GiB of `x` in 64 Ki RLE blocks: 256 kB on disk.
    let blocks = 8 << 13;
    let mut trailing = zstd::bulk::compress(&content, 3).unwrap();
    trailing.extend_from_slice(&rle_frame(None, blocks));
    let cases = [
        (
            "declares 1 MiB",
            rle_frame(Some(declared), blocks),
            "inflates past",
        ),
        (
            "declares no size",
            rle_frame(None, blocks),
            "does not declare",
        ),
        (
            "has a second frame after it",
            trailing,
            "follows its zstd frame",
        ),
        (
            "declares 3 GiB",
            rle_frame(Some(3 << 30), blocks),
            "declares 3221225472 bytes",
        ),
    ];
    let mut valid = Spec::inbox(&[b"Subject: fine\r\n\r\nfine\r\n"], 5);
    valid.messages[0]["uid"] = serde_json::json!(2);
    for (what, frame, reason) in cases {
        let mut spec = valid.clone();
        spec.add_message("INBOX", 1, &content);
        spec.objects[1].1 = frame;
        let file = dir.path().join("bomb.bundle");
        spec.write(&file);
        let store = dir.path().join("store");
        let c = run_capped(CAP, &["bundle", "apply", "--store", s(&store), s(&file)]);
        eprintln!(
            "object that {what} ({} kB bundle, inflates to 8 GiB): exit {} after {:.2} s, peak \
             RSS {:.1} MB under a {} MB address-space cap: {}",
            fs::metadata(&file).unwrap().len() / 1000,
            c.run.code,
            c.seconds,
            c.peak_rss as f64 / 1e6,
            CAP >> 20,
            c.run.stderr.trim()
        );
        assert_eq!(c.run.code, 1, "{what}: {}", c.run.stderr);
        let err = &c.run.stderr;
        assert!(
            err.contains(s(&file)) && err.contains(&hex(&h)) && err.contains(reason),
            "{what}: {err}"
        );
        assert!(c.seconds < 5.0, "{what}: {:.1} s", c.seconds);
        assert!(!store.exists(), "{what}: a store was created");
    }

    // A real 256 MiB message applies under the same cap: objects stream, never held whole.
    let line = b"Subject: big\r\n\r\n0123456789abcdef\r\n";
    let big: Vec<u8> = (0..256usize << 20)
        .map(|i| line[i % line.len()] ^ (i >> 24) as u8)
        .collect();
    let mut spec = valid.clone();
    spec.add_message("INBOX", 1, &big);
    let file = dir.path().join("big.bundle");
    spec.write(&file);
    drop(big);
    let store = dir.path().join("store");
    let c = run_capped(CAP, &["bundle", "apply", "--store", s(&store), s(&file)]);
    eprintln!(
        "a 256 MiB message ({} kB bundle) applied in {:.2} s, peak RSS {:.1} MB under the {} MB \
         cap",
        fs::metadata(&file).unwrap().len() / 1000,
        c.seconds,
        c.peak_rss as f64 / 1e6,
        CAP >> 20
    );
    c.run.expect_code(0);
    run(&["verify", "--store", s(&store)]).expect_code(0);
}

/// Names and contents of a directory, to see a refused apply left it as it was.
fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut v: Vec<_> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| !e.path().ends_with("lock"))
        .map(|e| (e.path().to_path_buf(), e.metadata().map_or(0, |m| m.len())))
        .collect();
    v.sort();
    v
}

#[test]
fn a_bundle_with_rows_a_store_cannot_hold_is_refused_before_anything_changes_naming_it() {
    use common::bundle::{folder, Spec};
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    let msgs: [&[u8]; 2] = [b"Subject: one\r\n\r\n1\r\n", b"Subject: two\r\n\r\n2\r\n"];
    let valid = Spec::inbox(&msgs, 5);
    // The hand-made bundle is valid: applied, verified, and status shows its few bytes.
    valid.write(&p("valid.bundle"));
    let existing = p("existing");
    apply(&existing, &[&p("valid.bundle")]).expect_code(0);
    run(&["verify", "--store", s(&existing)]).expect_code(0);
    let status = run(&["status", "--store", s(&existing)]).expect_code(0);
    assert!(status.stdout.contains("38 B"), "{}", status.stdout);
    let before = listing(&existing);

    type Spoil = fn(&mut Spec);
    let cases: Vec<(&str, Spoil, &str)> = vec![
        (
            "a size of 1 TB",
            |b| b.messages[0]["size"] = json!(1_000_000_000_000u64),
            "INBOX UID 1 (UIDVALIDITY 7): a message of 1000000000000 bytes",
        ),
        (
            "a size one byte short",
            |b| b.messages[1]["size"] = json!(18),
            "INBOX UID 2 (UIDVALIDITY 7): it is 18 bytes",
        ),
        (
            "UID 0",
            |b| b.messages[1]["uid"] = json!(0),
            "INBOX UID 0 (UIDVALIDITY 7): UID 0",
        ),
        (
            "message UIDVALIDITY 0",
            |b| b.messages[0]["uidvalidity"] = json!(0),
            "INBOX UID 1 (UIDVALIDITY 0): UIDVALIDITY 0",
        ),
        (
            "folder UIDVALIDITY 0",
            |b| b.folders[0]["uidvalidity"] = json!(0),
            "folder \"INBOX\": UIDVALIDITY 0",
        ),
        (
            "31 February",
            |b| b.messages[0]["internaldate"] = json!("31-Feb-2021 14:03:07 +0100"),
            "INBOX UID 1 (UIDVALIDITY 7): INTERNALDATE",
        ),
        (
            "a date with a command after it",
            |b| {
                b.messages[0]["internaldate"] =
                    json!("05-Mar-2021 14:03:07 +0100\r\nA1 DELETE INBOX")
            },
            "INTERNALDATE \"05-Mar-2021 14:03:07 +0100\\u{d}\\u{a}A1 DELETE INBOX\"",
        ),
        (
            "a flag with a space",
            |b| b.messages[1]["flags"] = json!(["\\Seen", "two words"]),
            "INBOX UID 2 (UIDVALIDITY 7): flag \"two words\"",
        ),
        (
            "a flag with a parenthesis",
            |b| b.messages[1]["flags"] = json!(["\\Seen)"]),
            "flag",
        ),
        (
            "a malformed hash",
            |b| b.messages[0]["hash"] = json!("ABC"),
            "INBOX UID 1 (UIDVALIDITY 7): hash \"ABC\"",
        ),
        (
            "an object no message names",
            |b| {
                b.messages.pop();
            },
            "which no message names",
        ),
        (
            "a message without its object",
            |b| {
                b.add_message("INBOX", 3, b"Subject: 3\r\n\r\n3\r\n");
                b.objects.pop();
            },
            "INBOX UID 3 (UIDVALIDITY 7) needs object",
        ),
        (
            "a folder role that is no flag",
            |b| b.folders[0]["role"] = json!("Sent)"),
            "folder \"INBOX\": its role",
        ),
        (
            "a server name with CRLF",
            |b| b.folders[0]["raw_name"] = json!("INBOX\r\nA1 LOGOUT"),
            "its server name",
        ),
        (
            "a store id that is not hex",
            |b| b.header["source_store"] = json!("../../x"),
            "its header",
        ),
    ];
    let mut paths: Vec<(&str, &str)> = vec![
        ("a//b", "empty level"),
        ("/x", "starting or ending with /"),
        ("x/", "starting or ending with /"),
        ("", "an empty folder path"),
        ("a\0b", "a NUL"),
    ];
    let mut all: Vec<(String, Spec, String)> = Vec::new();
    for (what, spoil, reason) in cases {
        let mut b = Spec::inbox(&msgs, 9);
        spoil(&mut b);
        all.push((what.to_string(), b, reason.to_string()));
    }
    for (path, reason) in paths.drain(..) {
        let mut b = Spec::inbox(&msgs, 9);
        b.folders.push(folder(path));
        b.add_message(path, 1, b"Subject: elsewhere\r\n\r\n3\r\n");
        all.push((format!("folder {path:?}"), b, reason.to_string()));
    }
    for (what, spec, reason) in &all {
        let file = p("spoiled.bundle");
        spec.write(&file);
        let fresh = p("fresh");
        let empty = p("empty");
        fs::create_dir(&empty).unwrap();
        for target in [&fresh, &empty, &existing] {
            let r = apply(target, &[&file]);
            assert_eq!(r.code, 1, "{what} into {}: {}", target.display(), r.stderr);
            assert!(
                r.all().contains(s(&file)) && r.all().contains(reason.as_str()),
                "{what}: the error names neither the bundle nor {reason:?}:\n{}",
                r.stderr
            );
        }
        assert!(!fresh.exists(), "{what}: a new store was left behind");
        assert_eq!(
            fs::read_dir(&empty).unwrap().count(),
            0,
            "{what}: the empty directory"
        );
        assert_eq!(
            listing(&existing),
            before,
            "{what}: the existing store changed"
        );
        fs::remove_dir(&empty).unwrap();
    }
    // Several bundles into a new store: the second is refused, so not even the first is applied.
    let (first, second) = (p("first.bundle"), p("second.bundle"));
    valid.write(&first);
    all[2].1.write(&second);
    let fresh = p("a/b/fresh");
    let r = apply(&fresh, &[&first, &second]);
    assert!(r.code == 1 && r.all().contains(s(&second)), "{}", r.stderr);
    assert!(
        !p("a").exists(),
        "parents made for the store were left behind"
    );
}

#[test]
fn bundle_create_refuses_a_message_larger_than_apply_takes_naming_it() {
    use imapferry::bundle::format::MAX_OBJECT;
    use imapferry::store::{FolderState, HeaderFacts, NewMessage};
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    // An honest store holding one message of 2 GiB + 1 byte of `x`: its object is 64 kB of
    // RLE blocks (16 Ki blocks of 128 KiB, then one of 1 byte).
    let size = MAX_OBJECT + 1;
    let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0xc0, 0x38];
    frame.extend_from_slice(&size.to_le_bytes());
    for n in std::iter::repeat_n(131_072u32, (MAX_OBJECT >> 17) as usize).chain([1]) {
        let last = u32::from(n == 1);
        frame.extend_from_slice(&(last | (1 << 1) | (n << 3)).to_le_bytes()[..3]);
        frame.push(b'x');
    }
    let mut sha = Sha256::new();
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..(MAX_OBJECT >> 20) {
        sha.update(&chunk);
    }
    sha.update(b"x");
    let hash = imapferry::store::Hash(sha.finalize().into());
    let mut store = Store::open_or_create(&store_dir).unwrap();
    let path = store.objects.path(&hash);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(&path, &frame).unwrap();
    let id = store
        .index
        .upsert_folder("INBOX", "INBOX", Some('/'), None, true)
        .unwrap();
    let mut b = store.index.batch().unwrap();
    let state = FolderState {
        uidvalidity: Some(7),
        uidnext: Some(2),
        highestmodseq: None,
    };
    b.set_folder_state(id, &state, 0).unwrap();
    let facts = HeaderFacts::default();
    b.add_object(&hash, size, frame.len() as u64, &facts)
        .unwrap();
    let m = NewMessage {
        uidvalidity: 7,
        uid: 1,
        hash,
        size,
        flags: vec![],
        internaldate: "05-Mar-2021 14:03:07 +0100".parse().unwrap(),
        gmail: None,
    };
    b.add_message(id, &m).unwrap();
    b.commit().unwrap();
    drop(store);

    let out = dir.path().join("big.bundle");
    let r = run(&[
        "bundle",
        "create",
        "--store",
        s(&store_dir),
        "--out",
        s(&out),
    ]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.all().contains("INBOX UID 1 (UIDVALIDITY 7)")
            && r.all().contains("a message of 2147483649 bytes")
            && r.all().contains("at most 2147483648"),
        "{}",
        r.stderr
    );
    assert!(!out.exists(), "a bundle apply would refuse was written");
}

#[test]
fn bundle_create_leaves_out_flags_apply_would_refuse_and_says_which() {
    use imapferry::store::{FolderState, HeaderFacts, NewMessage};
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // Gmail sends keywords such as this one; pull keeps them, no command could carry them.
    let odd = "OIB-Seen-[Gmail]/All";
    let mut store = Store::open_or_create(&a).unwrap();
    let id = store
        .index
        .upsert_folder("INBOX", "INBOX", Some('/'), None, true)
        .unwrap();
    let body = b"Subject: gmail\r\n\r\nx\r\n";
    let (hash, stored) = store.objects.write(body).unwrap();
    let mut batch = store.index.batch_after_sync(&store.objects).unwrap();
    let state = FolderState {
        uidvalidity: Some(7),
        uidnext: Some(2),
        highestmodseq: None,
    };
    batch.set_folder_state(id, &state, 0).unwrap();
    let facts = HeaderFacts::default();
    batch
        .add_object(&hash, body.len() as u64, stored, &facts)
        .unwrap();
    let m = NewMessage {
        uidvalidity: 7,
        uid: 1,
        hash,
        size: body.len() as u64,
        flags: vec!["\\Seen".into(), odd.into()],
        internaldate: "05-Mar-2021 14:03:07 +0100".parse().unwrap(),
        gmail: None,
    };
    batch.add_message(id, &m).unwrap();
    batch.commit().unwrap();
    drop(store);
    run(&["verify", "--store", s(&a)]).expect_code(0);

    let file = dir.path().join("g.bundle");
    let r = run(&["bundle", "create", "--store", s(&a), "--out", s(&file)]).expect_code(0);
    assert!(
        r.all().contains(&format!(
            "INBOX UID 1 (UIDVALIDITY 7): flags {odd} are no IMAP flags"
        )),
        "{}",
        r.stderr
    );
    apply(&b, &[&file]).expect_code(0);
    assert_eq!(store_messages(&b)["INBOX"][0].flags, ["\\Seen"]);
}
