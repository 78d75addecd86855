//! A typed builder for the job payload that `POST /api/v4/jobs/request` answers with.
//!
//! The field names follow gitlab-runner's `common/spec/spec.go` (`Job`). Only what the custom
//! executor contract needs is modelled; everything is serialised explicitly so that a test can
//! see exactly what the runner receives. `run` is never sent (a `null` there breaks the runner).

use serde::Serialize;
use serde_json::Value;

/// A job variable (`variables[]` in the payload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variable {
    /// Variable name.
    pub key: String,
    /// Variable value (for a file variable, its content).
    pub value: String,
    /// Whether GitLab considers the value public.
    pub public: bool,
    /// Whether the runner masks the value in the job log.
    pub masked: bool,
    /// Whether this is a file-type variable.
    pub file: bool,
    /// Whether the value is used without variable expansion.
    pub raw: bool,
}

impl Variable {
    /// A public, unmasked variable.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
            public: true,
            masked: false,
            file: false,
            raw: false,
        }
    }

    /// A masked (and not public) variable.
    pub fn masked(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            public: false,
            masked: true,
            ..Self::new(key, value)
        }
    }

    /// A file-type variable.
    pub fn file(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            file: true,
            ..Self::new(key, value)
        }
    }
}

/// One step (`steps[]`): `script` or `after_script`, or a named `release`-like step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// `script`, `after_script` or another step name.
    pub name: String,
    /// The shell lines.
    pub script: Vec<String>,
    /// Step timeout in seconds.
    pub timeout: u64,
    /// `on_success`, `on_failure` or `always`.
    pub when: String,
    /// Whether a failure of this step is allowed.
    pub allow_failure: bool,
}

/// The job image or a service (`image`, `services[]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Image reference.
    pub name: String,
    /// Aliases, comma or space separated (services only).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub alias: String,
    /// Entrypoint override.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// Command override.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

impl Image {
    /// An image with only a name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// One `artifacts[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifact {
    /// Archive name (the uploaded file is `<name>.zip`); empty means `artifacts`.
    pub name: String,
    /// Whether untracked files are included.
    pub untracked: bool,
    /// Paths (globs) to archive.
    pub paths: Vec<String>,
    /// Paths to exclude.
    pub exclude: Vec<String>,
    /// `on_success`, `on_failure` or `always`.
    pub when: String,
    /// For example `archive` or `junit`.
    pub artifact_type: String,
    /// For example `zip` or `gzip`.
    pub artifact_format: String,
    /// For example `1 week`; empty means the server default.
    pub expire_in: String,
}

impl Artifact {
    /// A plain zip archive of `paths`, uploaded on success.
    pub fn archive(paths: &[&str]) -> Self {
        Self {
            name: String::new(),
            untracked: false,
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            exclude: Vec::new(),
            when: "on_success".to_owned(),
            artifact_type: "archive".to_owned(),
            artifact_format: "zip".to_owned(),
            expire_in: String::new(),
        }
    }
}

/// One `cache[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cache {
    /// Cache key.
    pub key: String,
    /// Whether untracked files are included.
    pub untracked: bool,
    /// `pull-push`, `pull` or `push`.
    pub policy: String,
    /// Paths to cache.
    pub paths: Vec<String>,
    /// `on_success`, `on_failure` or `always`.
    pub when: String,
    /// Keys to try when `key` misses.
    pub fallback_keys: Vec<String>,
}

impl Cache {
    /// A pull-push cache of `paths` under `key`, saved on success.
    pub fn new(key: impl Into<String>, paths: &[&str]) -> Self {
        Self {
            key: key.into(),
            untracked: false,
            policy: "pull-push".to_owned(),
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
            when: "on_success".to_owned(),
            fallback_keys: Vec::new(),
        }
    }
}

/// `dependencies[].artifacts_file`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactsFile {
    /// File name, for example `artifacts.zip`.
    pub filename: String,
    /// Size in bytes.
    pub size: u64,
}

/// One `dependencies[]` entry: a previous job whose artifacts this job downloads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependency {
    /// The previous job's id.
    pub id: u64,
    /// The previous job's token (sent by artifacts-downloader).
    pub token: String,
    /// The previous job's name.
    pub name: String,
    /// Its artifacts archive.
    pub artifacts_file: ArtifactsFile,
}

/// `git_info`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GitInfo {
    /// Clone URL, for example `http://127.0.0.1:PORT/group/project.git`.
    pub repo_url: String,
    /// Branch or tag name.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Commit to check out (at least 8 characters, or the runner panics).
    pub sha: String,
    /// Previous commit.
    pub before_sha: String,
    /// `branch` or `tag`.
    pub ref_type: String,
    /// Refspecs to fetch.
    pub refspecs: Vec<String>,
    /// Shallow clone depth; 0 means full.
    pub depth: u32,
    /// Whether the ref is protected.
    pub protected: bool,
}

