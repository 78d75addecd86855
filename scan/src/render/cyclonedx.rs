//! CycloneDX 1.6 JSON SBOM (`gl-sbom-*.cdx.json`), with Trivy-compatible properties and the
//! reported vulnerabilities.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::{RenderContext, rfc3339};
use crate::inventory::{ArtifactKind, Package, PkgType};
use crate::report::{Finding, Report, Suppression};
use crate::severity::Severity;

fn prop(name: &str, value: impl Into<String>) -> Value {
    json!({"name": name, "value": value.into()})
}

/// A source package version as Trivy's properties carry it: (epoch, upstream version, release).
/// dpkg and rpm split `[epoch:]version[-release]`; apk keeps its version whole.
fn split_source_version(kind: PkgType, v: &str) -> (Option<&str>, &str, Option<&str>) {
    if !matches!(kind, PkgType::Deb | PkgType::Rpm) {
        return (None, v, None);
    }
    let (epoch, rest) = match v.split_once(':') {
        Some((e, rest)) if !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit()) => {
            (Some(e), rest)
        }
        _ => (None, v),
    };
    match rest.rsplit_once('-') {
        Some((version, release)) => (epoch, version, Some(release)),
        None => (epoch, rest, None),
    }
}

fn component(p: &Package, purl: &str, bom_ref: &str) -> Value {
    let mut props = vec![prop("aquasecurity:trivy:PkgType", p.kind.trivy_type())];
    if let Some(l) = &p.layer {
        if let Some(d) = &l.diff_id {
            props.push(prop("aquasecurity:trivy:LayerDiffID", d.clone()));
        }
        props.push(prop("berth:LayerIndex", l.index.to_string()));
    }
    if let Some(s) = &p.src_name {
        props.push(prop("aquasecurity:trivy:SrcName", s.clone()));
    }
    if let Some(v) = &p.src_version {
        let (epoch, version, release) = split_source_version(p.kind, v);
        props.push(prop("aquasecurity:trivy:SrcVersion", version));
        if let Some(release) = release {
            props.push(prop("aquasecurity:trivy:SrcRelease", release));
        }
        if let Some(epoch) = epoch.filter(|e| *e != "0") {
            props.push(prop("aquasecurity:trivy:SrcEpoch", epoch));
        }
    }
    props.push(prop("aquasecurity:trivy:FilePath", p.path.clone()));
    // Trivy sorts a component's properties by name, then value.
    props.sort_by(|a, b| {
        (a["name"].as_str(), a["value"].as_str()).cmp(&(b["name"].as_str(), b["value"].as_str()))
    });
    let mut c = json!({
        "bom-ref": bom_ref,
        "type": "library",
        "name": p.name,
        "version": p.version,
        "purl": purl,
        "properties": props,
    });
    if let Some((group, name)) = p.name.split_once(':').filter(|_| p.kind == PkgType::Jar) {
        c["group"] = json!(group);
        c["name"] = json!(name);
    }
    if !p.licenses.is_empty() {
        c["licenses"] = json!(
            p.licenses
                .iter()
                .map(|l| json!({"license": {"name": l}}))
                .collect::<Vec<_>>()
        );
    }
    c
}

fn rating_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "high",
        Severity::Medium => "medium",
        Severity::Low => "low",
        Severity::Unknown => "unknown",
    }
}

