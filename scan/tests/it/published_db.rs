//! The advisory database published once and fetched by every host: `berth db publish`, signed
//! with the real `minisign` (Debian's package; `integration/peers/install-fleet-peers.sh`
//! installs it), served by a loopback HTTP server in the test, fetched by `berth db update
//! --from URL`. A fetch that fails any check leaves the old database byte for byte.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_scan::advisory::published::{ARCHIVE_NAME, DEFAULT_MAX_BYTES};
use berth_scan::cli::{self, DbPublishArgs, DbUpdateArgs};
use time::macros::datetime;

const MINISIGN: &str = "/usr/bin/minisign";

fn osv(id: &str, package: &str) -> String {
    format!(
        r#"{{"id":"{id}","modified":"2026-11-20T00:00:00Z","database_specific":{{"severity":"HIGH"}},
 "affected":[{{"package":{{"ecosystem":"npm","name":"{package}"}},
 "ranges":[{{"type":"SEMVER","events":[{{"introduced":"0"}},{{"fixed":"1.2.6"}}]}}]}}]}}"#
    )
}

fn osv_record() -> String {
    osv("GHSA-key-0001", "left-pad")
}

/// A database at `dir/name` holding one advisory.
fn database(dir: &Path, name: &str, id: &str, package: &str) -> PathBuf {
    let source = dir.join(format!("{name}-osv"));
    std::fs::create_dir_all(&source).unwrap();
    std::fs::write(source.join("a.json"), osv(id, package)).unwrap();
    let db = dir.join(name);
    cli::run_db_update(
        &DbUpdateArgs {
            from: vec![source.display().to_string()],
            db: db.clone(),
            public_key: None,
            max_size: DEFAULT_MAX_BYTES,
        },
        datetime!(2026-11-23 0:00 UTC),
    )
    .unwrap();
    db
}

/// Every file under `dir` with its bytes: the database as it is on disk.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(Result::unwrap)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().to_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn minisign(args: &[&str], dir: &Path) {
    let out = crate::oracle::oracle_cmd(MINISIGN)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {MINISIGN} ({e}): run integration/peers/install-fleet-peers.sh")
        });
    assert!(
        out.status.success(),
        "minisign {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A minisign key pair made by minisign itself, without a password: (public key line, secret
/// key file).
fn key_pair(dir: &Path, name: &str) -> (String, PathBuf) {
    minisign(
        &[
            "-G",
            "-W",
            "-p",
            &format!("{name}.pub"),
            "-s",
            &format!("{name}.sec"),
        ],
        dir,
    );
    let public = std::fs::read_to_string(dir.join(format!("{name}.pub"))).unwrap();
    let line = public.lines().nth(1).unwrap().to_owned();
    (line, dir.join(format!("{name}.sec")))
}

fn sign(secret: &Path, file: &Path) -> Vec<u8> {
    minisign(
        &[
            "-S",
            "-s",
            secret.to_str().unwrap(),
            "-m",
            file.to_str().unwrap(),
            "-x",
            "sig.tmp",
        ],
        file.parent().unwrap(),
    );
    let sig = file.parent().unwrap().join("sig.tmp");
    let bytes = std::fs::read(&sig).unwrap();
    std::fs::remove_file(sig).unwrap();
    bytes
}

/// How the server answers one path.
#[derive(Clone)]
enum Reply {
    /// 200 with the body and its length.
    Whole(Vec<u8>),
    /// 200 claiming the body's full length, then the connection closes after `sent` bytes.
    CutShort { body: Vec<u8>, sent: usize },
    /// 200 without a length: the body ends when the connection closes.
    Unsized(Vec<u8>),
}

type Routes = Arc<Mutex<HashMap<String, Reply>>>;

/// A loopback HTTP/1.1 server answering from `routes` (404 for the rest), one connection at a
/// time, for the rest of the test process.
fn serve(routes: Routes) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
            let reply = routes.lock().unwrap().get(&path).cloned();
            let _ = match reply {
                None => stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                ),
                Some(Reply::Whole(body)) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(&body)),
                Some(Reply::CutShort { body, sent }) => stream
                    .write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                            body.len()
                        )
                        .as_bytes(),
                    )
                    .and_then(|()| stream.write_all(&body[..sent])),
                Some(Reply::Unsized(body)) => stream
                    .write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\n")
                    .and_then(|()| stream.write_all(&body)),
            };
        }
    });
    format!("http://{addr}")
}

