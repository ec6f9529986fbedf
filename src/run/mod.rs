//! How the engines run against a server, written once for pull, push and check: connections
//! made through a [`Connector`], one retry loop ([`retrying`]: reconnect after a transient
//! failure, with backoff, any progress resetting the budget), one job pool ([`pool`]: items
//! spread over several connections), and what a run reports ([`Failure`]).

mod retry;
pub mod stop;

pub use retry::Retry;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::imap::error::asks_to_wait;
use crate::imap::oauth2::RefreshError;
use crate::imap::{connect_problem, is_transient, Client, ConnectProblem, Endpoint};
use crate::mailbox::Mailbox;
use crate::ui;

/// A message (or a whole folder, `uid: None`) that could not be moved or compared, and why.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Failure {
    pub folder: String,
    pub uid: Option<u32>,
    pub reason: String,
}

impl Failure {
    pub fn folder(folder: &str, reason: impl Into<String>) -> Failure {
        Failure {
            folder: folder.to_string(),
            uid: None,
            reason: reason.into(),
        }
    }

    pub fn message(folder: &str, uid: u32, reason: impl Into<String>) -> Failure {
        Failure {
            folder: folder.to_string(),
            uid: Some(uid),
            reason: reason.into(),
        }
    }
}

/// Makes connections to one server.
pub trait Connector: Sync {
    /// "host1" or "host2", for messages.
    fn side(&self) -> &str;

    /// One new, logged-in connection (no retries here: [`connect`] adds them).
    fn open(&self) -> Result<Box<dyn Mailbox>>;

    /// Whether a connection was opened in this run. Until one was, failing to connect is
    /// not retried: a wrong name, port or TLS mode, or a wrong password, fails at once.
    fn has_connected(&self) -> bool {
        true
    }
}

/// The network [`Connector`] of an endpoint.
pub struct Imap<'a> {
    endpoint: &'a Endpoint,
    side: &'a str,
    connected: AtomicBool,
}

impl<'a> Imap<'a> {
    pub fn new(endpoint: &'a Endpoint, side: &'a str) -> Imap<'a> {
        Imap {
            endpoint,
            side,
            connected: AtomicBool::new(false),
        }
    }
}

impl Connector for Imap<'_> {
    fn side(&self) -> &str {
        self.side
    }

    fn open(&self) -> Result<Box<dyn Mailbox>> {
        let ep = self.endpoint;
        let mut c = Client::connect(ep).map_err(|e| {
            let refresh = e.chain().any(|c| c.is::<RefreshError>());
            let what = if crate::imap::error::is_connection_cap(&e) {
                format!("{} refuses another session for {}", self.side, ep.user)
            } else if refresh || connect_problem(&e) == Some(ConnectProblem::Login) {
                format!("cannot log in to {} as {}", self.side, ep.user)
            } else {
                format!("cannot connect to {} ({}:{})", self.side, ep.host, ep.port)
            };
            e.context(what)
        })?;
        c.set_label(self.side);
        self.connected.store(true, Ordering::Relaxed);
        Ok(Box::new(c))
    }

    fn has_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

