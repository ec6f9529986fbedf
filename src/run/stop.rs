//! What kind of error stopped a run, as `--json` says it (`error_kind`), so that a program that
//! runs imapferry (the fleet) branches on a kind, never on the words of a message (which may
//! quote a folder name or a server's text).

use crate::imap::oauth2::RefreshError;
use crate::imap::{connect_problem, is_transient, ConnectProblem};

/// What stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopKind {
    /// The command line or an option's value (exit 2).
    Usage,
    /// The server refused the login, or no OAuth2 access token could be had: a password, a
    /// token or the account must change first.
    Login,
    /// No session could be opened, or the link kept failing past the retries.
    Connection,
    /// The server's answers: a protocol error, a refusal.
    Server,
    /// A daily byte budget (exit 4).
    Budget,
    /// Anything else (the store, the local disk).
    Other,
}

const NAMES: [(StopKind, &str); 6] = [
    (StopKind::Usage, "usage"),
    (StopKind::Login, "login"),
    (StopKind::Connection, "connection"),
    (StopKind::Server, "server"),
    (StopKind::Budget, "budget"),
    (StopKind::Other, "other"),
];

impl StopKind {
    /// The kind of `err`, as far as the library knows it (a usage error is the program's:
    /// it says [`StopKind::Usage`] itself).
    pub fn of(err: &anyhow::Error) -> StopKind {
        if crate::budget::budget_spent(err).is_some() {
            return StopKind::Budget;
        }
        if err.chain().any(|c| c.is::<RefreshError>())
            || connect_problem(err) == Some(ConnectProblem::Login)
        {
            return StopKind::Login;
        }
        if connect_problem(err).is_some() || is_transient(err) {
            return StopKind::Connection;
        }
        if crate::imap::error::is_wire(err) {
            return StopKind::Server;
        }
        StopKind::Other
    }

    /// Its name in `--json` (`error_kind`).
    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(k, _)| *k == self)
            .map_or("other", |(_, n)| n)
    }

    /// The kind named `name` in `--json`.
    pub fn from_name(name: &str) -> Option<StopKind> {
        NAMES.iter().find(|(_, n)| *n == name).map(|(k, _)| *k)
    }

    /// Whether running the account again, unchanged, may help: not after bad usage or a
    /// refused login, which stay so until someone changes something.
    pub fn retry_helps(self) -> bool {
        !matches!(self, StopKind::Usage | StopKind::Login)
    }
}

/// Whether running again may help a run that failed with `exit_status` and the `error_kind`
/// and `problem` (a `ConnectProblem`, snake case) of its `--json` document (`None`: it printed
/// none, e.g. it was killed): not after bad usage, a refused login, or a session that could
/// not be opened as asked, but when the server did not answer (`unreachable`).
pub fn retry_helps(
    exit_status: Option<i32>,
    error_kind: Option<&str>,
    problem: Option<&str>,
) -> bool {
    if exit_status == Some(2) || problem.is_some_and(|p| p != "unreachable") {
        return false;
    }
    error_kind
        .and_then(StopKind::from_name)
        .is_none_or(StopKind::retry_helps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imap::error::{protocol, wire_error, ErrorKind};

    #[test]
    fn each_kind_has_a_name_and_says_whether_a_retry_helps() {
        let helps: Vec<(&str, bool)> = NAMES
            .iter()
            .map(|(k, n)| {
                assert_eq!(StopKind::from_name(n), Some(*k));
                assert_eq!(k.name(), *n);
                (*n, k.retry_helps())
            })
            .collect();
        assert_eq!(
            helps,
            [
                ("usage", false),
                ("login", false),
                ("connection", true),
                ("server", true),
                ("budget", true),
                ("other", true),
            ]
        );
        // The fleet's decision: by the kind and the connect problem, bad usage by its status.
        assert!(!retry_helps(Some(1), Some("login"), None));
        assert!(!retry_helps(Some(1), Some("login"), Some("login")));
        assert!(!retry_helps(Some(2), None, None));
        assert!(!retry_helps(Some(1), Some("usage"), None));
        assert!(!retry_helps(Some(1), Some("connection"), Some("refused")));
        assert!(!retry_helps(
            Some(1),
            Some("connection"),
            Some("certificate")
        ));
        assert!(retry_helps(
            Some(1),
            Some("connection"),
            Some("unreachable")
        ));
        assert!(retry_helps(Some(1), Some("connection"), None));
        assert!(retry_helps(Some(1), Some("server"), None));
        assert!(retry_helps(Some(3), None, None));
        assert!(
            retry_helps(None, None, None),
            "killed: may well work next time"
        );
        assert!(retry_helps(
            Some(1),
            Some("a kind of a later version"),
            None
        ));
    }

    #[test]
    fn errors_are_classified_by_their_type_not_their_words() {
        let login = wire_error(
            ErrorKind::Auth {
                code: Some("AUTHENTICATIONFAILED".into()),
                text: "Invalid credentials".into(),
                wait: None,
            },
            "login failed",
        );
        assert_eq!(StopKind::of(&login), StopKind::Login);
        let reset = wire_error(ErrorKind::Connection, "connection reset");
        assert_eq!(StopKind::of(&reset), StopKind::Connection);
        assert_eq!(StopKind::of(&protocol("garbage".into())), StopKind::Server);
        // A message that only says "cannot log in" (a folder named so) is no login failure.
        let local = anyhow::anyhow!("cannot write the store").context("folder cannot log in");
        assert_eq!(StopKind::of(&local), StopKind::Other);
    }
}
