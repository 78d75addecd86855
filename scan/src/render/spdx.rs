//! SPDX 2.3 JSON SBOM (`--format spdx-json`), shaped like Trivy's: the image (or filesystem) as
//! the described package, its operating system inside it, every package inside that (OS
//! packages) or inside the image (language packages), each with its purl.

use serde_json::{Value, json};

use super::{RenderContext, fnv64, rfc3339};
use crate::inventory::{ArtifactKind, Package};
use crate::report::Report;

/// An SPDX element id from stable parts (letters, digits, `.` and `-` only).
fn spdx_id(kind: &str, parts: &[&str]) -> String {
    format!("SPDXRef-{kind}-{:x}", fnv64(parts))
}

/// An SPDX license expression for `licenses`, when each is a plain identifier; anything else is
/// no assertion (SPDX tools refuse free text where an expression belongs).
fn license_expression(licenses: &[String]) -> String {
    let plain = |l: &String| {
        !l.is_empty()
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
    };
    if !licenses.is_empty() && licenses.iter().all(plain) {
        licenses.join(" AND ")
    } else {
        "NOASSERTION".to_owned()
    }
}

fn package(p: &Package, purl: &str, id: &str) -> Value {
    let mut attribution = vec![format!("PkgType: {}", p.kind.trivy_type())];
    if let Some(d) = p.layer.as_ref().and_then(|l| l.diff_id.as_ref()) {
        attribution.push(format!("LayerDiffID: {d}"));
    }
    let license = license_expression(&p.licenses);
    let mut v = json!({
        "name": p.name,
        "SPDXID": id,
        "versionInfo": p.version,
        "supplier": "NOASSERTION",
        "downloadLocation": "NONE",
        "filesAnalyzed": false,
        "licenseConcluded": license,
        "licenseDeclared": license,
        "externalRefs": [{
            "referenceCategory": "PACKAGE-MANAGER",
            "referenceType": "purl",
            "referenceLocator": purl,
        }],
        "primaryPackagePurpose": "LIBRARY",
        "attributionTexts": attribution,
    });
    if let (Some(src), Some(src_version)) = (&p.src_name, &p.src_version) {
        v["sourceInfo"] = json!(format!("built package from: {src} {src_version}"));
    }
    v
}

/// Renders `report` as an SPDX 2.3 JSON document.
pub fn render(report: &Report, ctx: &RenderContext) -> Value {
    let artifact = &report.artifact;
    let (kind, purpose) = match artifact.kind {
        ArtifactKind::ContainerImage => ("ContainerImage", "CONTAINER"),
        ArtifactKind::Filesystem => ("Filesystem", "SOURCE"),
    };
    let root_id = spdx_id(kind, &[&artifact.name]);
    let mut root = json!({
        "name": artifact.name,
        "SPDXID": root_id,
        "downloadLocation": "NONE",
        "filesAnalyzed": false,
        "primaryPackagePurpose": purpose,
    });
    let mut root_attribution = vec!["SchemaVersion: 2".to_owned()];
    if let Some(id) = &artifact.image_id {
        root_attribution.push(format!("ImageID: {id}"));
    }
    root_attribution.extend(artifact.diff_ids.iter().map(|d| format!("DiffID: {d}")));
    root["attributionTexts"] = json!(root_attribution);
    let mut packages = vec![root];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relatedSpdxElement": root_id,
        "relationshipType": "DESCRIBES",
    })];
    let os_id = report.os.as_ref().map(|os| {
        let id = spdx_id("OperatingSystem", &[os.family.as_str(), &os.version]);
        packages.push(json!({
            "name": os.family.as_str(),
            "SPDXID": id,
            "versionInfo": os.version,
            "downloadLocation": "NONE",
            "filesAnalyzed": false,
            "primaryPackagePurpose": "OPERATING-SYSTEM",
        }));
        relationships.push(json!({
            "spdxElementId": root_id,
            "relatedSpdxElement": id,
            "relationshipType": "CONTAINS",
        }));
        id
    });
    let os = report.os.as_ref();
    for p in &report.packages {
        let purl = p.purl(os);
        let id = spdx_id("Package", &[&purl, &p.path]);
        packages.push(package(p, &purl, &id));
        let parent = match (&os_id, p.kind.is_os()) {
            (Some(os_id), true) => os_id.clone(),
            _ => root_id.clone(),
        };
        relationships.push(json!({
            "spdxElementId": parent,
            "relatedSpdxElement": id,
            "relationshipType": "CONTAINS",
        }));
    }
    json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": artifact.name,
        "documentNamespace": format!(
            "https://berth.invalid/spdx/{}-{}",
            artifact.name.replace(|c: char| !c.is_ascii_alphanumeric(), "-"),
            ctx.serial
        ),
        "creationInfo": {
            "creators": [
                "Organization: berth",
                format!("Tool: {}-{}", ctx.tool_name, ctx.tool_version),
            ],
            "created": rfc3339(ctx.finished),
        },
        "packages": packages,
        "relationships": relationships,
    })
}
