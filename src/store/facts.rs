//! Header facts recorded per object (Message-ID, Date, From, Subject) for deduplication on push
//! and for re-identifying messages after a UIDVALIDITY change.
//!
//! mail-parser does the work; when it yields nothing for a header that is textually present
//! (broken syntax, no parseable header block), a tiny scan of the raw header section recovers
//! the unfolded value so damaged mail still gets facts. Where several fields of one name exist,
//! the first wins, in both paths.

use std::borrow::Cow;

use mail_parser::{HeaderName, HeaderValue, MessageParser};

/// Facts from a message's header. Every field is `None` when absent or unparsable; parsing never
/// fails and never panics, whatever the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HeaderFacts {
    /// Message-ID without angle brackets, trimmed.
    pub message_id: Option<String>,
    /// The Date header as written (unfolded, trimmed), not normalised.
    pub date: Option<String>,
    /// The From header as written (unfolded, trimmed), not decoded.
    pub from: Option<String>,
    /// The Subject, RFC 2047-decoded.
    pub subject: Option<String>,
}

impl HeaderFacts {
    /// Extract from a whole message or just its header section.
    pub fn parse(message: &[u8]) -> HeaderFacts {
        // mail-parser promises not to panic; a panic here would still abort a long pull over
        // one odd message, so contain it and fall back to the raw scan.
        let parsed = std::panic::catch_unwind(|| from_mail_parser(message)).unwrap_or_default();
        let raw = |name: &str| scan_header(message, name);
        HeaderFacts {
            message_id: parsed
                .message_id
                .or_else(|| raw("message-id").map(|v| strip_brackets(&v)))
                .and_then(non_empty),
            date: parsed.date.or_else(|| raw("date")).and_then(non_empty),
            from: parsed.from.or_else(|| raw("from")).and_then(non_empty),
            subject: parsed
                .subject
                .or_else(|| raw("subject"))
                .and_then(non_empty),
        }
    }
}

/// The header section of a message that streams by, up to and including the empty line that
/// ends it (at most 1 MiB): what [`HeaderFacts::parse`] needs, without holding the message.
#[derive(Debug, Default)]
pub struct HeaderSection {
    bytes: Vec<u8>,
    done: bool,
}

impl HeaderSection {
    /// Longer header sections are cut here (no real one comes near).
    const MAX: usize = 1 << 20;

    /// The next bytes of the message.
    pub fn feed(&mut self, chunk: &[u8]) {
        if self.done {
            return;
        }
        // The empty line may have started in the previous chunk ("\n" or "\n\r").
        let from = self.bytes.len().saturating_sub(2);
        let take = chunk.len().min(Self::MAX - self.bytes.len());
        self.bytes.extend_from_slice(&chunk[..take]);
        if let Some(end) = header_end(&self.bytes, from) {
            self.bytes.truncate(end);
            self.done = true;
        } else if self.bytes.len() >= Self::MAX {
            self.done = true;
        }
    }

    /// The facts of what was fed.
    pub fn facts(&self) -> HeaderFacts {
        HeaderFacts::parse(&self.bytes)
    }
}

