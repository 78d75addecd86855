//! The on-disk advisory database: OSV import from a directory or `all.zip` files, a compact
//! per-ecosystem gzip JSON layout, loading only the ecosystems a scan needs, and staleness.
//!
//! Layout of a database directory:
//! ```text
//! berth-advisories.json          metadata: schema, import time, newest record, ecosystems
//! eco/<sanitised name>/<shard>.json.gz
//!                                one EcosystemData per shard of an ecosystem: packages are
//!                                spread over shards by a hash of their name, so a scan loads
//!                                only the shards holding the packages it has
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::index::{AdvisoryIndex, EcosystemData};
use super::osv::OsvRecord;

/// The metadata file's name.
pub const META_FILE: &str = "berth-advisories.json";
/// Layout version written by this code.
pub const SCHEMA_VERSION: u32 = 3;
/// Packages per shard aimed at when writing.
const PACKAGES_PER_SHARD: usize = 256;
/// Most shards per ecosystem.
const MAX_SHARDS: usize = 256;

/// Errors of the advisory database.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A file could not be read or written.
    #[error(
        "advisory database: cannot access {path}: {source}; check the path and its permissions"
    )]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A zip archive is broken.
    #[error(
        "advisory import: {path} is not a readable zip archive: {source}; download OSV's all.zip again"
    )]
    Zip {
        /// The archive.
        path: PathBuf,
        /// The cause.
        #[source]
        source: zip::result::ZipError,
    },
    /// The database metadata or an ecosystem file is not what this version writes.
    #[error(
        "advisory database {path} is unreadable: {reason}; rebuild it with `berth db update --from <osv dir|all.zip>`"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No database at the path.
    #[error(
        "no advisory database at {0}; create one with `berth db update --from <osv dir|all.zip>`"
    )]
    Missing(PathBuf),
    /// The source to import from is not supported.
    #[error(
        "cannot import advisories from {0:?}: only local paths and file:// URLs are supported; download the OSV all.zip first and pass its path"
    )]
    UnsupportedSource(String),
    /// Nothing importable was found.
    #[error(
        "no OSV records found under {0}; pass a directory of OSV JSON files or OSV all.zip archives"
    )]
    Empty(PathBuf),
    /// The data is older than the configured maximum age and the policy says fail.
    #[error(
        "advisory database is stale: newest data from {updated}, {age_days} days old (limit {max_days}); run `berth db update` or raise the limit"
    )]
    Stale {
        /// Newest data timestamp.
        updated: String,
        /// Age in days.
        age_days: i64,
        /// The limit.
        max_days: i64,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DbError + '_ {
    move |source| DbError::Io {
        path: path.to_owned(),
        source,
    }
}

/// One ecosystem's entry in the metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EcosystemMeta {
    /// Directory under `eco/`.
    pub dir: String,
    /// Number of shards (files `0.json.gz` … `<shards-1>.json.gz`).
    pub shards: usize,
    /// Vulnerabilities.
    pub vulns: usize,
    /// Packages with entries.
    pub packages: usize,
}

/// The database metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DbMeta {
    /// Layout version.
    pub schema_version: u32,
    /// When the import ran (RFC 3339).
    pub imported_at: String,
    /// How fresh the data is (RFC 3339): the newest `modified` of the least recently updated
    /// source, counting no record dated after the import (a record dated 2099 says nothing about
    /// how fresh the rest is). Staleness is measured from here and from `imported_at`.
    pub data_updated_at: Option<String>,
    /// What was imported.
    pub sources: Vec<String>,
    /// Each source's own freshness, in the order of `sources`.
    #[serde(default)]
    pub source_data: Vec<SourceData>,
    /// Records read, withdrawn ones included.
    pub records: usize,
    /// Ecosystems.
    pub ecosystems: BTreeMap<String, EcosystemMeta>,
}

/// One imported source's own timestamp.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceData {
    /// Records read from it.
    pub records: usize,
    /// Its newest `modified` not after the import (RFC 3339); none when no record has one.
    pub updated_at: Option<String>,
    /// Records dated after the import, left out of `updated_at`.
    pub dated_after_import: usize,
}

/// What to do with stale data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StaleAction {
    /// Warn and go on.
    #[default]
    Warn,
    /// Refuse to scan.
    Fail,
}

