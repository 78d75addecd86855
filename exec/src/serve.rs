//! The seam between the run loop and the embedded coordinator: jobs bound to runner tokens go
//! in, the coordinator's events (trace bytes, the final update, stored artifacts) come out.

use std::path::{Path, PathBuf};

use berth_coordinator::payload::JobPayload;
use berth_coordinator::{
    Coordinator, CoordinatorConfig, Events, FinalState, JobToken, RunnerToken,
};

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
        /// Whether the job succeeded.
        success: bool,
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

    /// A fresh runner token.
    ///
    /// # Errors
    /// No randomness.
    fn new_runner_token(&mut self) -> Result<String, ExecError>;

    /// Hands `job` to the runner with `runner_token` only, under a fresh job token (returned)
    /// that may download the artifacts of the job's dependencies and no others.
    ///
    /// # Errors
    /// The token or payload is refused.
    fn assign(&mut self, runner_token: &str, job: JobPayload) -> Result<String, ExecError>;

    /// The next event, waiting for it; `None` when the coordinator stopped.
    fn next_event(&mut self) -> impl Future<Output = Option<Event>>;

    /// The next event if one is queued.
    fn try_event(&mut self) -> Option<Event>;
}

/// The embedded coordinator (`berth-coordinator`) on loopback, job tokens enforced.
#[derive(Debug)]
pub struct CoordinatorServe {
    coordinator: Coordinator,
    events: Events,
}

impl CoordinatorServe {
    /// Starts the coordinator; uploads are stored beneath `uploads`.
    ///
    /// # Errors
    /// It cannot bind loopback or start its thread.
    pub fn start(uploads: &Path) -> Result<Self, ExecError> {
        let (coordinator, events) = Coordinator::start(CoordinatorConfig::new(uploads))
            .map_err(|e| ExecError::Coordinator(e.to_string()))?;
        Ok(Self {
            coordinator,
            events,
        })
    }

    /// Serves the bare repository `dir` as `<project_path>.git`.
    ///
    /// # Errors
    /// The path or directory is refused.
    pub fn serve_repo(&self, project_path: &str, dir: &Path) -> Result<(), ExecError> {
        self.coordinator
            .serve_repo(&format!("{project_path}.git"), dir)
            .map_err(|e| ExecError::Coordinator(e.to_string()))
    }

    fn convert(event: berth_coordinator::Event) -> Option<Event> {
        match event {
            berth_coordinator::Event::JobPickedUp { .. } => None,
            berth_coordinator::Event::TraceAppended { job_id, bytes } => {
                Some(Event::Trace { job_id, bytes })
            }
            berth_coordinator::Event::JobFinished {
                job_id,
                state,
                failure_reason,
                exit_code,
            } => Some(Event::Finished {
                job_id,
                success: state == FinalState::Success,
                failure_reason: failure_reason.unwrap_or_default(),
                exit_code,
            }),
            berth_coordinator::Event::ArtifactStored {
                job_id,
                artifact_type,
                path,
                ..
            } => Some(Event::Artifact {
                job_id,
                artifact_type: artifact_type.as_str().to_owned(),
                path,
            }),
        }
    }
}

impl Serve for CoordinatorServe {
    fn url(&self) -> String {
        self.coordinator.url()
    }

    fn new_runner_token(&mut self) -> Result<String, ExecError> {
        let random = JobToken::generate().map_err(|e| {
            ExecError::Coordinator(format!("no randomness for a runner token: {e}"))
        })?;
        Ok(format!("glrt-{}", random.as_str()))
    }

    fn assign(&mut self, runner_token: &str, job: JobPayload) -> Result<String, ExecError> {
        let runner = RunnerToken::new(runner_token)
            .ok_or_else(|| ExecError::Coordinator("an empty runner token".to_owned()))?;
        self.coordinator
            .assign(&runner, job)
            .map(|token| token.as_str().to_owned())
            .map_err(|e| ExecError::Coordinator(e.to_string()))
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            let event = self.events.recv().await?;
            if let Some(converted) = Self::convert(event) {
                return Some(converted);
            }
        }
    }

    fn try_event(&mut self) -> Option<Event> {
        while let Ok(event) = self.events.try_recv() {
            if let Some(converted) = Self::convert(event) {
                return Some(converted);
            }
        }
        None
    }
}