struct Fixture {
    _dir: tempfile::TempDir,
    /// The host's current database.
    db: PathBuf,
    /// What it holds before any update.
    before: BTreeMap<PathBuf, Vec<u8>>,
    archive: Vec<u8>,
    checksum: Vec<u8>,
    signature: Vec<u8>,
    /// A signature of the same archive by another key.
    foreign_signature: Vec<u8>,
    public_key: String,
    secret_key: PathBuf,
    routes: Routes,
    base: String,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        let (public_key, secret_key) = key_pair(&keys, "publisher");
        let (_, foreign) = key_pair(&keys, "stranger");
        let host = dir.path().join("host");
        let db = database(&host, "advisories", "GHSA-old-0001", "left-pad");
        let before = snapshot(&db);
        let published = database(dir.path(), "published-db", "GHSA-new-0001", "minimist");
        let out = dir.path().join("out");
        let made = cli::run_db_publish(&DbPublishArgs {
            db: published,
            out: out.clone(),
        })
        .unwrap();
        assert_eq!(made.archive, out.join(ARCHIVE_NAME));
        // The checksum file is what sha256sum writes and checks.
        let check = crate::oracle::oracle_cmd("sha256sum")
            .args(["-c", &format!("{ARCHIVE_NAME}.sha256")])
            .current_dir(&out)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "sha256sum -c: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        let signature = sign(&secret_key, &made.archive);
        let foreign_signature = sign(&foreign, &made.archive);
        let routes: Routes = Arc::default();
        let base = serve(routes.clone());
        Self {
            _dir: dir,
            db,
            before,
            archive: std::fs::read(&made.archive).unwrap(),
            checksum: std::fs::read(&made.checksum).unwrap(),
            signature,
            foreign_signature,
            public_key,
            secret_key,
            routes,
            base,
        }
    }

    /// Publishes under `/NAME/` and returns the archive's URL.
    fn publish(
        &self,
        name: &str,
        archive: Reply,
        checksum: &[u8],
        signature: Option<&[u8]>,
    ) -> String {
        let path = format!("/{name}/{ARCHIVE_NAME}");
        let mut routes = self.routes.lock().unwrap();
        routes.insert(path.clone(), archive);
        routes.insert(format!("{path}.sha256"), Reply::Whole(checksum.to_vec()));
        if let Some(signature) = signature {
            routes.insert(format!("{path}.minisig"), Reply::Whole(signature.to_vec()));
        }
        format!("{}{path}", self.base)
    }

    fn update(&self, url: &str, with_key: bool, max_size: u64) -> Result<String, String> {
        cli::run_db_update(
            &DbUpdateArgs {
                from: vec![url.to_owned()],
                db: self.db.clone(),
                public_key: with_key.then(|| cli::parse_public_key(&self.public_key).unwrap()),
                max_size,
            },
            datetime!(2026-11-23 12:00 UTC),
        )
        .map(|s| format!("{} records", s.meta.records))
        .map_err(|e| e.to_string())
    }

    /// The update is refused naming `check` and the URL, and the old database is untouched,
    /// with no staging left beside it.
    fn refused(&self, url: &str, with_key: bool, max_size: u64, check: &str) {
        let err = self
            .update(url, with_key, max_size)
            .expect_err("the update must be refused");
        assert!(err.contains(check), "{check:?} not in: {err}");
        assert!(err.contains(url), "the URL is not named: {err}");
        assert!(
            err.contains("unchanged") && err.contains("fix:"),
            "no fix or no word on the old database: {err}"
        );
        assert_eq!(
            snapshot(&self.db),
            self.before,
            "the old database changed: {err}"
        );
        self.nothing_staged();
    }

    fn nothing_staged(&self) {
        let left: Vec<_> = std::fs::read_dir(self.db.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "advisories" && n != "advisories-osv")
            .collect();
        assert!(left.is_empty(), "left beside the database: {left:?}");
    }
}

