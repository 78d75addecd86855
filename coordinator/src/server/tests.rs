//! The coordinator over real HTTP on loopback, as a runner (or a hostile job) would call it.

use std::error::Error;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use serde_json::json;

use super::*;
use crate::payload::{ArtifactsFile, Dependency, Variable};

type TestResult = Result<(), Box<dyn Error>>;

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    coordinator: Coordinator,
    events: Events,
    agent: ureq::Agent,
    runner: RunnerToken,
}

impl Fixture {
    fn start(access: Access, limits: Limits) -> Result<Self, Box<dyn Error>> {
        let dir = tempfile::tempdir()?;
        let config = CoordinatorConfig {
            access,
            limits,
            record_requests: true,
            ..CoordinatorConfig::new(dir.path())
        };
        let (coordinator, events) = Coordinator::start(config)?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let runner = RunnerToken::new("glrt-runner-a").ok_or("runner token")?;
        Ok(Self {
            dir,
            coordinator,
            events,
            agent,
            runner,
        })
    }

    fn product() -> Result<Self, Box<dyn Error>> {
        Self::start(Access::JobTokens, Limits::default())
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, Box<dyn Error>> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.coordinator.url()));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self.agent.run(request.body(body.to_vec())?)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = response.into_body().read_to_vec()?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn request_job(&self, runner_token: Option<&str>) -> Result<Answer, Box<dyn Error>> {
        let body = runner_token.map_or_else(|| json!({}), |t| json!({"token": t, "info": {}}));
        self.send(
            "POST",
            "/api/v4/jobs/request",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    /// Assigns and picks up `job`; returns its token.
    fn running(&self, job: JobPayload) -> Result<JobToken, Box<dyn Error>> {
        let id = job.id;
        let token = self.coordinator.assign(&self.runner, job)?;
        let picked = self.request_job(Some(self.runner.as_str()))?;
        let body: Value = serde_json::from_slice(&picked.body)?;
        if picked.status != 201 || body["id"] != id {
            return Err(format!("job {id} not handed out: {} {body}", picked.status).into());
        }
        Ok(token)
    }

    fn put(&self, job_id: u64, body: &Value) -> Result<Answer, Box<dyn Error>> {
        self.send(
            "PUT",
            &format!("/api/v4/jobs/{job_id}"),
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }

    fn patch(
        &self,
        job_id: u64,
        token: Option<&str>,
        range: &str,
        body: &[u8],
    ) -> Result<Answer, Box<dyn Error>> {
        let mut headers = vec![("Content-Range", range)];
        headers.extend(token.map(|t| ("JOB-TOKEN", t)));
        self.send(
            "PATCH",
            &format!("/api/v4/jobs/{job_id}/trace?debug_trace=false"),
            &headers,
            body,
        )
    }

    fn upload(
        &self,
        job_id: u64,
        token: Option<&str>,
        query: &str,
        content: &[u8],
    ) -> Result<Answer, Box<dyn Error>> {
        let mut headers = vec![("Content-Type", "multipart/form-data; boundary=b0undary")];
        headers.extend(token.map(|t| ("JOB-TOKEN", t)));
        self.send(
            "POST",
            &format!("/api/v4/jobs/{job_id}/artifacts?{query}"),
            &headers,
            &multipart("file", "artifacts.zip", content),
        )
    }

    fn download(&self, job_id: u64, token: Option<&str>) -> Result<Answer, Box<dyn Error>> {
        let headers: Vec<_> = token.map(|t| ("JOB-TOKEN", t)).into_iter().collect();
        self.send(
            "GET",
            &format!("/api/v4/jobs/{job_id}/artifacts?direct_download=true"),
            &headers,
            b"",
        )
    }

    fn drain_events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.events.try_recv().ok()).collect()
    }
}

