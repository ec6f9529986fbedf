//! A person's first hour (issue 12): mistakes fail in seconds with the option that fixes them
//! named, exit 2 for bad usage, nothing left behind by a run that never logged in, and a JSON
//! document for scripts even when the run stopped on an error. Each case runs the binary and
//! bounds its wall time.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use common::run::{imapferry, pull, Run};
use common::{Dovecot, DovecotConfig};

/// Run `cmd` and return what it did and how long it took.
fn timed(cmd: &mut std::process::Command) -> (Run, Duration) {
    let started = Instant::now();
    let run: Run = cmd.output().expect("run imapferry").into();
    (run, started.elapsed())
}

/// `imapferry pull` with these host1 options (password from the environment) into `store`.
fn pull_with(store: &Path, host1: &[&str], password: &str) -> std::process::Command {
    let mut c = imapferry();
    c.arg("pull")
        .args(host1)
        .arg("--store")
        .arg(store)
        .env("IMAPFERRY_PASSWORD1", password);
    c
}

/// `pull` from 127.0.0.1:`port` with `--tls1 tls` as alice (password "x") into `store`, timed.
fn attempt(store: &Path, port: &str, tls: &str) -> (Run, Duration) {
    let host1 = [
        "--host1",
        "127.0.0.1",
        "--port1",
        port,
        "--tls1",
        tls,
        "--user1",
        "alice",
    ];
    timed(&mut pull_with(store, &host1, "x"))
}

/// A loopback port with nothing listening on it.
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A loopback server that is not IMAP: on each connection it writes `banner` (nothing when
/// empty, like a web server waiting for a request) and keeps the connection open.
fn not_imap(banner: &'static [u8]) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(banner);
            held.push(s);
        }
    });
    port
}

fn assert_fast_failure(run: &Run, took: Duration, within: Duration, wants: &[&str]) {
    assert_eq!(run.code, 1, "stderr:\n{}", run.stderr);
    assert!(
        took < within,
        "took {took:?} (bound {within:?}):\n{}",
        run.stderr
    );
    for w in wants {
        assert!(
            run.stderr.contains(w),
            "stderr lacks {w:?}:\n{}",
            run.stderr
        );
    }
    eprintln!("{took:.1?}: {}", run.stderr.trim().replace('\n', " | "));
}

#[test]
fn connection_mistakes_fail_in_seconds_naming_the_option_and_leave_no_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = closed_port().to_string();
    let (run, took) = attempt(&store, &port, "none");
    assert_fast_failure(
        &run,
        took,
        Duration::from_secs(3),
        &["hint:", "--port1", "refused"],
    );
    assert!(!store.exists(), "a run that never logged in made a store");

    // A program that speaks first, but not IMAP (an SSH server on the port).
    let ssh = not_imap(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n").to_string();
    let (run, took) = attempt(&store, &ssh, "none");
    assert_fast_failure(
        &run,
        took,
        Duration::from_secs(3),
        &["not an IMAP", "--port1"],
    );

    // One that waits for the client to speak (a web server): the greeting deadline.
    let web = not_imap(b"").to_string();
    let (run, took) = attempt(&store, &web, "none");
    assert_fast_failure(
        &run,
        took,
        Duration::from_secs(15),
        &["no IMAP greeting", "--tls1"],
    );

    // Implicit TLS against a plain IMAP port, and plain IMAP against the TLS port.
    let server = Dovecot::start(DovecotConfig::new().tls());
    let plain = server.port().to_string();
    let (run, took) = attempt(&store, &plain, "imaps");
    assert_fast_failure(
        &run,
        took,
        Duration::from_secs(3),
        &["TLS", "--tls1 starttls"],
    );
    let imaps = server.imaps_port().to_string();
    let (run, took) = attempt(&store, &imaps, "none");
    assert_fast_failure(&run, took, Duration::from_secs(15), &["--port1", "--tls1"]);
    assert!(!store.exists(), "a run that never logged in made a store");
}

