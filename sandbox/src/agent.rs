//! The stage agent: a POSIX shell loop that runs as the container's command (under the image's
//! entrypoint, as the Docker executor runs its shell) and executes one stage script per request.
//! Requests and results cross a per-container host directory mounted at `/.berth`, so running a
//! stage costs no Podman call at all: no `podman exec`, no conmon left behind.
//!
//! Protocol: the host writes the script to `scripts/<id>`, then `<id> <shell>\n` into the `ctl`
//! FIFO. The agent runs it with stdout and stderr in `out/<id>.log`, writes the script's pid to
//! `out/<id>.pid` and its exit status to `out/<id>.rc`. Only shell builtins are used, so an image
//! needs nothing but `/bin/sh`.
//!
//! The container may be hostile. `/.berth` is mounted read-only (the FIFO and the scripts cannot
//! be replaced) and only `out/` is writable; the host opens everything beneath a handle of the
//! agent directory without following links, checks each file's type (a FIFO planted where a log
//! belongs is refused, never waited on), and reads numbers with a size bound.

use std::io::SeekFrom;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_beneath::Dir;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Where the agent directory is mounted inside containers.
pub const MOUNT_POINT: &str = "/.berth";

/// The only part of the agent directory the container writes.
pub const OUT: &str = "out";

