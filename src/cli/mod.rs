//! The command line, which only the program has: [`args`] (clap's definitions), [`endpoint`]
//! (a side's connection options into an [`imapferry::imap::Endpoint`]), [`imapsync`]
//! (imapsync's options, answered before clap parses), the handlers of the commands that talk
//! to a server ([`online`]) and of those that do not ([`offline`]), [`interrupt`] (Ctrl-C) and
//! [`exit`], which turns every outcome into the exit status. The library knows none of it: it
//! takes typed options and returns reports.

pub mod args;
mod endpoint;
pub mod exit;
mod fleet;
mod hints;
pub mod imapsync;
mod interrupt;
mod offline;
mod online;
mod sync;

use args::{Cli, Command};
use exit::Outcome;

/// Run the command `cli` names.
pub fn run(cli: Cli) -> anyhow::Result<Outcome> {
    // Those that may prompt for a password watch for Ctrl-C once the prompts are over.
    let prompts = matches!(
        cli.command,
        Command::Pull(_) | Command::Push(_) | Command::Sync(_) | Command::Check(_)
    );
    if !prompts {
        interrupt::watch();
    }
    match cli.command {
        Command::Pull(a) => online::pull(*a),
        Command::Status(a) => online::status(a),
        Command::Push(a) => online::push(*a),
        Command::Sync(a) => sync::sync(*a),
        Command::Check(a) => online::check(*a),
        Command::Fleet(a) => fleet::fleet(a),
        Command::Bundle(a) => offline::bundle(a),
        Command::Export(a) => offline::export(a),
        Command::Import(a) => offline::import(a),
        Command::Verify(a) => offline::verify(a),
        Command::Gc(a) => offline::gc(a),
    }
}
