//! trivy-db's vendors over OSV records: which data source a record stands for, the ratings
//! (severity and CVSS) it gives and under which vendor, and Trivy's rule for the one severity a
//! finding reports (`autoDetectSeverity` in `pkg/vulnerability/vulnerability.go`).

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::osv::OsvRecord;
use crate::severity::{SOURCE_PRECEDENCE, Severity};

/// One vendor's CVSS vectors and base scores, with Trivy's JSON names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    /// CVSS v3.x vector.
    #[serde(rename = "V3Vector", default, skip_serializing_if = "Option::is_none")]
    pub v3_vector: Option<String>,
    /// CVSS v4.0 vector.
    #[serde(rename = "V40Vector", default, skip_serializing_if = "Option::is_none")]
    pub v40_vector: Option<String>,
    /// CVSS v3.x base score.
    #[serde(rename = "V3Score", default, skip_serializing_if = "Option::is_none")]
    pub v3_score: Option<f64>,
    /// CVSS v4.0 base score.
    #[serde(rename = "V40Score", default, skip_serializing_if = "Option::is_none")]
    pub v40_score: Option<f64>,
}

impl Cvss {
    /// The rating the scores give, v4.0 before v3 as trivy-db's `detailToSeverity` orders them.
    pub fn severity(&self) -> Option<Severity> {
        [self.v40_score, self.v3_score]
            .into_iter()
            .flatten()
            .find(|s| *s > 0.0)
            .map(Severity::from_cvss_score)
    }

    fn is_empty(&self) -> bool {
        self.v3_vector.is_none() && self.v40_vector.is_none()
    }
}

/// Every vendor's ratings of one vulnerability (trivy-db's `VendorSeverity` and `CVSS`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Ratings {
    /// Vendor id → rating; vendors that did not rate it are absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub severity: BTreeMap<String, Severity>,
    /// Vendor id → CVSS.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub cvss: BTreeMap<String, Cvss>,
}

impl Ratings {
    /// Adds `other`'s ratings of vendors this one has none from.
    pub fn absorb(&mut self, other: &Self) {
        for (k, v) in &other.severity {
            self.severity.entry(k.clone()).or_insert(*v);
        }
        for (k, v) in &other.cvss {
            self.cvss.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
}

/// A trivy-db data source as Trivy's JSON report names it (`DataSource`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataSource {
    /// Source id (`debian`, `ghsa`, …).
    #[serde(rename = "ID")]
    pub id: String,
    /// Human name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Where its data lives.
    #[serde(rename = "URL")]
    pub url: String,
}

/// The vendor an OSV record stands for, by its id: the distribution for a distribution's
/// record, `ghsa` for GitHub's, `govulndb` for Go's, `nvd` for a bare CVE and `osv` for the
/// rest (PyPA, RustSec, …).
pub fn record_vendor(id: &str) -> &'static str {
    let prefix = id.split('-').next().unwrap_or(id);
    match prefix {
        "GHSA" => "ghsa",
        "DEBIAN" | "DSA" | "DLA" | "DTSA" => "debian",
        "UBUNTU" | "USN" => "ubuntu",
        "ALPINE" => "alpine",
        "RHSA" | "RHBA" | "RHEA" => "redhat",
        "ALSA" | "ALBA" | "ALEA" => "alma",
        "RLSA" | "RLBA" | "RLEA" => "rocky",
        "GO" => "govulndb",
        "CVE" => "nvd",
        _ => "osv",
    }
}

/// True for a distribution's OSV export of one CVE (`DEBIAN-CVE-…`, `UBUNTU-CVE-…`,
/// `ALPINE-CVE-…`): a wrapper around the CVE, so its own id is no vendor's id of it.
pub fn is_cve_export(id: &str) -> bool {
    matches!(record_vendor(id), "debian" | "ubuntu" | "alpine") && id.contains("-CVE-")
}

/// The vendor whose rating a record's CVSS vectors are: a distribution's export of a CVE
/// (Debian, Ubuntu, Alpine) copies NVD's, everyone else rates for themselves.
fn cvss_vendor(id: &str) -> &'static str {
    match record_vendor(id) {
        "debian" | "ubuntu" | "alpine" => "nvd",
        other => other,
    }
}

