//! The transport: TCP with a deadline on every connect and read, optionally wrapped in TLS
//! (implicit or after STARTTLS).

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use native_tls::{Certificate, HandshakeError, TlsConnector, TlsStream};

use super::deflate::Deflate;
use super::error::{wire_error, ConnectProblem, ErrorKind};
use super::ratelimit::{Direction, RateLimit};

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
    /// AUTHENTICATE XOAUTH2 with an access token the refresher fetches and keeps fresh, shared
    /// by every connection made from clones of the endpoint.
    OAuth2Refresh(Arc<super::oauth2::Refresher>),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
            Secret::OAuth2TokenFile(p) => write!(f, "OAuth2TokenFile({})", p.display()),
            Secret::OAuth2Refresh(r) => write!(f, "OAuth2Refresh({r:?})"),
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
    /// Log in as this (administrator) user, with its password, to act as `user` (SASL PLAIN's
    /// authorization identity; imapsync's `--authuser1`).
    pub authuser: Option<String>,
    pub secret: Secret,
    /// Deadline for every connect and read.
    pub timeout: Duration,
    /// Use COMPRESS=DEFLATE when the server offers it (`--no-compress` turns it off).
    pub compress: bool,
    /// Cap on the bytes per second each way (`--max-bytes-per-second`), shared by every
    /// connection made from this endpoint and its clones.
    pub rate_limit: Option<RateLimit>,
    /// The provider's rules, when the user forced them (`--provider1/2`); otherwise recognised.
    pub provider: Option<crate::provider::Provider>,
    /// The wait a throttling server asked for, kept by every connection made from this
    /// endpoint and its clones.
    pub pause: Pause,
}

/// A wait every connection of an endpoint keeps: a server that throttles the account
/// (Microsoft 365: `Suggested Backoff Time`) asks all of them to hold off, not only the one it
/// answered.
#[derive(Debug, Clone, Default)]
pub struct Pause(std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>);

impl Pause {
    /// Hold every command until `t` (a later wait already asked for stands).
    pub fn until(&self, t: std::time::Instant) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if g.is_none_or(|old| old < t) {
            *g = Some(t);
        }
    }

    /// Sleep until the wait asked for is over.
    pub fn wait(&self) {
        let t = *self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(left) = t.and_then(|t| t.checked_duration_since(std::time::Instant::now())) {
            let _shown = crate::ui::waiting(
                "as the server asked (throttled)",
                std::time::Instant::now() + left,
            );
            std::thread::sleep(left);
        }
    }
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
    // A failed lookup on a flaky link is worth retrying: classify it as a connection failure.
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| {
            wire_error(
                ErrorKind::Connect(ConnectProblem::Unresolved),
                format!("resolving {host}:{port}: {e}"),
            )
        })?
        .collect();
    if addrs.is_empty() {
        return Err(wire_error(
            ErrorKind::Connect(ConnectProblem::Unresolved),
            format!("resolving {host}:{port}: no addresses"),
        ));
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
        return Err(wire_error(
            ErrorKind::Connect(ConnectProblem::Unreachable),
            format!(
                "connecting to {host}:{port} ({addr}): timed out after {} s",
                timeout.as_secs()
            ),
        ));
    }
    let problem = if e.kind() == io::ErrorKind::ConnectionRefused {
        ConnectProblem::Refused
    } else {
        ConnectProblem::Unreachable
    };
    Err(wire_error(
        ErrorKind::Connect(problem),
        format!("connecting to {host}:{port} ({addr}): {e}"),
    ))
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
        Err(HandshakeError::WouldBlock(_)) => Err(wire_error(
            ErrorKind::Connection,
            format!(
                "TLS handshake: timed out after {} s waiting for {host}",
                timeout.as_secs()
            ),
        )),
        Err(HandshakeError::Failure(e)) => {
            let why = e.to_string();
            // An untrusted certificate stays untrusted; a handshake cut short by the link
            // is worth another try.
            let lower = why.to_ascii_lowercase();
            let certificate = lower.contains("certificate") || lower.contains("verify");
            Err(wire_error(ErrorKind::Tls { certificate }, why)
                .context(format!("TLS handshake with {host} failed")))
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

/// Bytes one connection moved so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Read from the socket (TLS plaintext; compressed when COMPRESS is active).
    pub wire_in: u64,
    /// Written to the socket (likewise).
    pub wire_out: u64,
    /// IMAP protocol bytes received (after decompression).
    pub imap_in: u64,
    /// IMAP protocol bytes sent (before compression).
    pub imap_out: u64,
}

