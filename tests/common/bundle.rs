//! Bundles written byte by byte as `docs/bundle-format.md` specifies them, without imapferry's
//! writer: for tests that need bundles imapferry would never write (hostile or spoiled ones).

use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The INTERNALDATE every hand-made message has.
pub const DATE: &str = "05-Mar-2021 14:03:07 +0100";

/// The records of one bundle, to spoil one by one before [`Spec::write`].
#[derive(Clone)]
pub struct Spec {
    pub header: Value,
    pub folders: Vec<Value>,
    /// (SHA-256 named in the record, the zstd frame).
    pub objects: Vec<([u8; 32], Vec<u8>)>,
    pub messages: Vec<Value>,
    pub expunges: Vec<Value>,
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn hex(h: &[u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

impl Spec {
    /// A valid full bundle (seq 1, change `change`) of one store: INBOX with `messages`, UIDs
    /// from 1, UIDVALIDITY 7, flag \Seen.
    pub fn inbox(messages: &[&[u8]], change: i64) -> Spec {
        let mut s = Spec {
            header: json!({
                "format": "imapferry-bundle",
                "bundle_id": format!("{change:032x}"),
                "source_store": "5f2a0000000000000000000000000001",
                "seq": 1,
                "base": null,
                "change": change,
                "created_at": 1_767_225_600,
                "account": {"host": "imap.example.org", "user": "me"},
                "counts": {},
            }),
            folders: vec![folder("INBOX")],
            objects: Vec::new(),
            messages: Vec::new(),
            expunges: Vec::new(),
        };
        for (i, m) in messages.iter().enumerate() {
            s.add_message("INBOX", i as u32 + 1, m);
        }
        s
    }

    /// One more message (and its object) in `folder`.
    pub fn add_message(&mut self, folder: &str, uid: u32, bytes: &[u8]) {
        let h = sha256(bytes);
        if !self.objects.iter().any(|(o, _)| *o == h) {
            self.objects
                .push((h, zstd::bulk::compress(bytes, 3).expect("zstd")));
        }
        self.messages.push(json!({
            "folder": folder,
            "uidvalidity": 7,
            "uid": uid,
            "hash": hex(&h),
            "size": bytes.len(),
            "flags": ["\\Seen"],
            "internaldate": DATE,
        }));
    }

    /// The bundle's bytes: counts in the header as the records are (unless set already).
    pub fn bytes(&self) -> Vec<u8> {
        let mut header = self.header.clone();
        if header["counts"].as_object().is_some_and(|c| c.is_empty()) {
            header["counts"] = json!({
                "folders": self.folders.len(),
                "objects": self.objects.len(),
                "messages": self.messages.len(),
                "expunges": self.expunges.len(),
            });
        }
        let mut b = b"IMFYBNDL".to_vec();
        b.extend_from_slice(&1u32.to_be_bytes());
        record(&mut b, b'H', &serde_json::to_vec(&header).unwrap());
        for f in &self.folders {
            record(&mut b, b'F', &serde_json::to_vec(f).unwrap());
        }
        for (h, frame) in &self.objects {
            record(&mut b, b'O', &[&h[..], frame].concat());
        }
        for m in &self.messages {
            record(&mut b, b'M', &serde_json::to_vec(m).unwrap());
        }
        for x in &self.expunges {
            record(&mut b, b'X', &serde_json::to_vec(x).unwrap());
        }
        let sum = sha256(&b);
        record(&mut b, b'T', &sum);
        b
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.bytes()).expect("write bundle");
    }
}

/// A folder record with UIDVALIDITY 7.
pub fn folder(path: &str) -> Value {
    json!({
        "path": path,
        "raw_name": if path.is_empty() { "x" } else { path },
        "separator": "/",
        "role": null,
        "subscribed": true,
        "uidvalidity": 7,
        "uidnext": 100,
        "highestmodseq": null,
        "last_pull": null,
        "gone": false,
    })
}

fn record(out: &mut Vec<u8>, kind: u8, payload: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(payload);
}

/// A zstd frame by hand: `blocks` RLE blocks of 128 KiB of `x` (4 bytes each), declaring
/// `declared` bytes in its header (or no size). A few kilobytes that inflate to gigabytes.
pub fn rle_frame(declared: Option<u64>, blocks: u64) -> Vec<u8> {
    let mut f = vec![0x28, 0xb5, 0x2f, 0xfd];
    match declared {
        // Frame header: an 8-byte content size and a 128 KiB window.
        Some(n) => {
            f.extend_from_slice(&[0xc0, 0x38]);
            f.extend_from_slice(&n.to_le_bytes());
        }
        None => f.extend_from_slice(&[0x00, 0x38]),
    }
    for i in 0..blocks {
        let last = u32::from(i + 1 == blocks);
        let header = last | (1 << 1) | (131_072 << 3);
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.push(b'x');
    }
    f
}
