//! `berth exec` on the conformance fixtures (`integration/exec-fixtures/`, written from GitLab's
//! CI/CD YAML reference): `--list --json` names the jobs GitLab would create (`expected.json`)
//! with the same stage, when, allow_failure and needs, and agrees with the live gitlab-ci-local
//! 4.65.1 peer except on the fixtures `docs/exec-differences.md` records; then each fixture's
//! pipeline runs for real, and every job's own `test` lines decide whether it passes.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, ensure};
use berth_fake_gitlab::harness::new_command;
use common::{berth_exec, exec_berth_config, exec_statuses, exec_summary, explain_output};
use serde_json::{Value, json};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_default()
}

fn fixtures_dir() -> PathBuf {
    workspace().join("integration/exec-fixtures")
}

fn fixtures() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures_dir())
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.path().join(".gitlab-ci.yml").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    assert!(
        names.len() >= 10,
        "fixtures missing under {}",
        fixtures_dir().display()
    );
    names
}

/// The fixture's repository, made by the same script the recordings came from.
fn make_repo(name: &str, into: &Path) -> Result<PathBuf> {
    let repo = into.join(name);
    let out = new_command(fixtures_dir().join("make-fixture-repo.sh"))
        .arg(fixtures_dir().join(name))
        .arg(&repo)
        .arg(name)
        .output()?;
    ensure!(
        out.status.success(),
        "make-fixture-repo.sh {name}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(repo)
}

/// A listing reduced to what GitLab decides, keyed by job name: stage, when, allow_failure
/// (exit codes as a sorted list) and needs (job, artifacts, optional), sorted.
fn normalise(listing: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for job in listing.as_array().into_iter().flatten() {
        let allow = match &job["allow_failure"] {
            Value::Object(o) => {
                let mut codes: Vec<i64> = match &o["exit_codes"] {
                    Value::Array(a) => a.iter().filter_map(Value::as_i64).collect(),
                    v => v.as_i64().into_iter().collect(),
                };
                codes.sort_unstable();
                json!({ "exit_codes": codes })
            }
            v => json!(v.as_bool().unwrap_or(false)),
        };
        let needs = job.get("needs").map(|needs| {
            let mut list: Vec<Value> = needs
                .as_array()
                .into_iter()
                .flatten()
                .map(|n| {
                    json!({
                        "job": n["job"],
                        "artifacts": n.get("artifacts").and_then(Value::as_bool).unwrap_or(true),
                        "optional": n.get("optional").and_then(Value::as_bool).unwrap_or(false),
                    })
                })
                .collect();
            list.sort_by_key(ToString::to_string);
            Value::Array(list)
        });
        out.insert(
            job["name"].as_str().unwrap_or_default().to_owned(),
            json!({ "stage": job["stage"], "when": job["when"], "allow_failure": allow, "needs": needs }),
        );
    }
    out
}

fn gitlab_ci_local() -> Result<PathBuf> {
    let script = workspace().join("integration/peers/install-gitlab-ci-local.sh");
    let out = new_command(&script).arg("--print-path").output()?;
    ensure!(
        out.status.success(),
        "the gitlab-ci-local peer cannot be had ({}):\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// gitlab-ci-local's `--list-json`: the JSON array on stdout (warnings may precede it).
fn gitlab_ci_local_list(gcl: &Path, repo: &Path, home: &Path) -> Result<Option<Value>> {
    let out = new_command(gcl)
        .current_dir(repo)
        .args(["--no-color", "--list-json", "--home"])
        .arg(home)
        .output()?;
    if !out.status.success() {
        return Ok(None);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find("\n[").map_or(0, |i| i + 1);
    Ok(Some(
        serde_json::from_str(&text[start..]).with_context(|| explain_output(&out))?,
    ))
}

#[test]
fn the_listing_is_gitlabs_and_gitlab_ci_local_agrees_except_where_documented() -> Result<()> {
    let gcl = gitlab_ci_local()?;
    let differences = std::fs::read_to_string(workspace().join("docs/exec-differences.md"))?;
    let dir = tempfile::tempdir()?;
    let config = exec_berth_config(dir.path())?;
    let mut problems = Vec::new();
    for name in fixtures() {
        let repo = make_repo(&name, dir.path())?;
        let out = berth_exec(&repo, &config, &["--list", "--json"])?;
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(
            fixtures_dir().join(&name).join("expected.json"),
        )?)?;
        if !out.status.success() {
            problems.push(format!(
                "{name}: berth exec --list --json failed\n{}",
                explain_output(&out)
            ));
            continue;
        }
        let listed: Value = match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!(
                    "{name}: stdout is not one JSON document ({e})\n{}",
                    explain_output(&out)
                ));
                continue;
            }
        };
        let berth = normalise(&listed);
        if berth != normalise(&expected) {
            problems.push(format!(
                "{name}: berth lists\n{:#?}\nGitLab (expected.json) creates\n{:#?}",
                berth,
                normalise(&expected)
            ));
        }
        let home = dir.path().join(format!("home-{name}"));
        std::fs::create_dir_all(&home)?;
        let peer = gitlab_ci_local_list(&gcl, &repo, &home)?.map(|v| normalise(&v));
        let documented = differences.contains(&format!("| `{name}` |"));
        match (peer == Some(berth.clone()), documented) {
            (true, _) => {}
            (false, true) => {}
            (false, false) => problems.push(format!(
                "{name}: gitlab-ci-local lists\n{peer:#?}\nberth lists\n{berth:#?}\nand docs/exec-differences.md records no difference for it"
            )),
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n\n"));
    Ok(())
}

#[test]
fn every_fixture_pipeline_runs_and_its_jobs_pass_their_own_checks() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = exec_berth_config(dir.path())?;
    let mut problems = Vec::new();
    for name in fixtures() {
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(
            fixtures_dir().join(&name).join("expected.json"),
        )?)?;
        let repo = make_repo(&name, dir.path())?;
        let out = berth_exec(&repo, &config, &["--json", "-j", "2"])?;
        let created: Vec<&Value> = expected
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["when"] != "never")
            .collect();
        if created.is_empty() {
            // GitLab creates no pipeline: berth says so and runs nothing.
            if out.status.code() != Some(0)
                || !String::from_utf8_lossy(&out.stdout).contains("\"jobs\": []")
            {
                problems.push(format!(
                    "{name}: no job should run\n{}",
                    explain_output(&out)
                ));
            }
            continue;
        }
        let summary = match exec_summary(&out) {
            Ok(summary) => summary,
            Err(e) => {
                problems.push(format!("{name}: {e:#}"));
                continue;
            }
        };
        let status: BTreeMap<String, String> = exec_statuses(&summary).into_iter().collect();
        for job in created {
            let job_name = job["name"].as_str().unwrap_or_default();
            let got = status.get(job_name).map(String::as_str);
            let fine = match job["when"].as_str() {
                Some("manual") => got == Some("manual"),
                Some("on_failure") => matches!(got, Some("skipped" | "passed")),
                _ => matches!(got, Some("passed" | "warning" | "failed" | "skipped")),
            };
            if !fine {
                problems.push(format!(
                    "{name}: {job_name} ended {got:?}\n{}",
                    explain_output(&out)
                ));
            }
        }
        // A job fails only where the fixture says the pipeline fails (allow-failure-exit-codes).
        let pipeline_fails = fixtures_dir()
            .join(&name)
            .join("expected-run-fails")
            .exists();
        let exit = out.status.code();
        if (exit == Some(1)) != pipeline_fails || !matches!(exit, Some(0 | 1)) {
            problems.push(format!(
                "{name}: exit {exit:?}, pipeline fails: {pipeline_fails}\n{}",
                explain_output(&out)
            ));
        }
    }
    ensure!(problems.is_empty(), "{}", problems.join("\n\n"));
    Ok(())
}
