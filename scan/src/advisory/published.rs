//! The advisory database published once and fetched by every host: `berth db publish` packs a
//! database directory into one tar file with a `sha256sum`-style checksum file beside it (the
//! admin signs the tar with minisign); `berth db update --from URL` downloads the three,
//! verifies the checksum (and the minisign signature when a public key is configured) while it
//! streams, unpacks only the database's own files into a staging directory beside the current
//! database, checks the result opens, and only then swaps it in with one atomic rename. Any
//! failed check leaves the current database as it was, byte for byte.
//!
//! Published files, for `URL = …/berth-advisories.tar`:
//! ```text
//! URL           the database directory as a plain tar (its shards are gzip already)
//! URL.sha256    "<64 hex>  berth-advisories.tar\n", as `sha256sum` writes it
//! URL.minisig   minisign's signature of URL (`minisign -S -m berth-advisories.tar`)
//! ```

use std::fs;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use minisign_verify::{PublicKey, Signature};
use ring::digest::{Context, SHA256};

use super::db::{AdvisoryDb, DbError, DbMeta, META_FILE};

/// The published archive's file name (`berth db publish` writes it; a URL ending in `.tar` is a
/// published database).
pub const ARCHIVE_NAME: &str = "berth-advisories.tar";
/// Suffix of the checksum file published beside the archive.
pub const CHECKSUM_SUFFIX: &str = ".sha256";
/// Suffix of minisign's signature published beside the archive.
pub const SIGNATURE_SUFFIX: &str = ".minisig";
/// Largest archive downloaded unless the admin says otherwise (`--max-size`).
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;
/// Largest checksum or signature file: both are a few lines.
const MAX_SIDE_FILE_BYTES: u64 = 4096;
/// Most entries an archive may hold: the layout has at most 256 shards per ecosystem.
const MAX_ENTRIES: usize = 200_000;

/// Whether an http(s) source names a published database rather than OSV data.
pub fn is_published_url(url: &str) -> bool {
    (url.starts_with("http://") || url.starts_with("https://"))
        && url
            .split(['?', '#'])
            .next()
            .is_some_and(|path| path.ends_with(".tar"))
}

/// What `berth db publish` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The archive.
    pub archive: PathBuf,
    /// The checksum file beside it.
    pub checksum: PathBuf,
    /// The archive's SHA-256, hex.
    pub sha256: String,
    /// The archive's size in bytes.
    pub bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Packs the database at `db_dir` into `out_dir/berth-advisories.tar` and writes
/// `berth-advisories.tar.sha256` beside it, each through a temporary file and a rename. The
/// database must open and every shard its metadata names must be there.
pub fn publish(db_dir: &Path, out_dir: &Path) -> Result<Published, DbError> {
    let db = AdvisoryDb::open(db_dir)?;
    let files = database_files(db_dir, &db.meta)?;
    fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let archive = out_dir.join(ARCHIVE_NAME);
    let tmp = out_dir.join(format!(".{ARCHIVE_NAME}.tmp"));
    let file = fs::File::create(&tmp).map_err(io(&tmp))?;
    let mut hashing = HashingWriter {
        inner: std::io::BufWriter::new(file),
        hash: Context::new(&SHA256),
        bytes: 0,
    };
    {
        let mut builder = tar::Builder::new(&mut hashing);
        builder.mode(tar::HeaderMode::Deterministic);
        for relative in &files {
            let path = db_dir.join(relative);
            let mut source = fs::File::open(&path).map_err(io(&path))?;
            let len = source.metadata().map_err(io(&path))?.len();
            let mut header = tar::Header::new_ustar();
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(len);
            header.set_mode(0o644);
            header.set_mtime(0);
            builder
                .append_data(&mut header, relative, &mut source)
                .map_err(io(&path))?;
        }
        builder.finish().map_err(io(&tmp))?;
    }
    hashing.inner.flush().map_err(io(&tmp))?;
    hashing.inner.get_ref().sync_all().map_err(io(&tmp))?;
    let sha256 = hex(hashing.hash.finish().as_ref());
    let bytes = hashing.bytes;
    fs::rename(&tmp, &archive).map_err(io(&archive))?;
    let checksum = out_dir.join(format!("{ARCHIVE_NAME}{CHECKSUM_SUFFIX}"));
    let tmp = out_dir.join(format!(".{ARCHIVE_NAME}{CHECKSUM_SUFFIX}.tmp"));
    fs::write(&tmp, format!("{sha256}  {ARCHIVE_NAME}\n")).map_err(io(&tmp))?;
    fs::rename(&tmp, &checksum).map_err(io(&checksum))?;
    Ok(Published {
        archive,
        checksum,
        sha256,
        bytes,
    })
}

