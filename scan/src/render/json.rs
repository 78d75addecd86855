//! Trivy-style JSON (`SchemaVersion: 2`): results grouped by target and class, with every
//! package listed and suppressed findings under `ExperimentalModifiedFindings`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{RenderContext, rfc3339};
use crate::advisory::vendor::is_cve_export;
use crate::inventory::{ArtifactKind, Package};
use crate::report::{Finding, Report, Suppression};

fn target(p: &Package, r: &Report) -> (String, &'static str, &'static str) {
    if p.kind.is_os() {
        let os = r.os.as_ref().map_or_else(String::new, |o| {
            format!(" ({} {})", o.family.as_str(), o.version)
        });
        (
            format!("{}{os}", r.artifact.name),
            "os-pkgs",
            p.kind.trivy_type(),
        )
    } else {
        let t = match p.kind {
            crate::inventory::PkgType::PythonPkg => "Python".to_owned(),
            crate::inventory::PkgType::NodePkg => "Node.js".to_owned(),
            crate::inventory::PkgType::Jar => "Java".to_owned(),
            _ => p.path.clone(),
        };
        (t, "lang-pkgs", p.kind.trivy_type())
    }
}

/// A finding as Trivy's `DetectedVulnerability`: empty fields are left out, as Trivy's
/// `omitempty` does. Also the input of a Rego ignore policy, as in Trivy.
pub(crate) fn vuln(f: &Finding) -> Value {
    let vendor_ids: Vec<&String> = f.aliases.iter().filter(|a| !is_cve_export(a)).collect();
    let vendor_severity: BTreeMap<&String, u8> = f
        .vendor_severity
        .iter()
        .map(|(k, s)| (k, s.as_int()))
        .collect();
    omit_empty(json!({
        "VulnerabilityID": f.id,
        "VendorIDs": vendor_ids,
        "PkgName": f.pkg_name,
        "PkgPath": f.path,
        "PkgIdentifier": {"PURL": f.purl},
        "InstalledVersion": f.installed_version,
        "FixedVersion": f.fixed_version,
        "Status": f.status.as_str(),
        "Layer": f.layer.as_ref().map(|l| json!({"DiffID": l.diff_id})),
        "SeveritySource": f.severity_source,
        "PrimaryURL": f.primary_url(),
        "DataSource": f.data_source,
        "Title": f.title,
        "Description": f.description,
        "Severity": f.severity.as_str(),
        "VendorSeverity": vendor_severity,
        "CVSS": f.cvss,
        "References": f.references,
        "PublishedDate": f.published,
        "LastModifiedDate": f.modified,
    }))
}

/// Go's `omitempty`: nulls, empty strings, arrays and objects dropped from objects, deeply.
fn omit_empty(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, omit_empty(v)))
                .filter(|(_, v)| match v {
                    Value::Null => false,
                    Value::String(s) => !s.is_empty(),
                    Value::Array(a) => !a.is_empty(),
                    Value::Object(o) => !o.is_empty(),
                    _ => true,
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(omit_empty).collect()),
        other => other,
    }
}

/// Trivy's order of findings in a result (`BySeverity`): package name, installed version,
/// most severe first, id, path.
fn trivy_order(a: &Finding, b: &Finding) -> std::cmp::Ordering {
    (&a.pkg_name, &a.installed_version)
        .cmp(&(&b.pkg_name, &b.installed_version))
        .then(b.severity.cmp(&a.severity))
        .then_with(|| (&a.id, &a.path).cmp(&(&b.id, &b.path)))
}

/// Renders the report.
pub fn render(r: &Report, ctx: &RenderContext) -> Value {
    // (OS result first, target, class, type) → (packages, findings, modified), so results come
    // in Trivy's order: the OS's, then the others by target.
    type Key = (bool, String, &'static str, &'static str);
    type Group<'a> = (Vec<Value>, Vec<&'a Finding>, Vec<Value>);
    let key = |p: &Package| {
        let (t, class, ty) = target(p, r);
        (!p.kind.is_os(), t, class, ty)
    };
    let mut groups: BTreeMap<Key, Group<'_>> = BTreeMap::new();
    for p in &r.packages {
        let g = groups.entry(key(p)).or_default();
        let mut pv = json!({"Name": p.name, "Version": p.version, "FilePath": p.path, "Identifier": {"PURL": p.purl(r.os.as_ref())}});
        if let Some(l) = &p.layer {
            pv["Layer"] = json!({"DiffID": l.diff_id});
        }
        if let Some(s) = &p.src_name {
            pv["SrcName"] = json!(s);
        }
        g.0.push(pv);
    }
    for f in &r.findings {
        groups
            .entry(key(&r.packages[f.package]))
            .or_default()
            .1
            .push(f);
    }
    for s in &r.suppressed {
        // Trivy's `ModifiedFinding`: the ignore file and the Rego policy say `ignored`, VEX its
        // status with the justification as the statement. Findings below the reported
        // severities or of an ignored status are dropped without a trace, as in Trivy.
        let (status, source, statement) = match &s.reason {
            Suppression::Severity | Suppression::Unfixed | Suppression::Status => continue,
            Suppression::Ignored { source, statement } => (
                "ignored",
                source.clone(),
                statement.clone().unwrap_or_default(),
            ),
            Suppression::Vex {
                source,
                status,
                justification,
                ..
            } => (
                status.as_str(),
                source.clone(),
                justification.clone().unwrap_or_default(),
            ),
            Suppression::IgnorePolicy { source } => {
                ("ignored", source.clone(), "Filtered by Rego".to_owned())
            }
        };
        groups
            .entry(key(&r.packages[s.finding.package]))
            .or_default()
            .2
            .push(json!({
                "Type": "vulnerability", "Status": status, "Statement": statement,
                "Source": source, "Finding": vuln(&s.finding),
            }));
    }
    let results: Vec<Value> = groups
        .into_iter()
        .map(|((_, t, class, ty), (pkgs, mut findings, modified))| {
            findings.sort_by(|a, b| trivy_order(a, b));
            let vulns: Vec<Value> = findings.into_iter().map(vuln).collect();
            let mut v = json!({"Target": t, "Class": class, "Type": ty, "Packages": pkgs});
            if !vulns.is_empty() {
                v["Vulnerabilities"] = json!(vulns);
            }
            if !modified.is_empty() {
                v["ExperimentalModifiedFindings"] = json!(modified);
            }
            v
        })
        .collect();
    json!({
        "SchemaVersion": 2,
        "CreatedAt": rfc3339(ctx.finished),
        "ArtifactName": r.artifact.name,
        "ArtifactType": if r.artifact.kind == ArtifactKind::ContainerImage { "container_image" } else { "filesystem" },
        "Metadata": {
            "OS": r.os.as_ref().map(|o| json!({"Family": o.family.as_str(), "Name": o.version})),
            "ImageID": r.artifact.image_id,
            "DiffIDs": r.artifact.diff_ids,
        },
        "Results": results,
        "Warnings": r.warnings,
    })
}
