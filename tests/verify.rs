//! `imapferry verify` and `imapferry gc` on a store pulled from a real Dovecot: a clean store
//! passes; a flipped byte in one object, or a valid zstd frame of other bytes under its name, is
//! found and reported with the folder and UID; gc only says what it would free until `--yes`.
//! Rows a bundle apply would refuse (what an older apply took in) are listed as invalid.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::offline::run;
use common::run::pulled_store;
use common::*;
use imapferry::store::Store;

/// (folder, UID, object path) of the first INBOX message.
fn first_inbox_message(store: &Path) -> (String, u32, PathBuf) {
    let s = Store::open_existing(store).unwrap();
    let inbox = s
        .index
        .folders()
        .unwrap()
        .into_iter()
        .find(|f| f.path == "INBOX")
        .unwrap();
    let m = s
        .index
        .live_messages(inbox.id, inbox.state.uidvalidity.unwrap())
        .unwrap()
        .remove(0);
    ("INBOX".into(), m.uid, s.objects.path(&m.hash))
}

fn verify(store: &Path, extra: &[&str]) -> common::run::Run {
    let mut args = vec!["verify", "--store", store.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn verify_finds_a_corrupted_object_by_folder_and_uid_and_gc_frees_only_on_request() {
    let server = Dovecot::start_default();
    seed(&server, "alice", &Corpus::small());
    let (dir, store) = pulled_store(&server);

    let ok = verify(&store, &[]).expect_code(0);
    assert!(ok.all().contains("no problems"), "{}", ok.stderr);
    let json = verify(&store, &["--json", "--sample", "50%"])
        .expect_code(0)
        .json();
    assert!(json["rehashed"].as_u64().unwrap() <= json["objects"].as_u64().unwrap());

    // One flipped byte inside the compressed file.
    let (folder, uid, path) = first_inbox_message(&store);
    let original = fs::read(&path).unwrap();
    let mut bad = original.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x40;
    fs::write(&path, &bad).unwrap();
    let r = verify(&store, &[]).expect_code(3);
    let line = format!("{folder} UID {uid} ");
    assert!(
        r.all().contains(&line) && r.all().contains("corrupt"),
        "verify output does not name {line}:\n{}",
        r.stderr
    );
    assert!(
        r.all().contains(&path.display().to_string()),
        "{}",
        r.stderr
    );

    // A valid zstd frame of other bytes, same length or not: the hash gives it away.
    fs::write(&path, zstd::bulk::compress(b"not the message", 3).unwrap()).unwrap();
    let r = verify(&store, &["--json"]).expect_code(3);
    let problems = r.json()["problems"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["kind"], "corrupt");
    assert!(problems[0]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["folder"] == "INBOX" && m["uid"] == uid));

    // A missing object.
    fs::remove_file(&path).unwrap();
    let r = verify(&store, &[]).expect_code(3);
    assert!(
        r.all().contains("missing") && r.all().contains(&line),
        "{}",
        r.stderr
    );
    fs::write(&path, &original).unwrap();
    verify(&store, &[]).expect_code(0);

    // An object no message uses: not a problem, but gc's business.
    let stray = {
        let s = Store::open_existing(&store).unwrap();
        let (h, _) = s
            .objects
            .write(b"Subject: orphan\r\n\r\nnobody\r\n")
            .unwrap();
        s.objects.sync().unwrap();
        s.objects.path(&h)
    };
    let r = verify(&store, &[]).expect_code(0);
    assert!(r.all().contains("1 unreferenced"), "{}", r.stderr);
    let dry = run(&["gc", "--store", store.to_str().unwrap()]).expect_code(0);
    assert!(
        dry.all().contains("would be removed") && dry.all().contains("--yes"),
        "{}",
        dry.stderr
    );
    assert!(stray.exists(), "gc without --yes removed something");
    let done = run(&["gc", "--store", store.to_str().unwrap(), "--yes", "--json"]).expect_code(0);
    assert_eq!(done.json()["objects"], 1);
    assert!(!stray.exists());
    assert!(path.exists(), "gc removed a referenced object");
    let again = run(&["gc", "--store", store.to_str().unwrap()]).expect_code(0);
    assert!(again.all().contains("nothing to free"), "{}", again.stderr);
    verify(&store, &[]).expect_code(0);

    // Not a store: a clear error, exit 1.
    let r = run(&["verify", "--store", dir.path().to_str().unwrap()]).expect_code(1);
    assert!(r.all().contains("not an imapferry store"), "{}", r.stderr);
}

#[test]
fn verify_lists_rows_a_bundle_apply_would_refuse_by_folder_and_uid() {
    use common::bundle::Spec;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let msgs: Vec<Vec<u8>> = (1..=6)
        .map(|i| format!("Subject: {i}\r\n\r\n{i}\r\n").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    let mut spec = Spec::inbox(&refs, 9);
    spec.folders.push(common::bundle::folder("Archive"));
    spec.add_message("Archive", 9, b"Subject: a\r\n\r\na\r\n");
    let file = dir.path().join("b.bundle");
    spec.write(&file);
    run(&[
        "bundle",
        "apply",
        "--store",
        store.to_str().unwrap(),
        file.to_str().unwrap(),
    ])
    .expect_code(0);
    verify(&store, &[]).expect_code(0);

    // What an older `bundle apply` took in without a word.
    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    for sql in [
        "UPDATE messages SET internaldate = '31-Feb-2021 14:03:07 +0100' WHERE uid = 1",
        "UPDATE messages SET size = 1000000000000 WHERE uid = 2",
        "UPDATE messages SET uid = 0 WHERE uid = 3",
        "UPDATE messages SET uidvalidity = 0 WHERE uid = 4",
        "UPDATE folders SET path = 'a//b' WHERE path = 'Archive'",
    ] {
        db.execute(sql, []).unwrap();
    }
    drop(db);
    let r = verify(&store, &[]).expect_code(3);
    for line in [
        "invalid: INBOX UID 1 (uidvalidity 7): INTERNALDATE \"31-Feb-2021 14:03:07 +0100\"",
        "invalid: INBOX UID 2 (uidvalidity 7): the message is recorded as 1000000000000 bytes, \
         its object as 17",
        "invalid: INBOX UID 0 (uidvalidity 7): UID 0",
        "invalid: INBOX UID 4 (uidvalidity 0): UIDVALIDITY 0",
        "invalid: folder \"a//b\": an empty level",
    ] {
        assert!(r.all().contains(line), "no {line:?} in:\n{}", r.stderr);
    }
    assert!(!r.all().contains("INBOX UID 6 "), "{}", r.stderr);
    let json = verify(&store, &["--json"]).expect_code(3).json();
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 5, "{problems:?}");
    assert!(problems.iter().any(|p| p["kind"] == "invalid"
        && p["messages"][0]["folder"] == "INBOX"
        && p["messages"][0]["uid"] == 0));
}

/// verify reads, it does not write: an older schema is reported and left as it is, a newer
/// one is refused, and nothing in the store changes (no upgrade, `tmp/` debris left for the
/// writer that owns it, no WAL file made).
#[test]
fn verify_changes_nothing_and_names_an_older_or_unknown_schema() {
    use common::bundle::Spec;
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = dir.path().join("b.bundle");
    Spec::inbox(&[b"Subject: 1\r\n\r\n1\r\n", b"Subject: 2\r\n\r\n2\r\n"], 9).write(&file);
    let s = store.to_str().unwrap();
    run(&["bundle", "apply", "--store", s, file.to_str().unwrap()]).expect_code(0);

    // A store as imapferry with schema 4 left it, with a writer's debris in tmp/.
    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    db.execute_batch(
        "DROP INDEX messages_gm_msgid; ALTER TABLE messages DROP COLUMN gm_msgid;
         ALTER TABLE messages DROP COLUMN gm_thrid; DROP TABLE transfer_log;
         ALTER TABLE pushed DROP COLUMN altered; PRAGMA user_version = 4;",
    )
    .unwrap();
    db.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(db);
    fs::write(store.join("tmp/debris"), b"x").unwrap();
    let before = fs::read(store.join("index.sqlite")).unwrap();

    let r = verify(&store, &[]).expect_code(0);
    assert!(r.all().contains("no problems"), "{}", r.stderr);
    assert!(
        r.stdout
            .contains("the index is schema 4 (this imapferry writes 7)"),
        "the note is part of the report on stdout: {}",
        r.all()
    );
    assert_eq!(fs::read(store.join("index.sqlite")).unwrap(), before);
    assert!(store.join("tmp/debris").exists());
    assert!(!store.join("index.sqlite-wal").exists());

    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    let before = fs::read(store.join("index.sqlite")).unwrap();
    let r = verify(&store, &[]).expect_code(1);
    assert!(
        r.stderr
            .contains("written by a newer imapferry (schema 99)"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read(store.join("index.sqlite")).unwrap(), before);
}

/// Rewrite the object file of `hash` (hex) in `store` as one zstd frame of `bytes` that does
/// not declare its content size (what a streaming writer makes), and record its new length.
fn rewrite_without_size(store: &Path, hash: &str, bytes: &[u8]) {
    use std::io::Write;
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    enc.include_contentsize(false).unwrap();
    enc.write_all(bytes).unwrap();
    let frame = enc.finish().unwrap();
    assert_eq!(
        zstd::zstd_safe::get_frame_content_size(&frame).unwrap(),
        None,
        "the frame declares no size"
    );
    let path = store
        .join("objects")
        .join(&hash[..2])
        .join(format!("{hash}.zst"));
    fs::write(&path, &frame).unwrap();
    let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    db.execute(
        "UPDATE objects SET stored_size = ?1 WHERE hash = ?2",
        rusqlite::params![frame.len() as i64, hash],
    )
    .unwrap();
}

/// Issue 19 item 7: store-format.md accepts any valid zstd frame on read, and bundle-format.md
/// compresses a frame without its content size again. A store whose every object is such a
/// frame verifies clean, pushes exactly what host1 holds, exports byte for byte, and makes a
/// bundle whose objects declare their size and which applies into a store that verifies; a
/// frame without its size that inflates past the index's size is corrupt (inflation stops
/// there).
#[test]
fn frames_without_their_content_size_are_read_verified_pushed_exported_and_bundled() {
    let host1 = Dovecot::start_default();
    seed(&host1, "alice", &Corpus::small());
    let (dir, store) = pulled_store(&host1);
    let rows: Vec<(String, Vec<u8>)> = {
        let s = Store::open_existing(&store).unwrap();
        let db = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
        let mut q = db.prepare("SELECT hash, size FROM objects").unwrap();
        let hashes: Vec<(String, u64)> = q
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        hashes
            .into_iter()
            .map(|(h, size)| {
                let bytes = s.objects.read(&h.parse().unwrap(), size).unwrap();
                (h, bytes)
            })
            .collect()
    };
    assert!(rows.len() > 3);
    for (h, bytes) in &rows {
        rewrite_without_size(&store, h, bytes);
    }
    let p = |n: &str| dir.path().join(n);
    let s = |p: &Path| p.to_str().unwrap().to_string();

    // Read and verify.
    let v = verify(&store, &["--json"]);
    assert_eq!(v.code, 0, "verify: {}{}", v.stdout, v.stderr);
    assert_eq!(v.json()["rehashed"], rows.len(), "{}", v.stdout);

    // Export.
    run(&[
        "export",
        "--store",
        &s(&store),
        "--format",
        "mbox",
        "--out",
        &s(&p("mbox")),
    ])
    .expect_code(0);
    let (exported, _) = imapferry::mbox::read(&fs::read(p("mbox").join("INBOX.mbox")).unwrap());
    let inbox = &common::offline::server_contents(&host1, "alice")["INBOX"];
    let mut got: Vec<Vec<u8>> = exported.into_iter().map(|m| m.bytes).collect();
    let mut want: Vec<Vec<u8>> = inbox.iter().map(|m| m.0.clone()).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "exported INBOX");

    // Bundle: each object compressed again with its size, applied into a store that verifies.
    run(&[
        "bundle",
        "create",
        "--store",
        &s(&store),
        "--out",
        &s(&p("b.bundle")),
    ])
    .expect_code(0);
    run(&[
        "bundle",
        "apply",
        "--store",
        &s(&p("copy")),
        &s(&p("b.bundle")),
    ])
    .expect_code(0);
    verify(&p("copy"), &[]).expect_code(0);
    for (h, _) in &rows {
        let frame = fs::read(
            p("copy")
                .join("objects")
                .join(&h[..2])
                .join(format!("{h}.zst")),
        )
        .unwrap();
        let declared = zstd::zstd_safe::get_frame_content_size(&frame).unwrap();
        assert!(
            declared.is_some(),
            "{h}: the bundle's frame declares its size"
        );
    }

    // Push.
    let host2 = Dovecot::start_default();
    common::offline::push(&host2, &store, &[]).expect_code(0);
    common::offline::assert_same_contents(
        &common::offline::server_contents(&host2, "alice"),
        &common::offline::server_contents(&host1, "alice"),
        "host2 after a push from frames without their size",
    );

    // Bounded by the index's size: 100 bytes more than the row says is corrupt.
    let (h, bytes) = &rows[0];
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[b'x'; 100]);
    rewrite_without_size(&store, h, &longer);
    let v = verify(&store, &[]).expect_code(3);
    assert!(
        v.all().contains(&format!("past the {} bytes", bytes.len())),
        "{}",
        v.all()
    );
}

