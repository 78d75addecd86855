//! Severities and finding statuses, with Trivy's names and order.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Trivy's severity scale.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Severity {
    /// No rating known.
    #[default]
    Unknown,
    /// Low.
    Low,
    /// Medium (GitHub's "moderate").
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// A severity name that is not one of Trivy's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}; use one of UNKNOWN, LOW, MEDIUM, HIGH, CRITICAL")]
pub struct SeverityError(pub String);

impl Severity {
    /// All severities, lowest first.
    pub const ALL: [Self; 5] = [
        Self::Unknown,
        Self::Low,
        Self::Medium,
        Self::High,
        Self::Critical,
    ];

    /// Upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "UNKNOWN",
            Self::Low => "LOW",
            Self::Medium => "MEDIUM",
            Self::High => "HIGH",
            Self::Critical => "CRITICAL",
        }
    }

    /// Capitalised name, as GitLab's report wants it.
    pub fn gitlab(self) -> &'static str {
        match self {
            Self::Unknown => "Unknown",
            Self::Low => "Low",
            Self::Medium => "Medium",
            Self::High => "High",
            Self::Critical => "Critical",
        }
    }

    /// Parses a generic vendor wording (GitHub's `moderate`, Red Hat's `important`). A word
    /// that means "not rated" is `None`, so the next source is asked, as Trivy does.
    pub fn from_vendor(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "critical" => Some(Self::Critical),
            "high" | "important" => Some(Self::High),
            "medium" | "moderate" => Some(Self::Medium),
            "low" | "negligible" | "minor" => Some(Self::Low),
            _ => None,
        }
    }

    /// A Debian security tracker urgency (OSV `ecosystem_specific.urgency`), as trivy-db maps
    /// it: `unimportant` is LOW; `not yet assigned`, `end-of-life` and anything else are no
    /// rating. A trailing `*` (a guess by the tracker) is dropped.
    pub fn from_debian_urgency(s: &str) -> Option<Self> {
        match s
            .trim()
            .trim_end_matches('*')
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "unimportant" | "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            _ => None,
        }
    }

    /// An Ubuntu CVE priority, as trivy-db maps it: `untriaged` is no rating.
    pub fn from_ubuntu_priority(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "negligible" | "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }

    /// GitHub's advisory rating (`database_specific.severity`), as trivy-db maps it.
    pub fn from_ghsa(s: &str) -> Option<Self> {
        match s.trim() {
            "LOW" => Some(Self::Low),
            "MODERATE" => Some(Self::Medium),
            "HIGH" => Some(Self::High),
            "CRITICAL" => Some(Self::Critical),
            _ => None,
        }
    }

    /// Red Hat's impact word (also Alma's and Rocky's erratum severity), the first word of an
    /// erratum's summary (`Important: openssl security update`).
    pub fn from_redhat_impact(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "low" => Some(Self::Low),
            "moderate" => Some(Self::Medium),
            "important" => Some(Self::High),
            "critical" => Some(Self::Critical),
            _ => None,
        }
    }

    /// A CVSS base score as a rating, with trivy-db's thresholds.
    pub fn from_cvss_score(score: f64) -> Self {
        match score {
            s if s >= 9.0 => Self::Critical,
            s if s >= 7.0 => Self::High,
            s if s >= 4.0 => Self::Medium,
            s if s > 0.0 => Self::Low,
            _ => Self::Unknown,
        }
    }

    /// Trivy's integer for the rating in `VendorSeverity` (0 unknown … 4 critical).
    pub fn as_int(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Low => 1,
            Self::Medium => 2,
            Self::High => 3,
            Self::Critical => 4,
        }
    }

    /// Every severity at or above `self`.
    pub fn and_above(self) -> Vec<Self> {
        Self::ALL.into_iter().filter(|s| *s >= self).collect()
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = SeverityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| SeverityError(s.to_owned()))
    }
}

