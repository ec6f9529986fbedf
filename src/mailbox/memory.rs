//! A [`Mailbox`] in memory: an IMAP account whose state lives in a [`Server`] shared by all its
//! connections, for tests of the engines without a network. Faults a real server or link has can
//! be switched on: a server that rewrites what it stores, a link that drops after so many
//! APPENDs, APPENDs that land only later (the bytes were still on their way when the client
//! died), a CREATE that closes the connection, Gmail's BYE past its daily bandwidth.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{anyhow, bail, Result};

use super::{Cap, Mailbox, MailboxVerb};
use crate::imap::uidset;
use crate::imap::{
    AppendMessage, AppendOutcome, ByteMeter, Fetched, FlagOp, MailboxInfo, SearchKey, Selected,
    Traffic,
};
use crate::mailtime::InternalDate;
use crate::names::{MailboxName, Namespace};

/// One stored message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    pub flags: Vec<String>,
    pub internaldate: InternalDate,
    pub bytes: Vec<u8>,
}

/// One mailbox.
#[derive(Debug, Clone)]
pub struct Folder {
    pub uidvalidity: u32,
    pub uidnext: u32,
    pub messages: BTreeMap<u32, Msg>,
    pub subscribed: bool,
}

impl Folder {
    fn new(uidvalidity: u32) -> Folder {
        Folder {
            uidvalidity,
            uidnext: 1,
            messages: BTreeMap::new(),
            subscribed: false,
        }
    }

    fn add(&mut self, msg: Msg) -> u32 {
        let uid = self.uidnext;
        self.uidnext += 1;
        self.messages.insert(uid, msg);
        uid
    }
}

/// How a server changes a message it stores.
pub type Rewrite = fn(&[u8]) -> Vec<u8>;

/// Faults to inject.
#[derive(Default)]
pub struct Faults {
    /// What the server stores instead of what it was given (e.g. a final CRLF added).
    pub rewrite: Option<Rewrite>,
    /// Each connection drops after this many APPENDs; the APPENDs it had sent after that land
    /// only when [`Server::deliver_late`] is called (they were on their way).
    pub drop_after_appends: Option<usize>,
    /// CREATE closes the connection (like a server answering BYE to it).
    pub bye_on_create: bool,
    /// The next this many APPENDs are refused as Microsoft 365 throttles: `NO Request is
    /// throttled. Suggested Backoff Time: 200 milliseconds`.
    pub throttle_appends: usize,
    /// Keywords (flags without `\`) are dropped from what is stored, as pymap does.
    pub drop_keywords: bool,
    /// SELECT and STATUS tell no UIDNEXT (RFC 3501 servers may omit it).
    pub no_uidnext: bool,
    /// `APPENDLIMIT=N` is announced.
    pub append_limit: Option<u64>,
    /// Gmail's daily bandwidth: once this many message bytes were served by body fetches or
    /// taken by APPENDs (all connections together), the next message ends the session with
    /// `* BYE Session expired, please login again.`, as Gmail does past its daily limit.
    pub quota_bytes: Option<u64>,
}

/// The account all connections of one test see.
pub struct Server {
    pub folders: BTreeMap<MailboxName, Folder>,
    pub namespace: Namespace,
    pub caps: Vec<Cap>,
    pub faults: Faults,
    /// APPENDs sent on connections that dropped, not yet landed: (mailbox, message).
    pub late: Vec<(MailboxName, Msg)>,
    /// Message bytes served by body fetches and taken by APPENDs, for [`Faults::quota_bytes`].
    pub moved: u64,
    next_uidvalidity: u32,
}

impl Server {
    /// An account with an empty INBOX, `/` as separator, no prefix, every [`Cap`].
    pub fn new() -> Arc<Mutex<Server>> {
        let mut folders = BTreeMap::new();
        folders.insert(MailboxName::from("INBOX"), Folder::new(1000));
        Arc::new(Mutex::new(Server {
            folders,
            namespace: Namespace {
                prefix: String::new(),
                separator: Some('/'),
            },
            caps: vec![Cap::UidPlus, Cap::ListStatus, Cap::CondStore],
            faults: Faults::default(),
            late: Vec::new(),
            moved: 0,
            next_uidvalidity: 1001,
        }))
    }

