//! The fake GitLab coordinator: [`berth_coordinator::Coordinator`] with
//! [`Access::Open`](berth_coordinator::Access::Open) (no token checks, jobs for any runner) and
//! every request recorded, behind the API the runner-contract tests were written against.
//!
//! The coordinator runs on its own thread and Tokio runtime, so tests stay synchronous. Every
//! request is recorded ([`RecordedRequest`]); the trace is assembled from the `Content-Range`
//! patches, and uploaded artifacts are kept (in a temporary directory), so a test can assert
//! what GitLab would have seen.

use std::net::SocketAddr;
use std::path::Path;

use berth_coordinator::{
    Access, Coordinator, CoordinatorConfig, JobState, RemoteStatus, StartError, StatusRule,
};
use serde_json::Value;

pub use berth_coordinator::{Endpoint, RecordedRequest};

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
    /// The temporary artifacts directory could not be made or used.
    #[error("failed to set up the fake GitLab's artifacts directory: {0}")]
    Artifacts(#[source] std::io::Error),
}

impl From<StartError> for ServerError {
    fn from(error: StartError) -> Self {
        match error {
            StartError::Bind(e) => Self::Bind(e),
            StartError::Runtime(e) => Self::Runtime(e),
            StartError::ArtifactsDir { source, .. } => Self::Artifacts(source),
        }
    }
}

/// A file uploaded with `POST /jobs/:id/artifacts`.
#[derive(Debug, Clone)]
pub struct StoredArtifact {
    /// The job the upload was for.
    pub job_id: u64,
    /// The multipart field name (always `file`: the coordinator refuses other fields).
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

    /// The coordinator's rule for every job; a test that names an unknown status or state
    /// fails here, loudly.
    fn to_rule(&self) -> StatusRule {
        let status = RemoteStatus::parse(&self.job_status).unwrap_or_else(|| {
            panic!(
                "Injection.job_status {:?} is not canceling, canceled or failed",
                self.job_status
            )
        });
        let when_state = (!self.when_state.is_empty()).then(|| {
            JobState::parse(&self.when_state).unwrap_or_else(|| {
                panic!(
                    "Injection.when_state {:?} is not pending, running, success or failed",
                    self.when_state
                )
            })
        });
        StatusRule {
            job_id: None,
            endpoint: Some(self.endpoint),
            status,
            when_trace_contains: self.when_trace_contains.clone(),
            when_state,
        }
    }
}

/// A running fake coordinator. Dropping it stops the server and removes its artifacts.
#[derive(Debug)]
pub struct FakeGitLab {
    // Declared first so that the server stops before its directory goes.
    coordinator: Coordinator,
    artifacts_dir: tempfile::TempDir,
}

impl FakeGitLab {
    /// Starts the fake on `127.0.0.1` and an ephemeral port.
    pub fn start() -> Result<Self, ServerError> {
        let artifacts_dir = tempfile::tempdir().map_err(ServerError::Artifacts)?;
        let config = CoordinatorConfig {
            access: Access::Open,
            record_requests: true,
            ..CoordinatorConfig::new(artifacts_dir.path())
        };
        // The tests read the recorded requests, not the events.
        let (coordinator, _events) = Coordinator::start(config)?;
        Ok(Self {
            coordinator,
            artifacts_dir,
        })
    }

    /// The base URL, for `[[runners]] url` (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        self.coordinator.url()
    }

    /// The socket address.
    pub const fn addr(&self) -> SocketAddr {
        self.coordinator.addr()
    }

    /// The coordinator underneath, for what this wrapper does not cover.
    pub const fn coordinator(&self) -> &Coordinator {
        &self.coordinator
    }

    /// Where uploaded artifacts are stored.
    pub fn artifacts_dir(&self) -> &Path {
        self.artifacts_dir.path()
    }

    /// Queues a job; `POST /jobs/request` hands jobs out in order, then answers 204.
    pub fn push_job(&self, job: &JobPayload) {
        self.push_job_json(job.to_json());
    }

    /// Queues a raw job document.
    pub fn push_job_json(&self, job: Value) {
        self.coordinator
            .queue_for_any_runner(job)
            .unwrap_or_else(|e| panic!("the open fake queues any job: {e}"));
    }

    /// Serves the bare repository `dir` (prepared with `git update-server-info`) at
    /// `/<url_path>`, for example `group/project.git`.
    pub fn serve_repo(&self, url_path: &str, dir: &Path) {
        self.coordinator
            .serve_repo(url_path, dir)
            .unwrap_or_else(|e| panic!("serve_repo: {e}"));
    }

    /// Serves `zip` for `GET /jobs/<job_id>/artifacts` (dependencies). An archive the job
    /// uploaded is served already; serving the same bytes again is a no-op, different bytes
    /// fail the test (the coordinator never replaces a stored archive).
    pub fn serve_artifacts(&self, job_id: u64, zip: Vec<u8>) {
        if let Some(stored) = self.coordinator.archive(job_id) {
            let same = std::fs::read(&stored.path).is_ok_and(|data| data == zip);
            assert!(
                same,
                "serve_artifacts: job {job_id} already has a different archive"
            );
            return;
        }
        self.coordinator
            .store_archive(job_id, zip.as_slice())
            .unwrap_or_else(|e| panic!("serve_artifacts: {e}"));
    }

    /// Adds a `Job-Status` injection.
    pub fn inject(&self, injection: Injection) {
        self.coordinator.inject(injection.to_rule());
    }

    /// Answers every PUT and PATCH with `X-GitLab-Trace-Update-Interval: seconds`.
    pub fn set_trace_update_interval(&self, seconds: u32) {
        self.coordinator.set_trace_update_interval(seconds);
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.coordinator.requests()
    }

    /// The JSON bodies of every `PUT /jobs/<job_id>`, in order.
    pub fn job_updates(&self, job_id: u64) -> Vec<Value> {
        let path = format!("/api/v4/jobs/{job_id}");
        self.requests()
            .iter()
            .filter(|r| r.method == "PUT" && r.path == path)
            .filter_map(RecordedRequest::json)
            .collect()
    }

    /// The recorded last `PUT /jobs/<job_id>` whose state is not `running`.
    pub fn final_update_request(&self, job_id: u64) -> Option<RecordedRequest> {
        let path = format!("/api/v4/jobs/{job_id}");
        self.requests().into_iter().rev().find(|r| {
            r.method == "PUT" && r.path == path && r.json().is_some_and(|v| v["state"] != "running")
        })
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
        self.coordinator.trace(job_id)
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

    /// Artifacts uploaded so far, in the order their uploads were answered, read from disk.
    pub fn artifacts(&self) -> Vec<StoredArtifact> {
        self.requests()
            .iter()
            .filter_map(|request| {
                let stored = request.artifact.as_ref()?;
                Some(StoredArtifact {
                    job_id: stored.job_id,
                    field: "file".to_owned(),
                    filename: stored.filename.clone(),
                    query: request.query.clone(),
                    job_token: request.header("job-token").map(str::to_owned),
                    // An unreadable file shows up as a content mismatch in the test.
                    data: std::fs::read(&stored.path).unwrap_or_default(),
                })
            })
            .collect()
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
