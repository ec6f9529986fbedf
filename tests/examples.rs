//! The shell walk-throughs in `examples/` run against real Dovecot servers, so they never rot:
//! `staged-migration.sh` (full bundle, then an incremental one at cutover) and
//! `nightly-backup.sh` (pull, verify, export; a damaged store stops it before exporting);
//! `gmail-to-m365.sh` against the Gmail and Microsoft 365 emulation with OAuth2 refresh files.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::offline::{assert_same_contents, server_contents};
use common::run::binary;
use common::*;

/// Run `examples/<script> args…` with the servers' coordinates in the environment.
fn script(name: &str, args: &[&str], env: &[(&str, String)]) -> common::run::Run {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(name);
    let mut c = Command::new("bash");
    c.arg(path).args(args).env("IMAPFERRY", binary());
    for (k, v) in env {
        c.env(k, v);
    }
    let r: common::run::Run = c.output().expect("run bash").into();
    eprintln!(
        "--- {name} {args:?}: exit {}\n{}{}",
        r.code, r.stdout, r.stderr
    );
    r
}

fn side(n: u8, server: &Dovecot) -> Vec<(String, String)> {
    vec![
        (format!("HOST{n}"), "127.0.0.1".into()),
        (format!("PORT{n}"), server.port().to_string()),
        (format!("TLS{n}"), "none".into()),
        (format!("USER{n}"), "alice".into()),
        (
            format!("IMAPFERRY_PASSWORD{n}"),
            server.password("alice").into(),
        ),
    ]
}

fn env_of(v: &[(String, String)]) -> Vec<(&str, String)> {
    v.iter().map(|(k, x)| (k.as_str(), x.clone())).collect()
}

#[test]
fn staged_migration_walkthrough_moves_the_account_in_two_rounds() {
    let config = || DovecotConfig::new().standard_special_use();
    let host1 = Dovecot::start(config());
    let host2 = Dovecot::start(config());
    seed(&host1, "alice", &Corpus::small());
    let work = tempfile::tempdir().unwrap();
    let mut env = side(1, &host1);
    env.extend(side(2, &host2));
    env.push(("WORK".into(), work.path().display().to_string()));

    script("staged-migration.sh", &[], &env_of(&env)).expect_code(0);
    assert_same_contents(
        &server_contents(&host2, "alice"),
        &server_contents(&host1, "alice"),
        "after round 1",
    );

    // A week later: new mail, and something deleted on host1.
    let mut c = imap_client(&host1, "alice");
    c.append_many(
        "INBOX",
        &[imapferry::imap::AppendMessage {
            flags: &[],
            internaldate: None,
            synchronizing: false,
            bytes: b"Subject: later\r\n\r\narrived after round 1\r\n",
        }],
    )
    .unwrap();
    c.select("INBOX", false).unwrap();
    c.raw_command("UID STORE 2 +FLAGS (\\Deleted)").unwrap();
    c.raw_command("UID EXPUNGE 2").unwrap();
    c.logout().unwrap();

    let r = script("staged-migration.sh", &["cutover"], &env_of(&env)).expect_code(0);
    assert!(
        r.stdout.contains("made") || r.stdout.contains("applied #2"),
        "{}",
        r.stdout
    );
    assert_same_contents(
        &server_contents(&host2, "alice"),
        &server_contents(&host1, "alice"),
        "after cutover",
    );
    let mut sizes: Vec<u64> = fs::read_dir(work.path().join("disk"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    sizes.sort();
    assert_eq!(sizes.len(), 2, "one volume per round");
    assert!(
        sizes[0] * 10 < sizes[1],
        "the incremental bundle is small: {sizes:?}"
    );
}

#[test]
fn nightly_backup_walkthrough_exports_and_stops_on_a_damaged_store() {
    let host1 = Dovecot::start_default();
    seed(&host1, "alice", &Corpus::small());
    let backup = tempfile::tempdir().unwrap();
    let mut env = side(1, &host1);
    env.push(("BACKUP".into(), backup.path().display().to_string()));
    env.push(("KEEP".into(), "2".into()));

    for _ in 0..3 {
        script("nightly-backup.sh", &[], &env_of(&env)).expect_code(0);
    }
    let exports = |dir: &Path| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("maildir-"))
            .collect();
        v.sort();
        v
    };
    let kept = exports(backup.path());
    assert_eq!(kept.len(), 2, "KEEP=2: {kept:?}");
    let latest = backup.path().join(kept.last().unwrap());
    assert!(latest.join("cur").is_dir() && latest.join(".Archive.2024").is_dir());

    // Damage every object: verify (even a 10% sample) stops the script before the export.
    for e in walkdir::WalkDir::new(backup.path().join("store/objects")) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            fs::write(e.path(), zstd::bulk::compress(b"damaged", 3).unwrap()).unwrap();
        }
    }
    let r = script("nightly-backup.sh", &[], &env_of(&env));
    assert_eq!(r.code, 3, "verify's status");
    assert_eq!(
        exports(backup.path()),
        kept,
        "no export from a damaged store"
    );
}

