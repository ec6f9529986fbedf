//! The forms a folder's name takes, and the one place that converts between them.
//!
//! - [`MailboxName`]: a server's name for a mailbox, exactly the bytes LIST sent (normally
//!   modified UTF-7, with the personal-namespace prefix and the server's separator): what goes
//!   back to that server in commands. Never a lossy string: a server's raw 8-bit name must be
//!   selectable again.
//! - a **server path**: the name decoded to UTF-8 (`INBOX.Entwürfe`), still with prefix and
//!   separator ([`MailboxName::decoded`]).
//! - a **store path**: namespace-neutral UTF-8, levels joined by `/` (`Entwürfe`,
//!   `Archive/2024`): how the store, the command line and the reports name a folder
//!   ([`store_path`]); on host2 the same form names where a folder goes ([`server_name`] and
//!   [`MailboxName::encode`] turn it back into a name for commands).

use std::borrow::Cow;
use std::fmt;

pub mod utf7;

/// The personal namespace from NAMESPACE (or a guess from LIST when NAMESPACE is not offered).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// e.g. "" or "INBOX."
    pub prefix: String,
    pub separator: Option<char>,
}

/// A mailbox name exactly as a server sent it (or as we encoded it for that server).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MailboxName(Vec<u8>);

impl MailboxName {
    /// The name from the bytes a server sent. `INBOX` in any case is `INBOX` (RFC 3501: it is
    /// case-insensitive, and servers answer in any case).
    pub fn from_server(bytes: &[u8]) -> MailboxName {
        if bytes.eq_ignore_ascii_case(b"INBOX") {
            return MailboxName(b"INBOX".to_vec());
        }
        MailboxName(bytes.to_vec())
    }

    /// The name for a server path (UTF-8, prefix and separator included): modified UTF-7.
    pub fn encode(server_path: &str) -> MailboxName {
        MailboxName(utf7::encode(server_path).into_bytes())
    }

    /// The bytes to send.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The server path: the name decoded from modified UTF-7; a name that is not valid
    /// modified UTF-7 (raw 8-bit bytes, say) is taken as UTF-8, invalid bytes replaced. For
    /// paths and reports only: commands use [`MailboxName::as_bytes`].
    pub fn decoded(&self) -> String {
        match std::str::from_utf8(&self.0) {
            Ok(s) => utf7::decode(s).unwrap_or_else(|_| s.to_string()),
            Err(_) => String::from_utf8_lossy(&self.0).into_owned(),
        }
    }

    /// The name as text for the index: UTF-8 when it is (nearly always), else `None`.
    pub fn as_utf8(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    pub fn is_inbox(&self) -> bool {
        self.0 == b"INBOX"
    }
}

impl From<&str> for MailboxName {
    /// A name given as text (tests, `--folder-map` targets already encoded).
    fn from(s: &str) -> MailboxName {
        MailboxName::from_server(s.as_bytes())
    }
}

impl From<&MailboxName> for MailboxName {
    fn from(n: &MailboxName) -> MailboxName {
        n.clone()
    }
}

impl PartialEq<str> for MailboxName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<&str> for MailboxName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == other.as_bytes()
    }
}

impl PartialEq<String> for MailboxName {
    fn eq(&self, other: &String) -> bool {
        self.0 == other.as_bytes()
    }
}

impl AsRef<[u8]> for MailboxName {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for MailboxName {
    /// Lossy and with control characters escaped: for people, never for commands.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text: Cow<'_, str> = String::from_utf8_lossy(&self.0);
        f.write_str(&crate::text::printable(&text))
    }
}

/// In JSON (bundles): a string when the name is UTF-8, else the array of its bytes.
impl serde::Serialize for MailboxName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.as_utf8() {
            Some(text) => s.serialize_str(text),
            None => s.collect_seq(self.0.iter()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for MailboxName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<MailboxName, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Form {
            Text(String),
            Bytes(Vec<u8>),
        }
        Ok(match Form::deserialize(d)? {
            Form::Text(t) => MailboxName::from_server(t.as_bytes()),
            Form::Bytes(b) => MailboxName::from_server(&b),
        })
    }
}

