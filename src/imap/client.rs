//! A logged-in IMAP session and the commands imapferry sends.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::auth;
use super::conn::{self, Conn, Endpoint, Secret, Stream, TlsMode, Traffic, Transport};
use super::error::{wire_error, ErrorKind};
use super::quote;
use super::response::{self, Code, MailboxStatus, Response, Status, Untagged};
use super::uidset;
use super::utf7;
use crate::mailtime::InternalDate;

/// One mailbox from LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// The name exactly as the server sent it (modified UTF-7), to be used in commands.
    pub raw_name: String,
    /// The name decoded to UTF-8, with the server's separator (not translated).
    pub name: String,
    /// Hierarchy separator, `None` for a flat namespace (NIL).
    pub separator: Option<char>,
    /// All attributes as sent, e.g. `\HasNoChildren`, `\Noselect`, `\Sent`.
    pub attributes: Vec<String>,
    /// The RFC 6154 special-use role among the attributes, e.g. `\Sent`, if any.
    pub special_use: Option<String>,
    /// True when the mailbox cannot be selected (`\Noselect` or `\NonExistent`).
    pub noselect: bool,
    /// True when LSUB / LIST (SUBSCRIBED) reports it subscribed.
    pub subscribed: bool,
    /// MESSAGES, UIDNEXT, UIDVALIDITY (and HIGHESTMODSEQ with CONDSTORE) when the server offers
    /// LIST-STATUS (RFC 5819): the state of every folder in the one LIST round trip.
    pub status: Option<MailboxStatus>,
}

/// The personal namespace from NAMESPACE (or a guess from LIST when NAMESPACE is not offered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// e.g. "" or "INBOX."
    pub prefix: String,
    pub separator: Option<char>,
}

/// What SELECT/EXAMINE told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selected {
    pub exists: u32,
    pub uidvalidity: u32,
    pub uidnext: Option<u32>,
    /// HIGHESTMODSEQ when the server supports CONDSTORE (None for NOMODSEQ or no CONDSTORE).
    pub highestmodseq: Option<u64>,
    pub permanent_flags: Vec<String>,
}

/// One FETCH response, with the items that were asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched {
    pub uid: u32,
    /// Flags as sent, e.g. `\Seen`, `$Forwarded`; `\Recent` included if the server sent it.
    pub flags: Option<Vec<String>>,
    /// INTERNALDATE, parsed; `Err` holds what the server sent instead (printable) when it is not
    /// an IMAP date-time (`NIL` included).
    pub internaldate: Option<Result<InternalDate, String>>,
    pub size: Option<u64>,
    pub modseq: Option<u64>,
    /// `BODY[]` (or `BODY[]<offset>` / `BODY[HEADER]`) bytes, exactly as sent.
    pub body: Option<Vec<u8>>,
    /// The offset of a partial `BODY[]<origin>` the server stated.
    pub origin: Option<u64>,
}

/// One message to APPEND.
#[derive(Debug, Clone)]
pub struct AppendMessage<'a> {
    pub flags: &'a [String],
    /// INTERNALDATE in IMAP date-time form, e.g. `17-Jul-1996 02:44:25 -0700`.
    pub internaldate: Option<&'a str>,
    pub bytes: &'a [u8],
}

/// Result of one APPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored; `uid` from APPENDUID when UIDPLUS is offered.
    Ok {
        uidvalidity: Option<u32>,
        uid: Option<u32>,
    },
    /// NO/BAD from the server, with its text.
    Rejected(String),
}

/// Most commands in flight during `append_many` before we stop and read replies; keeps the
/// server's replies (which it writes while we keep writing) far below any socket buffer.
const MAX_APPENDS_IN_FLIGHT: usize = 64;
/// Most literal bytes sent but not yet acknowledged during `append_many`.
const MAX_APPEND_BYTES_IN_FLIGHT: u64 = 8 << 20;
/// LITERAL- allows non-synchronizing literals up to this size.
const LITERAL_MINUS_MAX: usize = 4096;

/// One piece of a command line.
enum Part<'a> {
    /// Protocol text, logged as is.
    Text(Cow<'a, [u8]>),
    /// A literal (`{N}`/`{N+}` then the bytes); logged as `{N}`.
    Literal(&'a [u8]),
    /// Secret text, logged as `<secret>`.
    SecretText(Cow<'a, [u8]>),
    /// Secret literal, logged as `<secret>`.
    SecretLiteral(Cow<'a, [u8]>),
}

fn text(s: &str) -> Part<'_> {
    Part::Text(Cow::Borrowed(s.as_bytes()))
}

/// An astring argument (quoted, or a literal when it must be).
fn arg(s: &[u8]) -> Part<'_> {
    match quote::astring(s) {
        quote::Arg::Quoted(q) => Part::Text(Cow::Owned(q)),
        quote::Arg::Literal(_) => Part::Literal(s),
    }
}

/// A secret astring argument.
fn secret_arg(s: &[u8]) -> Part<'_> {
    match quote::astring(s) {
        quote::Arg::Quoted(q) => Part::SecretText(Cow::Owned(q)),
        quote::Arg::Literal(l) => Part::SecretLiteral(Cow::Owned(l)),
    }
}

/// A command that went out: its tag and a loggable form (no secrets, no literal bodies).
struct Sent {
    tag: String,
    display: String,
}

/// What a command's tagged completion said.
struct Done {
    status: Status,
    code: Option<Code>,
    text: String,
}

/// Knobs for [`Client::connect_with`].
#[derive(Debug, Clone, Default)]
pub struct ConnectOptions {
    /// Capabilities to act as if the server did not advertise them (any case), e.g.
    /// `LITERAL+` or `AUTH=PLAIN`, to work around a server that advertises something broken.
    pub hide_capabilities: Vec<String>,
}

/// A logged-in session.
pub struct Client {
    conn: Conn,
    host: String,
    /// Prefix for errors and logs, e.g. "src imap.example.org".
    label: String,
    user: String,
    /// Upper-cased capability names.
    caps: HashSet<String>,
    /// Bumped whenever capabilities are (re)learned, to tell whether a response carried them.
    caps_gen: u64,
    next_tag: u32,
    /// Responses read while waiting for something else (a literal's continuation); delivered
    /// before reading more from the socket.
    backlog: VecDeque<Response>,
    /// Read buffer, reused between responses.
    buf: Vec<u8>,
    /// A BYE is expected (LOGOUT) rather than an error.
    logging_out: bool,
    /// Upper-cased capabilities to ignore (see [`ConnectOptions`]).
    hidden: HashSet<String>,
}

