//! mboxrd: writing and reading messages exactly.
//!
//! Each message is written as a `From ` line (`From MAILER-DAEMON <asctime UTC date>`), the
//! message with every line matching `^>*From ` given one more `>`, and one `\n`. Reading splits
//! at lines starting with `From `, drops the one `\n` before each (and at the end of the file),
//! and removes one `>` from lines matching `^>+From `. So a message comes back byte for byte,
//! CRLF line endings and a missing final newline included.

use std::io::{self, Write};

/// Write one message in mboxrd form with INTERNALDATE `time` (Unix seconds) on its `From ` line.
pub fn write_message(w: &mut impl Write, message: &[u8], time: i64) -> io::Result<()> {
    writeln!(
        w,
        "From MAILER-DAEMON {}",
        crate::mailtime::format_asctime(time)
    )?;
    for line in message.split_inclusive(|&b| b == b'\n') {
        if needs_quote(line) {
            w.write_all(b">")?;
        }
        w.write_all(line)?;
    }
    w.write_all(b"\n")
}

/// `^>*From `
fn needs_quote(line: &[u8]) -> bool {
    let rest = &line[line.iter().take_while(|&&b| b == b'>').count()..];
    rest.starts_with(b"From ")
}

/// One message read from an mbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MboxMessage {
    /// The `From ` line without `From ` and without its line ending.
    pub from_line: String,
    pub bytes: Vec<u8>,
}

/// Reads messages one at a time from an mboxrd stream (memory: one message).
pub struct MboxReader<R> {
    r: R,
    /// The `From ` line of the next message, already read.
    pending: Option<String>,
    /// Bytes before the first `From ` line (an mbox starts with one; callers may warn).
    pub skipped: usize,
    line: Vec<u8>,
}

impl<R: std::io::BufRead> MboxReader<R> {
    pub fn new(r: R) -> MboxReader<R> {
        MboxReader {
            r,
            pending: None,
            skipped: 0,
            line: Vec::new(),
        }
    }

    /// The next message, or `None` at the end.
    pub fn next_message(&mut self) -> io::Result<Option<MboxMessage>> {
        while self.pending.is_none() {
            self.line.clear();
            if self.r.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(None);
            }
            match self.line.strip_prefix(b"From ") {
                Some(rest) => self.pending = Some(from_text(rest)),
                None => self.skipped += self.line.len(),
            }
        }
        let mut m = MboxMessage {
            from_line: self.pending.take().unwrap_or_default(),
            bytes: Vec::new(),
        };
        loop {
            self.line.clear();
            if self.r.read_until(b'\n', &mut self.line)? == 0 {
                break;
            }
            if let Some(rest) = self.line.strip_prefix(b"From ") {
                self.pending = Some(from_text(rest));
                break;
            }
            let gt = self.line.iter().take_while(|&&b| b == b'>').count();
            if gt > 0 && self.line[gt..].starts_with(b"From ") {
                m.bytes.extend_from_slice(&self.line[1..]);
            } else {
                m.bytes.extend_from_slice(&self.line);
            }
        }
        // Drop the one `\n` the writer put after the message.
        if m.bytes.last() == Some(&b'\n') {
            m.bytes.pop();
        }
        Ok(Some(m))
    }
}

fn from_text(rest: &[u8]) -> String {
    String::from_utf8_lossy(rest)
        .trim_end_matches(['\r', '\n'])
        .to_string()
}

/// Split a whole mboxrd file into messages; the second value counts the bytes before the first
/// `From ` line.
pub fn read(data: &[u8]) -> (Vec<MboxMessage>, usize) {
    let mut r = MboxReader::new(data);
    let mut out = Vec::new();
    while let Ok(Some(m)) = r.next_message() {
        out.push(m);
    }
    (out, r.skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_is_byte_exact() {
        let cases: [&[u8]; 6] = [
            b"Subject: a\r\n\r\nFrom here\r\n>From there\r\n",
            b"Subject: b\n\nno final newline",
            b"",
            b"\n",
            b"Subject: c\r\n\r\n>>>From x\r\nFrom\r\nFrom \r\n",
            b"From the start\r\n",
        ];
        let mut buf = Vec::new();
        for (i, c) in cases.iter().enumerate() {
            write_message(&mut buf, c, 1_614_949_387 + i as i64).unwrap();
        }
        let (msgs, skipped) = read(&buf);
        assert_eq!(skipped, 0);
        assert_eq!(msgs.len(), cases.len());
        for (m, c) in msgs.iter().zip(cases) {
            assert_eq!(m.bytes, c, "{:?}", String::from_utf8_lossy(c));
        }
        assert_eq!(msgs[0].from_line, "MAILER-DAEMON Fri Mar  5 13:03:07 2021");
    }
}