impl fmt::Debug for MailboxName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MailboxName({:?})", String::from_utf8_lossy(&self.0))
    }
}

/// The store path of a server mailbox: its server path `name` (already decoded) with the
/// personal-namespace prefix removed and levels joined by `/`. INBOX is always `INBOX`. A `/`
/// inside a level name (a server separating levels with another character) becomes `_`, so that
/// `a/b` (one level) and `a.b` (two levels) on a `.` server do not share the path `a/b`.
pub fn store_path(name: &str, separator: Option<char>, ns: &Namespace) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_string();
    }
    let rest = match name.get(..ns.prefix.len()) {
        Some(head) if !ns.prefix.is_empty() && head.eq_ignore_ascii_case(&ns.prefix) => {
            &name[ns.prefix.len()..]
        }
        _ => name,
    };
    match separator {
        Some(sep) if sep != '/' => rest.replace('/', "_").replace(sep, "/"),
        _ => rest.to_string(),
    }
}

/// The server path of a store path on a server with namespace `ns` (the inverse of
/// [`store_path`]); [`MailboxName::encode`] it before sending it.
pub fn server_name(path: &str, ns: &Namespace) -> String {
    if path.eq_ignore_ascii_case("INBOX") {
        return "INBOX".to_string();
    }
    let joined = match ns.separator {
        Some(sep) if sep != '/' => path.replace('/', &sep.to_string()),
        _ => path.to_string(),
    };
    format!("{}{}", ns.prefix, joined)
}

/// The name for commands of a store path on a server with namespace `ns`.
pub fn mailbox_for(path: &str, ns: &Namespace) -> MailboxName {
    MailboxName::encode(&server_name(path, ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot() -> Namespace {
        Namespace {
            prefix: "INBOX.".into(),
            separator: Some('.'),
        }
    }

    fn ns(prefix: &str, sep: char) -> Namespace {
        Namespace {
            prefix: prefix.into(),
            separator: Some(sep),
        }
    }

    #[test]
    fn inbox_dot_names_lose_their_prefix_and_use_slashes() {
        let n = ns("INBOX.", '.');
        assert_eq!(
            store_path("INBOX.Archive.2024", Some('.'), &n),
            "Archive/2024"
        );
        assert_eq!(store_path("INBOX", Some('.'), &n), "INBOX");
        assert_eq!(store_path("inbox", Some('.'), &n), "INBOX");
        assert_eq!(store_path("INBOX.a/b.c", Some('.'), &n), "a_b/c");
        assert_eq!(server_name("Archive/2024", &n), "INBOX.Archive.2024");
        assert_eq!(server_name("INBOX", &n), "INBOX");
    }

    #[test]
    fn slash_names_are_kept() {
        let n = ns("", '/');
        assert_eq!(store_path("A & B/日本語", Some('/'), &n), "A & B/日本語");
        assert_eq!(server_name("A & B/日本語", &n), "A & B/日本語");
    }

    #[test]
    fn a_raw_8_bit_name_is_kept_byte_for_byte() {
        let raw = b"Entw\xfcrfe";
        let name = MailboxName::from_server(raw);
        assert_eq!(name.as_bytes(), raw);
        assert_eq!(name.decoded(), "Entw\u{fffd}rfe");
        assert_eq!(name.as_utf8(), None);
        assert!(MailboxName::from_server(b"inbox").is_inbox());
    }

    #[test]
    fn paths_and_names_convert_both_ways() {
        let name = mailbox_for("Archive/Entwürfe", &dot());
        assert_eq!(name.as_bytes(), b"INBOX.Archive.Entw&APw-rfe");
        assert_eq!(
            store_path(&name.decoded(), Some('.'), &dot()),
            "Archive/Entwürfe"
        );
        assert_eq!(store_path("INBOX.a/b", Some('.'), &dot()), "a_b");
        assert_eq!(server_name("INBOX", &dot()), "INBOX");
    }
}
