//! `berth scan` / `berth db update` through the library entry points, with Trivy's flags.

use crate::support;

use berth_scan::cli::{self, DbUpdateArgs, ScanArgs};
use clap::Parser;
use time::macros::datetime;

#[derive(Parser)]
struct Scan {
    #[command(flatten)]
    args: ScanArgs,
}

const OSV: &str = r#"{"id":"GHSA-fake-0001","modified":"2026-11-20T00:00:00Z","database_specific":{"severity":"HIGH"},
 "affected":[{"package":{"ecosystem":"npm","name":"minimist"},
 "ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.2.6"}]}]}]}"#;

/// An advisory database holding [`OSV`], in `dir/db`.
fn advisory_db(dir: &std::path::Path) -> std::path::PathBuf {
    let osv = dir.join("osv");
    std::fs::create_dir_all(&osv).unwrap();
    std::fs::write(osv.join("a.json"), OSV).unwrap();
    let db = dir.join("db");
    let up = DbUpdateArgs {
        from: vec![osv.display().to_string()],
        db: db.clone(),
        public_key: None,
        max_size: berth_scan::advisory::published::DEFAULT_MAX_BYTES,
    };
    cli::run_db_update(&up, datetime!(2026-11-23 0:00 UTC)).unwrap();
    db
}

#[test]
fn scan_with_trivy_flags() {
    let d = tempfile::tempdir().unwrap();
    let db = advisory_db(d.path());

    let image = support::docker_archive(d.path());
    let ignore = d.path().join("ignore.yaml");
    std::fs::write(&ignore, "vulnerabilities: []\n").unwrap();
    let gl = d.path().join("gl-container-scanning-report.json");
    let sbom = d.path().join("gl-sbom-fixture.cdx.json");
    let argv = [
        "scan",
        "--input",
        image.to_str().unwrap(),
        "--format",
        "json",
        "--severity",
        "HIGH,CRITICAL",
        "--exit-code",
        "3",
        "--ignorefile",
        ignore.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--gitlab-report",
        gl.to_str().unwrap(),
        "--sbom",
        sbom.to_str().unwrap(),
    ];
    let a = Scan::try_parse_from(argv).unwrap().args;
    let out = cli::run_scan(&a, datetime!(2026-11-23 12:00 UTC)).unwrap();
    assert_eq!(out.exit_code, 3);
    assert!(out.stdout.contains("GHSA-fake-0001"));
    assert!(out.warnings.is_empty(), "{:?}", out.warnings);
    assert!(
        std::fs::read_to_string(&gl)
            .unwrap()
            .contains("\"container_scanning\"")
    );
    assert!(
        std::fs::read_to_string(&sbom)
            .unwrap()
            .contains("\"CycloneDX\"")
    );

    // The same with the finding ignored through a plain .trivyignore, written to -o.
    let plain = d.path().join(".trivyignore");
    std::fs::write(&plain, "GHSA-fake-0001 exp:2027-01-01\n").unwrap();
    let outfile = d.path().join("out.sarif");
    let mut a2 = a.clone();
    a2.ignorefile = plain;
    a2.format = "sarif".into();
    a2.output = Some(outfile.clone());
    let out = cli::run_scan(&a2, datetime!(2026-11-23 12:00 UTC)).unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(out.stdout.is_empty());
    assert!(
        std::fs::read_to_string(&outfile)
            .unwrap()
            .contains("\"2.1.0\"")
    );

    // Stale data: a warning by default, an error with --db-stale-fail.
    let later = datetime!(2027-02-01 0:00 UTC);
    let mut a3 = a.clone();
    a3.gitlab_report = None;
    a3.sbom = None;
    assert!(
        cli::run_scan(&a3, later)
            .unwrap()
            .warnings
            .iter()
            .any(|w| w.contains("stale"))
    );
    a3.db_stale_fail = true;
    assert!(
        cli::run_scan(&a3, later)
            .unwrap_err()
            .to_string()
            .contains("berth db update")
    );

    // Flag errors name the accepted values.
    let mut bad = a.clone();
    bad.severity = "HIGH,SEVERE".into();
    assert!(
        cli::run_scan(&bad, later)
            .unwrap_err()
            .to_string()
            .contains("CRITICAL")
    );
    let mut bad = a;
    bad.format = "xml".into();
    assert!(
        cli::run_scan(&bad, later)
            .unwrap_err()
            .to_string()
            .contains("cyclonedx")
    );
}

