//! One zstd frame, checked while it streams by. Objects that arrive in a bundle, or go into
//! one, pass through [`inflate`]: it never holds the message, refuses a frame that does not
//! declare its content size, declares more than the caller allows, inflates past what it
//! declared or is followed by anything, and hashes what it inflates to. An object the store
//! already holds is read with [`inflate_known`]: any valid frame (store-format.md), bounded by
//! the size the index records for it. Memory is the decoder's window, which zstd keeps within
//! 128 MiB.

use std::fmt;
use std::io::{self, BufRead, BufReader, Cursor, Read};

use sha2::{Digest, Sha256};

use super::hash::Hash;

/// The first bytes of a zstd frame.
const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// The longest zstd frame header, magic included.
const HEADER_MAX: usize = 18;
/// zstd's own default limit (128 MiB windows), stated here because the memory bound in
/// `docs/bundle-format.md` rests on it.
const WINDOW_LOG_MAX: u32 = 27;
/// Inflated bytes are handed on in pieces of this size.
const PIECE: usize = 64 << 10;

/// What a frame inflated to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inflated {
    pub size: u64,
    pub hash: Hash,
}

/// Why a frame was refused. Callers branch on [`FrameError::NoDeclaredSize`] (a valid frame
/// an older writer may have made, which can be compressed again).
#[derive(Debug)]
pub enum FrameError {
    /// It does not start with the zstd magic number.
    NotZstd,
    /// The frame header has no content size.
    NoDeclaredSize,
    /// It declares more than the caller takes.
    TooLarge { declared: u64, max: u64 },
    /// It inflated past its declared size (refused at the first byte beyond).
    PastDeclared { declared: u64 },
    /// It ended before its declared size.
    Short { declared: u64, got: u64 },
    /// It declares another size than the index records for it.
    NotRecorded { declared: u64, recorded: u64 },
    /// It declares no size and inflated past the size the index records (refused at the first
    /// byte beyond).
    PastRecorded { recorded: u64 },
    /// It declares no size and ended before the size the index records.
    ShortOfRecorded { recorded: u64, got: u64 },
    /// Bytes follow the frame.
    Trailing,
    /// The decoder refused it.
    Damaged(String),
    /// Reading the frame failed (the source's error).
    Read(io::Error),
    /// Handing on the inflated bytes failed (the sink's error).
    Sink(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::NotZstd => write!(f, "it is not a zstd frame"),
            FrameError::NoDeclaredSize => {
                write!(f, "its zstd frame does not declare its content size")
            }
            FrameError::TooLarge { declared, max } => write!(
                f,
                "its zstd frame declares {declared} bytes, more than the {max} allowed"
            ),
            FrameError::PastDeclared { declared } => write!(
                f,
                "it inflates past the {declared} bytes its zstd frame declares"
            ),
            FrameError::Short { declared, got } => write!(
                f,
                "it inflates to {got} bytes, not the {declared} its zstd frame declares"
            ),
            FrameError::NotRecorded { declared, recorded } => write!(
                f,
                "its zstd frame declares {declared} bytes, the index records {recorded}"
            ),
            FrameError::PastRecorded { recorded } => {
                write!(f, "it inflates past the {recorded} bytes the index records")
            }
            FrameError::ShortOfRecorded { recorded, got } => write!(
                f,
                "it inflates to {got} bytes, not the {recorded} the index records"
            ),
            FrameError::Trailing => write!(f, "data follows its zstd frame"),
            FrameError::Damaged(e) => write!(f, "it is not valid zstd ({e})"),
            FrameError::Read(e) => write!(f, "cannot read it: {e}"),
            FrameError::Sink(e) => write!(f, "cannot write it: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Inflate the one zstd frame that `src` holds (to its end), handing every inflated byte to
/// `sink`, and return its size and SHA-256. The frame must declare its content size, at most
/// `max`; see [`FrameError`] for what is refused.
pub fn inflate(
    src: impl Read,
    max: u64,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<Inflated, FrameError> {
    inflate_to(src, Size::Declared { max }, sink)
}

/// Inflate the one zstd frame that `src` holds, an object whose size the index records as
/// `recorded`, as [`inflate`] does; a frame without its content size (another zstd writer's)
/// is taken too, bounded by `recorded`, and one that declares a size must declare that one.
pub fn inflate_known(
    src: impl Read,
    recorded: u64,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<Inflated, FrameError> {
    inflate_to(src, Size::Recorded(recorded), sink)
}

/// Where the size a frame must inflate to comes from.
#[derive(Clone, Copy)]
enum Size {
    /// Its header, which must declare one, at most `max`.
    Declared { max: u64 },
    /// The index; a header that declares one must agree.
    Recorded(u64),
}

fn inflate_to(
    src: impl Read,
    want: Size,
    sink: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> Result<Inflated, FrameError> {
    let mut src = Source {
        inner: src,
        failed: None,
    };
    let mut head = [0u8; HEADER_MAX];
    let n = read_up_to(&mut src, &mut head).map_err(FrameError::Read)?;
    if n < MAGIC.len() || head[..MAGIC.len()] != MAGIC {
        return Err(FrameError::NotZstd);
    }
    let header = match zstd::zstd_safe::get_frame_content_size(&head[..n]) {
        Ok(d) => d,
        Err(_) => return Err(FrameError::Damaged("a bad frame header".into())),
    };
    // The size it must inflate to, and whether its header said so.
    let (declared, by_header) = match (want, header) {
        (Size::Declared { .. }, None) => return Err(FrameError::NoDeclaredSize),
        (Size::Declared { max }, Some(d)) if d > max => {
            return Err(FrameError::TooLarge { declared: d, max })
        }
        (Size::Recorded(r), Some(d)) if d != r => {
            return Err(FrameError::NotRecorded {
                declared: d,
                recorded: r,
            })
        }
        (Size::Declared { .. }, Some(d)) | (Size::Recorded(_), Some(d)) => (d, true),
        (Size::Recorded(r), None) => (r, false),
    };
    let input = BufReader::with_capacity(PIECE, Cursor::new(head[..n].to_vec()).chain(src));
    let mut dec = zstd::stream::read::Decoder::with_buffer(input)
        .map_err(|e| FrameError::Damaged(e.to_string()))?
        .single_frame();
    dec.window_log_max(WINDOW_LOG_MAX)
        .map_err(|e| FrameError::Damaged(e.to_string()))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; PIECE];
    loop {
        let got = match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // The source's own failure (a truncated bundle, say) is not zstd's.
                let (_, source) = dec.get_mut().get_mut().get_mut();
                return Err(match source.failed.take() {
                    Some(read) => FrameError::Read(read),
                    None => FrameError::Damaged(e.to_string()),
                });
            }
        };
        size += got as u64;
        if size > declared {
            return Err(if by_header {
                FrameError::PastDeclared { declared }
            } else {
                FrameError::PastRecorded { recorded: declared }
            });
        }
        hasher.update(&buf[..got]);
        sink(&buf[..got]).map_err(FrameError::Sink)?;
    }
    if size != declared {
        return Err(if by_header {
            FrameError::Short {
                declared,
                got: size,
            }
        } else {
            FrameError::ShortOfRecorded {
                recorded: declared,
                got: size,
            }
        });
    }
    let mut rest = dec.finish();
    match rest.fill_buf() {
        Ok([]) => Ok(Inflated {
            size,
            hash: Hash(hasher.finalize().into()),
        }),
        Ok(_) => Err(FrameError::Trailing),
        Err(e) => Err(FrameError::Read(e)),
    }
}

/// A reader that remembers its own error, so it can be told from the decoder's.
struct Source<R> {
    inner: R,
    failed: Option<io::Error>,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.failed = Some(io::Error::new(e.kind(), e.to_string()));
        })
    }
}

