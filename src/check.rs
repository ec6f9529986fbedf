//! `imapferry check`: compare host2 with the store, folder by folder, without changing either.
//!
//! Each store folder is mapped to its host2 mailbox exactly as `push` maps it; the store's live
//! messages are then found on host2 through the push state (mappings recorded from APPENDUID,
//! checked against host2's UIDs and sizes) and, for the rest, by identity (size and header
//! facts, see `docs/push.md`). Flags are compared as sets, limited to what host2 can store.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::folders::Selection;
use crate::imap::Endpoint;
use crate::push::survey::{self, storable_flags};
use crate::push::targets::{self, MapRules};
use crate::push::{connect, store_folders};
use crate::store::Store;
use crate::ui;

/// What `check` compares.
#[derive(Debug)]
pub struct CheckOptions {
    pub endpoint: Endpoint,
    pub store: PathBuf,
    pub selection: Selection,
    pub rules: MapRules,
    /// Consecutive transient failures to retry (see [`crate::retry`]).
    pub retries: u32,
}

/// The comparison of one host2 mailbox.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderCheck {
    pub folder: String,
    pub mailbox: String,
    /// host2 has the mailbox.
    pub exists: bool,
    /// Live store messages that go there.
    pub store: u64,
    /// Messages host2 holds there.
    pub host2: u64,
    pub present: u64,
    /// Store messages host2 lacks: (store folder, store UID).
    pub missing: Vec<(String, u32)>,
    /// host2 UIDs that match no store message (not an error: host2 may hold more).
    pub extra: Vec<u32>,
    /// Present messages whose flags differ: (store folder, store UID, host2 UID).
    pub flag_differences: Vec<(String, u32, u32)>,
    /// Mapped messages whose size on host2 differs from the store's.
    pub size_differences: Vec<(String, u32, u32)>,
}

impl FolderCheck {
    fn ok(&self) -> bool {
        self.missing.is_empty()
            && self.flag_differences.is_empty()
            && self.size_differences.is_empty()
    }
}

/// The outcome of `check`.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    pub folders: u64,
    pub messages: u64,
    pub present: u64,
    pub missing: u64,
    pub extra: u64,
    pub flag_differences: u64,
    pub size_differences: u64,
    /// True when host2 holds every store message with its flags.
    pub ok: bool,
    pub verdict: String,
    pub per_folder: Vec<FolderCheck>,
}

impl CheckReport {
    /// Lines for humans: one per folder that differs, then the verdict.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for f in &self.per_folder {
            if f.ok() && f.extra.is_empty() && ui::verbosity() < 2 {
                continue;
            }
            out.push_str(&format!(
                "{}: {} in the store, {} on host2{}: {} present, {} missing, {} extra, {} flag \
                 differences, {} size differences\n",
                f.folder,
                f.store,
                f.host2,
                if f.exists { "" } else { " (no such mailbox)" },
                f.present,
                f.missing.len(),
                f.extra.len(),
                f.flag_differences.len(),
                f.size_differences.len()
            ));
            for (folder, uid) in f.missing.iter().take(20) {
                out.push_str(&format!("  missing: {folder} UID {uid}\n"));
            }
            for (folder, uid, uid2) in f.flag_differences.iter().take(20) {
                out.push_str(&format!(
                    "  flags differ: {folder} UID {uid} (host2 UID {uid2})\n"
                ));
            }
        }
        out.push_str(&self.verdict);
        out
    }
}

/// Compare. Errors that stop the whole check are returned; differences are in the report.
pub fn run(opts: &CheckOptions) -> Result<CheckReport> {
    let store = Store::open_existing(&opts.store)?;
    let folders = store_folders(&store, &opts.selection)?;
    let mut client = connect(&opts.endpoint, opts.retries)?;
    let ns = client.namespace()?;
    let listed = client.list()?;
    let plan = targets::plan(&folders, &opts.rules, &ns, &listed);
    let destination = store
        .index
        .find_destination(&opts.endpoint.host, &opts.endpoint.user)?;
    let mut report = CheckReport::default();
    for t in &plan {
        let mut fc = FolderCheck {
            folder: t.label(),
            mailbox: t.path.clone(),
            exists: t.exists,
            ..FolderCheck::default()
        };
        if !t.exists {
            let msgs = survey::load_store(&store.index, t)?;
            fc.store = msgs.len() as u64;
            fc.missing = msgs
                .iter()
                .map(|m| (m.folder.to_string(), m.row.uid))
                .collect();
        } else {
            let sel = client.select(&t.mailbox, true)?;
            let host = survey::list_host(&mut client, sel.exists)?;
            let mappings = match destination {
                Some(d) => store.index.mappings_to(d, &t.mailbox)?,
                None => Vec::new(),
            };
            let sv = survey::survey(
                &mut client,
                &store.index,
                t,
                sel.uidvalidity,
                host,
                mappings,
            )?;
            fc.store = sv.store.len() as u64;
            fc.host2 = sv.host.len() as u64;
            fc.present = sv.present.len() as u64;
            fc.missing = sv
                .missing
                .iter()
                .map(|&i| (sv.store[i].folder.to_string(), sv.store[i].row.uid))
                .collect();
            fc.extra = sv.extras.clone();
            for (i, m) in &sv.present {
                let s = &sv.store[*i];
                let Some(h) = sv.host.get(&m.dest_uid) else {
                    continue;
                };
                let (want, _) = storable_flags(&s.row.flags, &sel.permanent_flags);
                if !survey::same_flags(&want, &h.flags) {
                    fc.flag_differences
                        .push((s.folder.to_string(), s.row.uid, m.dest_uid));
                }
                if h.size.is_some_and(|size| size != s.row.size) {
                    fc.size_differences
                        .push((s.folder.to_string(), s.row.uid, m.dest_uid));
                }
            }
        }
        report.folders += 1;
        report.messages += fc.store;
        report.present += fc.present;
        report.missing += fc.missing.len() as u64;
        report.extra += fc.extra.len() as u64;
        report.flag_differences += fc.flag_differences.len() as u64;
        report.size_differences += fc.size_differences.len() as u64;
        report.per_folder.push(fc);
    }
    let _ = client.logout();
    report.ok = report.missing == 0 && report.flag_differences == 0 && report.size_differences == 0;
    report.verdict = if report.ok {
        format!(
            "host2 holds all {} messages of the store's {} folders{}",
            report.messages,
            report.folders,
            if report.extra > 0 {
                format!(" (and {} more of its own)", report.extra)
            } else {
                String::new()
            }
        )
    } else {
        format!(
            "host2 differs from the store: {} of {} messages missing, {} with other flags, {} with \
             another size; run `imapferry push` to fix",
            report.missing,
            report.messages,
            report.flag_differences,
            report.size_differences
        )
    };
    Ok(report)
}
