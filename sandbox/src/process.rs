//! The leash every child process goes through: its own process group, death with its parent,
//! SIGTERM → grace → SIGKILL to the whole group, and the tail of stderr kept for the error.
//!
//! The one exception is [`spawn_detached`], for the job's long-lived services (its Podman API
//! service, build socket proxy and BuildKit) that must outlive the stage that started them; they
//! run as the job's identity, and teardown ends them with everything else that identity runs.
//! Every stop goes through the one [`Ladder`]: SIGTERM, the grace, SIGKILL.
//!
//! No child inherits berth's environment (gitlab-runner hands berth the job token and masked
//! variables as `CUSTOM_ENV_*`): each starts from [`BASE_ENV`] plus what its spec names.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// How many bytes of stderr a failed command keeps for its error.
const STDERR_TAIL: usize = 4096;

/// The whole environment a child starts with, before its spec adds to it.
pub const BASE_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("LANG", "C.UTF-8"),
];

/// A command to run: plain data, turned into a process only by this module.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// Program.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<OsString>,
    /// Environment on top of [`BASE_ENV`]; nothing is inherited.
    pub env: Vec<(OsString, OsString)>,
    /// Time to wait after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Run as this (uid, gid) instead of berth's own ids (needs a saved set-user-ID of root).
    pub identity: Option<(u32, u32)>,
}

impl CommandSpec {
    /// A command with default grace (5 s).
    pub fn new(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
            grace: Duration::from_secs(5),
            identity: None,
        }
    }

    /// Runs the command as `uid`/`gid` with that group alone.
    pub fn as_identity(mut self, uid: u32, gid: u32) -> Self {
        self.identity = Some((uid, gid));
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    fn display(&self) -> String {
        let mut s = self.program.display().to_string();
        for a in &self.args {
            s.push(' ');
            s.push_str(&a.to_string_lossy());
        }
        s
    }

    #[expect(
        clippy::disallowed_methods,
        reason = "this module is the one place that creates processes"
    )]
    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        cmd.env_clear();
        for (k, v) in BASE_ENV {
            cmd.env(k, v);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd.stdin(Stdio::null());
        // The caller's cwd may be gitlab-runner's root-only temp dir, unreadable after the drop.
        cmd.current_dir("/");
        if let Some((uid, gid)) = self.identity {
            #[expect(
                unsafe_code,
                reason = "pre_exec is the only way to change the child's identity before exec"
            )]
            // SAFETY: only set*id/setgroups syscalls, which are async-signal-safe and touch no
            // memory of the parent.
            unsafe {
                cmd.pre_exec(move || become_identity(uid, gid));
            }
        }
        cmd
    }
}

/// A child that did not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// It could not be started.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// Command line.
        command: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr_tail}")]
    Failed {
        /// Command line.
        command: String,
        /// Exit status.
        status: ExitStatus,
        /// The end of its stderr.
        stderr_tail: String,
    },
    /// It was stopped because the stage was cancelled.
    #[error("`{command}` was stopped: the stage was cancelled")]
    Cancelled {
        /// Command line.
        command: String,
    },
    /// Waiting for it failed.
    #[error("waiting for `{command}` failed: {source}")]
    Wait {
        /// Command line.
        command: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// Output of a successful command.
#[derive(Debug)]
pub struct Output {
    /// Captured stdout.
    pub stdout: Vec<u8>,
    /// Captured stderr.
    pub stderr: Vec<u8>,
}

fn leash(cmd: &mut Command) {
    cmd.process_group(0);
    cmd.kill_on_drop(true);
    #[expect(
        unsafe_code,
        reason = "pre_exec is the only way to set the parent-death signal"
    )]
    // SAFETY: the closure only calls prctl(PR_SET_PDEATHSIG), which is async-signal-safe and
    // touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
        });
    }
}

