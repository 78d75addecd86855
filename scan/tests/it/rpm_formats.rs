//! rpm's Berkeley DB and NDB databases against independent readers: Debian's rpm 4.18
//! (`bdb_ro`) for Berkeley DB, on a real RHEL-family file and on one Berkeley DB's own
//! `db5.3_load` writes from headers rpm made; Trivy v0.74.0 for a real SUSE NDB file.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_scan::analyzer::rpm;
use berth_scan::inventory::PkgType;
use berth_scan::scan;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rpm")
        .join(name)
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unzstd(path: &Path) -> Vec<u8> {
    zstd::decode_all(std::fs::File::open(path).unwrap()).unwrap()
}

#[expect(
    clippy::disallowed_methods,
    reason = "rpm, rpmbuild and db5.3_load are test-only oracles and fixture writers"
)]
fn tool(program: &str) -> Command {
    Command::new(program)
}

fn ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e}; run `bash scan/tests/setup.sh` (rpm, db5.3-util)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (name, epoch:version-release or version-release, arch, source rpm name) per package.
type Row = (String, String, String, String);

/// What rpm itself lists from a Berkeley DB rpmdb in `dbpath`.
fn rpm_bdb_oracle(dbpath: &Path) -> BTreeSet<Row> {
    let listing = ok(tool("rpm")
        .arg("--dbpath")
        .arg(dbpath)
        .args(["--define", "_db_backend bdb_ro", "-qa", "--qf"])
        .arg("%{NAME}|%{EPOCHNUM}|%{VERSION}-%{RELEASE}|%{ARCH}|%{SOURCERPM}\\n"));
    listing
        .lines()
        .filter(|l| !l.starts_with("gpg-pubkey|"))
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let evr = if f[1] == "0" {
                f[2].to_owned()
            } else {
                format!("{}:{}", f[1], f[2])
            };
            let src = rpm::source_name(f[4]).unwrap_or_default().to_owned();
            (f[0].to_owned(), evr, f[3].to_owned(), src)
        })
        .collect()
}

