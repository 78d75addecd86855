//! Parity with Trivy v0.74.0 (built from the Go module proxy by
//! `integration/peers/build-scanners.sh`): the same image and advisories must yield the same
//! packages (name, version, purl, layer) and the same findings.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use berth_scan::render::{self, Format, RenderContext};
use berth_scan::report::Report;
use berth_scan::scan;
use time::macros::{date, datetime};

use crate::support;

pub(crate) fn trivy() -> PathBuf {
    peer("trivy")
}

/// A scanner peer `integration/peers/build-scanners.sh` built from the Go module proxy (Trivy
/// v0.74.0, Grype v0.121.2); a version the proxy refused fails the test with the refusal.
pub(crate) fn peer(name: &str) -> PathBuf {
    let dir = std::env::var_os("BERTH_PEERS_DIR")
        .map_or_else(|| PathBuf::from("/var/cache/berth-peers"), PathBuf::from)
        .join("scanners");
    let binary = dir.join(name);
    if binary.is_file() {
        return binary;
    }
    match std::fs::read_to_string(dir.join(format!("{name}.unavailable"))) {
        Ok(refusal) => panic!("{name} cannot be had:\n{refusal}"),
        Err(_) => panic!(
            "{} not found; run `integration/peers/build-scanners.sh`",
            binary.display()
        ),
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "Trivy is a test-only oracle process"
)]
pub(crate) fn command(p: &PathBuf) -> Command {
    Command::new(p)
}