/// Where the header section ends (after its empty line), looking for that line from `from`.
fn header_end(b: &[u8], from: usize) -> Option<usize> {
    if b.starts_with(b"\n") {
        return Some(1);
    }
    if b.starts_with(b"\r\n") {
        return Some(2);
    }
    (from..b.len()).find_map(|i| {
        let rest = &b[i..];
        if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\n\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// What mail-parser finds; any field may be `None`.
fn from_mail_parser(message: &[u8]) -> HeaderFacts {
    let Some(msg) = MessageParser::default().parse_headers(message) else {
        return HeaderFacts::default();
    };
    let first = |name: HeaderName<'static>| msg.headers().iter().find(|h| h.name == name);
    // Raw value bytes as they stand in the message, unfolded and trimmed.
    let raw_value = |name: HeaderName<'static>| {
        let h = first(name)?;
        let bytes = message.get(h.offset_start as usize..h.offset_end as usize)?;
        Some(unfold(bytes))
    };
    let message_id = first(HeaderName::MessageId).and_then(|h| match &h.value {
        HeaderValue::Text(s) => Some(s.trim().to_string()),
        HeaderValue::TextList(l) => l.first().map(|s| s.trim().to_string()),
        _ => None,
    });
    let subject = first(HeaderName::Subject).and_then(|h| match &h.value {
        HeaderValue::Text(s) => Some(s.trim().to_string()),
        HeaderValue::TextList(l) => Some(l.join(" ").trim().to_string()),
        _ => None,
    });
    HeaderFacts {
        message_id,
        date: raw_value(HeaderName::Date),
        from: raw_value(HeaderName::From),
        subject,
    }
}

/// The unfolded, trimmed value of the first field called `name` (ASCII case-insensitive) in the
/// header section of `message`, by plain text scanning.
fn scan_header(message: &[u8], name: &str) -> Option<String> {
    let mut lines = message
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    while let Some(line) = lines.next() {
        if line.is_empty() {
            return None; // end of the header section
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        // Obsolete syntax allows whitespace before the colon.
        if !line[..colon]
            .trim_ascii_end()
            .eq_ignore_ascii_case(name.as_bytes())
        {
            continue;
        }
        let mut value = line[colon + 1..].to_vec();
        // Continuation lines start with WSP; unfolding drops only the line break.
        for cont in lines.by_ref() {
            if cont.first().is_some_and(|&b| b == b' ' || b == b'\t') {
                value.extend_from_slice(cont);
            } else {
                break;
            }
        }
        return Some(String::from_utf8_lossy(value.trim_ascii()).into_owned());
    }
    None
}

/// Remove CR and LF (the folds) and trim; bytes that are not UTF-8 become U+FFFD.
fn unfold(bytes: &[u8]) -> String {
    let joined: Vec<u8> = bytes
        .iter()
        .copied()
        .filter(|&b| b != b'\r' && b != b'\n')
        .collect();
    match String::from_utf8_lossy(joined.trim_ascii()) {
        Cow::Borrowed(s) => s.to_string(),
        Cow::Owned(s) => s,
    }
}

fn strip_brackets(v: &str) -> String {
    let v = v.trim();
    let v = v.strip_prefix('<').unwrap_or(v);
    let v = v.strip_suffix('>').unwrap_or(v);
    v.trim().to_string()
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_streamed_header_section_gives_the_facts_of_the_whole_message(
            text in "(Subject|From|Date|Message-ID|X)(: [a-z <>@.\r\n]{0,30})?(\r?\n[ \t]?[a-z: ]{0,20}){0,6}\r?\n\r?\n?[A-Za-z:\r\n ]{0,40}",
            cut in 1usize..20,
        ) {
            let mut h = HeaderSection::default();
            for chunk in text.as_bytes().chunks(cut) {
                h.feed(chunk);
            }
            prop_assert_eq!(h.facts(), HeaderFacts::parse(text.as_bytes()));
        }
    }

    #[test]
    fn ordinary_message() {
        let f = HeaderFacts::parse(
            b"From: Ann <ann@example.org>\r\nDate: Tue, 1 Apr 2025 10:00:00 +0200\r\n\
              Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nMessage-ID: <abc@x.example>\r\n\r\nbody\r\n",
        );
        assert_eq!(f.message_id.as_deref(), Some("abc@x.example"));
        assert_eq!(f.date.as_deref(), Some("Tue, 1 Apr 2025 10:00:00 +0200"));
        assert_eq!(f.from.as_deref(), Some("Ann <ann@example.org>"));
        assert_eq!(f.subject.as_deref(), Some("Grüße"));
    }

    #[test]
    fn folded_headers_are_unfolded_not_normalised() {
        let f = HeaderFacts::parse(
            b"Date: Tue,  1 Apr 2025\r\n 10:00:00 +0200 (CEST)\r\nFrom: \"A\"\r\n\t<a@b>\r\n\
              Subject: one\r\n two\r\n\r\n",
        );
        assert_eq!(
            f.date.as_deref(),
            Some("Tue,  1 Apr 2025 10:00:00 +0200 (CEST)")
        );
        assert_eq!(f.from.as_deref(), Some("\"A\"\t<a@b>"));
        assert_eq!(f.subject.as_deref(), Some("one two"));
        assert_eq!(f.message_id, None);
    }

    #[test]
    fn missing_and_empty_headers() {
        assert_eq!(HeaderFacts::parse(b""), HeaderFacts::default());
        assert_eq!(
            HeaderFacts::parse(b"\r\nFrom: body only\r\n"),
            HeaderFacts::default()
        );
        let f = HeaderFacts::parse(b"Subject:\r\nDate:   \r\n\r\n");
        assert_eq!(f, HeaderFacts::default());
    }

    #[test]
    fn eight_bit_headers() {
        let f = HeaderFacts::parse(b"Subject: Gr\xfc\xdfe\r\nFrom: J\xc3\xb6rg <j@x>\r\n\r\n");
        assert_eq!(f.from.as_deref(), Some("Jörg <j@x>"));
        let s = f.subject.expect("8-bit subject still yields something");
        assert!(s.starts_with("Gr"), "{s}");
        // Deterministic.
        assert_eq!(
            HeaderFacts::parse(b"Subject: Gr\xfc\xdfe\r\n\r\n")
                .subject
                .as_deref(),
            Some(s.as_str())
        );
    }

    #[test]
    fn broken_message_id_still_yields_something() {
        let f = HeaderFacts::parse(b"Message-Id: no-brackets@here\r\n\r\n");
        assert_eq!(f.message_id.as_deref(), Some("no-brackets@here"));
        let f = HeaderFacts::parse(b"MESSAGE-ID:   <  spaced@here >  \r\n\r\n");
        assert_eq!(f.message_id.as_deref(), Some("spaced@here"));
    }

    #[test]
    fn first_field_wins_and_lf_only_works() {
        let f = HeaderFacts::parse(b"Subject: first\nSubject: second\nDate: d\n\nSubject: body\n");
        assert_eq!(f.subject.as_deref(), Some("first"));
        assert_eq!(f.date.as_deref(), Some("d"));
    }

    #[test]
    fn scan_fallback_directly() {
        let h = b"X: 1\r\nFrom : a\r\n  b\r\nDate: c\r\n\r\nFrom: body";
        assert_eq!(scan_header(h, "from").as_deref(), Some("a  b"));
        assert_eq!(scan_header(h, "date").as_deref(), Some("c"));
        assert_eq!(scan_header(h, "subject"), None);
    }

    proptest! {
        #[test]
        fn never_panics_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = HeaderFacts::parse(&bytes);
        }

        #[test]
        fn never_panics_on_header_like_bytes(
            lines in proptest::collection::vec(
                "(From|Date|Subject|Message-ID|To|Content-Type)?[ :\t<>=?@a-zA-Z0-9\u{80}-\u{ff}]{0,40}(\r\n|\n)[ \t]?",
                0..20,
            )
        ) {
            let text = lines.concat();
            let f = HeaderFacts::parse(text.as_bytes());
            prop_assert_eq!(f.clone(), HeaderFacts::parse(text.as_bytes()));
        }
    }
}
