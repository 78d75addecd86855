//! `berth exec` end to end: a project's pipeline, computed by berth, run job by job by the real
//! gitlab-runner (v19 peer) with the real `berth` binary as its executor on real rootless Podman.
//! For each pipeline: which jobs run and in which order, which pass or fail, which variables each
//! job sees, which files its artifacts carry, and the exit code.
//!
//! Needs what `scripts/test-all` sets up first (host, test images, the gitlab-runner peer,
//! `cargo build --workspace`). Missing pieces fail the tests.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use anyhow::{Result, ensure};
use berth_fake_gitlab::harness::new_command;
use common::{exec_statuses, exec_summary, explain_output};

/// A git work tree with `files` committed on `main`, then `uncommitted` written on top.
struct Project {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Project {
    fn new(files: &[(&str, &str)], uncommitted: &[(&str, &str)]) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().join("work");
        std::fs::create_dir_all(&root)?;
        for (path, text) in files {
            let path = root.join(path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, text)?;
        }
        git(&root, &["init", "-q", "-b", "main"])?;
        git(&root, &["add", "-A"])?;
        git(&root, &["commit", "-q", "-m", "first commit"])?;
        for (path, text) in uncommitted {
            std::fs::write(root.join(path), text)?;
        }
        let config = common::exec_berth_config(dir.path())?;
        Ok(Self { dir, config })
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    fn exec(&self, args: &[&str]) -> Result<Output> {
        common::berth_exec(&self.root(), &self.config, args)
    }

