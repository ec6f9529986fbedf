//! A scripted IMAP server for hostile-input tests, on 127.0.0.1.
//!
//! It speaks just enough IMAP4rev1 for imapferry to pull from it (greeting, CAPABILITY, LOGIN,
//! LIST, EXAMINE/SELECT, UID SEARCH, UID FETCH with partial bodies, APPEND, LOGOUT) over a fixed
//! set of folders and messages, so a test only writes the part it means to break: an
//! [`Override`] sees every command first and may answer it with exactly the bytes it wants
//! (an INTERNALDATE with a line break in it, a body longer than asked, an endless chain of
//! literals, a byte a second). Everything the client sent is kept in [`Hostile::received`].

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One message as the server presents it.
#[derive(Clone, Debug)]
pub struct Msg {
    pub uid: u32,
    pub flags: String,
    /// The INTERNALDATE item exactly as sent after `INTERNALDATE ` (`"01-Jan-2025 …"`, `NIL`,
    /// a literal with a line break in it).
    pub internaldate: Vec<u8>,
    pub body: Vec<u8>,
    /// RFC822.SIZE as declared (normally the body's length).
    pub size: u64,
}

impl Msg {
    /// A well-formed message with a quoted date.
    pub fn new(uid: u32, body: &[u8]) -> Msg {
        Msg {
            uid,
            flags: "\\Seen".into(),
            internaldate: b"\"01-Jan-2025 10:00:00 +0000\"".to_vec(),
            body: body.to_vec(),
            size: body.len() as u64,
        }
    }
}

/// One folder: its name as LIST sends it (already quoted or a literal), UIDVALIDITY, messages.
#[derive(Clone, Debug)]
pub struct Folder {
    pub list_name: Vec<u8>,
    /// The name as the client sends it back (without quotes).
    pub name: String,
    /// The bytes SELECT must carry to open it (the name's, unless a test sets raw bytes).
    pub select_as: Vec<u8>,
    pub uidvalidity: u32,
    pub messages: Vec<Msg>,
}

impl Folder {
    pub fn new(name: &str, messages: Vec<Msg>) -> Folder {
        Folder {
            list_name: format!("\"{name}\"").into_bytes(),
            name: name.into(),
            select_as: name.as_bytes().to_vec(),
            uidvalidity: 7,
            messages,
        }
    }
}

/// One command as the client sent it.
#[derive(Clone, Debug)]
pub struct Cmd {
    pub tag: String,
    /// The command line without the tag (literals' contents left out), upper-case verb.
    pub line: String,
    /// Contents of its literals, in order.
    pub literals: Vec<Vec<u8>>,
}

impl Cmd {
    /// The verb(s), upper-cased: `UID FETCH`, `SELECT`, ...
    pub fn verb(&self) -> String {
        let mut w = self.line.split(' ');
        let first = w.next().unwrap_or("").to_ascii_uppercase();
        if first == "UID" {
            format!("UID {}", w.next().unwrap_or("").to_ascii_uppercase())
        } else {
            first
        }
    }
}

/// The server's side of one connection.
pub struct Session {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    pub folders: Arc<Vec<Folder>>,
    pub selected: Option<usize>,
    pub caps: String,
    /// A command line holding this text is answered BAD as soon as its line ends in a literal
    /// announcement, the way a careless server does: a synchronizing literal is then never
    /// sent, and a non-synchronizing one is read as the next commands.
    pub refuse: Option<String>,
    /// What the client logged in with, for a hook that checks it later (an access token that
    /// expires mid-session); the ordinary answers never set it.
    pub login: Option<String>,
}

/// A test's hook: answer `cmd` itself (write to the session, return `true`) or leave it to the
/// ordinary answer (`false`).
pub type Override = Arc<dyn Fn(&Cmd, &mut Session) -> io::Result<bool> + Send + Sync>;

impl Session {
    /// Write bytes as they are.
    pub fn send(&mut self, b: &[u8]) -> io::Result<()> {
        self.stream.write_all(b)
    }

    /// Write `b` one byte at a time, `gap` apart.
    pub fn trickle(&mut self, b: &[u8], gap: Duration) -> io::Result<()> {
        for byte in b {
            self.stream.write_all(&[*byte])?;
            thread::sleep(gap);
        }
        Ok(())
    }