/// Run each of `commands` (arguments of `imapferry`, `{ro}` standing for the store's read-only
/// path) in a mount namespace of its own where `store` is bind-mounted read-only, and return
/// what each did. Panics when the read-only mount cannot be made (or is writable after all):
/// the test must not pass without the read-only case.
fn on_read_only_media(store: &Path, commands: &[Vec<String>]) -> Vec<common::run::Run> {
    let work = tempfile::tempdir().unwrap();
    let ro = work.path().join("ro");
    fs::create_dir(&ro).unwrap();
    let mut script = format!(
        "set -e\nmount --bind '{}' '{ro}'\nmount -o remount,bind,ro '{ro}'\n\
         if touch '{ro}/probe' 2>/dev/null; then echo WRITABLE; exit 9; fi\nset +e\n",
        store.display(),
        ro = ro.display()
    );
    for (i, c) in commands.iter().enumerate() {
        let args: Vec<String> = c
            .iter()
            .map(|a| format!("'{}'", a.replace("{ro}", &ro.display().to_string())))
            .collect();
        script += &format!(
            "'{}' {} >'{w}/{i}.out' 2>'{w}/{i}.err'; echo $? >'{w}/{i}.code'\n",
            common::run::binary().display(),
            args.join(" "),
            w = work.path().display()
        );
    }
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--map-root-user", "sh", "-c", &script])
        .output()
        .expect("run unshare (util-linux)");
    assert!(
        out.status.success(),
        "cannot set up a read-only bind mount of the store: {out:?}"
    );
    (0..commands.len())
        .map(|i| {
            let read =
                |ext: &str| fs::read_to_string(work.path().join(format!("{i}.{ext}"))).unwrap();
            common::run::Run {
                code: read("code").trim().parse().unwrap(),
                stdout: read("out"),
                stderr: read("err"),
            }
        })
        .collect()
}

