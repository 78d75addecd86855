//! Digests read from images a job can write, validated before any of them names a file (a
//! containers-storage store's ids and digests are `berth-storemeta`'s), and the digests berth
//! computes itself over the bytes it reads: the only keys the layer cache trusts (a digest a
//! store merely claims is never one).

use std::fmt;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// A hash algorithm: one an OCI digest may name (SHA-256, SHA-512), or BLAKE3, which berth uses
/// for its own key of a layer no digest names (it hashes several times faster than SHA-256 and
/// is as collision-resistant; decision 0006). Image documents never name BLAKE3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// SHA-256 (64 hex digits).
    Sha256,
    /// SHA-512 (128 hex digits).
    Sha512,
    /// BLAKE3 (64 hex digits); berth's key of a layer no digest names.
    Blake3,
}

impl Algorithm {
    fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::Sha512 => "sha512",
            Self::Blake3 => "blake3",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Self::Sha256 | Self::Blake3 => 64,
            Self::Sha512 => 128,
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
        Self::parse_of(text, &[Algorithm::Sha256, Algorithm::Sha512])
    }

    /// Parses `text` as a digest in one of `algorithms`.
    fn parse_of(text: &str, algorithms: &[Algorithm]) -> Result<Self, String> {
        let (alg, hex) = text
            .split_once(':')
            .ok_or_else(|| "a digest is algorithm:hex".to_owned())?;
        let Some(&algorithm) = algorithms.iter().find(|a| a.name() == alg) else {
            return Err("only sha256 and sha512 digests are read".to_owned());
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
#[derive(Clone)]
pub(crate) enum Hasher {
    /// SHA-256 or SHA-512, with the CPU's SHA extensions where it has them.
    Ring(Box<ring::digest::Context>),
    /// BLAKE3, with the widest SIMD the CPU has.
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    pub(crate) fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha256 => {
                Self::Ring(Box::new(ring::digest::Context::new(&ring::digest::SHA256)))
            }
            Algorithm::Sha512 => {
                Self::Ring(Box::new(ring::digest::Context::new(&ring::digest::SHA512)))
            }
            Algorithm::Blake3 => Self::Blake3(Box::default()),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Ring(c) => c.update(bytes),
            Self::Blake3(h) => {
                h.update(bytes);
            }
        }
    }

    /// The digest as `algorithm:hex`.
    pub(crate) fn finish(self) -> Digest {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect();
        match self {
            Self::Ring(c) => {
                let algorithm = if c.algorithm() == &ring::digest::SHA512 {
                    Algorithm::Sha512
                } else {
                    Algorithm::Sha256
                };
                Digest {
                    algorithm,
                    hex: hex(c.finish().as_ref()),
                }
            }
            Self::Blake3(h) => Digest {
                algorithm: Algorithm::Blake3,
                hex: hex(h.finalize().as_bytes()),
            },
        }
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

    /// The reader underneath.
    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Reads the rest, then returns how many bytes passed and their digest.
    pub(crate) fn drain(&mut self) -> io::Result<(u64, Digest)> {
        io::copy(self, &mut io::sink())?;
        Ok((self.read, self.hasher.clone().finish()))
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

/// Bytes in one chunk handed to the hashing thread of [`HashingAside`].
const ASIDE_CHUNK: usize = 1 << 20;
/// Chunks a [`HashingAside`] owns at most (its memory bound), in use or in flight.
const ASIDE_CHUNKS: usize = 4;

/// Like [`Hashing`], but the hash runs on a thread of its own while the caller decodes the
/// bytes (a layer's inflate and tar walk overlap with its hash): the reader fills chunks, lends
/// them to the caller, then hands each to the hashing thread, which gives it back for reuse.
pub(crate) struct HashingAside<R> {
    inner: R,
    chunk: Vec<u8>,
    pos: usize,
    read: u64,
    allocated: usize,
    full: Option<mpsc::SyncSender<Vec<u8>>>,
    empty: mpsc::Receiver<Vec<u8>>,
    worker: Option<std::thread::JoinHandle<Hasher>>,
}

fn hasher_gone() -> io::Error {
    io::Error::other("the layer's hashing thread ended early")
}

impl<R: Read> HashingAside<R> {
    pub(crate) fn new(inner: R, algorithm: Algorithm) -> Self {
        let (full, chunks) = mpsc::sync_channel::<Vec<u8>>(ASIDE_CHUNKS);
        let (back, empty) = mpsc::sync_channel::<Vec<u8>>(ASIDE_CHUNKS);
        let worker = std::thread::spawn(move || {
            let mut hasher = Hasher::new(algorithm);
            for chunk in chunks {
                hasher.update(&chunk);
                // Never blocks: at most ASIDE_CHUNKS chunks exist. A reader that is gone
                // needs no chunk back.
                let _ = back.send(chunk);
            }
            hasher
        });
        Self {
            inner,
            chunk: Vec::new(),
            pos: 0,
            read: 0,
            allocated: 0,
            full: Some(full),
            empty,
            worker: Some(worker),
        }
    }

    /// The reader underneath.
    pub(crate) fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Hands the chunk the caller has consumed to the hashing thread and reads the next one.
    fn refill(&mut self) -> io::Result<()> {
        let done = std::mem::take(&mut self.chunk);
        let mut next = if done.is_empty() && done.capacity() > 0 {
            done
        } else {
            if !done.is_empty() {
                let full = self.full.as_ref().ok_or_else(hasher_gone)?;
                full.send(done).map_err(|_| hasher_gone())?;
            }
            if self.allocated < ASIDE_CHUNKS {
                self.allocated += 1;
                Vec::with_capacity(ASIDE_CHUNK)
            } else {
                self.empty.recv().map_err(|_| hasher_gone())?
            }
        };
        next.clear();
        (&mut self.inner)
            .take(ASIDE_CHUNK as u64)
            .read_to_end(&mut next)?;
        self.read += next.len() as u64;
        self.chunk = next;
        self.pos = 0;
        Ok(())
    }

    /// Reads the rest, then returns how many bytes passed and their digest.
    pub(crate) fn drain(&mut self) -> io::Result<(u64, Digest)> {
        io::copy(self, &mut io::sink())?;
        drop(self.full.take());
        let hasher = self
            .worker
            .take()
            .ok_or_else(hasher_gone)?
            .join()
            .map_err(|_| hasher_gone())?;
        Ok((self.read, hasher.finish()))
    }
}

impl<R: Read> Read for HashingAside<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.chunk.len() {
            self.refill()?;
        }
        let rest = self.chunk.get(self.pos..).unwrap_or_default();
        let n = rest.len().min(buf.len());
        if let (Some(to), Some(from)) = (buf.get_mut(..n), rest.get(..n)) {
            to.copy_from_slice(from);
        }
        self.pos += n;
        Ok(n)
    }
}

/// A digest berth computed over the bytes it read of a layer: of a tar layer's stored bytes,
/// under the algorithm of the digest the layer is named by (an OCI blob), else BLAKE3. The
/// only key the layer cache accepts.
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

/// What says, without reading them, that a stored layer's bytes are the ones berth hashed
/// before: the file's identity (device, inode), the layer's place in it, and what the kernel
/// changes on every write to it (size, mtime, and ctime, which no unprivileged process can set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stamp {
    dev: u64,
    ino: u64,
    offset: u64,
    len: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    uid: u32,
    mode: u32,
    /// False on a file system whose attributes its user-space server makes up (FUSE).
    kernel_attrs: bool,
}