impl Client {
    /// Connect, negotiate TLS as asked, read the greeting, authenticate, learn capabilities.
    pub fn connect(ep: &Endpoint) -> Result<Client> {
        Self::connect_with(ep, &ConnectOptions::default())
    }

    /// [`Client::connect`] with options.
    pub fn connect_with(ep: &Endpoint, opts: &ConnectOptions) -> Result<Client> {
        let tcp = conn::connect_tcp(&ep.host, ep.port, ep.timeout)?;
        let stream = if ep.tls == TlsMode::Imaps {
            let connector = conn::tls_connector(ep)?;
            Stream::Tls(Box::new(conn::tls_handshake(
                &connector, &ep.host, tcp, ep.timeout,
            )?))
        } else {
            Stream::Plain(tcp)
        };
        let transport = Transport::new(stream, &ep.host, ep.timeout, ep.rate_limit.clone());
        let mut c = Client {
            conn: BufReader::with_capacity(64 << 10, transport),
            host: ep.host.clone(),
            label: ep.host.clone(),
            user: ep.user.clone(),
            caps: HashSet::new(),
            caps_gen: 0,
            next_tag: 1,
            backlog: VecDeque::new(),
            buf: Vec::new(),
            logging_out: false,
            hidden: opts
                .hide_capabilities
                .iter()
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        };
        let preauth = c.greeting()?;
        if ep.tls == TlsMode::StartTls {
            c.starttls(ep)?;
        }
        if !preauth {
            c.authenticate(ep)?;
        }
        if ep.compress && c.has_capability("COMPRESS=DEFLATE") {
            c.start_compress()?;
        }
        if c.has_capability("ID") {
            // Purely informational for the server's logs; its answer (even NO) does not matter.
            let id = format!(
                "ID (\"name\" \"imapferry\" \"version\" \"{}\")",
                env!("CARGO_PKG_VERSION")
            );
            let parts = [text(&id)];
            let sent = c.send(&parts)?;
            c.wait_done(&sent, &mut |_| Ok(()))?;
        }
        Ok(c)
    }

    /// True when COMPRESS=DEFLATE is active on this connection.
    pub fn is_compressed(&self) -> bool {
        self.conn.get_ref().is_compressed()
    }

    /// Bytes this connection moved so far, on the socket and as IMAP text.
    pub fn traffic(&self) -> Traffic {
        self.conn.get_ref().traffic()
    }

    /// Upper-case capability names, e.g. "UIDPLUS", "LITERAL+", "AUTH=PLAIN".
    pub fn has_capability(&self, name: &str) -> bool {
        self.caps.contains(&name.to_ascii_uppercase())
    }

    /// All capabilities, upper-cased and sorted (for logs and diagnostics).
    pub fn capabilities(&self) -> Vec<String> {
        let mut v: Vec<String> = self.caps.iter().cloned().collect();
        v.sort();
        v
    }

    /// Set a label (e.g. "src" or "dst") that prefixes the host in every error message.
    pub fn set_label(&mut self, label: &str) {
        self.label = if label.is_empty() {
            self.host.clone()
        } else {
            format!("{label} {}", self.host)
        };
    }

    /// Change the socket read and write timeouts.
    pub fn set_timeout(&mut self, t: Duration) -> Result<()> {
        self.conn
            .get_mut()
            .set_timeout(t)
            .with_context(|| format!("{}: setting timeout", self.label))
    }

    /// The personal namespace: NAMESPACE when offered, else the separator from `LIST "" ""`.
    pub fn namespace(&mut self) -> Result<Namespace> {
        if self.has_capability("NAMESPACE") {
            let mut first = None;
            self.run(&[text("NAMESPACE")], &mut |u| {
                if let Untagged::Namespace(ns) = u {
                    if first.is_none() {
                        first = ns.into_iter().next();
                    }
                }
                Ok(())
            })?;
            if let Some(ns) = first {
                return Ok(Namespace {
                    prefix: ns.prefix,
                    separator: ns.separator,
                });
            }
        }
        let mut sep = None;
        self.run(&[text("LIST \"\" \"\"")], &mut |u| {
            if let Untagged::List(e) = u {
                sep = e.separator;
            }
            Ok(())
        })?;
        Ok(Namespace {
            prefix: String::new(),
            separator: sep,
        })
    }

    /// LIST "" "*" (with RETURN (SPECIAL-USE SUBSCRIBED) when offered; LSUB otherwise).
    pub fn list(&mut self) -> Result<Vec<MailboxInfo>> {
        let extended = self.has_capability("LIST-EXTENDED") && self.has_capability("SPECIAL-USE");
        let mut cmd = String::from("LIST \"\" \"*\"");
        let mut returns = Vec::new();
        if extended {
            returns.push("SPECIAL-USE SUBSCRIBED");
        }
        if self.has_capability("LIST-STATUS") {
            returns.push(if self.has_capability("CONDSTORE") {
                "STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ)"
            } else {
                "STATUS (MESSAGES UIDNEXT UIDVALIDITY)"
            });
        }
        if !returns.is_empty() {
            cmd += &format!(" RETURN ({})", returns.join(" "));
        }
        let mut entries = Vec::new();
        let mut statuses: HashMap<Vec<u8>, MailboxStatus> = HashMap::new();
        self.run(&[text(&cmd)], &mut |u| {
            match u {
                Untagged::List(e) if !e.lsub => entries.push(e),
                Untagged::MailboxStatus { name, status } => {
                    statuses.insert(name, status);
                }
                _ => {}
            }
            Ok(())
        })?;
        let mut subscribed: HashSet<String> = HashSet::new();
        if !extended {
            self.run(&[text("LSUB \"\" \"*\"")], &mut |u| {
                if let Untagged::List(e) = u {
                    if e.lsub && !has_attr(&e.attributes, "\\Noselect") {
                        subscribed.insert(raw_name_of(&e.name));
                    }
                }
                Ok(())
            })?;
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let status = statuses.remove(&e.name);
            let raw_name = raw_name_of(&e.name);
            let name = match utf7::decode(&raw_name) {
                Ok(n) => n,
                Err(err) => {
                    wire_log!(1, "{}: {err:#}; using the name as sent", self.label);
                    raw_name.clone()
                }
            };
            let special_use = SPECIAL_USE
                .iter()
                .find(|s| has_attr(&e.attributes, s))
                .map(|s| s.to_string());
            let noselect =
                has_attr(&e.attributes, "\\Noselect") || has_attr(&e.attributes, "\\NonExistent");
            let is_subscribed = if extended {
                has_attr(&e.attributes, "\\Subscribed")
            } else {
                subscribed.contains(&raw_name)
            };
            out.push(MailboxInfo {
                raw_name,
                name,
                separator: e.separator,
                attributes: e.attributes,
                special_use,
                noselect,
                subscribed: is_subscribed,
                status,
            });
        }
        Ok(out)
    }

