//! A deterministic, realistic test account: folders with awkward names, many kinds of
//! messages, flags, keywords and INTERNALDATEs in various time zones.
//!
//! Everything comes from a seeded PRNG of our own, so every run (and every test) sees the same
//! bytes. Folder paths use `/` as the separator; [`super::imap::seed`] translates them to the
//! server's separator, prefix and modified UTF-7.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use imapferry::mailtime::{civil_from_days, MONTHS};

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// One message of the corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusMessage {
    /// Folder path, `/`-separated UTF-8, e.g. `Archive/2023` or `Entwürfe`.
    pub folder: String,
    /// The RFC 5322 message, CRLF line endings throughout.
    pub bytes: Vec<u8>,
    /// System flags and keywords, sorted (never `\Recent`).
    pub flags: Vec<String>,
    /// IMAP date-time, e.g. `05-Mar-2021 14:03:07 +0100`.
    pub internaldate: String,
}

/// A whole test account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corpus {
    /// Every folder to create (parents before children), including empty ones.
    pub folders: Vec<String>,
    /// All messages; within a folder, in APPEND order.
    pub messages: Vec<CorpusMessage>,
}

impl Corpus {
    /// The full account: 21 folders (INBOX, Sent, Drafts, Trash, Junk, Archive, `Archive/2023`,
    /// `Archive/2024`, `Entwürfe`, `日本語`, `A & B`, `with "quotes"`, `L1/…/L5`, `Lists/rust`,
    /// an empty `Empty`, …), ~415 messages of every kind including three of 2–5 MB, exact
    /// duplicates within and across folders. About 20 MB in total.
    pub fn standard() -> Corpus {
        let plan: &[(&str, usize)] = &[
            ("INBOX", 110),
            ("Sent", 45),
            ("Drafts", 8),
            ("Trash", 20),
            ("Junk", 10),
            ("Archive", 15),
            ("Archive/2023", 40),
            ("Archive/2024", 40),
            ("Entwürfe", 8),
            ("日本語", 15),
            ("A & B", 10),
            ("with \"quotes\"", 8),
            ("L1", 3),
            ("L1/L2", 3),
            ("L1/L2/L3", 3),
            ("L1/L2/L3/L4", 3),
            ("L1/L2/L3/L4/L5", 6),
            ("Lists", 0),
            ("Lists/rust", 50),
            ("Lists/dovecot", 15),
            ("Empty", 0),
        ];
        let mut g = Gen::new(0x1aa9_f022_2024_0001);
        let mut c = g.build(plan);
        // The big ones: 2, 3.5 and 5 MB of binary before base64.
        for (folder, size) in [
            ("INBOX", 2_000_000),
            ("Archive/2023", 3_500_000),
            ("Sent", 5_000_000),
        ] {
            let m = g.message(folder, Kind::Attachment(size));
            c.messages.push(m);
        }
        // Exact duplicates: twice in one folder, and the same bytes in two folders.
        g.duplicate(&mut c, "INBOX", "INBOX");
        g.duplicate(&mut c, "INBOX", "Archive");
        g.duplicate(&mut c, "Lists/rust", "INBOX");
        c
    }

    /// A quick account: ~30 messages in 5 folders (INBOX, Sent, `Entwürfe`, Archive,
    /// `Archive/2024`) with the tricky kinds (protocol-looking body, no Message-ID, 8-bit
    /// headers, attachment, duplicates, `\Deleted`).
    pub fn small() -> Corpus {
        let plan: &[(&str, usize)] = &[
            ("INBOX", 12),
            ("Sent", 5),
            ("Entwürfe", 4),
            ("Archive", 3),
            ("Archive/2024", 5),
        ];
        let mut g = Gen::new(0x5eed_0000_0000_0030);
        let mut c = g.build(plan);
        g.duplicate(&mut c, "INBOX", "INBOX");
        g.duplicate(&mut c, "INBOX", "Archive/2024");
        c
    }

