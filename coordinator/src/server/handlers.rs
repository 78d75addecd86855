//! The HTTP side of the coordinator: one handler that routes the runner's requests, checks
//! each against the job's token, caps bodies and streams artifacts to and from disk.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use super::{
    Access, Endpoint, JobState, Phase, RecordedRequest, RemoteStatus, RunnerFilter, ServerState,
    Shared, StatusRule,
};
use crate::artifact::{
    ArtifactType, StoredArtifact, artifact_path, create_artifact_file, parse_upload_query,
};
use crate::event::Event;
use crate::trace::{self, TraceRejection};

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

pub(super) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
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
