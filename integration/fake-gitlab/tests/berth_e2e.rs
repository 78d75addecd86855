//! berth end to end: the real gitlab-runner (v19 peer) runs jobs from the fake GitLab with the
//! real `berth` binary as its custom executor, on real rootless Podman. This is what GitLab
//! would see from a berth runner.
//!
//! Needs what `scripts/test-all` sets up first: the host (`integration/host/setup-host.sh`), the
//! test images (`integration/images/build-test-images.sh`), the peer
//! (`integration/fake-gitlab/peers/build-gitlab-runner.sh`) and `cargo build --workspace` (for
//! `target/<profile>/berth`, or set `BERTH_BINARY`). Missing pieces fail the tests.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, ensure};
use berth_fake_gitlab::harness::{RunOptions, run_single};
use berth_fake_gitlab::payload::{
    Artifact, ArtifactsFile, Cache, Dependency, GitInfo, Image, Variable,
};
use berth_fake_gitlab::peers::PeerVersion;
use berth_fake_gitlab::server::Injection;
use berth_fake_gitlab::{FakeGitLab, JobPayload, RunnerConfig};
use common::{berth_binary, peer, tail};

const IMAGE: &str = "localhost/busybox:latest";
const SECRET: &str = "berth-secret-value-42";

struct BerthRun {
    gitlab: FakeGitLab,
    job_id: u64,
    stderr: String,
    elapsed: Duration,
    _dir: tempfile::TempDir,
}

impl BerthRun {
    fn explain(&self) -> String {
        format!(
            "final: {:?}\ntrace:\n{}\nrunner stderr (tail):\n{}",
            self.gitlab.final_update(self.job_id).map(|u| u.0),
            self.gitlab.trace_text(self.job_id),
            tail(&self.stderr, 40)
        )
    }

    /// The final state and reason (the exit code of a killed script is whatever the signal left)
    /// and the trace checksum.
    fn check_state(&self, state: &str, reason: &str) -> Result<()> {
        let update = self.gitlab.final_update(self.job_id);
        ensure!(
            update
                .as_ref()
                .is_some_and(|u| u.state() == state && u.failure_reason() == reason),
            "want {state}/{reason}\n{}",
            self.explain()
        );
        self.gitlab
            .verify_trace(self.job_id)
            .map_err(|e| anyhow::anyhow!("{e}\n{}", self.explain()))
    }

    fn check_trace_has(&self, text: &str) -> Result<()> {
        ensure!(
            self.gitlab.trace_text(self.job_id).contains(text),
            "trace lacks {text:?}\n{}",
            self.explain()
        );
        Ok(())
    }

    fn check_final(&self, state: &str, reason: &str, exit_code: Option<i64>) -> Result<()> {
        let update = self.gitlab.final_update(self.job_id);
        ensure!(
            update.as_ref().is_some_and(|u| u.state() == state
                && u.failure_reason() == reason
                && u.exit_code() == exit_code),
            "want {state}/{reason}/{exit_code:?}\n{}",
            self.explain()
        );
        self.gitlab
            .verify_trace(self.job_id)
            .map_err(|e| anyhow::anyhow!("{e}\n{}", self.explain()))
    }
}

/// Runs one job through `gitlab-runner run-single` with berth as the custom executor. berth's
/// pod uses the host network so the helper container reaches the fake at 127.0.0.1. berth names
/// everything after the job id and the runner's short token, so every test uses its own job id
/// and every test process its own runner token: parallel tests must not share a job key.
/// A runner configuration with berth as the custom executor, pointed at `gitlab`.
fn berth_runner(
    binary: &Path,
    gitlab: &FakeGitLab,
) -> Result<(tempfile::TempDir, RunnerConfig, RunOptions)> {
    berth_runner_with(binary, gitlab, "")
}

/// [`berth_runner`] with more berth config lines.
fn berth_runner_with(
    binary: &Path,
    gitlab: &FakeGitLab,
    extra_config: &str,
) -> Result<(tempfile::TempDir, RunnerConfig, RunOptions)> {
    common::berth_runner_config(
        binary,
        gitlab,
        &format!("glrt-e2e{}", std::process::id()),
        "host",
        extra_config,
    )
}

fn run_with_berth(
    binary: &Path,
    make_job: impl FnOnce(&FakeGitLab) -> JobPayload,
    setup: impl FnOnce(&FakeGitLab),
) -> Result<BerthRun> {
    run_with_berth_config(binary, "", make_job, setup)
}

