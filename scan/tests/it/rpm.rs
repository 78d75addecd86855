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
Vendor: Rocky Enterprise Software Foundation\n\
%description\nfixture\n%install\nmkdir -p %{buildroot}/usr/lib/python3.9/site-packages/six-1.16.0.dist-info\n\
printf 'Name: six\\nVersion: 1.16.0\\n' > %{buildroot}/usr/lib/python3.9/site-packages/six-1.16.0.dist-info/METADATA\n\
%files\n/usr/lib/python3.9/site-packages/six-1.16.0.dist-info/METADATA\n";

/// A package from a third-party repository (its vendor is not the distribution's): its files stay
/// open to the language analyzers and the OS's advisories are not matched against it.
const THIRD_PARTY_SPEC: &str = "Name: ext-tool\nVersion: 2.0\nRelease: 1\nSummary: fixture\nLicense: MIT\nBuildArch: noarch\n\
Vendor: Docker\n\
%description\nfixture\n%install\nmkdir -p %{buildroot}/usr/lib/python3.9/site-packages/requests-2.25.1.dist-info\n\
printf 'Name: requests\\nVersion: 2.25.1\\n' > %{buildroot}/usr/lib/python3.9/site-packages/requests-2.25.1.dist-info/METADATA\n\
%files\n/usr/lib/python3.9/site-packages/requests-2.25.1.dist-info/METADATA\n";

pub(crate) fn build_rootfs(dir: &Path) -> std::path::PathBuf {
    let top = dir.join("rpmbuild");
    std::fs::create_dir_all(top.join("SPECS")).unwrap();
    let define = format!("_topdir {}", top.display());
    for (name, spec) in [("hello", SPEC), ("ext", THIRD_PARTY_SPEC)] {
        let path = top.join(format!("SPECS/{name}.spec"));
        std::fs::write(&path, spec).unwrap();
        run(
            "rpmbuild",
            &[
                "-bb",
                "--quiet",
                "--define",
                &define,
                path.to_str().unwrap(),
            ],
        );
    }
    let rpms = [
        top.join("RPMS/noarch/hello-berth-1.2.3-4.el9.noarch.rpm"),
        top.join("RPMS/noarch/ext-tool-2.0-1.noarch.rpm"),
    ];
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "ID=\"rocky\"\nVERSION_ID=\"9.3\"\n",
    )
    .unwrap();
    for (dir, body) in [
        ("six-1.16.0.dist-info", "Name: six\nVersion: 1.16.0\n"),
        (
            "requests-2.25.1.dist-info",
            "Name: requests\nVersion: 2.25.1\n",
        ),
    ] {
        let meta = root.join("usr/lib/python3.9/site-packages").join(dir);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(meta.join("METADATA"), body).unwrap();
    }
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
            rpms[0].to_str().unwrap(),
            rpms[1].to_str().unwrap(),
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
        [
            (PkgType::Rpm, "ext-tool", "2.0-1"),
            (PkgType::Rpm, "hello-berth", "1:1.2.3-4.el9"),
            (PkgType::PythonPkg, "requests", "2.25.1"),
        ],
        "six is owned by the vendor's rpm; requests, installed by a third-party rpm, is not"
    );
    assert!(inv.packages[0].third_party && !inv.packages[1].third_party);
    assert_eq!(inv.packages[1].src_name.as_deref(), Some("hello-berth"));
    assert_eq!(
        inv.packages[1].purl(inv.os.as_ref()),
        "pkg:rpm/rocky/hello-berth@1.2.3-4.el9?arch=noarch&distro=rocky-9.3&epoch=1"
    );

    let rec = OsvRecord::from_json(
        br#"{"id":"RLSA-2099:0001","modified":"2026-11-01T00:00:00Z","aliases":["CVE-2099-0100"],
        "affected":[{"package":{"ecosystem":"Rocky Linux:9","name":"hello-berth"},
        "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1:1.2.3-5.el9"}]}]}]}"#,
    )
    .unwrap();
    // An advisory naming the third-party package by name does not apply to it.
    let third = OsvRecord::from_json(
        br#"{"id":"RLSA-2099:0002","modified":"2026-11-01T00:00:00Z","aliases":["CVE-2099-0101"],
        "affected":[{"package":{"ecosystem":"Rocky Linux:9","name":"ext-tool"},
        "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.1-1"}]}]}]}"#,
    )
    .unwrap();
    let r = Report::generate(
        &inv,
        &AdvisoryIndex::from_records([&rec, &third]),
        &Policy::report_all(date!(2026 - 11 - 23)),
    );
    assert_eq!(r.findings.len(), 1, "{:?}", r.findings);
    assert_eq!(
        (
            r.findings[0].id.as_str(),
            r.findings[0].fixed_version.as_str()
        ),
        ("CVE-2099-0100", "1:1.2.3-5.el9")
    );
}
