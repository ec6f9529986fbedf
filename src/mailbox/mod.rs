//! The seam between the engines (pull, push, check) and a server: [`Mailbox`], the operations
//! the engines need, each with its contract, in the manner of isync's driver interface. The
//! engines talk only to it: [`crate::imap::Client`] implements it over the network, and
//! [`memory::Memory`] implements it in memory, so the engines can be run without a server,
//! with faults (a dropped link, a server that rewrites what it stores, APPENDs that land after
//! the connection died) injected where a test wants them.
//!
//! Names are the server's bytes ([`MailboxName`]); UID sets are UID lists (implementations
//! compact them). Every method either does what its contract says or returns an error; an
//! answer the implementation could not read is an error, never "nothing there".

pub mod memory;

use anyhow::Result;

use crate::imap::{
    AppendMessage, AppendOutcome, ByteMeter, Client, Fetched, FlagOp, MailboxInfo, SearchKey,
    Selected, Traffic,
};
use crate::names::{MailboxName, Namespace};
use crate::provider::Provider;

/// Server capabilities the engines change their behaviour for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    /// APPENDUID and `UID EXPUNGE` (RFC 4315).
    UidPlus,
    /// Every mailbox's state in the LIST answer (RFC 5819).
    ListStatus,
    /// HIGHESTMODSEQ, `CHANGEDSINCE` (RFC 7162).
    CondStore,
}

/// One mailbox command of a pipelined burst ([`Mailbox::mailbox_commands`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxVerb {
    Create,
    Subscribe,
}

/// The operations the engines need from a server.
pub trait Mailbox: Send {
    /// Whether the server offers `cap` (as far as this connection may use it).
    fn has(&self, cap: Cap) -> bool;

    /// The largest message the server takes (RFC 7889 `APPENDLIMIT=N`), if it says.
    fn append_limit(&self) -> Option<u64>;

    /// The provider rules this server gets ([`Provider::Generic`] unless recognised or forced).
    fn provider(&self) -> Provider {
        Provider::Generic
    }

    /// The personal namespace (prefix and separator).
    fn namespace(&mut self) -> Result<Namespace>;

    /// Every mailbox, with its state when the server offers [`Cap::ListStatus`].
    fn list(&mut self) -> Result<Vec<MailboxInfo>>;

    /// Open `name` (read-only with `readonly`); its UIDVALIDITY is never 0.
    fn select(&mut self, name: &MailboxName, readonly: bool) -> Result<Selected>;

    /// Every UID of the selected mailbox, ascending, without 0.
    fn search_all(&mut self) -> Result<Vec<u32>>;

    /// The UIDs of the selected mailbox that match `key`, ascending, without 0.
    fn search(&mut self, key: &SearchKey) -> Result<Vec<u32>>;

