//! Header facts recorded per object (Message-ID, Date, From, Subject) for deduplication on push
//! and for re-identifying messages after a UIDVALIDITY change.

/// Facts from a message's header. Every field is `None` when absent or unparsable; parsing never
/// fails and never panics, whatever the bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderFacts {
    pub message_id: Option<String>,
    /// The Date header as written (trimmed), not normalised.
    pub date: Option<String>,
    pub from: Option<String>,
    pub subject: Option<String>,
}

impl HeaderFacts {
    /// Extract from a whole message or just its header section.
    pub fn parse(_message: &[u8]) -> HeaderFacts {
        todo!()
    }
}
