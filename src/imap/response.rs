//! Server responses: framing (one complete response at a time, literals included) and parsing
//! into the few shapes the client cares about.
//!
//! Parsing goes through `imap-proto` first. A few things it cannot do well are parsed by hand
//! with the small tokenizer at the bottom:
//! - LIST/LSUB: imap-proto requires UTF-8 names, returns quoted names still escaped and rejects
//!   LIST-EXTENDED extended items, so these are always parsed here;
//! - NAMESPACE: not supported by imap-proto;
//! - status responses (tagged, `* OK`, `+`) whose text it rejects (8-bit text, odd codes);
//! - FETCH responses it rejects (and `INTERNALDATE NIL`, on which it would panic);
//! - responses nested deeper than `MAX_DEPTH` (imap-proto recurses once per level: a server's
//!   `((((…` would overflow the stack), which the hand parser refuses.
//!
//! A response with more than `MAX_TEXT` bytes of protocol text (literal contents aside) is
//! refused before any parser sees it, but for lists of numbers (SEARCH, ESEARCH, VANISHED):
//! parsing makes tens of bytes of each token. `src/imap/fuzz.rs` fuzzes all of this.

use std::borrow::Cow;
use std::io::{self, BufRead, Read};

use imap_proto::types as ip;

use crate::mailtime::InternalDate;

/// Most bytes one response may hold, lines and literals together, unless the command in flight
/// expects more (a message body: see `Client::expect_bodies`). Bounds what a server can make one
/// connection hold: a response is read whole before it is parsed.
pub const DEFAULT_RESPONSE_LIMIT: u64 = 64 << 20;
/// Nesting limit for parenthesized lists in the hand parser.
const MAX_DEPTH: usize = 64;

// ---------------------------------------------------------------------------------------------
// Framing

/// Read one complete response into `buf` (cleared first): a CRLF-terminated line, plus, when a
/// line ends in `{N}` or `{N+}`, exactly N literal bytes and the continuation of the line, and
/// so on. Returns `Ok(false)` on a clean EOF before any byte.
///
/// A response of more than `limit` bytes in all (however it is split into lines and literals)
/// is refused with `InvalidData` as soon as it announces or reaches that size, so memory stays
/// within `limit` whatever the server sends.
/// `meter`, when given, hears of literal bytes as they arrive (in pieces of at most
/// [`LITERAL_PIECE`]), so a progress display moves during one large message.
pub fn read_response<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    limit: u64,
    meter: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> io::Result<bool> {
    buf.clear();
    let too_big = |what: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what}: more than the {limit} bytes a response may hold here; refusing it"),
        )
    };
    loop {
        let line_start = buf.len();
        let room = usize::try_from(limit.saturating_sub(buf.len() as u64)).unwrap_or(usize::MAX);
        let got_newline = read_line(r, buf, room).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => too_big("the server sent a line".into()),
            _ => e,
        })?;
        if !got_newline {
            if buf.is_empty() {
                return Ok(false);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in the middle of a response",
            ));
        }
        let Some(n) = literal_len(&buf[line_start..]) else {
            return Ok(true);
        };
        if (buf.len() as u64).saturating_add(n) > limit {
            return Err(too_big(format!(
                "the server announced a literal of {n} bytes"
            )));
        }
        // Exactly what was announced, within the limit: no doubling past it while reading.
        buf.reserve_exact(usize::try_from(n).unwrap_or(0));
        read_literal(r, buf, n, meter)?;
    }
}

/// Most literal bytes read before the meter hears of them: a few refreshes per second even on
/// a slow link.
pub const LITERAL_PIECE: u64 = 16 << 10;

/// Append exactly `n` literal bytes to `buf`, telling `meter` of each piece.
fn read_literal<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    n: u64,
    meter: Option<&(dyn Fn(u64) + Send + Sync)>,
) -> io::Result<()> {
    let mut got = 0u64;
    while got < n {
        let step = (n - got).min(LITERAL_PIECE);
        let before = buf.len();
        let read = r.take(step).read_to_end(buf)?;
        if (read as u64) != step || buf.len() - before != read {
            let got = got + read as u64;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed inside a {n}-byte literal after {got} bytes"),
            ));
        }
        got += step;
        if let Some(m) = meter {
            m(step);
        }
    }
    Ok(())
}

/// Append bytes up to and including the next LF. Returns false on EOF before the LF; fails with
/// `InvalidData` when more than `max` bytes come without one.
fn read_line<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<bool> {
    let start = buf.len();
    loop {
        let avail = match r.fill_buf() {
            Ok(a) => a,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(false);
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(p) => (p + 1, true),
            None => (avail.len(), false),
        };
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if buf.len() - start > max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a line longer than {max} bytes"),
            ));
        }
        if done {
            return Ok(true);
        }
    }
}

/// If `line` (ending in LF) ends with `{N}` or `{N+}`, return N.
fn literal_len(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_suffix(b"}")?;
    let open = line.iter().rposition(|&b| b == b'{')?;
    let inner = &line[open + 1..];
    let digits = inner.strip_suffix(b"+").unwrap_or(inner);
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Types

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
    /// Gmail's message id (`X-GM-MSGID`), the same in every label view.
    pub gm_msgid: Option<u64>,
    /// Gmail's thread id (`X-GM-THRID`).
    pub gm_thrid: Option<u64>,
}

impl Fetched {
    /// Add the items of `later`, another response for the same message (a server may split
    /// one message's items over several); an item sent again replaces the earlier one.
    pub fn merge(&mut self, later: Fetched) {
        fn take<T>(into: &mut Option<T>, from: Option<T>) {
            if from.is_some() {
                *into = from;
            }
        }
        take(&mut self.flags, later.flags);
        take(&mut self.internaldate, later.internaldate);
        take(&mut self.size, later.size);
        take(&mut self.modseq, later.modseq);
        take(&mut self.body, later.body);
        take(&mut self.origin, later.origin);
        take(&mut self.gm_msgid, later.gm_msgid);
        take(&mut self.gm_thrid, later.gm_thrid);
    }
}

/// Completion status of a command or an untagged status response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    No,
    Bad,
    /// Only in a greeting.
    PreAuth,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
            Status::PreAuth => "PREAUTH",
        })
    }
}

/// The response codes we use (`[...]` after the status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Code {
    /// Upper-cased capability names.
    Capability(Vec<String>),
    /// `uid` is None when the server sent a set (MULTIAPPEND).
    AppendUid {
        uidvalidity: u32,
        uid: Option<u32>,
    },
    UidValidity(u32),
    UidNext(u32),
    HighestModSeq(u64),
    NoModSeq,
    PermanentFlags(Vec<String>),
    /// Any other code, as sent (e.g. `READ-WRITE`, `ALERT`, `TRYCREATE`).
    Other(String),
}

/// One LIST or LSUB entry, name still raw (modified UTF-7, unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListEntry {
    pub lsub: bool,
    pub attributes: Vec<String>,
    pub separator: Option<char>,
    pub name: Vec<u8>,
}

