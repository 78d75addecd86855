//! Grype v0.121.2, the second opinion (built with its DB builder `grype-db-from-osv` by
//! `integration/peers/build-scanners.sh`): the same image and the same OSV records
//! (`reports::RECORDS`), Grype's findings against berth's. Where Grype decides otherwise by
//! design, the tests pin Grype's actual answer; each case is a row of the Grype section of
//! `docs/scanner-differences.md`.

use std::collections::BTreeSet;
use std::path::Path;

use berth_scan::advisory::{AdvisoryIndex, OsvRecord};
use berth_scan::render::Format;

use crate::reports::RECORDS;
use crate::support;
use crate::trivy::{berth_doc, command, json_vulns, peer};

/// Runs the peer `name` offline, as the tests run Grype: its DB under `dir/grype-db`, no DB
/// update, no age check, no application update check, no user configuration (HOME and the XDG
/// directories under `dir`).
fn run(name: &str, dir: &Path, args: &[&str]) -> String {
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = command(&peer(name))
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .env("GRYPE_DB_CACHE_DIR", dir.join("grype-db"))
        .env("GRYPE_DB_AUTO_UPDATE", "false")
        .env("GRYPE_DB_VALIDATE_AGE", "false")
        .env("GRYPE_CHECK_FOR_APP_UPDATE", "false")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{name} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn utf8(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temporary path")
}

/// Writes `records` as OSV files, builds a Grype v6 DB from them with Grype's own builder and
/// imports it with `grype db import`. Returns what the builder did: one line per record, its id
/// and the provider and schema it went to.
fn grype_db<R: AsRef<[u8]>>(records: &[R], dir: &Path) -> String {
    let osv = dir.join("osv");
    std::fs::create_dir_all(&osv).unwrap();
    for (i, r) in records.iter().enumerate() {
        std::fs::write(osv.join(format!("{i:03}.json")), r).unwrap();
    }
    let built = dir.join("built");
    let said = run("grype-db-from-osv", dir, &[utf8(&osv), utf8(&built)]);
    run(
        "grype",
        dir,
        &["db", "import", utf8(&built.join("vulnerability.db"))],
    );
    said
}

/// What Grype said of an image: its JSON report and its CycloneDX SBOM (one run).
struct GrypeScan {
    report: serde_json::Value,
    sbom: serde_json::Value,
}

/// The fixture image scanned by Grype (DB from `reports::RECORDS`, `extra` flags) and by berth;
/// returns (Grype's scan, berth's JSON report, berth's CycloneDX SBOM).
fn scan_fixture(extra: &[&str]) -> (GrypeScan, serde_json::Value, serde_json::Value) {
    scan_image(&support::layers(), RECORDS, extra)
}

/// An image of `layers` scanned by Grype (DB from `records`, `extra` flags) and by berth (index
/// from `records`); returns (Grype's scan, berth's JSON report, berth's CycloneDX SBOM).
fn scan_image<R: AsRef<str>>(
    layers: &[support::LayerSpec],
    records: &[R],
    extra: &[&str],
) -> (GrypeScan, serde_json::Value, serde_json::Value) {
    let d = tempfile::tempdir().unwrap();
    let texts: Vec<&str> = records.iter().map(AsRef::as_ref).collect();
    grype_db(&texts, d.path());
    let image = support::docker_archive_of(d.path(), layers, "image.tar");
    let source = format!("docker-archive:{}", image.display());
    let cdx = d.path().join("grype.cdx.json");
    let cdx_output = format!("cyclonedx-json={}", cdx.display());
    let mut args = vec![source.as_str(), "-o", "json", "-o", cdx_output.as_str()];
    args.extend(extra);
    let report = serde_json::from_str(&run("grype", d.path(), &args)).unwrap();
    let sbom = serde_json::from_slice(&std::fs::read(&cdx).unwrap()).unwrap();
    let parsed: Vec<OsvRecord> = texts
        .iter()
        .map(|r| OsvRecord::from_json(r.as_bytes()).unwrap())
        .collect();
    let index = AdvisoryIndex::from_records(&parsed);
    (
        GrypeScan { report, sbom },
        berth_doc(&image, &index, Format::Json),
        berth_doc(&image, &index, Format::CycloneDx),
    )
}

/// One finding as both scanners can say it: id, package, installed version, fixed versions,
/// fix state (Grype's words), severity (lower case), and the other ids it is known by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Finding {
    id: String,
    pkg: String,
    installed: String,
    fixed: Vec<String>,
    state: String,
    severity: String,
    also: Vec<String>,
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// berth's findings. Its `Status` in Grype's words: `fixed` is `fixed`, `affected` is
/// `not-fixed`; its `FixedVersion` is the list it joins with ", "; `also` its `VendorIDs`.
fn berth_findings(report: &serde_json::Value) -> BTreeSet<Finding> {
    json_vulns(report)
        .map(|v| Finding {
            id: v["VulnerabilityID"].as_str().unwrap().to_owned(),
            pkg: v["PkgName"].as_str().unwrap().to_owned(),
            installed: v["InstalledVersion"].as_str().unwrap().to_owned(),
            fixed: v["FixedVersion"]
                .as_str()
                .unwrap_or_default()
                .split(", ")
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            state: match v["Status"].as_str().unwrap() {
                "affected" => "not-fixed".to_owned(),
                other => other.to_owned(),
            },
            severity: v["Severity"].as_str().unwrap().to_lowercase(),
            also: strings(&v["VendorIDs"]),
        })
        .collect()
}

/// Grype's matches; `also` is `relatedVulnerabilities` less the match's own id.
fn grype_findings(report: &serde_json::Value) -> BTreeSet<Finding> {
    report["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let v = &m["vulnerability"];
            let id = v["id"].as_str().unwrap().to_owned();
            Finding {
                also: m["relatedVulnerabilities"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r["id"].as_str())
                    .filter(|r| *r != id)
                    .map(str::to_owned)
                    .collect(),
                id,
                pkg: m["artifact"]["name"].as_str().unwrap().to_owned(),
                installed: m["artifact"]["version"].as_str().unwrap().to_owned(),
                fixed: strings(&v["fix"]["versions"]),
                state: v["fix"]["state"].as_str().unwrap().to_owned(),
                severity: v["severity"].as_str().unwrap().to_lowercase(),
            }
        })
        .collect()
}

