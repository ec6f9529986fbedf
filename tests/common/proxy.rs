//! A TCP fault proxy for tests and benchmarks: added latency, a bandwidth cap (per connection,
//! or shared by all connections like one real link), connections cut after about N bytes,
//! stalls (the socket stays open but nothing is forwarded), and buffering (what the proxy
//! accepted from a client keeps flowing to the server after the client is gone, as the
//! network still carries a dead process's last writes).
//!
//! Plain `std::net` and threads, loopback only, deterministic (cut points come from a seeded
//! PRNG and the connection index), bounded memory (a fixed-size queue per direction). Each
//! direction of each connection has a reader thread that stamps every chunk with the time it
//! may leave (`now + latency`) and a writer thread that waits for that time and then paces the
//! bytes out, so latency delays the data without limiting throughput.
//!
//! Also used by `examples/ferry-proxy.rs` (through `#[path]`), so it depends on nothing else in
//! the test harness.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest chunk read at once.
const CHUNK: usize = 16 << 10;
/// Chunks queued per direction: bounds memory to 4 MB per direction and connection, which
/// still carries 40 MB/s at 100 ms one-way latency.
const QUEUE: usize = 256;

/// Which connections (numbered from 0 in accept order) suffer `cut_after` / `stall_after`.
#[derive(Clone, Default)]
pub enum Affects {
    /// Every connection.
    #[default]
    All,
    /// Connections n-1, 2n-1, 3n-1, ... (every Nth).
    EveryNth(u64),
    /// The first N connections (later ones get through, e.g. after retries).
    FirstN(u64),
    /// Whatever the predicate says about the connection index.
    Custom(Arc<dyn Fn(u64) -> bool + Send + Sync>),
}

impl Affects {
    fn includes(&self, index: u64) -> bool {
        match self {
            Affects::All => true,
            Affects::EveryNth(n) => *n > 0 && index % n == n - 1,
            Affects::FirstN(n) => index < *n,
            Affects::Custom(f) => f(index),
        }
    }
}

impl fmt::Debug for Affects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Affects::All => f.write_str("All"),
            Affects::EveryNth(n) => write!(f, "EveryNth({n})"),
            Affects::FirstN(n) => write!(f, "FirstN({n})"),
            Affects::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

/// What the proxy does to the traffic. `Faults::default()` forwards faithfully.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// One-way delay of every chunk, in both directions (round trip = 2 × latency).
    pub latency: Duration,
    /// Bytes per second in each direction.
    pub bandwidth: Option<u64>,
    /// The bandwidth is one link's, shared by every connection (else each connection has it).
    pub shared_bandwidth: bool,
    /// When the client goes away, keep forwarding what it had sent to the server (the queue of
    /// up to 4 MB), instead of closing the server side at once.
    pub buffering: bool,
    /// On an affected connection, once the client has sent this many bytes, the server's
    /// answers stop reaching it (what it sends still reaches the server): a command that
    /// completed on the server but whose answer was lost.
    pub mute_answers_after_upload: Option<u64>,
    /// Close an affected connection after about this many bytes (both directions together),
    /// jittered ±20% per connection from `seed`.
    pub cut_after: Option<u64>,
    /// Stop forwarding on an affected connection after this many bytes (both directions
    /// together), keeping both sockets open until a peer closes.
    pub stall_after: Option<u64>,
    /// Which connections `cut_after` and `stall_after` apply to (latency and bandwidth apply to
    /// all).
    pub affects: Affects,
    /// Seed of the cut-point jitter.
    pub seed: u64,
}

/// Counters, readable while the proxy runs.
#[derive(Debug, Default)]
struct Stats {
    connections: AtomicU64,
    to_server: AtomicU64,
    to_client: AtomicU64,
    cuts: AtomicU64,
    stalls: AtomicU64,
}

