//! Telling transient failures (worth a reconnect and retry after a pause) from permanent ones.
//!
//! The wire layer returns [`anyhow::Error`]s whose root is a [`WireError`] when it knows what
//! went wrong; [`is_transient`] reads that (or a network [`std::io::Error`]) anywhere in the
//! chain, so callers may add context freely.

use std::fmt;
use std::io;
use std::time::Duration;

/// What kind of failure a [`WireError`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The connection timed out, was closed, or the server said BYE before or between
    /// commands.
    Connection,
    /// The server said BYE while a command was running, with this text.
    Bye { text: String },
    /// A command completed with NO or BAD. `code` is the response code's keyword, upper-cased
    /// (`THROTTLED`, `NONEXISTENT`, ...); `wait` the time the answer itself asked to wait
    /// ([`answer_wait`]).
    Rejected {
        code: Option<String>,
        text: String,
        wait: Option<Duration>,
    },
    /// Authentication was refused (`wait` as for `Rejected`).
    Auth {
        code: Option<String>,
        text: String,
        wait: Option<Duration>,
    },
    /// The TLS handshake failed; `certificate` when the server's certificate was not trusted.
    Tls { certificate: bool },
    /// The server broke the protocol: a response too large for what was asked, one that
    /// cannot be read where its content matters, answers to questions not asked. Asking again
    /// gets the same answer.
    Protocol,
    /// No IMAP session could be opened: the name, the port or what answers there is wrong
    /// (or the link is down). See [`ConnectProblem`].
    Connect(ConnectProblem),
    /// The server kept answering `[THROTTLED]` after every wait ([`super::slowdown`]): Gmail's
    /// slow-down past its daily limit. Not retried: the engines stop for the day.
    SlowedDown,
}

/// Why no IMAP session could be opened, for advice that names the option to change (and, as
/// `problem` in a `--json` error, for a fleet to tell a mistake from a bad link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectProblem {
    /// The host name does not resolve.
    Unresolved,
    /// Nothing listens on the port (connection refused).
    Refused,
    /// No answer to the connection within the timeout.
    Unreachable,
    /// The TLS handshake failed: the port may speak plain IMAP, or something else.
    TlsHandshake,
    /// The server's certificate is not trusted.
    Certificate,
    /// Something answered, but no IMAP greeting came (another protocol, or TLS expected).
    NotImap,
    /// STARTTLS was asked for, and the server does not offer it.
    NoStartTls,
    /// The server refused the login.
    Login,
}

/// A failure the wire layer could classify. Its `Display` is the full message.
#[derive(Debug)]
pub struct WireError {
    kind: ErrorKind,
    message: String,
}

impl WireError {
    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// True when the same operation may well succeed on a new connection a little later.
    pub fn is_transient(&self) -> bool {
        match &self.kind {
            ErrorKind::Connection | ErrorKind::Bye { .. } => true,
            ErrorKind::Rejected { code, text, .. } | ErrorKind::Auth { code, text, .. } => {
                answer_is_transient(code.as_deref(), text)
            }
            ErrorKind::Tls { certificate } => !certificate,
            ErrorKind::Protocol | ErrorKind::SlowedDown => false,
            ErrorKind::Connect(p) => matches!(
                p,
                ConnectProblem::Unresolved | ConnectProblem::Refused | ConnectProblem::Unreachable
            ),
        }
    }

    /// The wait the server's answer asked for, if it stated one ([`answer_wait`]).
    pub fn stated_wait(&self) -> Option<Duration> {
        match &self.kind {
            ErrorKind::Rejected { wait, .. } | ErrorKind::Auth { wait, .. } => *wait,
            _ => None,
        }
    }

    /// True when the server answered, asking to come back later (a throttling NO/BAD), as
    /// opposed to a connection that failed.
    pub fn asks_to_wait(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Rejected { .. } | ErrorKind::Auth { .. }
        ) && self.is_transient()
    }

    /// Why no session could be opened, when that is what this error says.
    pub fn connect_problem(&self) -> Option<ConnectProblem> {
        match &self.kind {
            ErrorKind::Connect(p) => Some(*p),
            ErrorKind::Tls { certificate: true } => Some(ConnectProblem::Certificate),
            ErrorKind::Tls { certificate: false } => Some(ConnectProblem::TlsHandshake),
            ErrorKind::Auth { .. } => Some(ConnectProblem::Login),
            _ => None,
        }
    }
}

/// The first [`WireError`] in `err`'s chain: what the wire layer classified.
fn wire_of(err: &anyhow::Error) -> Option<&WireError> {
    err.chain().find_map(|c| c.downcast_ref::<WireError>())
}

