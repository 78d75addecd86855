//! Runs the real `gitlab-runner run-single` against the fake coordinator.
//!
//! [`RunnerConfig`] renders the runner configuration: as a `config.toml` (the contract's §4.1
//! shape, for `run-single -c FILE -r NAME`, v17.1+) or as command-line flags (v16.11.0 has no
//! `-c/-r`). [`run_single`] starts the runner in its own process group with stdin on
//! `/dev/null`, kills the whole group with SIGKILL at a wall-clock deadline (run-single's own
//! `--wait-timeout` does not bound a job that never starts), and returns its output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// Errors of the harness.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A file of the harness could not be written or read.
    #[error("harness file {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// gitlab-runner could not be started.
    #[error("failed to start {binary}: {source}")]
    Spawn {
        /// The runner binary.
        binary: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Waiting for gitlab-runner failed.
    #[error("failed to wait for gitlab-runner: {0}")]
    Wait(#[source] std::io::Error),
}

/// `[runners.custom]`: the driver executables and their arguments.
#[derive(Debug, Clone, Default)]
pub struct CustomConfig {
    /// `config_exec` and `config_args` (`None`: the config stage is skipped).
    pub config: Option<(PathBuf, Vec<String>)>,
    /// `prepare_exec` and `prepare_args`.
    pub prepare: Option<(PathBuf, Vec<String>)>,
    /// `run_exec` and `run_args` (required by the runner).
    pub run: Option<(PathBuf, Vec<String>)>,
    /// `cleanup_exec` and `cleanup_args`.
    pub cleanup: Option<(PathBuf, Vec<String>)>,
    /// `graceful_kill_timeout` in seconds.
    pub graceful_kill_timeout: Option<u32>,
    /// `force_kill_timeout` in seconds.
    pub force_kill_timeout: Option<u32>,
    /// `config_exec_timeout`, `prepare_exec_timeout`, `cleanup_exec_timeout` in seconds.
    pub exec_timeouts: Option<(u32, u32, u32)>,
}

impl CustomConfig {
    /// The configured stages as `(toml key prefix, exec, args)`.
    pub fn stages(&self) -> impl Iterator<Item = (&'static str, &Path, &[String])> {
        [
            ("config", &self.config),
            ("prepare", &self.prepare),
            ("run", &self.run),
            ("cleanup", &self.cleanup),
        ]
        .into_iter()
        .filter_map(|(key, stage)| {
            stage
                .as_ref()
                .map(|(exec, args)| (key, exec.as_path(), args.as_slice()))
        })
    }

    /// One driver for all four stages, called as `driver config|prepare|run|cleanup`.
    pub fn single_driver(driver: &Path) -> Self {
        let stage = |name: &str| Some((driver.to_path_buf(), vec![name.to_owned()]));
        Self {
            config: stage("config"),
            prepare: stage("prepare"),
            run: stage("run"),
            cleanup: stage("cleanup"),
            graceful_kill_timeout: Some(3),
            force_kill_timeout: Some(3),
            exec_timeouts: None,
        }
    }

    /// berth for all four stages, called as `berth --config FILE config|prepare|run|cleanup`,
    /// with berth's short stop grace in mind.
    pub fn berth(berth: &Path, berth_config: &Path) -> Self {
        let stage = |name: &str| {
            Some((
                berth.to_path_buf(),
                vec![
                    "--config".to_owned(),
                    berth_config.display().to_string(),
                    name.to_owned(),
                ],
            ))
        };
        Self {
            config: stage("config"),
            prepare: stage("prepare"),
            run: stage("run"),
            cleanup: stage("cleanup"),
            graceful_kill_timeout: Some(10),
            force_kill_timeout: Some(5),
            exec_timeouts: None,
        }
    }
}

/// One `[[runners]]` entry with executor `custom`.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// `name`, passed as `-r NAME`.
    pub name: String,
    /// `url`: the fake coordinator.
    pub url: String,
    /// `token`: the runner authentication token.
    pub token: String,
    /// `executor`: `custom` (the driver), or `shell` for the no-isolation floor in benchmarks.
    pub executor: String,
    /// `builds_dir` (config_exec may override it).
    pub builds_dir: String,
    /// `cache_dir` (config_exec may override it).
    pub cache_dir: String,
    /// `shell`.
    pub shell: String,
    /// `environment` entries (`KEY=value`).
    pub environment: Vec<String>,
    /// `[runners.feature_flags]`; `FF_TIMESTAMPS=false` by default (the flag is
    /// `FF_TIMESTAMPS`, not `FF_USE_TIMESTAMPS` as the contract doc says).
    pub feature_flags: BTreeMap<String, bool>,
    /// `[runners.custom]`.
    pub custom: CustomConfig,
    /// Extra TOML lines appended inside `[[runners]]` before its sub-tables.
    pub extra_runner_toml: String,
}