/// Shared by the listener and every forwarder.
struct Shared {
    target: SocketAddr,
    faults: Faults,
    stats: Stats,
    stop: AtomicBool,
    /// Clones of every open socket, to shut them down when the proxy is dropped.
    open: Mutex<Vec<(u64, TcpStream)>>,
    /// The shared link's pacers (up, down), with `shared_bandwidth`.
    link: Option<(Mutex<Pacer>, Mutex<Pacer>)>,
}

/// A running proxy; dropping it closes the listener and every forwarded connection.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    listener: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on a free 127.0.0.1 port and forward to 127.0.0.1:`target_port`.
    pub fn start(target_port: u16, faults: Faults) -> Proxy {
        Proxy::start_on(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from(([127, 0, 0, 1], target_port)),
            faults,
        )
        .expect("start proxy on 127.0.0.1")
    }

    /// Listen on `listen` and forward to `target`; both must be loopback addresses.
    pub fn start_on(listen: SocketAddr, target: SocketAddr, faults: Faults) -> io::Result<Proxy> {
        for a in [listen, target] {
            if !a.ip().is_loopback() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{a} is not a loopback address; the proxy only runs on loopback"),
                ));
            }
        }
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let link = match (faults.bandwidth, faults.shared_bandwidth) {
            (Some(rate), true) => {
                Some((Mutex::new(Pacer::new(rate)), Mutex::new(Pacer::new(rate))))
            }
            _ => None,
        };
        let shared = Arc::new(Shared {
            target,
            faults,
            stats: Stats::default(),
            stop: AtomicBool::new(false),
            open: Mutex::new(Vec::new()),
            link,
        });
        let s = Arc::clone(&shared);
        let handle = std::thread::Builder::new()
            .name("proxy-listener".into())
            .spawn(move || accept_loop(listener, s))?;
        Ok(Proxy {
            addr,
            shared,
            listener: Some(handle),
        })
    }

    /// The port to connect to (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.shared.stats.connections.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from clients to the server.
    pub fn bytes_to_server(&self) -> u64 {
        self.shared.stats.to_server.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the server to clients.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.stats.to_client.load(Ordering::SeqCst)
    }

    /// Connections cut so far.
    pub fn cuts(&self) -> u64 {
        self.shared.stats.cuts.load(Ordering::SeqCst)
    }

    /// Connections stalled so far.
    pub fn stalls(&self) -> u64 {
        self.shared.stats.stalls.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.listener.take() {
            let _ = h.join();
        }
        // Forwarders end when their sockets do.
        for (_, s) in self
            .shared
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    for (index, incoming) in (0u64..).zip(listener.incoming()) {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = incoming else { continue };
        shared.stats.connections.fetch_add(1, Ordering::SeqCst);
        let Ok(server) = TcpStream::connect_timeout(&shared.target, Duration::from_secs(5)) else {
            continue;
        };
        if let Err(e) = start_connection(index, client, server, &shared) {
            eprintln!("proxy: connection {index}: {e}");
        }
    }
}

/// Fault state of one connection, shared by its two directions.
struct Link {
    index: u64,
    client: TcpStream,
    server: TcpStream,
    /// Bytes forwarded both ways.
    forwarded: AtomicU64,
    /// Bytes forwarded to the server.
    uploaded: AtomicU64,
    /// `mute_answers_after_upload`, for this connection.
    mute_after: Option<u64>,
    cut_at: Option<u64>,
    stall_at: Option<u64>,
    stalled: AtomicBool,
    was_cut: AtomicBool,
    /// Directions still running; the last one out unregisters the sockets.
    directions: AtomicU64,
}

