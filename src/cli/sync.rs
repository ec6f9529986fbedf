//! `imapferry sync`: imapsync's command line in one shot. It logs in to host2 first (as
//! imapsync does, so a wrong host2 option fails before the pull), pulls host1 into a store,
//! then pushes the store into host2; the store stays (by default under the user's data
//! directory, named after both accounts and their ports), so running the same command again is
//! incremental and resumes wherever a killed run stopped.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::args::{Side, SyncArgs};
use super::endpoint::{endpoint_for, file_name_part};
use super::exit::{
    error_json, print_failures, print_summary, print_warnings, usage, with_budget, Outcome,
};
use super::hints::advise;
use super::online::{map_rules, set_output, with_log};
use imapferry::imap::{Endpoint, TlsMode};
use imapferry::pull::{self, PullOptions, PullReport};
use imapferry::push::{self, PushOptions, PushReport};
use imapferry::store::Store;
use imapferry::ui;

/// What `sync --json` prints.
#[derive(Serialize)]
struct SyncReport<'a> {
    store: &'a Path,
    complete: bool,
    pull: &'a PullReport,
    /// `None` for a dry run without a store yet.
    push: Option<&'a PushReport>,
    log: Option<&'a Path>,
}

pub fn sync(a: SyncArgs) -> anyhow::Result<Outcome> {
    set_output(&a.output);
    let json = a.output.json;
    // With --json, an error still prints a document: with the pull's report when the push
    // is what failed.
    let mut pulled: Option<serde_json::Value> = None;
    let r = run(a, &mut pulled);
    if let (true, Err(e)) = (json, &r) {
        let mut doc = error_json(e);
        if let (Some(p), Some(o)) = (pulled, doc.as_object_mut()) {
            o.insert("pull".into(), p);
        }
        let _ = imapferry::ui::print_json(&doc);
    }
    r
}

fn run(a: SyncArgs, pulled_json: &mut Option<serde_json::Value>) -> anyhow::Result<Outcome> {
    // Everything that can be wrong on the command line before the password prompts.
    let rules = map_rules(&a.map)?;
    let selection = a.folders.selection()?;
    // Both passwords now, so that no prompt waits after a long pull.
    let ep1 = endpoint_for(a.host1.into(), &a.net)?;
    let ep2 = endpoint_for(a.host2.into(), &a.net)?;
    super::interrupt::watch();
    if a.login.just_login {
        login(&ep1, Side::Host1, a.net.retries)?;
        login(&ep2, Side::Host2, a.net.retries)?;
        ui::info("host1 and host2: logged in (--justlogin); nothing else was done");
        return Ok(Outcome::Done);
    }
    // Both logins first, as imapsync does: host2's before the pull (host1's is the pull's
    // first step), so a wrong host2 option fails in seconds, not after hours of pulling.
    login(&ep2, Side::Host2, a.net.retries)?;
    let store = match &a.store {
        Some(s) => s.clone(),
        None => default_store(&ep1, &ep2)?,
    };
    ui::info(&format!("store: {}", store.display()));
    imapferry::runlog::set_command("sync");

    let mut p = PullOptions::new(ep1, store.clone(), selection.clone());
    p.jobs = a.jobs.max(1);
    p.retries = a.net.retries;
    p.filter = a.filter.filter();
    p.search = a.filter.search.clone();
    p.just_folders = a.justfolders;
    p.max_bytes_per_day = a.budget1.max_bytes_per_day;
    // A dry sync fetches nothing, as `pull --dry-run`: it says what the pull would fetch.
    p.dry_run = a.dry_run;
    let pulled = pull::run(&p).map_err(|e| advise(e, Side::Host1, &p.endpoint))?;
    *pulled_json = serde_json::to_value(&pulled).ok();
    print_warnings(&pulled.warnings);
    print_failures(&pulled.failures);
    if !a.output.json {
        print_summary(&pulled.summary());
    }

    let pushed = if a.dry_run && !Store::exists(&store) {
        ui::info(
            "push (dry run): no store yet, so the push would send everything the pull fetches",
        );
        None
    } else {
        let mut q = PushOptions::new(ep2, store.clone(), selection);
        q.rules = rules;
        q.delete2 = a.delete2;
        q.dry_run = a.dry_run;
        q.just_folders = a.justfolders;
        q.jobs = a.jobs.max(1);
        q.retries = a.net.retries;
        q.max_bytes_per_day = a.budget2.max_bytes_per_day;
        a.message.apply(&mut q);
        // A pull stopped by its budget still pushes what the store holds.
        let pushed = push::run(&q).map_err(|e| advise(e, Side::Host2, &q.endpoint))?;
        print_warnings(&pushed.warnings);
        print_failures(&pushed.failures);
        Some(pushed)
    };
    finish(&a.output, &store, &pulled, pushed.as_ref(), a.dry_run)
}

