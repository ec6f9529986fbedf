//! `imapferry sync`: imapsync's command line in one shot. It pulls host1 into a store, then
//! pushes the store into host2; the store stays (by default under the user's data directory,
//! named after both accounts), so running the same command again is incremental and resumes
//! wherever a killed run stopped.

use std::path::PathBuf;

use serde::Serialize;

use super::args::{Side, SyncArgs};
use super::endpoint::{endpoint_for, file_name_part};
use super::exit::{print_failures, print_summary, print_warnings, usage, with_budget, Outcome};
use super::hints::advise;
use super::online::{map_rules, reported, set_output};
use imapferry::pull::{self, PullOptions, PullReport};
use imapferry::push::{self, PushOptions, PushReport};
use imapferry::ui;

/// What `sync --json` prints.
#[derive(Serialize)]
struct SyncReport<'a> {
    store: &'a std::path::Path,
    complete: bool,
    pull: &'a PullReport,
    push: &'a PushReport,
}

pub fn sync(a: SyncArgs) -> anyhow::Result<Outcome> {
    set_output(&a.output);
    reported(a.output.json, || {
        // Everything that can be wrong on the command line before the password prompts.
        let rules = map_rules(&a.map)?;
        let selection = a.folders.selection()?;
        let store = match &a.store {
            Some(s) => s.clone(),
            None => default_store(&a.host1.host, &a.host1.user, &a.host2.host, &a.host2.user)?,
        };
        // Both passwords now, so that no prompt waits after a long pull.
        let ep1 = endpoint_for(a.host1.into(), &a.net)?;
        let ep2 = endpoint_for(a.host2.into(), &a.net)?;
        ui::info(&format!("store: {}", store.display()));

        let mut p = PullOptions::new(ep1, store.clone(), selection.clone());
        p.jobs = a.jobs.max(1);
        p.retries = a.net.retries;
        p.filter = a.filter.filter();
        p.search = a.filter.search.clone();
        p.just_folders = a.justfolders;
        p.max_bytes_per_day = a.budget1.max_bytes_per_day;
        let pulled = pull::run(&p).map_err(|e| advise(e, Side::Host1, &p.endpoint))?;
        print_warnings(&pulled.warnings);
        print_failures(&pulled.failures);
        if !a.output.json {
            print_summary(&pulled.summary());
        }

        let mut q = PushOptions::new(ep2, store.clone(), selection);
        q.rules = rules;
        q.delete2 = a.delete2;
        q.dry_run = a.dry_run;
        q.just_folders = a.justfolders;
        q.jobs = a.jobs.max(1);
        q.retries = a.net.retries;
        q.max_bytes_per_day = a.budget2.max_bytes_per_day;
        // A pull stopped by its budget still pushes what the store holds.
        let pushed = push::run(&q).map_err(|e| advise(e, Side::Host2, &q.endpoint))?;
        print_warnings(&pushed.warnings);
        print_failures(&pushed.failures);
        let failed = !pulled.failures.is_empty() || !pushed.failures.is_empty();
        let budget = match (pulled.budget_spent.clone(), pushed.budget_spent.clone()) {
            (Some(a), Some(b)) => Some(a.earlier(b)),
            (a, b) => a.or(b),
        };
        let complete = !failed && budget.is_none() && (pushed.complete || a.dry_run);
        if a.output.json {
            let r = SyncReport {
                store: &store,
                complete,
                pull: &pulled,
                push: &pushed,
            };
            let mut v = serde_json::to_value(&r)?;
            if let Some(b) = &budget {
                with_budget(&mut v, b);
            }
            ui::print_json(&v)?;
        } else {
            print_summary(&pushed.summary());
        }
        Ok(Outcome::with_budget(failed, budget, complete))
    })
}

/// The store of this pair of accounts: `$XDG_DATA_HOME/imapferry/stores/USER1@HOST1--USER2@HOST2`
/// (`~/.local/share` when XDG_DATA_HOME is unset), characters other than letters, digits and
/// `.@-_+` turned into `_`.
fn default_store(host1: &str, user1: &str, host2: &str, user2: &str) -> anyhow::Result<PathBuf> {
    let data = match std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h).join(".local/share"),
            None => return Err(usage("no HOME nor XDG_DATA_HOME: give --store DIR")),
        },
    };
    let safe = file_name_part;
    let name = format!(
        "{}@{}--{}@{}",
        safe(user1),
        safe(&host1.to_ascii_lowercase()),
        safe(user2),
        safe(&host2.to_ascii_lowercase())
    );
    Ok(data.join("imapferry").join("stores").join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_store_is_named_after_both_accounts_safely() {
        std::env::set_var("XDG_DATA_HOME", "/data");
        let p = default_store("IMAP.example.org", "a/b", "h2", "x y").unwrap();
        assert_eq!(
            p,
            PathBuf::from("/data/imapferry/stores/a_b@imap.example.org--x_y@h2")
        );
    }
}