impl Link {
    /// The connection is gone for both peers: the server's socket is closed, the client gets
    /// EOF. What the client still sends is read and dropped (see `write_side`), so a client
    /// blocked writing a large APPEND notices the cut when it next reads, as it would after a
    /// reset, instead of waiting for a window that never opens.
    fn cut(&self) {
        self.was_cut.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Write);
        let _ = self.server.shutdown(Shutdown::Both);
    }

    /// Which limit (stall or cut) `n` more bytes after `before` reach first, and where.
    fn limit_hit(&self, before: u64, n: u64) -> Option<(u64, Action)> {
        let hit = |l: Option<u64>| l.filter(|&l| before + n >= l);
        match (hit(self.stall_at), hit(self.cut_at)) {
            (Some(s), Some(c)) if s <= c => Some((s, Action::Stall)),
            (_, Some(c)) => Some((c, Action::Cut)),
            (Some(s), None) => Some((s, Action::Stall)),
            (None, None) => None,
        }
    }
}

fn start_connection(
    index: u64,
    client: TcpStream,
    server: TcpStream,
    shared: &Arc<Shared>,
) -> io::Result<()> {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let f = &shared.faults;
    let affected = f.affects.includes(index);
    let cut_at = f
        .cut_after
        .filter(|_| affected)
        .map(|n| jitter(n, f.seed, index));
    let stall_at = f.stall_after.filter(|_| affected);
    let link = Arc::new(Link {
        index,
        client: client.try_clone()?,
        server: server.try_clone()?,
        forwarded: AtomicU64::new(0),
        uploaded: AtomicU64::new(0),
        mute_after: f.mute_answers_after_upload.filter(|_| affected),
        cut_at,
        stall_at,
        stalled: AtomicBool::new(false),
        was_cut: AtomicBool::new(false),
        directions: AtomicU64::new(2),
    });
    {
        let mut open = shared.open.lock().unwrap_or_else(|p| p.into_inner());
        open.push((index, client.try_clone()?));
        open.push((index, server.try_clone()?));
    }
    spawn_direction(
        client.try_clone()?,
        server.try_clone()?,
        true,
        &link,
        shared,
    )?;
    spawn_direction(server, client, false, &link, shared)?;
    Ok(())
}

/// ±20% around `n`, the same for the same seed and connection.
fn jitter(n: u64, seed: u64, index: u64) -> u64 {
    let r = splitmix64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let frac = (r >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
    ((n as f64) * (0.8 + 0.4 * frac)).max(1.0) as u64
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Bytes read from one side, with the time they may be written to the other.
struct Chunk {
    due: Instant,
    data: Vec<u8>,
}

fn spawn_direction(
    src: TcpStream,
    dst: TcpStream,
    to_server: bool,
    link: &Arc<Link>,
    shared: &Arc<Shared>,
) -> io::Result<()> {
    let (tx, rx) = sync_channel::<Chunk>(QUEUE);
    let latency = shared.faults.latency;
    let name = if to_server { "up" } else { "down" };
    std::thread::Builder::new()
        .name(format!("proxy-{}-{name}-read", link.index))
        .spawn(move || read_side(src, tx, latency))?;
    let link = Arc::clone(link);
    let shared = Arc::clone(shared);
    std::thread::Builder::new()
        .name(format!("proxy-{}-{name}-write", link.index))
        .spawn(move || {
            write_side(dst, rx, to_server, &link, &shared);
            // This direction is over: half-close so the peer sees EOF (or the cut).
            let _ = if to_server {
                link.server.shutdown(Shutdown::Write)
            } else {
                link.client.shutdown(Shutdown::Write)
            };
            if link.directions.fetch_sub(1, Ordering::SeqCst) == 1 {
                shared
                    .open
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .retain(|(i, _)| *i != link.index);
            }
        })?;
    Ok(())
}

fn read_side(mut src: TcpStream, tx: SyncSender<Chunk>, latency: Duration) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = Chunk {
            due: Instant::now() + latency,
            data: buf[..n].to_vec(),
        };
        if tx.send(chunk).is_err() {
            return;
        }
    }
}