fn multipart(field: &str, filename: &str, content: &[u8]) -> Vec<u8> {
    let mut body = format!(
        "--b0undary\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(content);
    body.extend_from_slice(b"\r\n--b0undary--\r\n");
    body
}

fn dependency_on(id: u64) -> Dependency {
    Dependency {
        id,
        token: "placeholder".to_owned(),
        name: format!("job-{id}"),
        artifacts_file: ArtifactsFile {
            filename: "artifacts.zip".to_owned(),
            size: 0,
        },
    }
}

fn final_put(token: &str, state: &str) -> Value {
    json!({"token": token, "state": state, "info": {}, "output": {"checksum": "crc32:0", "bytesize": 0}})
}

#[test]
fn jobs_go_only_to_the_runner_they_are_assigned_to() -> TestResult {
    let mut f = Fixture::product()?;
    let token = f.coordinator.assign(
        &f.runner,
        JobPayload::new(1, &["true"]).variable(Variable::new("CI_JOB_TOKEN", "mine")),
    )?;
    assert_eq!(f.request_job(Some("glrt-runner-b"))?.status, 204);
    assert_eq!(f.request_job(None)?.status, 204);
    assert_eq!(f.request_job(Some(""))?.status, 204);
    let picked = f.request_job(Some(f.runner.as_str()))?;
    assert_eq!(picked.status, 201);
    assert_eq!(picked.header("content-type"), Some("application/json"));
    let job: Value = serde_json::from_slice(&picked.body)?;
    assert_eq!(job["id"], 1);
    assert_eq!(job["token"], token.as_str());
    let job_tokens: Vec<&Value> = job["variables"]
        .as_array()
        .ok_or("variables")?
        .iter()
        .filter(|v| v["key"] == "CI_JOB_TOKEN")
        .collect();
    assert_eq!(job_tokens.len(), 1, "{job}");
    assert_eq!(job_tokens[0]["value"], token.as_str());
    assert_eq!(job_tokens[0]["masked"], true);
    assert_eq!(f.request_job(Some(f.runner.as_str()))?.status, 204);
    assert_eq!(f.drain_events(), [Event::JobPickedUp { job_id: 1 }]);
    Ok(())
}

#[test]
fn each_job_gets_its_own_random_token_also_for_its_dependencies() -> TestResult {
    let f = Fixture::product()?;
    let first = f.running(JobPayload::new(1, &["true"]))?;
    let second = f.coordinator.assign(
        &f.runner,
        JobPayload::new(2, &["true"]).dependency(dependency_on(1)),
    )?;
    assert_ne!(first, second);
    let job: Value = serde_json::from_slice(&f.request_job(Some(f.runner.as_str()))?.body)?;
    assert_eq!(job["dependencies"][0]["id"], 1);
    assert_eq!(
        job["dependencies"][0]["token"],
        second.as_str(),
        "GitLab sends the running job's token for its dependencies"
    );
    Ok(())
}

#[test]
fn assign_lists_every_problem() -> TestResult {
    let f = Fixture::product()?;
    f.coordinator
        .assign(&f.runner, JobPayload::new(1, &["true"]))?;
    let duplicate = JobPayload::new(1, &["true"])
        .dependency(dependency_on(1))
        .dependency(dependency_on(9));
    match f.coordinator.assign(&f.runner, duplicate) {
        Err(AssignError::Invalid(problems)) => assert_eq!(
            problems,
            [
                AssignProblem::DuplicateJob(1),
                AssignProblem::SelfDependency(1),
                AssignProblem::UnknownDependency(9)
            ]
        ),
        other => panic!("expected the problems, got {other:?}"),
    }
    assert!(matches!(
        f.coordinator.assign(&f.runner, JobPayload::new(0, &["true"])),
        Err(AssignError::Invalid(p)) if p == [AssignProblem::ZeroJobId]
    ));
    f.coordinator.store_archive(9, &b"PKold"[..])?;
    f.coordinator.assign(
        &f.runner,
        JobPayload::new(2, &["true"]).dependency(dependency_on(9)),
    )?;
    assert!(matches!(
        f.coordinator.queue_for_any_runner(json!({"id": 3})),
        Err(AssignError::NeedsOpenAccess)
    ));
    Ok(())
}

#[test]
fn job_updates_and_traces_need_the_jobs_own_token() -> TestResult {
    let f = Fixture::product()?;
    let one = f.running(JobPayload::new(1, &["true"]))?;
    let two = f.running(JobPayload::new(2, &["true"]))?;
    let queued = f
        .coordinator
        .assign(&f.runner, JobPayload::new(3, &["true"]))?;

    for token in [
        Some(two.as_str()),
        None,
        Some("glcbt-guess"),
        Some(queued.as_str()),
    ] {
        let body = token.map_or_else(
            || json!({"state": "failed"}),
            |t| json!({"token": t, "state": "failed"}),
        );
        assert_eq!(f.put(1, &body)?.status, 403, "PUT with {token:?}");
        assert_eq!(
            f.patch(1, token, "0-2", b"x\n")?.status,
            403,
            "PATCH with {token:?}"
        );
    }
    assert_eq!(
        f.put(3, &final_put(queued.as_str(), "success"))?.status,
        403,
        "a job no runner has picked up"
    );
    assert_eq!(f.put(7, &final_put(one.as_str(), "success"))?.status, 403);
    assert!(f.coordinator.trace(1).is_empty());

    assert_eq!(f.patch(1, Some(one.as_str()), "0-2", b"ok\n")?.status, 202);
    assert_eq!(
        f.put(1, &json!({"token": one.as_str(), "state": "running"}))?
            .status,
        200
    );
    assert_eq!(f.put(1, &final_put(one.as_str(), "success"))?.status, 200);
    assert_eq!(
        f.patch(1, Some(one.as_str()), "3-4", b"late\n")?.status,
        403,
        "a finished job's token is spent"
    );
    assert_eq!(f.put(1, &final_put(one.as_str(), "failed"))?.status, 403);
    Ok(())
}

#[test]
fn artifact_uploads_need_the_jobs_own_token() -> TestResult {
    let mut f = Fixture::product()?;
    let one = f.running(JobPayload::new(1, &["true"]))?;
    let two = f.running(JobPayload::new(2, &["true"]))?;
    let query = "artifact_format=zip&artifact_type=archive";
    for token in [Some(two.as_str()), None, Some("")] {
        assert_eq!(
            f.upload(1, token, query, b"PKforged")?.status,
            403,
            "upload with {token:?}"
        );
    }
    assert!(!f.dir.path().join("1").exists(), "nothing written");
    f.drain_events();
    let stored = f.upload(1, Some(one.as_str()), query, b"PKreal")?;
    assert_eq!(stored.status, 201);
    let path = f.dir.path().join("1/archive.zip");
    assert_eq!(std::fs::read(&path)?, b"PKreal");
    assert_eq!(
        f.drain_events(),
        [Event::ArtifactStored {
            job_id: 1,
            artifact_type: ArtifactType::Archive,
            format: ArtifactFormat::Zip,
            filename: "artifacts.zip".to_owned(),
            path: path.clone(),
        }]
    );
    let again = f.upload(1, Some(one.as_str()), query, b"PKreplaced")?;
    assert_eq!(again.status, 400, "one archive per job");
    assert_eq!(std::fs::read(&path)?, b"PKreal");
    let dotenv = f.upload(
        1,
        Some(one.as_str()),
        "artifact_format=gzip&artifact_type=dotenv",
        b"\x1f\x8bgz",
    )?;
    assert_eq!(dotenv.status, 201);
    assert_eq!(
        std::fs::read(f.dir.path().join("1/dotenv.gz"))?,
        b"\x1f\x8bgz"
    );
    let bad_type = f.upload(1, Some(one.as_str()), "artifact_type=../../x", b"PK")?;
    assert_eq!(bad_type.status, 400);
    Ok(())
}

#[test]
fn dependency_artifacts_go_only_to_running_dependants() -> TestResult {
    let f = Fixture::product()?;
    let producer = f.running(JobPayload::new(1, &["true"]))?;
    let upload = f.upload(
        1,
        Some(producer.as_str()),
        "artifact_type=archive",
        b"PKdep",
    )?;
    assert_eq!(upload.status, 201);
    assert_eq!(
        f.put(1, &final_put(producer.as_str(), "success"))?.status,
        200
    );
    let dependant = f.running(JobPayload::new(2, &["true"]).dependency(dependency_on(1)))?;
    let bystander = f.running(JobPayload::new(3, &["true"]))?;

    for token in [Some(bystander.as_str()), Some(producer.as_str()), None] {
        assert_eq!(f.download(1, token)?.status, 403, "download with {token:?}");
    }
    let download = f.download(1, Some(dependant.as_str()))?;
    assert_eq!(download.status, 200);
    assert_eq!(download.body, b"PKdep");
    assert_eq!(download.header("content-type"), Some("application/zip"));
    assert_eq!(
        f.download(3, Some(dependant.as_str()))?.status,
        403,
        "job 3 is not a dependency of job 2"
    );
    assert_eq!(
        f.put(2, &final_put(dependant.as_str(), "success"))?.status,
        200
    );
    assert_eq!(
        f.download(1, Some(dependant.as_str()))?.status,
        403,
        "a finished dependant's token is spent"
    );
    Ok(())
}

#[test]
fn events_report_new_trace_bytes_then_artifacts_then_the_end_in_order() -> TestResult {
    let mut f = Fixture::product()?;
    let token = f.running(JobPayload::new(4, &["true"]))?;
    let t = Some(token.as_str());
    assert_eq!(f.patch(4, t, "0-5", b"hello\n")?.status, 202);
    // The runner re-sends what it is not sure arrived; only the new part is reported.
    let resent = f.patch(4, t, "0-11", b"hello\nworld\n")?;
    assert_eq!((resent.status, resent.header("range")), (202, Some("0-12")));
    assert_eq!(
        f.patch(4, t, "6-11", b"world\n")?.header("range"),
        Some("0-12")
    );
    let gap = f.patch(4, t, "20-21", b"!!")?;
    assert_eq!((gap.status, gap.header("range")), (416, Some("0-12")));
    f.upload(4, t, "artifact_type=archive&artifact_format=zip", b"PK")?;
    f.patch(4, t, "12-16", b"done\n")?;
    let fin = json!({"token": token.as_str(), "state": "failed", "failure_reason": "script_failure", "exit_code": 3});
    assert_eq!(f.put(4, &fin)?.status, 200);
    assert_eq!(f.put(4, &fin)?.status, 403);
    let events = f.drain_events();
    assert_eq!(
        events,
        [
            Event::JobPickedUp { job_id: 4 },
            Event::TraceAppended {
                job_id: 4,
                bytes: b"hello\n".to_vec()
            },
            Event::TraceAppended {
                job_id: 4,
                bytes: b"world\n".to_vec()
            },
            Event::ArtifactStored {
                job_id: 4,
                artifact_type: ArtifactType::Archive,
                format: ArtifactFormat::Zip,
                filename: "artifacts.zip".to_owned(),
                path: f.dir.path().join("4/archive.zip"),
            },
            Event::TraceAppended {
                job_id: 4,
                bytes: b"done\n".to_vec()
            },
            Event::JobFinished {
                job_id: 4,
                state: FinalState::Failed,
                failure_reason: Some("script_failure".to_owned()),
                exit_code: Some(3),
            },
        ]
    );
    assert_eq!(f.coordinator.trace(4), b"hello\nworld\ndone\n");
    Ok(())
}

#[test]
fn bodies_over_their_caps_are_refused_and_not_kept() -> TestResult {
    let limits = Limits {
        json_body: 256,
        trace_patch: 64,
        trace_total: 100,
        artifact_upload: 1024,
    };
    let mut f = Fixture::start(Access::JobTokens, limits)?;
    let token = f.running(JobPayload::new(1, &["true"]))?;
    let t = Some(token.as_str());
    let padded = json!({"token": token.as_str(), "state": "running", "pad": "x".repeat(300)});
    assert_eq!(f.put(1, &padded)?.status, 413);
    assert_eq!(f.patch(1, t, "0-99", &[b'a'; 100])?.status, 413);
    let huge = vec![b'z'; 4096];
    let declared = f.upload(1, t, "artifact_type=archive", &huge)?;
    assert_eq!(declared.status, 413, "declared length over the cap");

    // Without a Content-Length the cap holds while streaming, and the partial file goes.
    let mut streamed = std::io::Cursor::new(multipart("file", "artifacts.zip", &huge));
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(format!(
            "{}/api/v4/jobs/1/artifacts?artifact_type=archive",
            f.coordinator.url()
        ))
        .header("Content-Type", "multipart/form-data; boundary=b0undary")
        .header("JOB-TOKEN", token.as_str())
        .body(ureq::SendBody::from_reader(&mut streamed))?;
    assert_eq!(f.agent.run(request)?.status().as_u16(), 413);
    assert!(!f.dir.path().join("1/archive.zip").exists());
    let events = f.drain_events();
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::ArtifactStored { .. })),
        "{events:?}"
    );
    assert_eq!(
        f.upload(1, t, "artifact_type=archive", b"PKsmall")?.status,
        201,
        "a refused upload leaves no reservation behind"
    );

    for chunk in 0..3 {
        let start = chunk * 30;
        let range = format!("{start}-{}", start + 29);
        assert_eq!(f.patch(1, t, &range, &[b'l'; 30])?.status, 202);
    }
    assert_eq!(
        f.patch(1, t, "90-119", &[b'l'; 30])?.status,
        403,
        "the whole trace is capped too"
    );
    let after = f.put(1, &json!({"token": token.as_str(), "state": "running"}))?;
    assert_eq!(
        after.header("job-status"),
        Some("failed"),
        "the runner is told to abort"
    );
    Ok(())
}

