//! GitLab's container scanning report (`gl-container-scanning-report.json`, schema 15.x).
//! Findings an ignore file, the Rego ignore policy or a VEX statement suppressed stay in it,
//! each with a `flagged-as-likely-false-positive` flag naming the rule and its document.

use serde_json::{Value, json};
use time::macros::format_description;

use super::{RenderContext, fnv64};
use crate::report::{Finding, Report, Suppression};

/// The schema version declared by default: the one the report is validated against
/// (`scan/tests/schemas/gitlab-container-scanning-report-format-15.2.4.json`).
pub const DEFAULT_SCHEMA_VERSION: &str = "15.2.4";

fn identifier(id: &str, url: &str) -> Value {
    let kind = match id.split('-').next().unwrap_or_default() {
        "CVE" => "cve".to_owned(),
        "GHSA" => "ghsa".to_owned(),
        other => other.to_ascii_lowercase(),
    };
    json!({"type": kind, "name": id, "value": id, "url": url})
}

/// The flag GitLab shows on a finding a rule suppressed; `None` for findings the policy's
/// severities or statuses left out (those are not in the report at all).
fn flag(reason: &Suppression) -> Option<Value> {
    let description = match reason {
        Suppression::Ignored { source, statement } => format!(
            "ignored by {source}{}",
            statement
                .as_deref()
                .map(|s| format!(": {s}"))
                .unwrap_or_default()
        ),
        Suppression::Vex {
            source,
            status,
            justification,
            impact_statement,
        } => {
            let why: Vec<&str> = [justification.as_deref(), impact_statement.as_deref()]
                .into_iter()
                .flatten()
                .collect();
            format!(
                "VEX {source}: {}{}",
                status.as_str(),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", why.join("; "))
                }
            )
        }
        Suppression::IgnorePolicy { source } => format!("ignored by the Rego policy {source}"),
        Suppression::Severity | Suppression::Unfixed | Suppression::Status => return None,
    };
    Some(
        json!({"type": "flagged-as-likely-false-positive", "origin": "berth", "description": description}),
    )
}

fn vulnerability(f: &Finding, r: &Report) -> Value {
    let os =
        r.os.as_ref()
            .map_or_else(|| "unknown".to_owned(), crate::inventory::Os::gitlab_name);
    let h = fnv64(&[
        &r.artifact.name,
        &f.pkg_name,
        &f.installed_version,
        &f.id,
        &f.path,
    ]);
    let id = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 4) & 0xfff,
        h & 0xffff_ffff_ffff
    );
    let mut name = f
        .title
        .clone()
        .unwrap_or_else(|| format!("{} in {}", f.id, f.pkg_name));
    if name.chars().count() > 255 {
        name = name.chars().take(254).collect::<String>() + "…";
    }
    let mut identifiers = vec![identifier(&f.id, &f.link())];
    identifiers.extend(
        f.aliases
            .iter()
            .take(19)
            .map(|a| identifier(a, &format!("https://osv.dev/vulnerability/{a}"))),
    );
    let solution = if f.fixed_version.is_empty() {
        "No fixed version is available yet.".to_owned()
    } else {
        format!("Upgrade {} to {}", f.pkg_name, f.fixed_version)
    };
    let mut links = vec![json!({"url": f.link()})];
    links.extend(
        f.references
            .iter()
            .filter(|u| u.starts_with("http"))
            .take(10)
            .map(|u| json!({"url": u})),
    );
    json!({
        "id": id,
        "name": name,
        "description": f.description.clone().or_else(|| f.title.clone()).unwrap_or_else(|| f.id.clone()),
        "severity": f.severity.gitlab(),
        "solution": solution,
        "identifiers": identifiers,
        "links": links,
        "location": {
            "dependency": {"package": {"name": f.pkg_name}, "version": f.installed_version},
            "operating_system": os,
            "image": r.artifact.name,
        },
    })
}

/// Renders the report.
pub fn render(r: &Report, ctx: &RenderContext) -> Value {
    let fmt = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    let t = |x: time::OffsetDateTime| {
        x.to_offset(time::UtcOffset::UTC)
            .format(&fmt)
            .unwrap_or_default()
    };
    let tool = json!({"id": "berth", "name": ctx.tool_name, "version": ctx.tool_version, "vendor": {"name": "berth"}});
    json!({
        "version": ctx.gitlab_schema_version,
        "schema": format!(
            "https://gitlab.com/gitlab-org/security-products/security-report-schemas/-/raw/v{}/dist/container-scanning-report-format.json",
            ctx.gitlab_schema_version
        ),
        "scan": {
            "analyzer": tool,
            "scanner": tool,
            "type": "container_scanning",
            "start_time": t(ctx.started),
            "end_time": t(ctx.finished),
            "status": "success",
        },
        "vulnerabilities": r.findings.iter().map(|f| vulnerability(f, r)).chain(r.suppressed.iter().filter_map(|s| {
            let mut v = vulnerability(&s.finding, r);
            v["flags"] = json!([flag(&s.reason)?]);
            Some(v)
        })).collect::<Vec<_>>(),
        "remediations": [],
    })
}