    fn log(&self, job: &str) -> String {
        std::fs::read_to_string(self.root().join(".berth/logs").join(format!("{job}.log")))
            .unwrap_or_default()
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = new_command("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "Dev")
        .env("GIT_AUTHOR_EMAIL", "dev@example.invalid")
        .env("GIT_COMMITTER_NAME", "Dev")
        .env("GIT_COMMITTER_EMAIL", "dev@example.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()?;
    ensure!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Files in a zip archive, by Python's zipfile (the archive is the runner's own).
fn zip_names(zip: &Path) -> Result<Vec<String>> {
    let out = new_command("python3")
        .args([
            "-c",
            "import sys, zipfile; print('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))",
        ])
        .arg(zip)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect())
}

const PIPELINE: &str = r#"
default:
  image: localhost/busybox:latest
variables:
  GLOBAL: global
  OVERRIDE: global
stages: [build, test, deploy]
build:
  stage: build
  variables:
    OVERRIDE: job
  script:
    - echo "seen GLOBAL=$GLOBAL OVERRIDE=$OVERRIDE CLI=$CLI BRANCH=$CI_COMMIT_BRANCH JOB=$CI_JOB_NAME"
    - mkdir -p out && echo built > out/file.txt && cat tracked.txt > out/copy.txt
    - echo "VERSION=1.2.3" > build.env
  artifacts:
    paths: [out/]
    reports:
      dotenv: build.env
lint:
  stage: build
  needs: []
  script: [exit 3]
  allow_failure:
    exit_codes: [3]
test:
  stage: test
  needs: [build]
  services:
    - name: localhost/tcp-service:latest
      alias: web
  script:
    - test -f out/file.txt
    - echo "seen VERSION=$VERSION"
    - cat out/copy.txt
    - wget -qO- http://web:8080/
rescue:
  stage: deploy
  when: on_failure
  script: [echo should-not-run]
ship:
  stage: deploy
  when: manual
  script: [echo manual]
"#;

#[test]
fn a_pipeline_runs_as_gitlab_runs_it_with_artifacts_dotenv_services_and_the_work_tree() -> Result<()>
{
    let project = Project::new(
        &[(".gitlab-ci.yml", PIPELINE), ("tracked.txt", "committed\n")],
        &[("tracked.txt", "uncommitted change\n")],
    )?;
    let out = project.exec(&["--json", "--variable", "CLI=from-cli"])?;
    ensure!(out.status.code() == Some(0), "{}", explain_output(&out));
    let summary = exec_summary(&out)?;
    assert_eq!(
        exec_statuses(&summary),
        [
            ("build", "passed"),
            ("lint", "warning"),
            ("test", "passed"),
            ("rescue", "skipped"),
            ("ship", "manual"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .to_vec(),
        "{}",
        explain_output(&out)
    );
    assert_eq!(summary["status"], "passed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let started = |job: &str| stdout.find(&format!("▶ {job} ("));
    ensure!(
        started("build") < started("test") && started("lint") < started("test"),
        "order\n{}",
        explain_output(&out)
    );
    let build = project.log("build");
    ensure!(
        build.contains("seen GLOBAL=global OVERRIDE=job CLI=from-cli BRANCH=main JOB=build"),
        "build log:\n{build}"
    );
    let test = project.log("test");
    for want in [
        "seen VERSION=1.2.3",
        "uncommitted change",
        "service-says-hello",
    ] {
        ensure!(test.contains(want), "test log lacks {want:?}:\n{test}");
    }
    let names = zip_names(&project.root().join(".berth/artifacts/build/artifacts.zip"))?;
    ensure!(
        names.iter().any(|n| n == "out/file.txt") && names.iter().any(|n| n == "out/copy.txt"),
        "{names:?}"
    );
    assert_eq!(
        summary["jobs"][0]["reports"],
        serde_json::json!([".berth/artifacts/build/dotenv.gz"]),
        "the dotenv report is kept with the job's artifacts"
    );
    ensure!(
        project
            .root()
            .join(".berth/artifacts/build/dotenv.gz")
            .is_file()
    );
    let exclude = std::fs::read_to_string(project.root().join(".git/info/exclude"))?;
    ensure!(exclude.contains("/.berth/"), "{exclude}");
    let status = git(&project.root(), &["status", "--porcelain"])?;
    ensure!(
        status.trim() == "M tracked.txt",
        "berth exec must leave the user's git state alone: {status}"
    );
    Ok(())
}

#[test]
fn a_failing_job_fails_the_pipeline_skips_what_follows_and_runs_on_failure_jobs() -> Result<()> {
    let yaml = r"
default:
  image: localhost/busybox:latest
broken:
  stage: build
  script: [echo about to fail, exit 7]
tests:
  stage: test
  script: [echo should-not-run]
rescue:
  stage: deploy
  when: on_failure
  script: [echo rescued]
";
    let project = Project::new(&[(".gitlab-ci.yml", yaml)], &[])?;
    let out = project.exec(&["--json"])?;
    ensure!(out.status.code() == Some(1), "{}", explain_output(&out));
    let summary = exec_summary(&out)?;
    assert_eq!(
        exec_statuses(&summary),
        [
            ("broken", "failed"),
            ("tests", "skipped"),
            ("rescue", "passed")
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .to_vec(),
        "{}",
        explain_output(&out)
    );
    assert_eq!(
        summary["jobs"][0]["exit_code"],
        7,
        "{}",
        explain_output(&out)
    );
    ensure!(project.log("rescue").contains("rescued"));
    Ok(())
}

#[test]
fn yaml_errors_exit_2_in_gitlabs_words_before_anything_runs() -> Result<()> {
    let yaml = "build:\n  scirpt: [echo hi]\n";
    let project = Project::new(&[(".gitlab-ci.yml", yaml)], &[])?;
    let out = project.exec(&[])?;
    ensure!(out.status.code() == Some(2), "{}", explain_output(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        stderr.contains("jobs:build config contains unknown keys: scirpt"),
        "{}",
        explain_output(&out)
    );
    ensure!(!project.root().join(".berth/logs").exists(), "nothing ran");
    Ok(())
}

#[test]
fn named_jobs_run_alone_or_with_their_needs_and_unknown_names_are_refused() -> Result<()> {
    let yaml = r"
default:
  image: localhost/busybox:latest
compile:
  stage: build
  script: [echo compiled > c.txt]
  artifacts: {paths: [c.txt]}
check:
  stage: test
  needs: [compile]
  script: [cat c.txt]
other:
  stage: test
  script: [echo other]
";
    let project = Project::new(&[(".gitlab-ci.yml", yaml)], &[])?;
    let out = project.exec(&["--json", "--needs", "check"])?;
    ensure!(out.status.code() == Some(0), "{}", explain_output(&out));
    assert_eq!(
        exec_statuses(&exec_summary(&out)?),
        [("compile", "passed"), ("check", "passed")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .to_vec()
    );
    ensure!(
        project.log("check").contains("compiled"),
        "{}",
        project.log("check")
    );
    let out = project.exec(&["chekc"])?;
    ensure!(out.status.code() == Some(2), "{}", explain_output(&out));
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("no job \"chekc\""),
        "{}",
        explain_output(&out)
    );
    Ok(())
}

#[test]
fn a_job_cannot_take_another_jobs_artifacts_or_report_for_it_through_the_coordinator() -> Result<()>
{
    // `spy` needs nothing, so GitLab gives it no token for `secret`'s artifacts; with -j 1 it
    // starts right after `secret`, whose job id is its own minus one.
    let yaml = r#"
default:
  image: localhost/busybox:latest
secret:
  stage: build
  script: [echo top-secret > s.txt]
  artifacts: {paths: [s.txt]}
spy:
  stage: test
  needs: []
  script:
    - SECRET=$((CI_JOB_ID - 1))
    - 'if wget -q -O s.zip --header "JOB-TOKEN: $CI_JOB_TOKEN" "$CI_SERVER_URL/api/v4/jobs/$SECRET/artifacts"; then echo LEAKED; exit 1; fi'
    - if wget -q -O s.zip "$CI_SERVER_URL/api/v4/jobs/$SECRET/artifacts"; then echo LEAKED-WITHOUT-TOKEN; exit 1; fi
    - echo '{"token":"'$CI_JOB_TOKEN'","state":"failed","failure_reason":"script_failure"}' > put.json
    - if wget -q -O - --post-file put.json "$CI_SERVER_URL/api/v4/jobs/$SECRET"; then echo FORGED; exit 1; fi
    - echo every request was refused
"#;
    let project = Project::new(&[(".gitlab-ci.yml", yaml)], &[])?;
    let out = project.exec(&["--json"])?;
    ensure!(
        out.status.code() == Some(0),
        "{}\nspy log:\n{}",
        explain_output(&out),
        project.log("spy")
    );
    let spy = project.log("spy");
    ensure!(spy.contains("every request was refused"), "{spy}");
    ensure!(
        spy.contains("403"),
        "the coordinator must answer 403: {spy}"
    );
    assert_eq!(
        exec_statuses(&exec_summary(&out)?),
        [("secret", "passed"), ("spy", "passed")]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .to_vec()
    );
    Ok(())
}

#[test]
fn root_never_runs_git_in_a_work_tree_another_user_owns() -> Result<()> {
    // A checkout whose owner set `core.fsmonitor`: git runs that command on `diff` and `add`.
    // berth exec as root in it would run the owner's command as root.
    let project = Project::new(&[(".gitlab-ci.yml", "job:\n  script: [true]\n")], &[])?;
    let root = project.root();
    let marker = project.dir.path().join("fsmonitor-ran-as-root");
    let hook = project.dir.path().join("fsmonitor.sh");
    std::fs::write(&hook, format!("#!/bin/sh\ntouch {}\n", marker.display()))?;
    std::fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    git(
        &root,
        &["config", "core.fsmonitor", &hook.display().to_string()],
    )?;
    // Owned by nobody, as a developer's checkout is owned by the developer.
    let chown = new_command("chown")
        .args(["-R", "65534:65534"])
        .arg(&root)
        .output()?;
    ensure!(
        chown.status.success(),
        "{}",
        String::from_utf8_lossy(&chown.stderr)
    );
    let out = project.exec(&["--list"])?;
    ensure!(
        !marker.exists(),
        "the owner's fsmonitor command ran as root\n{}",
        explain_output(&out)
    );
    ensure!(out.status.code() == Some(2), "{}", explain_output(&out));
    ensure!(
        String::from_utf8_lossy(&out.stderr).contains("owned by uid 65534"),
        "{}",
        explain_output(&out)
    );
    Ok(())
}
