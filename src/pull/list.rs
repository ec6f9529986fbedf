//! host1's folder list into the store: every selectable mailbox gets a folder row under its
//! store path (see [`crate::names`]), vanished ones are marked gone, and the folders this run
//! covers are returned with their LIST-STATUS state.

use std::collections::{BTreeMap, HashMap};

use anyhow::Result;

use super::{PullOptions, PullReport};
use crate::imap::{MailboxInfo, MailboxStatus};
use crate::mailbox::Mailbox;
use crate::names::Namespace;
use crate::names::{store_path, MailboxName};
use crate::run::Failure;
use crate::store::{FolderRow, Store};
use crate::ui;

/// LIST host1, record its folders in the index, mark vanished ones gone, and return the
/// selectable folders this run covers.
pub(super) fn sync_folder_list(
    conn: &mut dyn Mailbox,
    store: &mut Store,
    ns: &Namespace,
    opts: &PullOptions,
    report: &mut PullReport,
) -> Result<Vec<(FolderRow, Option<MailboxStatus>)>> {
    let mailboxes = conn.list()?;
    let all_mail = mailboxes.iter().any(|mb| {
        mb.special_use
            .as_deref()
            .is_some_and(|r| r.eq_ignore_ascii_case("\\All"))
    });
    if conn.provider() == crate::provider::Provider::Gmail && !all_mail {
        let why = crate::provider::GMAIL_NO_ALL_MAIL;
        ui::warn(why);
        report
            .warnings
            .push(Failure::folder("[Gmail]/All Mail", why));
    }
    // Selectable mailboxes by store path, in LIST order. Containers are left out: push
    // recreates them implicitly with their children.
    let mut by_path: BTreeMap<String, Vec<&MailboxInfo>> = BTreeMap::new();
    for mb in mailboxes.iter().filter(|mb| !mb.noselect) {
        by_path
            .entry(store_path(&mb.name, mb.separator, ns))
            .or_default()
            .push(mb);
    }
    let known: HashMap<String, MailboxName> = store
        .index
        .folders()?
        .into_iter()
        .map(|f| (f.path, f.raw_name))
        .collect();
    let provider = conn.provider();
    let takes = |path: &str| {
        opts.selection.includes(path)
            && (!provider.leaves_out_as_host1(path) || opts.selection.asks_for(path))
    };
    let mut listed: BTreeMap<String, Option<MailboxStatus>> = BTreeMap::new();
    for (path, mbs) in by_path {
        if opts.selection.includes(&path) && !takes(&path) {
            ui::info(&format!(
                "{path}: left out, as on every {provider} host1: Microsoft 365's view of the \
                 mailbox's attachments, not mail (imapsync's --office1 does the same); \
                 --folder {path} takes it"
            ));
        }
        if !takes(&path) {
            listed.insert(path, None);
            continue;
        }
        let Some(keep) = choose(&path, &mbs, known.get(&path), report) else {
            continue;
        };
        let mb = mbs[keep];
        listed.insert(path.clone(), mb.status.clone());
        store.index.upsert_folder(
            &path,
            &mb.raw_name,
            mb.separator,
            mb.special_use.as_deref(),
            mb.subscribed,
        )?;
    }
    let paths: Vec<String> = listed.keys().cloned().collect();
    for missing in opts.selection.unmatched(&paths) {
        if let Some(mb) = mailboxes.iter().find(|mb| mb.name == missing) {
            return Err(anyhow::Error::new(crate::folders::RawFolderName {
                given: missing.to_string(),
                path: store_path(&mb.name, mb.separator, ns),
            }));
        }
        report.failures.push(Failure::folder(
            missing,
            "no such folder on host1 (--folder names a store path like Archive/2024)",
        ));
    }
    let mut covered = Vec::new();
    for folder in store.index.folders()? {
        if !takes(&folder.path) {
            continue;
        }
        if let Some(status) = listed.remove(&folder.path) {
            covered.push((folder, status));
        } else if folder.gone_at.is_none() {
            ui::info(&format!(
                "{}: no longer on host1; kept in the store, marked gone",
                folder.path
            ));
            store.index.mark_folder_gone(folder.id)?;
        }
    }
    Ok(covered)
}

/// Which of host1's mailboxes `mbs` (all with store path `path`) the store takes there, or
/// none; the others are reported. A name like `a..b` on a `.` server has an empty level: no
/// path of the store can hold it (nor a bundle, nor host2). Two mailboxes with one store path
/// (`x/y` and `x_y` on a `.` server) cannot be merged (two UID spaces): the one the store
/// already holds there (`known`) keeps it, else the one whose name needed no `_`.
fn choose(
    path: &str,
    mbs: &[&MailboxInfo],
    known: Option<&MailboxName>,
    report: &mut PullReport,
) -> Option<usize> {
    if let Some(why) = crate::store::rules::folder_path_problem(path) {
        for mb in mbs {
            report.failures.push(Failure::folder(
                &mb.name,
                format!("not pulled: its store path {path:?} has {why}"),
            ));
        }
        return None;
    }
    let keep = mbs
        .iter()
        .position(|mb| known.is_some_and(|k| *k == mb.raw_name))
        .or_else(|| mbs.iter().position(|mb| !escaped_slash(mb)))
        .unwrap_or(0);
    for (_, mb) in mbs.iter().enumerate().filter(|(i, _)| *i != keep) {
        report.failures.push(Failure::folder(
            &mb.name,
            format!(
                "not pulled: its store path {path:?} is host1's folder {:?} \
                 (rename one of them on host1)",
                mbs[keep].name
            ),
        ));
    }
    Some(keep)
}

/// Whether `mb`'s store path has `_` for a `/` inside a level name.
fn escaped_slash(mb: &MailboxInfo) -> bool {
    mb.separator.is_some_and(|sep| sep != '/') && mb.name.contains('/')
}
