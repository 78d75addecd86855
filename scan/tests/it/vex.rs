//! Parity with Trivy v0.74.0 on suppression: the same image (or SBOM), the same advisories and
//! the same VEX documents (`--vex`, OpenVEX and CycloneDX) or Rego ignore policies
//! (`--ignore-policy`) leave the same findings, and suppress the same ones with the same
//! `ExperimentalModifiedFindings` (status, statement, source).

use std::collections::BTreeSet;
use std::path::Path;

use berth_scan::api::{self, ImageSource};
use berth_scan::ignore_policy::IgnorePolicy;
use berth_scan::inventory::Inventory;
use berth_scan::policy::Policy;
use berth_scan::render::{self, Format, RenderContext};
use berth_scan::report::Report;
use berth_scan::scan;
use berth_scan::vex::VexSet;
use time::macros::{date, datetime};

use crate::trivy::{
    assert_same, command, run_trivy, run_trivy_sbom, trivy, trivy_spec, trivy_with_db,
};

/// (id, package) of a finding.
type Row = (String, String);
/// (id, package, status, statement, source) of a suppressed finding.
type Modified = (String, String, String, String, String);

/// The findings left and the ones suppressed in a Trivy-style JSON report (Trivy's or berth's).
fn rows(report: &serde_json::Value) -> (BTreeSet<Row>, BTreeSet<Modified>) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let mut left = BTreeSet::new();
    let mut modified = BTreeSet::new();
    for r in report["Results"].as_array().into_iter().flatten() {
        for v in r["Vulnerabilities"].as_array().into_iter().flatten() {
            left.insert((text(&v["VulnerabilityID"]), text(&v["PkgName"])));
        }
        for m in r["ExperimentalModifiedFindings"]
            .as_array()
            .into_iter()
            .flatten()
        {
            assert_eq!(m["Type"], "vulnerability", "{m}");
            modified.insert((
                text(&m["Finding"]["VulnerabilityID"]),
                text(&m["Finding"]["PkgName"]),
                text(&m["Status"]),
                text(&m["Statement"]),
                text(&m["Source"]),
            ));
        }
    }
    (left, modified)
}

fn berth_json(inv: &Inventory, policy: &Policy) -> serde_json::Value {
    let r = Report::generate(inv, &crate::reports::index(), policy);
    assert!(
        r.suppression_errors.is_empty(),
        "{:?}",
        r.suppression_errors
    );
    serde_json::from_str(&render::render(
        &r,
        Format::Json,
        &RenderContext::new(datetime!(2026-11-23 0:00 UTC)),
    ))
    .unwrap()
}

/// The purl Trivy gives the package `name` in `report`.
fn purl_of(report: &serde_json::Value, name: &str) -> String {
    report["Results"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|r| r["Vulnerabilities"].as_array().into_iter().flatten())
        .find(|v| v["PkgName"] == name)
        .and_then(|v| v["PkgIdentifier"]["PURL"].as_str())
        .unwrap_or_else(|| panic!("Trivy has no finding in {name}"))
        .to_owned()
}

/// Asserts berth and Trivy leave and suppress the same findings, and that `suppressed` of
/// them were suppressed.
fn assert_parity(ours: &serde_json::Value, theirs: &serde_json::Value, suppressed: usize) {
    let (our_left, our_modified) = rows(ours);
    let (their_left, their_modified) = rows(theirs);
    assert_eq!(their_modified.len(), suppressed, "{their_modified:#?}");
    assert_same(&our_left, &their_left);
    assert_same(&our_modified, &their_modified);
}

/// Trivy's flags for every run here: offline, vulnerabilities only, and (`--show-suppressed`)
/// `ExperimentalModifiedFindings` in the JSON.
const BASE: [&str; 6] = [
    "--skip-db-update",
    "--skip-java-db-update",
    "--scanners",
    "vuln",
    "--quiet",
    "--show-suppressed",
];