#[test]
fn other_multipart_fields_are_refused() -> TestResult {
    let f = Fixture::product()?;
    let token = f.running(JobPayload::new(1, &["true"]))?;
    let answer = f.send(
        "POST",
        "/api/v4/jobs/1/artifacts?artifact_type=archive",
        &[
            ("Content-Type", "multipart/form-data; boundary=b0undary"),
            ("JOB-TOKEN", token.as_str()),
        ],
        &multipart("metadata", "x.gz", b"data"),
    )?;
    assert_eq!(answer.status, 400);
    assert!(!f.dir.path().join("1/archive.zip").exists());
    Ok(())
}

#[test]
fn cancel_reaches_the_next_patch_and_put() -> TestResult {
    let f = Fixture::product()?;
    let one = f.running(JobPayload::new(1, &["true"]))?;
    let two = f.running(JobPayload::new(2, &["true"]))?;
    f.coordinator.set_trace_update_interval(1);
    let before = f.patch(1, Some(one.as_str()), "0-1", b"a\n")?;
    assert_eq!(before.header("job-status"), None);
    assert_eq!(before.header("x-gitlab-trace-update-interval"), Some("1"));
    f.coordinator.cancel(1);
    f.coordinator.cancel_gracefully(2);
    let patched = f.patch(1, Some(one.as_str()), "2-3", b"b\n")?;
    assert_eq!(patched.header("job-status"), Some("canceled"));
    let put = f.put(1, &json!({"token": one.as_str(), "state": "running"}))?;
    assert_eq!(put.header("job-status"), Some("canceled"));
    let other = f.patch(2, Some(two.as_str()), "0-1", b"c\n")?;
    assert_eq!(other.header("job-status"), Some("canceling"));
    Ok(())
}

