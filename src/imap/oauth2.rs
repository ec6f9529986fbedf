//! OAuth2 access tokens refreshed by imapferry itself (`--oauth2-refresh1/2 FILE`): the
//! refresh-token grant of RFC 6749 §6 against the provider's token endpoint, one [`Refresher`]
//! shared by every connection of a run.
//!
//! The file is `key = value` lines (`#` starts a comment line): `token_endpoint`, `client_id`,
//! optional `client_secret`, `refresh_token`, optional `scope`. A refresh token the provider
//! rotates (Microsoft does) is written back into the file, atomically, mode 0600.
//!
//! `grant` chooses another grant, for many accounts without a refresh token each ([`Grant`]):
//! `jwt-bearer`, a Google Workspace service account with domain-wide delegation (RFC 7523: an
//! assertion signed RS256 with the key of `service_account_key`, the JSON file Google gives,
//! for the mailbox `subject`, by default the account's `--userN`), or `client_credentials`,
//! Microsoft's app-only access (RFC 6749 §4.4, `scope = https://outlook.office365.com/.default`).
//! A Google app still in "Testing" gives refresh tokens that expire after 7 days:
//! `app_status = testing` (with `issued_at`, or the file's modification time) makes the run say
//! when.
//!
//! Everything here handles secrets: the refresh token, the client secret and the access
//! token never reach a message, a log line or `Debug` output.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long before its expiry a token is replaced (at most half its lifetime, so a token
/// that lives only seconds is not refreshed on every connection).
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// A token refused this long after it was obtained is taken for expired (refreshed on the
/// next connection); one refused sooner was simply not accepted.
pub const FRESH: Duration = Duration::from_secs(5);

/// The longest the token endpoint may take to answer.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest lifetime a token endpoint's `expires_in` is taken for: a larger number (or one
/// too large for any clock) is a day, and the token is refreshed after it.
pub const MAX_EXPIRES_IN: u64 = 24 * 3600;

/// Whether `token` (an access or refresh token) can be used as it is: 1*VSCHAR (RFC 6749
/// Appendix A: printable ASCII and space), without a space at either end. Anything else would
/// change what is sent or written: a line break adds lines to the refresh file (new keys, sent
/// with the next refresh), `^A` adds fields to the XOAUTH2 string, an end space is lost when
/// the file is read again. `Err` says what is wrong, never the token.
pub fn check_token(what: &str, token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if let Some(b) = token.bytes().find(|b| !(0x20..=0x7e).contains(b)) {
        return Err(format!(
            "the {what} holds the byte 0x{b:02x} (a token is printable ASCII: RFC 6749 \
             Appendix A); refused, nothing written or sent with it"
        ));
    }
    if token.starts_with(' ') || token.ends_with(' ') {
        return Err(format!(
            "the {what} starts or ends with a space; refused, nothing written or sent with it"
        ));
    }
    Ok(())
}

/// The settings of a refresh file.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub token_endpoint: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Empty for the grants that need none.
    pub refresh_token: String,
    pub scope: Option<String>,
    pub grant: Grant,
    /// `app_status = testing`: a Google app whose refresh tokens last 7 days.
    pub testing: bool,
    /// `issued_at`: when the refresh token was issued (Unix time).
    pub issued_at: Option<i64>,
}

/// How an access token is asked for.
#[derive(Clone, PartialEq, Eq)]
pub enum Grant {
    /// The refresh-token grant (RFC 6749 §6), the default.
    RefreshToken,
    /// A Google service account acting for a mailbox of its domain (RFC 7523 JWT bearer).
    JwtBearer {
        /// `service_account_key`: the key file.
        key_file: PathBuf,
        /// The service account's PEM private key (read from the key file by [`Refresher::load`]).
        private_key: String,
        /// The mailbox to act for; `None`: the account's user.
        subject: Option<String>,
    },
    /// Microsoft's app-only client-credentials grant (RFC 6749 §4.4).
    ClientCredentials,
}

