//! Any IMAP server a test can run against, behind one trait: Dovecot ([`super::dovecot`]),
//! pymap with its in-memory or its on-disk backend ([`super::pymap`]) and a bare hoodiecrow
//! ([`super::hoodiecrow`]). Real migrations meet servers that behave differently; a test that
//! means "any server" loops over [`ServerKind::ALL`] and talks to each through [`TestServer`].
//!
//! Also the process handling the non-Dovecot servers share ([`ServerProcess`]): one child
//! process per server, its output in a log file, a bounded wait for the greeting, and SIGKILL
//! plus reaping on drop, so no server outlives its test.

use std::fs;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::dovecot::Dovecot;
use super::hoodiecrow::Hoodiecrow;
use super::pymap::{Pymap, PymapBackend};

/// How long a server may take from spawn to greeting. Python's start-up alone is about a second
/// on a busy 2-core machine; this leaves room for a machine shared with other builds.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// One running IMAP server with one account, plaintext on 127.0.0.1.
pub trait TestServer {
    /// Which implementation this is, e.g. `pymap-maildir` (for messages and tables).
    fn name(&self) -> &str;
    /// The plaintext IMAP port on 127.0.0.1.
    fn port(&self) -> u16;
    /// The account's login name.
    fn user(&self) -> &str;
    /// The account's password.
    fn password(&self) -> &str;
    /// What the server logged so far, for panic messages.
    fn log(&self) -> String;
}

/// `server` reached through another port (a proxy in front of it).
pub struct Via<'a>(pub &'a dyn TestServer, pub u16);

impl TestServer for Via<'_> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn port(&self) -> u16 {
        self.1
    }
    fn user(&self) -> &str {
        self.0.user()
    }
    fn password(&self) -> &str {
        self.0.password()
    }
    fn log(&self) -> String {
        self.0.log()
    }
}

/// The server implementations the suite knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// Dovecot 2.3, Maildir, `/` separator, no prefix ([`Dovecot::start_default`]).
    Dovecot,
    /// pymap's in-memory `dict` backend.
    PymapDict,
    /// pymap's on-disk `maildir` backend (Maildir++ layout).
    PymapMaildir,
    /// hoodiecrow-imap without plugins: plain IMAP4rev1.
    Hoodiecrow,
}

impl ServerKind {
    /// Every kind, Dovecot first.
    pub const ALL: [ServerKind; 4] = [
        ServerKind::Dovecot,
        ServerKind::PymapDict,
        ServerKind::PymapMaildir,
        ServerKind::Hoodiecrow,
    ];

    /// The kinds other than Dovecot.
    pub const OTHERS: [ServerKind; 3] = [
        ServerKind::PymapDict,
        ServerKind::PymapMaildir,
        ServerKind::Hoodiecrow,
    ];

    /// The name [`TestServer::name`] reports.
    pub fn name(self) -> &'static str {
        match self {
            ServerKind::Dovecot => "dovecot",
            ServerKind::PymapDict => "pymap-dict",
            ServerKind::PymapMaildir => "pymap-maildir",
            ServerKind::Hoodiecrow => "hoodiecrow",
        }
    }

    /// Start a fresh server of this kind with one empty account.
    pub fn start(self) -> Box<dyn TestServer> {
        match self {
            ServerKind::Dovecot => Box::new(Dovecot::start_default()),
            ServerKind::PymapDict => Box::new(Pymap::start(PymapBackend::Dict)),
            ServerKind::PymapMaildir => Box::new(Pymap::start(PymapBackend::Maildir)),
            ServerKind::Hoodiecrow => Box::new(Hoodiecrow::start()),
        }
    }
}

impl TestServer for Dovecot {
    fn name(&self) -> &str {
        "dovecot"
    }

    fn port(&self) -> u16 {
        Dovecot::port(self)
    }

    /// The first configured user (`alice` unless the test chose others).
    fn user(&self) -> &str {
        &self.config().users[0].0
    }

    fn password(&self) -> &str {
        &self.config().users[0].1
    }

    fn log(&self) -> String {
        self.log_contents()
    }
}

/// Another account on a [`Dovecot`]: `d.account("bob")`.
pub struct DovecotAccount<'a> {
    dovecot: &'a Dovecot,
    user: &'a str,
}

impl Dovecot {
    /// `user`'s account on this server, as a [`TestServer`].
    pub fn account<'a>(&'a self, user: &'a str) -> DovecotAccount<'a> {
        DovecotAccount {
            dovecot: self,
            user,
        }
    }
}

impl TestServer for DovecotAccount<'_> {
    fn name(&self) -> &str {
        "dovecot"
    }

    fn port(&self) -> u16 {
        self.dovecot.port()
    }

    fn user(&self) -> &str {
        self.user
    }

    fn password(&self) -> &str {
        self.dovecot.password(self.user)
    }

    fn log(&self) -> String {
        self.dovecot.log_contents()
    }
}

/// A server's child process. Dropping it kills the process (SIGKILL: pymap blocked in a
/// handler never sees a SIGTERM) and reaps it, so neither a server nor a zombie is left.
pub struct ServerProcess {
    child: Child,
    log: PathBuf,
}

impl ServerProcess {
    /// Spawn `cmd` with stdin closed and stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> ServerProcess {
        let out = fs::File::create(log).expect("create server log");
        let err = out.try_clone().expect("clone log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        ServerProcess {
            child,
            log: log.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Why the process is gone, if it is.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("cannot wait: {e}")),
        }
    }

    /// Poll until the process (or `port()`, once it answers `Some`) greets with `* OK`, for up
    /// to [`START_TIMEOUT`]. `port` is asked again on every round, so a server that reports its
    /// port in the log can be waited for the same way. Err says why, naming the log.
    pub fn wait_for_greeting(
        &mut self,
        what: &str,
        port: &mut dyn FnMut(&ServerProcess) -> Option<u16>,
    ) -> Result<(u16, String), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = "no port yet".to_string();
        while Instant::now() < deadline {
            if let Some(p) = port(self) {
                match read_greeting(p) {
                    Ok(line) if line.starts_with("* OK") => return Ok((p, line)),
                    Ok(line) => last = format!("greeting {line:?}"),
                    Err(e) => last = e.to_string(),
                }
            }
            if let Some(status) = self.exited() {
                return Err(format!(
                    "{what} exited during start-up ({status}; {last}); log {}:\n{}",
                    self.log.display(),
                    self.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "{what} did not greet within {START_TIMEOUT:?} ({last}); log {}:\n{}",
            self.log.display(),
            self.log()
        ))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (bound, then released: the server may lose it to a race, so callers
/// retry on "address already in use").
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Connect to 127.0.0.1:`port` and read the first line.
fn read_greeting(port: u16) -> std::io::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line)?;
    Ok(line)
}
