//! `imapferry fleet run`: each account is one `imapferry pull|push|sync` process of this same
//! binary, with its own store under `--stores`, its passwords in its environment (never on a
//! command line) and its JSON report read back. Processes, not threads: an account's memory
//! is bounded by its own process and measured by it, and one account's crash is its own. A
//! child dies with the fleet (PR_SET_PDEATHSIG), so a killed fleet leaves no store locked,
//! and every phase resumes where it stopped when the fleet runs again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use super::accounts::{self, Account};
use super::state::{self, Item, Record, State};

/// What the fleet runs for each account.
pub struct Plan<'a> {
    pub stores: &'a Path,
    /// The accounts file, for messages.
    pub accounts: &'a Path,
    pub phase: &'a str,
    pub parallel: usize,
    /// Connections each account opens to each server (`--jobs` of the child).
    pub jobs: usize,
    pub max_per_host: usize,
    /// Options every child gets (`--timeout`, `--retries`, ...), before the account's own.
    pub common: Vec<String>,
}

/// Who waits, and how many connections each server has in use.
struct Sched {
    queue: VecDeque<usize>,
    in_use: HashMap<String, usize>,
    done: usize,
    failed: usize,
    /// Message bytes the finished accounts moved.
    bytes: u64,
    /// Running accounts: (name, phase, since).
    running: BTreeMap<usize, (String, &'static str, Instant)>,
}

/// Run `accounts` and return their records (in the order they finished).
pub fn run_all(plan: &Plan<'_>, accounts: &[Account]) -> Vec<Record> {
    let sched = Mutex::new(Sched {
        queue: (0..accounts.len()).collect(),
        in_use: HashMap::new(),
        done: 0,
        failed: 0,
        bytes: 0,
        running: BTreeMap::new(),
    });
    let freed = Condvar::new();
    let records = Mutex::new(Vec::new());
    let board = imapferry::ui::Board::new();
    let started = Instant::now();
    let show = || {
        let g = sched.lock().unwrap_or_else(|e| e.into_inner());
        board.set(&board_text(&g, accounts.len(), started.elapsed()));
    };
    std::thread::scope(|s| {
        if board.is_live() {
            // The running accounts' times move even when nothing finishes.
            s.spawn(|| loop {
                std::thread::sleep(std::time::Duration::from_millis(500));
                if sched.lock().unwrap_or_else(|e| e.into_inner()).done == accounts.len() {
                    break;
                }
                show();
            });
        }
        for _ in 0..plan.parallel.clamp(1, accounts.len().max(1)) {
            s.spawn(|| {
                while let Some(i) = next(plan, accounts, &sched, &freed) {
                    let a = &accounts[i];
                    let on_phase = |phase: &'static str| {
                        let mut g = sched.lock().unwrap_or_else(|e| e.into_inner());
                        g.running.insert(i, (a.name(), phase, Instant::now()));
                        drop(g);
                        show();
                    };
                    let r = run_one(plan, a, &on_phase);
                    let mut g = sched.lock().unwrap_or_else(|e| e.into_inner());
                    for h in hosts(plan, a) {
                        *g.in_use.entry(h).or_default() -= plan.jobs;
                    }
                    g.running.remove(&i);
                    g.done += 1;
                    g.failed += usize::from(!matches!(r.state, State::Done | State::Budget));
                    g.bytes += r.pulled_bytes + r.pushed_bytes;
                    let done_line = format!("[{}/{}] {}", g.done, accounts.len(), line(&r));
                    drop(g);
                    board.line(&done_line);
                    show();
                    freed.notify_all();
                    records.lock().unwrap_or_else(|e| e.into_inner()).push(r);
                }
            });
        }
    });
    board.finish();
    records.into_inner().unwrap_or_else(|e| e.into_inner())
}