#[test]
fn open_access_serves_any_runner_and_checks_no_token() -> TestResult {
    let f = Fixture::start(Access::Open, Limits::default())?;
    f.coordinator
        .queue_for_any_runner(JobPayload::new(5, &["true"]).to_json())?;
    let picked = f.request_job(Some("glrt-anyone"))?;
    assert_eq!(picked.status, 201);
    assert_eq!(f.put(9, &json!({"state": "running"}))?.status, 200);
    assert_eq!(f.patch(9, None, "0-1", b"x\n")?.status, 202);
    assert_eq!(f.coordinator.requests().len(), 3);
    Ok(())
}

/// One raw request, so that the path reaches the server exactly as written.
fn raw_get(addr: SocketAddr, path: &str) -> Result<u16, Box<dyn Error>> {
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .ok_or("no status line")?
        .parse()?;
    Ok(status)
}

#[test]
fn repository_files_are_served_and_nothing_outside() -> TestResult {
    let f = Fixture::product()?;
    let repo = f.dir.path().join("repo/project.git");
    std::fs::create_dir_all(repo.join("info"))?;
    std::fs::write(repo.join("info/refs"), "abc\trefs/heads/main\n")?;
    std::fs::write(f.dir.path().join("repo/secret"), "secret")?;
    std::os::unix::fs::symlink(f.dir.path().join("repo/secret"), repo.join("leak"))?;
    f.coordinator.serve_repo("group/project.git", &repo)?;
    let addr = f.coordinator.addr();
    assert_eq!(
        raw_get(addr, "/group/project.git/info/refs?service=git-upload-pack")?,
        200
    );
    for path in [
        "/group/project.git/../secret",
        "/group/project.git/info/../../secret",
        "/group/project.git/%2e%2e/secret",
        "/group/project.git/%2E%2E/%2E%2E/secret",
        "/group/project.git/leak",
        "/group/project.git/info",
    ] {
        assert_eq!(raw_get(addr, path)?, 404, "{path}");
    }
    Ok(())
}

#[test]
fn stored_archives_are_served_to_dependants_and_never_replaced() -> TestResult {
    let f = Fixture::product()?;
    let stored = f.coordinator.store_archive(8, &b"PKkept"[..])?;
    assert_eq!(stored.path, f.dir.path().join("8/archive.zip"));
    assert_eq!(stored.size, 6);
    assert!(matches!(
        f.coordinator.store_archive(8, &b"PKagain"[..]),
        Err(StoreError::AlreadyStored(8))
    ));
    let token = f.running(JobPayload::new(9, &["true"]).dependency(dependency_on(8)))?;
    let download = f.download(8, Some(token.as_str()))?;
    assert_eq!((download.status, download.body), (200, b"PKkept".to_vec()));
    assert_eq!(f.coordinator.archive(8), Some(stored));
    Ok(())
}
