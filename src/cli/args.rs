//! Command-line definitions. The connection option names (`--host1`, `--user1`, `--passfile1`,
//! ...) follow imapsync's, which many of our users already know.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "imapferry",
    version,
    about = "Move whole IMAP mailboxes between servers, through a local verifiable store"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Mirror the account on host1 into the store (creates the store when missing).
    Pull(Box<PullArgs>),
    /// Show what the store holds, per folder.
    Status(StatusArgs),
    /// Replay the store into the account on host2: every message once, exact, with flags.
    Push(Box<PushArgs>),
    /// imapsync's command line in one shot: pull from host1, then push to host2, through a
    /// store kept for the next run (see docs/imapsync.md).
    Sync(Box<SyncArgs>),
    /// Compare host2 with the store, folder by folder (exit 3 when host2 lacks something).
    Check(Box<CheckArgs>),
    /// Many accounts: `fleet run` migrates a list of account pairs (imapsync's file format),
    /// resumably; `fleet status` shows where each stands.
    Fleet(FleetArgs),
    /// Carry a store on a disk: `bundle create` writes files, `bundle apply` reads them.
    Bundle(BundleArgs),
    /// Write the store's mail as Maildir++ or mbox files any mail program reads.
    Export(ExportArgs),
    /// Bring a local Maildir tree or mbox file into a store, to push it like pulled mail.
    Import(ImportArgs),
    /// Re-hash the store's objects and check them against the index (exit 3 on any problem).
    Verify(VerifyArgs),
    /// Remove objects nothing refers to (with --yes; without, say what it would free).
    Gc(GcArgs),
}

/// How to secure a connection.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsArg {
    /// TLS from the first byte (usually port 993).
    Imaps,
    /// Plaintext, then STARTTLS before authenticating; refused when the server does not offer it.
    Starttls,
    /// No encryption at all (warned against unless the host is a loopback address).
    None,
}

/// Which server a set of connection options is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The source: `--host1`, `--user1`, ...
    Host1,
    /// The destination: `--host2`, `--user2`, ...
    Host2,
}

impl Side {
    /// The suffix of this side's options: "1" or "2".
    pub fn n(self) -> &'static str {
        match self {
            Side::Host1 => "1",
            Side::Host2 => "2",
        }
    }
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "host{}", self.n())
    }
}

/// Connection options of one side, independent of its number.
#[derive(Debug, Clone)]
pub struct ConnArgs {
    /// Used in messages and to name the options.
    pub side: Side,
    pub host: String,
    pub port: Option<u16>,
    pub tls: Option<TlsArg>,
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    pub user: String,
    pub passfile: Option<PathBuf>,
    pub password: Option<String>,
    pub oauth2_token_file: Option<PathBuf>,
    /// `--oauth2-refresh1 FILE`: the token endpoint, client and refresh token to fetch access
    /// tokens with (docs/oauth2.md).
    pub oauth2_refresh: Option<PathBuf>,
    /// imapsync's switches: `--ssl1` (implicit TLS), `--nossl1`, `--notls1`.
    pub ssl: bool,
    pub nossl: bool,
    pub notls: bool,
    /// imapsync's `--timeout1`: this side's deadline, instead of `--timeout`.
    pub timeout: Option<u64>,
    /// imapsync's `--authuser1`: log in as this administrator to act as the user.
    pub authuser: Option<String>,
    /// `--provider1/2`: the provider's rules, instead of recognising them.
    pub provider: Option<imapferry::provider::Provider>,
}

