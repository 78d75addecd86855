//! berth-integration: drives the real `berth` binary exactly as gitlab-runner does (a new process
//! per stage, in its own process group, stdin from /dev/null, the contract's environment) against
//! real rootless Podman. Host setup and test images come from `integration/host` and
//! `integration/images`; `scripts/test-all` runs both before the tests.

#![expect(
    clippy::disallowed_methods,
    reason = "the harness plays gitlab-runner and spawns berth itself"
)]

pub mod contract;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The runner user the host setup creates.
pub const RUNNER_USER: &str = "berth-runner";
/// berth's state directory on test hosts.
pub const STATE_DIR: &str = "/var/lib/berth";

/// The `berth` binary next to the test executable (cargo builds it for the workspace), or
/// `BERTH_BINARY` (a copy of it, when several worktrees share one target directory).
pub fn berth_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("BERTH_BINARY") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let berth = dir.join("berth");
    assert!(
        berth.is_file(),
        "{} is missing: run `cargo build --workspace` first (scripts/test-all does)",
        berth.display()
    );
    berth
}

/// Fails the test unless the host can run rootless Podman jobs the way CI must.
pub fn require_host() {
    assert!(
        nix::unistd::Uid::effective().is_root(),
        "integration tests run as root, like gitlab-runner's service, so berth drops to {RUNNER_USER}"
    );
    let podman = Command::new("podman").arg("--version").output();
    assert!(
        podman.is_ok_and(|o| o.status.success()),
        "podman is missing: run integration/host/setup-host.sh"
    );
    assert!(
        nix::unistd::User::from_name(RUNNER_USER)
            .ok()
            .flatten()
            .is_some(),
        "user {RUNNER_USER} is missing: run integration/host/setup-host.sh"
    );
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// One simulated job: the runner's temp dir, payload and environment.
pub struct FakeRunner {
    /// The runner's per-job temp dir (0700, like gitlab-runner's).
    pub tmp: tempfile::TempDir,
    /// Job id.
    pub job_id: u64,
    /// Runner short token (unique per test job).
    pub token: String,
    /// Berth config file, if any.
    pub config: Option<PathBuf>,
    /// `job_env` from the config stage.
    pub job_env: BTreeMap<String, String>,
    /// Extra environment for every stage.
    pub extra_env: BTreeMap<String, String>,
}

/// What one stage did.
#[derive(Debug)]
pub struct StageResult {
    /// Exit code (-1 for a signal).
    pub code: i32,
    /// stdout.
    pub stdout: String,
    /// stderr.
    pub stderr: String,
    /// Wall time.
    pub elapsed: Duration,
}

impl StageResult {
    fn from_output(o: &Output, elapsed: Duration) -> Self {
        Self {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
            elapsed,
        }
    }

    /// All output, for assertion messages.
    pub fn all(&self) -> String {
        format!(
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl FakeRunner {
    /// A job with `payload` (its `id` is filled in).
    pub fn new(mut payload: Value) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("custom-executor")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700))
            .expect("chmod");
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let job_id = u64::from(std::process::id()) * 100 + u64::from(n);
        payload["id"] = json!(job_id);
        if payload.get("token").is_none() {
            payload["token"] = json!("glcbt-integration-token");
        }
        let path = tmp.path().join("response.json");
        std::fs::write(&path, payload.to_string()).expect("payload");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Self {
            tmp,
            job_id,
            token: format!("it{}x{n}", std::process::id()),
            config: None,
            job_env: BTreeMap::new(),
            extra_env: BTreeMap::new(),
        }
    }

    /// Uses a berth config with `text`.
    pub fn with_config(mut self, text: &str) -> Self {
        let path = self.tmp.path().join("berth.toml");
        std::fs::write(&path, text).expect("config");
        self.config = Some(path);
        self
    }

    /// The job key: what `berth config` handed on, else what berth derives for the default
    /// runner config.
    pub fn key(&self) -> String {
        self.job_env
            .get("BERTH_JOB_KEY")
            .cloned()
            .unwrap_or_else(|| format!("j{}-{}", self.job_id, self.token))
    }

    /// The same job id and runner token as `other` (as when two runners' configs on one host
    /// serve the same GitLab runner).
    pub fn with_job_of(mut self, other: &Self) -> Self {
        self.job_id = other.job_id;
        self.token.clone_from(&other.token);
        let path = self.tmp.path().join("response.json");
        let mut payload: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("payload")).expect("JSON");
        payload["id"] = json!(self.job_id);
        std::fs::write(&path, payload.to_string()).expect("payload");
        self
    }

    /// The job's host directory (root's).
    pub fn job_dir(&self) -> PathBuf {
        Path::new(STATE_DIR).join("jobs").join(self.key())
    }

    /// What the job's identity writes: its store, `/builds`, agent directories, logs.
    pub fn work_dir(&self) -> PathBuf {
        self.job_dir().join("work")
    }

    /// The job identity leased to this job, while it holds one.
    pub fn identity(&self) -> Option<String> {
        lease_of(&self.key())
    }

    /// The berth command line of a stage, with the environment gitlab-runner gives it.
    pub fn berth_command(&self, args: &[&str]) -> Command {
        self.command(args)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(berth_binary());
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        cmd.args(args)
            .current_dir(self.tmp.path())
            .stdin(Stdio::null())
            .env("TMPDIR", self.tmp.path())
            .env("BUILD_FAILURE_EXIT_CODE", "1")
            .env("SYSTEM_FAILURE_EXIT_CODE", "2")
            .env(
                "BUILD_EXIT_CODE_FILE",
                self.tmp.path().join("build_exit_code"),
            )
            .env("JOB_RESPONSE_FILE", self.tmp.path().join("response.json"))
            .env("CUSTOM_ENV_CI_RUNNER_SHORT_TOKEN", &self.token)
            .env("CUSTOM_ENV_CI_JOB_ID", self.job_id.to_string())
            .env("CUSTOM_ENV_CI_JOB_STATUS", "running")
            .env("CUSTOM_ENV_CI_BUILDS_DIR", "/builds")
            .env("CUSTOM_ENV_CI_PROJECT_DIR", "/builds/group/project")
            .envs(&self.job_env)
            .envs(&self.extra_env)
            .process_group(0);
        cmd
    }

    /// Runs a stage to completion.
    pub fn stage(&mut self, args: &[&str]) -> StageResult {
        let started = Instant::now();
        let out = self.command(args).output().expect("spawn berth");
        let result = StageResult::from_output(&out, started.elapsed());
        if args == ["config"] && result.code == 0 {
            let v: Value = serde_json::from_str(&result.stdout).expect("config prints JSON");
            if let Some(env) = v["job_env"].as_object() {
                for (k, val) in env {
                    self.job_env
                        .insert(k.clone(), val.as_str().unwrap_or_default().to_owned());
                }
            }
        }
        result
    }

    /// Writes a stage script the way the runner does and returns its path.
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        let dir = self.tmp.path().join(format!("script{name}"));
        std::fs::create_dir_all(&dir).expect("script dir");
        let path = dir.join("script");
        std::fs::write(
            &path,
            format!("#!/usr/bin/env bash\nset -eo pipefail\n{body}\n"),
        )
        .expect("script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        path
    }

    /// `berth run <script> <stage>` with `body`.
    pub fn run(&mut self, stage: &str, body: &str) -> StageResult {
        let script = self.script(stage, body);
        let script = script.to_string_lossy().into_owned();
        self.stage(&["run", &script, stage])
    }

    /// Starts `berth run` in the background (for cancellation tests).
    pub fn spawn_run(&self, stage: &str, body: &str) -> Child {
        let script = self.script(stage, body);
        self.command(&["run", &script.to_string_lossy(), stage])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn berth run")
    }

    /// Runs `stages` one after another (each a berth argument list) under one wrapper shell that
    /// plays a gitlab-runner process which can be killed mid-job.
    pub fn spawn_via_wrapper(&self, stages: &[&[&str]]) -> Child {
        let template = self.command(&[]);
        let berth = template.get_program().to_owned();
        let mut script = String::new();
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        for stage in stages {
            if !script.is_empty() {
                script.push_str(" && ");
            }
            script.push_str("\"$0\"");
            for arg in template
                .get_args()
                .chain(stage.iter().map(std::ffi::OsStr::new))
            {
                args.push(arg.to_owned());
                script.push_str(&format!(" \"${{{}}}\"", args.len()));
            }
        }
        script.push_str("; echo wrapper-done rc=$?");
        let mut wrapper = Command::new("sh");
        wrapper
            .arg("-c")
            .arg(script)
            .arg(berth)
            .args(args)
            .current_dir(self.tmp.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in template.get_envs() {
            match v {
                Some(v) => wrapper.env(k, v),
                None => wrapper.env_remove(k),
            };
        }
        wrapper.process_group(0);
        wrapper.spawn().expect("spawn wrapper")
    }

    /// The build exit code file's content.
    pub fn build_exit_code(&self) -> Option<String> {
        std::fs::read_to_string(self.tmp.path().join("build_exit_code"))
            .ok()
            .map(|s| s.trim().to_owned())
    }

    /// Everything of this job still on the host: its directories, containers, processes.
    pub fn leftovers(&self) -> Vec<String> {
        leftovers_of(&self.key())
    }
}

/// The job identities the host setup made (`berth-job-*`).
pub fn job_users() -> Vec<nix::unistd::User> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|name| name.starts_with("berth-job-"))
        .filter_map(|name| nix::unistd::User::from_name(name).ok().flatten())
        .collect()
}

