//! The transport: TCP with a deadline on every connect and read, optionally wrapped in TLS
//! (implicit or after STARTTLS).

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use native_tls::{Certificate, HandshakeError, TlsConnector, TlsStream};

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

/// Build the TLS connector for `ep`: system roots, plus `ca_file`, verification off only when
/// the user asked for `insecure`.
pub(crate) fn tls_connector(ep: &Endpoint) -> Result<TlsConnector> {
    let mut b = TlsConnector::builder();
    if ep.insecure {
        b.danger_accept_invalid_certs(true);
        b.danger_accept_invalid_hostnames(true);
    }
    if let Some(path) = &ep.ca_file {
        let pem =
            std::fs::read(path).with_context(|| format!("reading CA file {}", path.display()))?;
        let cert = Certificate::from_pem(&pem)
            .with_context(|| format!("parsing CA file {} (PEM expected)", path.display()))?;
        b.add_root_certificate(cert);
    }
    b.build().context("setting up TLS")
}

/// Resolve and connect with a deadline per address; set read/write timeouts.
pub(crate) fn connect_tcp(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}:{port}"))?
        .collect();
    if addrs.is_empty() {
        bail!("resolving {host}:{port}: no addresses");
    }
    let mut last_err = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))?;
                s.set_write_timeout(Some(timeout))?;
                // Commands are written whole; don't let Nagle delay a pipelined batch.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last_err = Some((addr, e)),
        }
    }
    let (addr, e) = last_err.expect("addrs is not empty");
    if e.kind() == io::ErrorKind::TimedOut || e.kind() == io::ErrorKind::WouldBlock {
        bail!(
            "connecting to {host}:{port} ({addr}): timed out after {} s",
            timeout.as_secs()
        );
    }
    Err(anyhow!(e).context(format!("connecting to {host}:{port} ({addr})")))
}

/// Run the TLS handshake on a connected socket.
pub(crate) fn tls_handshake(
    connector: &TlsConnector,
    host: &str,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>> {
    match connector.connect(host, tcp) {
        Ok(s) => Ok(s),
        Err(HandshakeError::WouldBlock(_)) => bail!(
            "TLS handshake: timed out after {} s waiting for {host}",
            timeout.as_secs()
        ),
        Err(HandshakeError::Failure(e)) => {
            Err(anyhow!("{e}").context(format!("TLS handshake with {host} failed")))
        }
    }
}

/// The byte stream: plain TCP or TLS over TCP.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// Only while STARTTLS moves the socket into TLS, or after that failed.
    Closed,
}

impl Stream {
    fn tcp(&self) -> Option<&TcpStream> {
        match self {
            Stream::Plain(s) => Some(s),
            Stream::Tls(s) => Some(s.get_ref()),
            Stream::Closed => None,
        }
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::NotConnected, "connection closed")
}

/// A [`Stream`] that turns socket timeouts into a clear error naming the host, so a silent
/// server gives "timed out after N s waiting for HOST" instead of a bare EAGAIN.
pub(crate) struct Transport {
    stream: Stream,
    host: String,
    timeout: Duration,
}

impl Transport {
    pub(crate) fn new(stream: Stream, host: &str, timeout: Duration) -> Self {
        Transport {
            stream,
            host: host.to_string(),
            timeout,
        }
    }

    /// Change the read and write timeouts of the socket.
    pub(crate) fn set_timeout(&mut self, t: Duration) -> Result<()> {
        let tcp = self.stream.tcp().ok_or_else(closed)?;
        tcp.set_read_timeout(Some(t))?;
        tcp.set_write_timeout(Some(t))?;
        self.timeout = t;
        Ok(())
    }

    /// Upgrade a plain stream to TLS in place (STARTTLS).
    pub(crate) fn start_tls(&mut self, connector: &TlsConnector) -> Result<()> {
        let tcp = match std::mem::replace(&mut self.stream, Stream::Closed) {
            Stream::Plain(t) => t,
            _ => bail!(
                "{}: STARTTLS on a connection that is not plain TCP",
                self.host
            ),
        };
        let tls = tls_handshake(connector, &self.host, tcp, self.timeout)?;
        self.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    fn map_err(&self, e: io::Error, what: &str) -> io::Error {
        if matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ) {
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "timed out after {} s {what} {}",
                    self.timeout.as_secs(),
                    self.host
                ),
            )
        } else {
            e
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = match &mut self.stream {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Closed => Err(closed()),
        };
        r.map_err(|e| self.map_err(e, "waiting for"))
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Closed => Err(closed()),
        };
        r.map_err(|e| self.map_err(e, "writing to"))
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = match &mut self.stream {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
            Stream::Closed => Err(closed()),
        };
        r.map_err(|e| self.map_err(e, "writing to"))
    }
}

/// Buffered reading side plus direct writes, over one [`Transport`].
pub(crate) type Conn = BufReader<Transport>;
