//! `imapferry sync`, imapsync's command line in one shot (issue 12): the seed's basic command
//! line against two Dovecots, a staged migration (`--maxage` first, then the rest), folder
//! renaming with `--regextrans2`, and `--justfolders`.

mod common;

use std::path::Path;

use common::offline::{assert_same_contents, contents_of};
use common::run::{imapferry, Run};
use common::*;

/// Run `imapferry sync` with `args`, HOME in `home` (for the default store).
fn sync(home: &Path, args: &[&str]) -> Run {
    let mut c = imapferry();
    c.arg("sync")
        .args(args)
        .env("HOME", home)
        .env_remove("XDG_DATA_HOME");
    c.output().expect("run imapferry").into()
}

/// The connection options of both accounts (plaintext on loopback), imapsync's spelling.
fn accounts(h1: &Dovecot, h2: &Dovecot) -> Vec<String> {
    [
        ("--host1", "127.0.0.1".to_string()),
        ("--port1", h1.port().to_string()),
        ("--user1", "alice".into()),
        ("--password1", h1.password("alice").to_string()),
        ("--host2", "127.0.0.1".into()),
        ("--port2", h2.port().to_string()),
        ("--user2", "alice".into()),
        ("--password2", h2.password("alice").to_string()),
        ("--notls1", String::new()),
        ("--notls2", String::new()),
    ]
    .into_iter()
    .flat_map(|(k, v)| [k.to_string(), v])
    .filter(|s| !s.is_empty())
    .collect()
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn the_seed_command_line_syncs_two_servers_and_a_rerun_sends_nothing() {
    let h1 = Dovecot::start(DovecotConfig::new().tls());
    let h2 = Dovecot::start(DovecotConfig::new().tls());
    seed(&h1, "alice", &Corpus::small());
    let home = tempfile::tempdir().unwrap();
    // Both self-signed certificates trusted the way a system trusts its CAs.
    let trust = home.path().join("trust.pem");
    let pem = [
        std::fs::read(h1.ca_file()).unwrap(),
        std::fs::read(h2.ca_file()).unwrap(),
    ]
    .concat();
    std::fs::write(&trust, pem).unwrap();
    // imapsync --host1 imap.truc.org --user1 john --password1 superdur
    //          --host2 imap.trac.com --user2 rodo --password2 bof
    // (plus the ports: the test servers cannot listen on 993 or 143)
    let (p1, p2) = (h1.port().to_string(), h2.port().to_string());
    let seed_line = [
        "--host1",
        "127.0.0.1",
        "--user1",
        "alice",
        "--password1",
        h1.password("alice"),
        "--host2",
        "127.0.0.1",
        "--user2",
        "alice",
        "--password2",
        h2.password("alice"),
        "--port1",
        &p1,
        "--port2",
        &p2,
    ];
    let mut c = imapferry();
    c.arg("sync")
        .args(seed_line)
        .env("HOME", home.path())
        .env_remove("XDG_DATA_HOME")
        .env("SSL_CERT_FILE", &trust);
    let run: Run = c.output().unwrap().into();
    let run = run.expect_code(0);
    eprintln!("{}", run.stderr);
    assert_same_contents(
        &contents_of(&h2.account("alice")),
        &contents_of(&h1.account("alice")),
        "host2",
    );
    let stores = home.path().join(".local/share/imapferry/stores");
    let made: Vec<_> = std::fs::read_dir(&stores).unwrap().flatten().collect();
    assert_eq!(made.len(), 1, "one store for the pair of accounts");

    let mut again = imapferry();
    again
        .arg("sync")
        .args(seed_line)
        .arg("--json")
        .env("HOME", home.path())
        .env_remove("XDG_DATA_HOME")
        .env("SSL_CERT_FILE", &trust);
    let run: Run = again.output().unwrap().into();
    let j = run.expect_code(0).json();
    assert_eq!(j["push"]["sent"], 0, "{j}");
    assert_eq!(j["pull"]["new"], 0, "{j}");
}

#[test]
fn maxage_first_then_a_full_sync_leaves_host2_exact() {
    let h1 = Dovecot::start_default();
    let h2 = Dovecot::start_default();
    let mut corpus = Corpus::small();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // A third of the messages arrived in the last ten days, the rest long ago.
    let mut recent = 0;
    for (i, m) in corpus.messages.iter_mut().enumerate() {
        if i % 3 == 0 {
            m.internaldate =
                imapferry::mailtime::format_internaldate(now - (i as i64 % 10) * 86_400);
            recent += 1;
        }
    }
    seed(&h1, "alice", &corpus);
    let home = tempfile::tempdir().unwrap();
    let acc = accounts(&h1, &h2);
    let mut args = strs(&acc);
    args.extend(["--maxage", "30", "--json"]);
    let run = sync(home.path(), &args).expect_code(0);
    let j = run.json();
    assert_eq!(j["push"]["sent"], recent, "{j}");
    assert_eq!(
        j["pull"]["left_out"].as_u64().unwrap() as usize,
        corpus.messages.len() - recent,
        "{j}"
    );

    // The rest, with --delete2 (every folder is now pulled completely): host2 exact.
    let mut args = strs(&acc);
    args.extend(["--delete2", "--json"]);
    let j = sync(home.path(), &args).expect_code(0).json();
    assert_eq!(
        j["push"]["sent"].as_u64().unwrap() as usize,
        corpus.messages.len() - recent,
        "{j}"
    );
    assert_eq!(j["push"]["deleted"], 0, "{j}");
    assert_same_contents(
        &contents_of(&h2.account("alice")),
        &contents_of(&h1.account("alice")),
        "host2",
    );
}

#[test]
fn regextrans2_renames_on_host2_and_justfolders_copies_no_message() {
    let h1 = Dovecot::start_default();
    let h2 = Dovecot::start_default();
    seed(&h1, "alice", &Corpus::small());
    let home = tempfile::tempdir().unwrap();
    let acc = accounts(&h1, &h2);
    let mut args = strs(&acc);
    args.extend([
        "--justfolders",
        "--regextrans2",
        "s/^Archive/Old/",
        "--json",
    ]);
    let j = sync(home.path(), &args).expect_code(0).json();
    assert_eq!(j["push"]["sent"], 0, "{j}");
    let on_host2 = contents_of(&h2.account("alice"));
    let names: Vec<&String> = on_host2.keys().collect();
    assert!(names.iter().any(|n| n.starts_with("Old")), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("Archive")), "{names:?}");
    assert!(on_host2.values().all(|v| v.is_empty()), "no message copied");

    // Then the messages, under the renamed folders.
    let mut args = strs(&acc);
    args.extend(["--regextrans2", "s/^Archive/Old/", "--json"]);
    let j = sync(home.path(), &args).expect_code(0).json();
    let total = Corpus::small().messages.len() as u64;
    assert_eq!(j["push"]["sent"], total, "{j}");
    let on_host2 = contents_of(&h2.account("alice"));
    let on_host1 = contents_of(&h1.account("alice"));
    for (folder, msgs) in &on_host1 {
        let there = match folder.strip_prefix("Archive") {
            Some(rest) => format!("Old{rest}"),
            None => folder.clone(),
        };
        assert_eq!(on_host2.get(&there), Some(msgs), "{folder} → {there}");
    }
}

