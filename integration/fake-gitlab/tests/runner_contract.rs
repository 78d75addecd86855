//! The harness proved against the real gitlab-runner, without berth: the recording driver is the
//! custom executor (contract §6). Each scenario runs against the v19 peer (`::v19`).
//!
//! A peer that is neither built nor recorded as unavailable fails the test, naming
//! `integration/fake-gitlab/peers/build-gitlab-runner.sh`.

mod common;

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, ensure};
use berth_fake_gitlab::JobPayload;
use berth_fake_gitlab::payload::{Artifact, GitInfo, Variable};
use berth_fake_gitlab::peers::PeerVersion;
use berth_fake_gitlab::server::Injection;
use common::{Scenario, peer, scenario};

/// One test per scenario against the v19 peer. The peer must exist: a refused build fails the
/// test. v16.11.0 cannot be built from the Go module proxy these machines reach (it answers 403
/// for every v16 commit), so there are no v16 variants rather than tests that pass without
/// running anything; the scenario functions still take the version for when it can be built.
macro_rules! per_version {
    ($name:ident) => {
        mod $name {
            use super::*;

            #[test]
            fn v19() -> Result<()> {
                let binary = peer(PeerVersion::V19).ok_or_else(|| {
                    anyhow::anyhow!(
                        "no gitlab-runner v19 peer could be built; see {}",
                        berth_fake_gitlab::peers::BUILD_SCRIPT
                    )
                })?;
                super::$name(&binary, PeerVersion::V19)
            }
        }
    };
}

/// The driver calls of a passing job without git, cache or artifacts (contract §1.5).
fn passing_job_stages(after_script: bool) -> Vec<&'static str> {
    let mut stages = vec![
        "config",
        "prepare",
        "run:prepare_script",
        "run:get_sources",
        "run:build_script",
    ];
    if after_script {
        stages.push("run:after_script");
    }
    stages.extend(["run:cleanup_file_variables", "cleanup"]);
    stages
}

const SECRET: &str = "s3cr3t-value-1234";

fn check_final(s: &Scenario, state: &str, reason: &str, exit_code: Option<i64>) -> Result<()> {
    let update = s.gitlab.final_update(s.job_id);
    ensure!(update.is_some(), "no final PUT\n{}", s.explain());
    let update = update.unwrap_or_else(|| unreachable!());
    ensure!(
        update.state() == state
            && update.failure_reason() == reason
            && update.exit_code() == exit_code,
        "want {state}/{reason}/{exit_code:?}, got {}/{}/{:?}\n{}",
        update.state(),
        update.failure_reason(),
        update.exit_code(),
        s.explain()
    );
    s.gitlab
        .verify_trace(s.job_id)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", s.explain()))?;
    Ok(())
}

