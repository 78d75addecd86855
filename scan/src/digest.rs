//! Digests read from images a job can write, validated before any of them names a file (a
//! containers-storage store's ids and digests are `berth-storemeta`'s), and the digests berth
//! computes itself over the bytes it reads: the only keys the layer cache trusts (a digest a
//! store merely claims is never one).

use std::fmt;
use std::io::{self, Read};
use std::path::PathBuf;

/// A hash algorithm an OCI digest may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// SHA-256 (64 hex digits).
    Sha256,
    /// SHA-512 (128 hex digits).
    Sha512,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Self::Sha256 => 64,
            Self::Sha512 => 128,
        }
    }

    fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            Self::Sha256 => &ring::digest::SHA256,
            Self::Sha512 => &ring::digest::SHA512,
        }
    }
}

fn lower_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A validated `algorithm:hex` digest (`sha256` or `sha512`, exact-length lowercase hex).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Parses `text`, refusing anything but `sha256:<64 hex>` or `sha512:<128 hex>`; the error
    /// says what was wrong (the text itself is not repeated, it may be hostile).
    pub fn parse(text: &str) -> Result<Self, String> {
        let (alg, hex) = text
            .split_once(':')
            .ok_or_else(|| "a digest is algorithm:hex".to_owned())?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            _ => return Err("only sha256 and sha512 digests are read".to_owned()),
        };
        if !lower_hex(hex, algorithm.hex_len()) {
            return Err(format!(
                "a {} digest is {} lowercase hex digits",
                algorithm.name(),
                algorithm.hex_len()
            ));
        }
        Ok(Self {
            algorithm,
            hex: hex.to_owned(),
        })
    }

    /// The digest of `bytes` under `algorithm`.
    pub fn of(algorithm: Algorithm, bytes: &[u8]) -> Self {
        let mut h = Hasher::new(algorithm);
        h.update(bytes);
        h.finish()
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Where an OCI layout keeps this blob: `blobs/<algorithm>/<hex>`.
    pub fn blob_path(&self) -> PathBuf {
        PathBuf::from("blobs")
            .join(self.algorithm.name())
            .join(&self.hex)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

/// A running hash.
pub(crate) struct Hasher {
    algorithm: Algorithm,
    context: ring::digest::Context,
}

impl Hasher {
    pub(crate) fn new(algorithm: Algorithm) -> Self {
        Self {
            algorithm,
            context: ring::digest::Context::new(algorithm.ring()),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.context.update(bytes);
    }

    /// The digest as `algorithm:hex`.
    pub(crate) fn finish(self) -> Digest {
        let algorithm = self.algorithm;
        let hex = self
            .context
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Digest { algorithm, hex }
    }
}

/// A reader that hashes (and counts) every byte read through it.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Hasher,
    read: u64,
}

impl<R: Read> Hashing<R> {
    pub(crate) fn new(inner: R, algorithm: Algorithm) -> Self {
        Self {
            inner,
            hasher: Hasher::new(algorithm),
            read: 0,
        }
    }

    /// Reads the rest, then returns how many bytes passed and their digest.
    pub(crate) fn drain(mut self) -> io::Result<(u64, Digest)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.read, self.hasher.finish()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let bytes = buf.get(..n).unwrap_or_default();
        self.hasher.update(bytes);
        self.read += n as u64;
        Ok(n)
    }
}

/// A digest berth computed over the bytes it read of a layer: `sha256:…` (or `sha512:…`) of a
/// tar layer's stored bytes. The only key the layer cache accepts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentKey(String);

impl ContentKey {
    pub(crate) fn stored(digest: &Digest) -> Self {
        Self(digest.to_string())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ContentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_lowercase_hex_digests_parse() {
        let good = format!("sha256:{}", "a".repeat(64));
        assert_eq!(Digest::parse(&good).map(|d| d.to_string()), Ok(good));
        assert!(Digest::parse(&format!("sha512:{}", "0".repeat(128))).is_ok());
        for bad in [
            "sha256:../../../../etc/passwd".to_owned(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}/x", "a".repeat(62)),
            format!("md5:{}", "a".repeat(32)),
            format!("sha512:{}", "a".repeat(64)),
            "sha256".to_owned(),
            String::new(),
        ] {
            assert!(Digest::parse(&bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn hashing_reader_counts_and_hashes_everything() {
        let r = Hashing::new(&b"abc"[..], Algorithm::Sha256);
        let (n, d) = r.drain().expect("drain");
        assert_eq!(n, 3);
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let (_, d) = Hashing::new(&b"abc"[..], Algorithm::Sha512)
            .drain()
            .expect("drain");
        assert_eq!(d.algorithm(), Algorithm::Sha512);
    }
}
