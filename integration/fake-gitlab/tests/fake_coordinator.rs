//! The fake coordinator and the recording driver on their own: the runner's side of the HTTP
//! protocol is replayed by hand (contract §4.2), git clones over dumb HTTP, and the driver is
//! called the way gitlab-runner calls it. These need no gitlab-runner binary.

mod common;

use anyhow::{Context as _, Result, ensure};
use berth_fake_gitlab::driver;
use berth_fake_gitlab::harness::new_command;
use berth_fake_gitlab::payload::Variable;
use berth_fake_gitlab::server::{Endpoint, Injection, TraceMismatch};
use berth_fake_gitlab::{FakeGitLab, JobPayload};
use common::{http, run};

#[test]
fn job_request_hands_out_queued_jobs_then_204() -> Result<()> {
    let gl = FakeGitLab::start()?;
    gl.push_job(&JobPayload::new(5, &["true"]).variable(Variable::masked("K", "v-123456789")));
    let r = http(
        gl.addr(),
        "POST",
        "/api/v4/jobs/request",
        &[("Content-Type", "application/json")],
        br#"{"token":"glrt-test"}"#,
    )?;
    ensure!(r.status == 201, "status {}", r.status);
    ensure!(
        r.header("content-type") == Some("application/json"),
        "runner needs application/json"
    );
    let job: serde_json::Value = serde_json::from_slice(&r.body)?;
    ensure!(job["id"] == 5 && job["token"] == "job-token-5", "{job}");
    let r = http(gl.addr(), "POST", "/api/v4/jobs/request", &[], b"{}")?;
    ensure!(r.status == 204, "status {}", r.status);
    let recorded = gl.requests();
    ensure!(
        recorded.len() == 2
            && recorded[0]
                .json()
                .is_some_and(|b| b["token"] == "glrt-test"),
        "{recorded:?}"
    );
    Ok(())
}

#[test]
fn trace_patches_assemble_and_verify_against_the_final_put() -> Result<()> {
    let gl = FakeGitLab::start()?;
    gl.set_trace_update_interval(1);
    let first = b"line one\n";
    let second = b"line two\n";
    let r = http(
        gl.addr(),
        "PATCH",
        "/api/v4/jobs/9/trace?debug_trace=false",
        &[("Content-Range", "0-8"), ("JOB-TOKEN", "t")],
        first,
    )?;
    ensure!(r.status == 202, "PATCH must answer 202, got {}", r.status);
    ensure!(
        r.header("x-gitlab-trace-update-interval") == Some("1"),
        "{:?}",
        r.headers
    );
    // A resend of the same range replaces, not duplicates.
    http(
        gl.addr(),
        "PATCH",
        "/api/v4/jobs/9/trace",
        &[("Content-Range", "0-8")],
        first,
    )?;
    http(
        gl.addr(),
        "PATCH",
        "/api/v4/jobs/9/trace",
        &[("Content-Range", "9-17")],
        second,
    )?;
    let r = http(
        gl.addr(),
        "PATCH",
        "/api/v4/jobs/9/trace",
        &[("Content-Range", "99-100")],
        b"xx",
    )?;
    ensure!(
        r.status == 416 && r.header("range") == Some("0-18"),
        "gap answers 416 + Range: {:?}",
        r.headers
    );
    let whole = [first.as_slice(), second.as_slice()].concat();
    ensure!(gl.trace(9) == whole, "{:?}", gl.trace_text(9));
    ensure!(gl.verify_trace(9) == Err(TraceMismatch::NoFinalUpdate));

    let running = serde_json::json!({"token": "t", "state": "running"});
    let r = http(
        gl.addr(),
        "PUT",
        "/api/v4/jobs/9",
        &[("Content-Type", "application/json")],
        running.to_string().as_bytes(),
    )?;
    ensure!(r.status == 200, "PUT must answer 200, got {}", r.status);
    let fin = serde_json::json!({
        "token": "t", "state": "failed", "failure_reason": "script_failure", "exit_code": 3,
        "output": {"checksum": format!("crc32:{:08x}", crc32fast::hash(&whole)), "bytesize": whole.len()},
    });
    http(
        gl.addr(),
        "PUT",
        "/api/v4/jobs/9",
        &[],
        fin.to_string().as_bytes(),
    )?;
    let update = gl.final_update(9).context("final update")?;
    ensure!(
        update.state() == "failed"
            && update.failure_reason() == "script_failure"
            && update.exit_code() == Some(3)
    );
    ensure!(gl.job_updates(9).len() == 2);
    gl.verify_trace(9).map_err(|e| anyhow::anyhow!("{e}"))?;

    let wrong = serde_json::json!({"state": "success", "output": {"checksum": "crc32:00000000", "bytesize": 1}});
    http(
        gl.addr(),
        "PUT",
        "/api/v4/jobs/9",
        &[],
        wrong.to_string().as_bytes(),
    )?;
    ensure!(matches!(
        gl.verify_trace(9),
        Err(TraceMismatch::Differs { .. })
    ));
    Ok(())
}