/// The files of a database, relative to its directory: every shard its metadata names, then
/// the metadata. A shard that is missing or not a regular file is an error.
fn database_files(db_dir: &Path, meta: &DbMeta) -> Result<Vec<PathBuf>, DbError> {
    let mut files = Vec::new();
    for eco in meta.ecosystems.values() {
        for shard in 0..eco.shards {
            let relative = Path::new("eco")
                .join(&eco.dir)
                .join(format!("{shard}.json.gz"));
            let path = db_dir.join(&relative);
            let kind = fs::symlink_metadata(&path).map_err(io(&path))?;
            if !kind.is_file() {
                return Err(DbError::Corrupt {
                    path,
                    reason: "a shard is not a regular file".into(),
                });
            }
            files.push(relative);
        }
    }
    files.push(PathBuf::from(META_FILE));
    Ok(files)
}

struct HashingWriter<W> {
    inner: W,
    hash: Context,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which published file a download problem is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishedFile {
    /// The database archive.
    Archive,
    /// Its checksum file.
    Checksum,
    /// Its minisign signature.
    Signature,
}

impl std::fmt::Display for PublishedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Archive => "database archive",
            Self::Checksum => "checksum file",
            Self::Signature => "signature file",
        })
    }
}

/// The check a published database failed, each with its fix.
#[derive(Debug, thiserror::Error)]
pub enum FetchProblem {
    /// A file could not be downloaded whole.
    #[error(
        "download of the {file} {url} failed: {message} (fix: check that this host reaches the URL and that the database, its .sha256 and, with db_public_key, its .minisig are all published there)"
    )]
    Download {
        /// Which file.
        file: PublishedFile,
        /// Its URL.
        url: String,
        /// What went wrong (a truncated body says so).
        message: String,
    },
    /// A file is larger than allowed.
    #[error(
        "size check failed: the {file} {url} is larger than {limit} bytes (fix: for the archive, raise `--max-size` if the published database really is that big; a checksum or signature file is never this big)"
    )]
    TooLarge {
        /// Which file.
        file: PublishedFile,
        /// Its URL.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The checksum file is not `<sha256>  berth-advisories.tar`.
    #[error(
        "checksum check failed: {url} is not a checksum file for {ARCHIVE_NAME}: {reason} (fix: publish again with `berth db publish`)"
    )]
    ChecksumFile {
        /// The checksum file's URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The archive is not what the checksum file says.
    #[error(
        "checksum check failed: {url} has SHA-256 {actual}, the published checksum says {expected} (fix: the download was cut short or altered on the way or on the server; run the update again, and if it persists publish the database again with `berth db publish`)"
    )]
    ChecksumMismatch {
        /// The archive's URL.
        url: String,
        /// The published checksum.
        expected: String,
        /// What arrived.
        actual: String,
    },
    /// A public key is configured and the signature is not a minisign signature.
    #[error(
        "signature check failed: {url} is not a minisign signature: {reason} (fix: sign the archive with `minisign -S -s <secret key> -m {ARCHIVE_NAME}` and publish the .minisig beside it)"
    )]
    SignatureFile {
        /// The signature's URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The signature does not verify with the configured key.
    #[error(
        "signature check failed: {url} is not signed by the key in db_public_key: {reason} (fix: sign with the secret key matching db_public_key, or set db_public_key to the publisher's public key)"
    )]
    SignatureInvalid {
        /// The archive's URL.
        url: String,
        /// minisign's word.
        reason: String,
    },
    /// The archive holds something other than a database.
    #[error(
        "archive check failed: {url} is not a berth advisory database: {reason} (fix: publish it with `berth db publish`, which writes only the database's files)"
    )]
    Archive {
        /// The archive's URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// The unpacked database does not open.
    #[error(
        "database check failed: {url} unpacks to a database this berth cannot read: {source} (fix: publish it with the same berth version the hosts run)"
    )]
    Database {
        /// The archive's URL.
        url: String,
        /// Why it does not open.
        #[source]
        source: DbError,
    },
    /// Staging or swapping on this host failed.
    #[error(
        "cannot stage the new database at {path}: {source} (fix: check that the database's parent directory exists, is writable and has room)"
    )]
    Local {
        /// The local path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// A refused update: the problem, and that the current database is unchanged.
#[derive(Debug, thiserror::Error)]
#[error("advisory database not updated, {problem}; the database at {} is unchanged", db.display())]
pub struct FetchError {
    /// The database that was kept.
    pub db: PathBuf,
    /// What failed.
    pub problem: Box<FetchProblem>,
}

/// How a published database is fetched.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// The archive's URL; the checksum and signature are at the same URL plus their suffix.
    pub url: String,
    /// The database directory to replace.
    pub db: PathBuf,
    /// The publisher's minisign public key: with it, the signature must be there and verify.
    pub public_key: Option<PublicKey>,
    /// Largest archive accepted.
    pub max_bytes: u64,
}

