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

/// Escape sequences a hostile server puts in its answers: a window title (OSC 0), the
/// clipboard (OSC 52), clear screen (CSI), the C1 CSI, a bidi override, BEL and DEL.
const E: &str = "\u{1b}]0;pwned\u{7}\u{1b}]52;c;cHduZWQ=\u{7}\u{1b}[2J\u{9b}31m\u{202e}\u{7f}";

/// The bytes of `out` a terminal would act on: C0 controls but LF, DEL, C1 (as UTF-8) and
/// bidirectional overrides, with where they are.
fn raw_controls(out: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(out);
    text.char_indices()
        .filter(|(_, c)| *c != '\n' && imapferry::text::needs_escape(*c))
        .map(|(i, c)| {
            let from = text[..i].rfind('\n').map_or(0, |p| p + 1);
            format!("U+{:04X} in {:?}", u32::from(c), &text[from..i])
        })
        .collect()
}

/// Issue 19 item 4: with `-v`, host1's tagged NO to COMPRESS reached stderr raw. A scripted
/// host1 puts escape sequences in every answer (greeting, CAPABILITY, LOGIN, an ALERT,
/// COMPRESS's NO, LIST names, SELECT's texts, a folder's refusal, an INTERNALDATE, a keyword,
/// BYE); run with `-q`, nothing, `-v`, `-vv` and `--json -vv`, nothing on stdout, stderr or in
/// the run log holds a control character (but line feeds) or a bidi override.
#[test]
fn escape_sequences_in_every_answer_never_reach_the_terminal_or_the_log_raw() {
    let mut odd_date = Msg::new(2, &body_of(200, 2));
    odd_date.internaldate = format!("\"{E}\"").into_bytes();
    let mut keyword = Msg::new(3, &body_of(200, 3));
    keyword.flags = format!("\\Seen $k{}", "\u{1b}]0;kw\u{7}");
    let mut list_named = Folder::new(&format!("List{E}"), vec![Msg::new(1, &body_of(200, 4))]);
    list_named.list_name = {
        let mut v = format!("{{{}}}\r\n", format!("List{E}").len()).into_bytes();
        v.extend_from_slice(format!("List{E}").as_bytes());
        v
    };
    let folders = vec![
        Folder::new("INBOX", vec![Msg::new(1, &body_of(200, 1)), odd_date]),
        Folder::new("Keywords", vec![keyword]),
        list_named,
        Folder::new("Refused", vec![Msg::new(1, &body_of(200, 5))]),
    ];
    let hook = move |cmd: &Cmd, s: &mut Session| -> std::io::Result<bool> {
        let t = &cmd.tag;
        let answer = match cmd.verb().as_str() {
            "CAPABILITY" => format!(
                "* CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS COMPRESS=DEFLATE X-{E}\r\n{t} OK {E}\r\n"
            ),
            "LOGIN" => format!("* OK [ALERT] {E} alert\r\n{t} OK [CAPABILITY IMAP4rev1 LITERAL+ UIDPLUS COMPRESS=DEFLATE] {E} welcome\r\n"),
            "COMPRESS" => format!("{t} NO {E} no compression\r\n"),
            "LOGOUT" => format!("* BYE {E} bye\r\n{t} OK {E}\r\n"),
            "SELECT" | "EXAMINE" if cmd.line.contains("Refused") => {
                format!("* NO {E} warning\r\n{t} NO [UNAVAILABLE] {E} refused\r\n")
            }
            "SELECT" | "EXAMINE" => {
                s.send(format!("* OK {E} hello\r\n* NO {E} careful\r\n").as_bytes())?;
                return Ok(false);
            }
            _ => return Ok(false),
        };
        s.send(answer.as_bytes())?;
        Ok(true)
    };
    let greeting_caps = format!("IMAP4rev1 LITERAL+ UIDPLUS COMPRESS=DEFLATE] {E} [X-Y");
    let server = Hostile::start_with(folders, &greeting_caps, Some(Arc::new(hook)));
    let dir = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    let mut found = Vec::new();
    for (k, extra) in [&["-q"][..], &[], &["-v"], &["-vv"], &["--json", "-vv"]]
        .into_iter()
        .enumerate()
    {
        let store = dir.path().join(format!("store{k}"));
        let mut args = vec!["--retries", "1"];
        args.extend_from_slice(extra);
        let (run, finished, _) = run_for(
            pull_command(&server, &store, &args),
            Duration::from_secs(60),
        );
        assert!(finished, "{}", run.stderr);
        let mut log = Vec::new();
        for e in std::fs::read_dir(store.join("logs")).unwrap() {
            log.extend(std::fs::read(e.unwrap().path()).unwrap());
        }
        let bad: Vec<(&str, Vec<String>)> = [
            ("stdout", raw_controls(run.stdout.as_bytes())),
            ("stderr", raw_controls(run.stderr.as_bytes())),
            ("run log", raw_controls(&log)),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
        report.push(format!(
            "{extra:?}: exit {}, {} lines on stderr, escaped texts shown: {}; raw: {:?}",
            run.code,
            run.stderr.lines().count(),
            run.all().matches("\\u{1b}]0;pwned").count(),
            bad.iter().map(|(w, v)| (w, v.len())).collect::<Vec<_>>()
        ));
        if extra == ["-v"] {
            assert!(
                run.stderr.contains("COMPRESS refused"),
                "-v shows the refusal (escaped): {}",
                run.stderr
            );
        }
        if extra.contains(&"--json") {
            let v = run.json();
            assert!(v["failures"].to_string().contains("\\u001b]0;pwned"), "{v}");
        }
        found.extend(
            bad.into_iter()
                .map(|(w, v)| format!("{extra:?} {w}: {v:?}")),
        );
    }
    eprintln!("{}", report.join("\n"));
    assert!(found.is_empty(), "{}", found.join("\n"));
}
