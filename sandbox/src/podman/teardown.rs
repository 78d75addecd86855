//! The end of a job: its pods and containers, every process it started (by identity, or by the
//! paths it names when it shares berth's user), its store and runtime files. Every step is tried
//! and every error returned; running it twice is harmless.

use std::path::PathBuf;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{PodmanSandbox, io};
use crate::SandboxError;
use crate::identity::Identity;
use crate::process::{self, CommandSpec};

/// How long a job's stragglers get between SIGTERM and SIGKILL.
const STRAGGLER_GRACE: Duration = Duration::from_secs(3);

fn remove_tree(path: &std::path::Path) -> Result<(), SandboxError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(path)(e)),
        _ => Ok(()),
    }
}

impl PodmanSandbox {
    /// Removes everything of this job. Tries every step; returns every error.
    pub(super) async fn teardown_job(&self) -> Vec<SandboxError> {
        let t0 = std::time::Instant::now();
        let step = |name: &str| {
            tracing::debug!("teardown: {name} done at {} ms", t0.elapsed().as_millis())
        };
        let mut errors = Vec::new();
        // Two reapers (or a reaper and the job's own cleanup) must not tear down at once.
        let _lock = match std::fs::File::open(&self.paths.job_dir) {
            Ok(dir) => tokio::task::spawn_blocking(move || {
                nix::fcntl::Flock::lock(dir, nix::fcntl::FlockArg::LockExclusive).ok()
            })
            .await
            .ok()
            .flatten(),
            Err(_) => None,
        };
        // With an identity of its own, ending its processes ends the containers: no Podman call
        // (which a job at its pids limit, or a killed conmon, makes fail) is needed.
        if self.paths.storage().exists() && self.settings.job_identity.is_none() {
            match self.ensure_service().await {
                Ok(()) => {
                    // The store is the job's alone: everything in it goes, including containers
                    // the job started through its build socket.
                    match self.api.pods().await {
                        Ok(pods) => {
                            for pod in pods {
                                if let Err(e) = self.api.pod_remove(&pod.name).await {
                                    errors.push(SandboxError::runtime(format!(
                                        "remove pod {}",
                                        pod.name
                                    ))(e));
                                }
                            }
                        }
                        Err(e) => errors.push(SandboxError::runtime("list the job's pods")(e)),
                    }
                    match self.api.containers().await {
                        Ok(containers) => {
                            for c in containers.iter().flat_map(|c| c.names.first()) {
                                if let Err(e) = self.api.container_remove(c).await {
                                    errors.push(SandboxError::runtime(format!(
                                        "remove container {c}"
                                    ))(e));
                                }
                            }
                        }
                        Err(e) => {
                            errors.push(SandboxError::runtime("list the job's containers")(e));
                        }
                    }
                }
                Err(e) => errors.push(e),
            }
        }
        step("pods and containers");
        match &self.settings.job_identity {
            Some(identity) => self.teardown_identity(identity, &mut errors).await,
            None => self.teardown_shared_user(&mut errors).await,
        }
        step("processes and files");
        errors
    }

    /// Stops processes still using this job's directories (conmon, `podman container cleanup`,
    /// a per-tmpdir pause process) after the pod is gone.
    async fn stop_stragglers(&self) {
        let needles = [
            format!("{}/", self.paths.job_dir.display()),
            format!("{}/", self.paths.run_dir.display()),
        ];
        // Mount roots are relative to their file system, so match the tail that names the job;
        // an overlay root names its layers in the job's store (a build-socket RUN step whose
        // runtime parent died is found only this way).
        let mounts = [
            format!("/{}/builds ", self.paths.key),
            format!("/{}/agent/", self.paths.key),
            format!("/{}/storage/overlay/", self.paths.key),
            format!("/{}/buildkit/", self.paths.key),
        ];
        process::Ladder::new(STRAGGLER_GRACE)
            .stop(|| processes_mentioning(&needles, &mounts, std::process::id()))
            .await;
    }