/// Downloads, verifies and installs a published database; on any failed check the database at
/// `settings.db` is left as it was and the error names the check, the URL and the fix.
pub fn fetch(settings: &FetchSettings) -> Result<DbMeta, FetchError> {
    let fail = |problem| FetchError {
        db: settings.db.clone(),
        problem: Box::new(problem),
    };
    let staging = Staging::new(&settings.db).map_err(fail)?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)))
        .build()
        .into();
    let url = settings.url.as_str();
    let checksum_url = format!("{url}{CHECKSUM_SUFFIX}");
    let expected = parse_checksum(
        &checksum_url,
        &get_small(&agent, &checksum_url, PublishedFile::Checksum).map_err(fail)?,
    )
    .map_err(fail)?;
    let signature = match &settings.public_key {
        None => None,
        Some(key) => {
            let signature_url = format!("{url}{SIGNATURE_SUFFIX}");
            let text = get_small(&agent, &signature_url, PublishedFile::Signature).map_err(fail)?;
            let signature = std::str::from_utf8(&text)
                .map_err(|e| e.to_string())
                .and_then(|t| Signature::decode(t).map_err(|e| e.to_string()))
                .map_err(|reason| {
                    fail(FetchProblem::SignatureFile {
                        url: signature_url.clone(),
                        reason,
                    })
                })?;
            Some((key, signature))
        }
    };
    let mut verifier = match &signature {
        None => None,
        Some((key, signature)) => Some(key.verify_stream(signature).map_err(|e| {
            fail(FetchProblem::SignatureInvalid {
                url: url.to_owned(),
                reason: e.to_string(),
            })
        })?),
    };
    let actual = download_archive(&agent, url, &staging.archive, settings.max_bytes, |chunk| {
        if let Some(v) = verifier.as_mut() {
            v.update(chunk);
        }
    })
    .map_err(fail)?;
    if actual != expected {
        return Err(fail(FetchProblem::ChecksumMismatch {
            url: url.to_owned(),
            expected,
            actual,
        }));
    }
    if let Some(v) = verifier.as_mut() {
        v.finalize().map_err(|e| {
            fail(FetchProblem::SignatureInvalid {
                url: url.to_owned(),
                reason: e.to_string(),
            })
        })?;
    }
    unpack(url, &staging.archive, &staging.dir).map_err(fail)?;
    let opened = AdvisoryDb::open(&staging.dir).and_then(|db| {
        database_files(&staging.dir, &db.meta)?;
        Ok(db)
    });
    let db = opened.map_err(|source| {
        fail(FetchProblem::Database {
            url: url.to_owned(),
            source,
        })
    })?;
    install_staged(&staging.dir, &settings.db).map_err(fail)?;
    Ok(db.meta)
}