/// The wait the server's answer in `err` asked for ([`WireError::stated_wait`]): read from
/// the answer when it was classified, never from the error's text (which may quote a mailbox
/// name chosen by anyone).
pub fn stated_wait(err: &anyhow::Error) -> Option<Duration> {
    wire_of(err).and_then(WireError::stated_wait)
}

/// True when `err` is a server's answer asking to come back later ([`WireError::asks_to_wait`]).
pub fn asks_to_wait(err: &anyhow::Error) -> bool {
    wire_of(err).is_some_and(WireError::asks_to_wait)
}

/// Why `err` (anywhere in its chain) says no IMAP session could be opened, if it does.
pub fn connect_problem(err: &anyhow::Error) -> Option<ConnectProblem> {
    err.chain()
        .find_map(|c| c.downcast_ref::<WireError>())
        .and_then(WireError::connect_problem)
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

/// Build an [`anyhow::Error`] carrying a [`WireError`].
pub(crate) fn wire_error(kind: ErrorKind, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(WireError {
        kind,
        message: message.into(),
    })
}

/// The server broke the protocol ([`ErrorKind::Protocol`]), as `message` says.
pub fn protocol(message: String) -> anyhow::Error {
    wire_error(ErrorKind::Protocol, message)
}

/// A transient failure described by `message` (a server asking to wait, said in a reply that
/// is not itself an error of the command layer).
pub fn transient(message: String) -> WireError {
    WireError {
        kind: ErrorKind::Connection,
        message,
    }
}

/// Response codes (RFC 5530 and common extensions) that mean "not now, later".
const TRANSIENT_CODES: &[&str] = &["THROTTLED", "UNAVAILABLE", "LIMIT", "INUSE", "SERVERBUG"];

/// Response codes that no amount of retrying will change.
const PERMANENT_CODES: &[&str] = &[
    "AUTHENTICATIONFAILED",
    "AUTHORIZATIONFAILED",
    "EXPIRED",
    "PRIVACYREQUIRED",
    "CONTACTADMIN",
    "NOPERM",
    "NONEXISTENT",
    "ALREADYEXISTS",
    "OVERQUOTA",
    "TRYCREATE",
    "CANNOT",
    "PARSE",
    "BADCHARSET",
];

/// Whether a NO/BAD answer (its code keyword, if any, and its text) asks us to come back later.
pub fn answer_is_transient(code: Option<&str>, text: &str) -> bool {
    if let Some(code) = code {
        let kw = code.split_ascii_whitespace().next().unwrap_or("");
        if PERMANENT_CODES.iter().any(|c| kw.eq_ignore_ascii_case(c)) {
            return false;
        }
        if TRANSIENT_CODES.iter().any(|c| kw.eq_ignore_ascii_case(c)) {
            return true;
        }
    }
    let t = text.to_ascii_lowercase();
    // Exchange: "Request is throttled", "Server Unavailable. 15" (its back end, for a moment);
    // Gmail: "Too many simultaneous connections" (a session closes sooner or later).
    t.contains("throttl")
        || t.contains("try again later")
        || t.contains("server unavailable")
        || answer_is_connection_cap(text)
}

/// Whether an answer is Exchange's `BAD User is authenticated but not connected.`: the token
/// or password was taken, but no mailbox goes with it (wrong scope, no licence, no permission
/// on the mailbox). Retrying does not change it.
pub fn answer_is_not_connected(text: &str) -> bool {
    text.to_ascii_lowercase()
        .contains("authenticated but not connected")
}

/// True when `err` (anywhere in its chain) is [`answer_is_not_connected`].
pub fn is_not_connected(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<WireError>()
            .is_some_and(|w| match &w.kind {
                ErrorKind::Rejected { text, .. } | ErrorKind::Auth { text, .. } => {
                    answer_is_not_connected(text)
                }
                _ => false,
            })
    })
}

/// True when `err` (anywhere in its chain) is a failure that a reconnect and a retry after a
/// pause may cure: network I/O errors, timeouts, unexpected EOF or BYE, TLS handshakes cut
/// short, and NO/BAD answers with `[THROTTLED]`, `[UNAVAILABLE]`, `[LIMIT]`, `[INUSE]` or
/// text about throttling / "try again later". False for everything else, notably failed
/// authentication, `[NONEXISTENT]`, untrusted certificates and local (e.g. disk) errors.
pub fn is_transient(err: &anyhow::Error) -> bool {
    for cause in err.chain() {
        if let Some(w) = cause.downcast_ref::<WireError>() {
            return w.is_transient();
        }
        if let Some(e) = cause.downcast_ref::<io::Error>() {
            return io_is_transient(e);
        }
    }
    false
}

