//! A logged-in IMAP session and the commands imapferry sends.

use std::time::Duration;

use anyhow::Result;

use super::conn::Endpoint;

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
    /// INTERNALDATE exactly as sent, e.g. `17-Jul-1996 02:44:25 -0700`.
    pub internaldate: Option<String>,
    pub size: Option<u64>,
    pub modseq: Option<u64>,
    /// `BODY[]` (or `BODY[]<offset>` / `BODY[HEADER]`) bytes, exactly as sent.
    pub body: Option<Vec<u8>>,
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
    Ok { uidvalidity: Option<u32>, uid: Option<u32> },
    /// NO/BAD from the server, with its text.
    Rejected(String),
}

/// A logged-in session.
pub struct Client {
    _private: (),
}

impl Client {
    /// Connect, negotiate TLS as asked, read the greeting, authenticate, learn capabilities.
    pub fn connect(_ep: &Endpoint) -> Result<Client> {
        todo!()
    }

    /// Upper-case capability names, e.g. "UIDPLUS", "LITERAL+", "AUTH=PLAIN".
    pub fn has_capability(&self, _name: &str) -> bool {
        todo!()
    }

    pub fn set_timeout(&mut self, _t: Duration) -> Result<()> {
        todo!()
    }

    pub fn namespace(&mut self) -> Result<Namespace> {
        todo!()
    }

    /// LIST "" "*" (with RETURN (SPECIAL-USE SUBSCRIBED) when offered; LSUB otherwise).
    pub fn list(&mut self) -> Result<Vec<MailboxInfo>> {
        todo!()
    }

    /// SELECT (or EXAMINE when `readonly`), with (CONDSTORE) when offered.
    pub fn select(&mut self, _raw_name: &str, _readonly: bool) -> Result<Selected> {
        todo!()
    }

    pub fn uid_search_all(&mut self) -> Result<Vec<u32>> {
        todo!()
    }

    /// `UID FETCH <set> (UID FLAGS INTERNALDATE RFC822.SIZE [MODSEQ])`
    /// `[(CHANGEDSINCE n)]`; `f` is called once per response, in arrival order.
    pub fn uid_fetch_meta(
        &mut self,
        _set: &str,
        _changedsince: Option<u64>,
        _f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<()> {
        todo!()
    }

    /// Fetch `BODY.PEEK[]` (plus UID FLAGS INTERNALDATE RFC822.SIZE) of `uids`, pipelining
    /// several UID FETCH commands of at most `batch_bytes` each (sizes from `sizes`, same order)
    /// with at most `depth` in flight. `f` is called once per message as it arrives; memory
    /// holds one message at a time.
    pub fn uid_fetch_bodies(
        &mut self,
        _uids: &[u32],
        _sizes: &[u64],
        _batch_bytes: u64,
        _depth: usize,
        _f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<()> {
        todo!()
    }

    /// `UID FETCH <set> (UID RFC822.SIZE BODY.PEEK[HEADER])`.
    pub fn uid_fetch_headers(
        &mut self,
        _set: &str,
        _f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<()> {
        todo!()
    }

    pub fn create(&mut self, _raw_name: &str) -> Result<()> {
        todo!()
    }

    pub fn subscribe(&mut self, _raw_name: &str) -> Result<()> {
        todo!()
    }

    /// APPEND all of `msgs` to `raw_name`, pipelined: LITERAL+ (non-synchronizing literals) when
    /// offered, otherwise synchronizing literals. One outcome per message, in order.
    pub fn append_many(
        &mut self,
        _raw_name: &str,
        _msgs: &[AppendMessage<'_>],
    ) -> Result<Vec<AppendOutcome>> {
        todo!()
    }

    pub fn logout(self) -> Result<()> {
        todo!()
    }
}
