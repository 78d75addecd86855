//! rpm: the rpm database in any of its three formats (SQLite `rpmdb.sqlite`, Berkeley DB
//! `Packages`, NDB `Packages.db`, under `/var/lib/rpm` or `/usr/lib/sysimage/rpm`), read from
//! memory. Each entry is an rpm header blob; the tags needed are decoded here.

use rusqlite::{Connection, MAIN_DB, OpenFlags};

use crate::inventory::{Package, PkgType};

const NAME: u32 = 1000;
const VERSION: u32 = 1001;
const RELEASE: u32 = 1002;
const EPOCH: u32 = 1003;
const VENDOR: u32 = 1011;
const LICENSE: u32 = 1014;
const ARCH: u32 = 1022;
const SOURCERPM: u32 = 1044;
const DIRINDEXES: u32 = 1116;
const BASENAMES: u32 = 1117;
const DIRNAMES: u32 = 1118;

/// One decoded header: the tags berth uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Release.
    pub release: String,
    /// Epoch, when set.
    pub epoch: Option<u32>,
    /// Architecture.
    pub arch: Option<String>,
    /// Source rpm file name.
    pub source_rpm: Option<String>,
    /// License.
    pub license: Option<String>,
    /// Vendor.
    pub vendor: Option<String>,
    /// Installed files.
    pub files: Vec<String>,
}

fn be32(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4)
        .map(|x| u32::from_be_bytes([x[0], x[1], x[2], x[3]]))
}

fn cstrings(data: &[u8], count: usize) -> Vec<String> {
    data.split(|&c| c == 0)
        .take(count)
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect()
}

/// Decodes an rpm header blob (as stored in rpmdb: index count, data length, entries, data).
pub fn parse_header(blob: &[u8]) -> Option<Header> {
    let il = usize::try_from(be32(blob, 0)?).ok()?;
    let dl = usize::try_from(be32(blob, 4)?).ok()?;
    let data_start = 8usize.checked_add(il.checked_mul(16)?)?;
    let data = blob.get(data_start..data_start.checked_add(dl)?)?;
    let mut h = Header::default();
    let (mut dirs, mut bases, mut idx) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..il {
        let e = 8 + i * 16;
        let (tag, ty, off, count) = (
            be32(blob, e)?,
            be32(blob, e + 4)?,
            be32(blob, e + 8)?,
            be32(blob, e + 12)?,
        );
        let (off, count) = (usize::try_from(off).ok()?, usize::try_from(count).ok()?);
        let at = data.get(off..)?;
        let string = || cstrings(at, 1).into_iter().next();
        match (tag, ty) {
            (NAME, 6) => h.name = string()?,
            (VERSION, 6) => h.version = string()?,
            (RELEASE, 6) => h.release = string()?,
            (EPOCH, 4) => h.epoch = be32(at, 0),
            (ARCH, 6) => h.arch = string(),
            (SOURCERPM, 6) => h.source_rpm = string(),
            (LICENSE, 6) => h.license = string(),
            (VENDOR, 6) => h.vendor = string(),
            (DIRNAMES, 8) => dirs = cstrings(at, count),
            (BASENAMES, 8) => bases = cstrings(at, count),
            (DIRINDEXES, 4) => idx = (0..count).filter_map(|k| be32(at, k * 4)).collect(),
            _ => {}
        }
    }
    h.files = bases
        .iter()
        .zip(&idx)
        .filter_map(|(b, &d)| {
            dirs.get(usize::try_from(d).ok()?)
                .map(|d| format!("{d}{b}").trim_start_matches('/').to_owned())
        })
        .collect();
    (!h.name.is_empty()).then_some(h)
}

/// Vendors of the distributions' own packages (Trivy 0.74's list); an rpm from anyone else is
/// third-party.
const OS_VENDORS: &[&str] = &[
    "Amazon Linux",
    "Amazon.com",
    "CentOS",
    "Fedora Project",
    "Oracle America",
    "Red Hat",
    "AlmaLinux",
    "CloudLinux",
    "VMware",
    "SUSE",
    "openSUSE",
    "Microsoft Corporation",
    "Rocky",
];

/// Whether the distribution itself provides a package: its vendor is an OS vendor, or (Amazon
/// Linux's own packages may carry none) it has no vendor and an `amzn` release.
pub fn provided_by_vendor(h: &Header) -> bool {
    match &h.vendor {
        Some(v) if !v.is_empty() => OS_VENDORS.iter().any(|os| v.starts_with(os)),
        _ => h.release.contains("amzn"),
    }
}

/// The source package name from a source rpm file name (`glibc-2.34-60.el9.src.rpm` → glibc).
pub fn source_name(srpm: &str) -> Option<&str> {
    let base = srpm.strip_suffix(".rpm")?;
    let base = base.rsplit_once('.').map_or(base, |(b, _)| b); // drop ".src"
    let (rest, _release) = base.rsplit_once('-')?;
    let (name, _version) = rest.rsplit_once('-')?;
    Some(name)
}

