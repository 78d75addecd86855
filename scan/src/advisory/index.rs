//! The compact in-memory advisory index and the matcher that evaluates OSV ranges.
//!
//! Records are reduced on import to what matching and reports need: per ecosystem, a table of
//! vulnerabilities and, per package name, the affected entries (ranges and explicit versions).

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::osv::{OsvAffected, OsvRecord};
use super::vendor::{Ratings, data_source_id, decide, record_ratings, record_vendor};
use crate::inventory::{Os, Package};
use crate::severity::Severity;
use crate::version::Scheme;
use crate::version::pep440::normalize_name;

/// Longest description kept per vulnerability, to keep the index compact.
const MAX_DETAILS: usize = 4096;
/// Most references kept per vulnerability.
const MAX_REFERENCES: usize = 12;

/// A range event in the compact index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Affected from this version on ("0" = from the beginning).
    Introduced(String),
    /// Fixed in this version.
    Fixed(String),
    /// Last affected version.
    LastAffected(String),
    /// Versions at or above this are out of the range.
    Limit(String),
}

impl Event {
    fn version(&self) -> &str {
        match self {
            Self::Introduced(v) | Self::Fixed(v) | Self::LastAffected(v) | Self::Limit(v) => v,
        }
    }
}

/// One vulnerability, reduced for reporting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vuln {
    /// OSV id.
    pub id: String,
    /// Other ids (CVE first when there is one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    /// Summary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// Description, cut at 4 KiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// Every vendor's ratings of the vulnerability, gathered over all records of it.
    #[serde(default)]
    pub ratings: Ratings,
    /// Reference URLs, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// Published (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<String>,
    /// Modified (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified: Option<String>,
}

impl Vuln {
    /// The ids findings are reported under, as trivy-db groups a record's ids: each CVE the
    /// record names (a distribution's record of a CVE, a GHSA with CVE aliases), else its own.
    pub fn reported_ids(&self) -> Vec<&str> {
        let cves: Vec<&str> = std::iter::once(&self.id)
            .chain(&self.aliases)
            .map(String::as_str)
            .filter(|a| a.starts_with("CVE-"))
            .collect();
        if cves.is_empty() {
            vec![&self.id]
        } else {
            cves
        }
    }

    /// The vendor the record stands for (`debian`, `ghsa`, `osv`, …), by its id.
    pub fn vendor(&self) -> &'static str {
        record_vendor(&self.id)
    }

    /// True when `id` names this vulnerability (its id or an alias).
    pub fn is_named(&self, id: &str) -> bool {
        self.id == id || self.aliases.iter().any(|a| a == id)
    }
}

/// One affected entry of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Key into the ecosystem's vulnerability table.
    pub vuln: String,
    /// ECOSYSTEM/SEMVER ranges (GIT ranges are dropped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Vec<Event>>,
    /// Explicitly affected versions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// The distribution's rating of this package alone (Debian's urgency).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

/// All advisories of one ecosystem.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EcosystemData {
    /// id → vulnerability.
    pub vulns: BTreeMap<String, Vuln>,
    /// package name → entries.
    pub packages: BTreeMap<String, Vec<Entry>>,
}

/// An in-memory advisory index over any number of ecosystems.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AdvisoryIndex {
    /// ecosystem (with suffix, e.g. `Debian:12`) → data.
    pub ecosystems: BTreeMap<String, EcosystemData>,
}

/// One advisory that applies to a package.
#[derive(Debug, Clone, PartialEq)]
pub struct Match<'a> {
    /// The vulnerability.
    pub vuln: &'a Vuln,
    /// The ecosystem it came from.
    pub ecosystem: &'a str,
    /// Every fixed version the advisory gives for the package, in the record's order.
    pub fixed: Vec<String>,
    /// The distribution's rating of this package alone, which outranks every other.
    pub package_rating: Option<Severity>,
}

