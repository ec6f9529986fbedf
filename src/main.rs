//! The `imapferry` command line: parses options and hands over to the library.
//!
//! Exit status: 0 when everything selected was moved; 1 on an error that stopped the run; 2 for
//! bad usage; 3 when the run finished but some messages or folders failed (each is listed).

use std::process::ExitCode;

use clap::Parser;

use imapferry::check::{self, CheckOptions};
use imapferry::cli::{CheckArgs, Cli, Command, MapArgs, OutputArgs, PushArgs};
use imapferry::compare::targets::MapRules;
use imapferry::endpoint::endpoint_for;
use imapferry::pull::{self, PullOptions};
use imapferry::push::{self, PushOptions};
use imapferry::run::Failure;
use imapferry::{status, ui};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            // An error may quote a name a server, a bundle or a file chose.
            eprintln!("error: {}", ui::printable(&format!("{e:#}")));
            ExitCode::from(1)
        }
    }
}

/// Every message or folder that could not be moved, on stderr: nothing fails silently.
fn print_failures(failures: &[Failure]) {
    for f in failures {
        let (folder, reason) = (ui::printable(&f.folder), ui::printable(&f.reason));
        match f.uid {
            Some(uid) => eprintln!("failed: {folder} UID {uid}: {reason}"),
            None => eprintln!("failed: {folder}: {reason}"),
        }
    }
}

fn set_output(o: &OutputArgs) {
    ui::set_verbosity(if o.quiet { 0 } else { 1 + o.verbose });
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Pull(a) => {
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
            print_failures(&report.failures);
            if a.output.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                eprintln!("{}", ui::printable_lines(&report.summary()));
            }
            Ok(if report.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            })
        }
        Command::Status(a) => {
            status::run(&a.store, a.json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Push(a) => push_command(*a),
        Command::Check(a) => check_command(*a),
        Command::Bundle(a) => imapferry::cli_offline::bundle(a),
        Command::Export(a) => imapferry::cli_offline::export(a),
        Command::Import(a) => imapferry::cli_offline::import(a),
        Command::Verify(a) => imapferry::cli_offline::verify(a),
        Command::Gc(a) => imapferry::cli_offline::gc(a),
    }
}

/// Mapping options, or exit status 2 with the reason.
fn map_rules(m: &MapArgs) -> Result<MapRules, ExitCode> {
    MapRules::parse(&m.folder_map, m.dest_root.as_deref(), m.no_automap).map_err(|e| {
        eprintln!("error: {e:#}");
        ExitCode::from(2)
    })
}

fn push_command(a: PushArgs) -> anyhow::Result<ExitCode> {
    set_output(&a.output);
    let rules = match map_rules(&a.map) {
        Ok(r) => r,
        Err(code) => return Ok(code),
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
    print_failures(&report.failures);
    if a.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprintln!("{}", ui::printable_lines(&report.summary()));
    }
    Ok(
        if report.failures.is_empty() && (report.complete || report.dry_run) {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        },
    )
}

fn check_command(a: CheckArgs) -> anyhow::Result<ExitCode> {
    set_output(&a.output);
    let rules = match map_rules(&a.map) {
        Ok(r) => r,
        Err(code) => return Ok(code),
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
    if a.output.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        eprintln!("{}", ui::printable_lines(&report.text()));
    }
    Ok(if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    })
}