    /// SELECT (or EXAMINE when `readonly`), with (CONDSTORE) when offered.
    pub fn select(&mut self, raw_name: &str, readonly: bool) -> Result<Selected> {
        let condstore = self.has_capability("CONDSTORE");
        let mut parts = vec![
            text(if readonly { "EXAMINE " } else { "SELECT " }),
            arg(raw_name.as_bytes()),
        ];
        if condstore {
            parts.push(text(" (CONDSTORE)"));
        }
        let mut sel = Selected::default();
        let mut uidvalidity = None;
        let on_code = |code: &Code, sel: &mut Selected, uv: &mut Option<u32>| match code {
            Code::UidValidity(v) => *uv = Some(*v),
            Code::UidNext(n) => sel.uidnext = Some(*n),
            Code::HighestModSeq(m) if condstore => sel.highestmodseq = Some(*m),
            Code::NoModSeq => sel.highestmodseq = None,
            Code::PermanentFlags(f) => sel.permanent_flags = f.clone(),
            _ => {}
        };
        let done = self.run(&parts, &mut |u| {
            match u {
                Untagged::Exists(n) => sel.exists = n,
                Untagged::Status {
                    code: Some(code), ..
                } => on_code(&code, &mut sel, &mut uidvalidity),
                _ => {}
            }
            Ok(())
        })?;
        if let Some(code) = &done.code {
            on_code(code, &mut sel, &mut uidvalidity);
        }
        sel.uidvalidity = uidvalidity.ok_or_else(|| {
            anyhow!(
                "{}: SELECT {}: server sent no UIDVALIDITY",
                self.label,
                quote::display(raw_name.as_bytes())
            )
        })?;
        Ok(sel)
    }

    /// `UID SEARCH ALL`: every UID in the selected mailbox, ascending.
    pub fn uid_search_all(&mut self) -> Result<Vec<u32>> {
        let mut uids = Vec::new();
        self.run(&[text("UID SEARCH ALL")], &mut |u| {
            if let Untagged::Search(v) = u {
                uids.extend(v);
            }
            Ok(())
        })?;
        uids.sort_unstable();
        uids.dedup();
        Ok(uids)
    }