/// Fill `buf` as far as `r` goes; the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A zstd frame by hand: `blocks` RLE blocks of 128 KiB of `x`, declaring `declared` bytes
    /// (or no size). What a hostile bundle can hold: a few bytes that inflate to gigabytes.
    fn rle_frame(declared: Option<u32>, blocks: usize) -> Vec<u8> {
        let mut f = MAGIC.to_vec();
        match declared {
            // Frame header: 4-byte content size, window 128 KiB.
            Some(n) => {
                f.extend_from_slice(&[0x80, 0x38]);
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

    fn run(frame: &[u8], max: u64) -> Result<Inflated, FrameError> {
        inflate(frame, max, &mut |_| Ok(()))
    }

    #[test]
    fn a_real_object_inflates_to_its_bytes_and_hash() {
        for msg in [&b""[..], b"Subject: x\r\n\r\nbody\r\n", &[7u8; 300_000][..]] {
            let z = zstd::bulk::compress(msg, 3).unwrap();
            let mut seen = Vec::new();
            let got = inflate(&z[..], 1 << 20, &mut |b| {
                seen.extend_from_slice(b);
                Ok(())
            })
            .unwrap();
            assert_eq!(got.size, msg.len() as u64);
            assert_eq!(got.hash, Hash::of(msg));
            assert_eq!(seen, msg);
        }
    }

    #[test]
    fn hostile_frames_are_refused() {
        let plenty = 1 << 40;
        assert!(matches!(
            run(&rle_frame(None, 8), plenty),
            Err(FrameError::NoDeclaredSize)
        ));
        assert!(matches!(
            run(&rle_frame(Some(200_000), 8), plenty),
            Err(FrameError::PastDeclared { .. }) | Err(FrameError::Damaged(_))
        ));
        assert!(matches!(
            run(&rle_frame(Some(131_072 * 8), 8), 1000),
            Err(FrameError::TooLarge { .. })
        ));
        // Exactly the limit is allowed (this frame then ends short of it).
        assert!(matches!(
            run(&rle_frame(Some(131_072 * 9), 8), 131_072 * 9),
            Err(FrameError::Short { .. }) | Err(FrameError::Damaged(_))
        ));
        assert_eq!(
            run(&rle_frame(Some(131_072 * 8), 8), plenty).unwrap().size,
            1 << 20
        );
        let mut two = zstd::bulk::compress(b"a", 3).unwrap();
        two.extend_from_slice(&rle_frame(Some(131_072), 1));
        assert!(matches!(run(&two, plenty), Err(FrameError::Trailing)));
        let whole = zstd::bulk::compress(&[1u8; 100_000], 3).unwrap();
        assert!(matches!(
            run(&whole[..whole.len() - 3], plenty),
            Err(FrameError::Damaged(_))
        ));
        assert!(matches!(run(b"garbage", plenty), Err(FrameError::NotZstd)));
        let known = |frame: &[u8], recorded| inflate_known(frame, recorded, &mut |_| Ok(()));
        assert_eq!(
            known(&rle_frame(None, 8), 1 << 20).unwrap().size,
            1 << 20,
            "a frame without its size, inflating to what the index records"
        );
        assert!(matches!(
            known(&rle_frame(None, 8), 1000),
            Err(FrameError::PastRecorded { recorded: 1000 })
        ));
        assert!(matches!(
            known(&rle_frame(None, 8), 2 << 20),
            Err(FrameError::ShortOfRecorded { .. })
        ));
        assert!(matches!(
            known(&rle_frame(Some(131_072 * 8), 8), 1000),
            Err(FrameError::NotRecorded { .. })
        ));
        assert!(matches!(run(b"", plenty), Err(FrameError::NotZstd)));
    }
}