/// Declares the connection options of one side with its numeric suffix, so the two sides
/// cannot drift apart.
macro_rules! conn_args {
    ($name:ident, $side:literal, $sidev:expr, $host:literal, $port:literal, $tls:literal, $insecure:literal,
     $ca:literal, $user:literal, $passfile:literal, $password:literal, $oauth:literal,
     $refresh:literal,
     $ssl:literal, $nossl:literal, $notls:literal, $timeout:literal, $env:literal,
     $authuser:literal, $provider:literal) => {
        #[derive(Args, Debug, Clone)]
        pub struct $name {
            #[arg(id = $host, long = $host, value_name = "HOST",
                  help = concat!("IMAP server of ", $side, ": a name or an address (the port goes in its own option)"))]
            pub host: String,
            /// Port (default 993 with implicit TLS, 143 otherwise)
            #[arg(id = $port, long = $port, value_name = "N")]
            pub port: Option<u16>,
            /// imaps, starttls or none (default: imaps on port 993, else starttls); alone, as
            /// imapsync's switch: starttls
            #[arg(id = $tls, long = $tls, value_enum, value_name = "MODE", num_args = 0..=1,
                  default_missing_value = "starttls")]
            pub tls: Option<TlsArg>,
            /// Implicit TLS (imapsync's switch; the same as the TLS option with imaps)
            #[arg(id = $ssl, long = $ssl, conflicts_with = $tls)]
            pub ssl: bool,
            /// No implicit TLS (imapsync's switch)
            #[arg(id = $nossl, long = $nossl, conflicts_with = $ssl)]
            pub nossl: bool,
            /// No STARTTLS (imapsync's switch): with no implicit TLS either, no encryption
            #[arg(id = $notls, long = $notls)]
            pub notls: bool,
            /// Seconds for every connect and read on this side (instead of --timeout)
            #[arg(id = $timeout, long = $timeout, value_name = "SECS",
                  value_parser = clap::value_parser!(u64).range(1..))]
            pub timeout: Option<u64>,
            /// Log in as this administrator (with its password) to act as the user: proxy
            /// authentication with AUTHENTICATE PLAIN, as imapsync's option of that name
            #[arg(id = $authuser, long = $authuser, value_name = "ADMIN")]
            pub authuser: Option<String>,
            /// Do not verify the server's TLS certificate (only for servers you trust by other means)
            #[arg(id = $insecure, long = $insecure)]
            pub insecure: bool,
            /// Trust this CA certificate (PEM) in addition to the system's
            #[arg(id = $ca, long = $ca, value_name = "PEM")]
            pub ca_file: Option<PathBuf>,
            /// User name to log in with
            #[arg(id = $user, long = $user, value_name = "USER")]
            pub user: String,
            #[arg(id = $passfile, long = $passfile, value_name = "FILE",
                  help = concat!("Read the password from this file (first line); without a password option, the environment variable ", $env, " is used, else a prompt"))]
            pub passfile: Option<PathBuf>,
            /// Password on the command line (visible to other users of this machine: prefer
            /// the passfile or the environment variable)
            #[arg(id = $password, long = $password, value_name = "PASSWORD", hide_default_value = true)]
            pub password: Option<String>,
            /// Authenticate with AUTHENTICATE XOAUTH2, the token read from this file (re-read on
            /// every connection)
            #[arg(id = $oauth, long = $oauth, value_name = "FILE")]
            pub oauth2_token_file: Option<PathBuf>,
            /// The provider's rules (gmail, m365 or generic); by default recognised from the
            /// server's capabilities and greeting (see docs/providers.md)
            #[arg(id = $provider, long = $provider, value_name = "NAME")]
            pub provider: Option<imapferry::provider::Provider>,
            /// Authenticate with AUTHENTICATE XOAUTH2, fetching access tokens (and new ones as
            /// they expire) with the refresh token in this file: `key = value` lines
            /// token_endpoint, client_id, client_secret (optional), refresh_token, scope
            /// (optional); see docs/oauth2.md
            #[arg(id = $refresh, long = $refresh, value_name = "FILE")]
            pub oauth2_refresh: Option<PathBuf>,
        }

        impl From<$name> for ConnArgs {
            fn from(a: $name) -> ConnArgs {
                ConnArgs {
                    side: $sidev,
                    host: a.host,
                    port: a.port,
                    tls: a.tls,
                    insecure: a.insecure,
                    ca_file: a.ca_file,
                    user: a.user,
                    passfile: a.passfile,
                    password: a.password,
                    oauth2_token_file: a.oauth2_token_file,
                    oauth2_refresh: a.oauth2_refresh,
                    ssl: a.ssl,
                    nossl: a.nossl,
                    notls: a.notls,
                    timeout: a.timeout,
                    authuser: a.authuser,
                    provider: a.provider,
                }
            }
        }
    };
}

conn_args!(
    Host1Args,
    "host1",
    Side::Host1,
    "host1",
    "port1",
    "tls1",
    "insecure1",
    "ca-file1",
    "user1",
    "passfile1",
    "password1",
    "oauth2-token-file1",
    "oauth2-refresh1",
    "ssl1",
    "nossl1",
    "notls1",
    "timeout1",
    "IMAPFERRY_PASSWORD1",
    "authuser1",
    "provider1"
);

