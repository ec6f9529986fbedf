//! Push state in the index (schema 2): the destinations a store was pushed to, which store
//! message went to which host2 mailbox and UID (`pushed`), and the APPEND intents written before
//! each batch is sent (`push_intents`), so an interrupted push can be reconciled without
//! duplicates. Specified in `docs/store-format.md`.

use std::collections::HashMap;

use anyhow::{Context, Result};
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::facts::HeaderFacts;
use super::index::Index;
use super::objects::Hash;
use crate::clock::now;
use crate::names::MailboxName;

/// Where one store message is on host2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub folder_id: i64,
    pub uidvalidity: u32,
    pub uid: u32,
    /// host2 mailbox name as sent in commands (modified UTF-7, with prefix and separator).
    pub mailbox: MailboxName,
    pub dest_uidvalidity: u32,
    pub dest_uid: u32,
    /// The flags host2 was last given (or, for `found`, had), without `\Recent`.
    pub flags: Vec<String>,
    /// The store row's change number those flags correspond to; 0 when unknown (found).
    pub change: i64,
    /// True when the message was already on host2 (recognised), false when we appended it.
    pub found: bool,
    /// What host2 changed in the bytes it stores (same text, other line endings), when it did.
    pub altered: Option<String>,
    /// Gmail holds this store message as another copy: `dest_uid` is the message Gmail kept
    /// for its Message-ID (another store message's, with other bytes), shared, never appended
    /// again (schema 7).
    pub held: bool,
}

impl Mapping {
    /// The store message key `(folder_id, uidvalidity, uid)`.
    pub fn key(&self) -> (i64, u32, u32) {
        (self.folder_id, self.uidvalidity, self.uid)
    }
}

/// An APPEND about to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIntent {
    pub folder_id: i64,
    pub uidvalidity: u32,
    pub uid: u32,
    pub hash: Hash,
    pub size: u64,
    pub mailbox: MailboxName,
    pub dest_uidvalidity: u32,
    /// A lower bound of the UID host2 will give the message (its UIDNEXT before the batch).
    pub dest_uidnext: u32,
}

/// A recorded intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intent {
    pub id: i64,
    pub intent: NewIntent,
    pub created_at: i64,
}

/// What a host2 mailbox looked like right after a complete push into it (schema 4,
/// `push_mailboxes`): while host2 still reports the same UIDVALIDITY, UIDNEXT, MESSAGES (and
/// HIGHESTMODSEQ), and no store row of these folders changed after `store_change`, a push has
/// nothing to do there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxFacts {
    /// The store folder ids that go to the mailbox, ascending, space-separated.
    pub folders: String,
    /// The store's change number when the push read the store.
    pub store_change: i64,
    /// Live store messages of those folders then (all on host2).
    pub store_messages: u64,
    /// The push ran with `--delete2` (host2 held nothing else).
    pub delete2: bool,
    pub dest_uidvalidity: u32,
    pub dest_uidnext: u32,
    pub dest_messages: u32,
    pub dest_highestmodseq: Option<u64>,
}

impl Index {
    /// The facts recorded after the last complete push into `mailbox`, if any.
    pub fn mailbox_facts(
        &self,
        destination: i64,
        mailbox: &MailboxName,
    ) -> Result<Option<MailboxFacts>> {
        self.conn
            .query_row(
                "SELECT folders, store_change, store_messages, delete2, dest_uidvalidity,
                        dest_uidnext, dest_messages, dest_highestmodseq
                 FROM push_mailboxes WHERE destination_id = ?1 AND mailbox = ?2",
                params![destination, mailbox],
                |r| {
                    Ok(MailboxFacts {
                        folders: r.get(0)?,
                        store_change: r.get(1)?,
                        store_messages: r.get(2)?,
                        delete2: r.get::<_, i64>(3)? != 0,
                        dest_uidvalidity: r.get(4)?,
                        dest_uidnext: r.get(5)?,
                        dest_messages: r.get(6)?,
                        dest_highestmodseq: r.get::<_, Option<i64>>(7)?.map(|v| v as u64),
                    })
                },
            )
            .optional()
            .with_context(|| self.push_ctx())
    }

