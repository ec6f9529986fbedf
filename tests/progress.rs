//! What a person sees on a terminal while `imapferry pull` runs: the built binary inside a
//! detached tmux pane (60 and 120 columns), pulling large messages from Dovecot through a slow
//! link, the pane captured every 300 ms. The frames are saved next to the store and a few are
//! printed.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

/// A folder name whose finished-folder line is wider than 60 columns: it must wrap, not be cut.
const LONG_FOLDER: &str = "Projects/a-folder-name-long-enough-to-wrap-on-a-narrow-screen";

/// One message of about `len` bytes of base64-like text (barely compressible).
fn message(folder: &str, id: usize, len: usize) -> CorpusMessage {
    let mut bytes = format!(
        "From: sender{id}@example.org\r\nTo: alice@example.org\r\nSubject: message {id}\r\n\
         Message-ID: <progress-{id}@example.org>\r\n\r\n"
    )
    .into_bytes();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ id as u64;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    while bytes.len() < len {
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.push(ALPHABET[(x % 64) as usize]);
        }
        bytes.extend_from_slice(b"\r\n");
    }
    CorpusMessage {
        folder: folder.to_string(),
        bytes,
        flags: vec!["\\Seen".to_string()],
        internaldate: "05-Mar-2021 14:03:07 +0100".to_string(),
    }
}

/// About 14 MB: two 3 MB messages fetched whole, one of 7.5 MB fetched whole (below the 8 MB
/// chunk threshold: the case whose counter used to freeze), and small ones.
fn corpus() -> Corpus {
    let mut messages = Vec::new();
    for id in 0..6 {
        messages.push(message("INBOX", id, 20_000));
    }
    messages.push(message("INBOX", 10, 3_000_000));
    messages.push(message("INBOX", 11, 3_000_000));
    messages.push(message("Archive", 20, 7_500_000));
    messages.push(message(LONG_FOLDER, 30, 5_000));
    messages.push(message(LONG_FOLDER, 31, 5_000));
    Corpus {
        folders: vec![
            "INBOX".into(),
            "Archive".into(),
            "Projects".into(),
            LONG_FOLDER.into(),
        ],
        messages,
    }
}

/// One capture of the pane, `at` seconds after the pull started.
struct Frame {
    at: f64,
    text: String,
}

