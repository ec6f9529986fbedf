//! Advice for an error that stopped a run before anything moved: which option of which side
//! fixes a connection that could not be opened. The library says what went wrong
//! ([`ConnectProblem`]); only the command line knows its options' names.

use super::args::Side;
use super::exit::Advised;
use imapferry::imap::{
    connect_problem, offers_starttls, ConnectProblem, Endpoint, Secret, TlsMode,
};

/// `e` with advice when it says no session with `side` could be opened; `e` unchanged
/// otherwise.
pub fn advise(e: anyhow::Error, side: Side, ep: &Endpoint) -> anyhow::Error {
    if let Some(hint) = provider_hint(&e, side) {
        return anyhow::Error::new(Advised { error: e, hint });
    }
    match connect_problem(&e) {
        Some(p) => {
            let hint = hint(p, side, ep);
            anyhow::Error::new(Advised { error: e, hint })
        }
        None => e,
    }
}

/// Advice for what a provider answered instead of a session, when it is one of the answers
/// docs/providers.md lists.
fn provider_hint(e: &anyhow::Error, side: Side) -> Option<String> {
    let n = side.n();
    if imapferry::imap::error::is_connection_cap(e) {
        return Some(format!(
            "Gmail allows 15 simultaneous IMAP sessions per account, the user's phones and mail \
             clients included, and all of them are in use: close some (or wait a while), or \
             run with fewer --jobs; host{n} was asked again for a while before giving up"
        ));
    }
    if imapferry::imap::error::is_not_connected(e) {
        return Some(format!(
            "Microsoft 365 took the login but connects no mailbox to it (\"User is \
             authenticated but not connected\"). Check: the token's scope \
             (https://outlook.office.com/IMAP.AccessAsUser.All for a user's token, \
             https://outlook.office365.com/.default with IMAP.AccessAsApp for an app's) and that \
             --user{n} is the mailbox the token is for; that the mailbox has an Exchange Online \
             licence and IMAP turned on; and, logging in as an administrator or an app for the \
             user, permission on the mailbox (Add-MailboxPermission -AccessRights FullAccess; for \
             an app, its service principal registered with New-ServicePrincipal)"
        ));
    }
    let said = format!("{e:#}");
    let oauth = format!(
        "or log in with OAuth2 instead (--oauth2-refresh{n}, docs/oauth2.md), which Google \
         prefers"
    );
    if let Some(url) = webalert(&said) {
        return Some(format!(
            "Gmail wants this sign-in confirmed in a browser first: open {url} signed in as \
             the user and allow it, then run again; {oauth}"
        ));
    }
    if said.contains("Please log in via your web browser") {
        return Some(format!(
            "Gmail wants a sign-in in a browser first: sign in to Gmail as the user on the web \
             (https://support.google.com/mail/accounts/answer/78754), then run again; {oauth}"
        ));
    }
    if said.contains("Application-specific password required") {
        return Some(format!(
            "Gmail wants an app password for this account, not the account's own: turn on \
             2-Step Verification and make one at https://myaccount.google.com/apppasswords \
             (https://support.google.com/accounts/answer/185833), give it as the password \
             without its spaces; {oauth}"
        ));
    }
    None
}

/// The link of Gmail's `[WEBALERT <url>] Web login required.` in `said`, when it holds one
/// that looks like a Google link.
fn webalert(said: &str) -> Option<&str> {
    let at = said.find("[WEBALERT ")? + "[WEBALERT ".len();
    let url = said[at..].split([']', ' ']).next()?;
    url.starts_with("https://").then_some(url)
}

/// What to change for `problem` on `side`.
pub fn hint(problem: ConnectProblem, side: Side, ep: &Endpoint) -> String {
    let n = side.n();
    let (host, port) = (&ep.host, ep.port);
    let ports = format!(
        "IMAP listens on 993 with implicit TLS (--tls{n} imaps) and on 143 for STARTTLS or \
         plain (--tls{n} starttls|none)"
    );
    match problem {
        ConnectProblem::Unresolved if host.contains(':') && !host.starts_with('[') => format!(
            "--host{n} takes a name or an address only; give the port with --port{n} \
             (e.g. --host{n} {} --port{n} {})",
            host.rsplit_once(':').map_or(host.as_str(), |(h, _)| h),
            host.rsplit_once(':').map_or("993", |(_, p)| p)
        ),
        ConnectProblem::Unresolved => {
            format!("check the spelling of --host{n} {host}: the name does not resolve")
        }
        ConnectProblem::Refused => {
            format!("nothing listens on {host} port {port}: check --port{n} and --host{n}; {ports}")
        }
        ConnectProblem::Unreachable => format!(
            "{host} port {port} did not answer: check --host{n} and --port{n}, a firewall, \
             or raise --timeout on a very slow link"
        ),
        // What answers there in plain IMAP decides what to try: STARTTLS only when offered.
        ConnectProblem::TlsHandshake if ep.tls == TlsMode::Imaps => match offers_starttls(ep) {
            Some(true) => format!(
                "port {port} speaks plain IMAP and offers STARTTLS: use --tls{n} starttls \
                 (imapsync's --nossl{n}); for implicit TLS use the server's TLS port, usually \
                 --port{n} 993"
            ),
            Some(false) => format!(
                "port {port} speaks plain IMAP without any TLS (no STARTTLS): give the \
                 server's TLS port, usually --port{n} 993; only on a network you trust, \
                 --tls{n} none sends the password and the mail unencrypted"
            ),
            None => format!(
                "port {port} does not speak TLS at once: for STARTTLS use --tls{n} starttls \
                 (usually with --port{n} 143); for implicit TLS use --port{n} 993"
            ),
        },
        ConnectProblem::NoStartTls => format!(
            "{host} port {port} does not offer STARTTLS: for implicit TLS use --tls{n} imaps \
             (usually with --port{n} 993); only on a network you trust, --tls{n} none \
             (imapsync's --notls{n}) sends the password and the mail unencrypted"
        ),
        ConnectProblem::TlsHandshake => {
            format!("the server's STARTTLS failed: check --port{n} and --tls{n}; {ports}")
        }
        ConnectProblem::Certificate => format!(
            "the server's certificate is not trusted: give its CA with --ca-file{n} PEM, or, \
             only for a server you trust by other means, --insecure{n}"
        ),
        ConnectProblem::NotImap => format!(
            "what answers on {host} port {port} is not an IMAP server speaking {}: check \
             --port{n} and --tls{n}; {ports}",
            match ep.tls {
                TlsMode::Imaps => "TLS",
                _ => "plain IMAP",
            }
        ),
        ConnectProblem::Login => match &ep.secret {
            Secret::OAuth2Refresh(_) => format!(
                "check --user{n} {}: it must be the account the refresh token in \
                 --oauth2-refresh{n} was issued for, with IMAP access in its scope \
                 (docs/oauth2.md)",
                ep.user
            ),
            Secret::OAuth2TokenFile(_) => format!(
                "check --user{n} {} and the access token in --oauth2-token-file{n} (it may \
                 have expired; --oauth2-refresh{n} fetches fresh ones)",
                ep.user
            ),
            // A fleet names where it took the password from (the accounts file's field).
            Secret::Password(_) => match std::env::var(format!("IMAPFERRY_PASSWORD{n}_FROM")) {
                Ok(from) => format!("check the user {} and the password: {from}", ep.user),
                Err(_) => format!(
                    "check --user{n} {} and the password (--passfile{n}, IMAPFERRY_PASSWORD{n}, \
                     or the prompt)",
                    ep.user
                ),
            },
        },
    }
}
