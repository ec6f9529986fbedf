//! Modified UTF-7 for mailbox names (RFC 3501 §5.1.3): printable ASCII stands for itself
//! (`&` is written `&-`), everything else is UTF-16 in a base64 variant (`,` instead of `/`,
//! no padding) between `&` and `-`.

use anyhow::{bail, Result};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

fn b64_value(c: u8) -> Option<u32> {
    match c {
        b'A'..=b'Z' => Some(u32::from(c - b'A')),
        b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
        b'+' => Some(62),
        b',' => Some(63),
        _ => None,
    }
}

/// Encode a UTF-8 mailbox name to modified UTF-7. The output is printable ASCII only.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut pending: Vec<u16> = Vec::new();
    for ch in s.chars() {
        if (' '..='~').contains(&ch) {
            flush(&mut out, &mut pending);
            if ch == '&' {
                out.push_str("&-");
            } else {
                out.push(ch);
            }
        } else {
            let mut buf = [0u16; 2];
            pending.extend_from_slice(ch.encode_utf16(&mut buf));
        }
    }
    flush(&mut out, &mut pending);
    out
}

/// Write the pending UTF-16 units as one `&...-` run.
fn flush(out: &mut String, pending: &mut Vec<u16>) {
    if pending.is_empty() {
        return;
    }
    out.push('&');
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for unit in pending.drain(..) {
        acc = (acc << 16) | u32::from(unit);
        bits += 16;
        while bits >= 6 {
            bits -= 6;
            out.push(B64[((acc >> bits) & 0x3f) as usize] as char);
        }
        acc &= (1 << bits) - 1;
    }
    if bits > 0 {
        out.push(B64[((acc << (6 - bits)) & 0x3f) as usize] as char);
    }
    out.push('-');
}

/// Decode a modified UTF-7 mailbox name. Errors (never panics) on malformed input: bytes
/// outside printable ASCII, an unterminated `&` run, bad base64, leftover bits, or invalid
/// UTF-16.
pub fn decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if !(0x20..=0x7e).contains(&c) {
            bail!("invalid modified UTF-7 {s:?}: byte 0x{c:02x} is not printable ASCII");
        }
        if c != b'&' {
            out.push(c as char);
            i += 1;
            continue;
        }
        let end = match bytes[i + 1..].iter().position(|&b| b == b'-') {
            Some(p) => i + 1 + p,
            None => bail!("invalid modified UTF-7 {s:?}: unterminated '&'"),
        };
        let run = &bytes[i + 1..end];
        if run.is_empty() {
            out.push('&');
        } else {
            decode_run(s, run, &mut out)?;
        }
        i = end + 1;
    }
    Ok(out)
}

fn decode_run(s: &str, run: &[u8], out: &mut String) -> Result<()> {
    let mut units: Vec<u16> = Vec::with_capacity(run.len() * 6 / 16);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in run {
        let Some(v) = b64_value(c) else {
            bail!(
                "invalid modified UTF-7 {s:?}: {:?} in base64 run",
                c as char
            );
        };
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 16 {
            bits -= 16;
            units.push(((acc >> bits) & 0xffff) as u16);
            acc &= (1 << bits) - 1;
        }
    }
    // Padding must be fewer than 6 bits and all zero.
    if bits >= 6 || acc != 0 {
        bail!("invalid modified UTF-7 {s:?}: bad padding in base64 run");
    }
    if units.is_empty() {
        bail!("invalid modified UTF-7 {s:?}: empty base64 run");
    }
    for r in char::decode_utf16(units.iter().copied()) {
        match r {
            Ok(ch) => out.push(ch),
            Err(_) => bail!("invalid modified UTF-7 {s:?}: invalid UTF-16"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EXAMPLES: &[(&str, &str)] = &[
        ("Entwürfe", "Entw&APw-rfe"),
        ("A & B", "A &- B"),
        ("日本語", "&ZeVnLIqe-"),
        ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
        ("INBOX", "INBOX"),
        ("", ""),
        ("&", "&-"),
        ("😀", "&2D3eAA-"),
    ];

    #[test]
    fn examples() {
        for (plain, enc) in EXAMPLES {
            assert_eq!(encode(plain), *enc, "encode {plain}");
            assert_eq!(decode(enc).unwrap(), *plain, "decode {enc}");
        }
    }

    #[test]
    fn malformed() {
        for bad in [
            "&",
            "abc&ZeV",
            "&ZeVnLIq-",
            "&*-",
            "caf\u{e9}",
            "tab\there",
            "&2D0-",
            "&AA-",
        ] {
            assert!(decode(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    proptest! {
        #[test]
        fn round_trip(s in any::<String>()) {
            let e = encode(&s);
            prop_assert!(e.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            prop_assert_eq!(decode(&e).unwrap(), s);
        }

        #[test]
        fn decode_never_panics(s in any::<String>()) {
            let _ = decode(&s);
        }
    }
}
