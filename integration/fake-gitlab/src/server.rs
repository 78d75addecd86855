//! The fake GitLab coordinator: the REST endpoints `gitlab-runner run-single` and the
//! artifacts helpers call (contract §4.2), plus git repositories over dumb HTTP.
//!
//! The server runs on its own thread and Tokio runtime, so tests stay synchronous. Every request
//! is recorded ([`RecordedRequest`]); the trace is assembled from the `Content-Range` patches,
//! and uploaded artifacts are kept, so a test can assert what GitLab would have seen.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::Value;

use crate::payload::JobPayload;

/// Errors of the fake coordinator.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket could not be set up.
    #[error("failed to bind the fake GitLab to 127.0.0.1: {0}")]
    Bind(#[source] std::io::Error),
    /// The server's runtime could not be built.
    #[error("failed to start the fake GitLab's runtime: {0}")]
    Runtime(#[source] std::io::Error),
}

/// One HTTP request as the fake received it.
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
    /// Request body.
    pub body: Vec<u8>,
    /// The status code the fake answered with.
    pub status: u16,
    /// When the request had been read (before the answer), for ordering against driver records.
    pub received: std::time::SystemTime,
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

/// A file uploaded with `POST /jobs/:id/artifacts`.
#[derive(Debug, Clone)]
pub struct StoredArtifact {
    /// The job the upload was for.
    pub job_id: u64,
    /// The multipart field name (the runner uses `file`).
    pub field: String,
    /// The multipart file name, for example `artifacts.zip`.
    pub filename: String,
    /// The query string of the upload (`artifact_format=zip&artifact_type=archive...`).
    pub query: String,
    /// The `JOB-TOKEN` header sent with it.
    pub job_token: Option<String>,
    /// File content.
    pub data: Vec<u8>,
}

/// Which endpoint's response an [`Injection`] applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `PATCH /jobs/:id/trace`.
    Trace,
    /// `PUT /jobs/:id`.
    Update,
}

/// A `Job-Status` header to add to some responses, for cancel and abort tests.
#[derive(Debug, Clone)]
pub struct Injection {
    /// Which responses carry it.
    pub endpoint: Endpoint,
    /// The header value: `canceling` (graceful cancel), `canceled` or `failed` (abort).
    pub job_status: String,
    /// Only once the assembled trace of the job contains this text (empty: at once).
    pub when_trace_contains: String,
    /// Only for PUTs whose body has this `state` (empty: any). Ignored for trace patches.
    pub when_state: String,
}