/// TOML basic strings accept JSON's escapes.
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| quote(s)).collect();
    format!("[{}]", quoted.join(", "))
}

impl RunnerConfig {
    /// The recommended shape (contract §4.1): runner `it`, token `glrt-test`, bash, `/builds`
    /// and `/cache`, timestamps off, one driver for all stages, short kill timeouts.
    pub fn recommended(url: &str, driver: &Path) -> Self {
        Self {
            name: "it".to_owned(),
            url: url.to_owned(),
            token: "glrt-test".to_owned(),
            executor: "custom".to_owned(),
            builds_dir: "/builds".to_owned(),
            cache_dir: "/cache".to_owned(),
            shell: "bash".to_owned(),
            environment: Vec::new(),
            feature_flags: BTreeMap::from([("FF_TIMESTAMPS".to_owned(), false)]),
            custom: CustomConfig::single_driver(driver),
            extra_runner_toml: String::new(),
        }
    }

    /// The config.toml text.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("concurrent = 1\ncheck_interval = 1\n\n[[runners]]\n");
        let _ = writeln!(out, "  name = {}", quote(&self.name));
        let _ = writeln!(out, "  url = {}", quote(&self.url));
        let _ = writeln!(out, "  token = {}", quote(&self.token));
        let _ = writeln!(out, "  executor = {}", quote(&self.executor));
        let _ = writeln!(out, "  builds_dir = {}", quote(&self.builds_dir));
        let _ = writeln!(out, "  cache_dir = {}", quote(&self.cache_dir));
        let _ = writeln!(out, "  shell = {}", quote(&self.shell));
        if !self.environment.is_empty() {
            let _ = writeln!(out, "  environment = {}", quote_list(&self.environment));
        }
        out.push_str(&self.extra_runner_toml);
        if !self.extra_runner_toml.ends_with('\n') && !self.extra_runner_toml.is_empty() {
            out.push('\n');
        }
        out.push_str("  [runners.feature_flags]\n");
        for (flag, on) in &self.feature_flags {
            let _ = writeln!(out, "    {flag} = {on}");
        }
        out.push_str("  [runners.custom]\n");
        let c = &self.custom;
        for (key, exec, args) in c.stages() {
            let _ = writeln!(out, "    {key}_exec = {}", quote(&exec.to_string_lossy()));
            let _ = writeln!(out, "    {key}_args = {}", quote_list(args));
        }
        if let Some(t) = c.graceful_kill_timeout {
            let _ = writeln!(out, "    graceful_kill_timeout = {t}");
        }
        if let Some(t) = c.force_kill_timeout {
            let _ = writeln!(out, "    force_kill_timeout = {t}");
        }
        if let Some((config, prepare, cleanup)) = c.exec_timeouts {
            let _ = writeln!(out, "    config_exec_timeout = {config}");
            let _ = writeln!(out, "    prepare_exec_timeout = {prepare}");
            let _ = writeln!(out, "    cleanup_exec_timeout = {cleanup}");
        }
        out
    }

    /// Writes config.toml to `path`.
    pub fn write(&self, path: &Path) -> Result<(), HarnessError> {
        std::fs::write(path, self.to_toml()).map_err(|source| HarnessError::File {
            path: path.to_path_buf(),
            source,
        })
    }

    /// The same settings as `run-single` flags, for runners without `-c/-r` (v16.11.0).
    /// Feature flags and `extra_runner_toml` cannot be expressed this way and are dropped.
    pub fn to_flags(&self) -> Vec<String> {
        let mut args: Vec<String> = [
            ("--name", &self.name),
            ("--url", &self.url),
            ("--token", &self.token),
            ("--builds-dir", &self.builds_dir),
            ("--cache-dir", &self.cache_dir),
            ("--shell", &self.shell),
        ]
        .into_iter()
        .flat_map(|(flag, value)| [flag.to_owned(), value.clone()])
        .collect();
        args.extend(["--executor".to_owned(), "custom".to_owned()]);
        for env in &self.environment {
            args.extend(["--env".to_owned(), env.clone()]);
        }
        let c = &self.custom;
        for (key, exec, arg_list) in c.stages() {
            args.extend([
                format!("--custom-{key}-exec"),
                exec.to_string_lossy().into_owned(),
            ]);
            for arg in arg_list {
                args.extend([format!("--custom-{key}-args"), arg.clone()]);
            }
        }
        if let Some(t) = c.graceful_kill_timeout {
            args.extend(["--custom-graceful-kill-timeout".to_owned(), t.to_string()]);
        }
        if let Some(t) = c.force_kill_timeout {
            args.extend(["--custom-force-kill-timeout".to_owned(), t.to_string()]);
        }
        args
    }
}

