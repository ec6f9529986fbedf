//! Turns a side's command-line options into an [`Endpoint`]: port and TLS defaults, and where the
//! password comes from (file, environment, command line, prompt), without ever echoing it.

use std::io::IsTerminal;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

use super::args::{ConnArgs, NetArgs, Side, TlsArg};
use super::exit::usage;
use imapferry::imap::oauth2::Refresher;
use imapferry::imap::{Endpoint, RateLimit, Secret, TlsMode};
use imapferry::ui;

/// The TLS mode from the TLS option, imapsync's switches and the port: an explicit mode wins;
/// `--ssl1` is implicit TLS; `--notls1` without implicit TLS is none; otherwise implicit TLS
/// on port 993 (or with no port) unless `--nossl1`, else STARTTLS.
fn tls_mode(args: &ConnArgs) -> TlsMode {
    match (args.tls, args.port) {
        (Some(TlsArg::Imaps), _) => TlsMode::Imaps,
        (Some(TlsArg::Starttls), _) => TlsMode::StartTls,
        (Some(TlsArg::None), _) => TlsMode::None,
        _ if args.ssl => TlsMode::Imaps,
        (None, Some(993) | None) if !args.nossl => TlsMode::Imaps,
        _ if args.notls => TlsMode::None,
        _ => TlsMode::StartTls,
    }
}

/// Build the endpoint for one side. `timeout` applies to every connect and read.
pub fn endpoint(args: &ConnArgs, timeout: Duration) -> Result<Endpoint> {
    let side = args.side;
    if let Some((name, port)) = host_with_port(&args.host) {
        let n = side.n();
        return Err(usage(format!(
            "--host{n} {}: the port goes in its own option: --host{n} {name} --port{n} {port}",
            args.host
        )));
    }
    let tls = tls_mode(args);
    let port = args.port.unwrap_or(match tls {
        TlsMode::Imaps => 993,
        _ => 143,
    });
    if tls == TlsMode::None && !is_loopback(&args.host) {
        ui::warn(&format!(
            "{side}: --tls{n} none sends the password and all mail unencrypted to {}",
            args.host,
            n = side.n()
        ));
    }
    if args.insecure {
        ui::warn(&format!(
            "{side}: certificate verification is off (--insecure{})",
            side.n()
        ));
    }
    let secret = secret(args, port)?;
    Ok(Endpoint {
        host: args.host.clone(),
        port,
        tls,
        insecure: args.insecure,
        ca_file: args.ca_file.clone(),
        user: args.user.clone(),
        authuser: args.authuser.clone(),
        secret,
        timeout,
        compress: true,
        rate_limit: None,
        provider: args.provider,
        pause: Default::default(),
    })
}

/// The endpoint of one side with the shared network options applied (deadline, COMPRESS,
/// rate cap).
pub fn endpoint_for(args: ConnArgs, net: &NetArgs) -> Result<Endpoint> {
    let mut ep = endpoint(
        &args,
        Duration::from_secs(args.timeout.unwrap_or(net.timeout)),
    )?;
    apply_net(&mut ep, net);
    Ok(ep)
}

/// Apply `--no-compress` and `--max-bytes-per-second` to an endpoint. Call once per run: the
/// rate cap is shared by every connection made from clones of `ep`.
pub fn apply_net(ep: &mut Endpoint, net: &NetArgs) {
    ep.compress = !net.no_compress;
    ep.rate_limit = net.max_bytes_per_second.map(RateLimit::new);
}

/// The environment variable holding a side's password, e.g. `IMAPFERRY_PASSWORD1`.
fn password_env_var(side: Side) -> String {
    format!("IMAPFERRY_PASSWORD{}", side.n())
}

