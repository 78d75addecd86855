//! The scanner as a library, in typed values (after rustsec's `Report::generate`): an
//! [`ImageSource`], the advisory database opened once ([`open_db`]), a [`Policy`] whose gate is
//! a `block` flag, and a [`ScanOutcome`] carrying a [`Verdict`]. No flag strings, no exit codes:
//! the `berth scan` command (`cli`) maps its flags onto these and the verdict onto its exit code.
//!
//! A scan is two halves: [`read_image`] reads the image's untrusted bytes into an inventory (it
//! may run in a job's user namespace, asked by a [`ReadRequest`] and answering a [`ReadOutcome`]
//! as JSON), and [`judge`] matches that inventory against the advisories under the policy, pure.
//! [`scan_image`] is both in one process.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::advisory::db::{AdvisoryDb, DbError, StaleAction};
use crate::inventory::Inventory;
use crate::policy::Policy;
use crate::report::Report;
use crate::scan::{LayerCache, ScanError};
use crate::source::{self, SourceError};

/// Where an image is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ImageSource {
    /// An image in a containers-storage overlay store, read in place.
    Store {
        /// The store's root (`~/.local/share/containers/storage`).
        root: PathBuf,
        /// Read-only stores whose layers images in `root` may build on, searched after it.
        additional: Vec<PathBuf>,
        /// A name (`localhost/app:tag`), a full id or an id prefix: matched against the
        /// store's listing, never used as a path.
        image: String,
    },
    /// A docker-archive or OCI-archive tar, an OCI layout directory or a root filesystem
    /// directory on this host.
    Path {
        /// The file or directory (its last component must not be a link).
        path: PathBuf,
        /// The artifact name in reports.
        name: String,
    },
    /// A CycloneDX or SPDX JSON SBOM, matched as `trivy sbom` matches it.
    Sbom {
        /// The file (its last component must not be a link).
        path: PathBuf,
        /// The artifact name in reports.
        name: String,
    },
}

/// How old the advisories may be, and what happens past that age.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// Days after the database's newest record before it counts as stale.
    pub max_age_days: i64,
    /// A warning, or an error that stops the scan.
    pub on_stale: StaleAction,
}

/// What blocks a job or fails a scan: the image, the database, or berth's reading of either.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The advisory database is missing, stale (when that is an error) or unreadable.
    #[error(transparent)]
    Db(#[from] DbError),
    /// The image could not be opened.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The image could not be read whole.
    #[error(transparent)]
    Scan(#[from] ScanError),
    /// The SBOM could not be read.
    #[error(transparent)]
    Sbom(#[from] crate::sbom::SbomError),
}

impl Error {
    /// The store, file or layer that could not be read, when the fault is the image's (to tell
    /// whose store is broken); `None` for the database's.
    pub fn image_fault(&self) -> Option<&Path> {
        match self {
            Self::Source(e) => Some(e.path()),
            Self::Scan(e) => Some(e.path()),
            Self::Sbom(crate::sbom::SbomError::Read { path, .. })
            | Self::Sbom(crate::sbom::SbomError::TooLarge { path })
            | Self::Sbom(crate::sbom::SbomError::Format { path, .. }) => Some(path),
            Self::Db(_) => None,
        }
    }
}

/// Opens the advisory database at `path`, with its staleness warnings at `now` (or an error,
/// when `freshness` asks for one). Open it once for all the images of a scan, before reading
/// any: a missing or stale database fails fast.
pub fn open_db(
    path: &Path,
    freshness: Freshness,
    now: OffsetDateTime,
) -> Result<(AdvisoryDb, Vec<String>), Error> {
    let db = AdvisoryDb::open(path)?;
    let warnings = db
        .meta
        .check_age(now, freshness.max_age_days, freshness.on_stale)?
        .into_iter()
        .collect();
    Ok((db, warnings))
}

/// What reading an image found: its inventory and the warnings on the way. The part of a scan
/// that reads untrusted bytes; it may run in another process (a job's user namespace) and cross
/// back as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Read {
    /// Packages and OS.
    pub inventory: Inventory,
    /// Warnings met while reading.
    pub warnings: Vec<String>,
}

/// Opens `source` and builds its inventory (no advisories, no policy); `cache` keeps per-layer
/// results of tar layers across scans.
pub fn read_image(source: &ImageSource, cache: Option<&LayerCache>) -> Result<Read, Error> {
    let image = match source {
        ImageSource::Sbom { path, name } => {
            let (inventory, warnings) = crate::sbom::read(path, name)?;
            return Ok(Read {
                inventory,
                warnings,
            });
        }
        ImageSource::Path { path, name } => source::open(path, name)?,
        ImageSource::Store {
            root,
            additional,
            image,
        } => {
            let roots: Vec<&Path> = std::iter::once(root.as_path())
                .chain(additional.iter().map(PathBuf::as_path))
                .collect();
            source::open_containers_storage_in(&roots, image)?
        }
    };
    let (inventory, warnings) = crate::scan::inventory(&image, cache)?;
    Ok(Read {
        inventory,
        warnings,
    })
}

/// Whether the policy lets the image through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing the policy blocks on was found (or the policy does not block).
    Pass,
    /// The policy blocks: `findings` reported findings remain after every filter.
    Fail {
        /// How many.
        findings: usize,
    },
}

