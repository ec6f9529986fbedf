//! `fleet status --html FILE`: one self-contained page (no network resource, no external
//! script) a migration manager can open: the accounts as a sortable table with a bar each,
//! and the totals. Every text from a record is escaped: account names and reasons come from
//! servers and files.

use super::state::{Record, State};
use imapferry::ui::human_bytes;

/// `&`, `<`, `>`, `"` and `'` as entities.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// How far an account is, for its bar: done is whole; a sync that pulled but failed to push
/// is half way; otherwise nothing is claimed.
fn progress(r: &Record) -> u32 {
    match r.state {
        State::Done => 100,
        _ if r.phase == "sync" && r.pulled > 0 && r.pushed == 0 => 50,
        _ => 0,
    }
}

fn row(r: &Record) -> String {
    let state = format!("{:?}", r.state).to_lowercase();
    let failures: String = r
        .failures
        .iter()
        .take(20)
        .map(|f| {
            let uid = f.uid.map(|u| format!(" UID {u}")).unwrap_or_default();
            format!("<br>{}{uid}: {}", esc(&f.folder), esc(&f.reason))
        })
        .collect();
    format!(
        "<tr class=\"account {state}\"><td>{}</td><td>{state}</td>\
         <td data-v=\"{p}\"><div class=\"bar\"><div style=\"width:{p}%\"></div></div></td>\
         <td data-v=\"{}\">{}</td><td data-v=\"{}\">{}</td><td data-v=\"{}\">{}</td>\
         <td data-v=\"{}\">{}</td><td data-v=\"{:.1}\">{:.1}</td><td>{}{failures}</td></tr>\n",
        esc(&r.name),
        r.pulled,
        r.pulled,
        r.pulled_bytes,
        human_bytes(r.pulled_bytes),
        r.pushed,
        r.pushed,
        r.pushed_bytes,
        human_bytes(r.pushed_bytes),
        r.seconds,
        r.seconds,
        esc(r.reason.as_deref().unwrap_or("")),
        p = progress(r),
    )
}

/// Click a column head to sort by it (numbers by their `data-v`), again to reverse.
const SCRIPT: &str = r#"
document.querySelectorAll('th').forEach((th, col) => th.addEventListener('click', () => {
  const body = document.querySelector('tbody');
  const rows = Array.from(body.querySelectorAll('tr'));
  const key = r => { const c = r.children[col]; return c.dataset.v !== undefined ? parseFloat(c.dataset.v) : c.textContent; };
  const dir = th.dataset.dir === 'asc' ? -1 : 1; th.dataset.dir = dir === 1 ? 'asc' : 'desc';
  rows.sort((a, b) => { const x = key(a), y = key(b); return (x > y ? 1 : x < y ? -1 : 0) * dir; });
  rows.forEach(r => body.appendChild(r));
}));
"#;

const STYLE: &str = "body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}\
td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}th{cursor:pointer;background:#eee}\
.bar{width:120px;height:10px;background:#eee}.bar div{height:10px;background:#3a3}\
tr.failed .bar div{background:#c33}tr.failed td:nth-child(2){color:#c33;font-weight:bold}";

/// The whole page.
pub fn page(records: &[Record]) -> String {
    let done = records.iter().filter(|r| r.state == State::Done).count();
    let failed = records.iter().filter(|r| r.state == State::Failed).count();
    let rows: String = records.iter().map(row).collect();
    let bytes: u64 = records
        .iter()
        .map(|r| r.pulled_bytes + r.pushed_bytes)
        .sum();
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>imapferry fleet</title>\
         <style>{STYLE}</style></head><body>\n<h1>imapferry fleet</h1>\n\
         <p id=\"totals\">{} accounts: {done} done, {failed} failed, {} other; {} moved</p>\n\
         <table><thead><tr><th>account</th><th>state</th><th>progress</th><th>fetched</th>\
         <th>bytes</th><th>sent</th><th>bytes</th><th>seconds</th><th>reason</th></tr></thead>\n\
         <tbody>\n{rows}</tbody></table>\n<script>{SCRIPT}</script>\n</body></html>\n",
        records.len(),
        records.len() - done - failed,
        human_bytes(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_reasons_are_escaped() {
        assert_eq!(
            esc("<b>\"x\" & 'y'</b>"),
            "&lt;b&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/b&gt;"
        );
        assert_eq!(esc("a\u{1b}[2Jb"), "a\u{fffd}[2Jb");
    }
}