fn stage_order_and_argv(binary: &Path, version: PeerVersion) -> Result<()> {
    let job = JobPayload::new(1, &["echo hello-from-build", "echo secret=$MY_SECRET"])
        .after_script(&["echo after-status=$CI_JOB_STATUS"])
        .variable(Variable::masked("MY_SECRET", SECRET));
    let s = scenario(
        binary,
        version,
        |_| job,
        |setup| {
            setup.options.env.push((
                "BERTH_FAKE_DRIVER_RECORD_VARS".to_owned(),
                "CUSTOM_ENV_MY_SECRET".to_owned(),
            ));
        },
    )?;
    check_final(&s, "success", "", None)?;
    let want = passing_job_stages(true);
    ensure!(s.sequence() == want, "stage order\n{}", s.explain());
    let root = s.dir.path().display().to_string();
    let invocations = s
        .calls
        .iter()
        .filter(|c| matches!(c.op.as_str(), "config" | "prepare" | "run" | "cleanup"));
    for call in invocations {
        ensure!(call.env("BUILD_FAILURE_EXIT_CODE") == Some("1"), "{call:?}");
        ensure!(
            call.env("SYSTEM_FAILURE_EXIT_CODE") == Some("2"),
            "{call:?}"
        );
        let tmp = call.env("TMPDIR").unwrap_or_default();
        ensure!(
            call.env("JOB_RESPONSE_FILE") == Some(&format!("{tmp}/response.json")),
            "{call:?}"
        );
        ensure!(
            call.env("PWD") == Some(tmp),
            "driver cwd is the executor temp dir: {call:?}"
        );
        if call.op == "run" {
            ensure!(
                call.args.len() == 2,
                "run argv is <script> <stage>: {call:?}"
            );
            let script = Path::new(&call.args[0]);
            let name = if version == PeerVersion::V16 {
                "script."
            } else {
                "script"
            };
            ensure!(script.is_absolute() && script.starts_with(tmp), "{call:?}");
            ensure!(script.file_name().is_some_and(|n| n == name), "{call:?}");
            ensure!(
                call.stage() != Some("step_script"),
                "step_script must be renamed: {call:?}"
            );
        }
        if call.op != "config" {
            ensure!(
                call.env("CUSTOM_ENV_CI_BUILDS_DIR") == Some(&format!("{root}/builds")),
                "{call:?}"
            );
        }
    }
    let config = &s.calls[0];
    ensure!(
        config
            .env("CUSTOM_ENV_CI_PROJECT_DIR")
            .unwrap_or_default()
            .is_empty(),
        "{config:?}"
    );
    let build = s.run_call("build_script");
    ensure!(
        build.and_then(|c| c.env("CUSTOM_ENV_CI_JOB_STATUS")) == Some("running"),
        "{build:?}"
    );
    ensure!(
        build.and_then(|c| c.env("CUSTOM_ENV_MY_SECRET")) == Some(SECRET),
        "env values are raw: {build:?}"
    );
    ensure!(
        build.and_then(|c| c.env("CUSTOM_ENV_CI_JOB_ID")) == Some("1"),
        "{build:?}"
    );
    let after = s.run_call("after_script");
    ensure!(
        after.and_then(|c| c.env("CUSTOM_ENV_CI_JOB_STATUS")) == Some("success"),
        "{after:?}"
    );

    let trace = s.gitlab.trace_text(1);
    for want in [
        "Using Custom executor with driver recording-driver 1.0",
        "recording-driver: prepare",
        "hello-from-build",
        "secret=[MASKED]",
        "after-status=success",
        "section_start:",
        ":step_script",
        "the 'build_script' stage will be replaced with 'step_script'",
    ] {
        ensure!(
            trace.contains(want),
            "trace lacks {want:?}\n{}",
            s.explain()
        );
    }
    ensure!(
        !trace.contains(SECRET),
        "masked value leaked\n{}",
        s.explain()
    );
    // Cleanup finishes before the final PUT (contract §1.2).
    let cleanup_done = s
        .calls
        .iter()
        .rev()
        .find(|c| c.op == "cleanup-done")
        .and_then(|c| c.time());
    let final_put = s.gitlab.final_update_request(1).map(|r| r.received);
    ensure!(
        cleanup_done.is_some() && final_put.is_some() && cleanup_done < final_put,
        "{cleanup_done:?} vs {final_put:?}\n{}",
        s.explain()
    );
    let updates = s.gitlab.job_updates(1);
    if version == PeerVersion::V19 {
        ensure!(
            updates.first().is_some_and(|u| u["state"] == "running"),
            "two-phase commit: {updates:?}"
        );
    }
    ensure!(
        s.gitlab
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.status == 202),
        "{}",
        s.explain()
    );
    Ok(())
}
per_version!(stage_order_and_argv);

fn build_failure_exit_code(binary: &Path, version: PeerVersion) -> Result<()> {
    let job = JobPayload::new(1, &["echo about-to-fail", "exit 3"])
        .after_script(&["echo after-status=$CI_JOB_STATUS"]);
    let s = scenario(binary, version, |_| job, |_| {})?;
    // v16.11.0 has no BUILD_EXIT_CODE_FILE, so the driver's exit code 1 is all it sees.
    let code = if version.has_build_exit_code_file() {
        3
    } else {
        1
    };
    check_final(&s, "failed", "script_failure", Some(code))?;
    let exit = s
        .calls
        .iter()
        .find(|c| c.op == "exit" && c.stage() == Some("build_script"));
    ensure!(
        exit.and_then(|c| c.fields.get("rc")).map(String::as_str) == Some("3"),
        "{}",
        s.explain()
    );
    let after = s.run_call("after_script");
    ensure!(
        after.and_then(|c| c.env("CUSTOM_ENV_CI_JOB_STATUS")) == Some("failed"),
        "{}",
        s.explain()
    );
    ensure!(
        s.sequence().last().map(String::as_str) == Some("cleanup"),
        "{}",
        s.explain()
    );
    Ok(())
}
per_version!(build_failure_exit_code);

