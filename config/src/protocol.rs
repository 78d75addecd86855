//! GitLab's custom-executor contract as types: stage names, the driver environment, the job payload
//! and the JSON that `config_exec` prints. Facts cite `docs/reference/custom-executor-contract.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// gitlab-runner writes an absent list or object as `null` (a Go nil slice or pointer, e.g.
/// `"services": null` when GitLab sent none): read it as empty.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The `<stage>` argument of `run_exec` (contract §1.5), routed to the helper or the job container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunStage {
    /// `prepare_script`
    PrepareScript,
    /// `get_sources`
    GetSources,
    /// `clear_worktree` (undocumented; before a second get_sources attempt)
    ClearWorktree,
    /// `restore_cache`
    RestoreCache,
    /// `download_artifacts`
    DownloadArtifacts,
    /// `build_script` (the runner renames `step_script` to this)
    BuildScript,
    /// `step_<name>` for any other step
    Step(String),
    /// `after_script`
    AfterScript,
    /// `archive_cache`
    ArchiveCache,
    /// `archive_cache_on_failure`
    ArchiveCacheOnFailure,
    /// `upload_artifacts_on_success`
    UploadArtifactsOnSuccess,
    /// `upload_artifacts_on_failure`
    UploadArtifactsOnFailure,
    /// `cleanup_file_variables`
    CleanupFileVariables,
    /// a stage name this version of berth does not know yet
    Unknown(String),
}

/// Which container a stage's script runs in (the Docker executor's `Predefined` split, §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageTarget {
    /// The helper container: git, git-lfs and the runner binary for cache and artifacts.
    Helper,
    /// The job container: the job's own `image:`.
    Job,
}

impl StageTarget {
    /// Short name used for container names and directories.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Helper => "helper",
            Self::Job => "job",
        }
    }
}

impl RunStage {
    /// Parses argv[2] of `run_exec`.
    pub fn parse(name: &str) -> Self {
        match name {
            "prepare_script" => Self::PrepareScript,
            "get_sources" => Self::GetSources,
            "clear_worktree" => Self::ClearWorktree,
            "restore_cache" => Self::RestoreCache,
            "download_artifacts" => Self::DownloadArtifacts,
            "build_script" | "step_script" => Self::BuildScript,
            "after_script" => Self::AfterScript,
            "archive_cache" => Self::ArchiveCache,
            "archive_cache_on_failure" => Self::ArchiveCacheOnFailure,
            "upload_artifacts_on_success" => Self::UploadArtifactsOnSuccess,
            "upload_artifacts_on_failure" => Self::UploadArtifactsOnFailure,
            "cleanup_file_variables" => Self::CleanupFileVariables,
            other => match other.strip_prefix("step_") {
                Some(step) if !step.is_empty() => Self::Step(step.to_owned()),
                _ => Self::Unknown(other.to_owned()),
            },
        }
    }

    /// Where the stage runs: user steps in the job container, runner-internal stages in the helper.
    /// Unknown future stages go to the helper, which has every tool the runner's scripts use.
    pub fn target(&self) -> StageTarget {
        match self {
            Self::BuildScript | Self::Step(_) | Self::AfterScript => StageTarget::Job,
            Self::PrepareScript
            | Self::GetSources
            | Self::ClearWorktree
            | Self::RestoreCache
            | Self::DownloadArtifacts
            | Self::ArchiveCache
            | Self::ArchiveCacheOnFailure
            | Self::UploadArtifactsOnSuccess
            | Self::UploadArtifactsOnFailure
            | Self::CleanupFileVariables
            | Self::Unknown(_) => StageTarget::Helper,
        }
    }

    /// Whether the stage runs the user's own code (its failure is the user's build failure).
    pub fn is_user_script(&self) -> bool {
        self.target() == StageTarget::Job
    }
}

impl fmt::Display for RunStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::PrepareScript => "prepare_script",
            Self::GetSources => "get_sources",
            Self::ClearWorktree => "clear_worktree",
            Self::RestoreCache => "restore_cache",
            Self::DownloadArtifacts => "download_artifacts",
            Self::BuildScript => "build_script",
            Self::AfterScript => "after_script",
            Self::ArchiveCache => "archive_cache",
            Self::ArchiveCacheOnFailure => "archive_cache_on_failure",
            Self::UploadArtifactsOnSuccess => "upload_artifacts_on_success",
            Self::UploadArtifactsOnFailure => "upload_artifacts_on_failure",
            Self::CleanupFileVariables => "cleanup_file_variables",
            Self::Step(step) => return write!(f, "step_{step}"),
            Self::Unknown(other) => other,
        };
        f.write_str(name)
    }
}

