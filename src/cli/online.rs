//! The commands that talk to a server: `pull`, `push`, `check` (and `status`, which reads the
//! store they fill). Each turns its options into the library's typed options, runs it, prints
//! the failures and the summary (or the JSON report), and says how it ended.

use serde::Serialize;

use super::args::{CheckArgs, MapArgs, OutputArgs, PullArgs, PushArgs, Side, StatusArgs};
use super::endpoint::endpoint_for;
use super::exit::{
    error_json, print_failures, print_summary, print_warnings, usage, with_budget, Outcome,
};
use super::hints::advise;
use imapferry::budget::BudgetSpent;
use imapferry::check::{self, CheckOptions};
use imapferry::compare::targets::MapRules;
use imapferry::pull::{self, PullOptions};
use imapferry::push::{self, PushOptions};
use imapferry::store::Store;
use imapferry::{status, ui};

/// Apply `-q`/`-v`: the screen's verbosity and the wire layer's log.
pub(super) fn set_output(o: &OutputArgs) {
    let level = if o.quiet { 0 } else { 1 + o.verbose };
    ui::set_verbosity(level);
    imapferry::imap::set_log_level(level);
}

/// The report as JSON on stdout with `--json`, else its summary on stdout (the lines before it,
/// progress and diagnostics, went to stderr): `imapferry pull > pull.log` keeps the result.
pub(super) fn show<R: Serialize>(
    o: &OutputArgs,
    report: &R,
    summary: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if o.json {
        ui::print_json(report)?;
    } else {
        print_summary(&summary());
    }
    Ok(())
}

pub fn pull(a: PullArgs) -> anyhow::Result<Outcome> {
    set_output(&a.output);
    let json = a.output.json;
    reported(json, || {
        // Everything that can be wrong on the command line before the password prompt.
        let selection = a.folders.selection()?;
        let ep = endpoint_for(a.host1.into(), &a.net)?;
        super::interrupt::watch();
        if a.login.just_login {
            return just_login(&ep, Side::Host1, a.net.retries);
        }
        let mut opts = PullOptions::new(ep, a.store, selection);
        opts.batch_bytes = a.tuning.batch_bytes;
        opts.depth = a.tuning.depth.max(1);
        opts.commit_messages = a.tuning.commit_messages.max(1);
        opts.retries = a.net.retries;
        opts.jobs = a.jobs.max(1);
        opts.chunk_threshold = a.tuning.chunk_threshold;
        opts.chunk_bytes = a.tuning.chunk_bytes.max(1);
        opts.repair = a.repair;
        opts.rebind = a.rebind;
        opts.dry_run = a.dry_run;
        opts.filter = a.filter.filter();
        opts.search = a.filter.search.clone();
        opts.max_bytes_per_day = a.budget1.max_bytes_per_day;
        let report = pull::run(&opts).map_err(|e| advise(e, Side::Host1, &opts.endpoint))?;
        print_warnings(&report.warnings);
        print_failures(&report.failures);
        show_budget(&a.output, &report, report.budget_spent.as_ref(), || {
            with_log(report.summary(), report.log.as_deref())
        })?;
        let failed = !report.failures.is_empty();
        Ok(Outcome::with_budget(
            failed,
            report.budget_spent.clone(),
            true,
        ))
    })
}

/// [`show`], with `exit_status` and `resume_at` in the JSON when a daily budget stopped the run.
pub(super) fn show_budget<R: Serialize>(
    o: &OutputArgs,
    report: &R,
    budget: Option<&BudgetSpent>,
    summary: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    match (o.json, budget) {
        (true, Some(b)) => {
            let mut v = serde_json::to_value(report)?;
            with_budget(&mut v, b);
            ui::print_json(&v)
        }
        _ => show(o, report, summary),
    }
}

/// Run a command; with `--json`, an error that stops it is a JSON document on stdout too, so
/// a script always gets one.
pub(super) fn reported(
    json: bool,
    run: impl FnOnce() -> anyhow::Result<Outcome>,
) -> anyhow::Result<Outcome> {
    let r = run();
    if let (true, Err(e)) = (json, &r) {
        // Printed whatever happens: a script always gets its document.
        let _ = ui::print_json(&error_json(e));
    }
    r
}