impl Stamp {
    /// The stamp of `len` bytes at `offset` of the open `file` (`fstat`/`fstatfs` on it, never a
    /// path).
    pub(crate) fn of_file(file: &std::fs::File, offset: u64, len: u64) -> io::Result<Self> {
        let fs = nix::sys::statfs::fstatfs(file).map_err(io::Error::from)?;
        let mut stamp = Self::of(&file.metadata()?, offset, len);
        stamp.kernel_attrs = fs.filesystem_type() != nix::sys::statfs::FUSE_SUPER_MAGIC;
        Ok(stamp)
    }

    /// The stamp from `meta` alone (a file system with kernel-kept attributes assumed).
    fn of(meta: &std::fs::Metadata, offset: u64, len: u64) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            offset,
            len,
            size: meta.size(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            uid: meta.uid(),
            mode: meta.mode(),
            kernel_attrs: true,
        }
    }

    /// Where the layer starts in the file.
    pub(crate) fn offset(&self) -> u64 {
        self.offset
    }

    /// The layer's stored length.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    fn name(&self) -> String {
        format!(
            "{:x}-{:x}-{:x}-{:x}",
            self.dev, self.ino, self.offset, self.len
        )
    }

    fn facts(&self) -> String {
        format!(
            "{} {} {} {} {:o}",
            self.size, self.mtime_ns, self.ctime_ns, self.uid, self.mode
        )
    }

    /// Only a file that nobody but its owner can write, owned by the scanning user or root,
    /// and unchanged for longer than a timestamp tick before `now_ns`, may be remembered: no
    /// other user can change its bytes, and a write racing the hash would show in its ctime.
    fn trusted(&self, euid: u32, settled_before_ns: i128) -> bool {
        self.kernel_attrs
            && (self.uid == euid || self.uid == 0)
            && self.mode & 0o022 == 0
            && self.ctime_ns < settled_before_ns
    }
}

