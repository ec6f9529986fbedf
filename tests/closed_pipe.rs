//! Issue 19 item 6: a reader that goes away (`imapferry status --json | head -c 10`) is not an
//! error. Every command that prints is run with its stdout already closed, and again with
//! stdout and stderr both closed (`… 2>&1 | head`): none panics, none prints a word about it,
//! none is killed by a signal, and each exits with the status it has with its readers there
//! (README's exit table): a reader that leaves never turns a failure into a success.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::run::imapferry;
use common::{seed, Corpus, Dovecot, DovecotConfig};

/// Which of the command's outputs have no reader.
#[derive(Debug, Clone, Copy)]
enum Closed {
    Stdout,
    Both,
}

/// Run `cmd` with the read end of its stdout (and of its stderr, for [`Closed::Both`]) closed
/// before it writes anything; its exit status and, for [`Closed::Stdout`], what it wrote on
/// stderr.
fn with_closed(mut cmd: Command, closed: Closed) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let err_file = dir.path().join("stderr");
    cmd.stdout(Stdio::piped());
    match closed {
        Closed::Stdout => cmd.stderr(std::fs::File::create(&err_file).unwrap()),
        Closed::Both => cmd.stderr(Stdio::piped()),
    };
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            panic!("still running after 120 s: {cmd:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), None, "killed by a signal: {cmd:?}");
    let stderr = std::fs::read_to_string(&err_file).unwrap_or_default();
    (status.code(), stderr)
}

struct Case {
    name: String,
    /// The command; called once per run, with a fresh number for paths that must be new.
    make: Box<dyn Fn(usize) -> Command>,
    code: i32,
}

fn case(name: &str, code: i32, make: impl Fn(usize) -> Command + 'static) -> Case {
    Case {
        name: name.into(),
        make: Box::new(make),
        code,
    }
}