/// The JWT bearer grant's `grant_type`.
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long a Google refresh token of an app in "Testing" lasts.
pub const TESTING_LIFETIME: i64 = 7 * 86_400;

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("token_endpoint", &self.token_endpoint)
            .field("client_id", &self.client_id)
            .field("scope", &self.scope)
            .field(
                "grant",
                &match &self.grant {
                    Grant::RefreshToken => "refresh_token",
                    Grant::JwtBearer { .. } => "jwt-bearer",
                    Grant::ClientCredentials => "client_credentials",
                },
            )
            .finish_non_exhaustive()
    }
}

/// The keys a refresh file may hold.
const KEYS: &[&str] = &[
    "token_endpoint",
    "client_id",
    "client_secret",
    "refresh_token",
    "scope",
    "grant",
    "service_account_key",
    "subject",
    "app_status",
    "issued_at",
];

impl Settings {
    /// Read `text` (`key = value` lines). `Err` says what is wrong, without any value.
    pub fn parse(text: &str) -> Result<Settings, String> {
        let mut found: Vec<(String, String)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("line {}: expected key = value", i + 1));
            };
            let (k, v) = (k.trim(), v.trim());
            if !KEYS.contains(&k) {
                return Err(format!(
                    "line {}: unknown key {k:?} (known: {})",
                    i + 1,
                    KEYS.join(", ")
                ));
            }
            if found.iter().any(|(f, _)| f == k) {
                return Err(format!("line {}: {k} given twice", i + 1));
            }
            found.push((k.to_string(), v.to_string()));
        }
        let get = |k: &str| {
            found
                .iter()
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let need = |k: &str| get(k).ok_or_else(|| format!("{k} is missing"));
        let grant = match get("grant").as_deref() {
            None | Some("refresh_token") => Grant::RefreshToken,
            Some("jwt-bearer") => Grant::JwtBearer {
                key_file: PathBuf::from(need("service_account_key")?),
                private_key: String::new(),
                subject: get("subject"),
            },
            Some("client_credentials") => Grant::ClientCredentials,
            Some(other) => {
                return Err(format!(
                    "grant {other:?}: give refresh_token, jwt-bearer or client_credentials"
                ))
            }
        };
        let refresh_token = match grant {
            Grant::RefreshToken => need("refresh_token")?,
            _ => get("refresh_token").unwrap_or_default(),
        };
        let jwt = matches!(grant, Grant::JwtBearer { .. });
        let issued_at = match get("issued_at") {
            Some(t) => Some(
                parse_day_time(&t).ok_or("issued_at: give 2025-01-31 or 2025-01-31T10:00:00Z")?,
            ),
            None => None,
        };
        let s = Settings {
            // From the service account's key file, when not given here.
            token_endpoint: if jwt {
                get("token_endpoint").unwrap_or_default()
            } else {
                need("token_endpoint")?
            },
            client_id: if jwt {
                get("client_id").unwrap_or_default()
            } else {
                need("client_id")?
            },
            client_secret: get("client_secret"),
            refresh_token,
            scope: get("scope"),
            testing: get("app_status").is_some_and(|v| v.eq_ignore_ascii_case("testing")),
            issued_at,
            grant,
        };
        if s.grant == Grant::ClientCredentials && (s.client_secret.is_none() || s.scope.is_none()) {
            return Err(
                "grant client_credentials needs client_secret and scope (Microsoft 365: \
                        https://outlook.office365.com/.default)"
                    .into(),
            );
        }
        if jwt && s.scope.is_none() {
            return Err("grant jwt-bearer needs scope (Gmail: https://mail.google.com/)".into());
        }
        if !s.token_endpoint.is_empty() {
            check_endpoint(&s.token_endpoint)?;
        }
        Ok(s)
    }

    /// Fill what a service account's key file says (`client_email`, `private_key`,
    /// `token_uri`) into a `jwt-bearer` grant. `Err` names the key, never a value.
    fn read_service_account(&mut self) -> Result<(), String> {
        let Grant::JwtBearer {
            key_file,
            private_key,
            ..
        } = &mut self.grant
        else {
            return Ok(());
        };
        let file = key_file.display().to_string();
        let text = std::fs::read_to_string(&*key_file)
            .map_err(|e| format!("service_account_key {file}: {e}"))?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|_| format!("service_account_key {file}: not JSON"))?;
        let field = |k: &str| {
            v[k].as_str()
                .map(String::from)
                .ok_or(format!("service_account_key {file}: no {k}"))
        };
        *private_key = field("private_key")?;
        if self.client_id.is_empty() {
            self.client_id = field("client_email")?;
        }
        if self.token_endpoint.is_empty() {
            self.token_endpoint = field("token_uri")?;
            check_endpoint(&self.token_endpoint)?;
        }
        jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes())
            .map_err(|_| format!("service_account_key {file}: private_key is not an RSA key"))?;
        Ok(())
    }

    /// The JWT the service account signs to act for `subject` at `now` (RFC 7523 §2.1, as
    /// Google's "OAuth 2.0 for Server to Server Applications" lays it out).
    fn assertion(&self, subject: &str, now: i64) -> Result<String, String> {
        let Grant::JwtBearer { private_key, .. } = &self.grant else {
            return Err("not a jwt-bearer grant".into());
        };
        let claims = serde_json::json!({
            "iss": self.client_id,
            "scope": self.scope.clone().unwrap_or_default(),
            "aud": self.token_endpoint,
            "sub": subject,
            "iat": now,
            "exp": now + 3600,
        });
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private_key.as_bytes())
            .map_err(|_| "the service account's private_key is not an RSA key".to_string())?;
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &key,
        )
        .map_err(|e| format!("signing the assertion: {e}"))
    }

    /// When the refresh token of an app in "Testing" stops working, if that is known.
    pub fn testing_expiry(&self, file_mtime: Option<i64>) -> Option<i64> {
        (self.testing && self.grant == Grant::RefreshToken)
            .then(|| self.issued_at.or(file_mtime))
            .flatten()
            .map(|t| t + TESTING_LIFETIME)
    }

    /// The request body of the grant, application/x-www-form-urlencoded; `subject` is the
    /// mailbox a service account acts for when the file names none.
    pub fn form_for(&self, subject: &str, now: i64) -> Result<String, String> {
        let pairs: Vec<(&str, String)> = match &self.grant {
            Grant::RefreshToken => return Ok(self.form()),
            Grant::JwtBearer { subject: given, .. } => {
                let sub = given.as_deref().unwrap_or(subject);
                vec![
                    ("grant_type", JWT_BEARER.to_string()),
                    ("assertion", self.assertion(sub, now)?),
                ]
            }
            Grant::ClientCredentials => vec![
                ("grant_type", "client_credentials".to_string()),
                ("client_id", self.client_id.clone()),
                (
                    "client_secret",
                    self.client_secret.clone().unwrap_or_default(),
                ),
                ("scope", self.scope.clone().unwrap_or_default()),
            ],
        };
        Ok(pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&"))
    }

    /// The request body of the refresh-token grant (RFC 6749 §6),
    /// application/x-www-form-urlencoded.
    pub fn form(&self) -> String {
        let mut pairs = vec![
            ("grant_type", "refresh_token"),
            ("client_id", self.client_id.as_str()),
            ("refresh_token", self.refresh_token.as_str()),
        ];
        if let Some(s) = &self.client_secret {
            pairs.push(("client_secret", s));
        }
        if let Some(s) = &self.scope {
            pairs.push(("scope", s));
        }
        pairs
            .iter()
            .map(|(k, v)| format!("{k}={}", form_encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// `text` with every secret of these settings replaced by `<redacted>`.
    fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in [Some(&self.refresh_token), self.client_secret.as_ref()]
            .into_iter()
            .flatten()
        {
            if s.len() >= 4 {
                out = out.replace(s.as_str(), "<redacted>");
            }
        }
        out
    }
}

/// `https://`, or `http://` to a loopback address (127.0.0.0/8, ::1) for tests.
fn check_endpoint(url: &str) -> Result<(), String> {
    let lower = url.to_ascii_lowercase();
    let (https, rest) = if let Some(r) = lower.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = lower.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("token_endpoint {url} is not an https:// URL"));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(format!(
            "token_endpoint {url} has no host (or has a user name)"
        ));
    }
    if https {
        return Ok(());
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    let loopback = host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(format!(
            "token_endpoint {url}: plain http:// is allowed only to 127.0.0.1 or ::1; use https://"
        ))
    }
}

