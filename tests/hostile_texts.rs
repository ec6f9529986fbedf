//! Texts a server chose (folder names, answers, greetings) must neither steer imapferry nor
//! reach a terminal as anything but text: a folder's name sets no wait, and no escape sequence
//! in any answer is printed raw, at any verbosity.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hostile::{body_of, Cmd, Folder, Hostile, Msg, Session};
use common::run::{imapferry, Run};

/// `imapferry pull` from `server` into `store`, one connection, with `extra`.
fn pull_command(server: &Hostile, store: &Path, extra: &[&str]) -> Command {
    let mut c = imapferry();
    c.arg("pull")
        .args(["--host1", "127.0.0.1", "--port1"])
        .arg(server.port().to_string())
        .args(["--tls1", "none", "--user1", "mallory", "--store"])
        .arg(store)
        .args(["--jobs", "1"])
        .args(extra)
        .env("IMAPFERRY_PASSWORD1", "secret");
    c
}

/// Run `cmd`, killed after `limit`: (what it did, whether it finished, its wall time).
fn run_for(mut cmd: Command, limit: Duration) -> (Run, bool, Duration) {
    let t = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run imapferry");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let outs = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let errs = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let mut finished = true;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > limit {
            finished = false;
            child.kill().unwrap();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&outs.join().unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&errs.join().unwrap()).into_owned(),
    };
    (run, finished, t.elapsed())
}

/// Issue 19 item 7: the retry wait was read back from the formatted error, which holds folder
/// names, so a folder named "Suggested Backoff Time: 900000 milliseconds" made a transient
/// failure in it wait a quarter of an hour. Now the wait is the server's, read from its answer
/// where it is classified: the folder's transient failures (a NO quoting its name, then a
/// dropped connection) are retried after the ordinary backoff, and the pull completes in
/// seconds.
#[test]
fn a_folder_name_stating_a_backoff_does_not_set_the_wait() {
    const NAME: &str = "Suggested Backoff Time: 900000 milliseconds";
    let folders = vec![
        Folder::new("INBOX", vec![Msg::new(1, &body_of(300, 1))]),
        Folder::new(NAME, vec![Msg::new(1, &body_of(300, 2))]),
    ];
    let tries = Arc::new(AtomicU32::new(0));
    let t = tries.clone();
    let hook = move |cmd: &Cmd, s: &mut Session| -> std::io::Result<bool> {
        let verb = cmd.verb();
        if (verb == "SELECT" || verb == "EXAMINE") && cmd.line.contains(NAME) {
            match t.fetch_add(1, Ordering::SeqCst) {
                0 => {
                    let no = format!(
                        "{} NO [UNAVAILABLE] Mailbox \"{NAME}\" is busy, try again later\r\n",
                        cmd.tag
                    );
                    s.send(no.as_bytes())?;
                    return Ok(true);
                }
                1 => return Err(std::io::Error::other("dropped")),
                _ => {}
            }
        }
        Ok(false)
    };
    let server = Hostile::start(folders, Some(Arc::new(hook)));
    let dir = tempfile::tempdir().unwrap();
    let (run, finished, took) = run_for(
        pull_command(&server, &dir.path().join("store"), &["--json"]),
        Duration::from_secs(60),
    );
    let waits: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("retrying in"))
        .collect();
    eprintln!(
        "finished: {finished}, exit {}, {took:.1?}, {} SELECT/EXAMINE of the folder; retries:\n{}",
        run.code,
        tries.load(Ordering::SeqCst),
        waits.join("\n")
    );
    assert!(finished, "still waiting after {took:?}:\n{}", run.stderr);
    assert_eq!(run.code, 0, "{}", run.all());
    assert_eq!(waits.len(), 2, "{}", run.stderr);
    assert!(
        waits.iter().all(|w| !w.contains("retrying in 900")),
        "{}",
        run.stderr
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}
