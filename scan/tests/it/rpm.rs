//! The rpm analyzer on a real SQLite rpmdb, written by Debian's rpm 4.18 (installed by
//! `scan/tests/setup.sh`) from a package built here with rpmbuild.

use std::path::Path;
use std::process::Command;

use berth_scan::advisory::{AdvisoryIndex, OsvRecord};
use berth_scan::inventory::{OsFamily, PkgType};
use berth_scan::policy::Policy;
use berth_scan::report::Report;
use berth_scan::scan;
use time::macros::date;

#[expect(
    clippy::disallowed_methods,
    reason = "rpm/rpmbuild build a test fixture; test-only"
)]
fn run(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}; run `bash scan/tests/setup.sh` (installs rpm and rpmbuild)"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const SPEC: &str = "Name: hello-berth\nVersion: 1.2.3\nRelease: 4.el9\nEpoch: 1\nSummary: fixture\nLicense: MIT\nBuildArch: noarch\n\
%description\nfixture\n%install\nmkdir -p %{buildroot}/usr/lib/python3.9/site-packages/six-1.16.0.dist-info\n\
printf 'Name: six\\nVersion: 1.16.0\\n' > %{buildroot}/usr/lib/python3.9/site-packages/six-1.16.0.dist-info/METADATA\n\
%files\n/usr/lib/python3.9/site-packages/six-1.16.0.dist-info/METADATA\n";

pub(crate) fn build_rootfs(dir: &Path) -> std::path::PathBuf {
    let top = dir.join("rpmbuild");
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    std::fs::write(top.join("SPECS/hello.spec"), SPEC).unwrap();
    let define = format!("_topdir {}", top.display());
    run(
        "rpmbuild",
        &[
            "-bb",
            "--quiet",
            "--define",
            &define,
            top.join("SPECS/hello.spec").to_str().unwrap(),
        ],
    );
    let rpm = top.join("RPMS/noarch/hello-berth-1.2.3-4.el9.noarch.rpm");
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=\"rocky\"\nVERSION_ID=\"9.3\"\n",
    )
    .unwrap();
    let meta = root.join("usr/lib/python3.9/site-packages/six-1.16.0.dist-info");
    std::fs::create_dir_all(&meta).unwrap();
    std::fs::write(meta.join("METADATA"), "Name: six\nVersion: 1.16.0\n").unwrap();
    let r = root.to_str().unwrap();
    run(
        "rpm",
        &["--root", r, "--dbpath", "/var/lib/rpm", "--initdb"],
    );
    run(
        "rpm",
        &[
            "--root",
            r,
            "--dbpath",
            "/var/lib/rpm",
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
            rpm.to_str().unwrap(),
        ],
    );
    assert!(
        root.join("var/lib/rpm/rpmdb.sqlite").exists(),
        "rpm wrote an sqlite database"
    );
    root
}

#[test]
fn rpm_sqlite_database() {
    let d = tempfile::tempdir().unwrap();
    let root = build_rootfs(d.path());
    let (inv, w) = scan::scan_path(&root, "rocky", None).unwrap();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(
        inv.os.as_ref().map(|o| (&o.family, o.version.as_str())),
        Some((&OsFamily::Rocky, "9.3"))
    );
    let names: Vec<(PkgType, &str, &str)> = inv
        .packages
        .iter()
        .map(|p| (p.kind, p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(
        names,
        [(PkgType::Rpm, "hello-berth", "1:1.2.3-4.el9")],
        "six is owned by the rpm"
    );
    assert_eq!(inv.packages[0].src_name.as_deref(), Some("hello-berth"));
    assert_eq!(
        inv.packages[0].purl(inv.os.as_ref()),
        "pkg:rpm/rocky/hello-berth@1.2.3-4.el9?arch=noarch&distro=rocky-9.3&epoch=1"
    );

    let rec = OsvRecord::from_json(
        br#"{"id":"RLSA-2099:0001","modified":"2026-11-01T00:00:00Z","aliases":["CVE-2099-0100"],
        "affected":[{"package":{"ecosystem":"Rocky Linux:9","name":"hello-berth"},
        "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:1.2.3-5.el9"}]}]}]}"#,
    )
    .unwrap();
    let r = Report::generate(
        &inv,
        &AdvisoryIndex::from_records([&rec]),
        &Policy::report_all(date!(2026 - 11 - 23)),
    );
    assert_eq!(r.findings.len(), 1);
    assert_eq!(
        (
            r.findings[0].id.as_str(),
            r.findings[0].fixed_version.as_str()
        ),
        ("CVE-2099-0100", "1:1.2.3-5.el9")
    );
}
