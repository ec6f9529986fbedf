//! `--oauth2-refresh1 FILE`: imapferry fetches OAuth2 access tokens itself from a token
//! endpoint (here a loopback one, tests/common/oauth.rs) and logs in with AUTHENTICATE XOAUTH2
//! to a scripted server (tests/common/hostile.rs) that checks each token, and ends a session
//! whose token expired with Microsoft's `* BYE Session invalidated - AccessTokenExpired`.

mod common;

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::hostile::{body_of, Cmd, Folder, Hostile, Msg, Session};
use common::oauth::{xoauth2_token, TokenEndpoint};
use common::run::{imapferry, store_messages, Run};

const USER: &str = "alice@example.com";
const CLIENT: &str = "client-4711.apps.test";
const SECRET: &str = "cs-Zq8v-very-secret";
const REFRESH: &str = "rt-first-1//0gWd-refresh";
const CAPS: &str = "IMAP4rev1 LITERAL+ UIDPLUS SASL-IR AUTH=XOAUTH2";

/// `n` folders of `per` messages each.
fn folders(n: u32, per: u32) -> Vec<Folder> {
    (0..n)
        .map(|f| {
            let msgs = (1..=per)
                .map(|u| Msg::new(u, &body_of(600, f * 100 + u)))
                .collect();
            let name = if f == 0 {
                "INBOX".to_string()
            } else {
                format!("Folder{f}")
            };
            Folder::new(&name, msgs)
        })
        .collect()
}

/// A server that accepts AUTHENTICATE XOAUTH2 with a token `ep` holds valid, ends a session
/// whose token expired on its next command (as Microsoft 365 does), and takes `slow` over each
/// SELECT/EXAMINE.
fn server(ep: &Arc<TokenEndpoint>, folders: Vec<Folder>, slow: Duration) -> Hostile {
    server_saying(
        ep,
        folders,
        slow,
        "Session invalidated - AccessTokenExpired",
    )
}

/// [`server`], ending a session whose token expired with `* BYE {bye}`.
fn server_saying(
    ep: &Arc<TokenEndpoint>,
    folders: Vec<Folder>,
    slow: Duration,
    bye: &'static str,
) -> Hostile {
    let valid = ep.checker();
    let hook = move |cmd: &Cmd, s: &mut Session| -> io::Result<bool> {
        let verb = cmd.verb();
        if verb == "AUTHENTICATE" {
            let mut w = cmd.line.split(' ').skip(1);
            let mech = w.next().unwrap_or("");
            let token = w.next().and_then(xoauth2_token);
            match token {
                Some((user, token))
                    if mech.eq_ignore_ascii_case("XOAUTH2") && user == USER && valid(&token) =>
                {
                    s.login = Some(token);
                    s.send(
                        format!("{} OK {USER} authenticated (Success)\r\n", cmd.tag).as_bytes(),
                    )?;
                }
                _ => s.send(
                    format!(
                        "{} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n",
                        cmd.tag
                    )
                    .as_bytes(),
                )?,
            }
            return Ok(true);
        }
        if verb == "LOGIN" {
            s.send(format!("{} NO [AUTHENTICATIONFAILED] use XOAUTH2\r\n", cmd.tag).as_bytes())?;
            return Ok(true);
        }
        if let Some(token) = &s.login {
            if !valid(token) && verb != "LOGOUT" {
                s.send(format!("* BYE {bye}\r\n").as_bytes())?;
                return Err(io::Error::other("session token expired"));
            }
        }
        if verb == "SELECT" || verb == "EXAMINE" {
            std::thread::sleep(slow);
        }
        Ok(false)
    };
    Hostile::start_with(folders, CAPS, Some(Arc::new(hook)))
}

/// `imapferry pull` from `server` with `--oauth2-refresh1 config` and `extra`, timed.
fn pull(server: &Hostile, store: &Path, config: &Path, extra: &[&str]) -> (Run, Duration) {
    let mut c = imapferry();
    c.arg("pull")
        .args(["--host1", "127.0.0.1", "--port1"])
        .arg(server.port().to_string())
        .args(["--tls1", "none", "--user1", USER, "--store"])
        .arg(store)
        .args(["--json", "--jobs", "1", "--oauth2-refresh1"])
        .arg(config)
        .args(extra);
    let t = Instant::now();
    let run: Run = c.output().expect("run imapferry").into();
    (run, t.elapsed())
}

/// The access tokens of the AUTHENTICATE commands `server` received, in order.
fn presented(server: &Hostile) -> Vec<String> {
    server
        .received()
        .iter()
        .filter(|c| c.verb() == "AUTHENTICATE")
        .filter_map(|c| c.line.split(' ').nth(2).and_then(xoauth2_token))
        .map(|(_, t)| t)
        .collect()
}

