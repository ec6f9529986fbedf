//! Throwaway Dovecot 2.3 servers for integration tests.
//!
//! Every [`Dovecot::start`] runs its own `dovecot` master with its own configuration, base,
//! state and log paths, all inside a fresh temporary directory, listening on free loopback
//! ports. Instances are fully independent, so tests in one binary can run them in parallel.
//! Dropping the [`Dovecot`] stops the server.

use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The IMAP server binary; its absence means `dovecot-imapd` is not installed.
const IMAP_BINARY: &str = "/usr/lib/dovecot/imap";

/// How long to wait for a freshly started server to greet.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Hierarchy style of the personal namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceStyle {
    /// Separator `/`, no prefix (Dovecot's usual setup).
    Slash,
    /// Separator `.`, prefix `INBOX.` (Courier/Cyrus style).
    InboxDot,
}

impl NamespaceStyle {
    /// The hierarchy separator the server will report.
    pub fn separator(self) -> char {
        match self {
            NamespaceStyle::Slash => '/',
            NamespaceStyle::InboxDot => '.',
        }
    }

    /// The namespace prefix the server will report.
    pub fn prefix(self) -> &'static str {
        match self {
            NamespaceStyle::Slash => "",
            NamespaceStyle::InboxDot => "INBOX.",
        }
    }
}

/// Whether the server offers TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsSetup {
    /// Plaintext only; no imaps listener.
    None,
    /// A self-signed certificate for `localhost` / `127.0.0.1`, generated per instance with the
    /// `openssl` CLI: STARTTLS on the imap port and implicit TLS on the imaps port.
    SelfSigned,
}

/// One special-use mailbox declared in the namespace (`mailbox NAME { special_use = ROLE }`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialUse {
    /// RFC 6154 role, e.g. `\Sent`.
    pub role: String,
    /// Mailbox name relative to the namespace prefix, with `/` as the hierarchy separator
    /// (translated to the server's), e.g. `Sent Items`.
    pub name: String,
    /// `auto = subscribe`: the server creates and subscribes it on first login.
    pub auto_subscribe: bool,
}

/// How to configure one [`Dovecot`] instance. Build with [`DovecotConfig::new`] and the
/// chaining methods; the default is a plaintext `Slash` server with one user `alice`/`secret1`.
#[derive(Debug, Clone)]
pub struct DovecotConfig {
    pub namespace: NamespaceStyle,
    pub special_use: Vec<SpecialUse>,
    pub tls: TlsSetup,
    /// Load the `zlib` / `imap_zlib` plugins (COMPRESS=DEFLATE after login).
    pub compress: bool,
    /// Replace (or, starting with `+`, extend) the advertised capabilities.
    pub imap_capability: Option<String>,
    /// (name, password) pairs for the passwd-file.
    pub users: Vec<(String, String)>,
    /// Raw configuration text appended at the end of `dovecot.conf`.
    pub extra: String,
    /// Maildir with `LAYOUT=fs` (one directory level per folder level) instead of Maildir++,
    /// whose folder names cannot hold `.`.
    pub fs_layout: bool,
}

impl Default for DovecotConfig {
    fn default() -> Self {
        DovecotConfig {
            namespace: NamespaceStyle::Slash,
            special_use: Vec::new(),
            tls: TlsSetup::None,
            compress: false,
            imap_capability: None,
            users: vec![("alice".to_string(), "secret1".to_string())],
            extra: String::new(),
            fs_layout: false,
        }
    }
}

impl DovecotConfig {
    /// Plaintext, `Slash` namespace, user `alice`/`secret1`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Choose the namespace style.
    pub fn namespace(mut self, style: NamespaceStyle) -> Self {
        self.namespace = style;
        self
    }

    /// Store mail with `LAYOUT=fs`, so that (with the `Slash` style) folder names may hold `.`.
    pub fn fs_layout(mut self) -> Self {
        self.fs_layout = true;
        self
    }