impl DbMeta {
    /// The time staleness is measured from: the older of the import and the data's own time.
    pub fn updated_at(&self) -> Option<OffsetDateTime> {
        let parse = |s: &str| OffsetDateTime::parse(s, &Rfc3339).ok();
        let imported = parse(&self.imported_at)?;
        Some(match self.data_updated_at.as_deref().and_then(parse) {
            Some(data) => data.min(imported),
            None => imported,
        })
    }

    /// Checks the data's age: `Ok(None)` when fresh, `Ok(Some(warning))` when stale and the
    /// action is Warn, `Err(Stale)` when stale and the action is Fail.
    pub fn check_age(
        &self,
        now: OffsetDateTime,
        max_age_days: i64,
        action: StaleAction,
    ) -> Result<Option<String>, DbError> {
        let Some(updated) = self.updated_at() else {
            return Ok(Some(
                "advisory database has no readable update time; run `berth db update`".into(),
            ));
        };
        let age = (now - updated).whole_days();
        if age <= max_age_days {
            return Ok(None);
        }
        let updated = updated.format(&Rfc3339).unwrap_or_default();
        match action {
            StaleAction::Warn => Ok(Some(format!(
                "advisory database is stale: newest data from {updated}, {age} days old (limit {max_age_days}); run `berth db update`"
            ))),
            StaleAction::Fail => Err(DbError::Stale {
                updated,
                age_days: age,
                max_days: max_age_days,
            }),
        }
    }
}

fn sanitize(eco: &str) -> String {
    let mut s: String = eco
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    // Different ecosystems could sanitise alike; a short checksum keeps file names apart.
    let sum = eco
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    s.push_str(&format!("-{sum:08x}"));
    s
}

/// The shard a package name lives in.
fn shard_of(name: &str, shards: usize) -> usize {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    usize::try_from(h % shards.max(1) as u64).unwrap_or(0)
}

/// Reads every OSV record under `source`: a JSON file, an `all.zip`, or a directory tree of
/// either. Unparseable JSON files are returned as warnings.
pub fn read_records(source: &Path) -> Result<(Vec<OsvRecord>, Vec<String>), DbError> {
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    let meta = fs::metadata(source).map_err(io(source))?;
    let files: Vec<PathBuf> = if meta.is_dir() {
        let mut v: Vec<PathBuf> = walkdir::WalkDir::new(source)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(walkdir::DirEntry::into_path)
            .collect();
        v.sort();
        v
    } else {
        vec![source.to_owned()]
    };
    for f in files {
        let ext = f.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if ext == "zip" {
            let file = fs::File::open(&f).map_err(io(&f))?;
            let mut zip = zip::ZipArchive::new(file).map_err(|source| DbError::Zip {
                path: f.clone(),
                source,
            })?;
            for i in 0..zip.len() {
                let mut entry = zip.by_index(i).map_err(|source| DbError::Zip {
                    path: f.clone(),
                    source,
                })?;
                let name = entry.name().map(|n| n.into_owned()).unwrap_or_default();
                if !name.ends_with(".json") {
                    continue;
                }
                let mut buf = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0));
                entry.read_to_end(&mut buf).map_err(io(&f))?;
                match OsvRecord::from_json(&buf) {
                    Ok(r) => records.push(r),
                    Err(e) => warnings.push(format!("{}!{name}: {e}", f.display())),
                }
            }
        } else if ext == "json" {
            let buf = fs::read(&f).map_err(io(&f))?;
            match OsvRecord::from_json(&buf) {
                Ok(r) => records.push(r),
                Err(e) => warnings.push(format!("{}: {e}", f.display())),
            }
        }
    }
    Ok((records, warnings))
}

/// Summary of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// The metadata written.
    pub meta: DbMeta,
    /// Files that were skipped, with the reason.
    pub warnings: Vec<String>,
}

/// Resolves `--from`: a path or a `file://` URL.
pub fn resolve_source(from: &str) -> Result<PathBuf, DbError> {
    if let Some(p) = from.strip_prefix("file://") {
        return Ok(PathBuf::from(p));
    }
    if from.contains("://") {
        return Err(DbError::UnsupportedSource(from.to_owned()));
    }
    Ok(PathBuf::from(from))
}

