//! Helpers shared by the integration tests: a tiny HTTP/1.1 client, a git fixture, and the
//! real-runner scenario runner.

#![expect(
    dead_code,
    reason = "each test binary uses a different subset of the helpers"
)]

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use berth_fake_gitlab::driver::{self, DriverCall};
use berth_fake_gitlab::harness::{
    ConfigStyle, CustomConfig, RunOptions, RunOutcome, new_command, run_single,
};
use berth_fake_gitlab::peers::{self, Peer, PeerVersion};
use berth_fake_gitlab::{FakeGitLab, JobPayload, RunnerConfig};

/// A response of [`http`].
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request with `Connection: close`; the body is read to EOF.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no header end")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .context("status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// Runs a command, failing with its output.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A bare repository with one commit on `main` (file `hello.txt`), ready for dumb HTTP.
/// Returns the bare dir and the commit sha.
pub fn make_repo(root: &Path) -> Result<(PathBuf, String)> {
    let work = root.join("repo-work");
    let bare = root.join("project.git");
    let git = |dir: &Path| {
        let mut c = new_command("git");
        c.current_dir(dir)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", root);
        c
    };
    std::fs::create_dir_all(&work)?;
    run(git(&work).args(["init", "-q", "-b", "main"]))?;
    std::fs::write(work.join("hello.txt"), "hello from the fake repo\n")?;
    run(git(&work).args(["add", "hello.txt"]))?;
    run(git(&work).args(["commit", "-q", "-m", "first"]))?;
    let sha = run(git(&work).args(["rev-parse", "HEAD"]))?
        .trim()
        .to_owned();
    run(git(root)
        .args(["clone", "-q", "--bare"])
        .arg(&work)
        .arg(&bare))?;
    run(git(&bare).args(["update-server-info"]))?;
    Ok((bare, sha))
}

/// The peer binary for `version`. A peer that the build script recorded as unavailable (the
/// Go module proxy refused it: a final answer) yields `None` after checking that record,
/// unless `BERTH_REQUIRE_PEERS=1`; a peer that is neither built nor recorded fails the test
/// with a message naming the build script.
pub fn peer(version: PeerVersion) -> Option<PathBuf> {
    match peers::locate(version) {
        Ok(Peer::Binary(path)) => Some(path),
        Ok(Peer::Unavailable(record)) => {
            assert!(
                record.contains("This module version is not available"),
                "the unavailability record of {version:?} is not a registry refusal; rerun {}:\n{record}",
                peers::BUILD_SCRIPT
            );
            assert!(
                std::env::var("BERTH_REQUIRE_PEERS").as_deref() != Ok("1"),
                "BERTH_REQUIRE_PEERS=1 but gitlab-runner {version:?} is unavailable:\n{record}"
            );
            None
        }
        Err(missing) => panic!("{missing}"),
    }
}

/// What a scenario run left behind.
pub struct Scenario {
    pub gitlab: FakeGitLab,
    pub dir: tempfile::TempDir,
    pub outcome: RunOutcome,
    pub calls: Vec<DriverCall>,
    pub job_id: u64,
}

impl Scenario {
    pub fn sequence(&self) -> Vec<String> {
        driver::sequence(&self.calls)
    }

    pub fn run_call(&self, stage: &str) -> Option<&DriverCall> {
        self.calls
            .iter()
            .find(|c| c.op == "run" && c.stage() == Some(stage))
    }