fn cvss_of(rec: &OsvRecord) -> Cvss {
    let mut c = Cvss::default();
    for s in &rec.severity {
        // trivy-db trims a trailing '/' some GitHub vectors carry.
        let vector = s.score.trim_end_matches('/');
        let Ok(parsed) = cvss::Cvss::from_str(vector) else {
            continue;
        };
        match s.kind.as_str() {
            "CVSS_V3" if c.v3_vector.is_none() => {
                c.v3_vector = Some(vector.to_owned());
                c.v3_score = Some(parsed.score());
            }
            "CVSS_V4" if c.v40_vector.is_none() => {
                c.v40_vector = Some(vector.to_owned());
                c.v40_score = Some(parsed.score());
            }
            _ => {}
        }
    }
    c
}

fn word<'a>(v: Option<&'a serde_json::Value>, key: &str) -> Option<&'a str> {
    v.and_then(|v| v.get(key))
        .and_then(serde_json::Value::as_str)
}

/// The ratings one record gives, each under the vendor that made it.
pub fn record_ratings(rec: &OsvRecord) -> Ratings {
    let mut r = Ratings::default();
    let cvss = cvss_of(rec);
    let vendor = cvss_vendor(&rec.id);
    let own_word = match vendor {
        "ghsa" => word(rec.database_specific.as_ref(), "severity").and_then(Severity::from_ghsa),
        // An erratum's summary leads with its impact: `Important: openssl security update`.
        "redhat" | "alma" | "rocky" => rec
            .summary
            .as_deref()
            .and_then(|s| s.split_once(':'))
            .and_then(|(w, _)| Severity::from_redhat_impact(w)),
        // No public feed but GitHub's writes a word there; an admin's own advisories may, and
        // their word is the vendor's rating.
        _ => word(rec.database_specific.as_ref(), "severity").and_then(Severity::from_vendor),
    };
    if let Some(s) = own_word.or_else(|| cvss.severity()) {
        r.severity.insert(vendor.to_owned(), s);
    }
    if !cvss.is_empty() {
        r.cvss.insert(vendor.to_owned(), cvss);
    }
    if record_vendor(&rec.id) == "ubuntu" {
        // Ubuntu's priority is the CVE's, whether the record carries it once (a severity of
        // type `Ubuntu`) or, in the older export, on each package.
        let priority = rec
            .severity
            .iter()
            .find(|s| s.kind == "Ubuntu")
            .map(|s| s.score.as_str())
            .or_else(|| {
                rec.affected
                    .iter()
                    .find_map(|a| word(a.ecosystem_specific.as_ref(), "ubuntu_priority"))
            })
            .and_then(Severity::from_ubuntu_priority);
        if let Some(p) = priority {
            r.severity.insert("ubuntu".to_owned(), p);
        }
    }
    r
}

/// The vendor the matching data is from: the distribution for an OS package (Trivy matches
/// those against the distribution's own data), the record's vendor otherwise.
pub fn data_source_id(ecosystem: &str, record_id: &str) -> &'static str {
    match ecosystem.split(':').next().unwrap_or(ecosystem) {
        "Debian" => "debian",
        "Ubuntu" => "ubuntu",
        "Alpine" => "alpine",
        "Red Hat" => "redhat",
        "AlmaLinux" => "alma",
        "Rocky Linux" => "rocky",
        "SUSE" | "openSUSE" => "suse-cvrf",
        "Wolfi" => "wolfi",
        "Chainguard" => "chainguard",
        _ => record_vendor(record_id),
    }
}

/// GitHub's name for an OSV ecosystem, as in trivy-db's GHSA data-source names.
fn ghsa_ecosystem(ecosystem: &str) -> &str {
    match ecosystem {
        "PyPI" => "pip",
        "crates.io" => "Rust",
        "Packagist" => "Composer",
        "Hex" => "Erlang",
        "SwiftURL" => "Swift",
        other => other,
    }
}