/// The summary (or the JSON report) and how the run ended.
fn finish(
    output: &super::args::OutputArgs,
    store: &Path,
    pulled: &PullReport,
    pushed: Option<&PushReport>,
    dry_run: bool,
) -> anyhow::Result<Outcome> {
    let failed = !pulled.failures.is_empty() || pushed.is_some_and(|p| !p.failures.is_empty());
    let budget = match (
        pulled.budget_spent.clone(),
        pushed.and_then(|p| p.budget_spent.clone()),
    ) {
        (Some(a), Some(b)) => Some(a.earlier(b)),
        (a, b) => a.or(b),
    };
    let complete = !failed && budget.is_none() && (dry_run || pushed.is_some_and(|p| p.complete));
    let log = imapferry::runlog::path();
    if output.json {
        let r = SyncReport {
            store,
            complete,
            pull: pulled,
            push: pushed,
            log: log.as_deref(),
        };
        let mut v = serde_json::to_value(&r)?;
        if let Some(b) = &budget {
            with_budget(&mut v, b);
        }
        imapferry::ui::print_json(&v)?;
    } else if let Some(pushed) = pushed {
        let mut text = pushed.summary();
        if pulled.left_out > 0 {
            text += &format!(
                "\nleft out on host1 by --maxage, --minage, --maxsize, --minsize or --search: {} \
                 new messages (a run without those options takes them)",
                pulled.left_out
            );
        }
        print_summary(&with_log(text, log.as_deref()));
    }
    Ok(Outcome::with_budget(failed, budget, complete))
}

/// One login on `side`, with the option that fixes a failure named.
fn login(ep: &Endpoint, side: Side, retries: u32) -> anyhow::Result<()> {
    imapferry::run::check_login(ep, &side.to_string(), retries).map_err(|e| advise(e, side, ep))
}

/// The store of this pair of accounts: `$XDG_DATA_HOME/imapferry/stores/` (or
/// `~/.local/share/imapferry/stores/`) `USER1@HOST1_PORT1--USER2@HOST2_PORT2`, characters other
/// than letters, digits and `.@-_+` turned into `_`. A store an earlier version named without
/// the ports is still used when no store has the new name and both ports are the defaults
/// (what that version used unless told otherwise); with another port the old name cannot tell
/// which server it mirrors, so a new store is made.
fn default_store(ep1: &Endpoint, ep2: &Endpoint) -> anyhow::Result<PathBuf> {
    let data = match std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
            Some(h) => PathBuf::from(h).join(".local/share"),
            None => return Err(usage("no HOME nor XDG_DATA_HOME: give --store DIR")),
        },
    };
    let stores = data.join("imapferry").join("stores");
    let side = |ep: &Endpoint, port: bool| {
        let host = ep.host.to_ascii_lowercase();
        match port {
            true => file_name_part(&format!("{}@{host}_{}", ep.user, ep.port)),
            false => file_name_part(&format!("{}@{host}", ep.user)),
        }
    };
    let named = stores.join(format!("{}--{}", side(ep1, true), side(ep2, true)));
    let old = stores.join(format!("{}--{}", side(ep1, false), side(ep2, false)));
    let default_port = |ep: &Endpoint| ep.port == if ep.tls == TlsMode::Imaps { 993 } else { 143 };
    if !named.exists() && Store::exists(&old) && default_port(ep1) && default_port(ep2) {
        ui::info(&format!(
            "using the store an earlier imapferry named without the ports: {}",
            old.display()
        ));
        return Ok(old);
    }
    Ok(named)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(host: &str, user: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
            tls: TlsMode::Imaps,
            insecure: false,
            ca_file: None,
            user: user.into(),
            authuser: None,
            secret: imapferry::imap::Secret::Password("x".into()),
            timeout: std::time::Duration::from_secs(1),
            compress: true,
            rate_limit: None,
            provider: None,
            pause: Default::default(),
        }
    }

    /// One test: both change XDG_DATA_HOME, which tests running at once would share.
    #[test]
    fn the_default_store_is_named_after_both_accounts_and_ports_and_old_names_are_found() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var("XDG_DATA_HOME", dir.path());
        let (a, b) = (ep("IMAP.example.org", "a/b", 993), ep("h2", "x y", 1143));
        let p = default_store(&a, &b).unwrap();
        assert_eq!(
            p,
            dir.path()
                .join("imapferry/stores/a_b@imap.example.org_993--x_y@h2_1143")
        );
        // A store an earlier version named without the ports: taken on the default ports
        // only, where it was made.
        let old = dir
            .path()
            .join("imapferry/stores/a_b@imap.example.org--x_y@h2");
        drop(Store::open_or_create(&old).unwrap());
        assert_eq!(
            default_store(&a, &b).unwrap(),
            p,
            "port 1143 is not the default"
        );
        let b = ep("h2", "x y", 993);
        assert_eq!(default_store(&a, &b).unwrap(), old);
    }
}
