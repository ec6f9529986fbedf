//! The `imapferry` command line: parses options and hands over to the library.
//!
//! Exit status: 0 when everything selected was moved; 1 on an error that stopped the run; 2 for
//! bad usage; 3 when the run finished but some messages or folders failed (each is listed).

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use imapferry::cli::{Cli, Command, OutputArgs};
use imapferry::endpoint::endpoint;
use imapferry::folders::Selection;
use imapferry::pull::{self, PullOptions};
use imapferry::{status, ui};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
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
            let ep = endpoint(&a.host1.into(), Duration::from_secs(a.timeout))?;
            let selection = Selection::new(&a.folders.folders, &a.folders.excludes)?;
            let mut opts = PullOptions::new(ep, a.store, selection);
            opts.batch_bytes = a.tuning.batch_bytes;
            opts.depth = a.tuning.depth.max(1);
            opts.commit_messages = a.tuning.commit_messages.max(1);
            let report = pull::run(&opts)?;
            for f in &report.failures {
                match f.uid {
                    Some(uid) => eprintln!("failed: {} UID {uid}: {}", f.folder, f.reason),
                    None => eprintln!("failed: {}: {}", f.folder, f.reason),
                }
            }
            if a.output.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                eprintln!("{}", report.summary());
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
    }
}
