//! A logged-in IMAP session and the commands imapferry sends.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use super::conn::{self, Conn, Endpoint, Secret, Stream, TlsMode, Traffic, Transport};
use super::error::{bye_error, wire_error, ConnectProblem, ErrorKind, WireError};
use super::oauth2::Refresher;
use super::quote;
pub use super::response::Fetched;
use super::response::{self, Code, MailboxStatus, Response, Status, Untagged};
use super::slowdown::{says_throttled, Slowdown};
use super::uidset;
use super::{auth, log_level};
use crate::mailtime::InternalDate;
use crate::names::{MailboxName, Namespace};
use crate::provider::Provider;

/// One mailbox from LIST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxInfo {
    /// The name exactly as the server sent it (modified UTF-7), to be used in commands.
    pub raw_name: MailboxName,
    /// The name decoded to UTF-8, with the server's separator (not translated): its server
    /// path (see [`crate::names`]).
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

/// One message to APPEND.
#[derive(Debug, Clone)]
pub struct AppendMessage<'a> {
    pub flags: &'a [String],
    pub internaldate: Option<InternalDate>,
    pub bytes: &'a [u8],
    /// Send the message as a synchronizing literal even when the server offers LITERAL+, so that
    /// a refusal of the command line comes before any byte of the message (used to retry a
    /// message whose APPEND was answered BAD).
    pub synchronizing: bool,
}

/// How [`Client::uid_store_flags`] changes the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagOp {
    /// Replace them.
    Set,
    Add,
    Remove,
}

/// A NO or BAD answer, typed: callers branch on it (throttling is waited out, a refused
/// message is listed), never on its text alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: Status,
    /// The response code's keyword, upper-cased (`THROTTLED`, `TOOBIG`, `OVERQUOTA`, ...).
    pub code: Option<String>,
    pub text: String,
    /// The wait the answer asked for ([`super::error::answer_wait`]).
    pub wait: Option<Duration>,
}

impl Refusal {
    /// The refusal of an answer with `status`, `code` (as sent) and `text`.
    pub fn new(status: Status, code: Option<&str>, text: String) -> Refusal {
        Refusal {
            status,
            code: code
                .and_then(|c| c.split_ascii_whitespace().next())
                .map(str::to_ascii_uppercase),
            wait: super::error::answer_wait(code, &text),
            text,
        }
    }

    /// The server asks to come back later (see [`super::error::answer_is_transient`]).
    pub fn is_transient(&self) -> bool {
        super::error::answer_is_transient(self.code.as_deref(), &self.text)
    }

    /// The server's daily bandwidth limit (see [`super::error::answer_is_bandwidth_quota`]).
    pub fn is_bandwidth_quota(&self) -> bool {
        super::error::answer_is_bandwidth_quota(self.code.as_deref(), &self.text)
    }

    /// This refusal as the error of its command (`message` says which), with its stated wait.
    pub fn error(&self, message: String) -> anyhow::Error {
        wire_error(
            ErrorKind::Rejected {
                code: self.code.clone(),
                text: self.text.clone(),
                wait: self.wait,
            },
            message,
        )
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = crate::text::printable(&self.text);
        match &self.code {
            Some(c) => write!(f, "{} [{c}] {text}", self.status),
            None => write!(f, "{} {text}", self.status),
        }
    }
}

/// Result of one APPEND.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored; `uid` from APPENDUID when UIDPLUS is offered.
    Ok {
        uidvalidity: Option<u32>,
        uid: Option<u32>,
    },
    /// NO/BAD from the server.
    Refused(Refusal),
    /// No answer: the connection was closed on purpose first (the server answered BAD to an
    /// earlier APPEND whose message was already on its way, and might read the bytes that
    /// follow as commands). The message may or may not have been stored.
    Unanswered,
}

/// Dates outside these years go with a synchronizing literal: a server that refuses such a
/// date (32-bit clocks, dates before 1970) then refuses before the message bytes are sent.
const SAFE_YEARS: std::ops::RangeInclusive<u16> = 1971..=2037;

/// Most commands in flight during `append_many` before we stop and read replies; keeps the
/// server's replies (which it writes while we keep writing) far below any socket buffer.
const MAX_APPENDS_IN_FLIGHT: usize = 64;
/// Literal bytes written between two calls of the literal meter.
const LITERAL_METER_PIECE: usize = 64 << 10;

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
    /// A literal always sent synchronizing (`{N}`, then wait for `+`): the server can refuse
    /// the command before any byte of it arrives.
    SyncLiteral(&'a [u8]),
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
    /// A non-synchronizing literal went out with it: if the server refuses the command line
    /// with BAD, it may read the literal's lines as commands.
    nonsync: bool,
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
    /// Stop after the greeting and CAPABILITY: no TLS, no login (see [`offers_starttls`]).
    pub greeting_only: bool,
}

/// Whether the server at `ep`'s host and port, spoken to in plain IMAP, offers STARTTLS;
/// `None` when no plain IMAP greeting comes. One connection and no login: for advice after
/// implicit TLS failed there (the advice differs when STARTTLS would fail too).
pub fn offers_starttls(ep: &Endpoint) -> Option<bool> {
    let plain = Endpoint {
        tls: TlsMode::None,
        ..ep.clone()
    };
    let opts = ConnectOptions {
        greeting_only: true,
        ..ConnectOptions::default()
    };
    let mut c = Client::connect_with(&plain, &opts).ok()?;
    let offered = c.has_capability("STARTTLS");
    let _ = c.logout_in_place();
    Some(offered)
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
    /// Most bytes one response may hold now ([`response::read_response`]): the default, or
    /// more while message bodies of a known size are expected.
    response_limit: u64,
    /// Responses since the last tagged completion that answered nothing asked.
    unsolicited: u32,
    /// Set when the connection can no longer be trusted to be in step with the server (a BAD
    /// to a command whose literal was already on its way): every later command fails with it.
    broken: Option<String>,
    /// Until the greeting is read, a line that is not IMAP means another protocol answers.
    greeted: bool,
    /// Hears of literal bytes as they arrive (see [`Client::set_literal_meter`]).
    literal_meter: Option<super::ByteMeter>,
    /// The greeting's text, for [`Provider::detect`].
    greeting_text: String,
    /// The rules this server gets: forced by the endpoint or recognised after login.
    provider: Provider,
    /// The throttling wait shared by the endpoint's connections.
    pause: conn::Pause,
    /// Gmail's `[THROTTLED]` answers on this connection and the waits they asked for.
    slowdown: Slowdown,
    /// Tagged NO and BAD answers on this session (Exchange closes a session at its tenth).
    refusals: u32,
    /// Untagged NO/BAD texts received during login (Gmail's `[WEBALERT <url>] Web login
    /// required.` comes so), kept for the error a refused login gives.
    login_alerts: Vec<String>,
    /// The refresher and the generation of the access token this session logged in with, to
    /// mark it stale when the server says it expired.
    oauth2: Option<(Arc<Refresher>, u64)>,
}

/// Whether some APPEND was refused with "not now" (throttling): the server's reason to close.
fn asked_to_wait(outcomes: &[Option<AppendOutcome>]) -> bool {
    outcomes
        .iter()
        .any(|o| matches!(o, Some(AppendOutcome::Refused(r)) if r.is_transient()))
}

