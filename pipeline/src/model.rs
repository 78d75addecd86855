//! The computed pipeline: what `berth exec` runs and lists. Every field is validated and final
//! (includes merged, `extends` and `!reference` resolved, rules evaluated, matrices expanded),
//! so the executor side never reads YAML.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Files of the project, read relative to its root (the work tree). The pipeline crate does no
/// I/O of its own; `berth exec` reads beneath the work tree's handle, tests use a map.
pub trait ProjectFiles {
    /// The text of `path` (relative, `/`-separated, no `..`), or `None` when it does not exist.
    ///
    /// # Errors
    /// A file that exists but cannot be read.
    fn read(&self, path: &str) -> Result<Option<String>, std::io::Error>;

    /// Every file path in the project (relative, `/`-separated), for `include: local` globs and
    /// `rules: exists`.
    ///
    /// # Errors
    /// The project cannot be listed.
    fn list(&self) -> Result<Vec<String>, std::io::Error>;
}

/// What the repository says about this run, from which GitLab's predefined variables derive.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepoFacts {
    /// Full commit SHA (`CI_COMMIT_SHA`).
    pub sha: String,
    /// The commit before it, or 40 zeros (`CI_COMMIT_BEFORE_SHA`).
    pub before_sha: String,
    /// Branch name, when on a branch (`CI_COMMIT_BRANCH`, `CI_COMMIT_REF_NAME`).
    pub branch: Option<String>,
    /// Tag name, when HEAD is exactly a tag and no branch is asked for (`CI_COMMIT_TAG`).
    pub tag: Option<String>,
    /// The default branch (`CI_DEFAULT_BRANCH`): origin's HEAD, else `main`.
    pub default_branch: String,
    /// Commit message, whole (`CI_COMMIT_MESSAGE`).
    pub message: String,
    /// Commit author as `Name <email>` (`CI_COMMIT_AUTHOR`).
    pub author: String,
    /// Commit time, ISO 8601 (`CI_COMMIT_TIMESTAMP`).
    pub timestamp: String,
    /// Project path with namespace, `group/project` (`CI_PROJECT_PATH`), from origin's URL or
    /// the directory name.
    pub project_path: String,
    /// The work tree's absolute path on the host (`CI_PROJECT_DIR` is the in-job path instead).
    pub work_tree: String,
    /// Files changed against the base ref, for `rules: changes`; `None` when no base is known
    /// (then `changes` is true, as GitLab decides for a new branch).
    pub changed_files: Option<Vec<String>>,
    /// `CI_PIPELINE_SOURCE`: `push` unless asked otherwise.
    pub pipeline_source: String,
}

/// A variable as a job receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variable {
    /// Name.
    pub key: String,
    /// Value, already expanded unless `raw`.
    pub value: String,
    /// `expand: false`: the runner must not expand it either.
    pub raw: bool,
    /// A file-type variable (its value is written to a file, the variable holds the path).
    pub file: bool,
    /// Shown in the log only masked.
    pub masked: bool,
    /// The predefined variables GitLab sends are `public`; the user's are not.
    pub public: bool,
}

/// `when:` of a job after rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    /// Runs when every earlier stage (or every need) succeeded.
    OnSuccess,
    /// Runs when something earlier failed.
    OnFailure,
    /// Runs whatever happened before.
    Always,
    /// Waits for a person (`berth exec --manual` runs it).
    Manual,
    /// Starts after `start_in` (berth waits that long).
    Delayed,
    /// Never part of the pipeline (listed only when asked).
    Never,
}

/// `allow_failure:` after rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AllowFailure {
    /// `true` or `false`.
    Bool(bool),
    /// `allow_failure: exit_codes: [...]`: only these exit codes are allowed.
    ExitCodes(Vec<i32>),
}

impl AllowFailure {
    /// Whether a job that ended with `exit_code` (None: not a script failure) may fail.
    #[must_use]
    pub fn allows(&self, exit_code: Option<i32>) -> bool {
        match self {
            Self::Bool(allowed) => *allowed,
            Self::ExitCodes(codes) => exit_code.is_some_and(|code| codes.contains(&code)),
        }
    }
}

/// One entry of `needs:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Need {
    /// The needed job's name (after matrix expansion: one entry per expanded job).
    pub job: String,
    /// Download its artifacts (`artifacts: true`, the default).
    pub artifacts: bool,
    /// `optional: true`: missing from the pipeline is not an error.
    pub optional: bool,
}