/// Issue 19 item 7: a store on read-only media (a backup disk mounted ro) can be verified,
/// shown, exported and listed: these commands create and change nothing in it. A command that
/// must write (gc --yes) says that the store is read-only.
#[test]
fn verify_status_export_and_bundle_list_work_on_a_store_on_read_only_media() {
    let server = Dovecot::start_default();
    seed(&server, "alice", &Corpus::small());
    let (dir, store) = pulled_store(&server);
    let out = dir.path().join("export");
    let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let o = out.display().to_string();
    let runs = on_read_only_media(
        &store,
        &[
            args(&["verify", "--store", "{ro}"]),
            args(&["verify", "--store", "{ro}", "--json"]),
            args(&["status", "--store", "{ro}"]),
            args(&["export", "--store", "{ro}", "--format", "mbox", "--out", &o]),
            args(&["bundle", "list", "--store", "{ro}"]),
            args(&["gc", "--store", "{ro}"]),
            args(&["gc", "--store", "{ro}", "--yes"]),
        ],
    );
    let names = [
        "verify",
        "verify --json",
        "status",
        "export",
        "bundle list",
        "gc",
        "gc --yes",
    ];
    for (name, r) in names.iter().zip(&runs) {
        eprintln!("{name}: exit {}\n{}{}", r.code, r.stdout, r.stderr);
    }
    let failed: Vec<String> = names[..6]
        .iter()
        .zip(&runs)
        .filter(|(_, r)| r.code != 0)
        .map(|(n, r)| format!("{n}: exit {}: {}", r.code, r.stderr))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert!(runs[0].stdout.contains("no problems"), "{}", runs[0].stdout);
    assert_eq!(runs[1].json()["problems"].as_array().unwrap().len(), 0);
    assert!(runs[2].stdout.contains("INBOX"), "{}", runs[2].stdout);
    assert!(out.join("INBOX.mbox").is_file());
    assert_eq!(runs[6].code, 1, "{}", runs[6].stderr);
    assert!(runs[6].stderr.contains("read-only"), "{}", runs[6].stderr);
}
