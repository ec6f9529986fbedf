//! The changes push makes to a message's bytes, only when the user asks (the store keeps every
//! message as host1 served it): lines broken to the length host2 takes (`--rewrap-long-lines`,
//! imapsync's `--regexmess 's,(.{10239}),$1\r\n,g'` for Office 365) and the read-receipt
//! request disarmed (`--disarm-read-receipts`, imapsync's `--disarmreadreceipts`). Each is a
//! pure function of the bytes: the same message always becomes the same bytes.

/// `bytes` with every line longer than `max` characters (its line end not counted) broken so
/// that none is: a header line is folded (CRLF and a space, which RFC 5322 reads as the same
/// field), after the last space within the limit when there is one; a body line gets a CRLF
/// every `max` characters. `None` when no line is too long; otherwise the new bytes and how
/// many lines were broken.
pub fn rewrap(bytes: &[u8], max: usize) -> Option<(Vec<u8>, usize)> {
    let max = max.max(2);
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / max * 3);
    let mut broken = 0;
    let mut in_header = true;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let body_len = line.len() - line_end(line).len();
        if in_header && body_len == 0 {
            in_header = false;
        }
        if body_len <= max {
            out.extend_from_slice(line);
            continue;
        }
        broken += 1;
        let (text, end) = line.split_at(body_len);
        if in_header {
            fold_header(text, max, &mut out);
        } else {
            for (k, piece) in text.chunks(max).enumerate() {
                if k > 0 {
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(piece);
            }
        }
        out.extend_from_slice(end);
    }
    (broken > 0).then_some((out, broken))
}

/// The line end of `line` (CRLF, LF, or nothing at the end of the message).
fn line_end(line: &[u8]) -> &[u8] {
    if line.ends_with(b"\r\n") {
        &line[line.len() - 2..]
    } else if line.ends_with(b"\n") {
        &line[line.len() - 1..]
    } else {
        &[]
    }
}

/// Fold one header line of `text` into pieces of at most `max` characters, each continued with
/// CRLF and a space (or at a space already there, which then starts the next piece).
fn fold_header(text: &[u8], max: usize, out: &mut Vec<u8>) {
    let mut rest = text;
    let mut first = true;
    while !rest.is_empty() {
        // A continuation piece starts with the space that folds it.
        let room = if first { max } else { max - 1 };
        if rest.len() <= room {
            if !first {
                out.extend_from_slice(b"\r\n ");
            }
            out.extend_from_slice(rest);
            break;
        }
        let cut = rest[1..room]
            .iter()
            .rposition(|&b| b == b' ' || b == b'\t')
            .map_or(room, |p| p + 1);
        if !first {
            out.extend_from_slice(b"\r\n ");
        }
        let (piece, next) = rest.split_at(cut);
        out.extend_from_slice(piece);
        // A space at the cut is the fold's own: it is not doubled.
        rest = next.strip_prefix(b" ").unwrap_or(next);
        first = false;
    }
}

/// `bytes` with each `Disposition-Notification-To:` header field renamed
/// `X-Disposition-Notification-To:`, so that host2 (Exchange) does not send a read receipt
/// for it again; the body is not touched. `None` when the header has no such field.
pub fn disarm_read_receipts(bytes: &[u8]) -> Option<Vec<u8>> {
    const FIELD: &[u8] = b"disposition-notification-to:";
    let mut out = Vec::with_capacity(bytes.len() + 4);
    let mut changed = false;
    let mut in_header = true;
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if in_header && line.len() == line_end(line).len() {
            in_header = false;
        }
        if in_header && line.len() >= FIELD.len() && line[..FIELD.len()].eq_ignore_ascii_case(FIELD)
        {
            out.extend_from_slice(b"X-");
            changed = true;
        }
        out.extend_from_slice(line);
    }
    changed.then_some(out)
}

/// What a push records for a message it sent without `$MDNSent`.
pub const MDNSENT_LEFT_OFF: &str = "$MDNSent left off";

/// Whether a mapping's note (what was changed) says `$MDNSent` was left off on purpose.
pub fn left_off_mdnsent(note: &str) -> bool {
    note.contains(MDNSENT_LEFT_OFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn longest(b: &[u8]) -> usize {
        b.split(|&c| c == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l).len())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn long_body_lines_are_broken_at_the_limit_and_the_rest_is_untouched() {
        let mut m = b"Subject: x\r\n\r\nshort\r\n".to_vec();
        m.extend(std::iter::repeat_n(b'a', 25));
        m.extend_from_slice(b"\r\nend\r\n");
        let (out, n) = rewrap(&m, 10).unwrap();
        assert_eq!(n, 1);
        assert_eq!(
            out,
            b"Subject: x\r\n\r\nshort\r\naaaaaaaaaa\r\naaaaaaaaaa\r\naaaaa\r\nend\r\n"
        );
        assert!(rewrap(&out, 10).is_none());
        assert!(rewrap(b"Subject: x\r\n\r\nok\r\n", 10).is_none());
    }

    #[test]
    fn long_header_lines_are_folded_at_spaces_and_stay_one_field() {
        let m = b"To: aaaa bbbb cccc dddd eeee ffff\r\n\r\nbody\r\n";
        let (out, n) = rewrap(m, 12).unwrap();
        assert_eq!(n, 1);
        assert!(longest(&out) <= 12, "{}", String::from_utf8_lossy(&out));
        // Unfolded (CRLF before a space removed), the field reads as before.
        let text = String::from_utf8(out).unwrap();
        let unfolded = text.replace("\r\n ", " ");
        assert_eq!(unfolded.as_bytes(), m);
        // A header without spaces is folded hard, and still fits.
        let m = format!("X-Long: {}\r\n\r\nb\r\n", "z".repeat(30));
        let (out, _) = rewrap(m.as_bytes(), 12).unwrap();
        assert!(longest(&out) <= 12, "{}", String::from_utf8_lossy(&out));
    }

    #[test]
    fn the_read_receipt_request_is_renamed_in_the_header_only() {
        let m = b"From: a\r\ndisposition-notification-to: a@b\r\n\r\nDisposition-Notification-To: body\r\n";
        let out = disarm_read_receipts(m).unwrap();
        assert_eq!(
            out,
            b"From: a\r\nX-disposition-notification-to: a@b\r\n\r\nDisposition-Notification-To: body\r\n"
                .to_vec()
        );
        assert!(disarm_read_receipts(b"From: a\r\n\r\nbody\r\n").is_none());
    }
}