/// Imports OSV records from each source into a fresh database at `db_dir`, replacing what was
/// there. `now` is the import time recorded in the metadata.
pub fn import(
    sources: &[PathBuf],
    db_dir: &Path,
    now: OffsetDateTime,
) -> Result<ImportSummary, DbError> {
    let mut index = AdvisoryIndex::default();
    let mut warnings = Vec::new();
    let mut count = 0usize;
    let mut source_data = Vec::new();
    for s in sources {
        let (records, w) = read_records(s)?;
        if records.is_empty() {
            return Err(DbError::Empty(s.clone()));
        }
        warnings.extend(w);
        count += records.len();
        let mut data = SourceData {
            records: records.len(),
            updated_at: None,
            dated_after_import: 0,
        };
        let mut newest: Option<OffsetDateTime> = None;
        for r in &records {
            if let Some(m) = r
                .modified
                .as_deref()
                .and_then(|m| OffsetDateTime::parse(m, &Rfc3339).ok())
            {
                if m > now {
                    data.dated_after_import += 1;
                } else {
                    newest = Some(newest.map_or(m, |n| n.max(m)));
                }
            }
            index.insert(r);
        }
        if data.dated_after_import > 0 {
            warnings.push(format!(
                "{}: {} record(s) dated after the import ({}); they do not count towards the database's freshness",
                s.display(),
                data.dated_after_import,
                now.format(&Rfc3339).unwrap_or_default()
            ));
        }
        data.updated_at = newest.and_then(|n| n.format(&Rfc3339).ok());
        source_data.push(data);
    }
    index.share_ratings();
    let meta = write(&index, db_dir, now, sources, source_data, count)?;
    Ok(ImportSummary { meta, warnings })
}