/// The identity leased to job `key`, from berth's lease directory.
pub fn lease_of(key: &str) -> Option<String> {
    lease_in(Path::new(STATE_DIR), key)
}

/// The identity leased to job `key` under the state directory `state_dir`.
pub fn lease_in(state_dir: &Path, key: &str) -> Option<String> {
    std::fs::read_dir(state_dir.join("leases"))
        .ok()?
        .flatten()
        .find(|e| std::fs::read_to_string(e.path()).is_ok_and(|k| k.trim() == key))
        .map(|e| e.file_name().to_string_lossy().into_owned())
}

/// Things of job `key` still on the host.
pub fn leftovers_of(key: &str) -> Vec<String> {
    leftovers_in(Path::new(STATE_DIR), key)
}

/// Things of job `key` of the runner config whose state directory is `state_dir` still on the
/// host.
pub fn leftovers_in(state_dir: &Path, key: &str) -> Vec<String> {
    let mut found = Vec::new();
    let job_dir = state_dir.join("jobs").join(key);
    if job_dir.exists() {
        found.push(format!("directory {}", job_dir.display()));
    }
    let every_job_user = std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').next())
        .filter(|name| name.starts_with("berth-") && name.contains("job-"))
        .filter_map(|name| nix::unistd::User::from_name(name).ok().flatten())
        .collect::<Vec<_>>();
    for user in every_job_user {
        let run_dir = PathBuf::from(format!("/run/user/{}/berth/{key}", user.uid));
        if run_dir.exists() {
            found.push(format!("directory {}", run_dir.display()));
        }
    }
    let mounts_dir = PathBuf::from(format!("/run/berth/jobs/{key}"));
    if mounts_dir.exists() {
        found.push(format!("directory {}", mounts_dir.display()));
    }
    if let Some(user) = lease_in(state_dir, key) {
        found.push(format!("lease of {user}"));
    }
    for controller in ["memory", "pids", "cpu"] {
        let cgroup = PathBuf::from(format!("/sys/fs/cgroup/{controller}/berth/{key}"));
        if cgroup.exists() {
            found.push(format!("cgroup {}", cgroup.display()));
        }
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        if let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            let mounts =
                std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap_or_default();
            if cmd.contains(&format!("/{key}/"))
                || cmd.contains(&format!("berth-{key}"))
                || mounts.contains(&format!("/{key}/builds "))
                || mounts.contains(&format!("/{key}/agent/"))
                || mounts.contains(&format!("/{key}/storage/overlay/"))
                || mounts.contains(&format!("/{key}/buildkit/"))
            {
                found.push(format!("process {pid}: {cmd}"));
            }
        }
    }
    found
}