impl Injection {
    /// Graceful cancel (`Job-Status: canceling`) on the trace patches, once the trace contains
    /// `marker`.
    pub fn cancel_when_trace_contains(marker: &str) -> Self {
        Self {
            endpoint: Endpoint::Trace,
            job_status: "canceling".to_owned(),
            when_trace_contains: marker.to_owned(),
            when_state: String::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    jobs: VecDeque<Value>,
    requests: Vec<RecordedRequest>,
    traces: BTreeMap<u64, Vec<u8>>,
    artifacts: Vec<StoredArtifact>,
    downloads: BTreeMap<u64, Vec<u8>>,
    repos: BTreeMap<String, PathBuf>,
    injections: Vec<Injection>,
    trace_update_interval: Option<u32>,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Inner> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running fake coordinator. Dropping it stops the server.
#[derive(Debug)]
pub struct FakeGitLab {
    addr: SocketAddr,
    shared: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl FakeGitLab {
    /// Starts the fake on `127.0.0.1` and an ephemeral port.
    pub fn start() -> Result<Self, ServerError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(ServerError::Bind)?;
        listener.set_nonblocking(true).map_err(ServerError::Bind)?;
        let addr = listener.local_addr().map_err(ServerError::Bind)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let shared = Shared::default();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let listener = {
            let _guard = runtime.enter();
            tokio::net::TcpListener::from_std(listener).map_err(ServerError::Bind)?
        };
        let thread = std::thread::Builder::new()
            .name("fake-gitlab".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = rx.await;
                    });
                    // The only error is a failing accept loop; tests see it as refused requests.
                    let _ = serve.await;
                });
            })
            .map_err(ServerError::Runtime)?;
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The base URL, for `[[runners]] url` (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The socket address.
    pub const fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a job; `POST /jobs/request` hands jobs out in order, then answers 204.
    pub fn push_job(&self, job: &JobPayload) {
        self.push_job_json(job.to_json());
    }

    /// Queues a raw job document.
    pub fn push_job_json(&self, job: Value) {
        lock(&self.shared).jobs.push_back(job);
    }

    /// Serves the bare repository `dir` (prepared with `git update-server-info`) at
    /// `/<url_path>`, for example `group/project.git`.
    pub fn serve_repo(&self, url_path: &str, dir: &Path) {
        let key = format!("/{}", url_path.trim_matches('/'));
        lock(&self.shared).repos.insert(key, dir.to_path_buf());
    }

    /// Serves `zip` for `GET /jobs/<job_id>/artifacts` (dependencies).
    pub fn serve_artifacts(&self, job_id: u64, zip: Vec<u8>) {
        lock(&self.shared).downloads.insert(job_id, zip);
    }

    /// Adds a `Job-Status` injection.
    pub fn inject(&self, injection: Injection) {
        lock(&self.shared).injections.push(injection);
    }

    /// Answers every PUT and PATCH with `X-GitLab-Trace-Update-Interval: seconds`.
    pub fn set_trace_update_interval(&self, seconds: u32) {
        lock(&self.shared).trace_update_interval = Some(seconds);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared).requests.clone()
    }

    /// The JSON bodies of every `PUT /jobs/<job_id>`, in order.
    pub fn job_updates(&self, job_id: u64) -> Vec<Value> {
        let path = format!("/api/v4/jobs/{job_id}");
        lock(&self.shared)
            .requests
            .iter()
            .filter(|r| r.method == "PUT" && r.path == path)
            .filter_map(RecordedRequest::json)
            .collect()
    }

    /// The recorded last `PUT /jobs/<job_id>` whose state is not `running`.
    pub fn final_update_request(&self, job_id: u64) -> Option<RecordedRequest> {
        let path = format!("/api/v4/jobs/{job_id}");
        lock(&self.shared)
            .requests
            .iter()
            .rev()
            .find(|r| {
                r.method == "PUT"
                    && r.path == path
                    && r.json().is_some_and(|v| v["state"] != "running")
            })
            .cloned()
    }

    /// The last `PUT /jobs/<job_id>` whose state is not `running`.
    pub fn final_update(&self, job_id: u64) -> Option<FinalUpdate> {
        self.job_updates(job_id)
            .into_iter()
            .rev()
            .find(|u| u["state"] != "running")
            .map(FinalUpdate)
    }

    /// The trace assembled from the patches so far.
    pub fn trace(&self, job_id: u64) -> Vec<u8> {
        lock(&self.shared)
            .traces
            .get(&job_id)
            .cloned()
            .unwrap_or_default()
    }

    /// The trace as (lossy) text.
    pub fn trace_text(&self, job_id: u64) -> String {
        String::from_utf8_lossy(&self.trace(job_id)).into_owned()
    }

    /// Checks the assembled trace against the final PUT's `output.checksum` and `bytesize`.
    pub fn verify_trace(&self, job_id: u64) -> Result<(), TraceMismatch> {
        let update = self
            .final_update(job_id)
            .ok_or(TraceMismatch::NoFinalUpdate)?;
        let trace = self.trace(job_id);
        let want_size = update.0["output"]["bytesize"].as_u64();
        let want_sum = update.0["output"]["checksum"].as_str().map(str::to_owned);
        let got_sum = format!("crc32:{:08x}", crc32fast::hash(&trace));
        let got_size = trace.len() as u64;
        if want_size != Some(got_size) || want_sum.as_deref() != Some(got_sum.as_str()) {
            return Err(TraceMismatch::Differs {
                want_size,
                want_sum,
                got_size,
                got_sum,
            });
        }
        Ok(())
    }

    /// Artifacts uploaded so far.
    pub fn artifacts(&self) -> Vec<StoredArtifact> {
        lock(&self.shared).artifacts.clone()
    }
}

impl Drop for FakeGitLab {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The final `PUT /jobs/:id` body, with accessors for what tests assert.
#[derive(Debug, Clone)]
pub struct FinalUpdate(pub Value);

impl FinalUpdate {
    /// `state`: `success` or `failed`.
    pub fn state(&self) -> &str {
        self.0["state"].as_str().unwrap_or_default()
    }