    /// Record (replace) the facts of `mailbox` after a complete push.
    pub fn set_mailbox_facts(
        &mut self,
        destination: i64,
        mailbox: &MailboxName,
        facts: &MailboxFacts,
    ) -> Result<()> {
        self.conn
            .execute(
                "INSERT OR REPLACE INTO push_mailboxes (destination_id, mailbox, folders,
                    store_change, store_messages, delete2, dest_uidvalidity, dest_uidnext,
                    dest_messages, dest_highestmodseq, pushed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    destination,
                    mailbox,
                    facts.folders,
                    facts.store_change,
                    facts.store_messages,
                    facts.delete2 as i64,
                    facts.dest_uidvalidity,
                    facts.dest_uidnext,
                    facts.dest_messages,
                    facts.dest_highestmodseq.map(|v| v as i64),
                    now()
                ],
            )
            .with_context(|| self.push_ctx())?;
        Ok(())
    }

    /// Forget the facts of `mailbox` (a push into it is starting: until it completes, the
    /// mailbox is surveyed in full).
    pub fn forget_mailbox_facts(&mut self, destination: i64, mailbox: &MailboxName) -> Result<()> {
        self.conn
            .execute(
                "DELETE FROM push_mailboxes WHERE destination_id = ?1 AND mailbox = ?2",
                params![destination, mailbox],
            )
            .with_context(|| self.push_ctx())?;
        Ok(())
    }

    /// True when a message row of the folder (live or expunged) took a change number after
    /// `n`.
    pub fn folder_messages_changed_since(&self, folder_id: i64, n: i64) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE change > ?2 AND folder_id = ?1)",
                params![folder_id, n],
                |r| r.get(0),
            )
            .with_context(|| self.push_ctx())
    }

    /// The id of the destination (host, user), creating its row when new.
    pub fn destination_id(&mut self, host: &str, user: &str) -> Result<i64> {
        if let Some(id) = self.find_destination(host, user)? {
            return Ok(id);
        }
        self.conn
            .execute(
                "INSERT INTO destinations (host, user_name, created_at) VALUES (?1, ?2, ?3)",
                params![host.to_ascii_lowercase(), user, now()],
            )
            .with_context(|| self.push_ctx())?;
        Ok(self.conn.last_insert_rowid())
    }

    /// The id of the destination (host, user) if something was ever pushed there.
    pub fn find_destination(&self, host: &str, user: &str) -> Result<Option<i64>> {
        self.conn
            .query_row(
                "SELECT id FROM destinations WHERE host = ?1 AND user_name = ?2",
                params![host.to_ascii_lowercase(), user],
                |r| r.get(0),
            )
            .optional()
            .with_context(|| self.push_ctx())
    }

    /// Every mapping of `destination` into host2 mailbox `mailbox`, by host2 UID.
    pub fn mappings_to(&self, destination: i64, mailbox: &MailboxName) -> Result<Vec<Mapping>> {
        let run = || -> rusqlite::Result<Vec<Mapping>> {
            let mut st = self.conn.prepare_cached(
                "SELECT folder_id, uidvalidity, uid, mailbox, dest_uidvalidity, dest_uid, flags,
                        change, how, altered, held
                 FROM pushed WHERE destination_id = ?1 AND mailbox = ?2 ORDER BY dest_uid",
            )?;
            let rows = st.query_map(params![destination, mailbox], |r| {
                Ok(Mapping {
                    folder_id: r.get(0)?,
                    uidvalidity: r.get(1)?,
                    uid: r.get(2)?,
                    mailbox: r.get(3)?,
                    dest_uidvalidity: r.get(4)?,
                    dest_uid: r.get(5)?,
                    flags: split_flags(&r.get::<_, String>(6)?),
                    change: r.get(7)?,
                    found: r.get::<_, String>(8)? == "found",
                    altered: r.get(9)?,
                    held: r.get::<_, i64>(10)? != 0,
                })
            })?;
            rows.collect()
        };
        run().with_context(|| self.push_ctx())
    }

    /// Where on `destination` a message with the bytes `hash` already is, in a mailbox other
    /// than `except`: (mailbox, UIDVALIDITY, UID) of one such copy (Gmail: the message a label
    /// is added to instead of a second APPEND).
    pub fn copy_elsewhere(
        &self,
        destination: i64,
        hash: &Hash,
        except: &MailboxName,
    ) -> Result<Option<(MailboxName, u32, u32)>> {
        self.conn
            .prepare_cached(
                "SELECT p.mailbox, p.dest_uidvalidity, p.dest_uid FROM pushed p
                 JOIN messages m ON m.folder_id = p.folder_id AND m.uidvalidity = p.uidvalidity
                                AND m.uid = p.uid
                 WHERE p.destination_id = ?1 AND m.hash = ?2 AND p.mailbox != ?3
                 ORDER BY p.pushed_at LIMIT 1",
            )
            .and_then(|mut st| {
                st.query_row(params![destination, hash, except], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            })
            .with_context(|| self.push_ctx())
    }

    /// Record intents in one committed transaction (durable before the APPENDs go out).
    /// Returns their ids, in order.
    pub fn add_intents(&mut self, destination: i64, intents: &[NewIntent]) -> Result<Vec<i64>> {
        let ctx = self.push_ctx();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| ctx.clone())?;
        let mut ids = Vec::with_capacity(intents.len());
        {
            let mut st = tx
                .prepare_cached(
                    "INSERT INTO push_intents (destination_id, folder_id, uidvalidity, uid, hash,
                        size, mailbox, dest_uidvalidity, dest_uidnext, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )
                .with_context(|| ctx.clone())?;
            let t = now();
            for i in intents {
                st.execute(params![
                    destination,
                    i.folder_id,
                    i.uidvalidity,
                    i.uid,
                    i.hash,
                    i.size,
                    i.mailbox,
                    i.dest_uidvalidity,
                    i.dest_uidnext,
                    t
                ])
                .with_context(|| ctx.clone())?;
                ids.push(tx.last_insert_rowid());
            }
        }
        tx.commit().with_context(|| ctx.clone())?;
        Ok(ids)
    }

    /// Pending intents of `destination` for host2 mailbox `mailbox`, oldest first.
    pub fn intents_for(&self, destination: i64, mailbox: &MailboxName) -> Result<Vec<Intent>> {
        let run = || -> rusqlite::Result<Vec<Intent>> {
            let mut st = self.conn.prepare_cached(
                "SELECT id, folder_id, uidvalidity, uid, hash, size, mailbox, dest_uidvalidity,
                        dest_uidnext, created_at
                 FROM push_intents WHERE destination_id = ?1 AND mailbox = ?2 ORDER BY id",
            )?;
            let rows = st.query_map(params![destination, mailbox], |r| {
                Ok(Intent {
                    id: r.get(0)?,
                    intent: NewIntent {
                        folder_id: r.get(1)?,
                        uidvalidity: r.get(2)?,
                        uid: r.get(3)?,
                        hash: r.get(4)?,
                        size: r.get(5)?,
                        mailbox: r.get(6)?,
                        dest_uidvalidity: r.get(7)?,
                        dest_uidnext: r.get(8)?,
                    },
                    created_at: r.get(9)?,
                })
            })?;
            rows.collect()
        };
        run().with_context(|| self.push_ctx())
    }

    /// (created_at, size) of every pending intent of `destination` created after `since`, in
    /// the order they were made: what may still be on its way there.
    pub fn pending_sizes(&self, destination: i64, since: i64) -> Result<Vec<(i64, u64)>> {
        let run = || -> rusqlite::Result<Vec<(i64, u64)>> {
            let mut st = self.conn.prepare_cached(
                "SELECT created_at, size FROM push_intents
                 WHERE destination_id = ?1 AND created_at > ?2 ORDER BY id",
            )?;
            let rows = st.query_map(params![destination, since], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?.max(0) as u64))
            })?;
            rows.collect()
        };
        run().with_context(|| self.push_ctx())
    }

    /// Number of pending intents of all destinations (for tests and status).
    pub fn pending_intents(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT count(*) FROM push_intents", [], |r| r.get(0))
            .with_context(|| self.push_ctx())
    }

    /// In one transaction: delete the intents `resolved`, record (insert or replace) `mappings`
    /// and delete the mappings of the store messages in `forget`.
    pub fn record_push(
        &mut self,
        destination: i64,
        resolved: &[i64],
        mappings: &[Mapping],
        forget: &[(i64, u32, u32)],
    ) -> Result<()> {
        let ctx = self.push_ctx();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .with_context(|| ctx.clone())?;
        {
            let mut del = tx
                .prepare_cached("DELETE FROM push_intents WHERE id = ?1 AND destination_id = ?2")
                .with_context(|| ctx.clone())?;
            for id in resolved {
                del.execute(params![id, destination])
                    .with_context(|| ctx.clone())?;
            }
            let mut fgt = tx
                .prepare_cached(
                    "DELETE FROM pushed WHERE destination_id = ?1 AND folder_id = ?2
                     AND uidvalidity = ?3 AND uid = ?4",
                )
                .with_context(|| ctx.clone())?;
            for (f, uv, uid) in forget {
                fgt.execute(params![destination, f, uv, uid])
                    .with_context(|| ctx.clone())?;
            }
            let mut ins = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO pushed (destination_id, folder_id, uidvalidity, uid,
                        mailbox, dest_uidvalidity, dest_uid, flags, change, how, pushed_at,
                        altered, held)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                )
                .with_context(|| ctx.clone())?;
            let t = now();
            for m in mappings {
                ins.execute(params![
                    destination,
                    m.folder_id,
                    m.uidvalidity,
                    m.uid,
                    m.mailbox,
                    m.dest_uidvalidity,
                    m.dest_uid,
                    m.flags.join(" "),
                    m.change,
                    if m.found { "found" } else { "appended" },
                    t,
                    m.altered,
                    m.held
                ])
                .with_context(|| ctx.clone())?;
            }
        }
        tx.commit().with_context(|| ctx.clone())
    }

    /// Size and header facts of the objects of the folder's live messages under `uidvalidity`,
    /// by UID (the identity used to recognise messages already on host2).
    pub fn live_facts(
        &self,
        folder_id: i64,
        uidvalidity: u32,
    ) -> Result<HashMap<u32, (u64, HeaderFacts)>> {
        let run = || -> rusqlite::Result<HashMap<u32, (u64, HeaderFacts)>> {
            let mut st = self.conn.prepare_cached(
                "SELECT m.uid, o.size, o.message_id, o.date, o.from_addr, o.subject
                 FROM messages m JOIN objects o ON o.hash = m.hash
                 WHERE m.folder_id = ?1 AND m.uidvalidity = ?2 AND m.expunged_at IS NULL",
            )?;
            let rows = st.query_map(params![folder_id, uidvalidity], |r| {
                Ok((
                    r.get::<_, u32>(0)?,
                    (
                        r.get::<_, u64>(1)?,
                        HeaderFacts {
                            message_id: r.get(2)?,
                            date: r.get(3)?,
                            from: r.get(4)?,
                            subject: r.get(5)?,
                        },
                    ),
                ))
            })?;
            rows.collect()
        };
        run().with_context(|| self.push_ctx())
    }

    fn push_ctx(&self) -> String {
        format!("index {} (push state)", self.path.display())
    }
}

