//! `berth policy test DIR`: the policy directory's unit tests run as `opa test` runs them. A
//! test is a rule whose name starts with `test_` (`todo_test_` is skipped); it passes when it
//! evaluates to `true`, fails when it is false or undefined, and errs when evaluating it fails.
//! Results come as OPA's pretty text or as the JSON of `opa test --format json` (package, name,
//! location, fail, error, skip), and the exit code is OPA's: 0 when every test passes, 2 when one
//! fails or errs.

use std::time::Duration;

use serde::Serialize;

use crate::Policies;

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It evaluated to `true`.
    Pass,
    /// It evaluated to something else, or to nothing.
    Fail,
    /// Evaluating it failed.
    Error(String),
    /// A `todo_test_` rule.
    Skip,
}

/// One test and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    /// The package, `data.<package>`.
    pub package: String,
    /// The rule's name.
    pub name: String,
    /// The module that declares it.
    pub file: String,
    /// Its line.
    pub row: u32,
    /// Its column.
    pub col: u32,
    /// How it ended.
    pub outcome: Outcome,
    /// How long evaluating it took.
    pub duration: Duration,
}

/// A duration as Go's `time.Duration` prints it, as `opa test` shows it.
fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    let (value, unit) = match nanos {
        0..1_000 => return format!("{nanos}ns"),
        1_000..1_000_000 => (nanos as f64 / 1e3, "µs"),
        1_000_000..1_000_000_000 => (nanos as f64 / 1e6, "ms"),
        _ => (nanos as f64 / 1e9, "s"),
    };
    let text = format!("{value:.9}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}{unit}")
}

/// Every test of a policy directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TestReport {
    /// In the order the modules and rules are declared.
    pub results: Vec<TestResult>,
}

/// One result as `opa test --format json` writes it.
#[derive(Debug, Serialize)]
struct JsonResult<'a> {
    location: JsonLocation<'a>,
    package: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    fail: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<JsonError<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    skip: bool,
}

#[derive(Debug, Serialize)]
struct JsonLocation<'a> {
    file: &'a str,
    row: u32,
    col: u32,
}

#[derive(Debug, Serialize)]
struct JsonError<'a> {
    message: &'a str,
}

impl TestReport {
    /// OPA's exit code: 0 when nothing failed or erred, else 2.
    pub fn exit_code(&self) -> u8 {
        if self
            .results
            .iter()
            .any(|r| matches!(r.outcome, Outcome::Fail | Outcome::Error(_)))
        {
            2
        } else {
            0
        }
    }

    /// The report as `opa test` prints it: each failing, erring and skipped test (every test
    /// with `verbose`) under its file and line, then the counts; nothing at all without tests.
    pub fn pretty(&self, verbose: bool) -> String {
        let mut out = String::new();
        let shown: Vec<&TestResult> = self
            .results
            .iter()
            .filter(|r| verbose || r.outcome != Outcome::Pass)
            .collect();
        for r in &shown {
            out.push_str(&format!(
                "{}:{}:\n{}.{}: ",
                r.file, r.row, r.package, r.name
            ));
            match &r.outcome {
                Outcome::Pass => out.push_str(&format!("PASS ({})\n", go_duration(r.duration))),
                Outcome::Fail => out.push_str(&format!("FAIL ({})\n", go_duration(r.duration))),
                Outcome::Skip => out.push_str("SKIPPED\n"),
                Outcome::Error(message) => {
                    out.push_str(&format!("ERROR ({})\n", go_duration(r.duration)));
                    for line in message.lines() {
                        out.push_str(&format!("  {line}\n"));
                    }
                }
            }
        }
        if !shown.is_empty() {
            out.push_str(&"-".repeat(80));
            out.push('\n');
        }
        let total = self.results.len();
        let count = |f: fn(&Outcome) -> bool| self.results.iter().filter(|r| f(&r.outcome)).count();
        for (label, n) in [
            ("PASS", count(|o| *o == Outcome::Pass)),
            ("FAIL", count(|o| *o == Outcome::Fail)),
            ("SKIPPED", count(|o| *o == Outcome::Skip)),
            ("ERROR", count(|o| matches!(o, Outcome::Error(_)))),
        ] {
            if n > 0 {
                out.push_str(&format!("{label}: {n}/{total}\n"));
            }
        }
        out
    }

    /// The report as `opa test --format json` writes it (durations left out).
    pub fn json(&self) -> String {
        let results: Vec<JsonResult<'_>> = self
            .results
            .iter()
            .map(|r| JsonResult {
                location: JsonLocation {
                    file: &r.file,
                    row: r.row,
                    col: r.col,
                },
                package: &r.package,
                name: &r.name,
                fail: r.outcome == Outcome::Fail,
                error: match &r.outcome {
                    Outcome::Error(message) => Some(JsonError { message }),
                    _ => None,
                },
                skip: r.outcome == Outcome::Skip,
            })
            .collect();
        serde_json::to_string_pretty(&results).unwrap_or_else(|_| "[]".to_owned())
    }
}

/// A declared test rule.
struct Declared {
    package: String,
    name: String,
    file: String,
    row: u32,
    col: u32,
}