#[test]
fn search_selects_messages_and_authuser_logs_in_as_an_administrator() {
    // host1 lets `admin` act as any user (a Dovecot master user, through SASL PLAIN's
    // authorization identity), as migrations by a domain's administrator need.
    let keys = tempfile::tempdir().unwrap();
    let master = keys.path().join("master-passwd");
    std::fs::write(&master, "admin:{PLAIN}admin-secret::::::\n").unwrap();
    let mut cfg = DovecotConfig::new();
    cfg.extra = format!(
        "passdb {{\n  driver = passwd-file\n  master = yes\n  args = scheme=PLAIN {}\n}}\n",
        master.display()
    );
    let h1 = Dovecot::start(cfg);
    let h2 = Dovecot::start_default();
    let corpus = Corpus::small();
    seed(&h1, "alice", &corpus);
    let unseen = corpus
        .messages
        .iter()
        .filter(|m| !m.flags.iter().any(|f| f == "\\Seen"))
        .count();
    assert!(unseen > 0 && unseen < corpus.messages.len());
    let home = tempfile::tempdir().unwrap();
    let (p1, p2) = (h1.port().to_string(), h2.port().to_string());
    let args = [
        "--host1",
        "127.0.0.1",
        "--port1",
        &p1,
        "--notls1",
        "--user1",
        "alice",
        "--authuser1",
        "admin",
        "--password1",
        "admin-secret",
        "--host2",
        "127.0.0.1",
        "--port2",
        &p2,
        "--notls2",
        "--user2",
        "alice",
        "--password2",
        h2.password("alice"),
    ];
    let mut first = args.to_vec();
    first.extend(["--search", "UNSEEN", "--json"]);
    let j = sync(home.path(), &first).expect_code(0).json();
    assert_eq!(j["push"]["sent"].as_u64().unwrap() as usize, unseen, "{j}");
    let mut rest = args.to_vec();
    rest.push("--json");
    let j = sync(home.path(), &rest).expect_code(0).json();
    assert_eq!(
        j["push"]["sent"].as_u64().unwrap() as usize,
        corpus.messages.len() - unseen,
        "{j}"
    );
    assert_same_contents(
        &contents_of(&h2.account("alice")),
        &contents_of(&h1.account("alice")),
        "host2",
    );
    // Criteria that could smuggle a literal (or a second command) are refused as usage.
    let mut bad = args.to_vec();
    bad.extend(["--search", "SUBJECT {5}"]);
    assert_eq!(sync(home.path(), &bad).code, 2);
}

