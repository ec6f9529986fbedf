//! `imapferry export` and `imapferry import` against real Dovecot servers: a Maildir export
//! served back by a second Dovecot with identical bytes, flags and dates; an mbox export read
//! back byte for byte; a Maildir and an mbox imported into new stores and pushed to a server
//! that then holds what host1 held.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::offline::{assert_same_contents, push, run, server_contents, store_contents};
use common::run::{pulled_store, store_messages};
use common::*;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Copy `from` into `to` (which must not exist), preserving mtimes.
fn copy_tree(from: &Path, to: &Path) {
    let st = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(st.success(), "cp -a {} {}", from.display(), to.display());
}

#[test]
fn maildir_export_is_read_back_by_dovecot_identically_and_imports_then_pushes_exactly() {
    let host1 = Dovecot::start(DovecotConfig::new().standard_special_use());
    let corpus = Corpus::standard();
    seed(&host1, "alice", &corpus);
    let (dir, store) = pulled_store(&host1);
    let want = store_contents(&store);

    let out = dir.path().join("maildir");
    let r = run(&[
        "export",
        "--store",
        s(&store),
        "--format",
        "maildir",
        "--out",
        s(&out),
        "--json",
    ])
    .expect_code(0)
    .json();
    assert_eq!(r["messages"].as_u64().unwrap() as usize, corpus.len());
    assert!(out.join("cur").is_dir() && out.join(".Archive.2024/cur").is_dir());
    assert!(out.join(".Entw&APw-rfe/maildirfolder").is_file());
    // Exporting again into a non-empty directory is refused.
    let again = run(&[
        "export",
        "--store",
        s(&store),
        "--format",
        "maildir",
        "--out",
        s(&out),
    ]);
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("not empty"), "{}", again.stderr);

    // A fresh Dovecot whose Maildir is the export.
    let reader = Dovecot::start_default();
    copy_tree(&out, &reader.maildir("alice"));
    reader.fix_ownership();
    let served = server_contents(&reader, "alice");
    assert_same_contents(&served, &want, "Dovecot serving the Maildir export");
    eprintln!(
        "Dovecot read the Maildir export back: {} folders, {} messages identical (bytes, flags, dates)",
        served.len(),
        served.values().map(Vec::len).sum::<usize>()
    );

    // Import that Maildir into a new store, push it to a new server: host1's mail, exactly.
    let imported = dir.path().join("imported");
    let import = [
        "import",
        "--store",
        s(&imported),
        "--maildir",
        s(&out),
        "--json",
    ];
    let r = run(&import).expect_code(0).json();
    assert_eq!(r["added"].as_u64().unwrap() as usize, corpus.len());
    assert_same_contents(&store_contents(&imported), &want, "imported store");
    // Importing the same tree again adds nothing.
    let r = run(&import).expect_code(0).json();
    assert_eq!(
        (r["added"].as_u64(), r["skipped"].as_u64()),
        (Some(0), Some(corpus.len() as u64))
    );

    let host2 = Dovecot::start_default();
    push(&host2, &imported, &["--no-automap"]).expect_code(0);
    assert_same_contents(
        &server_contents(&host2, "alice"),
        &server_contents(&host1, "alice"),
        "host2 after push",
    );

    // A store made by pull refuses imports (a later pull would drop them).
    let r = run(&["import", "--store", s(&store), "--maildir", s(&out)]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("store of its own"), "{}", r.stderr);
}

#[test]
fn mbox_export_reads_back_byte_for_byte_and_imports() {
    let host1 = Dovecot::start_default();
    let corpus = Corpus::small();
    seed(&host1, "alice", &corpus);
    let (dir, store) = pulled_store(&host1);

    let out = dir.path().join("mbox");
    run(&[
        "export",
        "--store",
        s(&store),
        "--format",
        "mbox",
        "--out",
        s(&out),
    ])
    .expect_code(0);
    let stored = store_messages(&store);
    for (folder, msgs) in &stored {
        let file = imapferry::export::mbox_file(&out, folder);
        let data = fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let (read, skipped) = imapferry::mbox::read(&data);
        assert_eq!(skipped, 0);
        assert_eq!(read.len(), msgs.len(), "{folder}");
        for (r, m) in read.iter().zip(msgs) {
            assert!(
                r.bytes == m.bytes,
                "{folder} UID {}: mbox bytes differ",
                m.uid
            );
            let date = r.from_line.split_once(' ').unwrap().1;
            assert_eq!(
                imapferry::mailtime::parse_asctime(date),
                Some(internaldate_to_unix(&m.internaldate)),
                "{folder} UID {}: From line date",
                m.uid
            );
        }
    }
    assert!(out.join("Archive/2024.mbox").is_file() && out.join("Entwürfe.mbox").is_file());

    // --folder limits the export; an unknown folder is an error.
    let one = dir.path().join("one");
    run(&[
        "export",
        "--store",
        s(&store),
        "--format",
        "mbox",
        "--out",
        s(&one),
        "--folder",
        "Sent",
    ])
    .expect_code(0);
    assert_eq!(fs::read_dir(&one).unwrap().count(), 1);
    let r = run(&[
        "export",
        "--store",
        s(&store),
        "--format",
        "mbox",
        "--out",
        s(&dir.path().join("x")),
        "--folder",
        "Nope",
    ]);
    assert!(r.code == 1 && r.stderr.contains("Nope"), "{}", r.stderr);

    // Import the INBOX mbox: the same bytes and dates (flags are not in an mbox).
    let imported = dir.path().join("imported");
    run(&[
        "import",
        "--store",
        s(&imported),
        "--mbox",
        s(&out.join("INBOX.mbox")),
    ])
    .expect_code(0);
    let back = store_messages(&imported);
    let got: Vec<(&[u8], i64)> = back["INBOX"]
        .iter()
        .map(|m| (m.bytes.as_slice(), internaldate_to_unix(&m.internaldate)))
        .collect();
    let want: Vec<(&[u8], i64)> = stored["INBOX"]
        .iter()
        .map(|m| (m.bytes.as_slice(), internaldate_to_unix(&m.internaldate)))
        .collect();
    assert!(got == want, "mbox import differs from the store's INBOX");
}
