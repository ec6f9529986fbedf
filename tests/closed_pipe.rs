//! Issue 19 item 6: a reader that goes away (`imapferry status --json | head -c 10`) is not an
//! error. Every command that prints is run with its stdout already closed, and again with
//! stdout and stderr both closed (`… 2>&1 | head`): none panics, none prints a word about it,
//! none is killed by a signal, and each exits with the status it has with its readers there
//! (README's exit table): a reader that leaves never turns a failure into a success.

mod common;

use std::path::Path;
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

/// One command to run with its readers gone: its arguments (`{new}` stands for a path that
/// must not exist yet, fresh for each run), environment, and the exit status it has anyway.
struct Case {
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    code: i32,
}

impl Case {
    fn new(name: &str, code: i32, args: &[&str]) -> Case {
        Case {
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            code,
        }
    }

    /// The case with `--json` added (and its name saying so).
    fn json(&self) -> Case {
        let mut c = Case {
            name: format!("{} --json", self.name),
            args: self.args.clone(),
            env: self.env.clone(),
            code: self.code,
        };
        c.args.push("--json".into());
        c
    }

    /// The command, `{new}` replaced by `fresh`.
    fn command(&self, fresh: &Path) -> Command {
        let mut c = imapferry();
        c.args(self.args.iter().map(|a| a.replace("{new}", &s(fresh))));
        c.envs(self.env.iter().map(|(k, v)| (k, v)));
        c
    }
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// The options of host `n` (`1` or `2`) and its password's variable.
fn host(case: &mut Case, n: &str, server: &Dovecot) {
    let port = server.port().to_string();
    for a in [
        "--host",
        "127.0.0.1",
        "--port",
        &port,
        "--tls",
        "none",
        "--user",
        "alice",
    ] {
        case.args.push(if a.starts_with("--") {
            format!("{a}{n}")
        } else {
            a.into()
        });
    }
    case.env.push((
        format!("IMAPFERRY_PASSWORD{n}"),
        server.password("alice").into(),
    ));
}

/// `pull`, `push`, `check` or `sync` between `host1` and `host2` through `store`.
fn online(verb: &str, host1: &Dovecot, host2: &Dovecot, store: &Path) -> Case {
    let mut c = Case::new(verb, 0, &[verb, "--store", &s(store)]);
    if verb == "pull" || verb == "sync" {
        host(&mut c, "1", host1);
    }
    if verb != "pull" {
        host(&mut c, "2", host2);
    }
    c
}

/// Every command that prints, without and with `--json`, over a store pulled from `host1` and
/// pushed to `host2`, a bundle, an mbox file and a fleet under `root`.
fn cases(host1: &Dovecot, host2: &Dovecot, root: &Path) -> Vec<Case> {
    let store = root.join("store");
    for verb in ["pull", "push"] {
        let out = online(verb, host1, host2, &store)
            .command(root)
            .output()
            .unwrap();
        assert!(out.status.success(), "{verb}: {out:?}");
    }
    let (bundle, mbox) = (root.join("first.bundle"), root.join("mbox"));
    for args in [
        [
            "bundle",
            "create",
            "--store",
            &s(&store),
            "--out",
            &s(&bundle),
        ]
        .as_slice(),
        &[
            "export",
            "--store",
            &s(&store),
            "--format",
            "mbox",
            "--out",
            &s(&mbox),
        ],
    ] {
        let out = Case::new("setup", 0, args).command(root).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
    }
    let accounts = root.join("accounts.txt");
    std::fs::write(
        &accounts,
        format!(
            "127.0.0.1;alice;env:PW1;127.0.0.1;alice;env:PW2;--port1 {} --tls1 none --port2 {} \
             --tls2 none;\n",
            host1.port(),
            host2.port()
        ),
    )
    .unwrap();
    let stores = s(&root.join("stores"));
    let mut fleet = Case::new(
        "fleet run",
        0,
        &[
            "fleet",
            "run",
            &s(&accounts),
            "--stores",
            &stores,
            "--parallel",
            "1",
        ],
    );
    fleet
        .env
        .push(("PW1".into(), host1.password("alice").into()));
    fleet
        .env
        .push(("PW2".into(), host2.password("alice").into()));
    // The fleet's account runs once first, so that `fleet status` has one to show.
    assert_eq!(fleet.command(root).status().unwrap().code(), Some(0));

    let st = s(&store);
    let mut with_json = vec![
        Case::new("status", 0, &["status", "--store", &st]),
        Case::new(
            "status of no store",
            1,
            &["status", "--store", "/nonexistent/store"],
        ),
        Case::new("verify", 0, &["verify", "--store", &st]),
        Case::new("gc", 0, &["gc", "--store", &st]),
        Case::new(
            "bundle create",
            0,
            &[
                "bundle", "create", "--full", "--store", &st, "--out", "{new}",
            ],
        ),
        Case::new(
            "bundle apply",
            0,
            &["bundle", "apply", "--store", "{new}", &s(&bundle)],
        ),
        Case::new(
            "export",
            0,
            &[
                "export", "--store", &st, "--format", "maildir", "--out", "{new}",
            ],
        ),
        Case::new(
            "import",
            0,
            &[
                "import",
                "--mbox",
                &s(&mbox.join("INBOX.mbox")),
                "--store",
                "{new}",
            ],
        ),
        fleet,
        Case::new("fleet status", 0, &["fleet", "status", "--stores", &stores]),
    ];
    with_json.extend(["pull", "push", "check", "sync"].map(|v| online(v, host1, host2, &store)));
    let mut all = vec![
        Case::new("--help", 0, &["--help"]),
        Case::new("help pull", 0, &["help", "pull"]),
        Case::new("push --help", 0, &["push", "--help"]),
        Case::new("--version", 0, &["--version"]),
        Case::new("bad usage", 2, &["status", "--nonsense"]),
        Case::new("bundle list", 0, &["bundle", "list", "--store", &st]),
    ];
    all.extend(with_json.iter().map(Case::json));
    all.extend(with_json);
    all
}

#[test]
fn every_command_that_prints_ends_quietly_with_its_own_status_when_its_reader_goes_away() {
    let host1 = Dovecot::start(DovecotConfig::new());
    let host2 = Dovecot::start(DovecotConfig::new());
    seed(&host1, "alice", &Corpus::small());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut wrong = Vec::new();
    let mut n = 0;
    let mut fresh = || {
        n += 1;
        root.join(format!("new-{n}"))
    };
    for c in cases(&host1, &host2, root) {
        // With its readers there, to check the expected status and that it prints.
        let open = c.command(&fresh()).output().unwrap();
        assert_eq!(open.status.code(), Some(c.code), "{}: {open:?}", c.name);
        assert!(
            !open.stdout.is_empty() || !open.stderr.is_empty(),
            "{}: prints nothing, so this case tests nothing",
            c.name
        );
        for closed in [Closed::Stdout, Closed::Both] {
            let (code, stderr) = with_closed(c.command(&fresh()), closed);
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