/// Environment variables berth passes to itself through `job_env`.
pub mod job_env {
    /// The job key every later stage derives names from.
    pub const JOB_KEY: &str = "BERTH_JOB_KEY";
}

/// The parts of the driver environment (§1.4) berth reads. Built from any key/value list, so tests
/// need not touch the process environment.
#[derive(Clone, Default)]
pub struct ContractEnv {
    vars: BTreeMap<String, String>,
}

impl fmt::Debug for ContractEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may hold masked variables and the job token: never print them.
        f.debug_struct("ContractEnv")
            .field("keys", &self.vars.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ContractEnv {
    /// Captures the given environment.
    pub fn from_vars(vars: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            vars: vars.into_iter().collect(),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.vars
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn code(&self, key: &str, default: i32) -> i32 {
        self.get(key)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(default)
    }

    /// `BUILD_FAILURE_EXIT_CODE` (default 1).
    pub fn build_failure_exit_code(&self) -> i32 {
        self.code("BUILD_FAILURE_EXIT_CODE", 1)
    }

    /// `SYSTEM_FAILURE_EXIT_CODE` (default 2).
    pub fn system_failure_exit_code(&self) -> i32 {
        self.code("SYSTEM_FAILURE_EXIT_CODE", 2)
    }

    /// `BUILD_EXIT_CODE_FILE` (runner ≥ 17.9).
    pub fn build_exit_code_file(&self) -> Option<PathBuf> {
        self.get("BUILD_EXIT_CODE_FILE").map(PathBuf::from)
    }

    /// `JOB_RESPONSE_FILE`: the trusted job payload.
    pub fn job_response_file(&self) -> Option<PathBuf> {
        self.get("JOB_RESPONSE_FILE").map(PathBuf::from)
    }

    /// The job key that `config` passed on through `job_env`.
    pub fn job_key(&self) -> Option<&str> {
        self.get(job_env::JOB_KEY)
    }

    /// A job variable as the runner exported it (`CUSTOM_ENV_<name>`).
    pub fn job_var(&self, name: &str) -> Option<&str> {
        self.get(&format!("CUSTOM_ENV_{name}"))
    }

    /// `CUSTOM_ENV_CI_JOB_STATUS`: `running`, or during after_script the outcome so far.
    pub fn job_status(&self) -> Option<&str> {
        self.job_var("CI_JOB_STATUS")
    }
}

/// The JSON `config_exec` prints on stdout (§1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigOutput {
    /// Builds directory inside the job environment.
    pub builds_dir: String,
    /// Cache directory inside the job environment.
    pub cache_dir: String,
    /// Whether builds_dir is shared between concurrent jobs.
    pub builds_dir_is_shared: bool,
    /// Host name shown by prepare_script.
    pub hostname: String,
    /// Driver name and version for the runner's startup line.
    pub driver: DriverInfo,
    /// Shell the runner generates scripts for.
    pub shell: String,
    /// Environment added to prepare, run and cleanup.
    pub job_env: BTreeMap<String, String>,
}

/// `driver` in [`ConfigOutput`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverInfo {
    /// Driver name.
    pub name: String,
    /// Driver version.
    pub version: String,
}

/// The job payload from `JOB_RESPONSE_FILE` (gitlab-runner's `spec.Job`), the parts berth uses.
/// Unknown fields are ignored on purpose: this is GitLab's document, not ours.
#[derive(Clone, Deserialize, Default)]
pub struct JobPayload {
    /// Job id (> 0).
    pub id: u64,
    /// Job token: a secret; never logged.
    #[serde(default, deserialize_with = "null_as_default")]
    pub token: String,
    /// Job image.
    #[serde(default, deserialize_with = "null_as_default")]
    pub image: Option<ImageSpec>,
    /// Services.
    #[serde(default, deserialize_with = "null_as_default")]
    pub services: Vec<ImageSpec>,
    /// Job variables.
    #[serde(default, deserialize_with = "null_as_default")]
    pub variables: Vec<JobVariable>,
    /// Registry credentials for pulling images.
    #[serde(default, deserialize_with = "null_as_default")]
    pub credentials: Vec<Credentials>,
    /// Git information.
    #[serde(default, deserialize_with = "null_as_default")]
    pub git_info: GitInfo,
    /// Job information.
    #[serde(default, deserialize_with = "null_as_default")]
    pub job_info: JobInfo,
    /// Runner information (timeout).
    #[serde(default, deserialize_with = "null_as_default")]
    pub runner_info: RunnerInfo,
}

