//! `imapferry bundle create|apply` against real Dovecot servers: a full bundle into an empty
//! store gives the same index facts and bytes, and that store pushes host1's mail exactly; an
//! incremental bundle is much smaller and brings the copy (and, with `push --delete2`, host2) to
//! host1's latest state; applying twice changes nothing; tampered, truncated, out-of-order and
//! foreign bundles are refused and leave the target as it was; volumes work.

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
                f.raw_name,
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
    assert!(out.stderr.contains("applied bundle #2"), "{}", out.stderr);
    assert_same_store(&b, &a);

    // Twice: nothing changes.
    let before = snapshot(&b);
    let out = apply(&b, &[&delta, &full]).expect_code(0);
    assert!(out.stderr.contains("applied already"), "{}", out.stderr);
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
    assert!(r.stderr.contains("apply bundle #1 first"), "{}", r.stderr);
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
    assert!(r.stderr.contains("damaged"), "{}", r.stderr);
    assert!(!c.exists());
    // A missing last volume: truncated.
    fs::copy(p("f1.bundle.002"), t.join("f1.bundle.002")).unwrap();
    fs::remove_file(t.join(format!("f1.bundle.{volumes:03}"))).unwrap();
    let r = apply(&c, &[&t.join("f1.bundle")]);
    assert!(
        r.code == 1 && r.stderr.contains("truncated"),
        "{}",
        r.stderr
    );

    // The full bundle, named by its first volume.
    apply(&c, &[&p("f1.bundle.001")]).expect_code(0);
    let before = snapshot(&c);

    // Skipping #2: refused, naming it.
    let r = apply(&c, &[&f3]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("continues bundle #2") && r.stderr.contains("apply bundle #2 first"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot(&c), before);

    // Truncated, and a flipped byte anywhere in #2: refused, the store unchanged.
    let cut = p("cut.bundle");
    let bytes = fs::read(&f2).unwrap();
    fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let r = apply(&c, &[&cut]);
    assert!(
        r.code == 1 && r.stderr.contains("truncated"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot(&c), before);
    let bad = p("bad.bundle");
    for at in [20, bytes.len() / 3, bytes.len() - 40, bytes.len() - 5] {
        fs::write(&bad, &bytes).unwrap();
        flip_byte(&bad, at);
        let r = apply(&c, &[&bad]);
        assert_eq!(r.code, 1, "flip at {at}: {}", r.stderr);
        assert!(
            r.stderr.contains("damaged") || r.stderr.contains("truncated"),
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
        r.code == 1 && r.stderr.contains("follows store"),
        "{}",
        r.stderr
    );
    assert_eq!(snapshot(&c), before);
    // And a store that was pulled does not take bundles.
    let r = apply(&other, &[&f1]);
    assert!(
        r.code == 1 && r.stderr.contains("did not come from bundles"),
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
        r.code == 1 && r.stderr.contains("already exists"),
        "{}",
        r.stderr
    );
}