    /// Let the APPENDs that were on their way land.
    pub fn deliver_late(&mut self) {
        for (name, msg) in std::mem::take(&mut self.late) {
            let msg = self.stored(msg);
            if let Some(f) = self.folders.get_mut(&name) {
                f.add(msg);
            }
        }
    }

    /// Put a message in `name` (created when missing), as another client would.
    pub fn put(&mut self, name: &str, msg: Msg) -> u32 {
        let uv = self.next_uidvalidity;
        let f = self
            .folders
            .entry(MailboxName::from(name))
            .or_insert_with(|| Folder::new(uv));
        f.add(msg)
    }

    /// Count `n` more message bytes moved; false (the quota's BYE) when they pass
    /// [`Faults::quota_bytes`].
    fn move_bytes(&mut self, n: usize) -> bool {
        if self
            .faults
            .quota_bytes
            .is_some_and(|q| self.moved + n as u64 > q)
        {
            return false;
        }
        self.moved += n as u64;
        true
    }

    fn stored(&self, mut msg: Msg) -> Msg {
        if let Some(rewrite) = self.faults.rewrite {
            msg.bytes = rewrite(&msg.bytes);
        }
        if self.faults.drop_keywords {
            msg.flags.retain(|f| f.starts_with('\\'));
        }
        msg
    }
}

/// One connection to a [`Server`].
pub struct Memory {
    server: Arc<Mutex<Server>>,
    selected: Option<MailboxName>,
    /// The message count last reported (SELECT or NOOP), so NOOP reports changes only.
    seen: u32,
    appends: usize,
    usable: bool,
    /// Told of each body (or piece) delivered, as the network client tells of literals.
    meter: Option<ByteMeter>,
}

impl Memory {
    pub fn connect(server: &Arc<Mutex<Server>>) -> Memory {
        Memory {
            server: Arc::clone(server),
            selected: None,
            seen: 0,
            appends: 0,
            usable: true,
            meter: None,
        }
    }

    fn metered(&self, n: usize) {
        if let Some(m) = &self.meter {
            m(n as u64);
        }
    }

    /// Count `n` message bytes against [`Faults::quota_bytes`]; past it, the session ends.
    fn quota(&mut self, n: usize) -> Result<()> {
        let ok = self.server()?.move_bytes(n);
        if !ok {
            self.usable = false;
            return Err(quota_bye());
        }
        Ok(())
    }

    fn server(&self) -> Result<MutexGuard<'_, Server>> {
        if !self.usable {
            bail!(dropped());
        }
        Ok(self.server.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn selected_uids(&self, set: &str) -> Result<Vec<(u32, Msg)>> {
        let name = self
            .selected
            .clone()
            .ok_or_else(|| anyhow!("no mailbox selected"))?;
        let s = self.server()?;
        let f = s
            .folders
            .get(&name)
            .ok_or_else(|| anyhow!("mailbox gone"))?;
        Ok(f.messages
            .iter()
            .filter(|(u, _)| uidset::contains(set, **u))
            .map(|(u, m)| (*u, m.clone()))
            .collect())
    }

    fn with_folder<T>(&self, f: impl FnOnce(&mut Folder) -> T) -> Result<T> {
        let name = self
            .selected
            .clone()
            .ok_or_else(|| anyhow!("no mailbox selected"))?;
        let mut s = self.server()?;
        let folder = s
            .folders
            .get_mut(&name)
            .ok_or_else(|| anyhow!("mailbox gone"))?;
        Ok(f(folder))
    }
}

/// The error of a dropped connection: transient, like a reset link.
/// Gmail's answer past its daily bandwidth.
fn quota_bye() -> anyhow::Error {
    let text = "Session expired, please login again.";
    crate::imap::error::bye_error(
        text,
        format!("memory: server closed the connection: BYE {text}"),
    )
}

fn dropped() -> anyhow::Error {
    anyhow::Error::new(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "memory: the connection dropped",
    ))
}

fn fetched(uid: u32, m: &Msg, body: bool) -> Fetched {
    Fetched {
        uid,
        flags: Some(m.flags.clone()),
        internaldate: Some(Ok(m.internaldate)),
        size: Some(m.bytes.len() as u64),
        body: body.then(|| m.bytes.clone()),
        ..Fetched::default()
    }
}

impl Mailbox for Memory {
    fn has(&self, cap: Cap) -> bool {
        self.server
            .lock()
            .map(|s| s.caps.contains(&cap))
            .unwrap_or(false)
    }