/// Sends `signal` to the process group of `child` (as gitlab-runner does on cancel/timeout).
pub fn signal_group(child: &Child, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::killpg(pid, signal).expect("signal group");
}

/// Waits for `child` up to `timeout`, killing it after.
pub fn wait_with_timeout(mut child: Child, timeout: Duration) -> StageResult {
    let started = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return StageResult::from_output(&out, started.elapsed());
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            let mut r = StageResult::from_output(&out, started.elapsed());
            r.code = -9;
            return r;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Asserts a stage succeeded, showing its output otherwise.
pub fn ok(r: &StageResult) {
    assert_eq!(r.code, 0, "{}", r.all());
}

/// Runs the job's cleanup and asserts nothing of it is left on the host.
pub fn cleaned(mut job: FakeRunner) {
    ok(&job.stage(&["cleanup"]));
    let left = job.leftovers();
    assert!(left.is_empty(), "left behind: {left:#?}");
}

/// Waits until a process `sleep <seconds>` runs on the host (a script a test started has
/// reached it) and returns its pids; `what` names the script in the failure.
pub fn await_host_sleep(seconds: &str, what: &str) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pids = host_sleeps(seconds);
        if !pids.is_empty() {
            return pids;
        }
        assert!(Instant::now() < deadline, "{what} never started");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A minimal payload for `image`.
pub fn payload(image: &str) -> Value {
    json!({
        "image": { "name": image },
        "job_info": { "project_id": 4242, "name": "test" },
        "runner_info": { "timeout": 600 },
        "variables": [
            { "key": "MY_SECRET", "value": "masked-value-xyz", "masked": true },
            { "key": "GREETING", "value": "hi there", "masked": false }
        ]
    })
}

/// Runs a command as the runner user against berth's shared base store.
pub fn base_podman(args: &[&str]) -> Output {
    let uid = nix::unistd::User::from_name(RUNNER_USER)
        .ok()
        .flatten()
        .map_or(0, |u| u.uid.as_raw());
    store_podman(
        Path::new(&format!("{STATE_DIR}/images")),
        Path::new(&format!("/run/user/{uid}/berth/base-run")),
        args,
    )
}

/// Podman as the runner user on the store at `root` with runroot `runroot`.
pub fn store_podman(root: &Path, runroot: &Path, args: &[&str]) -> Output {
    let uid = nix::unistd::User::from_name(RUNNER_USER)
        .ok()
        .flatten()
        .map_or(0, |u| u.uid.as_raw());
    Command::new("runuser")
        .args(["-u", RUNNER_USER, "--", "env", "-C", "/"])
        .arg(format!("XDG_RUNTIME_DIR=/run/user/{uid}"))
        .arg(format!("HOME=/home/{RUNNER_USER}"))
        .arg("CONTAINERS_CONF=/etc/berth/podman/containers/containers.conf")
        .arg("podman")
        .arg("--root")
        .arg(root)
        .arg("--runroot")
        .arg(runroot)
        .args([
            "--storage-driver",
            "overlay",
            "--cgroup-manager",
            "cgroupfs",
            "--events-backend",
            "file",
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run podman as the runner user")
}

/// A real OCI registry (Debian's docker-registry) on loopback, with htpasswd authentication or
/// open to anyone.
pub struct Registry {
    child: Child,
    /// `127.0.0.1:<port>`.
    pub address: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry that accepts `user`/`password` only.
    pub fn start(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password)))
    }

    /// Starts a registry without authentication.
    pub fn start_open() -> Self {
        Self::start_with(None)
    }

    /// Starts a pull-through mirror of the registry at `remote` (`host:port`, plain HTTP):
    /// docker-registry's proxy mode, which keeps what it fetched and serves it when the remote
    /// is gone.
    pub fn start_mirror_of(remote: &str) -> Self {
        Self::start_configured(None, &format!("proxy:\n  remoteurl: http://{remote}\n"))
    }

    fn start_with(credentials: Option<(&str, &str)>) -> Self {
        Self::start_configured(credentials, "")
    }

    fn start_configured(credentials: Option<(&str, &str)>, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let d = dir.path().display();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {d}/data\nhttp:\n  addr: 127.0.0.1:{port}\n"
        );
        if let Some((user, password)) = credentials {
            let htpasswd = Command::new("htpasswd")
                .args(["-Bbn", user, password])
                .output()
                .expect("htpasswd is installed by integration/images/build-test-images.sh");
            assert!(htpasswd.status.success(), "htpasswd failed");
            std::fs::write(dir.path().join("htpasswd"), &htpasswd.stdout).expect("htpasswd file");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {d}/htpasswd\n"
            ));
        }
        config.push_str(extra);
        std::fs::write(dir.path().join("config.yml"), config).expect("config");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker-registry is installed by integration/host/setup-host.sh");
        let address = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&address).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry on {address} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            address,
            _dir: dir,
        }
    }

    /// Whether the registry holds `repository:tag` (asked over HTTP, as root may; only for
    /// registries without authentication).
    pub fn has_manifest(&self, repository: &str, tag: &str) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(&self.address) else {
            return false;
        };
        let request = format!(
            "HEAD /v2/{repository}/manifests/{tag} HTTP/1.0\r\nHost: {}\r\nAccept: application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json\r\n\r\n",
            self.address
        );
        let mut answer = String::new();
        stream.write_all(request.as_bytes()).is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && (answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"))
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Makes a tree readable (and its directories searchable) by every user, like `chmod -R a+rX`:
/// berth reads it after dropping to the runner user.
pub fn make_readable_by_all(path: &Path) {
    let meta = std::fs::metadata(path).expect("stat");
    let extra = if meta.is_dir() { 0o555 } else { 0o444 };
    std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(meta.permissions().mode() | extra),
    )
    .expect("chmod");
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir").flatten() {
            make_readable_by_all(&entry.path());
        }
    }
}