/// Runs a command to completion, capturing stdout and stderr. Cancelling the token stops the
/// whole process group: SIGTERM, the grace period, then SIGKILL.
pub async fn run(
    spec: &CommandSpec,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<Output, ProcessError> {
    let command = spec.display();
    let mut cmd = spec.command();
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    leash(&mut cmd);
    let mut child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        command: command.clone(),
        source,
    })?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let collect = async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let (a, b) = tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
        a.and(b).map(|_| (out, err))
    };
    let waited = tokio::select! {
        result = async {
            let (out, err) = collect.await?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        } => Some(result),
        () = cancel.cancelled() => None,
    };
    match waited {
        None => {
            terminate(&mut child, spec.grace).await;
            Err(ProcessError::Cancelled { command })
        }
        Some(Err(source)) => Err(ProcessError::Wait { command, source }),
        Some(Ok((status, stdout, stderr))) if status.success() => Ok(Output { stdout, stderr }),
        Some(Ok((status, _, stderr))) => Err(ProcessError::Failed {
            command,
            status,
            stderr_tail: tail(&stderr),
        }),
    }
}

/// The last [`STDERR_TAIL`] bytes of `bytes`, trimmed, as text.
pub fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

/// SIGTERM to the child's group, the grace period, then SIGKILL; the leader is reaped meanwhile.
async fn terminate(child: &mut Child, grace: Duration) {
    let Some(pid) = child.id() else { return };
    let ladder = Ladder::new(grace);
    let _ = tokio::join!(ladder.stop(|| group_members(pid)), child.wait());
}

/// Starts a long-lived child in its own session, not tied to this process's life, with stdout
/// and stderr appended to `log`. Returns its pid. For the job's long-lived services only.
pub fn spawn_detached(spec: &CommandSpec, log: &std::path::Path) -> Result<u32, ProcessError> {
    let command = spec.display();
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| ProcessError::Spawn {
            command: command.clone(),
            source,
        })?;
    let err_file = file.try_clone().map_err(|source| ProcessError::Spawn {
        command: command.clone(),
        source,
    })?;
    let mut cmd = spec.command();
    cmd.stdout(file).stderr(err_file);
    #[expect(
        unsafe_code,
        reason = "pre_exec is the only way to start a new session"
    )]
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid()
                .map(drop)
                .map_err(std::io::Error::from)
        });
    }
    let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        command: command.clone(),
        source,
    })?;
    child.id().ok_or(ProcessError::Wait {
        command,
        source: std::io::Error::other("child exited before its pid was read"),
    })
}

/// Runs `f` with root's effective uid taken back through the saved set-user-ID (when berth
/// started as root and dropped to a job identity), then drops again. For root's own files and
/// for signalling a job identity's subordinate-id processes; never for job-writable data.
pub fn as_root<T>(f: impl FnOnce() -> T) -> T {
    use nix::unistd::Uid;
    let before = Uid::effective();
    let regained = !before.is_root() && nix::unistd::seteuid(Uid::from_raw(0)).is_ok();
    let out = f();
    if regained {
        let _ = nix::unistd::seteuid(before);
    }
    out
}

/// In a freshly forked child: takes root back through the saved set-user-ID (a no-op when
/// already root), then becomes `uid`/`gid` for good, real, effective and saved alike.
fn become_identity(uid: u32, gid: u32) -> std::io::Result<()> {
    use nix::unistd::{Gid, Uid};
    if !Uid::effective().is_root() {
        nix::unistd::seteuid(Uid::from_raw(0))?;
    }
    let gid = Gid::from_raw(gid);
    nix::unistd::setgroups(&[gid])?;
    nix::unistd::setresgid(gid, gid, gid)?;
    let uid = Uid::from_raw(uid);
    nix::unistd::setresuid(uid, uid, uid)?;
    Ok(())
}

/// A process sitting in a user namespace of its own, so root can give that namespace an id
/// mapping and use it (for an idmapped mount). Killed when dropped.
#[derive(Debug)]
pub struct UserNamespace {
    child: std::process::Child,
}

