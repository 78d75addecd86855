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
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc::UnboundedSender;

use crate::artifact::{
    ArtifactFormat, ArtifactType, StoredArtifact, artifact_path, create_artifact_file,
    parse_upload_query,
};
use crate::event::{Event, Events, FinalState};
use crate::payload::JobPayload;
use crate::repo::{RepoError, Repos};
use crate::token::{JobToken, RunnerToken};
use crate::trace::{self, TraceRejection};

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
            .fallback(handle)
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

/// An answer before it becomes an HTTP response.
struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: ReplyBody,
}

enum ReplyBody {
    Bytes(Vec<u8>),
    File { file: tokio::fs::File, len: u64 },
}

impl Reply {
    const fn status(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: ReplyBody::Bytes(Vec::new()),
        }
    }

    fn json(status: StatusCode, value: &Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: ReplyBody::Bytes(value.to_string().into_bytes()),
        }
    }

    fn file(file: std::fs::File, content_type: &str) -> Self {
        match file.metadata() {
            Ok(metadata) => Self {
                status: StatusCode::OK,
                headers: vec![("content-type", content_type.to_owned())],
                body: ReplyBody::File {
                    file: tokio::fs::File::from_std(file),
                    len: metadata.len(),
                },
            },
            Err(_) => Self::status(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    fn into_response(self) -> Response {
        let mut response = match self.body {
            ReplyBody::Bytes(bytes) => Response::new(Body::from(bytes)),
            ReplyBody::File { file, len } => {
                let mut response =
                    Response::new(Body::from_stream(tokio_util::io::ReaderStream::new(file)));
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                response
            }
        };
        *response.status_mut() = self.status;
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(name, value);
            }
        }
        response
    }
}

/// What a handled request leaves for the record.
struct Handled {
    reply: Reply,
    body: Vec<u8>,
    artifact: Option<StoredArtifact>,
}

impl From<Reply> for Handled {
    fn from(reply: Reply) -> Self {
        Self {
            reply,
            body: Vec::new(),
            artifact: None,
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let received = SystemTime::now();
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let handled = route(&shared, &parts.method, &path, &query, &parts.headers, body).await;
    if shared.record_requests {
        let recorded = RecordedRequest {
            method: parts.method.to_string(),
            path,
            query,
            headers: parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: handled.body,
            status: handled.reply.status.as_u16(),
            received,
            artifact: handled.artifact,
        };
        shared.lock().requests.push(recorded);
    }
    handled.reply.into_response()
}

async fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["api", "v4", "jobs", "request"]) => {
            with_body(headers, body, shared.limits.json_body, |body| {
                request_job(shared, body)
            })
            .await
        }
        ("PUT", ["api", "v4", "jobs", id]) => match parse_job_id(id) {
            Some(id) => {
                with_body(headers, body, shared.limits.json_body, |body| {
                    update_job(shared, id, body)
                })
                .await
            }
            None => Reply::status(StatusCode::NOT_FOUND).into(),
        },
        ("PATCH", ["api", "v4", "jobs", id, "trace"]) => match parse_job_id(id) {
            Some(id) => {
                with_body(headers, body, shared.limits.trace_patch, |body| {
                    patch_trace(shared, id, headers, body)
                })
                .await
            }
            None => Reply::status(StatusCode::NOT_FOUND).into(),
        },
        ("POST", ["api", "v4", "jobs", id, "artifacts"]) => match parse_job_id(id) {
            Some(id) => upload_artifact(shared, id, query, headers, body).await,
            None => Reply::status(StatusCode::NOT_FOUND).into(),
        },
        ("GET", ["api", "v4", "jobs", id, "artifacts"]) => match parse_job_id(id) {
            Some(id) => download_artifact(shared, id, headers).into(),
            None => Reply::status(StatusCode::NOT_FOUND).into(),
        },
        ("GET" | "HEAD", _) => match shared.lock().repos.open(path) {
            Some(file) => Reply::file(file, "application/octet-stream"),
            None => Reply::status(StatusCode::NOT_FOUND),
        }
        .into(),
        _ => Reply::status(StatusCode::NOT_FOUND).into(),
    }
}

