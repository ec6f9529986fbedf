//! An in-process IMAP server on 127.0.0.1 that emulates the documented IMAP behaviour of Gmail
//! ([`Provider::gmail`]) and Microsoft 365 ([`Provider::m365`]) for integration tests: Gmail's
//! label views with their own UIDs, X-GM-MSGID/THRID/LABELS, duplicate APPENDs folded into one
//! message, daily bandwidth quotas and the connection cap; Exchange Online's OAuth2-only login,
//! its permanent flags, throttling answers, the ten-strikes rule, case-insensitive folder names
//! and size and line-length refusals. What each rule rests on, and what differs from the real
//! services, is in `docs/providers-emulation.md`.
//!
//! One thread per connection, the account's state behind one `Arc<Mutex<_>>`; the server stops
//! (its listener closed, every connection shut down) when the [`Provider`] is dropped.
//! Commands are read like [`super::hostile`] reads them (literals `{n}` and `{n+}` inline), and
//! sets are matched with [`super::hostile::in_set`].

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use imapferry::mailtime::{days_from_civil, format_internaldate, parse_internaldate};

use super::hostile::in_set;

/// Which service is emulated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Gmail,
    M365,
}

/// Decides whether an OAuth2 access token is (still) valid.
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How a [`Provider`] behaves. `ProviderConfig::default()` is a sensible start; set fields with
/// struct update syntax.
#[derive(Clone)]
pub struct ProviderConfig {
    /// The account's user name (checked by LOGIN and AUTHENTICATE PLAIN in Gmail mode).
    pub user: String,
    /// The password for LOGIN / AUTHENTICATE PLAIN in Gmail mode; `None`: any password.
    /// (Microsoft 365 refuses basic authentication whatever it is.)
    pub password: Option<String>,
    /// Validity of XOAUTH2 bearer tokens, asked at AUTHENTICATE and again before every command
    /// of a session that authenticated with a token; `None`: every token is valid.
    pub token_check: Option<TokenCheck>,
    /// Gmail: body bytes FETCH may serve (all connections) before the next FETCH of a body is
    /// refused as `quota_answer` says; `None`: no limit.
    pub download_limit: Option<u64>,
    /// Gmail: APPEND literal bytes accepted before the next APPEND is refused so.
    pub upload_limit: Option<u64>,
    /// How a used-up quota is answered. Default [`QuotaAnswer::Bye`].
    pub quota_answer: QuotaAnswer,
    /// Gmail: logged-in sessions of the account (other clients' included); the next LOGIN or
    /// AUTHENTICATE gets `NO [ALERT] Too many simultaneous connections. (Failure)`. Default 15.
    pub max_connections: usize,
    /// Gmail: sessions of the user's other clients (phone, desktop) counted against
    /// `max_connections`; changed later with [`Provider::set_other_sessions`].
    pub other_sessions: usize,
    /// Gmail: a session older than this gets `* BYE Session expired, please login again.` at
    /// its next command and is closed (no quota involved).
    pub session_lifetime: Option<Duration>,
    /// Gmail: once this many body bytes were served (all connections), body FETCHes are
    /// slowed to `throttle_rate` bytes a second and completed `OK Success [THROTTLED]`, for
    /// `throttle_for`.
    pub throttle_after: Option<u64>,
    pub throttle_rate: u64,
    pub throttle_for: Duration,
    /// Gmail: All Mail is not shown in IMAP ("Show in IMAP" unticked).
    pub hide_all_mail: bool,
    /// Gmail: "Folder size limits": each folder shows at most this many messages (the newest).
    pub max_folder_size: Option<usize>,
    /// Gmail: what LOGIN and AUTHENTICATE PLAIN answer instead of logging in.
    pub login_alert: Option<LoginAlert>,
    /// Gmail: a duplicate APPEND (a Message-ID the account holds) is dropped without giving
    /// the message it repeats the target's label (the default gives it).
    pub duplicates_unlabelled: bool,
    /// Microsoft 365: RFC822.SIZE is the stored size, not the size of the bytes served.
    pub stored_sizes: bool,
    /// Microsoft 365: every command after AUTHENTICATE is answered `BAD User is authenticated
    /// but not connected.`; the second is followed by `* BYE Connection closed. 14`.
    pub not_connected: bool,
    /// Microsoft 365: every Nth SELECT or EXAMINE (all connections) is answered
    /// `NO Server Unavailable. 15`.
    pub unavailable_every: Option<u32>,
    /// Microsoft 365: every Nth command of authenticated sessions (counted over all
    /// connections, LOGOUT excluded) is answered `NO Request is throttled. Suggested Backoff
    /// Time: <backoff_ms> milliseconds` and the connection is closed.
    pub throttle_every: Option<u32>,
    /// The backoff the throttling answer suggests. Default 500.
    pub backoff_ms: u64,
    /// Largest message APPEND takes. Default 35 651 584 bytes (Gmail's APPENDLIMIT; Exchange
    /// Online's default maximum message size is 35 MB too).
    pub max_message_size: u64,
    /// Do not announce SASL-IR, so that clients AUTHENTICATE without an initial response.
    pub hide_sasl_ir: bool,
}

impl Default for ProviderConfig {
    fn default() -> ProviderConfig {
        ProviderConfig {
            user: "alice@example.com".into(),
            password: None,
            token_check: None,
            download_limit: None,
            upload_limit: None,
            quota_answer: QuotaAnswer::Bye,
            max_connections: 15,
            other_sessions: 0,
            session_lifetime: None,
            throttle_after: None,
            throttle_rate: 1024,
            throttle_for: Duration::from_secs(3),
            hide_all_mail: false,
            max_folder_size: None,
            login_alert: None,
            duplicates_unlabelled: false,
            stored_sizes: false,
            not_connected: false,
            unavailable_every: None,
            throttle_every: None,
            backoff_ms: 500,
            max_message_size: GMAIL_APPENDLIMIT,
            hide_sasl_ir: false,
        }
    }
}

/// How Gmail answers a command once a daily bandwidth quota is used up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuotaAnswer {
    /// `* BYE Session expired, please login again.` and the connection closed.
    Bye,
    /// `<tag> NO [OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)`.
    OverQuota,
}

/// What Gmail answers a password login that its security settings refuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginAlert {
    /// `NO [ALERT] Application-specific password required: <help link> (Failure)`.
    AppPassword,
    /// `* NO [WEBALERT <url>] Web login required.` then `NO [ALERT] Please log in via your
    /// web browser: <help link> (Failure)`.
    WebLogin,
}

/// The link Gmail's WEBALERT carries (a made-up continuation token).
pub const WEBALERT_URL: &str =
    "https://accounts.google.com/signin/continue?sarp=1&scc=1&plt=AKgnsbtEMULATED";

/// Gmail's quota answer to a command that would move message bytes.
pub const OVERQUOTA: &str =
    "NO [OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)";

/// Gmail's APPENDLIMIT.
pub const GMAIL_APPENDLIMIT: u64 = 35_651_584;
/// The first X-GM-MSGID handed out.
pub const FIRST_MSGID: u64 = 1_600_000_000_000_000_001;
/// Microsoft 365: an APPENDed message with a line longer than this (CRLF not counted) is
/// refused.
pub const M365_MAX_LINE: usize = 10_500;
/// Microsoft 365's permanent flags; other flags and keywords are dropped silently.
pub const M365_PERMANENT_FLAGS: &[&str] = &[
    "\\Seen",
    "\\Answered",
    "\\Flagged",
    "\\Deleted",
    "\\Draft",
    "$MDNSent",
];

/// Where a Gmail message lives: everywhere (All Mail and its labels), or in Spam or Trash only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    AllMail,
    Spam,
    Trash,
}

/// A message to seed.
#[derive(Clone, Debug)]
pub struct SeedMsg {
    pub bytes: Vec<u8>,
    /// INTERNALDATE, Unix seconds.
    pub internaldate: i64,
    pub flags: Vec<String>,
    /// Gmail labels: user labels (`Work`, `Work/Projects`; their folders are created) and system
    /// labels `\Inbox`, `\Sent`, `\Draft`, `\Important`. Ignored in Microsoft 365 mode.
    pub labels: Vec<String>,
    /// Ignored in Microsoft 365 mode.
    pub place: Place,
}

impl SeedMsg {
    /// `bytes` in All Mail, unread, no labels, dated 2025-01-01 10:00 UTC.
    pub fn new(bytes: &[u8]) -> SeedMsg {
        SeedMsg {
            bytes: bytes.to_vec(),
            internaldate: 1_735_725_600,
            flags: Vec::new(),
            labels: Vec::new(),
            place: Place::AllMail,
        }
    }

    pub fn labels(mut self, labels: &[&str]) -> SeedMsg {
        self.labels = labels.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn flags(mut self, flags: &[&str]) -> SeedMsg {
        self.flags = flags.iter().map(|s| s.to_string()).collect();
        self
    }

    pub fn place(mut self, place: Place) -> SeedMsg {
        self.place = place;
        self
    }
}

/// One message of the account, as the server holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsgSnapshot {
    /// X-GM-MSGID in Gmail mode; an internal id in Microsoft 365 mode.
    pub msgid: u64,
    pub thrid: u64,
    pub bytes: Vec<u8>,
    pub internaldate: i64,
    pub flags: Vec<String>,
    /// Gmail labels, sorted (system labels as `\Inbox`).
    pub labels: Vec<String>,
    pub place: Place,
    /// Microsoft 365: the folder holding it.
    pub folder: Option<String>,
}

/// One message as a folder shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderMsg {
    pub uid: u32,
    pub msgid: u64,
    pub bytes: Vec<u8>,
    pub flags: Vec<String>,
    pub internaldate: i64,
}

/// One throttling answer (Microsoft 365 mode).
#[derive(Clone, Debug)]
pub struct Throttle {
    pub at: Instant,
    pub backoff: Duration,
    /// When the next command (any connection) arrived after it.
    pub next_command: Option<Instant>,
}

impl Throttle {
    /// How long the client waited before its next command.
    pub fn waited(&self) -> Option<Duration> {
        self.next_command.map(|n| n.duration_since(self.at))
    }
}

#[derive(Clone, Debug)]
enum Kind {
    Inbox,
    AllMail,
    Spam,
    Trash,
    Sent,
    Drafts,
    Starred,
    Important,
    Label(String),
    NoSelect,
    /// A Microsoft 365 folder: holds its own messages.
    Plain,
}

#[derive(Clone, Debug)]
struct Msg {
    id: u64,
    thrid: u64,
    bytes: Vec<u8>,
    internaldate: i64,
    flags: Vec<String>,
    labels: BTreeSet<String>,
    place: Place,
    folder: Option<String>,
}

#[derive(Clone, Debug)]
struct Folder {
    name: String,
    kind: Kind,
    /// Special-use attribute (`\Sent`, ...), if any.
    special: &'static str,
    uidvalidity: u32,
    uidnext: u32,
    /// UID → message id.
    uids: BTreeMap<u32, u64>,
    /// Message id → UID.
    by_msg: HashMap<u64, u32>,
    subscribed: bool,
}