impl GitInfo {
    /// Branch `main` at `sha` of the repository served at `group/project.git`
    /// ([`crate::Coordinator::serve_repo`]).
    pub fn fake_repo(gitlab_url: &str, sha: impl Into<String>) -> Self {
        Self::branch(format!("{gitlab_url}/group/project.git"), "main", sha)
    }

    /// A branch checkout of `sha` from `repo_url`.
    pub fn branch(
        repo_url: impl Into<String>,
        branch: impl Into<String>,
        sha: impl Into<String>,
    ) -> Self {
        Self {
            repo_url: repo_url.into(),
            git_ref: branch.into(),
            sha: sha.into(),
            before_sha: "0000000000000000000000000000000000000000".to_owned(),
            ref_type: "branch".to_owned(),
            refspecs: vec!["+refs/heads/*:refs/remotes/origin/*".to_owned()],
            depth: 0,
            protected: false,
        }
    }
}

/// The failure reasons the payload declares as understood (`features.failure_reasons`).
pub const DEFAULT_FAILURE_REASONS: &[&str] = &[
    "unknown_failure",
    "script_failure",
    "api_failure",
    "stuck_or_timeout_failure",
    "runner_system_failure",
    "job_execution_timeout",
    "runner_configuration_error",
    "runner_unsupported",
    "archived_failure",
    "unmet_prerequisites",
    "scheduler_failure",
    "data_integrity_failure",
    "image_pull_failure",
    "job_canceled",
];

/// A job payload under construction. [`JobPayload::to_json`] gives what the coordinator serves.
#[derive(Debug, Clone)]
pub struct JobPayload {
    /// Job id (> 0).
    pub id: u64,
    /// Job token (JOB-TOKEN).
    pub token: String,
    /// `allow_git_fetch`: fetch instead of clone.
    pub allow_git_fetch: bool,
    /// `job_info.name`.
    pub name: String,
    /// `job_info.stage`.
    pub stage: String,
    /// `job_info.project_id`.
    pub project_id: u64,
    /// `git_info`; `None` sends `GIT_STRATEGY=none` and an empty git_info.
    pub git: Option<GitInfo>,
    /// `runner_info.timeout` in seconds (0 means the runner's default of 7200 s).
    pub timeout: u64,
    /// `variables[]`.
    pub variables: Vec<Variable>,
    /// `steps[]`.
    pub steps: Vec<Step>,
    /// `image`.
    pub image: Option<Image>,
    /// `services[]`.
    pub services: Vec<Image>,
    /// `artifacts[]`.
    pub artifacts: Vec<Artifact>,
    /// `cache[]`.
    pub cache: Vec<Cache>,
    /// `dependencies[]`.
    pub dependencies: Vec<Dependency>,
    /// `features.trace_sections`.
    pub trace_sections: bool,
    /// `features.failure_reasons`.
    pub failure_reasons: Vec<String>,
}

impl JobPayload {
    /// A job with id `id`, token `job-token-<id>`, one `script` step, trace sections on, all
    /// failure reasons declared, and no git (GIT_STRATEGY=none) until [`Self::git`] is called.
    pub fn new(id: u64, script: &[&str]) -> Self {
        Self {
            id,
            token: format!("job-token-{id}"),
            allow_git_fetch: false,
            name: "test-job".to_owned(),
            stage: "test".to_owned(),
            project_id: 1,
            git: None,
            timeout: 3600,
            variables: Vec::new(),
            steps: Vec::new(),
            image: None,
            services: Vec::new(),
            artifacts: Vec::new(),
            cache: Vec::new(),
            dependencies: Vec::new(),
            trace_sections: true,
            failure_reasons: DEFAULT_FAILURE_REASONS
                .iter()
                .map(|r| (*r).to_owned())
                .collect(),
        }
        .step("script", script, "on_success")
    }

    /// Adds a step.
    #[must_use]
    pub fn step(mut self, name: &str, script: &[&str], when: &str) -> Self {
        self.steps.push(Step {
            name: name.to_owned(),
            script: script.iter().map(|l| (*l).to_owned()).collect(),
            timeout: 3600,
            when: when.to_owned(),
            allow_failure: false,
        });
        self
    }

    /// Adds an `after_script` step (`when: always`).
    #[must_use]
    pub fn after_script(self, script: &[&str]) -> Self {
        self.step("after_script", script, "always")
    }

    /// Adds a variable.
    #[must_use]
    pub fn variable(mut self, variable: Variable) -> Self {
        self.variables.push(variable);
        self
    }

    /// Sets `runner_info.timeout`.
    #[must_use]
    pub const fn timeout(mut self, seconds: u64) -> Self {
        self.timeout = seconds;
        self
    }

    /// Sets `git_info` (and drops the implicit GIT_STRATEGY=none).
    #[must_use]
    pub fn git(mut self, git: GitInfo) -> Self {
        self.git = Some(git);
        self
    }