/// Number of messages a store holds (0 when there is no store).
fn stored(store: &Path) -> usize {
    if !store.join("index.sqlite").exists() {
        return 0;
    }
    common::run::store_messages(store)
        .values()
        .map(Vec::len)
        .sum()
}

/// Issue 21, item 1: a wrong host2 password stops `sync` before the pull fetches anything
/// (host1 is 6 MB behind a 1 MB/s link: a pull first would take 6 s), with host2's error and
/// a hint; so does `--ssl2` against host2's plain port, with a hint that leads somewhere.
#[test]
fn host2_mistakes_fail_before_the_pull_fetches_a_message() {
    let h1 = Dovecot::start_default();
    let h2 = Dovecot::start_default();
    let mut corpus = Corpus::small();
    corpus
        .messages
        .extend(Corpus::one_large(6_000_000).messages);
    seed(&h1, "alice", &corpus);
    let slow = Proxy::start(
        h1.port(),
        Faults {
            bandwidth: Some(1_000_000),
            shared_bandwidth: true,
            ..Faults::default()
        },
    );
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let (p1, p2) = (slow.port().to_string(), h2.port().to_string());
    let host1 = [
        "--host1",
        "127.0.0.1",
        "--port1",
        &p1,
        "--notls1",
        "--user1",
        "alice",
        "--password1",
        h1.password("alice"),
    ];
    let host2 = ["--host2", "127.0.0.1", "--port2", &p2, "--user2", "alice"];
    let cases: [(&[&str], &[&str]); 2] = [
        (
            &["--notls2", "--password2", "wrong"],
            &["cannot log in to host2 as alice", "hint:", "--user2"],
        ),
        // Dovecot without a certificate: plain IMAP, no STARTTLS either.
        (
            &["--ssl2", "--password2", h2.password("alice")],
            &["host2", "hint:", "without any TLS", "--port2 993"],
        ),
    ];
    for (extra, wants) in cases {
        let started = std::time::Instant::now();
        let mut args: Vec<&str> = host1.to_vec();
        args.extend(host2);
        args.extend(extra);
        args.extend(["--store", store.to_str().unwrap()]);
        let run = sync(home.path(), &args);
        let took = started.elapsed();
        eprintln!(
            "{extra:?}: exit {} in {took:.1?}: {}",
            run.code,
            run.stderr.trim()
        );
        assert_eq!(run.code, 1, "{}", run.stderr);
        for w in wants {
            assert!(run.stderr.contains(w), "lacks {w:?}:\n{}", run.stderr);
        }
        assert!(
            !run.stderr.contains("--tls2 starttls"),
            "a hint that leads to 'server does not offer STARTTLS':\n{}",
            run.stderr
        );
        assert_eq!(stored(&store), 0, "the pull ran before host2 was tried");
        assert!(took < std::time::Duration::from_secs(4), "took {took:?}");
    }
}