impl UserNamespace {
    /// Starts `sleep` in a new user namespace, not yet mapped.
    #[expect(
        clippy::disallowed_methods,
        reason = "this module is the one place that creates processes"
    )]
    pub fn new() -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let mut cmd = std::process::Command::new("sleep");
        cmd.arg("60")
            .env_clear()
            .envs(BASE_ENV.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .current_dir("/");
        #[expect(
            unsafe_code,
            reason = "pre_exec is the only way to enter a new user namespace before exec"
        )]
        // SAFETY: prctl and unshare are async-signal-safe and touch no memory of the parent.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER)?;
                Ok(())
            });
        }
        // `spawn` returns once the child has exec'd, so its namespace exists by then.
        Ok(Self {
            child: cmd.spawn()?,
        })
    }

    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for UserNamespace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a process exists (signal 0).
pub fn alive(pid: u32) -> bool {
    nix::sys::signal::kill(Pid::from_raw(pid.cast_signed()), None).is_ok()
}

/// Stops a process we do not own a handle to: SIGTERM, up to `grace`, then SIGKILL.
pub async fn stop_pid(pid: u32, grace: Duration) {
    Ladder::new(grace).stop(|| vec![pid]).await;
}

/// How often a ladder looks again at what it is stopping.
const LADDER_POLL: Duration = Duration::from_millis(20);
/// How many looks after SIGKILL before a ladder gives up on what is still there (a process in
/// uninterruptible sleep, or one a lazy init has not reaped yet).
const LADDER_KILL_LOOKS: u32 = 100;

/// The one way berth stops processes: SIGTERM to each target once, up to the grace, then
/// SIGKILL to whatever is left. Targets are found again on every look, since what is being
/// stopped may still fork; a target once found stays one until it is gone (a process whose
/// parent died is reparented out of any tree it was found in). A zombie counts as gone.
#[derive(Debug, Clone, Copy)]
pub struct Ladder {
    grace: Duration,
    as_root: bool,
}

impl Ladder {
    /// SIGTERM, `grace`, SIGKILL. A zero grace sends SIGKILL at once.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            as_root: false,
        }
    }

    /// SIGKILL at once: for processes whose job is over (a container's init ignores SIGTERM).
    pub fn kill() -> Self {
        Self::new(Duration::ZERO)
    }

    /// Signals with root's effective uid taken back ([`as_root`]): a job identity's
    /// subordinate-id processes.
    pub fn as_root(mut self) -> Self {
        self.as_root = true;
        self
    }

    /// Stops everything `find` names (never this process). Returns the pids still there after
    /// SIGKILL, which is empty unless something outlived it.
    pub async fn stop(&self, mut find: impl FnMut() -> Vec<u32>) -> Vec<u32> {
        let own = std::process::id();
        let deadline = tokio::time::Instant::now() + self.grace;
        // What each target was last sent (SIGCONT stands for "nothing yet").
        let mut sent: BTreeMap<u32, Signal> = BTreeMap::new();
        let mut kill_looks = 0;
        loop {
            for pid in find() {
                sent.entry(pid).or_insert(Signal::SIGCONT);
            }
            sent.retain(|pid, _| *pid != own && running(*pid));
            if sent.is_empty() {
                return Vec::new();
            }
            let signal = if tokio::time::Instant::now() >= deadline {
                kill_looks += 1;
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            };
            if kill_looks > LADDER_KILL_LOOKS {
                return sent.into_keys().collect();
            }
            let due: Vec<u32> = sent
                .iter_mut()
                .filter(|(_, last)| **last != signal)
                .map(|(pid, last)| {
                    *last = signal;
                    *pid
                })
                .collect();
            let send = || {
                for pid in &due {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid.cast_signed()), signal);
                }
            };
            if self.as_root {
                as_root(send);
            } else {
                send();
            }
            tokio::time::sleep(LADDER_POLL).await;
        }
    }
}

/// Whether a process exists and is not a zombie.
pub fn running(pid: u32) -> bool {
    alive(pid) && !is_zombie(pid)
}

/// Fields of `/proc/PID/stat` after the command name (state first), when readable.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

fn is_zombie(pid: u32) -> bool {
    stat_fields(pid).is_none_or(|f| f.first().is_some_and(|state| state == "Z"))
}

