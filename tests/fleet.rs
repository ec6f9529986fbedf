//! `imapferry fleet` (issue 13): many account pairs from imapsync's accounts file, each in a
//! store of its own, several at once, over several real Dovecot servers in both namespace
//! styles; a wrong password and a malformed line reported and the rest done; a SIGKILLed fleet
//! run again; shards that cover every account once.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::fleet::{fleet_command, status_of, the_failed_account, Fleet, WRONG};
use common::run::{imapferry, Run};

fn status(stores: &Path) -> serde_json::Value {
    status_of(&[stores])
}

#[test]
fn twelve_accounts_run_four_at_a_time_the_bad_ones_listed_and_a_rerun_moves_nothing() {
    let f = Fleet::start();
    let dir = tempfile::tempdir().unwrap();
    let accounts = f.accounts(dir.path());
    let stores = dir.path().join("stores");
    let t = Instant::now();
    let run: Run = fleet_command(&accounts, &stores, &["--parallel", "4"])
        .output()
        .unwrap()
        .into();
    let took = t.elapsed();
    eprintln!("first run in {took:.1?}:\n{}{}", run.stderr, run.stdout);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("line 14"),
        "the malformed line is named"
    );
    f.assert_exact(Some(WRONG));
    let s = status(&stores);
    let bad = the_failed_account(&s);
    assert_eq!(bad["retry_helps"], false, "{bad}");
    assert!(
        bad["reason"].as_str().unwrap().contains("cannot log in"),
        "{bad}"
    );
    // Issue 21: host2's login is tried before the pull (nothing fetched for nothing), and the
    // hint names the accounts file's field, not an option the fleet does not take.
    assert_eq!(
        bad["pulled"], 0,
        "the account pulled before host2 was tried: {bad}"
    );
    let hint = bad["hint"].as_str().unwrap_or_default();
    assert!(
        hint.contains("password2 field") && hint.contains("line 8") && !hint.contains("--passfile"),
        "{bad}"
    );
    let peak = s["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["peak_rss_bytes"].as_u64())
        .max()
        .unwrap();
    eprintln!(
        "peak memory of one running account: {:.1} MB",
        peak as f64 / 1e6
    );
    assert!(peak < 200 << 20, "{peak}");
    let table: Run = imapferry()
        .args(["fleet", "status", "--stores"])
        .arg(&stores)
        .output()
        .unwrap()
        .into();
    eprintln!("{}", table.stdout);

    let t = Instant::now();
    let again: Run = fleet_command(&accounts, &stores, &["--parallel", "4", "--json"])
        .output()
        .unwrap()
        .into();
    assert_eq!(again.code, 3);
    let records = again.json();
    let moved: u64 = records
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["pulled"].as_u64().unwrap() + r["pushed"].as_u64().unwrap())
        .sum();
    eprintln!(
        "unchanged re-run in {:.1?}: {moved} messages moved",
        t.elapsed()
    );
    assert_eq!(moved, 0);
}