#[test]
fn job_status_injection_waits_for_the_trace_marker() -> Result<()> {
    let gl = FakeGitLab::start()?;
    gl.inject(Injection::cancel_when_trace_contains("BUILD_STARTED"));
    gl.inject(Injection {
        endpoint: Endpoint::Update,
        job_status: "failed".to_owned(),
        when_trace_contains: String::new(),
        when_state: "running".to_owned(),
    });
    let r = http(
        gl.addr(),
        "PATCH",
        "/api/v4/jobs/1/trace",
        &[("Content-Range", "0-3")],
        b"abc\n",
    )?;
    ensure!(r.header("job-status").is_none(), "{:?}", r.headers);
    let r = http(
        gl.addr(),
        "PATCH",
        "/api/v4/jobs/1/trace",
        &[("Content-Range", "4-17")],
        b"BUILD_STARTED\n",
    )?;
    ensure!(
        r.status == 202 && r.header("job-status") == Some("canceling"),
        "{:?}",
        r.headers
    );
    let r = http(
        gl.addr(),
        "PUT",
        "/api/v4/jobs/1",
        &[],
        br#"{"state":"running"}"#,
    )?;
    ensure!(r.header("job-status") == Some("failed"), "{:?}", r.headers);
    let r = http(
        gl.addr(),
        "PUT",
        "/api/v4/jobs/1",
        &[],
        br#"{"state":"success"}"#,
    )?;
    ensure!(
        r.header("job-status").is_none(),
        "when_state limits the PUT injection: {:?}",
        r.headers
    );
    Ok(())
}

#[test]
fn artifacts_are_stored_and_served() -> Result<()> {
    let gl = FakeGitLab::start()?;
    let body = b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"artifacts.zip\"\r\nContent-Type: application/octet-stream\r\n\r\nPK\x03\x04zipbytes\r\n--b0undary--\r\n";
    let r = http(
        gl.addr(),
        "POST",
        "/api/v4/jobs/3/artifacts?artifact_format=zip&artifact_type=archive",
        &[
            ("Content-Type", "multipart/form-data; boundary=b0undary"),
            ("JOB-TOKEN", "job-token-3"),
        ],
        body,
    )?;
    ensure!(
        r.status == 201,
        "artifact POST must answer 201, got {}",
        r.status
    );
    let stored = gl.artifacts();
    ensure!(stored.len() == 1, "{stored:?}");
    let a = &stored[0];
    ensure!(
        a.job_id == 3
            && a.field == "file"
            && a.filename == "artifacts.zip"
            && a.data == b"PK\x03\x04zipbytes",
        "{a:?}"
    );
    ensure!(
        a.query == "artifact_format=zip&artifact_type=archive"
            && a.job_token.as_deref() == Some("job-token-3")
    );

    gl.serve_artifacts(2, b"PKzip-of-job-2".to_vec());
    let r = http(
        gl.addr(),
        "GET",
        "/api/v4/jobs/2/artifacts?direct_download=true",
        &[("JOB-TOKEN", "x")],
        b"",
    )?;
    ensure!(
        r.status == 200 && r.body == b"PKzip-of-job-2",
        "status {}",
        r.status
    );
    let r = http(gl.addr(), "GET", "/api/v4/jobs/4/artifacts", &[], b"")?;
    ensure!(r.status == 404);
    Ok(())
}