fn tmux(socket: &str, args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(["-L", socket, "-f", "/dev/null"])
        .args(args)
        .output()
        .expect("run tmux");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `script` in a detached pane of `width` columns (narrowed to `resize` columns after 5 s
/// when given); capture it every 300 ms until the script says it is done. Returns the frames
/// and the whole pane (scrollback too, wrapped lines joined).
fn run_in_tmux(
    socket: &str,
    width: u16,
    resize: Option<u16>,
    script: &Path,
) -> (Vec<Frame>, String) {
    let (w, h) = (width.to_string(), "24".to_string());
    let cmd = format!("sh {}", script.display());
    tmux(
        socket,
        &["new-session", "-d", "-s", "p", "-x", &w, "-y", &h, &cmd],
    );
    let started = Instant::now();
    let mut frames = Vec::new();
    let mut resize = resize;
    loop {
        std::thread::sleep(Duration::from_millis(300));
        if started.elapsed() > Duration::from_secs(5) {
            if let Some(to) = resize.take() {
                tmux(socket, &["resize-window", "-t", "p", "-x", &to.to_string()]);
            }
        }
        let text = tmux(socket, &["capture-pane", "-p", "-t", "p"]);
        let done = text.contains("EXIT=");
        frames.push(Frame {
            at: started.elapsed().as_secs_f64(),
            text,
        });
        if done || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    let whole = tmux(socket, &["capture-pane", "-p", "-J", "-S", "-", "-t", "p"]);
    tmux(socket, &["kill-server"]);
    (frames, whole)
}

/// The byte counter of a frame ("1.5 MB of 14.0 MB · ..."), in bytes.
fn counter(frame: &str) -> Option<f64> {
    let line = frame.lines().find(|l| l.contains(" messages to fetch"))?;
    let (amount, _) = line.split_once(" of ")?;
    let (number, unit) = amount.trim().split_once(' ')?;
    let scale = match unit {
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => return None,
    };
    Some(number.parse::<f64>().ok()? * scale)
}

fn is_bar_line(line: &str) -> bool {
    line.starts_with("[00:")
}

/// Every assertion on what one run showed in a pane of `width` columns, `narrowed` to fewer
/// from 5 s on.
fn check(width: usize, narrowed: Option<usize>, frames: &[Frame], whole: &str) {
    // No line wider than the pane, at most one of each bar line in any frame.
    for f in frames {
        // The capture after the resize: a frame taken at 5.x s may still be the old size.
        let width = match narrowed {
            Some(n) if f.at > 5.7 => n,
            _ => width,
        };
        for line in f.text.lines() {
            assert!(
                line.chars().count() <= width,
                "wider than {width}: {line:?}"
            );
        }
        let count = |p: &dyn Fn(&str) -> bool| f.text.lines().filter(|l| p(l)).count();
        assert!(
            count(&is_bar_line) <= 1,
            "bar twice at {:.1} s:\n{}",
            f.at,
            f.text
        );
        let amount = |l: &str| l.contains("messages to fetch");
        assert!(count(&amount) <= 1, "counter twice:\n{}", f.text);
        let header = |l: &str| l.starts_with("pull ") && l.contains(" folders");
        assert!(count(&header) <= 1, "header twice:\n{}", f.text);
    }
    // While data flows the counter moves: never the same for more than 2 s.
    let counted: Vec<(f64, f64)> = frames
        .iter()
        .filter_map(|f| counter(&f.text).map(|c| (f.at, c)))
        .collect();
    let first_flow = counted
        .iter()
        .position(|&(_, c)| c > 0.0)
        .expect("no bytes counted");
    let flowing = &counted[first_flow..];
    assert!(flowing.len() >= 5, "too few frames with data flowing");
    let mut since = flowing[0];
    for &(at, c) in flowing {
        if c != since.1 {
            since = (at, c);
        }
        assert!(
            at - since.0 <= 2.1,
            "counter frozen at {} bytes from {:.1} s to {at:.1} s",
            since.1,
            since.0
        );
    }
    // The end: no bar left anywhere, every line whole, the summary shown.
    assert!(!whole.lines().any(is_bar_line), "bar left behind:\n{whole}");
    assert!(
        !whole.contains("messages to fetch"),
        "bar left behind:\n{whole}"
    );
    let folder_line = format!("{LONG_FOLDER}: 2 new");
    assert!(
        whole.contains(&folder_line),
        "{folder_line:?} cut:\n{whole}"
    );
    assert_eq!(whole.matches(&folder_line).count(), 1, "{whole}");
    assert!(whole.contains("retrying in"), "no retry line:\n{whole}");
    assert!(whole.contains("pull: 4 folders"), "no summary:\n{whole}");
    assert!(whole.contains("EXIT=0"), "{whole}");
}

/// Pull through `proxy` in a `width`-column pane (store and script in `dir`); the frames go to
/// a file in `out` and a few to stderr.
fn pull_on_screen(server: &Dovecot, proxy: &Proxy, width: u16, dir: &Path, out: &Path) {
    let store = dir.join(format!("store-{width}"));
    let script = dir.join(format!("pull-{width}.sh"));
    let quote = |p: &Path| format!("'{}'", p.display());
    std::fs::write(
        &script,
        format!(
            "IMAPFERRY_PASSWORD1='{}' {} pull --host1 127.0.0.1 --port1 {} --tls1 none \
             --user1 alice --store {} --jobs 2\necho \"EXIT=$?\"\nsleep 60\n",
            server.password("alice"),
            quote(&common::run::binary()),
            proxy.port(),
            quote(&store),
        ),
    )
    .unwrap();
    let socket = format!("imapferry-progress-{}-{width}", std::process::id());
    // The wide pane is narrowed mid-run, as a person resizing the window would.
    let resize = (width > 80).then_some(80);
    let (frames, whole) = run_in_tmux(&socket, width, resize, &script);
    let mut saved = String::new();
    for f in &frames {
        let _ = write!(saved, "--- {:.1} s ---\n{}", f.at, f.text);
    }
    let _ = write!(saved, "--- whole pane (wrapped lines joined) ---\n{whole}");
    let file = out.join(format!("frames-{width}.txt"));
    std::fs::write(&file, &saved).unwrap();
    eprintln!(
        "{} frames at {width} columns saved to {}",
        frames.len(),
        file.display()
    );
    let n = frames.len();
    for i in [n / 4, n / 2, n * 3 / 4, n - 1] {
        let f = &frames[i];
        eprintln!(
            "--- {width} columns, {:.1} s ---\n{}",
            f.at,
            f.text.trim_end()
        );
    }
    check(width as usize, resize.map(usize::from), &frames, &whole);
}

#[test]
fn the_progress_display_moves_with_the_bytes_and_leaves_a_clean_screen() {
    common::require_tool("tmux", "-V", "tmux");
    let server = Dovecot::start_default();
    seed(&server, "alice", &corpus());
    let dir = tempfile::tempdir().unwrap();
    // Frames are kept in Cargo's directory for test output, for reading after the run.
    let frames = Path::new(env!("CARGO_TARGET_TMPDIR")).join("progress");
    std::fs::create_dir_all(&frames).unwrap();
    for width in [60, 120] {
        // A slow shared link; the second connection is cut once, so a retry line is printed
        // while the bar is drawn.
        let proxy = Proxy::start(
            server.port(),
            Faults {
                bandwidth: Some(1_500_000),
                shared_bandwidth: true,
                latency: Duration::from_millis(10),
                cut_after: Some(2_500_000),
                affects: Affects::Custom(std::sync::Arc::new(|i| i == 1)),
                ..Faults::default()
            },
        );
        pull_on_screen(&server, &proxy, width, dir.path(), &frames);
    }
}

/// A store of about 17 MB: INBOX (small ones and two of 3 MB), `Later` (one of 3 MB) and `Zed`
/// (one of 7.5 MB, fetched whole), pulled from a Dovecot.
fn push_source(dir: &Path) -> (Dovecot, std::path::PathBuf) {
    let mut messages = Vec::new();
    for id in 0..6 {
        messages.push(message("INBOX", id, 20_000));
    }
    messages.push(message("INBOX", 10, 3_000_000));
    messages.push(message("INBOX", 11, 3_000_000));
    messages.push(message("Later", 20, 3_000_000));
    messages.push(message("Zed", 30, 7_500_000));
    let corpus = Corpus {
        folders: vec!["INBOX".into(), "Later".into(), "Zed".into()],
        messages,
    };
    let h1 = Dovecot::start_default();
    seed(&h1, "alice", &corpus);
    let store = dir.join("store");
    common::run::pull(&h1, "alice", &store, &[]).expect_code(0);
    (h1, store)
}

/// `push` of `store` to 127.0.0.1:`port` as alice of `h2`, in plain, with `extra`.
fn push_command(h2: &Dovecot, port: u16, store: &Path, extra: &[&str]) -> Command {
    let mut c = common::run::imapferry();
    c.args(["push", "--host2", "127.0.0.1", "--port2"])
        .arg(port.to_string())
        .args(["--tls2", "none", "--user2", "alice", "--store"])
        .arg(store)
        .args(extra)
        .env("IMAPFERRY_PASSWORD2", h2.password("alice"));
    c
}

/// Issue 21, item 4: a push killed in the middle of a 7.5 MB APPEND (its literal never
/// completes, so it never lands) leaves an intent; the next push, two minutes later (the
/// intent's time moved back), has nothing to wait for: that APPEND could have crossed the link
/// long ago. It used to wait about 40 s on a full bar, in every run within the hour.
#[test]
fn a_push_long_after_an_interrupted_append_does_not_wait_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_h1, store) = push_source(dir.path());
    let h2 = Dovecot::start_default();
    let slow = Proxy::start(
        h2.port(),
        Faults {
            bandwidth: Some(1_500_000),
            shared_bandwidth: true,
            ..Faults::default()
        },
    );
    let zed = ["--folder", "Zed"];
    let mut child = push_command(&h2, slow.port(), &store, &zed)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        child.try_wait().unwrap().is_none(),
        "the push ended before the kill"
    );
    child.kill().unwrap(); // SIGKILL, mid-literal
    child.wait().unwrap();
    let index = rusqlite::Connection::open(store.join("index.sqlite")).unwrap();
    let pending: i64 = index
        .query_row("SELECT count(*) FROM push_intents", [], |r| r.get(0))
        .unwrap();
    assert!(pending > 0, "the kill left no APPEND unanswered");
    index
        .execute("UPDATE push_intents SET created_at = created_at - 120", [])
        .unwrap();
    let t = Instant::now();
    let run: common::run::Run =
        push_command(&h2, h2.port(), &store, &["--json", "--folder", "Zed"])
            .output()
            .unwrap()
            .into();
    let took = t.elapsed();
    eprintln!(
        "push two minutes after the kill: {took:.1?}\n{}",
        run.stderr
    );
    run.expect_code(0);
    assert!(
        took < Duration::from_secs(10),
        "waited {took:?} for an APPEND that cannot land"
    );
}