/// How the runner learns its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigStyle {
    /// `run-single -c config.toml -r NAME` (v17.1+).
    ConfigFile,
    /// `run-single --url ... --custom-run-exec ...` (v16.11.0).
    Flags,
}

/// How to run `run-single`.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The gitlab-runner binary.
    pub binary: PathBuf,
    /// A directory for config.toml and the captured output.
    pub work_dir: PathBuf,
    /// Config file or flags.
    pub style: ConfigStyle,
    /// `--wait-timeout` in seconds.
    pub wait_timeout: u32,
    /// The harness kills the process group after this long.
    pub wall_clock: Duration,
    /// Pass the global `--debug` flag (shows cleanup stdout in the runner log).
    pub debug: bool,
    /// Extra environment for the runner (inherited by the driver).
    pub env: Vec<(String, String)>,
}

impl RunOptions {
    /// Config-file style, `--wait-timeout 30`, a 240 s wall clock, `--debug`.
    pub fn new(binary: &Path, work_dir: &Path) -> Self {
        Self {
            binary: binary.to_path_buf(),
            work_dir: work_dir.to_path_buf(),
            style: ConfigStyle::ConfigFile,
            wait_timeout: 30,
            wall_clock: Duration::from_secs(240),
            debug: true,
            env: Vec::new(),
        }
    }
}

/// What one `run-single` process did.
#[derive(Debug)]
pub struct RunOutcome {
    /// Its exit status (after a wall-clock kill: the SIGKILL status).
    pub status: ExitStatus,
    /// Whether the harness had to kill it.
    pub killed_at_deadline: bool,
    /// How long it ran.
    pub elapsed: Duration,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr (the runner log).
    pub stderr: String,
    /// The argv it was started with.
    pub argv: Vec<String>,
}

/// The one place this crate starts a process. The harness drives the *peer* of berth, so it
/// deliberately does not go through berth's own process leash (`berth_sandbox::process`): a
/// bug there must not be able to hide in the test harness.
#[expect(
    clippy::disallowed_methods,
    reason = "the harness is independent of berth's process leash"
)]
pub fn new_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    Command::new(program)
}

