//! A loopback OAuth2 token endpoint (RFC 6749 §6, the refresh-token grant) for tests, on
//! 127.0.0.1: a tiny HTTP/1.1 server on a thread answering `POST /token`.
//!
//! It checks `grant_type=refresh_token`, the `client_id` and the current refresh token, and
//! answers JSON with a fresh access token and a configurable `expires_in`; it can rotate the
//! refresh token on every grant (as Microsoft does: the old one then stops working), answer
//! `400 invalid_grant`, and count what it was asked. [`TokenEndpoint::valid`] tells an IMAP
//! test server whether an access token is still good (until its expiry), e.g. through
//! [`TokenEndpoint::checker`].

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Checks an access token: true while it is valid.
pub type TokenCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

struct Inner {
    client_id: String,
    client_secret: Option<String>,
    /// The refresh token accepted now.
    refresh_token: Mutex<String>,
    /// `expires_in` as announced, in seconds.
    expires_in: AtomicU64,
    /// How long a token really lives, in milliseconds (`None`: as announced).
    lifetime_ms: Mutex<Option<u64>>,
    rotate: AtomicBool,
    refuse: AtomicBool,
    calls: AtomicU64,
    granted: AtomicU64,
    tokens: Mutex<HashMap<String, Instant>>,
    /// Every request body received, decoded (for tests that look at what was sent).
    requests: Mutex<Vec<HashMap<String, String>>>,
    /// A scripted answer to a grant instead of the ordinary JSON (`{token}`: the access token
    /// granted).
    scripted: Mutex<Option<String>>,
    stop: AtomicBool,
    /// This endpoint's URL (the audience a service account's assertion must name).
    url: Mutex<String>,
    /// A service account whose assertions are taken: (its public key, PEM; its client_email).
    service_account: Mutex<Option<(String, String)>>,
    /// The mailboxes service-account assertions asked for, in order.
    subjects: Mutex<Vec<String>>,
    /// Accept the client-credentials grant of `client_id`/`client_secret` for this scope.
    app_scope: Mutex<Option<String>>,
}

/// A running token endpoint; stops when dropped.
pub struct TokenEndpoint {
    port: u16,
    inner: Arc<Inner>,
}

impl TokenEndpoint {
    /// Accept `client_id` (no client secret) with `refresh_token`; tokens announced and living
    /// 3600 s.
    pub fn start(client_id: &str, refresh_token: &str) -> TokenEndpoint {
        Self::start_with(client_id, None, refresh_token)
    }

