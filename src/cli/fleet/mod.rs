//! `imapferry fleet`: many account pairs. `fleet run` reads imapsync's accounts file and runs a
//! phase for each account in a store of its own ([`run`]); `fleet status` reads what the runs
//! recorded ([`state`]). GNU parallel or a Kubernetes Indexed Job spread shards over machines
//! (`--shard K/N`, docs/fleet.md).

mod accounts;
mod html;
mod run;
mod state;

use super::args::{FleetArgs, FleetCommand, FleetRunArgs, FleetStatusArgs};
use super::exit::{usage, Outcome};
use state::{Record, State};

pub fn fleet(a: FleetArgs) -> anyhow::Result<Outcome> {
    match a.command {
        FleetCommand::Run(r) => run_fleet(r),
        FleetCommand::Status(s) => status(s),
    }
}

fn run_fleet(a: FleetRunArgs) -> anyhow::Result<Outcome> {
    let (accounts, malformed, warning) = accounts::read(&a.accounts)
        .map_err(|e| usage(format!("cannot read {}: {e:#}", a.accounts.display())))?;
    if let Some(w) = warning {
        imapferry::ui::warn(&w);
    }
    for acc in &accounts {
        for n in &acc.notes {
            imapferry::stdio::err(&format!(
                "note: {} line {}: {}",
                a.accounts.display(),
                acc.line,
                imapferry::ui::printable(n)
            ));
        }
    }
    for m in &malformed {
        imapferry::ui::always(&format!(
            "failed: {} line {}: {} (skipped)",
            a.accounts.display(),
            m.line,
            m.reason
        ));
    }
    let chosen: Vec<_> = accounts
        .into_iter()
        .filter(|acc| a.shard.is_none_or(|(k, n)| acc.shard(n) == k - 1))
        .collect();
    if let Some(mode) = state::private_dir(&a.stores)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", a.stores.display()))?
    {
        imapferry::ui::warn(&format!(
            "others may list the accounts in {} (mode {mode:o}): chmod 700 it",
            a.stores.display()
        ));
    }
    mark_interrupted(&a.stores);
    let parallel = match a.parallel {
        Some(n) => n as usize,
        None => {
            let (n, why) = default_parallel();
            imapferry::ui::info(&format!(
                "{n} accounts at once ({why}; --parallel to choose)"
            ));
            n
        }
    };
    let common = common_args(&a.net);
    let plan = run::Plan {
        stores: &a.stores,
        accounts: &a.accounts,
        phase: a.phase.command(),
        parallel,
        jobs: a.jobs.max(1),
        max_per_host: a.max_per_host.max(1),
        common,
    };
    let started = std::time::Instant::now();
    let records = run::run_all(&plan, &chosen);
    let waiting = records.iter().filter(|r| r.state == State::Budget).count();
    let failed = records
        .iter()
        .filter(|r| !matches!(r.state, State::Done | State::Budget))
        .count();
    if a.json {
        imapferry::ui::print_json(&records)?;
    }
    let waiting_text = if waiting > 0 {
        format!("{waiting} waiting for their daily budget, ")
    } else {
        String::new()
    };
    let summary = format!(
        "fleet: {} accounts ({} done, {waiting_text}{failed} failed), {} lines skipped; {:.1} s",
        records.len(),
        records.len() - failed - waiting,
        malformed.len(),
        started.elapsed().as_secs_f64()
    );
    if a.json {
        imapferry::ui::always(&summary);
    } else {
        imapferry::ui::print(&summary);
    }
    if waiting > 0 && failed == 0 && malformed.is_empty() {
        return Ok(Outcome::Budget(None));
    }
    Ok(Outcome::from_complete(failed == 0 && malformed.is_empty()))
}