/// The items of a STATUS response that imapferry asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxStatus {
    pub messages: Option<u32>,
    pub uidnext: Option<u32>,
    pub uidvalidity: Option<u32>,
    pub highestmodseq: Option<u64>,
}

/// One NAMESPACE entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NsEntry {
    pub prefix: String,
    pub separator: Option<char>,
}

/// Untagged data we care about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untagged {
    /// `* OK|NO|BAD|PREAUTH [code] text`
    Status {
        status: Status,
        code: Option<Code>,
        text: String,
    },
    Capability(Vec<String>),
    Exists(u32),
    /// `uid` is None when the response carried no UID (e.g. an unsolicited flag change).
    Fetch {
        seq: u32,
        uid: Option<u32>,
        item: Fetched,
    },
    List(ListEntry),
    Search(Vec<u32>),
    /// Personal namespaces (first of the three NAMESPACE lists).
    Namespace(Vec<NsEntry>),
    /// `* STATUS name (...)`, from STATUS or LIST-STATUS; name raw (modified UTF-7).
    MailboxStatus {
        name: Vec<u8>,
        status: MailboxStatus,
    },
    /// Understood, but nothing we use (EXPUNGE, RECENT, FLAGS, ID, ...).
    Other,
}

/// One server response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// An untagged response of a kind that carries mailbox state (see [`carries_state`]) that
    /// could not be parsed, with the reason: the command it belongs to must fail.
    Unreadable(String),
    Tagged {
        tag: String,
        status: Status,
        code: Option<Code>,
        text: String,
    },
    /// `+ text`
    Continuation(String),
    /// `* BYE text`
    Bye(String),
    Untagged(Untagged),
}

// ---------------------------------------------------------------------------------------------
// Parsing

/// Where a literal message body sits in the framed response, so it can be taken out of the
/// buffer instead of copied (a 1 GiB body must not cost 2 GiB).
type BodySpan = Option<(usize, usize)>;

/// Parse one complete response as framed by [`read_response`], moving a FETCH's literal body
/// out of `buf` (which is left empty then) instead of copying it. `Err` carries a reason.
pub fn parse_owned(buf: &mut Vec<u8>) -> Result<Response, String> {
    let mut span = None;
    let mut r = parse_inner(buf, &mut span)?;
    if let (Some((start, len)), Response::Untagged(Untagged::Fetch { item, .. })) = (span, &mut r) {
        let mut body = std::mem::take(buf);
        body.truncate(start + len);
        body.drain(..start);
        item.body = Some(body);
    }
    Ok(r)
}

/// [`parse_owned`] of a borrowed buffer (the body copied).
pub fn parse(buf: &[u8]) -> Result<Response, String> {
    let mut span = None;
    let mut r = parse_inner(buf, &mut span)?;
    if let (Some((start, len)), Response::Untagged(Untagged::Fetch { item, .. })) = (span, &mut r) {
        item.body = Some(buf[start..start + len].to_vec());
    }
    Ok(r)
}

fn parse_inner(buf: &[u8], span: &mut BodySpan) -> Result<Response, String> {
    if let Some(why) = too_much_text(buf) {
        return Err(why);
    }
    if buf.starts_with(b"+") {
        return Ok(continuation(buf));
    }
    if let Some(rest) = buf.strip_prefix(b"* ") {
        let kw = first_word_upper(rest);
        match kw.as_str() {
            "LIST" | "LSUB" => return parse_list(rest, kw == "LSUB"),
            "NAMESPACE" => return parse_namespace(rest),
            "BYE" => return Ok(Response::Bye(lossy_line(&rest[3..]).trim().to_string())),
            _ => {}
        }
        // imap-proto panics on `INTERNALDATE NIL`, and recurses once per nesting level (a
        // server's `(((…` would overflow the stack): go straight to the hand parser, which
        // refuses lists nested deeper than MAX_DEPTH.
        if !outside_literals_contains_ci(buf, b"INTERNALDATE NIL") && nesting(buf) <= MAX_DEPTH {
            if let Some(r) = via_imap_proto(buf, span) {
                return Ok(r);
            }
        }
        *span = None;
        return hand_untagged(buf, rest, span);
    }
    if nesting(buf) <= MAX_DEPTH {
        if let Some(r) = via_imap_proto(buf, span) {
            return Ok(r);
        }
    }
    hand_tagged(buf)
}

/// How deep parentheses and brackets nest in the protocol text of a framed response (quoted
/// strings and literal contents skipped): what a recursive parser would recurse.
fn nesting(buf: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for line in protocol_lines(buf) {
        // A quoted string ends with its line.
        let mut quoted = false;
        let mut i = 0;
        while i < line.len() {
            match (quoted, line[i]) {
                (true, b'\\') => i += 1,
                (_, b'"') => quoted = !quoted,
                (false, b'(' | b'[') => {
                    depth += 1;
                    deepest = deepest.max(depth);
                }
                (false, b')' | b']') => depth = depth.saturating_sub(1),
                _ => {}
            }
            i += 1;
        }
    }
    deepest
}

/// The lines of a framed response, literal contents left out (a message body may say
/// anything, and scanning 50 MB of it for protocol is waste).
fn protocol_lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        if pos >= buf.len() {
            return None;
        }
        let end = buf[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |p| pos + p + 1);
        let line = &buf[pos..end];
        let skip = literal_len(line)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        pos = end.saturating_add(skip);
        Some(line)
    })
}

/// Most bytes of protocol text (literal contents left out) one response may hold, but lists
/// of numbers (SEARCH, ESEARCH, VANISHED): a parser makes tens of bytes of each token, so a few megabytes of
/// `(a a a …` could cost gigabytes. No FETCH, LIST or status line comes near it.
const MAX_TEXT: usize = 1 << 20;

/// Why the protocol text of `buf` is too long to parse, if it is.
fn too_much_text(buf: &[u8]) -> Option<String> {
    let text: usize = protocol_lines(buf).map(<[u8]>::len).sum();
    if text <= MAX_TEXT {
        return None;
    }
    let kw = buf.strip_prefix(b"* ").map(first_word_upper);
    if matches!(kw.as_deref(), Some("SEARCH" | "ESEARCH" | "VANISHED")) {
        return None;
    }
    Some(format!(
        "a response of {text} bytes of protocol text (at most {MAX_TEXT} are read): {:?}",
        head(buf)
    ))
}

fn continuation(buf: &[u8]) -> Response {
    let rest = &buf[1..];
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    Response::Continuation(lossy_line(rest))
}

fn via_imap_proto(buf: &[u8], span: &mut BodySpan) -> Option<Response> {
    // imap-proto is not supposed to panic, but it is server input: never let it take us down.
    let parsed = std::panic::catch_unwind(|| imap_proto::parser::parse_response(buf)).ok()?;
    let (rest, resp) = parsed.ok()?;
    if !rest.is_empty() {
        return None;
    }
    convert(buf, resp, span)
}