fn sha256_line(bytes: &[u8]) -> Vec<u8> {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}  {ARCHIVE_NAME}\n").into_bytes()
}

#[test]
fn a_signed_published_database_replaces_the_old_one() {
    let f = Fixture::new();
    let url = f.publish(
        "good",
        Reply::Whole(f.archive.clone()),
        &f.checksum,
        Some(&f.signature),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f.db, std::fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(
        f.update(&url, true, DEFAULT_MAX_BYTES),
        Ok("1 records".into())
    );
    let mode = std::fs::metadata(&f.db).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o750, "the database's permissions are kept");
    let after = snapshot(&f.db);
    assert_ne!(after, f.before);
    let meta = std::fs::read_to_string(f.db.join("berth-advisories.json")).unwrap();
    assert!(meta.contains("published-db-osv"), "{meta}");
    f.nothing_staged();
    // Without a key the checksum alone decides.
    let unsigned = f.publish(
        "unsigned",
        Reply::Whole(f.archive.clone()),
        &f.checksum,
        None,
    );
    assert_eq!(
        f.update(&unsigned, false, DEFAULT_MAX_BYTES),
        Ok("1 records".into())
    );
}

#[test]
fn a_truncated_download_leaves_the_old_database() {
    let f = Fixture::new();
    let sent = f.archive.len() / 2;
    let url = f.publish(
        "cut",
        Reply::CutShort {
            body: f.archive.clone(),
            sent,
        },
        &f.checksum,
        Some(&f.signature),
    );
    f.refused(
        &url,
        true,
        DEFAULT_MAX_BYTES,
        "download of the database archive",
    );
    // A body without a length that ends early is caught by the checksum.
    let without_length = f.publish(
        "cut-unsized",
        Reply::Unsized(f.archive[..sent].to_vec()),
        &f.checksum,
        None,
    );
    f.refused(
        &without_length,
        false,
        DEFAULT_MAX_BYTES,
        "checksum check failed",
    );
}

#[test]
fn a_tampered_archive_or_a_wrong_checksum_leaves_the_old_database() {
    let f = Fixture::new();
    let mut tampered = f.archive.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x20;
    let url = f.publish(
        "tampered",
        Reply::Whole(tampered.clone()),
        &f.checksum,
        None,
    );
    f.refused(&url, false, DEFAULT_MAX_BYTES, "checksum check failed");
    let wrong = sha256_line(b"another file");
    let url = f.publish("wrong-sum", Reply::Whole(f.archive.clone()), &wrong, None);
    f.refused(&url, false, DEFAULT_MAX_BYTES, "checksum check failed");
    let url = f.publish(
        "no-sum-line",
        Reply::Whole(f.archive.clone()),
        b"garbage\n",
        None,
    );
    f.refused(&url, false, DEFAULT_MAX_BYTES, "checksum check failed");
    // Whoever controls the server can publish a matching checksum; the signature still fails.
    let url = f.publish(
        "tampered-resummed",
        Reply::Whole(tampered.clone()),
        &sha256_line(&tampered),
        Some(&f.signature),
    );
    f.refused(&url, true, DEFAULT_MAX_BYTES, "signature check failed");
}