/// An OpenVEX document over the fixture image: a versionless product with a qualifier, a
/// statement found by its alias, `under_investigation`, a newer `affected` overriding an older
/// `not_affected`, a product with subcomponents, and a product of another version.
#[test]
fn trivy_agrees_on_openvex() {
    let d = tempfile::tempdir().unwrap();
    let (image, plain) = trivy_with_db(&trivy_spec(), d.path());
    let libc = purl_of(&plain, "libc6");
    let arch = libc
        .split('?')
        .nth(1)
        .and_then(|q| q.split('&').find(|kv| kv.starts_with("arch=")))
        .expect("libc6 has an arch");
    let minimist = purl_of(&plain, "minimist");
    let vex = serde_json::json!({
        "@context": "https://openvex.dev/ns/v0.2.0",
        "@id": "https://example.com/vex/fixture-1",
        "author": "berth tests",
        "timestamp": "2026-11-01T00:00:00Z",
        "version": 1,
        "statements": [
            {"vulnerability": {"name": "CVE-2099-0001"},
             "products": [{"@id": format!("pkg:deb/debian/libc6?{arch}")}],
             "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
            {"vulnerability": {"name": "CVE-2099-0010", "aliases": ["GHSA-fake-0001"]},
             "products": [{"identifiers": {"purl": minimist}}],
             "status": "fixed"},
            {"vulnerability": {"name": "PYSEC-2099-7"},
             "products": [{"@id": "pkg:pypi/urllib3"}],
             "status": "under_investigation"},
            {"vulnerability": {"name": "RUSTSEC-2099-0001"},
             "products": [{"@id": "pkg:cargo/smallvec"}],
             "status": "not_affected", "justification": "component_not_present",
             "timestamp": "2026-11-02T00:00:00Z"},
            {"vulnerability": {"name": "RUSTSEC-2099-0001"},
             "products": [{"@id": "pkg:cargo/smallvec"}],
             "status": "affected", "action_statement": "upgrade smallvec",
             "timestamp": "2026-11-03T00:00:00Z"},
            {"vulnerability": {"name": "CVE-2099-0005"},
             "products": [{"@id": "pkg:deb/debian/bash",
                           "subcomponents": [{"@id": "pkg:deb/debian/readline"}]}],
             "status": "not_affected", "impact_statement": "bash never reads untrusted input here"},
            {"vulnerability": {"name": "PYSEC-2099-7"},
             "products": [{"@id": "pkg:pypi/urllib3@9.9.9"}],
             "status": "not_affected", "justification": "component_not_present"},
        ],
    });
    let path = d.path().join("fixture.openvex.json");
    std::fs::write(&path, vex.to_string()).unwrap();
    let name = path.to_str().unwrap();
    let mut flags = BASE.to_vec();
    flags.extend(["--vex", name]);
    let theirs = run_trivy(&image, &d.path().join("trivy-cache"), "json", &flags);

    let (inv, _) = scan::scan_path(&image, "x", None).unwrap();
    let mut policy = Policy::report_all(date!(2026 - 11 - 23));
    let (set, errors) = VexSet::parse_all([(name, vex.to_string().as_bytes())]);
    assert!(errors.is_empty(), "{errors:?}");
    policy.vex = set;
    assert_parity(&berth_json(&inv, &policy), &theirs, 3);
}

/// A CycloneDX VEX document over a CycloneDX SBOM (berth's own, of the fixture image), naming
/// packages by bom-ref and by purl, with states that keep findings and BOM-Links of another
/// version or serial number: `berth scan sbom` and `trivy sbom` suppress the same findings.
#[test]
fn trivy_agrees_on_cyclonedx_vex() {
    let d = tempfile::tempdir().unwrap();
    let (image, _) = trivy_with_db(&trivy_spec(), d.path());
    let (inv, _) = scan::scan_path(&image, "x", None).unwrap();
    let policy = Policy::report_all(date!(2026 - 11 - 23));
    let from_image = Report::generate(&inv, &crate::reports::index(), &policy);
    let sbom_text = render::render(
        &from_image,
        Format::CycloneDx,
        &RenderContext::new(datetime!(2026-11-23 0:00 UTC)),
    );
    let sbom_doc: serde_json::Value = serde_json::from_str(&sbom_text).unwrap();
    let sbom = d.path().join("image.cdx.json");
    std::fs::write(&sbom, &sbom_text).unwrap();
    let serial = sbom_doc["serialNumber"]
        .as_str()
        .unwrap()
        .trim_start_matches("urn:uuid:")
        .to_owned();
    let component = |name: &str| {
        sbom_doc["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no component {name}"))
            .clone()
    };
    let link = |version: u32, reference: &str| format!("urn:cdx:{serial}/{version}#{reference}");
    let libc_ref = component("libc6")["bom-ref"].as_str().unwrap().to_owned();
    let minimist_purl = component("minimist")["purl"].as_str().unwrap().to_owned();
    let urllib3_purl = component("urllib3")["purl"].as_str().unwrap().to_owned();
    let smallvec_purl = component("smallvec")["purl"].as_str().unwrap().to_owned();
    let vuln = |id: &str, state: &str, affects: Vec<String>| {
        serde_json::json!({
            "id": id,
            "analysis": {"state": state, "justification": "code_not_reachable", "detail": "tested"},
            "affects": affects.into_iter().map(|r| serde_json::json!({"ref": r})).collect::<Vec<_>>(),
        })
    };
    let vex = serde_json::json!({
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "version": 1,
        "vulnerabilities": [
            vuln("CVE-2099-0001", "not_affected", vec![link(1, &libc_ref)]),
            vuln("CVE-2099-0010", "resolved", vec![link(1, &minimist_purl)]),
            vuln("CVE-2099-0020", "in_triage", vec![link(1, &urllib3_purl)]),
            vuln("CVE-2099-0030", "not_affected", vec![link(2, &smallvec_purl)]),
            vuln("CVE-2099-0005", "false_positive",
                 vec![format!("urn:cdx:00000000-0000-4000-8000-000000000000/1#{libc_ref}")]),
        ],
    });
    let vex_path = d.path().join("fixture.vex.cdx.json");
    std::fs::write(&vex_path, vex.to_string()).unwrap();
    let theirs = run_trivy_sbom(
        &sbom,
        &d.path().join("trivy-cache"),
        &[
            "--scanners",
            "vuln",
            "--show-suppressed",
            "--vex",
            vex_path.to_str().unwrap(),
        ],
    );

    let read = api::read_image(
        &ImageSource::Sbom {
            path: sbom.clone(),
            name: "image.cdx.json".into(),
        },
        None,
    )
    .unwrap();
    let mut policy = Policy::report_all(date!(2026 - 11 - 23));
    let (mut set, errors) =
        VexSet::parse_all([(vex_path.to_str().unwrap(), vex.to_string().as_bytes())]);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        set.retain_applicable(read.inventory.artifact.bom.as_ref())
            .is_empty()
    );
    policy.vex = set;
    assert_parity(&berth_json(&read.inventory, &policy), &theirs, 2);

    // As Trivy, CycloneDX VEX does not apply to an image.
    let mut flags = BASE.to_vec();
    flags.extend(["--vex", vex_path.to_str().unwrap()]);
    let res = command(&trivy())
        .args(["image", "--offline-scan", "--cache-dir"])
        .arg(d.path().join("trivy-cache"))
        .args(&flags)
        .arg("--input")
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        !res.status.success(),
        "Trivy applied CycloneDX VEX to an image"
    );
    let (mut set, _) =
        VexSet::parse_all([(vex_path.to_str().unwrap(), vex.to_string().as_bytes())]);
    assert_eq!(set.retain_applicable(inv.artifact.bom.as_ref()).len(), 1);
}