fn get_small(agent: &ureq::Agent, url: &str, file: PublishedFile) -> Result<Vec<u8>, FetchProblem> {
    let download = |message: String| FetchProblem::Download {
        file,
        url: url.to_owned(),
        message,
    };
    let mut response = agent.get(url).call().map_err(|e| download(e.to_string()))?;
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_SIDE_FILE_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| download(e.to_string()))?;
    if body.len() as u64 > MAX_SIDE_FILE_BYTES {
        return Err(FetchProblem::TooLarge {
            file,
            url: url.to_owned(),
            limit: MAX_SIDE_FILE_BYTES,
        });
    }
    Ok(body)
}

fn parse_checksum(url: &str, body: &[u8]) -> Result<String, FetchProblem> {
    let bad = |reason: &str| FetchProblem::ChecksumFile {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let text = std::str::from_utf8(body).map_err(|_| bad("it is not text"))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let line = lines.next().ok_or_else(|| bad("it is empty"))?;
    if lines.next().is_some() {
        return Err(bad("it has more than one line"));
    }
    let (sum, name) = line
        .split_once(char::is_whitespace)
        .ok_or_else(|| bad("the line is not `<sha256>  <file name>`"))?;
    let name = name.trim_start().trim_start_matches('*');
    if name != ARCHIVE_NAME {
        return Err(bad(&format!("it names {name:?}")));
    }
    if sum.len() != 64 || !sum.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("the checksum is not 64 hex digits"));
    }
    Ok(sum.to_ascii_lowercase())
}

/// Streams the archive into `path`, hashing it, handing every chunk to `also`; returns the hex
/// SHA-256. A body cut short (fewer bytes than its Content-Length) fails here.
fn download_archive(
    agent: &ureq::Agent,
    url: &str,
    path: &Path,
    max_bytes: u64,
    mut also: impl FnMut(&[u8]),
) -> Result<String, FetchProblem> {
    let download = |message: String| FetchProblem::Download {
        file: PublishedFile::Archive,
        url: url.to_owned(),
        message,
    };
    let too_large = || FetchProblem::TooLarge {
        file: PublishedFile::Archive,
        url: url.to_owned(),
        limit: max_bytes,
    };
    let local = |source| FetchProblem::Local {
        path: path.to_owned(),
        source,
    };
    let mut response = agent.get(url).call().map_err(|e| download(e.to_string()))?;
    if response
        .body()
        .content_length()
        .is_some_and(|n| n > max_bytes)
    {
        return Err(too_large());
    }
    let mut body = response.body_mut().as_reader().take(max_bytes + 1);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(local)?;
    let mut hash = Context::new(&SHA256);
    let mut total = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(download(e.to_string())),
        };
        total += n as u64;
        if total > max_bytes {
            return Err(too_large());
        }
        let chunk = &buf[..n];
        hash.update(chunk);
        also(chunk);
        file.write_all(chunk).map_err(local)?;
    }
    file.sync_all().map_err(local)?;
    Ok(hex(hash.finish().as_ref()))
}

/// What a database may hold at a path: its metadata and shards as files (`eco/<dir>/<n>.json.gz`),
/// `eco` and `eco/<dir>` as directories; nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DatabaseEntry {
    File,
    Directory,
}

fn database_entry(path: &Path) -> Option<DatabaseEntry> {
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(s) => parts.push(s.to_str()?),
            _ => return None,
        }
    }
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            && s != "."
            && s != ".."
    };
    let shard = |s: &str| {
        s.strip_suffix(".json.gz")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    match parts.as_slice() {
        [meta] if *meta == META_FILE => Some(DatabaseEntry::File),
        ["eco"] => Some(DatabaseEntry::Directory),
        ["eco", dir] if plain(dir) => Some(DatabaseEntry::Directory),
        ["eco", dir, name] if plain(dir) && shard(name) => Some(DatabaseEntry::File),
        _ => None,
    }
}