#[test]
fn with_a_key_a_missing_or_foreign_signature_leaves_the_old_database() {
    let f = Fixture::new();
    let url = f.publish(
        "unsigned",
        Reply::Whole(f.archive.clone()),
        &f.checksum,
        None,
    );
    f.refused(
        &url,
        true,
        DEFAULT_MAX_BYTES,
        "download of the signature file",
    );
    let url = f.publish(
        "foreign",
        Reply::Whole(f.archive.clone()),
        &f.checksum,
        Some(&f.foreign_signature),
    );
    f.refused(&url, true, DEFAULT_MAX_BYTES, "signature check failed");
    let url = f.publish(
        "garbled",
        Reply::Whole(f.archive.clone()),
        &f.checksum,
        Some(b"untrusted comment: x\nnot base64\n"),
    );
    f.refused(&url, true, DEFAULT_MAX_BYTES, "signature check failed");
}

#[test]
fn downloads_are_capped() {
    let f = Fixture::new();
    let limit = f.archive.len() as u64 - 1;
    let url = f.publish("sized", Reply::Whole(f.archive.clone()), &f.checksum, None);
    f.refused(&url, false, limit, "size check failed");
    // Without a length the cap holds while streaming.
    let url = f.publish(
        "unsized",
        Reply::Unsized(f.archive.clone()),
        &f.checksum,
        None,
    );
    f.refused(&url, false, limit, "size check failed");
    let mut huge = f.checksum.clone();
    huge.extend(std::iter::repeat_n(b'\n', 8192));
    let url = f.publish("huge-sum", Reply::Whole(f.archive.clone()), &huge, None);
    f.refused(&url, false, DEFAULT_MAX_BYTES, "size check failed");
}

#[test]
fn a_signed_archive_holding_other_files_is_refused_before_anything_is_written() {
    let f = Fixture::new();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    let evil = b"owned";
    header.set_size(evil.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    // Header::set_path refuses `..`; a hostile publisher writes the bytes directly.
    header.as_old_mut().name[..13].copy_from_slice(b"../escaped.sh");
    header.set_cksum();
    builder.append(&header, &evil[..]).unwrap();
    let hostile = builder.into_inner().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(ARCHIVE_NAME);
    std::fs::write(&file, &hostile).unwrap();
    let signature = sign(&f.secret_key, &file);
    let url = f.publish(
        "hostile",
        Reply::Whole(hostile.clone()),
        &sha256_line(&hostile),
        Some(&signature),
    );
    f.refused(&url, true, DEFAULT_MAX_BYTES, "archive check failed");
    assert!(
        !f.db
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("escaped.sh")
            .exists()
    );
}

#[test]
fn with_a_key_only_a_published_database_is_accepted_and_it_comes_alone() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let (public_key, _) = key_pair(&keys, "publisher");
    let osv = dir.path().join("osv");
    std::fs::create_dir(&osv).unwrap();
    std::fs::write(osv.join("a.json"), osv_record()).unwrap();
    let db = dir.path().join("db");
    let update = |from: Vec<String>, key: bool| {
        cli::run_db_update(
            &DbUpdateArgs {
                from,
                db: db.clone(),
                public_key: key.then(|| cli::parse_public_key(&public_key).unwrap()),
                max_size: DEFAULT_MAX_BYTES,
            },
            datetime!(2026-11-23 12:00 UTC),
        )
        .map_err(|e| e.to_string())
    };
    let err = update(vec![osv.display().to_string()], true).unwrap_err();
    assert!(
        err.contains("cannot be verified") && err.contains("remove the public key"),
        "{err}"
    );
    let err = update(
        vec![
            "http://127.0.0.1:9/berth-advisories.tar".to_owned(),
            osv.display().to_string(),
        ],
        false,
    )
    .unwrap_err();
    assert!(err.contains("pass it alone"), "{err}");
    assert!(!db.exists(), "nothing was written");
    assert!(cli::parse_public_key("RWnot-a-key").is_err());
}
