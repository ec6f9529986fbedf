//! `imapferry status`: what the store holds, per folder.

use std::path::Path;

use anyhow::Result;

use unicode_width::UnicodeWidthStr;

use crate::mailtime::format_utc;
use crate::store::{FolderSummary, Store};
use crate::ui::{self, human_bytes, printable};

/// Print the per-folder table (or JSON) for the store at `dir`.
pub fn run(dir: &Path, json: bool) -> Result<()> {
    let store = Store::open_to_read(dir)?;
    let rows = store.index.summary()?;
    let account = store.index.account()?;
    // What the daily budgets count (`--max-bytes-per-day1/2`): all destinations together.
    let day_ago = crate::clock::now() - crate::store::transfer_log::WINDOW_SECS;
    let (down, up) = store.index.transfer_totals_since(day_ago)?;
    if json {
        return print_json(dir, &rows, account, (down, up));
    }
    let account = account
        .map(|(h, u)| format!("{} on {}", printable(&u), printable(&h)))
        .unwrap_or_else(|| "no account pulled yet".into());
    ui::print(&format!("store {} ({account})", dir.display()));
    // Names came from a server or a bundle: control characters are shown escaped.
    let names: Vec<_> = rows.iter().map(|r| printable(&r.path)).collect();
    let width = names.iter().map(|n| n.width()).max().unwrap_or(6).max(6);
    ui::print(&format!(
        "{:<width$}  {:>9}  {:>10}  {:>10}  last pull",
        "folder", "messages", "raw", "stored"
    ));
    let (mut msgs, mut raw, mut stored) = (0, 0, 0);
    for (r, name) in rows.iter().zip(&names) {
        let last = match (r.gone, r.last_pull) {
            (true, _) => "gone from host1".to_string(),
            (false, Some(t)) => format_utc(t),
            (false, None) => "never".to_string(),
        };
        // `{:<N}` pads by chars; terminals show CJK names two columns wide.
        let pad = " ".repeat(width.saturating_sub(name.width()));
        ui::print(&format!(
            "{name}{pad}  {:>9}  {:>10}  {:>10}  {last}",
            r.messages,
            human_bytes(r.raw_bytes),
            human_bytes(r.stored_bytes),
        ));
        msgs += r.messages;
        raw += r.raw_bytes;
        stored += r.stored_bytes;
    }
    ui::print(&format!(
        "{:<width$}  {:>9}  {:>10}  {:>10}",
        "total",
        msgs,
        human_bytes(raw),
        human_bytes(stored)
    ));
    ui::print(&format!(
        "last 24 hours: {} downloaded from host1, {} uploaded to host2",
        human_bytes(down),
        human_bytes(up)
    ));
    Ok(())
}

/// `status --json`: the account, the totals, the last 24 hours' bytes (down, up), each folder.
fn print_json(
    dir: &Path,
    rows: &[FolderSummary],
    account: Option<(String, String)>,
    (down, up): (u64, u64),
) -> Result<()> {
    let list: Vec<_> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "folder": r.path,
                "messages": r.messages,
                "raw_bytes": r.raw_bytes,
                "stored_bytes": r.stored_bytes,
                "last_pull": r.last_pull,
                "gone": r.gone,
            })
        })
        .collect();
    let live = rows.iter().filter(|r| !r.gone);
    let doc = serde_json::json!({
        "store": dir,
        "account": account.as_ref().map(|(host, user)| serde_json::json!({"host": host, "user": user})),
        "folders": rows.iter().filter(|r| !r.gone).count(),
        "messages": live.clone().map(|r| r.messages).sum::<u64>(),
        "raw_bytes": live.clone().map(|r| r.raw_bytes).sum::<u64>(),
        "stored_bytes": live.map(|r| r.stored_bytes).sum::<u64>(),
        "last_24h": { "downloaded_bytes": down, "uploaded_bytes": up },
        "per_folder": list,
    });
    ui::print_json(&doc)
}
