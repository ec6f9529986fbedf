//! `index.sqlite`: the account, its folders, one row per message per folder, header facts per
//! object, a log of runs. Every change carries a monotonically increasing change number.

use std::path::Path;

use anyhow::Result;

use super::facts::HeaderFacts;
use super::objects::Hash;

/// A folder as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderRow {
    pub id: i64,
    /// UTF-8 path, personal-namespace prefix removed, components joined with `/`
    /// (e.g. `INBOX`, `Archive/2024`, `Entwürfe`).
    pub path: String,
    /// The server's name exactly as LIST sent it (modified UTF-7, with prefix and separator).
    pub raw_name: String,
    pub separator: Option<char>,
    /// RFC 6154 role, e.g. `\Sent`.
    pub role: Option<String>,
    pub subscribed: bool,
    pub state: FolderState,
    /// Unix time of the last completed pull of this folder.
    pub last_pull: Option<i64>,
    /// Set when the folder was no longer listed by host1 (unix time).
    pub gone_at: Option<i64>,
    pub change: i64,
}

/// The server-side state recorded after a folder was last pulled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderState {
    pub uidvalidity: Option<u32>,
    pub uidnext: Option<u32>,
    pub highestmodseq: Option<u64>,
}

/// One message in one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRow {
    pub folder_id: i64,
    pub uidvalidity: u32,
    pub uid: u32,
    pub hash: Hash,
    pub size: u64,
    /// Flags without `\Recent`, in the order the server sent them.
    pub flags: Vec<String>,
    /// INTERNALDATE as the server sent it, zone included.
    pub internaldate: String,
    pub first_seen: i64,
    pub expunged_at: Option<i64>,
    pub change: i64,
}

/// A message to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub uidvalidity: u32,
    pub uid: u32,
    pub hash: Hash,
    pub size: u64,
    pub flags: Vec<String>,
    pub internaldate: String,
}

/// Counts recorded for one run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunCounts {
    pub folders: u64,
    pub new: u64,
    pub updated: u64,
    pub expunged: u64,
    pub failed: u64,
    pub bytes: u64,
}

/// Per-folder totals for `imapferry status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSummary {
    pub path: String,
    pub messages: u64,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
    pub last_pull: Option<i64>,
    pub gone: bool,
}

pub struct Index {
    _private: (),
}

impl Index {
    /// Open (creating and migrating as needed) with WAL; file mode 0600.
    pub fn open(_path: &Path) -> Result<Index> {
        todo!()
    }

    /// (host, user) of the account this store mirrors, once set.
    pub fn account(&self) -> Result<Option<(String, String)>> {
        todo!()
    }
    pub fn set_account(&mut self, _host: &str, _user: &str) -> Result<()> {
        todo!()
    }

    /// All folders, gone ones included, ordered by path.
    pub fn folders(&self) -> Result<Vec<FolderRow>> {
        todo!()
    }

    /// Insert or update a folder by `path`; clears `gone_at`. Bumps the change number only
    /// when something changed. Returns its id.
    pub fn upsert_folder(
        &mut self,
        _path: &str,
        _raw_name: &str,
        _separator: Option<char>,
        _role: Option<&str>,
        _subscribed: bool,
    ) -> Result<i64> {
        todo!()
    }

    pub fn mark_folder_gone(&mut self, _folder_id: i64) -> Result<()> {
        todo!()
    }

    /// Messages of the folder under `uidvalidity` not marked expunged, by UID.
    pub fn live_messages(&self, _folder_id: i64, _uidvalidity: u32) -> Result<Vec<MessageRow>> {
        todo!()
    }

    /// Objects whose size and header facts equal these (for UIDVALIDITY re-indexing).
    pub fn find_objects(&self, _size: u64, _facts: &HeaderFacts) -> Result<Vec<Hash>> {
        todo!()
    }

    pub fn object_known(&self, _hash: &Hash) -> Result<bool> {
        todo!()
    }

    /// Start a transaction; nothing is visible to other readers until [`Batch::commit`].
    pub fn batch(&mut self) -> Result<Batch<'_>> {
        todo!()
    }

    pub fn start_run(&mut self, _kind: &str) -> Result<i64> {
        todo!()
    }
    pub fn finish_run(&mut self, _run_id: i64, _counts: &RunCounts, _ok: bool) -> Result<()> {
        todo!()
    }

    pub fn summary(&self) -> Result<Vec<FolderSummary>> {
        todo!()
    }

    /// The highest change number handed out so far.
    pub fn current_change(&self) -> Result<i64> {
        todo!()
    }
}

/// A group of index changes committed atomically.
pub struct Batch<'a> {
    _tx: std::marker::PhantomData<&'a ()>,
}

impl Batch<'_> {
    /// Record an object's facts (no-op when already known).
    pub fn add_object(
        &mut self,
        _hash: &Hash,
        _size: u64,
        _stored_size: u64,
        _facts: &HeaderFacts,
    ) -> Result<()> {
        todo!()
    }

    /// Record a message (replacing a row with the same folder/uidvalidity/uid).
    pub fn add_message(&mut self, _folder_id: i64, _m: &NewMessage) -> Result<()> {
        todo!()
    }

    /// Set flags; bumps the change number only when they differ from the stored ones.
    /// Returns whether they differed.
    pub fn set_flags(
        &mut self,
        _folder_id: i64,
        _uidvalidity: u32,
        _uid: u32,
        _flags: &[String],
    ) -> Result<bool> {
        todo!()
    }

    pub fn mark_expunged(&mut self, _folder_id: i64, _uidvalidity: u32, _uid: u32) -> Result<()> {
        todo!()
    }

    /// Mark every live message of the folder under any UIDVALIDITY other than `keep` expunged.
    /// Returns how many.
    pub fn expunge_other_uidvalidities(&mut self, _folder_id: i64, _keep: u32) -> Result<u64> {
        todo!()
    }

    pub fn set_folder_state(&mut self, _folder_id: i64, _state: &FolderState, _pulled_at: i64) -> Result<()> {
        todo!()
    }

    pub fn commit(self) -> Result<()> {
        todo!()
    }
}
