//! Issue 19 item 11: a store prepared elsewhere (copied from a disk, restored from a backup)
//! may hold symbolic links the store never makes. Nothing under a store follows one: `tmp/`,
//! `logs/`, `partial/`, `objects/` or one of its subdirectories, `index.sqlite` or `lock` as a
//! link is refused by every command, naming it, before anything is read, written, chmodded or
//! removed through it; an object file that is a link is a problem of that object, never read
//! through. The files the links point to survive untouched. The store root itself may be a link.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use common::offline::copy_tree;
use common::run::{imapferry, pull, Run};
use common::*;

/// Every file under `dir` (not following links): its bytes and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let mode = e.metadata().unwrap().permissions().mode() & 0o7777;
            (e.path().to_path_buf(), (fs::read(e.path()).unwrap(), mode))
        })
        .collect()
}

/// `imapferry ARGS… --store STORE`.
fn offline(store: &Path, args: &[&str]) -> Run {
    imapferry()
        .args(args)
        .arg("--store")
        .arg(store)
        .output()
        .unwrap()
        .into()
}

/// A victim directory of files a link may point to: 150 run logs, a file named like a
/// partial download, and others, each 0644.
fn victim_dir(at: &Path) -> PathBuf {
    fs::create_dir_all(at).unwrap();
    for i in 0..150 {
        fs::write(at.join(format!("20200101T0000{i:02}Z-pull-1.log")), b"log").unwrap();
    }
    fs::write(at.join("1-42-1"), b"Subject: planted\r\n\r\n").unwrap();
    fs::write(at.join("precious.txt"), b"keep me").unwrap();
    for e in fs::read_dir(at).unwrap() {
        fs::set_permissions(e.unwrap().path(), fs::Permissions::from_mode(0o644)).unwrap();
    }
    at.to_path_buf()
}

/// A server with the small corpus, a store pulled from it at `dir/NAME`, and the path of one
/// object file in that store.
fn pulled(dir: &Path, name: &str) -> (Dovecot, PathBuf, PathBuf) {
    let server = Dovecot::start_default();
    seed(&server, "alice", &Corpus::small());
    let store = dir.join(name);
    pull(&server, "alice", &store, &[]).expect_code(0);
    let object = walkdir::WalkDir::new(store.join("objects"))
        .min_depth(2)
        .into_iter()
        .map(Result::unwrap)
        .find(|e| e.file_type().is_file())
        .unwrap()
        .path()
        .to_path_buf();
    (server, store, object)
}

#[test]
fn links_inside_a_store_are_refused_by_name_and_what_they_point_to_survives() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base, object) = pulled(dir.path(), "base");
    let some_object = object.strip_prefix(&base).unwrap().to_path_buf();
    let object_dir = some_object.parent().unwrap().to_path_buf();

    // (entry replaced by a link, whether it is a directory, whether every command refuses it)
    let cases: Vec<(PathBuf, bool)> = vec![
        ("tmp".into(), true),
        ("logs".into(), true),
        ("partial".into(), true),
        ("objects".into(), true),
        (object_dir.clone(), true),
        ("index.sqlite".into(), false),
        ("lock".into(), false),
    ];
    let mut wrong = Vec::new();
    for (n, (entry, is_dir)) in cases.iter().enumerate() {
        let case = dir.path().join(format!("case{n}"));
        fs::create_dir(&case).unwrap();
        let store = case.join("store");
        copy_tree(&base, &store);
        let victim = victim_dir(&case.join("victim"));
        let link = store.join(entry);
        // The real entry moves into the victim directory, so the store still works through
        // the link for a binary that follows it.
        let moved = victim.join(entry.file_name().unwrap());
        if link.exists() {
            fs::rename(&link, &moved).unwrap();
            if !*is_dir {
                fs::set_permissions(&moved, fs::Permissions::from_mode(0o644)).unwrap();
            }
        } else {
            fs::create_dir(&moved).unwrap();
        }
        let target = if *is_dir {
            victim.clone()
        } else {
            moved.clone()
        };
        if *is_dir {
            // The directory's own files join the victims.
            for e in fs::read_dir(&moved).unwrap() {
                let e = e.unwrap();
                fs::rename(e.path(), victim.join(e.file_name())).unwrap();
            }
            fs::remove_dir(&moved).unwrap();
        }
        symlink(&target, &link).unwrap();
        let before = snapshot(&victim);
        let runs = [
            ("pull", pull(&server, "alice", &store, &[])),
            ("status", offline(&store, &["status"])),
            ("verify", offline(&store, &["verify"])),
            ("export", {
                let out = case.join("export");
                imapferry()
                    .args(["export", "--format", "mbox", "--out"])
                    .arg(&out)
                    .arg("--store")
                    .arg(&store)
                    .output()
                    .unwrap()
                    .into()
            }),
        ];
        let named = link.display().to_string();
        for (what, r) in &runs {
            eprintln!("{} {what}: exit {}", entry.display(), r.code);
            if r.code == 0 || !r.stderr.contains(&named) || !r.stderr.contains("link") {
                wrong.push(format!(
                    "{} as a link: {what} exit {}, stderr: {}",
                    entry.display(),
                    r.code,
                    r.stderr.trim()
                ));
            }
        }
        if snapshot(&victim) != before {
            wrong.push(format!(
                "{} as a link: files it points to changed",
                entry.display()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// An object file that is a link is never read through: verify lists it as a problem naming
/// it, and a push fails that message (listed, exit 3) instead of sending what the link points
/// to. The file it points to survives.
#[test]
fn an_object_file_that_is_a_link_is_a_problem_not_a_source() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, store, object) = pulled(dir.path(), "store");
    let elsewhere = dir.path().join("elsewhere.zst");
    fs::rename(&object, &elsewhere).unwrap();
    symlink(&elsewhere, &object).unwrap();
    let before = fs::read(&elsewhere).unwrap();
    let v = offline(&store, &["verify"]);
    assert_eq!(v.code, 3, "{}{}", v.stdout, v.stderr);
    assert!(
        v.all().contains(&object.display().to_string()),
        "{}",
        v.all()
    );
    let host2 = Dovecot::start_default();
    let p = common::offline::push(&host2, &store, &[]);
    assert_eq!(p.code, 3, "{}", p.all());
    assert!(p.stderr.contains("link"), "{}", p.stderr);
    assert_eq!(fs::read(&elsewhere).unwrap(), before);
}

/// The store root itself may be a link (a store kept on another disk): everything works.
#[test]
fn a_store_root_that_is_a_link_works() {
    let server = Dovecot::start_default();
    seed(&server, "alice", &Corpus::small());
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real");
    pull(&server, "alice", &real, &[]).expect_code(0);
    let link = dir.path().join("link");
    symlink(&real, &link).unwrap();
    pull(&server, "alice", &link, &[]).expect_code(0);
    offline(&link, &["verify"]).expect_code(0);
    offline(&link, &["status"]).expect_code(0);
}
