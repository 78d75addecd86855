//! VEX documents (OpenVEX 0.2.0 and CycloneDX VEX, JSON): parsed strictly into one typed
//! [`VexSet`] and matched to findings as Trivy v0.74.0's `pkg/vex` matches them (`openvex.go`,
//! `cyclonedx.go`, go-vex v0.2.7's `Statement.Matches` and `PurlMatches`). Parsing takes bytes
//! and a name; nothing here reads files.
//!
//! A statement suppresses a finding when its status is `not_affected` or `fixed`; `affected`
//! and `under_investigation` keep it (Trivy's `OpenVEX.NotAffected`, `CycloneDX.NotAffected`).

use std::collections::BTreeMap;

use packageurl::PackageUrl;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use crate::inventory::BomId;

/// The largest VEX document read (a document of a few thousand statements is well under it).
pub const MAX_VEX_BYTES: u64 = 4 << 20;

/// A VEX status, in OpenVEX's words (CycloneDX analysis states are mapped onto them as Trivy
/// maps them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VexStatus {
    /// The product is not affected.
    NotAffected,
    /// The product is affected.
    Affected,
    /// The product contains a fix.
    Fixed,
    /// Not yet known.
    UnderInvestigation,
}

impl VexStatus {
    /// OpenVEX's name (also Trivy's `ModifiedFinding.Status`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotAffected => "not_affected",
            Self::Affected => "affected",
            Self::Fixed => "fixed",
            Self::UnderInvestigation => "under_investigation",
        }
    }

    /// Whether a statement with this status takes the finding out of the report.
    pub fn suppresses(self) -> bool {
        matches!(self, Self::NotAffected | Self::Fixed)
    }

    fn parse_openvex(s: &str) -> Option<Self> {
        match s {
            "not_affected" => Some(Self::NotAffected),
            "affected" => Some(Self::Affected),
            "fixed" => Some(Self::Fixed),
            "under_investigation" => Some(Self::UnderInvestigation),
            _ => None,
        }
    }

    /// CycloneDX's `analysis.state`, as Trivy's `cdxStatus` maps it.
    fn parse_cyclonedx(s: &str) -> Option<Self> {
        match s {
            "resolved" | "resolved_with_pedigree" => Some(Self::Fixed),
            "exploitable" => Some(Self::Affected),
            "in_triage" => Some(Self::UnderInvestigation),
            "false_positive" | "not_affected" => Some(Self::NotAffected),
            _ => None,
        }
    }
}

/// A VEX document that cannot be used: every problem found in it, together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("VEX document {document}: {}", problems.join("; "))]
pub struct VexError {
    /// The document's name (its path as given).
    pub document: String,
    /// What is wrong with it.
    pub problems: Vec<String>,
}

/// What a finding is matched on.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The finding's vulnerability id (Trivy's `VulnerabilityID`; aliases are not consulted).
    pub vuln_id: &'a str,
    /// The vulnerable package's purl (empty when it has none).
    pub purl: &'a str,
    /// The package's `bom-ref`, when it came from a CycloneDX SBOM.
    pub bom_ref: Option<&'a str>,
    /// The SBOM the package came from, when the scan read a CycloneDX SBOM.
    pub bom: Option<&'a BomId>,
}