/// Unpacks only the database's own files (regular files and their directories, no links, no
/// other names) into the fresh directory `into`.
fn unpack(url: &str, archive: &Path, into: &Path) -> Result<(), FetchProblem> {
    let bad = |reason: String| FetchProblem::Archive {
        url: url.to_owned(),
        reason,
    };
    let file = fs::File::open(archive).map_err(|source| FetchProblem::Local {
        path: archive.to_owned(),
        source,
    })?;
    let mut tar = tar::Archive::new(std::io::BufReader::new(file));
    let entries = tar.entries().map_err(|e| bad(e.to_string()))?;
    let mut count = 0usize;
    let mut saw_meta = false;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(bad(format!("it has more than {MAX_ENTRIES} entries")));
        }
        let path = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let Some(expected) = database_entry(&path) else {
            return Err(bad(format!("it holds {}", path.display())));
        };
        let target = into.join(&path);
        let local = |source| FetchProblem::Local {
            path: target.clone(),
            source,
        };
        match (expected, entry.header().entry_type()) {
            (DatabaseEntry::Directory, tar::EntryType::Directory) => {
                fs::create_dir_all(&target).map_err(local)?;
            }
            (DatabaseEntry::File, tar::EntryType::Regular) => {
                if let Some(parent) = target.parent() {
                    fs::create_dir_all(parent).map_err(local)?;
                }
                let mut out = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&target)
                    .map_err(|e| {
                        if e.kind() == std::io::ErrorKind::AlreadyExists {
                            bad(format!("it holds {} twice", path.display()))
                        } else {
                            local(e)
                        }
                    })?;
                std::io::copy(&mut entry, &mut out).map_err(|e| bad(e.to_string()))?;
                saw_meta |= path == Path::new(META_FILE);
            }
            (_, other) => {
                return Err(bad(format!(
                    "{} is a {other:?} entry where the database has a {}",
                    path.display(),
                    match expected {
                        DatabaseEntry::File => "file",
                        DatabaseEntry::Directory => "directory",
                    }
                )));
            }
        }
    }
    if saw_meta {
        Ok(())
    } else {
        Err(bad(format!("it has no {META_FILE}")))
    }
}

/// A staging archive and directory beside the database (same filesystem, so the swap is one
/// rename), removed when dropped: after a swap the directory holds the old database.
struct Staging {
    archive: PathBuf,
    dir: PathBuf,
}

impl Staging {
    fn new(db: &Path) -> Result<Self, FetchProblem> {
        let (parent, name) = beside(db)?;
        fs::create_dir_all(&parent).map_err(|source| FetchProblem::Local {
            path: parent.clone(),
            source,
        })?;
        let staging = Self {
            archive: parent.join(format!(".{name}.incoming.tar")),
            dir: parent.join(format!(".{name}.incoming")),
        };
        // What an interrupted update left.
        staging.remove();
        fs::create_dir(&staging.dir).map_err(|source| FetchProblem::Local {
            path: staging.dir.clone(),
            source,
        })?;
        Ok(staging)
    }

    fn remove(&self) {
        let _ = fs::remove_file(&self.archive);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.remove();
    }
}

fn beside(db: &Path) -> Result<(PathBuf, String), FetchProblem> {
    let name = db.file_name().and_then(|n| n.to_str()).map(str::to_owned);
    let parent = db.parent().filter(|p| !p.as_os_str().is_empty());
    match (parent, name) {
        (Some(parent), Some(name)) => Ok((parent.to_owned(), name)),
        (Some(parent), None) => Err(FetchProblem::Local {
            path: db.to_owned(),
            source: std::io::Error::other(format!(
                "the database path has no last component beneath {}",
                parent.display()
            )),
        }),
        (None, name) => Ok((PathBuf::from("."), name.unwrap_or_default())),
    }
}