/// Connect through `connector`, retrying transient failures within `retry`'s budget once a
/// connection was opened in this run (see [`Connector::has_connected`]).
pub fn connect(connector: &dyn Connector, retry: &mut Retry) -> Result<Box<dyn Mailbox>> {
    let side = connector.side();
    loop {
        match connector.open() {
            Ok(c) => return Ok(c),
            Err(e)
                if is_transient(&e)
                    // A server that answered, asking us to come back later (throttling), is
                    // no mistake of the user's: even a first connection waits and tries again.
                    && (connector.has_connected() || asks_to_wait(&e))
                    && retry.failed(&format!("connecting to {side}"), &e) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Log in to `endpoint` once (its TLS checked on the way) and log out: a wrong option or
/// password of that side fails now, before a long run on the other side. One connection,
/// not kept: a run may last hours before it needs that side.
pub fn check_login(endpoint: &Endpoint, side: &str, retries: u32) -> Result<()> {
    let mut conn = connect(&Imap::new(endpoint, side), &mut Retry::new(retries))?;
    conn.logout();
    Ok(())
}

/// Run `attempt` on `conn` until it succeeds, a failure is not transient, or `retry`'s budget
/// of consecutive failures is spent; after each transient failure reconnect (the connection may
/// be in any state). An attempt sets its `bool` when it achieved something before failing (that
/// resets the budget: a link that drops every few megabytes still gets a long run through).
pub fn retrying<T>(
    conn: &mut Box<dyn Mailbox>,
    connector: &dyn Connector,
    retry: &mut Retry,
    what: &str,
    mut attempt: impl FnMut(&mut dyn Mailbox, &mut bool) -> Result<T>,
) -> Result<T> {
    loop {
        let mut progressed = false;
        let e = match attempt(conn.as_mut(), &mut progressed) {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if progressed {
            retry.progress();
        }
        if !is_transient(&e) || !retry.failed(&format!("{}, {what}", connector.side()), &e) {
            return Err(e);
        }
        *conn = connect(connector, retry)?;
    }
}

/// The first wait before a connection refused for the account's session cap is tried again
/// (doubling to [`CAP_RETRY_LONGEST`]).
const CAP_RETRY: Duration = if cfg!(test) {
    Duration::from_millis(20)
} else {
    Duration::from_secs(5)
};
const CAP_RETRY_LONGEST: Duration = Duration::from_secs(60);

/// The connections of one [`pool`], when the server caps the sessions of the account (Gmail:
/// 15, the user's phones and desktop clients included, refused at LOGIN): the run goes on over
/// those it has, and a refused one is tried again later while items are left.
struct Capped<'a> {
    connector: &'a dyn Connector,
    /// Connections working now (the first one included).
    live: AtomicUsize,
    /// The most working at once.
    peak: AtomicUsize,
    /// Whether the cap was reported.
    said: AtomicBool,
}

impl<'a> Capped<'a> {
    fn new(connector: &'a dyn Connector) -> Capped<'a> {
        Capped {
            connector,
            live: AtomicUsize::new(1),
            peak: AtomicUsize::new(1),
            said: AtomicBool::new(false),
        }
    }

    /// Tell, once, that the account's session cap holds the run to fewer connections.
    fn say_capped(&self) {
        if !self.said.swap(true, Ordering::Relaxed) {
            ui::warn(&format!(
                "{}: Gmail allows 15 sessions for the account (phones and other clients count): \
                 continuing with {}",
                self.connector.side(),
                self.peak.load(Ordering::Relaxed)
            ));
        }
    }

    /// A connection of the pool ended.
    fn lost(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// A new connection for a worker; `None` when it cannot be had (said, with `what`), or the
    /// cap still refuses it when `left` says no item is left.
    fn connect(&self, left: &dyn Fn() -> bool, what: &str) -> Option<Box<dyn Mailbox>> {
        let side = self.connector.side();
        let mut wait = CAP_RETRY;
        loop {
            // The cap is waited out here, quietly; other failures get connect's retries.
            let opened = match self.connector.open() {
                Err(e) if !crate::imap::error::is_connection_cap(&e) => {
                    connect(self.connector, &mut Retry::new(3))
                }
                other => other,
            };
            match opened {
                Ok(c) => {
                    let now = self.live.fetch_add(1, Ordering::Relaxed) + 1;
                    self.peak.fetch_max(now, Ordering::Relaxed);
                    return Some(c);
                }
                Err(e) if crate::imap::error::is_connection_cap(&e) => {
                    // Waited in slices: once no item is left, the pool must not wait for us.
                    // Said after the first wait (or then), when the others are up; tried again
                    // with longer waits while items are left.
                    let until = std::time::Instant::now() + wait;
                    while std::time::Instant::now() < until {
                        if !left() {
                            self.say_capped();
                            return None;
                        }
                        std::thread::sleep(CAP_RETRY.min(Duration::from_millis(100)));
                    }
                    self.say_capped();
                    wait = (wait * 2).min(CAP_RETRY_LONGEST);
                }
                Err(e) => {
                    ui::warn(&format!("{what} {side} failed: {e:#}"));
                    return None;
                }
            }
        }
    }
}

/// What [`pool`] gives back: each item's result (`None`: not done) and the first connection
/// when it is still usable.
pub type Pooled<R> = (Vec<Option<R>>, Option<Box<dyn Mailbox>>);

/// What one worker of [`pool`] gives back for an item: its result, and whether the connection
/// must be replaced before the next item (an error left it in an unknown state).
pub struct Done<R> {
    pub result: R,
    pub reconnect: bool,
}

/// Work through `items` over up to `jobs` connections: `first` serves the first worker, the
/// others connect (in parallel with `prepare`, which runs on `first` and says which items to
/// do: `None` for all). Each worker takes the next item, runs `work`, and replaces its
/// connection when asked. Returns each item's result (`None`: not done, because every
/// connection was lost) and the first connection when it is still usable.
///
/// Longer than most functions here on purpose: the queue, its condition variable and the
/// scoped worker threads must live in one scope, and splitting them apart would only pass
/// the same five references around.
pub fn pool<T: Sync, R: Send>(
    items: &[T],
    jobs: usize,
    connector: &dyn Connector,
    first: Box<dyn Mailbox>,
    prepare: impl FnOnce(&mut Box<dyn Mailbox>) -> Result<Option<Vec<bool>>>,
    work: impl Fn(&mut Box<dyn Mailbox>, usize, &T) -> Done<R> + Sync,
) -> Result<Pooled<R>> {
    let jobs = jobs.clamp(1, items.len().max(1));
    // None until `prepare` has run: the other workers wait for it.
    let queue: Mutex<Option<VecDeque<usize>>> = Mutex::new(None);
    let ready = Condvar::new();
    let results: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let next = || -> Option<usize> {
        let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
        while q.is_none() {
            q = ready.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        q.as_mut().and_then(VecDeque::pop_front)
    };
    let capped = Capped::new(connector);
    let left = || {
        let q = queue.lock().unwrap_or_else(|e| e.into_inner());
        q.as_ref().is_none_or(|q| !q.is_empty())
    };
    let worker = |mut conn: Box<dyn Mailbox>| -> Option<Box<dyn Mailbox>> {
        while let Some(i) = next() {
            let done = work(&mut conn, i, &items[i]);
            if let Ok(mut r) = results.lock() {
                r[i] = Some(done.result);
            }
            if done.reconnect || !conn.is_usable() {
                capped.lost();
                // The items left go to the other connections meanwhile.
                conn = capped.connect(&left, "reconnecting to")?;
            }
        }
        capped.lost();
        Some(conn)
    };
    let mut prepared = Ok(());
    let mut first = Some(first);
    let mut kept = None;
    std::thread::scope(|s| {
        for _ in 1..jobs {
            // Fewer connections are still correct; the others take the items.
            s.spawn(|| {
                if let Some(mut c) = capped
                    .connect(&left, "an extra connection to")
                    .and_then(worker)
                {
                    c.logout();
                }
            });
        }
        let mut conn = first.take().expect("the first connection");
        let chosen = prepare(&mut conn);
        let todo: VecDeque<usize> = match &chosen {
            Ok(Some(keep)) => (0..items.len()).filter(|&i| keep[i]).collect(),
            Ok(None) => (0..items.len()).collect(),
            Err(_) => VecDeque::new(),
        };
        prepared = chosen.map(|_| ());
        *queue.lock().unwrap_or_else(|e| e.into_inner()) = Some(todo);
        ready.notify_all();
        kept = if prepared.is_ok() {
            worker(conn)
        } else {
            Some(conn)
        };
    });
    prepared?;
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok((results, kept))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailbox::memory::{Memory, Server};
    use std::sync::Arc;

    struct Mem(Arc<Mutex<Server>>);

    impl Connector for Mem {
        fn side(&self) -> &str {
            "memory"
        }
        fn open(&self) -> Result<Box<dyn Mailbox>> {
            Ok(Box::new(Memory::connect(&self.0)))
        }
    }

    #[test]
    fn the_pool_does_every_chosen_item_once_over_several_connections() {
        let server = Server::new();
        let c = Mem(server);
        let items: Vec<u32> = (0..20).collect();
        let first = c.open().unwrap();
        let (results, kept) = pool(
            &items,
            4,
            &c,
            first,
            |_| Ok(Some((0..20).map(|i| i % 2 == 0).collect())),
            |_, _, x| Done {
                result: x * 10,
                reconnect: *x == 4,
            },
        )
        .unwrap();
        let done: Vec<Option<u32>> = results;
        assert_eq!(done[4], Some(40));
        assert_eq!(done[5], None);
        assert_eq!(done.iter().flatten().count(), 10);
        assert!(kept.is_some());
    }

    /// Only the first connection opens; the others are refused.
    struct OneOnly(Arc<Mutex<Server>>, std::sync::atomic::AtomicUsize);

    impl Connector for OneOnly {
        fn side(&self) -> &str {
            "memory"
        }
        fn open(&self) -> Result<Box<dyn Mailbox>> {
            if self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst) > 0 {
                anyhow::bail!("refused");
            }
            Ok(Box::new(Memory::connect(&self.0)))
        }
    }

    #[test]
    fn extra_connections_that_fail_leave_every_item_to_the_ones_that_work() {
        let c = OneOnly(Server::new(), Default::default());
        let items: Vec<u32> = (0..10).collect();
        let first = c.open().unwrap();
        let (results, _) = pool(
            &items,
            4,
            &c,
            first,
            |_| Ok(None),
            |_, _, x| {
                // Slow enough that the failed connections are seen while items are left.
                std::thread::sleep(std::time::Duration::from_millis(20));
                Done {
                    result: *x,
                    reconnect: false,
                }
            },
        )
        .unwrap();
        assert_eq!(results.iter().flatten().count(), 10, "{results:?}");
    }

    /// The first connection opens; the next `refused` are refused for the session cap.
    struct Cap(Arc<Mutex<Server>>, std::sync::atomic::AtomicUsize, usize);

    impl Connector for Cap {
        fn side(&self) -> &str {
            "memory"
        }
        fn open(&self) -> Result<Box<dyn Mailbox>> {
            let n = self.1.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n > 0 && n <= self.2 {
                return Err(crate::imap::error::wire_error(
                    crate::imap::ErrorKind::Auth {
                        code: Some("ALERT".into()),
                        text: "Too many simultaneous connections. (Failure)".into(),
                        wait: None,
                    },
                    "login refused",
                ));
            }
            Ok(Box::new(Memory::connect(&self.0)))
        }
    }

    #[test]
    fn a_connection_refused_for_the_session_cap_is_tried_again_while_items_are_left() {
        // Each extra connection is refused 4 times in a row (3 in connect, then once more after
        // the pool's wait), then opens.
        let c = Cap(Server::new(), Default::default(), 4);
        let items: Vec<u32> = (0..60).collect();
        let first = c.open().unwrap();
        let workers = Mutex::new(std::collections::HashSet::new());
        let (results, _) = pool(
            &items,
            2,
            &c,
            first,
            |_| Ok(None),
            |conn, _, x| {
                // 3 s in all: longer than the 1.75 s connect's own retries wait.
                std::thread::sleep(std::time::Duration::from_millis(50));
                let _ = conn;
                workers.lock().unwrap().insert(std::thread::current().id());
                Done {
                    result: *x,
                    reconnect: false,
                }
            },
        )
        .unwrap();
        assert_eq!(results.iter().flatten().count(), 60);
        assert_eq!(
            workers.lock().unwrap().len(),
            2,
            "the second connection joined later"
        );
    }

    #[test]
    fn retrying_reconnects_after_a_transient_failure_and_gives_up_on_others() {
        let c = Mem(Server::new());
        let mut conn = c.open().unwrap();
        let mut retry = Retry::new(5);
        retry.set_base_delay(std::time::Duration::ZERO);
        let mut tries = 0;
        let got = retrying(&mut conn, &c, &mut retry, "testing", |_, _| {
            tries += 1;
            if tries < 3 {
                Err(anyhow::Error::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionReset,
                )))
            } else {
                Ok(tries)
            }
        })
        .unwrap();
        assert_eq!(got, 3);
        let e = retrying(&mut conn, &c, &mut retry, "testing", |_, _| -> Result<()> {
            Err(anyhow::anyhow!("not transient"))
        });
        assert!(e.is_err());
    }
}