impl Verdict {
    /// The verdict `report` carries.
    pub fn of(report: &Report) -> Self {
        if report.blocked {
            Self::Fail {
                findings: report.findings.len(),
            }
        } else {
            Self::Pass
        }
    }
}

/// A judged image: the report (render it with [`crate::render::render`]), the verdict, and the
/// warnings of reading and matching it (the database's are [`open_db`]'s).
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    /// The report.
    pub report: Report,
    /// Whether the policy lets the image through.
    pub verdict: Verdict,
    /// Warnings for the log.
    pub warnings: Vec<String>,
}

/// The pure part of a scan: `read`'s inventory against the advisories of `db` under `policy`.
pub fn judge(read: Read, db: &AdvisoryDb, policy: &Policy) -> Result<ScanOutcome, Error> {
    let Read {
        inventory,
        mut warnings,
    } = read;
    let index = db.load_for(&inventory)?;
    let report = Report::generate(&inventory, &index, policy);
    warnings.extend(report.warnings.iter().cloned());
    Ok(ScanOutcome {
        verdict: Verdict::of(&report),
        report,
        warnings,
    })
}

/// Reads `source` and judges it: [`read_image`] then [`judge`], in this process.
pub fn scan_image(
    source: &ImageSource,
    db: &AdvisoryDb,
    policy: &Policy,
    cache: Option<&LayerCache>,
) -> Result<ScanOutcome, Error> {
    judge(read_image(source, cache)?, db, policy)
}

/// What a process reading an image for berth is asked: `berth scan-inventory --request JSON`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRequest {
    /// The image.
    pub source: ImageSource,
    /// The per-layer result cache, if any.
    pub cache_dir: Option<PathBuf>,
}

/// [`read_image`]'s result as it crosses a process boundary.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ReadOutcome {
    /// The image was read.
    Read(Read),
    /// It was not.
    Failed {
        /// The image itself could not be read whole (else: berth's own trouble).
        image_fault: bool,
        /// The path the failure concerns, when known.
        path: Option<PathBuf>,
        /// What went wrong.
        message: String,
    },
}

impl ReadOutcome {
    /// [`read_image`] as `request` asks, with its error told as data.
    pub fn of(request: &ReadRequest) -> Self {
        // No digest memo: this runs as the job, over a cache the job can write (decision 0006).
        let cache = request.cache_dir.as_ref().map(LayerCache::new);
        match read_image(&request.source, cache.as_ref()) {
            Ok(read) => Self::Read(read),
            Err(e) => Self::Failed {
                image_fault: e.image_fault().is_some(),
                path: e.image_fault().map(Path::to_owned),
                message: e.to_string(),
            },
        }
    }

