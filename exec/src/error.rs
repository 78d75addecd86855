//! How `berth exec` fails before or around the jobs: every error names the problem and the fix.
//! A job that fails is not an error; it is an ending in the summary.

use std::path::PathBuf;

use berth_sandbox::process::ProcessError;

/// An error of `berth exec` itself or of the project's YAML (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Not in a git work tree.
    #[error("{} is not inside a git work tree: run berth exec in your project's checkout ({detail})", dir.display())]
    NotARepository {
        /// Where berth exec was started.
        dir: PathBuf,
        /// What git said.
        detail: String,
    },
    /// Another user owns the repository: git would run commands its config names as us.
    #[error("{} is owned by uid {owner}, and berth exec runs as uid {uid}: run berth exec as the repository's owner (git runs commands a repository's config names, as whoever runs git)", path.display())]
    NotOwned {
        /// The work tree or its `.git`.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Who runs berth exec.
        uid: u32,
    },
    /// The repository has no commit for the runner to check out.
    #[error("{} has no commit yet: commit once (`git commit --allow-empty -m init`), then run berth exec", work_tree.display())]
    NoCommit {
        /// The work tree.
        work_tree: PathBuf,
    },
    /// git failed.
    #[error("git failed: {source}")]
    Git {
        /// The failed command.
        #[source]
        source: ProcessError,
    },
    /// The pipeline's YAML is invalid.
    #[error("{file} is invalid:\n{errors}")]
    Config {
        /// The CI file.
        file: String,
        /// Every problem, one per line, in GitLab's words.
        errors: String,
    },
    /// The selection names what the pipeline does not have.
    #[error(transparent)]
    Selection(#[from] crate::plan::SelectionError),
    /// A variables argument or file is malformed.
    #[error("{0}")]
    Variables(String),
    /// The berth config the jobs would run with is unusable.
    #[error("the berth config: {0}")]
    BerthConfig(String),
    /// A file berth exec keeps under `.berth/` cannot be written.
    #[error("cannot write {}: {source} (is the project directory writable?)", path.display())]
    State {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A file of the project cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// gitlab-runner is not available.
    #[error(
        "no gitlab-runner binary: {detail} (install gitlab-runner, put it on PATH or set gitlab_runner_binary in the berth config; `berth doctor` says how)"
    )]
    NoRunner {
        /// Where berth looked.
        detail: String,
    },
    /// The embedded coordinator could not start.
    #[error("the embedded coordinator could not start: {0}")]
    Coordinator(String),
    /// gitlab-runner could not be started or ended abnormally without reporting the job.
    #[error("gitlab-runner failed for job {job:?}: {detail}")]
    Runner {
        /// The job.
        job: String,
        /// What happened.
        detail: String,
    },
}
