//! The advisory database: import from an OSV directory and from all.zip, load, staleness.

use std::io::Write;
use std::path::PathBuf;

use berth_scan::advisory::db::{self, AdvisoryDb, DbError, StaleAction};
use berth_scan::inventory::{Inventory, Os, OsFamily, Package, PkgType};
use berth_scan::policy::Policy;
use berth_scan::report::Report;
use time::macros::{date, datetime};

const GLIBC: &str = r#"{"schema_version":"1.6.0","id":"DEBIAN-CVE-2099-0001","modified":"2026-11-20T10:00:00Z",
 "upstream":["CVE-2099-0001"],"affected":[{"package":{"ecosystem":"Debian:12","name":"glibc"},
 "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.36-9+deb12u15"}]}]}]}"#;
const LODASH: &str = r#"{"id":"GHSA-fake-0002","modified":"2026-11-01T00:00:00Z","database_specific":{"severity":"HIGH"},
 "affected":[{"package":{"ecosystem":"npm","name":"lodash"},
 "ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"4.17.21"}]}]}]}"#;
const WITHDRAWN: &str = r#"{"id":"GHSA-fake-0003","modified":"2026-11-01T00:00:00Z","withdrawn":"2026-11-02T00:00:00Z",
 "affected":[{"package":{"ecosystem":"npm","name":"lodash"},"versions":["4.17.15"]}]}"#;

fn inventory() -> Inventory {
    let libc = Package::new(
        PkgType::Deb,
        "libc6",
        "2.36-9+deb12u14",
        "var/lib/dpkg/status",
    )
    .with_source("glibc");
    Inventory {
        os: Some(Os {
            family: OsFamily::Debian,
            version: "12.15".into(),
        }),
        packages: vec![
            libc,
            Package::new(
                PkgType::NodePkg,
                "lodash",
                "4.17.15",
                "app/node_modules/lodash/package.json",
            ),
        ],
        ..Inventory::default()
    }
}

/// Checks the database in `dir`, whose stalest source's newest record is `updated`.
fn check_db(dir: &std::path::Path, updated: &str) {
    let db = AdvisoryDb::open(dir).unwrap();
    assert_eq!(db.meta.ecosystems.len(), 2, "{:?}", db.meta.ecosystems);
    assert_eq!(db.meta.data_updated_at.as_deref(), Some(updated));
    let inv = inventory();
    let idx = db.load_for(&inv).unwrap();
    assert_eq!(idx.vuln_count(), 2, "the withdrawn record is dropped");
    let r = Report::generate(&inv, &idx, &Policy::report_all(date!(2026 - 11 - 23)));
    let ids: Vec<&str> = r.findings.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, vec!["GHSA-fake-0002", "CVE-2099-0001"]);
    // Only what the inventory needs is loaded.
    let only_npm = db.load(&["npm".to_owned()]).unwrap();
    assert_eq!(only_npm.ecosystems.keys().collect::<Vec<_>>(), vec!["npm"]);
}

#[test]
fn import_from_directory() {
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("Debian")).unwrap();
    std::fs::write(src.path().join("Debian/DEBIAN-CVE-2099-0001.json"), GLIBC).unwrap();
    std::fs::write(src.path().join("GHSA-fake-0002.json"), LODASH).unwrap();
    std::fs::write(src.path().join("GHSA-fake-0003.json"), WITHDRAWN).unwrap();
    std::fs::write(src.path().join("broken.json"), "{not json").unwrap();
    std::fs::write(src.path().join("README.md"), "ignored").unwrap();
    let out = tempfile::tempdir().unwrap();
    let s = db::import(
        &[src.path().to_owned()],
        out.path(),
        datetime!(2026-11-23 12:00 UTC),
    )
    .unwrap();
    assert_eq!(s.meta.records, 3);
    assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
    assert!(s.warnings[0].contains("broken.json"));
    check_db(out.path(), "2026-11-20T10:00:00Z");
}