/// Every process on the host, by pid (none when `/proc` cannot be read).
pub fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
}

/// The processes of process group `group`, read from `/proc`.
pub fn group_members(group: u32) -> Vec<u32> {
    pids()
        .filter(|pid| {
            stat_fields(*pid)
                .and_then(|f| f.get(2)?.parse::<u32>().ok())
                .is_some_and(|pgrp| pgrp == group)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn failure_keeps_the_stderr_tail() {
        let spec = CommandSpec::new("sh").args(["-c", "echo out; echo broken >&2; exit 3"]);
        let err = run(&spec, &CancellationToken::new())
            .await
            .expect_err("exit 3");
        let text = err.to_string();
        assert!(text.contains("broken") && text.contains('3'), "{text}");
    }

    /// Starts `script` detached and returns once it has set its traps (it touches `ready`).
    async fn detached(script: &str, dir: &std::path::Path) -> u32 {
        let ready = dir.join("ready");
        let script = format!(
            "{script}; touch {}; while :; do sleep 1; done",
            ready.display()
        );
        let spec = CommandSpec::new("sh").args(["-c", &script]);
        let pid = spawn_detached(&spec, &dir.join("log")).expect("spawn");
        while !ready.exists() {
            assert!(running(pid), "the script exited before it was ready");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        pid
    }

    #[tokio::test]
    async fn a_ladder_asks_with_sigterm_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("term");
        let pid = detached(
            &format!("trap 'echo term > {}; exit 0' TERM", marker.display()),
            dir.path(),
        )
        .await;
        let left = Ladder::new(Duration::from_secs(30))
            .stop(|| vec![pid])
            .await;
        assert!(left.is_empty(), "{left:?}");
        assert!(!running(pid));
        assert_eq!(std::fs::read_to_string(&marker).expect("trapped"), "term\n");
    }

    #[tokio::test]
    async fn a_ladder_kills_what_ignores_sigterm_once_the_grace_is_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid = detached("trap '' TERM", dir.path()).await;
        let left = Ladder::new(Duration::from_millis(100))
            .stop(|| vec![pid])
            .await;
        assert!(left.is_empty(), "{left:?}");
        assert!(!running(pid));
    }

    #[tokio::test]
    async fn a_ladder_never_signals_its_own_process() {
        let own = std::process::id();
        let left = Ladder::kill().stop(|| vec![own]).await;
        assert!(left.is_empty());
        assert!(running(own));
    }

    #[test]
    fn a_group_lists_its_members() {
        let own = std::process::id();
        let group = nix::unistd::getpgrp().as_raw().cast_unsigned();
        assert!(group_members(group).contains(&own));
        assert!(!group_members(u32::MAX).contains(&own));
    }

    #[tokio::test]
    async fn cancel_kills_the_whole_group_after_the_grace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let marker = dir.path().join("grandchild");
        // The grandchild ignores SIGTERM, so only SIGKILL to the group stops it.
        let script = format!(
            "sh -c 'trap \"\" TERM; echo $$ > {}; sleep 30' & wait",
            marker.display()
        );
        let mut spec = CommandSpec::new("sh").args(["-c", &script]);
        spec.grace = Duration::from_millis(200);
        let cancel = CancellationToken::new();
        let trigger = cancel.clone();
        let started_marker = marker.clone();
        // Cancel once the grandchild has set its trap (it writes the marker after), not after a
        // guessed delay.
        tokio::spawn(async move {
            while !std::fs::read_to_string(&started_marker).is_ok_and(|t| t.ends_with('\n')) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            trigger.cancel();
        });
        let started = std::time::Instant::now();
        let err = run(&spec, &cancel).await.expect_err("cancelled");
        assert!(matches!(err, ProcessError::Cancelled { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: u32 = std::fs::read_to_string(&marker)
            .expect("grandchild started")
            .trim()
            .parse()
            .expect("pid");
        assert!(!running(pid), "grandchild {pid} survived");
    }
}