#[test]
fn a_named_ignore_file_must_exist() {
    let d = tempfile::tempdir().unwrap();
    let argv = [
        "scan",
        "--input",
        "x.tar",
        "--ignorefile",
        "/nonexistent/.trivyignore.yaml",
        "--db",
        "/nonexistent-db",
    ];
    let a = Scan::try_parse_from(argv).unwrap().args;
    let err = cli::run_scan(&a, datetime!(2026-11-23 12:00 UTC))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("cannot read") && err.contains(".trivyignore.yaml"),
        "{err}"
    );
    // The default .trivyignore may be absent; then the database is the next thing missing.
    let mut a2 = a;
    a2.ignorefile = ".trivyignore".into();
    a2.db = d.path().join("nodb");
    let err = cli::run_scan(&a2, datetime!(2026-11-23 12:00 UTC))
        .unwrap_err()
        .to_string();
    assert!(err.contains("berth db update"), "{err}");
}

/// Serves `body` once per connection over plain HTTP on loopback; returns the URL base.
fn serve(body: Vec<u8>, connections: usize) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let mut stream = stream.unwrap();
            let mut request = [0u8; 4096];
            let n = stream.read(&mut request).unwrap_or(0);
            let not_found = String::from_utf8_lossy(&request[..n]).contains("/missing");
            let head = if not_found {
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    .to_owned()
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/zip\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                )
            };
            let _ = stream.write_all(head.as_bytes());
            if !not_found {
                let _ = stream.write_all(&body);
            }
        }
    });
    format!("http://{addr}")
}

#[test]
fn db_update_downloads_an_all_zip_over_http() {
    use std::io::Write;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(
        "GHSA-fake-0001.json",
        zip::write::SimpleFileOptions::default(),
    )
    .unwrap();
    zip.write_all(OSV.as_bytes()).unwrap();
    let bytes = zip.finish().unwrap().into_inner();
    let base = serve(bytes, 2);
    let db = tempfile::tempdir().unwrap();
    let args = DbUpdateArgs {
        from: vec![format!("{base}/npm/all.zip")],
        db: db.path().join("db"),
        public_key: None,
        max_size: berth_scan::advisory::published::DEFAULT_MAX_BYTES,
    };
    let summary = cli::run_db_update(&args, datetime!(2026-11-23 12:00 UTC)).unwrap();
    assert_eq!(summary.meta.records, 1);
    assert!(
        !db.path().join("db.downloads").exists(),
        "downloads are removed after the import"
    );
    let missing = DbUpdateArgs {
        from: vec![format!("{base}/missing/all.zip")],
        db: db.path().join("db2"),
        public_key: None,
        max_size: berth_scan::advisory::published::DEFAULT_MAX_BYTES,
    };
    let err = cli::run_db_update(&missing, datetime!(2026-11-23 12:00 UTC)).unwrap_err();
    assert!(
        err.to_string().contains("cannot download") && err.to_string().contains("404"),
        "{err}"
    );
}

#[test]
fn a_target_in_a_storage_root_is_an_image_never_a_host_path() {
    let d = tempfile::tempdir().unwrap();
    let db = advisory_db(d.path());
    let store = support::containers_storage(d.path());
    // An "image id" that is a directory on this host (as a job's images.json could claim).
    let host_dir = support::rootfs(d.path());
    let argv = [
        "scan",
        host_dir.to_str().unwrap(),
        "--storage-root",
        store.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
    ];
    let a = Scan::try_parse_from(argv).unwrap().args;
    let err = cli::run_scan(&a, datetime!(2026-11-23 12:00 UTC))
        .unwrap_err()
        .to_string();
    assert!(err.contains("not found in containers-storage"), "{err}");
}

