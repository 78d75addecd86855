//! The coordinator's HTTP server: the REST endpoints `gitlab-runner run-single` and its
//! artifact helpers call, and bare git repositories over dumb HTTP.
//!
//! It runs on its own thread and Tokio runtime behind a synchronous handle, so an embedder can
//! drive it from sync or async code. Jobs are handed out by runner token; with
//! [`Access::JobTokens`] every job request must carry the job's own random token, because the
//! job itself (its artifact uploader runs inside the sandbox) can reach this server.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::SystemTime;

use axum::Router;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;

use crate::artifact::{
    ArtifactFormat, ArtifactType, StoredArtifact, artifact_path, create_artifact_file,
};
use crate::event::{Event, Events, FinalState};
use crate::payload::JobPayload;
use crate::repo::{RepoError, Repos};
use crate::token::{JobToken, RunnerToken};

const MIB: usize = 1024 * 1024;

/// Who may call the job endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The product: PUT, PATCH and artifact uploads need the job's own token, artifact downloads
    /// the token of a running job that depends on the artifacts' job; anything else is 403.
    JobTokens,
    /// For test fakes that replay the runner by hand: no token is checked, and
    /// [`Coordinator::queue_for_any_runner`] is allowed.
    Open,
}

/// Request body caps; a larger body is answered 413 and not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// JSON bodies (`POST /jobs/request`, `PUT /jobs/:id`).
    pub json_body: usize,
    /// One `PATCH /jobs/:id/trace`.
    pub trace_patch: usize,
    /// A job's whole trace; beyond it the job is told to abort (403, then `Job-Status: failed`).
    pub trace_total: usize,
    /// One artifact upload (the multipart body).
    pub artifact_upload: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            json_body: 4 * MIB,
            trace_patch: 8 * MIB,
            trace_total: 64 * MIB,
            artifact_upload: 1024 * 1024 * 1024,
        }
    }
}

/// How to start a [`Coordinator`].
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// An existing directory for uploaded artifacts (`<dir>/<job_id>/<type>.<ext>`); only the
    /// embedder and the coordinator should be able to write it.
    pub artifacts_dir: PathBuf,
    /// Token enforcement.
    pub access: Access,
    /// Body caps.
    pub limits: Limits,
    /// Whether to keep every request ([`Coordinator::requests`]); for tests.
    pub record_requests: bool,
}

impl CoordinatorConfig {
    /// Job tokens enforced, default limits, no request recording.
    pub fn new(artifacts_dir: impl Into<PathBuf>) -> Self {
        Self {
            artifacts_dir: artifacts_dir.into(),
            access: Access::JobTokens,
            limits: Limits::default(),
            record_requests: false,
        }
    }
}

/// Errors starting the coordinator.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The listening socket could not be set up.
    #[error("failed to bind the coordinator to 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// The server's runtime or thread could not be started.
    #[error("failed to start the coordinator's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The artifacts directory is unusable.
    #[error(
        "the artifacts directory {} must be an existing directory: {source}",
        path.display()
    )]
    ArtifactsDir {
        /// The directory given.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// One thing wrong with a job given to [`Coordinator::assign`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssignProblem {
    /// Job ids start at 1.
    #[error("job id 0 is not a job id (ids start at 1)")]
    ZeroJobId,
    /// The id was given before.
    #[error("job {0} was already given to the coordinator")]
    DuplicateJob(u64),
    /// A dependency names the job itself.
    #[error("job {0} lists itself among its dependencies")]
    SelfDependency(u64),
    /// A dependency is neither an assigned job nor a stored archive.
    #[error(
        "dependency {0} is neither an assigned job nor a stored archive; assign it or store its archive first"
    )]
    UnknownDependency(u64),
}

/// Why [`Coordinator::assign`] or [`Coordinator::queue_for_any_runner`] refused a job.
#[derive(Debug, thiserror::Error)]
pub enum AssignError {
    /// The job is inconsistent; every problem is listed.
    #[error("the job cannot be assigned: {}", join(.0))]
    Invalid(Vec<AssignProblem>),
    /// No job token could be drawn.
    #[error("no random job token could be generated: {0}")]
    Random(getrandom::Error),
    /// [`Coordinator::queue_for_any_runner`] on a coordinator that enforces job tokens.
    #[error("jobs for any runner are only served with Access::Open; use assign")]
    NeedsOpenAccess,
}

