//! The seam between the run loop and the embedded coordinator: jobs bound to runner tokens go
//! in, the coordinator's events (trace bytes, the final update, stored artifacts) come out.

use std::path::PathBuf;

use berth_coordinator::payload::JobPayload;

use crate::error::ExecError;

/// What the coordinator saw a runner do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// New bytes of a job's trace, in order.
    Trace {
        /// The job.
        job_id: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The runner's final update of a job.
    Finished {
        /// The job.
        job_id: u64,
        /// `success` or `failed`.
        state: String,
        /// GitLab's failure reason (empty on success).
        failure_reason: String,
        /// The script's exit code, when the runner sent one.
        exit_code: Option<i32>,
    },
    /// An artifact the runner uploaded, stored on disk.
    Artifact {
        /// The job.
        job_id: u64,
        /// `archive`, `dotenv`, `junit`, ...
        artifact_type: String,
        /// Where it is stored.
        path: PathBuf,
    },
}

/// The coordinator as the run loop uses it.
pub trait Serve {
    /// Its base URL.
    fn url(&self) -> String;

    /// A fresh job token.
    ///
    /// # Errors
    /// No randomness.
    fn new_job_token(&mut self) -> Result<String, ExecError>;

    /// A fresh runner token.
    ///
    /// # Errors
    /// No randomness.
    fn new_runner_token(&mut self) -> Result<String, ExecError>;

    /// Hands `job` to the runner with `runner_token` only; its job token may download the
    /// artifacts of the jobs `dependency_ids` and no others.
    ///
    /// # Errors
    /// The token or payload is refused.
    fn assign(
        &mut self,
        runner_token: &str,
        job: &JobPayload,
        dependency_ids: &[u64],
    ) -> Result<(), ExecError>;

    /// The next event, waiting for it; `None` when the coordinator stopped.
    fn next_event(&mut self) -> impl std::future::Future<Output = Option<Event>>;

    /// The next event if one is queued.
    fn try_event(&mut self) -> Option<Event>;
}