    /// An INBOX holding one message of about `len` bytes: a short header and base64-like
    /// lines, realistic for an attachment and barely compressible (for the memory tests).
    pub fn one_large(len: usize) -> Corpus {
        let mut bytes =
            b"From: big@example.org\r\nSubject: big\r\nMessage-ID: <big@x>\r\n\r\n".to_vec();
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        while bytes.len() < len {
            bytes.extend((0..76).map(|_| ALPHABET[rng.below(64) as usize]));
            bytes.extend_from_slice(b"\r\n");
        }
        Corpus {
            folders: vec!["INBOX".to_string()],
            messages: vec![CorpusMessage {
                folder: "INBOX".to_string(),
                bytes,
                flags: vec!["\\Seen".to_string()],
                internaldate: "05-Mar-2021 14:03:07 +0100".to_string(),
            }],
        }
    }

    /// Messages grouped by folder, each group in APPEND order. Folders without messages are
    /// left out.
    pub fn by_folder(&self) -> BTreeMap<String, Vec<&CorpusMessage>> {
        let mut map: BTreeMap<String, Vec<&CorpusMessage>> = BTreeMap::new();
        for m in &self.messages {
            map.entry(m.folder.clone()).or_default().push(m);
        }
        map
    }

    /// Number of messages.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// True when there are no messages.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Sum of all message sizes.
    pub fn total_bytes(&self) -> u64 {
        self.messages.iter().map(|m| m.bytes.len() as u64).sum()
    }
}

/// A point in time with the zone it is written in.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    unix: i64,
    offset_minutes: i64,
}

impl Stamp {
    fn parts(self) -> (i64, i64, i64, i64, i64, i64, i64) {
        let local = self.unix + self.offset_minutes * 60;
        let days = local.div_euclid(86400);
        let secs = local.rem_euclid(86400);
        let (y, m, d) = civil_from_days(days);
        let weekday = (days + 4).rem_euclid(7);
        (y, m, d, secs / 3600, secs / 60 % 60, secs % 60, weekday)
    }

    fn zone(self) -> String {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let a = self.offset_minutes.abs();
        format!("{sign}{:02}{:02}", a / 60, a % 60)
    }

    /// IMAP date-time: `05-Mar-2021 14:03:07 +0100`.
    fn imap(self) -> String {
        let (y, m, d, hh, mm, ss, _) = self.parts();
        let mon = MONTHS[(m - 1) as usize];
        format!("{d:02}-{mon}-{y} {hh:02}:{mm:02}:{ss:02} {}", self.zone())
    }

    /// RFC 5322 date: `Fri, 05 Mar 2021 14:03:07 +0100`.
    fn rfc5322(self) -> String {
        let (y, m, d, hh, mm, ss, wd) = self.parts();
        let (mon, day) = (MONTHS[(m - 1) as usize], WEEKDAYS[wd as usize]);
        format!(
            "{day}, {d:02} {mon} {y} {hh:02}:{mm:02}:{ss:02} {}",
            self.zone()
        )
    }
}

/// splitmix64: tiny, deterministic, good enough for test data (the benchmark's generated account
/// uses it too).
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with `percent` % probability.
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// What a generated message looks like.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// ASCII text/plain, 7bit.
    Plain,
    /// text/plain; charset=utf-8 with an 8bit body and an encoded-word subject.
    Utf8Body,
    /// Raw UTF-8 in Subject/From (no encoded words).
    EightBitHeaders,
    /// text/plain in quoted-printable.
    QuotedPrintable,
    /// multipart/alternative, text + HTML.
    Alternative,
    /// multipart/mixed with a base64 attachment of this many bytes.
    Attachment(usize),
    /// Body lines that look like IMAP protocol: `)`, `{5}`, `A1 OK`, `* OK`.
    Tricky,
    /// No Message-ID header.
    NoMessageId,
    /// Header only, empty body.
    HeaderOnly,
    /// A body line of 1500 characters.
    LongLine,
}