/// `2025-01-31` or `2025-01-31T10:00:00Z` as Unix time (UTC).
fn parse_day_time(s: &str) -> Option<i64> {
    let (day, time) = s.split_once('T').unwrap_or((s, "00:00:00Z"));
    let mut d = day.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, dd) = (d.next()??, d.next()??, d.next()??);
    let time = time.strip_suffix('Z')?;
    let mut t = time.split(':').map(|x| x.parse::<i64>().ok());
    let (h, mi, se) = (t.next()??, t.next()??, t.next().unwrap_or(Some(0))?);
    let ok = (1..=12).contains(&m) && (1..=31).contains(&dd) && h < 24 && mi < 60 && se < 61;
    ok.then(|| crate::mailtime::days_from_civil(y, m, dd) * 86_400 + h * 3600 + mi * 60 + se)
}

/// application/x-www-form-urlencoded: unreserved characters kept, space `+`, the rest `%XX`.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// What a token endpoint answered with 200.
#[derive(Clone, PartialEq, Eq)]
pub struct Granted {
    pub access_token: String,
    pub expires_in: Option<u64>,
    /// A new refresh token, when the provider rotates them.
    pub refresh_token: Option<String>,
}

impl fmt::Debug for Granted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Granted")
            .field("expires_in", &self.expires_in)
            .field("rotated", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
}