conn_args!(
    Host2Args,
    "host2",
    Side::Host2,
    "host2",
    "port2",
    "tls2",
    "insecure2",
    "ca-file2",
    "user2",
    "passfile2",
    "password2",
    "oauth2-token-file2",
    "oauth2-refresh2",
    "ssl2",
    "nossl2",
    "notls2",
    "timeout2",
    "IMAPFERRY_PASSWORD2",
    "authuser2",
    "provider2"
);

/// Options shared by commands that print a run summary.
#[derive(Args, Debug, Clone)]
pub struct OutputArgs {
    /// Print a machine-readable summary (JSON) on stdout
    #[arg(long)]
    pub json: bool,
    /// Print only errors and the final summary
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail; twice (-vv) shows the IMAP commands (never passwords)
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// How to treat the network: deadlines and retries.
#[derive(Args, Debug, Clone)]
pub struct NetArgs {
    /// Seconds to wait for every connect and read before giving up on it
    #[arg(long, value_name = "SECS", default_value_t = 120,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
    /// Consecutive failures (dropped or stalled connections, throttling) to retry with backoff
    /// before giving up; any progress resets the count
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub retries: u32,
    /// Do not use COMPRESS=DEFLATE even when the server offers it
    #[arg(long = "no-compress")]
    pub no_compress: bool,
    /// Cap the transfer rate at N bytes per second in each direction (all connections
    /// together); K, M, G are binary units (e.g. 1M)
    #[arg(long = "max-bytes-per-second", visible_alias = "maxbytespersecond", value_name = "N",
          value_parser = parse_rate)]
    pub max_bytes_per_second: Option<u64>,
}

/// Declares a daily byte budget option of one side.
macro_rules! budget_args {
    ($name:ident, $long:literal, $help:literal) => {
        #[derive(Args, Debug, Clone, Default)]
        pub struct $name {
            #[arg(long = $long, value_name = "SIZE", value_parser = parse_budget, help = $help)]
            pub max_bytes_per_day: Option<u64>,
        }
    };
}

budget_args!(
    Budget1Args,
    "max-bytes-per-day1",
    "Download at most SIZE of messages from host1 in any 24 hours, across runs (K, M, G: \
     binary units); past it the run stops cleanly with exit 4 and says when to run again. \
     Default on Gmail: 2000 MB, 80 % of Google's 2500 MB, as the user's other clients count \
     too and passing it suspends IMAP for up to a day"
);

budget_args!(
    Budget2Args,
    "max-bytes-per-day2",
    "Upload at most SIZE of messages to host2 in any 24 hours, across runs (K, M, G: binary \
     units); past it the run stops cleanly with exit 4 and says when to run again. Default \
     on Gmail: 400 MB, 80 % of Google's 500 MB"
);

/// Which folders a run covers.
#[derive(Args, Debug, Clone)]
pub struct FolderArgs {
    /// Only this folder (UTF-8 path with `/` between levels, e.g. `Archive/2024`); repeatable
    #[arg(long = "folder", value_name = "NAME")]
    pub folders: Vec<String>,
    /// Only folders whose path matches this regular expression; repeatable
    #[arg(long = "include", value_name = "REGEX")]
    pub includes: Vec<String>,
    /// Leave out folders whose path matches this regular expression; repeatable
    #[arg(long = "exclude", value_name = "REGEX")]
    pub excludes: Vec<String>,
}

impl FolderArgs {
    /// The folders these options select.
    /// The folders asked for; a pattern that is not a valid regex is a usage error.
    pub fn selection(&self) -> anyhow::Result<imapferry::folders::Selection> {
        imapferry::folders::Selection::new(&self.folders, &self.includes, &self.excludes)
            .map_err(|e| super::exit::usage(format!("{e:#}")))
    }
}

#[derive(Args, Debug)]
pub struct PullArgs {
    #[command(flatten)]
    pub host1: Host1Args,
    /// The store directory (created when missing)
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    #[command(flatten)]
    pub folders: FolderArgs,
    /// Connections to host1; folders are spread over them
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    /// Re-hash every object the pulled folders use and fetch missing or damaged ones again
    /// (what `imapferry verify` lists)
    #[arg(long)]
    pub repair: bool,
    /// The store mirrors this user under another host name (an alias, a new name at
    /// cutover): take it, and record the new name
    #[arg(long)]
    pub rebind: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    #[command(flatten)]
    pub budget1: Budget1Args,
    /// Say what would be fetched, changed and expunged, per folder; change nothing
    #[arg(long = "dry-run", visible_alias = "dry")]
    pub dry_run: bool,
    #[command(flatten)]
    pub login: LoginArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub tuning: PullTuning,
}