#[test]
fn a_wrong_user_or_password_fails_at_once_and_binds_no_store() {
    let server = Dovecot::start_default();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = server.port().to_string();
    let host1 = |user: &'static str| -> Vec<String> {
        [
            "--host1",
            "127.0.0.1",
            "--port1",
            &port,
            "--tls1",
            "none",
            "--user1",
            user,
        ]
        .map(String::from)
        .to_vec()
    };
    let args = host1("alcie");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (run, took) = timed(&mut pull_with(&store, &args, server.password("alice")));
    assert_fast_failure(
        &run,
        took,
        Duration::from_secs(10),
        &["cannot log in to host1 as alcie", "--user1"],
    );
    assert!(!store.exists(), "a failed login made a store");

    // Fixed, the same command works: the store was never bound to the typo.
    pull(&server, "alice", &store, &[]).expect_code(0);
}

#[test]
fn the_same_account_under_another_host_name_needs_rebind_and_says_so() {
    let server = Dovecot::start_default();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    pull(&server, "alice", &store, &[]).expect_code(0);
    let port = server.port().to_string();
    let args = [
        "--host1",
        "localhost",
        "--port1",
        &port,
        "--tls1",
        "none",
        "--user1",
        "alice",
    ];
    let (run, took) = timed(&mut pull_with(&store, &args, server.password("alice")));
    assert_fast_failure(&run, took, Duration::from_secs(3), &["--rebind"]);
    let mut rebind = pull_with(&store, &args, server.password("alice"));
    rebind.arg("--rebind");
    let run: Run = rebind.output().unwrap().into();
    let run = run.expect_code(0);
    assert!(
        run.stderr.contains("now mirrors alice on localhost"),
        "{}",
        run.stderr
    );
}

#[test]
fn bad_usage_exits_2_before_any_prompt_or_connection() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let base = [
        "--host1",
        "127.0.0.1",
        "--port1",
        "1",
        "--tls1",
        "none",
        "--user1",
        "alice",
    ];
    let cases: &[(&[&str], &str)] = &[
        (&["--exclude", "(unclosed"], "regex"),
        (&["--passfile1", "/nonexistent/pass"], "--passfile1"),
        (&["--timeout", "0"], "--timeout"),
        (&["--max-bytes-per-second", "0"], "--max-bytes-per-second"),
        (
            &["--max-bytes-per-second", "fast"],
            "--max-bytes-per-second",
        ),
    ];
    for (extra, wants) in cases {
        let mut c = imapferry();
        c.arg("pull")
            .args(base)
            .arg("--store")
            .arg(&store)
            .args(*extra);
        let (run, took) = timed(&mut c);
        assert_eq!(run.code, 2, "{extra:?}: {}", run.stderr);
        assert!(run.stderr.contains(wants), "{extra:?}: {}", run.stderr);
        assert!(took < Duration::from_secs(2), "{extra:?} took {took:?}");
    }
    // The host with its port typed in: said before any lookup.
    let mut c = imapferry();
    c.arg("pull")
        .args([
            "--host1",
            "imap.example.org:993",
            "--user1",
            "alice",
            "--store",
        ])
        .arg(&store);
    let run: Run = c.output().unwrap().into();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--host1 imap.example.org --port1 993"),
        "{}",
        run.stderr
    );
    // A store that does not exist, for push: said before any password is asked for.
    let mut c = imapferry();
    c.arg("push")
        .args(["--host2", "127.0.0.1", "--user2", "bob", "--store"])
        .arg(dir.path().join("nothing"));
    let run: Run = c.output().unwrap().into();
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("not an imapferry store"),
        "{}",
        run.stderr
    );
    assert!(!store.exists());
}

#[test]
fn sizes_and_rates_take_suffixes_and_an_explicit_password_beats_the_environment() {
    let server = Dovecot::start_default();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = server.port().to_string();
    let mut c = pull_with(
        &store,
        &[
            "--host1",
            "127.0.0.1",
            "--port1",
            &port,
            "--tls1",
            "none",
            "--user1",
            "alice",
        ],
        "wrong-from-the-environment",
    );
    c.args(["--password1", server.password("alice")])
        .args(["--max-bytes-per-second", "8M"]);
    let run: Run = c.output().unwrap().into();
    run.expect_code(0);
}