/// The statement that decided a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VexHit {
    /// The document, as Trivy names it (`--vex` path for OpenVEX, `CycloneDX VEX`).
    pub source: String,
    /// The statement's status.
    pub status: VexStatus,
    /// The justification (OpenVEX `justification`, CycloneDX `analysis.justification`):
    /// Trivy's `Statement`.
    pub justification: Option<String>,
    /// The free-text reason (OpenVEX `impact_statement`, CycloneDX `analysis.detail`).
    pub impact_statement: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Component {
    id: Option<String>,
    identifiers: BTreeMap<String, String>,
    hashes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
struct Product {
    component: Component,
    subcomponents: Vec<Component>,
}

#[derive(Debug, Clone, PartialEq)]
struct OpenVexStatement {
    vuln_id: Option<String>,
    vuln_name: String,
    aliases: Vec<String>,
    timestamp: Option<OffsetDateTime>,
    products: Vec<Product>,
    status: VexStatus,
    justification: Option<String>,
    impact_statement: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
struct CycloneDxStatement {
    affects: Vec<String>,
    status: Option<VexStatus>,
    justification: Option<String>,
    detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    OpenVex {
        timestamp: Option<OffsetDateTime>,
        statements: Vec<OpenVexStatement>,
    },
    /// By vulnerability id: a later entry for the same id replaces an earlier one (Trivy keeps
    /// them in a map).
    CycloneDx {
        statements: BTreeMap<String, CycloneDxStatement>,
    },
}

/// One parsed VEX document.
#[derive(Debug, Clone, PartialEq)]
pub struct VexDocument {
    /// Its name (the path as given).
    pub name: String,
    body: Body,
}

/// The VEX documents in force, in the order given: the first document whose statement
/// suppresses a finding decides it (Trivy's `Client.NotAffected`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VexSet {
    /// The documents.
    pub documents: Vec<VexDocument>,
}

// ---- raw OpenVEX (go-vex v0.2.7's fields; anything else is refused) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOpenVex {
    #[serde(rename = "@context")]
    context: String,
    #[serde(rename = "@id", default)]
    _id: Option<String>,
    #[serde(rename = "author", default)]
    author: Option<String>,
    #[serde(rename = "role", default)]
    _role: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    last_updated: Option<String>,
    #[serde(rename = "version", default)]
    _version: Option<serde_json::Value>,
    #[serde(rename = "tooling", default)]
    _tooling: Option<String>,
    #[serde(rename = "supplier", default)]
    _supplier: Option<String>,
    #[serde(default)]
    statements: Vec<RawStatement>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStatement {
    #[serde(rename = "@id", default)]
    _id: Option<String>,
    #[serde(default)]
    vulnerability: Option<RawVulnerability>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    last_updated: Option<String>,
    #[serde(default)]
    products: Vec<RawProduct>,
    #[serde(default)]
    status: Option<String>,
    #[serde(rename = "status_notes", default)]
    _status_notes: Option<String>,
    #[serde(default)]
    justification: Option<String>,
    #[serde(default)]
    impact_statement: Option<String>,
    #[serde(default)]
    action_statement: Option<String>,
    #[serde(default)]
    action_statement_timestamp: Option<String>,
    #[serde(rename = "supplier", default)]
    _supplier: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVulnerability {
    #[serde(rename = "@id", default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "description", default)]
    _description: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    #[serde(rename = "@id", default)]
    id: Option<String>,
    #[serde(default)]
    identifiers: BTreeMap<String, String>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    #[serde(rename = "supplier", default)]
    _supplier: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProduct {
    #[serde(rename = "@id", default)]
    id: Option<String>,
    #[serde(default)]
    identifiers: BTreeMap<String, String>,
    #[serde(default)]
    hashes: BTreeMap<String, String>,
    #[serde(rename = "supplier", default)]
    _supplier: Option<String>,
    #[serde(default)]
    subcomponents: Vec<RawComponent>,
}

const JUSTIFICATIONS: [&str; 5] = [
    "component_not_present",
    "vulnerable_code_not_present",
    "vulnerable_code_not_in_execute_path",
    "vulnerable_code_cannot_be_controlled_by_adversary",
    "inline_mitigations_already_exist",
];
const IDENTIFIER_TYPES: [&str; 3] = ["purl", "cpe22", "cpe23"];

fn timestamp(what: &str, s: Option<&str>, problems: &mut Vec<String>) -> Option<OffsetDateTime> {
    let s = s?;
    match OffsetDateTime::parse(s, &Rfc3339) {
        Ok(t) => Some(t),
        Err(e) => {
            problems.push(format!("{what}: {s:?} is not an RFC 3339 time ({e})"));
            None
        }
    }
}

fn component(
    what: &str,
    id: Option<String>,
    identifiers: BTreeMap<String, String>,
    hashes: BTreeMap<String, String>,
    problems: &mut Vec<String>,
) -> Component {
    let id = id.filter(|i| !i.is_empty());
    for t in identifiers.keys() {
        if !IDENTIFIER_TYPES.contains(&t.as_str()) {
            problems.push(format!(
                "{what}: unknown identifier type {t:?} (use purl, cpe22 or cpe23)"
            ));
        }
    }
    if id.is_none() && identifiers.is_empty() && hashes.is_empty() {
        problems.push(format!(
            "{what} names nothing: give it an @id (a purl) or identifiers"
        ));
    }
    Component {
        id,
        identifiers,
        hashes,
    }
}

fn parse_openvex(raw: RawOpenVex, problems: &mut Vec<String>) -> Body {
    if !raw.context.starts_with("https://openvex.dev/ns") {
        problems.push(format!(
            "@context {:?} is not OpenVEX's (https://openvex.dev/ns/v0.2.0)",
            raw.context
        ));
    }
    let _ = raw.author;
    let doc_time = timestamp("timestamp", raw.timestamp.as_deref(), problems);
    timestamp("last_updated", raw.last_updated.as_deref(), problems);
    let mut statements = Vec::new();
    for (n, s) in raw.statements.into_iter().enumerate() {
        let at = format!("statements[{n}]");
        let Some(v) = s.vulnerability else {
            problems.push(format!("{at}: no vulnerability"));
            continue;
        };
        let name = v.name.unwrap_or_default();
        if name.is_empty() {
            problems.push(format!("{at}: the vulnerability has no name"));
        }
        let status = match s.status.as_deref() {
            None => {
                problems.push(format!("{at}: no status"));
                None
            }
            Some(st) => {
                let parsed = VexStatus::parse_openvex(st);
                if parsed.is_none() {
                    problems.push(format!(
                        "{at}: unknown status {st:?} (use not_affected, affected, fixed or under_investigation)"
                    ));
                }
                parsed
            }
        };
        let justification = s.justification.filter(|j| !j.is_empty());
        let impact_statement = s.impact_statement.filter(|j| !j.is_empty());
        if let Some(j) = &justification
            && !JUSTIFICATIONS.contains(&j.as_str())
        {
            problems.push(format!(
                "{at}: unknown justification {j:?} (use one of {})",
                JUSTIFICATIONS.join(", ")
            ));
        }
        match status {
            Some(VexStatus::NotAffected)
                if justification.is_none() && impact_statement.is_none() =>
            {
                problems.push(format!(
                    "{at}: not_affected needs a justification or an impact_statement"
                ));
            }
            Some(st @ (VexStatus::Fixed | VexStatus::UnderInvestigation | VexStatus::Affected))
                if justification.is_some() =>
            {
                problems.push(format!(
                    "{at}: a justification belongs to not_affected, not {}",
                    st.as_str()
                ));
            }
            _ => {}
        }
        let stmt_time = timestamp(&format!("{at}.timestamp"), s.timestamp.as_deref(), problems);
        timestamp(
            &format!("{at}.last_updated"),
            s.last_updated.as_deref(),
            problems,
        );
        timestamp(
            &format!("{at}.action_statement_timestamp"),
            s.action_statement_timestamp.as_deref(),
            problems,
        );
        let _ = s.action_statement;
        if s.products.is_empty() {
            problems.push(format!("{at}: no products"));
        }
        let products = s
            .products
            .into_iter()
            .enumerate()
            .map(|(p, raw)| {
                let pat = format!("{at}.products[{p}]");
                let subcomponents = raw
                    .subcomponents
                    .into_iter()
                    .enumerate()
                    .map(|(c, sc)| {
                        component(
                            &format!("{pat}.subcomponents[{c}]"),
                            sc.id,
                            sc.identifiers,
                            sc.hashes,
                            problems,
                        )
                    })
                    .collect();
                Product {
                    component: component(&pat, raw.id, raw.identifiers, raw.hashes, problems),
                    subcomponents,
                }
            })
            .collect();
        if let Some(status) = status {
            statements.push(OpenVexStatement {
                vuln_id: v.id.filter(|i| !i.is_empty()),
                vuln_name: name,
                aliases: v.aliases,
                timestamp: stmt_time,
                products,
                status,
                justification,
                impact_statement,
            });
        }
    }
    Body::OpenVex {
        timestamp: doc_time,
        statements,
    }
}

// ---- raw CycloneDX VEX (CycloneDX 1.4–1.6 fields; anything else is refused) ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCdx {
    #[serde(rename = "bomFormat")]
    _bom_format: String,
    #[serde(rename = "specVersion")]
    spec_version: String,
    #[serde(rename = "$schema", default)]
    _schema: Option<IgnoredAny>,
    #[serde(rename = "serialNumber", default)]
    _serial: Option<IgnoredAny>,
    #[serde(rename = "version", default)]
    _version: Option<IgnoredAny>,
    #[serde(rename = "metadata", default)]
    _metadata: Option<IgnoredAny>,
    #[serde(rename = "components", default)]
    _components: Option<IgnoredAny>,
    #[serde(rename = "services", default)]
    _services: Option<IgnoredAny>,
    #[serde(rename = "externalReferences", default)]
    _external: Option<IgnoredAny>,
    #[serde(rename = "dependencies", default)]
    _dependencies: Option<IgnoredAny>,
    #[serde(rename = "compositions", default)]
    _compositions: Option<IgnoredAny>,
    #[serde(rename = "properties", default)]
    _properties: Option<IgnoredAny>,
    #[serde(rename = "annotations", default)]
    _annotations: Option<IgnoredAny>,
    #[serde(rename = "formulation", default)]
    _formulation: Option<IgnoredAny>,
    #[serde(rename = "declarations", default)]
    _declarations: Option<IgnoredAny>,
    #[serde(rename = "definitions", default)]
    _definitions: Option<IgnoredAny>,
    #[serde(rename = "signature", default)]
    _signature: Option<IgnoredAny>,
    #[serde(default)]
    vulnerabilities: Vec<RawCdxVuln>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCdxVuln {
    #[serde(rename = "bom-ref", default)]
    _bom_ref: Option<IgnoredAny>,
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "source", default)]
    _source: Option<IgnoredAny>,
    #[serde(rename = "references", default)]
    _references: Option<IgnoredAny>,
    #[serde(rename = "ratings", default)]
    _ratings: Option<IgnoredAny>,
    #[serde(rename = "cwes", default)]
    _cwes: Option<IgnoredAny>,
    #[serde(rename = "description", default)]
    _description: Option<IgnoredAny>,
    #[serde(rename = "detail", default)]
    _detail: Option<IgnoredAny>,
    #[serde(rename = "recommendation", default)]
    _recommendation: Option<IgnoredAny>,
    #[serde(rename = "workaround", default)]
    _workaround: Option<IgnoredAny>,
    #[serde(rename = "proofOfConcept", default)]
    _poc: Option<IgnoredAny>,
    #[serde(rename = "advisories", default)]
    _advisories: Option<IgnoredAny>,
    #[serde(rename = "created", default)]
    _created: Option<IgnoredAny>,
    #[serde(rename = "published", default)]
    _published: Option<IgnoredAny>,
    #[serde(rename = "updated", default)]
    _updated: Option<IgnoredAny>,
    #[serde(rename = "rejected", default)]
    _rejected: Option<IgnoredAny>,
    #[serde(rename = "credits", default)]
    _credits: Option<IgnoredAny>,
    #[serde(rename = "tools", default)]
    _tools: Option<IgnoredAny>,
    #[serde(default)]
    analysis: Option<RawCdxAnalysis>,
    #[serde(default)]
    affects: Vec<RawCdxAffects>,
    #[serde(rename = "properties", default)]
    _properties: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCdxAnalysis {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    justification: Option<String>,
    #[serde(rename = "response", default)]
    _response: Option<IgnoredAny>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(rename = "firstIssued", default)]
    _first: Option<IgnoredAny>,
    #[serde(rename = "lastUpdated", default)]
    _last: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCdxAffects {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(rename = "versions", default)]
    _versions: Option<IgnoredAny>,
}

const CDX_JUSTIFICATIONS: [&str; 9] = [
    "code_not_present",
    "code_not_reachable",
    "requires_configuration",
    "requires_dependency",
    "requires_environment",
    "protected_by_compiler",
    "protected_at_runtime",
    "protected_at_perimeter",
    "protected_by_mitigating_control",
];

fn parse_cyclonedx(raw: RawCdx, problems: &mut Vec<String>) -> Body {
    if !matches!(raw.spec_version.as_str(), "1.4" | "1.5" | "1.6") {
        problems.push(format!(
            "specVersion {:?}: CycloneDX VEX needs 1.4, 1.5 or 1.6",
            raw.spec_version
        ));
    }
    let mut statements = BTreeMap::new();
    for (n, v) in raw.vulnerabilities.into_iter().enumerate() {
        let at = format!("vulnerabilities[{n}]");
        let Some(id) = v.id.filter(|i| !i.is_empty()) else {
            problems.push(format!("{at}: no id"));
            continue;
        };
        let analysis = v.analysis;
        let state = analysis.as_ref().and_then(|a| a.state.clone());
        let status = match &state {
            None => None,
            Some(s) => {
                let parsed = VexStatus::parse_cyclonedx(s);
                if parsed.is_none() {
                    problems.push(format!(
                        "{at}: unknown analysis.state {s:?} (use resolved, resolved_with_pedigree, exploitable, in_triage, false_positive or not_affected)"
                    ));
                }
                parsed
            }
        };
        let justification = analysis
            .as_ref()
            .and_then(|a| a.justification.clone())
            .filter(|j| !j.is_empty());
        if let Some(j) = &justification
            && !CDX_JUSTIFICATIONS.contains(&j.as_str())
        {
            problems.push(format!(
                "{at}: unknown analysis.justification {j:?} (use one of {})",
                CDX_JUSTIFICATIONS.join(", ")
            ));
        }
        let affects: Vec<String> = v.affects.into_iter().map(|a| a.reference).collect();
        for a in &affects {
            if bom_link(a).is_none() {
                problems.push(format!(
                    "{at}: affects ref {a:?} is not a BOM-Link (urn:cdx:SERIAL/VERSION#REF) naming the SBOM scanned"
                ));
            }
        }
        statements.insert(
            id,
            CycloneDxStatement {
                affects,
                status,
                justification,
                detail: analysis.and_then(|a| a.detail).filter(|d| !d.is_empty()),
            },
        );
    }
    Body::CycloneDx { statements }
}

/// A BOM-Link `urn:cdx:SERIAL/VERSION#REF` as cyclonedx-go's `ParseBOMLink` reads it:
/// (serial as `urn:uuid:…`, version, the reference query-unescaped).
fn bom_link(s: &str) -> Option<(String, u64, String)> {
    let rest = s.strip_prefix("urn:cdx:")?;
    let (serial, rest) = rest.split_at_checked(36)?;
    let groups: Vec<&str> = serial.split('-').collect();
    let shape_ok = groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && serial
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !shape_ok {
        return None;
    }
    let rest = rest.strip_prefix('/')?;
    let (version, reference) = match rest.split_once('#') {
        Some((v, r)) => (v, Some(r)),
        None => (rest, None),
    };
    if version.is_empty()
        || version.starts_with('0')
        || !version.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let version: u64 = version.parse().ok()?;
    let reference = match reference {
        None => String::new(),
        Some(r) => {
            let allowed = |b: u8| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=:@/?".contains(&b);
            if r.is_empty() || !r.bytes().all(allowed) {
                return None;
            }
            query_unescape(r)?
        }
    };
    Some((format!("urn:uuid:{serial}"), version, reference))
}

/// Go's `url.QueryUnescape`: `%XX` decoded, `+` a space.
fn query_unescape(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// go-vex's `PurlMatches(general, specific)`: type, namespace and name agree; a version on the
/// general purl must be the specific one's; every qualifier of the general one must be on the
/// specific one with the same value. Invalid purls match nothing.
pub fn purl_matches(general: &str, specific: &str) -> bool {
    let (Ok(g), Ok(s)) = (
        general.parse::<PackageUrl<'_>>(),
        specific.parse::<PackageUrl<'_>>(),
    ) else {
        return false;
    };
    g.ty() == s.ty()
        && g.namespace().unwrap_or_default() == s.namespace().unwrap_or_default()
        && g.name() == s.name()
        && match (g.version(), s.version()) {
            (Some(gv), Some(sv)) => gv.is_empty() || gv == sv,
            (Some(gv), None) => gv.is_empty(),
            (None, _) => true,
        }
        && g.qualifiers()
            .iter()
            .all(|(k, v)| s.qualifiers().get(k) == Some(v))
}

impl Component {
    /// go-vex's `Component.Matches`.
    fn matches(&self, identifier: &str) -> bool {
        if let Some(id) = &self.id
            && (id == identifier || (id.starts_with("pkg:") && purl_matches(id, identifier)))
        {
            return true;
        }
        self.identifiers.iter().any(|(t, id)| {
            id == identifier
                || (t == "purl" && identifier.starts_with("pkg:") && purl_matches(id, identifier))
        }) || self.hashes.values().any(|h| h == identifier)
    }
}

impl Product {
    /// go-vex's `Product.Matches`: an empty sub-identifier matches whatever the subcomponents.
    fn matches(&self, identifier: &str, sub: &str) -> bool {
        self.component.matches(identifier)
            && (self.subcomponents.is_empty()
                || sub.is_empty()
                || self.subcomponents.iter().any(|s| s.matches(sub)))
    }
}

impl OpenVexStatement {
    fn names(&self, vuln: &str) -> bool {
        self.vuln_id.as_deref() == Some(vuln)
            || self.vuln_name == vuln
            || self.aliases.iter().any(|a| a == vuln)
    }
}

impl VexDocument {
    /// Parses a document: CycloneDX when `bomFormat` is `CycloneDX`, else OpenVEX when it has an
    /// `@context` (Trivy's `decodeVEX` order). Every problem is reported together.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self, VexError> {
        let fail = |problems: Vec<String>| VexError {
            document: name.to_owned(),
            problems,
        };
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| fail(vec![format!("not JSON: {e}")]))?;
        let mut problems = Vec::new();
        let body = if value.get("bomFormat").and_then(|v| v.as_str()) == Some("CycloneDX") {
            let raw: RawCdx = serde_json::from_value(value)
                .map_err(|e| fail(vec![format!("not CycloneDX VEX: {e}")]))?;
            parse_cyclonedx(raw, &mut problems)
        } else if value.get("@context").is_some() {
            let raw: RawOpenVex = serde_json::from_value(value)
                .map_err(|e| fail(vec![format!("not OpenVEX: {e}")]))?;
            parse_openvex(raw, &mut problems)
        } else if value.get("document").is_some() && value.get("vulnerabilities").is_some() {
            return Err(fail(vec![
                "a CSAF document: berth reads OpenVEX and CycloneDX VEX only".to_owned(),
            ]));
        } else {
            return Err(fail(vec![
                "neither OpenVEX (@context) nor CycloneDX VEX (bomFormat)".to_owned(),
            ]));
        };
        if problems.is_empty() {
            Ok(Self {
                name: name.to_owned(),
                body,
            })
        } else {
            Err(fail(problems))
        }
    }

    /// Whether this is a CycloneDX VEX document (Trivy applies those to CycloneDX SBOM scans
    /// only).
    pub fn is_cyclonedx(&self) -> bool {
        matches!(self.body, Body::CycloneDx { .. })
    }

    /// The statement of this document that decides `subject` when it suppresses it.
    fn suppresses(&self, subject: &Subject<'_>) -> Option<VexHit> {
        match &self.body {
            Body::OpenVex {
                timestamp,
                statements,
            } => {
                if subject.purl.is_empty() {
                    return None;
                }
                // `VEX.Matches(vuln, product, [""])`: newest first, then sorted stably by
                // (name, time); the last one wins (Trivy's `OpenVEX.NotAffected`).
                let mut matches: Vec<&OpenVexStatement> = statements
                    .iter()
                    .rev()
                    .filter(|s| {
                        s.names(subject.vuln_id)
                            && s.products.iter().any(|p| p.matches(subject.purl, ""))
                    })
                    .collect();
                matches.sort_by(|a, b| {
                    a.vuln_name
                        .cmp(&b.vuln_name)
                        .then_with(|| a.timestamp.or(*timestamp).cmp(&b.timestamp.or(*timestamp)))
                });
                let s = matches.last()?;
                s.status.suppresses().then(|| VexHit {
                    source: self.name.clone(),
                    status: s.status,
                    justification: s.justification.clone(),
                    impact_statement: s.impact_statement.clone(),
                })
            }
            Body::CycloneDx { statements } => {
                let s = statements.get(subject.vuln_id)?;
                let status = s.status.filter(|st| st.suppresses())?;
                let bom = subject.bom?;
                let hit =
                    s.affects
                        .iter()
                        .filter_map(|a| bom_link(a))
                        .any(|(serial, version, r)| {
                            serial == bom.serial
                                && version == bom.version
                                && pkg_identifier_matches(subject.bom_ref, subject.purl, &r)
                        });
                hit.then(|| VexHit {
                    source: "CycloneDX VEX".to_owned(),
                    status,
                    justification: s.justification.clone(),
                    impact_statement: s.detail.clone(),
                })
            }
        }
    }
}