/// Reads an rpmdb.sqlite file's bytes into packages and the files they own.
/// Packages and owned files from an rpm database in whichever format its bytes say.
pub fn parse_db(data: &[u8], path: &str) -> Result<(Vec<Package>, Vec<String>), String> {
    use super::rpmdb_formats::{Format, bdb_blobs, detect, ndb_blobs};
    let blobs = match detect(data) {
        Some(Format::Sqlite) => return parse_sqlite(data, path),
        Some(Format::BerkeleyDb) => bdb_blobs(data),
        Some(Format::Ndb) => ndb_blobs(data),
        None => Err("neither SQLite, Berkeley DB nor NDB".to_owned()),
    }
    .map_err(|why| format!("{path}: not a readable rpm database: {why}"))?;
    Ok(packages(blobs, path))
}

/// Packages and owned files from header blobs (gpg-pubkey pseudo-packages left out).
fn packages(blobs: impl IntoIterator<Item = Vec<u8>>, path: &str) -> (Vec<Package>, Vec<String>) {
    let mut pkgs = Vec::new();
    let mut owned = Vec::new();
    for blob in blobs {
        let Some(h) = parse_header(&blob) else {
            continue;
        };
        if h.name == "gpg-pubkey" {
            continue;
        }
        let evr = match h.epoch {
            Some(e) if e > 0 => format!("{e}:{}-{}", h.version, h.release),
            _ => format!("{}-{}", h.version, h.release),
        };
        let mut p = Package::new(PkgType::Rpm, &h.name, evr.clone(), path);
        p.arch = h.arch.clone();
        p.src_name = h
            .source_rpm
            .as_deref()
            .and_then(source_name)
            .map(str::to_owned);
        p.src_version = Some(evr);
        p.third_party = !provided_by_vendor(&h);
        p.licenses = h.license.into_iter().collect();
        // A third-party package's files stay open to the language analyzers.
        if !p.third_party {
            owned.extend(h.files);
        }
        pkgs.push(p);
    }
    (pkgs, owned)
}

/// Packages and owned files from a SQLite rpmdb.
pub fn parse_sqlite(data: &[u8], path: &str) -> Result<(Vec<Package>, Vec<String>), String> {
    let err = |e: rusqlite::Error| format!("{path}: not a readable rpm sqlite database: {e}");
    let mut conn = Connection::open_with_flags(
        ":memory:",
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_MEMORY,
    )
    .map_err(err)?;
    // rpm keeps its database in WAL mode; an in-memory copy must say "rollback journal"
    // (header bytes 18 and 19) or SQLite refuses to open it.
    let mut copy = data.to_vec();
    if copy.len() > 19 && copy.starts_with(b"SQLite format 3\0") {
        copy[18] = 1;
        copy[19] = 1;
    }
    conn.deserialize_read_exact(MAIN_DB, copy.as_slice(), copy.len(), true)
        .map_err(err)?;
    let mut stmt = conn.prepare("SELECT blob FROM Packages").map_err(err)?;
    let blobs = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .map_err(err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    Ok(packages(blobs, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a header blob from (tag, type, count, data) entries.
    fn header(entries: &[(u32, u32, u32, Vec<u8>)]) -> Vec<u8> {
        let mut index = Vec::new();
        let mut data = Vec::new();
        for (tag, ty, count, d) in entries {
            while *ty == 4 && data.len() % 4 != 0 {
                data.push(0);
            }
            for v in [*tag, *ty, u32::try_from(data.len()).unwrap(), *count] {
                index.extend(v.to_be_bytes());
            }
            data.extend(d);
        }
        let mut b = u32::try_from(entries.len()).unwrap().to_be_bytes().to_vec();
        b.extend(u32::try_from(data.len()).unwrap().to_be_bytes());
        b.extend(index);
        b.extend(data);
        b
    }

    #[test]
    fn header_and_srpm() {
        let s = |x: &str| [x.as_bytes(), b"\0"].concat();
        let blob = header(&[
            (NAME, 6, 1, s("openssl-libs")),
            (VERSION, 6, 1, s("3.0.7")),
            (RELEASE, 6, 1, s("25.el9_3")),
            (EPOCH, 4, 1, 1u32.to_be_bytes().to_vec()),
            (SOURCERPM, 6, 1, s("openssl-3.0.7-25.el9_3.src.rpm")),
            (DIRNAMES, 8, 1, s("/usr/lib64/")),
            (
                BASENAMES,
                8,
                2,
                [s("libssl.so.3"), s("libcrypto.so.3")].concat(),
            ),
            (
                DIRINDEXES,
                4,
                2,
                [0u32.to_be_bytes(), 0u32.to_be_bytes()].concat(),
            ),
        ]);
        let h = parse_header(&blob).unwrap();
        assert_eq!(
            (
                h.name.as_str(),
                h.version.as_str(),
                h.release.as_str(),
                h.epoch
            ),
            ("openssl-libs", "3.0.7", "25.el9_3", Some(1))
        );
        assert_eq!(
            h.files,
            ["usr/lib64/libssl.so.3", "usr/lib64/libcrypto.so.3"]
        );
        assert_eq!(
            source_name("openssl-3.0.7-25.el9_3.src.rpm"),
            Some("openssl")
        );
        assert_eq!(
            source_name("python3.11-3.11.5-1.el9.src.rpm"),
            Some("python3.11")
        );
        assert!(parse_header(&blob[..20]).is_none());
        assert!(parse_sqlite(b"not sqlite", "x").is_err());
    }
}