/// Knobs for benchmarks and tests; the defaults suit real links.
#[derive(Args, Debug, Clone)]
pub struct PullTuning {
    /// Message bytes asked for by one UID FETCH command
    #[arg(long, hide = true, default_value_t = 4 << 20)]
    pub batch_bytes: u64,
    /// UID FETCH commands in flight
    #[arg(long, hide = true, default_value_t = 4)]
    pub depth: usize,
    /// Commit the index at least every N new messages
    #[arg(long, hide = true, default_value_t = 1000)]
    pub commit_messages: usize,
    /// Fetch messages above this size in chunks
    #[arg(long, hide = true, default_value_t = 8 << 20)]
    pub chunk_threshold: u64,
    /// Chunk size for large messages
    #[arg(long, hide = true, default_value_t = 1 << 20)]
    pub chunk_bytes: u64,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The store directory
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

/// Where store folders go on host2 (push and check must agree).
#[derive(Args, Debug, Clone)]
pub struct MapArgs {
    /// Put store folder FROM (and its subfolders) at TO on host2, UTF-8 paths with `/`,
    /// e.g. 'Sent=Sent Items'; repeatable
    #[arg(long = "folder-map", value_name = "FROM=TO")]
    pub folder_map: Vec<String>,
    /// Put everything under this host2 folder (INBOX becomes PATH/INBOX); turns automap off
    #[arg(long = "dest-root", visible_alias = "subfolder2", value_name = "PATH")]
    pub dest_root: Option<String>,
    /// Do not send special-use folders (\Sent, \Drafts, ...) to host2's folder of the same role
    #[arg(long = "no-automap", visible_alias = "noautomap")]
    pub no_automap: bool,
    /// Send special-use folders to host2's folder of the same role (the default; imapsync's
    /// switch)
    #[arg(long = "automap", conflicts_with = "no_automap")]
    pub automap: bool,
    /// Rewrite each host2 path (UTF-8, `/` between levels) with s/PATTERN/REPLACEMENT/FLAGS,
    /// after the options above; repeatable, applied in order
    #[arg(long = "regextrans2", value_name = "s/…/…/")]
    pub regextrans2: Vec<String>,
    /// A store pulled from Gmail, pushed elsewhere: `copies` (each label folder gets its own
    /// copy, the default, as imapsync does) or `first-folder` (each message only in the first
    /// of its label folders, All Mail last); see docs/providers.md
    #[arg(long = "gmail-labels", value_name = "POLICY", default_value = "copies")]
    pub gmail_labels: imapferry::compare::targets::GmailLabels,
}

/// Which new messages a pull takes (imapsync's options): the others are left for a later pull
/// without them.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only messages received less than DAYS days ago (INTERNALDATE)
    #[arg(long, value_name = "DAYS")]
    pub maxage: Option<u32>,
    /// Only messages received more than DAYS days ago
    #[arg(long, value_name = "DAYS")]
    pub minage: Option<u32>,
    /// Leave out messages of SIZE bytes or more (K, M, G: binary units)
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub maxsize: Option<u64>,
    /// Leave out messages of SIZE bytes or less
    #[arg(long, value_name = "SIZE", value_parser = parse_bytes)]
    pub minsize: Option<u64>,
    /// Only messages host1 finds with these IMAP SEARCH criteria (e.g. 'SENTSINCE 1-Jan-2024')
    #[arg(long, value_name = "CRITERIA", value_parser = parse_search)]
    pub search: Option<imapferry::imap::SearchKey>,
}

fn parse_search(s: &str) -> Result<imapferry::imap::SearchKey, String> {
    imapferry::imap::SearchKey::parse(s).map_err(|e| format!("{e:#}"))
}

impl FilterArgs {
    pub fn filter(&self) -> imapferry::pull::plan::MessageFilter {
        imapferry::pull::plan::MessageFilter {
            max_age_days: self.maxage,
            min_age_days: self.minage,
            max_size: self.maxsize,
            min_size: self.minsize,
        }
    }
}