    /// With an identity of its own, the job is every process that identity owns: all of them
    /// stop (its Podman service, proxy, BuildKit, conmon, containers, its pause process) and its
    /// files go from inside its user namespace; nothing of it is left to find by name.
    async fn teardown_identity(&self, identity: &Identity, errors: &mut Vec<SandboxError>) {
        stop_identity(identity).await;
        // A pause.pid of a process now gone would make the next Podman try to join it.
        if let Err(e) = wipe_runtime_home(identity).await {
            errors.push(e);
        }
        if let Err(e) = self.remove_store().await {
            errors.push(e);
        }
        // `podman unshare` itself leaves a fresh store skeleton in `work/` (its own files, the
        // identity's), and the run directory is the identity's too.
        let mut leftovers: Vec<PathBuf> = std::fs::read_dir(self.paths.work())
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        leftovers.push(self.paths.run_dir.clone());
        let spec = CommandSpec::new("rm")
            .as_identity(identity.uid, identity.gid)
            .args(["-rf", "--one-file-system", "--"])
            .args(leftovers);
        if let Err(e) = process::run(&spec, &CancellationToken::new()).await {
            errors.push(SandboxError::runtime("remove the job's store skeleton")(e));
        }
        // What `podman unshare` started again (its pause process) ends when root releases the
        // identity (`berth_stages::identities::release_host`), which also checks none is left.
    }

    /// Without an identity of its own, the job's processes are told apart by the paths they
    /// name; the user's other jobs and its pause process must survive.
    async fn teardown_shared_user(&self, errors: &mut Vec<SandboxError>) {
        if let Some(pid) = std::fs::read_to_string(self.paths.service_pid())
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            process::stop_pid(pid, Duration::from_secs(2)).await;
        }
        self.stop_stragglers().await;
        // conmon may still launch `podman container cleanup` for a container that just died;
        // it writes into the store while we delete it. Stop it and try again.
        let mut attempt = 0;
        loop {
            match self.remove_store().await {
                Ok(()) => break,
                Err(_) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.stop_stragglers().await;
                }
                Err(e) => {
                    errors.push(e);
                    break;
                }
            }
        }
        for dir in [&self.paths.job_dir, &self.paths.run_dir] {
            if let Err(e) = remove_tree(dir) {
                errors.push(e);
            }
        }
    }

    /// Removes everything in the job's `work/` and its temporary directory inside the user
    /// namespace, after unmounting the store's layers: containers' non-root users leave files of
    /// subordinate ids anywhere they could write (`/builds`, the agent's `out/`, the nested store,
    /// BuildKit's root, build temporaries), which only the namespace's root may remove. `work/`
    /// itself stays (its parent may be root's).
    async fn remove_store(&self) -> Result<(), SandboxError> {
        let work = self.paths.work();
        let tmp = self.paths.tmpdir();
        let occupied = std::fs::read_dir(&work).is_ok_and(|mut d| d.next().is_some());
        if !occupied && !tmp.exists() {
            return Ok(());
        }
        let s = self.paths.storage().display().to_string();
        let (work, tmp) = (work.display().to_string(), tmp.display().to_string());
        let script = format!(
            "grep -F ' {s}/' /proc/self/mounts | cut -d' ' -f2 | sort -r | \
             while read -r m; do umount -l \"$m\" 2>/dev/null; done; \
             umount -l '{s}/overlay' 2>/dev/null; \
             find '{work}' -mindepth 1 -maxdepth 1 -exec rm -rf -- {{}} + && rm -rf -- '{tmp}'"
        );
        let spec = self.podman().args(["unshare", "sh", "-c", script.as_str()]);
        process::run(&spec, &CancellationToken::new())
            .await
            .map(drop)
            .map_err(SandboxError::runtime("remove the job's store"))
    }
}