fn berth_rows(data: &[u8]) -> BTreeSet<Row> {
    let (packages, _) = rpm::parse_db(data, "var/lib/rpm/Packages").expect("readable");
    packages
        .into_iter()
        .map(|p| {
            (
                p.name,
                p.version,
                p.arch.unwrap_or_default(),
                p.src_name.unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_real_berkeley_db_rpmdb_reads_as_rpm_reads_it() {
    let d = tempfile::tempdir().unwrap();
    let data = gunzip(&fixture("libuuid-Packages.bdb.gz"));
    std::fs::write(d.path().join("Packages"), &data).unwrap();
    let expected = rpm_bdb_oracle(d.path());
    assert!(!expected.is_empty());
    assert_eq!(berth_rows(&data), expected);
}

const SPECS: [(&str, &str, usize); 3] = [
    ("tiny", "Version: 0.1\nRelease: 1\nBuildArch: noarch\n", 0),
    (
        "with-epoch",
        "Version: 2.4.6\nRelease: 3.el8\nEpoch: 2\nBuildArch: noarch\n",
        3,
    ),
    (
        "many-files",
        "Version: 10.0\nRelease: 7.el8\nBuildArch: noarch\n",
        400,
    ),
];

/// Builds the packages of [`SPECS`] (small headers stay on the hash page, big ones overflow),
/// records them with rpm into a SQLite rpmdb, and writes the same headers into a Berkeley DB
/// hash file with `db5.3_load`, keyed by package number as rpm's Berkeley DB backend keys them.
fn generated_bdb(dir: &Path) -> PathBuf {
    let top = dir.join("rpmbuild");
    let mut rpms = Vec::new();
    for (name, fields, files) in SPECS {
        std::fs::create_dir_all(top.join("SPECS")).unwrap();
        let install: String = (0..files)
            .map(|i| format!("touch %{{buildroot}}/opt/{name}/file-with-a-long-name-{i:04}\n"))
            .collect();
        let spec = format!(
            // The distribution's own vendor: only its packages' files count as installed by the OS.
            "Name: {name}\n{fields}Summary: fixture\nLicense: MIT\nVendor: Red Hat, Inc.\n%description\nfixture\n\
             %install\nmkdir -p %{{buildroot}}/opt/{name}\n{install}touch %{{buildroot}}/opt/{name}/marker\n\
             %files\n/opt/{name}\n"
        );
        let spec_path = top.join(format!("SPECS/{name}.spec"));
        std::fs::write(&spec_path, spec).unwrap();
        ok(tool("rpmbuild")
            .args(["-bb", "--quiet", "--define"])
            .arg(format!("_topdir {}", top.display()))
            .arg(&spec_path));
        let built = std::fs::read_dir(top.join("RPMS/noarch"))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(&format!("{name}-"))
            })
            .unwrap();
        rpms.push(built);
    }
    let root = dir.join("root");
    let r = root.to_str().unwrap();
    ok(tool("rpm").args(["--root", r, "--dbpath", "/var/lib/rpm", "--initdb"]));
    ok(tool("rpm")
        .args([
            "--root",
            r,
            "--dbpath",
            "/var/lib/rpm",
            "-i",
            "--justdb",
            "--nodeps",
            "--noscripts",
        ])
        .args(&rpms));
    let conn = rusqlite::Connection::open(root.join("var/lib/rpm/rpmdb.sqlite")).unwrap();
    let mut stmt = conn.prepare("SELECT hnum, blob FROM Packages").unwrap();
    let rows: Vec<(u32, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), SPECS.len());
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let mut dump =
        String::from("VERSION=3\nformat=bytevalue\ntype=hash\ndb_pagesize=4096\nHEADER=END\n");
    for (hnum, blob) in &rows {
        dump.push_str(&format!(" {}\n {}\n", hex(&hnum.to_le_bytes()), hex(blob)));
    }
    dump.push_str("DATA=END\n");
    let bdb_dir = dir.join("bdb");
    std::fs::create_dir_all(&bdb_dir).unwrap();
    let mut load = tool("db5.3_load")
        .arg(bdb_dir.join("Packages"))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("db5.3_load (apt db5.3-util; scan/tests/setup.sh installs it)");
    load.stdin
        .take()
        .unwrap()
        .write_all(dump.as_bytes())
        .unwrap();
    assert!(load.wait().unwrap().success(), "db5.3_load failed");
    bdb_dir
}

#[test]
fn a_berkeley_db_rpmdb_written_by_berkeley_db_reads_as_rpm_reads_it() {
    let d = tempfile::tempdir().unwrap();
    let bdb = generated_bdb(d.path());
    let expected = rpm_bdb_oracle(&bdb);
    assert_eq!(
        expected.len(),
        SPECS.len(),
        "rpm reads the generated file: {expected:?}"
    );
    let data = std::fs::read(bdb.join("Packages")).unwrap();
    assert_eq!(berth_rows(&data), expected);
    let (_, owned) = rpm::parse_db(&data, "var/lib/rpm/Packages").unwrap();
    assert!(
        owned
            .iter()
            .any(|f| f.ends_with("many-files/file-with-a-long-name-0399")),
        "files of an overflowing header are read whole"
    );
    // Cut anywhere, it fails with a reason or reads fewer packages; it never panics.
    for cut in (0..data.len()).step_by(997) {
        if let Ok((p, _)) = rpm::parse_db(&data[..cut], "Packages") {
            assert!(p.len() <= SPECS.len());
        }
    }
}

#[test]
fn a_real_ndb_rpmdb_reads_as_trivy_reads_it() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("rootfs");
    std::fs::create_dir_all(root.join("usr/lib/sysimage/rpm")).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(
        root.join("usr/lib/sysimage/rpm/Packages.db"),
        unzstd(&fixture("sle15-bci-Packages.db.zst")),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/os-release"),
        "NAME=\"SLES\"\nVERSION=\"15-SP3\"\nID=\"sles\"\nVERSION_ID=\"15.3\"\n",
    )
    .unwrap();
    let (inv, _) = scan::scan_path(&root, "sle15", None).unwrap();
    let ours: BTreeSet<(String, String)> = inv
        .packages
        .iter()
        .filter(|p| p.kind == PkgType::Rpm)
        .map(|p| (p.name.clone(), p.version.clone()))
        .collect();
    // An rpm's CycloneDX version is `[epoch:]version-release`, as berth writes it.
    let theirs = crate::trivy::trivy_rootfs_components(&root, d.path(), "rpm");
    assert!(theirs.len() > 20, "Trivy listed {} packages", theirs.len());
    assert_eq!(ours, theirs);
}