/// How long a file's ctime must lie in the past before its digest is remembered (coarse
/// filesystem timestamps tick in jiffies; a second is far beyond one).
const MEMO_SETTLE_NS: i128 = 2_000_000_000;

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// Digests berth computed over stored layers, remembered by the layers' [`Stamp`]s so a warm
/// scan of an unchanged file need not hash it again. Poisoning it would make a layer scan as
/// another (clean) one, so it is trusted only where no one else can write: its directory must
/// belong to the scanning user and be writable by no one else, and it remembers only files no
/// one but that user or root can write (see `docs/decisions/0006-digest-memo.md`). berth's
/// in-job reads (`scan-inventory`, run as the job) never use one: the job could write it.
#[derive(Debug, Clone)]
pub struct DigestMemo {
    dir: PathBuf,
    euid: u32,
    settle_ns: i128,
}

impl DigestMemo {
    /// A memo in `dir`, created on first write.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            euid: nix::unistd::geteuid().as_raw(),
            settle_ns: MEMO_SETTLE_NS,
        }
    }

    /// For tests: remembers files however recently they changed.
    #[cfg(test)]
    pub(crate) fn settled_at_once(mut self) -> Self {
        self.settle_ns = 0;
        self
    }

    fn trusts(&self, stamp: &Stamp) -> bool {
        stamp.trusted(self.euid, now_ns() - self.settle_ns)
    }

    /// True when `dir` is a directory of ours that only we can write (no link followed).
    fn ours(&self, dir: &Path) -> bool {
        std::fs::symlink_metadata(dir)
            .is_ok_and(|m| m.is_dir() && m.uid() == self.euid && m.mode() & 0o022 == 0)
    }

    fn usable(&self) -> bool {
        self.dir.parent().is_none_or(|p| self.ours(p)) && self.ours(&self.dir)
    }

    /// The remembered digest of the bytes `stamp` names, if it is still the same file,
    /// unchanged, and the memo can be trusted.
    pub(crate) fn get(&self, stamp: &Stamp, algorithm: Algorithm) -> Option<Digest> {
        if !self.trusts(stamp) || !self.usable() {
            return None;
        }
        let path = self.dir.join(stamp.name());
        let meta = std::fs::symlink_metadata(&path).ok()?;
        if !meta.is_file() || meta.uid() != self.euid || meta.len() > 512 {
            return None;
        }
        let text = std::fs::read_to_string(&path).ok()?;
        let (digest, facts) = text.trim_end().split_once(' ')?;
        let digest = Digest::parse_of(digest, &[algorithm]).ok()?;
        (facts == stamp.facts() && digest.algorithm() == algorithm).then_some(digest)
    }

    /// Remembers `digest` for the bytes `stamp` names when the file qualifies; a failure only
    /// costs hashing it again next time.
    pub(crate) fn put(&self, stamp: &Stamp, digest: &Digest) {
        if !self.trusts(stamp) {
            return;
        }
        if std::fs::create_dir_all(&self.dir).is_err() || !self.usable() {
            return;
        }
        let name = stamp.name();
        let tmp = self.dir.join(format!(".tmp-{}-{name}", std::process::id()));
        let text = format!("{digest} {}\n", stamp.facts());
        if std::fs::write(&tmp, text).is_ok() && std::fs::rename(&tmp, self.dir.join(name)).is_err()
        {
            let _ = std::fs::remove_file(&tmp);
        }
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

    fn memo_fixture() -> (tempfile::TempDir, PathBuf, DigestMemo) {
        let d = tempfile::tempdir().expect("tempdir");
        let file = d.path().join("layer.tar");
        std::fs::write(&file, b"layer bytes").expect("write");
        let memo = DigestMemo::new(d.path().join("cache/digests")).settled_at_once();
        std::fs::create_dir_all(d.path().join("cache")).expect("mkdir");
        (d, file, memo)
    }

    fn stamp(file: &Path) -> Stamp {
        let f = std::fs::File::open(file).expect("open");
        Stamp::of_file(&f, 0, 11).expect("stat")
    }

    #[test]
    fn a_remembered_digest_counts_only_while_the_file_is_unchanged() {
        let (_d, file, memo) = memo_fixture();
        let digest = Digest::of(Algorithm::Sha256, b"layer bytes");
        memo.put(&stamp(&file), &digest);
        assert_eq!(memo.get(&stamp(&file), Algorithm::Sha256), Some(digest));
        assert_eq!(memo.get(&stamp(&file), Algorithm::Sha512), None);
        // Same length, other bytes, the old mtime put back: the ctime still tells.
        let before = std::fs::metadata(&file).expect("stat");
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&file, b"LAYER BYTES").expect("write");
        let f = std::fs::File::options()
            .write(true)
            .open(&file)
            .expect("open");
        f.set_modified(before.modified().expect("mtime"))
            .expect("utimes");
        assert_eq!(memo.get(&stamp(&file), Algorithm::Sha256), None);
        // The same bytes at another place of the file are another entry.
        let f = std::fs::File::open(&file).expect("open");
        let other = Stamp::of_file(&f, 1, 10).expect("stat");
        assert_eq!(memo.get(&other, Algorithm::Sha256), None);
    }

    #[test]
    fn files_or_memos_others_can_write_are_never_trusted() {
        use std::os::unix::fs::PermissionsExt;
        let set = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        let (d, file, memo) = memo_fixture();
        let digest = Digest::of(Algorithm::Sha256, b"layer bytes");
        // A layer file others may write is neither remembered nor answered.
        set(&file, 0o666);
        memo.put(&stamp(&file), &digest);
        assert!(!memo.dir.exists());
        set(&file, 0o644);
        memo.put(&stamp(&file), &digest);
        assert!(memo.get(&stamp(&file), Algorithm::Sha256).is_some());
        set(&file, 0o664);
        assert_eq!(memo.get(&stamp(&file), Algorithm::Sha256), None);
        // (A chmod changes the ctime: the entry is gone with it.)
        set(&file, 0o644);
        assert_eq!(memo.get(&stamp(&file), Algorithm::Sha256), None);
        memo.put(&stamp(&file), &digest);
        assert!(memo.get(&stamp(&file), Algorithm::Sha256).is_some());
        // A memo (or its cache) others may write may hold what they planted: not read.
        for dir in [memo.dir.clone(), d.path().join("cache")] {
            set(&dir, 0o777);
            assert_eq!(memo.get(&stamp(&file), Algorithm::Sha256), None);
            set(&dir, 0o755);
        }
        assert!(memo.get(&stamp(&file), Algorithm::Sha256).is_some());
        // An entry that is not the digest it must be is a miss.
        let name = memo.dir.join(stamp(&file).name());
        std::fs::write(&name, "sha256:../x 1 2 3").expect("write");
        assert_eq!(memo.get(&stamp(&file), Algorithm::Sha256), None);
    }

    #[test]
    fn hashing_aside_gives_the_digest_of_hashing_inline() {
        // Several chunks, a partial last one, read in odd sizes.
        let data: Vec<u8> = (0..(ASIDE_CHUNK * ASIDE_CHUNKS * 2 + 12_345))
            .map(|i| (i % 251) as u8)
            .collect();
        for algorithm in [Algorithm::Sha256, Algorithm::Blake3] {
            let mut aside = HashingAside::new(&data[..], algorithm);
            let mut head = vec![0; 70_001];
            aside.read_exact(&mut head).expect("read");
            assert_eq!(head.as_slice(), data.get(..70_001).expect("head"));
            let (n, d) = aside.drain().expect("drain");
            assert_eq!(n, data.len() as u64);
            assert_eq!(d, Digest::of(algorithm, &data));
            // And an empty input.
            let (n, d) = HashingAside::new(&b""[..], algorithm)
                .drain()
                .expect("drain");
            assert_eq!((n, d), (0, Digest::of(algorithm, b"")));
        }
    }

    #[test]
    fn hashing_reader_counts_and_hashes_everything() {
        let mut r = Hashing::new(&b"abc"[..], Algorithm::Sha256);
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
        let (_, d) = Hashing::new(&b"abc"[..], Algorithm::Blake3)
            .drain()
            .expect("drain");
        assert_eq!(
            d.to_string(),
            "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        // Image documents never name BLAKE3.
        assert!(Digest::parse(&d.to_string()).is_err());
    }
}