#[test]
fn git_clones_over_dumb_http() -> Result<()> {
    let root = tempfile::tempdir()?;
    let (bare, sha) = common::make_repo(root.path())?;
    let gl = FakeGitLab::start()?;
    gl.serve_repo("group/project.git", &bare);
    let dest = root.path().join("clone");
    // The runner rewrites the URL with job-token credentials; a dumb server ignores them.
    let url = format!(
        "http://gitlab-ci-token:job-token-1@{}/group/project.git",
        gl.addr()
    );
    run(new_command("git")
        .args(["-c", "protocol.version=0", "clone", "-q", &url])
        .arg(&dest)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("HOME", root.path())
        .env("GIT_CONFIG_NOSYSTEM", "1"))?;
    let head = run(new_command("git")
        .arg("-C")
        .arg(&dest)
        .args(["rev-parse", "HEAD"]))?;
    ensure!(head.trim() == sha, "{head} != {sha}");
    ensure!(std::fs::read_to_string(dest.join("hello.txt"))?.contains("fake repo"));
    let escape = http(
        gl.addr(),
        "GET",
        "/group/project.git/../../etc/passwd",
        &[],
        b"",
    )?;
    ensure!(escape.status == 404, "path traversal must not serve files");
    Ok(())
}

/// Calls the driver like the runner does: `driver run <script> <stage>` with the runner's
/// variables, and checks the record and the BUILD_EXIT_CODE_FILE protocol.
#[test]
fn driver_records_and_reports_build_failures() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let log = dir.path().join("driver.log");
    let script = dir.path().join("script");
    std::fs::write(&script, "#!/usr/bin/env bash\necho out\nexit 7\n")?;
    let exit_file = dir.path().join("build_exit_code");
    let call = |args: &[&str], extra: &[(&str, &str)]| {
        let mut c = new_command(driver::script_path());
        c.args(args)
            .current_dir(dir.path())
            .env("BERTH_FAKE_DRIVER_LOG", &log)
            .env("BERTH_FAKE_DRIVER_ROOT", dir.path())
            .env("BUILD_FAILURE_EXIT_CODE", "1")
            .env("SYSTEM_FAILURE_EXIT_CODE", "2")
            .env("BUILD_EXIT_CODE_FILE", &exit_file)
            .env("CUSTOM_ENV_CI_JOB_STATUS", "running");
        for (k, v) in extra {
            c.env(k, v);
        }
        c.output()
    };
    let config = call(&["config"], &[])?;
    let json: serde_json::Value =
        serde_json::from_slice(&config.stdout).context("config prints JSON")?;
    ensure!(
        json["builds_dir"] == format!("{}/builds", dir.path().display()),
        "{json}"
    );
    ensure!(json["driver"]["name"] == "recording-driver");
    let prepare = call(&["prepare"], &[("BERTH_FAKE_DRIVER_PREPARE_EXIT", "2")])?;
    ensure!(prepare.status.code() == Some(2));
    let script_arg = script.display().to_string();
    let run_out = call(&["run", &script_arg, "build_script"], &[])?;
    ensure!(
        run_out.status.code() == Some(1),
        "build failure exits BUILD_FAILURE_EXIT_CODE"
    );
    ensure!(String::from_utf8_lossy(&run_out.stdout).contains("out"));
    ensure!(std::fs::read_to_string(&exit_file)?.trim() == "7");
    let unknown = call(&["bogus"], &[])?;
    ensure!(unknown.status.code() == Some(2));

    let calls = driver::read(&log);
    ensure!(
        driver::sequence(&calls) == ["config", "prepare", "run:build_script"],
        "{calls:?}"
    );
    let run_call = &calls[2];
    ensure!(
        run_call.args == [script_arg.clone(), "build_script".to_owned()],
        "{run_call:?}"
    );
    ensure!(run_call.env("CUSTOM_ENV_CI_JOB_STATUS") == Some("running"));
    ensure!(run_call.env("PWD") == Some(dir.path().to_str().unwrap_or_default()));
    let exit = calls
        .iter()
        .find(|c| c.op == "exit")
        .context("exit record")?;
    ensure!(exit.fields.get("rc").map(String::as_str) == Some("7"));
    Ok(())
}
