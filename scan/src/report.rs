//! `Report::generate(&Inventory, &AdvisoryIndex, &Policy) -> Report`: matching, severity
//! filtering, ignore rules and the block decision. Pure: no I/O, no clock.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::advisory::vendor::{Cvss, DataSource, data_source};
use crate::advisory::{AdvisoryIndex, Match, Vuln};
use crate::ignore_policy::IgnorePolicy;
use crate::inventory::{Artifact, Inventory, LayerRef, Os, Package, PkgType};
use crate::policy::Policy;
use crate::severity::{Severity, Status};
use crate::vex::{Subject, VexStatus};

/// One vulnerability in one package.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The id reported (a CVE for distro wrapper records).
    pub id: String,
    /// The OSV record id and its other aliases.
    pub aliases: Vec<String>,
    /// Index of the package in `Report::packages`.
    pub package: usize,
    /// Package name.
    pub pkg_name: String,
    /// Installed version (as the package manager shows it).
    pub installed_version: String,
    /// Fixed versions, ", "-joined like Trivy; empty when none.
    pub fixed_version: String,
    /// `fixed` exactly when a fixed version is known, `affected` otherwise (Trivy's rule).
    pub status: Status,
    /// The severity used by the policy.
    pub severity: Severity,
    /// The vendor whose rating that is; `None` when Trivy would name none either (a rating
    /// borrowed from another vendor).
    pub severity_source: Option<String>,
    /// Every vendor's rating (Trivy's `VendorSeverity`).
    pub vendor_severity: BTreeMap<String, Severity>,
    /// Summary.
    pub title: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Links, sorted.
    pub references: Vec<String>,
    /// Every vendor's CVSS (Trivy's `CVSS`).
    pub cvss: BTreeMap<String, Cvss>,
    /// Whose data matched, as Trivy names it.
    pub data_source: DataSource,
    /// Published date.
    pub published: Option<String>,
    /// Last modified.
    pub modified: Option<String>,
    /// The package's purl.
    pub purl: String,
    /// The file the package was found in.
    pub path: String,
    /// The layer that introduced the package.
    pub layer: Option<LayerRef>,
    /// Package type.
    pub pkg_type: PkgType,
}

impl Finding {
    /// The URL reports link to first, by Trivy's rule (`getPrimaryURL`): a page per id kind,
    /// else the first reference on the vendor's own site, else none.
    pub fn primary_url(&self) -> String {
        let id = &self.id;
        match id.split('-').next() {
            Some("CVE") => format!("https://avd.aquasec.com/nvd/{}", id.to_ascii_lowercase()),
            Some("RUSTSEC") => format!("https://osv.dev/vulnerability/{id}"),
            Some("GHSA") => format!("https://github.com/advisories/{id}"),
            Some("TEMP") => format!("https://security-tracker.debian.org/tracker/{id}"),
            _ => {
                let sites: &[&str] = match self.data_source.id.as_str() {
                    "debian" => &["http://www.debian.org", "https://www.debian.org"],
                    "ubuntu" => &["http://www.ubuntu.com", "https://usn.ubuntu.com"],
                    "redhat-oval" => &["https://access.redhat.com"],
                    "suse-cvrf" => &["http://lists.opensuse.org", "https://lists.opensuse.org"],
                    _ => &[],
                };
                sites
                    .iter()
                    .find_map(|site| self.references.iter().find(|r| r.starts_with(site)))
                    .cloned()
                    .unwrap_or_default()
            }
        }
    }

    /// A page about the finding for reports that need one: the primary URL, else OSV's.
    pub fn link(&self) -> String {
        let primary = self.primary_url();
        if primary.is_empty() {
            format!("https://osv.dev/vulnerability/{}", self.id)
        } else {
            primary
        }
    }

    fn ids(&self) -> Vec<&str> {
        std::iter::once(self.id.as_str())
            .chain(self.aliases.iter().map(String::as_str))
            .collect()
    }
}