/// The live board: counts, bytes, rate and an estimate of the time left from the accounts
/// finished so far, then one line per running account.
fn board_text(g: &Sched, total: usize, elapsed: std::time::Duration) -> String {
    use imapferry::ui::human_bytes;
    let secs = elapsed.as_secs_f64().max(0.001);
    let waiting = total - g.done - g.running.len();
    let eta = if g.done == 0 {
        "ETA --".to_string()
    } else {
        let left = secs / g.done as f64 * (total - g.done) as f64;
        format!("ETA {:.0} s", left)
    };
    let mut out = format!(
        "fleet: {}/{total} done ({} failed), {} running, {waiting} waiting · {} moved, {}/s · {eta}",
        g.done,
        g.failed,
        g.running.len(),
        human_bytes(g.bytes),
        human_bytes((g.bytes as f64 / secs) as u64)
    );
    for (name, phase, since) in g.running.values() {
        out += &format!(
            "\n  {name}: {phase}, {:.0} s",
            since.elapsed().as_secs_f64()
        );
    }
    out
}

/// The servers an account's phase connects to (lower-cased names).
fn hosts(plan: &Plan<'_>, a: &Account) -> Vec<String> {
    let (h1, h2) = (a.host1.to_ascii_lowercase(), a.host2.to_ascii_lowercase());
    match plan.phase {
        "pull" => vec![h1],
        "push" => vec![h2],
        _ if h1 == h2 => vec![h1],
        _ => vec![h1, h2],
    }
}

/// The next account whose servers have room for its connections; `None` when none is left.
fn next(
    plan: &Plan<'_>,
    accounts: &[Account],
    sched: &Mutex<Sched>,
    freed: &Condvar,
) -> Option<usize> {
    let mut g = sched.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        if g.queue.is_empty() {
            return None;
        }
        let fits = |g: &Sched, i: usize| {
            hosts(plan, &accounts[i]).iter().all(|h| {
                // An account alone always fits, even when its jobs exceed the cap.
                let used = g.in_use.get(h).copied().unwrap_or(0);
                used == 0 || used + plan.jobs <= plan.max_per_host
            })
        };
        if let Some(pos) = (0..g.queue.len()).find(|&k| fits(&g, g.queue[k])) {
            let i = g.queue.remove(pos).unwrap_or_default();
            for h in hosts(plan, &accounts[i]) {
                *g.in_use.entry(h).or_default() += plan.jobs;
            }
            return Some(i);
        }
        g = freed.wait(g).unwrap_or_else(|e| e.into_inner());
    }
}

/// One line for the account's end.
pub fn line(r: &Record) -> String {
    let what = match r.state {
        State::Done => "done".to_string(),
        State::Failed => format!(
            "FAILED ({}): {}{}",
            if r.retry_helps == Some(false) {
                "fix first"
            } else {
                "a retry may help"
            },
            r.reason.as_deref().unwrap_or("?"),
            r.hint
                .as_deref()
                .map(|h| format!(" (hint: {h})"))
                .unwrap_or_default()
        ),
        State::Running => "running".into(),
        State::Interrupted => "interrupted".into(),
        State::Budget => r
            .reason
            .as_deref()
            .unwrap_or("waiting for its daily budget")
            .into(),
    };
    format!(
        "{}: {what}; {} fetched, {} sent in {:.1} s",
        r.name, r.pulled, r.pushed, r.seconds
    )
}

fn record(plan: &Plan<'_>, a: &Account) -> Record {
    Record {
        name: a.name(),
        line: a.line,
        host1: a.host1.clone(),
        user1: a.user1.clone(),
        host2: a.host2.clone(),
        user2: a.user2.clone(),
        phase: plan.phase.to_string(),
        state: State::Running,
        retry_helps: None,
        reason: None,
        hint: None,
        started: imapferry::clock::now(),
        seconds: 0.0,
        exit_status: None,
        pid: None,
        pulled: 0,
        pulled_bytes: 0,
        pushed: 0,
        pushed_bytes: 0,
        peak_rss_bytes: None,
        failures: Vec::new(),
    }
}

