//! COMPRESS=DEFLATE (RFC 4978): raw deflate (no zlib header) in both directions, with a sync
//! flush after each batch of writes so the server sees every command at once.

use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Buffer size for compressed data in either direction.
const CHUNK: usize = 64 << 10;

/// zlib's default level: mail text shrinks several times and it keeps up with fast links.
const LEVEL: u32 = 6;

/// Compression state of one connection. The transport moves the compressed bytes.
pub(crate) struct Deflate {
    enc: Compress,
    dec: Decompress,
    /// Compressed bytes received and not yet inflated, from `in_pos`.
    inbuf: Vec<u8>,
    in_pos: usize,
    /// Compressed bytes to be written.
    outbuf: Vec<u8>,
    /// Data deflated since the last sync flush.
    dirty: bool,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("COMPRESS: {what}: {e}"))
}

impl Deflate {
    /// Start both streams; `leftover` is compressed data already read past the COMPRESS OK.
    pub(crate) fn new(leftover: Vec<u8>) -> Deflate {
        Deflate {
            enc: Compress::new(Compression::new(LEVEL), false),
            dec: Decompress::new(false),
            inbuf: leftover,
            in_pos: 0,
            outbuf: Vec::with_capacity(CHUNK),
            dirty: false,
        }
    }

    /// Inflate buffered input into `buf`: `Some(n)` with n > 0 bytes, `Some(0)` at the end of
    /// the server's deflate stream, `None` when more input is needed first.
    pub(crate) fn inflate(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let (in0, out0) = (self.dec.total_in(), self.dec.total_out());
            let status = self
                .dec
                .decompress(&self.inbuf[self.in_pos..], buf, FlushDecompress::None)
                .map_err(|e| corrupt("bad deflate data from the server", e))?;
            let used = (self.dec.total_in() - in0) as usize;
            let made = (self.dec.total_out() - out0) as usize;
            self.in_pos += used;
            if made > 0 {
                return Ok(Some(made));
            }
            if status == Status::StreamEnd {
                return Ok(Some(0));
            }
            if used == 0 {
                return Ok(None);
            }
        }
    }

    /// Read more compressed input with `read`; returns what it returned (0 at EOF).
    pub(crate) fn refill(
        &mut self,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        if self.in_pos > 0 {
            self.inbuf.drain(..self.in_pos);
            self.in_pos = 0;
        }
        let old = self.inbuf.len();
        self.inbuf.resize(old + CHUNK, 0);
        let r = read(&mut self.inbuf[old..]);
        let n = *r.as_ref().unwrap_or(&0);
        self.inbuf.truncate(old + n);
        r
    }

    /// Deflate `data` into the output buffer (no flush).
    pub(crate) fn deflate(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            self.outbuf.reserve(CHUNK);
            let in0 = self.enc.total_in();
            self.enc
                .compress_vec(data, &mut self.outbuf, FlushCompress::None)
                .map_err(|e| corrupt("deflate", e))?;
            data = &data[(self.enc.total_in() - in0) as usize..];
        }
        self.dirty = true;
        Ok(())
    }

    /// End the current batch with a sync flush, so everything deflated so far can be inflated
    /// by the server from what is in the output buffer.
    pub(crate) fn sync(&mut self) -> io::Result<()> {
        if !self.dirty {
            return Ok(());
        }
        loop {
            self.outbuf.reserve(CHUNK);
            self.enc
                .compress_vec(&[], &mut self.outbuf, FlushCompress::Sync)
                .map_err(|e| corrupt("deflate", e))?;
            // Room left over means the flush is complete.
            if self.outbuf.len() < self.outbuf.capacity() {
                break;
            }
        }
        self.dirty = false;
        Ok(())
    }

    /// Compressed bytes waiting to be written.
    pub(crate) fn output(&self) -> &[u8] {
        &self.outbuf
    }

    /// Forget the first `n` output bytes (written).
    pub(crate) fn consume_output(&mut self, n: usize) {
        self.outbuf.drain(..n);
    }

    /// True when enough output has gathered to be worth writing before the flush.
    pub(crate) fn output_full(&self) -> bool {
        self.outbuf.len() >= CHUNK
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deflate with one side, inflate with another (as the server would).
    #[test]
    fn sync_flushed_batches_inflate_completely_and_in_order() {
        let mut a = Deflate::new(Vec::new());
        let mut text = Vec::new();
        for i in 0..5000 {
            text.extend_from_slice(format!("A{i} UID FETCH {i} (BODY.PEEK[])\r\n").as_bytes());
        }
        let mut b = Deflate::new(Vec::new());
        let mut got = Vec::new();
        let mut sent = 0;
        for batch in text.chunks(7777) {
            sent += batch.len();
            a.deflate(batch).unwrap();
            a.sync().unwrap();
            let wire = a.output().to_vec();
            a.consume_output(wire.len());
            let mut fed = false;
            loop {
                let mut buf = [0u8; 1000];
                match b.inflate(&mut buf).unwrap() {
                    Some(n) => got.extend_from_slice(&buf[..n]),
                    None if !fed => {
                        b.refill(|dst| {
                            dst[..wire.len()].copy_from_slice(&wire);
                            Ok(wire.len())
                        })
                        .unwrap();
                        fed = true;
                    }
                    None => break,
                }
            }
            // Everything sent so far has arrived: the server can answer at once.
            assert_eq!(got.len(), sent);
        }
        assert_eq!(got, text);
        assert!(a.enc.total_out() * 5 < text.len() as u64);
    }
}