fn write_side(
    mut dst: TcpStream,
    rx: Receiver<Chunk>,
    to_server: bool,
    link: &Link,
    shared: &Shared,
) {
    let stats = &shared.stats;
    let counter = if to_server {
        &stats.to_server
    } else {
        &stats.to_client
    };
    // Per connection, unless the link is shared (then its pacer is locked per piece).
    let mut pacer = shared
        .faults
        .bandwidth
        .filter(|_| shared.link.is_none())
        .map(Pacer::new);
    let link_pacer = shared
        .link
        .as_ref()
        .map(|(up, down)| if to_server { up } else { down });
    while let Ok(chunk) = rx.recv() {
        let now = Instant::now();
        if chunk.due > now {
            std::thread::sleep(chunk.due - now);
        }
        if link.stalled.load(Ordering::SeqCst) || link.was_cut.load(Ordering::SeqCst) {
            continue; // swallow: a stalled peer waits (until its timeout); a cut one reads EOF
        }
        if to_server {
            link.uploaded
                .fetch_add(chunk.data.len() as u64, Ordering::SeqCst);
        } else if link
            .mute_after
            .is_some_and(|m| link.uploaded.load(Ordering::SeqCst) >= m)
        {
            continue; // the answer is lost on the way back
        }
        let mut data = chunk.data.as_slice();
        let before = link
            .forwarded
            .fetch_add(data.len() as u64, Ordering::SeqCst);
        let end_action = link
            .limit_hit(before, data.len() as u64)
            .map(|(limit, action)| {
                let keep = limit.saturating_sub(before).min(data.len() as u64) as usize;
                data = &data[..keep];
                action
            });
        let piece_len = match (&pacer, link_pacer) {
            (Some(p), _) => p.piece(),
            (None, Some(l)) => l.lock().map_or(CHUNK, |p| p.piece()),
            (None, None) => CHUNK,
        };
        for piece in data.chunks(piece_len) {
            if let Some(p) = &mut pacer {
                p.wait(piece.len());
            }
            if let Some(l) = link_pacer {
                let wait = l
                    .lock()
                    .map(|mut p| p.reserve(piece.len()))
                    .unwrap_or_default();
                std::thread::sleep(wait);
            }
            if dst.write_all(piece).is_err() {
                if !to_server && shared.faults.buffering {
                    // The client is gone; what it sent keeps flowing to the server.
                    return;
                }
                link.cut();
                return;
            }
            counter.fetch_add(piece.len() as u64, Ordering::SeqCst);
        }
        match end_action {
            Some(Action::Cut) => {
                if !link.was_cut.load(Ordering::SeqCst) {
                    stats.cuts.fetch_add(1, Ordering::SeqCst);
                }
                link.cut();
                return;
            }
            Some(Action::Stall) if !link.stalled.swap(true, Ordering::SeqCst) => {
                stats.stalls.fetch_add(1, Ordering::SeqCst);
            }
            Some(Action::Stall) | None => {}
        }
    }
}

#[derive(Clone, Copy)]
enum Action {
    Cut,
    Stall,
}

/// Sends at a fixed byte rate: each piece leaves no earlier than the previous one's share of
/// time allows.
struct Pacer {
    rate: u64,
    next: Instant,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            rate: rate.max(1),
            next: Instant::now(),
        }
    }

    /// 10 ms worth of bytes, so pacing is smooth.
    fn piece(&self) -> usize {
        ((self.rate / 100) as usize).clamp(256, CHUNK)
    }

    fn wait(&mut self, n: usize) {
        std::thread::sleep(self.reserve(n));
    }

    /// Book `n` bytes on the link: how long to wait before sending them.
    fn reserve(&mut self, n: usize) -> Duration {
        let now = Instant::now();
        let wait = if self.next > now {
            self.next - now
        } else {
            // Idle time is not banked: no bursts after a pause.
            self.next = now;
            Duration::ZERO
        };
        self.next += Duration::from_secs_f64(n as f64 / self.rate as f64);
        wait
    }
}