    fn append_limit(&self) -> Option<u64> {
        self.server.lock().ok().and_then(|s| s.faults.append_limit)
    }

    fn namespace(&mut self) -> Result<Namespace> {
        Ok(self.server()?.namespace.clone())
    }

    fn list(&mut self) -> Result<Vec<MailboxInfo>> {
        let s = self.server()?;
        let sep = s.namespace.separator;
        let status = s.caps.contains(&Cap::ListStatus);
        Ok(s.folders
            .iter()
            .map(|(name, f)| MailboxInfo {
                raw_name: name.clone(),
                name: name.decoded(),
                separator: sep,
                attributes: Vec::new(),
                special_use: None,
                noselect: false,
                subscribed: f.subscribed,
                status: status.then_some(crate::imap::MailboxStatus {
                    messages: Some(f.messages.len() as u32),
                    uidnext: (!s.faults.no_uidnext).then_some(f.uidnext),
                    uidvalidity: Some(f.uidvalidity),
                    highestmodseq: None,
                }),
            })
            .collect())
    }

    fn select(&mut self, name: &MailboxName, _readonly: bool) -> Result<Selected> {
        let s = self.server()?;
        let f = s
            .folders
            .get(name)
            .ok_or_else(|| anyhow!("memory: no mailbox {name}"))?;
        let sel = Selected {
            exists: f.messages.len() as u32,
            uidvalidity: f.uidvalidity,
            uidnext: (!s.faults.no_uidnext).then_some(f.uidnext),
            highestmodseq: None,
            permanent_flags: Vec::new(),
        };
        drop(s);
        self.selected = Some(name.clone());
        self.seen = sel.exists;
        Ok(sel)
    }

    fn search(&mut self, key: &SearchKey) -> Result<Vec<u32>> {
        // The memory mailbox understands no criteria but ALL.
        if !key.as_str().eq_ignore_ascii_case("ALL") {
            return Err(anyhow!("memory: SEARCH {} is not supported", key.as_str()));
        }
        self.search_all()
    }

    fn search_all(&mut self) -> Result<Vec<u32>> {
        Ok(self
            .selected_uids("1:*")?
            .into_iter()
            .map(|(u, _)| u)
            .collect())
    }