/// Why a finding is not reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Suppression {
    /// Below the reported severities.
    Severity,
    /// No fix and `ignore_unfixed` is set.
    Unfixed,
    /// Its status is ignored.
    Status,
    /// An ignore rule.
    Ignored {
        /// The file.
        source: String,
        /// The statement, if any.
        statement: Option<String>,
    },
    /// A VEX statement says the package is not affected, or fixed.
    Vex {
        /// The document, as Trivy names it (the `--vex` path; `CycloneDX VEX`).
        source: String,
        /// The statement's status (`not_affected`, `fixed`).
        status: VexStatus,
        /// Its justification (Trivy's `Statement`).
        justification: Option<String>,
        /// Its free-text impact statement.
        impact_statement: Option<String>,
    },
    /// The Rego ignore policy's `data.trivy.ignore` is true for it.
    IgnorePolicy {
        /// The policy file.
        source: String,
    },
}

/// A finding left out of the report, with the reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suppressed {
    /// The finding.
    pub finding: Finding,
    /// Why.
    pub reason: Suppression,
}

/// The result of a scan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The artifact.
    pub artifact: Artifact,
    /// Its OS.
    pub os: Option<Os>,
    /// Every package found.
    pub packages: Vec<Package>,
    /// Reported findings, most severe first.
    pub findings: Vec<Finding>,
    /// Findings the policy left out.
    pub suppressed: Vec<Suppressed>,
    /// Problems that did not stop the scan.
    pub warnings: Vec<String>,
    /// Findings the ignore policy could not be evaluated for (they stay reported); Trivy stops
    /// the scan on the first.
    pub suppression_errors: Vec<String>,
    /// The severities the policy reports.
    pub severities: Vec<Severity>,
    /// True when the policy blocks the job.
    pub blocked: bool,
}

fn same_vuln(a: &Vuln, b: &Finding) -> bool {
    b.ids().iter().any(|id| a.is_named(id))
}

/// The finding `m` makes of package `pi` under the id `reported`.
fn finding(m: &Match<'_>, reported: &str, pi: usize, pkg: &Package, purl: &str) -> Finding {
    let mut aliases: Vec<String> = std::iter::once(&m.vuln.id)
        .chain(&m.vuln.aliases)
        .filter(|a| *a != reported)
        .cloned()
        .collect();
    aliases.dedup();
    let (severity, severity_source) = m.severity(reported);
    let mut vendor_severity = m.vuln.ratings.severity.clone();
    // A distribution's rating of the package itself shows as that vendor's, as in Trivy.
    if let (Some(rating), Some(source)) = (m.package_rating, &severity_source) {
        vendor_severity.insert(source.clone(), rating);
    }
    let fixed_version = m.fixed.join(", ");
    Finding {
        id: reported.to_owned(),
        aliases,
        package: pi,
        pkg_name: pkg.name.clone(),
        installed_version: pkg.version.clone(),
        status: if fixed_version.is_empty() {
            Status::Affected
        } else {
            Status::Fixed
        },
        fixed_version,
        severity,
        severity_source,
        vendor_severity,
        title: m.vuln.summary.clone(),
        description: m.vuln.details.clone(),
        references: m.vuln.references.clone(),
        cvss: m.vuln.ratings.cvss.clone(),
        data_source: data_source(m.data_source_id(), m.ecosystem),
        published: m.vuln.published.clone(),
        modified: m.vuln.modified.clone(),
        purl: purl.to_owned(),
        path: pkg.path.clone(),
        layer: pkg.layer.clone(),
        pkg_type: pkg.kind,
    }
}