/// Rego ignore policies of each kind (by id, by severity, by package name and purl, by `not`
/// and a set comprehension, through Trivy's `data.lib.trivy`): berth (regorus) and Trivy (OPA)
/// ignore the same findings.
#[test]
fn trivy_agrees_on_rego_ignore_policies() {
    let d = tempfile::tempdir().unwrap();
    let (image, _) = trivy_with_db(&trivy_spec(), d.path());
    let (inv, _) = scan::scan_path(&image, "x", None).unwrap();
    let policies: [(&str, &str, usize); 5] = [
        (
            "by-id.rego",
            r#"package trivy

default ignore = false

ignore_ids := {"CVE-2099-0001", "CVE-2099-0010"}

ignore {
	input.VulnerabilityID == ignore_ids[_]
}
"#,
            2,
        ),
        (
            "by-severity.rego",
            r#"package trivy

default ignore = false

ignore {
	input.Severity == "LOW"
}

ignore {
	input.Severity == "MEDIUM"
}
"#,
            3,
        ),
        (
            "by-package.rego",
            r#"package trivy

ignore {
	input.PkgName == "urllib3"
}

ignore {
	startswith(input.PkgIdentifier.PURL, "pkg:cargo/")
}
"#,
            2,
        ),
        (
            "by-not-and-comprehension.rego",
            r#"package trivy

import data.lib.trivy

default ignore = false

watched := {name | name := ["minimist", "bash"][_]}

os_package {
	startswith(input.PkgIdentifier.PURL, "pkg:deb/")
}

ignore {
	not os_package
	not watched[input.PkgName]
	input.Type == "vulnerability"
	count({v | v := input.FixedVersion; v != ""}) == 1
}
"#,
            2,
        ),
        (
            "by-status.rego",
            r#"package trivy

default ignore = false

ignore {
	input.Status == "affected"
	not input.FixedVersion
}
"#,
            1,
        ),
    ];
    for (file, text, _) in &policies {
        let path = d.path().join(file);
        std::fs::write(&path, text).unwrap();
    }
    for (file, text, suppressed) in policies {
        let path = d.path().join(file);
        let name = path.to_str().unwrap();
        let mut flags = BASE.to_vec();
        flags.extend(["--ignore-policy", name]);
        let theirs = run_trivy(&image, &d.path().join("trivy-cache"), "json", &flags);
        let mut policy = Policy::report_all(date!(2026 - 11 - 23));
        policy.ignore_policy = Some(IgnorePolicy::parse(text, name).unwrap());
        let ours = berth_json(&inv, &policy);
        assert_parity(&ours, &theirs, suppressed);
        let (_, modified) = rows(&ours);
        assert!(
            modified
                .iter()
                .all(|m| m.2 == "ignored" && m.3 == "Filtered by Rego" && Path::new(&m.4) == path),
            "{file}: {modified:?}"
        );
    }
}
