//! The `imapferry` program: answer imapsync's options ([`cli::imapsync`]), parse the command
//! line, run the command, turn its outcome into the exit status (the one place that does:
//! [`cli::exit`]).

// stdout and stderr only through `imapferry::stdio`, which escapes what it writes and
// survives a reader that went away: the print macros do neither.
#![deny(clippy::print_stdout, clippy::print_stderr)]

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let json = argv.iter().any(|a| a == "--json");
    let (args, notes, refused) = cli::imapsync::answer(argv);
    for n in notes {
        imapferry::stdio::err(&format!("note: {}", imapferry::ui::printable(&n)));
    }
    if !refused.is_empty() {
        return cli::exit::refused(&refused, json);
    }
    let args = cli::args::Cli::parse_from(args);
    cli::exit::status(cli::run(args))
}