/// Trivy's `DataSource` for a match from `vendor` in `ecosystem`.
pub fn data_source(vendor: &str, ecosystem: &str) -> DataSource {
    let fixed = |id: &str, name: &str, url: &str| DataSource {
        id: id.to_owned(),
        name: name.to_owned(),
        url: url.to_owned(),
    };
    match vendor {
        "debian" => fixed(
            "debian",
            "Debian Security Tracker",
            "https://salsa.debian.org/security-tracker-team/security-tracker",
        ),
        "ubuntu" => fixed(
            "ubuntu",
            "Ubuntu CVE Tracker",
            "https://git.launchpad.net/ubuntu-cve-tracker",
        ),
        "alpine" => fixed("alpine", "Alpine Secdb", "https://secdb.alpinelinux.org/"),
        "redhat" => fixed(
            "redhat-oval",
            "Red Hat OVAL v2",
            "https://www.redhat.com/security/data/oval/v2/",
        ),
        "alma" => fixed(
            "alma",
            "AlmaLinux Product Errata",
            "https://errata.almalinux.org/",
        ),
        "rocky" => fixed(
            "rocky",
            "Rocky Linux updateinfo",
            "https://download.rockylinux.org/pub/rocky/",
        ),
        "suse-cvrf" => fixed(
            "suse-cvrf",
            "SUSE CVRF",
            "https://ftp.suse.com/pub/projects/security/cvrf/",
        ),
        "wolfi" => fixed(
            "wolfi",
            "Wolfi Secdb",
            "https://packages.wolfi.dev/os/security.json",
        ),
        "chainguard" => fixed(
            "chainguard",
            "Chainguard Security Data",
            "https://packages.cgr.dev/chainguard/security.json",
        ),
        "govulndb" => fixed(
            "govulndb",
            "The Go Vulnerability Database",
            "https://pkg.go.dev/vuln/",
        ),
        "ghsa" => {
            let eco = ghsa_ecosystem(ecosystem);
            DataSource {
                id: "ghsa".to_owned(),
                name: format!("GitHub Security Advisory {eco}"),
                url: format!(
                    "https://github.com/advisories?query=type%3Areviewed+ecosystem%3A{}",
                    eco.to_ascii_lowercase()
                ),
            }
        }
        "nvd" => fixed(
            "nvd",
            "National Vulnerability Database",
            "https://nvd.nist.gov/",
        ),
        _ => DataSource {
            id: "osv".to_owned(),
            name: format!("Open Source Vulnerabilities {ecosystem}"),
            url: "https://osv.dev/".to_owned(),
        },
    }
}