/// Every message of `folders` is in the store, by UID.
fn assert_all_stored(store: &Path, folders: &[Folder]) {
    let stored = store_messages(store);
    for f in folders {
        let uids: Vec<u32> = stored
            .get(&f.name)
            .map(|m| m.iter().map(|m| m.uid).collect())
            .unwrap_or_default();
        let want: Vec<u32> = f.messages.iter().map(|m| m.uid).collect();
        assert_eq!(uids, want, "{} in the store", f.name);
    }
}

#[test]
fn a_token_is_fetched_with_the_refresh_token_before_the_first_login() {
    let ep = Arc::new(TokenEndpoint::start_with(CLIENT, Some(SECRET), REFRESH));
    let account = folders(2, 3);
    let srv = server(&ep, account.clone(), Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oauth2.conf");
    ep.write_config(&config);
    let store = dir.path().join("store");
    let (run, took) = pull(&srv, &store, &config, &[]);
    let run = run.expect_code(0);
    assert_all_stored(&store, &account);
    // One grant, asked with everything the file holds.
    assert_eq!(ep.calls(), 1, "{}", run.stderr);
    let req = &ep.requests()[0];
    assert_eq!(req["grant_type"], "refresh_token");
    assert_eq!(req["client_id"], CLIENT);
    assert_eq!(req["client_secret"], SECRET);
    assert_eq!(req["refresh_token"], REFRESH);
    assert_eq!(req["scope"], "https://mail.google.com/");
    // The first thing the server heard after CAPABILITY was AUTHENTICATE with that token.
    let tokens = presented(&srv);
    assert_eq!(tokens, ep.access_tokens(), "{}", run.stderr);
    let verbs: Vec<String> = srv.received().iter().map(Cmd::verb).collect();
    let first = verbs.iter().position(|v| v != "CAPABILITY").unwrap();
    assert_eq!(verbs[first], "AUTHENTICATE", "{verbs:?}");
    assert!(!verbs.contains(&"LOGIN".to_string()));
    eprintln!("pull with a fetched token: {took:?}");
}

#[test]
fn an_expired_token_is_refreshed_mid_run_and_the_run_completes() {
    // The endpoint says a token lasts an hour, but the server invalidates it after 2 s: only
    // the BYE AccessTokenExpired tells imapferry, which must refresh before reconnecting.
    let ep = Arc::new(TokenEndpoint::start(CLIENT, REFRESH));
    ep.set_lifetime(Duration::from_secs(2));
    let account = folders(5, 2);
    let srv = server(&ep, account.clone(), Duration::from_millis(700));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oauth2.conf");
    ep.write_config(&config);
    let store = dir.path().join("store");
    let (run, took) = pull(&srv, &store, &config, &[]);
    let run = run.expect_code(0);
    assert_all_stored(&store, &account);
    assert!(
        run.stderr.contains("AccessTokenExpired"),
        "the BYE was seen and retried:\n{}",
        run.stderr
    );
    let tokens = presented(&srv);
    assert!(ep.granted() >= 2 && tokens.len() >= 2, "{tokens:?}");
    // Every login used a token that was new then: none was presented twice.
    let mut unique = tokens.clone();
    unique.dedup();
    assert_eq!(unique, tokens, "a stale token was reused");
    assert!(took < Duration::from_secs(30), "{took:?}");
    eprintln!(
        "pull across {} token expiries: {took:?} ({} grants)",
        tokens.len() - 1,
        ep.granted()
    );

    // A token announced to expire in 2 s is replaced before a connection uses it late.
    let ep = Arc::new(TokenEndpoint::start(CLIENT, REFRESH));
    ep.set_expires_in(2);
    let srv = server(&ep, account.clone(), Duration::from_millis(700));
    ep.write_config(&config);
    let store = dir.path().join("store2");
    let (run, took) = pull(&srv, &store, &config, &[]);
    run.expect_code(0);
    assert_all_stored(&store, &account);
    assert!(ep.granted() >= 2, "{}", ep.granted());
    eprintln!("pull with 2 s tokens: {took:?} ({} grants)", ep.granted());
}

#[test]
fn an_old_token_refused_at_login_is_replaced_on_the_next_connection() {
    // The server drops the session without saying why once the token expired (after 6 s,
    // though an hour was announced); the reconnect presents the held token, which is refused:
    // being older than a few seconds it is taken for expired, and the next connection
    // refreshes first.
    let ep = Arc::new(TokenEndpoint::start(CLIENT, REFRESH));
    ep.set_lifetime(Duration::from_secs(6));
    let account = folders(5, 1);
    let srv = server_saying(&ep, account.clone(), Duration::from_millis(1600), "idle");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oauth2.conf");
    ep.write_config(&config);
    let store = dir.path().join("store");
    let (run, took) = pull(&srv, &store, &config, &[]);
    let run = run.expect_code(0);
    assert_all_stored(&store, &account);
    let tokens = presented(&srv);
    assert_eq!(ep.granted(), 2, "{tokens:?}\n{}", run.stderr);
    assert_eq!(tokens.len(), 3, "new, the same refused, new: {tokens:?}");
    assert_eq!(tokens[0], tokens[1]);
    assert_ne!(tokens[1], tokens[2]);
    assert!(run.stderr.contains("may have expired"), "{}", run.stderr);
    eprintln!("pull with a refused old token: {took:?}");
}

#[test]
fn a_refused_refresh_fails_at_once_naming_the_option() {
    let ep = Arc::new(TokenEndpoint::start_with(CLIENT, Some(SECRET), REFRESH));
    ep.set_refuse(true);
    let account = folders(1, 2);
    let srv = server(&ep, account.clone(), Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oauth2.conf");
    ep.write_config(&config);
    let (run, took) = pull(&srv, &dir.path().join("store"), &config, &[]);
    let run = run.expect_code(1);
    let all = run.all();
    assert!(
        all.contains("--oauth2-refresh1") && all.contains("invalid_grant"),
        "{all}"
    );
    assert!(!all.contains(REFRESH) && !all.contains(SECRET), "{all}");
    assert_eq!(ep.calls(), 1, "asked once, not retried");
    assert!(presented(&srv).is_empty(), "no login without a token");
    assert!(took < Duration::from_secs(10), "{took:?}");
    eprintln!("refused refresh, first connection: {took:?}");

    // Refused in the middle of a run (the refresh token revoked meanwhile): the run stops in
    // seconds, naming the option, with the default retry budget.
    let ep = Arc::new(TokenEndpoint::start(CLIENT, REFRESH));
    ep.set_lifetime(Duration::from_secs(1));
    let srv = server(&ep, folders(4, 1), Duration::from_millis(600));
    ep.write_config(&config);
    let revoke = {
        let ep = ep.clone();
        std::thread::spawn(move || {
            while ep.granted() == 0 {
                std::thread::sleep(Duration::from_millis(20));
            }
            ep.set_refuse(true);
        })
    };
    let (run, took) = pull(&srv, &dir.path().join("store2"), &config, &[]);
    revoke.join().unwrap();
    assert_ne!(run.code, 0, "{}", run.stderr);
    let all = run.all();
    assert!(
        all.contains("--oauth2-refresh1") && all.contains("invalid_grant"),
        "{all}"
    );
    assert!(
        ep.calls() <= 3,
        "the endpoint was asked {} times",
        ep.calls()
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    eprintln!(
        "refused refresh mid-run: {took:?}, exit {}, {} calls",
        run.code,
        ep.calls()
    );
}

#[test]
fn the_rotated_refresh_token_is_written_back_and_no_secret_reaches_the_log() {
    use std::os::unix::fs::PermissionsExt;
    let ep = Arc::new(TokenEndpoint::start_with(CLIENT, Some(SECRET), REFRESH));
    ep.set_rotate(true);
    ep.set_lifetime(Duration::from_secs(2));
    let account = folders(4, 2);
    let srv = server(&ep, account.clone(), Duration::from_millis(600));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oauth2.conf");
    ep.write_config(&config);
    let store = dir.path().join("store");
    // -vv: every IMAP command is shown, AUTHENTICATE too.
    let (first, t1) = pull(&srv, &store, &config, &["-vv"]);
    let first = first.expect_code(0);
    assert_all_stored(&store, &account);
    assert!(ep.granted() >= 2, "rotated more than once");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(
        text.contains(&format!("refresh_token = {}\n", ep.refresh_token())),
        "{text}"
    );
    assert!(!text.contains(REFRESH));
    assert!(text.contains(&format!("client_secret = {SECRET}\n")) && text.starts_with("# test"));
    let mode = std::fs::metadata(&config).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    // The old refresh token no longer works; the next run reads the new one and goes on.
    let (second, t2) = pull(&srv, &store, &config, &["-vv"]);
    let second = second.expect_code(0);

    let mut secrets = vec![REFRESH.to_string(), SECRET.to_string(), ep.refresh_token()];
    secrets.extend(ep.access_tokens());
    secrets.extend(
        ep.requests()
            .iter()
            .filter_map(|r| r.get("refresh_token").cloned()),
    );
    let mut seen = format!("{}{}", first.all(), second.all());
    for entry in std::fs::read_dir(store.join("logs")).expect("the store's logs") {
        seen += &std::fs::read_to_string(entry.unwrap().path()).unwrap();
    }
    assert!(seen.contains("AUTHENTICATE"), "-vv shows the commands");
    for s in &secrets {
        assert!(
            !seen.contains(s.as_str()),
            "{s} reached the output or a log"
        );
    }
    // Nor any other file of the store (the index, objects are mail).
    for entry in walk(&store) {
        let bytes = std::fs::read(&entry).unwrap();
        for s in &secrets {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{s} in {}",
                entry.display()
            );
        }
    }
    eprintln!(
        "two pulls with rotation: {t1:?}, {t2:?} ({} grants)",
        ep.granted()
    );
}

/// Every file under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_refresh_option_excludes_the_others_and_checks_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oauth2.conf");
    std::fs::write(
        &config,
        "token_endpoint = http://192.0.2.1/token\nclient_id = c\nrefresh_token = r\n",
    )
    .unwrap();
    let base = |extra: &[&str]| -> Run {
        imapferry()
            .args(["pull", "--host1", "127.0.0.1", "--user1", USER, "--store"])
            .arg(dir.path().join("store"))
            .args(extra)
            .output()
            .unwrap()
            .into()
    };
    let cfg = config.to_str().unwrap();
    let run = base(&["--oauth2-refresh1", cfg, "--passfile1", cfg]).expect_code(2);
    assert!(run.stderr.contains("--oauth2-refresh1"), "{}", run.stderr);
    let run = base(&["--oauth2-refresh1", cfg]).expect_code(2);
    assert!(
        run.stderr.contains("--oauth2-refresh1") && run.stderr.contains("only to 127.0.0.1"),
        "{}",
        run.stderr
    );
    // Readable by others: warned about (and refused here for its http:// endpoint).
    assert!(run.stderr.contains("readable by others"), "{}", run.stderr);
}

/// Issue 19 item 1: a token endpoint's `expires_in` of 2^64-1 (as a number or a string) once
/// panicked the run (`overflow when adding duration to instant`, exit 101); a rotated refresh
/// token holding line breaks was written into the refresh file as new lines (`scope = …`,
/// `token_endpoint = …`); an access token holding `^A` added fields to the XOAUTH2 string.
/// Now an expiry beyond a day is a day, and such tokens stop the run with an error naming the
/// option, before anything is written or sent: the file is byte for byte what it was, no
/// AUTHENTICATE carries the token, and the next run works with the file as it is.
#[test]
fn a_token_endpoints_numbers_are_clamped_and_odd_tokens_refused_before_use() {
    let ep = Arc::new(TokenEndpoint::start(CLIENT, REFRESH));
    let srv = server(&ep, folders(1, 2), Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("oauth2.conf");
    ep.write_config(&config);
    let original = std::fs::read(&config).unwrap();
    let mut n = 0;
    let mut store = || {
        n += 1;
        dir.path().join(format!("store{n}"))
    };
    for expires in [
        "18446744073709551615",
        "\"18446744073709551615\"",
        "184467440737095516150000",
    ] {
        ep.set_scripted(Some(&format!(
            r#"{{"access_token":"{{token}}","expires_in":{expires}}}"#
        )));
        let (run, _) = pull(&srv, &store(), &config, &[]);
        eprintln!("expires_in {expires}: exit {}", run.code);
        assert_eq!(run.code, 0, "{}", run.all());
        assert_eq!(run.json()["complete"], true, "{}", run.stdout);
    }
    let odd = [
        (
            "a refresh token with lines",
            r#"{"access_token":"{token}","expires_in":3600,"refresh_token":"NEWRT\nscope = injected\nclient_secret = injected"}"#,
        ),
        (
            "a refresh token naming an endpoint",
            r#"{"access_token":"{token}","expires_in":3600,"refresh_token":"NEWRT\ntoken_endpoint = http://127.0.0.1:9/injected"}"#,
        ),
        (
            "an access token with ^A",
            r#"{"access_token":"{token}\u0001auth=Bearer injected","expires_in":3600}"#,
        ),
    ];
    for (what, answer) in odd {
        ep.set_scripted(Some(answer));
        let before = presented(&srv).len();
        let (run, _) = pull(&srv, &store(), &config, &[]);
        let file = std::fs::read(&config).unwrap();
        eprintln!(
            "{what}: exit {}, file unchanged: {}, AUTHENTICATEs: {}\n{}",
            run.code,
            file == original,
            presented(&srv).len() - before,
            run.stderr.trim_end()
        );
        assert_eq!(run.code, 1, "{}", run.all());
        let error = run.json()["error"].as_str().unwrap_or_default().to_string();
        assert!(
            error.contains("--oauth2-refresh1") && error.contains("refused"),
            "{error}"
        );
        assert!(!run.all().contains("injected"), "{}", run.all());
        assert_eq!(
            String::from_utf8_lossy(&file),
            String::from_utf8_lossy(&original),
            "{what}: the refresh file is as it was"
        );
        assert_eq!(presented(&srv).len(), before, "{what}: nothing sent");
        let leftovers = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(leftovers, 0);
    }
    ep.set_scripted(None);
    let (run, _) = pull(&srv, &store(), &config, &[]);
    run.expect_code(0);
}