/// trivy-db's data-source ids in its precedence order (`AllSourceIDs`): when neither the
/// matching source, GitHub (for a GHSA id) nor NVD rated a vulnerability, the first of these
/// that did decides, and the finding names no source.
pub const SOURCE_PRECEDENCE: [&str; 33] = [
    "nvd",
    "redhat",
    "redhat-oval",
    "debian",
    "ubuntu",
    "alpine",
    "amazon",
    "oracle-oval",
    "suse-cvrf",
    "photon",
    "arch-linux",
    "alma",
    "rocky",
    "cbl-mariner",
    "azure",
    "ruby-advisory-db",
    "php-security-advisories",
    "nodejs-security-wg",
    "ghsa",
    "glad",
    "aqua",
    "osv",
    "k8s",
    "wolfi",
    "chainguard",
    "bitnami",
    "govulndb",
    "julia",
    "bottlerocket",
    "echo",
    "minimos",
    "rootio",
    "rapidfort",
];

/// Parses Trivy's comma-separated `--severity` list.
pub fn parse_list(s: &str) -> Result<Vec<Severity>, SeverityError> {
    s.split(',')
        .filter(|x| !x.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// Trivy's vulnerability statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Unknown.
    Unknown,
    /// Not affected.
    NotAffected,
    /// Affected, no fix yet.
    #[default]
    Affected,
    /// A fixed version exists.
    Fixed,
    /// Under investigation.
    UnderInvestigation,
    /// The vendor will not fix it.
    WillNotFix,
    /// Fix deferred.
    FixDeferred,
    /// End of life.
    EndOfLife,
}

/// A status name that is not one of Trivy's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown status {0:?}; use one of unknown, not_affected, affected, fixed, under_investigation, will_not_fix, fix_deferred, end_of_life"
)]
pub struct StatusError(pub String);

impl Status {
    const ALL: [Self; 8] = [
        Self::Unknown,
        Self::NotAffected,
        Self::Affected,
        Self::Fixed,
        Self::UnderInvestigation,
        Self::WillNotFix,
        Self::FixDeferred,
        Self::EndOfLife,
    ];

    /// snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::NotAffected => "not_affected",
            Self::Affected => "affected",
            Self::Fixed => "fixed",
            Self::UnderInvestigation => "under_investigation",
            Self::WillNotFix => "will_not_fix",
            Self::FixDeferred => "fix_deferred",
            Self::EndOfLife => "end_of_life",
        }
    }
}

impl FromStr for Status {
    type Err = StatusError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| StatusError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_order() {
        assert_eq!(
            parse_list("HIGH,critical").unwrap(),
            vec![Severity::High, Severity::Critical]
        );
        assert!(parse_list("HIGH,severe").is_err());
        assert!(Severity::Critical > Severity::High && Severity::Low > Severity::Unknown);
        assert_eq!(Severity::from_vendor("MODERATE"), Some(Severity::Medium));
        // Words that mean "not rated" leave the decision to the next source.
        for unrated in ["untriaged", "unknown", "none", "not yet assigned"] {
            assert_eq!(Severity::from_vendor(unrated), None, "{unrated}");
        }
        assert_eq!(
            Severity::from_debian_urgency("unimportant"),
            Some(Severity::Low)
        );
        assert_eq!(
            Severity::from_debian_urgency("medium*"),
            Some(Severity::Medium)
        );
        assert_eq!(Severity::from_debian_urgency("not yet assigned"), None);
        assert_eq!(Severity::from_debian_urgency("end-of-life"), None);
        assert_eq!(
            Severity::from_ubuntu_priority("negligible"),
            Some(Severity::Low)
        );
        assert_eq!(Severity::from_ubuntu_priority("untriaged"), None);
        assert_eq!(
            Severity::High.and_above(),
            vec![Severity::High, Severity::Critical]
        );
        assert_eq!(
            "will_not_fix".parse::<Status>().unwrap(),
            Status::WillNotFix
        );
    }
}