#[derive(Default)]
struct State {
    msgs: BTreeMap<u64, Msg>,
    folders: Vec<Folder>,
    next_id: u64,
    next_uidvalidity: u32,
    commands: HashMap<String, u64>,
    appends: u64,
    served: u64,
    uploaded: u64,
    download_used: u64,
    upload_used: u64,
    active: usize,
    max_active: usize,
    account_commands: u64,
    throttles: Vec<Throttle>,
    quota_byes: u64,
    /// Gmail: sessions logged in now (connections refused at LOGIN not counted).
    logged_in: usize,
    max_logged_in: usize,
    other_sessions: usize,
    cap_refusals: u64,
    expiry_byes: u64,
    /// Gmail: when the slow-down began.
    throttle_started: Option<Instant>,
    /// Gmail: each `[THROTTLED]` answer, `next_command` the next body FETCH after it.
    slowdowns: Vec<Throttle>,
    /// Microsoft 365: sessions closed for ten errors.
    strike_byes: u64,
    selects: u64,
    /// Gmail's "Folder size limits": messages a folder shows at most.
    folder_limit: Option<usize>,
    /// Gmail: All Mail is not shown in IMAP.
    hide_all_mail: bool,
}

struct Shared {
    mode: Mode,
    cfg: ProviderConfig,
    state: Mutex<State>,
    stop: AtomicBool,
    /// Open connections, to shut down when the provider is dropped.
    streams: Mutex<HashMap<u64, TcpStream>>,
}

/// A running emulated server; stops when dropped.
pub struct Provider {
    port: u16,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

const GMAIL_SYSTEM: &[(&str, &str)] = &[
    ("INBOX", ""),
    ("[Gmail]", ""),
    ("[Gmail]/All Mail", "\\All"),
    ("[Gmail]/Drafts", "\\Drafts"),
    ("[Gmail]/Important", "\\Important"),
    ("[Gmail]/Sent Mail", "\\Sent"),
    ("[Gmail]/Spam", "\\Junk"),
    ("[Gmail]/Starred", "\\Flagged"),
    ("[Gmail]/Trash", "\\Trash"),
];

const M365_FOLDERS: &[(&str, &str)] = &[
    ("INBOX", ""),
    ("Archive", "\\Archive"),
    ("Deleted Items", "\\Trash"),
    ("Drafts", "\\Drafts"),
    ("Junk Email", "\\Junk"),
    ("Outbox", ""),
    ("Sent Items", "\\Sent"),
];

fn gmail_kind(name: &str) -> Kind {
    match name {
        "INBOX" => Kind::Inbox,
        "[Gmail]" => Kind::NoSelect,
        "[Gmail]/All Mail" => Kind::AllMail,
        "[Gmail]/Drafts" => Kind::Drafts,
        "[Gmail]/Important" => Kind::Important,
        "[Gmail]/Sent Mail" => Kind::Sent,
        "[Gmail]/Spam" => Kind::Spam,
        "[Gmail]/Starred" => Kind::Starred,
        "[Gmail]/Trash" => Kind::Trash,
        other => Kind::Label(other.to_string()),
    }
}

impl Folder {
    /// (UID, message id) of the messages the folder shows: with Gmail's folder size limit,
    /// only the newest `limit`.
    fn shown(&self, limit: Option<usize>) -> Vec<(u32, u64)> {
        let skip = limit.map_or(0, |l| self.uids.len().saturating_sub(l));
        self.uids
            .iter()
            .skip(skip)
            .map(|(&u, &id)| (u, id))
            .collect()
    }
}

impl State {
    fn add_folder(&mut self, name: &str, kind: Kind, special: &'static str, subscribed: bool) {
        self.next_uidvalidity += 1;
        self.folders.push(Folder {
            name: name.to_string(),
            kind,
            special,
            uidvalidity: self.next_uidvalidity,
            uidnext: 1,
            uids: BTreeMap::new(),
            by_msg: HashMap::new(),
            subscribed,
        });
    }

    /// Index of the folder named `name` (INBOX in any case; every name in any case for
    /// Microsoft 365).
    fn find(&self, mode: Mode, name: &str) -> Option<usize> {
        self.folders.iter().position(|f| {
            (f.name == name
                || ((mode == Mode::M365 || f.name == "INBOX") && f.name.eq_ignore_ascii_case(name)))
                && self.in_imap(f)
        })
    }

    /// Whether IMAP shows the folder (Gmail's "Show in IMAP").
    fn in_imap(&self, f: &Folder) -> bool {
        !(self.hide_all_mail && matches!(f.kind, Kind::AllMail))
    }

    /// Gmail: the user label folder for `label` (any case).
    fn label_folder(&self, label: &str) -> Option<&Folder> {
        self.folders
            .iter()
            .find(|f| matches!(&f.kind, Kind::Label(l) if l.eq_ignore_ascii_case(label)))
    }