fn system_failure_in_prepare_is_retried(binary: &Path, version: PeerVersion) -> Result<()> {
    let job = JobPayload::new(1, &["echo never-runs"]);
    let s = scenario(
        binary,
        version,
        |_| job,
        |setup| {
            setup
                .options
                .env
                .push(("BERTH_FAKE_DRIVER_PREPARE_EXIT".to_owned(), "2".to_owned()));
        },
    )?;
    check_final(&s, "failed", "runner_system_failure", None)?;
    let triple = ["config", "prepare", "cleanup"];
    let want: Vec<&str> = triple.iter().cycle().take(9).copied().collect();
    ensure!(
        s.sequence() == want,
        "3 config/prepare/cleanup triples\n{}",
        s.explain()
    );
    ensure!(
        !s.gitlab.trace_text(1).contains("never-runs"),
        "{}",
        s.explain()
    );
    Ok(())
}
per_version!(system_failure_in_prepare_is_retried);

fn cancel_reaches_after_script(binary: &Path, version: PeerVersion) -> Result<()> {
    let job = JobPayload::new(1, &["echo BUILD_STARTED", "sleep 120"])
        .after_script(&["echo after-status=$CI_JOB_STATUS"]);
    let s = scenario(
        binary,
        version,
        |_| job,
        |setup| {
            setup.gitlab.set_trace_update_interval(1);
            setup
                .gitlab
                .inject(Injection::cancel_when_trace_contains("BUILD_STARTED"));
        },
    )?;
    ensure!(
        s.outcome.elapsed < Duration::from_secs(90),
        "cancel took {:?}\n{}",
        s.outcome.elapsed,
        s.explain()
    );
    let update = s.gitlab.final_update(1);
    ensure!(
        update.as_ref().is_some_and(|u| u.state() == "failed"),
        "{}",
        s.explain()
    );
    if version == PeerVersion::V19 {
        ensure!(
            update
                .as_ref()
                .is_some_and(|u| u.failure_reason() == "job_canceled"),
            "{}",
            s.explain()
        );
    }
    s.gitlab
        .verify_trace(1)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", s.explain()))?;
    let seq = s.sequence();
    let build = seq.iter().position(|x| x == "run:build_script");
    let after = seq.iter().position(|x| x == "run:after_script");
    ensure!(
        build.is_some() && after > build,
        "after_script follows the canceled build_script\n{}",
        s.explain()
    );
    let after_call = s.run_call("after_script");
    ensure!(
        after_call.and_then(|c| c.env("CUSTOM_ENV_CI_JOB_STATUS")) == Some("canceled"),
        "{}",
        s.explain()
    );
    ensure!(
        seq.last().map(String::as_str) == Some("cleanup"),
        "{}",
        s.explain()
    );
    let build_exit = s
        .calls
        .iter()
        .find(|c| c.op == "exit" && c.stage() == Some("build_script"));
    ensure!(
        // v17.4+ scripts trap TERM with `exit 1` (contract §1.7); v16.11.0's die of the signal.
        build_exit.is_some_and(|c| c.fields.get("rc").is_some_and(|rc| {
            if version == PeerVersion::V19 {
                rc == "1"
            } else {
                rc != "0"
            }
        })),
        "build_script was stopped\n{}",
        s.explain()
    );
    Ok(())
}
per_version!(cancel_reaches_after_script);