/// Read a token endpoint's JSON answer (RFC 6749 §5.1). `expires_in` may come as a number or,
/// from some providers, a string of digits; it is clamped to [`MAX_EXPIRES_IN`]. Tokens that
/// [`check_token`] refuses make the whole answer refused.
pub fn parse_grant(body: &str) -> Result<Granted, String> {
    let v: serde_json::Value =
        serde_json::from_str(body).map_err(|_| "the answer is not JSON".to_string())?;
    let access_token = v["access_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .ok_or("the answer has no access_token")?
        .to_string();
    check_token("access token the endpoint sent", &access_token)?;
    let refresh_token = v["refresh_token"]
        .as_str()
        .filter(|t| !t.is_empty())
        .map(String::from);
    if let Some(t) = &refresh_token {
        check_token("new refresh token the endpoint sent", t)?;
    }
    Ok(Granted {
        access_token,
        expires_in: expires_in(&v["expires_in"]),
        refresh_token,
    })
}

/// `expires_in` in seconds, at most [`MAX_EXPIRES_IN`]: a number (a fraction is cut, one too
/// large for an integer is a day) or a string of digits (however many); `None` for anything
/// else (a negative number, other text), as if it were not sent.
fn expires_in(v: &serde_json::Value) -> Option<u64> {
    let secs = match v {
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u,
            (None, Some(f)) if f.is_finite() && f >= 0.0 => f.min(MAX_EXPIRES_IN as f64) as u64,
            _ => return None,
        },
        serde_json::Value::String(s) => {
            let s = s.trim();
            if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            s.parse::<u64>().unwrap_or(u64::MAX)
        }
        _ => return None,
    };
    Some(secs.min(MAX_EXPIRES_IN))
}

/// The `error` (and `error_description`) of a token endpoint's refusal (RFC 6749 §5.2).
fn refusal(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let error = v["error"].as_str()?;
    Some(match v["error_description"].as_str() {
        Some(d) => format!("{error}: {}", d.lines().next().unwrap_or("")),
        None => error.to_string(),
    })
}

/// A refresh that failed: the token endpoint refused the refresh token, could not be reached,
/// or answered nonsense. Never transient: the run stops with it (the message names the option).
#[derive(Debug)]
pub struct RefreshError(String);

impl fmt::Display for RefreshError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RefreshError {}

/// The access token held, and whether it may still be used.
struct Held {
    token: String,
    obtained: Instant,
    expires: Option<Instant>,
    /// Refused or said expired by a server: refresh before the next use.
    stale: bool,
    generation: u64,
}

struct State {
    settings: Settings,
    held: Option<Held>,
    generation: u64,
    /// A refusal that no retry will change (`invalid_grant`): every later use fails with it.
    dead: Option<String>,
}

/// An access token handed to one connection.
pub struct Lease {
    pub token: String,
    /// Which refresh it came from (see [`Refresher::refused`]).
    pub generation: u64,
}