/// The body bytes `data` (inside `buf` when a literal, else unescaped): a span for a literal,
/// owned bytes for a quoted string.
fn body_of(buf: &[u8], data: &[u8], item: &mut Fetched, span: &mut BodySpan) {
    match exact(buf, data) {
        Cow::Borrowed(d) => {
            *span = Some((d.as_ptr() as usize - buf.as_ptr() as usize, d.len()));
            item.body = None;
        }
        Cow::Owned(d) => {
            *span = None;
            item.body = Some(d);
        }
    }
}

// One match over imap-proto's response kinds, each mapped to ours: splitting it would scatter
// the mapping without making any arm simpler.
fn convert(buf: &[u8], resp: ip::Response<'_>, span: &mut BodySpan) -> Option<Response> {
    Some(match resp {
        ip::Response::Done {
            tag,
            status,
            code,
            information,
        } => {
            let (code, text) = conv_code_text(code, information);
            Response::Tagged {
                tag: tag.0,
                status: conv_status(status)?,
                code,
                text,
            }
        }
        ip::Response::Data {
            status: ip::Status::Bye,
            information,
            ..
        } => Response::Bye(information.map(|s| s.into_owned()).unwrap_or_default()),
        ip::Response::Data {
            status,
            code,
            information,
        } => {
            let (code, text) = conv_code_text(code, information);
            Response::Untagged(Untagged::Status {
                status: conv_status(status)?,
                code,
                text,
            })
        }
        ip::Response::Continue { information, .. } => {
            Response::Continuation(information.map(|s| s.into_owned()).unwrap_or_default())
        }
        ip::Response::Capabilities(caps) => {
            Response::Untagged(Untagged::Capability(conv_caps(&caps)))
        }
        ip::Response::MailboxData(ip::MailboxDatum::Exists(n)) => {
            Response::Untagged(Untagged::Exists(n))
        }
        ip::Response::MailboxData(ip::MailboxDatum::Search(v)) => {
            Response::Untagged(Untagged::Search(v))
        }
        ip::Response::MailboxData(ip::MailboxDatum::Status { mailbox, status }) => {
            let mut st = MailboxStatus::default();
            for a in status {
                match a {
                    ip::StatusAttribute::Messages(n) => st.messages = Some(n),
                    ip::StatusAttribute::UidNext(n) => st.uidnext = Some(n),
                    ip::StatusAttribute::UidValidity(n) => st.uidvalidity = Some(n),
                    ip::StatusAttribute::HighestModSeq(n) => st.highestmodseq = Some(n),
                    _ => {}
                }
            }
            let name = exact(buf, mailbox.as_bytes()).into_owned();
            Response::Untagged(Untagged::MailboxStatus { name, status: st })
        }
        ip::Response::Fetch(seq, attrs) => {
            let mut item = Fetched::default();
            let mut uid = None;
            for a in attrs {
                match a {
                    ip::AttributeValue::Uid(u) => uid = Some(u),
                    ip::AttributeValue::Flags(f) => {
                        item.flags = Some(f.into_iter().map(Cow::into_owned).collect())
                    }
                    ip::AttributeValue::InternalDate(d) => {
                        item.internaldate = Some(internaldate(&exact(buf, d.as_bytes())))
                    }
                    ip::AttributeValue::Rfc822Size(n) => item.size = Some(u64::from(n)),
                    ip::AttributeValue::ModSeq(m) => item.modseq = Some(m),
                    ip::AttributeValue::GmailMsgId(m) => item.gm_msgid = Some(m),
                    ip::AttributeValue::GmailThrId(t) => item.gm_thrid = Some(t),
                    ip::AttributeValue::BodySection { data, index, .. } => {
                        item.origin = index.map(u64::from);
                        if let Some(d) = data {
                            body_of(buf, &d, &mut item, span);
                        }
                    }
                    ip::AttributeValue::Rfc822(data) | ip::AttributeValue::Rfc822Header(data) => {
                        if let Some(d) = data {
                            body_of(buf, &d, &mut item, span);
                        }
                    }
                    _ => {}
                }
            }
            item.uid = uid.unwrap_or(0);
            Response::Untagged(Untagged::Fetch { seq, uid, item })
        }
        _ => Response::Untagged(Untagged::Other),
    })
}

/// The exact bytes of a string imap-proto returned: literal data is used as is, quoted data
/// (imap-proto leaves escapes in place) is unescaped. We tell them apart by the byte before the
/// data in our buffer: `"` for a quoted string, LF for a literal.
fn exact<'a>(buf: &[u8], data: &'a [u8]) -> Cow<'a, [u8]> {
    let start = buf.as_ptr() as usize;
    let p = data.as_ptr() as usize;
    if p > start && p <= start + buf.len() && buf.get(p - start - 1) == Some(&b'"') {
        Cow::Owned(unescape(data))
    } else {
        Cow::Borrowed(data)
    }
}

fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut it = s.iter();
    while let Some(&b) = it.next() {
        if b == b'\\' {
            if let Some(&n) = it.next() {
                out.push(n);
            }
        } else {
            out.push(b);
        }
    }
    out
}

fn conv_status(s: ip::Status) -> Option<Status> {
    Some(match s {
        ip::Status::Ok => Status::Ok,
        ip::Status::No => Status::No,
        ip::Status::Bad => Status::Bad,
        ip::Status::PreAuth => Status::PreAuth,
        ip::Status::Bye => return None,
    })
}