    /// Context for assertion messages.
    pub fn explain(&self) -> String {
        format!(
            "argv: {:?}\nsequence: {:?}\nfinal: {:?}\ntrace:\n{}\nrunner stderr (tail):\n{}",
            self.outcome.argv,
            self.sequence(),
            self.gitlab.final_update(self.job_id).map(|u| u.0),
            self.gitlab.trace_text(self.job_id),
            tail(&self.outcome.stderr, 60)
        )
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Settings a scenario may change before the run.
pub struct Setup<'a> {
    pub gitlab: &'a FakeGitLab,
    pub config: &'a mut RunnerConfig,
    pub options: &'a mut RunOptions,
    pub dir: &'a Path,
}

/// Runs the job that `make_job` builds (given the started fake) through the real runner
/// `binary` with the recording driver as the custom executor, and collects what the fake and
/// the driver recorded.
pub fn scenario(
    binary: &Path,
    version: PeerVersion,
    make_job: impl FnOnce(&FakeGitLab) -> JobPayload,
    setup: impl FnOnce(Setup<'_>),
) -> Result<Scenario> {
    let dir = tempfile::tempdir()?;
    let gitlab = FakeGitLab::start()?;
    let job = make_job(&gitlab);
    gitlab.push_job(&job);
    let log = dir.path().join("driver.log");
    let mut config = RunnerConfig::recommended(&gitlab.url(), &driver::script_path());
    let mut options = RunOptions::new(binary, dir.path());
    options.style = if version.has_config_flag() {
        ConfigStyle::ConfigFile
    } else {
        ConfigStyle::Flags
    };
    options.wall_clock = Duration::from_secs(150);
    // `gitlab-runner` on PATH for the artifact and cache helpers the stage scripts call.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin)?;
    std::os::unix::fs::symlink(binary, bin.join("gitlab-runner"))?;
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    options.env.extend([
        (
            "BERTH_FAKE_DRIVER_LOG".to_owned(),
            log.display().to_string(),
        ),
        (
            "BERTH_FAKE_DRIVER_ROOT".to_owned(),
            dir.path().display().to_string(),
        ),
        ("PATH".to_owned(), path),
        ("HOME".to_owned(), dir.path().display().to_string()),
    ]);
    setup(Setup {
        gitlab: &gitlab,
        config: &mut config,
        options: &mut options,
        dir: dir.path(),
    });
    let outcome = run_single(&config, &options)?;
    let calls = driver::read(&log);
    let scenario = Scenario {
        gitlab,
        dir,
        outcome,
        calls,
        job_id: job.id,
    };
    if scenario.outcome.killed_at_deadline {
        bail!(
            "gitlab-runner hit the harness deadline\n{}",
            scenario.explain()
        );
    }
    Ok(scenario)
}

/// The berth binary cargo built next to this test (or `$BERTH_BINARY`).
pub fn berth_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_BINARY") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let berth = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("berth"))
        .unwrap_or_default();
    assert!(
        berth.is_file(),
        "{} is missing: run `cargo build --workspace` first (scripts/test-all does), or set BERTH_BINARY",
        berth.display()
    );
    berth
}

/// A berth config for `berth exec` in `dir`: a short stop grace and the v19 runner peer.
pub fn exec_berth_config(dir: &Path) -> Result<PathBuf> {
    let runner = peer(PeerVersion::V19).context("no gitlab-runner v19 peer")?;
    let config = dir.join("berth.toml");
    std::fs::write(
        &config,
        format!(
            "stop_grace = 2\ngitlab_runner_binary = {:?}\n",
            runner.display().to_string()
        ),
    )?;
    Ok(config)
}

/// `berth --config CONFIG exec ARGS` in `repo`, without colour.
pub fn berth_exec(repo: &Path, config: &Path, args: &[&str]) -> Result<std::process::Output> {
    Ok(new_command(berth_binary())
        .current_dir(repo)
        .arg("--config")
        .arg(config)
        .arg("exec")
        .args(args)
        .env("NO_COLOR", "1")
        .output()?)
}

/// A finished command's exit code, stdout and the tail of its stderr.
pub fn explain_output(out: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        tail(&String::from_utf8_lossy(&out.stderr), 60)
    )
}

/// The JSON summary `berth exec --json` ends its stdout with.
pub fn exec_summary(out: &std::process::Output) -> Result<serde_json::Value> {
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text
        .rfind("\n{\n")
        .map(|i| i + 1)
        .or_else(|| text.starts_with('{').then_some(0))
        .with_context(|| format!("no JSON summary\n{}", explain_output(out)))?;
    serde_json::from_str(&text[start..]).with_context(|| explain_output(out))
}

/// The summary's jobs as (name, status), in pipeline order.
pub fn exec_statuses(summary: &serde_json::Value) -> Vec<(String, String)> {
    summary["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| {
            (
                j["name"].as_str().unwrap_or_default().to_owned(),
                j["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// A runner configuration with berth as the custom executor, pointed at `gitlab`, runner token
/// `token`, in a fresh directory that also holds berth's config: the pod on `network` (`host`
/// for a helper that must reach the fake at 127.0.0.1, e.g. to clone), `stop_grace = 2`, then
/// `extra_config`.
pub fn berth_runner_config(
    binary: &Path,
    gitlab: &FakeGitLab,
    token: &str,
    network: &str,
    extra_config: &str,
) -> Result<(tempfile::TempDir, RunnerConfig, RunOptions)> {
    let dir = tempfile::tempdir()?;
    let berth_config = dir.path().join("berth.toml");
    std::fs::write(
        &berth_config,
        format!("network = \"{network}\"\nstop_grace = 2\n{extra_config}"),
    )?;
    let berth = berth_binary();
    let mut config = RunnerConfig::recommended(&gitlab.url(), &berth);
    config.token = token.to_owned();
    config.custom = CustomConfig::berth(&berth, &berth_config);
    let mut options = RunOptions::new(binary, dir.path());
    options.wall_clock = Duration::from_secs(200);
    Ok((dir, config, options))
}