const FIRST: &[&str] = &[
    "Anna", "Bob", "Carol", "Jürgen", "Zoë", "Hiroshi", "Søren", "Amélie", "Dmitri", "Priya",
    "Łukasz", "Chen", "Olivia", "Mateo",
];
const LAST: &[&str] = &[
    "Smith",
    "Müller",
    "Tanaka",
    "Ødegaard",
    "García",
    "O'Brien",
    "Nowak",
    "Kowalski",
    "Dubois",
    "Ivanova",
    "Patel",
    "Nakamura",
];
const DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "beispiel.de",
    "test.jp",
];
/// Words of message bodies and subjects.
pub const WORDS: &[&str] = &[
    "meeting",
    "report",
    "invoice",
    "budget",
    "please",
    "review",
    "the",
    "attached",
    "draft",
    "quarter",
    "deadline",
    "project",
    "server",
    "migration",
    "mailbox",
    "thanks",
    "regards",
    "schedule",
    "tomorrow",
    "update",
    "release",
    "backup",
    "folder",
    "customer",
    "question",
];
const UTF8_WORDS: &[&str] = &[
    "Grüße",
    "Übersicht",
    "straße",
    "façade",
    "naïve",
    "crème",
    "日本語",
    "東京",
    "会議",
    "ありがとう",
    "Ελληνικά",
    "Привет",
    "emoji 📬",
    "ß",
    "Ærø",
];
const SUBJECTS: &[&str] = &[
    "Quarterly report",
    "Re: Lunch tomorrow?",
    "Invoice #4711",
    "Fwd: Server migration plan",
    "Your order has shipped",
    "Meeting notes",
    "Re: Re: budget",
    "[urgent] backup failed",
    "Holiday schedule",
    "Question about the release",
];
const ZONES: &[i64] = &[0, 60, 120, -420, -240, 330, 540, -210, 780, -600, 60, 0];

/// base64 with 76-character CRLF-terminated lines.
fn base64_lines(data: &[u8]) -> String {
    let encoded = base64(data);
    let mut out = String::with_capacity(encoded.len() + encoded.len() / 38 + 2);
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push_str("\r\n");
    }
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Quoted-printable with soft line breaks; input lines separated by `\n`.
fn quoted_printable(text: &str) -> String {
    let mut out = String::new();
    for line in text.split('\n') {
        let mut width = 0;
        for &b in line.as_bytes() {
            let piece = if (b == b' ' || b.is_ascii_graphic()) && b != b'=' {
                (b as char).to_string()
            } else {
                format!("={b:02X}")
            };
            if width + piece.len() > 75 {
                out.push_str("=\r\n");
                width = 0;
            }
            width += piece.len();
            out.push_str(&piece);
        }
        out.push_str("\r\n");
    }
    out
}