/// `berth scan sbom FILE`, as `trivy sbom FILE`: the SBOM's packages are matched; `sbom` with
/// anything else in front of it is refused.
#[test]
fn scan_sbom_reads_a_cyclonedx_file() {
    let d = tempfile::tempdir().unwrap();
    let db = advisory_db(d.path());
    let sbom = d.path().join("app.cdx.json");
    std::fs::write(
        &sbom,
        r#"{"bomFormat":"CycloneDX","specVersion":"1.6","components":[
            {"type":"library","name":"minimist","version":"1.2.0","purl":"pkg:npm/minimist@1.2.0"}]}"#,
    )
    .unwrap();
    let argv = [
        "scan",
        "sbom",
        sbom.to_str().unwrap(),
        "--db",
        db.to_str().unwrap(),
        "--format",
        "json",
        "--exit-code",
        "4",
    ];
    let a = Scan::try_parse_from(argv).unwrap().args;
    let out = cli::run_scan(&a, datetime!(2026-11-23 12:00 UTC)).unwrap();
    assert_eq!(out.exit_code, 4, "{}", out.stdout);
    assert!(out.stdout.contains("GHSA-fake-0001"));
    let wrong = Scan::try_parse_from(["scan", "image", sbom.to_str().unwrap()])
        .unwrap()
        .args;
    assert!(cli::run_scan(&wrong, datetime!(2026-11-23 12:00 UTC)).is_err());
    std::fs::write(&sbom, "{}").unwrap();
    let err = cli::run_scan(&a, datetime!(2026-11-23 12:00 UTC)).unwrap_err();
    assert!(err.to_string().contains("not an SBOM berth reads"), "{err}");
}

/// `--vex FILE|DIR` and `--ignore-policy FILE` reach the policy: a directory's `*.json` are read
/// by name, suppressed findings no longer block, and a bad document or policy stops the scan
/// naming the file and every problem.
#[test]
fn vex_and_ignore_policy_flags_suppress_and_bad_ones_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let db = advisory_db(d.path());
    let image = support::docker_archive(d.path());
    let vex_dir = d.path().join("vex");
    std::fs::create_dir(&vex_dir).unwrap();
    std::fs::write(
        vex_dir.join("app.openvex.json"),
        r#"{"@context":"https://openvex.dev/ns/v0.2.0","statements":[
        {"vulnerability":{"name":"GHSA-fake-0001"},"products":[{"@id":"pkg:npm/minimist"}],
         "status":"fixed"}]}"#,
    )
    .unwrap();
    std::fs::write(vex_dir.join("README.md"), "not read").unwrap();
    let args = |extra: &[&str]| {
        let mut argv = vec![
            "scan",
            "--input",
            image.to_str().unwrap(),
            "--format",
            "json",
            "--exit-code",
            "3",
            "--db",
            db.to_str().unwrap(),
        ];
        argv.extend(extra);
        Scan::try_parse_from(argv).unwrap().args
    };
    let now = datetime!(2026-11-23 12:00 UTC);
    let out = cli::run_scan(&args(&["--vex", vex_dir.to_str().unwrap()]), now).unwrap();
    assert_eq!(out.exit_code, 0, "{}", out.stdout);
    assert!(
        out.stdout.contains("ExperimentalModifiedFindings"),
        "{}",
        out.stdout
    );
    let rego = d.path().join("ignore.rego");
    std::fs::write(
        &rego,
        "package trivy\nignore { input.PkgName == \"minimist\" }\n",
    )
    .unwrap();
    let out = cli::run_scan(&args(&["--ignore-policy", rego.to_str().unwrap()]), now).unwrap();
    assert_eq!(out.exit_code, 0);
    assert!(out.stdout.contains("Filtered by Rego"));

    std::fs::write(
        vex_dir.join("bad.json"),
        r#"{"@context":"x","statements":[{}]}"#,
    )
    .unwrap();
    let err = cli::run_scan(&args(&["--vex", vex_dir.to_str().unwrap()]), now)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.json") && err.contains("@context") && err.contains("no vulnerability"),
        "{err}"
    );
    std::fs::write(&rego, "package trivy\nignore = \"yes\"\n").unwrap();
    let err = cli::run_scan(&args(&["--ignore-policy", rego.to_str().unwrap()]), now)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ignore.rego") && err.contains("must return boolean"),
        "{err}"
    );
}