/// Builds a database with `build` in a staging directory beside `db` and, when it succeeds,
/// swaps it in with one rename: a failed build leaves the current database as it was.
pub(crate) fn replace_with<T>(
    db: &Path,
    build: impl FnOnce(&Path) -> Result<T, DbError>,
) -> Result<T, DbError> {
    let local = |problem: FetchProblem| match problem {
        FetchProblem::Local { path, source } => DbError::Io { path, source },
        other => DbError::Io {
            path: db.to_owned(),
            source: std::io::Error::other(other.to_string()),
        },
    };
    let staging = Staging::new(db).map_err(local)?;
    let built = build(&staging.dir)?;
    install_staged(&staging.dir, db).map_err(local)?;
    Ok(built)
}

/// Puts the staged database in place with one rename: exchanged with the current one when there
/// is one (the old one is then at `staged` and goes with the staging), else moved there.
fn install_staged(staged: &Path, db: &Path) -> Result<(), FetchProblem> {
    use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
    let local = |source: nix::Error| FetchProblem::Local {
        path: db.to_owned(),
        source: source.into(),
    };
    // The new database keeps the current one's permissions (an admin may have opened or closed
    // it to the scanning identities).
    if let Ok(current) = fs::metadata(db) {
        fs::set_permissions(staged, current.permissions()).map_err(|source| {
            FetchProblem::Local {
                path: staged.to_owned(),
                source,
            }
        })?;
    }
    match renameat2(AT_FDCWD, staged, AT_FDCWD, db, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => Ok(()),
        Err(nix::Error::ENOENT) => renameat2(
            AT_FDCWD,
            staged,
            AT_FDCWD,
            db,
            RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(local),
        Err(e) => Err(local(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_databases_own_names_unpack() {
        let file = Some(DatabaseEntry::File);
        assert_eq!(database_entry(Path::new(META_FILE)), file);
        assert_eq!(
            database_entry(Path::new("eco/Debian-12-0000abcd/3.json.gz")),
            file
        );
        assert_eq!(
            database_entry(Path::new("eco/Debian-12-0000abcd")),
            Some(DatabaseEntry::Directory)
        );
        for bad in [
            "../x",
            "/berth-advisories.json",
            "eco/../../etc/passwd",
            "eco/a/b/0.json.gz",
            "eco/a/x.json.gz",
            "eco/a/0.json",
            "other.json",
            "./berth-advisories.json",
        ] {
            assert_eq!(database_entry(Path::new(bad)), None, "{bad}");
        }
    }

    #[test]
    fn the_checksum_file_is_sha256sums_line_for_the_archive() {
        let sum = "a".repeat(64);
        let url = "http://h/berth-advisories.tar.sha256";
        let ok = format!("{sum}  {ARCHIVE_NAME}\n");
        assert_eq!(parse_checksum(url, ok.as_bytes()).ok(), Some(sum.clone()));
        let binary = format!("{sum} *{ARCHIVE_NAME}\n");
        assert_eq!(
            parse_checksum(url, binary.as_bytes()).ok(),
            Some(sum.clone())
        );
        for bad in [
            String::new(),
            format!("{sum}  other.tar\n"),
            format!("{}  {ARCHIVE_NAME}\n", "a".repeat(63)),
            format!("{}  {ARCHIVE_NAME}\n", "g".repeat(64)),
            format!("{sum}  {ARCHIVE_NAME}\n{sum}  {ARCHIVE_NAME}\n"),
        ] {
            let err = parse_checksum(url, bad.as_bytes());
            assert!(
                matches!(err, Err(FetchProblem::ChecksumFile { .. })),
                "{bad:?}: {err:?}"
            );
        }
    }

    #[test]
    fn a_published_database_is_an_http_url_of_a_tar() {
        assert!(is_published_url("https://h/db/berth-advisories.tar"));
        assert!(is_published_url("http://127.0.0.1:8/x.tar?v=1"));
        assert!(!is_published_url("https://h/all.zip"));
        assert!(!is_published_url("/srv/berth-advisories.tar"));
        assert!(!is_published_url("file:///srv/berth-advisories.tar"));
    }
}
