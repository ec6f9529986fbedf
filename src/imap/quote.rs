//! Encoding strings for commands: a quoted string when possible, a literal otherwise.

/// One argument as it goes on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arg {
    /// `"..."` with `"` and `\` escaped; the bytes include the quotes.
    Quoted(Vec<u8>),
    /// Must be sent as a literal (`{N}` / `{N+}`): the string has CR, LF, NUL or 8-bit bytes,
    /// which a quoted string cannot carry.
    Literal(Vec<u8>),
}

/// Encode `s` as an IMAP `astring`/`string`: quoted with escapes, or a literal when a quoted
/// string cannot represent it.
pub fn astring(s: &[u8]) -> Arg {
    if s.iter()
        .any(|&b| b == b'\r' || b == b'\n' || b == 0 || b >= 0x80)
    {
        return Arg::Literal(s.to_vec());
    }
    Arg::Quoted(quoted(s))
}

/// `s` as a quoted string, escaping `"` and `\`. Only valid for 7-bit text without CR/LF/NUL;
/// use [`astring`] when unsure.
pub fn quoted(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 2);
    out.push(b'"');
    for &b in s {
        if b == b'"' || b == b'\\' {
            out.push(b'\\');
        }
        out.push(b);
    }
    out.push(b'"');
    out
}

/// `s` as a quoted string for display in logs and error messages (lossy for 8-bit bytes).
pub fn display(s: &[u8]) -> String {
    String::from_utf8_lossy(&quoted(s)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(astring(b"INBOX"), Arg::Quoted(b"\"INBOX\"".to_vec()));
        assert_eq!(astring(b""), Arg::Quoted(b"\"\"".to_vec()));
        assert_eq!(astring(br#"a"b\c"#), Arg::Quoted(br#""a\"b\\c""#.to_vec()));
        assert_eq!(
            astring(b"Sent Items"),
            Arg::Quoted(b"\"Sent Items\"".to_vec())
        );
        assert_eq!(astring(b"a\r\nb"), Arg::Literal(b"a\r\nb".to_vec()));
        assert_eq!(
            astring("Entwürfe".as_bytes()),
            Arg::Literal("Entwürfe".as_bytes().to_vec())
        );
        assert_eq!(display(br#"x"y"#), r#""x\"y""#);
    }
}
