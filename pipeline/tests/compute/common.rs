//! Shared fixtures of the pipeline tests: an in-memory project and a push to `main`.

use std::collections::BTreeMap;

use berth_pipeline::model::{Job, Pipeline, ProjectFiles, RepoFacts};
use berth_pipeline::{ConfigErrors, Options, compute};

/// A project held in memory.
#[derive(Default)]
pub struct Files(pub BTreeMap<String, String>);

impl Files {
    pub fn new(entries: &[(&str, &str)]) -> Self {
        Self(
            entries
                .iter()
                .map(|(path, text)| ((*path).to_string(), (*text).to_string()))
                .collect(),
        )
    }
}

impl ProjectFiles for Files {
    fn read(&self, path: &str) -> Result<Option<String>, std::io::Error> {
        Ok(self.0.get(path).cloned())
    }

    fn list(&self) -> Result<Vec<String>, std::io::Error> {
        Ok(self.0.keys().cloned().collect())
    }
}

/// A push of commit `abc…` on `main` of `group/project`.
pub fn facts() -> RepoFacts {
    RepoFacts {
        sha: "0123456789abcdef0123456789abcdef01234567".into(),
        before_sha: "0".repeat(40),
        branch: Some("main".into()),
        tag: None,
        default_branch: "main".into(),
        message: "Add the thing\n\nLonger text.".into(),
        author: "Ada <ada@example.com>".into(),
        timestamp: "2025-01-02T03:04:05+00:00".into(),
        project_path: "group/project".into(),
        work_tree: "/home/ada/project".into(),
        changed_files: None,
        pipeline_source: "push".into(),
    }
}

pub fn options(facts: RepoFacts) -> Options<'static> {
    Options {
        ci_file: ".gitlab-ci.yml".into(),
        facts,
        cli_variables: Vec::new(),
        external_includes: None,
        keep_never: false,
    }
}

/// Compute the pipeline of a project whose `.gitlab-ci.yml` is `yaml` plus `extra` files.
pub fn run_with(
    yaml: &str,
    extra: &[(&str, &str)],
    facts: RepoFacts,
) -> Result<Pipeline, ConfigErrors> {
    let mut files = Files::new(extra);
    files.0.insert(".gitlab-ci.yml".into(), yaml.to_string());
    compute(&files, &options(facts))
}

pub fn pipeline(yaml: &str) -> Pipeline {
    match run_with(yaml, &[], facts()) {
        Ok(pipeline) => pipeline,
        Err(errors) => panic!("unexpected errors:\n{errors}"),
    }
}

pub fn errors(yaml: &str) -> Vec<String> {
    errors_with(yaml, &[])
}

pub fn errors_with(yaml: &str, extra: &[(&str, &str)]) -> Vec<String> {
    match run_with(yaml, extra, facts()) {
        Ok(pipeline) => panic!("expected errors, got jobs {:?}", names(&pipeline)),
        Err(errors) => errors.messages(),
    }
}

pub fn names(pipeline: &Pipeline) -> Vec<String> {
    pipeline.jobs.iter().map(|job| job.name.clone()).collect()
}

pub fn job<'a>(pipeline: &'a Pipeline, name: &str) -> &'a Job {
    pipeline
        .jobs
        .iter()
        .find(|job| job.name == name)
        .unwrap_or_else(|| panic!("no job {name} in {:?}", names(pipeline)))
}

/// The value a job sees for `key` (the last definition wins).
pub fn var(job: &Job, key: &str) -> Option<String> {
    job.variables
        .iter()
        .rev()
        .find(|variable| variable.key == key)
        .map(|variable| variable.value.clone())
}

/// The names a job needs, in order.
pub fn need_names(job: &Job) -> Vec<String> {
    job.needs
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|need| need.job)
        .collect()
}