/// Where the password comes from: an option given on the command line wins over the
/// environment, which wins over the prompt. Mistakes (a file that cannot be read, no password
/// and no terminal) are usage errors.
fn secret(args: &ConnArgs, port: u16) -> Result<Secret> {
    let n = args.side.n();
    let var = password_env_var(args.side);
    let given = [
        args.oauth2_refresh.is_some(),
        args.oauth2_token_file.is_some(),
        args.passfile.is_some(),
        args.password.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(usage(format!(
            "give only one of --oauth2-refresh{n}, --oauth2-token-file{n}, --passfile{n} and \
             --password{n}"
        )));
    }
    if let Some(file) = &args.oauth2_refresh {
        let option = format!("--oauth2-refresh{n}");
        warn_if_others_may_read(file, &option);
        let refresher = Refresher::load(file, &option)
            .map_err(usage)?
            .with_user(&args.user);
        return Ok(Secret::OAuth2Refresh(Arc::new(refresher)));
    }
    if let Some(token_file) = &args.oauth2_token_file {
        // Read once now so a wrong path fails before any connection; re-read on every connect.
        if let Err(e) = std::fs::metadata(token_file) {
            return Err(usage(format!(
                "cannot read --oauth2-token-file{n} {}: {e}",
                token_file.display()
            )));
        }
        return Ok(Secret::OAuth2TokenFile(token_file.clone()));
    }
    if let Some(file) = &args.passfile {
        return Ok(Secret::Password(read_passfile(file, n)?));
    }
    if let Some(p) = &args.password {
        ui::warn(&format!(
            "--password{n} makes the password visible to other users of this machine; \
             prefer --passfile{n} or {var}"
        ));
        return Ok(Secret::Password(p.clone()));
    }
    if let Ok(p) = std::env::var(&var) {
        return Ok(Secret::Password(p));
    }
    // imapsync's variable, set out of habit: not read (one name per thing), but said.
    let imapsync_var = format!("IMAPSYNC_PASSWORD{n}");
    let ignored = std::env::var_os(&imapsync_var).is_some();
    if ignored {
        ui::warn(&format!(
            "{imapsync_var} is set but not read: imapferry reads {var} (or --passfile{n} FILE)"
        ));
    }
    if std::io::stdin().is_terminal() {
        // Both sides are asked in turn: each prompt says which one it is.
        let prompt = format!(
            "Password for {} on {} ({} port {port}): ",
            args.user, args.side, args.host
        );
        let p = rpassword::prompt_password(prompt)
            .context("cannot read the password from the terminal")?;
        return Ok(Secret::Password(p));
    }
    let also = if ignored {
        format!(" ({imapsync_var} is imapsync's name: rename it)")
    } else {
        String::new()
    };
    Err(usage(format!(
        "no password for {}: give --passfile{n} FILE, set {var}{also}, or run on a terminal to be \
         asked",
        args.side
    )))
}

/// The first line of the file, without its line ending; everything else in the password is kept.
/// A file others may read is warned about (as ssh does for keys): the password is as exposed as
/// the file.
fn read_passfile(file: &Path, n: &str) -> Result<String> {
    warn_if_others_may_read(file, &format!("--passfile{n}"));
    let text = imapferry::secret::read(file)
        .map_err(|e| usage(format!("cannot read --passfile{n} {}: {e}", file.display())))?;
    password_line(&text)
        .map(String::from)
        .ok_or_else(|| usage(format!("--passfile{n} {} is empty", file.display())))
}

/// Warn (as ssh does for keys) when others may read `file`, given to `option`: the secret in
/// it is as exposed as the file.
fn warn_if_others_may_read(file: &Path, option: &str) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(file) {
        if meta.permissions().mode() & 0o077 != 0 {
            ui::warn(&format!(
                "{option} {} is readable by others (mode {:o}); chmod 600 it",
                file.display(),
                meta.permissions().mode() & 0o777
            ));
        }
    }
}

/// The password a password file holds: its first line without the line ending, everything
/// else in it kept; `None` when that is empty.
pub fn password_line(text: &str) -> Option<&str> {
    let line = text.split('\n').next().unwrap_or("");
    let line = line.strip_suffix('\r').unwrap_or(line);
    (!line.is_empty()).then_some(line)
}

