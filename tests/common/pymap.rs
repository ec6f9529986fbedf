//! Throwaway pymap servers (the PyPI package `pymap`, a Python IMAP server with pluggable
//! backends): a second implementation beside Dovecot, with other capabilities (no NAMESPACE,
//! no LIST-STATUS, no CONDSTORE, no SPECIAL-USE) and, in its `maildir` backend, messages
//! rewritten on APPEND (see tests/servers.rs for what exactly).
//!
//! Each [`Pymap::start`] runs its own `pymap` process on a free 127.0.0.1 port, plaintext
//! (`--no-tls`), with its files in a fresh temporary directory named `imapferry-pymap-*` (also
//! on its command line, through `--logging-cfg`, so CI can tell a leftover process). The account
//! is `alice`/`secret1` and starts with an empty INBOX:
//!
//! - `dict`: `pymap --no-tls --host 127.0.0.1 --port P --logging-cfg DIR/logging.ini dict
//!   --demo-user alice --demo-password secret1` (in memory; no `--demo-data`, so nothing else);
//! - `maildir`: `pymap … maildir DIR/mail`, where `DIR/mail/pymap-etc-passwd` names the user
//!   and her Maildir (`alice:x::::alice:`, home relative to the base directory) and
//!   `DIR/mail/pymap-etc-shadow` holds her password as pysasl's PBKDF2 digest
//!   ([`ALICE_SHADOW`]).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::server::{free_port, ServerProcess, TestServer};

/// Where `.ci/run` installs pymap (a venv); `IMAPFERRY_TEST_PYMAP` names another executable.
pub const PYMAP: &str = "/opt/pymap-venv/bin/pymap";

/// The pymap release the suite was written against (and `.ci/run` installs).
pub const PYMAP_VERSION: &str = "0.36.7";

/// The account every instance has.
pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret1";

/// `alice`'s line in `pymap-etc-shadow`: "secret1" as pysasl's `BuiltinHash` stores it
/// (`$pbkdf2-sha256$ROUNDS$SALT$DIGEST`), made with 1000 rounds and a fixed salt by
/// `/opt/pymap-venv/bin/python -c "from pysasl.hashing import BuiltinHash;
/// print(BuiltinHash(rounds=1000).hash('secret1', salt=b'imapferry-tests!'))"`. The default
/// 500 000 rounds would cost every login a third of a second of CPU.
const ALICE_SHADOW: &str =
    "alice:$pbkdf2-sha256$1000$aW1hcGZlcnJ5LXRlc3RzIQ==$GHPb+Vpy/A0kLhQm0KV3V+Ib+R30fpV3z8j5m8aJjgQ=:::::::";

/// Python logging to stderr (the log file), warnings and errors only: pymap logs a handler's
/// traceback there when it answers `BYE [SERVERBUG]`.
const LOGGING_INI: &str = "\
[loggers]
keys=root

[handlers]
keys=stderr

[formatters]
keys=plain

[logger_root]
level=WARNING
handlers=stderr

[handler_stderr]
class=StreamHandler
args=(sys.stderr,)
formatter=plain

[formatter_plain]
format=%(asctime)s %(levelname)s %(name)s: %(message)s
";

/// Which pymap backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PymapBackend {
    /// In memory.
    Dict,
    /// On disk, Maildir++ (folder levels joined with `.` in directory names).
    Maildir,
}

/// The pymap executable: `$IMAPFERRY_TEST_PYMAP`, else [`PYMAP`].
pub fn pymap_path() -> PathBuf {
    std::env::var_os("IMAPFERRY_TEST_PYMAP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PYMAP))
}

/// Panic (never skip) when pymap is missing, saying how to install it.
pub fn require_pymap() {
    let path = pymap_path();
    if !path.exists() {
        panic!(
            "pymap is not installed at {} (IMAPFERRY_TEST_PYMAP names another): \
             python3 -m venv /opt/pymap-venv && /opt/pymap-venv/bin/pip install pymap=={PYMAP_VERSION}",
            path.display()
        );
    }
}

/// A running pymap; killed on drop.
pub struct Pymap {
    backend: PymapBackend,
    port: u16,
    // Dropped before `dir`: the process dies before its files go.
    process: ServerProcess,
    dir: tempfile::TempDir,
}

impl Pymap {
    /// Start pymap with `backend` and wait until it greets; panics naming the log otherwise.
    pub fn start(backend: PymapBackend) -> Pymap {
        require_pymap();
        let dir = tempfile::Builder::new()
            .prefix("imapferry-pymap-")
            .tempdir()
            .expect("create temp dir");
        fs::write(dir.path().join("logging.ini"), LOGGING_INI).expect("write logging.ini");
        if backend == PymapBackend::Maildir {
            let base = dir.path().join("mail");
            fs::create_dir(&base).expect("mkdir mail");
            fs::write(
                base.join("pymap-etc-passwd"),
                format!("{USER}:x::::{USER}:\n"),
            )
            .expect("write pymap-etc-passwd");
            fs::write(base.join("pymap-etc-shadow"), format!("{ALICE_SHADOW}\n"))
                .expect("write pymap-etc-shadow");
        }
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let port = free_port();
            let log = dir.path().join(format!("pymap-{attempt}.log"));
            let mut process = ServerProcess::spawn(command(backend, dir.path(), port), &log);
            match process.wait_for_greeting("pymap", &mut |_| Some(port)) {
                Ok(_) => {
                    return Pymap {
                        backend,
                        port,
                        process,
                        dir,
                    }
                }
                // Another test took the port between our probe and pymap's bind.
                Err(e)
                    if attempt < ATTEMPTS
                        && e.to_lowercase().contains("address already in use") =>
                {
                    continue
                }
                Err(e) => panic!("{e}"),
            }
        }
        unreachable!()
    }

    /// Which backend this instance runs.
    pub fn backend(&self) -> PymapBackend {
        self.backend
    }

    /// The server process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The instance's private temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// The command line of one instance.
fn command(backend: PymapBackend, dir: &Path, port: u16) -> Command {
    let mut c = Command::new(pymap_path());
    c.args(["--no-tls", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .arg("--logging-cfg")
        .arg(dir.join("logging.ini"));
    match backend {
        PymapBackend::Dict => {
            c.args(["dict", "--demo-user", USER, "--demo-password", PASSWORD]);
        }
        PymapBackend::Maildir => {
            c.arg("maildir").arg(dir.join("mail"));
        }
    }
    // The greeting names the host: without FQDN pymap asks the resolver (socket.getfqdn()).
    c.env("FQDN", "localhost").current_dir(dir);
    c
}

impl TestServer for Pymap {
    fn name(&self) -> &str {
        match self.backend {
            PymapBackend::Dict => "pymap-dict",
            PymapBackend::Maildir => "pymap-maildir",
        }
    }

    fn port(&self) -> u16 {
        self.port
    }

    fn user(&self) -> &str {
        USER
    }

    fn password(&self) -> &str {
        PASSWORD
    }

    fn log(&self) -> String {
        self.process.log()
    }
}