    /// The tagged OK.
    pub fn ok(&mut self, cmd: &Cmd) -> io::Result<()> {
        self.send(format!("{} OK done\r\n", cmd.tag).as_bytes())
    }

    /// The selected folder's messages.
    pub fn messages(&self) -> &[Msg] {
        self.selected
            .map(|i| self.folders[i].messages.as_slice())
            .unwrap_or(&[])
    }

    /// Read one command (its literals too: a synchronizing one gets `+ go` first).
    fn read_command(&mut self) -> io::Result<Option<Cmd>> {
        let mut line = Vec::new();
        let mut literals = Vec::new();
        loop {
            let mut part = Vec::new();
            if self.reader.read_until(b'\n', &mut part)? == 0 {
                return Ok(None);
            }
            let text = String::from_utf8_lossy(&part).trim_end().to_string();
            let refused = self
                .refuse
                .as_ref()
                .is_some_and(|r| text.contains(r.as_str()) && literal_len(&text).is_some());
            if refused {
                let tag = text.split(' ').next().unwrap_or("*").to_string();
                self.send(format!("{tag} BAD refused before its literal\r\n").as_bytes())?;
                line.extend_from_slice(text.as_bytes());
                break;
            }
            match literal_len(&text) {
                Some((n, sync)) => {
                    line.extend_from_slice(text.rsplit_once('{').unwrap().0.as_bytes());
                    line.extend_from_slice(b"{}");
                    if sync {
                        self.send(b"+ go\r\n")?;
                    }
                    let mut data = vec![0; n];
                    self.reader.read_exact(&mut data)?;
                    literals.push(data);
                }
                None => {
                    line.extend_from_slice(text.as_bytes());
                    break;
                }
            }
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        let (tag, rest) = line.split_once(' ').unwrap_or((&line, ""));
        Ok(Some(Cmd {
            tag: tag.to_string(),
            line: rest.to_string(),
            literals,
        }))
    }

    /// The ordinary answer to `cmd`.
    pub fn answer(&mut self, cmd: &Cmd) -> io::Result<bool> {
        let verb = cmd.verb();
        match verb.as_str() {
            "CAPABILITY" => {
                let caps = self.caps.clone();
                self.send(format!("* CAPABILITY {caps}\r\n").as_bytes())?;
                self.ok(cmd)?;
            }
            "LOGOUT" => {
                self.send(b"* BYE bye\r\n")?;
                self.ok(cmd)?;
                return Ok(false);
            }
            "LIST" if cmd.line.contains("\"\" \"\"") => {
                self.send(b"* LIST (\\Noselect) \"/\" \"\"\r\n")?;
                self.ok(cmd)?;
            }
            "LIST" => {
                for f in self.folders.clone().iter() {
                    let mut l = b"* LIST () \"/\" ".to_vec();
                    l.extend_from_slice(&f.list_name);
                    l.extend_from_slice(b"\r\n");
                    self.send(&l)?;
                }
                self.ok(cmd)?;
            }
            "SELECT" | "EXAMINE" => self.select(cmd)?,
            "UID SEARCH" => {
                let uids: Vec<String> = self.messages().iter().map(|m| m.uid.to_string()).collect();
                self.send(format!("* SEARCH {}\r\n", uids.join(" ")).as_bytes())?;
                self.ok(cmd)?;
            }
            "UID FETCH" => self.fetch(cmd)?,
            "APPEND" => {
                self.send(format!("{} OK [APPENDUID 7 1] done\r\n", cmd.tag).as_bytes())?;
            }
            _ => self.ok(cmd)?,
        }
        Ok(true)
    }

    fn select(&mut self, cmd: &Cmd) -> io::Result<()> {
        let name: Vec<u8> = match cmd.literals.first() {
            Some(l) => l.clone(),
            None => cmd
                .line
                .split_once(' ')
                .map(|(_, n)| n.trim().trim_matches('"').as_bytes().to_vec())
                .unwrap_or_default(),
        };
        let Some(i) = self.folders.iter().position(|f| f.select_as == name) else {
            return self.send(format!("{} NO no such folder\r\n", cmd.tag).as_bytes());
        };
        self.selected = Some(i);
        let f = &self.folders[i];
        let next = f.messages.iter().map(|m| m.uid).max().unwrap_or(0) + 1;
        let text = format!(
            "* {} EXISTS\r\n* OK [UIDVALIDITY {}] ok\r\n* OK [UIDNEXT {next}] ok\r\n{} OK done\r\n",
            f.messages.len(),
            f.uidvalidity,
            cmd.tag
        );
        self.send(text.as_bytes())
    }

    fn fetch(&mut self, cmd: &Cmd) -> io::Result<()> {
        let rest = cmd.line.splitn(3, ' ').nth(2).unwrap_or("");
        let (set, items) = rest.split_once(' ').unwrap_or((rest, ""));
        let items = items.to_ascii_uppercase();
        let msgs: Vec<Msg> = self
            .messages()
            .iter()
            .filter(|m| in_set(set, m.uid))
            .cloned()
            .collect();
        for (seq, m) in msgs.iter().enumerate() {
            self.send(&fetch_response(seq as u32 + 1, m, &items))?;
        }
        self.ok(cmd)
    }
}

/// The FETCH response for `m` with the items asked for in `items` (upper-cased).
pub fn fetch_response(seq: u32, m: &Msg, items: &str) -> Vec<u8> {
    let mut out = format!("* {seq} FETCH (UID {}", m.uid).into_bytes();
    if items.contains("FLAGS") {
        out.extend_from_slice(format!(" FLAGS ({})", m.flags).as_bytes());
    }
    if items.contains("INTERNALDATE") {
        out.extend_from_slice(b" INTERNALDATE ");
        out.extend_from_slice(&m.internaldate);
    }
    if items.contains("RFC822.SIZE") {
        out.extend_from_slice(format!(" RFC822.SIZE {}", m.size).as_bytes());
    }
    if let Some(p) = items.find("BODY.PEEK[") {
        let section = &items[p + 10..];
        let (name, data): (String, &[u8]) = if section.starts_with("HEADER]") {
            let end = find(&m.body, b"\r\n\r\n").map_or(m.body.len(), |e| e + 4);
            ("BODY[HEADER]".into(), &m.body[..end])
        } else if let Some(partial) = section.strip_prefix("]<") {
            let spec = partial.split('>').next().unwrap_or("0.0");
            let (o, n) = spec.split_once('.').unwrap_or(("0", "0"));
            let (o, n): (usize, usize) = (o.parse().unwrap_or(0), n.parse().unwrap_or(0));
            let start = o.min(m.body.len());
            let end = (o + n).min(m.body.len());
            (format!("BODY[]<{o}>"), &m.body[start..end])
        } else {
            ("BODY[]".into(), &m.body[..])
        };
        out.extend_from_slice(format!(" {name} {{{}}}\r\n", data.len()).as_bytes());
        out.extend_from_slice(data);
    }
    out.extend_from_slice(b")\r\n");
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Whether `uid` is in the sequence set `set` (`1:5,7,9:*`).
pub fn in_set(set: &str, uid: u32) -> bool {
    let num = |s: &str| {
        if s == "*" {
            Some(u32::MAX)
        } else {
            s.parse().ok()
        }
    };
    set.split(',').any(|p| match p.split_once(':') {
        Some((a, b)) => match (num(a), num(b)) {
            (Some(a), Some(b)) => (a.min(b)..=a.max(b)).contains(&uid),
            _ => false,
        },
        None => num(p) == Some(uid),
    })
}

/// `{N}` or `{N+}` at the end of a line: (N, synchronizing).
fn literal_len(line: &str) -> Option<(usize, bool)> {
    let inner = line.strip_suffix('}')?.rsplit_once('{')?.1;
    match inner.strip_suffix('+') {
        Some(n) => Some((n.parse().ok()?, false)),
        None => Some((inner.parse().ok()?, true)),
    }
}

/// A running scripted server; stops when dropped.
pub struct Hostile {
    port: u16,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Cmd>>>,
    connections: Arc<Mutex<u64>>,
    /// Sessions over: the client closed its end and everything it sent was read.
    ended: Arc<Mutex<u64>>,
}

/// Capabilities announced unless a test says otherwise.
pub const CAPS: &str = "IMAP4rev1 LITERAL+ UIDPLUS";

impl Hostile {
    /// Serve `folders`; `hook` sees every command first.
    pub fn start(folders: Vec<Folder>, hook: Option<Override>) -> Hostile {
        Self::start_with(folders, CAPS, hook)
    }

    /// [`Hostile::start`] announcing `caps`.
    pub fn start_with(folders: Vec<Folder>, caps: &str, hook: Option<Override>) -> Hostile {
        Self::start_refusing(folders, caps, None, hook)
    }

    /// [`Hostile::start_with`], answering BAD at the literal of any command line holding
    /// `refuse` (see [`Session::refuse`]).
    pub fn start_refusing(
        folders: Vec<Folder>,
        caps: &str,
        refuse: Option<&str>,
        hook: Option<Override>,
    ) -> Hostile {
        let refuse = refuse.map(String::from);
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(Mutex::new(0));
        let ended = Arc::new(Mutex::new(0));
        let folders = Arc::new(folders);
        let (s, r, n, e, caps) = (
            stop.clone(),
            received.clone(),
            connections.clone(),
            ended.clone(),
            caps.to_string(),
        );
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        *n.lock().unwrap() += 1;
                        let (f, r, h, c, s) = (
                            folders.clone(),
                            r.clone(),
                            hook.clone(),
                            caps.clone(),
                            s.clone(),
                        );
                        let (refuse, e) = (refuse.clone(), e.clone());
                        thread::spawn(move || {
                            let _ = serve(stream, f, r, h, (c, refuse), s);
                            *e.lock().unwrap() += 1;
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Hostile {
            port,
            stop,
            received,
            connections,
            ended,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every command received so far, in order (all connections).
    pub fn received(&self) -> Vec<Cmd> {
        self.received.lock().unwrap().clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        *self.connections.lock().unwrap()
    }

    /// Wait until `n` sessions are over (each client closed its end, and all it sent was read
    /// into [`Hostile::received`]): an event to wait for, not a time. Panics after a minute.
    pub fn wait_ended(&self, n: u64) {
        let started = std::time::Instant::now();
        while *self.ended.lock().unwrap() < n {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{n} sessions did not end within a minute"
            );
            thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    folders: Arc<Vec<Folder>>,
    received: Arc<Mutex<Vec<Cmd>>>,
    hook: Option<Override>,
    (caps, refuse): (String, Option<String>),
    stop: Arc<AtomicBool>,
) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut s = Session {
        reader: BufReader::new(stream.try_clone()?),
        stream,
        folders,
        selected: None,
        caps,
        refuse,
        login: None,
    };
    s.send(format!("* OK [CAPABILITY {}] hostile ready\r\n", s.caps).as_bytes())?;
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let Some(cmd) = s.read_command()? else {
            break;
        };
        received.lock().unwrap().push(cmd.clone());
        let answered = match &hook {
            Some(h) => h(&cmd, &mut s),
            None => Ok(false),
        }
        .and_then(|handled| Ok(handled || s.answer(&cmd)?));
        match answered {
            Ok(true) => {}
            Ok(false) => break,
            // The client went away while answered: what it sent before leaving is still read.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                ) =>
            {
                while let Ok(Some(cmd)) = s.read_command() {
                    received.lock().unwrap().push(cmd);
                }
                break;
            }
            // A hook's way to end the session (a BYE, say).
            Err(_) => break,
        }
    }
    let _ = s.stream.shutdown(Shutdown::Both);
    Ok(())
}

/// Folders for a simple account: INBOX with `msgs`.
pub fn inbox(msgs: Vec<Msg>) -> Vec<Folder> {
    vec![Folder::new("INBOX", msgs)]
}

/// A message body of `len` bytes (CRLF lines, ASCII).
pub fn body_of(len: usize, seed: u32) -> Vec<u8> {
    let mut b = format!("Subject: message {seed}\r\nMessage-ID: <{seed}@hostile.test>\r\n\r\n")
        .into_bytes();
    let mut i = 0u64;
    while b.len() < len {
        b.extend_from_slice(format!("line {i} of {seed}\r\n").as_bytes());
        i += 1;
    }
    b.truncate(len);
    b
}

/// The sorted UIDs of `folders`, by name (for comparing with a store).
pub fn uids(folders: &[Folder]) -> BTreeMap<String, Vec<u32>> {
    folders
        .iter()
        .map(|f| (f.name.clone(), f.messages.iter().map(|m| m.uid).collect()))
        .collect()
}