/// Trivy's `PkgIdentifier.Match`: a purl reference is normalised first; it then names the
/// package's bom-ref or its purl.
fn pkg_identifier_matches(bom_ref: Option<&str>, purl: &str, reference: &str) -> bool {
    let normal = if reference.starts_with("pkg:") {
        reference
            .parse::<PackageUrl<'_>>()
            .map_or_else(|_| reference.to_owned(), |p| p.to_string())
    } else {
        reference.to_owned()
    };
    bom_ref == Some(normal.as_str()) || (!purl.is_empty() && purl == normal)
}

impl VexSet {
    /// Parses every `(name, bytes)` document; the ones that parse form the set, the others
    /// are returned as errors (each naming its document and every problem in it).
    pub fn parse_all<'a>(
        docs: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> (Self, Vec<VexError>) {
        let mut set = Self::default();
        let mut errors = Vec::new();
        for (name, bytes) in docs {
            match VexDocument::parse(bytes, name) {
                Ok(d) => set.documents.push(d),
                Err(e) => errors.push(e),
            }
        }
        (set, errors)
    }

    /// Whether no document is in force.
    pub fn is_empty(&self) -> bool {
        self.documents.is_empty()
    }

    /// Keeps the documents that apply to a scan of `bom` (the CycloneDX SBOM read, if any):
    /// CycloneDX VEX applies to CycloneDX SBOM scans only, as in Trivy; each one dropped is an
    /// error.
    pub fn retain_applicable(&mut self, bom: Option<&BomId>) -> Vec<VexError> {
        if bom.is_some() {
            return Vec::new();
        }
        let (keep, drop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.documents)
            .into_iter()
            .partition(|d| !d.is_cyclonedx());
        self.documents = keep;
        drop.into_iter()
            .map(|d| VexError {
                document: d.name,
                problems: vec![
                    "CycloneDX VEX applies to scans of a CycloneDX SBOM only (as in Trivy); use OpenVEX for images"
                        .to_owned(),
                ],
            })
            .collect()
    }