/// Fetches access tokens with the refresh token of one `--oauth2-refreshN` file and keeps the
/// current one for every connection of the run. `Debug` shows the file, never a token.
pub struct Refresher {
    /// `--oauth2-refresh1`, for messages.
    option: String,
    path: PathBuf,
    timeout: Duration,
    /// Held while refreshing, so connections opened together wait for one refresh.
    state: Mutex<State>,
    agent: ureq::Agent,
    /// The account's user: the mailbox a service account acts for unless the file names one.
    user: String,
}

impl fmt::Debug for Refresher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Refresher({} {})", self.option, self.path.display())
    }
}

impl Refresher {
    /// Read the settings in `path`, for the option named `option`. `Err` is a message naming
    /// the option and the file.
    pub fn load(path: &Path, option: &str) -> Result<Refresher, String> {
        let text = crate::secret::read(path)
            .map_err(|e| format!("cannot read {option} {}: {e}", path.display()))?;
        let mut settings =
            Settings::parse(&text).map_err(|e| format!("{option} {}: {e}", path.display()))?;
        settings
            .read_service_account()
            .map_err(|e| format!("{option} {}: {e}", path.display()))?;
        let mtime = std::fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs() as i64);
        if let Some(expiry) = settings.testing_expiry(mtime) {
            warn_testing(option, path, expiry, settings.issued_at.is_some());
        }
        Ok(Refresher::new(settings, path, option, HTTP_TIMEOUT))
    }

    /// The mailbox a service account acts for when the file names none (`--userN`).
    pub fn with_user(mut self, user: &str) -> Refresher {
        self.user = user.to_string();
        self
    }

    /// A refresher for `settings`, written back to `path` when the refresh token rotates.
    pub fn new(settings: Settings, path: &Path, option: &str, timeout: Duration) -> Refresher {
        use ureq::tls::{RootCerts, TlsConfig, TlsProvider};
        let tls = TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // A token request is never sent on to another address.
            .max_redirects(0)
            .build()
            .new_agent();
        Refresher {
            option: option.to_string(),
            path: path.to_path_buf(),
            timeout,
            state: Mutex::new(State {
                settings,
                held: None,
                generation: 0,
                dead: None,
            }),
            agent,
            user: String::new(),
        }
    }

    /// The option this refresher serves (`--oauth2-refresh1`).
    pub fn option(&self) -> &str {
        &self.option
    }

    /// An access token good for a new connection: the one held, unless it is stale, unknown
    /// or within [`EXPIRY_MARGIN`] of its expiry; then a new one from the token endpoint.
    pub fn access_token(&self) -> anyhow::Result<Lease> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(dead) = &st.dead {
            return Err(RefreshError(dead.clone()).into());
        }
        let now = Instant::now();
        if let Some(h) = &st.held {
            let lasts = match h.expires {
                None => true,
                Some(exp) => {
                    let margin = EXPIRY_MARGIN.min(exp.saturating_duration_since(h.obtained) / 2);
                    exp.saturating_duration_since(now) > margin
                }
            };
            if !h.stale && lasts {
                return Ok(Lease {
                    token: h.token.clone(),
                    generation: h.generation,
                });
            }
        }
        let granted = self.fetch(&mut st)?;
        st.generation += 1;
        let obtained = Instant::now();
        st.held = Some(Held {
            token: granted.access_token.clone(),
            obtained,
            // Clamped to a day, so no clock overflows; `None` (kept until refused) otherwise.
            expires: granted
                .expires_in
                .and_then(|s| obtained.checked_add(Duration::from_secs(s))),
            stale: false,
            generation: st.generation,
        });
        Ok(Lease {
            token: granted.access_token,
            generation: st.generation,
        })
    }

    /// A server refused the token of `generation`. True when a new token is worth a new
    /// connection: the token was obtained more than [`FRESH`] ago (so it is marked stale and
    /// refreshed first), or another connection already replaced it.
    pub fn refused(&self, generation: u64) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &mut st.held {
            Some(h) if h.generation != generation => true,
            Some(h) if h.obtained.elapsed() > FRESH => {
                h.stale = true;
                true
            }
            _ => false,
        }
    }

    /// A server said the token of `generation` expired (`BYE ... AccessTokenExpired`): the next
    /// connection refreshes first.
    pub fn expired(&self, generation: u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = &mut st.held {
            if h.generation == generation {
                h.stale = true;
            }
        }
    }

    /// POST the refresh-token grant; write a rotated refresh token back to the file.
    fn fetch(&self, st: &mut State) -> anyhow::Result<Granted> {
        let (option, file) = (&self.option, self.path.display());
        let settings = st.settings.clone();
        let url = &settings.token_endpoint;
        let fail = |why: String| -> anyhow::Error {
            RefreshError(format!(
                "{option} {file}: cannot get an OAuth2 access token from {url}: {}",
                settings.redact(&why)
            ))
            .into()
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let form = settings.form_for(&self.user, now).map_err(&fail)?;
        let sent = self
            .agent
            .post(url)
            .header("Accept", "application/json")
            .content_type("application/x-www-form-urlencoded")
            .send(form);
        let mut answer = match sent {
            Ok(a) => a,
            Err(ureq::Error::Timeout(_)) => {
                return Err(fail(format!(
                    "no answer within {} s",
                    self.timeout.as_secs()
                )))
            }
            Err(e) => return Err(fail(e.to_string())),
        };
        let status = answer.status().as_u16();
        let body = answer
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_string()
            .map_err(|e| fail(format!("reading the answer: {e}")))?;
        if status != 200 {
            let what = refusal(&body).unwrap_or_else(|| "no OAuth2 error in the answer".into());
            let why = format!("HTTP {status} ({what})");
            let invalid_grant =
                what.starts_with("invalid_grant") || what.starts_with("invalid_client");
            let err = fail(if invalid_grant {
                format!("{why}: the refresh token (or client) is no longer accepted; get a new refresh token and put it in the file")
            } else {
                why
            });
            if invalid_grant || (400..500).contains(&status) {
                st.dead = Some(err.to_string());
            }
            return Err(err);
        }
        let granted = match parse_grant(&body) {
            Ok(g) => g,
            Err(why) => {
                // Asking again gets the same answer: the run stops with it.
                let err = fail(why);
                st.dead = Some(err.to_string());
                return Err(err);
            }
        };
        if let Some(new) = &granted.refresh_token {
            if *new != st.settings.refresh_token {
                st.settings.refresh_token = new.clone();
                if let Err(e) = write_back(&self.path, &st.settings) {
                    crate::ui::warn(&format!(
                        "{option} {file}: the provider sent a new refresh token, but it could \
                         not be saved ({e}); the next run may need a new one"
                    ));
                }
            }
        }
        Ok(granted)
    }
}