/// The longest throttling wait a server may impose on all connections at once.
const MAX_STATED_WAIT: Duration = Duration::from_secs(15 * 60);

/// The longest wait for the greeting (at most `--timeout`): servers greet at once.
const GREETING_DEADLINE: Duration = Duration::from_secs(10);

/// Most responses that answer nothing asked (untagged chatter, FETCH for UIDs not asked for)
/// one command may bring: a server streaming such responses must not keep a run alive forever.
const MAX_UNSOLICITED: u32 = 100_000;

/// Extra bytes a message body may have beyond its RFC822.SIZE before the response is refused
/// (servers' sizes are sometimes estimates): a quarter of the size plus 1 MiB.
pub fn body_margin(size: u64) -> u64 {
    size / 4 + (1 << 20)
}

/// The response limit while bodies of at most `largest` bytes (RFC822.SIZE) are expected.
fn body_limit(largest: u64) -> u64 {
    response::DEFAULT_RESPONSE_LIMIT.max(largest.saturating_add(body_margin(largest)) + (64 << 10))
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
            response_limit: response::DEFAULT_RESPONSE_LIMIT,
            literal_meter: None,
            oauth2: None,
            unsolicited: 0,
            broken: None,
            greeted: false,
            greeting_text: String::new(),
            provider: Provider::Generic,
            pause: ep.pause.clone(),
            slowdown: Slowdown::default(),
            refusals: 0,
            login_alerts: Vec::new(),
            hidden: opts
                .hide_capabilities
                .iter()
                .map(|c| c.to_ascii_uppercase())
                .collect(),
        };
        // A server greets at once; whatever else listens there (a web server, a TLS-only
        // port spoken to in plain) would keep us waiting the whole --timeout.
        let deadline = ep.timeout.min(GREETING_DEADLINE);
        c.set_timeout(deadline)?;
        let preauth = c.greeting(deadline)?;
        c.set_timeout(ep.timeout)?;
        if opts.greeting_only {
            c.ensure_capabilities(0)?;
            return Ok(c);
        }
        if ep.tls == TlsMode::StartTls {
            c.starttls(ep)?;
        }
        if !preauth {
            c.authenticate(ep)?;
        }
        c.provider = ep.provider.unwrap_or_else(|| {
            Provider::detect(c.caps.iter().map(String::as_str), &c.greeting_text)
        });
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

    /// The rules this server gets (see [`crate::provider`]).
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// False once the connection was closed on purpose (a response too large to read, a BAD
    /// after a literal already sent): every command on it fails; connect again.
    pub fn is_usable(&self) -> bool {
        self.broken.is_none()
    }

    /// True when COMPRESS=DEFLATE is active on this connection.
    pub fn is_compressed(&self) -> bool {
        self.conn.get_ref().is_compressed()
    }

    /// Tell `meter` of every literal byte read or written from now on (`None`: stop), so a
    /// progress display counts a message's bytes while they move rather than once it is
    /// complete.
    pub fn set_literal_meter(&mut self, meter: Option<super::ByteMeter>) {
        self.literal_meter = meter;
    }

    /// Bytes this connection moved so far, on the socket and as IMAP text.
    pub fn traffic(&self) -> Traffic {
        self.conn.get_ref().traffic()
    }

    /// Upper-case capability names, e.g. "UIDPLUS", "LITERAL+", "AUTH=PLAIN".
    pub fn has_capability(&self, name: &str) -> bool {
        self.caps.contains(&name.to_ascii_uppercase())
    }

    /// The largest message the server takes, from `APPENDLIMIT=N` (RFC 7889); `None` when it
    /// names none for the whole server.
    pub fn append_limit(&self) -> Option<u64> {
        self.caps
            .iter()
            .filter_map(|c| c.strip_prefix("APPENDLIMIT="))
            .filter_map(|n| n.parse().ok())
            .min()
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
        let mut subscribed: HashSet<MailboxName> = HashSet::new();
        if !extended {
            self.run(&[text("LSUB \"\" \"*\"")], &mut |u| {
                if let Untagged::List(e) = u {
                    if e.lsub && !has_attr(&e.attributes, "\\Noselect") {
                        subscribed.insert(MailboxName::from_server(&e.name));
                    }
                }
                Ok(())
            })?;
        }
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let status = statuses.remove(&e.name);
            let raw_name = MailboxName::from_server(&e.name);
            let name = raw_name.decoded();
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
    pub fn select(
        &mut self,
        name: &(impl AsRef<[u8]> + ?Sized),
        readonly: bool,
    ) -> Result<Selected> {
        let raw_name = name.as_ref();
        let condstore = self.has_capability("CONDSTORE");
        let mut parts = vec![
            text(if readonly { "EXAMINE " } else { "SELECT " }),
            arg(raw_name),
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
        sel.uidvalidity = match uidvalidity {
            Some(v) if v > 0 => v,
            got => {
                return Err(self.protocol_error(format!(
                    "SELECT {}: the server sent {} (RFC 3501 requires a non-zero UIDVALIDITY)",
                    quote::display(raw_name),
                    if got.is_some() {
                        "UIDVALIDITY 0"
                    } else {
                        "no UIDVALIDITY"
                    }
                )))
            }
        };
        Ok(sel)
    }

    /// `UID SEARCH ALL`: every UID in the selected mailbox, ascending.
    pub fn uid_search_all(&mut self) -> Result<Vec<u32>> {
        self.uid_search(&SearchKey::all())
    }

    /// `UID SEARCH <key>`: the UIDs of the selected mailbox that match, ascending, without 0.
    pub fn uid_search(&mut self, key: &SearchKey) -> Result<Vec<u32>> {
        let mut uids = Vec::new();
        self.run(&[text(&format!("UID SEARCH {}", key.as_str()))], &mut |u| {
            if let Untagged::Search(v) = u {
                uids.extend(v);
            }
            Ok(())
        })?;
        // UID 0 names no message (RFC 3501 2.3.1.1).
        uids.retain(|&u| u != 0);
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
        // Gmail's ids cost a few bytes per message and tell one message in many label views.
        let gmail = self.has_capability("X-GM-EXT-1");
        let mut cmd = format!(
            "UID FETCH {set} (UID FLAGS INTERNALDATE RFC822.SIZE{}{})",
            if condstore { " MODSEQ" } else { "" },
            if gmail { " X-GM-MSGID X-GM-THRID" } else { "" }
        );
        if let (Some(n), true) = (changedsince, condstore) {
            cmd.push_str(&format!(" (CHANGEDSINCE {n})"));
        }
        let needs = Needs {
            flags: true,
            internaldate: true,
            size: true,
            body: None,
        };
        self.fetch_simple(set, &cmd, needs, f)
    }

    /// Fetch `BODY.PEEK[]` (plus UID FLAGS INTERNALDATE RFC822.SIZE) of `uids`, pipelining
    /// several UID FETCH commands of at most `batch_bytes` each (sizes from `sizes`, same order:
    /// their RFC822.SIZE) with at most `depth` in flight. `f` is called once per message as it
    /// arrives; memory holds one message at a time, and a body larger than its size plus
    /// [`body_margin`] is refused.
    ///
    /// Only the first body of each asked UID reaches `f`; UIDs the server sent more than once
    /// are returned (their first body cannot be trusted either: callers fail them). Responses
    /// without a body (unsolicited flag changes) or for UIDs not asked are skipped. If `f`
    /// fails, no more commands are sent, the ones in flight are drained, and its error is
    /// returned.
    pub fn uid_fetch_bodies(
        &mut self,
        uids: &[u32],
        sizes: &[u64],
        batch_bytes: u64,
        depth: usize,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<Vec<u32>> {
        if uids.len() != sizes.len() {
            bail!(
                "uid_fetch_bodies: {} UIDs but {} sizes",
                uids.len(),
                sizes.len()
            );
        }
        let largest = sizes.iter().copied().max().unwrap_or(0);
        self.with_body_limit(largest, |c| {
            c.fetch_bodies(uids, sizes, batch_bytes, depth, f)
        })
    }

    fn fetch_bodies(
        &mut self,
        uids: &[u32],
        sizes: &[u64],
        batch_bytes: u64,
        depth: usize,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<Vec<u32>> {
        let batches = batch_uids(uids, sizes, batch_bytes);
        let depth = depth.max(1);
        let asked: HashSet<u32> = uids.iter().copied().collect();
        let mut delivered: HashSet<u32> = HashSet::new();
        let mut repeated: BTreeSet<u32> = BTreeSet::new();
        let mut bodiless: BTreeSet<u32> = BTreeSet::new();
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
                    if !asked.contains(&uid) {
                        self.note_unsolicited()?;
                    } else if !delivered.insert(uid) {
                        repeated.insert(uid);
                    } else if failure.is_none() {
                        item.uid = uid;
                        if let Err(e) = f(item) {
                            failure = Some(e);
                        }
                    }
                }
                Response::Untagged(Untagged::Fetch { uid: Some(uid), .. }) => {
                    if asked.contains(&uid) {
                        bodiless.insert(uid);
                    }
                }
                Response::Untagged(_) => {}
                Response::Unreadable(why) => {
                    failure.get_or_insert_with(|| {
                        self.protocol_error(format!("UID FETCH (BODY.PEEK[]): {why}"))
                    });
                }
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
        // An answer for an asked UID without the body never followed by one with it left out
        // what was asked: unreadable, not "expunged".
        bodiless.retain(|u| !delivered.contains(u));
        if let (None, Some(uid)) = (&failure, bodiless.first()) {
            failure = Some(self.protocol_error(format!(
                "UID FETCH (BODY.PEEK[]): the answer for UID {uid} has no BODY[]{}",
                match bodiless.len() {
                    1 => String::new(),
                    n => format!(" (nor do those of {} other UIDs)", n - 1),
                }
            )));
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(repeated.into_iter().collect()),
        }
    }

    /// `UID FETCH <set> (UID RFC822.SIZE BODY.PEEK[HEADER])`.
    pub fn uid_fetch_headers(
        &mut self,
        set: &str,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<()> {
        check_set(set)?;
        let needs = Needs {
            flags: false,
            internaldate: false,
            size: true,
            body: Some("BODY[HEADER]"),
        };
        self.fetch_simple(
            set,
            &format!("UID FETCH {set} (UID RFC822.SIZE BODY.PEEK[HEADER])"),
            needs,
            f,
        )
    }

    /// Message `uid` from byte `offset` on, as `BODY.PEEK[]<offset.chunk>` pieces with up to
    /// `depth` commands in flight (a long link pays one round trip per `depth` pieces, not per
    /// piece), handed to `on_piece` in order until the first short piece, which is the end.
    /// Returns `false` when the server sent nothing for the UID (expunged).
    ///
    /// Bounded by `declared` (RFC822.SIZE): no piece is asked for at or beyond `declared` plus
    /// [`body_margin`], so a server that never sends a short piece costs at most that many
    /// bytes and requests. Each piece must answer a request in flight (the origin the server
    /// states, `BODY[]<origin>`, or the only request in flight when it states none) and be no
    /// longer than asked; anything else is a [`ErrorKind::Protocol`] error (callers fetch the
    /// message whole instead). Until the first piece shows that the server states origins, one
    /// command is in flight.
    pub fn uid_fetch_partials(
        &mut self,
        uid: u32,
        offset: u64,
        chunk: u64,
        declared: u64,
        depth: usize,
        on_piece: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool> {
        if chunk == 0 {
            bail!("uid_fetch_partials: the chunk must be at least 1 byte");
        }
        if uid == 0 {
            bail!("uid_fetch_partials: UID 0 is not a message");
        }
        let mut p = Partials {
            uid,
            chunk,
            end: declared.saturating_add(body_margin(declared)),
            depth: depth.max(1),
            window: 1,
            next_send: offset,
            next_deliver: offset,
            pieces: BTreeMap::new(),
            asked: BTreeMap::new(),
            in_flight: VecDeque::new(),
            seen: false,
            ended: false,
        };
        let limit = chunk.saturating_add(64 << 10);
        let before = self.response_limit;
        self.response_limit = limit.max(response::DEFAULT_RESPONSE_LIMIT.min(limit));
        let r = self.partials_loop(&mut p, on_piece);
        self.response_limit = before;
        r
    }

    fn partials_loop(
        &mut self,
        p: &mut Partials,
        on_piece: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool> {
        let (uid, chunk) = (p.uid, p.chunk);
        let mut failure: Option<anyhow::Error> = None;
        loop {
            while failure.is_none()
                && !p.ended
                && p.in_flight.len() < p.window
                && p.next_send < p.end
            {
                // The last request stops at the bound: no byte past it is ever asked for.
                let len = chunk.min(p.end - p.next_send);
                let cmd = format!("UID FETCH {uid} (UID BODY.PEEK[]<{}.{len}>)", p.next_send);
                let sent = self.send(&[text(&cmd)])?;
                p.in_flight.push_back((sent.tag, p.next_send));
                p.asked.insert(p.next_send, len);
                p.next_send += len;
            }
            if p.in_flight.is_empty() {
                break;
            }
            let response = self.read()?;
            if let Err(e) = self.partial_answer(p, response) {
                // The server's refusal or nonsense: drain what is in flight. A broken link: stop.
                if super::error::is_transient(&e) || !super::error::is_wire(&e) {
                    return Err(e);
                }
                failure.get_or_insert(e);
            }
            if failure.is_none() {
                if let Err(e) = p.deliver(on_piece) {
                    failure = Some(e);
                }
            }
            if failure.is_none() && !p.ended && p.in_flight.is_empty() && p.next_send >= p.end {
                failure = Some(self.protocol_error(format!(
                    "UID FETCH {uid}: more than RFC822.SIZE plus a margin ({} bytes) and still \
                     no end",
                    p.end
                )));
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(p.seen),
        }
    }

    /// One response during [`Client::uid_fetch_partials`]: a piece put in place, or a command
    /// completed. An error that is the server's (a piece that answers nothing asked, a refusal)
    /// leaves the loop draining; a broken connection ends it.
    fn partial_answer(&mut self, p: &mut Partials, response: Response) -> Result<()> {
        let (uid, chunk) = (p.uid, p.chunk);
        match response {
            Response::Untagged(Untagged::Fetch {
                uid: Some(got),
                item,
                ..
            }) if got == uid => {
                p.seen = true;
                // A flag update carries no body; a NIL body is settled by the tagged OK.
                if let Some(body) = item.body {
                    p.place(body, item.origin).map_err(|why| {
                        self.protocol_error(format!("UID FETCH {uid} (BODY.PEEK[]<…>): {why}"))
                    })?;
                }
            }
            Response::Untagged(Untagged::Fetch { .. }) => self.note_unsolicited()?,
            Response::Untagged(_) => {}
            Response::Unreadable(why) => {
                return Err(self.protocol_error(format!("UID FETCH {uid}: {why}")))
            }
            Response::Tagged {
                tag,
                status,
                code,
                text: t,
            } => {
                let done = self.pipelined_done(&mut p.in_flight, &tag, status, &code, &t, |at| {
                    format!("UID FETCH {uid} (BODY.PEEK[]<{at}.{chunk}>)")
                });
                let Some((at, refused)) = done else {
                    return Ok(());
                };
                if let Some(e) = refused {
                    return Err(e);
                } else if !p.seen {
                    p.ended = true; // nothing for this UID: expunged
                } else if at >= p.next_deliver && p.asked.contains_key(&at) {
                    // Past the end the server answers "" or NIL: an empty piece.
                    p.pieces.entry(at).or_default();
                }
            }
            Response::Continuation(t) => {
                return Err(anyhow!(
                    "{}: unexpected continuation request during UID FETCH: {t}",
                    self.label
                ))
            }
            Response::Bye(t) => return Err(self.bye(None, &t)),
        }
        Ok(())
    }

    /// CREATE a mailbox (raw, already encoded name). An existing mailbox
    /// (`[ALREADYEXISTS]`) counts as success, so a resumed run can create again.
    pub fn create(&mut self, name: &(impl AsRef<[u8]> + ?Sized)) -> Result<()> {
        let parts = [text("CREATE "), arg(name.as_ref())];
        let sent = self.send(&parts)?;
        let done = self.wait_done(&sent, &mut |_| Ok(()))?;
        match (&done.status, &done.code) {
            (Status::Ok, _) => Ok(()),
            (Status::No, Some(Code::Other(c))) if c.eq_ignore_ascii_case("ALREADYEXISTS") => Ok(()),
            _ => Err(self.failed(&sent, &done)),
        }
    }

    /// SUBSCRIBE a mailbox (raw, already encoded name).
    pub fn subscribe(&mut self, name: &(impl AsRef<[u8]> + ?Sized)) -> Result<()> {
        self.run(&[text("SUBSCRIBE "), arg(name.as_ref())], &mut |_| Ok(()))?;
        Ok(())
    }

    /// Pipelined mailbox commands: each `(verb, raw_name)` (e.g. `("CREATE", "INBOX.a")`,
    /// `("SUBSCRIBE", …)`) is sent without waiting for the previous one's completion (at most 64
    /// in flight), so a burst costs about one round trip. Servers run them in order, so a parent
    /// CREATEd earlier in the burst exists for a later child. One result per command, in order:
    /// a NO/BAD is that command's error; CREATE answered `NO [ALREADYEXISTS]` is success.
    pub fn mailbox_commands(
        &mut self,
        commands: &[(&str, &MailboxName)],
    ) -> Result<Vec<Result<()>>> {
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
                Response::Unreadable(why) => {
                    return Err(self.protocol_error(format!("mailbox commands: {why}")))
                }
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
    /// not valid atoms; the date is rendered from its type. If the server answers BAD to an
    /// APPEND whose message went as a non-synchronizing literal, it may be reading that
    /// message's lines as commands: the connection is closed at once, that message is
    /// [`AppendOutcome::Refused`] and every later one [`AppendOutcome::Unanswered`]; the client
    /// is unusable afterwards.
    /// [`Self::read_append_reply`]; when the server closes the connection after asking to wait
    /// (Microsoft 365 answers `NO Request is throttled` and hangs up), the answers so far are
    /// kept and the rest are unanswered, so its words reach the caller.
    fn append_reply_or_close(
        &mut self,
        flight: &mut AppendFlight,
        outcomes: &mut [Option<AppendOutcome>],
    ) -> Result<()> {
        match self.read_append_reply(flight, outcomes) {
            Err(e) if super::error::is_transient(&e) => {
                if !asked_to_wait(outcomes) {
                    return Err(e);
                }
                self.poison(format!("{e:#}"));
                Ok(())
            }
            other => other,
        }
    }

    pub fn append_many(
        &mut self,
        name: &(impl AsRef<[u8]> + ?Sized),
        msgs: &[AppendMessage<'_>],
    ) -> Result<Vec<AppendOutcome>> {
        let raw_name = name.as_ref();
        let mut outcomes: Vec<Option<AppendOutcome>> = vec![None; msgs.len()];
        let mut flight = AppendFlight::default();
        for (i, m) in msgs.iter().enumerate() {
            while !flight.in_flight.is_empty()
                && (flight.in_flight.len() >= MAX_APPENDS_IN_FLIGHT
                    || flight.bytes + m.bytes.len() as u64 > MAX_APPEND_BYTES_IN_FLIGHT)
            {
                self.append_reply_or_close(&mut flight, &mut outcomes)?;
            }
            if self.broken.is_some() {
                break;
            }
            let sent = match self.send_append(raw_name, m) {
                Ok(sent) => sent,
                Err(e) => {
                    // The server may have said why it hung up: read what it sent first.
                    while !flight.in_flight.is_empty() && self.broken.is_none() {
                        if self.read_append_reply(&mut flight, &mut outcomes).is_err() {
                            break;
                        }
                    }
                    if !asked_to_wait(&outcomes) {
                        return Err(e);
                    }
                    self.poison(format!("{e:#}"));
                    break;
                }
            };
            flight
                .in_flight
                .push_back((sent.tag, i, m.bytes.len() as u64, sent.nonsync));
            flight.bytes += m.bytes.len() as u64;
        }
        while !flight.in_flight.is_empty() && self.broken.is_none() {
            self.append_reply_or_close(&mut flight, &mut outcomes)?;
        }
        if self.broken.is_some() {
            return Ok(outcomes
                .into_iter()
                .map(|o| o.unwrap_or(AppendOutcome::Unanswered))
                .collect());
        }
        outcomes
            .into_iter()
            .enumerate()
            .map(|(i, o)| o.ok_or_else(|| anyhow!("{}: no reply to APPEND #{i}", self.label)))
            .collect()
    }

    /// Send one APPEND command.
    fn send_append(&mut self, raw_name: &[u8], m: &AppendMessage<'_>) -> Result<Sent> {
        let flags: Vec<&str> = m
            .flags
            .iter()
            .map(String::as_str)
            .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
            .filter(|f| {
                let ok = crate::flags::is_flag(f);
                if !ok {
                    wire_log!(
                        1,
                        "{}: dropping invalid flag {:?}",
                        self.label,
                        crate::text::printable(f)
                    );
                }
                ok
            })
            .collect();
        let mut head = format!(" ({})", flags.join(" "));
        if let Some(d) = &m.internaldate {
            // The type renders only `DD-Mon-YYYY HH:MM:SS +HHMM`: nothing to escape.
            head.push_str(&format!(" \"{d}\""));
        }
        head.push(' ');
        let odd_date = m
            .internaldate
            .is_some_and(|d| !SAFE_YEARS.contains(&d.year()));
        let body = if m.synchronizing || odd_date {
            Part::SyncLiteral(m.bytes)
        } else {
            Part::Literal(m.bytes)
        };
        self.send(&[text("APPEND "), arg(raw_name), text(&head), body])
    }

    fn read_append_reply(
        &mut self,
        flight: &mut AppendFlight,
        outcomes: &mut [Option<AppendOutcome>],
    ) -> Result<()> {
        match self.read()? {
            Response::Tagged {
                tag,
                status,
                code,
                text,
            } => {
                let Some(pos) = flight.in_flight.iter().position(|(t, ..)| *t == tag) else {
                    wire_log!(1, "{}: ignoring response to unknown tag {tag}", self.label);
                    return Ok(());
                };
                let (_, idx, size, nonsync) = flight.in_flight.remove(pos).unwrap_or_default();
                flight.bytes = flight.bytes.saturating_sub(size);
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
                    let code = match &code {
                        Some(Code::Other(c)) => Some(c.as_str()),
                        _ => None,
                    };
                    AppendOutcome::Refused(Refusal::new(status, code, text))
                };
                if let Some(slot) = outcomes.get_mut(idx) {
                    *slot = Some(outcome);
                }
                if status == Status::Bad && nonsync {
                    // Its message followed the command line without waiting: the server may
                    // now be reading it as commands. Nothing more may reach it.
                    let e = self.poison(format!(
                        "{}: APPEND answered BAD after its message was sent; connection closed \
                         so that no line of the message can be taken for a command",
                        self.label
                    ));
                    wire_log!(1, "{e:#}");
                }
                Ok(())
            }
            Response::Untagged(_) => Ok(()),
            Response::Unreadable(why) => Err(self.protocol_error(format!("APPEND: {why}"))),
            Response::Continuation(t) => bail!(
                "{}: unexpected continuation request during APPEND: {t}",
                self.label
            ),
            Response::Bye(t) => Err(self.bye(None, &t)),
        }
    }

    /// `UID STORE <uids> {+,-,}FLAGS.SILENT (<flags>)`: flags that are not valid atoms are left
    /// out (they could not be sent), `\Recent` too.
    pub fn uid_store_flags(&mut self, uids: &[u32], op: FlagOp, flags: &[String]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        let set = uidset::compact(uids);
        check_set(&set)?;
        let flags: Vec<&str> = flags
            .iter()
            .map(String::as_str)
            .filter(|f| crate::flags::is_flag(f) && !f.eq_ignore_ascii_case("\\Recent"))
            .collect();
        let verb = match op {
            FlagOp::Set => "FLAGS.SILENT",
            FlagOp::Add => "+FLAGS.SILENT",
            FlagOp::Remove => "-FLAGS.SILENT",
        };
        let cmd = format!("UID STORE {set} {verb} ({})", flags.join(" "));
        self.run(&[text(&cmd)], &mut |_| Ok(()))?;
        Ok(())
    }

    /// Gmail's `UID STORE <uids> +X-GM-LABELS.SILENT (<labels>)`: each label an astring (a
    /// system label such as `\Inbox` quoted), so the messages show in those label views too.
    pub fn uid_add_labels(&mut self, uids: &[u32], labels: &[Vec<u8>]) -> Result<()> {
        if uids.is_empty() || labels.is_empty() {
            return Ok(());
        }
        let set = uidset::compact(uids);
        check_set(&set)?;
        let head = format!("UID STORE {set} +X-GM-LABELS.SILENT (");
        let mut parts = vec![text(&head)];
        for (i, l) in labels.iter().enumerate() {
            if i > 0 {
                parts.push(text(" "));
            }
            parts.push(arg(l));
        }
        parts.push(text(")"));
        self.run(&parts, &mut |_| Ok(()))?;
        Ok(())
    }

    /// `UID EXPUNGE <uids>` (UIDPLUS): removes exactly those messages (if flagged `\Deleted`).
    pub fn uid_expunge(&mut self, uids: &[u32]) -> Result<()> {
        if uids.is_empty() {
            return Ok(());
        }
        if !self.has_capability("UIDPLUS") {
            bail!(
                "{}: UID EXPUNGE needs UIDPLUS, which the server does not offer",
                self.label
            );
        }
        let set = uidset::compact(uids);
        check_set(&set)?;
        self.run(&[text(&format!("UID EXPUNGE {set}"))], &mut |_| Ok(()))?;
        Ok(())
    }

    /// `EXPUNGE`: removes every message of the selected mailbox flagged `\Deleted`, whoever
    /// flagged it. Returns how many EXPUNGE responses came.
    pub fn expunge(&mut self) -> Result<u32> {
        let mut n = 0;
        self.run(&[text("EXPUNGE")], &mut |u| {
            if matches!(u, Untagged::Other) {
                n += 1;
            }
            Ok(())
        })?;
        Ok(n)
    }

    /// `NOOP`: returns the message count of the selected mailbox if the server reported one
    /// (an `EXISTS` answer), which shows mail arriving meanwhile.
    pub fn noop(&mut self) -> Result<Option<u32>> {
        let mut exists = None;
        self.run(&[text("NOOP")], &mut |u| {
            if let Untagged::Exists(n) = u {
                exists = Some(n);
            }
            Ok(())
        })?;
        Ok(exists)
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
        self.logout_in_place()
    }

    /// [`Client::logout`] through a reference (the connection is unusable afterwards).
    pub fn logout_in_place(&mut self) -> Result<()> {
        if self.broken.is_some() {
            return Ok(());
        }
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
    fn greeting(&mut self, deadline: Duration) -> Result<bool> {
        let first = self.read().map_err(|e| {
            let timed_out = e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            });
            if timed_out {
                // Connected, but nothing speaks first: not an IMAP server (or a TLS port).
                wire_error(
                    ErrorKind::Connect(ConnectProblem::NotImap),
                    format!(
                        "{}: no IMAP greeting within {} s: the server said nothing (it may \
                         expect TLS, or speak another protocol)",
                        self.label,
                        deadline.as_secs()
                    ),
                )
            } else {
                e.context("reading the greeting")
            }
        })?;
        self.greeted = true;
        match first {
            Response::Untagged(Untagged::Status { status, text, .. }) => match status {
                Status::Ok => {
                    self.greeting_text = text;
                    Ok(false)
                }
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
            other => Err(wire_error(
                ErrorKind::Connect(ConnectProblem::NotImap),
                format!("{}: not an IMAP greeting: {other:?}", self.label),
            )),
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
            return Err(wire_error(
                ErrorKind::Connect(ConnectProblem::NoStartTls),
                format!("{}: server does not offer STARTTLS", self.label),
            ));
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
                    let payload = match &ep.authuser {
                        Some(admin) => auth::plain(&ep.user, admin, pw),
                        None => auth::plain("", &ep.user, pw),
                    };
                    self.sasl("PLAIN", &payload)?;
                } else if ep.authuser.is_some() {
                    bail!(
                        "{}: logging in as one user to act as another needs AUTHENTICATE PLAIN, \
                         which this server does not offer",
                        self.label
                    );
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
                        let msg = format!(
                            "{}: login as {} failed: {} {}",
                            self.label, ep.user, done.status, done.text
                        );
                        return Err(self.auth_error(&done.code, done.text, msg));
                    }
                }
            }
            Secret::OAuth2TokenFile(path) => {
                let token = auth::read_token(path)?;
                let payload = auth::xoauth2(&ep.user, &token)?;
                self.sasl("XOAUTH2", &payload)?;
            }
            Secret::OAuth2Refresh(r) => {
                let lease = r.access_token()?;
                let payload = auth::xoauth2(&ep.user, &lease.token)?;
                if let Err(e) = self.sasl("XOAUTH2", &payload) {
                    let refused = e
                        .chain()
                        .filter_map(|c| c.downcast_ref::<WireError>())
                        .any(|w| matches!(w.kind(), ErrorKind::Auth { .. }));
                    if refused && r.refused(lease.generation) {
                        // Likely expired: worth a new connection with a new token.
                        return Err(wire_error(
                            ErrorKind::Connection,
                            format!(
                                "{e:#} (the access token may have expired: {} fetches a new one \
                                 for the next connection)",
                                r.option()
                            ),
                        ));
                    }
                    return Err(e);
                }
                self.oauth2 = Some((r.clone(), lease.generation));
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
                        return Err(self.auth_error(&code, text, msg));
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
        if self.slowdown.given_up() {
            return Err(wire_error(
                ErrorKind::SlowedDown,
                format!(
                    "{}: still answered [THROTTLED] after {} waits (about two minutes): the \
                     server has slowed this account to a crawl, as Gmail does past its daily \
                     limit",
                    self.label,
                    super::slowdown::GIVE_UP
                ),
            ));
        }
        self.pause.wait();
        let tag = format!("A{}", self.next_tag);
        self.next_tag += 1;
        let mut display = String::new();
        let mut line: Vec<u8> = format!("{tag} ").into_bytes();
        let mut aborted = false;
        let mut any_nonsync = false;
        for p in parts {
            match p {
                Part::Text(t) | Part::SecretText(t) => {
                    // Protocol text ends only where we end it: a line break inside would start
                    // a command the server did not get from us.
                    if t.iter().any(|&b| b == b'\r' || b == b'\n' || b == 0) {
                        bail!(
                            "{}: internal error: a line break inside command text (refused)",
                            self.label
                        );
                    }
                    line.extend_from_slice(t);
                    if matches!(p, Part::Text(_)) {
                        display.push_str(&String::from_utf8_lossy(t));
                    } else {
                        display.push_str("<secret>");
                    }
                }
                Part::Literal(_) | Part::SecretLiteral(_) | Part::SyncLiteral(_) => {
                    let (data, secret, force_sync): (&[u8], bool, bool) = match p {
                        Part::Literal(l) => (l, false, false),
                        Part::SecretLiteral(l) => (l, true, false),
                        Part::SyncLiteral(l) => (l, false, true),
                        _ => unreachable!(),
                    };
                    let nonsync = !force_sync
                        && (self.has_capability("LITERAL+")
                            || (self.has_capability("LITERAL-")
                                && data.len() <= LITERAL_MINUS_MAX));
                    any_nonsync |= nonsync;
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
                    self.write_literal(data)?;
                }
            }
        }
        if !aborted {
            line.extend_from_slice(b"\r\n");
            self.write_raw(&line)?;
            self.flush()?;
        }
        wire_log!(2, "{} C: {tag} {display}", self.label);
        Ok(Sent {
            tag,
            display,
            nonsync: any_nonsync,
        })
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
                    wait: answer_wait(code, text),
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
                wait: answer_wait(&done.code, &done.text),
            },
            format!(
                "{}: {} failed: {} {}",
                self.label, sent.display, done.status, done.text
            ),
        )
    }

    /// The error for an untimely BYE (during `command`, if known).
    fn bye(&self, command: Option<&str>, text: &str) -> anyhow::Error {
        // Microsoft 365: "* BYE Session invalidated - AccessTokenExpired".
        if let Some((r, generation)) = &self.oauth2 {
            if text.to_ascii_lowercase().contains("accesstokenexpired") {
                r.expired(*generation);
            }
        }
        let during = command.map(|c| format!("{c}: ")).unwrap_or_default();
        bye_error(
            text,
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
                    } else {
                        // Drained to its end, but not forever.
                        self.note_unsolicited()?;
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
                Response::Unreadable(why) => {
                    failure.get_or_insert_with(|| {
                        self.protocol_error(format!("{}: {why}", sent.display))
                    });
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

    /// A UID FETCH of `set` whose responses go to `f`, each UID of the set at most once and
    /// only with every item in `needs`: a server may split one message's items over several
    /// responses (or send an unsolicited flag change first), so the items of one UID are
    /// gathered until they are all there. A UID whose answer still lacks an item asked for when
    /// the command ends fails the command ([`ErrorKind::Protocol`]): an answer that leaves out
    /// what was asked is unreadable, never "nothing there". Responses for other UIDs (or again
    /// for one) are skipped, and more than [`MAX_UNSOLICITED`] of them fail the command.
    fn fetch_simple(
        &mut self,
        set: &str,
        cmd: &str,
        needs: Needs,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<()> {
        let mut seen: HashSet<u32> = HashSet::new();
        let mut gathering: BTreeMap<u32, Fetched> = BTreeMap::new();
        let mut unasked = 0u32;
        let label = self.label.clone();
        let too_many = |what: &str| {
            wire_error(
                ErrorKind::Protocol,
                format!("{label}: {MAX_UNSOLICITED} FETCH responses {what}"),
            )
        };
        self.run(&[text(cmd)], &mut |u| {
            let Untagged::Fetch {
                uid: Some(uid),
                item,
                ..
            } = u
            else {
                return Ok(());
            };
            if uid == 0 || !uidset::contains(set, uid) || seen.contains(&uid) {
                unasked += 1;
                if unasked > MAX_UNSOLICITED {
                    return Err(too_many("for UIDs not asked"));
                }
                return Ok(());
            }
            let mut item = match gathering.remove(&uid) {
                Some(mut earlier) => {
                    earlier.merge(item);
                    earlier
                }
                None => item,
            };
            if !needs.lacking(&item).is_empty() {
                if gathering.len() as u32 >= MAX_UNSOLICITED {
                    return Err(too_many("lacking items asked for"));
                }
                gathering.insert(uid, item);
                return Ok(());
            }
            seen.insert(uid);
            item.uid = uid;
            f(item)
        })?;
        match gathering.iter().next() {
            None => Ok(()),
            Some((uid, item)) => Err(self.protocol_error(format!(
                "{}: the answer for UID {uid} has no {}{}",
                cmd.replacen(set, "…", 1),
                needs.lacking(item).join(", "),
                match gathering.len() {
                    1 => String::new(),
                    n => format!(" (nor do those of {} other UIDs)", n - 1),
                }
            ))),
        }
    }

    /// Next response: from the backlog, else from the socket.
    fn read(&mut self) -> Result<Response> {
        if let Some(r) = self.backlog.pop_front() {
            return Ok(r);
        }
        self.read_wire()
    }

    /// Next response from the socket. An untagged response that cannot be parsed is
    /// [`Response::Unreadable`] when it is of a kind that carries mailbox state (FETCH, SEARCH,
    /// LIST, STATUS, EXISTS, ...: the command waiting for it must fail, never read it as
    /// "nothing there"); others are logged and skipped. Capabilities are learned from any
    /// response that carries them.
    fn read_wire(&mut self) -> Result<Response> {
        if let Some(why) = &self.broken {
            return Err(wire_error(ErrorKind::Connection, why.clone()));
        }
        // Don't keep a huge buffer around after one big message.
        if self.buf.capacity() > 32 << 20 {
            self.buf = Vec::new();
        }
        loop {
            let got = match response::read_response(
                &mut self.conn,
                &mut self.buf,
                self.response_limit,
                self.literal_meter.as_deref(),
            ) {
                Ok(got) => got,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    // The rest of that response is still coming and would be read as new
                    // responses: this connection is done.
                    let why = format!("{}: reading response: {e}", self.label);
                    self.poison(why.clone());
                    return Err(wire_error(ErrorKind::Protocol, why));
                }
                Err(e) => {
                    return Err(
                        anyhow::Error::new(e).context(format!("{}: reading response", self.label))
                    )
                }
            };
            if !got {
                let msg = if self.logging_out {
                    format!("{}: connection closed", self.label)
                } else {
                    format!("{}: connection closed by the server", self.label)
                };
                return Err(wire_error(ErrorKind::Connection, msg));
            }
            let head = response::head(&self.buf);
            let r = match response::parse_owned(&mut self.buf) {
                Ok(r) => r,
                Err(reason) if response::carries_state(&self.buf) => {
                    return Ok(Response::Unreadable(reason));
                }
                Err(_) if !self.greeted => {
                    let what = crate::text::printable(&head);
                    return Err(wire_error(
                        ErrorKind::Connect(ConnectProblem::NotImap),
                        format!("{}: not an IMAP greeting: {what}", self.label),
                    ));
                }
                Err(reason) => {
                    wire_log!(1, "{}: skipping response: {reason}", self.label);
                    self.note_unsolicited()?;
                    continue;
                }
            };
            if log_level() > 2 && !matches!(r, Response::Tagged { .. }) {
                wire_log!(2, "{} S: {}", self.label, crate::text::printable(&head));
            }
            self.observe(&r)?;
            return Ok(r);
        }
    }

    /// What every response teaches: capabilities, alerts for the log, the end of a command
    /// (which restarts the progress deadline and the count of unsolicited responses).
    fn observe(&mut self, r: &Response) -> Result<()> {
        match r {
            Response::Tagged {
                tag,
                status: Status::Ok,
                code,
                text,
            } => {
                let number = tag.trim_start_matches('A').parse().unwrap_or(u64::MAX);
                self.slowed_down(says_throttled(code_name(code).as_deref(), text), number);
            }
            Response::Tagged { .. } => self.refusals += 1,
            Response::Untagged(Untagged::Status {
                status: Status::No | Status::Bad,
                code: Some(Code::Other(c)),
                text,
            }) if self.login_alerts.len() < 4 => {
                self.login_alerts.push(format!("[{c}] {text}"));
            }
            _ => {}
        }
        if let Response::Tagged {
            status: Status::No | Status::Bad,
            code,
            text,
            ..
        } = r
        {
            if let Some(d) = answer_wait(code, text) {
                // Every connection of the account waits, not only this one.
                self.pause
                    .until(std::time::Instant::now() + d.min(MAX_STATED_WAIT));
            }
        }
        match r {
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
            // Warnings and alerts the server wants a human to see.
            Response::Untagged(Untagged::Status {
                status: status @ (Status::No | Status::Bad),
                text: t,
                ..
            }) => wire_log!(
                1,
                "{}: server says: {status} {}",
                self.label,
                crate::text::printable(t)
            ),
            Response::Untagged(Untagged::Status {
                code: Some(Code::Other(c)),
                text: t,
                ..
            }) if c.eq_ignore_ascii_case("ALERT") => {
                wire_log!(
                    1,
                    "{}: server alert: {}",
                    self.label,
                    crate::text::printable(t)
                )
            }
            Response::Untagged(Untagged::Other) => self.note_unsolicited()?,
            Response::Untagged(Untagged::Status { code: None, .. }) => self.note_unsolicited()?,
            _ => {}
        }
        if let Response::Tagged {
            tag,
            status,
            text: t,
            ..
        } = r
        {
            wire_log!(
                2,
                "{} S: {tag} {status} {}",
                self.label,
                crate::text::printable(t)
            );
            self.unsolicited = 0;
            self.conn.get_mut().command_done();
        }
        Ok(())
    }

    /// A refused login: `message`, with what the server said untagged meanwhile (Gmail's
    /// `[WEBALERT <url>] Web login required.` carries the link to open).
    fn auth_error(&self, code: &Option<Code>, text: String, message: String) -> anyhow::Error {
        let mut message = message;
        for alert in &self.login_alerts {
            message += &format!(" (the server also said: {})", crate::text::printable(alert));
        }
        let wait = answer_wait(code, &text);
        let code = code_name(code);
        wire_error(ErrorKind::Auth { code, text, wait }, message)
    }

    /// A tagged OK arrived, `[THROTTLED]` or not: a wait the slow-down asks for holds every
    /// connection of the endpoint (see [`super::slowdown`]).
    fn slowed_down(&mut self, throttled: bool, tag: u64) {
        if let Some(wait) = self
            .slowdown
            .answer(throttled, tag, u64::from(self.next_tag))
        {
            self.pause.until(std::time::Instant::now() + wait);
            crate::ui::info(&format!(
                "{}: the server answers [THROTTLED] (it is slowing this account down): \
                 waiting {} s before the next command",
                self.label,
                wait.as_secs()
            ));
        }
    }

    /// `[THROTTLED]` answers on this connection so far.
    pub fn throttled(&self) -> u64 {
        self.slowdown.total()
    }

    /// Tagged NO and BAD answers on this session so far.
    pub fn refusals(&self) -> u32 {
        self.refusals
    }

    /// Count a response that answered nothing asked; too many in one command is an error.
    fn note_unsolicited(&mut self) -> Result<()> {
        self.unsolicited += 1;
        if self.unsolicited > MAX_UNSOLICITED {
            return Err(self.protocol_error(format!(
                "{MAX_UNSOLICITED} responses in a row that answer nothing asked; giving up on \
                 this connection"
            )));
        }
        Ok(())
    }

    /// A failure of the server to keep to the protocol (not worth retrying as is).
    fn protocol_error(&self, what: String) -> anyhow::Error {
        wire_error(ErrorKind::Protocol, format!("{}: {what}", self.label))
    }

    /// Close the connection for good with `why`: used when the server may be reading data as
    /// commands, so nothing more may reach it.
    fn poison(&mut self, why: String) -> anyhow::Error {
        self.conn.get_mut().shutdown();
        self.broken = Some(why.clone());
        wire_error(ErrorKind::Connection, why)
    }

    /// Run `f` with the response limit raised for message bodies of at most `largest` bytes
    /// (RFC822.SIZE), restored afterwards.
    fn with_body_limit<T>(
        &mut self,
        largest: u64,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let before = self.response_limit;
        self.response_limit = body_limit(largest);
        let r = f(self);
        self.response_limit = before;
        r
    }

    /// A literal's bytes, in pieces the literal meter hears of as they are written (a
    /// progress display moves during a large APPEND instead of jumping at its end).
    fn write_literal(&mut self, data: &[u8]) -> Result<()> {
        for piece in data.chunks(LITERAL_METER_PIECE) {
            self.write_raw(piece)?;
            if let Some(meter) = &self.literal_meter {
                meter(piece.len() as u64);
            }
        }
        Ok(())
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

/// The wait a NO/BAD answer with `code` and `text` asks for ([`super::error::answer_wait`]).
fn answer_wait(code: &Option<Code>, text: &str) -> Option<Duration> {
    let code = match code {
        Some(Code::Other(c)) => Some(c.as_str()),
        _ => None,
    };
    super::error::answer_wait(code, text)
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

/// The state of one [`Client::uid_fetch_partials`].
struct Partials {
    uid: u32,
    chunk: u64,
    /// No piece is asked for at or past this offset (RFC822.SIZE plus the margin).
    end: u64,
    depth: usize,
    /// Commands in flight at once: 1 until the server shows it states origins.
    window: usize,
    next_send: u64,
    next_deliver: u64,
    /// Pieces that arrived ahead of `next_deliver`, by offset (only offsets in flight).
    pieces: BTreeMap<u64, Vec<u8>>,
    /// Length asked for at each offset not yet delivered.
    asked: BTreeMap<u64, u64>,
    /// (tag, offset) of the commands in flight.
    in_flight: VecDeque<(String, u64)>,
    seen: bool,
    ended: bool,
}

impl Partials {
    /// Hand on the pieces that are next in order; the first short one is the end.
    fn deliver(&mut self, on_piece: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        while !self.ended {
            let Some(piece) = self.pieces.remove(&self.next_deliver) else {
                break;
            };
            let asked = self.asked.remove(&self.next_deliver).unwrap_or(self.chunk);
            self.next_deliver += piece.len() as u64;
            self.ended = (piece.len() as u64) < asked;
            on_piece(&piece)?;
        }
        Ok(())
    }

    /// Put a piece where it belongs, or say why it belongs nowhere.
    fn place(&mut self, body: Vec<u8>, origin: Option<u64>) -> Result<(), String> {
        let at = match origin {
            Some(o) => {
                self.window = self.depth;
                o
            }
            None if self.in_flight.len() == 1 => self.in_flight[0].1,
            None => return Err("a partial body without its origin".into()),
        };
        if !self.in_flight.iter().any(|(_, o)| *o == at) || self.pieces.contains_key(&at) {
            return Err(format!(
                "a piece at offset {at}, which is not one asked for"
            ));
        }
        let asked = self.asked.get(&at).copied().unwrap_or(self.chunk);
        if body.len() as u64 > asked {
            return Err(format!(
                "{} bytes in answer to a request for {asked}",
                body.len()
            ));
        }
        self.pieces.insert(at, body);
        Ok(())
    }
}

/// The items a FETCH asked for, which each message's answer must hold (see
/// [`Client::fetch_simple`]).
#[derive(Debug, Clone, Copy)]
struct Needs {
    flags: bool,
    internaldate: bool,
    size: bool,
    /// The body section asked for, as its answer names it (`BODY[HEADER]`).
    body: Option<&'static str>,
}

impl Needs {
    /// The items asked for that `f` lacks, by their names in an answer.
    fn lacking(&self, f: &Fetched) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.flags && f.flags.is_none() {
            out.push("FLAGS");
        }
        if self.internaldate && f.internaldate.is_none() {
            out.push("INTERNALDATE");
        }
        if self.size && f.size.is_none() {
            out.push("RFC822.SIZE");
        }
        if let (Some(name), None) = (self.body, &f.body) {
            out.push(name);
        }
        out
    }
}

/// The APPENDs of one [`Client::append_many`] awaiting their answers.
#[derive(Default)]
struct AppendFlight {
    /// (tag, index into the messages, literal size, sent non-synchronizing).
    in_flight: VecDeque<(String, usize, u64, bool)>,
    /// Literal bytes sent and not yet answered.
    bytes: u64,
}

/// RFC 6154 roles, canonical spelling.
const SPECIAL_USE: &[&str] = &[
    "\\All",
    "\\Archive",
    "\\Drafts",
    "\\Flagged",
    // RFC 8457; Gmail's Important view.
    "\\Important",
    "\\Junk",
    "\\Sent",
    "\\Trash",
];

fn has_attr(attrs: &[String], a: &str) -> bool {
    attrs.iter().any(|x| x.eq_ignore_ascii_case(a))
}

/// Search criteria a user gave (`--search`, as imapsync takes them: `SENTSINCE 1-Jan-2024`),
/// checked to be one line of printable ASCII without literals, so they can only ever be the
/// criteria of the one command they are sent in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchKey(String);

impl SearchKey {
    pub fn all() -> SearchKey {
        SearchKey("ALL".into())
    }

    pub fn parse(s: &str) -> Result<SearchKey> {
        let t = s.trim();
        if t.is_empty() || !t.bytes().all(|b| (0x20..0x7f).contains(&b)) || t.contains('{') {
            bail!(
                "--search {s:?}: give IMAP SEARCH criteria on one line of printable ASCII \
                 without literals, e.g. 'SENTSINCE 1-Jan-2024'"
            );
        }
        Ok(SearchKey(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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

    /// A server that accepts and then says nothing fails at the greeting deadline, not a hang.
    #[test]
    fn a_silent_server_fails_at_the_greeting_deadline_as_not_imap() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let hold = std::thread::spawn(move || {
            let s = l.accept();
            // Keep the socket open (and silent) until the client gave up.
            let _ = done_rx.recv_timeout(Duration::from_secs(10));
            drop(s);
        });
        let ep = super::super::conn::test_endpoint(port, Duration::from_secs(1));
        let t = Instant::now();
        let e = Client::connect(&ep).err().unwrap();
        done_tx.send(()).unwrap();
        assert!(t.elapsed() < Duration::from_secs(3));
        assert!(
            format!("{e:#}").contains("no IMAP greeting within 1 s"),
            "{e:#}"
        );
        // Nothing greets: not an IMAP server there, which retrying does not change.
        assert_eq!(
            super::super::connect_problem(&e),
            Some(super::super::ConnectProblem::NotImap)
        );
        assert!(!super::super::is_transient(&e));
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
