//! A walk-through of the main job on this machine: two throwaway Dovecot servers on 127.0.0.1,
//! sample mail seeded into the first, `imapferry pull` into a store, `imapferry status`,
//! `imapferry push` into the second and `imapferry check`.
//! Run it with `bash examples/demo.sh` (it needs Debian's `dovecot-imapd` and `openssl`).
//!
//! It reuses the integration-test harness (tests/common) so the demo and the tests start
//! servers the same way.

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;

use common::run::imapferry;
use common::*;

fn show(cmd: &mut Command) {
    let printable: Vec<String> = cmd
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    println!("\n$ imapferry {}", printable.join(" "));
    let status = cmd.status().expect("run imapferry");
    println!("(exit status {})", status.code().unwrap_or(-1));
}

fn main() {
    let host1 = Dovecot::start(DovecotConfig::new().standard_special_use());
    let host2 = Dovecot::start(
        DovecotConfig::new()
            .namespace(NamespaceStyle::InboxDot)
            .special_use_auto("\\Sent", "Sent Items"),
    );
    println!(
        "host1: Dovecot on 127.0.0.1:{} (separator '/'), host2: Dovecot on 127.0.0.1:{} (separator '.', prefix INBOX.)",
        host1.port(),
        host2.port()
    );
    let corpus = Corpus::standard();
    seed(&host1, "alice", &corpus);
    println!(
        "seeded host1 with {} messages ({} bytes) in {} folders",
        corpus.len(),
        corpus.total_bytes(),
        corpus.folders.len()
    );

    let work = tempfile::tempdir().expect("temp dir");
    let store = work.path().join("mail.store");
    let port1 = host1.port().to_string();
    let pull = |extra: &[&str]| {
        let mut c = imapferry();
        c.args([
            "pull",
            "--host1",
            "127.0.0.1",
            "--port1",
            &port1,
            "--tls1",
            "none",
        ])
        .args(["--user1", "alice", "--store"])
        .arg(&store)
        .args(extra)
        .env("IMAPFERRY_PASSWORD1", host1.password("alice"));
        c
    };
    show(&mut pull(&[]));
    println!("\nA second pull finds nothing to fetch:");
    show(&mut pull(&[]));
    show(imapferry().args(["status", "--store"]).arg(&store));

    let port2 = host2.port().to_string();
    let to_host2 = |cmd: &str| {
        let mut c = imapferry();
        c.args([
            cmd,
            "--host2",
            "127.0.0.1",
            "--port2",
            &port2,
            "--tls2",
            "none",
        ])
        .args(["--user2", "alice", "--store"])
        .arg(&store)
        .env("IMAPFERRY_PASSWORD2", host2.password("alice"));
        c
    };
    println!("\nPush into host2 (its Sent folder is called \"Sent Items\"; the folders get the INBOX. prefix):");
    show(&mut to_host2("push"));
    println!("\nA second push sends nothing:");
    show(&mut to_host2("push"));
    show(&mut to_host2("check"));
    println!("\nStopping the servers.");
}