fn conv_caps(caps: &[ip::Capability<'_>]) -> Vec<String> {
    caps.iter()
        .map(|c| match c {
            ip::Capability::Imap4rev1 => "IMAP4REV1".to_string(),
            ip::Capability::Auth(a) => format!("AUTH={}", a.to_ascii_uppercase()),
            ip::Capability::Atom(a) => a.to_ascii_uppercase(),
        })
        .collect()
}

fn conv_code_text(
    code: Option<ip::ResponseCode<'_>>,
    info: Option<Cow<'_, str>>,
) -> (Option<Code>, String) {
    let text = info.map(|s| s.into_owned()).unwrap_or_default();
    let code = match code {
        None => {
            // imap-proto leaves codes it does not know (NOMODSEQ, CLOSED, ...) in the text.
            if text.starts_with('[') {
                let (c, t) = split_code_text(text.as_bytes());
                return (c, t);
            }
            return (None, text);
        }
        Some(c) => c,
    };
    let code = match code {
        ip::ResponseCode::Capabilities(c) => Code::Capability(conv_caps(&c)),
        ip::ResponseCode::AppendUid(v, set) => Code::AppendUid {
            uidvalidity: v,
            uid: match set.as_slice() {
                [ip::UidSetMember::Uid(u)] => Some(*u),
                _ => None,
            },
        },
        ip::ResponseCode::UidValidity(v) => Code::UidValidity(v),
        ip::ResponseCode::UidNext(v) => Code::UidNext(v),
        ip::ResponseCode::HighestModSeq(v) => Code::HighestModSeq(v),
        ip::ResponseCode::PermanentFlags(f) => {
            Code::PermanentFlags(f.into_iter().map(Cow::into_owned).collect())
        }
        ip::ResponseCode::ReadOnly => Code::Other("READ-ONLY".into()),
        ip::ResponseCode::ReadWrite => Code::Other("READ-WRITE".into()),
        ip::ResponseCode::TryCreate => Code::Other("TRYCREATE".into()),
        ip::ResponseCode::Alert => Code::Other("ALERT".into()),
        other => Code::Other(format!("{other:?}")),
    };
    (Some(code), text)
}

// ---------------------------------------------------------------------------------------------
// Hand parsers

/// `tag SP (OK|NO|BAD) [SP [code] text]` when imap-proto could not parse a tagged line.
fn hand_tagged(buf: &[u8]) -> Result<Response, String> {
    let line = trim_crlf(buf);
    let sp = line
        .iter()
        .position(|&b| b == b' ')
        .ok_or_else(|| format!("unparseable response {:?}", head(buf)))?;
    let tag = String::from_utf8_lossy(&line[..sp]).into_owned();
    let rest = &line[sp + 1..];
    let (status, rest) =
        status_word(rest).ok_or_else(|| format!("unparseable tagged response {:?}", head(buf)))?;
    if status == Status::PreAuth {
        return Err(format!("unparseable tagged response {:?}", head(buf)));
    }
    let (code, text) = split_code_text(rest);
    Ok(Response::Tagged {
        tag,
        status,
        code,
        text,
    })
}

/// Untagged status or FETCH that imap-proto rejected; everything else is unparseable. `rest`
/// is `buf` after `* `.
fn hand_untagged(buf: &[u8], rest: &[u8], span: &mut BodySpan) -> Result<Response, String> {
    let line = trim_crlf(rest);
    if let Some((status, after)) = status_word(line) {
        let (code, text) = split_code_text(after);
        return Ok(Response::Untagged(Untagged::Status { status, code, text }));
    }
    let mut lx = Lexer::new(rest);
    if let Some(Tok::Atom(n)) = lx.next()? {
        if let Some(seq) = atoi::<u32>(n) {
            if let Some(Tok::Atom(kw)) = lx.next()? {
                if kw.eq_ignore_ascii_case(b"FETCH") {
                    if let Some(Tok::List(items)) = lx.next()? {
                        // Nothing may follow the item list: a FETCH with trailing bytes is
                        // not one this parser understood.
                        if lx.next()?.is_some() {
                            return Err(format!("bytes after a FETCH's items: {:?}", head(rest)));
                        }
                        return Ok(Response::Untagged(fetch_from_toks(buf, seq, items, span)?));
                    }
                }
            }
        }
    }
    Err(format!("unparseable untagged response {:?}", head(rest)))
}

fn fetch_from_toks(
    buf: &[u8],
    seq: u32,
    items: Vec<Tok<'_>>,
    span: &mut BodySpan,
) -> Result<Untagged, String> {
    let mut item = Fetched::default();
    let mut uid = None;
    let mut it = items.into_iter();
    while let Some(name) = it.next() {
        let Tok::Atom(name) = name else {
            return Err("FETCH item name is not an atom".into());
        };
        let value = it.next().ok_or("FETCH item without value")?;
        let name = name.to_ascii_uppercase();
        match (name.as_slice(), value) {
            (b"UID", Tok::Atom(v)) => uid = Some(atoi(v).ok_or("bad UID")?),
            (b"RFC822.SIZE", Tok::Atom(v)) => item.size = Some(atoi(v).ok_or("bad RFC822.SIZE")?),
            (b"FLAGS", Tok::List(fl)) => item.flags = Some(fl.iter().map(Tok::lossy).collect()),
            (b"INTERNALDATE", Tok::Str(s)) => item.internaldate = Some(internaldate(&s)),
            (b"INTERNALDATE", other) => {
                item.internaldate = Some(Err(other.lossy()));
            }
            (b"X-GM-MSGID", Tok::Atom(v)) => item.gm_msgid = Some(atoi(v).ok_or("bad X-GM-MSGID")?),
            (b"X-GM-THRID", Tok::Atom(v)) => item.gm_thrid = Some(atoi(v).ok_or("bad X-GM-THRID")?),
            (b"MODSEQ", Tok::List(l)) => {
                if let Some(Tok::Atom(v)) = l.first() {
                    item.modseq = Some(atoi(v).ok_or("bad MODSEQ")?);
                }
            }
            (n, Tok::Str(s))
                if n == b"RFC822" || n == b"RFC822.HEADER" || n.starts_with(b"BODY[") =>
            {
                item.origin = origin_of(n);
                match s {
                    Cow::Borrowed(d) if within(buf, d) => {
                        *span = Some((d.as_ptr() as usize - buf.as_ptr() as usize, d.len()));
                        item.body = None;
                    }
                    s => {
                        *span = None;
                        item.body = Some(s.into_owned());
                    }
                }
            }
            _ => {}
        }
    }
    item.uid = uid.unwrap_or(0);
    Ok(Untagged::Fetch { seq, uid, item })
}

/// `LIST (attrs) sep name [extended items]` (or LSUB); `rest` starts at the keyword.
fn parse_list(rest: &[u8], lsub: bool) -> Result<Response, String> {
    let mut lx = Lexer::new(rest);
    lx.next()?; // keyword
    let bad = || format!("unparseable LIST response {:?}", head(rest));
    let Some(Tok::List(attrs)) = lx.next()? else {
        return Err(bad());
    };
    let separator = match lx.next()? {
        Some(Tok::Nil) => None,
        Some(Tok::Str(s)) => String::from_utf8_lossy(&s).chars().next(),
        _ => return Err(bad()),
    };
    let name = match lx.next()? {
        Some(Tok::Atom(a)) => a.to_vec(),
        Some(Tok::Str(s)) => s.into_owned(),
        _ => return Err(bad()),
    };
    Ok(Response::Untagged(Untagged::List(ListEntry {
        lsub,
        attributes: attrs.iter().map(Tok::lossy).collect(),
        separator,
        name,
    })))
}

/// `NAMESPACE personal other shared`; we keep the personal list.
fn parse_namespace(rest: &[u8]) -> Result<Response, String> {
    let mut lx = Lexer::new(rest);
    lx.next()?; // keyword
    let mut out = Vec::new();
    match lx.next()? {
        Some(Tok::Nil) => {}
        Some(Tok::List(entries)) => {
            for e in entries {
                let Tok::List(parts) = e else {
                    return Err(format!("unparseable NAMESPACE {:?}", head(rest)));
                };
                let mut p = parts.into_iter();
                let prefix = match p.next() {
                    Some(t @ (Tok::Str(_) | Tok::Atom(_))) => t.lossy(),
                    _ => return Err(format!("unparseable NAMESPACE {:?}", head(rest))),
                };
                let separator = match p.next() {
                    Some(Tok::Str(s)) => String::from_utf8_lossy(&s).chars().next(),
                    _ => None,
                };
                out.push(NsEntry { prefix, separator });
            }
        }
        _ => return Err(format!("unparseable NAMESPACE {:?}", head(rest))),
    }
    Ok(Response::Untagged(Untagged::Namespace(out)))
}

/// `OK`/`NO`/`BAD`/`PREAUTH` at the start of `s`, followed by SP or the end; returns the rest.
fn status_word(s: &[u8]) -> Option<(Status, &[u8])> {
    let end = s.iter().position(|&b| b == b' ').unwrap_or(s.len());
    let status = match s[..end].to_ascii_uppercase().as_slice() {
        b"OK" => Status::Ok,
        b"NO" => Status::No,
        b"BAD" => Status::Bad,
        b"PREAUTH" => Status::PreAuth,
        _ => return None,
    };
    Some((status, s.get(end + 1..).unwrap_or(b"")))
}

/// Split `[code] text` (code optional) and parse the code.
fn split_code_text(s: &[u8]) -> (Option<Code>, String) {
    let s = trim_crlf(s);
    if s.first() == Some(&b'[') {
        if let Some(close) = s.iter().position(|&b| b == b']') {
            let code = parse_code(&s[1..close]);
            let text = s.get(close + 1..).unwrap_or(b"");
            let text = text.strip_prefix(b" ").unwrap_or(text);
            return (Some(code), String::from_utf8_lossy(text).into_owned());
        }
    }
    (None, String::from_utf8_lossy(s).into_owned())
}

fn parse_code(inner: &[u8]) -> Code {
    let s = String::from_utf8_lossy(inner);
    let mut words = s.split_ascii_whitespace();
    let kw = words.next().unwrap_or("").to_ascii_uppercase();
    let num = |w: Option<&str>| w.and_then(|w| w.parse::<u64>().ok());
    let other = || Code::Other(s.to_string());
    match kw.as_str() {
        "CAPABILITY" => Code::Capability(words.map(|w| w.to_ascii_uppercase()).collect()),
        "APPENDUID" => match (num(words.next()), words.next()) {
            (Some(v), Some(set)) if v <= u64::from(u32::MAX) => Code::AppendUid {
                uidvalidity: v as u32,
                uid: set.parse().ok(),
            },
            _ => other(),
        },
        "UIDVALIDITY" => num(words.next())
            .and_then(|v| u32::try_from(v).ok())
            .map_or_else(other, Code::UidValidity),
        "UIDNEXT" => num(words.next())
            .and_then(|v| u32::try_from(v).ok())
            .map_or_else(other, Code::UidNext),
        "HIGHESTMODSEQ" => num(words.next()).map_or_else(other, Code::HighestModSeq),
        "NOMODSEQ" => Code::NoModSeq,
        "PERMANENTFLAGS" => Code::PermanentFlags(
            words
                .map(|w| w.trim_matches(|c| c == '(' || c == ')').to_string())
                .filter(|w| !w.is_empty())
                .collect(),
        ),
        _ => other(),
    }
}

// ---------------------------------------------------------------------------------------------
// Tokenizer for the hand parsers

/// One token of a response line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'a> {
    /// Atom or number, including bracketed parts like `BODY[HEADER.FIELDS (A B)]<0>`.
    Atom(&'a [u8]),
    /// Quoted string (unescaped) or literal (exact).
    Str(Cow<'a, [u8]>),
    Nil,
    List(Vec<Tok<'a>>),
}

impl Tok<'_> {
    fn lossy(&self) -> String {
        match self {
            Tok::Atom(a) => String::from_utf8_lossy(a).into_owned(),
            Tok::Str(s) => String::from_utf8_lossy(s).into_owned(),
            Tok::Nil => "NIL".into(),
            Tok::List(_) => "(...)".into(),
        }
    }
}

struct Lexer<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn new(b: &'a [u8]) -> Self {
        Lexer { b, pos: 0 }
    }

    /// Next token, or None at the end of the line.
    fn next(&mut self) -> Result<Option<Tok<'a>>, String> {
        self.tok(0)
    }

    // One match over what can start a token: the grammar reads best in one place.
    fn tok(&mut self, depth: usize) -> Result<Option<Tok<'a>>, String> {
        while self.b.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
        let Some(&c) = self.b.get(self.pos) else {
            return Ok(None);
        };
        match c {
            b'\r' | b'\n' | b')' => Ok(None),
            b'(' => {
                if depth >= MAX_DEPTH {
                    return Err("lists nested too deeply".into());
                }
                self.pos += 1;
                let mut items = Vec::new();
                while let Some(t) = self.tok(depth + 1)? {
                    items.push(t);
                }
                if self.b.get(self.pos) != Some(&b')') {
                    return Err("unterminated list".into());
                }
                self.pos += 1;
                Ok(Some(Tok::List(items)))
            }
            b'"' => {
                self.pos += 1;
                let mut out = Vec::new();
                loop {
                    match self.b.get(self.pos) {
                        None | Some(b'\r') | Some(b'\n') => {
                            return Err("unterminated quoted string".into())
                        }
                        Some(b'"') => break,
                        Some(b'\\') => {
                            let n = *self.b.get(self.pos + 1).ok_or("bad escape")?;
                            out.push(n);
                            self.pos += 2;
                        }
                        Some(&x) => {
                            out.push(x);
                            self.pos += 1;
                        }
                    }
                }
                self.pos += 1;
                Ok(Some(Tok::Str(Cow::Owned(out))))
            }
            b'{' => {
                let close = self.b[self.pos..]
                    .iter()
                    .position(|&b| b == b'}')
                    .ok_or("bad literal")?
                    + self.pos;
                let inner = &self.b[self.pos + 1..close];
                let digits = inner.strip_suffix(b"+").unwrap_or(inner);
                let n: usize = atoi(digits).ok_or("bad literal length")?;
                let mut start = close + 1;
                if self.b.get(start) == Some(&b'\r') {
                    start += 1;
                }
                if self.b.get(start) != Some(&b'\n') {
                    return Err("literal not followed by CRLF".into());
                }
                start += 1;
                let end = start.checked_add(n).ok_or("bad literal length")?;
                let data = self.b.get(start..end).ok_or("truncated literal")?;
                self.pos = end;
                Ok(Some(Tok::Str(Cow::Borrowed(data))))
            }
            _ => {
                let start = self.pos;
                while let Some(&x) = self.b.get(self.pos) {
                    match x {
                        b' ' | b'(' | b')' | b'\r' | b'\n' | b'"' | b'{' => break,
                        b'[' => {
                            // Bracketed section: may contain spaces and parentheses.
                            let close = self.b[self.pos..]
                                .iter()
                                .position(|&b| b == b']')
                                .ok_or("unterminated '['")?;
                            self.pos += close + 1;
                        }
                        _ => self.pos += 1,
                    }
                }
                let a = &self.b[start..self.pos];
                if a.eq_ignore_ascii_case(b"NIL") {
                    Ok(Some(Tok::Nil))
                } else {
                    Ok(Some(Tok::Atom(a)))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/// The `N` of a section name ending in `<N>` (`BODY[]<1048576>`).
fn origin_of(name: &[u8]) -> Option<u64> {
    let inner = name.strip_suffix(b">")?;
    let open = inner.iter().rposition(|&b| b == b'<')?;
    atoi(&inner[open + 1..])
}

/// Whether `part` lies inside `buf`.
fn within(buf: &[u8], part: &[u8]) -> bool {
    let (b, p) = (buf.as_ptr() as usize, part.as_ptr() as usize);
    p >= b && p + part.len() <= b + buf.len()
}

/// An INTERNALDATE value parsed, or what was sent instead (printable, for the report).
fn internaldate(b: &[u8]) -> Result<InternalDate, String> {
    InternalDate::parse_bytes(b).ok_or_else(|| {
        let shown: String = String::from_utf8_lossy(&b[..b.len().min(80)]).into_owned();
        format!("{:?}", crate::text::printable(&shown))
    })
}

fn atoi<T: std::str::FromStr>(b: &[u8]) -> Option<T> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(b).ok()?.parse().ok()
}

fn trim_crlf(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

fn lossy_line(b: &[u8]) -> String {
    String::from_utf8_lossy(trim_crlf(b)).into_owned()
}

fn first_word_upper(b: &[u8]) -> String {
    let end = b
        .iter()
        .position(|&c| c == b' ' || c == b'\r' || c == b'\n')
        .unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).to_ascii_uppercase()
}

/// Case-insensitive search in the protocol text of a framed response ([`protocol_lines`]).
fn outside_literals_contains_ci(buf: &[u8], needle: &[u8]) -> bool {
    protocol_lines(buf).any(|line| {
        line.windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
    })
}

/// Whether an untagged response is of a kind whose content decides what a command concludes
/// (`* 3 FETCH`, `* SEARCH`, `* LIST`, `* STATUS`, `* 4 EXISTS`, ...): one of those that cannot
/// be parsed must fail its command instead of being skipped.
pub fn carries_state(buf: &[u8]) -> bool {
    let Some(rest) = buf.strip_prefix(b"* ") else {
        return false;
    };
    let mut words = rest
        .split(|&b| b == b' ' || b == b'\r' || b == b'\n')
        .filter(|w| !w.is_empty());
    let first = words.next().unwrap_or_default();
    let kw = if first.iter().all(u8::is_ascii_digit) {
        words.next().unwrap_or_default()
    } else {
        first
    };
    const STATE: &[&[u8]] = &[
        b"FETCH",
        b"SEARCH",
        b"ESEARCH",
        b"LIST",
        b"LSUB",
        b"STATUS",
        b"EXISTS",
        b"EXPUNGE",
        b"VANISHED",
        b"NAMESPACE",
    ];
    STATE.iter().any(|k| k.eq_ignore_ascii_case(kw))
}

/// The first line of a response, shortened, for logs and errors (never literal contents).
pub fn head(buf: &[u8]) -> String {
    let end = buf
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(buf.len())
        .min(200);
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufReader;

    /// A reader that hands out one byte per read call, to exercise every split point.
    struct OneByte<'a>(&'a [u8]);

    impl Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() || buf.is_empty() {
                return Ok(0);
            }
            buf[0] = self.0[0];
            self.0 = &self.0[1..];
            Ok(1)
        }
    }

    fn frames(input: &[u8]) -> Vec<Vec<u8>> {
        let mut r = BufReader::with_capacity(1, OneByte(input));
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while read_response(&mut r, &mut buf, DEFAULT_RESPONSE_LIMIT, None).unwrap() {
            out.push(buf.clone());
        }
        out
    }

    /// Nasty bodies: CRLF, bare LF, 8-bit, binary without NUL, and protocol look-alikes.
    fn bodies() -> Vec<Vec<u8>> {
        let mut binary: Vec<u8> = (1u8..=255).collect();
        binary.extend_from_slice(b"\r\n");
        vec![
            b"Subject: hi\r\n\r\nbody line\r\n".to_vec(),
            b"bare\nLF\nonly\n".to_vec(),
            "Subject: caf\u{e9}\r\n\r\n\u{e4}\u{f6}\u{fc} 8-bit\r\n"
                .as_bytes()
                .to_vec(),
            binary,
            b"text ) and {5}\r\nand A1 OK done\r\n* 1 FETCH (UID 9)\r\n{5}\r\n".to_vec(),
            b"ends without newline {3}".to_vec(),
            Vec::new(),
        ]
    }

    fn fetch_wire(uid: u32, body: &[u8]) -> Vec<u8> {
        let mut w = format!(
            "* {uid} FETCH (UID {uid} FLAGS (\\Seen $Forwarded) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE {} MODSEQ (12345) BODY[] {{{}}}\r\n",
            body.len(),
            body.len()
        )
        .into_bytes();
        w.extend_from_slice(body);
        w.extend_from_slice(b")\r\n");
        w
    }

    /// Found by the fuzz harness (src/imap/fuzz.rs): a BODYSTRUCTURE nested 10 000 deep made
    /// imap-proto recurse until the stack overflowed (the process aborted). Lists nested deeper
    /// than MAX_DEPTH are refused by the hand parser instead, on a thread's default stack.
    #[test]
    fn deeply_nested_lists_are_refused_without_overflowing_the_stack() {
        let deep = |head: &[u8], tail: &[u8]| {
            [
                head,
                &b"(".repeat(10_000),
                b"\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1",
                &b")".repeat(10_000),
                tail,
            ]
            .concat()
        };
        let inputs = [
            deep(b"* 1 FETCH (UID 1 BODYSTRUCTURE ", b")\r\n"),
            deep(b"A1 OK [", b"] done\r\n"),
            deep(b"* NAMESPACE ", b" NIL NIL\r\n"),
        ];
        let t = std::thread::Builder::new()
            .stack_size(256 << 10)
            .spawn(move || inputs.iter().map(|i| parse(i).is_err()).collect::<Vec<_>>())
            .unwrap();
        assert_eq!(t.join().unwrap(), [true, false, true]);
        // Within the limit, nesting is read as before.
        let r = parse(b"* 1 FETCH (UID 3 BODYSTRUCTURE ((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 1 1) \"MIXED\"))\r\n");
        assert!(
            matches!(
                r,
                Ok(Response::Untagged(Untagged::Fetch { uid: Some(3), .. }))
            ),
            "{r:?}"
        );
        assert_eq!(nesting(b"* 1 FETCH (BODY[] {3}\r\n(((\"((\" ())\r\n"), 2);
    }

    #[test]
    fn a_large_literal_is_reported_in_pieces_as_it_arrives() {
        let body = vec![b'x'; 40_000];
        let input = fetch_wire(1, &body);
        let pieces = std::sync::Mutex::new(Vec::new());
        let meter = |n: u64| pieces.lock().unwrap().push(n);
        let mut r = std::io::BufReader::new(&input[..]);
        let mut buf = Vec::new();
        assert!(read_response(&mut r, &mut buf, DEFAULT_RESPONSE_LIMIT, Some(&meter)).unwrap());
        assert_eq!(buf, input);
        let pieces = pieces.into_inner().unwrap();
        assert_eq!(pieces.iter().sum::<u64>(), 40_000);
        assert!(pieces.len() >= 3, "{pieces:?}");
        assert!(pieces.iter().all(|&p| p <= LITERAL_PIECE));
    }

    #[test]
    fn framing_with_literals_one_byte_at_a_time() {
        let mut input = b"* OK [CAPABILITY IMAP4rev1 LITERAL+] hi\r\n".to_vec();
        for (i, b) in bodies().iter().enumerate() {
            input.extend(fetch_wire(i as u32 + 1, b));
        }
        input.extend_from_slice(b"A1 OK done\r\n");
        let f = frames(&input);
        assert_eq!(f.len(), bodies().len() + 2);
        for (i, b) in bodies().iter().enumerate() {
            assert_eq!(f[i + 1], fetch_wire(i as u32 + 1, b));
        }
        assert_eq!(f.last().unwrap(), b"A1 OK done\r\n");
    }

    #[test]
    fn framing_errors() {
        let mut r = BufReader::new(&b"* 1 FETCH (BODY[] {10}\r\nshort"[..]);
        let mut buf = Vec::new();
        assert!(read_response(&mut r, &mut buf, DEFAULT_RESPONSE_LIMIT, None).is_err());
        let mut r = BufReader::new(&b"* OK no newline"[..]);
        assert!(read_response(&mut r, &mut buf, DEFAULT_RESPONSE_LIMIT, None).is_err());
        let mut r = BufReader::new(&b""[..]);
        assert!(!read_response(&mut r, &mut buf, DEFAULT_RESPONSE_LIMIT, None).unwrap());
        // Over the limit, by a literal's announcement or by lines and literals together.
        let mut r = BufReader::new(&b"* 1 FETCH (BODY[] {100}\r\n"[..]);
        let e = read_response(&mut r, &mut buf, 99, None).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
        let chain = b"* 1 FETCH (X {3}\r\nabc Y {3}\r\nabc Z {3}\r\nabc)\r\n";
        let mut r = BufReader::new(&chain[..]);
        assert!(read_response(&mut r, &mut buf, 30, None).is_err());
        let mut r = BufReader::new(&chain[..]);
        assert!(read_response(&mut r, &mut buf, chain.len() as u64, None).unwrap());
        let mut r = BufReader::new(&b"* OK 0123456789\r\n"[..]);
        assert!(read_response(&mut r, &mut buf, 10, None).is_err());
    }

    #[test]
    fn literal_len_forms() {
        assert_eq!(literal_len(b"* x {5}\r\n"), Some(5));
        assert_eq!(literal_len(b"A1 APPEND x {12+}\r\n"), Some(12));
        assert_eq!(literal_len(b"* OK {}\r\n"), None);
        assert_eq!(literal_len(b"* OK {x}\r\n"), None);
        assert_eq!(literal_len(b"* OK 5}\r\n"), None);
        assert_eq!(literal_len(b"* OK {99999999999999999999}\r\n"), None);
    }

    fn fetch_of(buf: &[u8]) -> (u32, Option<u32>, Fetched) {
        match parse(buf).unwrap() {
            Response::Untagged(Untagged::Fetch { seq, uid, item }) => (seq, uid, item),
            other => panic!("not a FETCH: {other:?}"),
        }
    }

    #[test]
    fn fetch_bodies_are_exact() {
        for (i, body) in bodies().iter().enumerate() {
            let uid = i as u32 + 1;
            let wire = fetch_wire(uid, body);
            let (seq, u, item) = fetch_of(&wire);
            assert_eq!((seq, u), (uid, Some(uid)));
            assert_eq!(item.body.as_deref(), Some(body.as_slice()), "body {i}");
            assert_eq!(
                item.flags,
                Some(vec!["\\Seen".to_string(), "$Forwarded".to_string()])
            );
            assert_eq!(
                item.internaldate.unwrap().unwrap().to_string(),
                "17-Jul-1996 02:44:25 -0700"
            );
            assert_eq!(item.size, Some(body.len() as u64));
            assert_eq!(item.modseq, Some(12345));
        }
    }

    #[test]
    fn fetch_quoted_body_is_unescaped() {
        let (_, _, item) = fetch_of(b"* 1 FETCH (UID 3 BODY[] \"a \\\"q\\\" \\\\ b\")\r\n");
        assert_eq!(item.body.as_deref(), Some(&br#"a "q" \ b"#[..]));
        let (_, _, item) = fetch_of(b"* 1 FETCH (UID 3 BODY[] \"\")\r\n");
        assert_eq!(item.body.as_deref(), Some(&b""[..]));
    }

    #[test]
    fn fetch_variants() {
        // Unsolicited flag change: no UID.
        let (seq, uid, item) = fetch_of(b"* 7 FETCH (FLAGS (\\Seen))\r\n");
        assert_eq!((seq, uid, item.body), (7, None, None));
        // Header section and partial.
        let (_, uid, item) =
            fetch_of(b"* 2 FETCH (UID 5 RFC822.SIZE 100 BODY[HEADER] {4}\r\nA: b)\r\n");
        assert_eq!((uid, item.body.as_deref()), (Some(5), Some(&b"A: b"[..])));
        let (_, _, item) = fetch_of(b"* 2 FETCH (UID 5 BODY[]<0> {3}\r\nabc)\r\n");
        assert_eq!(item.body.as_deref(), Some(&b"abc"[..]));
        // imap-proto would panic on INTERNALDATE NIL; the hand parser copes.
        let (_, uid, item) = fetch_of(b"* 2 FETCH (UID 5 INTERNALDATE NIL BODY[] {2}\r\nhi)\r\n");
        assert_eq!(
            (uid, item.internaldate, item.body.as_deref()),
            (Some(5), Some(Err("NIL".into())), Some(&b"hi"[..]))
        );
        // A date with protocol text in it is not a date.
        let (_, _, item) = fetch_of(
            b"* 2 FETCH (UID 5 INTERNALDATE {39}\r\n01-Jan-2025 00:00:00 +0000\r\nX1 DELETE x)\r\n",
        );
        assert!(matches!(item.internaldate, Some(Err(_))), "{item:?}");
        // 8-bit flag keyword: imap-proto refuses, hand parser takes it.
        let (_, uid, item) =
            fetch_of("* 2 FETCH (UID 6 FLAGS (\\Seen caf\u{e9}) BODY[] {2}\r\nhi)\r\n".as_bytes());
        assert_eq!(uid, Some(6));
        assert_eq!(item.flags.unwrap().len(), 2);
        assert_eq!(item.body.as_deref(), Some(&b"hi"[..]));
    }

    #[test]
    fn hand_fetch_matches_imap_proto() {
        for body in bodies() {
            let wire = fetch_wire(4, &body);
            let via_proto = fetch_of(&wire);
            let mut span = None;
            let hand = match hand_untagged(&wire, &wire[2..], &mut span).unwrap() {
                Response::Untagged(Untagged::Fetch { seq, uid, mut item }) => {
                    if let Some((start, len)) = span {
                        item.body = Some(wire[start..start + len].to_vec());
                    }
                    (seq, uid, item)
                }
                other => panic!("{other:?}"),
            };
            assert_eq!(via_proto, hand);
            let mut owned = wire.clone();
            match parse_owned(&mut owned).unwrap() {
                Response::Untagged(Untagged::Fetch { item, .. }) => {
                    assert_eq!(item.body.as_deref(), Some(body.as_slice()))
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn tagged_and_fallback() {
        assert_eq!(
            parse(b"A3 OK [APPENDUID 1700000000 42] Append completed.\r\n").unwrap(),
            Response::Tagged {
                tag: "A3".into(),
                status: Status::Ok,
                code: Some(Code::AppendUid {
                    uidvalidity: 1700000000,
                    uid: Some(42)
                }),
                text: "Append completed.".into()
            }
        );
        // 8-bit text: imap-proto refuses, fallback parses.
        assert_eq!(
            parse("A9 NO [TRYCREATE] Postfach existiert nicht: Entw\u{fc}rfe\r\n".as_bytes())
                .unwrap(),
            Response::Tagged {
                tag: "A9".into(),
                status: Status::No,
                code: Some(Code::Other("TRYCREATE".into())),
                text: "Postfach existiert nicht: Entw\u{fc}rfe".into()
            }
        );
        assert_eq!(
            hand_tagged(b"A1 bad\r\n").unwrap(),
            Response::Tagged {
                tag: "A1".into(),
                status: Status::Bad,
                code: None,
                text: String::new()
            }
        );
        assert!(parse(b"garbage\r\n").is_err());
        assert!(matches!(
            parse(b"A1 OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] Logged in\r\n").unwrap(),
            Response::Tagged { code: Some(Code::Capability(c)), .. } if c.contains(&"LITERAL+".to_string()) && c.contains(&"AUTH=PLAIN".to_string())
        ));
    }

    #[test]
    fn untagged_status_codes() {
        let code = |b: &[u8]| match parse(b).unwrap() {
            Response::Untagged(Untagged::Status { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n"),
            Some(Code::UidValidity(3857529045))
        );
        assert_eq!(
            code(b"* OK [UIDNEXT 4392] Predicted next UID\r\n"),
            Some(Code::UidNext(4392))
        );
        assert_eq!(
            code(b"* OK [HIGHESTMODSEQ 715194045007] Highest\r\n"),
            Some(Code::HighestModSeq(715194045007))
        );
        assert_eq!(
            code(b"* OK [NOMODSEQ] Sorry, this mailbox format doesn't support modsequences\r\n"),
            Some(Code::NoModSeq)
        );
        assert_eq!(
            code(b"* OK [PERMANENTFLAGS (\\Answered \\Seen $Forwarded \\*)] Limited\r\n"),
            Some(Code::PermanentFlags(vec![
                "\\Answered".into(),
                "\\Seen".into(),
                "$Forwarded".into(),
                "\\*".into()
            ]))
        );
        assert_eq!(
            parse(b"* 172 EXISTS\r\n").unwrap(),
            Response::Untagged(Untagged::Exists(172))
        );
        assert_eq!(
            parse(b"* SEARCH 2 84 882\r\n").unwrap(),
            Response::Untagged(Untagged::Search(vec![2, 84, 882]))
        );
        assert_eq!(
            parse(b"* SEARCH\r\n").unwrap(),
            Response::Untagged(Untagged::Search(vec![]))
        );
        assert_eq!(
            parse(b"* BYE Server shutting down\r\n").unwrap(),
            Response::Bye("Server shutting down".into())
        );
        assert_eq!(
            parse(b"+ Ready\r\n").unwrap(),
            Response::Continuation("Ready".into())
        );
        assert_eq!(parse(b"+\r\n").unwrap(), Response::Continuation("".into()));
        assert!(parse(b"* XWEIRD (((\r\n").is_err());
    }

    fn list_of(b: &[u8]) -> ListEntry {
        match parse(b).unwrap() {
            Response::Untagged(Untagged::List(e)) => e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn list_forms() {
        let e = list_of(b"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n");
        assert_eq!(e.attributes, vec!["\\HasNoChildren", "\\Sent"]);
        assert_eq!(
            (e.separator, e.name.as_slice(), e.lsub),
            (Some('/'), &b"Sent Items"[..], false)
        );
        let e = list_of(b"* LIST () \"\\\\\" {8}\r\na \"b\" \\c\r\n");
        assert_eq!(
            (e.separator, e.name.as_slice()),
            (Some('\\'), &b"a \"b\" \\c"[..])
        );
        let e = list_of(b"* LIST (\\Noselect) NIL \"q\\\"x\"\r\n");
        assert_eq!((e.separator, e.name.as_slice()), (None, &b"q\"x"[..]));
        let e = list_of(b"* LIST (\\Subscribed) \"/\" Foo (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n");
        assert_eq!(e.name, b"Foo");
        let e = list_of("* LSUB () \".\" INBOX.Entw\u{fc}rfe\r\n".as_bytes());
        assert!(e.lsub);
        assert_eq!(e.name, "INBOX.Entw\u{fc}rfe".as_bytes());
    }

    #[test]
    fn namespace_forms() {
        assert_eq!(
            parse(b"* NAMESPACE ((\"\" \"/\")) NIL ((\"Shared/\" \"/\"))\r\n").unwrap(),
            Response::Untagged(Untagged::Namespace(vec![NsEntry {
                prefix: "".into(),
                separator: Some('/')
            }]))
        );
        assert_eq!(
            parse(b"* NAMESPACE ((\"INBOX.\" \".\" \"X-PARAM\" (\"a\"))) NIL NIL\r\n").unwrap(),
            Response::Untagged(Untagged::Namespace(vec![NsEntry {
                prefix: "INBOX.".into(),
                separator: Some('.')
            }]))
        );
        assert_eq!(
            parse(b"* NAMESPACE NIL NIL NIL\r\n").unwrap(),
            Response::Untagged(Untagged::Namespace(vec![]))
        );
    }

    #[test]
    fn a_fetch_with_bytes_after_its_items_is_not_read_as_one() {
        assert!(parse(b"* 2 FETCH (UID 2 FLAGS (\\Seen)) garbage (\r\n").is_err());
        assert!(carries_state(b"* 2 FETCH (UID 2) x\r\n"));
        assert!(parse(b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n").is_ok());
    }

    #[test]
    fn never_panics_on_garbage() {
        for b in [
            &b"* 1 FETCH (UID\r\n"[..],
            b"* 1 FETCH (BODY[] {99}\r\nab)\r\n",
            b"* 1 FETCH ((((((((\r\n",
            b"* LIST\r\n",
            b"* NAMESPACE (\r\n",
            b"* OK [\r\n",
            b"*\r\n",
            b"\r\n",
            b"",
            b"* 1 FETCH (BODY[ {1}\r\nx)\r\n",
        ] {
            let _ = parse(b);
        }
    }
}