/// [`run_with_berth`] with more berth config lines.
fn run_with_berth_config(
    binary: &Path,
    extra_config: &str,
    make_job: impl FnOnce(&FakeGitLab) -> JobPayload,
    setup: impl FnOnce(&FakeGitLab),
) -> Result<BerthRun> {
    let gitlab = FakeGitLab::start()?;
    let job = make_job(&gitlab);
    gitlab.push_job(&job);
    setup(&gitlab);
    let (dir, config, options) = berth_runner_with(binary, &gitlab, extra_config)?;
    let outcome = run_single(&config, &options)?;
    let run = BerthRun {
        gitlab,
        job_id: job.id,
        stderr: outcome.stderr,
        elapsed: outcome.elapsed,
        _dir: dir,
    };
    ensure!(
        !outcome.killed_at_deadline,
        "gitlab-runner hit the harness deadline\n{}",
        run.explain()
    );
    Ok(run)
}

/// A job in the busybox image whose after_script reports the job status.
fn job(id: u64, script: &[&str]) -> JobPayload {
    JobPayload::new(id, script)
        .after_script(&["echo after-status=$CI_JOB_STATUS"])
        .image(Image::new(IMAGE))
}

/// The v19 peer; its absence fails the test (never a silent pass).
fn v19() -> Option<PathBuf> {
    Some(peer(PeerVersion::V19).unwrap_or_else(|| {
        panic!(
            "no gitlab-runner v19 peer could be built; see {}",
            berth_fake_gitlab::peers::BUILD_SCRIPT
        )
    }))
}

#[test]
fn berth_runs_a_job_clones_and_uploads_artifacts() -> Result<()> {
    let Some(binary) = v19() else { return Ok(()) };
    let repo_root = tempfile::tempdir()?;
    let (bare, sha) = common::make_repo(repo_root.path())?;
    // The helper container (not root on the host) reads the repository through the fake.
    let run = run_with_berth(
        &binary,
        |gitlab| {
            gitlab.serve_repo("group/project.git", &bare);
            job(
                101,
                &[
                    "cat hello.txt",
                    "echo secret=$MY_SECRET",
                    "echo built-by-berth > out.txt",
                ],
            )
            .variable(Variable::masked("MY_SECRET", SECRET))
            .artifact(Artifact::archive(&["out.txt"]))
            .git(GitInfo::fake_repo(&gitlab.url(), sha))
        },
        |_| {},
    )?;
    run.check_final("success", "", None)?;
    let trace = run.gitlab.trace_text(run.job_id);
    for want in [
        "Using Custom executor with driver berth",
        "hello from the fake repo",
        "secret=[MASKED]",
        "after-status=success",
    ] {
        ensure!(
            trace.contains(want),
            "trace lacks {want:?}\n{}",
            run.explain()
        );
    }
    ensure!(
        !trace.contains(SECRET),
        "masked value leaked\n{}",
        run.explain()
    );
    let artifacts = run.gitlab.artifacts();
    let zip = artifacts
        .iter()
        .find(|a| a.job_id == run.job_id && a.filename == "artifacts.zip");
    ensure!(
        zip.is_some_and(|z| z.data.starts_with(b"PK") && z.data.windows(7).any(|w| w == b"out.txt")),
        "no artifacts.zip with out.txt: {:?}\n{}",
        artifacts.iter().map(|a| (&a.filename, a.data.len())).collect::<Vec<_>>(),
        run.explain()
    );
    Ok(())
}

#[test]
fn berth_reports_the_script_exit_code() -> Result<()> {
    let Some(binary) = v19() else { return Ok(()) };
    let run = run_with_berth(
        &binary,
        |_| job(102, &["echo about-to-fail", "exit 3"]),
        |_| {},
    )?;
    run.check_final("failed", "script_failure", Some(3))?;
    run.check_trace_has("after-status=failed")?;
    Ok(())
}

#[test]
fn berth_cancel_runs_after_script_as_canceled() -> Result<()> {
    let Some(binary) = v19() else { return Ok(()) };
    let run = run_with_berth(
        &binary,
        |_| job(103, &["echo BUILD_STARTED", "sleep 300"]),
        |gitlab| {
            gitlab.set_trace_update_interval(1);
            gitlab.inject(Injection::cancel_when_trace_contains("BUILD_STARTED"));
        },
    )?;
    run.check_state("failed", "job_canceled")?;
    run.check_trace_has("after-status=canceled")?;
    ensure!(
        run.elapsed < Duration::from_secs(120),
        "cancel took {:?}\n{}",
        run.elapsed,
        run.explain()
    );
    Ok(())
}

#[test]
fn berth_job_timeout_is_job_execution_timeout() -> Result<()> {
    let Some(binary) = v19() else { return Ok(()) };
    let run = run_with_berth(
        &binary,
        |_| {
            JobPayload::new(104, &["echo sleeping", "sleep 300"])
                .image(Image::new(IMAGE))
                .timeout(8)
        },
        |_| {},
    )?;
    run.check_state("failed", "job_execution_timeout")?;
    ensure!(
        run.elapsed < Duration::from_secs(120),
        "timeout took {:?}\n{}",
        run.elapsed,
        run.explain()
    );
    Ok(())
}