    /// `failure_reason`, empty when absent.
    pub fn failure_reason(&self) -> &str {
        self.0["failure_reason"].as_str().unwrap_or_default()
    }

    /// `exit_code`; the runner omits it when 0.
    pub fn exit_code(&self) -> Option<i64> {
        self.0["exit_code"].as_i64()
    }
}

/// Why [`FakeGitLab::verify_trace`] failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceMismatch {
    /// No final PUT was received.
    #[error("no final PUT /jobs/:id was received")]
    NoFinalUpdate,
    /// The assembled trace disagrees with the final PUT.
    #[error(
        "trace mismatch: final PUT says {want_sum:?}/{want_size:?} bytes, patches give {got_sum}/{got_size} bytes"
    )]
    Differs {
        /// `output.bytesize` of the final PUT.
        want_size: Option<u64>,
        /// `output.checksum` of the final PUT.
        want_sum: Option<String>,
        /// Size of the assembled trace.
        got_size: u64,
        /// Checksum of the assembled trace.
        got_sum: String,
    },
}

struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    const fn status(status: StatusCode) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    fn json(status: StatusCode, value: &Value) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".to_owned())],
            body: value.to_string().into_bytes(),
        }
    }
}

async fn handle(State(shared): State<Shared>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = to_bytes(body, usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let received = std::time::SystemTime::now();
    let path = parts.uri.path().to_owned();
    let query = parts.uri.query().unwrap_or_default().to_owned();
    let reply = route(&shared, &parts.method, &path, &query, &parts.headers, &body);
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
        body,
        status: reply.status.as_u16(),
        received,
    };
    lock(&shared).requests.push(recorded);
    let mut response = Response::new(Body::from(reply.body));
    *response.status_mut() = reply.status;
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn route(
    shared: &Shared,
    method: &Method,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method.as_str(), segments.as_slice()) {
        ("POST", ["api", "v4", "jobs", "request"]) => match lock(shared).jobs.pop_front() {
            Some(job) => Reply::json(StatusCode::CREATED, &job),
            None => Reply::status(StatusCode::NO_CONTENT),
        },
        ("PUT", ["api", "v4", "jobs", id]) => id.parse().map_or_else(
            |_| Reply::status(StatusCode::NOT_FOUND),
            |id| {
                let state = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v["state"].as_str().map(str::to_owned));
                let mut reply = Reply::status(StatusCode::OK);
                add_runner_headers(
                    &lock(shared),
                    id,
                    Endpoint::Update,
                    state.as_deref(),
                    &mut reply,
                );
                reply
            },
        ),
        ("PATCH", ["api", "v4", "jobs", id, "trace"]) => id.parse().map_or_else(
            |_| Reply::status(StatusCode::NOT_FOUND),
            |id| patch_trace(shared, id, headers, body),
        ),
        ("POST", ["api", "v4", "jobs", id, "artifacts"]) => id.parse().map_or_else(
            |_| Reply::status(StatusCode::NOT_FOUND),
            |id| upload_artifact(shared, id, query, headers, body),
        ),
        ("GET", ["api", "v4", "jobs", id, "artifacts"]) => {
            match id
                .parse::<u64>()
                .ok()
                .and_then(|id| lock(shared).downloads.get(&id).cloned())
            {
                Some(zip) => Reply {
                    status: StatusCode::OK,
                    headers: vec![("content-type", "application/zip".to_owned())],
                    body: zip,
                },
                None => Reply::status(StatusCode::NOT_FOUND),
            }
        }
        ("GET" | "HEAD", _) => serve_repo_file(&lock(shared), path),
        _ => Reply::status(StatusCode::NOT_FOUND),
    }
}

