//! The OSV record model (ossf/osv-schema 1.x), as much of it as matching and reports need.

use serde::Deserialize;
use serde_json::Value;

/// One OSV record.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvRecord {
    /// Record id (CVE-…, GHSA-…, DEBIAN-CVE-…, PYSEC-…).
    pub id: String,
    /// Last modification time (RFC 3339).
    #[serde(default)]
    pub modified: Option<String>,
    /// Publication time.
    #[serde(default)]
    pub published: Option<String>,
    /// Set when the record was withdrawn.
    #[serde(default)]
    pub withdrawn: Option<String>,
    /// Other ids of the same vulnerability.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Upstream ids (Debian/Ubuntu records name the CVE here).
    #[serde(default)]
    pub upstream: Vec<String>,
    /// One-line summary.
    #[serde(default)]
    pub summary: Option<String>,
    /// Long description.
    #[serde(default)]
    pub details: Option<String>,
    /// CVSS vectors and other ratings.
    #[serde(default)]
    pub severity: Vec<OsvSeverity>,
    /// Affected packages.
    #[serde(default)]
    pub affected: Vec<OsvAffected>,
    /// Links.
    #[serde(default)]
    pub references: Vec<OsvReference>,
    /// Database-specific data (GHSA puts `severity` here).
    #[serde(default)]
    pub database_specific: Option<Value>,
}

/// A severity entry.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvSeverity {
    /// CVSS_V2, CVSS_V3, CVSS_V4 or Ubuntu.
    #[serde(rename = "type")]
    pub kind: String,
    /// The vector (or, for Ubuntu, the priority word).
    pub score: String,
}

/// A reference link.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvReference {
    /// ADVISORY, WEB, FIX, …
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The URL.
    pub url: String,
}

/// One affected package.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvAffected {
    /// The package.
    #[serde(default)]
    pub package: Option<OsvPackage>,
    /// Package-specific severities.
    #[serde(default)]
    pub severity: Vec<OsvSeverity>,
    /// Version ranges.
    #[serde(default)]
    pub ranges: Vec<OsvRange>,
    /// Explicitly affected versions.
    #[serde(default)]
    pub versions: Vec<String>,
    /// Ecosystem-specific data (Ubuntu/Debian may put urgency here).
    #[serde(default)]
    pub ecosystem_specific: Option<Value>,
    /// Database-specific data.
    #[serde(default)]
    pub database_specific: Option<Value>,
}

/// The affected package's identity.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvPackage {
    /// Ecosystem, possibly with a `:suffix` (Debian:12, Alpine:v3.19).
    pub ecosystem: String,
    /// Package name in that ecosystem.
    pub name: String,
    /// purl, when given.
    #[serde(default)]
    pub purl: Option<String>,
}

/// A version range.
#[derive(Debug, Clone, Deserialize)]
pub struct OsvRange {
    /// GIT, SEMVER or ECOSYSTEM.
    #[serde(rename = "type")]
    pub kind: String,
    /// Ordered events.
    #[serde(default)]
    pub events: Vec<OsvEvent>,
}

/// A range event: exactly one field is set.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct OsvEvent {
    /// Start of an affected span ("0" = from the beginning).
    #[serde(default)]
    pub introduced: Option<String>,
    /// First fixed version.
    #[serde(default)]
    pub fixed: Option<String>,
    /// Last affected version.
    #[serde(default)]
    pub last_affected: Option<String>,
    /// Upper limit of the range.
    #[serde(default)]
    pub limit: Option<String>,
}

impl OsvRecord {
    /// Parses one record from JSON text.
    pub fn from_json(text: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(text)
    }

    /// The CVE this record is about, when it names one in `aliases`/`upstream` or is one.
    pub fn cve(&self) -> Option<&str> {
        std::iter::once(&self.id)
            .chain(&self.aliases)
            .chain(&self.upstream)
            .map(String::as_str)
            .find(|a| a.starts_with("CVE-"))
    }
}