impl Report {
    /// Matches every package of `inv` against `index` and applies `policy`.
    pub fn generate(inv: &Inventory, index: &AdvisoryIndex, policy: &Policy) -> Self {
        let os = inv.os.as_ref();
        let mut all: Vec<Finding> = Vec::new();
        let mut warnings = Vec::new();
        if inv.os.is_none() && inv.packages.iter().any(|p| p.kind.is_os()) {
            warnings.push(
                "OS packages found but the OS was not detected; OS packages were not matched"
                    .to_owned(),
            );
        }
        for (pi, pkg) in inv.packages.iter().enumerate() {
            // The OS's advisories do not describe packages from outside it; matching them by name
            // would report fixes that do not apply (Trivy 0.74 skips them too).
            if pkg.kind.is_os() && pkg.third_party {
                continue;
            }
            let (mut matches, w) = index.matches(pkg, os);
            warnings.extend(w);
            // Where GitHub and another database (PyPA, RustSec) describe the same
            // vulnerability, GitHub's record speaks for it, as it is Trivy's source.
            matches.sort_by_key(|m| m.vuln.vendor() != "ghsa");
            let purl = pkg.purl(os);
            let mut mine: Vec<Finding> = Vec::new();
            for m in &matches {
                for reported in m.vuln.reported_ids() {
                    // The same vulnerability under two records (GHSA and PYSEC, say) is one
                    // finding.
                    if mine
                        .iter()
                        .any(|f| f.id == reported || same_vuln(m.vuln, f))
                    {
                        continue;
                    }
                    mine.push(finding(m, reported, pi, pkg, &purl));
                }
            }
            all.extend(mine);
        }
        let severities: BTreeSet<Severity> = policy.severities.iter().copied().collect();
        // `--ignore-unfixed` is shorthand for ignoring every status but `fixed`; Trivy drops it
        // when statuses are given explicitly, and says so.
        let ignore_unfixed = policy.ignore_unfixed && policy.ignore_statuses.is_empty();
        if policy.ignore_unfixed && !ignore_unfixed {
            warnings.push(
                "ignore-unfixed is not applied because ignore-status is given (as in Trivy); add the unfixed statuses to ignore-status instead"
                    .to_owned(),
            );
        }
        let mut findings = Vec::new();
        let mut suppressed = Vec::new();
        let mut suppression_errors = Vec::new();
        let mut rego = policy.ignore_policy.as_ref().map(IgnorePolicy::evaluator);
        // Trivy v0.74.0's order (pkg/result/filter.go): per result, severity, status and the
        // ignore file (`filterVulnerabilities`), then the Rego ignore policy (`applyPolicy`, at the
        // end of `FilterResult`); VEX last, over the whole report (`vex.Filter`, after every
        // `FilterResult`). So VEX sees only what the ignore file and the policy left.
        for f in all {
            let reason = if !severities.contains(&f.severity) {
                Some(Suppression::Severity)
            } else if ignore_unfixed && f.status != Status::Fixed {
                Some(Suppression::Unfixed)
            } else if policy.ignore_statuses.contains(&f.status) {
                Some(Suppression::Status)
            } else {
                policy
                    .ignore
                    .find(&f.ids(), &f.path, &f.purl, policy.today)
                    .map(|r| Suppression::Ignored {
                        source: r.source.clone(),
                        statement: r.statement.clone(),
                    })
            };
            let reason = reason.or_else(|| {
                let evaluator = rego.as_mut()?;
                match evaluator.ignores(&f) {
                    Ok(true) => Some(Suppression::IgnorePolicy {
                        source: evaluator.source().to_owned(),
                    }),
                    Ok(false) => None,
                    Err(e) => {
                        suppression_errors.push(e.to_string());
                        None
                    }
                }
            });
            let reason = reason.or_else(|| {
                let subject = Subject {
                    vuln_id: &f.id,
                    purl: &f.purl,
                    bom_ref: inv.packages.get(f.package)?.bom_ref.as_deref(),
                    bom: inv.artifact.bom.as_ref(),
                };
                policy.vex.suppression(&subject).map(|h| Suppression::Vex {
                    source: h.source,
                    status: h.status,
                    justification: h.justification,
                    impact_statement: h.impact_statement,
                })
            });
            match reason {
                Some(reason) => suppressed.push(Suppressed { finding: f, reason }),
                None => findings.push(f),
            }
        }
        findings.sort_by(|a, b| {
            b.severity
                .cmp(&a.severity)
                .then_with(|| a.pkg_name.cmp(&b.pkg_name))
                .then_with(|| a.id.cmp(&b.id))
        });
        let blocked = policy.block && !findings.is_empty();
        Self {
            artifact: inv.artifact.clone(),
            os: inv.os.clone(),
            packages: inv.packages.clone(),
            findings,
            suppressed,
            warnings,
            suppression_errors,
            severities: severities.into_iter().collect(),
            blocked,
        }
    }

    /// Count of reported findings per severity, lowest first.
    pub fn counts(&self) -> [(Severity, usize); 5] {
        Severity::ALL.map(|s| (s, self.findings.iter().filter(|f| f.severity == s).count()))
    }