    /// [`TokenEndpoint::start`] also requiring `client_secret` when given.
    pub fn start_with(
        client_id: &str,
        client_secret: Option<&str>,
        refresh_token: &str,
    ) -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let inner = Arc::new(Inner {
            client_id: client_id.into(),
            client_secret: client_secret.map(String::from),
            refresh_token: Mutex::new(refresh_token.into()),
            expires_in: AtomicU64::new(3600),
            lifetime_ms: Mutex::new(None),
            rotate: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            granted: AtomicU64::new(0),
            tokens: Mutex::new(HashMap::new()),
            requests: Mutex::new(Vec::new()),
            scripted: Mutex::new(None),
            stop: AtomicBool::new(false),
            url: Mutex::new(format!("http://127.0.0.1:{port}/token")),
            service_account: Mutex::new(None),
            subjects: Mutex::new(Vec::new()),
            app_scope: Mutex::new(None),
        });
        let i = inner.clone();
        thread::spawn(move || {
            while !i.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let i = i.clone();
                        thread::spawn(move || {
                            let _ = serve(stream, &i);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenEndpoint { port, inner }
    }

    /// The token endpoint's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }

    /// Announce (and give tokens) this `expires_in`.
    pub fn set_expires_in(&self, secs: u64) {
        self.inner.expires_in.store(secs, Ordering::Relaxed);
    }

    /// Make tokens really live only `d`, whatever `expires_in` says (a server that invalidates
    /// sessions early).
    pub fn set_lifetime(&self, d: Duration) {
        *self.inner.lifetime_ms.lock().unwrap() = Some(d.as_millis() as u64);
    }

    /// Rotate the refresh token on every grant (the old one stops working).
    pub fn set_rotate(&self, on: bool) {
        self.inner.rotate.store(on, Ordering::Relaxed);
    }

    /// Answer every request `400 {"error":"invalid_grant"}`.
    pub fn set_refuse(&self, on: bool) {
        self.inner.refuse.store(on, Ordering::Relaxed);
    }

    /// Take the JWT-bearer grant (RFC 7523) of the service account `client_email`, checking
    /// each assertion's RS256 signature with `public_pem`, its issuer and audience.
    pub fn accept_service_account(&self, public_pem: &str, client_email: &str) {
        *self.inner.service_account.lock().unwrap() =
            Some((public_pem.to_string(), client_email.to_string()));
    }

    /// Take the client-credentials grant of this endpoint's client for `scope`.
    pub fn accept_client_credentials(&self, scope: &str) {
        *self.inner.app_scope.lock().unwrap() = Some(scope.to_string());
    }

    /// The mailboxes service-account assertions asked for.
    pub fn subjects(&self) -> Vec<String> {
        self.inner.subjects.lock().unwrap().clone()
    }

    /// Answer grants with `json` (`{token}` replaced by the access token granted, valid as
    /// usual) instead of the ordinary answer; `None`: the ordinary one again.
    pub fn set_scripted(&self, json: Option<&str>) {
        *self.inner.scripted.lock().unwrap() = json.map(String::from);
    }

    /// Requests received (granted or not).
    pub fn calls(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    /// Access tokens granted.
    pub fn granted(&self) -> u64 {
        self.inner.granted.load(Ordering::Relaxed)
    }

    /// The refresh token accepted now.
    pub fn refresh_token(&self) -> String {
        self.inner.refresh_token.lock().unwrap().clone()
    }

    /// Every access token granted so far.
    pub fn access_tokens(&self) -> Vec<String> {
        self.inner.tokens.lock().unwrap().keys().cloned().collect()
    }

    /// Every request's form fields, in order.
    pub fn requests(&self) -> Vec<HashMap<String, String>> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// True when `token` was granted here and has not expired.
    pub fn valid(&self, token: &str) -> bool {
        self.inner
            .tokens
            .lock()
            .unwrap()
            .get(token)
            .is_some_and(|exp| Instant::now() < *exp)
    }

    /// [`TokenEndpoint::valid`] as a shareable check, for an IMAP test server.
    pub fn checker(self: &Arc<Self>) -> TokenCheck {
        let me = self.clone();
        Arc::new(move |t: &str| me.valid(t))
    }

    /// Write a refresh file for this endpoint at `path` (mode 0600), with `scope`.
    pub fn write_config(&self, path: &Path) {
        use std::os::unix::fs::PermissionsExt;
        let mut text = format!(
            "# test token endpoint\ntoken_endpoint = {}\nclient_id = {}\n",
            self.url(),
            self.inner.client_id
        );
        if let Some(s) = &self.inner.client_secret {
            text += &format!("client_secret = {s}\n");
        }
        text += &format!(
            "refresh_token = {}\nscope = https://mail.google.com/\n",
            self.refresh_token()
        );
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::Relaxed);
    }
}

/// Answer one HTTP/1.1 request, then close.
fn serve(stream: TcpStream, inner: &Inner) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    let mut form_type = false;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        if name == "content-length" {
            length = value.parse().unwrap_or(0);
        }
        if name == "content-type" {
            form_type = value.starts_with("application/x-www-form-urlencoded");
        }
    }
    let mut body = vec![0; length.min(1 << 16)];
    reader.read_exact(&mut body)?;
    inner.calls.fetch_add(1, Ordering::Relaxed);
    let form = parse_form(&String::from_utf8_lossy(&body));
    inner.requests.lock().unwrap().push(form.clone());
    let (status, json) = answer(inner, &request_line, form_type, &form);
    let reason = if status == 200 { "OK" } else { "Bad Request" };
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n{json}",
        json.len()
    )?;
    out.flush()
}

fn error(what: &str) -> (u16, String) {
    (
        400,
        format!("{{\"error\":\"{what}\",\"error_description\":\"test endpoint: {what}\"}}"),
    )
}