fn join(problems: &[AssignProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why [`Coordinator::store_archive`] failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The job already has an archive.
    #[error("job {0} already has an artifacts archive")]
    AlreadyStored(u64),
    /// Job ids start at 1.
    #[error("job id 0 is not a job id")]
    ZeroJobId,
    /// Writing the file failed.
    #[error("storing the archive of job {job_id} at {}: {source}", path.display())]
    Io {
        /// The job.
        job_id: u64,
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
}

/// Which endpoint's answers a [`StatusRule`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `PATCH /jobs/:id/trace`.
    Trace,
    /// `PUT /jobs/:id`.
    Update,
}

/// The remote job state a `Job-Status` answer header tells the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteStatus {
    /// `canceling`: graceful cancel; the runner runs `after_script` and reports `job_canceled`.
    Canceling,
    /// `canceled`: the runner aborts the job at once.
    Canceled,
    /// `failed`: the runner aborts the job at once.
    Failed,
}

impl RemoteStatus {
    /// The header value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Canceling => "canceling",
            Self::Canceled => "canceled",
            Self::Failed => "failed",
        }
    }

    /// Parses a header value.
    pub fn parse(value: &str) -> Option<Self> {
        [Self::Canceling, Self::Canceled, Self::Failed]
            .into_iter()
            .find(|s| s.as_str() == value)
    }
}

/// A job state in a runner's `PUT /jobs/:id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// `pending`.
    Pending,
    /// `running`.
    Running,
    /// `success`.
    Success,
    /// `failed`.
    Failed,
}

impl JobState {
    /// Parses the wire name.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "pending" => Some(Self::Pending),
            "running" => Some(Self::Running),
            "success" => Some(Self::Success),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    const fn final_state(self) -> Option<FinalState> {
        match self {
            Self::Success => Some(FinalState::Success),
            Self::Failed => Some(FinalState::Failed),
            Self::Pending | Self::Running => None,
        }
    }
}

/// Adds `Job-Status` to some PATCH/PUT answers; the first matching rule wins, and rules stay
/// in force (the runner may miss one answer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRule {
    /// Only for this job (`None`: every job).
    pub job_id: Option<u64>,
    /// Only on this endpoint (`None`: both).
    pub endpoint: Option<Endpoint>,
    /// The header value.
    pub status: RemoteStatus,
    /// Only once the job's trace contains this text (empty: at once).
    pub when_trace_contains: String,
    /// Only for PUTs reporting this state (`None`: any); trace patches ignore it.
    pub when_state: Option<JobState>,
}

/// One HTTP request as the coordinator received it (kept with `record_requests`).
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string (empty if none).
    pub query: String,
    /// Request headers, lower-case names, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Request body; empty for artifact uploads, which go to disk only.
    pub body: Vec<u8>,
    /// The status code of the answer.
    pub status: u16,
    /// When the request arrived.
    pub received: SystemTime,
    /// The artifact this request stored, for a successful upload.
    pub artifact: Option<StoredArtifact>,
}

impl RecordedRequest {
    /// The first header with this (case-insensitive) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Queued,
    Running,
    Finished,
}

#[derive(Debug)]
struct AssignedJob {
    token: JobToken,
    dependencies: BTreeSet<u64>,
    phase: Phase,
}

#[derive(Debug)]
enum RunnerFilter {
    Any,
    Token(RunnerToken),
}

#[derive(Debug)]
struct QueuedJob {
    runner: RunnerFilter,
    job_id: Option<u64>,
    body: Value,
}

#[derive(Debug, Default)]
struct ServerState {
    queue: VecDeque<QueuedJob>,
    jobs: BTreeMap<u64, AssignedJob>,
    finished: BTreeSet<u64>,
    traces: BTreeMap<u64, Vec<u8>>,
    stored: BTreeMap<(u64, ArtifactType), StoredArtifact>,
    uploading: BTreeSet<(u64, ArtifactType)>,
    rules: Vec<StatusRule>,
    repos: Repos,
    trace_update_interval: Option<u32>,
    requests: Vec<RecordedRequest>,
}