/// The slowest a command may move data (both directions together, counted only while we
/// wait on the socket) for longer than `--timeout` before it is cut like a stalled link: a
/// server trickling a byte a second must not keep a run alive forever.
pub const MIN_BYTES_PER_SECOND: u64 = 1024;

/// Progress of the command in flight: bytes moved and time spent waiting on the socket since
/// the last tagged completion or the last full window.
#[derive(Debug, Default)]
struct Meter {
    bytes: u64,
    waited: Duration,
}

/// The socket side of a [`Transport`]: timeouts named, rate cap applied, bytes counted.
struct Raw {
    stream: Stream,
    host: String,
    timeout: Duration,
    limit: Option<RateLimit>,
    bytes_in: u64,
    bytes_out: u64,
    meter: Meter,
}

impl Raw {
    /// Count `n` bytes moved in `waited` on the socket; once the time waited reaches the
    /// timeout, the bytes of that window must reach [`MIN_BYTES_PER_SECOND`].
    fn meter(&mut self, n: usize, waited: Duration) -> io::Result<()> {
        self.meter.bytes += n as u64;
        self.meter.waited += waited;
        if self.meter.waited < self.timeout {
            return Ok(());
        }
        let need = MIN_BYTES_PER_SECOND.saturating_mul(self.meter.waited.as_secs().max(1));
        let moved = self.meter.bytes;
        self.meter = Meter::default();
        if moved < need {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "{} moved {moved} bytes in {} s, less than {MIN_BYTES_PER_SECOND} bytes/s: \
                     cut as a stalled link (--timeout sets the window)",
                    self.host,
                    self.timeout.as_secs()
                ),
            ));
        }
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

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let max = self.limit.as_ref().map_or(buf.len(), |l| l.chunk());
        let len = buf.len().min(max);
        let buf = &mut buf[..len];
        let started = Instant::now();
        let r = match &mut self.stream {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
            Stream::Closed => Err(closed()),
        };
        let n = r.map_err(|e| self.map_err(e, "waiting for"))?;
        self.meter(n, started.elapsed())?;
        self.bytes_in += n as u64;
        if let Some(l) = &self.limit {
            l.pace(Direction::In, n);
        }
        Ok(n)
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let max = self.limit.as_ref().map_or(buf.len(), |l| l.chunk());
        let buf = &buf[..buf.len().min(max)];
        let started = Instant::now();
        let r = match &mut self.stream {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
            Stream::Closed => Err(closed()),
        };
        let n = r.map_err(|e| self.map_err(e, "writing to"))?;
        self.meter(n, started.elapsed())?;
        self.bytes_out += n as u64;
        if let Some(l) = &self.limit {
            l.pace(Direction::Out, n);
        }
        Ok(n)
    }

    fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => buf = &buf[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
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

/// The byte stream the client reads and writes: a [`Stream`] that turns socket timeouts into a
/// clear error naming the host (so a silent server gives "timed out after N s waiting for
/// HOST" instead of a bare EAGAIN), keeps to the rate cap, and deflates once COMPRESS is on.
pub(crate) struct Transport {
    raw: Raw,
    deflate: Option<Deflate>,
    imap_in: u64,
    imap_out: u64,
}

/// Most plaintext deflated per `write` call, so a big literal is compressed and sent in pieces
/// rather than buffered whole.
const DEFLATE_WRITE_MAX: usize = 256 << 10;

impl Transport {
    pub(crate) fn new(
        stream: Stream,
        host: &str,
        timeout: Duration,
        limit: Option<RateLimit>,
    ) -> Self {
        Transport {
            raw: Raw {
                stream,
                host: host.to_string(),
                timeout,
                limit,
                bytes_in: 0,
                bytes_out: 0,
                meter: Meter::default(),
            },
            deflate: None,
            imap_in: 0,
            imap_out: 0,
        }
    }

    /// A command completed: its progress window starts afresh.
    pub(crate) fn command_done(&mut self) {
        self.raw.meter = Meter::default();
    }

    /// Close the socket in both directions now (nothing more may reach the server).
    pub(crate) fn shutdown(&mut self) {
        if let Some(tcp) = self.raw.stream.tcp() {
            let _ = tcp.shutdown(std::net::Shutdown::Both);
        }
        self.raw.stream = Stream::Closed;
    }

    /// Change the read and write timeouts of the socket.
    pub(crate) fn set_timeout(&mut self, t: Duration) -> Result<()> {
        let tcp = self.raw.stream.tcp().ok_or_else(closed)?;
        tcp.set_read_timeout(Some(t))?;
        tcp.set_write_timeout(Some(t))?;
        self.raw.timeout = t;
        Ok(())
    }

    /// Upgrade a plain stream to TLS in place (STARTTLS).
    pub(crate) fn start_tls(&mut self, connector: &TlsConnector) -> Result<()> {
        let tcp = match std::mem::replace(&mut self.raw.stream, Stream::Closed) {
            Stream::Plain(t) => t,
            _ => bail!(
                "{}: STARTTLS on a connection that is not plain TCP",
                self.raw.host
            ),
        };
        let tls = tls_handshake(connector, &self.raw.host, tcp, self.raw.timeout)?;
        self.raw.stream = Stream::Tls(Box::new(tls));
        Ok(())
    }

    /// Deflate everything from now on (after COMPRESS DEFLATE was accepted). `leftover` is what
    /// was already read past the OK; it is compressed too.
    pub(crate) fn start_deflate(&mut self, leftover: Vec<u8>) {
        // Until now IMAP text and wire bytes were the same (the leftover is compressed).
        self.imap_in = self.raw.bytes_in - leftover.len() as u64;
        self.imap_out = self.raw.bytes_out;
        self.deflate = Some(Deflate::new(leftover));
    }

    /// True once COMPRESS is active.
    pub(crate) fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// Byte counts so far.
    pub(crate) fn traffic(&self) -> Traffic {
        let compressed = self.deflate.is_some();
        Traffic {
            wire_in: self.raw.bytes_in,
            wire_out: self.raw.bytes_out,
            imap_in: if compressed {
                self.imap_in
            } else {
                self.raw.bytes_in
            },
            imap_out: if compressed {
                self.imap_out
            } else {
                self.raw.bytes_out
            },
        }
    }

    /// Write out compressed bytes gathered so far.
    fn drain_deflated(&mut self) -> io::Result<()> {
        if let Some(d) = &mut self.deflate {
            let n = d.output().len();
            self.raw.write_all(d.output())?;
            d.consume_output(n);
        }
        Ok(())
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(d) = &mut self.deflate else {
            return self.raw.read(buf);
        };
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if let Some(n) = d.inflate(buf)? {
                self.imap_in += n as u64;
                return Ok(n);
            }
            let raw = &mut self.raw;
            if d.refill(|b| raw.read(b))? == 0 {
                return Ok(0);
            }
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(d) = &mut self.deflate else {
            return self.raw.write(buf);
        };
        let n = buf.len().min(DEFLATE_WRITE_MAX);
        d.deflate(&buf[..n])?;
        self.imap_out += n as u64;
        if d.output_full() {
            self.drain_deflated()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if let Some(d) = &mut self.deflate {
            d.sync()?;
            self.drain_deflated()?;
        }
        self.raw.flush()
    }
}

/// Buffered reading side plus direct writes, over one [`Transport`].
pub(crate) type Conn = BufReader<Transport>;

/// A plain-text endpoint on 127.0.0.1:`port` for the wire layer's own tests.
#[cfg(test)]
pub(crate) fn test_endpoint(port: u16, timeout: Duration) -> Endpoint {
    Endpoint {
        host: "127.0.0.1".into(),
        port,
        tls: TlsMode::None,
        insecure: false,
        ca_file: None,
        user: "u".into(),
        authuser: None,
        secret: Secret::Password("pw".into()),
        timeout,
        compress: false,
        rate_limit: None,
        provider: None,
        pause: Default::default(),
    }
}

#[cfg(test)]
mod pause_tests {
    use super::Pause;
    use std::time::{Duration, Instant};

    #[test]
    fn a_stated_wait_holds_every_clone_of_the_endpoint() {
        let pause = Pause::default();
        let other = pause.clone();
        let start = Instant::now();
        pause.until(start + Duration::from_millis(150));
        // A shorter wait asked for later does not cut the first short.
        pause.until(start + Duration::from_millis(10));
        other.wait();
        assert!(start.elapsed() >= Duration::from_millis(150));
    }
}