    /// UID, FLAGS, INTERNALDATE, RFC822.SIZE (and MODSEQ) of the messages of `uids` (a set,
    /// `*` allowed, as in `5:*`), each UID at most once, only UIDs of the set; with
    /// `changedsince` only those changed since (when the server offers [`Cap::CondStore`]).
    fn fetch_meta(
        &mut self,
        set: &str,
        changedsince: Option<u64>,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<()>;

    /// UID, RFC822.SIZE and the header section of the messages of `set`.
    fn fetch_headers(&mut self, set: &str, f: &mut dyn FnMut(Fetched) -> Result<()>) -> Result<()>;

    /// The bodies of `uids` (with FLAGS, INTERNALDATE, RFC822.SIZE), `sizes` their RFC822.SIZE
    /// in the same order, in commands of at most `batch_bytes`, `depth` at once. Each asked
    /// UID reaches `f` at most once; UIDs the server sent more than once are returned.
    fn fetch_bodies(
        &mut self,
        uids: &[u32],
        sizes: &[u64],
        batch_bytes: u64,
        depth: usize,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<Vec<u32>>;

    /// Message `uid` from byte `offset` on, in pieces of `chunk` bytes, never past `declared`
    /// (its RFC822.SIZE) plus [`crate::imap::body_margin`]; `false` when the server sent
    /// nothing for it. A piece that answers no request is a protocol error.
    fn fetch_partials(
        &mut self,
        uid: u32,
        offset: u64,
        chunk: u64,
        declared: u64,
        depth: usize,
        on_piece: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool>;

    /// APPEND each message to `name`, one outcome per message, in order (see
    /// [`AppendOutcome`]: stored, refused, or unanswered when the connection was closed first).
    fn append(
        &mut self,
        name: &MailboxName,
        msgs: &[AppendMessage<'_>],
    ) -> Result<Vec<AppendOutcome>>;

    /// Change the flags of `uids` in the selected mailbox.
    fn store_flags(&mut self, uids: &[u32], op: FlagOp, flags: &[String]) -> Result<()>;

    /// Gmail: add `labels` (X-GM-LABELS values, as the server names them) to `uids` of the
    /// selected mailbox, so each shows in those label views too.
    fn add_labels(&mut self, uids: &[u32], labels: &[Vec<u8>]) -> Result<()> {
        let _ = (uids, labels);
        anyhow::bail!("this server has no labels")
    }

    /// Remove exactly `uids` (flagged `\Deleted` first by the caller); needs [`Cap::UidPlus`].
    fn expunge_uids(&mut self, uids: &[u32]) -> Result<()>;

    /// Remove every message flagged `\Deleted` in the selected mailbox, whoever flagged it.
    fn expunge_all(&mut self) -> Result<()>;

    /// A keep-alive that also reports the selected mailbox's message count when it changed.
    fn noop(&mut self) -> Result<Option<u32>>;

    /// Pipelined CREATE / SUBSCRIBE: one result per command, in order; CREATE of a mailbox
    /// that exists is success.
    fn mailbox_commands(&mut self, cmds: &[(MailboxVerb, &MailboxName)])
        -> Result<Vec<Result<()>>>;

    /// False once the connection cannot be used any more (closed on purpose, or broken).
    fn is_usable(&self) -> bool;

    /// How many more errors (NO, BAD) this session takes before the server closes it, when the
    /// server does so (Microsoft 365: ten); `None` when it does not.
    fn errors_left(&self) -> Option<u32> {
        None
    }

    /// Bytes moved so far.
    fn traffic(&self) -> Traffic;

    /// Tell `meter` of message bytes as they arrive or go (an APPEND's), pieces of a body
    /// included (`None`: stop).
    fn set_literal_meter(&mut self, meter: Option<ByteMeter>);

    /// Say goodbye (best effort).
    fn logout(&mut self);
}

impl Mailbox for Client {
    fn has(&self, cap: Cap) -> bool {
        self.has_capability(match cap {
            Cap::UidPlus => "UIDPLUS",
            Cap::ListStatus => "LIST-STATUS",
            Cap::CondStore => "CONDSTORE",
        })
    }

    fn append_limit(&self) -> Option<u64> {
        Client::append_limit(self)
    }

    fn provider(&self) -> Provider {
        Client::provider(self)
    }

    fn add_labels(&mut self, uids: &[u32], labels: &[Vec<u8>]) -> Result<()> {
        self.uid_add_labels(uids, labels)
    }

    fn namespace(&mut self) -> Result<Namespace> {
        Client::namespace(self)
    }

    fn list(&mut self) -> Result<Vec<MailboxInfo>> {
        Client::list(self)
    }

    fn select(&mut self, name: &MailboxName, readonly: bool) -> Result<Selected> {
        Client::select(self, name, readonly)
    }

    fn search_all(&mut self) -> Result<Vec<u32>> {
        self.uid_search_all()
    }

    fn search(&mut self, key: &SearchKey) -> Result<Vec<u32>> {
        self.uid_search(key)
    }

    fn fetch_meta(
        &mut self,
        set: &str,
        changedsince: Option<u64>,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<()> {
        self.uid_fetch_meta(set, changedsince, f)
    }

    fn fetch_headers(&mut self, set: &str, f: &mut dyn FnMut(Fetched) -> Result<()>) -> Result<()> {
        self.uid_fetch_headers(set, f)
    }

    fn fetch_bodies(
        &mut self,
        uids: &[u32],
        sizes: &[u64],
        batch_bytes: u64,
        depth: usize,
        f: &mut dyn FnMut(Fetched) -> Result<()>,
    ) -> Result<Vec<u32>> {
        self.uid_fetch_bodies(uids, sizes, batch_bytes, depth, f)
    }

    fn fetch_partials(
        &mut self,
        uid: u32,
        offset: u64,
        chunk: u64,
        declared: u64,
        depth: usize,
        on_piece: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<bool> {
        self.uid_fetch_partials(uid, offset, chunk, declared, depth, on_piece)
    }

    fn append(
        &mut self,
        name: &MailboxName,
        msgs: &[AppendMessage<'_>],
    ) -> Result<Vec<AppendOutcome>> {
        self.append_many(name, msgs)
    }

    fn store_flags(&mut self, uids: &[u32], op: FlagOp, flags: &[String]) -> Result<()> {
        self.uid_store_flags(uids, op, flags)
    }

    fn expunge_uids(&mut self, uids: &[u32]) -> Result<()> {
        self.uid_expunge(uids)
    }

    fn expunge_all(&mut self) -> Result<()> {
        self.expunge().map(|_| ())
    }

    fn noop(&mut self) -> Result<Option<u32>> {
        Client::noop(self)
    }

    fn mailbox_commands(
        &mut self,
        cmds: &[(MailboxVerb, &MailboxName)],
    ) -> Result<Vec<Result<()>>> {
        let cmds: Vec<(&str, &MailboxName)> = cmds
            .iter()
            .map(|(v, n)| {
                let verb = match v {
                    MailboxVerb::Create => "CREATE",
                    MailboxVerb::Subscribe => "SUBSCRIBE",
                };
                (verb, *n)
            })
            .collect();
        Client::mailbox_commands(self, &cmds)
    }

    fn is_usable(&self) -> bool {
        Client::is_usable(self)
    }

    fn errors_left(&self) -> Option<u32> {
        let n = self.provider().errors_per_session()?;
        Some(n.saturating_sub(self.refusals()))
    }

    fn set_literal_meter(&mut self, meter: Option<ByteMeter>) {
        Client::set_literal_meter(self, meter)
    }

    fn traffic(&self) -> Traffic {
        Client::traffic(self)
    }

    fn logout(&mut self) {
        let _ = self.logout_in_place();
    }
}
