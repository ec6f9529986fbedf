//! SASL payloads for AUTHENTICATE PLAIN and XOAUTH2, and the little base64 they need.
//!
//! Everything here handles secrets: none of it may reach a log line or an error message.

use std::path::Path;

use anyhow::{bail, Context, Result};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub(crate) fn base64(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 0x3f) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// SASL PLAIN initial response (RFC 4616): base64(authzid NUL authcid NUL password); the
/// authorization identity is empty unless an administrator (`authcid`) acts as `authzid`.
pub(crate) fn plain(authzid: &str, user: &str, password: &str) -> String {
    let mut v = Vec::with_capacity(authzid.len() + user.len() + password.len() + 2);
    v.extend_from_slice(authzid.as_bytes());
    v.push(0);
    v.extend_from_slice(user.as_bytes());
    v.push(0);
    v.extend_from_slice(password.as_bytes());
    base64(&v)
}

/// XOAUTH2 initial response: base64("user=" u ^A "auth=Bearer " token ^A ^A). A user name
/// with a control character or a token [`super::oauth2::check_token`] refuses is an error:
/// either would add fields to the string.
pub(crate) fn xoauth2(user: &str, token: &str) -> Result<String> {
    if user.chars().any(char::is_control) {
        bail!("the user name holds a control character; not sent in an XOAUTH2 string");
    }
    if let Err(why) = super::oauth2::check_token("OAuth2 access token", token) {
        bail!("{why}");
    }
    Ok(base64(
        format!("user={user}\x01auth=Bearer {token}\x01\x01").as_bytes(),
    ))
}

/// Read the OAuth2 access token from `path` (trimmed). Re-read on every connect because
/// another process refreshes it.
pub(crate) fn read_token(path: &Path) -> Result<String> {
    let raw = crate::secret::read(path)
        .with_context(|| format!("reading OAuth2 token file {}", path.display()))?;
    let token = raw.trim().to_string();
    if token.is_empty() {
        bail!("OAuth2 token file {} is empty", path.display());
    }
    if let Err(why) = super::oauth2::check_token("access token", &token) {
        bail!("OAuth2 token file {}: {why}", path.display());
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }

    #[test]
    fn sasl() {
        assert_eq!(
            plain("", "tim", "tanstaaftanstaaf"),
            "AHRpbQB0YW5zdGFhZnRhbnN0YWFm"
        );
        // RFC 4616's example with an authorization identity: "Ursel" acts as "Kurt".
        assert_eq!(
            plain("Ursel", "Kurt", "xipj3plmq"),
            base64(b"Ursel\0Kurt\0xipj3plmq")
        );
        // Example from Google's XOAUTH2 documentation.
        assert_eq!(
            xoauth2("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
                .unwrap(),
            "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
        );
        // Nothing that would add a field to the string is sent.
        assert!(xoauth2("u", "tok1\x01auth=Bearer other").is_err());
        assert!(xoauth2("u\x01auth=Bearer x", "tok1").is_err());
    }
}