impl Match<'_> {
    /// The vendor whose data matched (`debian` for a Debian package, the record's otherwise).
    pub fn data_source_id(&self) -> &'static str {
        data_source_id(self.ecosystem, &self.vuln.id)
    }

    /// The severity of the finding reported as `reported_id`, and the vendor named for it.
    pub fn severity(&self, reported_id: &str) -> (Severity, Option<String>) {
        decide(
            self.package_rating,
            self.data_source_id(),
            reported_id,
            &self.vuln.ratings,
        )
    }
}

/// Normalises a package name the way the ecosystem's advisories spell it.
pub fn normalize_package_name(ecosystem: &str, name: &str) -> String {
    if ecosystem == "PyPI" {
        normalize_name(name)
    } else {
        name.to_owned()
    }
}

/// Debian's urgency of a package (`ecosystem_specific.urgency`), the one per-package rating
/// Trivy reports over the vulnerability's own (its Debian detector alone sets one).
fn package_severity(a: &OsvAffected, ecosystem: &str) -> Option<Severity> {
    if !ecosystem.starts_with("Debian") {
        return None;
    }
    a.ecosystem_specific
        .as_ref()
        .and_then(|v| v.get("urgency"))
        .and_then(serde_json::Value::as_str)
        .and_then(Severity::from_debian_urgency)
}

fn reduce(rec: &OsvRecord) -> Vuln {
    let mut aliases: Vec<String> = rec
        .aliases
        .iter()
        .chain(&rec.upstream)
        .filter(|a| **a != rec.id)
        .cloned()
        .collect();
    aliases.sort_by_key(|a| (!a.starts_with("CVE-"), a.clone()));
    aliases.dedup();
    // Sorted and each once, as trivy-db keeps them.
    let mut refs: Vec<&str> = rec.references.iter().map(|r| r.url.trim()).collect();
    refs.sort_unstable();
    refs.dedup();
    let details = rec.details.as_ref().map(|d| {
        if d.len() <= MAX_DETAILS {
            d.clone()
        } else {
            let mut cut = MAX_DETAILS;
            while !d.is_char_boundary(cut) {
                cut -= 1;
            }
            format!("{}…", &d[..cut])
        }
    });
    Vuln {
        id: rec.id.clone(),
        aliases,
        summary: rec.summary.clone(),
        details,
        ratings: record_ratings(rec),
        references: refs
            .into_iter()
            .take(MAX_REFERENCES)
            .map(str::to_owned)
            .collect(),
        published: rec.published.clone(),
        modified: rec.modified.clone(),
    }
}

impl AdvisoryIndex {
    /// Adds one OSV record. Withdrawn records and GIT-only entries are skipped.
    pub fn insert(&mut self, rec: &OsvRecord) {
        if rec.withdrawn.is_some() {
            return;
        }
        let vuln = reduce(rec);
        for a in &rec.affected {
            let Some(pkg) = &a.package else { continue };
            let ranges: Vec<Vec<Event>> = a
                .ranges
                .iter()
                .filter(|r| r.kind == "ECOSYSTEM" || r.kind == "SEMVER")
                .map(|r| {
                    r.events
                        .iter()
                        .filter_map(|e| {
                            e.introduced
                                .clone()
                                .map(Event::Introduced)
                                .or_else(|| e.fixed.clone().map(Event::Fixed))
                                .or_else(|| e.last_affected.clone().map(Event::LastAffected))
                                .or_else(|| e.limit.clone().map(Event::Limit))
                        })
                        .collect()
                })
                .collect();
            if ranges.is_empty() && a.versions.is_empty() {
                continue;
            }
            let eco = self.ecosystems.entry(pkg.ecosystem.clone()).or_default();
            eco.vulns
                .entry(vuln.id.clone())
                .or_insert_with(|| vuln.clone());
            let entries = eco
                .packages
                .entry(normalize_package_name(&pkg.ecosystem, &pkg.name))
                .or_default();
            let entry = Entry {
                vuln: vuln.id.clone(),
                ranges,
                versions: a.versions.clone(),
                severity: package_severity(a, &pkg.ecosystem),
            };
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
    }

    /// Builds an index from records.
    pub fn from_records<'a>(records: impl IntoIterator<Item = &'a OsvRecord>) -> Self {
        let mut idx = Self::default();
        for r in records {
            idx.insert(r);
        }
        idx.share_ratings();
        idx
    }