/// Issue 21, item 10: STARTTLS asked of a server that does not offer it names the options
/// that fix it, and `--ssl2` against a plain port that offers STARTTLS says to use it.
#[test]
fn tls_mismatches_on_host2_name_the_option_that_works() {
    let plain = Dovecot::start_default();
    let tls = Dovecot::start(DovecotConfig::new().tls());
    let home = tempfile::tempdir().unwrap();
    let try_push = |server: &Dovecot, tls_args: &[&str]| {
        let mut c = imapferry();
        c.args(["push", "--justlogin", "--host2", "127.0.0.1", "--port2"])
            .arg(server.port().to_string())
            .args(["--user2", "alice", "--store"])
            .arg(home.path().join("none"))
            .args(tls_args)
            .env("IMAPFERRY_PASSWORD2", server.password("alice"));
        let run: Run = c.output().unwrap().into();
        eprintln!("{tls_args:?}: {}", run.stderr.trim());
        run
    };
    let run = try_push(&plain, &["--tls2", "starttls"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("does not offer STARTTLS"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("hint:") && run.stderr.contains("--tls2 none"),
        "{}",
        run.stderr
    );
    let run = try_push(&tls, &["--ssl2"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("--tls2 starttls"), "{}", run.stderr);
}

/// Issue 21, item 10: `sync --dry` fetches nothing (the first time, no store is made at all)
/// and says what the pull would fetch; a later dry run shows the push's plan from the store.
#[test]
fn a_dry_sync_fetches_nothing_and_changes_nothing() {
    let h1 = Dovecot::start_default();
    let h2 = Dovecot::start_default();
    let corpus = Corpus::small();
    seed(&h1, "alice", &corpus);
    let home = tempfile::tempdir().unwrap();
    let store = home.path().join("store");
    let acc = accounts(&h1, &h2);
    let mut args = strs(&acc);
    args.extend(["--dry", "--store", store.to_str().unwrap()]);
    let before = h1.traffic_settled();
    let run = sync(home.path(), &args).expect_code(0);
    let sent = h1.traffic_settled().bytes_out - before.bytes_out;
    eprintln!("{}{}host1 sent {sent} bytes", run.stderr, run.stdout);
    let want = format!("{} messages to fetch", corpus.len());
    assert!(run.stdout.contains(&want), "{}", run.stdout);
    assert!(!store.exists(), "a dry sync made a store");
    assert!(
        sent < corpus.total_bytes() / 2,
        "a dry sync downloaded {sent} bytes of a {} byte mailbox",
        corpus.total_bytes()
    );
    assert!(contents_of(&h2.account("alice"))
        .values()
        .all(Vec::is_empty));
}

/// Issue 21, item 10: with a message filter, the last line says what was left out on host1;
/// with `--json`, a push that fails still reports the pull.
#[test]
fn the_summary_names_what_a_filter_left_out_and_json_keeps_the_pull_when_the_push_fails() {
    let h1 = Dovecot::start_default();
    let h2 = Dovecot::start_default();
    let corpus = Corpus::small();
    seed(&h1, "alice", &corpus);
    let home = tempfile::tempdir().unwrap();
    let acc = accounts(&h1, &h2);
    let mut args = strs(&acc);
    args.extend(["--maxsize", "3000"]);
    let run = sync(home.path(), &args).expect_code(0);
    eprintln!("{}", run.stdout);
    assert!(
        run.stdout.contains("left out on host1") && run.stdout.contains("new messages"),
        "{}",
        run.stdout
    );
    // host2 stops the push (it is gone after the login): the JSON still has the pull.
    let store = home.path().join("pushfails");
    let mut args = strs(&acc);
    args.extend(["--json", "--store", store.to_str().unwrap()]);
    let port2 = h2.port().to_string();
    let gone = TcpGate::start(h2.port());
    let i = args.iter().position(|a| *a == port2.as_str()).unwrap();
    let gate_port = gone.port().to_string();
    args[i] = &gate_port;
    gone.close_after_first();
    let run = sync(home.path(), &args);
    eprintln!("{}\n{}", run.stderr, run.stdout);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let j = run.json();
    assert!(j["error"].is_string(), "{j}");
    assert_eq!(
        j["pull"]["new"].as_u64().unwrap() as usize,
        corpus.len(),
        "{j}"
    );
}

/// A loopback port in front of `target` that lets one connection through (the login check),
/// then refuses the others once told to.
struct TcpGate {
    port: u16,
    open: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl TcpGate {
    fn start(target: u16) -> TcpGate {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
        let left = open.clone();
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let n = left.load(std::sync::atomic::Ordering::SeqCst);
                if n == 0 {
                    drop(client);
                    continue;
                }
                left.store(n.saturating_sub(1), std::sync::atomic::Ordering::SeqCst);
                let server = std::net::TcpStream::connect(("127.0.0.1", target)).unwrap();
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c, mut s) = (client, server);
                std::thread::spawn(move || std::io::copy(&mut c2, &mut s2));
                std::thread::spawn(move || std::io::copy(&mut s, &mut c));
            }
        });
        TcpGate { port, open }
    }

    fn port(&self) -> u16 {
        self.port
    }

    /// Let exactly one more connection through.
    fn close_after_first(&self) {
        self.open.store(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Issue 21, item 10: imapsync's raw folder name is a usage error naming the store path.
#[test]
fn a_folder_given_as_host1s_raw_name_names_the_store_path() {
    let h1 = Dovecot::start(DovecotConfig::new().namespace(NamespaceStyle::InboxDot));
    let h2 = Dovecot::start_default();
    seed(&h1, "alice", &Corpus::small());
    let home = tempfile::tempdir().unwrap();
    let acc = accounts(&h1, &h2);
    let mut args = strs(&acc);
    args.extend(["--folder", "INBOX.Archive.2024"]);
    let run = sync(home.path(), &args);
    eprintln!("{}", run.stderr);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--folder \"Archive/2024\""),
        "{}",
        run.stderr
    );
}

/// Issue 21, item 10: the default store's name has both ports, so another server behind
/// another port of the same host gets its own store.
#[test]
fn the_default_store_tells_servers_on_two_ports_of_one_host_apart() {
    let h1a = Dovecot::start_default();
    let h1b = Dovecot::start_default();
    let h2 = Dovecot::start_default();
    seed(&h1a, "alice", &Corpus::small());
    let home = tempfile::tempdir().unwrap();
    for h1 in [&h1a, &h1b] {
        let acc = accounts(h1, &h2);
        let run = sync(home.path(), &strs(&acc)).expect_code(0);
        eprintln!(
            "{}",
            run.stderr
                .lines()
                .find(|l| l.starts_with("store:"))
                .unwrap()
        );
    }
    let stores = home.path().join(".local/share/imapferry/stores");
    let n = std::fs::read_dir(&stores).unwrap().count();
    assert_eq!(n, 2, "one store per host1 server");
    // host2 still holds what the first host1 has: nothing was taken for expunged.
    assert_same_contents(
        &contents_of(&h2.account("alice")),
        &contents_of(&h1a.account("alice")),
        "host2",
    );
}
