//! The commands that talk to a server: `pull`, `push`, `check` (and `status`, which reads the
//! store they fill). Each turns its options into the library's typed options, runs it, prints
//! the failures and the summary (or the JSON report), and says how it ended.

use serde::Serialize;

use super::args::{CheckArgs, MapArgs, OutputArgs, PullArgs, PushArgs, StatusArgs};
use super::endpoint::endpoint_for;
use super::exit::{print_failures, print_warnings, Outcome};
use imapferry::check::{self, CheckOptions};
use imapferry::compare::targets::MapRules;
use imapferry::pull::{self, PullOptions};
use imapferry::push::{self, PushOptions};
use imapferry::{status, ui};

/// Apply `-q`/`-v`: the screen's verbosity and the wire layer's log.
fn set_output(o: &OutputArgs) {
    let level = if o.quiet { 0 } else { 1 + o.verbose };
    ui::set_verbosity(level);
    imapferry::imap::set_log_level(level);
}

/// The report as JSON on stdout with `--json`, else its summary on stderr.
fn show<R: Serialize>(
    o: &OutputArgs,
    report: &R,
    summary: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if o.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        eprintln!("{}", ui::printable_lines(&summary()));
    }
    Ok(())
}

pub fn pull(a: PullArgs) -> anyhow::Result<Outcome> {
    set_output(&a.output);
    let ep = endpoint_for(a.host1.into(), &a.net)?;
    let selection = a.folders.selection()?;
    let mut opts = PullOptions::new(ep, a.store, selection);
    opts.batch_bytes = a.tuning.batch_bytes;
    opts.depth = a.tuning.depth.max(1);
    opts.commit_messages = a.tuning.commit_messages.max(1);
    opts.retries = a.net.retries;
    opts.jobs = a.jobs.max(1);
    opts.chunk_threshold = a.tuning.chunk_threshold;
    opts.chunk_bytes = a.tuning.chunk_bytes.max(1);
    opts.repair = a.repair;
    let report = pull::run(&opts)?;
    print_warnings(&report.warnings);
    print_failures(&report.failures);
    show(&a.output, &report, || report.summary())?;
    Ok(Outcome::from_complete(report.failures.is_empty()))
}

pub fn status(a: StatusArgs) -> anyhow::Result<Outcome> {
    status::run(&a.store, a.json)?;
    Ok(Outcome::Done)
}

/// Mapping options, or the usage error that says what is wrong with them.
fn map_rules(m: &MapArgs) -> Result<MapRules, Outcome> {
    MapRules::parse(&m.folder_map, m.dest_root.as_deref(), m.no_automap)
        .map_err(|e| Outcome::Usage(format!("{e:#}")))
}

pub fn push(a: PushArgs) -> anyhow::Result<Outcome> {
    set_output(&a.output);
    let rules = match map_rules(&a.map) {
        Ok(r) => r,
        Err(usage) => return Ok(usage),
    };
    let ep = endpoint_for(a.host2.into(), &a.net)?;
    let selection = a.folders.selection()?;
    let mut opts = PushOptions::new(ep, a.store, selection);
    opts.rules = rules;
    opts.delete2 = a.delete2;
    opts.dry_run = a.dry_run;
    opts.jobs = a.jobs.max(1);
    opts.batch_bytes = a.tuning.batch_bytes.max(1);
    opts.batch_messages = a.tuning.batch_messages.max(1);
    opts.retries = a.net.retries;
    let report = push::run(&opts)?;
    print_warnings(&report.warnings);
    print_failures(&report.failures);
    show(&a.output, &report, || report.summary())?;
    let done = report.failures.is_empty() && (report.complete || report.dry_run);
    Ok(Outcome::from_complete(done))
}

pub fn check(a: CheckArgs) -> anyhow::Result<Outcome> {
    set_output(&a.output);
    let rules = match map_rules(&a.map) {
        Ok(r) => r,
        Err(usage) => return Ok(usage),
    };
    let ep = endpoint_for(a.host2.into(), &a.net)?;
    let selection = a.folders.selection()?;
    let report = check::run(&CheckOptions {
        endpoint: ep,
        store: a.store,
        selection,
        rules,
        retries: a.net.retries,
    })?;
    show(&a.output, &report, || report.text())?;
    Ok(Outcome::from_complete(report.ok))
}
