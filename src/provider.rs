//! Provider profiles: what Gmail and Microsoft 365 do differently from a plain IMAP server,
//! as rules the engines follow. A profile is recognised from the capabilities and the
//! greeting, or forced with `--provider1/2`. Each rule and its source is in docs/providers.md.

use std::fmt;
use std::str::FromStr;

/// Which rules a server gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Provider {
    /// Plain IMAP: every folder holds its own messages.
    #[default]
    Generic,
    /// Gmail / Google Workspace: folders other than All Mail, Spam and Trash are label views
    /// (`X-GM-EXT-1`).
    Gmail,
    /// Microsoft 365 / Exchange Online.
    M365,
}

impl Provider {
    /// The profile a server's capabilities (upper-case) and greeting text point to.
    pub fn detect<'a>(mut caps: impl Iterator<Item = &'a str>, greeting: &str) -> Provider {
        if caps.any(|c| c.eq_ignore_ascii_case("X-GM-EXT-1")) {
            return Provider::Gmail;
        }
        let g = greeting.to_ascii_lowercase();
        if g.contains("microsoft exchange") || g.contains("outlook.office365.com") {
            return Provider::M365;
        }
        Provider::Generic
    }

    /// The name the options take and messages use.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Generic => "generic",
            Provider::Gmail => "gmail",
            Provider::M365 => "m365",
        }
    }

    /// Bytes a message may have at most on this server when it does not say (APPENDLIMIT) and
    /// `--max-message-size2` does not either: Microsoft 365's default mailbox limit (35 MB; a
    /// tenant can raise a mailbox's to 150 MB, imapsync FAQ.Office365).
    pub fn default_message_limit(self) -> Option<u64> {
        match self {
            Provider::M365 => Some(35_000_000),
            _ => None,
        }
    }

    /// Message bytes a run may download from an account in 24 hours when the user gave no
    /// `--max-bytes-per-day1`: on Gmail 2 000 MB, 80 % of Google's 2 500 MB ("Gmail bandwidth
    /// limits"). The limit counts the user's phone and desktop clients too, and passing it
    /// suspends IMAP for the account for up to a day, so a fifth is left to them (Microsoft's
    /// own Gmail migration stops at 2.0 GB a day).
    pub fn daily_download_limit(self) -> Option<u64> {
        (self == Provider::Gmail).then_some(2_000_000_000)
    }

    /// Message bytes a run may upload to an account in 24 hours (`--max-bytes-per-day2`
    /// overrides): on Gmail 400 MB, 80 % of Google's 500 MB, for the same reasons.
    pub fn daily_upload_limit(self) -> Option<u64> {
        (self == Provider::Gmail).then_some(400_000_000)
    }

    /// Errors (tagged NO and BAD) a session may have before the server closes it: Exchange
    /// closes a session at its tenth (imapsync FAQ.Office365, "BAD Command Argument Error 11").
    pub fn errors_per_session(self) -> Option<u32> {
        (self == Provider::M365).then_some(10)
    }

    /// The longest line (without its CRLF) this server takes in a message.
    pub fn longest_line(self) -> Option<usize> {
        match self {
            Provider::M365 => Some(10_500),
            _ => None,
        }
    }

    /// Whether this server keeps `flag` on a message. Gmail acts on `\Deleted` instead (it
    /// deletes the message, or moves it to Trash), so push never gives it there and check
    /// never expects it back (both through [`crate::compare::storable_flags`]).
    pub fn keeps_flag(self, flag: &str) -> bool {
        !(self == Provider::Gmail && flag.eq_ignore_ascii_case("\\Deleted"))
    }

    /// Whether a `\Flagged` given with APPEND is lost (it is set with STORE afterwards).
    pub fn loses_flagged_on_append(self) -> bool {
        self == Provider::M365
    }

    /// Folder names the server reserves (compared without case).
    pub fn reserved_names(self) -> &'static [&'static str] {
        match self {
            Provider::M365 => &["Files"],
            _ => &[],
        }
    }

    /// Whether a folder of this server is left out of a pull unless asked for by name:
    /// Microsoft 365's `Files`, a view of the mailbox's attachments without senders, not mail
    /// (imapsync's `--office1` excludes `^Files$`, FAQ.Office365).
    pub fn leaves_out_as_host1(self, path: &str) -> bool {
        self == Provider::M365 && path.eq_ignore_ascii_case("Files")
    }

    /// Whether RFC822.SIZE is the size of the bytes FETCH serves. Microsoft 365 may give the
    /// size it stores instead ([MS-STANOIMAP] 2.2.25), so there a body of another length is
    /// expected, not a reason to fetch it again.
    pub fn sizes_are_exact(self) -> bool {
        self != Provider::M365
    }

    /// Whether two folder names that differ only in case are one folder.
    pub fn names_ignore_case(self) -> bool {
        self == Provider::M365
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Provider {
    type Err = String;

    fn from_str(s: &str) -> Result<Provider, String> {
        match s.to_ascii_lowercase().as_str() {
            "generic" => Ok(Provider::Generic),
            "gmail" => Ok(Provider::Gmail),
            "m365" | "office365" | "microsoft365" => Ok(Provider::M365),
            _ => Err(format!("{s:?}: give gmail, m365 or generic")),
        }
    }
}

/// The message counts Gmail's "Folder size limits" setting (Settings → Forwarding and
/// POP/IMAP) can cap an IMAP folder at: a folder showing exactly one of them may hide more
/// (imapsync FAQ.Gmail, "I can't sync more than 1000 messages in each Gmail folder").
pub const GMAIL_FOLDER_LIMITS: &[u32] = &[1_000, 2_000, 5_000, 10_000];

/// What keeps a Gmail folder with `count` messages from showing all of them, when its count
/// sits at one of [`GMAIL_FOLDER_LIMITS`].
pub fn gmail_folder_limit(count: u32) -> Option<String> {
    GMAIL_FOLDER_LIMITS.contains(&count).then(|| {
        format!(
            "Gmail shows exactly {count} messages here, one of its folder size limits: if \
             \"Folder size limits\" (Gmail settings → Forwarding and POP/IMAP) is set, older \
             messages are out of reach over IMAP; choose \"Do not limit the number of messages \
             in an IMAP folder\" and pull again"
        )
    })
}

/// Why a Gmail account's mail is partly out of reach when its LIST shows no `\All` folder.
pub const GMAIL_NO_ALL_MAIL: &str = "Gmail lists no All Mail (\\All) over IMAP: its \
     \"Show in IMAP\" is unticked (Gmail settings → Labels), so mail without a label (archived \
     mail) is out of reach: tick it and pull again";

/// Gmail's special folders that hold messages (every other folder is a view of All Mail):
/// their special-use attributes (RFC 6154).
pub const GMAIL_BODY_ROLES: &[&str] = &["\\All", "\\Junk", "\\Trash"];

/// Whether a folder with this role holds Gmail messages rather than showing a label.
pub fn gmail_holds_bodies(role: Option<&str>) -> bool {
    role.is_some_and(|r| GMAIL_BODY_ROLES.iter().any(|b| b.eq_ignore_ascii_case(r)))
}

/// The X-GM-LABELS value that puts a message into the Gmail folder with `role` and `raw_name`
/// (its name as the server sends it): system labels for the special views, the name otherwise.
/// `None` for the folders that are not labels (All Mail, Spam, Trash).
pub fn gmail_label(role: Option<&str>, raw_name: &[u8]) -> Option<Vec<u8>> {
    if gmail_holds_bodies(role) {
        return None;
    }
    if raw_name.eq_ignore_ascii_case(b"INBOX") {
        return Some(b"\\Inbox".to_vec());
    }
    let system = match role.map(str::to_ascii_lowercase).as_deref() {
        Some("\\sent") => Some("\\Sent"),
        Some("\\drafts") => Some("\\Draft"),
        Some("\\important") => Some("\\Important"),
        Some("\\flagged") => Some("\\Starred"),
        _ => None,
    };
    Some(system.map_or_else(|| raw_name.to_vec(), |s| s.as_bytes().to_vec()))
}

/// A Gmail label name made valid: Gmail refuses leading, trailing and repeated spaces and `^`
/// in a level name. `None` when `name` is valid as it is.
pub fn gmail_valid_level(name: &str) -> Option<String> {
    let fixed: String = name
        .replace('^', "_")
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let fixed = if fixed.is_empty() {
        "_".to_string()
    } else {
        fixed
    };
    (fixed != name).then_some(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmail_is_recognised_by_its_extension_and_microsoft_by_its_greeting() {
        let gmail = ["IMAP4REV1", "X-GM-EXT-1", "UIDPLUS"];
        assert_eq!(
            Provider::detect(gmail.iter().copied(), "Gimap ready"),
            Provider::Gmail
        );
        let ms = "The Microsoft Exchange IMAP4 service is ready. [TQBOADIA]";
        assert_eq!(
            Provider::detect(["IMAP4REV1"].iter().copied(), ms),
            Provider::M365
        );
        assert_eq!(
            Provider::detect(["IMAP4REV1"].iter().copied(), "Dovecot ready."),
            Provider::Generic
        );
    }

    #[test]
    fn gmail_labels_of_the_special_views_are_system_labels() {
        assert_eq!(gmail_label(Some("\\All"), b"[Gmail]/All Mail"), None);
        assert_eq!(gmail_label(None, b"INBOX"), Some(b"\\Inbox".to_vec()));
        assert_eq!(
            gmail_label(Some("\\Sent"), b"[Gmail]/Sent Mail"),
            Some(b"\\Sent".to_vec())
        );
        assert_eq!(
            gmail_label(Some("\\Flagged"), b"[Gmail]/Starred"),
            Some(b"\\Starred".to_vec())
        );
        assert_eq!(
            gmail_label(None, b"Work/Projects"),
            Some(b"Work/Projects".to_vec())
        );
    }

    #[test]
    fn gmail_label_levels_lose_extra_spaces_and_carets() {
        assert_eq!(gmail_valid_level("Work"), None);
        assert_eq!(gmail_valid_level(" Old  mail "), Some("Old mail".into()));
        assert_eq!(gmail_valid_level("a^b"), Some("a_b".into()));
        assert_eq!(gmail_valid_level("  "), Some("_".into()));
    }
}
