//! The one clock and the one source of random identifiers, so every timestamp in the store
//! and every id the project makes come from the same place.

use anyhow::{Context, Result};

/// Seconds since the Unix epoch, the unit of every timestamp in the store.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Nanoseconds since the Unix epoch mixed with the process id: a seed for sampling, not a
/// secret.
pub fn seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ u64::from(std::process::id()).rotate_left(32)
}

/// `n` random bytes from the kernel, as lowercase hex (store and bundle ids).
pub fn random_hex(n: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_ids_are_hex_of_the_length_asked_and_differ() {
        let a = super::random_hex(16).unwrap();
        let b = super::random_hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