    /// The request itself could not be understood (berth's own trouble: it wrote it).
    pub fn bad_request(message: String) -> Self {
        Self::Failed {
            image_fault: false,
            path: None,
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::{date, datetime};

    use super::*;
    use crate::inventory::{Package, PkgType};
    use crate::policy::IgnoreList;
    use crate::report::Suppression;
    use crate::severity::Severity;

    const NOW: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

    /// An advisory database in `dir` whose one record makes minimist 1.2.5 a HIGH finding.
    fn db(dir: &Path) -> AdvisoryDb {
        let osv = dir.join("osv");
        std::fs::create_dir_all(&osv).expect("mkdir");
        std::fs::write(
            osv.join("a.json"),
            r#"{"id":"GHSA-fake-0001","modified":"2026-11-20T00:00:00Z","database_specific":{"severity":"HIGH"},
            "affected":[{"package":{"ecosystem":"npm","name":"minimist"},
            "ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.6"}]}]}]}"#,
        )
        .expect("write");
        let path = dir.join("db");
        crate::advisory::db::import(&[osv], &path, NOW).expect("import");
        let freshness = Freshness {
            max_age_days: 7,
            on_stale: StaleAction::Fail,
        };
        let (db, warnings) = open_db(&path, freshness, NOW).expect("open");
        assert!(warnings.is_empty(), "{warnings:?}");
        db
    }

    fn minimist() -> Read {
        let mut inventory = Inventory::default();
        inventory.packages.push(Package::new(
            PkgType::NodePkg,
            "minimist",
            "1.2.5",
            "app/node_modules/minimist/package.json",
        ));
        Read {
            inventory,
            warnings: vec![],
        }
    }

    #[test]
    fn a_gate_that_blocks_fails_the_verdict_and_one_that_reports_passes() {
        let d = tempfile::tempdir().expect("tempdir");
        let db = db(d.path());
        let today = date!(2026 - 11 - 23);
        let blocking = Policy::block_at(Severity::High, today);
        let outcome = judge(minimist(), &db, &blocking).expect("judge");
        assert_eq!(outcome.verdict, Verdict::Fail { findings: 1 });
        let reporting = Policy {
            block: false,
            ..blocking.clone()
        };
        let outcome = judge(minimist(), &db, &reporting).expect("judge");
        assert_eq!(outcome.verdict, Verdict::Pass);
        assert_eq!(outcome.report.findings.len(), 1, "still reported");
        // Above the finding's severity the gate has nothing to block on.
        let critical = Policy::block_at(Severity::Critical, today);
        let outcome = judge(minimist(), &db, &critical).expect("judge");
        assert_eq!(outcome.verdict, Verdict::Pass);
    }

    #[test]
    fn the_policys_ignore_list_lets_the_image_through_until_the_rule_expires() {
        let d = tempfile::tempdir().expect("tempdir");
        let db = db(d.path());
        let mut policy = Policy::block_at(Severity::High, date!(2026 - 11 - 23));
        policy.ignore = IgnoreList::parse("GHSA-fake-0001 exp:2027-01-01\n", ".trivyignore")
            .expect("ignore list");
        let outcome = judge(minimist(), &db, &policy).expect("judge");
        assert_eq!(outcome.verdict, Verdict::Pass);
        assert!(
            matches!(
                outcome.report.suppressed.as_slice(),
                [s] if matches!(&s.reason, Suppression::Ignored { source, .. } if source == ".trivyignore")
            ),
            "{:?}",
            outcome.report.suppressed
        );
        policy.today = date!(2027 - 01 - 01);
        let outcome = judge(minimist(), &db, &policy).expect("judge");
        assert_eq!(outcome.verdict, Verdict::Fail { findings: 1 });
    }

    #[test]
    fn scan_image_reads_a_source_and_judges_it() {
        let d = tempfile::tempdir().expect("tempdir");
        let db = db(d.path());
        let rootfs = d.path().join("rootfs");
        let pkg = rootfs.join("app/node_modules/minimist");
        std::fs::create_dir_all(&pkg).expect("mkdir");
        std::fs::write(
            pkg.join("package.json"),
            r#"{"name":"minimist","version":"1.2.5"}"#,
        )
        .expect("write");
        let source = ImageSource::Path {
            path: rootfs,
            name: "fixture".into(),
        };
        let policy = Policy::block_at(Severity::High, date!(2026 - 11 - 23));
        let outcome = scan_image(&source, &db, &policy, None).expect("scan");
        assert_eq!(outcome.verdict, Verdict::Fail { findings: 1 });
        assert_eq!(outcome.report.artifact.name, "fixture");
    }

    #[test]
    fn an_image_missing_from_its_store_is_the_images_fault_told_as_data() {
        let d = tempfile::tempdir().expect("tempdir");
        let request = ReadRequest {
            source: ImageSource::Store {
                root: d.path().join("store"),
                additional: vec![],
                image: "localhost/app:latest".into(),
            },
            cache_dir: None,
        };
        match ReadOutcome::of(&request) {
            ReadOutcome::Failed {
                image_fault: true,
                path: Some(path),
                message,
            } => {
                assert!(path.starts_with(d.path().join("store")), "{path:?}");
                assert!(message.contains("store"), "{message}");
            }
            other => panic!("the missing store was not the image's fault: {other:?}"),
        }
    }

    #[test]
    fn a_read_request_crosses_as_json_and_nothing_unknown_is_accepted() {
        let request = ReadRequest {
            source: ImageSource::Store {
                root: "/jobs/k/storage".into(),
                additional: vec!["/var/lib/berth/images".into()],
                image: "f".repeat(64),
            },
            cache_dir: Some("/var/lib/berth/scan-cache".into()),
        };
        let json = serde_json::to_string(&request).expect("encode");
        assert_eq!(
            serde_json::from_str::<ReadRequest>(&json).expect("decode"),
            request
        );
        for bad in [
            r#"{"source":{"path":{"path":"/x","name":"x"}},"cache_dir":null,"also":1}"#,
            r#"{"source":{"path":{"path":"/x","name":"x","follow":true}},"cache_dir":null}"#,
            r#"{"source":{"url":{"path":"/x"}},"cache_dir":null}"#,
        ] {
            assert!(
                serde_json::from_str::<ReadRequest>(bad).is_err(),
                "{bad} was accepted"
            );
        }
    }
}