/// True when `err` (anywhere in its chain) is a BYE whose text says `Session expired` in the
/// middle of a command: what Gmail answers once an account passed its daily IMAP bandwidth
/// (`* BYE Session expired, please login again.`). Still transient for [`is_transient`]: only
/// the engines, when it cuts off the moving of message bytes, read it as the server's quota.
pub fn is_session_expired(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<WireError>()
            .is_some_and(|w| match &w.kind {
                ErrorKind::Bye { text } => text.to_ascii_lowercase().contains("session expired"),
                _ => false,
            })
    })
}

/// True when `err` (anywhere in its chain) is a refusal with `[OVERQUOTA]` whose text speaks
/// of bandwidth or command limits: Gmail's answer once an account passed a daily IMAP limit
/// (`NO [OVERQUOTA] Account exceeded command or bandwidth limits. (Failure)`). A full
/// mailbox (the other meaning of OVERQUOTA, RFC 5530) is not this.
pub fn is_bandwidth_quota(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<WireError>()
            .is_some_and(|w| match &w.kind {
                ErrorKind::Rejected { code, text, .. } => {
                    answer_is_bandwidth_quota(code.as_deref(), text)
                }
                _ => false,
            })
    })
}

/// Whether a NO answer (its code keyword and text) is a daily bandwidth quota.
pub fn answer_is_bandwidth_quota(code: Option<&str>, text: &str) -> bool {
    let over = code.is_some_and(|c| {
        let kw = c.split_ascii_whitespace().next().unwrap_or("");
        kw.eq_ignore_ascii_case("OVERQUOTA")
    });
    let t = text.to_ascii_lowercase();
    over && (t.contains("bandwidth") || t.contains("command or"))
}

/// True when `err` (anywhere in its chain) is a server's daily limit, said either way Gmail
/// says it: `[OVERQUOTA]` with bandwidth ([`is_bandwidth_quota`]), `BYE Session expired`
/// ([`is_session_expired`], ambiguous: see the engines), or a slow-down that never lifts
/// ([`is_slowed_down`]).
pub fn is_server_quota(err: &anyhow::Error) -> bool {
    is_bandwidth_quota(err) || is_session_expired(err) || is_slowed_down(err)
}

/// True when `err` (anywhere in its chain) says the server kept a connection throttled after
/// every wait ([`ErrorKind::SlowedDown`]).
pub fn is_slowed_down(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<WireError>()
            .is_some_and(|w| w.kind == ErrorKind::SlowedDown)
    })
}

/// Whether an answer's text is a per-account session cap: Gmail answers a LOGIN past its 15
/// sessions `NO [ALERT] Too many simultaneous connections. (Failure)`.
pub fn answer_is_connection_cap(text: &str) -> bool {
    text.to_ascii_lowercase()
        .contains("too many simultaneous connections")
}

/// True when `err` (anywhere in its chain) is a login refused for the account's session cap
/// ([`answer_is_connection_cap`]): a session may open later, when one closes.
pub fn is_connection_cap(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<WireError>()
            .is_some_and(|w| match &w.kind {
                ErrorKind::Auth { text, .. } | ErrorKind::Rejected { text, .. } => {
                    answer_is_connection_cap(text)
                }
                _ => false,
            })
    })
}

/// The error of a BYE `text` during a command; `message` says where.
pub(crate) fn bye_error(text: &str, message: String) -> anyhow::Error {
    wire_error(
        ErrorKind::Bye {
            text: text.to_string(),
        },
        message,
    )
}

/// True when `err` (anywhere in its chain) is the server breaking the protocol
/// ([`ErrorKind::Protocol`]): asking the same way again gets the same answer.
pub fn is_protocol(err: &anyhow::Error) -> bool {
    err.chain().any(|c| {
        c.downcast_ref::<WireError>()
            .is_some_and(|w| w.kind == ErrorKind::Protocol)
    })
}

/// True when `err` is a [`WireError`] (the server's answer, or its connection), not a local
/// failure.
pub fn is_wire(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<WireError>().is_some())
}

/// Network-ish I/O errors are transient; local ones (disk full, permissions) are not, so a
/// store error wrapped in the same chain never causes a retry loop.
fn io_is_transient(e: &io::Error) -> bool {
    use io::ErrorKind as K;
    matches!(
        e.kind(),
        K::TimedOut
            | K::WouldBlock
            | K::Interrupted
            | K::UnexpectedEof
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::ConnectionRefused
            | K::NotConnected
            | K::BrokenPipe
            | K::AddrNotAvailable
            | K::NetworkUnreachable
            | K::NetworkDown
            | K::HostUnreachable
    )
}