/// The test rules `policies` declare, each once, in declaration order.
fn declared(policies: &Policies) -> Vec<Declared> {
    use regorus::unstable::{Rule, RuleHead};
    let mut engine = policies.engine.clone();
    let mut out: Vec<Declared> = Vec::new();
    for module in engine.get_modules() {
        let Ok(package) = regorus::utils::get_path_string(&module.package.refr, Some("data"))
        else {
            continue;
        };
        for rule in &module.policy {
            let Rule::Spec {
                head: RuleHead::Compr { refr, .. },
                span,
                ..
            } = rule.as_ref()
            else {
                continue;
            };
            let Ok(name) = regorus::utils::get_path_string(refr, None) else {
                continue;
            };
            let is_test = name.starts_with("test_") || name.starts_with("todo_test_");
            if !is_test || out.iter().any(|d| d.package == package && d.name == name) {
                continue;
            }
            out.push(Declared {
                package: package.clone(),
                name,
                file: span.source.file().clone(),
                row: span.line,
                col: span.col,
            });
        }
    }
    out
}

/// Runs every test rule of `policies`.
pub fn run(policies: &Policies) -> TestReport {
    let results = declared(policies)
        .into_iter()
        .map(|d| {
            let started = std::time::Instant::now();
            let outcome = if d.name.starts_with("todo_test_") {
                Outcome::Skip
            } else {
                let mut engine = policies.engine.clone();
                match engine.eval_rule(format!("{}.{}", d.package, d.name)) {
                    Ok(regorus::Value::Bool(true)) => Outcome::Pass,
                    Ok(_) => Outcome::Fail,
                    Err(e) => Outcome::Error(e.to_string()),
                }
            };
            let duration = started.elapsed();
            TestResult {
                package: d.package,
                name: d.name,
                file: d.file,
                row: d.row,
                col: d.col,
                outcome,
                duration,
            }
        })
        .collect();
    let mut results: Vec<TestResult> = results;
    results.sort_by(|a, b| (&a.package, &a.name).cmp(&(&b.package, &b.name)));
    TestReport { results }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Module;

    const TESTS: &str = r#"
package berth.prepare_test

import data.berth.prepare

test_latest_on_protected_is_denied if {
    count(prepare.deny) == 1 with input as {"ref": {"protected": true}, "images": [{"name": "a:latest"}]}
}

test_this_one_fails if {
    count(prepare.deny) == 5 with input as {"ref": {"protected": true}, "images": [{"name": "a:latest"}]}
}

test_undefined_fails if {
    input.nothing
}

todo_test_later if {
    false
}

helper := 1
"#;

    use crate::tests::NO_LATEST as POLICY;

    fn report() -> TestReport {
        let policies = Policies::new(
            vec![
                Module {
                    name: "policy.rego".into(),
                    text: POLICY.into(),
                },
                Module {
                    name: "policy_test.rego".into(),
                    text: TESTS.into(),
                },
            ],
            Vec::new(),
        )
        .expect("loads");
        run(&policies)
    }

    #[test]
    fn tests_pass_fail_and_skip_as_opa_decides() {
        let report = report();
        let outcomes: Vec<(&str, &Outcome)> = report
            .results
            .iter()
            .map(|r| (r.name.as_str(), &r.outcome))
            .collect();
        assert_eq!(
            outcomes,
            vec![
                ("test_latest_on_protected_is_denied", &Outcome::Pass),
                ("test_this_one_fails", &Outcome::Fail),
                ("test_undefined_fails", &Outcome::Fail),
                ("todo_test_later", &Outcome::Skip),
            ]
        );
        assert_eq!(report.exit_code(), 2);
        assert!(
            report
                .results
                .iter()
                .all(|r| r.package == "data.berth.prepare_test" && r.file == "policy_test.rego")
        );
        assert_eq!(report.results[0].row, 6);
    }

    #[test]
    fn the_pretty_report_lists_failures_and_skips_by_file_and_line_then_counts() {
        let mut report = report();
        for r in &mut report.results {
            r.duration = Duration::from_nanos(344_605);
        }
        assert_eq!(
            report.pretty(false),
            format!(
                "policy_test.rego:10:\ndata.berth.prepare_test.test_this_one_fails: FAIL (344.605µs)\npolicy_test.rego:14:\ndata.berth.prepare_test.test_undefined_fails: FAIL (344.605µs)\npolicy_test.rego:18:\ndata.berth.prepare_test.todo_test_later: SKIPPED\n{}\nPASS: 1/4\nFAIL: 2/4\nSKIPPED: 1/4\n",
                "-".repeat(80)
            )
        );
        let json: serde_json::Value = serde_json::from_str(&report.json()).expect("JSON");
        assert_eq!(json[1]["fail"], serde_json::json!(true));
        assert_eq!(json[3]["skip"], serde_json::json!(true));
        assert!(json[0].get("fail").is_none());
        assert_eq!(go_duration(Duration::from_millis(1200)), "1.2s");
        assert_eq!(go_duration(Duration::from_nanos(999)), "999ns");
        assert_eq!(go_duration(Duration::from_micros(1500)), "1.5ms");
    }

    #[test]
    fn a_directory_without_tests_passes_silently_as_with_opa() {
        let policies = Policies::new(
            vec![Module {
                name: "policy.rego".into(),
                text: POLICY.into(),
            }],
            Vec::new(),
        )
        .expect("loads");
        let report = run(&policies);
        assert_eq!(report.exit_code(), 0);
        assert_eq!(report.pretty(false), "");
    }
}