fn parse_job_id(segment: &str) -> Option<u64> {
    segment.parse().ok().filter(|id| *id > 0)
}

/// Reads the whole body (at most `limit` bytes, else 413) and answers with `answer`.
async fn with_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    answer: impl FnOnce(&[u8]) -> Reply,
) -> Handled {
    if declared_length(headers).is_some_and(|len| len > limit as u64) {
        return Reply::status(StatusCode::PAYLOAD_TOO_LARGE).into();
    }
    match to_bytes(body, limit).await {
        Ok(bytes) => Handled {
            reply: answer(&bytes),
            body: bytes.to_vec(),
            artifact: None,
        },
        // Over the limit, or the client went away; either way nothing is kept.
        Err(_) => Reply::status(StatusCode::PAYLOAD_TOO_LARGE).into(),
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /jobs/request`. Only `token` matters; the runner sends much more and varies it by
/// version, so other fields are not looked at (GitLab ignores unknown ones too).
#[derive(Deserialize)]
struct JobRequestBody {
    token: Option<String>,
}

fn request_job(shared: &Shared, body: &[u8]) -> Reply {
    let Ok(request) = serde_json::from_slice::<JobRequestBody>(body) else {
        return Reply::status(StatusCode::BAD_REQUEST);
    };
    let presented = request.token.unwrap_or_default();
    let mut state = shared.lock();
    let position = state.queue.iter().position(|q| match &q.runner {
        RunnerFilter::Any => true,
        RunnerFilter::Token(token) => token.matches(&presented),
    });
    let Some(job) = position.and_then(|p| state.queue.remove(p)) else {
        return Reply::status(StatusCode::NO_CONTENT);
    };
    if let Some(job_id) = job.job_id {
        if let Some(assigned) = state.jobs.get_mut(&job_id) {
            assigned.phase = Phase::Running;
        }
        shared.emit(Event::JobPickedUp { job_id });
    }
    Reply::json(StatusCode::CREATED, &job.body)
}

/// Whether `presented` is the token of `job_id`, which a runner is running.
fn may_act_for(shared: &Shared, state: &ServerState, job_id: u64, presented: Option<&str>) -> bool {
    shared.access == Access::Open
        || state.jobs.get(&job_id).is_some_and(|job| {
            job.phase == Phase::Running && presented.is_some_and(|t| job.token.matches(t))
        })
}

/// `PUT /jobs/:id`; the runner's body has many more fields, which do not matter here.
#[derive(Deserialize)]
struct UpdateJobBody {
    token: Option<String>,
    state: JobState,
    failure_reason: Option<String>,
    exit_code: Option<i32>,
}

fn update_job(shared: &Shared, job_id: u64, body: &[u8]) -> Reply {
    let Ok(update) = serde_json::from_slice::<UpdateJobBody>(body) else {
        return Reply::status(StatusCode::BAD_REQUEST);
    };
    let mut state = shared.lock();
    if !may_act_for(shared, &state, job_id, update.token.as_deref()) {
        return Reply::status(StatusCode::FORBIDDEN);
    }
    if let Some(final_state) = update.state.final_state()
        && state.finished.insert(job_id)
    {
        if let Some(job) = state.jobs.get_mut(&job_id) {
            job.phase = Phase::Finished;
        }
        shared.emit(Event::JobFinished {
            job_id,
            state: final_state,
            failure_reason: update.failure_reason.filter(|r| !r.is_empty()),
            exit_code: update.exit_code,
        });
    }
    let mut reply = Reply::status(StatusCode::OK);
    add_runner_headers(
        &state,
        job_id,
        Endpoint::Update,
        Some(update.state),
        &mut reply,
    );
    reply
}

fn patch_trace(shared: &Shared, job_id: u64, headers: &HeaderMap, body: &[u8]) -> Reply {
    let mut state = shared.lock();
    if !may_act_for(shared, &state, job_id, header_str(headers, "job-token")) {
        return Reply::status(StatusCode::FORBIDDEN);
    }
    let start = header_str(headers, "content-range").and_then(trace::content_range_start);
    let trace = state.traces.entry(job_id).or_default();
    match trace::append(trace, start, body, shared.limits.trace_total) {
        Ok(new) => {
            let len = trace.len();
            if !new.is_empty() {
                shared.emit(Event::TraceAppended {
                    job_id,
                    bytes: trace[new].to_vec(),
                });
            }
            let mut reply = Reply::status(StatusCode::ACCEPTED);
            reply.headers.push(("range", format!("0-{len}")));
            add_runner_headers(&state, job_id, Endpoint::Trace, None, &mut reply);
            reply
        }
        Err(TraceRejection::Gap { len }) => {
            let mut reply = Reply::status(StatusCode::RANGE_NOT_SATISFIABLE);
            reply.headers.push(("range", format!("0-{len}")));
            reply
        }
        Err(TraceRejection::TooLong) => {
            // As GitLab does with an oversized log: refuse, and have the runner abort the job.
            state.rules.insert(
                0,
                StatusRule {
                    job_id: Some(job_id),
                    endpoint: None,
                    status: RemoteStatus::Failed,
                    when_trace_contains: String::new(),
                    when_state: None,
                },
            );
            Reply::status(StatusCode::FORBIDDEN)
        }
    }
}

fn add_runner_headers(
    state: &ServerState,
    job_id: u64,
    endpoint: Endpoint,
    job_state: Option<JobState>,
    reply: &mut Reply,
) {
    if let Some(seconds) = state.trace_update_interval {
        reply
            .headers
            .push(("x-gitlab-trace-update-interval", seconds.to_string()));
    }
    let trace = state
        .traces
        .get(&job_id)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let fired = state.rules.iter().find(|rule| {
        rule.job_id.is_none_or(|id| id == job_id)
            && rule.endpoint.is_none_or(|e| e == endpoint)
            && (endpoint == Endpoint::Trace
                || rule.when_state.is_none()
                || rule.when_state == job_state)
            && contains(trace, rule.when_trace_contains.as_bytes())
    });
    if let Some(rule) = fired {
        reply
            .headers
            .push(("job-status", rule.status.as_str().to_owned()));
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Removes a half-written upload and its reservation unless the upload completed, including
/// when the connection drops mid-body and the handler is dropped with it.
struct UploadGuard<'s> {
    shared: &'s Shared,
    key: (u64, ArtifactType),
    path: PathBuf,
    file_created: bool,
    committed: bool,
}

impl Drop for UploadGuard<'_> {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        if self.file_created {
            let _ = std::fs::remove_file(&self.path);
        }
        self.shared.lock().uploading.remove(&self.key);
    }
}

async fn upload_artifact(
    shared: &Shared,
    job_id: u64,
    query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Handled {
    let limit = shared.limits.artifact_upload;
    let upload = match parse_upload_query(query) {
        Ok(upload) => upload,
        Err(problem) => {
            return Reply::json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"message": problem}),
            )
            .into();
        }
    };
    let Some(boundary) = header_str(headers, header::CONTENT_TYPE.as_str())
        .and_then(|ct| multer::parse_boundary(ct).ok())
    else {
        return Reply::status(StatusCode::BAD_REQUEST).into();
    };
    let key = (job_id, upload.artifact_type);
    {
        let mut state = shared.lock();
        if !may_act_for(shared, &state, job_id, header_str(headers, "job-token")) {
            return Reply::status(StatusCode::FORBIDDEN).into();
        }
        if declared_length(headers).is_some_and(|len| len > limit) {
            return Reply::status(StatusCode::PAYLOAD_TOO_LARGE).into();
        }
        if state.stored.contains_key(&key) || !state.uploading.insert(key) {
            let message = format!("job {job_id} already has a {} artifact", key.1.as_str());
            return Reply::json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"message": message}),
            )
            .into();
        }
    }
    let mut guard = UploadGuard {
        shared,
        key,
        path: artifact_path(
            &shared.artifacts_dir,
            job_id,
            upload.artifact_type,
            upload.format,
        ),
        file_created: false,
        committed: false,
    };
    let stored = match receive_upload(&mut guard, limit, boundary, body).await {
        Ok((filename, size)) => StoredArtifact {
            job_id,
            artifact_type: upload.artifact_type,
            format: upload.format,
            filename,
            path: guard.path.clone(),
            size,
        },
        Err(status) => return Reply::status(status).into(),
    };
    {
        let mut state = shared.lock();
        state.uploading.remove(&key);
        state.stored.insert(key, stored.clone());
        guard.committed = true;
        shared.emit(Event::ArtifactStored {
            job_id,
            artifact_type: stored.artifact_type,
            format: stored.format,
            filename: stored.filename.clone(),
            path: stored.path.clone(),
        });
    }
    Handled {
        reply: Reply::json(StatusCode::CREATED, &serde_json::json!({})),
        body: Vec::new(),
        artifact: Some(stored),
    }
}

/// Streams the one `file` field of the multipart body to the guard's path; returns the file
/// name and size, or the status to answer with.
async fn receive_upload(
    guard: &mut UploadGuard<'_>,
    limit: u64,
    boundary: String,
    body: Body,
) -> Result<(String, u64), StatusCode> {
    let constraints = multer::Constraints::new()
        .allowed_fields(vec!["file"])
        .size_limit(
            multer::SizeLimit::new()
                .whole_stream(limit)
                .per_field(limit),
        );
    let mut multipart =
        multer::Multipart::with_constraints(body.into_data_stream(), boundary, constraints);
    let mut field = match multipart.next_field().await {
        Ok(Some(field)) => field,
        Ok(None) => return Err(StatusCode::BAD_REQUEST),
        Err(e) => return Err(multipart_status(&e)),
    };
    let filename = field.file_name().unwrap_or("artifacts").to_owned();
    let file = create_artifact_file(&guard.path).map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    guard.file_created = true;
    let mut file = tokio::fs::File::from_std(file);
    let mut size: u64 = 0;
    loop {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                size = size.saturating_add(chunk.len() as u64);
                if size > limit {
                    return Err(StatusCode::PAYLOAD_TOO_LARGE);
                }
                file.write_all(&chunk)
                    .await
                    .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
            }
            Ok(None) => break,
            Err(e) => return Err(multipart_status(&e)),
        }
    }
    drop(field);
    match multipart.next_field().await {
        Ok(None) => {}
        Ok(Some(_)) => return Err(StatusCode::BAD_REQUEST),
        Err(e) => return Err(multipart_status(&e)),
    }
    file.sync_all()
        .await
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok((filename, size))
}

fn multipart_status(error: &multer::Error) -> StatusCode {
    match error {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

/// `GET /jobs/:id/artifacts`: the archive of job `:id`, for a running job that lists it among
/// its dependencies.
fn download_artifact(shared: &Shared, job_id: u64, headers: &HeaderMap) -> Reply {
    let state = shared.lock();
    let presented = header_str(headers, "job-token");
    let allowed = shared.access == Access::Open
        || presented.is_some_and(|token| {
            state.jobs.values().any(|job| {
                job.phase == Phase::Running
                    && job.dependencies.contains(&job_id)
                    && job.token.matches(token)
            })
        });
    if !allowed {
        return Reply::status(StatusCode::FORBIDDEN);
    }
    let Some(archive) = state.stored.get(&(job_id, ArtifactType::Archive)) else {
        return Reply::status(StatusCode::NOT_FOUND);
    };
    match std::fs::File::open(&archive.path) {
        Ok(file) => Reply::file(file, "application/zip"),
        Err(_) => Reply::status(StatusCode::NOT_FOUND),
    }
}

#[cfg(test)]
mod tests;