    /// The first document's statement that suppresses `subject`, if any.
    pub fn suppression(&self, subject: &Subject<'_>) -> Option<VexHit> {
        self.documents.iter().find_map(|d| d.suppresses(subject))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENVEX: &str = r#"{
      "@context": "https://openvex.dev/ns/v0.2.0",
      "@id": "https://example.com/vex-1",
      "author": "Example",
      "timestamp": "2026-01-01T00:00:00Z",
      "version": 1,
      "statements": [
        {"vulnerability": {"name": "CVE-2099-0001"},
         "products": [{"@id": "pkg:deb/debian/libc6?arch=amd64"}],
         "status": "not_affected", "justification": "vulnerable_code_not_in_execute_path"},
        {"vulnerability": {"name": "GHSA-fake-0001", "aliases": ["CVE-2099-0002"]},
         "products": [{"identifiers": {"purl": "pkg:npm/minimist@1.2.5"}}],
         "status": "fixed"},
        {"vulnerability": {"name": "PYSEC-2099-7"},
         "products": [{"@id": "pkg:pypi/urllib3"}],
         "status": "under_investigation"},
        {"vulnerability": {"name": "RUSTSEC-2099-0001"},
         "products": [{"@id": "pkg:cargo/smallvec@1.6.0"}],
         "status": "not_affected", "impact_statement": "never on a hot path",
         "timestamp": "2026-01-02T00:00:00Z"},
        {"vulnerability": {"name": "RUSTSEC-2099-0001"},
         "products": [{"@id": "pkg:cargo/smallvec@1.6.0"}],
         "status": "affected", "action_statement": "upgrade",
         "timestamp": "2026-01-03T00:00:00Z"}
      ]
    }"#;

