//! The scan policy: which findings are reported, which block the job, and the ignore lists
//! (`.trivyignore` with `exp:` and `.trivyignore.yaml` with id, paths, purls, expired_at,
//! statement), with the VEX documents ([`crate::vex`]) and the Rego ignore policy
//! ([`crate::ignore_policy`]) in force. Parsing takes text; nothing here reads files or the clock.

use glob::{MatchOptions, Pattern};
use serde::Deserialize;
use time::Date;
use time::macros::format_description;

use crate::ignore_policy::IgnorePolicy;
use crate::severity::{Severity, Status};
use crate::vex::VexSet;

/// Errors in an ignore file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IgnoreError {
    /// A line of a plain ignore file is malformed.
    #[error("{source_name}:{line}: {reason}; write `ID` or `ID exp:YYYY-MM-DD`")]
    Plain {
        /// File name.
        source_name: String,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The YAML file does not parse.
    #[error(
        "{source_name}: {reason}; see Trivy's .trivyignore.yaml format (vulnerabilities: - id: …)"
    )]
    Yaml {
        /// File name.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}

/// One ignore rule.
#[derive(Debug, Clone, PartialEq)]
pub struct IgnoreRule {
    /// Vulnerability id (matches the id or an alias).
    pub id: String,
    /// Globs over the finding's package file path; empty = everywhere.
    pub paths: Vec<String>,
    /// purls; empty = any package.
    pub purls: Vec<String>,
    /// Last day (exclusive) the rule applies: it stops at 00:00 UTC of this date.
    pub expires: Option<Date>,
    /// Why it is ignored.
    pub statement: Option<String>,
    /// The file it came from.
    pub source: String,
}

/// A set of ignore rules.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct IgnoreList {
    /// The rules, in file order.
    pub rules: Vec<IgnoreRule>,
}

fn parse_date(s: &str) -> Option<Date> {
    let s = s.trim().trim_matches('"');
    // YAML dates may carry a time; only the day matters.
    let day = s.get(..10).unwrap_or(s);
    Date::parse(day, format_description!("[year]-[month]-[day]")).ok()
}

#[derive(Deserialize)]
struct YamlFile {
    #[serde(default)]
    vulnerabilities: Vec<YamlRule>,
    #[serde(default, rename = "misconfigurations")]
    _misconfigurations: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "secrets")]
    _secrets: Option<serde_yaml_ng::Value>,
    #[serde(default, rename = "licenses")]
    _licenses: Option<serde_yaml_ng::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlRule {
    id: String,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    purls: Vec<String>,
    #[serde(default)]
    expired_at: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    statement: Option<String>,
}