/// A job timeout in the middle of builds through the nested Podman and the build socket: the
/// runner reports the timeout and no RUN step outlives the job.
#[test]
fn berth_job_timeout_stops_the_jobs_builds() -> Result<()> {
    let Some(binary) = v19() else { return Ok(()) };
    let run = run_with_berth(
        &binary,
        |_| {
            JobPayload::new(
                107,
                &[
                    "mkdir -p /tmp/b && cd /tmp/b",
                    "printf 'FROM localhost/busybox:latest\\nRUN sleep 4246\\n' > nested.Containerfile",
                    "printf 'FROM localhost/busybox:latest\\nRUN sleep 4247\\n' > socket.Containerfile",
                    "podman build --no-cache -f nested.Containerfile . &",
                    "DOCKER_BUILDKIT=0 docker build --no-cache -f socket.Containerfile . &",
                    "echo BUILDS_STARTED",
                    "wait",
                ],
            )
            .image(Image::new("localhost/build-tools:latest"))
            .timeout(15)
        },
        |_| {},
    )?;
    run.check_state("failed", "job_execution_timeout")?;
    // Both builds reached their RUN step before the timeout.
    run.check_trace_has("STEP 2/2: RUN sleep 4246")?;
    run.check_trace_has("STEP 2/2: RUN sleep 4247")?;
    for marker in ["4246", "4247"] {
        let left = berth_integration::host_sleeps(marker);
        ensure!(
            left.is_empty(),
            "RUN step `sleep {marker}` outlived the timed-out job: {left:?}\n{}",
            run.explain()
        );
    }
    Ok(())
}

/// A job builds an image with a vulnerable package; berth's inline scan blocks it as a build
/// failure that names the security policy, and the runner uploads the GitLab container
/// scanning report and the CycloneDX SBOM berth wrote, as `artifacts:reports` would.
#[test]
fn berth_scan_blocks_the_job_and_the_runner_uploads_its_reports() -> Result<()> {
    let Some(binary) = v19() else { return Ok(()) };
    let advisories = tempfile::tempdir()?;
    std::fs::write(
        advisories.path().join("CVE-2099-4343.json"),
        r#"{"id":"CVE-2099-4343","modified":"2099-01-01T00:00:00Z","database_specific":{"severity":"CRITICAL"},
 "affected":[{"package":{"ecosystem":"Debian:12","name":"libberthdemo"},
 "ranges":[{"type":"ECOSYSTEM","events":[{"introduced":"0"},{"fixed":"1.0-2"}]}]}]}"#,
    )?;
    let db = tempfile::tempdir()?;
    #[expect(
        clippy::disallowed_methods,
        reason = "the berth binary under test, once"
    )]
    let imported = std::process::Command::new(berth_binary())
        .args(["db", "update", "--from"])
        .arg(advisories.path())
        .arg("--db")
        .arg(db.path())
        .output()?;
    ensure!(
        imported.status.success(),
        "db update: {}",
        String::from_utf8_lossy(&imported.stderr)
    );
    berth_integration::make_readable_by_all(db.path());
    let report = |name: &str, kind: &str, path: &str| Artifact {
        name: name.to_owned(),
        paths: vec![path.to_owned()],
        when: "always".to_owned(),
        artifact_type: kind.to_owned(),
        artifact_format: "gzip".to_owned(),
        ..Artifact::archive(&[])
    };
    let run = run_with_berth_config(
        &binary,
        &format!("scan_db = \"{}\"\n", db.path().display()),
        |_| {
            JobPayload::new(
                108,
                &[
                    "mkdir -p /tmp/v && cd /tmp/v",
                    "printf 'Package: libberthdemo\\nStatus: install ok installed\\nVersion: 1.0-1\\nArchitecture: amd64\\n\\n' > status",
                    "printf 'ID=debian\\nVERSION_ID=\\\"12\\\"\\n' > os-release",
                    "printf 'FROM localhost/busybox:latest\\nCOPY status /var/lib/dpkg/status\\nCOPY os-release /etc/os-release\\n' > Containerfile",
                    "podman build -q -t localhost/e2e-vulnerable:1 .",
                ],
            )
            .image(Image::new("localhost/build-tools:latest"))
            .artifact(report(
                "container_scanning",
                "container_scanning",
                "gl-container-scanning-report.json",
            ))
            .artifact(report("cyclonedx", "cyclonedx", "gl-sbom-*.cdx.json"))
        },
        |_| {},
    )?;
    run.check_final("failed", "script_failure", Some(1))?;
    run.check_trace_has("CVE-2099-4343")?;
    run.check_trace_has("the security policy blocked this job")?;
    let artifacts = run.gitlab.artifacts();
    for kind in ["container_scanning", "cyclonedx"] {
        let upload = artifacts
            .iter()
            .find(|a| a.job_id == run.job_id && a.query.contains(&format!("artifact_type={kind}")));
        ensure!(
            upload.is_some_and(|a| !a.data.is_empty()),
            "no {kind} report uploaded: {:?}\n{}",
            artifacts
                .iter()
                .map(|a| (&a.filename, &a.query))
                .collect::<Vec<_>>(),
            run.explain()
        );
    }
    let gitlab_report = artifacts
        .iter()
        .find(|a| a.query.contains("artifact_type=container_scanning"))
        .map(|a| {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(
                &mut flate2::read::GzDecoder::new(a.data.as_slice()),
                &mut text,
            );
            text
        })
        .unwrap_or_default();
    ensure!(
        gitlab_report.contains("CVE-2099-4343") && gitlab_report.contains("container_scanning"),
        "the uploaded report lacks the finding: {gitlab_report:.300}"
    );
    Ok(())
}