/// `s` as part of a file name: letters, digits and `.@-_+` kept, anything else `_`.
pub fn file_name_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || ".@-_+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `name:port` typed into a host option (an IPv6 address is not that).
fn host_with_port(host: &str) -> Option<(&str, &str)> {
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
    {
        return None;
    }
    let (name, port) = host.rsplit_once(':')?;
    let name = name.trim_start_matches('[').trim_end_matches(']');
    (!name.is_empty() && !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
        .then_some((name, port))
}

/// True for `localhost` and loopback addresses, where plaintext is no exposure.
pub fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ConnArgs {
        ConnArgs {
            side: Side::Host1,
            host: "127.0.0.1".into(),
            port: None,
            tls: None,
            insecure: false,
            ca_file: None,
            user: "me".into(),
            passfile: None,
            password: Some("pw".into()),
            oauth2_token_file: None,
            oauth2_refresh: None,
            authuser: None,
            provider: None,
            ssl: false,
            nossl: false,
            notls: false,
            timeout: None,
        }
    }

    #[test]
    fn imapsync_switches_choose_the_tls_mode() {
        let with = |f: fn(&mut ConnArgs)| {
            let mut a = args();
            f(&mut a);
            tls_mode(&a)
        };
        assert_eq!(with(|a| a.ssl = true), TlsMode::Imaps);
        assert_eq!(with(|a| a.port = Some(143)), TlsMode::StartTls);
        assert_eq!(
            with(|a| {
                a.port = Some(143);
                a.notls = true
            }),
            TlsMode::None
        );
        assert_eq!(with(|a| a.nossl = true), TlsMode::StartTls);
        assert_eq!(
            with(|a| {
                a.nossl = true;
                a.notls = true
            }),
            TlsMode::None
        );
        assert_eq!(
            with(|a| {
                a.ssl = true;
                a.tls = Some(TlsArg::Starttls)
            }),
            TlsMode::StartTls
        );
    }

    #[test]
    fn default_port_is_993_with_implicit_tls() {
        let e = endpoint(&args(), Duration::from_secs(1)).unwrap();
        assert_eq!((e.port, e.tls), (993, TlsMode::Imaps));
    }

    #[test]
    fn other_port_defaults_to_starttls_and_none_to_143() {
        let mut a = args();
        a.port = Some(1143);
        assert_eq!(
            endpoint(&a, Duration::from_secs(1)).unwrap().tls,
            TlsMode::StartTls
        );
        a.port = None;
        a.tls = Some(TlsArg::None);
        let e = endpoint(&a, Duration::from_secs(1)).unwrap();
        assert_eq!((e.port, e.tls), (143, TlsMode::None));
    }

    #[test]
    fn passfile_keeps_spaces_and_drops_only_the_line_ending() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, " p@ss \"w\\rd \r\nsecond line\n").unwrap();
        assert_eq!(read_passfile(&f, "1").unwrap(), " p@ss \"w\\rd ");
    }

    #[test]
    fn a_port_typed_into_the_host_is_recognised_and_ipv6_is_not_taken_for_one() {
        assert_eq!(
            host_with_port("imap.example:993"),
            Some(("imap.example", "993"))
        );
        assert_eq!(host_with_port("[::1]:143"), Some(("::1", "143")));
        assert_eq!(host_with_port("::1"), None);
        assert_eq!(host_with_port("fe80::1"), None);
        assert_eq!(host_with_port("imap.example"), None);
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.4.5.6"));
        assert!(is_loopback("::1"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("LOCALHOST"));
        assert!(!is_loopback("imap.example.org"));
    }

    #[test]
    fn secret_debug_never_shows_the_password() {
        let e = endpoint(&args(), Duration::from_secs(1)).unwrap();
        assert!(!format!("{e:?}").contains("pw\""));
        assert!(!format!("{:?}", e.secret).contains("pw"));
    }
}