fn split_flags(s: &str) -> Vec<String> {
    s.split_ascii_whitespace().map(String::from).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewMessage;

    #[test]
    fn intents_and_mappings_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut idx = Index::open(&dir.path().join("index.sqlite")).unwrap();
        let f = idx
            .upsert_folder("INBOX", "INBOX", Some('/'), None, true)
            .unwrap();
        let h = Hash::of(b"x");
        let mut b = idx.batch().unwrap();
        b.add_object(&h, 1, 10, &HeaderFacts::default()).unwrap();
        b.add_message(
            f,
            &NewMessage {
                uidvalidity: 7,
                uid: 3,
                hash: h,
                size: 1,
                flags: vec!["\\Seen".into()],
                internaldate: "01-Jan-2025 00:00:00 +0000".parse().unwrap(),
                gmail: None,
            },
        )
        .unwrap();
        b.commit().unwrap();
        let d = idx.destination_id("Host2", "bob").unwrap();
        assert_eq!(idx.destination_id("host2", "bob").unwrap(), d);
        assert_eq!(idx.find_destination("host2", "eve").unwrap(), None);
        let intent = NewIntent {
            folder_id: f,
            uidvalidity: 7,
            uid: 3,
            hash: h,
            size: 1,
            mailbox: "INBOX".into(),
            dest_uidvalidity: 99,
            dest_uidnext: 5,
        };
        let ids = idx.add_intents(d, std::slice::from_ref(&intent)).unwrap();
        let got = idx.intents_for(d, &"INBOX".into()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].intent, intent);
        let m = Mapping {
            folder_id: f,
            uidvalidity: 7,
            uid: 3,
            mailbox: "INBOX".into(),
            dest_uidvalidity: 99,
            dest_uid: 5,
            flags: vec!["\\Seen".into()],
            change: 2,
            found: false,
            altered: Some("line endings turned into bare LF".into()),
            held: true,
        };
        idx.record_push(d, &ids, std::slice::from_ref(&m), &[])
            .unwrap();
        assert_eq!(idx.pending_intents().unwrap(), 0);
        assert_eq!(
            idx.mappings_to(d, &"INBOX".into()).unwrap(),
            vec![m.clone()]
        );
        assert_eq!(idx.live_facts(f, 7).unwrap()[&3].0, 1);
        idx.record_push(d, &[], &[], &[m.key()]).unwrap();
        assert!(idx.mappings_to(d, &"INBOX".into()).unwrap().is_empty());
    }
}
