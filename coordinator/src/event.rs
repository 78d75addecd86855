//! What the coordinator tells the program embedding it, in the order it happened.

use std::path::PathBuf;

use crate::artifact::{ArtifactFormat, ArtifactType};

/// The end state a runner reports in its final `PUT /jobs/:id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalState {
    /// `success`.
    Success,
    /// `failed` (including canceled and timed-out jobs; see the failure reason).
    Failed,
}

/// One thing that happened to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A runner was handed the job (`POST /jobs/request` answered 201).
    JobPickedUp {
        /// The job.
        job_id: u64,
    },
    /// The job's trace grew; `bytes` are only the new bytes, in trace order.
    TraceAppended {
        /// The job.
        job_id: u64,
        /// The bytes appended.
        bytes: Vec<u8>,
    },
    /// The runner's final `PUT /jobs/:id` (sent once per job; later ones are not reported).
    JobFinished {
        /// The job.
        job_id: u64,
        /// `success` or `failed`.
        state: FinalState,
        /// `failure_reason`, for example `script_failure` or `job_canceled`.
        failure_reason: Option<String>,
        /// The script's exit code; the runner omits it when it is 0.
        exit_code: Option<i32>,
    },
    /// An uploaded artifact is complete on disk.
    ArtifactStored {
        /// The job that uploaded it.
        job_id: u64,
        /// Its `artifact_type`.
        artifact_type: ArtifactType,
        /// Its `artifact_format`.
        format: ArtifactFormat,
        /// The uploader's file name.
        filename: String,
        /// Where it is stored.
        path: PathBuf,
    },
}

/// The receiving end of the events; `recv().await` in async code, `blocking_recv()` elsewhere.
pub type Events = tokio::sync::mpsc::UnboundedReceiver<Event>;