/// `image:` or one `services:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSpec {
    /// Image reference, variables expanded.
    pub name: String,
    /// `entrypoint:` override.
    pub entrypoint: Option<Vec<String>>,
    /// `command:` (services).
    pub command: Option<Vec<String>>,
    /// `alias:` (services), may list several separated by commas or spaces.
    pub alias: Option<String>,
    /// `pull_policy:` entries.
    pub pull_policy: Vec<String>,
    /// `variables:` of a service.
    pub variables: Vec<Variable>,
}

/// `artifacts:` of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Artifacts {
    /// Artifact name (`artifacts:name`).
    pub name: Option<String>,
    /// `paths:`.
    pub paths: Vec<String>,
    /// `exclude:`.
    pub exclude: Vec<String>,
    /// `untracked: true`.
    pub untracked: bool,
    /// `when:` on_success (default), on_failure, always.
    pub when: String,
    /// `expire_in:` as written.
    pub expire_in: Option<String>,
    /// `reports:` by type (`dotenv`, `junit`, ...) → paths.
    pub reports: BTreeMap<String, Vec<String>>,
}

/// One `cache:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cache {
    /// Key after `key:files`/`prefix` are computed and variables expanded.
    pub key: String,
    /// `paths:`.
    pub paths: Vec<String>,
    /// `untracked:`.
    pub untracked: bool,
    /// `policy:` pull-push (default), pull, push.
    pub policy: String,
    /// `when:` on_success (default), on_failure, always.
    pub when: String,
    /// `fallback_keys:`.
    pub fallback_keys: Vec<String>,
}

/// `retry:` of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Retry {
    /// Extra attempts, 0 to 2.
    pub max: u8,
    /// Failure reasons it retries on (`always` when unset).
    pub when: Vec<String>,
    /// Exit codes it retries on (any when empty).
    pub exit_codes: Vec<i32>,
}

/// One job of the computed pipeline (a `parallel` job is several, `build 1/3` …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Job {
    /// The name as GitLab shows it: `build`, `test 2/3`, `deploy: [aws, eu]`.
    pub name: String,
    /// The name before `parallel` expansion (the YAML key).
    pub base_name: String,
    /// Stage name.
    pub stage: String,
    /// Position of the stage in [`Pipeline::stages`].
    pub stage_index: usize,
    /// `when:` after rules.
    pub when: When,
    /// `start_in:` of a delayed job.
    pub start_in: Option<Duration>,
    /// `allow_failure:` after rules (manual jobs default to true, as in GitLab).
    pub allow_failure: AllowFailure,
    /// `needs:`; `None` when the job has no `needs:` (it waits for earlier stages).
    pub needs: Option<Vec<Need>>,
    /// `dependencies:`; `None` when unset (all earlier jobs' artifacts, or the needs').
    pub dependencies: Option<Vec<String>>,
    /// `image:`.
    pub image: Option<ImageSpec>,
    /// `services:`.
    pub services: Vec<ImageSpec>,
    /// `before_script:` lines (after `!reference` and `default:`).
    pub before_script: Vec<String>,
    /// `script:` lines.
    pub script: Vec<String>,
    /// `after_script:` lines.
    pub after_script: Vec<String>,
    /// Variables in the order the runner should define them: predefined, then global
    /// (`inherit:` applied), job, rule, matrix, CLI. Later entries win.
    pub variables: Vec<Variable>,
    /// `artifacts:`.
    pub artifacts: Option<Artifacts>,
    /// `cache:` entries.
    pub cache: Vec<Cache>,
    /// `timeout:`.
    pub timeout: Option<Duration>,
    /// `retry:`.
    pub retry: Retry,
    /// `interruptible:`.
    pub interruptible: bool,
    /// `parallel` position as (`CI_NODE_INDEX`, `CI_NODE_TOTAL`), 1-based.
    pub node: Option<(u32, u32)>,
    /// `tags:` (shown, not matched: every job runs on berth).
    pub tags: Vec<String>,
    /// `environment:name`, if any.
    pub environment: Option<String>,
    /// `coverage:` regex as written.
    pub coverage: Option<String>,
    /// `description` of a job for listings (GitLab has none; gitlab-ci-local reads a comment).
    pub description: Option<String>,
}

/// The pipeline as GitLab would create it for these facts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pipeline {
    /// Stages in order, `.pre` first and `.post` last.
    pub stages: Vec<String>,
    /// Jobs in definition order within stage order. Jobs whose rules say `never` are absent
    /// unless the caller asked to keep them.
    pub jobs: Vec<Job>,
    /// The workflow's name (`workflow:name`), if set.
    pub name: Option<String>,
}