#[derive(Args, Debug)]
pub struct PushArgs {
    #[command(flatten)]
    pub host2: Host2Args,
    /// The store directory (made by `imapferry pull`)
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    #[command(flatten)]
    pub folders: FolderArgs,
    #[command(flatten)]
    pub map: MapArgs,
    /// Make each pushed folder on host2 match the store: delete there what the store's folder
    /// no longer holds
    #[arg(long)]
    pub delete2: bool,
    /// Print the plan (folders to create, messages and bytes per folder) and change nothing
    #[arg(long = "dry-run", visible_alias = "dry")]
    pub dry_run: bool,
    /// Create the folders only; send no message
    #[arg(long)]
    pub justfolders: bool,
    #[command(flatten)]
    pub budget2: Budget2Args,
    #[command(flatten)]
    pub message: MessageArgs,
    /// Connections to host2; folders are spread over them
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub login: LoginArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub tuning: PushTuning,
}

/// What host2 takes of a message, and the changes to a message made only when asked (the store
/// keeps every message as host1 served it).
#[derive(Args, Debug, Clone, Default)]
pub struct MessageArgs {
    /// The largest message host2 takes (K, M, G: binary units): larger ones are listed, never
    /// sent. Default: host2's APPENDLIMIT, or on Microsoft 365 35 MB (a tenant can raise a
    /// mailbox's limit to 150 MB)
    #[arg(long = "max-message-size2", value_name = "SIZE", value_parser = parse_bytes)]
    pub max_message_size2: Option<u64>,
    /// Send a message with lines longer than host2 takes (Microsoft 365: 10500 characters)
    /// with those lines broken, instead of listing it unsent; each is reported, the store keeps
    /// the original (imapsync's --regexmess for Office 365)
    #[arg(long = "rewrap-long-lines")]
    pub rewrap_long_lines: bool,
    /// Send messages without their read-receipt request (Disposition-Notification-To becomes
    /// X-Disposition-Notification-To) and without $MDNSent, so host2 does not send receipts
    /// again; each changed message is reported (imapsync's --disarmreadreceipts)
    #[arg(long = "disarm-read-receipts", visible_alias = "disarmreadreceipts")]
    pub disarm_read_receipts: bool,
}

impl MessageArgs {
    pub fn apply(&self, opts: &mut imapferry::push::PushOptions) {
        opts.max_message_size = self.max_message_size2;
        opts.rewrap_long_lines = self.rewrap_long_lines;
        opts.disarm_read_receipts = self.disarm_read_receipts;
    }
}

/// `imapferry sync`: imapsync's command line, one shot (pull, then push, through a store).
#[derive(Args, Debug)]
pub struct SyncArgs {
    #[command(flatten)]
    pub host1: Host1Args,
    #[command(flatten)]
    pub host2: Host2Args,
    /// The store between the two (default: one under $XDG_DATA_HOME/imapferry/, or
    /// ~/.local/share/imapferry/, named after both accounts, so a re-run continues)
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    #[command(flatten)]
    pub folders: FolderArgs,
    #[command(flatten)]
    pub map: MapArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Make each folder on host2 match host1: delete there what host1 no longer holds
    #[arg(long)]
    pub delete2: bool,
    /// Change nothing on host2: pull (into the store, imapferry's own), then print what push
    /// would do
    #[arg(long = "dry", visible_alias = "dry-run")]
    pub dry_run: bool,
    /// Create the folders only; copy no message
    #[arg(long)]
    pub justfolders: bool,
    #[command(flatten)]
    pub budget1: Budget1Args,
    #[command(flatten)]
    pub budget2: Budget2Args,
    #[command(flatten)]
    pub message: MessageArgs,
    /// Connections to each server
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub jobs: usize,
    #[command(flatten)]
    pub login: LoginArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// imapsync's `--justlogin`.
#[derive(Args, Debug, Clone, Default)]
pub struct LoginArgs {
    /// Connect and log in (checking TLS), log out and stop: nothing else is done, the store is
    /// not opened (imapsync's option; --justconnect does the same)
    #[arg(long = "justlogin", visible_alias = "justconnect")]
    pub just_login: bool,
}

/// Knobs for benchmarks and tests; the defaults suit real links.
#[derive(Args, Debug, Clone)]
pub struct PushTuning {
    /// Most message bytes in one APPEND batch (one intent transaction each)
    #[arg(long = "append-batch-bytes", hide = true, default_value_t = 8 << 20)]
    pub batch_bytes: u64,
    /// Most messages in one APPEND batch
    #[arg(long = "append-batch-messages", hide = true, default_value_t = 500)]
    pub batch_messages: usize,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    #[command(flatten)]
    pub host2: Host2Args,
    /// The store directory
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    #[command(flatten)]
    pub folders: FolderArgs,
    #[command(flatten)]
    pub map: MapArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Args, Debug)]