/// Trivy's ratings: one per vendor that rated the vulnerability, one per CVSS version when that
/// vendor also gave vectors, ordered by vendor, method, score.
fn ratings(f: &Finding) -> Vec<Value> {
    let mut out: Vec<(String, &str, f64, Value)> = Vec::new();
    for (vendor, severity) in &f.vendor_severity {
        let severity = rating_severity(*severity);
        let cvss = f.cvss.get(vendor);
        let scored = [
            cvss.and_then(|c| c.v3_vector.as_deref().map(|v| (v, c.v3_score))),
            cvss.and_then(|c| c.v40_vector.as_deref().map(|v| (v, c.v40_score))),
        ];
        if scored.iter().all(Option::is_none) {
            out.push((
                vendor.clone(),
                "",
                0.0,
                json!({"source": {"name": vendor}, "severity": severity}),
            ));
        }
        for (vector, score) in scored.into_iter().flatten() {
            let method = if vector.starts_with("CVSS:4.0") {
                "CVSSv4"
            } else if vector.starts_with("CVSS:3.1") {
                "CVSSv31"
            } else {
                "CVSSv3"
            };
            let score = score.unwrap_or_default();
            out.push((
                vendor.clone(),
                method,
                score,
                json!({"source": {"name": vendor}, "score": score, "method": method, "severity": severity, "vector": vector}),
            ));
        }
    }
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)).then(a.2.total_cmp(&b.2)));
    out.into_iter().map(|(_, _, _, v)| v).collect()
}

/// The primary URL, then the references, each once, as Trivy lists advisories.
fn advisories(f: &Finding) -> Vec<Value> {
    let mut seen = Vec::new();
    for u in std::iter::once(f.primary_url()).chain(f.references.iter().cloned()) {
        let url = u
            .split(' ')
            .find(|w| w.contains("://"))
            .unwrap_or_default()
            .to_owned();
        if !url.is_empty() && !seen.contains(&url) {
            seen.push(url);
        }
    }
    seen.into_iter().map(|url| json!({"url": url})).collect()
}

fn vulnerability(f: &Finding, affect: Value) -> Value {
    let mut v = json!({
        "id": f.id,
        "source": {"name": f.data_source.id, "url": f.data_source.url},
        "ratings": ratings(f),
        "affects": [affect],
    });
    let advisories = advisories(f);
    if !advisories.is_empty() {
        v["advisories"] = json!(advisories);
    }
    if let Some(d) = f.description.as_ref().or(f.title.as_ref()) {
        v["description"] = json!(d);
    }
    if !f.fixed_version.is_empty() {
        v["recommendation"] = json!(format!(
            "Upgrade {} to version {}",
            f.pkg_name, f.fixed_version
        ));
    }
    for (key, val) in [("published", &f.published), ("updated", &f.modified)] {
        if let Some(t) = val.as_deref().and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        }) {
            v[key] = json!(rfc3339(t));
        }
    }
    v
}

