//! Message objects: `objects/<2 hex>/<64 hex>.zst`, the zstd-compressed bytes of one message,
//! named by the SHA-256 of the uncompressed bytes. Written once (temp file, fsync, rename).

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;

/// SHA-256 of a message's bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn of(_bytes: &[u8]) -> Hash {
        todo!()
    }
    pub fn to_hex(&self) -> String {
        todo!()
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl FromStr for Hash {
    type Err = anyhow::Error;
    fn from_str(_s: &str) -> Result<Hash> {
        todo!()
    }
}

/// The object directory of a store.
pub struct Objects {
    _root: PathBuf,
}

impl Objects {
    pub fn new(_store_root: &Path) -> Objects {
        todo!()
    }

    pub fn path(&self, _hash: &Hash) -> PathBuf {
        todo!()
    }

    pub fn contains(&self, _hash: &Hash) -> bool {
        todo!()
    }

    /// Compress and write `bytes` durably (temp file, fsync, rename) unless the object exists.
    /// Returns the hash and the compressed size on disk. The rename is made durable by
    /// [`Objects::sync`], which callers run before committing index rows that name the object.
    pub fn write(&self, _bytes: &[u8]) -> Result<(Hash, u64)> {
        todo!()
    }

    /// fsync every object directory written to since the last call.
    pub fn sync(&self) -> Result<()> {
        todo!()
    }

    /// Read, decompress and verify one object; an error names the object when it is missing
    /// or its content does not hash to its name.
    pub fn read(&self, _hash: &Hash) -> Result<Vec<u8>> {
        todo!()
    }
}