impl fmt::Debug for JobPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobPayload")
            .field("id", &self.id)
            .field("image", &self.image)
            .field("services", &self.services)
            .finish_non_exhaustive()
    }
}

impl JobPayload {
    /// Parses the payload JSON.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Values of masked variables, which must never reach a log.
    pub fn masked_values(&self) -> Vec<&str> {
        let mut values: Vec<&str> = self
            .variables
            .iter()
            .filter(|v| v.masked && !v.value.is_empty())
            .map(|v| v.value.as_str())
            .collect();
        if !self.token.is_empty() {
            values.push(&self.token);
        }
        values
    }

    /// The value of a job variable from the payload.
    pub fn variable(&self, key: &str) -> Option<&str> {
        self.variables
            .iter()
            .rev()
            .find(|v| v.key == key)
            .map(|v| v.value.as_str())
    }
}

/// `image` or one `services[]` entry.
#[derive(Debug, Clone, Deserialize, Default, PartialEq, Eq)]
pub struct ImageSpec {
    /// Image reference.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Service alias(es): GitLab sends them comma- or space-separated in one string.
    #[serde(default, deserialize_with = "null_as_default")]
    pub alias: String,
    /// Entrypoint override; `[""]` clears the image's entrypoint.
    #[serde(default, deserialize_with = "null_as_default")]
    pub entrypoint: Option<Vec<String>>,
    /// Command override (services).
    #[serde(default, deserialize_with = "null_as_default")]
    pub command: Option<Vec<String>>,
    /// Per-image pull policy list.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pull_policy: Option<Vec<String>>,
    /// Service variables (runner ≥ 19.0).
    #[serde(default, deserialize_with = "null_as_default")]
    pub variables: Vec<JobVariable>,
}

impl ImageSpec {
    /// Explicit aliases, split as the runner does.
    pub fn aliases(&self) -> Vec<String> {
        self.alias
            .split([',', ' '])
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// A job variable.
#[derive(Clone, Deserialize, Default, PartialEq, Eq)]
pub struct JobVariable {
    /// Name.
    pub key: String,
    /// Value (may be secret).
    #[serde(default, deserialize_with = "null_as_default")]
    pub value: String,
    /// Masked in logs.
    #[serde(default, deserialize_with = "null_as_default")]
    pub masked: bool,
    /// A file-type variable.
    #[serde(default, deserialize_with = "null_as_default")]
    pub file: bool,
}

impl fmt::Debug for JobVariable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobVariable")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Registry credentials from the payload.
#[derive(Clone, Deserialize, Default)]
pub struct Credentials {
    /// Kind, `registry` for image pulls.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Registry host.
    #[serde(default, deserialize_with = "null_as_default")]
    pub url: String,
    /// User name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub username: String,
    /// Password or token: a secret.
    #[serde(default, deserialize_with = "null_as_default")]
    pub password: String,
}

/// `git_info`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct GitInfo {
    /// Repository URL.
    #[serde(default, deserialize_with = "null_as_default")]
    pub repo_url: String,
    /// Whether the ref is protected (runner ≥ 18.4 sends it).
    #[serde(default, deserialize_with = "null_as_default")]
    pub protected: Option<bool>,
    /// The branch or tag the job runs for (GitLab's, which no job variable overrides).
    #[serde(rename = "ref", default, deserialize_with = "null_as_default")]
    pub git_ref: String,
    /// `branch` or `tag`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub ref_type: String,
}

impl GitInfo {
    /// The project's path (`group/project`) from the repository URL, without credentials.
    pub fn project_path(&self) -> Option<String> {
        let rest = self
            .repo_url
            .split_once("://")
            .map_or(self.repo_url.as_str(), |(_, r)| r);
        let after_host = rest.split_once('/')?.1;
        let path = after_host.strip_suffix(".git").unwrap_or(after_host);
        (!path.is_empty()).then(|| path.to_owned())
    }
}

/// `job_info`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct JobInfo {
    /// Job name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// Project id.
    #[serde(default, deserialize_with = "null_as_default")]
    pub project_id: u64,
    /// The job's stage.
    #[serde(default, deserialize_with = "null_as_default")]
    pub stage: String,
}