    fn fetch_meta(
        &mut self,
        set: &str,
        _changedsince: Option<u64>,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<()> {
        for (uid, m) in self.selected_uids(set)? {
            f(fetched(uid, &m, false))?;
        }
        Ok(())
    }

    fn fetch_headers(&mut self, set: &str, f: &mut dyn FnMut(Fetched) -> Result<()>) -> Result<()> {
        for (uid, m) in self.selected_uids(set)? {
            let end = m
                .bytes
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(m.bytes.len(), |p| p + 4);
            let mut item = fetched(uid, &m, false);
            item.body = Some(m.bytes[..end].to_vec());
            f(item)?;
        }
        Ok(())
    }

    fn fetch_bodies(
        &mut self,
        uids: &[u32],
        _sizes: &[u64],
        _batch_bytes: u64,
        _depth: usize,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<Vec<u32>> {
        let set = uidset::compact(uids);
        if set.is_empty() {
            return Ok(Vec::new());
        }
        for (uid, m) in self.selected_uids(&set)? {
            self.quota(m.bytes.len())?;
            self.metered(m.bytes.len());
            f(fetched(uid, &m, true))?;
        }
        Ok(Vec::new())
    }

    fn fetch_partials(
        &mut self,
        uid: u32,
        offset: u64,
        chunk: u64,
        _declared: u64,
        _depth: usize,
        on_piece: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool> {
        let Some((_, m)) = self.selected_uids(&uid.to_string())?.into_iter().next() else {
            return Ok(false);
        };
        let mut at = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(m.bytes.len());
        loop {
            let end = (at + chunk as usize).min(m.bytes.len());
            self.quota(end - at)?;
            self.metered(end - at);
            on_piece(&m.bytes[at..end])?;
            if end - at < chunk as usize {
                return Ok(true);
            }
            at = end;
        }
    }

    fn append(
        &mut self,
        name: &MailboxName,
        msgs: &[AppendMessage<'_>],
    ) -> Result<Vec<AppendOutcome>> {
        let mut out = Vec::with_capacity(msgs.len());
        if !self.usable {
            bail!(dropped());
        }
        let server = Arc::clone(&self.server);
        let mut s = server.lock().unwrap_or_else(|e| e.into_inner());
        let limit = s.faults.drop_after_appends;
        for m in msgs {
            let msg = Msg {
                flags: m.flags.to_vec(),
                internaldate: m.internaldate.unwrap_or_else(|| InternalDate::from_unix(0)),
                bytes: m.bytes.to_vec(),
            };
            if !s.move_bytes(m.bytes.len()) {
                drop(s);
                self.usable = false;
                return Err(quota_bye());
            }
            // Written, as a client writes an APPEND's literal.
            self.metered(m.bytes.len());
            if s.faults.throttle_appends > 0 {
                s.faults.throttle_appends -= 1;
                out.push(AppendOutcome::Refused(crate::imap::Refusal::new(
                    crate::imap::response::Status::No,
                    None,
                    "Request is throttled. Suggested Backoff Time: 200 milliseconds".into(),
                )));
                continue;
            }
            if limit.is_some_and(|n| self.appends >= n) {
                // On its way when the link died: lands later, or never.
                s.late.push((name.clone(), msg));
                continue;
            }
            self.appends += 1;
            let stored = s.stored(msg);
            let Some(f) = s.folders.get_mut(name) else {
                out.push(AppendOutcome::Refused(crate::imap::Refusal::new(
                    crate::imap::response::Status::No,
                    Some("TRYCREATE"),
                    "no such mailbox".into(),
                )));
                continue;
            };
            let uid = f.add(stored);
            out.push(AppendOutcome::Ok {
                uidvalidity: Some(f.uidvalidity),
                uid: Some(uid),
            });
        }
        if out.len() < msgs.len() {
            drop(s);
            self.usable = false;
            return Err(dropped());
        }
        Ok(out)
    }

    fn store_flags(&mut self, uids: &[u32], op: FlagOp, flags: &[String]) -> Result<()> {
        self.with_folder(|f| {
            for uid in uids {
                if let Some(m) = f.messages.get_mut(uid) {
                    match op {
                        FlagOp::Set => m.flags = flags.to_vec(),
                        FlagOp::Add => {
                            for fl in flags {
                                if !m.flags.contains(fl) {
                                    m.flags.push(fl.clone());
                                }
                            }
                        }
                        FlagOp::Remove => m.flags.retain(|x| !flags.contains(x)),
                    }
                }
            }
        })
    }

    fn expunge_uids(&mut self, uids: &[u32]) -> Result<()> {
        self.with_folder(|f| {
            f.messages.retain(|u, m| {
                !(uids.contains(u) && m.flags.iter().any(|x| x.eq_ignore_ascii_case("\\Deleted")))
            })
        })
    }

    fn expunge_all(&mut self) -> Result<()> {
        self.with_folder(|f| {
            f.messages
                .retain(|_, m| !m.flags.iter().any(|x| x.eq_ignore_ascii_case("\\Deleted")))
        })
    }

    fn noop(&mut self) -> Result<Option<u32>> {
        let n = self.with_folder(|f| f.messages.len() as u32)?;
        let changed = n != self.seen;
        self.seen = n;
        Ok(changed.then_some(n))
    }

    fn mailbox_commands(
        &mut self,
        cmds: &[(MailboxVerb, &MailboxName)],
    ) -> Result<Vec<Result<()>>> {
        let mut out = Vec::new();
        for (verb, name) in cmds {
            let mut s = self.server()?;
            match verb {
                MailboxVerb::Create => {
                    if s.faults.bye_on_create {
                        drop(s);
                        self.usable = false;
                        return Err(dropped());
                    }
                    let uv = s.next_uidvalidity;
                    s.next_uidvalidity += 1;
                    s.folders
                        .entry((*name).clone())
                        .or_insert_with(|| Folder::new(uv));
                    out.push(Ok(()));
                }
                MailboxVerb::Subscribe => match s.folders.get_mut(*name) {
                    Some(f) => {
                        f.subscribed = true;
                        out.push(Ok(()));
                    }
                    None => out.push(Err(anyhow!("memory: no mailbox {name}"))),
                },
            }
        }
        Ok(out)
    }

    fn is_usable(&self) -> bool {
        self.usable
    }

    fn traffic(&self) -> Traffic {
        Traffic::default()
    }

    fn set_literal_meter(&mut self, meter: Option<ByteMeter>) {
        self.meter = meter;
    }

    fn logout(&mut self) {
        self.usable = false;
    }
}