pub fn status(a: StatusArgs) -> anyhow::Result<Outcome> {
    status::run(&a.store, a.json)?;
    Ok(Outcome::Done)
}

/// Mapping options; a wrong one is a usage error.
pub(super) fn map_rules(m: &MapArgs) -> anyhow::Result<MapRules> {
    let rules = MapRules::parse(
        &m.folder_map,
        m.dest_root.as_deref(),
        m.no_automap,
        &m.regextrans2,
    )
    .map_err(|e| usage(format!("{e:#}")))?;
    Ok(MapRules {
        gmail_labels: m.gmail_labels,
        ..rules
    })
}

pub fn push(a: PushArgs) -> anyhow::Result<Outcome> {
    set_output(&a.output);
    reported(a.output.json, || {
        // Everything that can be wrong on the command line before the password prompt.
        let rules = map_rules(&a.map)?;
        let selection = a.folders.selection()?;
        if !a.login.just_login {
            existing_store(&a.store)?;
        }
        let ep = endpoint_for(a.host2.into(), &a.net)?;
        super::interrupt::watch();
        if a.login.just_login {
            return just_login(&ep, Side::Host2, a.net.retries);
        }
        let mut opts = PushOptions::new(ep, a.store, selection);
        opts.rules = rules;
        opts.delete2 = a.delete2;
        opts.dry_run = a.dry_run;
        opts.just_folders = a.justfolders;
        opts.jobs = a.jobs.max(1);
        opts.batch_bytes = a.tuning.batch_bytes.max(1);
        opts.batch_messages = a.tuning.batch_messages.max(1);
        opts.retries = a.net.retries;
        opts.max_bytes_per_day = a.budget2.max_bytes_per_day;
        a.message.apply(&mut opts);
        let report = push::run(&opts).map_err(|e| advise(e, Side::Host2, &opts.endpoint))?;
        print_warnings(&report.warnings);
        print_failures(&report.failures);
        show_budget(&a.output, &report, report.budget_spent.as_ref(), || {
            with_log(report.summary(), report.log.as_deref())
        })?;
        let failed = !report.failures.is_empty();
        let done = report.complete || report.dry_run;
        Ok(Outcome::with_budget(
            failed,
            report.budget_spent.clone(),
            done,
        ))
    })
}

pub fn check(a: CheckArgs) -> anyhow::Result<Outcome> {
    set_output(&a.output);
    reported(a.output.json, || {
        let rules = map_rules(&a.map)?;
        let selection = a.folders.selection()?;
        existing_store(&a.store)?;
        let endpoint = endpoint_for(a.host2.into(), &a.net)?;
        super::interrupt::watch();
        let opts = CheckOptions {
            endpoint,
            store: a.store,
            selection,
            rules,
            retries: a.net.retries,
        };
        let report = check::run(&opts).map_err(|e| advise(e, Side::Host2, &opts.endpoint))?;
        show(&a.output, &report, || report.text())?;
        Ok(Outcome::from_complete(report.ok))
    })
}

/// `--justlogin`: one login on `side`, then stop.
fn just_login(ep: &imapferry::imap::Endpoint, side: Side, retries: u32) -> anyhow::Result<Outcome> {
    imapferry::run::check_login(ep, &side.to_string(), retries).map_err(|e| advise(e, side, ep))?;
    ui::info(&format!(
        "{side}: logged in (--justlogin); nothing else was done"
    ));
    Ok(Outcome::Done)
}

/// A summary with the run log's path as its last line.
pub(super) fn with_log(summary: String, log: Option<&std::path::Path>) -> String {
    match log {
        Some(p) => format!("{summary}\nlog: {}", p.display()),
        None => summary,
    }
}

/// A store to read must exist: said before any password is asked for.
fn existing_store(dir: &std::path::Path) -> anyhow::Result<()> {
    if Store::exists(dir) {
        return Ok(());
    }
    Err(usage(format!(
        "--store {} is not an imapferry store; `imapferry pull --store {}` makes one",
        dir.display(),
        dir.display()
    )))
}