/// `imapferry ARGS…`
fn cmd(args: &[&str]) -> Command {
    let mut c = imapferry();
    c.args(args);
    c
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// A host's options for `verb` (`1` host1, `2` host2), the password in the environment.
fn host(c: &mut Command, n: &str, server: &Dovecot) {
    c.arg(format!("--host{n}"))
        .arg("127.0.0.1")
        .arg(format!("--port{n}"))
        .arg(server.port().to_string())
        .arg(format!("--tls{n}"))
        .arg("none")
        .arg(format!("--user{n}"))
        .arg("alice")
        .env(format!("IMAPFERRY_PASSWORD{n}"), server.password("alice"));
}

fn online(verb: &str, host1: &Dovecot, host2: &Dovecot, store: &Path, extra: &[&str]) -> Command {
    let mut c = imapferry();
    c.arg(verb);
    if verb == "pull" || verb == "sync" {
        host(&mut c, "1", host1);
    }
    if verb != "pull" {
        host(&mut c, "2", host2);
    }
    c.arg("--store").arg(store).args(extra);
    c
}

#[test]
fn every_command_that_prints_ends_quietly_with_its_own_status_when_its_reader_goes_away() {
    let host1 = Dovecot::start(DovecotConfig::new());
    let host2 = Dovecot::start(DovecotConfig::new());
    seed(&host1, "alice", &Corpus::small());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let store = root.join("store");
    online("pull", &host1, &host2, &store, &[])
        .output()
        .unwrap();
    online("push", &host1, &host2, &store, &[])
        .output()
        .unwrap();
    let bundle = root.join("first.bundle");
    let ok = cmd(&[
        "bundle",
        "create",
        "--store",
        &s(&store),
        "--out",
        &s(&bundle),
    ])
    .output()
    .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let mbox = root.join("mbox");
    let ok = cmd(&[
        "export",
        "--store",
        &s(&store),
        "--format",
        "mbox",
        "--out",
        &s(&mbox),
    ])
    .output()
    .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    let inbox_mbox = s(&mbox.join("INBOX.mbox"));
    let accounts = root.join("accounts.txt");
    std::fs::write(
        &accounts,
        format!(
            "127.0.0.1;alice;env:PW1;127.0.0.1;alice;env:PW2;--port1 {} --tls1 none --port2 {} --tls2 none;\n",
            host1.port(),
            host2.port()
        ),
    )
    .unwrap();
    let stores = root.join("stores");
    let fleet = {
        let (accounts, stores) = (accounts.clone(), stores.clone());
        let (pw1, pw2) = (
            host1.password("alice").to_string(),
            host2.password("alice").to_string(),
        );
        move |extra: &[&str]| {
            let mut c = cmd(&["fleet", "run"]);
            c.arg(&accounts)
                .arg("--stores")
                .arg(&stores)
                .args(["--parallel", "1"])
                .args(extra)
                .env("PW1", &pw1)
                .env("PW2", &pw2);
            c
        }
    };
    let fresh = move |what: &str, n: usize| -> PathBuf { root.join(format!("{what}-{n}")) };

    let st = s(&store);
    let mut cases = vec![
        case("--help", 0, |_| cmd(&["--help"])),
        case("help pull", 0, |_| cmd(&["help", "pull"])),
        case("push --help", 0, |_| cmd(&["push", "--help"])),
        case("--version", 0, |_| cmd(&["--version"])),
        case("bad usage", 2, |_| cmd(&["status", "--nonsense"])),
    ];
    for json in [false, true] {
        let j: &[&str] = if json { &["--json"] } else { &[] };
        let tag = |n: &str| format!("{n}{}", if json { " --json" } else { "" });
        let with = |args: &[&str]| {
            let mut v: Vec<String> = args.iter().map(|a| a.to_string()).collect();
            v.extend(j.iter().map(|a| a.to_string()));
            v
        };
        let a = with(&["status", "--store", &st]);
        cases.push(case(&tag("status"), 0, move |_| {
            cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
        }));
        let a = with(&["status", "--store", "/nonexistent/store"]);
        cases.push(case(&tag("status of no store"), 1, move |_| {
            cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
        }));
        let a = with(&["verify", "--store", &st]);
        cases.push(case(&tag("verify"), 0, move |_| {
            cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
        }));
        let a = with(&["gc", "--store", &st]);
        cases.push(case(&tag("gc"), 0, move |_| {
            cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
        }));
        let a = with(&["bundle", "list", "--store", &st]);
        if !json {
            cases.push(case("bundle list", 0, move |_| {
                cmd(&a.iter().map(String::as_str).collect::<Vec<_>>())
            }));
        }
        let (st2, fr) = (st.clone(), fresh.clone());
        let jj = j.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        cases.push(case(&tag("bundle create"), 0, move |n| {
            let mut c = cmd(&["bundle", "create", "--full", "--store", &st2, "--out"]);
            c.arg(fr("bundle", n)).args(&jj);
            c
        }));
        let (fr, b, jj) = (
            fresh.clone(),
            s(&bundle),
            j.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        cases.push(case(&tag("bundle apply"), 0, move |n| {
            let mut c = cmd(&["bundle", "apply", "--store"]);
            c.arg(fr("applied", n)).arg(&b).args(&jj);
            c
        }));
        let (st2, fr, jj) = (
            st.clone(),
            fresh.clone(),
            j.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        cases.push(case(&tag("export"), 0, move |n| {
            let mut c = cmd(&["export", "--store", &st2, "--format", "maildir", "--out"]);
            c.arg(fr("export", n)).args(&jj);
            c
        }));
        let (fr, m, jj) = (
            fresh.clone(),
            inbox_mbox.clone(),
            j.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        cases.push(case(&tag("import"), 0, move |n| {
            let mut c = cmd(&["import", "--mbox", &m, "--store"]);
            c.arg(fr("import", n)).args(&jj);
            c
        }));
        for verb in ["pull", "push", "check", "sync"] {
            let (h1, h2) = (host1.port(), host2.port());
            let (p1, p2) = (
                host1.password("alice").to_string(),
                host2.password("alice").to_string(),
            );
            let (store, jj) = (
                store.clone(),
                j.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            );
            cases.push(case(&tag(verb), 0, move |_| {
                let mut c = imapferry();
                c.arg(verb);
                let mut side = |n: &str, port: u16, pw: &str| {
                    c.arg(format!("--host{n}"))
                        .arg("127.0.0.1")
                        .arg(format!("--port{n}"))
                        .arg(port.to_string())
                        .arg(format!("--tls{n}"))
                        .arg("none")
                        .arg(format!("--user{n}"))
                        .arg("alice")
                        .env(format!("IMAPFERRY_PASSWORD{n}"), pw);
                };
                if verb == "pull" || verb == "sync" {
                    side("1", h1, &p1);
                }
                if verb != "pull" {
                    side("2", h2, &p2);
                }
                c.arg("--store").arg(&store).args(&jj);
                c
            }));
        }
        let f = fleet.clone();
        let jj = j.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        cases.push(case(&tag("fleet run"), 0, move |_| {
            let args: Vec<&str> = jj.iter().map(String::as_str).collect();
            f(&args)
        }));
        let (stores, jj) = (
            stores.clone(),
            j.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        );
        cases.push(case(&tag("fleet status"), 0, move |_| {
            let mut c = cmd(&["fleet", "status", "--stores"]);
            c.arg(&stores).args(&jj);
            c
        }));
    }
    // The fleet's accounts run once first, so that `fleet status` has one to show.
    assert_eq!(fleet(&[]).status().unwrap().code(), Some(0));

    let mut wrong = Vec::new();
    let mut n = 0;
    for c in &cases {
        // With its readers there, to know what it prints and to check the expected status.
        n += 1;
        let open = (c.make)(n).output().unwrap();
        assert_eq!(open.status.code(), Some(c.code), "{}: {open:?}", c.name);
        assert!(
            !open.stdout.is_empty() || !open.stderr.is_empty(),
            "{}: prints nothing, so this case tests nothing",
            c.name
        );
        for closed in [Closed::Stdout, Closed::Both] {
            n += 1;
            let (code, stderr) = with_closed((c.make)(n), closed);
            let noisy = ["panicked", "Broken pipe", "backtrace", "cannot write"]
                .iter()
                .any(|w| stderr.contains(w));
            eprintln!("{} ({closed:?} closed): exit {code:?}", c.name);
            if code != Some(c.code) || noisy {
                wrong.push(format!(
                    "{} ({closed:?} closed): exit {code:?}, wanted {}; stderr:\n{stderr}",
                    c.name, c.code
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