/// The network options every account's run gets.
fn common_args(net: &crate::cli::args::NetArgs) -> Vec<String> {
    let mut common = vec![
        "--timeout".to_string(),
        net.timeout.to_string(),
        "--retries".into(),
        net.retries.to_string(),
        "-q".into(),
    ];
    if net.no_compress {
        common.push("--no-compress".into());
    }
    if let Some(rate) = net.max_bytes_per_second {
        // Each account's own cap: a fleet-wide one would need one limiter across processes.
        common.extend(["--max-bytes-per-second".into(), rate.to_string()]);
    }
    common
}

/// Accounts a dead fleet left `running` are `interrupted`: the next run takes them again.
fn mark_interrupted(stores: &std::path::Path) {
    for mut r in state::read_all(stores) {
        if r.state == State::Running && !r.pid.is_some_and(state::alive) {
            r.state = State::Interrupted;
            let _ = state::write(stores, &r);
        }
    }
}

/// Accounts at once: each is a process of at most about 200 MB (64 MB of buffers plus the
/// largest message being handled, and SQLite's caches; docs/fleet.md), and mostly waits on
/// the network, so two per core, as memory allows.
fn default_parallel() -> (usize, String) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemAvailable:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024);
    let by_memory = available.map_or(usize::MAX, |b| (b / (200 << 20)) as usize);
    let n = (cores * 2).min(by_memory).clamp(1, 32);
    let mem = available.map_or("unknown memory".to_string(), |b| {
        format!("{} available", imapferry::ui::human_bytes(b))
    });
    (n, format!("{cores} cores, {mem}"))
}

fn status(a: FleetStatusArgs) -> anyhow::Result<Outcome> {
    let records: Vec<Record> = a.stores.iter().flat_map(|d| state::read_all(d)).collect();
    if a.json {
        let done = records.iter().filter(|r| r.state == State::Done).count();
        let doc = serde_json::json!({
            "accounts": records,
            "totals": {
                "accounts": records.len(),
                "done": done,
                "failed": records.iter().filter(|r| r.state == State::Failed).count(),
                "interrupted": records.iter().filter(|r| r.state == State::Interrupted).count(),
                "waiting_for_budget": records.iter().filter(|r| r.state == State::Budget).count(),
                "running": records.iter().filter(|r| r.state == State::Running).count(),
                "pulled": records.iter().map(|r| r.pulled).sum::<u64>(),
                "pushed": records.iter().map(|r| r.pushed).sum::<u64>(),
                "bytes": records.iter().map(|r| r.pulled_bytes + r.pushed_bytes).sum::<u64>(),
            },
        });
        imapferry::ui::print_json(&doc)?;
    } else {
        imapferry::ui::print(table(&records).trim_end_matches('\n'));
    }
    if let Some(path) = &a.html {
        std::fs::write(path, html::page(&records))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    let all_done = records.iter().all(|r| r.state == State::Done);
    Ok(Outcome::from_complete(all_done))
}

/// The status table for humans.
fn table(records: &[Record]) -> String {
    use imapferry::ui::{human_bytes, printable};
    let width = records
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = format!(
        "{:<width$}  {:<11}  {:>7}  {:>9}  {:>7}  {:>9}  {:>7}  reason\n",
        "account", "state", "fetched", "bytes", "sent", "bytes", "seconds"
    );
    for r in records {
        let state = format!("{:?}", r.state).to_lowercase();
        out += &format!(
            "{:<width$}  {state:<11}  {:>7}  {:>9}  {:>7}  {:>9}  {:>7.1}  {}\n",
            r.name,
            r.pulled,
            human_bytes(r.pulled_bytes),
            r.pushed,
            human_bytes(r.pushed_bytes),
            r.seconds,
            printable(r.reason.as_deref().unwrap_or(""))
        );
        for f in r.failures.iter().take(5) {
            let uid = f.uid.map(|u| format!(" UID {u}")).unwrap_or_default();
            out += &format!(
                "    {}{uid}: {}\n",
                printable(&f.folder),
                printable(&f.reason)
            );
        }
    }
    let done = records.iter().filter(|r| r.state == State::Done).count();
    out += &format!("{} accounts, {done} done\n", records.len());
    out
}