impl IgnoreList {
    /// Parses a plain `.trivyignore`: one id per line, `#` comments, optional `exp:YYYY-MM-DD`.
    pub fn parse_plain(text: &str, source_name: &str) -> Result<Self, IgnoreError> {
        let mut rules = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let id = fields.next().unwrap_or_default().to_owned();
            let mut expires = None;
            for f in fields {
                if f.starts_with('#') {
                    break;
                }
                match f.strip_prefix("exp:") {
                    Some(d) => {
                        expires = Some(parse_date(d).ok_or_else(|| IgnoreError::Plain {
                            source_name: source_name.to_owned(),
                            line: n + 1,
                            reason: format!("bad expiry date {d:?}"),
                        })?);
                    }
                    None => {
                        return Err(IgnoreError::Plain {
                            source_name: source_name.to_owned(),
                            line: n + 1,
                            reason: format!("unexpected {f:?} after the id"),
                        });
                    }
                }
            }
            rules.push(IgnoreRule {
                id,
                paths: vec![],
                purls: vec![],
                expires,
                statement: None,
                source: source_name.to_owned(),
            });
        }
        Ok(Self { rules })
    }

    /// Parses `.trivyignore.yaml`.
    pub fn parse_yaml(text: &str, source_name: &str) -> Result<Self, IgnoreError> {
        let err = |reason: String| IgnoreError::Yaml {
            source_name: source_name.to_owned(),
            reason,
        };
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let file: YamlFile = serde_yaml_ng::from_str(text).map_err(|e| err(e.to_string()))?;
        let mut rules = Vec::new();
        for r in file.vulnerabilities {
            let expires = match &r.expired_at {
                None | Some(serde_yaml_ng::Value::Null) => None,
                Some(serde_yaml_ng::Value::String(s)) => Some(parse_date(s).ok_or_else(|| {
                    err(format!("{}: bad expired_at {s:?}, use YYYY-MM-DD", r.id))
                })?),
                Some(other) => {
                    return Err(err(format!(
                        "{}: bad expired_at {other:?}, use YYYY-MM-DD",
                        r.id
                    )));
                }
            };
            for p in &r.paths {
                Pattern::new(p).map_err(|e| err(format!("{}: bad path glob {p:?}: {e}", r.id)))?;
            }
            rules.push(IgnoreRule {
                id: r.id,
                paths: r.paths,
                purls: r.purls,
                expires,
                statement: r.statement,
                source: source_name.to_owned(),
            });
        }
        Ok(Self { rules })
    }

    /// Parses by file name: `.yaml`/`.yml` as YAML, anything else as the plain format.
    pub fn parse(text: &str, source_name: &str) -> Result<Self, IgnoreError> {
        if source_name.ends_with(".yaml") || source_name.ends_with(".yml") {
            Self::parse_yaml(text, source_name)
        } else {
            Self::parse_plain(text, source_name)
        }
    }

    /// The first rule that suppresses a finding, if any.
    pub fn find(&self, ids: &[&str], path: &str, purl: &str, today: Date) -> Option<&IgnoreRule> {
        self.rules.iter().find(|r| {
            ids.contains(&r.id.as_str())
                && r.expires.is_none_or(|d| today < d)
                && (r.paths.is_empty() || r.paths.iter().any(|p| path_matches(p, path)))
                && (r.purls.is_empty() || r.purls.iter().any(|p| purl_matches(p, purl)))
        })
    }
}

fn path_matches(pattern: &str, path: &str) -> bool {
    let opts = MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let pattern = pattern.trim_start_matches('/');
    let path = path.trim_start_matches('/');
    Pattern::new(pattern).is_ok_and(|p| p.matches_with(path, opts))
}

/// Splits a purl into (type/namespace/name, version, qualifiers).
fn split_purl(p: &str) -> (&str, Option<&str>, Vec<&str>) {
    let p = p.split('#').next().unwrap_or(p);
    let (main, quals) = p.split_once('?').unwrap_or((p, ""));
    let (path, version) = match main.rsplit_once('@') {
        Some((a, v)) if !a.ends_with('/') => (a, Some(v)),
        _ => (main, None),
    };
    let mut q: Vec<&str> = quals.split('&').filter(|x| !x.is_empty()).collect();
    q.sort_unstable();
    (path, version, q)
}

/// A rule purl matches when type, namespace and name agree, its version (if any) agrees, and
/// its qualifiers (if any) are all present on the package.
fn purl_matches(rule: &str, pkg: &str) -> bool {
    let (rp, rv, rq) = split_purl(rule);
    let (pp, pv, pq) = split_purl(pkg);
    rp.eq_ignore_ascii_case(pp)
        && rv.is_none_or(|v| Some(v) == pv)
        && rq.iter().all(|q| pq.contains(q))
}

/// The policy a report is generated under.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Severities that are reported (and so can block); Trivy's `--severity`.
    pub severities: Vec<Severity>,
    /// The gate: whether any reported finding blocks the job (Trivy's `--exit-code` other
    /// than 0).
    pub block: bool,
    /// Drop findings that have no fixed version.
    pub ignore_unfixed: bool,
    /// Drop findings with these statuses.
    pub ignore_statuses: Vec<Status>,
    /// Ignore rules.
    pub ignore: IgnoreList,
    /// VEX documents in force.
    pub vex: VexSet,
    /// The Rego ignore policy, if any.
    pub ignore_policy: Option<IgnorePolicy>,
    /// Today (UTC), for expiry; the caller reads the clock.
    pub today: Date,
}