/// The severity a finding reports and the vendor named for it, by Trivy's rule: the
/// distribution's rating of this very package (Debian's urgency), then the matching source's
/// rating of the vulnerability, GitHub's for a GHSA id, NVD's, and last any vendor's in
/// trivy-db's order, named by no one.
pub fn decide(
    package_rating: Option<Severity>,
    data_source: &str,
    reported_id: &str,
    ratings: &Ratings,
) -> (Severity, Option<String>) {
    if let Some(s) = package_rating {
        return (s, Some(data_source.to_owned()));
    }
    let named = std::iter::once(data_source)
        .chain(reported_id.starts_with("GHSA-").then_some("ghsa"))
        .chain(std::iter::once("nvd"));
    for vendor in named {
        if let Some(s) = ratings.severity.get(vendor) {
            return (*s, Some(vendor.to_owned()));
        }
    }
    SOURCE_PRECEDENCE
        .iter()
        .find_map(|v| ratings.severity.get(*v))
        .map_or((Severity::Unknown, None), |s| (*s, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(json: &str) -> OsvRecord {
        OsvRecord::from_json(json.as_bytes()).unwrap()
    }

    const CRITICAL_V3: &str = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H";
    const LOW_V4: &str = "CVSS:4.0/AV:L/AC:H/AT:P/PR:H/UI:A/VC:L/VI:N/VA:N/SC:N/SI:N/SA:N";

    #[test]
    fn each_record_rates_under_its_own_vendor() {
        let debian = record_ratings(&rec(&format!(
            r#"{{"id":"DEBIAN-CVE-2099-1","upstream":["CVE-2099-1"],
            "severity":[{{"type":"CVSS_V3","score":"{CRITICAL_V3}"}}]}}"#
        )));
        assert_eq!(
            debian.severity["nvd"],
            Severity::Critical,
            "Debian copies NVD's vector"
        );
        assert!(debian.cvss["nvd"].v3_score.is_some());
        let ghsa = record_ratings(&rec(&format!(
            r#"{{"id":"GHSA-x","database_specific":{{"severity":"MODERATE"}},
            "severity":[{{"type":"CVSS_V3","score":"{CRITICAL_V3}/"}}]}}"#
        )));
        assert_eq!(
            ghsa.severity["ghsa"],
            Severity::Medium,
            "GitHub's word beats its CVSS"
        );
        assert_eq!(ghsa.cvss["ghsa"].v3_vector.as_deref(), Some(CRITICAL_V3));
        let both = record_ratings(&rec(&format!(
            r#"{{"id":"PYSEC-1","severity":[{{"type":"CVSS_V3","score":"{CRITICAL_V3}"}},
            {{"type":"CVSS_V4","score":"{LOW_V4}"}}]}}"#
        )));
        assert_eq!(both.severity["osv"], Severity::Low, "v4.0 outranks v3");
        let rhsa = record_ratings(&rec(&format!(
            r#"{{"id":"RHSA-2099:1","summary":"Important: openssl security update",
            "severity":[{{"type":"CVSS_V3","score":"{CRITICAL_V3}"}}]}}"#
        )));
        assert_eq!(
            rhsa.severity["redhat"],
            Severity::High,
            "the impact word beats CVSS"
        );
        let ubuntu = record_ratings(&rec(
            r#"{"id":"UBUNTU-CVE-2099-1","severity":[{"type":"Ubuntu","score":"negligible"}]}"#,
        ));
        assert_eq!(ubuntu.severity["ubuntu"], Severity::Low);
        let own = record_ratings(&rec(
            r#"{"id":"CVE-2099-2","database_specific":{"severity":"CRITICAL"}}"#,
        ));
        assert_eq!(
            own.severity["nvd"],
            Severity::Critical,
            "an admin's own record's word"
        );
        let untriaged = record_ratings(&rec(
            r#"{"id":"UBUNTU-CVE-2099-2","affected":[{"package":{"ecosystem":"Ubuntu:22.04:LTS","name":"x"},
            "ecosystem_specific":{"ubuntu_priority":"untriaged"}}]}"#,
        ));
        assert!(untriaged.severity.is_empty(), "untriaged is no rating");
    }

    #[test]
    fn trivys_precedence() {
        let ratings = |pairs: &[(&str, Severity)]| Ratings {
            severity: pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
            cvss: BTreeMap::new(),
        };
        let all = ratings(&[
            ("nvd", Severity::Critical),
            ("ghsa", Severity::Medium),
            ("ubuntu", Severity::Low),
            ("redhat", Severity::High),
        ]);
        let src = |s: &str| Some(s.to_owned());
        assert_eq!(
            decide(Some(Severity::Low), "debian", "CVE-1", &all),
            (Severity::Low, src("debian")),
            "the package's own urgency first"
        );
        assert_eq!(
            decide(None, "ubuntu", "CVE-1", &all),
            (Severity::Low, src("ubuntu"))
        );
        assert_eq!(
            decide(None, "debian", "CVE-1", &all),
            (Severity::Critical, src("nvd"))
        );
        assert_eq!(
            decide(None, "osv", "GHSA-1", &all),
            (Severity::Medium, src("ghsa"))
        );
        assert_eq!(
            decide(
                None,
                "alpine",
                "CVE-1",
                &ratings(&[("ghsa", Severity::Medium), ("redhat", Severity::High)])
            ),
            (Severity::High, None),
            "any vendor in trivy-db's order, named by no one"
        );
        assert_eq!(
            decide(None, "alpine", "CVE-1", &Ratings::default()),
            (Severity::Unknown, None)
        );
    }

    #[test]
    fn data_sources_as_trivy_names_them() {
        let pip = data_source("ghsa", "PyPI");
        assert_eq!(pip.name, "GitHub Security Advisory pip");
        assert!(pip.url.ends_with("ecosystem%3Apip"));
        assert_eq!(
            data_source("ghsa", "crates.io").name,
            "GitHub Security Advisory Rust"
        );
        assert_eq!(data_source_id("Debian:12", "DEBIAN-CVE-1"), "debian");
        assert!(is_cve_export("DEBIAN-CVE-2099-1") && is_cve_export("UBUNTU-CVE-2099-1"));
        assert!(
            !is_cve_export("DSA-5000-1") && !is_cve_export("GHSA-x") && !is_cve_export("CVE-1")
        );
        assert_eq!(data_source_id("PyPI", "PYSEC-1"), "osv");
        assert_eq!(data_source_id("Go", "GO-2099-1"), "govulndb");
    }
}
