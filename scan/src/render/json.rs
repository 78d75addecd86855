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

/// A finding as Trivy's `DetectedVulnerability` JSON (also the input of a Rego ignore policy).
pub(crate) fn vuln(f: &Finding) -> Value {
    let mut v = json!({
        "VulnerabilityID": f.id,
        "PkgName": f.pkg_name,
        "PkgPath": f.path,
        "PkgIdentifier": {"PURL": f.purl},
        "InstalledVersion": f.installed_version,
        "FixedVersion": f.fixed_version,
        "Status": f.status.as_str(),
        "SeveritySource": f.severity_source,
        "PrimaryURL": f.primary_url(),
        "DataSource": {"ID": "osv", "Name": f.data_source},
        "Title": f.title,
        "Description": f.description,
        "Severity": f.severity.as_str(),
        "References": f.references,
        "PublishedDate": f.published,
        "LastModifiedDate": f.modified,
        "VendorIDs": f.aliases,
    });
    if let Some(l) = &f.layer {
        v["Layer"] = json!({"DiffID": l.diff_id});
    }
    if let Some(c) = &f.cvss {
        v["CVSS"] = json!({"osv": {format!("{}Vector", c.version): c.vector, format!("{}Score", c.version): c.score}});
    }
    v
}

/// Renders the report.
pub fn render(r: &Report, ctx: &RenderContext) -> Value {
    // (target, class, type) → (packages, vulns, modified)
    type Group = (Vec<Value>, Vec<Value>, Vec<Value>);
    let mut groups: BTreeMap<(String, &str, &str), Group> = BTreeMap::new();
    for p in &r.packages {
        let g = groups.entry(target(p, r)).or_default();
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
            .entry(target(&r.packages[f.package], r))
            .or_default()
            .1
            .push(vuln(f));
    }
    for s in &r.suppressed {
        // Trivy's `ModifiedFinding`: the ignore file and the Rego policy say `ignored`, VEX its
        // status with the justification as the statement.
        let (status, source, statement) = match &s.reason {
            Suppression::Ignored { source, statement } => {
                ("ignored", source.clone(), statement.clone())
            }
            Suppression::Vex {
                source,
                status,
                justification,
                ..
            } => (
                status.as_str(),
                source.clone(),
                Some(justification.clone().unwrap_or_default()),
            ),
            Suppression::IgnorePolicy { source } => (
                "ignored",
                source.clone(),
                Some("Filtered by Rego".to_owned()),
            ),
            other => (
                "ignored",
                format!(
                    "policy:{}",
                    serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v["kind"].as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
                None,
            ),
        };
        groups.entry(target(&r.packages[s.finding.package], r)).or_default().2.push(json!({
            "Type": "vulnerability", "Status": status, "Source": source, "Statement": statement, "Finding": vuln(&s.finding),
        }));
    }
    let results: Vec<Value> = groups
        .into_iter()
        .map(|((t, class, ty), (pkgs, vulns, modified))| {
            let mut v = json!({"Target": t, "Class": class, "Type": ty, "Packages": pkgs, "Vulnerabilities": vulns});
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