/// Pids of the processes of one job, except `own`: Podman's helpers (conmon, the API service,
/// `container cleanup`) name the job's directories in their arguments (`cmdline_needles`), and
/// every container process has the job's own bind mounts (`/builds`, `/.berth`) in its mount
/// table (`mount_needles`), even when Podman has lost track of it. The overlay mounts of the
/// shared rootless mount namespace are deliberately not needles: every Podman process of the user
/// sees those.
pub fn processes_mentioning(
    cmdline_needles: &[String],
    mount_needles: &[String],
    own: u32,
) -> Vec<u32> {
    let mentions = |bytes: &[u8], needles: &[String]| {
        let text = String::from_utf8_lossy(bytes);
        needles.iter().any(|n| text.contains(n.as_str()))
    };
    process::pids()
        .filter(|pid| *pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| mentions(&c, cmdline_needles))
                || std::fs::read(format!("/proc/{pid}/mountinfo"))
                    .is_ok_and(|m| mentions(&m, mount_needles))
        })
        .collect()
}

/// Empties `identity`'s `/run/user/UID`, as the identity itself (nothing there is followed).
/// What builds left there under subordinate ids goes from inside the identity's user namespace.
pub async fn wipe_runtime_home(identity: &Identity) -> Result<(), SandboxError> {
    let runtime = identity.runtime_home();
    if !runtime.is_dir() {
        return Ok(());
    }
    let find = |spec: CommandSpec| {
        spec.args([runtime.as_os_str().to_owned()])
            .args(["-mindepth", "1", "-xdev", "-delete"])
    };
    let plain = find(CommandSpec::new("find").as_identity(identity.uid, identity.gid));
    if process::run(&plain, &CancellationToken::new())
        .await
        .is_ok()
    {
        return Ok(());
    }
    let scratch = runtime.join(".berth-wipe");
    let mut spec = CommandSpec::new("podman").as_identity(identity.uid, identity.gid);
    for (k, v) in [
        ("HOME", scratch.clone()),
        ("XDG_CONFIG_HOME", scratch.join("config")),
        ("XDG_RUNTIME_DIR", runtime.clone()),
        ("TMPDIR", scratch.join("tmp")),
    ] {
        spec = spec.env(k, v);
    }
    let spec = find(spec.args([
        "--root".into(),
        scratch.join("root").into_os_string(),
        "--runroot".into(),
        scratch.join("run").into_os_string(),
        "unshare".into(),
        "find".into(),
    ]));
    let inside = process::run(&spec, &CancellationToken::new()).await;
    // `podman unshare` left a pause process and its files behind.
    stop_identity(identity).await;
    let action = || format!("empty the runtime directory of {}", identity.name);
    process::run(&plain, &CancellationToken::new())
        .await
        .map_err(SandboxError::runtime(action()))?;
    inside.map(drop).map_err(SandboxError::runtime(action()))
}

/// Ends every process `identity` owns but this one, with SIGKILL: the job is over, and a
/// container's init ignores SIGTERM (a graceful stop of the job's scripts is the agent's, at
/// cancel). Its subordinate-id processes need root to signal.
pub async fn stop_identity(identity: &Identity) -> Vec<u32> {
    process::Ladder::kill()
        .as_root()
        .stop(|| crate::identity::processes_of(identity))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_process_is_found_by_the_path_it_names_and_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let needle = format!("{}/", dir.path().join("jobs/k1").display());
        let ready = dir.path().join("ready");
        let script = format!(
            "trap '' TERM; touch {}; while :; do sleep 1; done",
            ready.display()
        );
        let spec = CommandSpec::new("sh").args(["-c", script.as_str(), needle.as_str()]);
        let pid = process::spawn_detached(&spec, &dir.path().join("log")).expect("spawn");
        while !ready.exists() {
            assert!(
                process::running(pid),
                "the process exited before it was ready"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let own = std::process::id();
        let needles = [needle];
        assert_eq!(processes_mentioning(&needles, &[], own), [pid]);
        let other = [format!("{}/", dir.path().join("jobs/k2").display())];
        assert!(processes_mentioning(&other, &[], own).is_empty());
        let left = process::Ladder::new(Duration::from_millis(50))
            .stop(|| processes_mentioning(&needles, &[], own))
            .await;
        assert!(left.is_empty() && !process::running(pid));
    }
}