/// Hands a tree the test (root) created inside a job's directory to the runner user, as if the
/// job had written it.
pub fn give_to_runner_user(path: &Path) {
    give_to(path, RUNNER_USER);
}

/// Makes `path` (recursively) belong to `user`, as if that user had written it.
pub fn give_to(path: &Path, user: &str) {
    let user = nix::unistd::User::from_name(user)
        .ok()
        .flatten()
        .expect("user");
    chown_tree(path, &user);
}

fn chown_tree(path: &Path, user: &nix::unistd::User) {
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).expect("chown");
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read_dir").flatten() {
            chown_tree(&entry.path(), user);
        }
    }
}

/// Host processes running `sleep <seconds>` (or `busybox sleep <seconds>`), by pid: the marker
/// RUN steps of builder tests.
pub fn host_sleeps(seconds: &str) -> Vec<u32> {
    let wanted = format!("sleep\0{seconds}\0");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                c.ends_with(wanted.as_bytes())
                    && (c.len() == wanted.len() || c[c.len() - wanted.len() - 1] == 0)
            })
        })
        .collect()
}

/// An advisory database made by `berth db update` from OSV `records` (file name, JSON), readable
/// by every user (berth reads it after dropping privileges).
pub fn advisory_db(records: &[(&str, &str)]) -> tempfile::TempDir {
    let advisories = tempfile::tempdir().expect("advisories");
    for (name, json) in records {
        std::fs::write(advisories.path().join(name), json).expect("record");
    }
    let db = tempfile::Builder::new()
        .prefix("berth-db")
        .tempdir()
        .expect("db dir");
    let mut importer = FakeRunner::new(serde_json::json!({}));
    ok(&importer.stage(&[
        "db",
        "update",
        "--from",
        &advisories.path().to_string_lossy(),
        "--db",
        &db.path().to_string_lossy(),
    ]));
    make_readable_by_all(db.path());
    db
}