pub struct BundleArgs {
    #[command(subcommand)]
    pub command: BundleCommand,
}

#[derive(Subcommand, Debug)]
pub enum BundleCommand {
    /// Write what another store needs into FILE: everything the first time, afterwards what
    /// changed since this store's previous bundle.
    Create(BundleCreateArgs),
    /// Check bundles completely, then merge them into a store (created when missing).
    Apply(BundleApplyArgs),
    /// List the bundles a store made and applied.
    List(StoreOnlyArgs),
}

#[derive(Args, Debug)]
pub struct BundleCreateArgs {
    /// The store to bundle
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// The bundle file to write (must not exist)
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// A full bundle even when an earlier one exists
    #[arg(long)]
    pub full: bool,
    /// Split into volumes FILE.001, FILE.002, … each smaller than SIZE (K, M, G = binary
    /// units; 4G fits FAT32)
    #[arg(long = "max-size", value_name = "SIZE", value_parser = parse_volume_size)]
    pub max_size: Option<u64>,
    /// Print a machine-readable summary (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct BundleApplyArgs {
    /// The store to bring up to date (created when missing)
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Bundle files (for volumes: FILE, FILE.001 or any one volume); applied oldest first
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Print a machine-readable summary (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct StoreOnlyArgs {
    /// The store directory
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The store to export
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// maildir (Maildir++) or mbox (mboxrd, one file per folder)
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Output directory (new or empty)
    #[arg(long, value_name = "PATH")]
    pub out: PathBuf,
    /// Only this folder (UTF-8 path with `/`, e.g. `Archive/2024`); repeatable
    #[arg(long = "folder", value_name = "NAME")]
    pub folders: Vec<String>,
    /// Print a machine-readable summary (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["maildir", "mbox"])))]
pub struct ImportArgs {
    /// The store to import into (created when missing; not one made by pull)
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// A Maildir tree (Maildir++ or nested maildirs)
    #[arg(long, value_name = "PATH")]
    pub maildir: Option<PathBuf>,
    /// An mbox file (mboxrd)
    #[arg(long, value_name = "FILE")]
    pub mbox: Option<PathBuf>,
    /// mbox: the folder to import into (default: the file name). Maildir: the folder the root
    /// becomes, subfolders below it (default: INBOX, subfolders at the top)
    #[arg(long, value_name = "NAME")]
    pub folder: Option<String>,
    /// Print a machine-readable summary (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The store to check
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Re-hash only about N % of the objects, chosen at random (e.g. 10%); sizes are checked
    /// for all
    #[arg(long, value_name = "N%", value_parser = parse_percent)]
    pub sample: Option<f64>,
    /// Print a machine-readable report (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct GcArgs {
    /// The store to clean
    #[arg(long, value_name = "DIR")]
    pub store: PathBuf,
    /// Remove them; without it, only say what would be freed
    #[arg(long)]
    pub yes: bool,
    /// Print a machine-readable report (JSON) on stdout
    #[arg(long)]
    pub json: bool,
}

/// `--sample 10%`: a share of the objects, above 0 and at most 100.
/// `4G`, `650M`, `100k`, `12345`: a byte count, binary units (K = 1024).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let bad =
        || format!("{s:?} is not a size: use a number, optionally with K, M, G or T (e.g. 4G)");
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(bad()),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    // imapsync's scripts write Perl's `20_000`.
    let n: u64 = num.trim().replace('_', "").parse().map_err(|_| bad())?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// A bundle volume size: at least 4K.
fn parse_volume_size(s: &str) -> Result<u64, String> {
    let v = parse_bytes(s)?;
    if v < 4096 {
        return Err(format!("{s:?}: volumes must be at least 4K"));
    }
    Ok(v)
}

/// A daily byte budget: at least one byte.
fn parse_budget(s: &str) -> Result<u64, String> {
    match parse_bytes(s)? {
        0 => {
            Err("0: a daily budget must be at least 1 byte (leave the option out for none)".into())
        }
        v => Ok(v),
    }
}

/// A rate cap: at least one byte per second.
fn parse_rate(s: &str) -> Result<u64, String> {
    match parse_bytes(s)? {
        0 => Err("0: a rate cap must be at least 1 byte per second".into()),
        v => Ok(v),
    }
}

fn parse_percent(s: &str) -> Result<f64, String> {
    let n: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage such as 10%"))?;
    if n > 0.0 && n <= 100.0 {
        Ok(n)
    } else {
        Err(format!(
            "{s:?}: the sample must be above 0% and at most 100%"
        ))
    }
}

/// `export --format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Maildir++ (Dovecot, mbsync, mutt, …)
    Maildir,
    /// One mboxrd file per folder
    Mbox,
}

impl From<ExportFormat> for imapferry::export::Format {
    fn from(f: ExportFormat) -> Self {
        match f {
            ExportFormat::Maildir => imapferry::export::Format::Maildir,
            ExportFormat::Mbox => imapferry::export::Format::Mbox,
        }
    }
}

#[derive(Args, Debug)]
pub struct FleetArgs {
    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(Subcommand, Debug)]
pub enum FleetCommand {
    /// Run a phase for every account of the file, several at once, each into its own store.
    Run(FleetRunArgs),
    /// Where each account stands (after the fleet process is gone too).
    Status(FleetStatusArgs),
}

/// Which phase a fleet runs.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Pull,
    Push,
    Sync,
}

impl Phase {
    pub fn command(self) -> &'static str {
        match self {
            Phase::Pull => "pull",
            Phase::Push => "push",
            Phase::Sync => "sync",
        }
    }
}