/// Renders the SBOM.
pub fn render(r: &Report, ctx: &RenderContext) -> Value {
    let os = r.os.as_ref();
    let root_ref = "berth:artifact".to_owned();
    let mut components = Vec::new();
    let mut refs: Vec<String> = Vec::with_capacity(r.packages.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    let os_ref = os.map(|o| {
        let id = format!("berth:os:{}:{}", o.family.as_str(), o.version);
        components.push(json!({
            "bom-ref": id,
            "type": "operating-system",
            "name": o.family.as_str(),
            "version": o.version,
            "properties": [prop("aquasecurity:trivy:Class", "os-pkgs"), prop("aquasecurity:trivy:Type", o.family.as_str())],
        }));
        id
    });
    for p in &r.packages {
        let purl = p.purl(os);
        let n = seen.entry(purl.clone()).or_insert(0);
        *n += 1;
        let bom_ref = if *n == 1 {
            purl.clone()
        } else {
            format!("{purl}#{n}")
        };
        components.push(component(p, &purl, &bom_ref));
        refs.push(bom_ref);
    }
    let os_refs: Vec<String> = r
        .packages
        .iter()
        .zip(&refs)
        .filter(|(p, _)| p.kind.is_os())
        .map(|(_, r)| r.clone())
        .collect();
    let lang_refs: Vec<String> = r
        .packages
        .iter()
        .zip(&refs)
        .filter(|(p, _)| !p.kind.is_os())
        .map(|(_, r)| r.clone())
        .collect();
    let mut deps = vec![];
    let mut root_deps = lang_refs;
    if let Some(o) = &os_ref {
        root_deps.insert(0, o.clone());
        deps.push(json!({"ref": o, "dependsOn": os_refs}));
    }
    deps.insert(0, json!({"ref": root_ref, "dependsOn": root_deps}));
    for rf in &refs {
        deps.push(json!({"ref": rf, "dependsOn": []}));
    }

    // One vulnerability entry per id, affecting every package it was found in; findings an
    // ignore rule suppressed get their own entry with a VEX-style `analysis`.
    let mut vulns: Vec<Value> = Vec::new();
    let mut by_id: HashMap<(&str, bool), usize> = HashMap::new();
    let ignored = r.suppressed.iter().filter_map(|s| match &s.reason {
        Suppression::Ignored { source, statement } => Some((&s.finding, Some((source, statement)))),
        _ => None,
    });
    for (f, why) in r.findings.iter().map(|f| (f, None)).chain(ignored) {
        let affect = json!({"ref": refs[f.package], "versions": [{"version": f.installed_version, "status": "affected"}]});
        let key = (f.id.as_str(), why.is_some());
        if let Some(&i) = by_id.get(&key) {
            if let Some(a) = vulns[i]["affects"].as_array_mut() {
                a.push(affect);
            }
            if !f.fixed_version.is_empty() {
                // One recommendation per package, sorted and "; "-joined, as Trivy merges them.
                let rec = format!("Upgrade {} to version {}", f.pkg_name, f.fixed_version);
                let mut recs: Vec<String> = vulns[i]["recommendation"]
                    .as_str()
                    .map(|r| r.split("; ").map(str::to_owned).collect())
                    .unwrap_or_default();
                if !recs.contains(&rec) {
                    recs.push(rec);
                    recs.sort();
                    vulns[i]["recommendation"] = json!(recs.join("; "));
                }
            }
            continue;
        }
        let mut v = vulnerability(f, affect);
        if let Some((source, statement)) = why {
            let detail = match statement {
                Some(s) => format!("ignored by {source}: {s}"),
                None => format!("ignored by {source}"),
            };
            v["analysis"] = json!({"state": "not_affected", "detail": detail});
        }
        by_id.insert(key, vulns.len());
        vulns.push(v);
    }
    let mut root_props: Vec<Value> = r
        .artifact
        .diff_ids
        .iter()
        .map(|d| prop("aquasecurity:trivy:DiffID", d.clone()))
        .collect();
    if let Some(id) = &r.artifact.image_id {
        root_props.push(prop("aquasecurity:trivy:ImageID", id.clone()));
    }
    json!({
        "$schema": "http://cyclonedx.org/schema/bom-1.6.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": "1.6",
        "serialNumber": format!("urn:uuid:{}", ctx.serial.hyphenated()),
        "version": 1,
        "metadata": {
            "timestamp": rfc3339(ctx.finished),
            "tools": {"components": [{"type": "application", "group": "berth", "name": ctx.tool_name, "version": ctx.tool_version}]},
            "component": {
                "bom-ref": root_ref,
                "type": if r.artifact.kind == ArtifactKind::ContainerImage { "container" } else { "application" },
                "name": r.artifact.name,
                "properties": root_props,
            },
        },
        "components": components,
        "dependencies": deps,
        "vulnerabilities": vulns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_versions_split_as_trivy_splits_them() {
        assert_eq!(
            split_source_version(PkgType::Deb, "1:2.36-9+deb12u10"),
            (Some("1"), "2.36", Some("9+deb12u10"))
        );
        assert_eq!(
            split_source_version(PkgType::Deb, "5.2.15-2+b7"),
            (None, "5.2.15", Some("2+b7"))
        );
        assert_eq!(
            split_source_version(PkgType::Deb, "1.0"),
            (None, "1.0", None)
        );
        assert_eq!(
            split_source_version(PkgType::Rpm, "1:1.2.3-4.el9"),
            (Some("1"), "1.2.3", Some("4.el9"))
        );
        assert_eq!(
            split_source_version(PkgType::Apk, "1.2.4-r4"),
            (None, "1.2.4-r4", None)
        );
    }
}
