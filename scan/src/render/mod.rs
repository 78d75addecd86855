//! Report renderers: GitLab container scanning (15.x), CycloneDX 1.6, SPDX 2.3 JSON, SARIF
//! 2.1.0, Trivy-style JSON and the job-log table. Pure functions of a [`Report`] and a [`RenderContext`].

pub mod cyclonedx;
pub mod gitlab;
pub mod json;
pub mod sarif;
pub mod spdx;
pub mod table;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::report::Report;

/// Everything a renderer needs besides the report: the caller reads the clock and picks ids.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderContext {
    /// Tool name shown in reports.
    pub tool_name: String,
    /// Tool version.
    pub tool_version: String,
    /// Scan start.
    pub started: OffsetDateTime,
    /// Scan end (also the report timestamp).
    pub finished: OffsetDateTime,
    /// CycloneDX serial number (a UUID).
    pub serial: uuid::Uuid,
    /// GitLab report schema version to declare.
    pub gitlab_schema_version: String,
}

impl RenderContext {
    /// A context for berth at `now` with a random serial.
    pub fn new(now: OffsetDateTime) -> Self {
        Self {
            tool_name: "berth".into(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            started: now,
            finished: now,
            serial: uuid::Uuid::new_v4(),
            gitlab_schema_version: gitlab::DEFAULT_SCHEMA_VERSION.into(),
        }
    }
}

/// Output formats, by Trivy's `--format` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The log table.
    Table,
    /// Trivy-style JSON.
    Json,
    /// SARIF 2.1.0.
    Sarif,
    /// CycloneDX 1.6 JSON.
    CycloneDx,
    /// GitLab container scanning report.
    GitLab,
    /// SPDX 2.3 JSON.
    SpdxJson,
}

/// An unknown `--format`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown format {0:?}; use one of table, json, sarif, cyclonedx, spdx-json, gitlab")]
pub struct FormatError(pub String);

impl std::str::FromStr for Format {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "table" => Ok(Self::Table),
            "json" => Ok(Self::Json),
            "sarif" => Ok(Self::Sarif),
            "cyclonedx" => Ok(Self::CycloneDx),
            "spdx-json" => Ok(Self::SpdxJson),
            "gitlab" | "gitlab-container-scanning" => Ok(Self::GitLab),
            _ => Err(FormatError(s.to_owned())),
        }
    }
}

/// Renders `report` in `format`.
pub fn render(report: &Report, format: Format, ctx: &RenderContext) -> String {
    let v = match format {
        Format::Table => return table::render(report),
        Format::Json => json::render(report, ctx),
        Format::Sarif => sarif::render(report, ctx),
        Format::CycloneDx => cyclonedx::render(report, ctx),
        Format::GitLab => gitlab::render(report, ctx),
        Format::SpdxJson => spdx::render(report, ctx),
    };
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// FNV-1a, for stable ids derived from finding identity.
pub(crate) fn fnv64(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0u8]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}
