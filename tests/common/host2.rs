//! A scripted host2 that keeps what is appended to its INBOX, built on the scripted server of
//! [`super::hostile`], and that can misbehave the ways a test names ([`Quirks`]): store other
//! bytes than it was given, report another size, answer APPEND with a wrong APPENDUID, leave
//! out the item a FETCH asked for.

use std::io;
use std::sync::{Arc, Mutex};

use super::hostile::{fetch_response, in_set, inbox, Cmd, Hostile, Msg, Session};

/// The bytes a server keeps for the bytes it was given.
pub type Rewrite = fn(&[u8]) -> Vec<u8>;

/// What the scripted host2 does differently from an honest server.
#[derive(Clone, Copy, Default)]
pub struct Quirks {
    /// The bytes it keeps for the bytes it was given (`None`: as given).
    pub stores: Option<Rewrite>,
    /// RFC822.SIZE reports the size of what it was given, not of what it keeps.
    pub size_as_given: bool,
    /// The UID its APPENDUID states for the UID it really gave (`None`: the real one).
    pub appenduid: Option<fn(u32) -> u32>,
    /// `UID FETCH … BODY.PEEK[HEADER]` is answered without the BODY[HEADER] item.
    pub no_header_item: bool,
}

/// The mailbox: every message kept, in UID order.
#[derive(Default)]
pub struct Kept {
    pub messages: Vec<Msg>,
    next_uid: u32,
}

/// UIDVALIDITY of the scripted INBOX.
pub const UIDVALIDITY: u32 = 7;

/// A running scripted host2 (an empty INBOX at first) and what it keeps.
pub struct Host2 {
    pub server: Hostile,
    pub kept: Arc<Mutex<Kept>>,
}

impl Host2 {
    pub fn start(quirks: Quirks) -> Host2 {
        let kept = Arc::new(Mutex::new(Kept {
            messages: Vec::new(),
            next_uid: 1,
        }));
        let k = kept.clone();
        let hook =
            move |cmd: &Cmd, s: &mut Session| -> io::Result<bool> { answer(&k, quirks, cmd, s) };
        let server = Hostile::start(inbox(Vec::new()), Some(Arc::new(hook)));
        Host2 { server, kept }
    }

    pub fn port(&self) -> u16 {
        self.server.port()
    }

    /// The bodies it keeps, in UID order.
    pub fn bodies(&self) -> Vec<Vec<u8>> {
        let kept = self.kept.lock().unwrap();
        kept.messages.iter().map(|m| m.body.clone()).collect()
    }

    /// APPEND commands received so far.
    pub fn appends(&self) -> usize {
        self.server
            .received()
            .iter()
            .filter(|c| c.verb() == "APPEND")
            .count()
    }
}

fn answer(kept: &Mutex<Kept>, q: Quirks, cmd: &Cmd, s: &mut Session) -> io::Result<bool> {
    let verb = cmd.verb();
    let mut k = kept.lock().unwrap();
    match verb.as_str() {
        "SELECT" | "EXAMINE" => {
            let text = format!(
                "* {} EXISTS\r\n* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)\r\n\
                 * OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft \\*)] ok\r\n\
                 * OK [UIDVALIDITY {UIDVALIDITY}] ok\r\n* OK [UIDNEXT {}] ok\r\n{} OK [READ-WRITE] done\r\n",
                k.messages.len(),
                k.next_uid,
                cmd.tag
            );
            s.send(text.as_bytes())?;
        }
        "STATUS" => {
            let text = format!(
                "* STATUS INBOX (MESSAGES {} UIDNEXT {} UIDVALIDITY {UIDVALIDITY})\r\n{} OK done\r\n",
                k.messages.len(),
                k.next_uid,
                cmd.tag
            );
            s.send(text.as_bytes())?;
        }
        "APPEND" => {
            let given = cmd.literals.first().cloned().unwrap_or_default();
            let body = q.stores.map_or_else(|| given.clone(), |f| f(&given));
            let flags = cmd
                .line
                .split_once('(')
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(f, _)| f.to_string())
                .unwrap_or_default();
            let uid = k.next_uid;
            k.next_uid += 1;
            let mut m = Msg::new(uid, &body);
            m.flags = flags;
            if q.size_as_given {
                m.size = given.len() as u64;
            }
            k.messages.push(m);
            let stated = q.appenduid.map_or(uid, |f| f(uid));
            s.send(
                format!("{} OK [APPENDUID {UIDVALIDITY} {stated}] done\r\n", cmd.tag).as_bytes(),
            )?;
        }
        "UID SEARCH" => {
            let uids: Vec<String> = k.messages.iter().map(|m| m.uid.to_string()).collect();
            s.send(format!("* SEARCH {}\r\n{} OK done\r\n", uids.join(" "), cmd.tag).as_bytes())?;
        }
        "UID FETCH" => {
            let rest = cmd.line.splitn(3, ' ').nth(2).unwrap_or("");
            let (set, items) = rest.split_once(' ').unwrap_or((rest, ""));
            let mut items = items.to_ascii_uppercase();
            if q.no_header_item && items.contains("BODY.PEEK[HEADER]") {
                items = items.replace("BODY.PEEK[HEADER]", "");
            }
            let max = k.messages.last().map_or(0, |m| m.uid);
            let set = set.replace('*', &max.max(1).to_string());
            for (seq, m) in k.messages.iter().enumerate() {
                if in_set(&set, m.uid) {
                    s.send(&fetch_response(seq as u32 + 1, m, &items))?;
                }
            }
            s.ok(cmd)?;
        }
        "UID STORE" => {
            // `UID STORE set [+-]FLAGS[.SILENT] (flags)`
            let rest = cmd.line.splitn(3, ' ').nth(2).unwrap_or("");
            let (set, what) = rest.split_once(' ').unwrap_or((rest, ""));
            let flags = what
                .split_once('(')
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(f, _)| f.to_string())
                .unwrap_or_default();
            for m in k.messages.iter_mut().filter(|m| in_set(set, m.uid)) {
                if what.starts_with("FLAGS") || what.starts_with("flags") {
                    m.flags = flags.clone();
                } else if what.starts_with('+') {
                    m.flags = format!("{} {flags}", m.flags).trim().to_string();
                }
            }
            s.ok(cmd)?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}