fn add_runner_headers(
    inner: &Inner,
    job_id: u64,
    endpoint: Endpoint,
    state: Option<&str>,
    reply: &mut Reply,
) {
    if let Some(seconds) = inner.trace_update_interval {
        reply
            .headers
            .push(("x-gitlab-trace-update-interval", seconds.to_string()));
    }
    let trace = inner
        .traces
        .get(&job_id)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let fired = inner.injections.iter().find(|i| {
        i.endpoint == endpoint
            && (i.when_state.is_empty()
                || endpoint == Endpoint::Trace
                || state == Some(i.when_state.as_str()))
            && (i.when_trace_contains.is_empty()
                || contains(trace, i.when_trace_contains.as_bytes()))
    });
    if let Some(injection) = fired {
        reply
            .headers
            .push(("job-status", injection.job_status.clone()));
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

fn patch_trace(shared: &Shared, job_id: u64, headers: &HeaderMap, body: &[u8]) -> Reply {
    let mut inner = lock(shared);
    let trace = inner.traces.entry(job_id).or_default();
    let start = headers
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('-'))
        .and_then(|(start, _)| start.trim().parse::<usize>().ok());
    let Some(start) = start.filter(|s| *s <= trace.len()) else {
        let len = trace.len();
        let mut reply = Reply::status(StatusCode::RANGE_NOT_SATISFIABLE);
        reply.headers.push(("range", format!("0-{len}")));
        return reply;
    };
    trace.truncate(start);
    trace.extend_from_slice(body);
    let len = trace.len();
    let mut reply = Reply::status(StatusCode::ACCEPTED);
    reply.headers.push(("range", format!("0-{len}")));
    add_runner_headers(&inner, job_id, Endpoint::Trace, None, &mut reply);
    reply
}

fn upload_artifact(
    shared: &Shared,
    job_id: u64,
    query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let Some(parts) = parse_multipart(content_type, body) else {
        return Reply::status(StatusCode::BAD_REQUEST);
    };
    let job_token = headers
        .get("job-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut inner = lock(shared);
    for part in parts {
        inner.artifacts.push(StoredArtifact {
            job_id,
            field: part.name,
            filename: part.filename,
            query: query.to_owned(),
            job_token: job_token.clone(),
            data: part.data,
        });
    }
    Reply::json(StatusCode::CREATED, &serde_json::json!({}))
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MultipartPart {
    /// The form field name.
    pub name: String,
    /// The file name (empty for a plain field).
    pub filename: String,
    /// The part's content.
    pub data: Vec<u8>,
}

/// Splits a `multipart/form-data` body; `None` when the content type has no boundary or the
/// body does not follow it.
pub fn parse_multipart(content_type: &str, body: &[u8]) -> Option<Vec<MultipartPart>> {
    let boundary = content_type
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("boundary="))
        .next()?
        .trim_matches('"');
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = body.get(find(body, delimiter.as_bytes())? + delimiter.len()..)?;
    loop {
        if rest.starts_with(b"--") {
            return Some(parts);
        }
        rest = rest.strip_prefix(b"\r\n")?;
        let header_end = find(rest, b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&rest[..header_end]).into_owned();
        rest = &rest[header_end + 4..];
        let next = format!("\r\n{delimiter}");
        let end = find(rest, next.as_bytes())?;
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .unwrap_or_default();
        parts.push(MultipartPart {
            name: disposition_param(disposition, "name").unwrap_or_default(),
            filename: disposition_param(disposition, "filename").unwrap_or_default(),
            data: rest[..end].to_vec(),
        });
        rest = &rest[end + next.len()..];
    }
}

fn disposition_param(disposition: &str, key: &str) -> Option<String> {
    disposition.split(';').map(str::trim).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim() == key).then(|| v.trim().trim_matches('"').to_owned())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn serve_repo_file(inner: &Inner, path: &str) -> Reply {
    let found = inner.repos.iter().find_map(|(prefix, dir)| {
        let rest = path.strip_prefix(prefix.as_str())?;
        let rest = rest.strip_prefix('/').unwrap_or(rest);
        let rel = Path::new(rest);
        rel.components()
            .all(|c| matches!(c, Component::Normal(_)))
            .then(|| dir.join(rel))
    });
    match found.map(std::fs::read) {
        Some(Ok(data)) => Reply {
            status: StatusCode::OK,
            headers: vec![("content-type", "application/octet-stream".to_owned())],
            body: data,
        },
        _ => Reply::status(StatusCode::NOT_FOUND),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_parses_the_runner_shape() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"artifacts.zip\"\r\nContent-Type: application/octet-stream\r\n\r\nPK\x03\x04data\r\n--XyZ--\r\n";
        let parts = parse_multipart("multipart/form-data; boundary=XyZ", body).unwrap_or_default();
        assert_eq!(
            parts,
            vec![MultipartPart {
                name: "file".into(),
                filename: "artifacts.zip".into(),
                data: b"PK\x03\x04data".to_vec()
            }]
        );
        assert!(parse_multipart("text/plain", body).is_none());
    }
}