/// Removes berth's per-project cache of a test project (berth keeps it by design).
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Two jobs of one project in a row: the first archives a cache and uploads artifacts; the
/// second restores the cache (berth keeps `/cache` per project) and downloads the first job's
/// artifacts through the fake (`dependencies`).
#[test]
fn berth_passes_cache_and_artifacts_between_jobs() -> Result<()> {
    let Some(binary) = v19() else { return Ok(()) };
    let gitlab = FakeGitLab::start()?;
    let (_dir, config, options) = berth_runner(&binary, &gitlab)?;
    // A project of its own per test process, so no earlier run's cache can answer.
    let project_id = 700_000 + u64::from(std::process::id());
    let key = format!("deps-{project_id}");
    let _cache = RemoveOnDrop(PathBuf::from(format!(
        "/var/lib/berth/cache/project-{project_id}"
    )));
    let mut first = JobPayload::new(
        105,
        &[
            "mkdir -p vendor",
            "echo cached-by-105 > vendor/dep.txt",
            "echo artifact-of-105 > out.txt",
        ],
    )
    .image(Image::new(IMAGE))
    .cache(Cache::new(&key, &["vendor/"]))
    .artifact(Artifact::archive(&["out.txt"]));
    first.project_id = project_id;
    gitlab.push_job(&first);
    let one = run_single(&config, &options)?;
    let explain = |id: u64, stderr: &str| {
        format!(
            "final: {:?}\ntrace:\n{}\nrunner stderr (tail):\n{}",
            gitlab.final_update(id).map(|u| u.0),
            gitlab.trace_text(id),
            tail(stderr, 40)
        )
    };
    ensure!(
        gitlab
            .final_update(105)
            .is_some_and(|u| u.state() == "success"),
        "{}",
        explain(105, &one.stderr)
    );
    let zip = gitlab
        .artifacts()
        .into_iter()
        .find(|a| a.job_id == 105 && a.filename == "artifacts.zip");
    ensure!(
        zip.is_some(),
        "job 105 uploaded no artifacts\n{}",
        explain(105, &one.stderr)
    );
    let zip = zip.map(|a| a.data).unwrap_or_default();
    let size = zip.len() as u64;
    gitlab.serve_artifacts(105, zip);

    let mut second = JobPayload::new(106, &["cat vendor/dep.txt", "cat out.txt"])
        .image(Image::new(IMAGE))
        .cache(Cache {
            policy: "pull".to_owned(),
            ..Cache::new(&key, &["vendor/"])
        })
        .dependency(Dependency {
            id: 105,
            token: first.token.clone(),
            name: first.name.clone(),
            artifacts_file: ArtifactsFile {
                filename: "artifacts.zip".to_owned(),
                size,
            },
        });
    second.project_id = project_id;
    gitlab.push_job(&second);
    let two = run_single(&config, &options)?;
    ensure!(
        gitlab
            .final_update(106)
            .is_some_and(|u| u.state() == "success"),
        "{}",
        explain(106, &two.stderr)
    );
    gitlab
        .verify_trace(106)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", explain(106, &two.stderr)))?;
    ensure!(
        gitlab.trace_text(105).contains("Created cache"),
        "{}",
        explain(105, &one.stderr)
    );
    let trace = gitlab.trace_text(106);
    ensure!(
        trace.contains("Successfully extracted cache"),
        "{}",
        explain(106, &two.stderr)
    );
    ensure!(
        trace.contains("cached-by-105") && trace.contains("artifact-of-105"),
        "{}",
        explain(106, &two.stderr)
    );
    let download = gitlab
        .requests()
        .into_iter()
        .find(|r| r.method == "GET" && r.path == "/api/v4/jobs/105/artifacts");
    ensure!(
        download.is_some_and(|r| r.header("job-token") == Some(first.token.as_str())),
        "artifacts-downloader used the dependency's token\n{}",
        explain(106, &two.stderr)
    );
    Ok(())
}
