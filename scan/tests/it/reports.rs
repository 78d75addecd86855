//! End to end: fixture image → inventory → OSV index → report → every format, each validated
//! against its published JSON schema (python-jsonschema / cyclonedx-python-lib from
//! `scan/tests/setup.sh`).

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use berth_scan::advisory::{AdvisoryIndex, OsvRecord};
use berth_scan::policy::{IgnoreList, Policy};
use berth_scan::render::{self, Format, RenderContext};
use berth_scan::report::Report;
use berth_scan::scan;
use berth_scan::severity::Severity;
use time::macros::{date, datetime};

pub(crate) const RECORDS: &[&str] = &[
    r#"{"id":"DEBIAN-CVE-2099-0001","modified":"2026-11-20T10:00:00Z","upstream":["CVE-2099-0001"],
       "summary":"glibc: buffer overflow in a fake function",
       "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
       "affected":[{"package":{"ecosystem":"Debian:12","name":"glibc"},"ecosystem_specific":{"urgency":"low"},
       "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.36-9+deb12u15"}]}]}]}"#,
    r#"{"id":"DEBIAN-CVE-2099-0005","modified":"2026-11-20T10:00:00Z","upstream":["CVE-2099-0005"],
       "affected":[{"package":{"ecosystem":"Debian:12","name":"bash"},
       "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"}]}]}]}"#,
    // GitHub's rating of the bash CVE (through a package the image lacks) is the only one:
    // Trivy reports it for bash, naming no source.
    r#"{"id":"GHSA-fake-0005","modified":"2026-11-01T00:00:00Z","aliases":["CVE-2099-0005"],
       "database_specific":{"severity":"MODERATE"},
       "affected":[{"package":{"ecosystem":"npm","name":"left-pad"},
       "ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.3.0"}]}]}]}"#,
    r#"{"id":"GHSA-fake-0001","modified":"2026-11-01T00:00:00Z","published":"2026-10-01T00:00:00Z","aliases":["CVE-2099-0010"],
       "summary":"minimist prototype pollution (fake)","details":"Long description.",
       "database_specific":{"severity":"CRITICAL"},
       "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
       "references":[{"type":"WEB","url":"https://example.com/minimist"},{"type":"ADVISORY","url":"https://github.com/advisories/GHSA-fake-0001"}],
       "affected":[{"package":{"ecosystem":"npm","name":"minimist"},
       "ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"0.2.4"},{"introduced":"1.0.0"},{"fixed":"1.2.6"}]}]}]}"#,
    r#"{"id":"PYSEC-2099-7","modified":"2026-11-01T00:00:00Z","aliases":["CVE-2099-0020"],
       "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:N"}],
       "affected":[{"package":{"ecosystem":"PyPI","name":"urllib3"},
       "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"1.26.0"},{"fixed":"1.26.5"}]}]}]}"#,
    r#"{"id":"RUSTSEC-2099-0001","modified":"2026-11-01T00:00:00Z","aliases":["CVE-2099-0030"],
       "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"}],
       "affected":[{"package":{"ecosystem":"crates.io","name":"smallvec"},
       "ranges":[{"type":"SEMVER","events":[{"introduced":"0.6.3"},{"fixed":"1.6.1"}]}]}]}"#,
];

fn tools() -> PathBuf {
    std::env::var_os("BERTH_TEST_TOOLS")
        .map_or_else(|| PathBuf::from("/var/cache/berth-test"), PathBuf::from)
}

pub(crate) fn index() -> AdvisoryIndex {
    let recs: Vec<OsvRecord> = RECORDS
        .iter()
        .map(|r| OsvRecord::from_json(r.as_bytes()).unwrap())
        .collect();
    AdvisoryIndex::from_records(&recs)
}

fn report(policy: &Policy) -> Report {
    let d = tempfile::tempdir().unwrap();
    let (inv, _) = scan::scan_path(&support::docker_archive(d.path()), "x", None).unwrap();
    Report::generate(&inv, &index(), policy)
}

fn ctx() -> RenderContext {
    let mut c = RenderContext::new(datetime!(2026-11-23 20:00:01 UTC));
    c.started = datetime!(2026-11-23 20:00:00 UTC);
    c
}

const VALIDATOR: &str = r#"
import json, sys
import jsonschema
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
kind, schema, doc = sys.argv[1], sys.argv[2], sys.argv[3]
text = open(doc).read()
if kind == "cyclonedx":
    err = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if err is not None:
        sys.exit("INVALID: %s" % err)
