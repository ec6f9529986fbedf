//! The transport: TCP with a deadline on every connect and read, optionally wrapped in TLS
//! (implicit or after STARTTLS).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// How to secure the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (port 993).
    Imaps,
    /// Plaintext greeting, then STARTTLS before anything else; refused if not offered.
    StartTls,
    /// No TLS at all.
    None,
}

/// The secret used to authenticate. `Debug` never shows it.
#[derive(Clone)]
pub enum Secret {
    Password(String),
    /// AUTHENTICATE XOAUTH2 with the token read from this file (re-read on every connect).
    OAuth2TokenFile(PathBuf),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
            Secret::OAuth2TokenFile(p) => write!(f, "OAuth2TokenFile({})", p.display()),
        }
    }
}

/// Everything needed to open and authenticate one session.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    /// Skip certificate verification (user opted out).
    pub insecure: bool,
    /// Extra trusted CA certificate (PEM).
    pub ca_file: Option<PathBuf>,
    pub user: String,
    pub secret: Secret,
    /// Deadline for every connect and read.
    pub timeout: Duration,
}
