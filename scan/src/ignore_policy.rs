//! Trivy-compatible Rego ignore policies (`--ignore-policy FILE.rego`): package `trivy`, rule
//! `ignore`, Rego v0 syntax, evaluated with `regorus` per finding. The input is the finding as
//! Trivy marshals a `DetectedVulnerability`, plus `"Type": "vulnerability"` (Trivy v0.74.0's
//! `pkg/result/filter.go`, `applyPolicy` and `evaluate`); `data.lib.trivy` holds Trivy's helper
//! module. Parsing takes text and a name; nothing here reads files.

use serde_json::Value;

use crate::report::Finding;

/// The largest policy file read.
pub const MAX_POLICY_BYTES: u64 = 1 << 20;

/// Trivy's helper module (`pkg/result/module.go`, Apache-2.0), loaded next to every policy as
/// Trivy loads it, so `import data.lib.trivy` works the same.
const LIB_TRIVY: &str = r#"
package lib.trivy

parse_cvss_vector_v3(cvss) = vector {
	s := split(cvss, "/")
	vector := {
		"AttackVector": attack_vector[s[1]],
		"AttackComplexity": attack_complexity[s[2]],
		"PrivilegesRequired": privileges_required[s[3]],
		"UserInteraction": user_interaction[s[4]],
		"Scope": scope[s[5]],
		"Confidentiality": confidentiality[s[6]],
		"Integrity": integrity[s[7]],
		"Availability": availability[s[8]],
	}
}

attack_vector := {"AV:N": "Network", "AV:A": "Adjacent", "AV:L": "Local", "AV:P": "Physical"}
attack_complexity := {"AC:L": "Low", "AC:H": "High"}
privileges_required := {"PR:N": "None", "PR:L": "Low", "PR:H": "High"}
user_interaction := {"UI:N": "None", "UI:R": "Required"}
scope := {"S:U": "Unchanged", "S:C": "Changed"}
confidentiality := {"C:N": "None", "C:L": "Low", "C:H": "High"}
integrity := {"I:N": "None", "I:L": "Low", "I:H": "High"}
availability := {"A:N": "None", "A:L": "Low", "A:H": "High"}
"#;

/// The query Trivy evaluates.
const QUERY: &str = "data.trivy.ignore";

/// A policy that cannot be loaded or evaluated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The file does not parse (regorus names the line and column).
    #[error(
        "ignore policy {file}: {message}; write Rego v0 with `package trivy` and an `ignore` rule, as for `trivy --ignore-policy`"
    )]
    Load {
        /// The file.
        file: String,
        /// What is wrong, with the line.
        message: String,
    },
    /// Evaluating it for one finding failed, or gave something else than a boolean.
    #[error("ignore policy {file}: evaluating it for {finding}: {message}")]
    Eval {
        /// The file.
        file: String,
        /// `ID in package`.
        finding: String,
        /// What is wrong.
        message: String,
    },
}

/// A loaded ignore policy.
#[derive(Debug, Clone)]
pub struct IgnorePolicy {
    /// The file as Trivy names it (`filepath.Clean`, forward slashes): the `Source` of what it
    /// ignores.
    pub source: String,
    text: String,
    engine: regorus::Engine,
}

impl PartialEq for IgnorePolicy {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.text == other.text
    }
}

/// Go's `filepath.Clean` on a slash path: `.` and empty components dropped, `..` folded.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." if parts.last().is_some_and(|p| *p != "..") => {
                parts.pop();
            }
            ".." if rooted => {}
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

impl IgnorePolicy {
    /// Loads the policy `text` read from `file`: it must parse as Rego v0 (with Trivy's
    /// `data.lib.trivy` beside it).
    pub fn parse(text: &str, file: &str) -> Result<Self, PolicyError> {
        let source = clean(file);
        let load = |message: String| PolicyError::Load {
            file: source.clone(),
            message,
        };
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(true);
        engine
            .add_policy("lib.rego".to_owned(), LIB_TRIVY.to_owned())
            .map_err(|e| load(format!("berth's copy of Trivy's helper module: {e}")))?;
        engine
            .add_policy(source.clone(), text.to_owned())
            .map_err(|e| load(e.to_string()))?;
        // Compile now, so an error in a rule body is a load error, not one per finding.
        engine
            .set_input_json("{}")
            .map_err(|e| load(e.to_string()))?;
        engine
            .eval_query(QUERY.to_owned(), false)
            .map_err(|e| load(e.to_string()))?;
        Ok(Self {
            source,
            text: text.to_owned(),
            engine,
        })
    }

    /// The input Trivy gives the policy for `finding`: its `DetectedVulnerability` JSON with
    /// `"Type": "vulnerability"`. Every field of it is `omitempty` in Trivy, so an empty one is
    /// absent (a policy's `not input.FixedVersion` holds for a finding without a fix).
    pub fn input(finding: &Finding) -> Value {
        let mut v = crate::render::json::vuln(finding);
        v["Type"] = Value::from("vulnerability");
        v
    }

    /// A fresh evaluator (the engine keeps per-query state, so each report takes its own).
    pub fn evaluator(&self) -> Evaluator {
        Evaluator {
            source: self.source.clone(),
            engine: self.engine.clone(),
        }
    }
}

/// Evaluates one policy for many findings.
#[derive(Debug)]
pub struct Evaluator {
    source: String,
    engine: regorus::Engine,
}

