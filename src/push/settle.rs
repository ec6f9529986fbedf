//! The account-wide last look of a push. APPENDs written by a push that died (or left
//! unanswered by this one) may still be on their way to host2, held by the kernel, a proxy or
//! a slow link, and land after this push sent the same messages again. They can land only
//! until their bytes have crossed the link ([`landing_deadline`]): so once every mailbox is
//! pushed, and our own traffic no longer competes for the link, wait until then (said on the
//! screen, with the time left) and until the mailboxes concerned are quiet, then look at each
//! once more: copies that landed are recorded, those that doubled a message sent since are
//! removed. Past that time there is nothing to wait for, however recent the interruption.

use std::time::{Duration, Instant};

use anyhow::Result;

use super::folder::{self, Pushed, Unfinished, SETTLED_AFTER_SECS};
use super::{Ctx, Outcome};
use crate::budget::Account;
use crate::compare::targets::Target;
use crate::mailbox::{Cap, Mailbox};
use crate::names::MailboxName;
use crate::run::{self, Failure, Retry};
use crate::store::Index;
use crate::ui;

/// The rate assumed for the link when this run sent too little to measure it (2 Mbit/s).
const SLOW_LINK_BYTES_PER_SEC: f64 = 250_000.0;

/// The longest wait for quiet beyond the landing deadline.
const MOST_WAIT: Duration = Duration::from_secs(60);

/// Seconds added to a computed landing time: times are whole seconds, and a server takes a
/// moment to store what arrived.
const LANDING_MARGIN_SECS: f64 = 5.0;

/// When the APPENDs still pending for `dest` can have landed at the latest (Unix seconds);
/// `None` when none is pending. Their batches went out one after another, each when its
/// intents were committed, over a link at least 4/5 as fast as it was then: the rate the
/// transfer log shows for the minutes they were sent in, else `this_run`'s, else a slow
/// link's. Bytes that cannot all have crossed by then are not coming: waiting for them an hour
/// later (every run within the hour used to) only looks like a hang.
pub(super) fn landing_deadline(
    index: &Index,
    dest: i64,
    this_run: Option<f64>,
) -> Result<Option<i64>> {
    let now = crate::clock::now();
    let pending = index.pending_sizes(dest, now - SETTLED_AFTER_SECS)?;
    let (Some(first), Some(last)) = (pending.first(), pending.last()) else {
        return Ok(None);
    };
    let rate = logged_rate(index, dest, first.0, last.0)?
        .or(this_run)
        .unwrap_or(SLOW_LINK_BYTES_PER_SEC)
        * 0.8;
    let mut t = 0.0f64;
    for (created, size) in &pending {
        t = t.max(*created as f64) + *size as f64 / rate;
    }
    Ok(Some((t + LANDING_MARGIN_SECS).ceil() as i64))
}

/// Bytes per second the transfer log shows uploaded to `dest` between ten minutes before
/// `from` and `to`, when enough moved to tell.
fn logged_rate(index: &Index, dest: i64, from: i64, to: i64) -> Result<Option<f64>> {
    let rows: Vec<(i64, u64)> = index
        .transfers_since(Account::up(dest), from - 600)?
        .into_iter()
        .filter(|(at, _)| *at <= to)
        .collect();
    let (Some(a), Some(b)) = (rows.first(), rows.last()) else {
        return Ok(None);
    };
    let bytes: u64 = rows[1..].iter().map(|r| r.1).sum();
    let span = b.0 - a.0;
    Ok((span >= 2 && bytes >= 1 << 20).then(|| bytes as f64 / span as f64))
}

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
    let floor = Duration::from_secs(ctx.opts.settle_secs);
    let deadline = match ctx.destination {
        Some(d) => landing_deadline(&index, d, rate).unwrap_or(None),
        None => None,
    };
    let left = deadline.map_or(0, |t| (t - crate::clock::now()).max(0)) as u64;
    let until = Instant::now() + Duration::from_secs(left).max(floor);
    ui::info(&format!(
        "waiting up to {left} s{} for APPENDs an interrupted push left unanswered to land in {} \
         mailboxes, then a last look for doubles",
        deadline
            .filter(|_| left > 0)
            .map(|t| format!(" (until {})", crate::mailtime::format_utc(t)))
            .unwrap_or_default(),
        names.len()
    ));
    let mut retry = Retry::new(ctx.opts.retries);
    let quiet = run::retrying(
        &mut conn,
        ctx.connector,
        &mut retry,
        "waiting for APPENDs of an interrupted push to land",
        |m, _| wait_quiet(m, &names, floor, until),
    );
    let late = match quiet {
        Ok(true) => None,
        Ok(false) => Some(format!(
            "host2 was still receiving messages {:.0} s after the APPENDs of an interrupted \
             push could have landed: more may still land; run push again in a few minutes to \
             remove any doubles they make",
            MOST_WAIT.as_secs_f64()
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

/// Wait until `until` and until none of `names` has changed (UIDNEXT, MESSAGES) for `quiet`;
/// false when they were not quiet [`MOST_WAIT`] after `until`.
fn wait_quiet(
    conn: &mut dyn Mailbox,
    names: &[&MailboxName],
    quiet: Duration,
    until: Instant,
) -> Result<bool> {
    let started = Instant::now();
    let _shown = ui::waiting("for APPENDs of an interrupted push to land", until);
    let mut calm_since = Instant::now();
    let mut last = marks(conn, names)?;
    let settled = loop {
        let now = Instant::now();
        if now >= until && now.duration_since(calm_since) >= quiet {
            break true;
        }
        if now >= until + MOST_WAIT {
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