    /// Give every message that entered a view a new UID there; take it from those that left.
    fn sync_views(&mut self) {
        let State { msgs, folders, .. } = self;
        for f in folders.iter_mut() {
            let gone: Vec<u64> = f
                .by_msg
                .keys()
                .copied()
                .filter(|id| !msgs.get(id).is_some_and(|m| in_view(f, m)))
                .collect();
            for id in gone {
                if let Some(uid) = f.by_msg.remove(&id) {
                    f.uids.remove(&uid);
                }
            }
            for m in msgs.values() {
                if !f.by_msg.contains_key(&m.id) && in_view(f, m) {
                    f.uids.insert(f.uidnext, m.id);
                    f.by_msg.insert(m.id, f.uidnext);
                    f.uidnext += 1;
                }
            }
        }
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Whether `f` has child folders.
    fn has_children(&self, f: &Folder) -> bool {
        let prefix = format!("{}/", f.name);
        self.folders.iter().any(|g| g.name.starts_with(&prefix))
    }

    fn attributes(&self, f: &Folder) -> String {
        let mut a: Vec<&str> = Vec::new();
        if !f.special.is_empty() {
            a.push(f.special);
        }
        a.push(if self.has_children(f) {
            "\\HasChildren"
        } else {
            "\\HasNoChildren"
        });
        if matches!(f.kind, Kind::NoSelect) {
            a.push("\\Noselect");
        }
        a.join(" ")
    }
}

fn has_flag(flags: &[String], f: &str) -> bool {
    flags.iter().any(|x| x.eq_ignore_ascii_case(f))
}

fn in_view(f: &Folder, m: &Msg) -> bool {
    let live = m.place == Place::AllMail;
    match &f.kind {
        Kind::Inbox if m.folder.is_some() => m.folder.as_deref() == Some(f.name.as_str()),
        Kind::Inbox => live && m.labels.contains("\\Inbox"),
        Kind::AllMail => live,
        Kind::Spam => m.place == Place::Spam,
        Kind::Trash => m.place == Place::Trash,
        Kind::Sent => live && m.labels.contains("\\Sent"),
        Kind::Drafts => live && m.labels.contains("\\Draft"),
        Kind::Important => live && m.labels.contains("\\Important"),
        Kind::Starred => live && has_flag(&m.flags, "\\Flagged"),
        Kind::Label(l) => live && m.labels.contains(l),
        Kind::NoSelect => false,
        Kind::Plain => m.folder.as_deref() == Some(f.name.as_str()),
    }
}

/// The Message-ID header's value, trimmed, if any.
fn message_id(bytes: &[u8]) -> Option<String> {
    let end = find(bytes, b"\r\n\r\n").unwrap_or(bytes.len());
    let head = String::from_utf8_lossy(&bytes[..end]);
    let mut lines = head.split("\r\n").peekable();
    while let Some(l) = lines.next() {
        if l.len() > 11 && l.as_bytes()[..11].eq_ignore_ascii_case(b"message-id:") {
            let mut v = l[11..].trim().to_string();
            while let Some(next) = lines.peek() {
                if next.starts_with([' ', '\t']) {
                    v.push_str(next.trim());
                    lines.next();
                } else {
                    break;
                }
            }
            return (!v.is_empty()).then_some(v);
        }
    }
    None
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

impl Provider {
    /// A Gmail account with the system folders and no messages.
    pub fn gmail(cfg: ProviderConfig) -> Provider {
        Self::start(Mode::Gmail, cfg)
    }

    /// A Microsoft 365 mailbox with the default folders (INBOX, Archive, Deleted Items, Drafts,
    /// Junk Email, Outbox, Sent Items) and no messages.
    pub fn m365(cfg: ProviderConfig) -> Provider {
        Self::start(Mode::M365, cfg)
    }

    fn start(mode: Mode, cfg: ProviderConfig) -> Provider {
        let mut st = State {
            next_id: FIRST_MSGID,
            next_uidvalidity: if mode == Mode::Gmail { 600 } else { 14 },
            other_sessions: cfg.other_sessions,
            folder_limit: cfg.max_folder_size,
            hide_all_mail: cfg.hide_all_mail,
            ..State::default()
        };
        match mode {
            Mode::Gmail => {
                for (name, special) in GMAIL_SYSTEM {
                    st.add_folder(name, gmail_kind(name), special, true);
                }
            }
            Mode::M365 => {
                for (name, special) in M365_FOLDERS {
                    st.add_folder(name, Kind::Plain, special, true);
                }
            }
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let shared = Arc::new(Shared {
            mode,
            cfg,
            state: Mutex::new(st),
            stop: AtomicBool::new(false),
            streams: Mutex::new(HashMap::new()),
        });
        let sh = shared.clone();
        let accept = thread::spawn(move || {
            let mut next = 0u64;
            while !sh.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        next += 1;
                        let id = next;
                        if let Ok(c) = stream.try_clone() {
                            sh.streams.lock().unwrap().insert(id, c);
                        }
                        let sh = sh.clone();
                        thread::spawn(move || {
                            serve(sh.clone(), stream);
                            sh.streams.lock().unwrap().remove(&id);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(5)),
                }
            }
            // The listener is dropped (closed) here.
        });
        Provider {
            port,
            shared,
            accept: Some(accept),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn mode(&self) -> Mode {
        self.shared.mode
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap()
    }

    /// Gmail: add messages to the account (user labels they name become folders). Returns
    /// their X-GM-MSGIDs, in order.
    pub fn seed(&self, msgs: Vec<SeedMsg>) -> Vec<u64> {
        assert_eq!(
            self.mode(),
            Mode::Gmail,
            "seed is for Gmail; use seed_folder"
        );
        let mut st = self.st();
        let mut ids = Vec::new();
        for m in msgs {
            for l in &m.labels {
                if !l.starts_with('\\') && st.label_folder(l).is_none() {
                    st.add_folder(l, Kind::Label(l.clone()), "", true);
                }
            }
            let id = st.new_id();
            let labels = m
                .labels
                .iter()
                .map(|l| match st.label_folder(l) {
                    Some(Folder {
                        kind: Kind::Label(canon),
                        ..
                    }) => canon.clone(),
                    _ => l.clone(),
                })
                .collect();
            st.msgs.insert(
                id,
                Msg {
                    id,
                    thrid: id,
                    bytes: m.bytes,
                    internaldate: m.internaldate,
                    flags: m.flags,
                    labels,
                    place: m.place,
                    folder: None,
                },
            );
            ids.push(id);
        }
        st.sync_views();
        ids
    }

    /// Microsoft 365: add messages to folder `name` (created if missing). Returns their ids.
    pub fn seed_folder(&self, name: &str, msgs: Vec<SeedMsg>) -> Vec<u64> {
        assert_eq!(self.mode(), Mode::M365, "seed_folder is for Microsoft 365");
        let mut st = self.st();
        let canon = match st.find(Mode::M365, name) {
            Some(i) => st.folders[i].name.clone(),
            None => {
                st.add_folder(name, Kind::Plain, "", true);
                name.to_string()
            }
        };
        let mut ids = Vec::new();
        for m in msgs {
            let id = st.new_id();
            st.msgs.insert(
                id,
                Msg {
                    id,
                    thrid: id,
                    bytes: m.bytes,
                    internaldate: m.internaldate,
                    flags: m.flags,
                    labels: BTreeSet::new(),
                    place: Place::AllMail,
                    folder: Some(canon.clone()),
                },
            );
            ids.push(id);
        }
        st.sync_views();
        ids
    }

    /// Create a folder (Gmail: a user label) as if a client had, without the name checks.
    pub fn create_folder(&self, name: &str) {
        let mode = self.mode();
        let mut st = self.st();
        if st.find(mode, name).is_none() {
            let kind = if mode == Mode::Gmail {
                Kind::Label(name.to_string())
            } else {
                Kind::Plain
            };
            st.add_folder(name, kind, "", true);
        }
    }

    /// Every message of the account, by id.
    pub fn messages(&self) -> Vec<MsgSnapshot> {
        self.st()
            .msgs
            .values()
            .map(|m| MsgSnapshot {
                msgid: m.id,
                thrid: m.thrid,
                bytes: m.bytes.clone(),
                internaldate: m.internaldate,
                flags: m.flags.clone(),
                labels: m.labels.iter().cloned().collect(),
                place: m.place,
                folder: m.folder.clone(),
            })
            .collect()
    }

    /// Gmail: the user label folders, sorted.
    pub fn labels(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .st()
            .folders
            .iter()
            .filter_map(|f| match &f.kind {
                Kind::Label(l) => Some(l.clone()),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    /// Every folder name, as LIST shows them.
    pub fn folders(&self) -> Vec<String> {
        self.st().folders.iter().map(|f| f.name.clone()).collect()
    }

    /// The messages folder `name` shows (any mode), by UID; `None` when there is no such folder.
    pub fn folder_messages(&self, name: &str) -> Option<Vec<FolderMsg>> {
        let st = self.st();
        let f = &st.folders[st.find(self.mode(), name)?];
        Some(
            f.uids
                .iter()
                .map(|(&uid, id)| {
                    let m = &st.msgs[id];
                    FolderMsg {
                        uid,
                        msgid: m.id,
                        bytes: m.bytes.clone(),
                        flags: m.flags.clone(),
                        internaldate: m.internaldate,
                    }
                })
                .collect(),
        )
    }

    /// UIDVALIDITY of folder `name`.
    pub fn uidvalidity(&self, name: &str) -> Option<u32> {
        let st = self.st();
        st.find(self.mode(), name)
            .map(|i| st.folders[i].uidvalidity)
    }

    /// APPEND commands received.
    pub fn appends(&self) -> u64 {
        self.st().appends
    }

    /// Bytes of message sections (BODY[...]) served by FETCH, all connections.
    pub fn body_bytes_served(&self) -> u64 {
        self.st().served
    }

    /// APPEND literal bytes received (messages accepted or folded into a duplicate).
    pub fn bytes_uploaded(&self) -> u64 {
        self.st().uploaded
    }

    /// Commands received with this verb (`UID FETCH`, `APPEND`, `LOGIN`, ...; any case).
    pub fn commands(&self, verb: &str) -> u64 {
        let verb = verb.to_ascii_uppercase();
        self.st().commands.get(&verb).copied().unwrap_or(0)
    }

    /// The most connections open at once.
    pub fn max_connections_seen(&self) -> usize {
        self.st().max_active
    }

    /// Gmail: the most sessions of ours logged in at once (those refused by the cap not
    /// counted, nor the other clients').
    pub fn max_logged_in(&self) -> usize {
        self.st().max_logged_in
    }

    /// Gmail: logins refused for the connection cap.
    pub fn cap_refusals(&self) -> u64 {
        self.st().cap_refusals
    }

    /// Gmail: the user's other clients now hold this many sessions.
    pub fn set_other_sessions(&self, n: usize) {
        self.st().other_sessions = n;
    }

    /// Gmail: sessions ended with `BYE Session expired` for their age (no quota involved).
    pub fn expiry_byes(&self) -> u64 {
        self.st().expiry_byes
    }

    /// Gmail: every `[THROTTLED]` answer, with the next body FETCH after it.
    pub fn slowdowns(&self) -> Vec<Throttle> {
        self.st().slowdowns.clone()
    }

    /// Microsoft 365: sessions closed after their tenth error.
    pub fn strike_byes(&self) -> u64 {
        self.st().strike_byes
    }

    /// Connections open now.
    pub fn connections_open(&self) -> usize {
        self.st().active
    }

    /// Every throttling answer so far (Microsoft 365 mode).
    pub fn throttles(&self) -> Vec<Throttle> {
        self.st().throttles.clone()
    }

    /// BYEs sent because a bandwidth quota was used up.
    pub fn quota_byes(&self) -> u64 {
        self.st().quota_byes
    }

    /// Start "the next day": both bandwidth quotas unused again.
    pub fn reset_quotas(&self) {
        let mut st = self.st();
        st.download_used = 0;
        st.upload_used = 0;
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
        for (_, s) in self.shared.streams.lock().unwrap().drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading commands

/// A token of a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Atom(String),
    Str(Vec<u8>),
    List(Vec<Tok>),
}

impl Tok {
    /// Atom, quoted string or literal as text.
    fn text(&self) -> Option<String> {
        match self {
            Tok::Atom(a) => Some(a.clone()),
            Tok::Str(s) => Some(String::from_utf8_lossy(s).into_owned()),
            Tok::List(_) => None,
        }
    }

    fn upper(&self) -> String {
        self.text().unwrap_or_default().to_ascii_uppercase()
    }
}

/// The literal placeholder in a command line (NUL cannot appear in IMAP command text).
const LIT: u8 = 0;

/// Split `line` (literals replaced by [`LIT`]) into tokens.
fn tokenize(line: &[u8], lits: &[Vec<u8>]) -> Result<Vec<Tok>, String> {
    let mut lits = lits.iter();
    let mut stack: Vec<Vec<Tok>> = vec![Vec::new()];
    let mut i = 0;
    while i < line.len() {
        let c = line[i];
        match c {
            b' ' => i += 1,
            b'(' => {
                stack.push(Vec::new());
                i += 1;
            }
            b')' => {
                let list = stack.pop().ok_or("unbalanced )")?;
                stack
                    .last_mut()
                    .ok_or("unbalanced )")?
                    .push(Tok::List(list));
                i += 1;
            }
            LIT => {
                let l = lits.next().ok_or("literal missing")?;
                stack.last_mut().unwrap().push(Tok::Str(l.clone()));
                i += 1;
            }
            b'"' => {
                let mut s = Vec::new();
                i += 1;
                loop {
                    match line.get(i) {
                        None => return Err("unterminated quoted string".into()),
                        Some(b'\\') => {
                            s.push(*line.get(i + 1).ok_or("bad escape")?);
                            i += 2;
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(&b) => {
                            s.push(b);
                            i += 1;
                        }
                    }
                }
                stack.last_mut().unwrap().push(Tok::Str(s));
            }
            _ => {
                let start = i;
                let mut depth = 0;
                while i < line.len() {
                    match line[i] {
                        b'[' => depth += 1,
                        b']' => depth -= 1,
                        b' ' | b'(' | b')' | LIT if depth <= 0 => break,
                        _ => {}
                    }
                    i += 1;
                }
                let a = String::from_utf8_lossy(&line[start..i]).into_owned();
                stack.last_mut().unwrap().push(Tok::Atom(a));
            }
        }
    }
    if stack.len() != 1 {
        return Err("unbalanced (".into());
    }
    Ok(stack.pop().unwrap())
}

/// `{N}` or `{N+}` at the end of a line: (N, synchronizing).
fn literal_len(line: &[u8]) -> Option<(usize, bool)> {
    let rest = line.strip_suffix(b"}")?;
    let open = rest.iter().rposition(|b| *b == b'{')?;
    let inner = std::str::from_utf8(&rest[open + 1..]).ok()?;
    match inner.strip_suffix('+') {
        Some(n) => Some((n.parse().ok()?, false)),
        None => Some((inner.parse().ok()?, true)),
    }
}

/// One command as read.
struct Cmd {
    tag: String,
    verb: String,
    /// The arguments after the verb: the line with each literal replaced by [`LIT`].
    args: Vec<u8>,
    lits: Vec<Vec<u8>>,
}

enum Incoming {
    Eof,
    /// The connection is to be closed (a BYE was sent, or a command broke the protocol).
    Close,
    /// Refused at a literal and answered already.
    Answered,
    /// Read whole, but to be answered with this tagged status line (a refused non-synchronizing
    /// literal).
    Refused(String, String),
    Cmd(Cmd),
}

/// What happens with a literal announced by a command.
enum Gate {
    Go,
    /// Answer with this (`NO ...`) instead (after reading the literal if it is on its way).
    Refuse(String),
    /// Send this and close the connection.
    Close(String),
}

// ---------------------------------------------------------------------------------------------
// Sessions

struct Session {
    sh: Arc<Shared>,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    authed: bool,
    /// The bearer token of an XOAUTH2 session.
    token: Option<String>,
    /// Selected folder and whether read-only.
    selected: Option<(String, bool)>,
    /// NO and BAD answers so far (Microsoft 365 closes after ten).
    strikes: u32,
    closing: bool,
    /// When the connection was accepted (Gmail ends old sessions).
    started: Instant,
    /// Counted among the logged-in sessions (Gmail's connection cap).
    counted: bool,
}

fn serve(sh: Arc<Shared>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut s = Session {
        sh: sh.clone(),
        reader: BufReader::new(read_half),
        stream,
        authed: false,
        token: None,
        selected: None,
        strikes: 0,
        closing: false,
        started: Instant::now(),
        counted: false,
    };
    {
        let mut st = sh.state.lock().unwrap();
        st.active += 1;
        st.max_active = st.max_active.max(st.active);
    }
    let _ = s.run();
    {
        let mut st = sh.state.lock().unwrap();
        st.active -= 1;
        if s.counted {
            st.logged_in -= 1;
        }
    }
    // A graceful close: what the client still sends is read and dropped, so the kernel does
    // not answer it with a reset that would throw away our last answer before the client
    // reads it (a throttling NO on pipelined APPENDs).
    let _ = s.stream.shutdown(Shutdown::Write);
    let _ = s.stream.set_read_timeout(Some(Duration::from_millis(100)));
    let until = Instant::now() + Duration::from_secs(2);
    let mut sink = [0u8; 16 << 10];
    // Until the client closes, or 2 s: a client slowed by its own rate limit may send its
    // next command well after the last one.
    while Instant::now() < until {
        match s.stream.read(&mut sink) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    let _ = s.stream.shutdown(Shutdown::Both);
}

/// Standard base64 with padding.
pub fn b64_encode(data: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 (padding optional); `None` on other characters.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let s = s.trim().trim_end_matches('=');
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// `s` as a quoted string, or a literal when it holds bytes a quoted string cannot.
fn astring(s: &[u8]) -> Vec<u8> {
    if s.iter()
        .any(|&b| b == b'\r' || b == b'\n' || b == 0 || b >= 0x80)
    {
        let mut v = format!("{{{}}}\r\n", s.len()).into_bytes();
        v.extend_from_slice(s);
        return v;
    }
    let mut v = vec![b'"'];
    for &b in s {
        if b == b'"' || b == b'\\' {
            v.push(b'\\');
        }
        v.push(b);
    }
    v.push(b'"');
    v
}

fn quoted(s: &str) -> String {
    String::from_utf8(astring(s.as_bytes())).unwrap_or_default()
}

/// The SASL XOAUTH2 initial response for `user` and `token`, base64-encoded.
pub fn xoauth2(user: &str, token: &str) -> String {
    b64_encode(format!("user={user}\x01auth=Bearer {token}\x01\x01").as_bytes())
}

/// The SASL PLAIN initial response, base64-encoded.
pub fn plain(user: &str, password: &str) -> String {
    b64_encode(format!("\0{user}\0{password}").as_bytes())
}

/// Gmail's answer to a failed XOAUTH2, as the error challenge carries it.
const GMAIL_XOAUTH2_ERROR: &str =
    r#"{"status":"400","schemes":"Bearer","scope":"https://mail.google.com/"}"#;

impl Session {
    fn gmail(&self) -> bool {
        self.sh.mode == Mode::Gmail
    }

    fn st(&self) -> MutexGuard<'_, State> {
        self.sh.state.lock().unwrap()
    }

    fn send(&mut self, b: &[u8]) -> io::Result<()> {
        self.stream.write_all(b)
    }

    fn line(&mut self, s: &str) -> io::Result<()> {
        self.send(format!("{s}\r\n").as_bytes())
    }

    /// The tagged completion `status` (`OK ...`, `NO ...`, `BAD ...`); Microsoft 365 closes
    /// the session at the tenth NO/BAD.
    fn done(&mut self, tag: &str, status: &str) -> io::Result<()> {
        self.line(&format!("{tag} {status}"))?;
        if !status.starts_with("OK") {
            self.strikes += 1;
            if self.sh.mode == Mode::M365 && self.strikes >= 10 && !self.closing {
                self.st().strike_byes += 1;
                self.line("* BYE Connection is closed. 13")?;
                self.closing = true;
            }
        }
        Ok(())
    }

    fn ok(&mut self, tag: &str, text: &str) -> io::Result<()> {
        let t = if self.gmail() { "Success" } else { text };
        self.done(tag, &format!("OK {t}"))
    }

    fn bad(&mut self, tag: &str, why: &str) -> io::Result<()> {
        let t = if self.gmail() {
            format!("BAD {why}")
        } else {
            "BAD Command Argument Error. 11".to_string()
        };
        self.done(tag, &t)
    }

    fn caps(&self) -> String {
        let mut c = match self.sh.mode {
            Mode::Gmail => format!(
                "IMAP4rev1 UNSELECT IDLE NAMESPACE QUOTA ID XLIST CHILDREN X-GM-EXT-1 UIDPLUS \
                 ENABLE MOVE UTF8=ACCEPT LITERAL- SPECIAL-USE APPENDLIMIT={GMAIL_APPENDLIMIT}"
            ),
            Mode::M365 => "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID \
                           UNSELECT CHILDREN IDLE NAMESPACE LITERAL+"
                .to_string(),
        };
        if self.gmail() && !self.authed {
            c.push_str(" AUTH=XOAUTH2 AUTH=PLAIN AUTH=XOAUTH SASL-IR");
        }
        if self.sh.cfg.hide_sasl_ir {
            c = c.replace(" SASL-IR", "");
        }
        c
    }

    fn run(&mut self) -> io::Result<()> {
        let greeting = match self.sh.mode {
            Mode::Gmail => "* OK Gimap ready for requests from 127.0.0.1 emu1".to_string(),
            Mode::M365 => "* OK The Microsoft Exchange IMAP4 service is ready. \
                           [RQBNAFAAUgAwADEAQwBBADAAMAA1ADIALgBuAGEAbQBwAHIAZAAwADEALgBwAHIAbwBkAC4AbwB1AHQAbABvAG8AawAuAGMAbwBtAA==]"
                .to_string(),
        };
        self.line(&greeting)?;
        loop {
            if self.sh.stop.load(Ordering::Relaxed) || self.closing {
                return Ok(());
            }
            match self.read_command()? {
                Incoming::Eof | Incoming::Close => return Ok(()),
                Incoming::Answered => {}
                Incoming::Refused(tag, status) => self.done(&tag, &status)?,
                Incoming::Cmd(cmd) => self.dispatch(cmd)?,
            }
        }
    }

    /// Checks made once a command's tag and verb are known: the session's token, throttling.
    /// `Some(text)`: send it and close.
    fn pre_command(&mut self, tag: &str, verb: &str) -> Option<String> {
        let now = Instant::now();
        let mut st = self.st();
        *st.commands.entry(verb.to_string()).or_default() += 1;
        for t in st.throttles.iter_mut() {
            t.next_command.get_or_insert(now);
        }
        if verb == "APPEND" {
            st.appends += 1;
        }
        if let (Some(token), Some(check)) = (&self.token, &self.sh.cfg.token_check) {
            if !check(token) {
                return Some("* BYE Session invalidated - AccessTokenExpired".into());
            }
        }
        if verb != "LOGOUT" && self.expired() {
            st.expiry_byes += 1;
            return Some("* BYE Session expired, please login again.".into());
        }
        if self.sh.mode == Mode::M365 && self.authed && verb != "LOGOUT" {
            st.account_commands += 1;
            if let Some(n) = self.sh.cfg.throttle_every {
                if n > 0 && st.account_commands.is_multiple_of(u64::from(n)) {
                    let ms = self.sh.cfg.backoff_ms;
                    st.throttles.push(Throttle {
                        at: now,
                        backoff: Duration::from_millis(ms),
                        next_command: None,
                    });
                    return Some(format!(
                        "{tag} NO Request is throttled. Suggested Backoff Time: {ms} milliseconds"
                    ));
                }
            }
        }
        None
    }

    /// Gmail: whether this logged-in session has outlived `session_lifetime`.
    fn expired(&self) -> bool {
        let life = self.sh.cfg.session_lifetime;
        self.gmail() && self.authed && life.is_some_and(|l| self.started.elapsed() >= l)
    }

    /// Whether the literal of `n` bytes announced by `verb` may come.
    fn gate(&mut self, verb: &str, n: usize, sync: bool) -> Gate {
        if self.gmail() && !sync && n > 4096 {
            return Gate::Close(
                "BAD [CLIENTBUG] Non-synchronizing literal larger than 4096 bytes (LITERAL-)"
                    .into(),
            );
        }
        if verb != "APPEND" {
            return Gate::Go;
        }
        if n as u64 > self.sh.cfg.max_message_size {
            return Gate::Refuse(match self.sh.mode {
                Mode::Gmail => "NO [TOOBIG] Message too large. (Failure)".into(),
                Mode::M365 => "NO Maximum size of appendable message has been exceeded".into(),
            });
        }
        let mut st = self.st();
        if self
            .sh
            .cfg
            .upload_limit
            .is_some_and(|l| st.upload_used >= l)
        {
            st.quota_byes += 1;
            return match self.sh.cfg.quota_answer {
                QuotaAnswer::Bye => {
                    Gate::Close("* BYE Session expired, please login again.".into())
                }
                QuotaAnswer::OverQuota => Gate::Refuse(OVERQUOTA.into()),
            };
        }
        Gate::Go
    }

    fn read_command(&mut self) -> io::Result<Incoming> {
        let mut line = Vec::new();
        let mut lits = Vec::new();
        let mut head: Option<(String, String)> = None;
        let mut refusal: Option<String> = None;
        loop {
            let mut part = Vec::new();
            if self.reader.read_until(b'\n', &mut part)? == 0 {
                return Ok(Incoming::Eof);
            }
            while part.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                part.pop();
            }
            let lit = literal_len(&part);
            if lit.is_some() {
                let open = part.iter().rposition(|b| *b == b'{').unwrap_or(part.len());
                part.truncate(open);
            }
            line.extend_from_slice(&part);
            if head.is_none() {
                let text = String::from_utf8_lossy(&line).into_owned();
                let mut w = text.split(' ');
                let tag = w.next().unwrap_or("").to_string();
                let mut verb = w.next().unwrap_or("").to_ascii_uppercase();
                if verb == "UID" {
                    verb = format!("UID {}", w.next().unwrap_or("").to_ascii_uppercase());
                }
                if let Some(bye) = self.pre_command(&tag, &verb) {
                    self.line(&bye)?;
                    return Ok(Incoming::Close);
                }
                head = Some((tag, verb));
            }
            let (tag, verb) = head.clone().unwrap();
            let Some((n, sync)) = lit else { break };
            match self.gate(&verb, n, sync) {
                Gate::Go => {}
                Gate::Close(text) => {
                    let text = if text.starts_with('*') {
                        text
                    } else {
                        format!("{tag} {text}")
                    };
                    self.line(&text)?;
                    return Ok(Incoming::Close);
                }
                Gate::Refuse(text) if sync => {
                    self.done(&tag, &text)?;
                    return Ok(Incoming::Answered);
                }
                Gate::Refuse(text) => refusal = Some(text),
            }
            if sync {
                self.line("+ Ready for additional command text.")?;
            }
            let mut data = vec![0; n];
            self.reader.read_exact(&mut data)?;
            line.push(LIT);
            lits.push(data);
        }
        let (tag, verb) = head.unwrap();
        if let Some(r) = refusal {
            return Ok(Incoming::Refused(tag, r));
        }
        // Skip the tag and the verb's word(s).
        let words = if verb.starts_with("UID ") { 3 } else { 2 };
        let mut cut = 0;
        let mut seen = 0;
        while cut < line.len() && seen < words {
            if line[cut] == b' ' {
                seen += 1;
            }
            cut += 1;
        }
        if seen < words {
            cut = line.len();
        }
        Ok(Incoming::Cmd(Cmd {
            tag,
            verb,
            args: line[cut..].to_vec(),
            lits,
        }))
    }

    fn dispatch(&mut self, cmd: Cmd) -> io::Result<()> {
        let tag = cmd.tag.clone();
        let args = match tokenize(&cmd.args, &cmd.lits) {
            Ok(a) => a,
            Err(e) => return self.bad(&tag, &format!("Could not parse command: {e}")),
        };
        let verb = cmd.verb.as_str();
        match verb {
            "CAPABILITY" => {
                let c = self.caps();
                self.line(&format!("* CAPABILITY {c}"))?;
                self.ok(&tag, "CAPABILITY completed.")
            }
            "NOOP" | "CHECK" => self.ok(&tag, "NOOP completed."),
            "LOGOUT" => {
                let bye = match self.sh.mode {
                    Mode::Gmail => "* BYE LOGOUT Requested",
                    Mode::M365 => "* BYE Microsoft Exchange Server IMAP4 server signing off.",
                };
                self.line(bye)?;
                let done = match self.sh.mode {
                    Mode::Gmail => "OK 73 good day (Success)",
                    Mode::M365 => "OK LOGOUT completed.",
                };
                self.done(&tag, done)?;
                self.closing = true;
                Ok(())
            }
            "ID" => {
                let id = match self.sh.mode {
                    Mode::Gmail => {
                        "* ID (\"name\" \"GImap\" \"vendor\" \"Google, Inc.\" \"support-url\" \"https://support.google.com/mail\")"
                    }
                    Mode::M365 => "* ID NIL",
                };
                self.line(id)?;
                self.ok(&tag, "ID completed.")
            }
            "LOGIN" => self.login(&tag, &args),
            "AUTHENTICATE" => self.authenticate(&tag, &args),
            _ if !self.authed => {
                if self.gmail() {
                    self.bad(&tag, "Unknown command or not authenticated")
                } else {
                    self.done(&tag, "BAD Command received in Invalid state.")
                }
            }
            _ if self.sh.cfg.not_connected && !self.gmail() => {
                self.done(&tag, "BAD User is authenticated but not connected.")?;
                if self.strikes >= 2 {
                    self.line("* BYE Connection closed. 14")?;
                    self.closing = true;
                }
                Ok(())
            }
            "SELECT" | "EXAMINE" if self.unavailable_now() => {
                self.done(&tag, "NO Server Unavailable. 15")
            }
            "ENABLE" if self.gmail() => {
                let asked: Vec<String> = args.iter().map(Tok::upper).collect();
                let on: Vec<&str> = asked
                    .iter()
                    .map(String::as_str)
                    .filter(|a| *a == "UTF8=ACCEPT")
                    .collect();
                self.line(format!("* ENABLED {}", on.join(" ")).trim_end())?;
                self.ok(&tag, "")
            }
            "NAMESPACE" => {
                self.line("* NAMESPACE ((\"\" \"/\")) NIL NIL")?;
                self.ok(&tag, "NAMESPACE completed.")
            }
            "LIST" | "XLIST" | "LSUB" => self.list(&tag, verb, &args),
            "STATUS" => self.status(&tag, &args),
            "SELECT" | "EXAMINE" => self.select(&tag, verb == "EXAMINE", &args),
            "UNSELECT" | "CLOSE" => {
                if verb == "CLOSE" && self.selected.as_ref().is_some_and(|s| !s.1) {
                    self.expunge(None, false)?;
                }
                self.selected = None;
                self.ok(&tag, &format!("{verb} completed."))
            }
            "CREATE" => self.create(&tag, &args),
            "SUBSCRIBE" | "UNSUBSCRIBE" => {
                let name = args.first().and_then(Tok::text).unwrap_or_default();
                let mode = self.sh.mode;
                let mut st = self.st();
                match st.find(mode, &name) {
                    Some(i) => {
                        st.folders[i].subscribed = verb == "SUBSCRIBE";
                        drop(st);
                        self.ok(&tag, &format!("{verb} completed."))
                    }
                    None => {
                        drop(st);
                        let t = if self.gmail() {
                            "NO [NONEXISTENT] Unknown Mailbox (Failure)".to_string()
                        } else {
                            format!("NO {verb} failed.")
                        };
                        self.done(&tag, &t)
                    }
                }
            }
            "APPEND" => self.append(&tag, &args),
            "UID SEARCH" | "SEARCH" => self.search(&tag, verb == "UID SEARCH", &args),
            "UID FETCH" | "FETCH" => self.fetch(&tag, verb == "UID FETCH", &args),
            "UID STORE" | "STORE" => self.store(&tag, verb == "UID STORE", &args),
            "EXPUNGE" => {
                if self.selected.is_none() {
                    return self.done(&tag, "BAD No mailbox selected");
                }
                self.expunge(None, true)?;
                self.ok(&tag, "EXPUNGE completed.")
            }
            "UID EXPUNGE" => {
                let set = args.first().and_then(Tok::text).unwrap_or_default();
                if self.selected.is_none() {
                    return self.done(&tag, "BAD No mailbox selected");
                }
                self.expunge(Some(&set), true)?;
                self.ok(&tag, "EXPUNGE completed.")
            }
            _ => {
                if self.gmail() {
                    self.bad(&tag, "Unknown command")
                } else {
                    self.done(&tag, "BAD Command Error. 10")
                }
            }
        }
    }

    /// Microsoft 365: whether this SELECT or EXAMINE is one `unavailable_every` refuses.
    fn unavailable_now(&mut self) -> bool {
        let Some(n) = self.sh.cfg.unavailable_every.filter(|n| *n > 0) else {
            return false;
        };
        if self.gmail() {
            return false;
        }
        let mut st = self.st();
        st.selects += 1;
        st.selects.is_multiple_of(u64::from(n))
    }

    // --- authentication ----------------------------------------------------------------------

    fn basic_ok(&self, user: &str, password: &str) -> bool {
        self.gmail()
            && user == self.sh.cfg.user
            && self
                .sh
                .cfg
                .password
                .as_deref()
                .is_none_or(|p| p == password)
    }

    fn login(&mut self, tag: &str, args: &[Tok]) -> io::Result<()> {
        let user = args.first().and_then(Tok::text).unwrap_or_default();
        let pw = args.get(1).and_then(Tok::text).unwrap_or_default();
        let ok = self.basic_ok(&user, &pw);
        self.basic_answer(tag, ok, &user)
    }

    /// Gmail's connection cap, applied at login: the session is counted in, or refused.
    fn admit(&mut self) -> bool {
        if !self.gmail() {
            return true;
        }
        let max = self.sh.cfg.max_connections;
        let mut st = self.st();
        if st.logged_in + st.other_sessions >= max {
            st.cap_refusals += 1;
            return false;
        }
        st.logged_in += 1;
        st.max_logged_in = st.max_logged_in.max(st.logged_in);
        drop(st);
        self.counted = true;
        true
    }

    /// Gmail's refusal of a password login its security settings do not allow.
    fn login_alert(&mut self, tag: &str, alert: LoginAlert) -> io::Result<()> {
        match alert {
            LoginAlert::AppPassword => self.done(
                tag,
                "NO [ALERT] Application-specific password required: \
                 https://support.google.com/accounts/answer/185833 (Failure)",
            ),
            LoginAlert::WebLogin => {
                self.line(&format!(
                    "* NO [WEBALERT {WEBALERT_URL}] Web login required."
                ))?;
                self.done(
                    tag,
                    "NO [ALERT] Please log in via your web browser: \
                     https://support.google.com/mail/accounts/answer/78754 (Failure)",
                )
            }
        }
    }

    /// The answer to LOGIN or AUTHENTICATE PLAIN, as each service words it.
    fn basic_answer(&mut self, tag: &str, ok: bool, user: &str) -> io::Result<()> {
        if let (true, Some(alert)) = (ok, self.sh.cfg.login_alert) {
            return self.login_alert(tag, alert);
        }
        if ok && !self.admit() {
            return self.done(
                tag,
                "NO [ALERT] Too many simultaneous connections. (Failure)",
            );
        }
        if ok {
            self.authed = true;
            let c = self.caps();
            self.done(
                tag,
                &format!("OK [CAPABILITY {c}] {user} authenticated (Success)"),
            )
        } else if self.gmail() {
            self.done(
                tag,
                "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
            )
        } else {
            self.done(tag, "NO LOGIN failed.")
        }
    }

    /// The client's response to a continuation request (one line).
    fn client_line(&mut self) -> io::Result<Option<String>> {
        let mut l = String::new();
        if self.reader.read_line(&mut l)? == 0 {
            return Ok(None);
        }
        Ok(Some(l.trim_end().to_string()))
    }

    fn authenticate(&mut self, tag: &str, args: &[Tok]) -> io::Result<()> {
        let mech = args.first().map(Tok::upper).unwrap_or_default();
        let ir = match args.get(1).and_then(Tok::text) {
            Some(ir) => ir,
            None if mech == "XOAUTH2" || mech == "PLAIN" => {
                self.line("+ ")?;
                match self.client_line()? {
                    Some(l) => l,
                    None => {
                        self.closing = true;
                        return Ok(());
                    }
                }
            }
            None => String::new(),
        };
        if ir == "*" {
            return self.done(tag, "BAD AUTHENTICATE cancelled");
        }
        let payload = b64_decode(&ir).unwrap_or_default();
        match mech.as_str() {
            "PLAIN" => {
                let parts: Vec<&[u8]> = payload.split(|b| *b == 0).collect();
                let ok = parts.len() == 3
                    && self.basic_ok(
                        &String::from_utf8_lossy(parts[1]),
                        &String::from_utf8_lossy(parts[2]),
                    );
                let user = self.sh.cfg.user.clone();
                self.basic_answer(tag, ok, &user)
            }
            "XOAUTH2" => {
                let text = String::from_utf8_lossy(&payload).into_owned();
                let token = text
                    .split('\x01')
                    .find_map(|kv| kv.strip_prefix("auth="))
                    .and_then(|a| {
                        a.strip_prefix("Bearer ")
                            .or_else(|| a.strip_prefix("bearer "))
                    })
                    .map(str::to_string);
                let valid = token.as_ref().is_some_and(|t| {
                    self.sh
                        .cfg
                        .token_check
                        .as_ref()
                        .is_none_or(|check| check(t))
                });
                if valid && !self.admit() {
                    self.done(
                        tag,
                        "NO [ALERT] Too many simultaneous connections. (Failure)",
                    )
                } else if valid {
                    self.authed = true;
                    self.token = token;
                    if self.gmail() {
                        let c = self.caps();
                        let user = self.sh.cfg.user.clone();
                        self.done(
                            tag,
                            &format!("OK [CAPABILITY {c}] {user} authenticated (Success)"),
                        )
                    } else {
                        self.done(tag, "OK AUTHENTICATE completed.")
                    }
                } else if self.gmail() {
                    self.line(&format!("+ {}", b64_encode(GMAIL_XOAUTH2_ERROR.as_bytes())))?;
                    if self.client_line()?.is_none() {
                        self.closing = true;
                        return Ok(());
                    }
                    self.done(
                        tag,
                        "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
                    )
                } else {
                    self.done(tag, "NO AUTHENTICATE failed.")
                }
            }
            _ => {
                if self.gmail() {
                    self.done(
                        tag,
                        "NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)",
                    )
                } else {
                    self.done(tag, "NO AUTHENTICATE failed.")
                }
            }
        }
    }

    // --- folders -----------------------------------------------------------------------------

    fn list(&mut self, tag: &str, verb: &str, args: &[Tok]) -> io::Result<()> {
        let reference = args.first().and_then(Tok::text).unwrap_or_default();
        let pattern = args.get(1).and_then(Tok::text).unwrap_or_default();
        if args.len() > 2 {
            return self.bad(tag, "LIST extensions are not offered");
        }
        if pattern.is_empty() {
            self.line(&format!("* {verb} (\\Noselect) \"/\" \"\""))?;
            return self.ok(tag, &format!("{verb} completed."));
        }
        let pattern = format!("{reference}{pattern}");
        let lines: Vec<Vec<u8>> = {
            let st = self.st();
            st.folders
                .iter()
                .filter(|f| verb != "LSUB" || f.subscribed)
                .filter(|f| st.in_imap(f))
                .filter(|f| wildmatch(pattern.as_bytes(), f.name.as_bytes()))
                .map(|f| {
                    let mut l = format!("* {verb} ({}) \"/\" ", st.attributes(f)).into_bytes();
                    l.extend_from_slice(&astring(f.name.as_bytes()));
                    l.extend_from_slice(b"\r\n");
                    l
                })
                .collect()
        };
        for l in lines {
            self.send(&l)?;
        }
        self.ok(tag, &format!("{verb} completed."))
    }

    fn no_folder(&mut self, tag: &str, verb: &str, name: &str) -> io::Result<()> {
        let t = if self.gmail() {
            format!("NO [NONEXISTENT] Unknown Mailbox: {name} (Failure)")
        } else {
            format!("NO {verb} failed.")
        };
        self.done(tag, &t)
    }

    fn status(&mut self, tag: &str, args: &[Tok]) -> io::Result<()> {
        let name = args.first().and_then(Tok::text).unwrap_or_default();
        let Some(Tok::List(items)) = args.get(1) else {
            return self.bad(tag, "STATUS needs a list of items");
        };
        let mode = self.sh.mode;
        let st = self.st();
        let Some(i) = st
            .find(mode, &name)
            .filter(|&i| !matches!(st.folders[i].kind, Kind::NoSelect))
        else {
            drop(st);
            return self.no_folder(tag, "STATUS", &name);
        };
        let f = &st.folders[i];
        let mut out = Vec::new();
        for it in items {
            let it = it.upper();
            let v = match it.as_str() {
                "MESSAGES" => f.shown(st.folder_limit).len() as u64,
                "UIDNEXT" => f.uidnext as u64,
                "UIDVALIDITY" => f.uidvalidity as u64,
                "RECENT" => 0,
                "UNSEEN" => f
                    .shown(st.folder_limit)
                    .iter()
                    .filter(|(_, id)| !has_flag(&st.msgs[id].flags, "\\Seen"))
                    .count() as u64,
                _ => {
                    drop(st);
                    return self.bad(tag, &format!("Unknown STATUS item {it}"));
                }
            };
            out.push(format!("{it} {v}"));
        }
        let mut l = b"* STATUS ".to_vec();
        l.extend_from_slice(&astring(f.name.as_bytes()));
        l.extend_from_slice(format!(" ({})\r\n", out.join(" ")).as_bytes());
        drop(st);
        self.send(&l)?;
        self.ok(tag, "STATUS completed.")
    }

    fn select(&mut self, tag: &str, readonly: bool, args: &[Tok]) -> io::Result<()> {
        let name = args.first().and_then(Tok::text).unwrap_or_default();
        let verb = if readonly { "EXAMINE" } else { "SELECT" };
        self.selected = None;
        let mode = self.sh.mode;
        let st = self.st();
        let Some(i) = st
            .find(mode, &name)
            .filter(|&i| !matches!(st.folders[i].kind, Kind::NoSelect))
        else {
            drop(st);
            return self.no_folder(tag, verb, &name);
        };
        let f = &st.folders[i];
        let (flags, perm) = match mode {
            Mode::Gmail => (
                "\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing".to_string(),
                "\\Answered \\Flagged \\Draft \\Deleted \\Seen $NotPhishing $Phishing \\*"
                    .to_string(),
            ),
            Mode::M365 => (
                M365_PERMANENT_FLAGS.join(" "),
                M365_PERMANENT_FLAGS.join(" "),
            ),
        };
        let text = format!(
            "* FLAGS ({flags})\r\n* OK [PERMANENTFLAGS ({perm})] Flags permitted.\r\n\
             * OK [UIDVALIDITY {}] UIDs valid.\r\n* {} EXISTS\r\n* 0 RECENT\r\n\
             * OK [UIDNEXT {}] Predicted next UID.\r\n",
            f.uidvalidity,
            f.shown(st.folder_limit).len(),
            f.uidnext
        );
        let canon = f.name.clone();
        drop(st);
        self.send(text.as_bytes())?;
        self.selected = Some((canon.clone(), readonly));
        let rw = if readonly { "READ-ONLY" } else { "READ-WRITE" };
        let t = if self.gmail() {
            format!("OK [{rw}] {canon} selected. (Success)")
        } else {
            format!("OK [{rw}] {verb} completed.")
        };
        self.done(tag, &t)
    }

    fn create(&mut self, tag: &str, args: &[Tok]) -> io::Result<()> {
        let raw = args.first().and_then(Tok::text).unwrap_or_default();
        let name = raw.trim_end_matches('/').to_string();
        let mode = self.sh.mode;
        if mode == Mode::Gmail {
            let excess = name
                .split('/')
                .any(|part| part.starts_with(' ') || part.ends_with(' ') || part.contains("  "));
            if excess {
                return self.done(
                    tag,
                    "NO [CANNOT] Folder contains excess whitespace (Failure)",
                );
            }
            if name.contains('^') || name.is_empty() {
                return self.done(tag, "NO [CANNOT] Invalid folder name");
            }
        } else {
            let top = name.split('/').next().unwrap_or("");
            if top.eq_ignore_ascii_case("Files") {
                return self.done(tag, "NO Folder name is reserved");
            }
            if name.is_empty() {
                return self.done(tag, "NO CREATE failed.");
            }
        }
        let mut st = self.st();
        let exists = match mode {
            Mode::Gmail => st.find(mode, &name).is_some() || st.label_folder(&name).is_some(),
            Mode::M365 => st.find(mode, &name).is_some(),
        };
        if exists {
            drop(st);
            let t = if self.gmail() {
                format!("NO [ALREADYEXISTS] Duplicate folder name {name} (Failure)")
            } else {
                "NO [ALREADYEXISTS] Mailbox already exists".to_string()
            };
            return self.done(tag, &t);
        }
        match mode {
            Mode::Gmail => st.add_folder(&name, Kind::Label(name.clone()), "", true),
            Mode::M365 => st.add_folder(&name, Kind::Plain, "", false),
        }
        drop(st);
        self.ok(tag, "CREATE completed.")
    }

    // --- APPEND ------------------------------------------------------------------------------

    fn append(&mut self, tag: &str, args: &[Tok]) -> io::Result<()> {
        let name = args.first().and_then(Tok::text).unwrap_or_default();
        let mut flags: Vec<String> = Vec::new();
        let mut date: Option<i64> = None;
        let mut rest = &args[1.min(args.len())..];
        if let Some(Tok::List(l)) = rest.first() {
            flags = l.iter().filter_map(Tok::text).collect();
            rest = &rest[1..];
        }
        if rest.len() == 2 {
            let d = rest[0].text().unwrap_or_default();
            match parse_internaldate(&d) {
                Some(t) => date = Some(t),
                None => return self.bad(tag, &format!("Invalid date-time {d:?}")),
            }
            rest = &rest[1..];
        }
        let Some(Tok::Str(bytes)) = rest.first().filter(|_| rest.len() == 1) else {
            return self.bad(
                tag,
                "APPEND needs a mailbox, optional flags and date, a literal",
            );
        };
        let bytes = bytes.clone();
        let mode = self.sh.mode;
        if mode == Mode::M365 {
            let long = bytes
                .split(|b| *b == b'\n')
                .any(|l| l.strip_suffix(b"\r").unwrap_or(l).len() > M365_MAX_LINE);
            if long {
                return self.done(tag, "BAD Command Error. 10");
            }
        }
        let mut st = self.st();
        let Some(i) = st
            .find(mode, &name)
            .filter(|&i| !matches!(st.folders[i].kind, Kind::NoSelect))
        else {
            drop(st);
            let t = if self.gmail() {
                "NO [TRYCREATE] Folder doesn't exist. (Failure)"
            } else {
                "NO [TRYCREATE] APPEND failed."
            };
            return self.done(tag, t);
        };
        st.uploaded += bytes.len() as u64;
        st.upload_used += bytes.len() as u64;
        flags.retain(|f| !f.eq_ignore_ascii_case("\\Recent"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        // Gmail puts the time of the upload for a date before 1970 or in the future.
        let internaldate = match date {
            Some(d) if mode == Mode::Gmail && (d < 0 || d > now) => now,
            Some(d) => d,
            None => now,
        };
        let kind = st.folders[i].kind.clone();
        let fname = st.folders[i].name.clone();
        let answer_uid;
        match mode {
            Mode::M365 => {
                let kept: Vec<String> = flags
                    .iter()
                    .filter_map(|f| {
                        M365_PERMANENT_FLAGS
                            .iter()
                            .find(|p| p.eq_ignore_ascii_case(f))
                            .map(|p| p.to_string())
                    })
                    .filter(|f| f != "\\Flagged")
                    .collect();
                let id = st.new_id();
                st.msgs.insert(
                    id,
                    Msg {
                        id,
                        thrid: id,
                        bytes,
                        internaldate,
                        flags: dedup(kept),
                        labels: BTreeSet::new(),
                        place: Place::AllMail,
                        folder: Some(fname),
                    },
                );
                st.sync_views();
                answer_uid = st.folders[i].by_msg[&id];
            }
            Mode::Gmail => {
                let label = match &kind {
                    Kind::Inbox => Some("\\Inbox".to_string()),
                    Kind::Sent => Some("\\Sent".to_string()),
                    Kind::Drafts => Some("\\Draft".to_string()),
                    Kind::Important => Some("\\Important".to_string()),
                    Kind::Label(l) => Some(l.clone()),
                    _ => None,
                };
                let dup = message_id(&bytes).and_then(|mid| {
                    st.msgs
                        .values()
                        .find(|m| message_id(&m.bytes).as_deref() == Some(mid.as_str()))
                        .map(|m| m.id)
                });
                if let Some(id) = dup {
                    // Stored once: the existing message gets the folder's label; the UID
                    // answered is used up and never shows.
                    let unlabelled = self.sh.cfg.duplicates_unlabelled;
                    if let (Some(m), false) = (st.msgs.get_mut(&id), unlabelled) {
                        if let Some(l) = label {
                            m.labels.insert(l);
                        }
                    }
                    let f = &mut st.folders[i];
                    answer_uid = f.uidnext;
                    f.uidnext += 1;
                    st.sync_views();
                } else {
                    let place = if has_flag(&flags, "\\Deleted") {
                        Place::Trash
                    } else {
                        match kind {
                            Kind::Spam => Place::Spam,
                            Kind::Trash => Place::Trash,
                            _ => Place::AllMail,
                        }
                    };
                    if matches!(kind, Kind::Starred) && !has_flag(&flags, "\\Flagged") {
                        flags.push("\\Flagged".into());
                    }
                    let id = st.new_id();
                    st.msgs.insert(
                        id,
                        Msg {
                            id,
                            thrid: id,
                            bytes,
                            internaldate,
                            flags: dedup(flags),
                            labels: label.into_iter().collect(),
                            place,
                            folder: None,
                        },
                    );
                    st.sync_views();
                    answer_uid = match st.folders[i].by_msg.get(&id) {
                        Some(u) => *u,
                        None => {
                            // It went elsewhere (to Trash): a UID of this folder is used up.
                            let f = &mut st.folders[i];
                            f.uidnext += 1;
                            f.uidnext - 1
                        }
                    };
                }
            }
        }
        let uv = st.folders[i].uidvalidity;
        drop(st);
        let t = if self.gmail() {
            format!("OK [APPENDUID {uv} {answer_uid}] (Success)")
        } else {
            format!("OK [APPENDUID {uv} {answer_uid}] APPEND completed.")
        };
        self.done(tag, &t)
    }

    // --- selected state ----------------------------------------------------------------------

    /// The selected folder's index, or None (after answering BAD).
    fn selected_folder(&mut self, tag: &str) -> io::Result<Option<usize>> {
        let mode = self.sh.mode;
        let found = self.selected.as_ref().and_then(|(name, _)| {
            let st = self.st();
            st.find(mode, name)
        });
        if found.is_none() {
            self.done(tag, "BAD No mailbox selected")?;
        }
        Ok(found)
    }

    /// (sequence number, UID, message id) of the selected folder's messages in `set`.
    fn resolve(st: &State, fi: usize, set: &str, uid: bool) -> Vec<(u32, u32, u64)> {
        let shown = st.folders[fi].shown(st.folder_limit);
        let max_uid = shown.last().map_or(0, |x| x.0);
        let count = shown.len() as u32;
        let star = if uid { max_uid } else { count };
        let set = set
            .split(',')
            .map(|p| {
                p.split(':')
                    .map(|x| if x == "*" { star.to_string() } else { x.into() })
                    .collect::<Vec<_>>()
                    .join(":")
            })
            .collect::<Vec<_>>()
            .join(",");
        shown
            .into_iter()
            .enumerate()
            .map(|(i, (u, id))| (i as u32 + 1, u, id))
            .filter(|(seq, u, _)| in_set(&set, if uid { *u } else { *seq }))
            .collect()
    }

    fn search(&mut self, tag: &str, uid: bool, args: &[Tok]) -> io::Result<()> {
        let Some(fi) = self.selected_folder(tag)? else {
            return Ok(());
        };
        let mut args = args;
        if args.first().is_some_and(|a| a.upper() == "CHARSET") {
            args = &args[2.min(args.len())..];
        }
        let st = self.st();
        let all = Self::resolve(&st, fi, "1:*", true);
        let mut hits = Vec::new();
        for (seq, u, id) in all.iter().copied() {
            let ctx = SearchCtx {
                m: &st.msgs[&id],
                seq,
                uid: u,
                max_seq: all.len() as u32,
                max_uid: all.last().map_or(0, |x| x.1),
            };
            let mut it = args.iter();
            let mut ok = true;
            loop {
                match ctx.key(&mut it) {
                    Ok(Some(m)) => ok &= m,
                    Ok(None) => break,
                    Err(e) => {
                        drop(st);
                        return self.bad(tag, &format!("Could not parse command: {e}"));
                    }
                }
            }
            if ok {
                hits.push(if uid { u } else { seq });
            }
        }
        drop(st);
        let list: Vec<String> = hits.iter().map(u32::to_string).collect();
        self.line(format!("* SEARCH {}", list.join(" ")).trim_end())?;
        self.ok(tag, "SEARCH completed.")
    }

    fn fetch(&mut self, tag: &str, uid: bool, args: &[Tok]) -> io::Result<()> {
        let Some(fi) = self.selected_folder(tag)? else {
            return Ok(());
        };
        let set = args.first().and_then(Tok::text).unwrap_or_default();
        let items: Vec<String> = match args.get(1) {
            Some(Tok::List(l)) => l.iter().map(Tok::upper).collect(),
            Some(t) => vec![t.upper()],
            None => return self.bad(tag, "FETCH needs items"),
        };
        let mut items: Vec<String> = items
            .into_iter()
            .flat_map(|i| match i.as_str() {
                "ALL" => vec!["FLAGS".into(), "INTERNALDATE".into(), "RFC822.SIZE".into()],
                "FAST" => vec!["FLAGS".into(), "INTERNALDATE".into(), "RFC822.SIZE".into()],
                _ => vec![i],
            })
            .collect();
        if uid && !items.iter().any(|i| i == "UID") {
            items.insert(0, "UID".into());
        }
        for i in &items {
            let known = matches!(
                i.as_str(),
                "UID" | "FLAGS" | "INTERNALDATE" | "RFC822.SIZE" | "RFC822" | "RFC822.HEADER"
            ) || (self.gmail()
                && matches!(i.as_str(), "X-GM-MSGID" | "X-GM-THRID" | "X-GM-LABELS"))
                || section(i).is_some();
            if !known {
                return self.bad(tag, &format!("Unknown FETCH item {i}"));
            }
        }
        let moves_bytes = items
            .iter()
            .any(|i| i == "RFC822" || i == "RFC822.HEADER" || section(i).is_some());
        if moves_bytes {
            let mut st = self.st();
            if self
                .sh
                .cfg
                .download_limit
                .is_some_and(|l| st.download_used >= l)
            {
                st.quota_byes += 1;
                drop(st);
                if self.sh.cfg.quota_answer == QuotaAnswer::OverQuota {
                    return self.done(tag, OVERQUOTA);
                }
                self.line("* BYE Session expired, please login again.")?;
                self.closing = true;
                return Ok(());
            }
            let now = Instant::now();
            for t in st.slowdowns.iter_mut() {
                t.next_command.get_or_insert(now);
            }
        }
        let throttled = moves_bytes && self.slowed();
        let readonly = self.selected.as_ref().is_some_and(|s| s.1);
        let sh = self.sh.clone();
        let hits = Self::resolve(&sh.state.lock().unwrap(), fi, &set, uid);
        for (seq, u, id) in hits {
            if moves_bytes && self.expired() {
                // The session's time ran out in the middle of the transfer.
                self.st().expiry_byes += 1;
                self.line("* BYE Session expired, please login again.")?;
                self.closing = true;
                return Ok(());
            }
            // Each response is built under the lock and written without it.
            let mut st = sh.state.lock().unwrap();
            if !st.msgs.contains_key(&id) {
                continue;
            }
            let mut out = format!("* {seq} FETCH (").into_bytes();
            let mut first = true;
            let mut served = 0u64;
            let mut set_seen = false;
            for it in &items {
                if !first {
                    out.push(b' ');
                }
                first = false;
                let m = &st.msgs[&id];
                match it.as_str() {
                    "UID" => out.extend_from_slice(format!("UID {u}").as_bytes()),
                    "FLAGS" => {
                        out.extend_from_slice(format!("FLAGS ({})", m.flags.join(" ")).as_bytes())
                    }
                    "INTERNALDATE" => out.extend_from_slice(
                        format!("INTERNALDATE \"{}\"", format_internaldate(m.internaldate))
                            .as_bytes(),
                    ),
                    "RFC822.SIZE" => {
                        // Exchange's stored size, when asked to differ: a little more.
                        let n = m.bytes.len();
                        let n = if sh.cfg.stored_sizes {
                            n + n / 20 + 7
                        } else {
                            n
                        };
                        out.extend_from_slice(format!("RFC822.SIZE {n}").as_bytes())
                    }
                    "X-GM-MSGID" => {
                        out.extend_from_slice(format!("X-GM-MSGID {}", m.id).as_bytes())
                    }
                    "X-GM-THRID" => {
                        out.extend_from_slice(format!("X-GM-THRID {}", m.thrid).as_bytes())
                    }
                    "X-GM-LABELS" => {
                        let l: Vec<String> = m.labels.iter().map(|l| quoted(l)).collect();
                        out.extend_from_slice(format!("X-GM-LABELS ({})", l.join(" ")).as_bytes());
                    }
                    other => {
                        let (name, data, peek) = match other {
                            "RFC822" => ("RFC822".to_string(), &m.bytes[..], false),
                            "RFC822.HEADER" => {
                                let end =
                                    find(&m.bytes, b"\r\n\r\n").map_or(m.bytes.len(), |e| e + 4);
                                ("RFC822.HEADER".to_string(), &m.bytes[..end], true)
                            }
                            _ => {
                                let (sec, partial, peek) = section(other).unwrap();
                                let whole: &[u8] = match sec.as_str() {
                                    "" => &m.bytes,
                                    "HEADER" => {
                                        let end = find(&m.bytes, b"\r\n\r\n")
                                            .map_or(m.bytes.len(), |e| e + 4);
                                        &m.bytes[..end]
                                    }
                                    "TEXT" => {
                                        let start = find(&m.bytes, b"\r\n\r\n")
                                            .map_or(m.bytes.len(), |e| e + 4);
                                        &m.bytes[start..]
                                    }
                                    _ => &m.bytes,
                                };
                                match partial {
                                    Some((o, n)) => {
                                        let s = (o as usize).min(whole.len());
                                        let e = (o.saturating_add(n) as usize).min(whole.len());
                                        (format!("BODY[{sec}]<{o}>"), &whole[s..e], peek)
                                    }
                                    None => (format!("BODY[{sec}]"), whole, peek),
                                }
                            }
                        };
                        out.extend_from_slice(format!("{name} {{{}}}\r\n", data.len()).as_bytes());
                        out.extend_from_slice(data);
                        served += data.len() as u64;
                        set_seen |= !peek && !readonly;
                    }
                }
            }
            if set_seen && !has_flag(&st.msgs[&id].flags, "\\Seen") {
                st.msgs.get_mut(&id).unwrap().flags.push("\\Seen".into());
                let flags = st.msgs[&id].flags.join(" ");
                out.extend_from_slice(format!(" FLAGS ({flags})").as_bytes());
            }
            out.extend_from_slice(b")\r\n");
            st.served += served;
            st.download_used += served;
            drop(st);
            if throttled {
                let rate = sh.cfg.throttle_rate.max(1);
                thread::sleep(Duration::from_secs_f64(served as f64 / rate as f64));
            }
            self.send(&out)?;
        }
        if throttled {
            self.st().slowdowns.push(Throttle {
                at: Instant::now(),
                backoff: Duration::ZERO,
                next_command: None,
            });
            return self.done(tag, "OK Success [THROTTLED]");
        }
        self.ok(tag, "FETCH completed.")
    }

    /// Gmail: whether body FETCHes are slowed now (starting the slow-down once
    /// `throttle_after` bytes were served).
    fn slowed(&mut self) -> bool {
        let (Some(after), true) = (self.sh.cfg.throttle_after, self.gmail()) else {
            return false;
        };
        let window = self.sh.cfg.throttle_for;
        let mut st = self.st();
        if st.served < after {
            return false;
        }
        let started = *st.throttle_started.get_or_insert_with(Instant::now);
        started.elapsed() < window
    }

    fn store(&mut self, tag: &str, uid: bool, args: &[Tok]) -> io::Result<()> {
        let Some(fi) = self.selected_folder(tag)? else {
            return Ok(());
        };
        if self.selected.as_ref().is_some_and(|s| s.1) {
            return self.done(tag, "NO STORE in a read-only mailbox");
        }
        let set = args.first().and_then(Tok::text).unwrap_or_default();
        let what = args.get(1).map(Tok::upper).unwrap_or_default();
        let values: Vec<String> = match args.get(2) {
            Some(Tok::List(l)) => l.iter().filter_map(Tok::text).collect(),
            Some(t) => t.text().into_iter().collect(),
            None => return self.bad(tag, "STORE needs values"),
        };
        let (op, rest) = match what.as_bytes().first() {
            Some(b'+') => ('+', &what[1..]),
            Some(b'-') => ('-', &what[1..]),
            _ => ('=', what.as_str()),
        };
        let silent = rest.ends_with(".SILENT");
        let item = rest.trim_end_matches(".SILENT");
        let mode = self.sh.mode;
        let mut st = self.st();
        let hits = Self::resolve(&st, fi, &set, uid);
        match item {
            "FLAGS" => {
                let values: Vec<String> = match mode {
                    Mode::Gmail => values,
                    Mode::M365 => values
                        .iter()
                        .filter_map(|v| {
                            M365_PERMANENT_FLAGS
                                .iter()
                                .find(|p| p.eq_ignore_ascii_case(v))
                                .map(|p| p.to_string())
                        })
                        .collect(),
                };
                for (_, _, id) in &hits {
                    let m = st.msgs.get_mut(id).unwrap();
                    apply(&mut m.flags, op, &values);
                }
            }
            "X-GM-LABELS" if mode == Mode::Gmail => {
                let mut labels = Vec::new();
                let mut starred = None;
                for v in &values {
                    let sys = ["\\Inbox", "\\Sent", "\\Draft", "\\Important"]
                        .iter()
                        .find(|s| s.eq_ignore_ascii_case(v));
                    if let Some(s) = sys {
                        labels.push(s.to_string());
                    } else if v.eq_ignore_ascii_case("\\Starred") {
                        starred = Some(op != '-');
                    } else {
                        match st.label_folder(v) {
                            Some(Folder {
                                kind: Kind::Label(l),
                                ..
                            }) => labels.push(l.clone()),
                            _ => {
                                drop(st);
                                return self.done(
                                    tag,
                                    &format!("NO [NONEXISTENT] No folder {v} (Failure)"),
                                );
                            }
                        }
                    }
                }
                for (_, _, id) in &hits {
                    let m = st.msgs.get_mut(id).unwrap();
                    let mut cur: Vec<String> = m.labels.iter().cloned().collect();
                    apply(&mut cur, op, &labels);
                    m.labels = cur.into_iter().collect();
                    if let Some(on) = starred {
                        apply(
                            &mut m.flags,
                            if on { '+' } else { '-' },
                            &["\\Flagged".to_string()],
                        );
                    }
                }
            }
            _ => {
                drop(st);
                return self.bad(tag, &format!("Unknown STORE item {item}"));
            }
        }
        st.sync_views();
        let mut lines = Vec::new();
        if !silent {
            for (seq, u, id) in &hits {
                let m = &st.msgs[id];
                let data = if item == "FLAGS" {
                    format!("FLAGS ({})", m.flags.join(" "))
                } else {
                    let l: Vec<String> = m.labels.iter().map(|l| quoted(l)).collect();
                    format!("X-GM-LABELS ({})", l.join(" "))
                };
                lines.push(format!("* {seq} FETCH ({data} UID {u})"));
            }
        }
        drop(st);
        for l in lines {
            self.line(&l)?;
        }
        self.ok(tag, "STORE completed.")
    }

    /// Expunge the selected folder's `\Deleted` messages (those in `set` for UID EXPUNGE);
    /// `report`: send EXPUNGE responses.
    fn expunge(&mut self, set: Option<&str>, report: bool) -> io::Result<()> {
        let mode = self.sh.mode;
        let Some((name, readonly)) = self.selected.clone() else {
            return Ok(());
        };
        if readonly {
            return Ok(());
        }
        let mut st = self.st();
        let Some(fi) = st.find(mode, &name) else {
            return Ok(());
        };
        let all = Self::resolve(&st, fi, "1:*", true);
        let doomed: Vec<(u32, u64)> = all
            .iter()
            .filter(|(_, u, id)| {
                has_flag(&st.msgs[id].flags, "\\Deleted") && set.is_none_or(|s| in_set(s, *u))
            })
            .map(|(seq, _, id)| (*seq, *id))
            .collect();
        let kind = st.folders[fi].kind.clone();
        for (_, id) in &doomed {
            let remove = matches!(
                (&kind, mode),
                (Kind::Plain | Kind::Trash | Kind::Spam, _) | (Kind::Inbox, Mode::M365)
            );
            if remove {
                st.msgs.remove(id);
                continue;
            }
            let m = st.msgs.get_mut(id).unwrap();
            m.flags.retain(|f| !f.eq_ignore_ascii_case("\\Deleted"));
            match &kind {
                Kind::Inbox => {
                    m.labels.remove("\\Inbox");
                }
                Kind::Sent => {
                    m.labels.remove("\\Sent");
                }
                Kind::Drafts => {
                    m.labels.remove("\\Draft");
                }
                Kind::Important => {
                    m.labels.remove("\\Important");
                }
                Kind::Label(l) => {
                    m.labels.remove(l);
                }
                Kind::Starred => m.flags.retain(|f| !f.eq_ignore_ascii_case("\\Flagged")),
                Kind::AllMail => m.place = Place::Trash,
                _ => {}
            }
        }
        st.sync_views();
        drop(st);
        if report {
            for (n, (seq, _)) in doomed.iter().enumerate() {
                self.line(&format!("* {} EXPUNGE", seq - n as u32))?;
            }
        }
        Ok(())
    }
}

fn dedup(flags: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for f in flags {
        if !has_flag(&out, &f) {
            out.push(f);
        }
    }
    out
}

/// Apply a STORE operation (`+`, `-`, `=`) to `cur`.
fn apply(cur: &mut Vec<String>, op: char, values: &[String]) {
    match op {
        '+' => {
            for v in values {
                if !has_flag(cur, v) {
                    cur.push(v.clone());
                }
            }
        }
        '-' => cur.retain(|c| !has_flag(values, c)),
        _ => *cur = dedup(values.to_vec()),
    }
}

/// A `BODY[...]`/`BODY.PEEK[...]` item: (section, partial (offset, length), peek).
/// A section item: (section name, partial `(offset, length)`, peek).
type Section = (String, Option<(u64, u64)>, bool);

fn section(item: &str) -> Option<Section> {
    let (peek, rest) = if let Some(r) = item.strip_prefix("BODY.PEEK[") {
        (true, r)
    } else if let Some(r) = item.strip_prefix("BODY[") {
        (false, r)
    } else {
        return None;
    };
    let (sec, after) = rest.split_once(']')?;
    if !matches!(sec, "" | "HEADER" | "TEXT") {
        return None;
    }
    let partial = if after.is_empty() {
        None
    } else {
        let inner = after.strip_prefix('<')?.strip_suffix('>')?;
        let (o, n) = inner.split_once('.')?;
        Some((o.parse().ok()?, n.parse().ok()?))
    };
    Some((sec.to_string(), partial, peek))
}

/// IMAP LIST wildcard match: `*` matches anything, `%` anything but the separator `/`.
fn wildmatch(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| wildmatch(&p[1..], &s[i..])),
        Some(b'%') => (0..=s.len())
            .take_while(|&i| i == 0 || s[i - 1] != b'/')
            .any(|i| wildmatch(&p[1..], &s[i..])),
        Some(c) => s.first() == Some(c) && wildmatch(&p[1..], &s[1..]),
    }
}

/// Days since the epoch of a search date `1-Jan-2024`.
fn search_day(s: &str) -> Option<i64> {
    let mut p = s.split('-');
    let d: i64 = p.next()?.parse().ok()?;
    let mon = p.next()?;
    let y: i64 = p.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let m = MONTHS.iter().position(|x| x.eq_ignore_ascii_case(mon))? as i64 + 1;
    Some(days_from_civil(y, m, d))
}

struct SearchCtx<'a> {
    m: &'a Msg,
    seq: u32,
    uid: u32,
    max_seq: u32,
    max_uid: u32,
}

impl SearchCtx<'_> {
    fn header_has(&self, field: &str, value: &str) -> bool {
        let end = find(&self.m.bytes, b"\r\n\r\n").unwrap_or(self.m.bytes.len());
        let head = String::from_utf8_lossy(&self.m.bytes[..end]).to_ascii_lowercase();
        let field = format!("{}:", field.to_ascii_lowercase());
        let value = value.to_ascii_lowercase();
        head.split("\r\n")
            .any(|l| l.starts_with(&field) && l[field.len()..].contains(&value))
    }

    /// Evaluate the next search key; `Ok(None)` at the end.
    fn key(&self, it: &mut std::slice::Iter<'_, Tok>) -> Result<Option<bool>, String> {
        let Some(t) = it.next() else { return Ok(None) };
        let mut arg = |what: &str| -> Result<String, String> {
            it.next()
                .and_then(Tok::text)
                .ok_or(format!("{what} needs an argument"))
        };
        let flag = |f: &str| has_flag(&self.m.flags, f);
        let day = self.m.internaldate.div_euclid(86_400);
        if let Tok::List(l) = t {
            let mut inner = l.iter();
            let mut all = true;
            while let Some(m) = self.key(&mut inner)? {
                all &= m;
            }
            return Ok(Some(all));
        }
        let k = t.upper();
        let set_like = |s: &str| s.bytes().all(|b| b.is_ascii_digit() || b":,*".contains(&b));
        let star = |s: &str, max: u32| s.replace('*', &max.to_string());
        Ok(Some(match k.as_str() {
            "ALL" => true,
            "SEEN" => flag("\\Seen"),
            "UNSEEN" => !flag("\\Seen"),
            "FLAGGED" => flag("\\Flagged"),
            "UNFLAGGED" => !flag("\\Flagged"),
            "DELETED" => flag("\\Deleted"),
            "UNDELETED" => !flag("\\Deleted"),
            "ANSWERED" => flag("\\Answered"),
            "UNANSWERED" => !flag("\\Answered"),
            "DRAFT" => flag("\\Draft"),
            "UNDRAFT" => !flag("\\Draft"),
            "NEW" | "RECENT" => false,
            "OLD" => true,
            "KEYWORD" => flag(&arg("KEYWORD")?),
            "UNKEYWORD" => !flag(&arg("UNKEYWORD")?),
            "SINCE" | "SENTSINCE" | "BEFORE" | "SENTBEFORE" | "ON" | "SENTON" => {
                let d = arg(&k)?;
                let d = search_day(&d).ok_or(format!("bad date {d}"))?;
                match k.trim_start_matches("SENT") {
                    "SINCE" => day >= d,
                    "BEFORE" => day < d,
                    _ => day == d,
                }
            }
            "LARGER" => {
                self.m.bytes.len() as u64 > arg("LARGER")?.parse().map_err(|_| "LARGER n")?
            }
            "SMALLER" => {
                (self.m.bytes.len() as u64) < arg("SMALLER")?.parse().map_err(|_| "SMALLER n")?
            }
            "UID" => in_set(&star(&arg("UID")?, self.max_uid), self.uid),
            "X-GM-MSGID" => self.m.id.to_string() == arg("X-GM-MSGID")?,
            // Only the `rfc822msgid:` operator of Gmail's search syntax.
            "X-GM-RAW" => {
                let q = arg("X-GM-RAW")?;
                let want = q
                    .strip_prefix("rfc822msgid:")
                    .ok_or(format!("X-GM-RAW {q:?}: only rfc822msgid: is emulated"))?;
                let bare = |v: &str| {
                    v.trim()
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_string()
                };
                message_id(&self.m.bytes).is_some_and(|id| bare(&id) == bare(want))
            }
            "X-GM-THRID" => self.m.thrid.to_string() == arg("X-GM-THRID")?,
            "SUBJECT" | "FROM" | "TO" | "CC" | "BCC" => {
                let v = arg(&k)?;
                self.header_has(&k, &v)
            }
            "HEADER" => {
                let f = arg("HEADER")?;
                let v = arg("HEADER")?;
                self.header_has(&f, &v)
            }
            "NOT" => !self.key(it)?.ok_or("NOT needs a key")?,
            "OR" => {
                let a = self.key(it)?.ok_or("OR needs two keys")?;
                let b = self.key(it)?.ok_or("OR needs two keys")?;
                a || b
            }
            s if set_like(s) => in_set(&star(s, self.max_seq), self.seq),
            other => return Err(format!("unsupported search key {other}")),
        }))
    }
}
