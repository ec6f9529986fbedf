//! Throwaway hoodiecrow servers (the npm package `hoodiecrow-imap`, a scriptable in-memory IMAP
//! server for client tests), started bare: no plugins, so plain IMAP4rev1 without UIDPLUS,
//! CONDSTORE, LITERAL+, NAMESPACE, SPECIAL-USE or AUTH=PLAIN: the oldest kind of server a
//! migration meets.
//!
//! `hoodiecrow --config FILE --port N` listens on every interface, so each [`Hoodiecrow::start`]
//! runs the package's documented module API instead (`hoodiecrow(options).listen(port, host)`)
//! through the small launcher [`LAUNCHER`]: `node DIR/start.js MODULE DIR/config.json`, on
//! 127.0.0.1 and a port the system picks (printed by the launcher, so there is no race for a
//! free port). DIR is a fresh temporary directory named `imapferry-hoodiecrow-*`. The
//! configuration ([`CONFIG`]) has one user, `alice`/`secret1`, an empty INBOX and a personal
//! namespace without prefix and with `/` between levels.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::server::{ServerProcess, TestServer};

/// Where `.ci/run` installs the package (`npm install --prefix`); `IMAPFERRY_TEST_HOODIECROW`
/// names another prefix.
pub const HOODIECROW_PREFIX: &str = "/opt/hoodiecrow";

/// The release the suite was written against (and `.ci/run` installs).
pub const HOODIECROW_VERSION: &str = "2.1.0";

pub const USER: &str = "alice";
pub const PASSWORD: &str = "secret1";

/// Users and storage; no `plugins` key, so nothing beyond IMAP4rev1 is announced.
const CONFIG: &str = r#"{
    "users": {"alice": {"password": "secret1"}},
    "storage": {"INBOX": {}, "": {"separator": "/"}}
}
"#;

/// argv: module directory, configuration file. Prints the port once listening.
const LAUNCHER: &str = r#"// Written by the imapferry test harness: hoodiecrow-imap on 127.0.0.1 only.
var hoodiecrow = require(process.argv[2]);
var config = JSON.parse(require("fs").readFileSync(process.argv[3], "utf-8"));
var server = hoodiecrow(config);
server.server.on("error", function (e) {
    console.error("hoodiecrow: " + e.message);
    process.exit(1);
});
server.listen(0, "127.0.0.1", function () {
    console.log("listening on 127.0.0.1:" + server.server.address().port);
});
"#;

/// The installed module: `$IMAPFERRY_TEST_HOODIECROW/node_modules/hoodiecrow-imap`, the prefix
/// defaulting to [`HOODIECROW_PREFIX`].
pub fn module_path() -> PathBuf {
    std::env::var_os("IMAPFERRY_TEST_HOODIECROW")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(HOODIECROW_PREFIX))
        .join("node_modules")
        .join("hoodiecrow-imap")
}

/// Panic (never skip) when node or the package is missing, saying how to install it.
pub fn require_hoodiecrow() {
    let module = module_path();
    if !module.join("lib").join("server.js").exists() {
        panic!(
            "hoodiecrow-imap is not installed at {} (IMAPFERRY_TEST_HOODIECROW names another npm \
             prefix): npm install --prefix /opt/hoodiecrow hoodiecrow-imap@{HOODIECROW_VERSION}",
            module.display()
        );
    }
    let node = Command::new("node").arg("--version").output();
    if !node.is_ok_and(|o| o.status.success()) {
        panic!("node is not installed (hoodiecrow-imap needs it): apt-get install nodejs");
    }
}

/// A running hoodiecrow; killed on drop.
pub struct Hoodiecrow {
    port: u16,
    // Dropped before `dir`: the process dies before its files go.
    process: ServerProcess,
    dir: tempfile::TempDir,
}

impl Hoodiecrow {
    /// Start a bare hoodiecrow and wait until it greets; panics naming the log otherwise.
    pub fn start() -> Hoodiecrow {
        require_hoodiecrow();
        let dir = tempfile::Builder::new()
            .prefix("imapferry-hoodiecrow-")
            .tempdir()
            .expect("create temp dir");
        let launcher = dir.path().join("start.js");
        let config = dir.path().join("config.json");
        fs::write(&launcher, LAUNCHER).expect("write start.js");
        fs::write(&config, CONFIG).expect("write config.json");
        let mut cmd = Command::new("node");
        cmd.arg(&launcher)
            .arg(module_path())
            .arg(&config)
            .current_dir(dir.path());
        let mut process = ServerProcess::spawn(cmd, &dir.path().join("hoodiecrow.log"));
        let (port, _) = process
            .wait_for_greeting("hoodiecrow", &mut |p| listening_port(&p.log()))
            .unwrap_or_else(|e| panic!("{e}"));
        Hoodiecrow { port, process, dir }
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

/// The port in the launcher's "listening on 127.0.0.1:PORT" line.
fn listening_port(log: &str) -> Option<u16> {
    log.lines()
        .find_map(|l| l.strip_prefix("listening on 127.0.0.1:"))
        .and_then(|p| p.trim().parse().ok())
}

impl TestServer for Hoodiecrow {
    fn name(&self) -> &str {
        "hoodiecrow"
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
