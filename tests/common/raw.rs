//! A bare IMAP conversation over TCP, independent of the crate's client: to record exactly what
//! a server answers (a greeting's capabilities, `NO [ALREADYEXISTS]` against `BYE` and a closed
//! connection, how a LIST names a folder), which the client would turn into typed results or
//! errors. Commands are sent one at a time; literals in answers are read whole.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Everything the server sent for one command.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Untagged and continuation lines, without CRLF; a literal's bytes follow its `{N}`
    /// inline (lossy UTF-8).
    pub untagged: Vec<String>,
    /// The tagged completion without the tag (`OK …`, `NO …`, `BAD …`); empty when none came.
    pub done: String,
    /// The server closed the connection (or went silent for the timeout) before completing.
    pub closed: bool,
}

impl Answer {
    /// The completion's status word: `OK`, `NO`, `BAD`, or `closed` when none came.
    pub fn status(&self) -> &str {
        if self.done.is_empty() {
            "closed"
        } else {
            self.done.split(' ').next().unwrap_or("")
        }
    }

    /// The untagged lines starting with `prefix` (e.g. `* LIST`).
    pub fn lines(&self, prefix: &str) -> Vec<&str> {
        self.untagged
            .iter()
            .map(String::as_str)
            .filter(|l| l.starts_with(prefix))
            .collect()
    }

    /// The first untagged `BYE` line, if the server said goodbye.
    pub fn bye(&self) -> Option<&str> {
        self.lines("* BYE").first().copied()
    }
}

/// One connection.
pub struct RawImap {
    r: BufReader<TcpStream>,
    tag: u32,
    /// The greeting line, without CRLF.
    pub greeting: String,
}

impl RawImap {
    /// Connect to 127.0.0.1:`port` and read the greeting (5 s read timeout).
    pub fn connect(port: u16) -> RawImap {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("set timeout");
        let mut r = BufReader::new(stream);
        let greeting = read_line(&mut r).unwrap_or_default();
        RawImap {
            r,
            tag: 0,
            greeting,
        }
    }

    /// Connect and LOGIN; panics unless the login is answered OK.
    pub fn login(port: u16, user: &str, password: &str) -> RawImap {
        let mut c = RawImap::connect(port);
        let a = c.command(&format!("LOGIN {user} {password}"));
        assert_eq!(a.status(), "OK", "LOGIN on port {port}: {a:?}");
        c
    }

    /// Send one command line (tag added) and read until its completion.
    pub fn command(&mut self, line: &str) -> Answer {
        let tag = self.next_tag();
        if self.write(format!("{tag} {line}\r\n").as_bytes()).is_err() {
            return closed();
        }
        self.read_answer(&tag)
    }

    /// Send `head {N}` (synchronizing, or `{N+}` when `nonsync`), then `literal` and CRLF, and
    /// read until the completion. A synchronizing literal is sent only after a continuation.
    pub fn command_with_literal(&mut self, head: &str, literal: &[u8], nonsync: bool) -> Answer {
        let tag = self.next_tag();
        let plus = if nonsync { "+" } else { "" };
        let line = format!("{tag} {head} {{{}{plus}}}\r\n", literal.len());
        if self.write(line.as_bytes()).is_err() {
            return closed();
        }
        let mut early = Answer::default();
        if !nonsync {
            match read_line(&mut self.r) {
                Some(l) if l.starts_with('+') => {}
                // Refused before the literal: that line is the completion (or the close).
                Some(l) => return complete(early, &tag, l, &mut self.r),
                None => {
                    early.closed = true;
                    return early;
                }
            }
        }
        let mut bytes = literal.to_vec();
        bytes.extend_from_slice(b"\r\n");
        if self.write(&bytes).is_err() {
            return closed();
        }
        self.read_answer(&tag)
    }

    fn next_tag(&mut self) -> String {
        self.tag += 1;
        format!("r{}", self.tag)
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.r.get_mut().write_all(bytes)
    }

    fn read_answer(&mut self, tag: &str) -> Answer {
        match read_line(&mut self.r) {
            Some(l) => complete(Answer::default(), tag, l, &mut self.r),
            None => closed(),
        }
    }
}

fn closed() -> Answer {
    Answer {
        closed: true,
        ..Answer::default()
    }
}

/// Read lines from `first` on until the completion of `tag`.
fn complete(mut a: Answer, tag: &str, first: String, r: &mut BufReader<TcpStream>) -> Answer {
    let mut line = Some(first);
    while let Some(l) = line {
        if let Some(rest) = l.strip_prefix(&format!("{tag} ")) {
            a.done = rest.to_string();
            return a;
        }
        a.untagged.push(l);
        line = read_line(r);
    }
    a.closed = true;
    a
}

/// One response line without CRLF, any literals it announces read into it; None at EOF or
/// after the read timeout.
fn read_line(r: &mut BufReader<TcpStream>) -> Option<String> {
    let mut out = Vec::new();
    loop {
        let mut part = Vec::new();
        match r.read_until(b'\n', &mut part) {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
        while part.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
            part.pop();
        }
        let literal = literal_len(&part);
        out.extend_from_slice(&part);
        let Some(n) = literal else {
            return Some(String::from_utf8_lossy(&out).into_owned());
        };
        let mut body = vec![0; n];
        r.read_exact(&mut body).ok()?;
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&body);
    }
}

/// N when `line` ends with `{N}`.
fn literal_len(line: &[u8]) -> Option<usize> {
    let rest = line.strip_suffix(b"}")?;
    let open = rest.iter().rposition(|b| *b == b'{')?;
    std::str::from_utf8(&rest[open + 1..]).ok()?.parse().ok()
}