/// The wait a NO/BAD answer asks for, read from the answer alone: the number after its code
/// (`[THROTTLED 30]`, `[LIMIT 30]`: seconds; `code` is the code as sent), or Microsoft 365's
/// text, which starts with it (`Request is throttled. Suggested Backoff Time: 300000
/// milliseconds`; seconds too). Only an answer that asks to come back later
/// ([`answer_is_transient`]) states a wait, and only at the start of its text: a server that
/// quotes a mailbox name in its answer (`Mailbox "Backoff Time: 900 seconds" is busy`) does
/// not set a wait with it.
pub fn answer_wait(code: Option<&str>, text: &str) -> Option<Duration> {
    if !answer_is_transient(code, text) {
        return None;
    }
    let number = |s: &str| -> Option<(u64, String)> {
        let s = s.trim_start_matches([' ', ':', '=']);
        let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
        let n = digits.parse().ok()?;
        Some((n, s[digits.len()..].trim_start().to_ascii_lowercase()))
    };
    if let Some(code) = code {
        let mut words = code.splitn(2, ' ');
        let kw = words.next().unwrap_or("");
        if ["THROTTLED", "LIMIT"]
            .iter()
            .any(|c| kw.eq_ignore_ascii_case(c))
        {
            if let Some((n, _)) = words.next().and_then(number) {
                return Some(Duration::from_secs(n));
            }
        }
    }
    let lower = text.trim_start().to_ascii_lowercase();
    let rest = lower
        .strip_prefix("request is throttled")
        .map_or(lower.as_str(), |r| {
            r.trim_start_matches(['.', ',', ';', ' '])
        });
    let rest = rest.strip_prefix("suggested ").unwrap_or(rest);
    let (n, unit) = number(rest.strip_prefix("backoff time")?)?;
    Some(if unit.starts_with("ms") || unit.starts_with("milli") {
        Duration::from_millis(n)
    } else {
        Duration::from_secs(n)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn rejected(code: Option<&str>, text: &str) -> anyhow::Error {
        wire_error(
            ErrorKind::Rejected {
                code: code.map(String::from),
                text: text.into(),
                wait: answer_wait(code, text),
            },
            format!("A1 NO {text}"),
        )
    }

    #[test]
    fn throttling_answers_are_transient() {
        assert!(is_transient(&rejected(Some("THROTTLED"), "slow down")));
        assert!(is_transient(&rejected(Some("UNAVAILABLE"), "Backend down")));
        assert!(is_transient(&rejected(Some("LIMIT"), "Too many commands")));
        assert!(is_transient(&rejected(None, "Request is throttled. Wait.")));
        assert!(is_transient(&rejected(
            None,
            "Server Unavailable. Please try again later"
        )));
    }

    #[test]
    fn exchanges_server_unavailable_is_transient_and_not_connected_is_not() {
        assert!(is_transient(&rejected(None, "Server Unavailable. 15")));
        let nc = rejected(None, "User is authenticated but not connected.");
        assert!(!is_transient(&nc));
        assert!(is_not_connected(&nc));
    }

    #[test]
    fn a_stated_wait_is_read_from_the_answer_in_its_unit() {
        let ms = |n| Some(Duration::from_millis(n));
        let ms365 = "Request is throttled. Suggested Backoff Time: 300000 milliseconds";
        assert_eq!(answer_wait(None, ms365), ms(300_000));
        assert_eq!(answer_wait(Some("THROTTLED 30"), "slow down"), ms(30_000));
        assert_eq!(answer_wait(Some("LIMIT 2"), "too many"), ms(2_000));
        assert_eq!(answer_wait(Some("THROTTLED"), "slow down"), None);
        assert_eq!(
            answer_wait(Some("UNAVAILABLE"), "Backoff time: 2 seconds"),
            ms(2_000)
        );
        // Not an answer asking to wait: no wait, whatever the text says.
        assert_eq!(
            answer_wait(Some("NONEXISTENT"), "Backoff Time: 900 seconds"),
            None
        );
        // A mailbox name quoted in the answer sets nothing.
        for text in [
            "Mailbox \"Suggested Backoff Time: 900000 milliseconds\" is busy, try again later",
            "Request is throttled for Suggested Backoff Time: 900000 milliseconds",
        ] {
            assert_eq!(answer_wait(Some("UNAVAILABLE"), text), None, "{text}");
        }
        // Read from the kind, not from the message or the context around it.
        let e = rejected(Some("NONEXISTENT"), "no such mailbox")
            .context("folder Suggested Backoff Time: 900000 milliseconds");
        assert_eq!(stated_wait(&e), None);
        assert_eq!(stated_wait(&rejected(None, ms365)), ms(300_000));
        assert!(asks_to_wait(&rejected(None, ms365)));
        assert!(!asks_to_wait(&wire_error(ErrorKind::Connection, "reset")));
    }

    #[test]
    fn ordinary_refusals_are_permanent() {
        assert!(!is_transient(&rejected(
            Some("NONEXISTENT"),
            "No such mailbox"
        )));
        assert!(!is_transient(&rejected(None, "Message too large")));
        // A permanent code wins over hopeful text.
        assert!(!is_transient(&rejected(
            Some("OVERQUOTA"),
            "Quota exceeded, try again later"
        )));
    }

    #[test]
    fn authentication_failures_are_permanent_unless_the_server_is_unavailable() {
        let auth = |code: &str, text: &str| {
            wire_error(
                ErrorKind::Auth {
                    code: Some(code.into()),
                    text: text.into(),
                    wait: None,
                },
                "login failed",
            )
        };
        assert!(!is_transient(&auth(
            "AUTHENTICATIONFAILED",
            "Authentication failed."
        )));
        assert!(is_transient(&auth(
            "UNAVAILABLE",
            "Temporary authentication failure."
        )));
    }

    #[test]
    fn connection_failures_are_transient_through_added_context() {
        let e = wire_error(ErrorKind::Connection, "server closed the connection: BYE")
            .context("pulling INBOX");
        assert!(is_transient(&e));
        let timeout = anyhow::Error::new(io::Error::new(io::ErrorKind::TimedOut, "timed out"))
            .context("host: reading response")
            .context("pulling INBOX");
        assert!(is_transient(&timeout));
        let reset: anyhow::Result<()> =
            Err(io::Error::from(io::ErrorKind::ConnectionReset)).context("reading");
        assert!(is_transient(&reset.unwrap_err()));
    }

    #[test]
    fn a_session_expired_bye_is_recognised_through_context_and_stays_transient() {
        let bye = bye_error(
            "Session expired, please login again.",
            "host1: UID FETCH: server closed the connection: BYE Session expired".into(),
        )
        .context("pulling INBOX");
        assert!(is_session_expired(&bye));
        assert!(is_transient(&bye));
        let other = bye_error("Server shutting down", "host1: BYE".into());
        assert!(!is_session_expired(&other));
        assert!(is_transient(&other));
        let greeting = wire_error(ErrorKind::Connection, "BYE Session expired");
        assert!(!is_session_expired(&greeting));
    }

    #[test]
    fn gmails_overquota_is_a_bandwidth_quota_and_a_full_mailbox_is_not() {
        let gmail = rejected(
            Some("OVERQUOTA"),
            "Account exceeded command or bandwidth limits. (Failure)",
        )
        .context("pulling INBOX");
        assert!(is_bandwidth_quota(&gmail));
        assert!(is_server_quota(&gmail));
        assert!(!is_transient(&gmail));
        let full = rejected(Some("OVERQUOTA"), "Mailbox is full");
        assert!(!is_bandwidth_quota(&full));
        let other = rejected(None, "Account exceeded command or bandwidth limits.");
        assert!(!is_bandwidth_quota(&other));
    }

    #[test]
    fn gmails_session_cap_at_login_is_worth_another_try_later() {
        let cap = wire_error(
            ErrorKind::Auth {
                code: Some("ALERT".into()),
                text: "Too many simultaneous connections. (Failure)".into(),
                wait: None,
            },
            "login failed",
        )
        .context("opening another connection");
        assert!(is_connection_cap(&cap));
        assert!(is_transient(&cap));
        assert!(!is_connection_cap(&rejected(None, "Invalid credentials")));
    }

    #[test]
    fn certificate_and_local_errors_are_permanent() {
        assert!(!is_transient(&wire_error(
            ErrorKind::Tls { certificate: true },
            "certificate verify failed"
        )));
        assert!(is_transient(&wire_error(
            ErrorKind::Tls { certificate: false },
            "unexpected EOF during handshake"
        )));
        let disk: anyhow::Result<()> =
            Err(io::Error::from(io::ErrorKind::StorageFull)).context("writing object");
        assert!(!is_transient(&disk.unwrap_err()));
        assert!(!is_transient(&anyhow::anyhow!("invalid UID set")));
    }
}