/// Runs `gitlab-runner [--debug] run-single ... --max-builds 1 --wait-timeout N` and waits for
/// it, killing its whole process group at the wall-clock deadline. Any process left in the
/// group after the runner exits (a driver's orphan) is killed too.
pub fn run_single(config: &RunnerConfig, options: &RunOptions) -> Result<RunOutcome, HarnessError> {
    let file = |name: &str| options.work_dir.join(name);
    let mut argv: Vec<String> = Vec::new();
    if options.debug {
        argv.push("--debug".to_owned());
    }
    argv.push("run-single".to_owned());
    match options.style {
        ConfigStyle::ConfigFile => {
            let path = file("config.toml");
            config.write(&path)?;
            argv.extend([
                "-c".to_owned(),
                path.to_string_lossy().into_owned(),
                "-r".to_owned(),
                config.name.clone(),
            ]);
        }
        ConfigStyle::Flags => argv.extend(config.to_flags()),
    }
    argv.extend([
        "--max-builds".to_owned(),
        "1".to_owned(),
        "--wait-timeout".to_owned(),
        options.wait_timeout.to_string(),
    ]);

    let open = |name: &str| {
        let path = file(name);
        std::fs::File::create(&path).map_err(|source| HarnessError::File { path, source })
    };
    let mut command = new_command(&options.binary);
    command
        .args(&argv)
        .current_dir(&options.work_dir)
        .stdin(Stdio::null())
        .stdout(open("runner.stdout")?)
        .stderr(open("runner.stderr")?)
        .process_group(0);
    for (key, value) in &options.env {
        command.env(key, value);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| HarnessError::Spawn {
        binary: options.binary.clone(),
        source,
    })?;
    let group = Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let mut killed_at_deadline = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(HarnessError::Wait)? {
            break status;
        }
        if started.elapsed() >= options.wall_clock {
            killed_at_deadline = true;
            let _ = killpg(group, Signal::SIGKILL);
            break child.wait().map_err(HarnessError::Wait)?;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Leftovers in the runner's group (ESRCH when there are none).
    let _ = killpg(group, Signal::SIGKILL);
    let read = |name: &str| {
        let path = file(name);
        std::fs::read(&path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .map_err(|source| HarnessError::File { path, source })
    };
    Ok(RunOutcome {
        status,
        killed_at_deadline,
        elapsed: started.elapsed(),
        stdout: read("runner.stdout")?,
        stderr: read("runner.stderr")?,
        argv,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_has_the_recommended_shape() {
        let cfg = RunnerConfig::recommended("http://127.0.0.1:1", Path::new("/d/driver"));
        let toml = cfg.to_toml();
        for want in [
            "[[runners]]",
            "executor = \"custom\"",
            "FF_TIMESTAMPS = false",
            "run_exec = \"/d/driver\"",
            "run_args = [\"run\"]",
            "config_args = [\"config\"]",
            "graceful_kill_timeout = 3",
        ] {
            assert!(toml.contains(want), "missing {want} in\n{toml}");
        }
    }

    #[test]
    fn flags_repeat_slice_arguments() {
        let cfg = RunnerConfig::recommended("http://127.0.0.1:1", Path::new("/d/driver"));
        let flags = cfg.to_flags().join(" ");
        assert!(
            flags.contains("--custom-run-exec /d/driver --custom-run-args run"),
            "{flags}"
        );
        assert!(flags.contains("--executor custom"), "{flags}");
    }

    #[test]
    fn wall_clock_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let script = dir.path().join("fake-runner");
        // A "runner" that starts a grandchild and never exits; argv is ignored.
        std::fs::write(
            &script,
            "#!/bin/sh\nsleep 300 &\necho $! > grandchild.pid\nsleep 300\n",
        )
        .unwrap_or_else(|e| panic!("write: {e}"));
        let chmod = new_command("chmod").arg("+x").arg(&script).status();
        assert!(chmod.is_ok_and(|s| s.success()));
        let cfg = RunnerConfig::recommended("http://127.0.0.1:1", Path::new("/bin/true"));
        let mut options = RunOptions::new(&script, dir.path());
        options.wall_clock = Duration::from_secs(2);
        let outcome = run_single(&cfg, &options).unwrap_or_else(|e| panic!("run: {e}"));
        assert!(outcome.killed_at_deadline);
        assert!(outcome.elapsed < Duration::from_secs(10));
        let pid = std::fs::read_to_string(dir.path().join("grandchild.pid")).unwrap_or_default();
        let pid = pid.trim();
        assert!(
            !pid.is_empty(),
            "the fake runner did not start its grandchild"
        );
        // Dead means gone or a zombie awaiting its reaper; allow the kernel a moment.
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(!alive(), "grandchild {pid} survived");
        assert!(dir.path().join("config.toml").exists());
    }
}