fn finding(
    (id, pkg, installed): (&str, &str, &str),
    fixed: &[&str],
    state: &str,
    severity: &str,
    also: &[&str],
) -> Finding {
    let owned = |xs: &[&str]| xs.iter().map(|s| (*s).to_owned()).collect();
    Finding {
        id: id.into(),
        pkg: pkg.into(),
        installed: installed.into(),
        fixed: owned(fixed),
        state: state.into(),
        severity: severity.into(),
        also: owned(also),
    }
}

/// The purls of a CycloneDX document's library components, without qualifiers.
fn purls(sbom: &serde_json::Value) -> BTreeSet<String> {
    sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["type"] == "library")
        .filter_map(|c| c["purl"].as_str())
        .map(|p| p.split('?').next().unwrap().to_owned())
        .collect()
}

const LIBC6: (&str, &str, &str) = ("CVE-2099-0001", "libc6", "2.36-9+deb12u14");
const BASH: (&str, &str, &str) = ("CVE-2099-0005", "bash", "5.2.15-2+b7");

/// Same image, same advisories: every finding of berth and of Grype, field by field. They agree
/// on the Debian finding with a fix (matched through the source package) and on the one without
/// (reported, no fixed version: berth's `affected` is Grype's `not-fixed`). Grype by design:
/// names the GHSA where berth (as Trivy) names the CVE; lists only the fixed version of the range
/// the installed version is in; does not borrow GitHub's rating of the bash CVE (made for another
/// package); and reports nothing from the PYSEC and RUSTSEC records (see the two tests below).
#[test]
fn grype_compares_with_berth_on_findings() {
    let (grype, ours, _) = scan_fixture(&[]);
    let ours = berth_findings(&ours);
    let theirs = grype_findings(&grype.report);

    let libc6 = finding(LIBC6, &["2.36-9+deb12u15"], "fixed", "low", &[]);
    assert!(
        ours.contains(&libc6) && theirs.contains(&libc6),
        "{ours:#?}\n{theirs:#?}"
    );

    let bash = |severity| finding(BASH, &[], "not-fixed", severity, &[]);
    let minimist = ("minimist", "1.2.0");
    let want_ours = BTreeSet::from([
        libc6.clone(),
        bash("medium"),
        finding(
            ("CVE-2099-0010", minimist.0, minimist.1),
            &["0.2.4", "1.2.6"],
            "fixed",
            "critical",
            &["GHSA-fake-0001"],
        ),
        finding(
            ("CVE-2099-0020", "urllib3", "1.26.4"),
            &["1.26.5"],
            "fixed",
            "medium",
            &["PYSEC-2099-7"],
        ),
        finding(
            ("CVE-2099-0030", "smallvec", "1.6.0"),
            &["1.6.1"],
            "fixed",
            "high",
            &["RUSTSEC-2099-0001"],
        ),
    ]);
    let want_theirs = BTreeSet::from([
        libc6,
        bash("unknown"),
        finding(
            ("GHSA-fake-0001", minimist.0, minimist.1),
            &["1.2.6"],
            "fixed",
            "critical",
            &["CVE-2099-0010"],
        ),
    ]);
    assert_eq!(ours, want_ours, "berth");
    assert_eq!(theirs, want_theirs, "Grype");
}

/// With `--by-cve` Grype names the CVE and keeps the GHSA as a related id, as berth reports
/// them; its fixed versions are still only those of the matched range.
#[test]
fn grype_by_cve_names_the_cve_as_berth_does() {
    let (grype, ours, _) = scan_fixture(&["--by-cve"]);
    let minimist = |f: &&Finding| f.pkg == "minimist";
    let ours: Vec<Finding> = berth_findings(&ours)
        .iter()
        .filter(minimist)
        .cloned()
        .collect();
    let theirs: Vec<Finding> = grype_findings(&grype.report)
        .iter()
        .filter(minimist)
        .cloned()
        .collect();
    let mut want = ours.clone();
    want[0].fixed = vec!["1.2.6".into()];
    assert_eq!(theirs, want);
    assert_eq!(ours[0].fixed, ["0.2.4", "1.2.6"]);
}