/// `runner_info`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct RunnerInfo {
    /// Job timeout in seconds (0 means the runner default, 7200).
    #[serde(default, deserialize_with = "null_as_default")]
    pub timeout: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_route_like_the_docker_executor() {
        for helper in [
            "prepare_script",
            "get_sources",
            "clear_worktree",
            "restore_cache",
            "download_artifacts",
            "archive_cache",
            "archive_cache_on_failure",
            "upload_artifacts_on_success",
            "upload_artifacts_on_failure",
            "cleanup_file_variables",
        ] {
            let stage = RunStage::parse(helper);
            assert_eq!(stage.target(), StageTarget::Helper, "{helper}");
            assert_eq!(stage.to_string(), helper);
        }
        for job in ["build_script", "after_script", "step_release"] {
            let stage = RunStage::parse(job);
            assert_eq!(stage.target(), StageTarget::Job, "{job}");
            assert_eq!(stage.to_string(), job);
        }
        assert_eq!(RunStage::parse("step_script"), RunStage::BuildScript);
        assert_eq!(
            RunStage::parse("brand_new").target(),
            StageTarget::Helper,
            "unknown stages go to the helper"
        );
        assert_eq!(RunStage::parse("step_"), RunStage::Unknown("step_".into()));
    }

    #[test]
    fn lists_and_objects_the_runner_writes_as_null_read_as_empty() {
        let payload = JobPayload::from_json(
            r#"{"id": 5, "token": "t", "image": {"name": "alpine:3"}, "services": null,
                "variables": null, "credentials": null, "git_info": null}"#,
        )
        .expect("null lists are empty lists");
        assert!(payload.services.is_empty());
        assert!(payload.variables.is_empty());
        assert!(payload.credentials.is_empty());
    }

    #[test]
    fn contract_env_defaults_and_overrides() {
        let env = ContractEnv::from_vars([
            ("SYSTEM_FAILURE_EXIT_CODE".to_owned(), "7".to_owned()),
            ("BUILD_EXIT_CODE_FILE".to_owned(), "/tmp/x/code".to_owned()),
            ("CUSTOM_ENV_CI_JOB_STATUS".to_owned(), "failed".to_owned()),
        ]);
        assert_eq!(env.build_failure_exit_code(), 1);
        assert_eq!(env.system_failure_exit_code(), 7);
        assert_eq!(
            env.build_exit_code_file(),
            Some(PathBuf::from("/tmp/x/code"))
        );
        assert_eq!(env.job_status(), Some("failed"));
        assert!(!format!("{env:?}").contains("/tmp/x/code"));
    }

    #[test]
    fn payload_parses_runner_json_and_hides_secrets() {
        let json = r#"{"id": 42, "token": "glcbt-secret", "unknown": {"x": 1},
            "image": {"name": "alpine:3", "entrypoint": [""]},
            "services": [{"name": "postgres:16", "alias": "db, pg", "command": null}],
            "variables": [{"key": "A", "value": "hush", "masked": true}, {"key": "B", "value": "b"}],
            "git_info": {"repo_url": "http://gitlab-ci-token:glcbt-secret@h/g/sub/p.git", "protected": true,
                         "ref": "main", "ref_type": "branch"},
            "job_info": {"project_id": 7, "stage": "build"}, "runner_info": {"timeout": 60}}"#;
        let payload = JobPayload::from_json(json).expect("valid payload");
        assert_eq!(payload.id, 42);
        assert_eq!(payload.services[0].aliases(), vec!["db", "pg"]);
        assert_eq!(payload.masked_values(), vec!["hush", "glcbt-secret"]);
        assert_eq!(payload.variable("B"), Some("b"));
        assert_eq!(payload.git_info.protected, Some(true));
        assert_eq!(payload.git_info.git_ref, "main");
        assert_eq!(payload.git_info.project_path().as_deref(), Some("g/sub/p"));
        assert_eq!(payload.job_info.stage, "build");
        let debug = format!("{payload:?}");
        assert!(
            !debug.contains("hush") && !debug.contains("glcbt-secret"),
            "{debug}"
        );
    }
}