/// Deterministic message generator.
struct Gen {
    rng: Rng,
    serial: u32,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: Rng(seed),
            serial: 0,
        }
    }

    /// Generate `count` messages for each `(folder, count)` of `plan`, in plan order; each
    /// folder's first few messages cover the tricky kinds.
    fn build(&mut self, plan: &[(&str, usize)]) -> Corpus {
        let mut c = Corpus {
            folders: plan.iter().map(|(f, _)| f.to_string()).collect(),
            messages: Vec::new(),
        };
        // Kinds every account must contain at least once, placed in the first folders.
        let mut must: Vec<Kind> = vec![
            Kind::Tricky,
            Kind::NoMessageId,
            Kind::EightBitHeaders,
            Kind::Attachment(30_000),
            Kind::HeaderOnly,
            Kind::LongLine,
            Kind::QuotedPrintable,
            Kind::Utf8Body,
            Kind::Alternative,
        ];
        must.reverse();
        for &(folder, count) in plan {
            for _ in 0..count {
                let kind = match must.pop() {
                    Some(k) => k,
                    None => self.random_kind(),
                };
                let m = self.message(folder, kind);
                c.messages.push(m);
            }
        }
        c
    }

    fn random_kind(&mut self) -> Kind {
        match self.rng.below(100) {
            0..=34 => Kind::Plain,
            35..=44 => Kind::Utf8Body,
            45..=52 => Kind::EightBitHeaders,
            53..=60 => Kind::QuotedPrintable,
            61..=72 => Kind::Alternative,
            73..=86 => {
                let size = 500 + self.rng.below(60_000) as usize;
                Kind::Attachment(size)
            }
            87..=89 => Kind::Tricky,
            90..=96 => Kind::NoMessageId,
            97 => Kind::HeaderOnly,
            _ => Kind::LongLine,
        }
    }

    /// Copy the `n`-th-from-the-middle message of `from` (identical bytes) to the end of `to`.
    fn duplicate(&mut self, c: &mut Corpus, from: &str, to: &str) {
        let candidates: Vec<usize> = (0..c.messages.len())
            .filter(|&i| c.messages[i].folder == from && c.messages[i].bytes.len() < 100_000)
            .collect();
        let i = *self.rng.pick(&candidates);
        let mut copy = c.messages[i].clone();
        copy.folder = to.to_string();
        copy.flags = self.flags(to);
        c.messages.push(copy);
    }

    fn stamp(&mut self) -> Stamp {
        // 2016-01-01 .. 2025-06-01
        let start = 1_451_606_400;
        let span = 1_748_736_000 - start;
        Stamp {
            unix: start + self.rng.below(span as u64) as i64,
            offset_minutes: *self.rng.pick(ZONES),
        }
    }

    fn person(&mut self) -> (String, String) {
        let first = *self.rng.pick(FIRST);
        let last = *self.rng.pick(LAST);
        let domain = *self.rng.pick(DOMAINS);
        let local: String = format!("{first}.{last}")
            .to_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        (format!("{first} {last}"), format!("{local}@{domain}"))
    }

    /// An address header value; non-ASCII names as encoded words unless `raw8`.
    fn mailbox(&mut self, raw8: bool) -> String {
        let (name, addr) = self.person();
        if name.is_ascii() {
            if name.contains('\'') {
                format!("\"{name}\" <{addr}>")
            } else {
                format!("{name} <{addr}>")
            }
        } else if raw8 {
            format!("\"{name}\" <{addr}>")
        } else {
            format!("=?UTF-8?B?{}?= <{addr}>", base64(name.as_bytes()))
        }
    }

    fn sentence(&mut self, utf8: bool) -> String {
        let n = 4 + self.rng.below(10);
        let mut words = Vec::new();
        for _ in 0..n {
            if utf8 && self.rng.chance(30) {
                words.push(*self.rng.pick(UTF8_WORDS));
            } else {
                words.push(*self.rng.pick(WORDS));
            }
        }
        let mut s = words.join(" ");
        if let Some(first) = s.get(..1) {
            s = first.to_uppercase() + &s[1..];
        }
        s.push('.');
        s
    }

    /// A few paragraphs, lines wrapped below 78 characters, `\n`-separated.
    fn text(&mut self, utf8: bool) -> String {
        let mut out = String::new();
        for _ in 0..(1 + self.rng.below(4)) {
            let mut line = String::new();
            for _ in 0..(1 + self.rng.below(6)) {
                let s = self.sentence(utf8);
                if line.chars().count() + s.chars().count() > 70 {
                    out.push_str(&line);
                    out.push('\n');
                    line.clear();
                }
                if !line.is_empty() {
                    line.push(' ');
                }
                line.push_str(&s);
            }
            out.push_str(&line);
            out.push_str("\n\n");
        }
        out.push_str("-- \nSent from a test generator\n");
        out
    }

    fn flags(&mut self, folder: &str) -> Vec<String> {
        let mut f: Vec<&str> = Vec::new();
        let r = &mut self.rng;
        match folder {
            "Drafts" | "Entwürfe" => {
                f.push("\\Draft");
                if r.chance(30) {
                    f.push("\\Seen");
                }
            }
            "Sent" => {
                f.push("\\Seen");
                if r.chance(10) {
                    f.push("$Forwarded");
                }
            }
            _ => {
                if r.chance(70) {
                    f.push("\\Seen");
                }
                if r.chance(15) {
                    f.push("\\Answered");
                }
                if r.chance(3) {
                    f.push("\\Draft");
                }
                if r.chance(6) {
                    f.push("$Forwarded");
                }
            }
        }
        if r.chance(10) {
            f.push("\\Flagged");
        }
        let deleted = if folder == "Trash" { 50 } else { 4 };
        if r.chance(deleted) {
            f.push("\\Deleted");
        }
        if folder == "Junk" || r.chance(2) {
            f.push("$Junk");
        }
        if r.chance(6) {
            f.push("Work");
        }
        let mut f: Vec<String> = f.into_iter().map(String::from).collect();
        f.sort();
        f
    }

    /// One message of `kind` for `folder`, with its flags and INTERNALDATE.
    fn message(&mut self, folder: &str, kind: Kind) -> CorpusMessage {
        self.serial += 1;
        let serial = self.serial;
        let date = self.stamp();
        let delivered = Stamp {
            unix: date.unix + self.rng.below(900) as i64,
            offset_minutes: if self.rng.chance(50) {
                date.offset_minutes
            } else {
                *self.rng.pick(ZONES)
            },
        };
        let raw8 = matches!(kind, Kind::EightBitHeaders);
        let from = if folder == "Sent" {
            "Alice Example <alice@example.com>".to_string()
        } else {
            self.mailbox(raw8)
        };
        let to = if folder == "Sent" {
            self.mailbox(raw8)
        } else {
            "Alice Example <alice@example.com>".to_string()
        };
        let mut subject = self.rng.pick(SUBJECTS).to_string();
        let utf8_subject = matches!(kind, Kind::Utf8Body | Kind::EightBitHeaders);
        if utf8_subject {
            subject = format!(
                "{} {}",
                self.rng.pick::<&str>(UTF8_WORDS),
                self.rng.pick::<&str>(UTF8_WORDS)
            );
        }
        let subject = if utf8_subject && !raw8 {
            format!("=?UTF-8?B?{}?=", base64(subject.as_bytes()))
        } else {
            subject
        };

        let mut h = String::new();
        let host = self.rng.pick(DOMAINS).to_string();
        writeln!(h, "Return-Path: <bounce-{serial}@{host}>\r").unwrap();
        writeln!(
            h,
            "Received: from mx{}.{host} (mx.{host} [192.0.2.{}])\r\n\tby mail.example.com with ESMTPS id {serial:08x}\r\n\tfor <alice@example.com>; {}\r",
            self.rng.below(9),
            self.rng.below(250) + 1,
            delivered.rfc5322()
        )
        .unwrap();
        writeln!(h, "Date: {}\r", date.rfc5322()).unwrap();
        writeln!(h, "From: {from}\r").unwrap();
        writeln!(h, "To: {to}\r").unwrap();
        if self.rng.chance(20) {
            let cc = self.mailbox(raw8);
            writeln!(h, "Cc: {cc}\r").unwrap();
        }
        writeln!(h, "Subject: {subject}\r").unwrap();
        let no_id =
            matches!(kind, Kind::NoMessageId) || (folder == "Drafts" && self.rng.chance(50));
        if !no_id {
            writeln!(
                h,
                "Message-ID: <{serial}.{:016x}@{host}>\r",
                self.rng.next_u64()
            )
            .unwrap();
        }
        if folder.starts_with("Lists/") {
            let list = folder.trim_start_matches("Lists/");
            writeln!(h, "List-Id: <{list}.lists.example.org>\r").unwrap();
            writeln!(h, "Precedence: list\r").unwrap();
        }
        writeln!(h, "MIME-Version: 1.0\r").unwrap();

        let mut body = String::new();
        let mut binary: Option<Vec<u8>> = None;
        match kind {
            Kind::Plain | Kind::NoMessageId => {
                writeln!(h, "Content-Type: text/plain; charset=us-ascii\r").unwrap();
                writeln!(h, "Content-Transfer-Encoding: 7bit\r").unwrap();
                body = self.text(false);
            }
            Kind::Utf8Body | Kind::EightBitHeaders => {
                writeln!(h, "Content-Type: text/plain; charset=utf-8\r").unwrap();
                writeln!(h, "Content-Transfer-Encoding: 8bit\r").unwrap();
                body = self.text(true);
            }
            Kind::QuotedPrintable => {
                writeln!(h, "Content-Type: text/plain; charset=utf-8\r").unwrap();
                writeln!(h, "Content-Transfer-Encoding: quoted-printable\r").unwrap();
                let text = self.text(true);
                body = quoted_printable(&text).replace("\r\n", "\n");
            }
            Kind::Alternative => {
                let b = format!("=_alt_{serial:06}_{:08x}", self.rng.next_u64() as u32);
                writeln!(h, "Content-Type: multipart/alternative; boundary=\"{b}\"\r").unwrap();
                let text = self.text(false);
                let html = format!(
                    "<html><body><p>{}</p></body></html>\n",
                    text.replace("\n\n", "</p><p>").replace('\n', "<br>\n")
                );
                write!(
                    body,
                    "This is a multi-part message in MIME format.\n\n--{b}\nContent-Type: text/plain; charset=us-ascii\n\n{text}\n--{b}\nContent-Type: text/html; charset=us-ascii\n\n{html}\n--{b}--\n"
                )
                .unwrap();
            }
            Kind::Attachment(size) => {
                let b = format!("=_mixed_{serial:06}_{:08x}", self.rng.next_u64() as u32);
                writeln!(h, "Content-Type: multipart/mixed; boundary=\"{b}\"\r").unwrap();
                let text = self.text(false);
                let mut data = vec![0u8; size];
                self.rng.fill(&mut data);
                let name = format!("scan-{serial}.pdf");
                write!(
                    body,
                    "--{b}\nContent-Type: text/plain; charset=us-ascii\n\n{text}\n--{b}\nContent-Type: application/pdf; name=\"{name}\"\nContent-Disposition: attachment; filename=\"{name}\"\nContent-Transfer-Encoding: base64\n\n"
                )
                .unwrap();
                binary = Some(data);
                // The base64 part and the closing boundary are appended below, already CRLF.
                let tail = format!("\n--{b}--\n");
                body.push('\u{0}');
                body.push_str(&tail);
            }
            Kind::Tricky => {
                writeln!(h, "Content-Type: text/plain; charset=us-ascii\r").unwrap();
                body = concat!(
                    "These lines look like IMAP protocol and must survive unchanged:\n",
                    ")\n",
                    "{5}\n",
                    "A1 OK\n",
                    "A1 OK UID FETCH completed.\n",
                    "* OK [ALERT] not really an alert\n",
                    "* 3 FETCH (UID 7 FLAGS (\\Seen) BODY[] {12}\n",
                    "a2 NO [TRYCREATE] nope\n",
                    "see the attachment {5}\n",
                    "{12+}\n",
                    " )\n",
                    ".\n",
                    "From the desk of nobody\n",
                    ">From quoted\n",
                    "\"quoted\" \\backslash\\ (paren\n",
                    ")\n"
                )
                .to_string();
            }
            Kind::HeaderOnly => {
                writeln!(h, "Content-Type: text/plain; charset=us-ascii\r").unwrap();
            }
            Kind::LongLine => {
                writeln!(h, "Content-Type: text/plain; charset=us-ascii\r").unwrap();
                let mut line = String::new();
                while line.len() < 1500 {
                    line.push_str(self.rng.pick::<&str>(WORDS));
                    line.push(' ');
                }
                body = format!("A very long line follows.\n{}\nEnd.\n", line.trim_end());
            }
        }

        let mut bytes = h.into_bytes();
        bytes.extend_from_slice(b"\r\n");
        let body_crlf = body.replace("\r\n", "\n").replace('\n', "\r\n");
        match binary {
            Some(data) => {
                let (before, after) = body_crlf.split_once('\u{0}').expect("attachment marker");
                bytes.extend_from_slice(before.as_bytes());
                bytes.extend_from_slice(base64_lines(&data).as_bytes());
                bytes.extend_from_slice(after.as_bytes());
            }
            None => bytes.extend_from_slice(body_crlf.as_bytes()),
        }
        debug_assert!(!bytes.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'));
        CorpusMessage {
            folder: folder.to_string(),
            bytes,
            flags: self.flags(folder),
            internaldate: delivered.imap(),
        }
    }
}

impl Corpus {
    /// `n` messages of about 10 kB each (each different) in INBOX, for daily budget tests.
    pub fn ten_kb(n: usize) -> Corpus {
        let messages = (0..n)
            .map(|i| CorpusMessage {
                folder: "INBOX".into(),
                bytes: format!(
                    "From: a@example.org\r\nSubject: budget {i}\r\nMessage-ID: <budget{i}@example.org>\r\n\r\n{}",
                    format!("line {i} of a ten kilobyte message\r\n").repeat(10_000 / 34)
                )
                .into_bytes(),
                flags: vec!["\\Seen".into()],
                internaldate: format!("{:02}-Mar-2021 14:03:07 +0100", 1 + i % 28),
            })
            .collect();
        Corpus {
            folders: vec!["INBOX".into()],
            messages,
        }
    }
}