/// Writes an index as a database directory.
pub fn write(
    index: &AdvisoryIndex,
    db_dir: &Path,
    now: OffsetDateTime,
    sources: &[PathBuf],
    source_data: Vec<SourceData>,
    records: usize,
) -> Result<DbMeta, DbError> {
    let eco_dir = db_dir.join("eco");
    if eco_dir.exists() {
        fs::remove_dir_all(&eco_dir).map_err(io(&eco_dir))?;
    }
    fs::create_dir_all(&eco_dir).map_err(io(&eco_dir))?;
    let mut ecosystems = BTreeMap::new();
    for (name, data) in &index.ecosystems {
        let dir = sanitize(name);
        let shards = data
            .packages
            .len()
            .div_ceil(PACKAGES_PER_SHARD)
            .clamp(1, MAX_SHARDS);
        let mut parts: Vec<EcosystemData> = vec![EcosystemData::default(); shards];
        for (pkg, entries) in &data.packages {
            let part = &mut parts[shard_of(pkg, shards)];
            for e in entries {
                if let Some(v) = data.vulns.get(&e.vuln) {
                    part.vulns
                        .entry(e.vuln.clone())
                        .or_insert_with(|| v.clone());
                }
            }
            part.packages.insert(pkg.clone(), entries.clone());
        }
        let sub = eco_dir.join(&dir);
        fs::create_dir_all(&sub).map_err(io(&sub))?;
        for (i, part) in parts.iter().enumerate() {
            let path = sub.join(format!("{i}.json.gz"));
            let f = fs::File::create(&path).map_err(io(&path))?;
            let mut gz = GzEncoder::new(std::io::BufWriter::new(f), Compression::default());
            serde_json::to_writer(&mut gz, part).map_err(|e| DbError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            gz.finish().and_then(|mut w| w.flush()).map_err(io(&path))?;
        }
        ecosystems.insert(
            name.clone(),
            EcosystemMeta {
                dir,
                shards,
                vulns: data.vulns.len(),
                packages: data.packages.len(),
            },
        );
    }
    let fmt = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    let meta = DbMeta {
        schema_version: SCHEMA_VERSION,
        imported_at: fmt(now),
        // The least recently updated source decides; a source without dates counts from the
        // import.
        data_updated_at: source_data
            .iter()
            .map(|d| {
                d.updated_at
                    .as_deref()
                    .and_then(|u| OffsetDateTime::parse(u, &Rfc3339).ok())
                    .unwrap_or(now)
            })
            .min()
            .map(fmt),
        sources: sources.iter().map(|s| s.display().to_string()).collect(),
        source_data,
        records,
        ecosystems,
    };
    let meta_path = db_dir.join(META_FILE);
    let tmp = db_dir.join(format!("{META_FILE}.tmp"));
    let text = serde_json::to_vec_pretty(&meta).map_err(|e| DbError::Corrupt {
        path: meta_path.clone(),
        reason: e.to_string(),
    })?;
    fs::write(&tmp, text).map_err(io(&tmp))?;
    fs::rename(&tmp, &meta_path).map_err(io(&meta_path))?;
    Ok(meta)
}

/// An opened database: metadata read, ecosystems loaded on demand, every file read through a
/// handle on the directory opened with the metadata, so a database swapped in by `berth db
/// update` meanwhile is never mixed with this one.
#[derive(Debug, Clone)]
pub struct AdvisoryDb {
    dir: PathBuf,
    handle: std::sync::Arc<berth_beneath::Dir>,
    /// The metadata.
    pub meta: DbMeta,
}

/// Largest metadata file read.
const MAX_META_BYTES: u64 = 64 << 20;

impl AdvisoryDb {
    /// Opens the database at `dir`.
    pub fn open(dir: &Path) -> Result<Self, DbError> {
        let path = dir.join(META_FILE);
        let missing = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::NotFound {
                DbError::Missing(dir.to_owned())
            } else {
                DbError::Io {
                    path: path.clone(),
                    source: e,
                }
            }
        };
        // The admin may point scan_db at a link; the handle is on what it names.
        let resolved = fs::canonicalize(dir).map_err(missing)?;
        let handle = berth_beneath::Dir::open(&resolved).map_err(missing)?;
        let text = handle
            .read(Path::new(META_FILE), MAX_META_BYTES)
            .map_err(missing)?;
        let meta: DbMeta = serde_json::from_slice(&text).map_err(|e| DbError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if meta.schema_version != SCHEMA_VERSION {
            return Err(DbError::Corrupt {
                path,
                reason: format!(
                    "layout version {} (this berth reads {SCHEMA_VERSION})",
                    meta.schema_version
                ),
            });
        }
        Ok(Self {
            dir: dir.to_owned(),
            handle: std::sync::Arc::new(handle),
            meta,
        })
    }

    /// Loads the ecosystems matching `wanted` (names, or patterns with `*`), all of them.
    pub fn load(&self, wanted: &[String]) -> Result<AdvisoryIndex, DbError> {
        self.load_packages(wanted, None)
    }

    /// Loads the ecosystems matching `wanted`; with `packages`, only the shards that can hold
    /// one of those (advisory-normalised) package names.
    pub fn load_packages(
        &self,
        wanted: &[String],
        packages: Option<&std::collections::BTreeSet<String>>,
    ) -> Result<AdvisoryIndex, DbError> {
        let mut index = AdvisoryIndex::default();
        for (name, m) in &self.meta.ecosystems {
            if !wanted
                .iter()
                .any(|w| crate::inventory::ecosystem_matches(w, name))
            {
                continue;
            }
            let shards: std::collections::BTreeSet<usize> = match packages {
                Some(p) => p
                    .iter()
                    .map(|n| shard_of(&super::index::normalize_package_name(name, n), m.shards))
                    .collect(),
                None => (0..m.shards).collect(),
            };
            let data = index.ecosystems.entry(name.clone()).or_default();
            for i in shards {
                let relative = Path::new("eco").join(&m.dir).join(format!("{i}.json.gz"));
                let path = self.dir.join(&relative);
                let f = self.handle.open_file(&relative).map_err(io(&path))?;
                let part: EcosystemData = serde_json::from_reader(std::io::BufReader::new(
                    GzDecoder::new(f),
                ))
                .map_err(|e| DbError::Corrupt {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                data.vulns.extend(part.vulns);
                data.packages.extend(part.packages);
            }
        }
        Ok(index)
    }

    /// Loads the shards holding advisories for the inventory's packages.
    pub fn load_for(&self, inv: &crate::inventory::Inventory) -> Result<AdvisoryIndex, DbError> {
        let mut wanted: Vec<String> = inv
            .packages
            .iter()
            .flat_map(|p| p.ecosystems(inv.os.as_ref()))
            .collect();
        wanted.sort();
        wanted.dedup();
        let names: std::collections::BTreeSet<String> = inv
            .packages
            .iter()
            .flat_map(|p| std::iter::once(p.advisory_name()).chain(p.src_name.clone()))
            .collect();
        self.load_packages(&wanted, Some(&names))
    }
}