impl Evaluator {
    /// The policy file, as Trivy names it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the policy ignores `finding`: `data.trivy.ignore` true; undefined is false;
    /// anything but a boolean is an error (Trivy: "the policy must return boolean").
    pub fn ignores(&mut self, finding: &Finding) -> Result<bool, PolicyError> {
        let fail = |message: String| PolicyError::Eval {
            file: self.source.clone(),
            finding: format!("{} in {}", finding.id, finding.pkg_name),
            message,
        };
        let input = IgnorePolicy::input(finding).to_string();
        self.engine
            .set_input_json(&input)
            .map_err(|e| fail(e.to_string()))?;
        let results = self
            .engine
            .eval_query(QUERY.to_owned(), false)
            .map_err(|e| fail(e.to_string()))?;
        let Some(first) = results.result.first() else {
            return Ok(false);
        };
        match first.expressions.first().map(|e| &e.value) {
            None | Some(regorus::Value::Undefined) => Ok(false),
            Some(regorus::Value::Bool(b)) => Ok(*b),
            Some(other) => Err(fail(format!(
                "the policy must return boolean, `ignore` was {other}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::PkgType;
    use crate::severity::{Severity, Status};

    fn finding(id: &str, pkg: &str, severity: Severity) -> Finding {
        Finding {
            id: id.into(),
            aliases: vec![],
            package: 0,
            pkg_name: pkg.into(),
            installed_version: "1.0.0".into(),
            fixed_version: String::new(),
            status: Status::Affected,
            severity,
            severity_source: None,
            vendor_severity: Default::default(),
            title: None,
            description: None,
            references: vec![],
            cvss: Default::default(),
            data_source: crate::advisory::vendor::data_source("ghsa", "npm"),
            published: None,
            modified: None,
            purl: format!("pkg:npm/{pkg}@1.0.0"),
            path: "app/package.json".into(),
            layer: None,
            pkg_type: PkgType::NodePkg,
        }
    }

    #[test]
    fn a_v0_policy_ignores_what_its_rule_says() {
        let text = r#"
package trivy

import data.lib.trivy

default ignore = false

ignore_pkgs := {"minimist", "lodash"}

ignore {
	input.PkgName == ignore_pkgs[_]
}

ignore {
	input.Severity == "LOW"
	input.Type == "vulnerability"
}
"#;
        let p = IgnorePolicy::parse(text, "./policies/../policies/ignore.rego").expect("loads");
        assert_eq!(p.source, "policies/ignore.rego");
        let mut e = p.evaluator();
        assert!(
            e.ignores(&finding("CVE-1", "minimist", Severity::High))
                .expect("eval")
        );
        assert!(
            e.ignores(&finding("CVE-2", "left-pad", Severity::Low))
                .expect("eval")
        );
        assert!(
            !e.ignores(&finding("CVE-3", "left-pad", Severity::High))
                .expect("eval")
        );
    }

    #[test]
    fn undefined_is_not_ignored_and_a_non_boolean_is_an_error() {
        let undefined = "package trivy\nignore { input.PkgName == \"nothing\" }\n";
        let mut e = IgnorePolicy::parse(undefined, "u.rego")
            .expect("loads")
            .evaluator();
        assert!(
            !e.ignores(&finding("CVE-1", "a", Severity::High))
                .expect("eval")
        );
        let no_rule = "package trivy\nallow = true\n";
        let mut e = IgnorePolicy::parse(no_rule, "n.rego")
            .expect("loads")
            .evaluator();
        assert!(
            !e.ignores(&finding("CVE-1", "a", Severity::High))
                .expect("eval")
        );
        let text = "package trivy\nignore = \"yes\"\n";
        let mut e = IgnorePolicy::parse(text, "s.rego")
            .expect("loads")
            .evaluator();
        let err = e
            .ignores(&finding("CVE-1", "a", Severity::High))
            .expect_err("string");
        let msg = err.to_string();
        assert!(
            msg.contains("s.rego")
                && msg.contains("must return boolean")
                && msg.contains("CVE-1 in a"),
            "{msg}"
        );
    }

    #[test]
    fn a_syntax_error_names_the_file_and_line() {
        let text = "package trivy\n\nignore {\n  input.PkgName ==\n}\n";
        let err = IgnorePolicy::parse(text, "bad.rego").expect_err("parsed");
        let msg = err.to_string();
        assert!(msg.contains("bad.rego:3:"), "no file and line in {msg}");
    }

    #[test]
    fn empty_fields_are_absent_from_the_input_as_in_trivys_json() {
        let input = IgnorePolicy::input(&finding("CVE-1", "a", Severity::High));
        assert_eq!(input["Type"], "vulnerability");
        assert_eq!(input["PkgIdentifier"]["PURL"], "pkg:npm/a@1.0.0");
        for absent in ["FixedVersion", "Title", "References", "VendorIDs", "Layer"] {
            assert!(input.get(absent).is_none(), "{absent} in {input}");
        }
        let text = "package trivy\nignore { not input.FixedVersion }\n";
        let mut e = IgnorePolicy::parse(text, "f.rego")
            .expect("loads")
            .evaluator();
        assert!(
            e.ignores(&finding("CVE-1", "a", Severity::High))
                .expect("eval")
        );
    }

    #[test]
    fn paths_are_cleaned_as_go_cleans_them() {
        assert_eq!(clean("./a/./b/../c.rego"), "a/c.rego");
        assert_eq!(clean("/x/../../y.rego"), "/y.rego");
        assert_eq!(clean("../p.rego"), "../p.rego");
    }
}