fn timeout_is_job_execution_timeout(binary: &Path, version: PeerVersion) -> Result<()> {
    let job = JobPayload::new(1, &["echo sleeping", "sleep 120"]).timeout(5);
    let s = scenario(binary, version, |_| job, |_| {})?;
    ensure!(
        s.outcome.elapsed < Duration::from_secs(90),
        "timeout took {:?}\n{}",
        s.outcome.elapsed,
        s.explain()
    );
    let update = s.gitlab.final_update(1);
    ensure!(
        update.as_ref().is_some_and(|u| u.state() == "failed" && u.failure_reason() == "job_execution_timeout"),
        "{}",
        s.explain()
    );
    s.gitlab
        .verify_trace(1)
        .map_err(|e| anyhow::anyhow!("{e}\n{}", s.explain()))?;
    ensure!(
        s.sequence().iter().any(|x| x == "run:build_script"),
        "{}",
        s.explain()
    );
    ensure!(
        s.sequence().last().map(String::as_str) == Some("cleanup"),
        "cleanup runs after a timeout\n{}",
        s.explain()
    );
    Ok(())
}
per_version!(timeout_is_job_execution_timeout);

fn git_clone_and_artifact_upload(binary: &Path, version: PeerVersion) -> Result<()> {
    let repo_root = tempfile::tempdir()?;
    let (bare, sha) = common::make_repo(repo_root.path())?;
    let s = scenario(
        binary,
        version,
        |gitlab| {
            gitlab.serve_repo("group/project.git", &bare);
            JobPayload::new(1, &["cat hello.txt > out.txt", "echo built"])
                .artifact(Artifact::archive(&["out.txt"]))
                .git(GitInfo::fake_repo(&gitlab.url(), sha))
        },
        |_| {},
    )?;
    check_final(&s, "success", "", None)?;
    let want_dir = format!("{}/builds/group/project", s.dir.path().display());
    let build = s.run_call("build_script");
    ensure!(
        build.and_then(|c| c.env("CUSTOM_ENV_CI_PROJECT_DIR")) == Some(want_dir.as_str()),
        "{}",
        s.explain()
    );
    ensure!(
        s.sequence()
            .iter()
            .any(|x| x == "run:upload_artifacts_on_success"),
        "{}",
        s.explain()
    );
    let artifacts = s.gitlab.artifacts();
    let zip = artifacts
        .iter()
        .find(|a| a.job_id == 1 && a.field == "file");
    ensure!(zip.is_some(), "no artifact upload\n{}", s.explain());
    let zip = zip.unwrap_or_else(|| unreachable!());
    ensure!(zip.filename == "artifacts.zip", "{zip:?}");
    ensure!(zip.job_token.as_deref() == Some("job-token-1"), "{zip:?}");
    ensure!(zip.data.starts_with(b"PK"), "not a zip");
    ensure!(
        zip.data.windows(7).any(|w| w == b"out.txt"),
        "zip lacks out.txt"
    );
    Ok(())
}
per_version!(git_clone_and_artifact_upload);

/// The flag form of the configuration (what v16.11.0 needs, lacking `-c/-r`), checked on the
/// v19 peer, which accepts both. Feature flags cannot be passed as flags, so timestamps stay on.
#[test]
fn flags_style_configuration_runs_a_job() -> Result<()> {
    let binary = peer(PeerVersion::V19).ok_or_else(|| {
        anyhow::anyhow!(
            "no gitlab-runner v19 peer could be built; see {}",
            berth_fake_gitlab::peers::BUILD_SCRIPT
        )
    })?;
    let job = JobPayload::new(1, &["echo via-flags"]);
    let s = scenario(
        &binary,
        PeerVersion::V19,
        |_| job,
        |setup| setup.options.style = berth_fake_gitlab::harness::ConfigStyle::Flags,
    )?;
    ensure!(
        !s.outcome.argv.iter().any(|a| a == "-c"),
        "{:?}",
        s.outcome.argv
    );
    check_final(&s, "success", "", None)?;
    let want = passing_job_stages(false);
    ensure!(s.sequence() == want, "{}", s.explain());
    ensure!(
        s.gitlab.trace_text(1).contains("via-flags"),
        "{}",
        s.explain()
    );
    Ok(())
}
