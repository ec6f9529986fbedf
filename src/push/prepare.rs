//! The host2 folders a push needs, made before any message goes: the missing ones created and
//! those subscribed on host1 subscribed, all in one pipelined burst (about one round trip).
//!
//! Servers differ: some want parents created first, some close the connection on a CREATE they
//! dislike (of a folder that exists, or whose parent is missing). So when the burst fails, the
//! connection is made again, host2's folder list is read again (what the burst did create is not
//! created twice), and the remaining folders are created one at a time, parents first; a folder
//! that still cannot be created fails alone, listed, and the push goes on with the others.

use std::collections::BTreeSet;

use anyhow::Result;

use super::Ctx;
use crate::compare::targets::{ancestor_mailboxes, Target};
use crate::imap::is_transient;
use crate::mailbox::{Mailbox, MailboxVerb};
use crate::names::MailboxName;
use crate::names::Namespace;
use crate::run::{self, Retry};
use crate::ui;

/// Create and subscribe what `plan` needs (and subscribe `subscribe_only`). Returns, per target,
/// `None` to push it or the reason it cannot be pushed; `created` gets the host2 paths created
/// (with `--dry-run`: to create).
pub(super) fn mailboxes(
    conn: &mut Box<dyn Mailbox>,
    ctx: &Ctx<'_>,
    ns: &Namespace,
    (plan, subscribe_only): (&[Target], &[MailboxName]),
    created: &mut Vec<String>,
    refused: &mut [Option<String>],
) -> Result<Vec<bool>> {
    created.extend(plan.iter().filter(|t| !t.exists).map(|t| t.path.clone()));
    if ctx.opts.dry_run {
        return Ok(vec![true; plan.len()]);
    }
    let mut cmds: Vec<(MailboxVerb, &MailboxName)> = Vec::new();
    for t in plan {
        if !t.exists {
            cmds.push((MailboxVerb::Create, &t.mailbox));
        }
        if t.want_subscribed && !t.subscribed {
            cmds.push((MailboxVerb::Subscribe, &t.mailbox));
        }
    }
    cmds.extend(subscribe_only.iter().map(|m| (MailboxVerb::Subscribe, m)));
    if cmds.is_empty() {
        return Ok(vec![true; plan.len()]);
    }
    let results = match conn.mailbox_commands(&cmds) {
        Ok(r) => r,
        Err(e) if is_transient(&e) => {
            ui::info(&format!(
                "host2 dropped the connection while folders were created ({e:#}); creating them \
                 one at a time"
            ));
            return one_at_a_time(conn, ctx, ns, plan, refused);
        }
        Err(e) => return Err(e),
    };
    let mut keep = vec![true; plan.len()];
    let mut retry_alone = Vec::new();
    for ((verb, name), result) in cmds.iter().zip(results) {
        let Err(e) = result else { continue };
        match plan.iter().position(|t| &t.mailbox == *name) {
            Some(i) if *verb == MailboxVerb::Create => retry_alone.push(i),
            _ => ui::warn(&format!("cannot subscribe {name} on host2: {e:#}")),
        }
    }
    for i in retry_alone {
        if let Err(e) = create_alone(conn.as_mut(), ns, &plan[i]) {
            keep[i] = false;
            refused[i] = Some(format!("cannot create it on host2: {e:#}"));
        }
    }
    Ok(keep)
}

/// After a dropped connection: reconnect, read host2's folders again, then create each missing
/// target alone, its missing parents first, and subscribe it.
fn one_at_a_time(
    conn: &mut Box<dyn Mailbox>,
    ctx: &Ctx<'_>,
    ns: &Namespace,
    plan: &[Target],
    refused: &mut [Option<String>],
) -> Result<Vec<bool>> {
    let mut retry = Retry::new(ctx.opts.retries);
    *conn = run::connect(ctx.connector, &mut retry)?;
    let listed = conn.list()?;
    let selectable: BTreeSet<MailboxName> = listed
        .iter()
        .filter(|mb| !mb.noselect)
        .map(|mb| mb.raw_name.clone())
        .collect();
    let mut known: BTreeSet<MailboxName> = listed.into_iter().map(|mb| mb.raw_name).collect();
    let mut keep = vec![true; plan.len()];
    for (i, t) in plan.iter().enumerate() {
        if selectable.contains(&t.mailbox) {
            continue;
        }
        let mut made = Ok(());
        for name in ancestor_mailboxes(&t.path, ns) {
            if !known.contains(&name) {
                made = ensure(conn, ctx, &mut retry, &name);
                known.insert(name);
            }
        }
        made = made.and_then(|()| ensure(conn, ctx, &mut retry, &t.mailbox));
        match made {
            Ok(()) => {
                known.insert(t.mailbox.clone());
                if t.want_subscribed {
                    let sub = conn.mailbox_commands(&[(MailboxVerb::Subscribe, &t.mailbox)]);
                    if let Err(e) = sub.and_then(|mut r| r.pop().unwrap_or(Ok(()))) {
                        ui::warn(&format!("cannot subscribe {} on host2: {e:#}", t.path));
                    }
                }
            }
            Err(e) => {
                keep[i] = false;
                refused[i] = Some(format!("cannot create it on host2: {e:#}"));
            }
        }
    }
    Ok(keep)
}

/// CREATE `name` alone; when the server drops the connection over it, once more on a new one.
fn ensure(
    conn: &mut Box<dyn Mailbox>,
    ctx: &Ctx<'_>,
    retry: &mut Retry,
    name: &MailboxName,
) -> Result<()> {
    let create = |conn: &mut dyn Mailbox| -> Result<()> {
        let mut r = conn.mailbox_commands(&[(MailboxVerb::Create, name)])?;
        r.pop().unwrap_or(Ok(()))
    };
    if !conn.is_usable() {
        *conn = run::connect(ctx.connector, retry)?;
    }
    match create(conn.as_mut()) {
        Err(e) if is_transient(&e) || !conn.is_usable() => {
            *conn = run::connect(ctx.connector, retry)?;
            create(conn.as_mut())
        }
        other => other,
    }
}

/// CREATE `t`'s mailbox; when the server refuses, its parents first, then it again.
fn create_alone(conn: &mut dyn Mailbox, ns: &Namespace, t: &Target) -> Result<()> {
    let create = |conn: &mut dyn Mailbox, name: &MailboxName| -> Result<()> {
        let mut r = conn.mailbox_commands(&[(MailboxVerb::Create, name)])?;
        r.pop().unwrap_or(Ok(()))
    };
    if create(conn, &t.mailbox).is_ok() {
        return Ok(());
    }
    for parent in ancestor_mailboxes(&t.path, ns) {
        let _ = create(conn, &parent);
    }
    create(conn, &t.mailbox)
}