/// Say when the refresh token of a Google app in "Testing" expires (7 days after it was
/// issued), loudly when that is within a day: a run (or a migration of several days under the
/// daily limits) planned past it stops with `invalid_grant`.
fn warn_testing(option: &str, path: &Path, expiry: i64, stated: bool) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let when = crate::mailtime::format_rfc3339(expiry);
    let known = if stated {
        "issued_at in the file"
    } else {
        "the file's modification time, taken as when the token was issued"
    };
    let fix = "publish the app \"In production\" (refresh tokens then last), or use a service \
               account (grant = jwt-bearer)";
    let text = if expiry <= now {
        format!(
            "{option} {}: the refresh token of this app in \"Testing\" expired at {when} \
                 (7 days after it was issued, by {known}): get a new one, or {fix}",
            path.display()
        )
    } else {
        let hours = (expiry - now) / 3600;
        format!(
            "{option} {}: the refresh token of this app in \"Testing\" expires at {when}, in \
                 {hours} h (7 days after it was issued, by {known}); a run planned past then \
                 stops there: {fix}",
            path.display()
        )
    };
    crate::ui::warn(&text);
}

/// Replace the `refresh_token` line of the file at `path` with `settings`' (the rest kept as it
/// is), atomically: a temporary file in the same directory, mode 0600, synced, renamed over
/// the file, and the directory synced. The new text is written only when it reads back as
/// `settings` (a token that would change the file's lines is refused before anything is
/// written).
fn write_back(path: &Path, settings: &Settings) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let refresh_token = &settings.refresh_token;
    let invalid = |why: String| std::io::Error::new(std::io::ErrorKind::InvalidData, why);
    check_token("new refresh token", refresh_token).map_err(invalid)?;
    let text = std::fs::read_to_string(path)?;
    let mut out = String::with_capacity(text.len() + refresh_token.len());
    let mut replaced = false;
    for line in text.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        if key == Some("refresh_token") && !line.trim_start().starts_with('#') {
            out.push_str(&format!("refresh_token = {refresh_token}\n"));
            replaced = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&format!("refresh_token = {refresh_token}\n"));
    }
    match Settings::parse(&out) {
        Ok(read) if read == *settings => {}
        _ => {
            return Err(invalid(
                "the file with the new refresh token would not read back as these settings; \
                 left as it was"
                    .into(),
            ))
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.unwrap_or_else(|| "oauth2".into()),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(out.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# Microsoft 365\n\
        token_endpoint = https://login.microsoftonline.com/common/oauth2/v2.0/token\n\
        client_id = 0a1b-c2\n\
        client_secret = s3cr&t=x y\n\
        refresh_token = M.R3_BAY.-Cd!*x\n\
        scope = https://outlook.office.com/IMAP.AccessAsUser.All offline_access\n";

    #[test]
    fn the_form_body_is_the_refresh_grant_url_encoded() {
        let s = Settings::parse(FILE).unwrap();
        assert_eq!(
            s.form(),
            "grant_type=refresh_token&client_id=0a1b-c2&refresh_token=M.R3_BAY.-Cd%21%2Ax\
             &client_secret=s3cr%26t%3Dx+y\
             &scope=https%3A%2F%2Foutlook.office.com%2FIMAP.AccessAsUser.All+offline_access"
        );
        let mut plain = s.clone();
        plain.client_secret = None;
        plain.scope = None;
        assert_eq!(
            plain.form(),
            "grant_type=refresh_token&client_id=0a1b-c2&refresh_token=M.R3_BAY.-Cd%21%2Ax"
        );
        // Debug shows neither the refresh token nor the client secret.
        let d = format!("{s:?}");
        assert!(!d.contains("M.R3") && !d.contains("s3cr"), "{d}");
    }

    #[test]
    fn files_missing_a_key_or_with_an_unknown_one_are_refused_without_values() {
        let e = Settings::parse("token_endpoint = https://x/token\nclient_id = a\n").unwrap_err();
        assert_eq!(e, "refresh_token is missing");
        let e = Settings::parse("refresh_tokn = abcdef\n").unwrap_err();
        assert!(
            e.contains("unknown key \"refresh_tokn\"") && !e.contains("abcdef"),
            "{e}"
        );
        let e = Settings::parse("just a line\n").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
    }

    #[test]
    fn plain_http_is_only_for_loopback_addresses() {
        assert!(check_endpoint("https://oauth2.googleapis.com/token").is_ok());
        assert!(check_endpoint("http://127.0.0.1:8080/token").is_ok());
        assert!(check_endpoint("http://127.9.9.9/token").is_ok());
        assert!(check_endpoint("http://[::1]:9/token").is_ok());
        assert!(check_endpoint("http://oauth2.googleapis.com/token").is_err());
        assert!(check_endpoint("http://10.0.0.1/token").is_err());
        assert!(check_endpoint("http://localhost.evil.example/token").is_err());
        assert!(check_endpoint("ftp://127.0.0.1/token").is_err());
        assert!(check_endpoint("https://user@host/token").is_err());
    }

    #[test]
    fn token_answers_are_read_with_their_expiry_and_rotated_refresh_token() {
        let g = parse_grant(
            r#"{"token_type":"Bearer","scope":"IMAP","expires_in":3599,"ext_expires_in":3599,
                "access_token":"eyJ0eXAi","refresh_token":"M.new"}"#,
        )
        .unwrap();
        assert_eq!(g.access_token, "eyJ0eXAi");
        assert_eq!(g.expires_in, Some(3599));
        assert_eq!(g.refresh_token.as_deref(), Some("M.new"));
        let g = parse_grant(r#"{"access_token":"ya29.a0","expires_in":"3600"}"#).unwrap();
        assert_eq!(
            (g.expires_in, g.refresh_token.as_deref()),
            (Some(3600), None)
        );
        assert!(parse_grant(r#"{"error":"invalid_grant"}"#).is_err());
        assert!(parse_grant("<html>").is_err());
        assert_eq!(
            refusal(r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#)
                .as_deref(),
            Some("invalid_grant: Token has been expired or revoked.")
        );
        assert!(!format!("{g:?}").contains("ya29"));
    }

    #[test]
    fn expires_in_beyond_a_day_is_a_day_in_any_form() {
        let day = Some(MAX_EXPIRES_IN);
        for (answer, want) in [
            ("18446744073709551615", day),
            ("\"18446744073709551615\"", day),
            ("\"99999999999999999999999999\"", day),
            ("1e300", day),
            ("99999999999999999999999", day),
            ("86401", day),
            ("3599.9", Some(3599)),
            ("\" 3600 \"", Some(3600)),
            ("0", Some(0)),
            ("-5", None),
            ("\"-5\"", None),
            ("\"soon\"", None),
            ("null", None),
        ] {
            let g =
                parse_grant(&format!(r#"{{"access_token":"a","expires_in":{answer}}}"#)).unwrap();
            assert_eq!(g.expires_in, want, "{answer}");
        }
    }

    #[test]
    fn tokens_that_would_change_the_file_or_the_xoauth2_string_are_refused() {
        for bad in [
            r#"{"access_token":"tok1\u0001auth=Bearer other"}"#,
            r#"{"access_token":"tok\nx"}"#,
            r#"{"access_token":"ok","refresh_token":"NEWRT\nscope = injected\nclient_secret = injected"}"#,
            r#"{"access_token":"ok","refresh_token":"NEWRT\ntoken_endpoint = https://evil/"}"#,
            r#"{"access_token":"ok","refresh_token":"rt\r"}"#,
            r#"{"access_token":"ok","refresh_token":" rt"}"#,
            r#"{"access_token":"ok","refresh_token":"r\u00e9"}"#,
        ] {
            let e = parse_grant(bad).unwrap_err();
            assert!(
                !e.contains("injected") && !e.contains("tok1") && !e.contains("NEWRT"),
                "{e}"
            );
        }
        // A JWT and a Microsoft refresh token are fine.
        let g = parse_grant(
            r#"{"access_token":"eyJ0.eyJz-_.sig~+/=","refresh_token":"M.R3_BAY.-Cd!*x"}"#,
        );
        assert!(g.is_ok());

        // Even given one, the file is not rewritten with it.
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("oauth");
        std::fs::write(&f, FILE).unwrap();
        let mut settings = Settings::parse(FILE).unwrap();
        settings.refresh_token = "NEWRT\nscope = injected".into();
        assert!(write_back(&f, &settings).is_err());
        assert_eq!(std::fs::read_to_string(&f).unwrap(), FILE);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_rotated_refresh_token_replaces_only_its_line_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("oauth");
        std::fs::write(&f, FILE).unwrap();
        let mut settings = Settings::parse(FILE).unwrap();
        settings.refresh_token = "M.rotated".into();
        write_back(&f, &settings).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        let s = Settings::parse(&text).unwrap();
        assert_eq!(s.refresh_token, "M.rotated");
        assert_eq!(s.client_secret.as_deref(), Some("s3cr&t=x y"));
        assert!(text.starts_with("# Microsoft 365\n"));
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_unreachable_endpoint_fails_at_once_naming_the_option_and_no_secret() {
        // A port nothing listens on: bind, take the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let text = FILE.replace(
            "https://login.microsoftonline.com/common/oauth2/v2.0/token",
            &format!("http://127.0.0.1:{port}/token"),
        );
        let r = Refresher::new(
            Settings::parse(&text).unwrap(),
            Path::new("/nonexistent/oauth"),
            "--oauth2-refresh1",
            Duration::from_secs(5),
        );
        let e = format!("{:#}", r.access_token().err().unwrap());
        assert!(
            e.starts_with("--oauth2-refresh1 /nonexistent/oauth: "),
            "{e}"
        );
        assert!(!e.contains("M.R3") && !e.contains("s3cr"), "{e}");
        assert!(!format!("{r:?}").contains("M.R3"));
    }
}