    fn subject<'a>(vuln_id: &'a str, purl: &'a str) -> Subject<'a> {
        Subject {
            vuln_id,
            purl,
            bom_ref: None,
            bom: None,
        }
    }

    #[test]
    fn openvex_statements_suppress_by_status_and_the_newest_wins() {
        let (set, errors) = VexSet::parse_all([("a.openvex.json", OPENVEX.as_bytes())]);
        assert!(errors.is_empty(), "{errors:?}");
        let hit = set
            .suppression(&subject(
                "CVE-2099-0001",
                "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12.15",
            ))
            .expect("not_affected suppresses");
        assert_eq!(hit.status, VexStatus::NotAffected);
        assert_eq!(hit.source, "a.openvex.json");
        assert_eq!(
            hit.justification.as_deref(),
            Some("vulnerable_code_not_in_execute_path")
        );
        // A qualifier the product names must be on the package.
        assert!(
            set.suppression(&subject(
                "CVE-2099-0001",
                "pkg:deb/debian/libc6@2.36?arch=arm64"
            ))
            .is_none()
        );
        // By alias of the statement, never by the finding's aliases.
        let fixed = set
            .suppression(&subject("CVE-2099-0002", "pkg:npm/minimist@1.2.5"))
            .expect("alias");
        assert_eq!(fixed.status, VexStatus::Fixed);
        assert!(
            set.suppression(&subject("GHSA-fake-0001", "pkg:npm/minimist@1.2.6"))
                .is_none(),
            "another version"
        );
        assert!(
            set.suppression(&subject("PYSEC-2099-7", "pkg:pypi/urllib3@1.26.4"))
                .is_none(),
            "under_investigation keeps the finding"
        );
        assert!(
            set.suppression(&subject("RUSTSEC-2099-0001", "pkg:cargo/smallvec@1.6.0"))
                .is_none(),
            "the newer affected statement wins"
        );
    }