/// Run one account's phases as child processes (a sync logs in to host2, then pulls, then
/// pushes: each phase's counts are recorded, and a failure names its phase) and record how it
/// ended.
fn run_one(plan: &Plan<'_>, a: &Account, on_phase: &dyn Fn(&'static str)) -> Record {
    let mut r = record(plan, a);
    let started = Instant::now();
    // This run's phases append their diagnostics to a fresh file.
    let _ = std::fs::remove_file(stderr_path(plan, a));
    let phases: &[&'static str] = match plan.phase {
        // Both logins first, as `sync` does: host2's before the pull (host1's is the pull's
        // first step), so a wrong host2 password or port fails the account in seconds.
        "sync" => &["login", "pull", "push"],
        p => std::slice::from_ref(match p {
            "pull" => &"pull",
            _ => &"push",
        }),
    };
    for phase in phases {
        on_phase(phase);
        let outcome = spawn(plan, a, phase).and_then(|child| {
            r.pid = Some(child.id());
            let _ = state::write(plan.stores, &r);
            Ok(child.wait_with_output()?)
        });
        r.pid = None;
        let code = match outcome {
            Ok(out) => {
                read_report(
                    &mut r,
                    phase,
                    out.status.code(),
                    &out.stdout,
                    &stderr_path(plan, a),
                );
                out.status.code()
            }
            Err(e) => {
                r.state = State::Failed;
                r.retry_helps = Some(false);
                r.reason = Some(format!("{phase}: {e:#}"));
                None
            }
        };
        // A pull that could not move everything (or stopped at its daily budget) still lets
        // the push send what it has.
        if !matches!(code, Some(0) | Some(3) | Some(4)) {
            break;
        }
    }
    r.seconds = started.elapsed().as_secs_f64();
    if let Err(e) = state::write(plan.stores, &r) {
        imapferry::ui::warn(&format!("cannot record {}: {e:#}", r.name));
    }
    r
}

fn stderr_path(plan: &Plan<'_>, a: &Account) -> PathBuf {
    state::dir(plan.stores).join(format!("{}.stderr", a.name()))
}

/// The child: this binary, the phase's options, passwords in the environment (and where each
/// came from, for the hint of a refused login). `login` is `push --justlogin`.
/// Where account `a`'s password of side `n` comes from, in words for a hint.
fn password_from(plan: &Plan<'_>, a: &Account, n: u8) -> String {
    let field = match n {
        1 => &a.password1,
        _ => &a.password2,
    };
    let what = match field {
        accounts::Password::File(p) => format!(" (file:{})", p.display()),
        accounts::Password::Env(v) => format!(" (env:{v})"),
        accounts::Password::Literal(_) => String::new(),
    };
    format!(
        "the password{n} field{what} of line {} of {}",
        a.line,
        plan.accounts.display()
    )
}

fn spawn(plan: &Plan<'_>, a: &Account, step: &str) -> anyhow::Result<std::process::Child> {
    let phase = if step == "login" { "push" } else { step };
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let mut c = Command::new(std::env::current_exe()?);
    // Only this account's passwords reach the child, and only through its environment.
    c.env_remove("IMAPFERRY_PASSWORD1")
        .env_remove("IMAPFERRY_PASSWORD2")
        .env_remove("IMAPFERRY_PASSWORD1_FROM")
        .env_remove("IMAPFERRY_PASSWORD2_FROM")
        .arg(phase);
    if phase == "pull" {
        let pw = a
            .password1
            .resolve()
            .map_err(|e| anyhow::anyhow!("password1: {e}"))?;
        c.args(["--host1", &a.host1, "--user1", &a.user1])
            .env("IMAPFERRY_PASSWORD1", pw)
            .env("IMAPFERRY_PASSWORD1_FROM", password_from(plan, a, 1));
    }
    if phase == "push" {
        let pw = a
            .password2
            .resolve()
            .map_err(|e| anyhow::anyhow!("password2: {e}"))?;
        c.args(["--host2", &a.host2, "--user2", &a.user2])
            .env("IMAPFERRY_PASSWORD2", pw)
            .env("IMAPFERRY_PASSWORD2_FROM", password_from(plan, a, 2));
    }
    c.arg("--store")
        .arg(plan.stores.join(a.name()))
        .args(["--json", "--jobs", &plan.jobs.to_string()])
        .args((step == "login").then_some("--justlogin"))
        .args(&plan.common)
        .args(accounts::options_for(&a.extra, phase).map_err(|e| anyhow::anyhow!(e))?);
    state::records_dir(plan.stores)?;
    let err = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(stderr_path(plan, a))?;
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err));
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; nothing else runs between fork
    // and exec.
    unsafe {
        c.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    Ok(c.spawn()?)
}