    /// `UID FETCH <set> (UID FLAGS INTERNALDATE RFC822.SIZE [MODSEQ])`
    /// `[(CHANGEDSINCE n)]`; `f` is called once per response, in arrival order.
    ///
    /// MODSEQ and CHANGEDSINCE are only sent when CONDSTORE is offered (without it,
    /// `changedsince` is ignored and every message in `set` is reported). Responses without
    /// a UID (unsolicited flag changes) are skipped.
    pub fn uid_fetch_meta(
        &mut self,
        set: &str,
        changedsince: Option<u64>,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<()> {
        check_set(set)?;
        let condstore = self.has_capability("CONDSTORE");
        let mut cmd = format!(
            "UID FETCH {set} (UID FLAGS INTERNALDATE RFC822.SIZE{})",
            if condstore { " MODSEQ" } else { "" }
        );
        if let (Some(n), true) = (changedsince, condstore) {
            cmd.push_str(&format!(" (CHANGEDSINCE {n})"));
        }
        self.fetch_simple(&cmd, f)
    }

    /// Fetch `BODY.PEEK[]` (plus UID FLAGS INTERNALDATE RFC822.SIZE) of `uids`, pipelining
    /// several UID FETCH commands of at most `batch_bytes` each (sizes from `sizes`, same order)
    /// with at most `depth` in flight. `f` is called once per message as it arrives; memory
    /// holds one message at a time.
    ///
    /// Responses without a UID or without a body (unsolicited flag changes) are not passed to
    /// `f`. If `f` fails, no more commands are sent, the ones in flight are drained, and its
    /// error is returned.
    pub fn uid_fetch_bodies(
        &mut self,
        uids: &[u32],
        sizes: &[u64],
        batch_bytes: u64,
        depth: usize,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<()> {
        if uids.len() != sizes.len() {
            bail!(
                "uid_fetch_bodies: {} UIDs but {} sizes",
                uids.len(),
                sizes.len()
            );
        }
        let batches = batch_uids(uids, sizes, batch_bytes);
        let depth = depth.max(1);
        let mut next = 0;
        let mut in_flight: VecDeque<(String, String)> = VecDeque::new();
        let mut failure: Option<anyhow::Error> = None;
        loop {
            while failure.is_none() && next < batches.len() && in_flight.len() < depth {
                let set = &batches[next];
                let cmd =
                    format!("UID FETCH {set} (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])");
                let sent = self.send(&[text(&cmd)])?;
                in_flight.push_back((sent.tag, set.clone()));
                next += 1;
            }
            if in_flight.is_empty() {
                break;
            }
            match self.read()? {
                Response::Untagged(Untagged::Fetch {
                    uid: Some(uid),
                    mut item,
                    ..
                }) if item.body.is_some() => {
                    if failure.is_none() {
                        item.uid = uid;
                        if let Err(e) = f(item) {
                            failure = Some(e);
                        }
                    }
                }
                Response::Untagged(_) => {}
                Response::Tagged {
                    tag,
                    status,
                    code,
                    text: t,
                } => {
                    let done =
                        self.pipelined_done(&mut in_flight, &tag, status, &code, &t, |set| {
                            format!("UID FETCH {set} (BODY.PEEK[])")
                        });
                    if let Some((_, Some(e))) = done {
                        failure.get_or_insert(e);
                    }
                }
                Response::Continuation(t) => bail!(
                    "{}: unexpected continuation request during UID FETCH: {t}",
                    self.label
                ),
                Response::Bye(t) => return Err(self.bye(None, &t)),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// `UID FETCH <set> (UID RFC822.SIZE BODY.PEEK[HEADER])`.
    pub fn uid_fetch_headers(
        &mut self,
        set: &str,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<()> {
        check_set(set)?;
        self.fetch_simple(
            &format!("UID FETCH {set} (UID RFC822.SIZE BODY.PEEK[HEADER])"),
            f,
        )
    }

    /// Message `uid` from byte `offset` on, as `BODY.PEEK[]<offset.chunk>` pieces with up to
    /// `depth` commands in flight (a long link pays one round trip per `depth` pieces, not per
    /// piece), handed to `on_piece` in order until the first short piece, which is the end.
    /// `size_hint` (RFC822.SIZE) bounds how far ahead pieces are asked for; the end is still
    /// found by a short piece, since some servers' sizes are only estimates.
    ///
    /// Pieces are put in place by the origin the server states (`BODY[]<origin>`), so they
    /// cannot be put together in the wrong order; until the first piece shows that the server
    /// states it, one command is in flight. Returns `false` when the server sent nothing for
    /// the UID (expunged).
    pub fn uid_fetch_partials(
        &mut self,
        uid: u32,
        offset: u64,
        chunk: u64,
        size_hint: u64,
        depth: usize,
        on_piece: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool> {
        if chunk == 0 {
            bail!("uid_fetch_partials: the chunk must be at least 1 byte");
        }
        if uid == 0 {
            bail!("uid_fetch_partials: UID 0 is not a message");
        }
        let mut window = 1;
        let (mut next_send, mut next_deliver) = (offset, offset);
        let mut pieces: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
        let mut in_flight: VecDeque<(String, u64)> = VecDeque::new();
        let (mut seen, mut ended) = (false, false);
        let mut failure: Option<anyhow::Error> = None;
        loop {
            while failure.is_none()
                && !ended
                && in_flight.len() < window
                && (in_flight.is_empty() || next_send < size_hint)
            {
                let cmd = format!("UID FETCH {uid} (UID BODY.PEEK[]<{next_send}.{chunk}>)");
                let sent = self.send(&[text(&cmd)])?;
                in_flight.push_back((sent.tag, next_send));
                next_send += chunk;
            }
            if in_flight.is_empty() {
                break;
            }
            match self.read()? {
                Response::Untagged(Untagged::Fetch {
                    uid: Some(got),
                    item,
                    ..
                }) if got == uid => {
                    seen = true;
                    let Some(body) = item.body else {
                        continue; // a flag update; a NIL body is settled by the tagged OK
                    };
                    let at = match item.origin {
                        Some(o) => {
                            window = depth.max(1);
                            o
                        }
                        None if in_flight.len() == 1 => in_flight[0].1,
                        None => {
                            failure.get_or_insert_with(|| {
                                anyhow!(
                                    "{}: UID FETCH {uid}: a partial body without its origin",
                                    self.label
                                )
                            });
                            continue;
                        }
                    };
                    if at >= next_deliver {
                        pieces.insert(at, body);
                    }
                }
                Response::Untagged(_) => {}
                Response::Tagged {
                    tag,
                    status,
                    code,
                    text: t,
                } => {
                    let done = self.pipelined_done(&mut in_flight, &tag, status, &code, &t, |at| {
                        format!("UID FETCH {uid} (BODY.PEEK[]<{at}.{chunk}>)")
                    });
                    let Some((at, refused)) = done else {
                        continue;
                    };
                    if let Some(e) = refused {
                        failure.get_or_insert(e);
                    } else if !seen {
                        ended = true; // nothing for this UID: expunged
                    } else if at >= next_deliver {
                        // Past the end the server answers "" or NIL: an empty piece.
                        pieces.entry(at).or_default();
                    }
                }
                Response::Continuation(t) => bail!(
                    "{}: unexpected continuation request during UID FETCH: {t}",
                    self.label
                ),
                Response::Bye(t) => return Err(self.bye(None, &t)),
            }
            while failure.is_none() && !ended {
                let Some(piece) = pieces.remove(&next_deliver) else {
                    break;
                };
                if let Err(e) = on_piece(&piece) {
                    failure = Some(e);
                }
                next_deliver += piece.len() as u64;
                ended = (piece.len() as u64) < chunk;
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(seen),
        }
    }

    /// CREATE a mailbox (raw, already encoded name). An existing mailbox
    /// (`[ALREADYEXISTS]`) counts as success, so a resumed run can create again.
    pub fn create(&mut self, raw_name: &str) -> Result<()> {
        let parts = [text("CREATE "), arg(raw_name.as_bytes())];
        let sent = self.send(&parts)?;
        let done = self.wait_done(&sent, &mut |_| Ok(()))?;
        match (&done.status, &done.code) {
            (Status::Ok, _) => Ok(()),
            (Status::No, Some(Code::Other(c))) if c.eq_ignore_ascii_case("ALREADYEXISTS") => Ok(()),
            _ => Err(self.failed(&sent, &done)),
        }
    }

    /// SUBSCRIBE a mailbox (raw, already encoded name).
    pub fn subscribe(&mut self, raw_name: &str) -> Result<()> {
        self.run(&[text("SUBSCRIBE "), arg(raw_name.as_bytes())], &mut |_| {
            Ok(())
        })?;
        Ok(())
    }

    /// Pipelined mailbox commands: each `(verb, raw_name)` (e.g. `("CREATE", "INBOX.a")`,
    /// `("SUBSCRIBE", …)`) is sent without waiting for the previous one's completion (at most 64
    /// in flight), so a burst costs about one round trip. Servers run them in order, so a parent
    /// CREATEd earlier in the burst exists for a later child. One result per command, in order:
    /// a NO/BAD is that command's error; CREATE answered `NO [ALREADYEXISTS]` is success.
    pub fn mailbox_commands(&mut self, commands: &[(&str, &str)]) -> Result<Vec<Result<()>>> {
        let mut results: Vec<Option<Result<()>>> = commands.iter().map(|_| None).collect();
        let mut in_flight: VecDeque<(Sent, usize)> = VecDeque::new();
        let mut next = 0;
        while next < commands.len() || !in_flight.is_empty() {
            if next < commands.len() && in_flight.len() < MAX_APPENDS_IN_FLIGHT {
                let (verb, name) = commands[next];
                let head = format!("{verb} ");
                let sent = self.send(&[text(&head), arg(name.as_bytes())])?;
                in_flight.push_back((sent, next));
                next += 1;
                continue;
            }
            match self.read()? {
                Response::Tagged {
                    tag,
                    status,
                    code,
                    text: t,
                } => {
                    let Some(pos) = in_flight.iter().position(|(s, _)| s.tag == tag) else {
                        wire_log!(1, "{}: ignoring response to unknown tag {tag}", self.label);
                        continue;
                    };
                    let Some((sent, i)) = in_flight.remove(pos) else {
                        continue;
                    };
                    let exists = matches!(&code, Some(Code::Other(c)) if c.eq_ignore_ascii_case("ALREADYEXISTS"));
                    let ok = status == Status::Ok
                        || (status == Status::No
                            && exists
                            && commands[i].0.eq_ignore_ascii_case("CREATE"));
                    results[i] = Some(if ok {
                        Ok(())
                    } else {
                        Err(self.failed(
                            &sent,
                            &Done {
                                status,
                                code,
                                text: t,
                            },
                        ))
                    });
                }
                Response::Untagged(_) => {}
                Response::Continuation(t) => bail!(
                    "{}: unexpected continuation request during mailbox commands: {t}",
                    self.label
                ),
                Response::Bye(t) => return Err(self.bye(None, &t)),
            }
        }
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(anyhow!("no reply"))))
            .collect())
    }

    /// APPEND all of `msgs` to `raw_name`, pipelined: LITERAL+ (non-synchronizing literals) when
    /// offered, otherwise synchronizing literals. One outcome per message, in order.
    ///
    /// One APPEND per message (not MULTIAPPEND), so one rejected message does not reject the
    /// others. `\Recent` is dropped from the flags (the server sets it), as are flags that are
    /// not valid atoms.
    pub fn append_many(
        &mut self,
        raw_name: &str,
        msgs: &[AppendMessage<'_>],
    ) -> Result<Vec<AppendOutcome>> {
        let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; msgs.len()];
        // (tag, index, literal size)
        let mut in_flight: VecDeque<(String, usize, u64)> = VecDeque::new();
        let mut bytes_in_flight = 0u64;
        for (i, m) in msgs.iter().enumerate() {
            while !in_flight.is_empty()
                && (in_flight.len() >= MAX_APPENDS_IN_FLIGHT
                    || bytes_in_flight + m.bytes.len() as u64 > MAX_APPEND_BYTES_IN_FLIGHT)
            {
                self.read_append_reply(&mut in_flight, &mut bytes_in_flight, &mut outcomes)?;
            }
            let flags: Vec<&str> = m
                .flags
                .iter()
                .map(String::as_str)
                .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                .filter(|f| {
                    let ok = valid_flag(f);
                    if !ok {
                        wire_log!(1, "{}: dropping invalid flag {f:?}", self.label);
                    }
                    ok
                })
                .collect();
            let mut head = format!(" ({})", flags.join(" "));
            if let Some(d) = m.internaldate {
                head.push(' ');
                head.push_str(&String::from_utf8_lossy(&quote::quoted(d.as_bytes())));
            }
            head.push(' ');
            let parts = [
                text("APPEND "),
                arg(raw_name.as_bytes()),
                text(&head),
                Part::Literal(m.bytes),
            ];
            let sent = self.send(&parts)?;
            in_flight.push_back((sent.tag, i, m.bytes.len() as u64));
            bytes_in_flight += m.bytes.len() as u64;
        }
        while !in_flight.is_empty() {
            self.read_append_reply(&mut in_flight, &mut bytes_in_flight, &mut outcomes)?;
        }
        outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.ok_or_else(|| anyhow!("{}: no reply to APPEND #{i}", self.label)))
            .collect()
    }

    /// Send one command line as given (tag added, no literals) and wait for its completion;
    /// NO/BAD is an error. Untagged responses are ignored. For tests and one-off operations
    /// (e.g. `UID STORE`, `EXPUNGE`) that have no dedicated method.
    pub fn raw_command(&mut self, cmd: &str) -> Result<()> {
        if cmd.contains(['\r', '\n']) {
            bail!("raw_command: command must be one line");
        }
        self.run(&[text(cmd)], &mut |_| Ok(()))?;
        Ok(())
    }

    /// LOGOUT and close. A connection the server already closed is fine.
    pub fn logout(mut self) -> Result<()> {
        self.logging_out = true;
        let sent = self.send(&[text("LOGOUT")])?;
        loop {
            match self.read() {
                Ok(Response::Tagged { tag, .. }) if tag == sent.tag => return Ok(()),
                Ok(Response::Bye(_)) | Ok(_) => {}
                // The server may close right after BYE.
                Err(_) => return Ok(()),
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Connection setup

    /// Read the greeting; learn capabilities from it. Returns true for PREAUTH.
    fn greeting(&mut self) -> Result<bool> {
        match self.read().context("reading the greeting")? {
            Response::Untagged(Untagged::Status { status, text, .. }) => match status {
                Status::Ok => Ok(false),
                Status::PreAuth => Ok(true),
                _ => bail!(
                    "{}: server refused the connection: {status} {text}",
                    self.label
                ),
            },
            // e.g. "* BYE Too many connections": come back later.
            Response::Bye(t) => Err(wire_error(
                ErrorKind::Connection,
                format!("{}: server refused the connection: BYE {t}", self.label),
            )),
            other => bail!("{}: unexpected greeting: {other:?}", self.label),
        }
    }

    /// Issue CAPABILITY unless capabilities were learned since generation `since_gen`.
    fn ensure_capabilities(&mut self, since_gen: u64) -> Result<()> {
        if self.caps_gen == since_gen || self.caps.is_empty() {
            self.run(&[text("CAPABILITY")], &mut |_| Ok(()))?;
        }
        Ok(())
    }

    fn starttls(&mut self, ep: &Endpoint) -> Result<()> {
        if self.caps.is_empty() {
            self.run(&[text("CAPABILITY")], &mut |_| Ok(()))?;
        }
        if !self.has_capability("STARTTLS") {
            bail!(
                "{}: server does not offer STARTTLS (use imaps, or no TLS explicitly)",
                self.label
            );
        }
        self.run(&[text("STARTTLS")], &mut |_| Ok(()))?;
        // Anything already buffered came in plaintext after the OK: possible injection.
        if !self.conn.buffer().is_empty() || !self.backlog.is_empty() {
            bail!(
                "{}: server sent data after STARTTLS OK; refusing",
                self.label
            );
        }
        let connector = conn::tls_connector(ep)?;
        self.conn.get_mut().start_tls(&connector)?;
        // Capabilities learned before TLS must not be trusted.
        self.caps.clear();
        self.run(&[text("CAPABILITY")], &mut |_| Ok(()))?;
        Ok(())
    }

    /// COMPRESS DEFLATE (RFC 4978). A refusal (e.g. `[COMPRESSIONACTIVE]` under TLS
    /// compression) leaves the connection uncompressed and working.
    fn start_compress(&mut self) -> Result<()> {
        let sent = self.send(&[text("COMPRESS DEFLATE")])?;
        let done = self.wait_done(&sent, &mut |_| Ok(()))?;
        if done.status != Status::Ok {
            wire_log!(
                1,
                "{}: COMPRESS refused ({} {}); continuing uncompressed",
                self.label,
                done.status,
                done.text
            );
            return Ok(());
        }
        if !self.backlog.is_empty() {
            bail!(
                "{}: server sent data before COMPRESS OK was processed",
                self.label
            );
        }
        // Whatever the buffer already holds past the OK is compressed.
        let leftover = self.conn.buffer().to_vec();
        self.conn.consume(leftover.len());
        self.conn.get_mut().start_deflate(leftover);
        wire_log!(2, "{}: COMPRESS=DEFLATE active", self.label);
        Ok(())
    }

    fn authenticate(&mut self, ep: &Endpoint) -> Result<()> {
        if self.caps.is_empty() {
            self.ensure_capabilities(self.caps_gen)?;
        }
        let gen = self.caps_gen;
        match &ep.secret {
            Secret::Password(pw) => {
                if self.has_capability("AUTH=PLAIN") {
                    let payload = auth::plain(&ep.user, pw);
                    self.sasl("PLAIN", &payload)?;
                } else {
                    if self.has_capability("LOGINDISABLED") {
                        bail!(
                            "{}: server disables LOGIN here (LOGINDISABLED) and offers no AUTH=PLAIN; use TLS",
                            self.label
                        );
                    }
                    let parts = [
                        text("LOGIN "),
                        arg(ep.user.as_bytes()),
                        text(" "),
                        secret_arg(pw.as_bytes()),
                    ];
                    let sent = self.send(&parts)?;
                    let done = self.wait_done(&sent, &mut |_| Ok(()))?;
                    if done.status != Status::Ok {
                        return Err(wire_error(
                            ErrorKind::Auth {
                                code: code_name(&done.code),
                                text: done.text.clone(),
                            },
                            format!(
                                "{}: login as {} failed: {} {}",
                                self.label, ep.user, done.status, done.text
                            ),
                        ));
                    }
                }
            }
            Secret::OAuth2TokenFile(path) => {
                let token = auth::read_token(path)?;
                let payload = auth::xoauth2(&ep.user, &token);
                self.sasl("XOAUTH2", &payload)?;
            }
        }
        // Capabilities change after login; re-learn unless the OK carried them.
        self.ensure_capabilities(gen)
    }

    /// AUTHENTICATE `mech` with one client message (SASL-IR when offered).
    fn sasl(&mut self, mech: &str, payload: &str) -> Result<()> {
        let sent = if self.has_capability("SASL-IR") {
            let cmd = format!("AUTHENTICATE {mech} ");
            let parts = [
                text(&cmd),
                Part::SecretText(Cow::Borrowed(payload.as_bytes())),
            ];
            self.send(&parts)?
        } else {
            let sent = self.send(&[text(&format!("AUTHENTICATE {mech}"))])?;
            if self.wait_continuation(&sent.tag)? {
                self.write_raw(payload.as_bytes())?;
                self.write_raw(b"\r\n")?;
                self.flush()?;
            }
            sent
        };
        loop {
            match self.read()? {
                Response::Continuation(_) => {
                    // XOAUTH2 sends an error challenge; an empty reply gets the final NO.
                    self.write_raw(b"\r\n")?;
                    self.flush()?;
                }
                Response::Tagged {
                    tag,
                    status,
                    code,
                    text,
                } if tag == sent.tag => {
                    if status != Status::Ok {
                        let msg = format!(
                            "{}: authentication as {} failed (AUTHENTICATE {mech}): {status} {text}",
                            self.label, self.user
                        );
                        let code = code_name(&code);
                        return Err(wire_error(ErrorKind::Auth { code, text }, msg));
                    }
                    return Ok(());
                }
                _ => {}
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Generic core: send commands, read responses

    /// Send one command (tag added here). Literals are non-synchronizing with LITERAL+ (or
    /// LITERAL- for small ones); otherwise we wait for `+` before each. If the server answers
    /// a synchronizing literal with a tagged NO/BAD, the rest of the command is not sent and the
    /// tagged reply is left for the caller to read.
    fn send(&mut self, parts: &[Part<'_>]) -> Result<Sent> {
        let tag = format!("A{}", self.next_tag);
        self.next_tag += 1;
        let mut display = String::new();
        let mut line: Vec<u8> = format!("{tag} ").into_bytes();
        let mut aborted = false;
        for p in parts {
            match p {
                Part::Text(t) => {
                    line.extend_from_slice(t);
                    display.push_str(&String::from_utf8_lossy(t));
                }
                Part::SecretText(t) => {
                    line.extend_from_slice(t);
                    display.push_str("<secret>");
                }
                Part::Literal(_) | Part::SecretLiteral(_) => {
                    let (data, secret): (&[u8], bool) = match p {
                        Part::Literal(l) => (l, false),
                        Part::SecretLiteral(l) => (l, true),
                        _ => unreachable!(),
                    };
                    let nonsync = self.has_capability("LITERAL+")
                        || (self.has_capability("LITERAL-") && data.len() <= LITERAL_MINUS_MAX);
                    let plus = if nonsync { "+" } else { "" };
                    line.extend_from_slice(format!("{{{}{plus}}}\r\n", data.len()).as_bytes());
                    if secret {
                        display.push_str("<secret>");
                    } else {
                        display.push_str(&format!("{{{}{plus}}}", data.len()));
                    }
                    self.write_raw(&line)?;
                    line.clear();
                    if !nonsync {
                        self.flush()?;
                        if !self.wait_continuation(&tag)? {
                            aborted = true;
                            break;
                        }
                    }
                    self.write_raw(data)?;
                }
            }
        }
        if !aborted {
            line.extend_from_slice(b"\r\n");
            self.write_raw(&line)?;
            self.flush()?;
        }
        wire_log!(2, "{} C: {tag} {display}", self.label);
        Ok(Sent { tag, display })
    }

    /// Wait for `+` after a synchronizing literal. Returns false if the command was completed
    /// (rejected) instead; that reply and anything else read meanwhile go to the backlog.
    fn wait_continuation(&mut self, tag: &str) -> Result<bool> {
        loop {
            let r = self.read_wire()?;
            match r {
                Response::Continuation(_) => return Ok(true),
                Response::Tagged { tag: ref t, .. } if t == tag => {
                    self.backlog.push_back(r);
                    return Ok(false);
                }
                Response::Bye(t) => return Err(self.bye(None, &t)),
                other => self.backlog.push_back(other),
            }
        }
    }

    /// Send a command and wait for its completion, passing untagged data to `on_untagged`;
    /// NO/BAD become an error naming the command.
    fn run(
        &mut self,
        parts: &[Part<'_>],
        on_untagged: &mut dyn FnMut(Untagged) -> Result<()>,
    ) -> Result<Done> {
        let sent = self.send(parts)?;
        let done = self.wait_done(&sent, on_untagged)?;
        if done.status != Status::Ok {
            return Err(self.failed(&sent, &done));
        }
        Ok(done)
    }

    /// The tagged completion `tag` of one of the pipelined commands `in_flight` (tag, what it
    /// asked for): removes it and returns what it asked for, with the error when the server
    /// refused it (`describe` names the command). `None` for a tag we did not send.
    fn pipelined_done<T: Default>(
        &self,
        in_flight: &mut VecDeque<(String, T)>,
        tag: &str,
        status: Status,
        code: &Option<Code>,
        text: &str,
        describe: impl FnOnce(&T) -> String,
    ) -> Option<(T, Option<anyhow::Error>)> {
        let Some(pos) = in_flight.iter().position(|(x, _)| x == tag) else {
            wire_log!(1, "{}: ignoring response to unknown tag {tag}", self.label);
            return None;
        };
        let (_, asked) = in_flight.remove(pos).unwrap_or_default();
        let refused = (status != Status::Ok).then(|| {
            wire_error(
                ErrorKind::Rejected {
                    code: code_name(code),
                    text: text.to_string(),
                },
                format!(
                    "{}: {} failed: {status} {text}",
                    self.label,
                    describe(&asked)
                ),
            )
        });
        Some((asked, refused))
    }

    fn failed(&self, sent: &Sent, done: &Done) -> anyhow::Error {
        wire_error(
            ErrorKind::Rejected {
                code: code_name(&done.code),
                text: done.text.clone(),
            },
            format!(
                "{}: {} failed: {} {}",
                self.label, sent.display, done.status, done.text
            ),
        )
    }

    /// The error for an untimely BYE (during `command`, if known).
    fn bye(&self, command: Option<&str>, text: &str) -> anyhow::Error {
        let during = command.map(|c| format!("{c}: ")).unwrap_or_default();
        wire_error(
            ErrorKind::Connection,
            format!(
                "{}: {during}server closed the connection: BYE {text}",
                self.label
            ),
        )
    }

    /// Read until the tagged completion of `sent`. If `on_untagged` fails, keep reading to the
    /// completion (so the connection stays usable) and return that error.
    fn wait_done(
        &mut self,
        sent: &Sent,
        on_untagged: &mut dyn FnMut(Untagged) -> Result<()>,
    ) -> Result<Done> {
        let mut failure = None;
        loop {
            match self.read()? {
                Response::Untagged(u) => {
                    if failure.is_none() {
                        if let Err(e) = on_untagged(u) {
                            failure = Some(e);
                        }
                    }
                }
                Response::Tagged {
                    tag,
                    status,
                    code,
                    text,
                } => {
                    if tag == sent.tag {
                        if let Some(e) = failure {
                            return Err(e);
                        }
                        return Ok(Done { status, code, text });
                    }
                    wire_log!(1, "{}: ignoring response to unknown tag {tag}", self.label);
                }
                Response::Continuation(t) => bail!(
                    "{}: {}: unexpected continuation request: {t}",
                    self.label,
                    sent.display
                ),
                Response::Bye(t) => return Err(self.bye(Some(&sent.display), &t)),
            }
        }
    }

    /// A UID FETCH whose responses all go to `f` (those with a UID).
    fn fetch_simple(&mut self, cmd: &str, f: &mut dyn FnMut(Fetched) -> Result<()>) -> Result<()> {
        self.run(&[text(cmd)], &mut |u| {
            if let Untagged::Fetch {
                uid: Some(uid),
                mut item,
                ..
            } = u
            {
                item.uid = uid;
                f(item)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    fn read_append_reply(
        &mut self,
        in_flight: &mut VecDeque<(String, usize, u64)>,
        bytes_in_flight: &mut u64,
        outcomes: &mut [Option<AppendOutcome>],
    ) -> Result<()> {
        match self.read()? {
            Response::Tagged {
                tag,
                status,
                code,
                text,
            } => {
                let Some(pos) = in_flight.iter().position(|(t, _, _)| *t == tag) else {
                    wire_log!(1, "{}: ignoring response to unknown tag {tag}", self.label);
                    return Ok(());
                };
                let (_, idx, size) = in_flight.remove(pos).unwrap_or_default();
                *bytes_in_flight = bytes_in_flight.saturating_sub(size);
                let outcome = if status == Status::Ok {
                    match code {
                        Some(Code::AppendUid { uidvalidity, uid }) => AppendOutcome::Ok {
                            uidvalidity: Some(uidvalidity),
                            uid,
                        },
                        _ => AppendOutcome::Ok {
                            uidvalidity: None,
                            uid: None,
                        },
                    }
                } else {
                    // Keep the code: it tells a throttled APPEND from a refused message.
                    match code_name(&code) {
                        Some(c) => AppendOutcome::Rejected(format!("{status} [{c}] {text}")),
                        None => AppendOutcome::Rejected(format!("{status} {text}")),
                    }
                };
                if let Some(slot) = outcomes.get_mut(idx) {
                    *slot = Some(outcome);
                }
                Ok(())
            }
            Response::Untagged(_) => Ok(()),
            Response::Continuation(t) => bail!(
                "{}: unexpected continuation request during APPEND: {t}",
                self.label
            ),
            Response::Bye(t) => Err(self.bye(None, &t)),
        }
    }

    /// Next response: from the backlog, else from the socket.
    fn read(&mut self) -> Result<Response> {
        if let Some(r) = self.backlog.pop_front() {
            return Ok(r);
        }
        self.read_wire()
    }

    /// Next parseable response from the socket. Unparseable untagged responses are logged and
    /// skipped. Capabilities are learned from any response that carries them.
    fn read_wire(&mut self) -> Result<Response> {
        // Don't keep a huge buffer around after one big message.
        if self.buf.capacity() > 32 << 20 {
            self.buf = Vec::new();
        }
        loop {
            let got = response::read_response(&mut self.conn, &mut self.buf)
                .with_context(|| format!("{}: reading response", self.label))?;
            if !got {
                let msg = if self.logging_out {
                    format!("{}: connection closed", self.label)
                } else {
                    format!("{}: connection closed by the server", self.label)
                };
                return Err(wire_error(ErrorKind::Connection, msg));
            }
            let r = match response::parse(&self.buf) {
                Ok(r) => r,
                Err(reason) => {
                    wire_log!(2, "{}: skipping response: {reason}", self.label);
                    continue;
                }
            };
            if crate::ui::verbosity() > 2 && !matches!(r, Response::Tagged { .. }) {
                wire_log!(2, "{} S: {}", self.label, response::head(&self.buf));
            }
            match &r {
                Response::Untagged(Untagged::Capability(c))
                | Response::Untagged(Untagged::Status {
                    code: Some(Code::Capability(c)),
                    ..
                })
                | Response::Tagged {
                    code: Some(Code::Capability(c)),
                    status: Status::Ok,
                    ..
                } => {
                    self.caps = c
                        .iter()
                        .filter(|x| !self.hidden.contains(*x))
                        .cloned()
                        .collect();
                    self.caps_gen += 1;
                }
                Response::Tagged {
                    tag,
                    status,
                    text: t,
                    ..
                } => {
                    wire_log!(2, "{} S: {tag} {status} {t}", self.label);
                }
                // Warnings and alerts the server wants a human to see.
                Response::Untagged(Untagged::Status {
                    status: status @ (Status::No | Status::Bad),
                    text: t,
                    ..
                }) => wire_log!(1, "{}: server says: {status} {t}", self.label),
                Response::Untagged(Untagged::Status {
                    code: Some(Code::Other(c)),
                    text: t,
                    ..
                }) if c.eq_ignore_ascii_case("ALERT") => {
                    wire_log!(1, "{}: server alert: {t}", self.label)
                }
                _ => {}
            }
            return Ok(r);
        }
    }

    fn write_raw(&mut self, b: &[u8]) -> Result<()> {
        self.conn
            .get_mut()
            .write_all(b)
            .with_context(|| format!("{}: sending command", self.label))
    }

    fn flush(&mut self) -> Result<()> {
        self.conn
            .get_mut()
            .flush()
            .with_context(|| format!("{}: sending command", self.label))
    }
}

/// The keyword of a response code other than the ones we parse (`THROTTLED`, `NONEXISTENT`,
/// ...), upper-cased: what [`super::is_transient`] looks at.
fn code_name(code: &Option<Code>) -> Option<String> {
    match code {
        Some(Code::Other(c)) => c
            .split_ascii_whitespace()
            .next()
            .map(|w| w.to_ascii_uppercase()),
        _ => None,
    }
}

/// RFC 6154 roles, canonical spelling.
const SPECIAL_USE: &[&str] = &[
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

fn has_attr(attrs: &[String], a: &str) -> bool {
    attrs.iter().any(|x| x.eq_ignore_ascii_case(a))
}

/// The raw name as a String, with INBOX (any case) normalized.
fn raw_name_of(name: &[u8]) -> String {
    if name.eq_ignore_ascii_case(b"INBOX") {
        "INBOX".to_string()
    } else {
        String::from_utf8_lossy(name).into_owned()
    }
}

/// A flag we can send as an atom (optionally `\`-prefixed).
fn valid_flag(f: &str) -> bool {
    let body = f.strip_prefix('\\').unwrap_or(f);
    !body.is_empty()
        && body.bytes().all(|b| {
            (0x21..0x7f).contains(&b)
                && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
        })
}

/// Reject sets that would make a malformed command.
fn check_set(set: &str) -> Result<()> {
    if set.is_empty()
        || !set
            .bytes()
            .all(|b| b.is_ascii_digit() || b":,*".contains(&b))
    {
        bail!("invalid UID set {set:?}");
    }
    Ok(())
}

/// Split `uids` into compact UID sets of at most `batch_bytes` each (a single larger message
/// gets a batch of its own).
fn batch_uids(uids: &[u32], sizes: &[u64], batch_bytes: u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Vec<u32> = Vec::new();
    let mut cur_bytes = 0u64;
    for (&u, &s) in uids.iter().zip(sizes) {
        if !cur.is_empty() && cur_bytes.saturating_add(s) > batch_bytes {
            out.push(uidset::compact(&cur));
            cur.clear();
            cur_bytes = 0;
        }
        cur.push(u);
        cur_bytes = cur_bytes.saturating_add(s);
    }
    if !cur.is_empty() {
        out.push(uidset::compact(&cur));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    /// A server that accepts and then says nothing must give a timeout error, not a hang.
    #[test]
    fn silent_server_times_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let hold = std::thread::spawn(move || {
            let s = l.accept();
            // Keep the socket open (and silent) until the client gave up.
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
            drop(s);
        });
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port,
            tls: TlsMode::None,
            insecure: false,
            ca_file: None,
            user: "u".into(),
            secret: Secret::Password("pw".into()),
            timeout: Duration::from_secs(1),
            compress: true,
            rate_limit: None,
        };
        let t = Instant::now();
        let e = Client::connect(&ep).err().unwrap();
        done_tx.send(()).unwrap();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(
            format!("{e:#}").contains("timed out after 1 s waiting for 127.0.0.1"),
            "{e:#}"
        );
        assert!(super::super::is_transient(&e));
        hold.join().unwrap();
    }

    #[test]
    fn code_name_is_the_upper_cased_keyword() {
        assert_eq!(
            code_name(&Some(Code::Other("throttled 30".into()))),
            Some("THROTTLED".into())
        );
        assert_eq!(code_name(&Some(Code::UidNext(3))), None);
        assert_eq!(code_name(&None), None);
    }
}