    #[test]
    fn subcomponents_of_a_matching_product_do_not_narrow_the_package_itself() {
        let doc = r#"{"@context":"https://openvex.dev/ns/v0.2.0","statements":[
          {"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:npm/a@1","subcomponents":[{"@id":"pkg:npm/b@2"}]}],
           "status":"not_affected","justification":"component_not_present"}]}"#;
        let (set, errors) = VexSet::parse_all([("d", doc.as_bytes())]);
        assert!(errors.is_empty(), "{errors:?}");
        assert!(set.suppression(&subject("CVE-1", "pkg:npm/a@1")).is_some());
        assert!(set.suppression(&subject("CVE-1", "pkg:npm/b@2")).is_none());
    }

    #[test]
    fn every_problem_of_a_malformed_openvex_document_is_reported() {
        let doc = r#"{"@context":"https://example.com/ns","timestamp":"yesterday","statements":[
          {"vulnerability":{"name":""},"products":[],"status":"maybe"},
          {"vulnerability":{"name":"CVE-1"},"products":[{"identifiers":{"swid":"x"}}],"status":"not_affected"},
          {"vulnerability":{"name":"CVE-2"},"products":[{}],"status":"fixed","justification":"component_not_present"},
          {"vulnerability":{"name":"CVE-3"},"products":[{"@id":"pkg:npm/a"}],"status":"not_affected","justification":"trust_me"}
        ]}"#;
        let err = VexDocument::parse(doc.as_bytes(), ".vex/bad.json").expect_err("accepted");
        let text = err.to_string();
        assert!(text.starts_with("VEX document .vex/bad.json: "), "{text}");
        for needle in [
            "@context",
            "RFC 3339",
            "has no name",
            "no products",
            "unknown status \"maybe\"",
            "unknown identifier type \"swid\"",
            "needs a justification",
            "names nothing",
            "belongs to not_affected",
            "unknown justification \"trust_me\"",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        let unknown = r#"{"@context":"https://openvex.dev/ns/v0.2.0","statements":[
          {"vulnerability":{"name":"CVE-1"},"products":[{"@id":"pkg:npm/a"}],"status":"fixed","scope":"all"}]}"#;
        let err = VexDocument::parse(unknown.as_bytes(), "u").expect_err("unknown field");
        assert!(err.to_string().contains("scope"), "{err}");
        for junk in [
            "",
            "[]",
            "{\"a\":1}",
            "{\"document\":{},\"vulnerabilities\":[]}",
        ] {
            assert!(VexDocument::parse(junk.as_bytes(), "j").is_err(), "{junk}");
        }
    }

    const SERIAL: &str = "urn:uuid:3e671687-395b-41f5-a30f-a58921a69b79";

    fn cdx(affects: &str, state: &str) -> String {
        format!(
            r#"{{"bomFormat":"CycloneDX","specVersion":"1.5","version":1,
            "vulnerabilities":[{{"id":"CVE-2099-0001","analysis":{{"state":"{state}","justification":"code_not_reachable","detail":"why"}},
            "affects":[{{"ref":"{affects}"}}]}}]}}"#
        )
    }

    #[test]
    fn cyclonedx_vex_names_the_sbom_by_serial_and_version_and_the_package_by_ref_or_purl() {
        let bom = BomId {
            serial: SERIAL.into(),
            version: 1,
        };
        let link = "urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#pkg:npm/minimist@1.2.5";
        let (set, errors) = VexSet::parse_all([("c", cdx(link, "not_affected").as_bytes())]);
        assert!(errors.is_empty(), "{errors:?}");
        let mut s = subject("CVE-2099-0001", "pkg:npm/minimist@1.2.5");
        assert_eq!(set.suppression(&s), None, "no SBOM: no match");
        s.bom = Some(&bom);
        let hit = set.suppression(&s).expect("by purl");
        assert_eq!(
            (
                hit.source.as_str(),
                hit.status,
                hit.justification.as_deref()
            ),
            (
                "CycloneDX VEX",
                VexStatus::NotAffected,
                Some("code_not_reachable")
            )
        );
        let other = BomId {
            serial: SERIAL.into(),
            version: 2,
        };
        s.bom = Some(&other);
        assert_eq!(set.suppression(&s), None, "another version of the SBOM");
        let by_ref = "urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#ref-7";
        let (set, _) = VexSet::parse_all([("c", cdx(by_ref, "resolved").as_bytes())]);
        let s = Subject {
            bom_ref: Some("ref-7"),
            bom: Some(&bom),
            ..subject("CVE-2099-0001", "pkg:npm/x@1")
        };
        assert_eq!(
            set.suppression(&s).map(|h| h.status),
            Some(VexStatus::Fixed)
        );
        let (set, _) = VexSet::parse_all([("c", cdx(by_ref, "in_triage").as_bytes())]);
        assert_eq!(set.suppression(&s), None, "in_triage keeps the finding");
        let (mut set, _) = VexSet::parse_all([("c", cdx(by_ref, "resolved").as_bytes())]);
        let dropped = set.retain_applicable(None);
        assert!(set.is_empty() && dropped.len() == 1, "{dropped:?}");
    }

    #[test]
    fn every_problem_of_a_malformed_cyclonedx_document_is_reported() {
        let doc = r#"{"bomFormat":"CycloneDX","specVersion":"1.2","vulnerabilities":[
          {"analysis":{"state":"not_affected"}},
          {"id":"CVE-1","analysis":{"state":"fine","justification":"because"},"affects":[{"ref":"pkg:npm/a@1"}]}
        ]}"#;
        let err = VexDocument::parse(doc.as_bytes(), "c.cdx.json").expect_err("accepted");
        let text = err.to_string();
        for needle in [
            "specVersion",
            "vulnerabilities[0]: no id",
            "unknown analysis.state \"fine\"",
            "unknown analysis.justification \"because\"",
            "is not a BOM-Link",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
    }

    #[test]
    fn bom_links_and_purl_matching_follow_the_go_libraries() {
        assert_eq!(
            bom_link("urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/12#a%40b+c"),
            Some((SERIAL.to_owned(), 12, "a@b c".to_owned()))
        );
        assert!(bom_link("urn:cdx:3E671687-395b-41f5-a30f-a58921a69b79/1#a").is_none());
        assert!(bom_link("urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/0#a").is_none());
        assert!(purl_matches("pkg:npm/a", "pkg:npm/a@1"));
        assert!(!purl_matches("pkg:npm/a@1", "pkg:npm/a"));
        assert!(!purl_matches("pkg:npm/a@1", "pkg:npm/a@2"));
        assert!(purl_matches(
            "pkg:deb/debian/a?arch=amd64",
            "pkg:deb/debian/a@1?arch=amd64&distro=x"
        ));
        assert!(!purl_matches(
            "pkg:deb/debian/a?arch=amd64",
            "pkg:deb/debian/a@1"
        ));
        assert!(!purl_matches("not a purl", "pkg:npm/a@1"));
    }
}
