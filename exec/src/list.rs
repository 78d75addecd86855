//! `berth exec --list`: the computed pipeline's jobs with stage, when, allow_failure and needs,
//! as a table or (`--json`) in the shape of `gitlab-ci-local --list-json`.

use std::io::Write;

use berth_pipeline::model::{AllowFailure, Job, Pipeline, When};
use serde::Serialize;

/// One `needs:` entry as `gitlab-ci-local --list-json` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ListedNeed {
    /// The needed job.
    pub job: String,
    /// Whether its artifacts are downloaded.
    pub artifacts: bool,
    /// Whether it may be absent.
    pub optional: bool,
}

/// One job as `gitlab-ci-local --list-json` shows it (its field names; `needs` absent when the
/// job has no `needs:`). Jobs whose rules say `never` are listed with `when: never`, as
/// gitlab-ci-local lists them; GitLab would not create them, and `berth exec` never runs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Listed {
    /// Job name.
    pub name: String,
    /// Description (`# @Description` in gitlab-ci-local; berth has none and writes `""`).
    pub description: String,
    /// Stage.
    pub stage: String,
    /// `on_success`, `manual`, ...
    pub when: String,
    /// Whether the job may fail: a boolean, or `{"exit_codes": [...]}`.
    pub allow_failure: serde_json::Value,
    /// `needs:`; absent when the job has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needs: Option<Vec<ListedNeed>>,
}

/// GitLab's word for `when`.
#[must_use]
pub const fn when_word(when: When) -> &'static str {
    match when {
        When::OnSuccess => "on_success",
        When::OnFailure => "on_failure",
        When::Always => "always",
        When::Manual => "manual",
        When::Delayed => "delayed",
        When::Never => "never",
    }
}

fn allow_failure(job: &Job) -> serde_json::Value {
    match &job.allow_failure {
        AllowFailure::Bool(allowed) => serde_json::Value::Bool(*allowed),
        AllowFailure::ExitCodes(codes) => serde_json::json!({ "exit_codes": codes }),
    }
}

/// The listing of `pipeline`'s jobs.
#[must_use]
pub fn listed(pipeline: &Pipeline) -> Vec<Listed> {
    pipeline
        .jobs
        .iter()
        .map(|job| Listed {
            name: job.name.clone(),
            description: job.description.clone().unwrap_or_default(),
            stage: job.stage.clone(),
            when: when_word(job.when).to_owned(),
            allow_failure: allow_failure(job),
            needs: job.needs.as_ref().map(|needs| {
                needs
                    .iter()
                    .map(|n| ListedNeed {
                        job: n.job.clone(),
                        artifacts: n.artifacts,
                        optional: n.optional,
                    })
                    .collect()
            }),
        })
        .collect()
}

/// Writes the listing as JSON (one document) or as a table.
///
/// # Errors
/// The writer failed.
pub fn write(out: &mut impl Write, pipeline: &Pipeline, json: bool) -> std::io::Result<()> {
    let jobs = listed(pipeline);
    if json {
        let text = serde_json::to_string(&jobs).map_err(std::io::Error::other)?;
        return writeln!(out, "{text}");
    }
    let name_width = jobs
        .iter()
        .map(|j| j.name.chars().count())
        .max()
        .unwrap_or(4)
        .max(4);
    let stage_width = jobs
        .iter()
        .map(|j| j.stage.chars().count())
        .max()
        .unwrap_or(5)
        .max(5);
    writeln!(
        out,
        "{:<name_width$}  {:<stage_width$}  {:<10}  {:<13}  needs",
        "name", "stage", "when", "allow_failure"
    )?;
    let allow_word = |v: &serde_json::Value| match v {
        serde_json::Value::Bool(b) => b.to_string(),
        other => other["exit_codes"].to_string(),
    };
    for job in &jobs {
        let needs = job.needs.as_ref().map_or_else(String::new, |n| {
            let names: Vec<&str> = n.iter().map(|need| need.job.as_str()).collect();
            format!("[{}]", names.join(", "))
        });
        writeln!(
            out,
            "{:<name_width$}  {:<stage_width$}  {:<10}  {:<13}  {needs}",
            job.name,
            job.stage,
            job.when,
            allow_word(&job.allow_failure)
        )?;
    }
    Ok(())
}
