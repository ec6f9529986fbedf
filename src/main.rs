//! The `imapferry` program: parse the command line, run the command, turn its outcome into the
//! exit status (the one place that does: [`cli::exit`]).

// Everything printed or logged goes through `ui`, which escapes what a server, a bundle or a
// file chose (see `ui::say`): printing any other way is refused.
#![warn(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::args::Cli::parse();
    cli::exit::status(cli::run(args))
}