/// Add one phase's exit status and JSON report (`imapferry pull|push --json`) to `r`; the
/// worst phase decides the account's state.
fn read_report(r: &mut Record, phase: &str, code: Option<i32>, stdout: &[u8], stderr: &Path) {
    let j: serde_json::Value = serde_json::from_slice(stdout).unwrap_or_default();
    let n = |k: &str| j[k].as_u64().unwrap_or(0);
    match phase {
        "pull" => (r.pulled, r.pulled_bytes) = (n("new"), n("bytes")),
        "push" => (r.pushed, r.pushed_bytes) = (n("sent"), n("bytes")),
        _ => {}
    }
    r.peak_rss_bytes = r.peak_rss_bytes.max(j["peak_rss_bytes"].as_u64());
    if let Some(list) = j["failures"].as_array() {
        r.failures.extend(list.iter().map(|f| Item {
            folder: f["folder"].as_str().unwrap_or_default().to_string(),
            uid: f["uid"].as_u64().map(|u| u as u32),
            reason: f["reason"].as_str().unwrap_or_default().to_string(),
        }));
    }
    if r.state == State::Failed {
        return;
    }
    if code == Some(4) {
        // A daily byte budget: waiting, not failed.
        r.exit_status = code;
        r.state = State::Budget;
        r.retry_helps = Some(true);
        let at = j["resume_at"].as_str().unwrap_or("a day");
        r.reason = Some(format!(
            "{phase}: waiting for its daily budget; run again after {at}"
        ));
        return;
    }
    if code == Some(0) && r.state == State::Budget {
        // An earlier phase is still waiting for its budget.
        return;
    }
    r.exit_status = code;
    if code == Some(0) {
        r.state = State::Done;
        return;
    }
    if matches!(code, Some(130) | Some(143)) {
        // Ctrl-C or SIGTERM reached the account's process too: nothing failed.
        r.state = State::Interrupted;
        return;
    }
    r.state = State::Failed;
    r.hint = j["hint"].as_str().map(String::from);
    let error = j["error"].as_str().map(String::from);
    let last_line = std::fs::read_to_string(stderr).ok().and_then(|t| {
        t.lines()
            .rev()
            .find(|l| l.starts_with("error:"))
            .map(String::from)
    });
    let reason = error
        .or(last_line)
        .or_else(|| {
            r.failures
                .first()
                .map(|f| format!("{}: {}", f.folder, f.reason))
        })
        .unwrap_or_else(|| format!("exit status {code:?}"));
    // Bad usage, a refused login (or no OAuth2 token), and a session that could not be opened
    // as asked (a name, port, TLS mode or password) stay so until someone changes something;
    // a server that did not answer (`unreachable`) or a dropped link may do better later.
    // Decided by the kinds the run reported, never by the words of its error.
    r.retry_helps = Some(imapferry::run::stop::retry_helps(
        code,
        j["error_kind"].as_str(),
        j["problem"].as_str(),
    ));
    r.reason = Some(format!("{phase}: {reason}"));
}