#[test]
fn import_from_all_zip() {
    let src = tempfile::tempdir().unwrap();
    let write_zip = |name: &str, files: &[(&str, &str)]| -> PathBuf {
        let path = src.path().join(name);
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (n, body) in files {
            z.start_file(*n, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(body.as_bytes()).unwrap();
        }
        z.finish().unwrap();
        path
    };
    let deb = write_zip("debian-all.zip", &[("DEBIAN-CVE-2099-0001.json", GLIBC)]);
    let npm = write_zip(
        "npm-all.zip",
        &[
            ("GHSA-fake-0002.json", LODASH),
            ("GHSA-fake-0003.json", WITHDRAWN),
        ],
    );
    let out = tempfile::tempdir().unwrap();
    db::import(&[deb, npm], out.path(), datetime!(2026-11-23 12:00 UTC)).unwrap();
    // Two sources: the npm one, updated last on 11-01, decides.
    check_db(out.path(), "2026-11-01T00:00:00Z");
    // A directory of zips works too, and re-import replaces the old content.
    db::import(
        &[src.path().to_owned()],
        out.path(),
        datetime!(2026-11-23 12:00 UTC),
    )
    .unwrap();
    check_db(out.path(), "2026-11-20T10:00:00Z");
}

#[test]
fn staleness_and_errors() {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("a.json"), GLIBC).unwrap();
    let out = tempfile::tempdir().unwrap();
    db::import(
        &[src.path().to_owned()],
        out.path(),
        datetime!(2026-11-23 12:00 UTC),
    )
    .unwrap();
    let db = AdvisoryDb::open(out.path()).unwrap();
    assert_eq!(
        db.meta
            .check_age(datetime!(2026-11-23 12:00 UTC), 7, StaleAction::Fail)
            .unwrap(),
        None
    );
    let warn = db
        .meta
        .check_age(datetime!(2026-12-23 12:00 UTC), 7, StaleAction::Warn)
        .unwrap()
        .unwrap();
    assert!(
        warn.contains("stale") && warn.contains("berth db update"),
        "{warn}"
    );
    let err = db
        .meta
        .check_age(datetime!(2026-12-23 12:00 UTC), 7, StaleAction::Fail)
        .unwrap_err();
    assert!(matches!(err, DbError::Stale { age_days: 33, .. }), "{err}");

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        AdvisoryDb::open(empty.path()),
        Err(DbError::Missing(_))
    ));
    assert!(matches!(
        db::import(
            &[empty.path().to_owned()],
            out.path(),
            datetime!(2026-11-23 0:00 UTC)
        ),
        Err(DbError::Empty(_))
    ));
    assert!(matches!(
        db::resolve_source("https://example.invalid/all.zip"),
        Err(DbError::UnsupportedSource(_))
    ));
    assert_eq!(
        db::resolve_source("file:///tmp/x.zip").unwrap(),
        PathBuf::from("/tmp/x.zip")
    );
    let bad_zip = src.path().join("bad.zip");
    std::fs::write(&bad_zip, "not a zip").unwrap();
    assert!(matches!(
        db::import(&[bad_zip], out.path(), datetime!(2026-11-23 0:00 UTC)),
        Err(DbError::Zip { .. })
    ));
}

/// A record dated in the future keeps nothing fresh, and the least recently updated source
/// decides the database's age.
#[test]
fn freshness_counts_no_future_record_and_the_stalest_source() {
    let future = GLIBC.replace("2026-11-20T10:00:00Z", "2099-01-01T00:00:00Z");
    let old = LODASH.replace("2026-11-01T00:00:00Z", "2026-10-01T00:00:00Z");
    let forged = tempfile::tempdir().unwrap();
    std::fs::write(forged.path().join("future.json"), &future).unwrap();
    std::fs::write(forged.path().join("old.json"), &old).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    std::fs::write(fresh.path().join("a.json"), GLIBC).unwrap();
    let now = datetime!(2026-11-23 12:00 UTC);
    let out = tempfile::tempdir().unwrap();
    let summary = db::import(
        &[fresh.path().to_owned(), forged.path().to_owned()],
        out.path(),
        now,
    )
    .unwrap();
    assert!(
        summary
            .warnings
            .iter()
            .any(|w| w.contains("1 record(s) dated after the import")),
        "{:?}",
        summary.warnings
    );
    let db = AdvisoryDb::open(out.path()).unwrap();
    assert_eq!(
        db.meta.data_updated_at.as_deref(),
        Some("2026-10-01T00:00:00Z"),
        "the forged source's own newest real date"
    );
    assert_eq!(db.meta.source_data.len(), 2);
    assert_eq!(db.meta.source_data[1].dated_after_import, 1);
    let err = db.meta.check_age(now, 7, StaleAction::Fail).unwrap_err();
    assert!(matches!(err, DbError::Stale { age_days: 53, .. }), "{err}");
}

#[test]
fn large_ecosystems_load_only_needed_shards() {
    let src = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        let rec = format!(
            r#"{{"id":"GHSA-many-{i:04}","modified":"2026-11-01T00:00:00Z","affected":[{{"package":{{"ecosystem":"npm","name":"pkg{i}"}},"versions":["1.0.0"]}}]}}"#
        );
        std::fs::write(src.path().join(format!("{i}.json")), rec).unwrap();
    }
    std::fs::write(src.path().join("lodash.json"), LODASH).unwrap();
    let out = tempfile::tempdir().unwrap();
    db::import(
        &[src.path().to_owned()],
        out.path(),
        datetime!(2026-11-23 12:00 UTC),
    )
    .unwrap();
    let db = AdvisoryDb::open(out.path()).unwrap();
    let npm = &db.meta.ecosystems["npm"];
    assert!(npm.shards > 1, "{npm:?}");
    let idx = db.load_for(&inventory()).unwrap();
    let loaded = idx.ecosystems["npm"].packages.len();
    assert!(
        loaded < 2001 / 2,
        "only the lodash shard is read, not all {} packages ({loaded} loaded)",
        npm.packages
    );
    assert!(idx.ecosystems["npm"].packages.contains_key("lodash"));
    assert_eq!(
        db.load(&["npm".to_owned()]).unwrap().ecosystems["npm"]
            .packages
            .len(),
        2001
    );
}
