//! Trivy-style JSON (`SchemaVersion: 2`): results grouped by target and class, with every
//! package listed and suppressed findings under `ExperimentalModifiedFindings`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::{RenderContext, rfc3339};
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
/// `omitempty` does.
pub fn vuln(f: &Finding) -> Value {
    let mut v = serde_json::Map::new();
    let mut put = |k: &str, val: Value| {
        let empty = match &val {
            Value::Null => true,
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            Value::Object(o) => o.is_empty(),
            _ => false,
        };
        if !empty {
            v.insert(k.to_owned(), val);
        }
    };
    put("VulnerabilityID", json!(f.id));
    // A distribution's OSV wrapper id (DEBIAN-CVE-…) is no vendor's id of the vulnerability.
    let vendor_ids: Vec<&String> = f
        .aliases
        .iter()
        .filter(|a| {
            !["DEBIAN-CVE-", "UBUNTU-CVE-", "ALPINE-CVE-"]
                .iter()
                .any(|p| a.starts_with(p))
        })
        .collect();
    put("VendorIDs", json!(vendor_ids));
    put("PkgName", json!(f.pkg_name));
    put("PkgPath", json!(f.path));
    put("PkgIdentifier", json!({"PURL": f.purl}));
    put("InstalledVersion", json!(f.installed_version));
    put("FixedVersion", json!(f.fixed_version));
    put("Status", json!(f.status.as_str()));
    put(
        "Layer",
        f.layer
            .as_ref()
            .map_or(Value::Null, |l| json!({"DiffID": l.diff_id})),
    );
    put("SeveritySource", json!(f.severity_source));
    put("PrimaryURL", json!(f.primary_url()));
    put("DataSource", json!(f.data_source));
    put("Title", json!(f.title));
    put("Description", json!(f.description));
    put("Severity", json!(f.severity.as_str()));
    put(
        "VendorSeverity",
        json!(
            f.vendor_severity
                .iter()
                .map(|(k, s)| (k.clone(), s.as_int()))
                .collect::<BTreeMap<_, _>>()
        ),
    );
    put("CVSS", json!(f.cvss));
    put("References", json!(f.references));
    put("PublishedDate", json!(f.published));
    put("LastModifiedDate", json!(f.modified));
    Value::Object(v)
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
        // Trivy lists only what an ignore rule or statement set aside; findings below the
        // reported severities or of an ignored status are dropped without a trace.
        let (status, source, statement) = match &s.reason {
            Suppression::Severity | Suppression::Unfixed | Suppression::Status => continue,
            Suppression::Ignored { source, statement } => ("ignored", source, statement),
        };
        groups.entry(key(&r.packages[s.finding.package])).or_default().2.push(json!({
            "Type": "vulnerability", "Status": status, "Statement": statement.clone().unwrap_or_default(),
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
