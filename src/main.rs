//! The `imapferry` program: parse the command line, run the command, turn its outcome into the
//! exit status (the one place that does: [`cli::exit`]).

// stdout and stderr only through `imapferry::stdio`: the print macros panic when the reader
// has gone.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    cli::exit::status(cli::run(args))
}