#[derive(Debug)]
struct Shared {
    access: Access,
    limits: Limits,
    artifacts_dir: PathBuf,
    record_requests: bool,
    events: UnboundedSender<Event>,
    state: Mutex<ServerState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event: Event) {
        // A dropped receiver means the embedder does not want events; serving goes on.
        let _ = self.events.send(event);
    }
}

/// The running coordinator on `127.0.0.1:<ephemeral port>`. Dropping it stops the server.
#[derive(Debug)]
pub struct Coordinator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Coordinator {
    /// Starts serving; the events of every job arrive on the returned receiver.
    pub fn start(config: CoordinatorConfig) -> Result<(Self, Events), StartError> {
        let artifacts_dir_problem = |source| StartError::ArtifactsDir {
            path: config.artifacts_dir.clone(),
            source,
        };
        let metadata = std::fs::metadata(&config.artifacts_dir).map_err(artifacts_dir_problem)?;
        if !metadata.is_dir() {
            return Err(artifacts_dir_problem(std::io::Error::other(
                "not a directory",
            )));
        }
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(StartError::Bind)?;
        listener.set_nonblocking(true).map_err(StartError::Bind)?;
        let addr = listener.local_addr().map_err(StartError::Bind)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("berth-coordinator")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            access: config.access,
            limits: config.limits,
            artifacts_dir: config.artifacts_dir,
            record_requests: config.record_requests,
            events,
            state: Mutex::default(),
        });
        let app = Router::new()
            .fallback(handlers::handle)
            .with_state(Arc::clone(&shared));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(StartError::Bind)?
        };
        let thread = std::thread::Builder::new()
            .name("berth-coordinator".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = rx.await;
                    });
                    // The only error is a failing accept loop; clients see refused requests.
                    let _ = serve.await;
                });
            })
            .map_err(StartError::Runtime)?;
        let coordinator = Self {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        };
        Ok((coordinator, receiver))
    }

    /// The base URL, for `[[runners]] url` (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues `job` for the runner polling with `runner`, under a fresh random job token (its
    /// `token`, `CI_JOB_TOKEN` and the `token` of each of its dependencies, which GitLab also
    /// sets to the running job's token). Returns that token.
    pub fn assign(
        &self,
        runner: &RunnerToken,
        mut job: JobPayload,
    ) -> Result<JobToken, AssignError> {
        let mut state = self.shared.lock();
        let mut problems = Vec::new();
        if job.id == 0 {
            problems.push(AssignProblem::ZeroJobId);
        }
        let queued_for_any = state.queue.iter().any(|q| q.job_id == Some(job.id));
        if state.jobs.contains_key(&job.id) || queued_for_any {
            problems.push(AssignProblem::DuplicateJob(job.id));
        }
        let mut dependencies = BTreeSet::new();
        for dependency in &job.dependencies {
            if dependency.id == job.id {
                problems.push(AssignProblem::SelfDependency(job.id));
            } else if !state.jobs.contains_key(&dependency.id)
                && !state
                    .stored
                    .contains_key(&(dependency.id, ArtifactType::Archive))
            {
                problems.push(AssignProblem::UnknownDependency(dependency.id));
            }
            dependencies.insert(dependency.id);
        }
        if !problems.is_empty() {
            return Err(AssignError::Invalid(problems));
        }
        let token = JobToken::generate().map_err(AssignError::Random)?;
        token.as_str().clone_into(&mut job.token);
        for dependency in &mut job.dependencies {
            token.as_str().clone_into(&mut dependency.token);
        }
        // The payload renders CI_JOB_TOKEN from `token`; a caller's own value would not work.
        job.variables.retain(|v| v.key != "CI_JOB_TOKEN");
        state.jobs.insert(
            job.id,
            AssignedJob {
                token: token.clone(),
                dependencies,
                phase: Phase::Queued,
            },
        );
        state.queue.push_back(QueuedJob {
            runner: RunnerFilter::Token(runner.clone()),
            job_id: Some(job.id),
            body: job.to_json(),
        });
        Ok(token)
    }

    /// Queues a raw job document for whichever runner polls first ([`Access::Open`] only).
    pub fn queue_for_any_runner(&self, job: Value) -> Result<(), AssignError> {
        if self.shared.access != Access::Open {
            return Err(AssignError::NeedsOpenAccess);
        }
        let job_id = job["id"].as_u64();
        self.shared.lock().queue.push_back(QueuedJob {
            runner: RunnerFilter::Any,
            job_id,
            body: job,
        });
        Ok(())
    }

    /// Aborts the job: every later PATCH and PUT answer for it carries `Job-Status: canceled`.
    pub fn cancel(&self, job_id: u64) {
        self.cancel_with(job_id, RemoteStatus::Canceled);
    }

    /// Cancels the job gracefully (`Job-Status: canceling`): the runner still runs
    /// `after_script`, then reports `failed` with `job_canceled`.
    pub fn cancel_gracefully(&self, job_id: u64) {
        self.cancel_with(job_id, RemoteStatus::Canceling);
    }

    fn cancel_with(&self, job_id: u64, status: RemoteStatus) {
        let rule = StatusRule {
            job_id: Some(job_id),
            endpoint: None,
            status,
            when_trace_contains: String::new(),
            when_state: None,
        };
        self.shared.lock().rules.insert(0, rule);
    }

    /// Adds a `Job-Status` rule after the existing ones.
    pub fn inject(&self, rule: StatusRule) {
        self.shared.lock().rules.push(rule);
    }

    /// Answers every PUT and PATCH with `X-GitLab-Trace-Update-Interval: seconds` (how often
    /// the runner sends its trace).
    pub fn set_trace_update_interval(&self, seconds: u32) {
        self.shared.lock().trace_update_interval = Some(seconds);
    }

    /// Serves the bare repository `dir` (prepared with `git update-server-info`) at
    /// `/<url_path>`, for example `group/project.git`.
    pub fn serve_repo(&self, url_path: &str, dir: &Path) -> Result<(), RepoError> {
        self.shared.lock().repos.insert(url_path, dir)
    }

    /// Stores `contents` as the `archive` artifact of `job_id` (for example one kept from an
    /// earlier run), so jobs depending on it can download it.
    pub fn store_archive(
        &self,
        job_id: u64,
        mut contents: impl std::io::Read,
    ) -> Result<StoredArtifact, StoreError> {
        if job_id == 0 {
            return Err(StoreError::ZeroJobId);
        }
        let key = (job_id, ArtifactType::Archive);
        let path = artifact_path(
            &self.shared.artifacts_dir,
            job_id,
            ArtifactType::Archive,
            ArtifactFormat::Zip,
        );
        {
            let mut state = self.shared.lock();
            if state.stored.contains_key(&key) || !state.uploading.insert(key) {
                return Err(StoreError::AlreadyStored(job_id));
            }
        }
        let io_error = |source| StoreError::Io {
            job_id,
            path: path.clone(),
            source,
        };
        let written = create_artifact_file(&path).and_then(|mut file| {
            let size = std::io::copy(&mut contents, &mut file)?;
            file.sync_all()?;
            Ok(size)
        });
        let mut state = self.shared.lock();
        state.uploading.remove(&key);
        let size = written.map_err(|e| {
            let _ = std::fs::remove_file(&path);
            io_error(e)
        })?;
        let stored = StoredArtifact {
            job_id,
            artifact_type: ArtifactType::Archive,
            format: ArtifactFormat::Zip,
            filename: "artifacts.zip".to_owned(),
            path,
            size,
        };
        state.stored.insert(key, stored.clone());
        Ok(stored)
    }

    /// The stored `archive` artifact of a job.
    pub fn archive(&self, job_id: u64) -> Option<StoredArtifact> {
        self.shared
            .lock()
            .stored
            .get(&(job_id, ArtifactType::Archive))
            .cloned()
    }

    /// Every stored artifact, by job and type.
    pub fn stored_artifacts(&self) -> Vec<StoredArtifact> {
        self.shared.lock().stored.values().cloned().collect()
    }

    /// The job's trace so far.
    pub fn trace(&self, job_id: u64) -> Vec<u8> {
        self.shared
            .lock()
            .traces
            .get(&job_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Every request so far, in arrival order (empty unless `record_requests`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Stops the server and waits for its thread (also done on drop).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        self.stop();
    }
}

mod handlers;

#[cfg(test)]
mod tests;