    /// Declare a special-use mailbox (e.g. `("\\Sent", "Sent Items")`) without auto-creating it.
    pub fn special_use(mut self, role: &str, name: &str) -> Self {
        self.special_use.push(SpecialUse {
            role: role.to_string(),
            name: name.to_string(),
            auto_subscribe: false,
        });
        self
    }

    /// Declare a special-use mailbox that the server creates and subscribes on its own.
    pub fn special_use_auto(mut self, role: &str, name: &str) -> Self {
        self.special_use.push(SpecialUse {
            role: role.to_string(),
            name: name.to_string(),
            auto_subscribe: true,
        });
        self
    }

    /// Declare the usual roles: `\Sent` Sent, `\Drafts` Drafts, `\Trash` Trash, `\Junk` Junk,
    /// `\Archive` Archive (not auto-created).
    pub fn standard_special_use(self) -> Self {
        self.special_use("\\Sent", "Sent")
            .special_use("\\Drafts", "Drafts")
            .special_use("\\Trash", "Trash")
            .special_use("\\Junk", "Junk")
            .special_use("\\Archive", "Archive")
    }

    /// Serve STARTTLS and implicit TLS with a fresh self-signed certificate.
    pub fn tls(mut self) -> Self {
        self.tls = TlsSetup::SelfSigned;
        self
    }

    /// Offer COMPRESS=DEFLATE (zlib + imap_zlib plugins).
    pub fn compress(mut self) -> Self {
        self.compress = true;
        self
    }

    /// Override `imap_capability`, e.g. `"IMAP4rev1 LITERAL+"` to test fallbacks.
    pub fn imap_capability(mut self, caps: &str) -> Self {
        self.imap_capability = Some(caps.to_string());
        self
    }

    /// Add a user (the default `alice` stays unless [`DovecotConfig::only_users`] is used).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.retain(|(n, _)| n != name);
        self.users.push((name.to_string(), password.to_string()));
        self
    }

    /// Replace the user list.
    pub fn only_users(mut self, users: &[(&str, &str)]) -> Self {
        self.users = users
            .iter()
            .map(|(n, p)| (n.to_string(), p.to_string()))
            .collect();
        self
    }

    /// Append raw configuration text to `dovecot.conf`.
    pub fn extra_config(mut self, text: &str) -> Self {
        self.extra.push_str(text);
        self.extra.push('\n');
        self
    }
}

/// Byte counts summed from the "Disconnected" lines of the log (one per IMAP session).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Number of sessions that logged out or were disconnected after login.
    pub sessions: usize,
    /// Bytes the server received (`in=`).
    pub bytes_in: u64,
    /// Bytes the server sent (`out=`).
    pub bytes_out: u64,
}

/// Who the mail processes run as.
#[derive(Debug, Clone)]
struct Owner {
    root: bool,
    user: String,
    group: String,
}

impl Owner {
    fn detect() -> Owner {
        if running_as_root() {
            Owner {
                root: true,
                user: "dovecot".to_string(),
                group: "dovecot".to_string(),
            }
        } else {
            Owner {
                root: false,
                user: command_stdout("id", &["-un"]),
                group: command_stdout("id", &["-gn"]),
            }
        }
    }
}

/// A running Dovecot instance; stopped on drop.
pub struct Dovecot {
    config: DovecotConfig,
    conf_path: PathBuf,
    port: u16,
    imaps_port: Option<u16>,
    ca_file: Option<PathBuf>,
    owner: Owner,
    // Dropped last (fields drop after `Drop::drop`), so the server is stopped before its files go.
    dir: tempfile::TempDir,
}

/// Panic (never skip) when Dovecot's IMAP server is missing: a missing server must not make
/// the suite pass silently.
pub fn require_dovecot() {
    if !Path::new(IMAP_BINARY).exists() {
        panic!("Dovecot's IMAP server is not installed: apt-get install dovecot-imapd");
    }
}

/// True when this process runs as uid 0 (read from `/proc/self/status`).
pub fn running_as_root() -> bool {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next().map(|uid| uid == "0"))
        .unwrap_or(false)
}

