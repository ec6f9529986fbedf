//! Files that hold a secret (`--passfile1/2`, a fleet's `file:` passwords, OAuth2 token and
//! settings files), read one way: a regular file only, at most [`MAX_LEN`] bytes, without ever
//! waiting. A FIFO or a device named by mistake (or by someone else) would block a reader
//! forever, and a huge file would be read whole into memory: both are refused at once, naming
//! the file.

use std::fmt;
use std::io::Read;
use std::path::Path;

/// The most a secret file may hold: a password, an access token (a JWT of a few KiB) or an
/// OAuth2 settings file fit many times over.
pub const MAX_LEN: u64 = 16 * 1024;

/// Why a secret file could not be read.
#[derive(Debug)]
pub enum Error {
    /// Opening, inspecting or reading it failed.
    Io(std::io::Error),
    /// A FIFO, a socket, a device or a directory: only a regular file is read.
    NotRegular(&'static str),
    /// More than [`MAX_LEN`] bytes.
    TooLarge,
    /// Not UTF-8 text.
    NotText,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::NotRegular(kind) => write!(f, "it is a {kind}, not a regular file"),
            Error::TooLarge => write!(f, "it is larger than {} KiB", MAX_LEN / 1024),
            Error::NotText => write!(f, "it is not UTF-8 text"),
        }
    }
}

impl std::error::Error for Error {}

/// The whole text of the secret file at `path` (a symbolic link to one is followed: secret
/// volumes are made of them). Opened non-blocking, so a FIFO is refused by its type instead of
/// waiting for a writer.
pub fn read(path: &Path) -> Result<String, Error> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(Error::Io)?;
    let t = file.metadata().map_err(Error::Io)?.file_type();
    if !t.is_file() {
        let kind = if t.is_fifo() {
            "FIFO"
        } else if t.is_socket() {
            "socket"
        } else if t.is_dir() {
            "directory"
        } else {
            "device"
        };
        return Err(Error::NotRegular(kind));
    }
    let mut bytes = Vec::new();
    file.take(MAX_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(Error::Io)?;
    if bytes.len() as u64 > MAX_LEN {
        return Err(Error::TooLarge);
    }
    String::from_utf8(bytes).map_err(|_| Error::NotText)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_regular_file_is_read_and_anything_else_refused_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "pw\n").unwrap();
        assert_eq!(read(&ok).unwrap(), "pw\n");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&ok, &link).unwrap();
        assert_eq!(read(&link).unwrap(), "pw\n", "a link to a file is followed");

        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::RUSR).unwrap();
        assert!(matches!(read(&fifo), Err(Error::NotRegular("FIFO"))));
        assert!(matches!(
            read(dir.path()),
            Err(Error::NotRegular("directory"))
        ));

        let huge = dir.path().join("huge");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(3 << 30)
            .unwrap();
        assert!(matches!(read(&huge), Err(Error::TooLarge)));
        let edge = dir.path().join("edge");
        std::fs::write(&edge, vec![b'a'; MAX_LEN as usize]).unwrap();
        assert_eq!(read(&edge).unwrap().len() as u64, MAX_LEN);
        assert!(matches!(
            read(&dir.path().join("absent")),
            Err(Error::Io(_))
        ));
    }
}