/// The status and JSON body for one request.
fn answer(
    inner: &Inner,
    request_line: &str,
    form_type: bool,
    form: &HashMap<String, String>,
) -> (u16, String) {
    if !request_line.starts_with("POST /token ") {
        return (404, "{\"error\":\"not_found\"}".into());
    }
    if !form_type {
        return error("invalid_request");
    }
    if inner.refuse.load(Ordering::Relaxed) {
        return error("invalid_grant");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {}
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => return jwt_grant(inner, form),
        Some("client_credentials") => {
            let scope = inner.app_scope.lock().unwrap().clone();
            let ok = scope.is_some()
                && form.get("scope") == scope.as_ref()
                && form.get("client_id") == Some(&inner.client_id)
                && form.get("client_secret") == inner.client_secret.as_ref();
            return if ok {
                mint(inner, "app")
            } else {
                error("invalid_client")
            };
        }
        _ => return error("unsupported_grant_type"),
    }
    if form.get("client_id") != Some(&inner.client_id)
        || form.get("client_secret") != inner.client_secret.as_ref()
    {
        return error("invalid_client");
    }
    let mut current = inner.refresh_token.lock().unwrap();
    if form.get("refresh_token") != Some(&*current) {
        return error("invalid_grant");
    }
    let (status, mut json) = mint(inner, "at");
    if inner.rotate.load(Ordering::Relaxed) {
        let n = inner.granted.load(Ordering::Relaxed);
        let new = format!("rt-{n}-test-refresh");
        json.pop();
        json += &format!(",\"refresh_token\":\"{new}\"}}");
        *current = new;
    }
    (status, json)
}

/// A service account's assertion checked (signature, issuer, audience, expiry), and a token
/// for the mailbox it names.
fn jwt_grant(inner: &Inner, form: &HashMap<String, String>) -> (u16, String) {
    let Some((public_pem, email)) = inner.service_account.lock().unwrap().clone() else {
        return error("unsupported_grant_type");
    };
    let Some(assertion) = form.get("assertion") else {
        return error("invalid_request");
    };
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[inner.url.lock().unwrap().clone()]);
    v.set_issuer(&[email]);
    v.set_required_spec_claims(&["exp", "iat", "aud", "iss", "sub"]);
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(public_pem.as_bytes()).unwrap();
    let Ok(data) = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &v) else {
        return error("invalid_grant");
    };
    let sub = data.claims["sub"].as_str().unwrap_or_default().to_string();
    if data.claims["scope"] != "https://mail.google.com/" || sub.is_empty() {
        return error("invalid_scope");
    }
    inner.subjects.lock().unwrap().push(sub.clone());
    mint(inner, &format!("sa-{sub}"))
}

/// A new access token (prefixed `kind`), remembered with its expiry, as a 200 JSON answer.
fn mint(inner: &Inner, kind: &str) -> (u16, String) {
    let n = inner.granted.fetch_add(1, Ordering::Relaxed) + 1;
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let token = format!("{kind}-{n}-{nonce:08x}-test-access");
    let expires_in = inner.expires_in.load(Ordering::Relaxed);
    let lives = match *inner.lifetime_ms.lock().unwrap() {
        Some(ms) => Duration::from_millis(ms),
        None => Duration::from_secs(expires_in),
    };
    inner
        .tokens
        .lock()
        .unwrap()
        .insert(token.clone(), Instant::now() + lives);
    if let Some(script) = &*inner.scripted.lock().unwrap() {
        return (200, script.replace("{token}", &token));
    }
    let mut json = format!(
        "{{\"token_type\":\"Bearer\",\"access_token\":\"{token}\",\"expires_in\":{expires_in}"
    );
    json.push('}');
    (200, json)
}

/// Decode an application/x-www-form-urlencoded body.
pub fn parse_form(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (unescape(k), unescape(v))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The user and the access token of an XOAUTH2 initial response (base64 of
/// `user=U ^A auth=Bearer T ^A ^A`).
pub fn xoauth2_token(b64: &str) -> Option<(String, String)> {
    let raw = base64_decode(b64.trim())?;
    let text = String::from_utf8(raw).ok()?;
    let mut user = None;
    let mut token = None;
    for part in text.split('\x01') {
        if let Some(u) = part.strip_prefix("user=") {
            user = Some(u.to_string());
        }
        if let Some(t) = part.strip_prefix("auth=Bearer ") {
            token = Some(t.to_string());
        }
    }
    Some((user?, token?))
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = A.iter().position(|a| *a == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    Some(out)
}