fn command_stdout(program: &str, args: &[&str]) -> String {
    String::from_utf8_lossy(&checked_output(program, args).stdout)
        .trim()
        .to_string()
}

/// Run `program`, panicking with its output unless it succeeds.
fn checked_output(program: &str, args: &[&str]) -> std::process::Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Two distinct free loopback ports (bound together, then released).
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local_addr").port())
        .collect()
}

/// Quote a string for dovecot.conf.
fn conf_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Distinguishes instances of this process in `instance_name`.
static INSTANCE_COUNTER: AtomicU32 = AtomicU32::new(0);

impl Dovecot {
    /// Start a new server with `cfg` and wait until it greets. Panics (with the server's log)
    /// when it does not come up within ~10 s.
    pub fn start(cfg: DovecotConfig) -> Dovecot {
        require_dovecot();
        let owner = Owner::detect();
        let dir = tempfile::Builder::new()
            .prefix("imapferry-dovecot-")
            .tempdir()
            .expect("create temp dir");
        let root = dir.path();
        // The mail processes run as `dovecot` when we are root: every directory on the way to
        // the homes must be traversable.
        fs::set_permissions(root, fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
        for sub in ["run", "state", "home"] {
            fs::create_dir(root.join(sub)).expect("mkdir");
            fs::set_permissions(root.join(sub), fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let mut passwd = String::new();
        for (user, password) in &cfg.users {
            fs::create_dir(root.join("home").join(user)).expect("mkdir home");
            writeln!(passwd, "{user}:{{PLAIN}}{password}::::::").unwrap();
        }
        fs::write(root.join("passwd"), passwd).expect("write passwd");
        fs::set_permissions(root.join("passwd"), fs::Permissions::from_mode(0o644))
            .expect("chmod passwd");
        let ca_file = match cfg.tls {
            TlsSetup::None => None,
            TlsSetup::SelfSigned => Some(make_self_signed_cert(root)),
        };
        let conf_path = root.join("dovecot.conf");
        let mut dovecot = Dovecot {
            config: cfg,
            conf_path,
            port: 0,
            imaps_port: None,
            ca_file,
            owner,
            dir,
        };
        dovecot.fix_ownership();

        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let tls = dovecot.config.tls == TlsSetup::SelfSigned;
            let ports = free_ports(if tls { 2 } else { 1 });
            dovecot.port = ports[0];
            dovecot.imaps_port = ports.get(1).copied();
            fs::write(&dovecot.conf_path, dovecot.render_config()).expect("write dovecot.conf");
            let stderr_path = dovecot.dir.path().join("dovecot.stderr");
            let stderr = fs::File::create(&stderr_path).expect("create stderr file");
            // It daemonizes: never hand it a pipe we would wait on.
            let status = Command::new("dovecot")
                .arg("-c")
                .arg(&dovecot.conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(stderr)
                .status()
                .expect("run dovecot");
            let failure = if status.success() {
                match dovecot.wait_ready() {
                    Ok(()) => return dovecot,
                    Err(e) => e,
                }
            } else {
                format!(
                    "dovecot -c {} failed ({status})",
                    dovecot.conf_path.display()
                )
            };
            let diagnostics = dovecot.diagnostics();
            dovecot.stop();
            if attempt < ATTEMPTS && diagnostics.contains("Address already in use") {
                // Another test grabbed a port between our probe and dovecot's bind.
                let _ = fs::remove_file(dovecot.log_path());
                continue;
            }
            panic!("{failure}:\n{diagnostics}");
        }
        unreachable!()
    }

    /// A small default server: `Slash` namespace, plaintext, `alice`/`secret1`.
    pub fn start_default() -> Dovecot {
        Dovecot::start(DovecotConfig::new())
    }

    fn render_config(&self) -> String {
        let cfg = &self.config;
        let root = self.dir.path();
        let d = |p: &str| root.join(p).display().to_string();
        let n = INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut c = String::new();
        let w = &mut c;
        writeln!(w, "# Generated by the imapferry test harness.").unwrap();
        writeln!(
            w,
            "instance_name = imapferry-test-{}-{n}",
            std::process::id()
        )
        .unwrap();
        writeln!(w, "base_dir = {}", d("run")).unwrap();
        writeln!(w, "state_dir = {}", d("state")).unwrap();
        writeln!(w, "log_path = {}", d("dovecot.log")).unwrap();
        writeln!(w, "protocols = imap").unwrap();
        writeln!(w, "listen = 127.0.0.1").unwrap();
        writeln!(w, "shutdown_clients = yes").unwrap();
        writeln!(w, "disable_plaintext_auth = no").unwrap();
        writeln!(w, "auth_mechanisms = plain login").unwrap();
        let layout = if cfg.fs_layout { ":LAYOUT=fs" } else { "" };
        writeln!(w, "mail_location = maildir:~/Maildir{layout}").unwrap();
        writeln!(w, "mail_max_userip_connections = 50").unwrap();
        // Throwaway data: don't pay for fsync on every APPEND.
        writeln!(w, "mail_fsync = never").unwrap();
        writeln!(w, "first_valid_uid = 1").unwrap();
        if !self.owner.root {
            writeln!(w, "default_login_user = {}", self.owner.user).unwrap();
            writeln!(w, "default_internal_user = {}", self.owner.user).unwrap();
            writeln!(w, "default_internal_group = {}", self.owner.group).unwrap();
        }
        match (cfg.tls, &self.ca_file) {
            (TlsSetup::SelfSigned, Some(cert)) => {
                writeln!(w, "ssl = yes").unwrap();
                writeln!(w, "ssl_cert = <{}", cert.display()).unwrap();
                writeln!(w, "ssl_key = <{}", d("key.pem")).unwrap();
            }
            _ => writeln!(w, "ssl = no").unwrap(),
        }
        if let Some(caps) = &cfg.imap_capability {
            writeln!(w, "imap_capability = {caps}").unwrap();
        }
        if cfg.compress {
            writeln!(w, "mail_plugins = $mail_plugins zlib").unwrap();
            writeln!(
                w,
                "protocol imap {{\n  mail_plugins = $mail_plugins imap_zlib\n}}"
            )
            .unwrap();
        }
        writeln!(
            w,
            "passdb {{\n  driver = passwd-file\n  args = scheme=PLAIN username_format=%u {}\n}}",
            d("passwd")
        )
        .unwrap();
        writeln!(
            w,
            "userdb {{\n  driver = static\n  args = uid={} gid={} home={}/%u\n}}",
            self.owner.user,
            self.owner.group,
            d("home")
        )
        .unwrap();
        writeln!(w, "service imap-login {{").unwrap();
        writeln!(w, "  chroot =").unwrap();
        writeln!(
            w,
            "  inet_listener imap {{\n    address = 127.0.0.1\n    port = {}\n  }}",
            self.port
        )
        .unwrap();
        writeln!(
            w,
            "  inet_listener imaps {{\n    address = 127.0.0.1\n    port = {}\n    ssl = yes\n  }}",
            self.imaps_port.unwrap_or(0)
        )
        .unwrap();
        writeln!(w, "}}").unwrap();
        writeln!(w, "service anvil {{\n  chroot =\n}}").unwrap();
        let sep = cfg.namespace.separator();
        writeln!(w, "namespace inbox {{").unwrap();
        writeln!(w, "  inbox = yes").unwrap();
        writeln!(w, "  separator = {sep}").unwrap();
        writeln!(w, "  prefix = {}", cfg.namespace.prefix()).unwrap();
        for su in &cfg.special_use {
            let name = su.name.replace('/', &sep.to_string());
            writeln!(w, "  mailbox {} {{", conf_quote(&name)).unwrap();
            writeln!(w, "    special_use = {}", su.role).unwrap();
            if su.auto_subscribe {
                writeln!(w, "    auto = subscribe").unwrap();
            }
            writeln!(w, "  }}").unwrap();
        }
        writeln!(w, "}}").unwrap();
        c.push_str(&cfg.extra);
        c
    }

    /// Poll the imap port until it sends `* OK`, for up to [`START_TIMEOUT`].
    fn wait_ready(&self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_error = String::new();
        while Instant::now() < deadline {
            match read_greeting(self.port) {
                Ok(line) if line.starts_with("* OK") => return Ok(()),
                Ok(line) => last_error = format!("unexpected greeting {line:?}"),
                Err(e) => last_error = e.to_string(),
            }
            if let Some(pid) = self.master_pid() {
                if !process_alive(pid) {
                    return Err(format!("Dovecot exited during start-up ({last_error})"));
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "Dovecot on 127.0.0.1:{} did not greet within {:?} ({last_error})",
            self.port, START_TIMEOUT
        ))
    }

    /// Stderr of `dovecot` plus the log file, for panic messages.
    fn diagnostics(&self) -> String {
        let stderr = fs::read_to_string(self.dir.path().join("dovecot.stderr")).unwrap_or_default();
        format!(
            "--- dovecot stderr ---\n{stderr}--- {} ---\n{}",
            self.log_path().display(),
            self.log_contents()
        )
    }

    /// The plaintext (and STARTTLS) IMAP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The implicit-TLS port; panics when the instance was started without TLS.
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
            .expect("this Dovecot was started without TLS (use DovecotConfig::tls())")
    }

    /// The self-signed certificate (PEM) to pass as `--ca-file`; panics without TLS.
    pub fn ca_file(&self) -> &Path {
        self.ca_file
            .as_deref()
            .expect("this Dovecot was started without TLS (use DovecotConfig::tls())")
    }

    /// The configuration this instance was started with.
    pub fn config(&self) -> &DovecotConfig {
        &self.config
    }

    /// The generated `dovecot.conf`.
    pub fn conf_path(&self) -> &Path {
        &self.conf_path
    }

    /// The instance's private temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The password of `user` (panics for unknown users).
    pub fn password(&self, user: &str) -> &str {
        self.config
            .users
            .iter()
            .find(|(n, _)| n == user)
            .map(|(_, p)| p.as_str())
            .unwrap_or_else(|| panic!("no user {user:?} in this Dovecot"))
    }

    /// The Dovecot log file (errors, logins and per-session byte counts).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("dovecot.log")
    }

    /// The whole log so far (empty if not written yet).
    pub fn log_contents(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The home directory of `user`.
    pub fn home(&self, user: &str) -> PathBuf {
        self.dir.path().join("home").join(user)
    }

    /// The Maildir root of `user` (`~/Maildir`), e.g. to write messages directly and then run
    /// `doveadm index` (call [`Dovecot::fix_ownership`] afterwards when root).
    /// Message files in `user`'s Maildir (`cur/` and `new/` of every folder): what Dovecot
    /// holds, counted without a connection (fast enough to poll while a push runs).
    pub fn stored_messages(&self, user: &str) -> usize {
        walkdir::WalkDir::new(self.maildir(user))
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_type().is_file()
                    && e.path()
                        .parent()
                        .and_then(|p| p.file_name())
                        .is_some_and(|n| n == "cur" || n == "new")
            })
            .count()
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.home(user).join("Maildir")
    }

    /// When running as root, give the homes back to `dovecot:dovecot` (after a test wrote files
    /// into a Maildir itself). A no-op otherwise.
    pub fn fix_ownership(&self) {
        if self.owner.root {
            let home = self.dir.path().join("home");
            checked_output(
                "chown",
                &[
                    "-R",
                    "dovecot:dovecot",
                    home.to_str().expect("utf-8 temp path"),
                ],
            );
        }
    }

    /// Sum of `in=` / `out=` over the "Disconnected" lines logged so far.
    pub fn traffic(&self) -> Traffic {
        parse_traffic(&self.log_contents())
    }

    /// Like [`Dovecot::traffic`], but first waits (up to 5 s) until every logged-in session has
    /// logged its "Disconnected" line, so the counts include the last client's logout.
    pub fn traffic_settled(&self) -> Traffic {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let log = self.log_contents();
            let logins = log
                .lines()
                .filter(|l| l.contains(": Login: user=<"))
                .count();
            let traffic = parse_traffic(&log);
            if traffic.sessions >= logins || Instant::now() >= deadline {
                return traffic;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Run `doveadm -c CONF ARGS...` and return its stdout; panics on failure.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = self.doveadm_output(args);
        assert!(
            out.status.success(),
            "doveadm {args:?} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run `doveadm -c CONF ARGS...` and return the raw output, whatever the exit status.
    pub fn doveadm_output(&self, args: &[&str]) -> Output {
        Command::new("doveadm")
            .arg("-c")
            .arg(&self.conf_path)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run doveadm")
    }

    fn master_pid(&self) -> Option<u32> {
        fs::read_to_string(self.dir.path().join("run").join("master.pid"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Dovecot {
    /// Stop the server and wait until it is gone.
    ///
    /// This does what `doveadm stop` does (SIGTERM to the master), but `doveadm stop` also waits
    /// for the master to exit, and Dovecot 2.3's master sleeps a fixed ~2.5 s during shutdown
    /// after its children have exited. So: SIGTERM, wait (up to 5 s) until every child but the
    /// `log` process (imap, imap-login, auth, ...) has exited, then SIGKILL the idle master and
    /// whatever is left.
    fn stop(&self) {
        let Some(pid) = self.master_pid() else {
            return;
        };
        if !process_alive(pid) {
            return;
        }
        signal(pid, "TERM");
        let deadline = Instant::now() + Duration::from_secs(5);
        // The `log` child lives on until the master's final cleanup; it no longer matters.
        let busy = |p: &u32| process_name(*p).as_deref() != Some("log");
        while process_alive(pid) && children_of(pid).iter().any(busy) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // Normally none are left; after the timeout, don't leave stragglers behind.
        let leftovers = children_of(pid);
        if process_alive(pid) {
            signal(pid, "KILL");
        }
        for child in leftovers {
            signal(child, "KILL");
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while process_alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Send SIGname to one process (by id; errors ignored: it may already be gone).
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The `comm` of a process (e.g. `log`, `imap-login`), if it exists.
fn process_name(pid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// Live (non-zombie) processes whose parent is `pid`, from `/proc`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&p| {
            let Ok(stat) = fs::read_to_string(format!("/proc/{p}/stat")) else {
                return false;
            };
            let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
                return false;
            };
            let mut fields = rest.split_whitespace();
            let state = fields.next().unwrap_or("");
            let ppid = fields.next().and_then(|x| x.parse::<u32>().ok());
            ppid == Some(pid) && state != "Z" && state != "X"
        })
        .collect()
}

/// True while `pid` exists and is not a zombie (a container's init may not reap it at once).
fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(stat) => {
            // "pid (comm) S ..." — the state follows the last ')'.
            let state = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .unwrap_or("");
            state != "Z" && state != "X"
        }
    }
}

/// Connect to 127.0.0.1:`port` and read the first line.
fn read_greeting(port: u16) -> std::io::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}

/// Sum `in=` / `out=` from "Disconnected" log lines.
pub fn parse_traffic(log: &str) -> Traffic {
    let mut t = Traffic::default();
    for line in log.lines().filter(|l| l.contains("Disconnected")) {
        let field = |name: &str| -> Option<u64> {
            line.split([' ', ','])
                .find_map(|tok| tok.strip_prefix(name))
                .and_then(|v| v.parse().ok())
        };
        if let (Some(i), Some(o)) = (field("in="), field("out=")) {
            t.sessions += 1;
            t.bytes_in += i;
            t.bytes_out += o;
        }
    }
    t
}

/// Generate `cert.pem` / `key.pem` (EC P-256, self-signed, SAN localhost + 127.0.0.1) in `dir`
/// and return the certificate path.
fn make_self_signed_cert(dir: &Path) -> PathBuf {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    checked_output(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
            key.to_str().expect("utf-8 temp path"),
            "-out",
            cert.to_str().expect("utf-8 temp path"),
        ],
    );
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod key");
    cert
}