/// The agent loop, run as `sh -c AGENT_SCRIPT`.
pub const AGENT_SCRIPT: &str = r#"d=/.berth
echo $$ > $d/out/agent.pid
while [ -p $d/ctl ]; do
  read -r id shell < $d/ctl || continue
  case "$id" in ''|*/*) continue ;; esac
  s=sh
  if [ "$shell" = bash ] && command -v bash >/dev/null 2>&1; then s=bash; fi
  $s $d/scripts/$id < /dev/null > $d/out/$id.log 2>&1 &
  echo $! > $d/out/$id.pid
  wait $!
  echo $? > $d/out/$id.rc
done"#;

/// Something went wrong talking to an agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Preparing or reading the agent directory failed.
    #[error("agent directory {path}: {source}")]
    Io {
        /// Path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The agent did not start listening in time.
    #[error("the {container} container's shell did not start within {secs} s")]
    NotReady {
        /// Container role.
        container: String,
        /// Seconds waited.
        secs: u64,
    },
    /// The container is gone.
    #[error("the {container} container is not running")]
    ContainerGone {
        /// Container role.
        container: String,
    },
    /// Writing the output stream failed.
    #[error("cannot forward script output: {0}")]
    Output(#[source] std::io::Error),
}

/// How a script run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptEnd {
    /// The script exited with this code.
    Exited(i32),
    /// The run was cancelled; the script's processes were stopped. Carries its exit code.
    Cancelled(i32),
}

/// One script to run through an agent.
#[derive(Debug, Clone, Copy)]
pub struct ScriptRun<'a> {
    /// Unique id of this run within the job.
    pub id: &'a str,
    /// The script.
    pub script: &'a [u8],
    /// `bash` (falls back to `sh`) or `sh`.
    pub shell: &'a str,
    /// Host pid of the container's init process.
    pub container_init_pid: u32,
    /// Time between SIGTERM and SIGKILL on cancellation.
    pub grace: Duration,
}

/// The host side of one container's agent directory.
#[derive(Debug, Clone)]
pub struct AgentDir {
    dir: PathBuf,
    role: String,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |source| AgentError::Io {
        path: path.to_owned(),
        source,
    }
}

impl AgentDir {
    /// The agent directory at `dir` for the container playing `role`.
    pub fn new(dir: PathBuf, role: &str) -> Self {
        Self {
            dir,
            role: role.to_owned(),
        }
    }

    /// Host path of the directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory, its FIFO and subdirectories. Idempotent.
    pub fn create(&self) -> Result<(), AgentError> {
        // Images whose user is not root must still write results; scripts are only read.
        for (sub, mode) in [("scripts", 0o755), (OUT, 0o777)] {
            let p = self.dir.join(sub);
            std::fs::create_dir_all(&p).map_err(io_err(&p))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(&p))?;
        }
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io_err(&self.dir))?;
        let ctl = self.dir.join("ctl");
        match nix::unistd::mkfifo(&ctl, nix::sys::stat::Mode::from_bits_truncate(0o666)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(io_err(&ctl)(e.into())),
        }
        std::fs::set_permissions(&ctl, std::fs::Permissions::from_mode(0o666)).map_err(io_err(&ctl))
    }

    fn handle(&self) -> Result<Dir, AgentError> {
        Dir::open(&self.dir).map_err(io_err(&self.dir))
    }

    /// The agent's pid inside the container, once it started.
    pub fn agent_pid(&self) -> Option<u32> {
        let dir = self.handle().ok()?;
        read_number(&dir, &Path::new(OUT).join("agent.pid")).and_then(|n| u32::try_from(n).ok())
    }

    /// Opens the control FIFO for writing without blocking; fails while no agent is reading.
    fn open_ctl(&self) -> std::io::Result<std::fs::File> {
        Dir::open(&self.dir)?.open_fifo_writer(Path::new("ctl"))
    }

    /// Waits until the agent listens on its FIFO. `alive` says whether the container still runs.
    pub async fn wait_ready(
        &self,
        timeout: Duration,
        mut alive: impl AsyncFnMut() -> bool,
    ) -> Result<(), AgentError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut polls = 0u32;
        loop {
            if self.agent_pid().is_some() {
                match self.open_ctl() {
                    Ok(_) => return Ok(()),
                    Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {}
                    Err(e) => return Err(io_err(&self.dir)(e)),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AgentError::NotReady {
                    container: self.role.clone(),
                    secs: timeout.as_secs(),
                });
            }
            polls += 1;
            if polls.is_multiple_of(50) && !alive().await {
                return Err(AgentError::ContainerGone {
                    container: self.role.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Runs `script` with `shell` (`bash` falls back to `sh` where absent), streaming its output
    /// to `out`. On cancellation the script's processes get SIGTERM, then SIGKILL after `grace`.
    pub async fn run(
        &self,
        request: &ScriptRun<'_>,
        out: &mut (impl AsyncWrite + Unpin),
        cancel: &CancellationToken,
    ) -> Result<ScriptEnd, AgentError> {
        let ScriptRun {
            id,
            script,
            shell,
            container_init_pid,
            grace,
        } = *request;
        if id.is_empty()
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(io_err(&self.dir)(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{id:?} is not a script id"),
            )));
        }
        let dir = self.handle()?;
        let script_rel = Path::new("scripts").join(id);
        dir.write(&script_rel, script, 0o755)
            .map_err(io_err(&self.dir.join(&script_rel)))?;
        let log_rel = Path::new(OUT).join(format!("{id}.log"));
        let rc_rel = Path::new(OUT).join(format!("{id}.rc"));
        let log_path = self.dir.join(&log_rel);
        let open_log = |dir: &Dir| -> Result<Option<tokio::fs::File>, AgentError> {
            match dir.open_file(&log_rel) {
                Ok(f) => Ok(Some(tokio::fs::File::from_std(f))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io_err(&log_path)(e)),
            }
        };
        // A stage whose `berth run` was killed leaves its script running, and the agent reads
        // the next request only once it ends: stop it first, as a cancel would have.
        if self.unfinished_script(&dir) {
            tracing::warn!("a script of an earlier stage still runs: stopping it");
            stop_script_processes(container_init_pid, self.agent_pid(), grace).await;
        }
        self.send(&format!("{id} {shell}\n"), container_init_pid)
            .await?;

        let mut log: Option<tokio::fs::File> = None;
        let mut offset = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        let mut cancelled = false;
        let mut idle = 0u32;
        let mut gone_checks = 0u32;
        loop {
            if log.is_none() {
                log = open_log(&dir)?;
            }
            let mut progressed = false;
            if let Some(file) = log.as_mut() {
                file.seek(SeekFrom::Start(offset))
                    .await
                    .map_err(io_err(&log_path))?;
                loop {
                    let n = file.read(&mut buf).await.map_err(io_err(&log_path))?;
                    if n == 0 {
                        break;
                    }
                    offset += n as u64;
                    progressed = true;
                    out.write_all(&buf[..n]).await.map_err(AgentError::Output)?;
                }
                if progressed {
                    out.flush().await.map_err(AgentError::Output)?;
                }
            }
            if let Some(code) = read_number(&dir, &rc_rel) {
                // Drain what the script wrote between our last read and its exit; a fast script
                // may have finished before its log was first opened.
                if log.is_none() {
                    log = open_log(&dir)?;
                }
                if let Some(file) = log.as_mut() {
                    file.seek(SeekFrom::Start(offset))
                        .await
                        .map_err(io_err(&log_path))?;
                    let mut rest = Vec::new();
                    file.read_to_end(&mut rest)
                        .await
                        .map_err(io_err(&log_path))?;
                    out.write_all(&rest).await.map_err(AgentError::Output)?;
                    out.flush().await.map_err(AgentError::Output)?;
                }
                let code = i32::try_from(code).unwrap_or(255);
                return Ok(if cancelled {
                    ScriptEnd::Cancelled(code)
                } else {
                    ScriptEnd::Exited(code)
                });
            }
            if !cancelled && cancel.is_cancelled() {
                cancelled = true;
                let agent_pid = self.agent_pid();
                let init = container_init_pid;
                tokio::task::spawn(async move {
                    stop_script_processes(init, agent_pid, grace).await;
                });
            }
            idle = if progressed {
                0
            } else {
                idle.saturating_add(1)
            };
            gone_checks += 1;
            if gone_checks.is_multiple_of(200) && !crate::process::alive(container_init_pid) {
                return Err(AgentError::ContainerGone {
                    container: self.role.clone(),
                });
            }
            let wait = if idle < 50 { 2 } else { 20 };
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(wait)) => {}
                () = cancel.cancelled(), if !cancelled => {}
            }
        }
    }

    /// Whether a script started (its pid is written) and has not ended (no exit status).
    fn unfinished_script(&self, dir: &Dir) -> bool {
        let Ok(entries) = std::fs::read_dir(self.dir.join(OUT)) else {
            return false;
        };
        entries.flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".pid").is_some_and(|id| {
                !id.is_empty()
                    && id != "agent"
                    && dir
                        .metadata(&Path::new(OUT).join(format!("{id}.rc")))
                        .is_err()
            })
        })
    }

    async fn send(&self, line: &str, container_init_pid: u32) -> Result<(), AgentError> {
        // The agent reopens the FIFO between scripts; retry briefly while it is not listening.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match self.open_ctl() {
                Ok(mut f) => {
                    use std::io::Write;
                    return f.write_all(line.as_bytes()).map_err(io_err(&self.dir));
                }
                Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                    if !crate::process::alive(container_init_pid) {
                        return Err(AgentError::ContainerGone {
                            container: self.role.clone(),
                        });
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return Err(AgentError::NotReady {
                            container: self.role.clone(),
                            secs: 10,
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                Err(e) => return Err(io_err(&self.dir)(e)),
            }
        }
    }
}

/// A small number the container wrote (a pid, an exit status): read beneath the handle,
/// bounded, and only when it is a plain regular file.
fn read_number(dir: &Dir, rel: &Path) -> Option<u64> {
    let bytes = dir.read(rel, 32).ok()?;
    std::str::from_utf8(&bytes).ok()?.trim().parse().ok()
}

/// One process as seen from the host.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcInfo {
    pid: u32,
    ppid: u32,
    ns_pid: u32,
}

/// Host pids of every descendant of `root`.
pub(crate) fn descendant_pids(all: &[ProcInfo], root: u32) -> Vec<u32> {
    descendants(all, root).into_iter().map(|p| p.pid).collect()
}

/// Every process on the host with its parent and innermost-namespace pid.
pub(crate) fn processes() -> Vec<ProcInfo> {
    crate::process::pids()
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
            };
            let ppid = field("PPid:")?.parse().ok()?;
            let ns_pid = field("NSpid:")?.split_whitespace().last()?.parse().ok()?;
            Some(ProcInfo { pid, ppid, ns_pid })
        })
        .collect()
}

fn descendants(all: &[ProcInfo], root: u32) -> Vec<ProcInfo> {
    let mut out: Vec<ProcInfo> = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for p in all.iter().filter(|p| p.ppid == parent) {
            out.push(*p);
            frontier.push(p.pid);
        }
    }
    out
}

/// Stops what a cancelled script started: every process in the container except the agent and
/// the processes above it (the image's entrypoint). SIGTERM, up to `grace`, then SIGKILL.
async fn stop_script_processes(
    container_init_pid: u32,
    agent_ns_pid: Option<u32>,
    grace: Duration,
) {
    let victims = |all: &[ProcInfo]| -> Vec<u32> {
        let inside = descendants(all, container_init_pid);
        let agent = inside
            .iter()
            .chain(all.iter().filter(|p| p.pid == container_init_pid))
            .find(|p| Some(p.ns_pid) == agent_ns_pid)
            .map(|p| p.pid);
        let mut keep = vec![container_init_pid];
        if let Some(agent) = agent {
            let mut cur = agent;
            while cur != container_init_pid && cur > 1 {
                keep.push(cur);
                match all.iter().find(|p| p.pid == cur) {
                    Some(p) => cur = p.ppid,
                    None => break,
                }
            }
        }
        inside
            .iter()
            .map(|p| p.pid)
            .filter(|pid| !keep.contains(pid))
            .collect()
    };
    crate::process::Ladder::new(grace)
        .stop(|| victims(&processes()))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The agent protocol against a real `sh` on the host, with the directory at a temp path.
    #[tokio::test]
    async fn runs_scripts_streams_output_and_reports_exit_codes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let agent = AgentDir::new(tmp.path().join("a"), "test");
        agent.create().expect("create");
        let script = AGENT_SCRIPT.replace("/.berth", &agent.path().display().to_string());
        let spec = crate::process::CommandSpec::new("sh").args(["-c", script.as_str()]);
        let cancel = CancellationToken::new();
        let shell_task = tokio::spawn({
            let cancel = cancel.clone();
            async move { crate::process::run(&spec, &cancel).await }
        });
        agent
            .wait_ready(Duration::from_secs(5), async || true)
            .await
            .expect("ready");
        let own_pid = std::process::id();
        let mut out = Vec::new();
        let end = agent
            .run(
                &ScriptRun {
                    id: "s1",
                    script: b"echo hello; echo oops >&2; exit 3",
                    shell: "sh",
                    container_init_pid: own_pid,
                    grace: Duration::from_secs(1),
                },
                &mut out,
                &CancellationToken::new(),
            )
            .await
            .expect("run");
        assert_eq!(end, ScriptEnd::Exited(3));
        assert_eq!(String::from_utf8_lossy(&out), "hello\noops\n");
        let mut out2 = Vec::new();
        let end2 = agent
            .run(
                &ScriptRun {
                    id: "s2",
                    script: b"echo second",
                    shell: "bash",
                    container_init_pid: own_pid,
                    grace: Duration::from_secs(1),
                },
                &mut out2,
                &CancellationToken::new(),
            )
            .await
            .expect("second run");
        assert_eq!(end2, ScriptEnd::Exited(0));
        assert_eq!(out2, b"second\n");
        cancel.cancel();
        let _ = shell_task.await;
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    /// A container that planted a link to another job's file where its script log belongs:
    /// berth refuses to read through it, and the other job's bytes never reach this job's log.
    #[tokio::test]
    async fn a_log_planted_as_a_link_is_never_followed() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let secret = tmp.path().join("other-job-secret");
        std::fs::write(&secret, b"victim marker 7d1f").expect("write");
        let agent = AgentDir::new(tmp.path().join("a"), "job");
        agent.create().expect("create");
        let out = agent.path().join(OUT);
        std::os::unix::fs::symlink(&secret, out.join("evil.log")).expect("symlink");
        std::fs::write(out.join("evil.rc"), b"0\n").expect("rc");
        // Something has the FIFO open for reading, as the agent would.
        let reader = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(agent.path().join("ctl"))
                .expect("open the FIFO for reading")
        };
        let mut log = Vec::new();
        let result = agent
            .run(
                &ScriptRun {
                    id: "evil",
                    script: b"true",
                    shell: "sh",
                    container_init_pid: std::process::id(),
                    grace: Duration::from_secs(1),
                },
                &mut log,
                &CancellationToken::new(),
            )
            .await;
        drop(reader);
        let err = result.expect_err("followed a planted link");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert!(
            !String::from_utf8_lossy(&log).contains("victim marker"),
            "the other job's file reached this job's log"
        );
    }

    /// A FIFO where the exit status belongs would block a reader forever: it is refused.
    #[test]
    fn numbers_are_read_only_from_small_regular_files() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = Dir::open(tmp.path()).expect("open");
        nix::unistd::mkfifo(
            &tmp.path().join("rc"),
            nix::sys::stat::Mode::from_bits_truncate(0o666),
        )
        .expect("mkfifo");
        assert_eq!(read_number(&dir, Path::new("rc")), None);
        std::fs::write(tmp.path().join("big"), "1".repeat(100)).expect("write");
        assert_eq!(read_number(&dir, Path::new("big")), None);
        std::fs::write(tmp.path().join("ok"), "42\n").expect("write");
        assert_eq!(read_number(&dir, Path::new("ok")), Some(42));
    }
}