else:
    s = json.load(open(schema))
    cls = jsonschema.validators.validator_for(s)
    cls.check_schema(s)
    errors = sorted(cls(s, format_checker=cls.FORMAT_CHECKER).iter_errors(json.loads(text)), key=str)
    if errors:
        sys.exit("INVALID: " + "\n".join("%s at %s" % (e.message, list(e.absolute_path)) for e in errors[:20]))
print("VALID")
"#;

/// Validates `doc` and returns the validator's verdict (Ok = valid).
fn validate(kind: &str, schema: &Path, doc: &str) -> Result<(), String> {
    let py = tools().join("venv/bin/python");
    assert!(
        py.exists(),
        "validator python not found at {}; run `bash scan/tests/setup.sh` (installs jsonschema and cyclonedx-python-lib)",
        py.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.json");
    std::fs::write(&path, doc).unwrap();
    let out = validator(&py)
        .arg("-c")
        .arg(VALIDATOR)
        .arg(kind)
        .arg(schema)
        .arg(&path)
        .output()
        .unwrap();
    if out.status.success() && String::from_utf8_lossy(&out.stdout).contains("VALID") {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "schema validators are test-only child processes"
)]
fn validator(py: &Path) -> Command {
    Command::new(py)
}

fn schema(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/schemas")
        .join(name)
}

#[test]
fn findings_match_the_fixture() {
    let r = report(&Policy::report_all(date!(2026 - 11 - 23)));
    let mut got: Vec<(String, String, String, Severity)> = r
        .findings
        .iter()
        .map(|f| {
            (
                f.id.clone(),
                f.pkg_name.clone(),
                f.fixed_version.clone(),
                f.severity,
            )
        })
        .collect();
    got.sort();
    let want = vec![
        (
            "CVE-2099-0001".into(),
            "libc6".into(),
            "2.36-9+deb12u15".into(),
            Severity::Low,
        ),
        (
            "CVE-2099-0005".into(),
            "bash".into(),
            String::new(),
            Severity::Medium,
        ),
        (
            "CVE-2099-0010".into(),
            "minimist".into(),
            "0.2.4, 1.2.6".into(),
            Severity::Critical,
        ),
        (
            "CVE-2099-0020".into(),
            "urllib3".into(),
            "1.26.5".into(),
            Severity::Medium,
        ),
        (
            "CVE-2099-0030".into(),
            "smallvec".into(),
            "1.6.1".into(),
            Severity::High,
        ),
    ];
    assert_eq!(got, want);
    let smallvec = r
        .findings
        .iter()
        .find(|f| f.pkg_name == "smallvec")
        .unwrap();
    assert_eq!(smallvec.layer.as_ref().map(|l| l.index), Some(1));
}

/// `r` as GitLab's report, validated against schema 15.2.4, as text and parsed.
fn gitlab_report(r: &Report) -> (String, serde_json::Value) {
    let doc = render::render(r, Format::GitLab, &ctx());
    validate(
        "gitlab",
        &schema("gitlab-container-scanning-report-format-15.2.4.json"),
        &doc,
    )
    .unwrap();
    let v = serde_json::from_str(&doc).unwrap();
    (doc, v)
}

#[test]
fn gitlab_report_validates() {
    let r = report(&Policy::report_all(date!(2026 - 11 - 23)));
    let (doc, v) = gitlab_report(&r);
    // It declares the version it was validated against.
    assert_eq!(v["version"], "15.2.4");
    assert_eq!(v["scan"]["start_time"], "2026-11-23T20:00:00");
    assert_eq!(v["vulnerabilities"].as_array().unwrap().len(), 5);
    let crit = v["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["severity"] == "Critical")
        .unwrap();
    assert_eq!(crit["location"]["operating_system"], "debian:12.15");
    assert_eq!(crit["location"]["image"], "localhost/fixture:latest");
    // The validator rejects a broken report (the test can fail).
    let broken = doc.replace("\"container_scanning\"", "\"sast\"");
    assert!(
        validate(
            "gitlab",
            &schema("gitlab-container-scanning-report-format-15.2.4.json"),
            &broken
        )
        .is_err()
    );
}

/// Findings an ignore rule, the Rego policy or a VEX statement suppressed stay in GitLab's
/// report with a `flagged-as-likely-false-positive` flag naming the rule and its document, and
/// the report still validates; JSON shows them as Trivy's `ExperimentalModifiedFindings`.
#[test]
fn suppressed_findings_stay_flagged_in_the_gitlab_report_and_it_validates() {
    let mut policy = Policy::report_all(date!(2026 - 11 - 23));
    policy.ignore = IgnoreList::parse("CVE-2099-0005\n", ".trivyignore").unwrap();
    policy.ignore_policy = Some(
        berth_scan::ignore_policy::IgnorePolicy::parse(
            "package trivy\nignore { input.PkgName == \"urllib3\" }\n",
            "/etc/berth/ignore.rego",
        )
        .unwrap(),
    );
    let vex = r#"{"@context":"https://openvex.dev/ns/v0.2.0","statements":[
      {"vulnerability":{"name":"CVE-2099-0010"},"products":[{"@id":"pkg:npm/minimist"}],
       "status":"not_affected","justification":"vulnerable_code_not_present","impact_statement":"never loaded"}]}"#;
    let (set, errors) =
        berth_scan::vex::VexSet::parse_all([(".vex/app.openvex.json", vex.as_bytes())]);
    assert!(errors.is_empty(), "{errors:?}");
    policy.vex = set;
    let r = report(&policy);
    assert_eq!((r.findings.len(), r.suppressed.len()), (2, 3));
    let (_, v) = gitlab_report(&r);
    let vulns = v["vulnerabilities"].as_array().unwrap();
    assert_eq!(vulns.len(), 5, "suppressed findings stay visible");
    let flags: Vec<&str> = vulns
        .iter()
        .flat_map(|x| x["flags"].as_array().into_iter().flatten())
        .map(|f| f["description"].as_str().unwrap())
        .collect();
    assert_eq!(flags.len(), 3, "{flags:?}");
    assert!(
        flags.contains(
            &"VEX .vex/app.openvex.json: not_affected (vulnerable_code_not_present; never loaded)"
        ),
        "{flags:?}"
    );
    assert!(flags.contains(&"ignored by .trivyignore"), "{flags:?}");
    assert!(
        flags.contains(&"ignored by the Rego policy /etc/berth/ignore.rego"),
        "{flags:?}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&render::render(&r, Format::Json, &ctx())).unwrap();
    let modified: Vec<(String, String, String)> = json["Results"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            r["ExperimentalModifiedFindings"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .map(|m| {
            (
                m["Status"].as_str().unwrap().to_owned(),
                m["Statement"].as_str().unwrap_or_default().to_owned(),
                m["Source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(modified.contains(&(
        "not_affected".into(),
        "vulnerable_code_not_present".into(),
        ".vex/app.openvex.json".into()
    )));
    assert!(modified.contains(&(
        "ignored".into(),
        "Filtered by Rego".into(),
        "/etc/berth/ignore.rego".into()
    )));
}

/// The SPDX document passes the SPDX project's own validator (`pyspdxtools`), and a broken one
/// does not (the test can fail).
#[test]
fn spdx_validates() {
    let r = report(&Policy::report_all(date!(2026 - 11 - 23)));
    let doc = render::render(&r, Format::SpdxJson, &ctx());
    spdx_valid(&doc).unwrap();
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["spdxVersion"], "SPDX-2.3");
    let purls: Vec<&str> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["externalRefs"].as_array().into_iter().flatten())
        .filter_map(|r| r["referenceLocator"].as_str())
        .collect();
    assert_eq!(purls.len(), r.packages.len(), "one purl per package");
    let broken = doc.replace("\"SPDX-2.3\"", "\"SPDX-9.9\"");
    assert!(spdx_valid(&broken).is_err());
}

fn spdx_valid(doc: &str) -> Result<(), String> {
    let tool = tools().join("venv/bin/pyspdxtools");
    assert!(
        tool.exists(),
        "{} not found; run `bash scan/tests/setup.sh` (installs spdx-tools)",
        tool.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("doc.spdx.json");
    std::fs::write(&path, doc).unwrap();
    let out = validator(&tool)
        .arg("--infile")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && !said.contains("invalid") && !said.contains("rror") {
        Ok(())
    } else {
        Err(said)
    }
}

#[test]
fn sarif_validates() {
    let r = report(&Policy::report_all(date!(2026 - 11 - 23)));
    let doc = render::render(&r, Format::Sarif, &ctx());
    validate("sarif", &schema("sarif-schema-2.1.0.json"), &doc).unwrap();
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    let crit = results
        .iter()
        .find(|x| x["ruleId"] == "CVE-2099-0010")
        .unwrap();
    assert_eq!(crit["level"], "error");
    let broken = doc.replacen("\"level\": \"error\"", "\"level\": \"fatal\"", 1);
    assert!(validate("sarif", &schema("sarif-schema-2.1.0.json"), &broken).is_err());
}

#[test]
fn cyclonedx_validates() {
    let r = report(&Policy::report_all(date!(2026 - 11 - 23)));
    let doc = render::render(&r, Format::CycloneDx, &ctx());
    validate("cyclonedx", Path::new("-"), &doc).unwrap();
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["specVersion"], "1.6");
    // 10 packages + the OS component
    assert_eq!(v["components"].as_array().unwrap().len(), 11);
    assert_eq!(v["vulnerabilities"].as_array().unwrap().len(), 5);
    let curl = v["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "curl")
        .unwrap();
    let layer = curl["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "aquasecurity:trivy:LayerDiffID")
        .unwrap();
    assert_eq!(layer["value"], support::diff_id(1));
    let broken = doc.replacen("\"version\": 1,", "\"version\": 0,", 1);
    assert!(validate("cyclonedx", Path::new("-"), &broken).is_err());
}

#[test]
fn json_and_table() {
    let mut p = Policy::block_at(Severity::High, date!(2026 - 11 - 23));
    p.ignore = IgnoreList::parse_yaml(
        "vulnerabilities:\n  - id: CVE-2099-0030\n    statement: not reachable\n",
        ".trivyignore.yaml",
    )
    .unwrap();
    let r = report(&p);
    assert_eq!(
        r.findings.len(),
        1,
        "only the critical minimist finding is left"
    );
    assert!(r.blocked);
    let doc = render::render(&r, Format::Json, &ctx());
    let v: serde_json::Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(v["SchemaVersion"], 2);
    let results = v["Results"].as_array().unwrap();
    let node = results.iter().find(|x| x["Target"] == "Node.js").unwrap();
    assert_eq!(
        node["Vulnerabilities"][0]["VulnerabilityID"],
        "CVE-2099-0010"
    );
    let cargo = results.iter().find(|x| x["Type"] == "cargo").unwrap();
    let modified = &cargo["ExperimentalModifiedFindings"][0];
    assert_eq!(modified["Statement"], "not reachable");
    assert_eq!(modified["Source"], ".trivyignore.yaml");
    // The ignored finding travels in the SBOM as a VEX-style analysis.
    let cdx = render::render(&r, Format::CycloneDx, &ctx());
    validate("cyclonedx", Path::new("-"), &cdx).unwrap();
    let cdx: serde_json::Value = serde_json::from_str(&cdx).unwrap();
    let ignored = cdx["vulnerabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["analysis"]["state"] == "not_affected")
        .unwrap();
    assert_eq!(ignored["id"], "CVE-2099-0030");
    assert!(
        ignored["analysis"]["detail"]
            .as_str()
            .unwrap()
            .contains("not reachable")
    );
    let table = render::render(&r, Format::Table, &ctx());
    assert!(table.contains("CRITICAL: 1"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("minimist")
            && l.contains("CVE-2099-0010")
            && l.contains("1.2.6")),
        "{table}"
    );
    let msg = r.policy_message().unwrap();
    assert!(
        msg.contains("security policy") && msg.contains("CVE-2099-0010"),
        "{msg}"
    );
}

#[test]
fn every_source_gives_the_same_findings() {
    let d = tempfile::tempdir().unwrap();
    let policy = Policy::report_all(date!(2026 - 11 - 23));
    let ids = |inv: &berth_scan::inventory::Inventory| {
        let r = Report::generate(inv, &index(), &policy);
        let mut v: Vec<(String, String)> = r
            .findings
            .iter()
            .map(|f| (f.id.clone(), f.pkg_name.clone()))
            .collect();
        v.sort();
        v
    };
    let (docker, _) = scan::scan_path(&support::docker_archive(d.path()), "x", None).unwrap();
    let want = ids(&docker);
    assert_eq!(want.len(), 5);
    for input in [
        support::oci_archive(d.path()),
        support::oci_layout(d.path()),
        support::rootfs(d.path()),
    ] {
        let (inv, _) = scan::scan_path(&input, "x", None).unwrap();
        assert_eq!(ids(&inv), want, "{}", input.display());
    }
    let image = berth_scan::source::open_containers_storage(
        &support::containers_storage(d.path()),
        "fixture",
    )
    .unwrap();
    let (inv, _) = scan::inventory(&image, None).unwrap();
    assert_eq!(ids(&inv), want);
}