    /// Gives every record of a vulnerability every vendor's ratings of it, as trivy-db keeps
    /// one entry per vulnerability id: a Debian finding of a CVE then sees GitHub's rating of
    /// it too. Run once all records are in.
    pub fn share_ratings(&mut self) {
        let mut by_id: BTreeMap<String, Ratings> = BTreeMap::new();
        for v in self.ecosystems.values().flat_map(|e| e.vulns.values()) {
            for id in v.reported_ids() {
                by_id.entry(id.to_owned()).or_default().absorb(&v.ratings);
            }
        }
        for v in self
            .ecosystems
            .values_mut()
            .flat_map(|e| e.vulns.values_mut())
        {
            let ids: Vec<String> = v.reported_ids().into_iter().map(str::to_owned).collect();
            for id in ids {
                if let Some(r) = by_id.get(&id) {
                    v.ratings.absorb(r);
                }
            }
        }
    }

    /// Number of vulnerabilities over all ecosystems.
    pub fn vuln_count(&self) -> usize {
        self.ecosystems.values().map(|e| e.vulns.len()).sum()
    }

    fn ecosystems_for<'a, 'w>(
        &'a self,
        wanted: &'w [String],
    ) -> impl Iterator<Item = (&'a String, &'a EcosystemData)> + use<'a, 'w> {
        self.ecosystems.iter().filter(move |(k, _)| {
            wanted
                .iter()
                .any(|w| crate::inventory::ecosystem_matches(w, k))
        })
    }

    /// Finds the advisories that apply to `pkg`. Versions that cannot be compared are reported
    /// in the second value and never count as a match.
    pub fn matches<'a>(&'a self, pkg: &Package, os: Option<&Os>) -> (Vec<Match<'a>>, Vec<String>) {
        let scheme = pkg.scheme();
        let wanted = pkg.ecosystems(os);
        let installed = pkg.advisory_version();
        let mut out: Vec<Match<'a>> = Vec::new();
        let mut warnings = Vec::new();
        for (eco_name, eco) in self.ecosystems_for(&wanted) {
            let name = normalize_package_name(eco_name, &pkg.advisory_name());
            let mut names = vec![name];
            // rpm advisories may name either the binary or the source package.
            if let Some(src) = pkg
                .src_name
                .as_ref()
                .filter(|_| pkg.kind == crate::inventory::PkgType::Rpm)
            {
                names.push(src.clone());
            }
            for name in &names {
                let Some(entries) = eco.packages.get(name) else {
                    continue;
                };
                for e in entries {
                    let Some(vuln) = eco.vulns.get(&e.vuln) else {
                        continue;
                    };
                    if out.iter().any(|m| m.vuln.id == vuln.id) {
                        continue;
                    }
                    match entry_affects(scheme, installed, e) {
                        Ok(Some(fixed)) => out.push(Match {
                            vuln,
                            ecosystem: eco_name,
                            fixed,
                            package_rating: e.severity,
                        }),
                        Ok(None) => {}
                        Err(err) => warnings.push(format!("{} {}: {err}", vuln.id, pkg.name)),
                    }
                }
            }
        }
        (out, warnings)
    }
}

