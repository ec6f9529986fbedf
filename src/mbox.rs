//! mboxrd: writing and reading messages exactly.
//!
//! Each message is written as a `From ` line (`From MAILER-DAEMON <asctime UTC date>`), the
//! message with every line matching `^>*From ` given one more `>`, and one `\n`. Reading splits
//! at lines starting with `From `, drops the one `\n` before each (and at the end of the file),
//! and removes one `>` from lines matching `^>+From `. So a message comes back byte for byte,
//! CRLF line endings and a missing final newline included. The reader holds one message at a
//! time, and none longer than the limit it is given, so an mbox of any size streams through.

use std::io::{self, BufRead, Read, Write};

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
    /// The `From ` line without `From ` and without its line ending (at most 64 KiB of it).
    pub from_line: String,
    pub bytes: Vec<u8>,
    /// The message was longer than the reader's limit: its bytes were not kept (`bytes` is
    /// empty) and this is about how long it was.
    pub too_long: Option<u64>,
}

/// Lines are read in pieces of at most this many bytes, so one endless line costs no more.
const PIECE: u64 = 64 << 10;

/// Reads messages one at a time from an mboxrd stream. Memory: one message (at most the limit
/// set with [`MboxReader::with_limit`]) and a 64 KiB piece of a line.
pub struct MboxReader<R> {
    r: R,
    /// The `From ` line of the next message, already read.
    pending: Option<String>,
    /// Bytes before the first `From ` line (an mbox starts with one; callers may warn).
    pub skipped: usize,
    line: Vec<u8>,
    /// Whether the next piece starts a line.
    at_start: bool,
    limit: u64,
}

impl<R: BufRead> MboxReader<R> {
    pub fn new(r: R) -> MboxReader<R> {
        MboxReader {
            r,
            pending: None,
            skipped: 0,
            line: Vec::new(),
            at_start: true,
            limit: u64::MAX,
        }
    }

    /// Keep no message longer than `limit` bytes: a longer one is returned with
    /// [`MboxMessage::too_long`] set and no bytes, and reading goes on after it.
    pub fn with_limit(mut self, limit: u64) -> MboxReader<R> {
        self.limit = limit;
        self
    }

    /// The next message, or `None` at the end.
    pub fn next_message(&mut self) -> io::Result<Option<MboxMessage>> {
        while self.pending.is_none() {
            let Some(starts) = self.read_piece()? else {
                return Ok(None);
            };
            if starts && self.line.starts_with(b"From ") {
                self.take_from_line()?;
            } else {
                self.skipped += self.line.len();
            }
        }
        let mut m = MboxMessage {
            from_line: self.pending.take().unwrap_or_default(),
            bytes: Vec::new(),
            too_long: None,
        };
        let mut len = 0u64;
        while let Some(starts) = self.read_piece()? {
            if starts && self.line.starts_with(b"From ") {
                self.take_from_line()?;
                break;
            }
            let gt = self.line.iter().take_while(|&&b| b == b'>').count();
            let quoted = starts && gt > 0 && self.line[gt..].starts_with(b"From ");
            let piece = if quoted {
                &self.line[1..]
            } else {
                &self.line[..]
            };
            len += piece.len() as u64;
            if len > self.limit {
                m.too_long = Some(len);
                m.bytes = Vec::new();
            } else {
                m.bytes.extend_from_slice(piece);
            }
        }
        match &mut m.too_long {
            Some(n) => *n = len,
            // Drop the one `\n` the writer put after the message.
            None if m.bytes.last() == Some(&b'\n') => {
                m.bytes.pop();
            }
            None => {}
        }
        Ok(Some(m))
    }

    /// The next piece of a line (up to and including its `\n`, at most [`PIECE`] bytes) into
    /// `self.line`, and whether it starts a line; `None` at the end.
    fn read_piece(&mut self) -> io::Result<Option<bool>> {
        self.line.clear();
        if (&mut self.r)
            .take(PIECE)
            .read_until(b'\n', &mut self.line)?
            == 0
        {
            return Ok(None);
        }
        let starts = self.at_start;
        self.at_start = self.line.ends_with(b"\n");
        Ok(Some(starts))
    }

    /// `self.line` starts a `From ` line: its text is the next message's, the rest of a long
    /// line is skipped.
    fn take_from_line(&mut self) -> io::Result<()> {
        self.pending = Some(from_text(&self.line[5..]));
        while !self.at_start {
            if self.read_piece()?.is_none() {
                break;
            }
        }
        Ok(())
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

    #[test]
    fn a_message_over_the_limit_is_passed_over_and_long_lines_are_read_in_pieces() {
        let long_line = vec![b'y'; 200_000];
        let mut buf = Vec::new();
        write_message(&mut buf, b"Subject: small\n\nok\n", 0).unwrap();
        write_message(
            &mut buf,
            &[b"Subject: big\n\n", &long_line[..], b"\n"].concat(),
            0,
        )
        .unwrap();
        write_message(&mut buf, b"Subject: after\n\nFrom here\n", 0).unwrap();
        let mut r = MboxReader::new(&buf[..]).with_limit(100_000);
        let first = r.next_message().unwrap().unwrap();
        assert_eq!(first.bytes, b"Subject: small\n\nok\n");
        let big = r.next_message().unwrap().unwrap();
        assert!(
            big.bytes.is_empty() && big.too_long.unwrap() > 200_000,
            "{:?}",
            big.too_long
        );
        let last = r.next_message().unwrap().unwrap();
        assert_eq!(last.bytes, b"Subject: after\n\nFrom here\n");
        assert!(r.next_message().unwrap().is_none());
        // Without a limit the long line comes back whole.
        let (all, _) = read(&buf);
        assert_eq!(all[1].bytes.len(), 14 + 200_001);
    }
}
