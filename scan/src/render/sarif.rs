//! SARIF 2.1.0, shaped like Trivy's output (one rule per vulnerability id).

use serde_json::{Value, json};

use super::RenderContext;
use crate::report::Report;
use crate::severity::Severity;

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Unknown => "note",
    }
}

fn score(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "9.5",
        Severity::High => "8.0",
        Severity::Medium => "5.5",
        Severity::Low => "2.0",
        Severity::Unknown => "0.0",
    }
}

/// Renders the report.
pub fn render(r: &Report, ctx: &RenderContext) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut rule_ids: Vec<&str> = Vec::new();
    let mut results = Vec::new();
    for f in &r.findings {
        let idx = match rule_ids.iter().position(|x| *x == f.id) {
            Some(i) => i,
            None => {
                rule_ids.push(&f.id);
                let kind = if f.pkg_type.is_os() {
                    "OsPackageVulnerability"
                } else {
                    "LanguageSpecificPackageVulnerability"
                };
                let short = f.title.clone().unwrap_or_else(|| f.id.clone());
                let full = f.description.clone().unwrap_or_else(|| short.clone());
                let help = format!(
                    "Vulnerability {}\nSeverity: {}\nPackage: {}\nFixed Version: {}\nLink: [{}]({})\n{}",
                    f.id,
                    f.severity,
                    f.pkg_name,
                    f.fixed_version,
                    f.id,
                    f.link(),
                    full
                );
                rules.push(json!({
                    "id": f.id,
                    "name": kind,
                    "shortDescription": {"text": short},
                    "fullDescription": {"text": full},
                    "defaultConfiguration": {"level": level(f.severity)},
                    "helpUri": f.link(),
                    "help": {"text": help, "markdown": help},
                    "properties": {
                        "precision": "very-high",
                        "security-severity": score(f.severity),
                        "tags": ["vulnerability", "security", f.severity.as_str()],
                    },
                }));
                rule_ids.len() - 1
            }
        };
        results.push(json!({
            "ruleId": f.id,
            "ruleIndex": idx,
            "level": level(f.severity),
            "message": {"text": format!(
                "Package: {}\nInstalled Version: {}\nVulnerability {}\nSeverity: {}\nFixed Version: {}\nLink: [{}]({})",
                f.pkg_name, f.installed_version, f.id, f.severity, f.fixed_version, f.id, f.link()
            )},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": f.path, "uriBaseId": "ROOTPATH"},
                    "region": {"startLine": 1, "startColumn": 1, "endLine": 1, "endColumn": 1},
                },
                "message": {"text": format!("{}: {}@{}", f.path, f.pkg_name, f.installed_version)},
            }],
        }));
    }
    json!({
        "version": "2.1.0",
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "runs": [{
            "tool": {"driver": {
                "name": ctx.tool_name,
                "fullName": format!("{} image scanner", ctx.tool_name),
                "version": ctx.tool_version,
                "rules": rules,
            }},
            "results": results,
            "columnKind": "utf16CodeUnits",
            "originalUriBaseIds": {"ROOTPATH": {"uri": "file:///"}},
            "properties": {
                "imageName": r.artifact.name,
                "imageID": r.artifact.image_id,
                "diffIDs": r.artifact.diff_ids,
            },
        }],
    })
}