impl Policy {
    /// Reports everything and never blocks.
    pub fn report_all(today: Date) -> Self {
        Self {
            severities: Severity::ALL.to_vec(),
            block: false,
            ignore_unfixed: false,
            ignore_statuses: Vec::new(),
            ignore: IgnoreList::default(),
            vex: VexSet::default(),
            ignore_policy: None,
            today,
        }
    }

    /// Blocks on any finding at or above `threshold`.
    pub fn block_at(threshold: Severity, today: Date) -> Self {
        Self {
            severities: threshold.and_above(),
            block: true,
            ..Self::report_all(today)
        }
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn plain_ignore_file() {
        let text =
            "# comment\nCVE-2099-0001\n\nCVE-2099-0002 exp:2026-01-01\nGHSA-fake-0001 # trailing\n";
        let l = IgnoreList::parse_plain(text, ".trivyignore").unwrap();
        assert_eq!(l.rules.len(), 3);
        let today = date!(2025 - 12 - 31);
        assert!(
            l.find(&["CVE-2099-0002"], "x", "pkg:npm/a@1", today)
                .is_some()
        );
        assert!(
            l.find(
                &["CVE-2099-0002"],
                "x",
                "pkg:npm/a@1",
                date!(2026 - 01 - 01)
            )
            .is_none(),
            "expired on the day"
        );
        assert!(
            l.find(&["GHSA-fake-0001"], "x", "pkg:npm/a@1", today)
                .is_some()
        );
        let err = IgnoreList::parse_plain("CVE-1 exp:2026-13-01\n", "f").unwrap_err();
        assert!(err.to_string().contains("f:1"), "{err}");
        assert!(IgnoreList::parse_plain("CVE-1 junk\n", "f").is_err());
    }

    #[test]
    fn yaml_ignore_file() {
        let text = r#"
vulnerabilities:
  - id: CVE-2099-0010
    paths: ["app/rust/Cargo.lock"]
    statement: only the lockfile
  - id: CVE-2099-0011
    purls: ["pkg:cargo/smallvec"]
  - id: CVE-2099-0012
    expired_at: 2020-01-01
  - id: CVE-2099-0013
misconfigurations: []
"#;
        let l = IgnoreList::parse_yaml(text, ".trivyignore.yaml").unwrap();
        let today = date!(2026 - 11 - 23);
        let r = l
            .find(
                &["CVE-2099-0010"],
                "app/rust/Cargo.lock",
                "pkg:cargo/x@1",
                today,
            )
            .unwrap();
        assert_eq!(r.statement.as_deref(), Some("only the lockfile"));
        assert!(
            l.find(
                &["CVE-2099-0010"],
                "usr/local/bin/app",
                "pkg:cargo/x@1",
                today
            )
            .is_none()
        );
        assert!(
            l.find(&["CVE-2099-0011"], "a", "pkg:cargo/smallvec@1.6.0", today)
                .is_some()
        );
        assert!(
            l.find(&["CVE-2099-0011"], "a", "pkg:cargo/smallvec2@1.6.0", today)
                .is_none()
        );
        assert!(
            l.find(&["CVE-2099-0012"], "a", "pkg:cargo/x@1", today)
                .is_none()
        );
        assert!(
            l.find(&["CVE-2099-0013"], "anything", "pkg:deb/debian/x@1", today)
                .is_some()
        );
        assert!(
            IgnoreList::parse_yaml("vulnerabilities:\n  - id: X\n    pathz: []\n", "y.yaml")
                .is_err()
        );
    }

    #[test]
    fn purl_and_glob_matching() {
        assert!(purl_matches(
            "pkg:npm/lodash@4.17.15",
            "pkg:npm/lodash@4.17.15"
        ));
        assert!(!purl_matches(
            "pkg:npm/lodash@4.17.21",
            "pkg:npm/lodash@4.17.15"
        ));
        assert!(purl_matches(
            "pkg:deb/debian/libc6?arch=amd64",
            "pkg:deb/debian/libc6@2.36?arch=amd64&distro=debian-12"
        ));
        assert!(path_matches("app/**/Cargo.lock", "app/rust/Cargo.lock"));
        assert!(!path_matches("app/*", "app/rust/Cargo.lock"));
        assert!(path_matches("/usr/lib/*", "usr/lib/x"));
    }
}