    /// The job-log message for a blocked job: says it was the security policy, lists the
    /// deciding findings and how to suppress one. `None` when the job is not blocked.
    pub fn policy_message(&self) -> Option<String> {
        if !self.blocked {
            return None;
        }
        let sev: Vec<&str> = self.severities.iter().map(|s| s.as_str()).collect();
        let mut m = format!(
            "berth: the job was blocked by the image security policy, not by your script: {} finding(s) in {} at severity {}.\n",
            self.findings.len(),
            self.artifact.name,
            sev.join(",")
        );
        const SHOWN: usize = 20;
        for f in self.findings.iter().take(SHOWN) {
            let fix = if f.fixed_version.is_empty() {
                "no fix yet".to_owned()
            } else {
                format!("fixed in {}", f.fixed_version)
            };
            m.push_str(&format!(
                "  {:<8} {:<20} {} {} ({fix}) [{}]\n",
                f.severity.as_str(),
                f.id,
                f.pkg_name,
                f.installed_version,
                f.path
            ));
        }
        if self.findings.len() > SHOWN {
            m.push_str(&format!(
                "  … and {} more (see gl-container-scanning-report.json)\n",
                self.findings.len() - SHOWN
            ));
        }
        let example = self
            .findings
            .first()
            .map_or("CVE-XXXX-YYYY", |f| f.id.as_str());
        m.push_str(&format!(
            "To suppress a finding, add its id to .trivyignore in the project root (e.g. `{example} exp:2099-12-31`), \
             or to .trivyignore.yaml with a statement (vulnerabilities: - id: {example}, statement: \"why\"); \
             upgrading the package to the fixed version removes it.\n"
        ));
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;
    use crate::advisory::OsvRecord;
    use crate::inventory::{OsFamily, Package};
    use crate::policy::IgnoreList;

    fn rec(json: &str) -> OsvRecord {
        OsvRecord::from_json(json.as_bytes()).unwrap()
    }

    fn fixture() -> (Inventory, AdvisoryIndex) {
        let libc = Package::new(
            PkgType::Deb,
            "libc6",
            "2.36-9+deb12u14",
            "var/lib/dpkg/status",
        )
        .with_source("glibc");
        let jinja = Package::new(
            PkgType::PythonPkg,
            "Jinja2",
            "2.11.2",
            "venv/lib/python3.11/site-packages/Jinja2-2.11.2.dist-info/METADATA",
        );
        let inv = Inventory {
            artifact: Artifact {
                name: "registry/x/app:sha".into(),
                ..Artifact::default()
            },
            os: Some(Os {
                family: OsFamily::Debian,
                version: "12.15".into(),
            }),
            packages: vec![libc, jinja],
        };
        let recs = [
            rec(
                r#"{"id":"DEBIAN-CVE-2099-0001","modified":"2026-01-01T00:00:00Z","upstream":["CVE-2099-0001"],
                "affected":[{"package":{"ecosystem":"Debian:12","name":"glibc"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.36-9+deb12u15"}]}]}]}"#,
            ),
            rec(
                r#"{"id":"GHSA-fake-0001","modified":"2026-01-01T00:00:00Z","aliases":["CVE-2099-0002"],
                "database_specific":{"severity":"MODERATE"},
                "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "affected":[{"package":{"ecosystem":"PyPI","name":"jinja2"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.11.3"}]}]}]}"#,
            ),
            rec(
                r#"{"id":"PYSEC-2099-1","modified":"2026-01-01T00:00:00Z","aliases":["CVE-2099-0002"],
                "affected":[{"package":{"ecosystem":"PyPI","name":"Jinja2"},
                "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"2.11.3"}]}]}]}"#,
            ),
            rec(r#"{"id":"CVE-2099-0003","modified":"2026-01-01T00:00:00Z",
                "severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"}],
                "affected":[{"package":{"ecosystem":"PyPI","name":"jinja2"},"versions":["2.11.2"]}]}"#),
        ];
        (inv, AdvisoryIndex::from_records(&recs))
    }

    #[test]
    fn generate_matches_and_dedups() {
        let (inv, idx) = fixture();
        let r = Report::generate(&inv, &idx, &Policy::report_all(date!(2026 - 11 - 23)));
        let ids: Vec<(&str, &str)> = r
            .findings
            .iter()
            .map(|f| (f.id.as_str(), f.pkg_name.as_str()))
            .collect();
        assert_eq!(ids.len(), 3, "{ids:?}");
        assert!(ids.contains(&("CVE-2099-0001", "libc6")));
        assert!(ids.contains(&("CVE-2099-0003", "Jinja2")));
        let ghsa = r
            .findings
            .iter()
            .find(|f| f.id == "CVE-2099-0002")
            .expect("a GHSA with a CVE alias is reported under the CVE, as trivy-db does");
        assert!(ghsa.aliases.contains(&"GHSA-fake-0001".to_owned()));
        assert_eq!(
            ghsa.severity,
            Severity::Medium,
            "GHSA's own rating beats CVSS"
        );
        assert_eq!(ghsa.severity_source.as_deref(), Some("ghsa"));
        let c = r.findings.iter().find(|f| f.id == "CVE-2099-0003").unwrap();
        assert_eq!(c.severity, Severity::Critical);
        assert_eq!(c.status, Status::Affected);
        let deb = r.findings.iter().find(|f| f.id == "CVE-2099-0001").unwrap();
        assert_eq!(deb.fixed_version, "2.36-9+deb12u15");
        assert_eq!(deb.aliases, vec!["DEBIAN-CVE-2099-0001".to_owned()]);
        assert!(!r.blocked);
    }

    #[test]
    fn policy_filters_and_blocks() {
        let (inv, idx) = fixture();
        let today = date!(2026 - 11 - 23);
        let mut p = Policy::block_at(Severity::High, today);
        let r = Report::generate(&inv, &idx, &p);
        assert_eq!(r.findings.len(), 1);
        assert!(r.blocked);
        let msg = r.policy_message().unwrap();
        assert!(
            msg.contains("security policy")
                && msg.contains("CVE-2099-0003")
                && msg.contains(".trivyignore"),
            "{msg}"
        );
        p.ignore_unfixed = true;
        let r = Report::generate(&inv, &idx, &p);
        assert!(r.findings.is_empty() && !r.blocked && r.policy_message().is_none());
        assert!(
            r.suppressed
                .iter()
                .any(|s| s.reason == Suppression::Unfixed)
        );
        p.ignore_unfixed = false;
        p.ignore =
            IgnoreList::parse_plain("CVE-2099-0003 exp:2027-01-01\n", ".trivyignore").unwrap();
        assert!(!Report::generate(&inv, &idx, &p).blocked);
        p.ignore =
            IgnoreList::parse_plain("CVE-2099-0003 exp:2026-01-01\n", ".trivyignore").unwrap();
        assert!(
            Report::generate(&inv, &idx, &p).blocked,
            "expired rule no longer applies"
        );
        p.ignore = IgnoreList::default();
        p.ignore_statuses = vec![Status::Affected];
        assert!(!Report::generate(&inv, &idx, &p).blocked);
    }

    #[test]
    fn ignore_status_overrides_ignore_unfixed_as_in_trivy() {
        let (inv, idx) = fixture();
        let mut p = Policy::report_all(date!(2026 - 11 - 23));
        p.ignore_unfixed = true;
        p.ignore_statuses = vec![Status::WillNotFix];
        let r = Report::generate(&inv, &idx, &p);
        assert!(
            r.findings.iter().any(|f| f.status == Status::Affected),
            "an unfixed finding stays when ignore-status is given"
        );
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("ignore-unfixed is not applied")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn primary_urls_follow_trivys_rules() {
        let (inv, idx) = fixture();
        let r = Report::generate(&inv, &idx, &Policy::report_all(date!(2026 - 11 - 23)));
        let mut f = r.findings[0].clone();
        let mut url = |id: &str, source: &str, refs: &[&str]| {
            f.id = id.to_owned();
            f.data_source.id = source.to_owned();
            f.references = refs.iter().map(|r| (*r).to_owned()).collect();
            f.primary_url()
        };
        assert_eq!(
            url("CVE-2099-1", "debian", &[]),
            "https://avd.aquasec.com/nvd/cve-2099-1"
        );
        assert_eq!(
            url("RUSTSEC-2099-1", "osv", &[]),
            "https://osv.dev/vulnerability/RUSTSEC-2099-1"
        );
        assert_eq!(
            url("TEMP-0001-1", "debian", &[]),
            "https://security-tracker.debian.org/tracker/TEMP-0001-1"
        );
        assert_eq!(
            url(
                "DSA-1-1",
                "debian",
                &[
                    "https://example.com/x",
                    "https://www.debian.org/security/dsa-1"
                ]
            ),
            "https://www.debian.org/security/dsa-1",
            "the first reference on the vendor's own site"
        );
        assert_eq!(
            url("PYSEC-2099-1", "osv", &["https://example.com/x"]),
            "",
            "else none"
        );
        assert_eq!(f.link(), "https://osv.dev/vulnerability/PYSEC-2099-1");
    }
}
