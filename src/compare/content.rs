//! What a message *is*, for telling whether host2 holds it: its exact bytes (SHA-256), and the
//! same bytes as a server that rewrites what it stores would keep them.
//!
//! Servers differ in what they store for what they were given: a final CRLF added to a message
//! that lacks one, every line ending turned into a bare LF, a blank line inserted where a
//! header has no body after it. [`normalized`] undoes all three the same way for both sides: line
//! endings become LF and trailing line ends go. Two messages whose normalized bytes are equal are
//! the same text; whether the bytes are exactly equal decides "exact" or "altered by host2".
//! A match is always on the whole text, never on a guess from headers.

use sha2::{Digest, Sha256};

use crate::store::Hash;

/// The two fingerprints of one message, and its line-ending shape (to say what a server
/// changed without keeping the bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Content {
    /// SHA-256 of the exact bytes: the store's object name.
    pub exact: Hash,
    /// SHA-256 of the [`normalized`] bytes.
    pub text: Hash,
    pub shape: Shape,
}

/// Length and line endings of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Shape {
    pub len: u64,
    /// CRLF pairs.
    pub crlf: u64,
    /// LFs without a CR before them.
    pub bare_lf: u64,
    /// CR and LF bytes at the very end.
    pub trailing: u64,
}

impl Content {
    pub fn of(bytes: &[u8]) -> Content {
        Content {
            exact: Hash::of(bytes),
            text: text_hash(bytes),
            shape: Shape::of(bytes),
        }
    }
}

impl Shape {
    pub fn of(bytes: &[u8]) -> Shape {
        let lf = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
        let crlf = bytes.windows(2).filter(|w| w == b"\r\n").count() as u64;
        let end = bytes
            .iter()
            .rposition(|&b| b != b'\r' && b != b'\n')
            .map_or(0, |p| p + 1);
        Shape {
            len: bytes.len() as u64,
            crlf,
            bare_lf: lf - crlf,
            trailing: (bytes.len() - end) as u64,
        }
    }
}

/// SHA-256 of [`normalized`] `bytes`, computed without a second copy of the message.
pub fn text_hash(bytes: &[u8]) -> Hash {
    let mut h = Sha256::new();
    normalized(bytes, |piece| h.update(piece));
    Hash(h.finalize().into())
}

/// Feed `bytes` with every CRLF and lone CR turned into LF, and the line ends at the end
/// dropped, to `out` in pieces.
pub fn normalized(bytes: &[u8], mut out: impl FnMut(&[u8])) {
    let end = bytes
        .iter()
        .rposition(|&b| b != b'\r' && b != b'\n')
        .map_or(0, |p| p + 1);
    let body = &bytes[..end];
    let mut start = 0;
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\r' {
            out(&body[start..i]);
            out(b"\n");
            i += if body.get(i + 1) == Some(&b'\n') {
                2
            } else {
                1
            };
            start = i;
        } else {
            i += 1;
        }
    }
    out(&body[start..]);
}

/// What host2 changed, said in words for the report: `stored` is the shape of what host2
/// serves for the store's message of shape `original` (their normalized text is the same).
pub fn describe_change(original: &Shape, stored: &Shape) -> String {
    let mut what = Vec::new();
    if original.crlf > 0 && stored.crlf == 0 && stored.bare_lf > 0 {
        what.push("line endings turned into bare LF");
    } else if original.bare_lf > 0 && stored.bare_lf == 0 && stored.crlf > 0 {
        what.push("line endings turned into CRLF");
    }
    if stored.trailing > original.trailing {
        what.push("line ends added at the end");
    } else if stored.trailing < original.trailing {
        what.push("line ends dropped at the end");
    }
    if what.is_empty() {
        what.push("line endings changed");
    }
    format!(
        "{} ({} bytes stored for {})",
        what.join(", "),
        stored.len,
        original.len
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rewrites_servers_make_have_the_same_text() {
        let sent = b"Subject: x\r\n\r\nbody\r\nlast";
        for stored in [
            &b"Subject: x\r\n\r\nbody\r\nlast\r\n"[..],
            b"Subject: x\n\nbody\nlast\n",
            b"Subject: x\n\nbody\nlast",
        ] {
            let (a, b) = (Content::of(sent), Content::of(stored));
            assert_ne!(a.exact, b.exact);
            assert_eq!(a.text, b.text, "{:?}", String::from_utf8_lossy(stored));
        }
        // A header without a body: a blank line inserted after it.
        assert_eq!(
            Content::of(b"Subject: y\r\n").text,
            Content::of(b"Subject: y\r\n\r\n").text
        );
        // Other text is other text.
        assert_ne!(
            Content::of(b"Subject: x\r\n\r\nbody").text,
            Content::of(b"Subject: x\r\n\r\nBody").text
        );
        assert_eq!(
            describe_change(&Shape::of(sent), &Shape::of(b"Subject: x\n\nbody\nlast\n")),
            "line endings turned into bare LF, line ends added at the end (22 bytes stored for 24)"
        );
    }

    proptest! {
        /// Whatever the bytes, the CRLF, bare-LF and final-CRLF forms of a message have one
        /// text hash, and a message keeps its exact hash.
        #[test]
        fn line_ending_forms_share_the_text_hash(
            lines in proptest::collection::vec("[ -~]{0,20}", 0..8),
        ) {
            let crlf = lines.join("\r\n");
            let lf = lines.join("\n");
            let final_crlf = format!("{crlf}\r\n");
            let t = text_hash(crlf.as_bytes());
            prop_assert_eq!(t, text_hash(lf.as_bytes()));
            prop_assert_eq!(t, text_hash(final_crlf.as_bytes()));
            prop_assert_eq!(Content::of(crlf.as_bytes()).exact, Hash::of(crlf.as_bytes()));
        }
    }
}
