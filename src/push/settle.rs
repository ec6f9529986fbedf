//! The account-wide last look of a push. APPENDs written by a push that died (or left
//! unanswered by this one) may still be on their way to host2, held by the kernel, a proxy or
//! a slow link, and land after this push sent the same messages again. So once every mailbox
//! is pushed, and our own traffic no longer competes for the link, wait until none of the
//! mailboxes concerned has changed for long enough, then look at each once more: copies that
//! landed are recorded, those that doubled a message sent since are removed.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::folder::{self, Pushed, Unfinished, SETTLED_AFTER_SECS};
use super::{Ctx, Outcome};
use crate::compare::targets::Target;
use crate::mailbox::{Cap, Mailbox};
use crate::names::MailboxName;
use crate::run::{self, Failure, Retry};
use crate::store::Index;
use crate::ui;

/// The rate assumed for the link when this run sent too little to measure it (2 Mbit/s).
const SLOW_LINK_BYTES_PER_SEC: f64 = 250_000.0;

/// The longest quiet window asked for, and the longest wait beyond it.
const MOST_QUIET: Duration = Duration::from_secs(60);
const MOST_WAIT: Duration = Duration::from_secs(60);

/// Each target's outcome: those the pool finished as they are, the unsettled ones after the
/// last look (on `conn`, or a new connection). Gives back the connection when still usable.
pub(super) fn last_looks(
    ctx: &Ctx<'_>,
    conn: Option<Box<dyn Mailbox>>,
    todo: &[Target],
    results: Vec<Option<Pushed>>,
    started: Instant,
) -> (Vec<Option<Outcome>>, Option<Box<dyn Mailbox>>) {
    let rate = appended_rate(&results, started);
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(results.len());
    let mut unsettled: Vec<(usize, Unfinished)> = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Some(Pushed::Unsettled(u)) => {
                unsettled.push((i, u));
                outcomes.push(None);
            }
            Some(Pushed::Done(o)) => outcomes.push(Some(o)),
            None => outcomes.push(None),
        }
    }
    if unsettled.is_empty() {
        return (outcomes, conn);
    }
    let opened = Index::open(&ctx.index_path).and_then(|index| {
        let conn = match conn {
            Some(c) => c,
            None => run::connect(ctx.connector, &mut Retry::new(ctx.opts.retries))?,
        };
        Ok((index, conn))
    });
    let (mut index, mut conn) = match opened {
        Ok(v) => v,
        Err(e) => {
            for (i, u) in unsettled {
                outcomes[i] = Some(folder::abandon_unsettled(ctx, &todo[i], u, e.to_string()));
            }
            return (outcomes, None);
        }
    };
    let names: Vec<&MailboxName> = unsettled.iter().map(|(i, _)| &todo[*i].mailbox).collect();
    let window = quiet_window(ctx, &index, &names, rate);
    let mut retry = Retry::new(ctx.opts.retries);
    let quiet = run::retrying(
        &mut conn,
        ctx.connector,
        &mut retry,
        "waiting for APPENDs of an interrupted push to land",
        |m, _| wait_quiet(m, &names, window, window + MOST_WAIT),
    );
    let late = match quiet {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "host2 was still receiving messages after {:.0} s: APPENDs of an interrupted push \
             may still land; run push again in a few minutes to remove any doubles they make",
            (window + MOST_WAIT).as_secs_f64()
        )),
        Err(e) => {
            for (i, u) in unsettled {
                outcomes[i] = Some(folder::abandon_unsettled(
                    ctx,
                    &todo[i],
                    u,
                    format!("{e:#}"),
                ));
            }
            return (outcomes, None);
        }
    };
    for (i, u) in unsettled {
        let t = &todo[i];
        let late = late.as_ref().map(|why| Failure::folder(&t.label(), why));
        let o = folder::finish_unsettled(ctx, &mut conn, &mut index, t, u, late);
        outcomes[i] = Some(o);
    }
    let usable = conn.is_usable();
    (outcomes, usable.then_some(conn))
}

/// Bytes per second this run appended (a lower bound of the link's rate: it includes the
/// surveys), when it sent enough to tell.
fn appended_rate(results: &[Option<Pushed>], started: Instant) -> Option<f64> {
    let bytes: u64 = results
        .iter()
        .flatten()
        .map(|r| match r {
            Pushed::Done((fr, _)) => fr.bytes,
            Pushed::Unsettled(u) => u.bytes(),
        })
        .sum();
    (bytes >= 1 << 20).then(|| bytes as f64 / started.elapsed().as_secs_f64().max(0.001))
}

/// How long the mailboxes must stay unchanged: the configured settle time, or longer when a
/// message still possibly on its way is large enough that the link carries it for longer
/// (while it travels, host2 shows no change).
fn quiet_window(
    ctx: &Ctx<'_>,
    index: &Index,
    names: &[&MailboxName],
    rate: Option<f64>,
) -> Duration {
    let floor = Duration::from_secs(ctx.opts.settle_secs);
    let Some(dest) = ctx.destination else {
        return floor;
    };
    let now = crate::clock::now();
    let largest = names
        .iter()
        .filter_map(|n| index.intents_for(dest, n).ok())
        .flatten()
        .filter(|i| now - i.created_at < SETTLED_AFTER_SECS)
        .map(|i| i.intent.size)
        .max()
        .unwrap_or(0);
    let rate = rate.unwrap_or(SLOW_LINK_BYTES_PER_SEC);
    let travel = Duration::from_secs_f64(largest as f64 / rate);
    travel.clamp(floor, MOST_QUIET.max(floor))
}

/// Wait until none of `names` has changed (UIDNEXT, MESSAGES) for `quiet`; false when that did
/// not happen within `limit`.
fn wait_quiet(
    conn: &mut dyn Mailbox,
    names: &[&MailboxName],
    quiet: Duration,
    limit: Duration,
) -> Result<bool> {
    if quiet.is_zero() {
        return Ok(true);
    }
    let started = Instant::now();
    let mut calm_since = Instant::now();
    let mut last = marks(conn, names)?;
    let settled = loop {
        if calm_since.elapsed() >= quiet {
            break true;
        }
        if started.elapsed() >= limit {
            break false;
        }
        std::thread::sleep(Duration::from_millis(250));
        let now = marks(conn, names)?;
        if now != last {
            (calm_since, last) = (Instant::now(), now);
        }
    };
    ui::detail(&format!(
        "waited {:.1} s for APPENDs of an interrupted push to land in {} mailboxes",
        started.elapsed().as_secs_f64(),
        names.len()
    ));
    Ok(settled)
}

/// Each mailbox's (UIDNEXT, MESSAGES): one LIST-STATUS when host2 offers it, else an EXAMINE
/// each.
fn marks(conn: &mut dyn Mailbox, names: &[&MailboxName]) -> Result<Vec<(Option<u32>, u32)>> {
    let listed = if conn.has(Cap::ListStatus) {
        conn.list()?
    } else {
        Vec::new()
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let status = listed
            .iter()
            .find(|mb| &mb.raw_name == *name)
            .and_then(|mb| mb.status.as_ref());
        match status.and_then(|st| st.messages.map(|m| (st.uidnext, m))) {
            Some(mark) => out.push(mark),
            None => {
                let sel = conn.select(name, true)?;
                out.push((sel.uidnext, sel.exists));
            }
        }
    }
    Ok(out)
}