#[derive(Args, Debug)]
pub struct FleetRunArgs {
    /// One account pair a line: host1;user1;password1;host2;user2;password2;[options];
    /// (a password may be file:PATH or env:NAME)
    #[arg(value_name = "ACCOUNTS")]
    pub accounts: PathBuf,
    /// The directory of the accounts' stores (one each, named after host1 and user1)
    #[arg(long, value_name = "DIR")]
    pub stores: PathBuf,
    /// sync pulls then pushes each account; pull or push runs that phase only
    #[arg(long, value_enum, default_value = "sync")]
    pub phase: Phase,
    /// Accounts at once (default: from the cores and the memory available, and said)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub parallel: Option<u64>,
    /// Run only the accounts of shard K of N (1 ≤ K ≤ N), by host1 and user1: stable when
    /// other lines are added, removed or moved
    #[arg(long, value_name = "K/N", value_parser = parse_shard)]
    pub shard: Option<(u32, u32)>,
    /// Most connections to any one server across all accounts (servers limit them per IP)
    #[arg(
        long = "max-connections-per-host",
        value_name = "M",
        default_value_t = 8
    )]
    pub max_per_host: usize,
    /// Connections each account opens to each server
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub jobs: usize,
    #[command(flatten)]
    pub net: NetArgs,
    /// Print the accounts' records as JSON on stdout at the end
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct FleetStatusArgs {
    /// Stores directories of fleet runs (repeatable: shards run on several machines)
    #[arg(long, value_name = "DIR", required = true)]
    pub stores: Vec<PathBuf>,
    /// JSON on stdout instead of a table
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML page of the table (sortable, a bar per account)
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// `K/N` with 1 ≤ K ≤ N.
fn parse_shard(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?}: give the shard as K/N with 1 <= K <= N, e.g. 2/5");
    let (k, n) = s.split_once('/').ok_or_else(bad)?;
    let (k, n): (u32, u32) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if k == 0 || n == 0 || k > n {
        return Err(bad());
    }
    Ok((k, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_rates_take_binary_suffixes() {
        assert_eq!(parse_bytes("4G"), Ok(4 << 30));
        assert_eq!(parse_bytes("650m"), Ok(650 << 20));
        assert_eq!(parse_bytes("8192"), Ok(8192));
        assert_eq!(parse_bytes("20_000"), Ok(20_000));
        assert!(parse_bytes("4X").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("99999999999T").is_err());
        assert_eq!(parse_rate("1M"), Ok(1 << 20));
        assert!(parse_rate("0").is_err());
        assert!(parse_volume_size("1").is_err());
        assert_eq!(parse_volume_size("4K"), Ok(4096));
    }
}
