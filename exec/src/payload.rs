//! A computed job turned into the payload GitLab would send the runner for it: steps,
//! variables, image, services, artifacts (the archive and each report), cache, the
//! dependencies whose artifacts it downloads, and `git_info` for the snapshot.

use std::time::Duration;

use berth_coordinator::payload::{
    Artifact, Cache, Dependency, GitInfo, Image, JobPayload, Step, Variable,
};
use berth_pipeline::model::{ImageSpec, Job};

use crate::repo::Snapshot;

/// GitLab's default job timeout (a project's default of one hour).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);

/// What the payload of one attempt needs beyond the job itself.
#[derive(Debug, Clone)]
pub struct Attempt<'a> {
    /// The job id the coordinator knows this attempt by.
    pub id: u64,
    /// Base URL of the embedded coordinator.
    pub coordinator_url: &'a str,
    /// `group/project`.
    pub project_path: &'a str,
    /// What the runner checks out.
    pub snapshot: &'a Snapshot,
    /// Commit before (`CI_COMMIT_BEFORE_SHA`).
    pub before_sha: &'a str,
    /// Jobs whose artifacts this one downloads.
    pub dependencies: Vec<Dependency>,
    /// Variables from earlier jobs' `artifacts:reports:dotenv`, in order (later wins).
    pub dotenv: Vec<(String, String)>,
    /// The pipeline id (`CI_PIPELINE_ID`).
    pub pipeline_id: u64,
}

fn image(spec: &ImageSpec) -> Image {
    Image {
        name: spec.name.clone(),
        alias: spec.alias.clone().unwrap_or_default(),
        entrypoint: spec.entrypoint.clone().unwrap_or_default(),
        command: spec.command.clone().unwrap_or_default(),
    }
}

/// The format GitLab stores a report type in (`Ci::JobArtifact`'s type/format pairs).
fn report_format(report: &str) -> &'static str {
    match report {
        "junit" | "dotenv" | "cobertura" | "coverage_report" | "metrics" | "cyclonedx"
        | "annotations" => "gzip",
        _ => "raw",
    }
}

/// The payload for `attempt` of `job`.
#[must_use]
pub fn payload(job: &Job, attempt: &Attempt<'_>) -> JobPayload {
    let timeout = job.timeout.unwrap_or(DEFAULT_TIMEOUT).as_secs().max(1);
    let mut script: Vec<&str> = job.before_script.iter().map(String::as_str).collect();
    script.extend(job.script.iter().map(String::as_str));
    let mut payload = JobPayload::new(attempt.id, &script).timeout(timeout);
    payload.name.clone_from(&job.name);
    payload.stage.clone_from(&job.stage);
    for step in &mut payload.steps {
        step.timeout = timeout;
    }
    if !job.after_script.is_empty() {
        let after: Vec<&str> = job.after_script.iter().map(String::as_str).collect();
        payload = payload.after_script(&after);
        if let Some(step) = payload.steps.last_mut() {
            step.timeout = timeout;
        }
    }
    let mut variables: Vec<Variable> = job
        .variables
        .iter()
        .map(|v| Variable {
            key: v.key.clone(),
            value: v.value.clone(),
            public: v.public,
            masked: v.masked,
            file: v.file,
            // berth-pipeline has expanded every value already; the runner must not again.
            raw: true,
        })
        .collect();
    for (key, value) in &attempt.dotenv {
        variables.push(Variable {
            public: false,
            ..Variable::new(key.clone(), value.clone())
        });
    }
    let url = attempt.coordinator_url;
    let authority = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (host, port) = authority.rsplit_once(':').unwrap_or((authority, "80"));
    for (key, value) in [
        // The server GitLab would be: the embedded coordinator.
        ("CI_SERVER_URL", url.to_owned()),
        ("CI_SERVER_HOST", host.to_owned()),
        ("CI_SERVER_FQDN", authority.to_owned()),
        ("CI_SERVER_PORT", port.to_owned()),
        ("CI_SERVER_PROTOCOL", "http".to_owned()),
        ("CI_API_V4_URL", format!("{url}/api/v4")),
        ("CI_PROJECT_URL", format!("{url}/{}", attempt.project_path)),
        ("CI_JOB_ID", attempt.id.to_string()),
        ("CI_PIPELINE_ID", attempt.pipeline_id.to_string()),
        (
            "CI_JOB_URL",
            format!(
                "{}/{}/-/jobs/{}",
                attempt.coordinator_url, attempt.project_path, attempt.id
            ),
        ),
        ("CI_COMMIT_SHA", attempt.snapshot.sha.clone()),
        (
            "CI_COMMIT_SHORT_SHA",
            attempt.snapshot.sha.chars().take(8).collect(),
        ),
    ] {
        variables.retain(|v| v.key != key);
        variables.push(Variable::new(key, value));
    }
    payload.variables = variables;
    payload.steps.iter_mut().for_each(|s: &mut Step| {
        s.allow_failure = false;
    });
    payload.image = job.image.as_ref().map(image);
    payload.services = job.services.iter().map(image).collect();
    if let Some(artifacts) = &job.artifacts {
        if !artifacts.paths.is_empty() || artifacts.untracked {
            payload.artifacts.push(Artifact {
                name: artifacts.name.clone().unwrap_or_default(),
                untracked: artifacts.untracked,
                paths: artifacts.paths.clone(),
                exclude: artifacts.exclude.clone(),
                when: artifacts.when.clone(),
                artifact_type: "archive".to_owned(),
                artifact_format: "zip".to_owned(),
                expire_in: artifacts.expire_in.clone().unwrap_or_default(),
            });
        }
        for (report, paths) in &artifacts.reports {
            payload.artifacts.push(Artifact {
                name: report.clone(),
                untracked: false,
                paths: paths.clone(),
                exclude: Vec::new(),
                when: "always".to_owned(),
                artifact_type: report.clone(),
                artifact_format: report_format(report).to_owned(),
                expire_in: artifacts.expire_in.clone().unwrap_or_default(),
            });
        }
    }
    payload.cache = job
        .cache
        .iter()
        .map(|c| Cache {
            key: c.key.clone(),
            untracked: c.untracked,
            policy: c.policy.clone(),
            paths: c.paths.clone(),
            when: c.when.clone(),
            fallback_keys: c.fallback_keys.clone(),
        })
        .collect();
    payload.dependencies.clone_from(&attempt.dependencies);
    let snapshot = attempt.snapshot;
    let refspec = if snapshot.ref_type == "tag" {
        format!("+refs/tags/{0}:refs/tags/{0}", snapshot.ref_name)
    } else {
        format!("+refs/heads/{0}:refs/remotes/origin/{0}", snapshot.ref_name)
    };
    payload.git(GitInfo {
        repo_url: format!("{}/{}.git", attempt.coordinator_url, attempt.project_path),
        git_ref: snapshot.ref_name.clone(),
        sha: snapshot.sha.clone(),
        before_sha: attempt.before_sha.to_owned(),
        ref_type: snapshot.ref_type.to_owned(),
        refspecs: vec![refspec],
        // Dumb HTTP cannot serve a shallow clone.
        depth: 0,
        protected: false,
    })
}