/// `Some(fixed versions)` when the installed version is affected by the entry.
fn entry_affects(
    scheme: Scheme,
    installed: &str,
    e: &Entry,
) -> Result<Option<Vec<String>>, crate::version::VersionError> {
    let mut hit = e.versions.iter().any(|v| v == installed);
    let mut fixed = Vec::new();
    for r in &e.ranges {
        if range_affects(scheme, installed, r)? {
            hit = true;
        }
    }
    if !hit {
        return Ok(None);
    }
    // Every fixed version of the entry in the record's order, as Trivy lists them (`0.2.4,
    // 1.2.6`): which one fits is the reader's choice (a major upgrade or a backport).
    for r in &e.ranges {
        for ev in r {
            if let Event::Fixed(f) = ev
                && !fixed.contains(f)
            {
                fixed.push(f.clone());
            }
        }
    }
    Ok(Some(fixed))
}

/// OSV's range evaluation: walk the events in version order; `introduced` switches affected
/// on, `fixed`/`last_affected` switch it off, `limit` ends the range.
pub fn range_affects(
    scheme: Scheme,
    installed: &str,
    events: &[Event],
) -> Result<bool, crate::version::VersionError> {
    // Fail on an uncomparable installed version rather than guessing.
    scheme.compare(installed, installed)?;
    let key = |e: &Event| e.version() == "0" && matches!(e, Event::Introduced(_));
    let mut sorted: Vec<&Event> = events
        .iter()
        .filter(|e| {
            key(e) || e.version() == "*" || scheme.compare(e.version(), e.version()).is_ok()
        })
        .collect();
    sorted.sort_by(|a, b| match (key(a), key(b)) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        _ => match (a.version() == "*", b.version() == "*") {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => scheme
                .compare(a.version(), b.version())
                .unwrap_or(Ordering::Equal),
        },
    });
    let mut affected = false;
    for e in sorted {
        let cmp = || {
            scheme
                .compare(installed, e.version())
                .unwrap_or(Ordering::Less)
        };
        match e {
            Event::Introduced(v) => {
                if v == "0" || cmp() != Ordering::Less {
                    affected = true;
                }
            }
            Event::Fixed(_) => {
                if cmp() != Ordering::Less {
                    affected = false;
                }
            }
            Event::LastAffected(_) => {
                if cmp() == Ordering::Greater {
                    affected = false;
                }
            }
            Event::Limit(v) => {
                if v != "*" && cmp() != Ordering::Less {
                    return Ok(false);
                }
            }
        }
    }
    Ok(affected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> Vec<Event> {
        s.split_whitespace()
            .map(|t| {
                let (k, v) = t.split_once('=').unwrap();
                match k {
                    "i" => Event::Introduced(v.into()),
                    "f" => Event::Fixed(v.into()),
                    "l" => Event::LastAffected(v.into()),
                    _ => Event::Limit(v.into()),
                }
            })
            .collect()
    }

    /// The severity and its source for `pkg` (a Debian 12 or Ubuntu 22.04 dpkg package) under
    /// one record.
    fn rated(record: &str, ecosystem: &str) -> (Severity, Option<String>) {
        let rec = OsvRecord::from_json(record.as_bytes()).expect("record");
        let idx = AdvisoryIndex::from_records([&rec]);
        let mut pkg = Package::new(crate::inventory::PkgType::Deb, "p", "1.0-1", "x");
        pkg.src_name = Some("p".into());
        pkg.src_version = Some("1.0-1".into());
        let os = if ecosystem.starts_with("Debian") {
            Os {
                family: crate::inventory::OsFamily::Debian,
                version: "12.15".into(),
            }
        } else {
            Os {
                family: crate::inventory::OsFamily::Ubuntu,
                version: "22.04".into(),
            }
        };
        let (m, _) = idx.matches(&pkg, Some(&os));
        assert_eq!(m.len(), 1, "{record}");
        m[0].severity(m[0].vuln.reported_ids()[0])
    }

    fn record(ecosystem: &str, ecosystem_specific: &str, top: &str) -> String {
        let prefix = ecosystem
            .split(':')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        format!(
            r#"{{"id":"{prefix}-CVE-2099-1","upstream":["CVE-2099-1"],{top}"affected":[{{"package":{{"ecosystem":"{ecosystem}","name":"p"}},
            "ecosystem_specific":{ecosystem_specific},"ranges":[{{"type":"ECOSYSTEM","events":[{{"introduced":"0"}}]}}]}}]}}"#
        )
    }

    const NVD_HIGH: &str = r#""severity":[{"type":"CVSS_V3","score":"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"}],"#;

    #[test]
    fn debian_urgency_rates_the_package_and_unrated_words_fall_back_to_nvd() {
        assert_eq!(
            rated(
                &record("Debian:12", r#"{"urgency":"unimportant"}"#, NVD_HIGH),
                "Debian:12"
            ),
            (Severity::Low, Some("debian".into()))
        );
        assert_eq!(
            rated(
                &record("Debian:12", r#"{"urgency":"medium*"}"#, ""),
                "Debian:12"
            ),
            (Severity::Medium, Some("debian".into()))
        );
        // `not yet assigned` is no rating: NVD's CVSS decides, named as NVD.
        assert_eq!(
            rated(
                &record("Debian:12", r#"{"urgency":"not yet assigned"}"#, NVD_HIGH),
                "Debian:12"
            ),
            (Severity::High, Some("nvd".into()))
        );
    }

    #[test]
    fn ubuntu_priority_from_the_package_or_the_record() {
        assert_eq!(
            rated(
                &record(
                    "Ubuntu:22.04:LTS",
                    r#"{"ubuntu_priority":"negligible"}"#,
                    NVD_HIGH
                ),
                "Ubuntu:22.04:LTS"
            ),
            (Severity::Low, Some("ubuntu".into()))
        );
        let top = r#""severity":[{"type":"Ubuntu","score":"medium"}],"#;
        assert_eq!(
            rated(&record("Ubuntu:22.04:LTS", "{}", top), "Ubuntu:22.04:LTS"),
            (Severity::Medium, Some("ubuntu".into()))
        );
        let untriaged = r#""severity":[{"type":"Ubuntu","score":"untriaged"}],"#;
        assert_eq!(
            rated(
                &record("Ubuntu:22.04:LTS", "{}", untriaged),
                "Ubuntu:22.04:LTS"
            )
            .0,
            Severity::Unknown
        );
    }

    #[test]
    fn ranges() {
        let s = Scheme::Npm;
        assert!(range_affects(s, "1.2.0", &ev("i=0 f=1.2.1")).unwrap());
        assert!(!range_affects(s, "1.2.1", &ev("i=0 f=1.2.1")).unwrap());
        assert!(range_affects(s, "6.7.0", &ev("i=6.7.0 f=6.7.3")).unwrap());
        assert!(!range_affects(s, "6.6.9", &ev("i=6.7.0 f=6.7.3")).unwrap());
        // two spans, events given out of order
        let two = ev("f=1.2.6 i=1.0.0 f=0.2.4 i=0");
        assert!(range_affects(s, "0.1.0", &two).unwrap());
        assert!(!range_affects(s, "0.5.0", &two).unwrap());
        assert!(range_affects(s, "1.2.0", &two).unwrap());
        assert!(!range_affects(s, "1.2.6", &two).unwrap());
        assert!(range_affects(s, "2.0.0", &ev("i=1.0.0 l=2.0.0")).unwrap());
        assert!(!range_affects(s, "2.0.1", &ev("i=1.0.0 l=2.0.0")).unwrap());
        assert!(!range_affects(s, "3.0.0", &ev("i=0 l=* lim=2.0.0")).unwrap());
        assert!(
            range_affects(Scheme::Dpkg, "1:1.2.13.dfsg-1", &ev("i=0 f=1.2.13.dfsg-2"))
                .is_ok_and(|a| !a)
        );
        assert!(range_affects(Scheme::Pep440, "bogus!", &ev("i=0")).is_err());
    }
}