/// The PYSEC and RUSTSEC records go through Grype's own `osv` transformer, which keeps only the
/// OSV providers it has a strategy for (AlmaLinux, Bitnami, Go, Root.io, Chainguard) and drops
/// the rest: the DB holds neither the records nor their CVEs, and urllib3, which Grype does
/// catalog, matches nothing. (Grype's Python and Rust advisories come from GitHub's.)
#[test]
fn grype_drops_pysec_and_rustsec_records() {
    let d = tempfile::tempdir().unwrap();
    let said = grype_db(RECORDS, d.path());
    for id in ["PYSEC-2099-7", "RUSTSEC-2099-0001"] {
        assert!(
            said.contains(&format!("{id} -> osv ")),
            "{id} not given to the osv transformer:\n{said}"
        );
    }
    // The `name` (or `id`) of every item of what `grype ARGS -o json` lists.
    let listed = |args: &[&str], key: &str| -> BTreeSet<String> {
        let args = [args, &["-o", "json"]].concat();
        let doc: serde_json::Value = serde_json::from_str(&run("grype", d.path(), &args)).unwrap();
        doc.as_array()
            .unwrap()
            .iter()
            .map(|v| v[key].as_str().unwrap().to_owned())
            .collect()
    };
    let search = ["db", "search", "vuln"];
    let dropped = [
        "PYSEC-2099-7",
        "RUSTSEC-2099-0001",
        "CVE-2099-0020",
        "CVE-2099-0030",
    ];
    assert_eq!(
        listed(&[&search[..], &dropped].concat(), "id"),
        BTreeSet::new()
    );
    // The other records are there (the search can find something).
    let kept = ["GHSA-fake-0001", "CVE-2099-0001"];
    assert_eq!(
        listed(&[&search[..], &kept].concat(), "id"),
        kept.map(String::from).into()
    );
    assert_eq!(
        listed(&["db", "providers"], "name"),
        ["debian", "github"].map(String::from).into()
    );

    let (grype, _, _) = scan_fixture(&[]);
    assert!(purls(&grype.sbom).contains("pkg:pypi/urllib3@1.26.4"));
    assert!(
        !grype_findings(&grype.report)
            .iter()
            .any(|f| f.pkg == "urllib3")
    );
}

/// The inventories differ in two ways, each by design of Grype (syft):
/// - it reads no `Cargo.lock` in an image (its Cargo.lock cataloger scans directories only; in
///   images it reads `cargo auditable` binaries), so the crates berth and Trivy list from the
///   lock file (smallvec, and the root crate) are not in its inventory at all;
/// - it lists the Python package a dpkg package installed (pip 23.0.1 of python3-pip, whose
///   METADATA is in `python3-pip.md5sums`) as a PyPI package too, where berth and Trivy v0.74.0
///   leave files a distribution package installed to that package.
///
/// The rest of the inventory agrees.
#[test]
fn grype_differs_on_the_inventory() {
    let (grype, _, ours) = scan_fixture(&[]);
    let (ours, theirs) = (purls(&ours), purls(&grype.sbom));
    let only_ours: BTreeSet<&str> = ours.difference(&theirs).map(String::as_str).collect();
    let only_theirs: BTreeSet<&str> = theirs.difference(&ours).map(String::as_str).collect();
    assert_eq!(
        only_ours,
        BTreeSet::from(["pkg:cargo/app@0.1.0", "pkg:cargo/smallvec@1.6.0"]),
        "only berth"
    );
    assert_eq!(
        only_theirs,
        BTreeSet::from(["pkg:pypi/pip@23.0.1"]),
        "only Grype"
    );
    assert!(ours.len() > 5, "{ours:#?}");
}

/// apk versions: the generated advisories of `trivy::alpine_versions` (fixed versions around
/// each installed version: `_rc`, `_p`, `_git`, letters, revisions...) on an Alpine 3.19 image,
/// as vunnel `os` records for Grype: Grype matches the same packages to the same advisories,
/// with the same fixed versions.
#[test]
fn grype_agrees_on_alpine_versions() {
    let (layer, _, records) = crate::trivy::alpine_versions();
    let records: Vec<String> = records.iter().map(ToString::to_string).collect();
    let (grype, ours, _) = scan_image(&[layer], &records, &[]);
    let (ours, theirs) = (berth_findings(&ours), grype_findings(&grype.report));
    assert!(
        ours.len() >= records.len() / 4 && ours.len() < records.len(),
        "a mix of hits and misses: {} of {}",
        ours.len(),
        records.len()
    );
    assert_eq!(
        ours,
        theirs,
        "only berth: {:#?}\nonly Grype: {:#?}",
        ours.difference(&theirs).collect::<Vec<_>>(),
        theirs.difference(&ours).collect::<Vec<_>>()
    );
}