#[test]
fn a_fleet_killed_mid_way_and_run_again_leaves_every_account_exact() {
    let f = Fleet::start();
    let dir = tempfile::tempdir().unwrap();
    let accounts = f.accounts(dir.path());
    let stores = dir.path().join("stores");
    let mut child = fleet_command(&accounts, &stores, &["--parallel", "3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill once some accounts are done and others are running.
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let s = status(&stores);
        if s["totals"]["done"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the fleet was still running when killed"
    );
    child.kill().unwrap(); // SIGKILL, the fleet binary itself
    child.wait().unwrap();
    let s = status(&stores);
    eprintln!("at the kill: {}", s["totals"]);
    let run: Run = fleet_command(&accounts, &stores, &["--parallel", "3"])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 3, "{}", run.stderr);
    f.assert_exact(Some(WRONG));
    assert_eq!(status(&stores)["totals"]["done"], 11);
}

#[test]
fn three_shards_cover_every_account_exactly_once() {
    let f = Fleet::start();
    let dir = tempfile::tempdir().unwrap();
    let accounts = f.accounts(dir.path());
    let mut seen = Vec::new();
    for k in 1..=3 {
        let stores = dir.path().join(format!("shard-{k}"));
        let shard = format!("{k}/3");
        fleet_command(&accounts, &stores, &["--shard", &shard, "--phase", "pull"])
            .output()
            .unwrap();
        seen.extend(
            status(&stores)["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap().to_string()),
        );
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(seen.len(), 12, "{seen:?}");
    assert_eq!(unique.len(), 12, "{seen:?}");
}

/// The live board in a terminal (tmux, 100 columns): the counts, and a line per running
/// account with its phase, redrawn in place; the finished-account lines stay above it; the
/// board is gone when the fleet ends.
#[test]
fn the_fleet_board_shows_counts_and_running_accounts_in_a_terminal() {
    common::require_tool("tmux", "-V", "tmux");
    let f = Fleet::start();
    let dir = tempfile::tempdir().unwrap();
    let accounts = f.accounts_in_files(dir.path(), false);
    let stores = dir.path().join("stores");
    let script = dir.path().join("fleet.sh");
    std::fs::write(
        &script,
        format!(
            "'{}' fleet run '{}' --stores '{}' --parallel 3\necho \"EXIT=$?\"\nsleep 30\n",
            common::run::binary().display(),
            accounts.display(),
            stores.display()
        ),
    )
    .unwrap();
    let socket = format!("imapferry-fleet-{}", std::process::id());
    let tmux = |args: &[&str]| {
        let out = std::process::Command::new("tmux")
            .args(["-L", &socket, "-f", "/dev/null"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let cmd = format!("sh {}", script.display());
    tmux(&[
        "new-session",
        "-d",
        "-s",
        "f",
        "-x",
        "100",
        "-y",
        "30",
        &cmd,
    ]);
    let started = Instant::now();
    let mut frames = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let text = tmux(&["capture-pane", "-p", "-t", "f"]);
        let done = text.contains("EXIT=");
        frames.push((started.elapsed().as_secs_f64(), text));
        if done || started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
    tmux(&["kill-server"]);
    let board = frames
        .iter()
        .find(|(_, t)| t.contains(" running, ") && t.lines().any(|l| l.starts_with("  user")))
        .expect("a frame shows the board with its running accounts");
    eprintln!("--- {:.1} s ---\n{}", board.0, board.1.trim_end());
    let (at, last) = frames.last().unwrap();
    eprintln!("--- {at:.1} s (last) ---\n{}", last.trim_end());
    assert!(last.contains("EXIT=3"), "{last}");
    assert!(
        last.contains("fleet: 12 accounts (11 done, 1 failed)"),
        "{last}"
    );
    assert!(
        !last.contains(" waiting · "),
        "the board is cleared at the end: {last}"
    );
    let finished = last.lines().filter(|l| l.starts_with('[')).count();
    assert!(
        finished >= 12,
        "every finished account has its line: {last}"
    );
}

/// An account whose line carries `--max-bytes-per-day1 1k` stops at its daily download budget:
/// the fleet shows it as waiting for its budget (state `budget`, exit status 4), not failed;
/// its push sent what its store held, and a day later the next fleet run completes it.
#[test]
fn an_account_past_its_daily_budget_is_waiting_not_failed() {
    let f = Fleet::start();
    let dir = tempfile::tempdir().unwrap();
    let all = std::fs::read_to_string(f.accounts(dir.path())).unwrap();
    let line = all
        .lines()
        .nth(1)
        .unwrap()
        .replace("--tls2 none;", "--tls2 none --max-bytes-per-day1 1k;");
    let accounts = dir.path().join("one.txt");
    std::fs::write(&accounts, format!("{line}\n")).unwrap();
    let stores = dir.path().join("stores");
    let run: Run = fleet_command(&accounts, &stores, &[])
        .output()
        .unwrap()
        .into();
    assert_eq!(run.code, 4, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("1 waiting for their daily budget"),
        "{}",
        run.stdout
    );
    let s = status(&stores);
    let a = &s["accounts"][0];
    assert_eq!(a["state"], "budget", "{s}");
    assert!(
        a["reason"].as_str().unwrap().contains("run again after"),
        "{a}"
    );
    assert_eq!(s["totals"]["waiting_for_budget"], 1, "{s}");
    assert!(a["pulled"].as_u64().unwrap() >= 1, "{a}");
    assert_eq!(
        a["pushed"], a["pulled"],
        "the push sent what the store held: {a}"
    );

    // A day later (for this test: the store's transfer log rewound, many times over).
    let store = std::fs::read_dir(&stores)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("index.sqlite").exists())
        .unwrap();
    let mut runs = 1;
    loop {
        common::run::a_day_later(&store);
        let run: Run = fleet_command(&accounts, &stores, &[])
            .output()
            .unwrap()
            .into();
        runs += 1;
        if run.code == 0 {
            break;
        }
        assert_eq!(run.code, 4, "{}{}", run.stdout, run.stderr);
        assert!(runs < 60, "the account never completed");
    }
    assert_eq!(status(&stores)["accounts"][0]["state"], "done");
}

/// Every path mode under `dir` (the directory itself included) that is not `0700` for a
/// directory or `0600` for a file.
fn not_private(dir: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut bad = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            bad.push(format!("{} {mode:o}", p.display()));
        }
        if meta.is_dir() {
            todo.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    bad
}

/// Issue 19 items 5 and 12. A password field naming a FIFO (which would block a reader
/// forever) or a 3 GiB file (sparse) fails that account alone, with its reason recorded, in
/// seconds, even with one account at a time; the other account runs. `--stores DIR`, its
/// `.fleet` records and every store under it are private (0700 directories, 0600 files), even
/// under a umask of 022.
#[test]
fn a_fifo_or_a_huge_password_file_fails_its_account_alone_and_the_stores_are_private() {
    let mut cfg = common::DovecotConfig::new();
    cfg.users = (0..3)
        .map(|i| (format!("user{i}"), format!("pw-{i}")))
        .collect();
    let host1 = common::Dovecot::start(cfg);
    common::seed(&host1, "user2", &common::Corpus::small());
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pw-fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let huge = dir.path().join("pw-huge");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(3 << 30)
        .unwrap();
    let good = dir.path().join("pw-good");
    std::fs::write(&good, "pw-2\n").unwrap();
    let line = |user: &str, pw: &Path| {
        format!(
            "127.0.0.1;{user};file:{};127.0.0.1;{user};x;--port1 {} --tls1 none;\n",
            pw.display(),
            host1.port()
        )
    };
    let accounts = dir.path().join("accounts.txt");
    std::fs::write(
        &accounts,
        line("user0", &fifo) + &line("user1", &huge) + &line("user2", &good),
    )
    .unwrap();
    let stores = dir.path().join("new").join("stores");
    // Under a 1 GiB address-space cap: reading the huge file whole would abort the fleet.
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022; exec prlimit --as=1073741824 -- \"$@\"")
        .arg("sh")
        .arg(common::run::binary())
        .args(["fleet", "run"])
        .arg(&accounts)
        .arg("--stores")
        .arg(&stores)
        .args(["--phase", "pull", "--parallel", "1", "--timeout", "10"])
        .stdin(Stdio::null());
    let run = common::run::output_within(&mut cmd, Duration::from_secs(90));
    eprintln!("{}{}", run.stdout, run.stderr);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stdout.contains("3 accounts (1 done, 2 failed)"),
        "{}",
        run.stdout
    );
    let s = status(&stores);
    let by_user = |u: &str| {
        s["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["user1"] == u)
            .cloned()
            .unwrap_or_else(|| panic!("no record of {u}: {s}"))
    };
    for (user, why) in [("user0", "not a regular file"), ("user1", "larger than")] {
        let a = by_user(user);
        assert_eq!(a["state"], "failed", "{a}");
        let reason = a["reason"].as_str().unwrap();
        assert!(reason.contains(why) && reason.contains("password1"), "{a}");
        assert_eq!(a["retry_helps"], false, "{a}");
    }
    assert_eq!(by_user("user2")["state"], "done", "{s}");
    assert_eq!(not_private(&stores), Vec::<String>::new());
    use std::os::unix::fs::PermissionsExt;
    let parent = std::fs::metadata(stores.parent().unwrap()).unwrap();
    assert_eq!(parent.permissions().mode() & 0o777, 0o700, "created parent");
}