#[test]
fn json_is_printed_also_when_an_error_stops_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().to_string();
    let mut c = pull_with(
        &dir.path().join("store"),
        &[
            "--host1",
            "127.0.0.1",
            "--port1",
            &port,
            "--tls1",
            "none",
            "--user1",
            "alice",
        ],
        "x",
    );
    c.arg("--json");
    let run: Run = c.output().unwrap().into();
    assert_eq!(run.code, 1);
    let j = run.json();
    assert!(j["error"].as_str().unwrap().contains("refused"), "{j}");
    assert!(j["hint"].as_str().unwrap().contains("--port1"), "{j}");
    assert_eq!(j["exit_status"], 1);

    let mut c = pull_with(
        &dir.path().join("store"),
        &["--host1", "127.0.0.1", "--user1", "alice", "--exclude", "("],
        "x",
    );
    c.arg("--json");
    let run: Run = c.output().unwrap().into();
    assert_eq!(run.code, 2);
    assert_eq!(run.json()["exit_status"], 2);
}

#[test]
fn the_summary_goes_to_stdout_and_each_run_is_logged_in_the_store_without_the_password() {
    use std::os::unix::fs::PermissionsExt;
    let server = Dovecot::start(DovecotConfig::new());
    common::seed(&server, "alice", &common::Corpus::small());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = server.port().to_string();
    let password = server.password("alice");
    let args = [
        "--host1",
        "127.0.0.1",
        "--port1",
        &port,
        "--tls1",
        "none",
        "--user1",
        "alice",
    ];
    let run: Run = pull_with(&store, &args, password).output().unwrap().into();
    let run = run.expect_code(0);
    assert!(run.stdout.starts_with("pull: "), "stdout: {}", run.stdout);
    assert!(!run.stderr.contains("pull: "), "stderr: {}", run.stderr);
    let logs: Vec<_> = std::fs::read_dir(store.join("logs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let meta = std::fs::metadata(&logs[0]).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&logs[0]).unwrap();
    assert!(text.contains("pull: ") && text.contains("INBOX"), "{text}");
    assert!(!text.contains(password), "the log holds the password");
    eprintln!("{}:\n{text}", logs[0].display());
    let again: Run = pull_with(&store, &args, password).output().unwrap().into();
    again.expect_code(0);
    assert_eq!(std::fs::read_dir(store.join("logs")).unwrap().count(), 2);
    common::run::imapferry()
        .args(["verify", "--store"])
        .arg(&store)
        .status()
        .map(|s| assert!(s.success(), "verify takes the logs directory"))
        .unwrap();
}

#[test]
fn dry_runs_show_the_plan_and_change_nothing() {
    let h1 = Dovecot::start(DovecotConfig::new());
    let h2 = Dovecot::start(DovecotConfig::new());
    let corpus = common::Corpus::small();
    common::seed(&h1, "alice", &corpus);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = h1.port().to_string();
    let args = [
        "--host1",
        "127.0.0.1",
        "--port1",
        &port,
        "--tls1",
        "none",
        "--user1",
        "alice",
    ];
    let mut dry = pull_with(&store, &args, h1.password("alice"));
    dry.arg("--dry-run");
    let run: Run = dry.output().unwrap().into();
    let run = run.expect_code(0);
    let want = format!("{} messages to fetch", corpus.messages.len());
    assert!(run.stdout.contains(&want), "{}", run.stdout);
    assert!(run.stdout.contains("nothing was changed"), "{}", run.stdout);
    assert!(!store.exists(), "a dry run made a store");

    pull_with(&store, &args, h1.password("alice"))
        .output()
        .map(|o| assert!(o.status.success()))
        .unwrap();
    let index = std::fs::read(store.join("index.sqlite")).unwrap();
    let mut dry = pull_with(&store, &args, h1.password("alice"));
    dry.arg("--dry-run");
    let run: Run = dry.output().unwrap().into();
    assert!(
        run.expect_code(0).stdout.contains("0 messages to fetch"),
        "an up-to-date store has nothing to fetch"
    );
    assert_eq!(std::fs::read(store.join("index.sqlite")).unwrap(), index);

    let mut push = imapferry();
    push.arg("push")
        .args(["--host2", "127.0.0.1", "--port2"])
        .arg(h2.port().to_string())
        .args(["--tls2", "none", "--user2", "alice", "--dry-run", "--store"])
        .arg(&store)
        .env("IMAPFERRY_PASSWORD2", h2.password("alice"));
    let run: Run = push.output().unwrap().into();
    let run = run.expect_code(0);
    eprintln!("{}{}", run.stderr, run.stdout);
    assert!(run.stderr.contains("(to create)"), "{}", run.stderr);
    let want = format!("{} to send", corpus.messages.len());
    assert!(run.stdout.contains(&want), "{}", run.stdout);
    assert!(
        !run.stdout.contains(" sent") && !run.stdout.contains("/s)"),
        "{}",
        run.stdout
    );
    let on_host2 = common::offline::contents_of(&h2.account("alice"));
    assert!(
        on_host2.values().all(|v| v.is_empty()),
        "a dry run sent mail"
    );
}

#[test]
fn status_shows_folder_names_wider_than_any_column() {
    let server = Dovecot::start(DovecotConfig::new());
    let long = format!("{}日本語{}", "A".repeat(150), "b".repeat(80));
    let corpus = common::Corpus {
        folders: vec!["INBOX".into(), long.clone()],
        messages: vec![common::CorpusMessage {
            folder: long.clone(),
            bytes: b"Subject: wide\r\n\r\nwide\r\n".to_vec(),
            flags: Vec::new(),
            internaldate: "05-Mar-2021 14:03:07 +0100".into(),
        }],
    };
    common::seed(&server, "alice", &corpus);
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    pull(&server, "alice", &store, &[]).expect_code(0);
    let run: Run = imapferry()
        .args(["status", "--store"])
        .arg(&store)
        .env("COLUMNS", "60")
        .output()
        .unwrap()
        .into();
    let run = run.expect_code(0);
    assert!(run.stdout.contains(&long), "{}", run.stdout);
}

/// Issue 21, item 7: the run log's path is in the summary and in the JSON report.
#[test]
fn the_run_log_is_named_in_the_summary_and_the_json() {
    let server = Dovecot::start(DovecotConfig::new());
    common::seed(&server, "alice", &common::Corpus::small());
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let port = server.port().to_string();
    let args = [
        "--host1",
        "127.0.0.1",
        "--port1",
        &port,
        "--tls1",
        "none",
        "--user1",
        "alice",
    ];
    let run: Run = pull_with(&store, &args, server.password("alice"))
        .output()
        .unwrap()
        .into();
    let run = run.expect_code(0);
    let line = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("log: "))
        .unwrap_or_else(|| panic!("no log line:\n{}", run.stdout));
    assert!(Path::new(line).exists() && line.starts_with(store.join("logs").to_str().unwrap()));
    let mut json = pull_with(&store, &args, server.password("alice"));
    json.arg("--json");
    let run: Run = json.output().unwrap().into();
    let j = run.expect_code(0).json();
    let log = j["log"].as_str().unwrap_or_else(|| panic!("no log in {j}"));
    assert!(Path::new(log).exists(), "{log}");
}

/// Issue 21, item 6: Ctrl-C (SIGINT) and SIGTERM stop a pull with a line saying how to go on,
/// written in the run log too, exit 130 and 143; the next run finishes the store exactly.
#[test]
fn ctrl_c_says_how_to_resume_logs_it_and_exits_130() {
    let server = Dovecot::start_default();
    let mut corpus = common::Corpus::small();
    corpus
        .messages
        .extend(common::Corpus::one_large(4_000_000).messages);
    common::seed(&server, "alice", &corpus);
    let slow = common::Proxy::start(
        server.port(),
        common::Faults {
            bandwidth: Some(500_000),
            shared_bandwidth: true,
            ..common::Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let store = dir.path().join(format!("store-{signal}"));
        let child = common::run::pull_command_via(slow.port(), &server, "alice", &store, &[])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Once the run has started writing into its log.
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline
            && std::fs::read_dir(store.join("logs")).map_or(0, |d| d.count()) == 0
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_millis(1500));
        std::process::Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let run: Run = out.into();
        eprintln!("SIG{signal}: exit {}\n{}", run.code, run.stderr);
        assert_eq!(run.code, code, "{}", run.stderr);
        let said = "interrupted: run the same command again to resume (nothing is lost)";
        assert!(run.stderr.contains(said), "{}", run.stderr);
        let mut logs: Vec<_> = std::fs::read_dir(store.join("logs"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        logs.sort();
        let text = std::fs::read_to_string(logs.last().unwrap()).unwrap();
        assert!(
            text.lines().last().unwrap_or_default().ends_with(said),
            "the log does not end with it:\n{text}"
        );
        pull(&server, "alice", &store, &[]).expect_code(0);
        common::run::assert_store_matches_server(&store, &server, "alice");
    }
}

/// Issue 21, item 10: the two password prompts of `sync` say which side, host and port they
/// are for (run on a terminal: `script` gives the binary one), and imapsync's password
/// variable, set and ignored, is said.
#[test]
fn each_password_prompt_names_its_side_and_imapsyncs_variable_is_said() {
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("SKIPPED: util-linux's script is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port().to_string();
    let cmd = format!(
        "'{}' sync --host1 127.0.0.1 --port1 {port} --notls1 --user1 alice --host2 localhost \
         --port2 {port} --notls2 --user2 bob --store '{}'",
        common::run::binary().display(),
        dir.path().join("store").display()
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'one\\ntwo\\n' | script -qec \"{cmd}\" /dev/null"
        ))
        .env_remove("IMAPFERRY_PASSWORD1")
        .env_remove("IMAPFERRY_PASSWORD2")
        .env("IMAPSYNC_PASSWORD1", "from-imapsync")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}");
    assert!(
        text.contains(&format!(
            "Password for alice on host1 (127.0.0.1 port {port}): "
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "Password for bob on host2 (localhost port {port}): "
        )),
        "{text}"
    );
    assert!(
        text.contains("IMAPSYNC_PASSWORD1 is set but not read")
            && text.contains("IMAPFERRY_PASSWORD1"),
        "{text}"
    );
}

/// Issue 21, item 10: a regex error is shown on its own lines (not with `\u{a}` escapes), and
/// a store in use names the process holding it.
#[test]
fn regex_errors_keep_their_lines_and_a_busy_store_names_its_holder() {
    let mut c = imapferry();
    c.args([
        "pull",
        "--host1",
        "h",
        "--user1",
        "u",
        "--store",
        "/nonexistent",
    ])
    .args(["--exclude", "(unclosed"]);
    let run: Run = c.output().unwrap().into();
    assert_eq!(run.code, 2);
    assert!(!run.stderr.contains("\\u{a}"), "{}", run.stderr);
    assert!(run.stderr.lines().count() >= 3, "{}", run.stderr);

    let server = Dovecot::start_default();
    common::seed(&server, "alice", &common::Corpus::one_large(3_000_000));
    let slow = common::Proxy::start(
        server.port(),
        common::Faults {
            bandwidth: Some(500_000),
            ..common::Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let mut first = common::run::pull_command_via(slow.port(), &server, "alice", &store, &[])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !store.join("logs").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = pull(&server, "alice", &store, &[]);
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(second.code, 1, "{}", second.stderr);
    let want = format!("in use by another imapferry process (PID {})", first.id());
    assert!(second.stderr.contains(&want), "{}", second.stderr);
}

/// Issue 21, item 10: the README's table of `pull` options names every option `pull --help`
/// shows (it lacked imapsync's switches, `--timeout1`, `--authuser1` and `--repair`).
#[test]
fn the_readme_names_every_option_of_pull() {
    let run: Run = imapferry()
        .args(["pull", "--help"])
        .output()
        .unwrap()
        .into();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("### `pull` options").expect("the pull table");
    let table = &readme[start..];
    let table = &table[..table.find("\n\n").map_or(table.len(), |e| {
        table[e + 2..]
            .find("\n\n")
            .map_or(table.len(), |f| e + 2 + f)
    })];
    let re = regex::Regex::new(r"--[a-z0-9][a-z0-9-]*").unwrap();
    let mut missing: Vec<&str> = re
        .find_iter(&run.stdout)
        .map(|m| m.as_str())
        .filter(|o| *o != "--help")
        .filter(|o| {
            let named = regex::Regex::new(&format!("{}([^a-z0-9-]|$)", regex::escape(o))).unwrap();
            !named.is_match(table)
        })
        .collect();
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "the README's pull table lacks {missing:?}"
    );
}