    /// Sets the job image.
    #[must_use]
    pub fn image(mut self, image: Image) -> Self {
        self.image = Some(image);
        self
    }

    /// Adds a service.
    #[must_use]
    pub fn service(mut self, service: Image) -> Self {
        self.services.push(service);
        self
    }

    /// Adds an artifacts entry.
    #[must_use]
    pub fn artifact(mut self, artifact: Artifact) -> Self {
        self.artifacts.push(artifact);
        self
    }

    /// Adds a cache entry.
    #[must_use]
    pub fn cache(mut self, cache: Cache) -> Self {
        self.cache.push(cache);
        self
    }

    /// Adds a dependency.
    #[must_use]
    pub fn dependency(mut self, dependency: Dependency) -> Self {
        self.dependencies.push(dependency);
        self
    }

    /// The JSON document served to the runner.
    pub fn to_json(&self) -> Value {
        let mut variables = self.variables.clone();
        let has = |vars: &[Variable], k: &str| vars.iter().any(|v| v.key == k);
        if self.git.is_none() && !has(&variables, "GIT_STRATEGY") {
            variables.push(Variable::new("GIT_STRATEGY", "none"));
        }
        for (key, value) in [
            ("CI_JOB_ID", self.id.to_string()),
            ("CI_JOB_NAME", self.name.clone()),
            ("CI_JOB_STAGE", self.stage.clone()),
            ("CI_PROJECT_ID", self.project_id.to_string()),
        ] {
            if !has(&variables, key) {
                variables.push(Variable::new(key, value));
            }
        }
        if !has(&variables, "CI_JOB_TOKEN") {
            variables.push(Variable {
                public: false,
                masked: true,
                ..Variable::new("CI_JOB_TOKEN", &self.token)
            });
        }
        let git = self.git.as_ref().map_or_else(
            || serde_json::json!({"repo_url": "", "ref": "main", "sha": "0123456789abcdef0123456789abcdef01234567",
                "before_sha": "0000000000000000000000000000000000000000", "ref_type": "branch",
                "refspecs": [], "depth": 0}),
            |g| serde_json::to_value(g).unwrap_or(Value::Null),
        );
        let mut job = serde_json::json!({
            "id": self.id,
            "token": self.token,
            "allow_git_fetch": self.allow_git_fetch,
            "job_info": {
                "name": self.name,
                "stage": self.stage,
                "project_id": self.project_id,
                "project_name": "project",
                "project_full_path": "group/project",
            },
            "git_info": git,
            "runner_info": {"timeout": self.timeout},
            "variables": variables,
            "steps": self.steps,
            "services": self.services,
            "artifacts": self.artifacts,
            "cache": self.cache,
            "credentials": [],
            "dependencies": self.dependencies,
            "features": {
                "trace_sections": self.trace_sections,
                "token_mask_prefixes": ["glrt-", "glpat-"],
                "failure_reasons": self.failure_reasons,
            },
        });
        if let (Some(image), Some(obj)) = (&self.image, job.as_object_mut()) {
            obj.insert(
                "image".to_owned(),
                serde_json::to_value(image).unwrap_or(Value::Null),
            );
        }
        job
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_a_runnable_job_without_git() {
        let job = JobPayload::new(7, &["echo hi"])
            .after_script(&["echo bye"])
            .to_json();
        assert_eq!(job["id"], 7);
        assert_eq!(job["token"], "job-token-7");
        assert_eq!(job["steps"][0]["name"], "script");
        assert_eq!(job["steps"][1]["when"], "always");
        assert_eq!(job["features"]["trace_sections"], true);
        let vars = job["variables"]
            .as_array()
            .map(Vec::len)
            .unwrap_or_default();
        assert!(vars >= 5, "{job}");
        assert!(
            job["variables"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v["key"] == "GIT_STRATEGY"))
        );
        assert!(job.get("run").is_none(), "never send run");
        let reasons = job["features"]["failure_reasons"].to_string();
        for r in [
            "job_execution_timeout",
            "runner_system_failure",
            "script_failure",
        ] {
            assert!(reasons.contains(r), "{r}");
        }
    }

    #[test]
    fn git_info_uses_ref_key_and_masked_variables_are_flagged() {
        let job = JobPayload::new(1, &["true"])
            .git(GitInfo::branch(
                "http://h/group/project.git",
                "main",
                "0123456789abcdef",
            ))
            .variable(Variable::masked("SECRET", "s3cr3t-value"))
            .image(Image::new("alpine:3"))
            .to_json();
        assert_eq!(job["git_info"]["ref"], "main");
        assert_eq!(job["image"]["name"], "alpine:3");
        let secret = job["variables"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["key"] == "SECRET"))
            .cloned();
        assert_eq!(secret.map(|s| s["masked"].clone()), Some(Value::Bool(true)));
        assert!(!job["variables"].to_string().contains("GIT_STRATEGY"));
    }
}