#[test]
fn gmail_to_m365_walkthrough_moves_every_label_folder_with_refreshed_tokens() {
    use common::oauth::TokenEndpoint;
    use common::provider::{Provider, ProviderConfig, SeedMsg};
    use std::sync::Arc;
    let (e1, e2) = (
        Arc::new(TokenEndpoint::start("gmail-client", "g-refresh")),
        Arc::new(TokenEndpoint::start("m365-client", "m-refresh")),
    );
    let gmail = Provider::gmail(ProviderConfig {
        token_check: Some(e1.checker()),
        ..ProviderConfig::default()
    });
    let m365 = Provider::m365(ProviderConfig {
        token_check: Some(e2.checker()),
        ..ProviderConfig::default()
    });
    let msgs: Vec<SeedMsg> = (0..12)
        .map(|i| {
            let labels: &[&str] = match i % 3 {
                0 => &["\\Inbox", "Work"],
                1 => &["Work", "Travel"],
                _ => &["\\Inbox"],
            };
            SeedMsg::new(&common::hostile::body_of(1_500, i)).labels(labels)
        })
        .collect();
    gmail.seed(msgs);
    let dir = tempfile::tempdir().unwrap();
    let (r1, r2) = (dir.path().join("gmail.conf"), dir.path().join("m365.conf"));
    e1.write_config(&r1);
    e2.write_config(&r2);
    let env = [
        ("WORK", dir.path().join("work").display().to_string()),
        ("GMAIL_USER", "alice@example.com".into()),
        ("GMAIL_REFRESH", r1.display().to_string()),
        ("M365_USER", "alice@example.com".into()),
        ("M365_REFRESH", r2.display().to_string()),
        ("HOST1", "127.0.0.1".into()),
        ("PORT1", gmail.port().to_string()),
        ("TLS1", "none".into()),
        ("HOST2", "127.0.0.1".into()),
        ("PORT2", m365.port().to_string()),
        ("TLS2", "none".into()),
    ];
    script("gmail-to-m365.sh", &[], &env).expect_code(0);
    let cutover = script("gmail-to-m365.sh", &["cutover"], &env).expect_code(0);
    assert!(
        cutover.stdout.contains("cutover: compare") && cutover.stdout.contains("host2 holds all"),
        "{}",
        cutover.all()
    );
    // Every Gmail folder is a Microsoft 365 folder holding the same messages.
    for folder in ["INBOX", "Work", "Travel", "[Gmail]/All Mail"] {
        let want: Vec<Vec<u8>> = gmail
            .folder_messages(folder)
            .unwrap()
            .into_iter()
            .map(|m| m.bytes)
            .collect();
        let mut got: Vec<Vec<u8>> = m365
            .folder_messages(folder)
            .unwrap_or_default()
            .into_iter()
            .map(|m| m.bytes)
            .collect();
        let mut want = want;
        want.sort();
        got.sort();
        assert_eq!(got, want, "{folder}");
    }
    assert_eq!(gmail.body_bytes_served(), 12 * 1_500);
    assert!(e1.granted() >= 1 && e2.granted() >= 1);
}