/// Runs `trivy image --input IMAGE --format FORMAT` offline with `extra` flags and returns the
/// parsed output.
pub(crate) fn run_trivy(
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

/// Runs `trivy sbom SBOM --format json` offline on the database in `cache`, with `extra` flags,
/// and returns the parsed output.
pub(crate) fn run_trivy_sbom(
    sbom: &std::path::Path,
    cache: &std::path::Path,
    extra: &[&str],
) -> serde_json::Value {
    let out = cache.with_extension("sbom-out.json");
    let res = command(&trivy())
        .args([
            "sbom",
            "--quiet",
            "--offline-scan",
            "--skip-db-update",
            "--skip-java-db-update",
        ])
        .args(extra)
        .arg("--cache-dir")
        .arg(cache)
        .args(["--format", "json", "--output"])
        .arg(&out)
        .arg(sbom)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "trivy sbom failed: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

/// (purl, layer DiffID, source package properties) of every library component in a CycloneDX
/// document.
fn components(doc: &serde_json::Value) -> BTreeSet<(String, String)> {
    const SHOWN: [&str; 5] = [
        "aquasecurity:trivy:LayerDiffID",
        "aquasecurity:trivy:SrcName",
        "aquasecurity:trivy:SrcVersion",
        "aquasecurity:trivy:SrcRelease",
        "aquasecurity:trivy:SrcEpoch",
    ];
    doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .map(|c| {
            let shown: Vec<String> = c["properties"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| SHOWN.iter().any(|s| p["name"] == *s))
                .map(|p| {
                    format!(
                        "{}={}",
                        p["name"].as_str().unwrap_or_default(),
                        p["value"].as_str().unwrap_or_default()
                    )
                })
                .collect();
            (
                c["purl"].as_str().unwrap_or_default().to_owned(),
                shown.join(" "),
            )
        })
        .collect()
}

/// The fixture image's SBOM in `format` (Trivy's name for it) from berth and from Trivy.
fn both_sboms(format: &str, ours: Format) -> (serde_json::Value, serde_json::Value) {
    let d = tempfile::tempdir().unwrap();
    let image = support::docker_archive(d.path());
    let theirs = run_trivy(&image, &d.path().join("trivy-cache"), format, &[]);
    (berth_doc(&image, &Default::default(), ours), theirs)
}

/// berth's report of `image` in `format`, every finding of `index` reported.
pub(crate) fn berth_doc(
    image: &std::path::Path,
    index: &berth_scan::advisory::AdvisoryIndex,
    format: Format,
) -> serde_json::Value {
    let (inv, _) = scan::scan_path(image, "x", None).unwrap();
    let r = Report::generate(
        &inv,
        index,
        &berth_scan::policy::Policy::report_all(date!(2026 - 11 - 23)),
    );
    serde_json::from_str(&render::render(
        &r,
        format,
        &RenderContext::new(datetime!(2026-11-23 0:00 UTC)),
    ))
    .unwrap()
}

/// Asserts berth's and Trivy's sets are equal, naming what only one of them has.
pub(crate) fn assert_same<T: Ord + std::fmt::Debug>(ours: &BTreeSet<T>, theirs: &BTreeSet<T>) {
    assert!(!theirs.is_empty(), "Trivy named nothing");
    assert_eq!(
        ours,
        theirs,
        "only berth: {:?}\nonly trivy: {:?}",
        ours.difference(theirs).collect::<Vec<_>>(),
        theirs.difference(ours).collect::<Vec<_>>()
    );
}

/// Trivy's and berth's SPDX documents for the same image name the same packages by purl.
#[test]
fn trivy_agrees_on_spdx_packages() {
    let (ours, theirs) = both_sboms("spdx-json", Format::SpdxJson);
    let purls = |doc: &serde_json::Value| -> BTreeSet<String> {
        doc["packages"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["externalRefs"].as_array().into_iter().flatten())
            .filter(|r| r["referenceType"] == "purl")
            .filter_map(|r| r["referenceLocator"].as_str())
            .filter(|p| !p.starts_with("pkg:oci/"))
            .map(str::to_owned)
            .collect()
    };
    assert_same(&purls(&ours), &purls(&theirs));
}

#[test]
fn trivy_agrees_on_the_fixture_inventory() {
    let (ours, theirs) = both_sboms("cyclonedx", Format::CycloneDx);
    assert_same(&components(&ours), &components(&theirs));
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
# An empty Java DB, so Trivy identifies jars from pom.properties without downloading one.
import sqlite3
java = os.path.join(os.path.dirname(out), "java-db")
os.makedirs(java, exist_ok=True)
j = sqlite3.connect(os.path.join(java, "trivy-java.db"))
j.executescript("""
CREATE TABLE artifacts(id INTEGER PRIMARY KEY, group_id TEXT, artifact_id TEXT);
CREATE TABLE indices(artifact_id INTEGER, version TEXT, sha1 BLOB, archive_type TEXT,
  foreign key (artifact_id) references artifacts(id));
CREATE UNIQUE INDEX artifacts_idx ON artifacts(artifact_id, group_id);
CREATE INDEX indices_artifact_idx ON indices(artifact_id);
CREATE UNIQUE INDEX indices_sha1_idx ON indices(sha1);
""")
j.commit()
j.close()
json.dump({"Version": 1, "NextUpdate": "2099-01-01T00:00:00Z", "UpdatedAt": "2026-11-20T00:00:00Z",
           "DownloadedAt": "2026-11-20T00:00:00Z"}, open(os.path.join(java, "metadata.json"), "w"))
"#;

/// The advisories of `reports::RECORDS`, written the way trivy-db stores them: one
/// vulnerability entry per CVE (a GHSA's own id becomes a vendor id), each vendor's rating
/// under its source id plus the deprecated `Severity` (the first vendor's in trivy-db's
/// order), Debian's urgency on the package's advisory.
pub(crate) fn trivy_spec() -> serde_json::Value {
    let src =
        |id: &str, name: &str, url: &str| serde_json::json!({"ID": id, "Name": name, "URL": url});
    let critical = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
    serde_json::json!({
        "data-source": {
            "debian 12": src("debian", "Debian Security Tracker", "https://salsa.debian.org/security-tracker-team/security-tracker"),
            "npm::GitHub Security Advisory npm": src("ghsa", "GitHub Security Advisory npm", "https://github.com/advisories?query=type%3Areviewed+ecosystem%3Anpm"),
            "pip::Open Source Vulnerabilities PyPI": src("osv", "Open Source Vulnerabilities PyPI", "https://osv.dev/"),
            "cargo::Open Source Vulnerabilities crates.io": src("osv", "Open Source Vulnerabilities crates.io", "https://osv.dev/"),
        },
        "vulnerability": {
            "CVE-2099-0001": {"Severity": "CRITICAL", "Title": "glibc: buffer overflow in a fake function", "VendorSeverity": {"nvd": 4},
                "CVSS": {"nvd": {"V3Vector": critical, "V3Score": 9.8}}},
            "CVE-2099-0005": {"Severity": "MEDIUM", "VendorSeverity": {"ghsa": 2}},
            "CVE-2099-0010": {"Severity": "CRITICAL", "Title": "minimist prototype pollution (fake)", "Description": "Long description.",
                "References": ["https://example.com/minimist", "https://github.com/advisories/GHSA-fake-0001"],
                "VendorSeverity": {"ghsa": 4}, "CVSS": {"ghsa": {"V3Vector": critical, "V3Score": 9.8}}},
            "CVE-2099-0020": {"Severity": "MEDIUM", "VendorSeverity": {"osv": 2},
                "CVSS": {"osv": {"V3Vector": "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:N", "V3Score": 4.2}}},
            "CVE-2099-0030": {"Severity": "HIGH", "VendorSeverity": {"osv": 3},
                "CVSS": {"osv": {"V3Vector": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H", "V3Score": 7.5}}},
        },
        "buckets": {
            "debian 12": {
                "glibc": {"CVE-2099-0001": {"FixedVersion": "2.36-9+deb12u15", "Severity": 1}},
                "bash": {"CVE-2099-0005": {"Status": 2}},
            },
            "npm::GitHub Security Advisory npm": {
                "minimist": {"CVE-2099-0010": {"VendorIDs": ["GHSA-fake-0001"],
                    "VulnerableVersions": ["<0.2.4", ">=1.0.0, <1.2.6"], "PatchedVersions": ["0.2.4", "1.2.6"]}},
                "left-pad": {"CVE-2099-0005": {"VendorIDs": ["GHSA-fake-0005"],
                    "VulnerableVersions": ["<1.3.0"], "PatchedVersions": ["1.3.0"]}},
            },
            "pip::Open Source Vulnerabilities PyPI": {"urllib3": {"CVE-2099-0020": {"VendorIDs": ["PYSEC-2099-7"],
                "VulnerableVersions": [">=1.26.0, <1.26.5"], "PatchedVersions": ["1.26.5"]}}},
            "cargo::Open Source Vulnerabilities crates.io": {"smallvec": {"CVE-2099-0030": {"VendorIDs": ["RUSTSEC-2099-0001"],
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

/// Builds a Trivy DB from `spec`, writes the fixture image, scans it with Trivy offline and
/// returns (image path, Trivy's JSON report).
pub(crate) fn trivy_with_db(
    spec: &serde_json::Value,
    dir: &std::path::Path,
) -> (PathBuf, serde_json::Value) {
    trivy_with_db_on(spec, dir, &support::layers())
}

/// As [`trivy_with_db`], for an image made of `layers`.
fn trivy_with_db_on(
    spec: &serde_json::Value,
    dir: &std::path::Path,
    layers: &[support::LayerSpec],
) -> (PathBuf, serde_json::Value) {
    let tools = std::env::var_os("BERTH_TEST_TOOLS")
        .map_or_else(|| PathBuf::from("/var/cache/berth-test"), PathBuf::from);
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let cache = dir.join("trivy-cache");
    let mk = python(&tools)
        .arg("-c")
        .arg(MAKE_TRIVY_DB)
        .arg(&spec_path)
        .arg(cache.join("db"))
        .output()
        .unwrap();
    assert!(
        mk.status.success(),
        "building the Trivy DB failed (run `bash scan/tests/setup.sh`, it installs boltdb): {}",
        String::from_utf8_lossy(&mk.stderr)
    );
    let image = support::docker_archive_of(dir, layers, "image.tar");
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
    (image, theirs)
}

/// The fields of Trivy's `DetectedVulnerability` that carry a decision (severity and whose it
/// is, every vendor's rating, status, fixed versions, ids, data source, primary URL), per
/// finding.
const DECIDED: [&str; 11] = [
    "VulnerabilityID",
    "PkgName",
    "InstalledVersion",
    "FixedVersion",
    "Status",
    "Severity",
    "SeveritySource",
    "VendorSeverity",
    "VendorIDs",
    "DataSource",
    "PrimaryURL",
];

/// Every vulnerability of a Trivy-style JSON report, over all results.
pub(crate) fn json_vulns(
    report: &serde_json::Value,
) -> impl Iterator<Item = serde_json::Value> + '_ {
    report["Results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["Vulnerabilities"].as_array().cloned().unwrap_or_default())
}

fn decided(report: &serde_json::Value) -> BTreeSet<String> {
    json_vulns(report)
        .map(|v| {
            let picked: serde_json::Map<String, serde_json::Value> = DECIDED
                .iter()
                .filter_map(|k| v.get(*k).map(|x| ((*k).to_owned(), x.clone())))
                .collect();
            serde_json::Value::Object(picked).to_string()
        })
        .collect()
}

/// Same advisories, same image: berth's JSON report and Trivy's carry the same decisions for
/// every finding: severity and the vendor named for it (Debian's urgency, GitHub's rating, a
/// rating borrowed from another vendor and named by no one), every vendor's rating, status,
/// every fixed version Trivy lists, ids, data source and primary URL.
#[test]
fn trivy_agrees_on_findings() {
    let d = tempfile::tempdir().unwrap();
    let (image, theirs) = trivy_with_db(&trivy_spec(), d.path());
    let ours = berth_doc(&image, &crate::reports::index(), Format::Json);
    let (ours, theirs) = (decided(&ours), decided(&theirs));
    assert_eq!(ours.len(), 5, "{ours:#?}");
    assert_same(&ours, &theirs);
}

/// The vulnerabilities of a CycloneDX document, each as (id, source, ratings, advisories,
/// recommendation).
fn cdx_vulns(doc: &serde_json::Value) -> BTreeSet<String> {
    doc["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            serde_json::json!([
                v["id"],
                v["source"],
                v["ratings"],
                v["advisories"],
                v["recommendation"]
            ])
            .to_string()
        })
        .collect()
}

/// Same advisories, same image: berth's CycloneDX vulnerabilities carry Trivy's ratings (one
/// per vendor and CVSS version, ordered), source, advisories and recommendation.
#[test]
fn trivy_agrees_on_cyclonedx_ratings() {
    let d = tempfile::tempdir().unwrap();
    let (image, _) = trivy_with_db(&trivy_spec(), d.path());
    let theirs = run_trivy(
        &image,
        &d.path().join("trivy-cache"),
        "cyclonedx",
        &[
            "--skip-db-update",
            "--skip-java-db-update",
            "--scanners",
            "vuln",
        ],
    );
    let ours = berth_doc(&image, &crate::reports::index(), Format::CycloneDx);
    assert_same(&cdx_vulns(&ours), &cdx_vulns(&theirs));
}

/// `berth scan sbom` and `trivy sbom` on the same CycloneDX SBOM (berth's own, of the fixture
/// image) with the same advisories flag the same (id, package) pairs, and the SBOM yields the
/// findings the image itself does.
#[test]
fn trivy_agrees_on_an_sbom() {
    let d = tempfile::tempdir().unwrap();
    // The image scan builds the Trivy DB in d/trivy-cache; the SBOM scan reuses it.
    let (image, _) = trivy_with_db(&trivy_spec(), d.path());
    let (inv, _) = scan::scan_path(&image, "x", None).unwrap();
    let policy = berth_scan::policy::Policy::report_all(date!(2026 - 11 - 23));
    let from_image = Report::generate(&inv, &crate::reports::index(), &policy);
    let sbom = d.path().join("image.cdx.json");
    std::fs::write(
        &sbom,
        render::render(
            &from_image,
            Format::CycloneDx,
            &RenderContext::new(datetime!(2026-11-23 0:00 UTC)),
        ),
    )
    .unwrap();
    let read = berth_scan::api::read_image(
        &berth_scan::api::ImageSource::Sbom {
            path: sbom.clone(),
            name: "image.cdx.json".into(),
        },
        None,
    )
    .unwrap();
    let from_sbom = Report::generate(&read.inventory, &crate::reports::index(), &policy);
    let pairs = |r: &Report| -> BTreeSet<(String, String)> {
        r.findings
            .iter()
            .map(|f| (f.id.clone(), f.pkg_name.clone()))
            .collect()
    };
    assert_eq!(
        pairs(&from_sbom),
        pairs(&from_image),
        "the SBOM lost findings"
    );
    let theirs = trivy_hits(&run_trivy_sbom(&sbom, &d.path().join("trivy-cache"), &[]));
    assert_eq!(theirs.len(), 5, "{theirs:?}");
    assert_same(&pairs(&from_sbom), &theirs);
}

/// Deterministic xorshift generator.
struct Rng(u64);

impl Rng {
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        xs[(self.0 % xs.len() as u64) as usize]
    }
}

/// Generated advisories around the fixture's installed versions, each written both as OSV
/// (introduced/fixed/last_affected events) and as trivy-db (`VulnerableVersions` or Debian's
/// `FixedVersion`): berth and Trivy must flag exactly the same ones.
#[test]
fn trivy_agrees_on_generated_ranges() {
    // (trivy bucket, OSV ecosystem, package, candidate bounds, scheme)
    let cases: [(&str, &str, &str, &[&str], berth_scan::version::Scheme); 3] = [
        (
            "npm::gen",
            "npm",
            "minimist",
            &[
                "0.0.1",
                "0.2.4",
                "1.0.0",
                "1.1.9",
                "1.2.0",
                "1.2.0-rc.1",
                "1.2.1",
                "1.2.6",
                "2.0.0",
            ],
            berth_scan::version::Scheme::Npm,
        ),
        (
            "pip::gen",
            "PyPI",
            "urllib3",
            &[
                "1.26.0",
                "1.26.3",
                "1.26.4",
                "1.26.4rc1",
                "1.26.4.post1",
                "1.26.5",
                "1.27",
                "1.26.4.dev0",
                "1.25",
            ],
            berth_scan::version::Scheme::Pep440,
        ),
        (
            "cargo::gen",
            "crates.io",
            "smallvec",
            &[
                "0.6.3",
                "1.5.9",
                "1.6.0",
                "1.6.0-alpha.1",
                "1.6.1",
                "2.0.0",
                "1.0.0",
            ],
            berth_scan::version::Scheme::Semver,
        ),
    ];
    let mut rng = Rng(0x7215_5EED_0000_0001);
    let mut records = Vec::new();
    let mut spec = serde_json::json!({"data-source": {}, "vulnerability": {}, "buckets": {}});
    let mut n = 0;
    for (bucket, eco, pkg, bounds, scheme) in cases {
        spec["data-source"][bucket] =
            serde_json::json!({"ID": "osv", "Name": bucket, "URL": "https://example.invalid"});
        for _ in 0..24 {
            n += 1;
            let id = format!("GHSA-gen-{n:04}");
            let lo = rng.pick(&[&["0"], bounds].concat());
            let hi = rng.pick(bounds);
            let last = rng.pick(&["fixed", "fixed", "last_affected"]);
            // keep well-formed ranges: introduced below the end
            if lo != "0" && scheme.compare(lo, hi).unwrap() != std::cmp::Ordering::Less {
                continue;
            }
            let mut trivy_range = Vec::new();
            if lo != "0" {
                trivy_range.push(format!(">={lo}"));
            }
            trivy_range.push(if last == "fixed" {
                format!("<{hi}")
            } else {
                format!("<={hi}")
            });
            let mut adv = serde_json::json!({"VulnerableVersions": [trivy_range.join(", ")]});
            if last == "fixed" {
                adv["PatchedVersions"] = serde_json::json!([hi]);
            }
            spec["buckets"][bucket][pkg][&id] = adv;
            spec["vulnerability"][&id] = serde_json::json!({"Title": id});
            records.push(
                serde_json::json!({"id": id, "modified": "2026-11-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": eco, "name": pkg},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": lo}, {last: hi}]}]}]}),
            );
        }
    }
    // Debian: fixed versions only.
    spec["data-source"]["debian 12"] =
        serde_json::json!({"ID": "debian", "Name": "Debian", "URL": "https://example.invalid"});
    for fixed in [
        "2.36-9+deb12u15",
        "2.36-9+deb12u14",
        "2.36-9+deb12u9",
        "2.36-9+deb12u14~1",
        "2.36-10",
        "1:2.36-1",
        "2.36-9",
        "2.36-9+deb12u14+b1",
    ] {
        n += 1;
        let id = format!("CVE-2099-{n:04}");
        spec["buckets"]["debian 12"]["glibc"][&id] = serde_json::json!({"FixedVersion": fixed});
        spec["vulnerability"][&id] = serde_json::json!({"Title": id});
        records.push(serde_json::json!({"id": id, "modified": "2026-11-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Debian:12", "name": "glibc"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]}));
    }

    let d = tempfile::tempdir().unwrap();
    let (image, theirs) = trivy_with_db(&spec, d.path());
    let trivy_ids = trivy_hits(&theirs);

    assert_same_hits(&image, &records, &trivy_ids);
}

/// Scans `image` with berth against OSV `records` and checks it flags exactly the (id, package)
/// pairs Trivy did, with both hits and misses in the corpus.
fn assert_same_hits(
    image: &std::path::Path,
    records: &[serde_json::Value],
    trivy_ids: &BTreeSet<(String, String)>,
) {
    let recs: Vec<berth_scan::advisory::OsvRecord> = records
        .iter()
        .map(|r| berth_scan::advisory::OsvRecord::from_json(r.to_string().as_bytes()).unwrap())
        .collect();
    let (inv, _) = scan::scan_path(image, "x", None).unwrap();
    let r = Report::generate(
        &inv,
        &berth_scan::advisory::AdvisoryIndex::from_records(&recs),
        &berth_scan::policy::Policy::report_all(date!(2026 - 11 - 23)),
    );
    let ours: BTreeSet<(String, String)> = r
        .findings
        .iter()
        .map(|f| (f.id.clone(), f.pkg_name.clone()))
        .collect();
    assert!(
        ours.len() >= records.len().min(10) / 2 && ours.len() < records.len(),
        "a mix of hits and misses: {} of {}",
        ours.len(),
        records.len()
    );
    assert_same(&ours, trivy_ids);
}

/// (id, package) of every vulnerability in a Trivy JSON report.
fn trivy_hits(report: &serde_json::Value) -> BTreeSet<(String, String)> {
    json_vulns(report)
        .map(|v| {
            (
                v["VulnerabilityID"].as_str().unwrap().to_owned(),
                v["PkgName"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// apk has no native oracle on Debian; Trivy's apk comparer (a port of apk-tools) is the
/// behavioural one. Generated fixed versions around each installed version must be judged
/// alike by berth and Trivy.
/// The installed apk packages of [`alpine_versions`]: (name, origin, version).
const ALPINE_INSTALLED: [(&str, &str, &str); 8] = [
    ("musl", "musl", "1.2.4_git20230717-r4"),
    ("busybox", "busybox", "1.36.1-r15"),
    ("libcrypto3", "openssl", "3.1.4-r5"),
    ("zlib", "zlib", "1.3.1-r0"),
    ("foo", "foo", "1.0_rc1-r0"),
    ("bar", "bar", "1.0.0_p2-r3"),
    ("baz", "baz", "2.3a-r1"),
    ("qux", "qux", "0.10.2-r10"),
];

/// An Alpine 3.19 layer with [`ALPINE_INSTALLED`] and generated advisories whose fixed versions
/// lie around each installed version: (layer, Trivy DB spec, the same advisories as OSV records).
pub(crate) fn alpine_versions() -> (
    support::LayerSpec,
    serde_json::Value,
    Vec<serde_json::Value>,
) {
    let mut db = String::new();
    for (name, origin, v) in ALPINE_INSTALLED {
        db.push_str(&format!("P:{name}\nV:{v}\nA:x86_64\no:{origin}\n\n"));
    }
    let layer: support::LayerSpec = vec![
        ("etc/alpine-release", "3.19.1\n".into()),
        ("etc/os-release", "ID=alpine\nVERSION_ID=3.19.1\n".into()),
        ("lib/apk/db/installed", db.into_bytes()),
    ];
    let tweaks = [
        "",
        "-r0",
        "-r1",
        "-r9",
        "-r10",
        "-r16",
        "_rc1",
        "_rc2-r0",
        "_p1",
        "_p3-r0",
        "_alpha",
        "_beta2",
        "_pre1",
        "a",
        "b",
        "_git20240101",
        ".1",
        ".0",
        "_svn1",
        "_hg2",
    ];
    let mut rng = Rng(0xA1B2_C3D4_E5F6_0789);
    let mut spec = serde_json::json!({"data-source": {"alpine 3.19": {"ID": "alpine", "Name": "Alpine Secdb", "URL": "https://example.invalid"}},
        "vulnerability": {}, "buckets": {"alpine 3.19": {}}});
    let mut records = Vec::new();
    let mut n = 0;
    for (_, origin, v) in ALPINE_INSTALLED {
        let base = v.split("-r").next().unwrap_or(v);
        let bumped: Vec<String> = {
            // vary the last number of the base up and down
            let (head, last) = base.rsplit_once('.').unwrap_or(("", base));
            let digits: String = last.chars().take_while(char::is_ascii_digit).collect();
            let rest = &last[digits.len()..];
            let num: u64 = digits.parse().unwrap_or(0);
            let join = |x: u64| {
                if head.is_empty() {
                    format!("{x}{rest}")
                } else {
                    format!("{head}.{x}{rest}")
                }
            };
            vec![
                join(num + 1),
                join(num.saturating_sub(1)),
                base.to_owned(),
                v.to_owned(),
            ]
        };
        for _ in 0..14 {
            n += 1;
            let stem = rng.pick(&bumped.iter().map(String::as_str).collect::<Vec<_>>());
            let fixed = format!(
                "{}{}",
                stem.split("-r").next().unwrap_or(stem),
                rng.pick(&tweaks)
            );
            if berth_scan::version::apk::validate(&fixed).is_err() {
                continue;
            }
            let id = format!("CVE-2099-{n:04}");
            spec["buckets"]["alpine 3.19"][origin][&id] =
                serde_json::json!({"FixedVersion": fixed});
            spec["vulnerability"][&id] = serde_json::json!({"Title": id});
            records.push(serde_json::json!({"id": id, "modified": "2026-11-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": "Alpine:v3.19", "name": origin},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}]}]}));
        }
    }
    (layer, spec, records)
}

#[test]
fn trivy_agrees_on_alpine_versions() {
    let (layer, spec, records) = alpine_versions();
    let d = tempfile::tempdir().unwrap();
    let (image, theirs) = trivy_with_db_on(&spec, d.path(), &[layer]);
    let trivy_ids = trivy_hits(&theirs);
    let (inv, _) = scan::scan_path(&image, "x", None).unwrap();
    assert_eq!(
        inv.packages.len(),
        ALPINE_INSTALLED.len(),
        "every apk package is listed"
    );
    assert_same_hits(&image, &records, &trivy_ids);
    // Package URLs as Trivy writes them (Alpine's `distro` is the release alone).
    let trivy_purls: BTreeSet<String> = theirs["Results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["Vulnerabilities"].as_array().into_iter().flatten())
        .filter_map(|v| v["PkgIdentifier"]["PURL"].as_str().map(str::to_owned))
        .collect();
    assert!(!trivy_purls.is_empty(), "Trivy named no package URL");
    let ours: BTreeSet<String> = inv
        .packages
        .iter()
        .map(|p| p.purl(inv.os.as_ref()))
        .collect();
    assert!(
        trivy_purls.is_subset(&ours),
        "only Trivy: {:?}\nberth: {ours:?}",
        trivy_purls.difference(&ours).collect::<Vec<_>>()
    );
}

/// Generated `[introduced, fixed)` advisories over `bounds` for each package, as a Trivy DB
/// spec (one bucket) and as OSV records.
fn generated_ranges(
    bucket: &str,
    ecosystem: &str,
    scheme: berth_scan::version::Scheme,
    cases: &[(&str, &[&str])],
    per_package: usize,
    seed: u64,
) -> (serde_json::Value, Vec<serde_json::Value>) {
    let mut spec = serde_json::json!({"data-source": {bucket: {"ID": "ghsa", "Name": bucket, "URL": "https://example.invalid"}},
        "vulnerability": {}, "buckets": {bucket: {}}});
    let mut records = Vec::new();
    let mut rng = Rng(seed);
    let mut n = 0;
    for (pkg, bounds) in cases {
        for _ in 0..per_package {
            n += 1;
            let (lo, hi) = (rng.pick(&[&["0"], *bounds].concat()), rng.pick(bounds));
            if lo != "0" && scheme.compare(lo, hi).unwrap() != std::cmp::Ordering::Less {
                continue;
            }
            let id = format!("GHSA-gen-{ecosystem}-{n:04}");
            let range = if lo == "0" {
                format!("<{hi}")
            } else {
                format!(">={lo}, <{hi}")
            };
            spec["buckets"][bucket][*pkg][&id] =
                serde_json::json!({"VulnerableVersions": [range], "PatchedVersions": [hi]});
            spec["vulnerability"][&id] = serde_json::json!({"Title": id});
            records.push(serde_json::json!({"id": id, "modified": "2026-11-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": ecosystem, "name": pkg},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": lo}, {"fixed": hi}]}]}]}));
        }
    }
    (spec, records)
}

/// Scans `layers` with Trivy (DB from `spec`) and berth (OSV `records`): berth lists exactly
/// `packages` (name, version) and both flag the same advisories.
fn check_parity(
    spec: &serde_json::Value,
    records: &[serde_json::Value],
    layers: &[support::LayerSpec],
    packages: &[(&str, &str)],
) {
    let d = tempfile::tempdir().unwrap();
    let (image, theirs) = trivy_with_db_on(spec, d.path(), layers);
    let (inv, _) = scan::scan_path(&image, "x", None).unwrap();
    let names: BTreeSet<(&str, &str)> = inv
        .packages
        .iter()
        .map(|p| (p.name.as_str(), p.version.as_str()))
        .collect();
    assert_eq!(names, packages.iter().copied().collect::<BTreeSet<_>>());
    assert_same_hits(&image, records, &trivy_hits(&theirs));
}

fn jar(files: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (n, b) in files {
        z.start_file(*n, zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(b).unwrap();
    }
    z.finish().unwrap().into_inner()
}

/// Maven: jars identified from pom.properties (also nested in a fat jar), and generated ranges
/// around their versions, judged by berth's ComparableVersion port and Trivy's Maven comparer.
#[test]
fn trivy_agrees_on_maven_jars() {
    let pom = |g: &str, a: &str, v: &str| {
        format!("groupId={g}\nartifactId={a}\nversion={v}\n").into_bytes()
    };
    let guava = jar(&[(
        "META-INF/maven/com.google.guava/guava/pom.properties",
        &pom("com.google.guava", "guava", "31.1-jre"),
    )]);
    let lang3 = jar(&[(
        "META-INF/maven/org.apache.commons/commons-lang3/pom.properties",
        &pom("org.apache.commons", "commons-lang3", "3.12.0"),
    )]);
    let boot = jar(&[
        ("BOOT-INF/lib/commons-lang3-3.12.0.jar", &lang3),
        ("META-INF/MANIFEST.MF", b"Manifest-Version: 1.0\n"),
    ]);
    let layer: support::LayerSpec = vec![("app/guava-31.1-jre.jar", guava), ("app/boot.jar", boot)];
    let cases: [(&str, &[&str]); 2] = [
        (
            "com.google.guava:guava",
            &[
                "30.0-jre",
                "31.0",
                "31.1",
                "31.1-jre",
                "31.1-android",
                "32.0.0-android",
                "32.0.1-jre",
                "31.1.0",
                "31.0.1-jre",
                "31.1-rc1",
                "1.0",
                "31.1-jre.1",
                "31.1-sp1",
            ],
        ),
        (
            "org.apache.commons:commons-lang3",
            &[
                "3.12.0",
                "3.12",
                "3.11",
                "3.12.1",
                "3.13.0",
                "3.12.0-SNAPSHOT",
                "3.12.0-rc1",
                "3.12.0.1",
                "3.9",
                "4.0",
                "3.12.0-alpha",
            ],
        ),
    ];
    let (spec, records) = generated_ranges(
        "maven::GitHub Security Advisory Maven",
        "Maven",
        berth_scan::version::Scheme::Maven,
        &cases,
        30,
        0x3A7E_11A5_0000_0042,
    );
    check_parity(
        &spec,
        &records,
        &[layer],
        &[
            ("com.google.guava:guava", "31.1-jre"),
            ("org.apache.commons:commons-lang3", "3.12.0"),
        ],
    );
}

/// Go: a synthetic Go binary (build info with main module, deps and a replacement) is read the
/// same way by berth and Trivy, and generated ranges over its module versions and the Go
/// toolchain version flag the same advisories.
#[test]
fn trivy_agrees_on_go_binaries() {
    let modinfo = "path\texample.com/app\nmod\texample.com/app\t(devel)\t\n\
        dep\tgolang.org/x/net\tv0.7.0\th1:x=\ndep\tgithub.com/a/b\tv1.2.3\th1:y=\n=>\tgithub.com/fork/b\tv1.2.4-0.20230101000000-abcdefabcdef\th1:z=\n\
        dep\tgithub.com/old/lib\tv2.1.0+incompatible\th1:w=\n";
    let layer: support::LayerSpec =
        vec![("usr/local/bin/app", support::go_binary("go1.20.3", modinfo))];
    let cases: [(&str, &[&str]); 4] = [
        (
            "stdlib",
            &[
                "1.19.9",
                "1.20.3",
                "1.20.4",
                "1.20.0",
                "1.21.0",
                "1.20.3-rc.1",
                "1.18",
            ],
        ),
        (
            "golang.org/x/net",
            &[
                "0.7.0",
                "0.6.0",
                "0.8.0",
                "0.7.1",
                "0.0.0-20230101000000-abcdefabcdef",
                "0.7.0-pre.1",
            ],
        ),
        (
            "github.com/fork/b",
            &[
                "1.2.4",
                "1.2.3",
                "1.2.4-0.20220101000000-abcdefabcdef",
                "1.2.4-0.20240101000000-abcdefabcdef",
                "1.3.0",
            ],
        ),
        ("github.com/old/lib", &["2.1.0", "2.0.9", "2.1.1", "3.0.0"]),
    ];
    let (spec, records) = generated_ranges(
        "go::GitHub Security Advisory Go",
        "Go",
        berth_scan::version::Scheme::Go,
        &cases,
        16,
        0x6060_6060_0000_0007,
    );
    check_parity(
        &spec,
        &records,
        &[layer],
        &[
            ("stdlib", "v1.20.3"),
            ("golang.org/x/net", "v0.7.0"),
            ("github.com/fork/b", "v1.2.4-0.20230101000000-abcdefabcdef"),
            ("github.com/old/lib", "v2.1.0+incompatible"),
        ],
    );
}

/// rpm: an rpmdb.sqlite written by rpm 4.18 is read the same way by berth and Trivy, and
/// generated Rocky Linux fixed versions (epochs, releases, `~`/`^`, dist tags) flag the same
/// advisories.
#[test]
fn trivy_agrees_on_rpm_packages() {
    let d = tempfile::tempdir().unwrap();
    let root = crate::rpm::build_rootfs(d.path());
    let read = |p: &str| std::fs::read(root.join(p)).unwrap();
    let layer: support::LayerSpec = vec![
        ("etc/os-release", read("etc/os-release")),
        // Trivy detects the Red Hat family from these release files, not from os-release.
        (
            "etc/redhat-release",
            b"Rocky Linux release 9.3 (Blue Onyx)\n".to_vec(),
        ),
        (
            "etc/rocky-release",
            b"Rocky Linux release 9.3 (Blue Onyx)\n".to_vec(),
        ),
        ("var/lib/rpm/rpmdb.sqlite", read("var/lib/rpm/rpmdb.sqlite")),
        (
            "usr/lib/python3.9/site-packages/six-1.16.0.dist-info/METADATA",
            b"Name: six\nVersion: 1.16.0\n".to_vec(),
        ),
    ];
    let fixed = [
        "1:1.2.3-5.el9",
        "1:1.2.3-4.el9",
        "1:1.2.3-3.el9",
        "1.2.3-9.el9",
        "2:1.0-1.el9",
        "1:1.2.3-4.el9_1",
        "1:1.2.3-4.el9~rc1",
        "1:1.2.3^git1-1.el9",
        "1:1.2.4-1.el9",
        "1:1.2.2-10.el9",
        "1:1.2.3-4.el8",
        "1:1.2.3-10.el9",
        "1:1.2.3-4",
    ];
    let bucket = "rocky 9";
    let mut spec = serde_json::json!({"data-source": {bucket: {"ID": "rocky", "Name": "Rocky Linux updateinfo", "URL": "https://example.invalid"}},
        "vulnerability": {}, "buckets": {bucket: {"hello-berth": {}}}});
    let mut records = Vec::new();
    for (n, f) in fixed.iter().enumerate() {
        let id = format!("CVE-2099-{:04}", 500 + n);
        spec["buckets"][bucket]["hello-berth"][&id] =
            serde_json::json!({"FixedVersion": f, "Arches": ["noarch", "x86_64"]});
        spec["vulnerability"][&id] = serde_json::json!({"Title": id});
        records.push(
            serde_json::json!({"id": id, "modified": "2026-11-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Rocky Linux:9", "name": "hello-berth"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f}]}]}]}),
        );
    }
    // The same advisories name the third-party package too: neither scanner applies them.
    for (n, f) in ["2.1-1", "3.0-1"].iter().enumerate() {
        let id = format!("CVE-2099-{:04}", 600 + n);
        spec["buckets"][bucket]["ext-tool"][&id] =
            serde_json::json!({"FixedVersion": f, "Arches": ["noarch", "x86_64"]});
        spec["vulnerability"][&id] = serde_json::json!({"Title": id});
        records.push(
            serde_json::json!({"id": id, "modified": "2026-11-01T00:00:00Z",
            "affected": [{"package": {"ecosystem": "Rocky Linux:9", "name": "ext-tool"},
            "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f}]}]}]}),
        );
    }
    let d2 = tempfile::tempdir().unwrap();
    let (image, theirs) = trivy_with_db_on(&spec, d2.path(), &[layer]);
    let (inv, _) = scan::scan_path(&image, "x", None).unwrap();
    assert_eq!(inv.packages.len(), 2, "{:?}", inv.packages);
    let hits = trivy_hits(&theirs);
    assert!(
        hits.iter().any(|(_, p)| p == "hello-berth"),
        "Trivy found nothing for the vendor's package; the test would prove little: {hits:?}"
    );
    assert_same_hits(&image, &records, &hits);
}

/// Ubuntu: dpkg packages matched by source package against `Ubuntu:22.04:LTS` OSV records and a
/// trivy-db `ubuntu 22.04` bucket with generated fixed versions (ubuntu revisions, epochs, `~`).
#[test]
fn trivy_agrees_on_ubuntu() {
    let status = "Package: libssl3\nStatus: install ok installed\nArchitecture: amd64\nSource: openssl\nVersion: 3.0.2-0ubuntu1.10\n\n\
Package: zlib1g\nStatus: install ok installed\nArchitecture: amd64\nSource: zlib\nVersion: 1:1.2.11.dfsg-2ubuntu9.2\n";
    let layer: support::LayerSpec = vec![
        (
            "etc/os-release",
            b"ID=ubuntu\nVERSION_ID=\"22.04\"\n".to_vec(),
        ),
        (
            "etc/lsb-release",
            b"DISTRIB_ID=Ubuntu\nDISTRIB_RELEASE=22.04\nDISTRIB_CODENAME=jammy\n".to_vec(),
        ),
        ("var/lib/dpkg/status", status.as_bytes().to_vec()),
    ];
    let cases: [(&str, &[&str]); 2] = [
        (
            "openssl",
            &[
                "3.0.2-0ubuntu1.11",
                "3.0.2-0ubuntu1.10",
                "3.0.2-0ubuntu1.9",
                "3.0.2-0ubuntu1.10+esm1",
                "3.0.2-0ubuntu2",
                "3.0.2~rc1-1",
                "1:3.0.0-1",
                "3.0.10-1ubuntu1",
            ],
        ),
        (
            "zlib",
            &[
                "1:1.2.11.dfsg-2ubuntu9.2",
                "1:1.2.11.dfsg-2ubuntu9.3",
                "1.2.13.dfsg-1",
                "1:1.2.11.dfsg-2ubuntu10",
                "1:1.2.11-1",
                "2:1.0-1",
            ],
        ),
    ];
    let bucket = "ubuntu 22.04";
    let mut spec = serde_json::json!({"data-source": {bucket: {"ID": "ubuntu", "Name": "Ubuntu CVE Tracker", "URL": "https://example.invalid"}},
        "vulnerability": {}, "buckets": {bucket: {}}});
    let mut records = Vec::new();
    let mut n = 0;
    for (pkg, fixed) in cases {
        for f in fixed {
            n += 1;
            let id = format!("CVE-2099-{:04}", 700 + n);
            spec["buckets"][bucket][pkg][&id] = serde_json::json!({"FixedVersion": f});
            spec["vulnerability"][&id] = serde_json::json!({"Title": id});
            records.push(serde_json::json!({"id": format!("UBUNTU-{id}"), "upstream": [id], "modified": "2026-11-01T00:00:00Z",
                "affected": [{"package": {"ecosystem": "Ubuntu:22.04:LTS", "name": pkg},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": f}]}]}]}));
        }
    }
    check_parity(
        &spec,
        &records,
        &[layer],
        &[
            ("libssl3", "3.0.2-0ubuntu1.10"),
            ("zlib1g", "1:1.2.11.dfsg-2ubuntu9.2"),
        ],
    );
}

/// berth's own workspace (Cargo.lock, the root Cargo.toml, every member's Cargo.toml), as a
/// source tree in a root filesystem: the same crates as Trivy, which keeps only what the
/// declared dependencies reach (no dev-dependencies, no root crate); and with the members'
/// manifests missing, what the root's `[workspace.dependencies]` alone reach.
#[test]
fn trivy_agrees_on_a_cargo_workspace() {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let root_manifest = std::fs::read_to_string(workspace.join("Cargo.toml")).unwrap();
    let members: Vec<String> = toml::from_str::<toml::Table>(&root_manifest).unwrap()["workspace"]
        ["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect();
    for with_members in [true, false] {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("rootfs/src/app");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::copy(workspace.join("Cargo.toml"), src.join("Cargo.toml")).unwrap();
        std::fs::write(src.join("Cargo.lock"), with_dev_only_crate(&workspace)).unwrap();
        if with_members {
            for m in &members {
                std::fs::create_dir_all(src.join(m)).unwrap();
                let mut manifest =
                    std::fs::read_to_string(workspace.join(m).join("Cargo.toml")).unwrap();
                if m == "scan" {
                    manifest.push_str("\n[dev-dependencies.berth-dev-only]\nversion = \"1\"\n");
                }
                std::fs::write(src.join(m).join("Cargo.toml"), manifest).unwrap();
            }
        }
        let rootfs = d.path().join("rootfs");
        let (inv, _) = scan::scan_path(&rootfs, "src", None).unwrap();
        let ours: BTreeSet<String> = inv
            .packages
            .iter()
            .filter(|p| p.kind == berth_scan::inventory::PkgType::Cargo)
            .map(|p| format!("{}@{}", p.name, p.version))
            .collect();
        let theirs: BTreeSet<String> = trivy_rootfs_components(&rootfs, d.path(), "cargo")
            .into_iter()
            .map(|(name, version)| format!("{name}@{version}"))
            .collect();
        let lock_size = std::fs::read_to_string(src.join("Cargo.lock"))
            .unwrap()
            .matches("[[package]]")
            .count();
        assert!(
            theirs.len() > 20 && theirs.len() < lock_size,
            "Trivy kept {} of {lock_size}: the manifest must narrow the lock",
            theirs.len()
        );
        assert_eq!(ours, theirs, "with member manifests: {with_members}");
    }
}

/// The workspace's `Cargo.lock` with one more crate, `berth-dev-only`, that berth-scan depends
/// on only as a dev-dependency: whatever the workspace itself needs, the manifests then have
/// something to narrow away.
fn with_dev_only_crate(workspace: &std::path::Path) -> String {
    let mut lock: toml::Table =
        toml::from_str(&std::fs::read_to_string(workspace.join("Cargo.lock")).unwrap()).unwrap();
    let packages = lock["package"].as_array_mut().unwrap();
    for p in packages.iter_mut() {
        if p["name"].as_str() == Some("berth-scan") {
            let deps = p
                .as_table_mut()
                .unwrap()
                .entry("dependencies")
                .or_insert_with(|| toml::Value::Array(Vec::new()));
            deps.as_array_mut()
                .unwrap()
                .push(toml::Value::String("berth-dev-only".into()));
        }
    }
    let mut dev_only = toml::Table::new();
    dev_only.insert("name".into(), "berth-dev-only".into());
    dev_only.insert("version".into(), "1.0.0".into());
    dev_only.insert(
        "source".into(),
        "registry+https://github.com/rust-lang/crates.io-index".into(),
    );
    packages.push(toml::Value::Table(dev_only));
    toml::to_string(&lock).unwrap()
}

/// `(name, version)` of every component of `kind` (a purl type: `cargo`, `rpm`…) that Trivy
/// lists for a root filesystem, offline, as CycloneDX (which needs no vulnerability database).
pub(crate) fn trivy_rootfs_components(
    rootfs: &std::path::Path,
    work: &std::path::Path,
    kind: &str,
) -> BTreeSet<(String, String)> {
    let out = work.join("trivy-rootfs.json");
    let res = command(&trivy())
        .args([
            "rootfs",
            "--quiet",
            "--offline-scan",
            "--format",
            "cyclonedx",
        ])
        .arg("--cache-dir")
        .arg(work.join("trivy-cache"))
        .arg("--output")
        .arg(&out)
        .arg(rootfs)
        .output()
        .unwrap();
    assert!(
        res.status.success(),
        "trivy: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let prefix = format!("pkg:{kind}/");
    doc["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["purl"].as_str().is_some_and(|p| p.starts_with(&prefix)))
        .map(|c| {
            (
                c["name"].as_str().unwrap_or_default().to_owned(),
                c["version"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
